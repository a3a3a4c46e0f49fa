"""Message templates: Jinja2 in its immutable sandbox, strict, and checked when config loads.

Template text comes from tenant configuration and is rendered against customer data, so:
- a template sees only the context it is handed (no globals) and reads mapping keys only:
  `customer.items` is a key, never `dict.items`; the sandbox blocks the rest of Python;
- a value from the context is data, printed and never parsed as a template: a customer named
  "{{ 7*7 }}" is greeted as "{{ 7*7 }}";
- an undefined name is an error (StrictUndefined) and `validate` checks, when the
  configuration loads, that every dotted path a template reads exists: "customer.frist_name"
  stops the daemon from starting instead of failing every send;
- no autoescaping: SMS and plain-text e-mail are not HTML.

Every failure, compiling or rendering, is a TemplateError.
"""

from __future__ import annotations

import difflib
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import jinja2
from jinja2 import StrictUndefined, Undefined, meta, nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment

KNOWN_VARIABLES: frozenset[str] = frozenset(
    {
        "customer.first_name",
        "customer.last_name",
        "customer.name",
        "vehicle.year",
        "vehicle.make",
        "vehicle.model",
        "vehicle.description",
        "services.list",
        "services.names",
        "services.total",
        "location.name",
        "location.phone",
        "location.address",
        "location.hours_today",
        "tenant.name",
        "lead.order_number",
        "chat.link",
        "unsubscribe.link",
    }
)
# unsubscribe.link only exists in e-mail (SMS opt-out is the STOP keyword).
SMS_VARIABLES: frozenset[str] = KNOWN_VARIABLES - {"unsubscribe.link"}

# A message is one text: nothing to extend, include or import (and no loader to do it with).
_UNSUPPORTED = (nodes.Extends, nodes.Include, nodes.Import, nodes.FromImport)
_CENT = Decimal("0.01")


class TemplateError(ValueError):
    """A template that cannot be compiled or rendered, or that uses variables nobody provides."""


@dataclass(frozen=True, slots=True)
class Template:
    """A compiled template. Build with `compile_template`."""

    source: str
    variables: frozenset[str]  # every dotted path it reads from the context, e.g. "customer.name"
    _jinja: jinja2.Template = field(repr=False, compare=False)

    def render(self, context: Mapping[str, Any]) -> str:
        """Fill the template from nested mappings (see `build_context`).

        None, a blank string or a mapping print as nothing, and `default(...)` applies to them:
        "Hi {{ customer.first_name | default("there") }}" reads well whether or not the shop
        recorded a first name.
        """
        try:
            return self._jinja.render(context)
        except Exception as exc:  # tenant-written code: any failure in it is the template's
            raise TemplateError(str(exc) or type(exc).__name__) from exc


def compile_template(text: str) -> Template:
    """Parse `text`, raising TemplateError with the line of any syntax error, unknown filter or
    test, or unsupported tag."""
    try:
        tree = _ENV.parse(text)
        _check_names(tree)
        variables = frozenset(_paths(tree, meta.find_undeclared_variables(tree)))
        return Template(text, variables, _ENV.from_string(tree))
    except jinja2.TemplateSyntaxError as exc:
        message = (exc.message or "syntax error").rstrip(".")
        raise TemplateError(f"line {exc.lineno}: {message}") from None


def validate(template: Template, known: Collection[str] = KNOWN_VARIABLES) -> None:
    """Raise TemplateError naming every variable of `template` that is not in `known`.

    Called at configuration load, so a typo such as "customer.frist_name" stops the
    daemon from starting instead of failing every message at send time.
    """
    unknown = sorted(template.variables - frozenset(known))
    if not unknown:
        return
    noun = "variable" if len(unknown) == 1 else "variables"
    names = ", ".join(f"'{name}'{_did_you_mean(name, known)}" for name in unknown)
    raise TemplateError(f"unknown {noun} {names}; known: {', '.join(sorted(known))}")


def build_context(
    *,
    customer: Mapping[str, Any],
    vehicle: Mapping[str, Any],
    services: Sequence[Mapping[str, Any]],
    location: Mapping[str, Any],
    tenant_name: str,
    order_number: str | None,
    chat_link: str | None,
    unsubscribe_link: str | None,
) -> dict[str, dict[str, Any]]:
    """The nested dict templates render against, with every `KNOWN_VARIABLES` key present.

    Values that are unknown stay None so that `default(...)` applies. `services` items
    carry a `name` and a `price` (float, or None when not yet quoted); the total sums the
    quoted prices only and is None when nothing is quoted, rather than a misleading $0.00.
    """
    first = _clean(customer.get("first_name"))
    last = _clean(customer.get("last_name"))
    full = " ".join(part for part in (first, last) if part) or _clean(customer.get("name"))

    year, make, model = (
        vehicle.get("year"),
        _clean(vehicle.get("make")),
        _clean(vehicle.get("model")),
    )
    description = " ".join(
        _format_value(part) for part in (year, make, model) if part not in (None, "")
    ) or _clean(vehicle.get("description"))

    names: list[str] = []
    listed: list[str] = []
    prices: list[Decimal] = []
    for service in services:
        name = _clean(service.get("name"))
        if name is None:
            continue
        price = service.get("price")
        names.append(name)
        if price is None:
            listed.append(name)
        else:
            amount = _to_cents(price)
            prices.append(amount)
            listed.append(f"{name} ({format_money(amount)})")

    return {
        "customer": {"first_name": first, "last_name": last, "name": full},
        "vehicle": {
            "year": year,
            "make": make,
            "model": model,
            "description": description or None,
        },
        "services": {
            "list": ", ".join(listed) or None,
            "names": ", ".join(names) or None,
            "total": format_money(sum(prices, Decimal(0))) if prices else None,
        },
        "location": {
            "name": _clean(location.get("name")),
            "phone": _clean(location.get("phone")),
            "address": _clean(location.get("address")),
            "hours_today": _clean(location.get("hours_today")),
        },
        "tenant": {"name": _clean(tenant_name)},
        "lead": {"order_number": _clean(order_number)},
        "chat": {"link": _clean(chat_link)},
        "unsubscribe": {"link": _clean(unsubscribe_link)},
    }


