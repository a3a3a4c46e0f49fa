"""Follow-up sequences: planning touch points for a new lead, and template checks at load time."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

from leadd import templates

if TYPE_CHECKING:
    from leadd.config import Config, Location, SequenceStep

# unsubscribe.link only exists in e-mail (SMS opt-out is the STOP keyword).
SMS_VARIABLES = templates.KNOWN_VARIABLES - {"unsubscribe.link"}


@dataclass(frozen=True)
class PlannedStep:
    index: int
    name: str
    channel: str
    due_at: dt.datetime


def plan(cfg: Config, location: Location, created_at: dt.datetime) -> tuple[str, list[PlannedStep]]:
    """The location's sequence laid out in time; quiet hours are applied when a step is sent,
    because the recipient's time zone is only known once the lead is enriched."""
    steps = cfg.sequences[location.sequence]
    out: list[PlannedStep] = []
    previous = created_at
    for i, step in enumerate(steps):
        base = created_at if step.after == "created" else previous
        due = base + dt.timedelta(seconds=step.delay)
        out.append(PlannedStep(i, step.name, step.channel, due))
        previous = due
    return location.sequence, out


@lru_cache(maxsize=256)
def compiled(text: str) -> templates.Template:
    return templates.compile_template(text)


def validate_config_templates(cfg: Config) -> list[str]:
    """Every template compiled and checked against the variables it will get: a typo is a
    start-up error naming the step, not a blank "Hi ," at 2 am."""
    problems: list[str] = []
    for name, steps in cfg.sequences.items():
        for i, step in enumerate(steps):
            known = SMS_VARIABLES if step.channel == "sms" else templates.KNOWN_VARIABLES
            for key, text in (("template", step.template), ("subject", step.subject)):
                if text is None:
                    continue
                try:
                    templates.validate(compiled(text), known)
                except templates.TemplateError as exc:
                    problems.append(f"sequences.{name}[{i}].{key} (step '{step.name}'): {exc}")
    return problems


def step_of(cfg: Config, sequence: str, index: int) -> SequenceStep | None:
    steps = cfg.sequences.get(sequence)
    return steps[index] if steps is not None and 0 <= index < len(steps) else None
