"""How a setting is declared: once, on its dataclass field.

A field made with these helpers carries its default, its converter and what an error says was
expected, so adding a setting is one line in model.py: `node.read` finds it, reads it, converts
it, reports it in "unknown key ... allowed here:" lists, and leaves the dataclass default in
place when the key is absent. Fields without a Spec (nested sections, lists) are read by hand
in build.py.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import Field, dataclass, field
from typing import Any, TypeVar

from leadd.config import convert

T = TypeVar("T")
_SPEC = "leadd.config.spec"


@dataclass(frozen=True)
class Spec:
    conv: Callable[[Any], Any]
    expected: str
    required: bool = False


def spec_of(f: Field[Any]) -> Spec | None:
    spec = f.metadata.get(_SPEC)
    return spec if isinstance(spec, Spec) else None


def required(conv: Callable[[Any], Any], expected: str) -> Mapping[str, Spec]:
    """Metadata for a key that must be present: `x: str = field(metadata=required(...))`."""
    return {_SPEC: Spec(conv, expected, required=True)}


def optional(conv: Callable[[Any], Any], expected: str) -> Mapping[str, Spec]:
    """Metadata for a key whose default depends on other settings (given by the caller)."""
    return {_SPEC: Spec(conv, expected)}


def setting(default: T, conv: Callable[[Any], T], expected: str) -> T:
    """An optional key with a fixed default."""
    return field(default=default, metadata={_SPEC: Spec(conv, expected)})


def duration(default: float, expected: str | None = None) -> float:
    example = f'a duration such as "{convert.format_duration(default)}"'
    return setting(default, convert.parse_duration, expected or example)


def flag(default: bool) -> bool:
    return setting(default, convert.flag, "true or false")


def count(default: int) -> int:
    return setting(default, convert.positive_int, "a positive integer")


def rate(default: float) -> float:
    return setting(default, convert.positive_number, "a positive number")


def text(default: str = "", expected: str = "a string") -> str:
    return setting(default, convert.text, expected)


def http_url(default: str) -> str:
    return setting(default, convert.http_url, "an http(s):// URL")


def phone_number(example: str) -> str | None:
    return setting(None, convert.e164_phone, f'an E.164 phone such as "{example}"')
