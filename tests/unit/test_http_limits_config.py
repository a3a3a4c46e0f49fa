"""The HTTP limits in the config: defaults, units, and a clear error for values that cannot work."""

from __future__ import annotations

import pytest

from leadd import config as configmod
from tests.conftest import base_config


def build_http(**http: object) -> configmod.HttpConfig:
    data = base_config()
    data["http"].update(http)
    return configmod.build(data, source="leadd.yaml", env={}).http


def test_defaults() -> None:
    http = build_http()
    assert (http.header_timeout, http.body_timeout, http.max_connections) == (30.0, 30.0, 256)


def test_durations_and_cap_are_read() -> None:
    http = build_http(header_timeout="5s", body_timeout="250ms", max_connections=10)
    assert (http.header_timeout, http.body_timeout, http.max_connections) == (5.0, 0.25, 10)


def test_public_url_default_keeps_the_limits() -> None:
    data = base_config()
    data["http"] = {"host": "127.0.0.1", "port": 3001, "header_timeout": "7s"}
    http = configmod.build(data, source="leadd.yaml", env={}).http
    assert (http.public_url, http.header_timeout) == ("http://127.0.0.1:3001", 7.0)


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("header_timeout", "0s", "a duration above 0"),
        ("body_timeout", -1, "a duration above 0"),
        ("max_connections", 0, "a positive integer"),
    ],
)
def test_values_that_cannot_work_are_refused(key: str, value: object, expected: str) -> None:
    with pytest.raises(configmod.ConfigError) as err:
        build_http(**{key: value})
    [problem] = err.value.problems
    assert problem.startswith(f"leadd.yaml: http.{key}: expected {expected}")
