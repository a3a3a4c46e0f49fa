"""The lead lifecycle, defined once: `new → contacted → engaged → qualified → appointment_set
→ completed | lost`. A lead only moves forward; `completed` and `lost` are terminal; `lost` is
reachable from any open state."""

from __future__ import annotations

STATES = ("new", "contacted", "engaged", "qualified", "appointment_set", "completed", "lost")
TERMINAL = frozenset({"completed", "lost"})
_RANK = {s: i for i, s in enumerate(STATES)}


def can_transition(current: str, target: str) -> bool:
    """The one rule: forward only, never out of a terminal state; `lost` from any open state."""
    if current in TERMINAL or current == target:
        return False
    return _RANK[target] > _RANK[current]
