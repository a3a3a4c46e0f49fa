"""The `api` config section: tokens validated with errors naming the key, never the secret."""

from __future__ import annotations

from typing import Any

import pytest

from leadd import config as configmod
from tests.conftest import base_config

SECRET = "s3cret-token-0123456789"


def build(tokens: Any, env: dict[str, str] | None = None) -> configmod.Config:
    return configmod.build(base_config(api={"tokens": tokens}), source="t.yaml", env=env or {})


def problems(tokens: Any) -> list[str]:
    with pytest.raises(configmod.ConfigError) as err:
        build(tokens)
    return err.value.problems


def test_tokens_from_the_environment() -> None:
    cfg = build(
        [
            {"name": "dashboard", "token": "${READ_TOKEN}", "role": "read"},
            {"name": "ops-bot", "token": SECRET, "role": "write"},
        ],
        env={"READ_TOKEN": "r" * 20},
    )
    assert [(t.name, t.token, t.role) for t in cfg.api.tokens] == [
        ("dashboard", "r" * 20, "read"),
        ("ops-bot", SECRET, "write"),
    ]
    assert SECRET not in repr(cfg)  # a config printed or logged shows no token


def test_no_api_section_means_no_tokens() -> None:
    cfg = configmod.build(base_config(), source="t.yaml", env={})
    assert cfg.api.tokens == ()


@pytest.mark.parametrize(
    ("tokens", "expected"),
    [
        (
            [{"name": "a", "token": "short-secret", "role": "read"}],
            "t.yaml: api.tokens[0].token: expected a secret of 16+ characters, got 12 characters",
        ),
        (
            [{"name": "a", "role": "read"}],
            "t.yaml: api.tokens[0].token: expected a secret of 16+ characters, got nothing",
        ),
        (
            [{"name": "a", "token": SECRET, "role": "admin"}],
            "t.yaml: api.tokens[0].role: expected read or write, got 'admin'",
        ),
        (
            [{"token": SECRET, "role": "read"}],
            "t.yaml: api.tokens[0].name: required: expected a name for the token (its actor name)",
        ),
        (
            [
                {"name": "a", "token": SECRET, "role": "read"},
                {"name": "a", "token": SECRET + "x", "role": "write"},
            ],  # fmt: skip
            "t.yaml: api.tokens[1].name: duplicate token name 'a'",
        ),
        (
            [{"name": "a", "token": SECRET, "role": "read", "scope": "all"}],
            "t.yaml: api.tokens[0].scope: unknown key; allowed here: name, role, token",
        ),
        ("nope", "t.yaml: api.tokens: expected a list, got 'nope'"),
    ],
)
def test_bad_tokens_name_the_key(tokens: Any, expected: str) -> None:
    found = problems(tokens)
    assert found == [expected]
    assert all(SECRET not in p and "short-secret" not in p for p in found)


def test_an_unset_secret_is_an_error_not_an_open_api() -> None:
    found = problems([{"name": "a", "token": "${MISSING:-}", "role": "write"}])
    assert found == [
        "t.yaml: api.tokens[0].token: expected a secret of 16+ characters, got nothing"
    ]
