"""Sequences: laying a location's steps out in time, and checking every template when the
configuration loads (a typo is a start-up error naming the step, never a blank at send time)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from leadd import config as configmod
from leadd import sequences, templates
from tests.conftest import base_config

CREATED = dt.datetime(2026, 3, 7, 15, 30, tzinfo=dt.UTC)


def build(steps: list[dict[str, Any]], **extra: Any) -> configmod.Config:
    data = base_config(sequences={"default": steps}, **extra)
    return configmod.build(data, source="test.yaml", env={})  # checks every step's template


def sms(name: str, delay: str, after: str, **kw: Any) -> dict[str, Any]:
    return {"name": name, "channel": "sms", "delay": delay, "after": after, "template": "Hi", **kw}


def test_plan_lays_steps_out_from_creation_and_from_the_previous_step() -> None:
    cfg = build(
        [
            sms("ack", "0s", "created"),
            sms("nudge", "2h", "previous"),
            sms("day1", "1d", "created"),
            sms("day1_late", "30m", "previous"),
            {
                "name": "mail",
                "channel": "email",
                "delay": "90s",
                "after": "previous",
                "subject": "Hi",
                "template": "Hello",
            },
        ]
    )
    name, planned = sequences.plan(cfg, cfg.locations[0], CREATED)
    assert name == "default"
    assert [(p.index, p.name, p.channel, p.due_at - CREATED) for p in planned] == [
        (0, "ack", "sms", dt.timedelta(0)),
        (1, "nudge", "sms", dt.timedelta(hours=2)),
        (2, "day1", "sms", dt.timedelta(days=1)),
        (3, "day1_late", "sms", dt.timedelta(days=1, minutes=30)),
        (4, "mail", "email", dt.timedelta(days=1, minutes=31, seconds=30)),
    ]


def test_plan_uses_the_locations_own_sequence() -> None:
    data = base_config(
        sequences={
            "default": [sms("ack", "0s", "created")],
            "vip": [sms("call", "5m", "created"), sms("again", "1h", "previous")],
        }
    )
    data["locations"][0]["sequence"] = "vip"
    cfg = configmod.build(data, source="t.yaml", env={})
    name, planned = sequences.plan(cfg, cfg.locations[0], CREATED)
    assert name == "vip"
    assert [p.due_at for p in planned] == [
        CREATED + dt.timedelta(minutes=5),
        CREATED + dt.timedelta(minutes=65),
    ]


def test_step_of_tolerates_steps_removed_from_config() -> None:
    cfg = build([sms("ack", "0s", "created")])
    assert sequences.step_of(cfg, "default", 0) is not None
    assert sequences.step_of(cfg, "default", 1) is None
    assert sequences.step_of(cfg, "gone", 0) is None


def test_default_sequence_templates_are_valid() -> None:
    """The built-in sequence passes the check every configured step gets."""
    for step in configmod.DEFAULT_SEQUENCE:
        known = templates.SMS_VARIABLES if step.channel == "sms" else templates.KNOWN_VARIABLES
        for text in filter(None, (step.template, step.subject)):
            templates.validate(templates.compile_template(text), known)


@pytest.mark.parametrize(
    ("step", "where", "message"),
    [
        (
            sms("ack", "0s", "created", template="Hi {{ customer.frist_name }}"),
            "sequences.default[0].template (step 'ack')",
            "unknown variable 'customer.frist_name'",
        ),
        (
            # SMS opt-out is the STOP keyword; an unsubscribe link exists only in e-mail.
            sms("ack", "0s", "created", template="Bye {{ unsubscribe.link }}"),
            "sequences.default[0].template (step 'ack')",
            "unknown variable 'unsubscribe.link'",
        ),
        (
            {
                "name": "estimate",
                "channel": "email",
                "delay": "1h",
                "after": "previous",
                "subject": "Quote for {{ vehicle.colour }}",
                "template": "Hello",
            },
            "sequences.default[0].subject (step 'estimate')",
            "unknown variable 'vehicle.colour'",
        ),
        (
            sms("ack", "0s", "created", template="Hi {{ custmer.first_name }}"),
            "sequences.default[0].template (step 'ack')",
            "unknown variable 'custmer.first_name' (did you mean 'customer.first_name'?)",
        ),
        (
            sms("ack", "0s", "created", template="Hi {{ customer['frist_name'] }}"),
            "sequences.default[0].template (step 'ack')",
            "unknown variable 'customer.frist_name'",
        ),
        (
            sms("ack", "0s", "created", template="Hi {{ customer.first_name | uper }}"),
            "sequences.default[0].template (step 'ack')",
            "line 1: unknown filter 'uper' (did you mean 'upper'?)",
        ),
        (
            # Jinja itself only finds this filter when the branch runs, at send time.
            sms(
                "ack",
                "0s",
                "created",
                template="{% if lead.order_number %}{{ 1 | uper }}{% endif %}",
            ),
            "sequences.default[0].template (step 'ack')",
            "unknown filter 'uper'",
        ),
        (
            sms("ack", "0s", "created", template="Hi\n{{ customer.first_name "),
            "sequences.default[0].template (step 'ack')",
            "line 2: unexpected end of template",
        ),
    ],
)
def test_template_errors_fail_config_load_naming_the_step(
    step: dict[str, Any], where: str, message: str
) -> None:
    with pytest.raises(configmod.ConfigError) as info:
        build([step])
    [problem] = info.value.problems
    assert problem.startswith(f"test.yaml: {where}: ")
    assert message in problem


def test_email_templates_may_use_the_unsubscribe_link(tmp_path: Any) -> None:
    import yaml

    data = base_config(
        sequences={
            "default": [
                {
                    "name": "mail",
                    "channel": "email",
                    "delay": "0s",
                    "after": "created",
                    "subject": "Hi {{ customer.first_name }}",
                    "template": "Stop: {{ unsubscribe.link }}",
                }
            ]
        }
    )
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    cfg = configmod.load(path, env={})  # the real loader validates templates
    assert cfg.sequences["default"][0].name == "mail"
    data["sequences"]["default"][0]["template"] = "{{ chat.lnk }}"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(configmod.ConfigError, match=r"step 'mail'.*unknown variable 'chat.lnk'"):
        configmod.load(path, env={})


def test_template_errors_are_reported_with_the_other_problems() -> None:
    """A template typo is listed together with every other problem, in one pass."""
    data = base_config(
        tenant={"id": "nope", "name": "Acme"},
        sequences={"default": [sms("ack", "0s", "created", template="Hi {{ vehicle.colour }}")]},
    )
    with pytest.raises(configmod.ConfigError) as info:
        configmod.build(data, source="t.yaml", env={})
    assert info.value.problems == [
        "t.yaml: tenant.id: expected a UUID, got 'nope'",
        "t.yaml: sequences.default[0].template (step 'ack'): unknown variable 'vehicle.colour'; "
        f"known: {', '.join(sorted(templates.SMS_VARIABLES))}",
    ]
