"""Message templates: `{{ customer.first_name | default("there") }}` and nothing more.

Template text comes from tenant configuration, so the language is deliberately tiny: a
placeholder is a dotted path into nested dicts, optionally with one `default("...")`
filter. There are no expressions, calls, attribute lookups or loops, so a template can
neither run code nor reach objects it was not handed. Templates are compiled and validated
when the configuration loads; rendering cannot fail on a well-formed template.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

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

_OPEN = "{{"
_CLOSE = "}}"
_BLOCK = "{%"
_SPACE_RE = re.compile(r"\s*")
# Names start with a letter, which also keeps dunder names like __import__ out.
_PATH_RE = re.compile(r"[A-Za-z][A-Za-z0-9_]*(?:\.[A-Za-z][A-Za-z0-9_]*)*")
_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_STRING_RE = re.compile(r""""((?:[^"\\]|\\.)*)"|'((?:[^'\\]|\\.)*)'""", re.DOTALL)
_ESCAPE_RE = re.compile(r"\\(.)", re.DOTALL)
_CENT = Decimal("0.01")


class TemplateError(ValueError):
    """A template that cannot be compiled, or that uses variables nobody provides."""


@dataclass(frozen=True, slots=True)
class _Placeholder:
    path: tuple[str, ...]
    default: str | None


@dataclass(frozen=True, slots=True)
class Template:
    """A compiled template: literal text and placeholders, in order. Build with
    `compile_template`."""

    source: str
    _parts: tuple[str | _Placeholder, ...]

    @property
    def variables(self) -> frozenset[str]:
        """Every dotted path the template reads, e.g. "customer.first_name"."""
        return frozenset(".".join(part.path) for part in self._placeholders())

    def render(self, context: Mapping[str, Any]) -> str:
        """Fill the placeholders from nested mappings.

        A value that is missing, None or blank renders the placeholder's default, or
        nothing: "Hi {{ customer.first_name | default("there") }}" must read well
        whether or not the shop recorded a first name.
        """
        out: list[str] = []
        for part in self._parts:
            if isinstance(part, str):
                out.append(part)
                continue
            text = _format_value(_lookup(context, part.path))
            if not text.strip() and part.default is not None:
                text = part.default
            out.append(text)
        return "".join(out)

    def _placeholders(self) -> Iterator[_Placeholder]:
        return (part for part in self._parts if isinstance(part, _Placeholder))


def compile_template(text: str) -> Template:
    """Parse `text`, raising TemplateError with the line and column of any syntax error."""
    return Template(text, tuple(_Parser(text).parse()))


def validate(template: Template, known: Collection[str] = KNOWN_VARIABLES) -> None:
    """Raise TemplateError naming every variable of `template` that is not in `known`.

    Called at configuration load, so a typo such as "customer.frist_name" stops the
    daemon from starting instead of sending "Hi ," to every lead.
    """
    unknown = sorted(template.variables - frozenset(known))
    if not unknown:
        return
    noun = "variable" if len(unknown) == 1 else "variables"
    names = ", ".join(f"'{name}'" for name in unknown)
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


class _Parser:
    """Recursive descent over the source; positions are kept for error messages."""

    def __init__(self, text: str) -> None:
        self._text = text
        self._pos = 0
        self._opening = 0  # where the placeholder being parsed starts

    def parse(self) -> list[str | _Placeholder]:
        parts: list[str | _Placeholder] = []
        text = self._text
        while self._pos < len(text):
            opening = text.find(_OPEN, self._pos)
            literal_end = len(text) if opening < 0 else opening
            stray = text.find(_CLOSE, self._pos, literal_end)
            if stray >= 0:
                raise self._error(f"'{_CLOSE}' without a matching '{_OPEN}'", stray)
            block = text.find(_BLOCK, self._pos, literal_end)
            if block >= 0:
                # Say so rather than send Jinja-looking text to customers verbatim.
                raise self._error(f"'{_BLOCK}' blocks are not supported", block)
            if literal_end > self._pos:
                parts.append(text[self._pos : literal_end])
            if opening < 0:
                break
            self._opening = opening
            self._pos = opening + len(_OPEN)
            parts.append(self._placeholder())
        return parts

    def _placeholder(self) -> _Placeholder:
        self._skip_space()
        path = self._expect(_PATH_RE, "a variable name like customer.first_name")
        self._skip_space()
        default: str | None = None
        if self._text.startswith("|", self._pos):
            self._pos += 1
            self._skip_space()
            default = self._default_filter()
            self._skip_space()
        self._check_not_end()
        if not self._text.startswith(_CLOSE, self._pos):
            raise self._error(f"expected '{_CLOSE}' or '| default(\"...\")'", self._pos)
        self._pos += len(_CLOSE)
        return _Placeholder(tuple(path.group(0).split(".")), default)

    def _default_filter(self) -> str:
        self._check_not_end()
        name = _NAME_RE.match(self._text, self._pos)
        if name is None or name.group(0) != "default":
            found = name.group(0) if name else self._text[self._pos : self._pos + 10]
            raise self._error(
                f"unknown filter '{found}'; only default(\"...\") is supported", self._pos
            )
        self._pos = name.end()
        self._skip_space()
        self._literal("(")
        self._skip_space()
        string = self._expect(_STRING_RE, 'a quoted string, as in default("there")')
        self._skip_space()
        self._literal(")")
        raw = string.group(1) if string.group(1) is not None else string.group(2)
        return _ESCAPE_RE.sub(r"\1", raw)

    def _literal(self, char: str) -> None:
        self._check_not_end()
        if not self._text.startswith(char, self._pos):
            raise self._error(f"expected '{char}'", self._pos)
        self._pos += len(char)

    def _expect(self, pattern: re.Pattern[str], what: str) -> re.Match[str]:
        self._check_not_end()
        match = pattern.match(self._text, self._pos)
        if match is None:
            raise self._error(f"expected {what}", self._pos)
        self._pos = match.end()
        return match

    def _skip_space(self) -> None:
        match = _SPACE_RE.match(self._text, self._pos)
        assert match is not None  # \s* always matches
        self._pos = match.end()

    def _check_not_end(self) -> None:
        if self._pos >= len(self._text):
            raise self._error(f"unclosed '{_OPEN}'", self._opening)

    def _error(self, message: str, pos: int) -> TemplateError:
        line = self._text.count("\n", 0, pos) + 1
        column = pos - (self._text.rfind("\n", 0, pos) + 1) + 1
        snippet = self._text[pos : pos + 20].split("\n", 1)[0]
        return TemplateError(f"{message} at line {line}, column {column} (near {snippet!r})")


def _lookup(context: Mapping[str, Any], path: tuple[str, ...]) -> object:
    """Walk nested mappings only; anything else along the way means "missing"."""
    current: object = context
    for key in path:
        if not isinstance(current, Mapping) or key not in current:
            return None
        current = current[key]
    return current


def _format_value(value: object) -> str:
    """Plain text for a context value: no float noise ("2019", "45.5"), no exponents."""
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
