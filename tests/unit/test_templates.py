"""The message template language: parsing, validation, rendering, and the context builder."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from leadd.templates import (
    KNOWN_VARIABLES,
    Template,
    TemplateError,
    build_context,
    compile_template,
    format_money,
    validate,
)

CONTEXT: dict[str, Any] = {
    "customer": {"first_name": "Dana", "last_name": None},
    "vehicle": {"year": 2019, "make": "Honda", "mileage": 45210.5},
    "services": {"total": "$509.99"},
}


def render(text: str, context: dict[str, Any] = CONTEXT) -> str:
    return compile_template(text).render(context)


# Rendering


def test_renders_nested_values_with_or_without_spaces() -> None:
    assert render("Hi {{customer.first_name}}, your {{ vehicle.year }} {{  vehicle.make  }}") == (
        "Hi Dana, your 2019 Honda"
    )


def test_default_applies_to_missing_none_and_blank_values() -> None:
    text = 'Hi {{ customer.first_name | default("there") }}!'
    assert render(text) == "Hi Dana!"
    assert render(text, {}) == "Hi there!"
    assert render(text, {"customer": {"first_name": None}}) == "Hi there!"
    assert render(text, {"customer": {"first_name": "  "}}) == "Hi there!"
    assert render(text, {"customer": "not a mapping"}) == "Hi there!"


def test_missing_without_default_renders_empty() -> None:
    assert render("[{{ customer.last_name }}][{{ lead.order_number }}]") == "[][]"


def test_default_accepts_single_quotes_escapes_and_braces() -> None:
    assert render("{{ x.y|default('it\\'s') }}", {}) == "it's"
    assert render('{{ x.y | default("say \\"hi\\"") }}', {}) == 'say "hi"'
    assert render('{{ x.y | default("}}") }}', {}) == "}}"


def test_numbers_render_plainly() -> None:
    assert render("{{ vehicle.mileage }}") == "45210.5"
    assert render("{{ a.b }}", {"a": {"b": 2019.0}}) == "2019"
    assert render("{{ a.b }}", {"a": {"b": 1e16}}) == "10000000000000000"
    assert render("{{ a.b }}", {"a": {"b": Decimal("49.990")}}) == "49.99"
    assert render("{{ a.b }}", {"a": {"b": 0.1 + 0.2}}) == "0.30000000000000004"


def test_mapping_value_renders_as_missing() -> None:
    """`{{ customer }}` must not dump a dict into a customer's text message."""
    assert render('{{ customer | default("x") }}') == "x"


def test_multiline_text_is_kept() -> None:
    assert (
        render("Hi {{ customer.first_name }},\n\nSee you soon.\n") == "Hi Dana,\n\nSee you soon.\n"
    )


def test_text_without_placeholders_and_single_braces() -> None:
    assert render("Reply STOP to opt out {ok}") == "Reply STOP to opt out {ok}"
    assert render("") == ""


# Variables and validation


def test_variables_lists_every_path_once() -> None:
    template = compile_template(
        "{{ customer.first_name }} {{ vehicle.make }} {{customer.first_name|default('x')}}"
    )
    assert template.variables == frozenset({"customer.first_name", "vehicle.make"})
    assert isinstance(template, Template)
    assert template.source.startswith("{{ customer.first_name }}")


def test_validate_accepts_known_variables() -> None:
    validate(
        compile_template("Hi {{ customer.first_name }} from {{ tenant.name }}"), KNOWN_VARIABLES
    )


def test_validate_names_the_unknown_variable_and_known_ones() -> None:
    template = compile_template("Hi {{ customer.frist_name }}")
    with pytest.raises(TemplateError) as info:
        validate(template, KNOWN_VARIABLES)
    message = str(info.value)
    assert message.startswith("unknown variable 'customer.frist_name'; known: ")
    assert "customer.first_name" in message


def test_validate_names_every_unknown_variable() -> None:
    template = compile_template("{{ a.b }} {{ customer.name }} {{ c.d }}")
    with pytest.raises(
        TemplateError, match=r"unknown variables 'a\.b', 'c\.d'; known: customer\.name, x\.y$"
    ):
        validate(template, ["x.y", "customer.name"])


def test_known_variables_match_build_context_output() -> None:
    """Every advertised variable exists in the built context, and nothing else does."""
    context = build_context(
        customer={},
        vehicle={},
        services=[],
        location={},
        tenant_name="Acme",
        order_number=None,
        chat_link=None,
        unsubscribe_link=None,
    )
    paths = {f"{group}.{key}" for group, values in context.items() for key in values}
    assert paths == KNOWN_VARIABLES


# Syntax errors and safety


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("Hi {{ customer.first_name", "unclosed '{{' at line 1, column 4"),
        ("Hi {{", "unclosed '{{'"),
        ('{{ a.b | default("x")', "unclosed '{{'"),
        ('{{ a.b | default("x"', "unclosed '{{'"),
        ("Hi customer.first_name }}", "'}}' without a matching '{{'"),
        ("{{ }}", "expected a variable name"),
        ("{{ a. }}", "expected '}}'"),
        ("{{ a b }}", "expected '}}'"),
        ("{{ a.b | upper }}", "unknown filter 'upper'"),
        ("{{ a.b | default(there) }}", "expected a quoted string"),
        ('{{ a.b | default("x" }}', "expected ')'"),
        ("line one\n  {{ 1 }}", "line 2, column 6"),
        ("{% if a %}x{% endif %}", "'{%' blocks are not supported"),
    ],
)
def test_syntax_errors_say_what_and_where(text: str, message: str) -> None:
    with pytest.raises(TemplateError) as info:
        compile_template(text)
    assert message in str(info.value)


