"""Reading a YAML document: key paths, collected problems, unknown keys, ${ENV} substitution.

Every problem names the file, the key path, what was expected and what was found
(`config.yaml: locations[2].hours.mon: expected "HH:MM-HH:MM", got "9-5"`), and all of them
are collected in one pass. Unknown keys are errors: a typo must never silently disable a
feature.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from leadd.config import convert
from leadd.config.fields import spec_of

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

D = TypeVar("D", bound="DataclassInstance")
_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(:-([^}]*))?\}")
_MISSING: Any = object()  # a key absent, or present with a bad value (already reported)


class ConfigError(Exception):
    """Every problem found in one pass, each naming file, key path, expectation and value."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


class Problems:
    """The problems found so far in one source."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.problems: list[str] = []

    def problem(self, path: str, message: str) -> None:
        self.problems.append(f"{self.source}: {path}: {message}")

    def error(self, path: str, expected: str, got: Any) -> None:
        self.problem(path, f"expected {expected}, got {got!r}")


class Node:
    """A position in the YAML document: reads typed keys and remembers which were used."""

    def __init__(self, ctx: Problems, path: str, data: Any) -> None:
        self.ctx, self.path, self.data = ctx, path, data
        self.used: set[str] = set()
        self.ok = isinstance(data, Mapping)
        if data is not None and not self.ok:
            ctx.error(path or "(top level)", "a mapping", data)

    def key(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def raw(self, key: str) -> Any:
        self.used.add(key)
        return self.data.get(key) if self.ok else None

    def has(self, key: str) -> bool:
        return self.ok and key in self.data and self.data[key] is not None

    def value(self, key: str, conv: Callable[[Any], Any], expected: str, *, required: bool) -> Any:
        """The converted value, or _MISSING when absent or bad (and then reported)."""
        value = self.raw(key)
        if value is None:
            if required:
                self.ctx.problem(self.key(key), f"required: expected {expected}")
            return _MISSING
        try:
            return conv(value)
        except convert.Unquoted as exc:
            self.ctx.problem(self.key(key), f"expected {expected}, got {value!r} ({exc})")
            return _MISSING
        except (ValueError, TypeError):
            self.ctx.error(self.key(key), expected, value)
            return _MISSING

    def read(self, cls: type[D], defaults: Mapping[str, Any] | None = None, **given: Any) -> D:
        """Build the dataclass `cls` from this mapping: each field declared with a Spec is read
        and converted; an absent key keeps the field's default (or `defaults[name]`, for
        defaults that depend on other settings). `given` are fields the caller read itself.
        Ends the node: any key not read is reported as unknown."""
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            spec = spec_of(f)
            if spec is None or f.name in given:
                continue
            value = self.value(f.name, spec.conv, spec.expected, required=spec.required)
            if value is not _MISSING:
                values[f.name] = value
            elif defaults and f.name in defaults:
                values[f.name] = defaults[f.name]
            elif spec.required:
                # Only while collecting problems: build() raises before this object escapes.
                values[f.name] = None
        self.done()
        return cls(**values, **given)

    def child(self, key: str) -> Node:
        return Node(self.ctx, self.key(key), self.raw(key))

    def items(self, key: str) -> list[Node]:
        value = self.raw(key)
        if value is None:
            return []
        if not isinstance(value, list):
            self.ctx.error(self.key(key), "a list", value)
            return []
        return [Node(self.ctx, f"{self.key(key)}[{i}]", v) for i, v in enumerate(value)]

    def done(self) -> None:
        if not self.ok:
            return
        for key in self.data:
            if key not in self.used:
                near = difflib.get_close_matches(str(key), sorted(self.used), n=1, cutoff=0.75)
                hint = f" (did you mean '{near[0]}'?)" if near else ""
                allowed = ", ".join(sorted(self.used))
                self.ctx.problem(self.key(str(key)), f"unknown key{hint}; allowed here: {allowed}")


def substitute_env(data: Any, env: Mapping[str, str], ctx: Problems, path: str = "") -> Any:
    """${NAME} and ${NAME:-default} in every string; an unset ${NAME} is a problem."""
    if isinstance(data, str):

        def repl(m: re.Match[str]) -> str:
            name, has_default, default = m.group(1), m.group(2), m.group(3)
            if name in env:
                return env[name]
            if has_default is not None:
                return default or ""
            ctx.problem(
                path or "(top level)",
                f"environment variable {name} is not set; set it, or write ${{{name}:-}} "
                "to allow it to be empty",
            )
            return ""

        return _ENV.sub(repl, data)
    if isinstance(data, Mapping):
        return {
            k: substitute_env(v, env, ctx, f"{path}.{k}" if path else str(k))
            for k, v in data.items()
        }
    if isinstance(data, list):
        return [substitute_env(v, env, ctx, f"{path}[{i}]") for i, v in enumerate(data)]
    return data
