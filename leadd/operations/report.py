"""The funnel report: computed in SQL by the store; here only the window and its checks."""

from __future__ import annotations

import datetime as dt

from leadd.operations import params
from leadd.operations.deps import OpsDeps
from leadd.operations.errors import BadRequest
from leadd.store.models import Report

DEFAULT_WINDOW = dt.timedelta(days=7)


async def funnel_report(
    deps: OpsDeps,
    *,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    location: str | None = None,
) -> Report:
    """Leads created in [since, until) (default: the 7 days up to now), per location and total."""
    until = until or deps.clock()
    since = since or until - DEFAULT_WINDOW
    if since >= until:
        raise BadRequest("since", "must be earlier than until")
    params.check_location(deps.config, location)
    return await deps.store.report(since=since, until=until, location=location)
