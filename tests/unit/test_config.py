"""Config loading: every error names file, key path, expectation and value; units convert once."""

from __future__ import annotations

import copy
import dataclasses
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from leadd import config as configmod
from leadd import templates
from tests.conftest import ROOT, base_config

EXAMPLE = ROOT / "config.example.yaml"
EXAMPLE_ENV = {
    "LEADD_DATABASE_URL": "postgresql://leadd@db.internal:5432/leadd",
    "SHOPMONKEY_API_KEY": "sm_live_key",
    "SHOPMONKEY_WEBHOOK_SECRET": "whsec_c2VjcmV0",
    "TWILIO_ACCOUNT_SID": "AC0123456789abcdef0123456789abcdef",
    "TWILIO_AUTH_TOKEN": "twilio-token",
    "SENDGRID_API_KEY": "SG.key",
    "SENDGRID_EVENT_PUBLIC_KEY": "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE",
}


def write(tmp_path: Path, data: Any, name: str = "leadd.yaml") -> Path:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    return path


def problems_of(tmp_path: Path, data: Any, env: dict[str, str] | None = None) -> list[str]:
    """The problems loading `data` raises, with the file's directory cut to read "leadd.yaml: ..."."""
    path = write(tmp_path, data)
    with pytest.raises(configmod.ConfigError) as err:
        configmod.load(path, env=env or {})
    problems = err.value.problems
    assert all(p.startswith(f"{path}: ") for p in problems), problems
    return [p.replace(f"{tmp_path}/", "", 1) for p in problems]


def with_location(**changes: Any) -> dict[str, Any]:
    data = base_config()
    data["locations"][0].update(changes)
    return data


# --------------------------------------------------------------------------- error classes


def test_malformed_yaml_names_file_line_and_column(tmp_path: Path) -> None:
    path = write(tmp_path, "tenant:\n  id: [1, 2\n  name: x\n")
    with pytest.raises(configmod.ConfigError) as err:
        configmod.load(path, env={})
    [problem] = err.value.problems
    assert problem.startswith(f"{path}: line 3, column ")
    assert "invalid YAML" in problem


def test_missing_file_names_file_and_the_fix(tmp_path: Path) -> None:
    path = tmp_path / "absent.yaml"
    with pytest.raises(configmod.ConfigError) as err:
        configmod.load(path, env={})
    assert err.value.problems == [f"{path}: file not found; pass --config PATH or set LEADD_CONFIG"]


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda d: d.update(tenant="Acme"), "leadd.yaml: tenant: expected a mapping, got 'Acme'"),
        (
            lambda d: d["http"].update(port="80"),
            "leadd.yaml: http.port: expected a port number 0-65535, got '80'",
        ),
        (
            lambda d: d.update(demo_mode="yes"),
            "leadd.yaml: demo_mode: expected true or false, got 'yes'",
        ),
        (
            lambda d: d.update(locations={"id": "x"}),
            "leadd.yaml: locations: expected a list, got {'id': 'x'}",
        ),
        (
            lambda d: d["locations"][0]["services"][0].update(price=-1),
            "leadd.yaml: locations[0].services[0].price: expected a price in dollars >= 0 "
            "(e.g. 49.99), got -1",
        ),
    ],
    ids=["section-not-mapping", "port-string", "bool", "list", "price"],
)
def test_wrong_type_names_key_expected_and_got(tmp_path: Path, mutate: Any, expected: str) -> None:
    data = base_config()
    mutate(data)
    assert expected in problems_of(tmp_path, data)


def test_unknown_key_suggests_the_close_one(tmp_path: Path) -> None:
    data = base_config()
    data["twilio"] = {"auth_tokn": "x"}
    data["shutdown_timout"] = "5s"
    problems = problems_of(tmp_path, data)
    assert any(
        p.startswith("leadd.yaml: twilio.auth_tokn: unknown key (did you mean 'auth_token'?)")
        for p in problems
    ), problems
    assert any(
        p.startswith("leadd.yaml: shutdown_timout: unknown key (did you mean 'shutdown_timeout'?)")
        and "allowed here:" in p
        for p in problems
    ), problems


def test_unknown_key_without_a_close_match_lists_allowed_keys(tmp_path: Path) -> None:
    data = base_config()
    data["http"]["zzz"] = 1
    [problem] = problems_of(tmp_path, data)
    assert problem == (
        "leadd.yaml: http.zzz: unknown key; allowed here: body_timeout, header_timeout, "
        "host, max_body_bytes, max_connections, port, public_url"
    )


