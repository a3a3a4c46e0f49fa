"""Follow-up sequences: planning touch points for a new lead, and the steps' compiled templates.

The templates are checked when the configuration loads (leadd.config), so compiling one here
cannot fail for a loaded configuration.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from functools import lru_cache

from leadd import templates
from leadd.config import Config, Location, SequenceStep


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
    """A step's template or subject, compiled once per text for every send."""
    return templates.compile_template(text)


def step_of(cfg: Config, sequence: str, index: int) -> SequenceStep | None:
    steps = cfg.sequences.get(sequence)
    return steps[index] if steps is not None and 0 <= index < len(steps) else None


# What the later enrichment stage brings (issue 11): a step that shows any of it waits for it.
DETAILS = frozenset({"vehicle", "services"})


def needs_details(step: SequenceStep) -> bool:
    """Whether the step's template or subject reads the vehicle or the services."""
    texts = (step.template, step.subject) if step.subject else (step.template,)
    return any(
        path.split(".", 1)[0] in DETAILS for text in texts for path in compiled(text).variables
    )


def detail_steps(cfg: Config) -> tuple[str, ...]:
    """'sequence:index' of every step that waits for the vehicle and services (the claim
    holds them back while a lead has only its contact)."""
    return tuple(
        f"{name}:{i}"
        for name, steps in cfg.sequences.items()
        for i, step in enumerate(steps)
        if needs_details(step)
    )
