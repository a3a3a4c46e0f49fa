"""Parsed YAML -> Config: the sections a field table cannot read alone (hours, state rules,
sequences, locations), and the checks that span sections: unique location ids, known
sequences, coherent quiet hours, and every step's template against the variables it gets."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any

from leadd import templates
from leadd.compliance import DEFAULT_STATE_RULES, QuietHours, Window, parse_window
from leadd.config import convert
from leadd.config.convert import WEEKDAYS
from leadd.config.demo import DEFAULT_SEQUENCE
from leadd.config.model import (
    ApiConfig,
    ApiToken,
    ChatConfig,
    ComplianceConfig,
    Config,
    DatabaseConfig,
    HttpConfig,
    LeadsConfig,
    Location,
    LoggingConfig,
    SendgridConfig,
    SequenceStep,
    Service,
    ShopmonkeyConfig,
    StaffUser,
    TenantConfig,
    TouchpointsConfig,
    TwilioConfig,
)
from leadd.config.node import ConfigError, Node, Problems, substitute_env

Sequences = dict[str, tuple[SequenceStep, ...]]


def build(
    data: Any, source: str = "<built-in demo>", env: Mapping[str, str] | None = None
) -> Config:
    """Turn parsed YAML into a Config, or raise ConfigError listing every problem."""
    ctx = Problems(source)
    data = substitute_env(data, os.environ if env is None else env, ctx)
    root = Node(ctx, "", data)
    if not root.ok:
        raise ConfigError(ctx.problems or [f"{source}: (top level): expected a mapping"])

    # Sections in the order config.example.yaml documents them, so problems read in that order.
    tenant = root.child("tenant").read(TenantConfig)
    database = root.child("database").read(DatabaseConfig)
    http = root.child("http").read(HttpConfig)
    shopmonkey = root.child("shopmonkey").read(ShopmonkeyConfig)
    twilio = root.child("twilio").read(TwilioConfig)
    sendgrid = root.child("sendgrid").read(SendgridConfig, {"from_name": tenant.name})
    touchpoints = root.child("touchpoints").read(TouchpointsConfig)
    compliance = _compliance(root.child("compliance"))
    leads = root.child("leads").read(LeadsConfig)
    chat = root.child("chat").read(ChatConfig, {"base_url": f"{http.public_url}/c"})
    sequences = _sequences(root.child("sequences"))
    locations = _locations(root, twilio.from_number, sequences)
    staff = _staff(root, {loc.id for loc in locations})
    logging_cfg = root.child("logging").read(LoggingConfig)
    cfg = root.read(
        Config,
        tenant=tenant,
        locations=locations,
        database=database,
        http=http,
        shopmonkey=shopmonkey,
        twilio=twilio,
        sendgrid=sendgrid,
        touchpoints=touchpoints,
        compliance=compliance,
        leads=leads,
        chat=chat,
        staff=staff,
        sequences=sequences,
        logging=logging_cfg,
        api=_api(root.child("api")),
        source=source,
    )
    if ctx.problems:
        raise ConfigError(ctx.problems)
    return cfg


def _api(node: Node) -> ApiConfig:
    """api.tokens: names unique, secrets of 16+ characters (never echoed), role read|write."""
    tokens = []
    for item in node.items("tokens"):
        secret = item.raw("token")
        if not isinstance(secret, str) or len(secret.strip()) < 16:
            got = "nothing" if not secret else f"{len(str(secret).strip())} characters"
            item.ctx.problem(item.key("token"), f"expected a secret of 16+ characters, got {got}")
        name = item.value(
            "name", convert.nonempty, "a name for the token (its actor name)", required=True
        )
        role = item.value("role", convert.choice("read", "write"), "read or write", required=False)
        tokens.append(
            ApiToken(
                name=name if isinstance(name, str) else "",
                token=str(secret or "").strip(),
                role=role if isinstance(role, str) else "read",
            )
        )
        item.done()
    names = [t.name for t in tokens]
    for i, name in enumerate(names):
        if name and name in names[:i]:
            node.ctx.problem(f"api.tokens[{i}].name", f"duplicate token name {name!r}")
    node.done()
    return ApiConfig(tokens=tuple(tokens))


def _compliance(node: Node) -> ComplianceConfig:
    compliance = node.read(ComplianceConfig, state_rules=_state_rules(node.child("state_rules")))
    try:
        QuietHours(compliance.quiet_hours, {**DEFAULT_STATE_RULES, **compliance.state_rules})
    except ValueError as exc:
        text = str(exc)
        where = "quiet_hours" if text.startswith("default") else "state_rules"
        node.ctx.problem(node.key(where), text.removeprefix("default: "))
    return compliance


def _state_rules(node: Node) -> dict[str, dict[int, Window | None]]:
    out: dict[str, dict[int, Window | None]] = {}
    if not node.ok:
        return out
    for state in list(node.data):
        day_node = node.child(str(state))
        if not re.fullmatch(r"[A-Z]{2}", str(state)):
            node.ctx.error(day_node.path, "a two-letter US state code such as TX", state)
        rules: dict[int, Window | None] = {}
        for i, day in enumerate(WEEKDAYS):
            value = day_node.raw(day)
            if value is None:
                continue
            if value == "closed":
                rules[i] = None
                continue
            try:
                rules[i] = parse_window(str(value))
            except ValueError:
                node.ctx.error(day_node.key(day), '"HH:MM-HH:MM" or "closed"', value)
        day_node.done()
        out[str(state)] = rules
    return out


def _sequences(node: Node) -> Sequences:
    sequences: Sequences = {}
    if node.ok:
        for name in list(node.data):
            steps = node.items(str(name))
            if not steps:
                node.ctx.problem(node.key(str(name)), "expected a non-empty list of steps")
            sequences[str(name)] = tuple(_step(n, i) for i, n in enumerate(steps))
    sequences.setdefault("default", DEFAULT_SEQUENCE)
    for name, sequence in sequences.items():
        for i, step in enumerate(sequence):
            _check_templates(node.ctx, f"sequences.{name}[{i}]", step)
    return sequences


def _step(node: Node, index: int) -> SequenceStep:
    step = node.read(SequenceStep, {"name": f"step{index + 1}"})
    if step.channel == "email" and not step.subject:
        node.ctx.problem(node.key("subject"), "required for an email step: expected a subject")
    return step


def _check_templates(ctx: Problems, path: str, step: SequenceStep) -> None:
    """Every template compiled and checked against the variables it will get: a typo is a
    start-up error naming the step, not a failed send at 2 am."""
    known = templates.SMS_VARIABLES if step.channel == "sms" else templates.KNOWN_VARIABLES
    for key, text in (("template", step.template), ("subject", step.subject)):
        if text is None:  # a required template already reported missing
            continue
        try:
            templates.validate(templates.compile_template(text), known)
        except templates.TemplateError as exc:
            ctx.problem(f"{path}.{key} (step '{step.name}')", str(exc))


def _locations(root: Node, sms_default: str | None, sequences: Sequences) -> tuple[Location, ...]:
    locations = tuple(_location(n, sms_default) for n in root.items("locations"))
    if not locations:
        root.ctx.problem("locations", "required: expected at least one location")
    seen: set[str] = set()
    for i, loc in enumerate(locations):
        if loc.id in seen:
            root.ctx.problem(
                f"locations[{i}].id", f"duplicate location id {loc.id!r}; ids must be unique"
            )
        seen.add(loc.id)
        if loc.sequence not in sequences:
            root.ctx.problem(
                f"locations[{i}].sequence",
                f"unknown sequence {loc.sequence!r}; defined: {', '.join(sorted(sequences))}",
            )
    return locations


def _staff(root: Node, location_ids: set[str]) -> tuple[StaffUser, ...]:
    """Inbox users: unique e-mails, and only locations that exist."""
    staff: list[StaffUser] = []
    for i, node in enumerate(root.items("staff")):
        user = node.read(StaffUser)
        for loc in user.locations or ():
            if loc not in location_ids:
                known = ", ".join(sorted(location_ids))
                node.ctx.problem(
                    f"staff[{i}].locations", f"unknown location {loc!r}; known: {known}"
                )
        if user.email is not None and any(u.email == user.email for u in staff):
            node.ctx.problem(f"staff[{i}].email", f"{user.email!r} is listed twice")
        staff.append(user)
    return tuple(staff)


def _location(node: Node, sms_default: str | None) -> Location:
    hours = node.child("hours")
    return node.read(
        Location,
        {"sms_from": sms_default},
        hours=_hours(hours) if hours.ok else {},
        services=tuple(item.read(Service) for item in node.items("services")),
    )


def _hours(node: Node) -> dict[int, tuple[Window, ...]]:
    out: dict[int, tuple[Window, ...]] = {}
    for i, day in enumerate(WEEKDAYS):
        value = node.raw(day)
        if value is None or value == "closed":
            continue
        shifts = value if isinstance(value, list) else str(value).split(",")
        windows: list[Window] = []
        for shift in shifts:
            try:
                windows.append(parse_window(str(shift)))
            except ValueError:
                node.ctx.error(node.key(day), '"HH:MM-HH:MM", a list of them, or "closed"', value)
                break
        out[i] = tuple(windows)
    node.done()
    return out
