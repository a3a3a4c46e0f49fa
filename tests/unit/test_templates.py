"""Message templates: Jinja2 in its sandbox with strict undefined variables, the load-time
variable check, rendering, and the context builder."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from leadd.templates import (
    KNOWN_VARIABLES,
    SMS_VARIABLES,
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


def test_default_applies_to_none_blank_and_non_mapping_values() -> None:
    """Unlike Jinja's own `default`, ours also replaces values that print as nothing: a shop
    that recorded no first name stores None or ""."""
    text = 'Hi {{ customer.first_name | default("there") }}!'
    assert render(text) == "Hi Dana!"
    assert render(text, {"customer": {}}) == "Hi there!"
    assert render(text, {"customer": {"first_name": None}}) == "Hi there!"
    assert render(text, {"customer": {"first_name": "  "}}) == "Hi there!"
    assert render(text, {"customer": "not a mapping"}) == "Hi there!"
    assert render('{{ customer.first_name | d("x") }}', {"customer": {"first_name": ""}}) == "x"


def test_none_renders_empty_and_a_missing_variable_is_an_error() -> None:
    """StrictUndefined: a name nobody provides fails the render instead of printing nothing
    (the load-time check keeps configured templates from ever getting here)."""
    assert render("[{{ customer.last_name }}]") == "[]"
    with pytest.raises(TemplateError, match="'lead' is undefined"):
        render("[{{ lead.order_number }}]")
    with pytest.raises(TemplateError, match="no attribute 'nickname'"):
        render("{{ customer.nickname }}")


def test_default_accepts_single_quotes_escapes_and_braces() -> None:
    assert render("{{ x.y|default('it\\'s') }}", {"x": {}}) == "it's"
    assert render('{{ x.y | default("say \\"hi\\"") }}', {"x": {}}) == 'say "hi"'
    assert render('{{ x.y | default("}}") }}', {"x": {}}) == "}}"


def test_numbers_render_plainly() -> None:
    assert render("{{ vehicle.mileage }}") == "45210.5"
    assert render("{{ a.b }}", {"a": {"b": 2019.0}}) == "2019"
    assert render("{{ a.b }}", {"a": {"b": 1e16}}) == "10000000000000000"
    assert render("{{ a.b }}", {"a": {"b": Decimal("49.990")}}) == "49.99"
    assert render("{{ a.b }}", {"a": {"b": 0.1 + 0.2}}) == "0.30000000000000004"
    assert render("{{ a.b }}", {"a": {"b": True}}) == "yes"


def test_mapping_value_renders_as_missing() -> None:
    """`{{ customer }}` must not dump a dict into a customer's text message."""
    assert render('{{ customer | default("x") }}') == "x"
    assert render("[{{ customer }}]") == "[]"


def test_multiline_text_and_its_trailing_newline_are_kept() -> None:
    assert (
        render("Hi {{ customer.first_name }},\n\nSee you soon.\n") == "Hi Dana,\n\nSee you soon.\n"
    )


def test_text_without_placeholders_and_single_braces() -> None:
    assert render("Reply STOP to opt out {ok}") == "Reply STOP to opt out {ok}"
    assert render("") == ""


def test_jinja_filters_and_conditions_work() -> None:
    """One template language: what Jinja offers (filters, conditions) works in messages."""
    text = (
        "{{ customer.first_name | upper }}"
        "{% if services.total %}, total {{ services.total }}{% endif %}"
        "{% if customer.last_name %}, never{% endif %}"
    )
    assert render(text) == "DANA, total $509.99"


def test_no_html_escaping_in_plain_text() -> None:
    """SMS and plain-text e-mail are not HTML: "&" must not arrive as "&amp;"."""
    name = "O'Brien & <Sons>"
    assert render("{{ customer.first_name }}", {"customer": {"first_name": name}}) == name


# Variables and validation


def test_variables_lists_every_path_once() -> None:
    template = compile_template(
        "{{ customer.first_name }} {{ vehicle.make }} {{customer.first_name|default('x')}}"
        "{{ customer['last_name'] }}"
    )
    assert template.variables == frozenset(
        {"customer.first_name", "customer.last_name", "vehicle.make"}
    )
    assert isinstance(template, Template)
    assert template.source.startswith("{{ customer.first_name }}")


def test_variables_leave_out_names_the_template_binds_itself() -> None:
    template = compile_template(
        "{% set greeting = 'Hi' %}{{ greeting }}"
        "{% for part in services.names %}{{ part.x }}{{ loop.index }}{% endfor %}"
    )
    assert template.variables == frozenset({"services.names"})


def test_validate_accepts_known_variables() -> None:
    validate(
        compile_template("Hi {{ customer.first_name }} from {{ tenant.name }}"), KNOWN_VARIABLES
    )


def test_validate_names_the_unknown_variable_a_suggestion_and_known_ones() -> None:
    template = compile_template("Hi {{ customer.frist_name }}")
    with pytest.raises(TemplateError) as info:
        validate(template, KNOWN_VARIABLES)
    message = str(info.value)
    assert message.startswith(
        "unknown variable 'customer.frist_name' (did you mean 'customer.first_name'?); known: "
    )
    assert "tenant.name" in message