def test_bad_time_zone(tmp_path: Path) -> None:
    assert problems_of(tmp_path, with_location(timezone="America/Austin")) == [
        "leadd.yaml: locations[0].timezone: expected an IANA time zone such as "
        "America/Chicago, got 'America/Austin'"
    ]


@pytest.mark.parametrize("phone", ["512-555-0100", "+1555", "call us"])
def test_bad_phone(tmp_path: Path, phone: str) -> None:
    assert problems_of(tmp_path, with_location(phone=phone)) == [
        f'leadd.yaml: locations[0].phone: expected an E.164 phone such as "+15125550100", '
        f"got {phone!r}"
    ]


@pytest.mark.parametrize("hours", ["9-5", "09:00-09:00", "25:00-26:00", "08:00-12:60"])
def test_bad_hours_string(tmp_path: Path, hours: str) -> None:
    data = base_config()
    data["locations"][0]["hours"]["mon"] = hours
    assert problems_of(tmp_path, data) == [
        f'leadd.yaml: locations[0].hours.mon: expected "HH:MM-HH:MM", a list of them, or '
        f'"closed", got {hours!r}'
    ]


def test_duplicate_location_id(tmp_path: Path) -> None:
    data = base_config()
    data["locations"].append(copy.deepcopy(data["locations"][0]))
    assert problems_of(tmp_path, data) == [
        "leadd.yaml: locations[1].id: duplicate location id 'downtown'; ids must be unique"
    ]


def test_bad_uuid(tmp_path: Path) -> None:
    data = base_config(tenant={"id": "acme-1", "name": "Acme"})
    assert problems_of(tmp_path, data) == ["leadd.yaml: tenant.id: expected a UUID, got 'acme-1'"]


@pytest.mark.parametrize(
    ("section", "key", "value", "expected"),
    [
        ("http", "public_url", "leads.example.com", "an http(s):// URL"),
        ("chat", "base_url", "ftp://chat.example.com", "an http(s):// URL"),
        ("database", "url", "mysql://db/leadd", "a postgresql:// URL"),
    ],
)
def test_bad_url(tmp_path: Path, section: str, key: str, value: str, expected: str) -> None:
    data = base_config()
    data.setdefault(section, {})[key] = value
    assert problems_of(tmp_path, data) == [
        f"leadd.yaml: {section}.{key}: expected {expected}, got {value!r}"
    ]


@pytest.mark.parametrize("value", ["5 minutes", "10x", "-3s", -1, True])
def test_bad_duration(tmp_path: Path, value: Any) -> None:
    data = base_config(touchpoints={"interval": value})
    assert problems_of(tmp_path, data) == [
        f'leadd.yaml: touchpoints.interval: expected a duration such as "10s", got {value!r}'
    ]


def test_missing_env_var_is_an_error_but_the_default_form_is_allowed(tmp_path: Path) -> None:
    data = base_config(twilio={"auth_token": "${TWILIO_AUTH_TOKEN}"})
    assert problems_of(tmp_path, data) == [
        "leadd.yaml: twilio.auth_token: environment variable TWILIO_AUTH_TOKEN is not set; "
        "set it, or write ${TWILIO_AUTH_TOKEN:-} to allow it to be empty"
    ]

    data = base_config(
        twilio={"auth_token": "${TWILIO_AUTH_TOKEN:-}", "account_sid": "${SID:-AC123}"},
        shopmonkey={"webhook_secrets": ["${SM_SECRET:-}", "${SM_OLD_SECRET:-}"]},
    )
    cfg = configmod.load(write(tmp_path, data), env={})
    assert cfg.twilio.auth_token == ""
    assert cfg.twilio.account_sid == "AC123"
    assert cfg.shopmonkey.webhook_secrets == ()  # unset secrets drop out, no error
    assert not cfg.twilio.live

    cfg = configmod.load(write(tmp_path, data), env={"TWILIO_AUTH_TOKEN": "t0k", "SM_SECRET": "s1"})
    assert cfg.twilio.auth_token == "t0k"
    assert cfg.shopmonkey.webhook_secrets == ("s1",)
    assert cfg.twilio.live


def test_several_problems_are_reported_at_once(tmp_path: Path) -> None:
    data = base_config(tenant={"id": "nope", "name": "Acme"}, shutdown_timeout="soon")
    data["locations"][0]["timezone"] = "Nowhere/Land"
    data["locations"][0]["hours"]["tue"] = "8-6"
    data["http"]["prot"] = 3000
    problems = problems_of(tmp_path, data)
    paths = [p.split(": ")[1] for p in problems]
    assert sorted(paths) == sorted(
        [
            "tenant.id",
            "locations[0].timezone",
            "locations[0].hours.tue",
            "shutdown_timeout",
            "http.prot",
        ]
    ), problems
    assert all(p.startswith("leadd.yaml: ") for p in problems)
    assert str(configmod.ConfigError(problems)).count("\n") == len(problems) - 1