def format_money(amount: Decimal | float | int) -> str:
    """US dollars with thousands separators and cents: $1,234.50, -$5.00."""
    cents = _to_cents(amount)
    sign = "-" if cents < 0 else ""
    return f"{sign}${abs(cents):,.2f}"


class _Environment(ImmutableSandboxedEnvironment):
    """A dotted path or subscript on a mapping reads its keys, never its attributes."""

    def getattr(self, obj: Any, attribute: str) -> Any:
        if isinstance(obj, Mapping):
            return self._key(obj, attribute)
        return super().getattr(obj, attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        if isinstance(obj, Mapping):
            return self._key(obj, argument)
        return super().getitem(obj, argument)

    def _key(self, obj: Mapping[Any, Any], key: Any) -> Any:
        try:
            return obj[key]
        except (KeyError, TypeError):
            return self.undefined(obj=obj, name=key)


def _default(value: object, fallback: object = "", boolean: bool = False) -> object:
    """Jinja's `default`, also for values that print as nothing (None, blank, a mapping):
    a shop that recorded no first name stores None or "", and "Hi ," must read "Hi there,"."""
    if isinstance(value, Undefined) or not _format_value(value).strip():
        return fallback
    if boolean and not value:
        return fallback
    return value


def _check_names(tree: nodes.Template) -> None:
    """Unknown filters and tests fail here, even inside an `{% if %}` Jinja would only run later."""
    for node in tree.find_all((nodes.Filter, nodes.Test)):
        kind, known = (
            ("filter", _ENV.filters) if isinstance(node, nodes.Filter) else ("test", _ENV.tests)
        )
        if node.name not in known:
            raise jinja2.TemplateSyntaxError(
                f"unknown {kind} '{node.name}'{_did_you_mean(node.name, known)}", node.lineno
            )
    for unsupported in tree.find_all(_UNSUPPORTED):
        raise jinja2.TemplateSyntaxError(
            "a message is one template: no extends, include or import", unsupported.lineno
        )


def _paths(node: nodes.Node, roots: Collection[str]) -> Iterator[str]:
    """Dotted paths read from the context: `customer.first_name`, `customer['name']`, `lead`.
    Names the template binds itself (`{% set %}`, loop variables) are not in `roots`."""
    chain = _chain(node)
    if chain is not None:
        if chain[0] in roots:
            yield ".".join(chain)
        return
    for child in node.iter_child_nodes():
        yield from _paths(child, roots)


def _chain(node: nodes.Node) -> list[str] | None:
    """`a.b['c']` as ["a", "b", "c"]; None when the expression is not a plain path."""
    keys: list[str] = []
    while True:
        if isinstance(node, nodes.Getattr):
            keys.append(node.attr)
            node = node.node
        elif (
            isinstance(node, nodes.Getitem)
            and isinstance(node.arg, nodes.Const)
            and isinstance(node.arg.value, str)
        ):
            keys.append(node.arg.value)
            node = node.node
        elif isinstance(node, nodes.Name) and node.ctx == "load":
            return [node.name, *reversed(keys)]
        else:
            return None


def _did_you_mean(name: str, known: Collection[str]) -> str:
    near = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.8)
    return f" (did you mean '{near[0]}'?)" if near else ""


def _format_value(value: object) -> str:
    """Plain text for a context value: no float noise ("2019", "45.5"), no exponents."""
    if isinstance(value, Undefined):
        return str(value)  # StrictUndefined: raises, naming what is undefined
    if value is None or isinstance(value, Mapping):
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float | Decimal):
        number = Decimal(repr(value)) if isinstance(value, float) else value
        if not number.is_finite():
            return ""
        if number == number.to_integral_value():
            return f"{number:.0f}"
        return f"{number.normalize():f}"
    if isinstance(value, Sequence):
        return ", ".join(_format_value(item) for item in value)
    return str(value)


def _to_cents(amount: object) -> Decimal:
    if isinstance(amount, bool) or not isinstance(amount, int | float | Decimal):
        raise TypeError(f"expected a price as a number, got {amount!r}")
    # repr() gives the shortest decimal that round-trips, so 2.675 rounds to 2.68, not 2.67.
    number = Decimal(repr(amount)) if isinstance(amount, float) else Decimal(amount)
    if not number.is_finite():
        raise ValueError(f"expected a finite price, got {amount!r}")
    return number.quantize(_CENT, rounding=ROUND_HALF_UP)


def _clean(value: object) -> Any:
    """Strip strings and turn blanks into None, so defaults apply to them."""
    if isinstance(value, str):
        value = value.strip()
        return value or None
    return value


# Built once: compiling and rendering never change it. No globals (range, lipsum, ...): a
# template sees only its context. `attr` reaches attributes and `pprint` dumps Python reprs;
# neither belongs in a text to a customer.
_ENV = _Environment(
    undefined=StrictUndefined,
    autoescape=False,
    finalize=_format_value,
    keep_trailing_newline=True,
)
_ENV.globals.clear()
_ENV.filters["default"] = _ENV.filters["d"] = _default
del _ENV.filters["attr"], _ENV.filters["pprint"]