@pytest.mark.parametrize(
    ("text", "unknown"),
    [
        ("{{ custmer.first_name }}", "custmer.first_name"),  # the group misspelt
        ("{{ customer['frist_name'] }}", "customer.frist_name"),  # subscript form
        ("{{ customer }}", "customer"),  # a group is not a value
        ("{{ customer.first_name.upper() }}", "customer.first_name.upper"),  # past a leaf
        ("{% if lead.ordr %}x{% endif %}", "lead.ordr"),  # inside a block
        ("{{ range(3) }}", "range"),  # no Jinja globals
    ],
)
def test_validate_checks_every_way_of_reading_the_context(text: str, unknown: str) -> None:
    with pytest.raises(TemplateError, match=f"unknown variable '{unknown}'"):
        validate(compile_template(text), KNOWN_VARIABLES)


def test_validate_names_every_unknown_variable() -> None:
    template = compile_template("{{ a.b }} {{ customer.name }} {{ c.d }}")
    with pytest.raises(
        TemplateError, match=r"unknown variables 'a\.b', 'c\.d'; known: customer\.name, x\.y$"
    ):
        validate(template, ["x.y", "customer.name"])


def test_sms_variables_leave_out_the_unsubscribe_link() -> None:
    """SMS opt-out is the STOP keyword; an unsubscribe link exists only in e-mail."""
    assert "unsubscribe.link" not in SMS_VARIABLES
    assert SMS_VARIABLES | {"unsubscribe.link"} == KNOWN_VARIABLES


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


# Syntax errors


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("Hi {{ customer.first_name", "line 1: unexpected end of template"),
        ('{{ a.b | default("x")', "line 1: unexpected end of template"),
        ("{{ }}", "line 1: Expected an expression"),
        ("line one\n  {{ a b }}", "line 2: expected token 'end of print statement', got 'b'"),
        ("{{ a.b | uper }}", "line 1: unknown filter 'uper' (did you mean 'upper'?)"),
        # Jinja alone would only notice this one when the branch runs, at send time.
        ("{% if a %}\n{{ a | uper }}{% endif %}", "line 2: unknown filter 'uper'"),
        ("{% if a is defind %}x{% endif %}", "line 1: unknown test 'defind'"),
        ("{{ a | attr('items') }}", "unknown filter 'attr'"),
        ("{{ a | pprint }}", "unknown filter 'pprint'"),
        ("{% include 'other' %}", "line 1: a message is one template"),
        ("{% extends 'base' %}", "a message is one template"),
        ("{% import 'macros' as m %}", "a message is one template"),
        ("{% if a %}x", "line 1: Unexpected end of template"),
        ("Ticket {#42}", "line 1: Missing end of comment tag"),
    ],
)
def test_syntax_errors_say_what_and_where(text: str, message: str) -> None:
    with pytest.raises(TemplateError) as info:
        compile_template(text)
    assert message in str(info.value)


# Safety: the data is never code, and the code reaches nothing it was not handed


def test_customer_data_is_never_evaluated() -> None:
    """A name from Shopmonkey that looks like a template is printed as it is."""
    hostile = "{{ 7*7 }}{% for x in range(9) %}x{% endfor %}{{ ''.__class__ }}"
    context = {"customer": {"first_name": hostile}}
    assert render("Hi {{ customer.first_name }}", context) == f"Hi {hostile}"
    assert render('{{ customer.first_name | default("x") }}', context) == hostile


def test_a_dotted_path_reads_mapping_keys_not_attributes() -> None:
    """A dict's methods are not reachable: `items` is only ever a key."""
    with pytest.raises(TemplateError, match="no attribute 'items'"):
        render("{{ customer.items }}")
    assert render("{{ customer.items }}", {"customer": {"items": "wipers"}}) == "wipers"
    assert render("{{ customer['items'] }}", {"customer": {"items": "wipers"}}) == "wipers"


@pytest.mark.parametrize(
    "text",
    [
        "{{ __import__('os') }}",
        "{{ __import__('os').system('true') }}",
        "{{ customer.__class__ }}",
        "{{ customer.first_name.__class__.__mro__ }}",
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ customer.first_name.format.__globals__ }}",
        "{{ customer.pop('first_name') }}",
        "{{ lipsum.__globals__ }}",
        "{{ cycler.__init__.__globals__.os }}",
        "{{ range(10) }}",
    ],
)
def test_code_and_attribute_escapes_fail_to_render(text: str) -> None:
    """Even unvalidated, a template cannot reach Python internals, globals or mutate data:
    every such attempt is a TemplateError, the one error the sender catches."""
    context = {"customer": {"first_name": "Dana"}}
    with pytest.raises(TemplateError):
        render(text, context)
    assert context == {"customer": {"first_name": "Dana"}}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{{ customer.first_name | round }}", "round"),  # a filter on the wrong type
        ("{{ vehicle.year + customer.first_name }}", "unsupported operand"),
        ("{{ customer.first_name() }}", "not callable"),
        ("{{ 1 / 0 }}", "division by zero"),
    ],
)
def test_rendering_errors_are_template_errors(text: str, message: str) -> None:
    with pytest.raises(TemplateError, match=message):
        render(text)


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