@pytest.mark.parametrize(
    "text",
    [
        "{{ __import__('os') }}",
        "{{ __import__('os').system('true') }}",
        "{{ customer.__class__ }}",
        "{{ customer.first_name() }}",
        "{{ customer['first_name'] }}",
        "{{ 1 + 1 }}",
        "{% for x in y %}{{ x }}{% endfor %}",
    ],
)
def test_code_and_attribute_access_are_syntax_errors(text: str) -> None:
    with pytest.raises(TemplateError):
        compile_template(text)


def test_lookup_reads_mapping_keys_not_attributes() -> None:
    """A dict's methods are not reachable: `items` is only ever a key."""
    assert render("[{{ customer.items }}]") == "[]"
    assert render("{{ customer.items }}", {"customer": {"items": "wipers"}}) == "wipers"


def test_template_error_is_a_value_error() -> None:
    """Config loading catches ValueError for every kind of bad value."""
    assert issubclass(TemplateError, ValueError)


# build_context


def _context(**overrides: Any) -> dict[str, dict[str, Any]]:
    arguments: dict[str, Any] = {
        "customer": {"first_name": " Dana ", "last_name": "Reyes"},
        "vehicle": {"year": 2019, "make": "Honda", "model": "Civic"},
        "services": [
            {"name": "Brake inspection", "price": 459.0},
            {"name": "Oil change", "price": 49.99},
            {"name": "Tire rotation", "price": None},
        ],
        "location": {
            "name": "Acme Auto North",
            "phone": "(512) 555-0100",
            "address": "1 Main St, Austin, TX",
            "hours_today": "8:00 AM–6:00 PM",
        },
        "tenant_name": "Acme Auto",
        "order_number": "1042",
        "chat_link": "https://chat.example/x",
        "unsubscribe_link": None,
    }
    arguments.update(overrides)
    return build_context(**arguments)


def test_build_context_formats_services_and_prices() -> None:
    services = _context()["services"]
    assert services["list"] == "Brake inspection ($459.00), Oil change ($49.99), Tire rotation"
    assert services["names"] == "Brake inspection, Oil change, Tire rotation"
    assert services["total"] == "$508.99"


def test_build_context_total_uses_thousands_separator_and_rounds_half_up() -> None:
    services = _context(
        services=[{"name": "Engine", "price": 1234.5}, {"name": "Fee", "price": 2.675}]
    )["services"]
    assert services["list"] == "Engine ($1,234.50), Fee ($2.68)"
    assert services["total"] == "$1,237.18"


def test_build_context_without_quoted_prices_leaves_total_unknown() -> None:
    services = _context(services=[{"name": "Diagnosis", "price": None}])["services"]
    assert services["total"] is None
    assert _context(services=[])["services"] == {"list": None, "names": None, "total": None}


def test_build_context_people_and_vehicle() -> None:
    context = _context()
    assert context["customer"] == {"first_name": "Dana", "last_name": "Reyes", "name": "Dana Reyes"}
    assert context["vehicle"]["description"] == "2019 Honda Civic"
    assert context["lead"]["order_number"] == "1042"
    assert context["unsubscribe"]["link"] is None
    partial = _context(customer={"name": "D. Reyes"}, vehicle={"make": "Ford", "year": None})
    assert partial["customer"]["name"] == "D. Reyes"
    assert partial["customer"]["first_name"] is None
    assert partial["vehicle"]["description"] == "Ford"


def test_build_context_renders_a_realistic_message() -> None:
    template = compile_template(
        'Hi {{ customer.first_name | default("there") }}, {{ location.name }} has your '
        "{{ vehicle.description }} estimate: {{ services.list }}. Total {{ services.total }}. "
        "Hours today: {{ location.hours_today }}."
    )
    validate(template, KNOWN_VARIABLES)
    assert template.render(_context()) == (
        "Hi Dana, Acme Auto North has your 2019 Honda Civic estimate: Brake inspection "
        "($459.00), Oil change ($49.99), Tire rotation. Total $508.99. "
        "Hours today: 8:00 AM–6:00 PM."
    )
    anonymous = _context(customer={"first_name": ""})
    assert template.render(anonymous).startswith("Hi there, ")


@pytest.mark.parametrize(
    ("amount", "text"),
    [
        (0, "$0.00"),
        (5, "$5.00"),
        (1234.5, "$1,234.50"),
        (-10, "-$10.00"),
        (Decimal("0.005"), "$0.01"),
    ],
)
def test_format_money(amount: float | Decimal, text: str) -> None:
    assert format_money(amount) == text


def test_format_money_rejects_non_numbers() -> None:
    with pytest.raises(TypeError):
        format_money("12.00")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="finite"):
        format_money(float("nan"))