def test_empty_file_and_missing_sections(tmp_path: Path) -> None:
    problems = problems_of(tmp_path, "tenant: {}\n")
    assert "leadd.yaml: tenant.id: required: expected a UUID" in problems
    assert "leadd.yaml: tenant.name: required: expected the business name" in problems
    assert "leadd.yaml: locations: required: expected at least one location" in problems


# --------------------------------------------------------------------------- conversions


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30.0), ("5m", 300.0), ("2h", 7200.0), ("1d", 86400.0), ("250ms", 0.25), (45, 45.0)],
)
def test_durations_convert_to_seconds(tmp_path: Path, text: Any, seconds: float) -> None:
    cfg = configmod.load(write(tmp_path, base_config(shutdown_timeout=text)), env={})
    assert cfg.shutdown_timeout == seconds


def test_split_shift_hours_and_closed_days(tmp_path: Path) -> None:
    data = base_config()
    data["locations"][0]["hours"] = {
        "mon": ["08:00-12:00", "13:00-17:30"],
        "tue": "08:00-12:00, 13:00-17:00",
        "fri": "18:00-02:00",  # crosses midnight
        "sun": "closed",
    }
    [loc] = configmod.load(write(tmp_path, data), env={}).locations
    assert loc.hours == {
        0: ((480, 720), (780, 1050)),
        1: ((480, 720), (780, 1020)),
        4: ((1080, 120),),
    }


# --------------------------------------------------------------------------- config.example.yaml


def test_example_loads_cleanly_with_env_set() -> None:
    cfg = configmod.load(EXAMPLE, env=EXAMPLE_ENV)
    assert cfg.database.url == EXAMPLE_ENV["LEADD_DATABASE_URL"]
    assert cfg.providers_summary() == {"shopmonkey": "live", "twilio": "live", "sendgrid": "live"}
    assert cfg.shopmonkey.webhook_secrets == ("whsec_c2VjcmV0",)
    assert cfg.compliance.state_rules["FL"][6] is None
    [loc] = cfg.locations
    assert loc.hours[4] == ((480, 720), (780, 1080))
    assert len(cfg.sequences["default"]) == 3


def test_example_loads_with_no_env_and_then_dry_runs() -> None:
    cfg = configmod.load(EXAMPLE, env={})
    assert cfg.database.url is None  # embedded
    assert cfg.providers_summary()["twilio"] == "dry-run"
    assert cfg.providers_summary()["sendgrid"] == "dry-run"
    assert cfg.shopmonkey.webhook_secrets == ()


def test_example_templates_use_only_known_variables() -> None:
    cfg = configmod.load(EXAMPLE, env={})
    used: set[str] = set()
    for step in cfg.sequences["default"]:
        for text in filter(None, (step.template, step.subject)):
            template = templates.compile_template(text)
            templates.validate(template)
            used |= template.variables
    assert len(used) >= 10, used


def _documented_keys() -> dict[str, set[str]]:
    data = yaml.safe_load(EXAMPLE.read_text())
    return {
        "": set(data),
        **{
            section: set(data[section])
            for section, value in data.items()
            if isinstance(value, dict)
        },
        "location": set(data["locations"][0]),
        "step": set().union(*(set(s) for s in data["sequences"]["default"])),
        "service": set(data["locations"][0]["services"][0]),
    }


def test_example_documents_every_key_config_accepts() -> None:
    """Each dataclass field the loader reads appears in config.example.yaml."""
    sections: dict[str, type] = {
        "tenant": configmod.TenantConfig,
        "database": configmod.DatabaseConfig,
        "http": configmod.HttpConfig,
        "shopmonkey": configmod.ShopmonkeyConfig,
        "twilio": configmod.TwilioConfig,
        "sendgrid": configmod.SendgridConfig,
        "touchpoints": configmod.TouchpointsConfig,
        "compliance": configmod.ComplianceConfig,
        "leads": configmod.LeadsConfig,
        "chat": configmod.ChatConfig,
        "logging": configmod.LoggingConfig,
        "location": configmod.Location,
        "step": configmod.SequenceStep,
        "service": configmod.Service,
        "": configmod.Config,
    }
    documented = _documented_keys()
    for section, cls in sections.items():
        fields = {f.name for f in dataclasses.fields(cls)} - {"source"}
        assert fields <= documented[section], (
            section or "(top level)",
            fields - documented[section],
        )
    assert "${" in EXAMPLE.read_text()  # secrets come from the environment


# --------------------------------------------------------------------------- CLI


def run_cli(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in EXAMPLE_ENV and k != "LEADD_CONFIG"}
    return subprocess.run(
        [sys.executable, "-m", "leadd", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_check_config_cli_accepts_the_example_and_prints_a_summary() -> None:
    result = run_cli("check-config", "--config", str(EXAMPLE))
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "tenant:     Acme Auto Care (6f1c1c53-3f3e-4d0a-9d7e-0a6b1b1e0001)" in out
    assert "  - downtown: Acme Auto Care Downtown [America/Chicago]" in out
    assert "instant_ack(sms+0s), estimate_email(email+0s), day1_followup(sms+86400s)" in out
    assert "twilio:     dry-run" in out
    assert "Traceback" not in result.stdout + result.stderr


def test_check_config_cli_lists_every_problem_and_exits_2(tmp_path: Path) -> None:
    data = base_config(tenant={"id": "x", "name": "Acme"})
    data["locations"][0]["phone"] = "555"
    data["twilio"] = {"auth_token": "${LEADD_TEST_UNSET_TOKEN}"}
    path = write(tmp_path, data)
    result = run_cli("check-config", "--config", str(path))
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert lines[0] == "leadd: invalid configuration (3 problem(s)):"
    assert f"  {path}: tenant.id: expected a UUID, got 'x'" in lines
    assert any(
        line.startswith(f"  {path}: locations[0].phone: expected an E.164") for line in lines
    )
    assert any("LEADD_TEST_UNSET_TOKEN is not set" in line for line in lines)
    assert result.stdout == ""
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("content", "needle"),
    [(None, "file not found"), ("a: [1\n", "invalid YAML"), ("- 1\n", "expected a mapping")],
    ids=["missing", "malformed", "not-a-mapping"],
)
def test_check_config_cli_never_prints_a_traceback(
    tmp_path: Path, content: str | None, needle: str
) -> None:
    path = tmp_path / "c.yaml"
    if content is not None:
        path.write_text(content)
    result = run_cli("check-config", "--config", str(path))
    assert result.returncode == 2
    assert needle in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_warnings_name_settings_that_load_but_will_not_work() -> None:
    """check-config and the start-up log warn about valid settings that silently break
    intake or callbacks: no webhook secret, or live providers with a loopback public URL."""
    data = base_config()
    data["shopmonkey"] = {"webhook_secrets": []}
    data["http"] = {"public_url": "http://127.0.0.1:3000"}
    data["twilio"] = {"account_sid": "AC1", "auth_token": "t", "from_number": "+15125550199"}
    found = configmod.warnings(configmod.build(data, source="t.yaml", env={}))
    assert any("webhook_secrets is empty" in w for w in found)
    assert any("http.public_url is http://127.0.0.1:3000" in w for w in found)

    fine = configmod.build(base_config(), source="t.yaml", env={})
    assert configmod.warnings(fine) == []


# --------------------------------------------------------------------------- structure


def test_absent_keys_take_the_dataclass_defaults() -> None:
    """Defaults are written once, on the model: a config that sets nothing in a section gets
    exactly the section's dataclass defaults."""
    data = base_config()
    for section in (
        "http",
        "shopmonkey",
        "twilio",
        "touchpoints",
        "compliance",
        "leads",
        "shutdown_timeout",
    ):
        data.pop(section, None)
    cfg = configmod.build(data, source="t.yaml", env={})
    assert cfg.http == configmod.HttpConfig()
    assert cfg.http.public_url == "http://127.0.0.1:3000"
    assert cfg.shopmonkey == configmod.ShopmonkeyConfig()
    assert cfg.twilio == configmod.TwilioConfig()
    assert cfg.touchpoints == configmod.TouchpointsConfig()
    assert cfg.compliance == configmod.ComplianceConfig()
    assert cfg.leads == configmod.LeadsConfig()
    assert cfg.shutdown_timeout == configmod.Config.shutdown_timeout


def test_config_does_not_import_sequences() -> None:
    """The config package sits below sequences (which reads Config): loading a configuration,
    template checks included, never imports sequences, so there is no import circle."""
    code = (
        "import sys, leadd.config; leadd.config.demo(env={}); "
        "assert 'leadd.sequences' not in sys.modules"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
