"""The chaos scenarios of tests/chaos at full size, with the real waits CI skips.

    LEADD_TEST_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/test \\
        .venv/bin/python bench/chaos.py kill9 | outage | storms | two-daemons | all [--own-postgres]

- kill9: SIGKILL during a burst of 500 leads; the dead daemon's leases (touch points 30 s,
  enrichment 60 s) run out for real before the restart's work is done.
- outage: our own PostgreSQL stopped for 30 s under webhook load (20/s), poll every 5 s.
- storms: Twilio and SendGrid storms of 30 s over 200 leads; a short one over 20 leads opened
  by a 429 asking to wait a day (86400 s; issue 7 caps it at 60 s); a Shopmonkey storm of
  30 s over 100 leads.
- two-daemons: 1,000 leads over two daemons, the poll leader killed, the takeover measured
  against the real 60 s lease.

`--own-postgres` runs each scenario on a PostgreSQL server of its own (initdb on a free port)
instead of $LEADD_TEST_DATABASE_URL's; the outage scenario always has its own.

Each prints the numbers its scenario measured (JSON) and whether every promise held; leaks
found by the scanner (tests/chaos/pii.py) count as a broken promise. Exit status 1 if any
promise broke. The promises and the CI sizes: tests/chaos/scenarios.py.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import traceback
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `tests` is not installed

from tests.chaos import scenarios  # noqa: E402
from tests.chaos.harness import bench_database, cancel_on_sigterm  # noqa: E402
from tests.chaos.pii import PiiScanner  # noqa: E402

Scenario = Callable[[scenarios.Chaos, str], Awaitable[dict[str, Any]]]


async def kill9(chaos: scenarios.Chaos, url: str) -> dict[str, Any]:
    return await scenarios.kill9_burst(chaos, url, leads=500, fast_forward=False)


async def outage(chaos: scenarios.Chaos, url: str) -> dict[str, Any]:
    return await scenarios.postgres_outage(chaos, outage=30.0, rate=20.0, poll_interval="5s")


async def twilio_sendgrid_storm(chaos: scenarios.Chaos, url: str) -> dict[str, Any]:
    return await scenarios.twilio_and_sendgrid_storm(chaos, url, leads=200, storm=30.0)


async def retry_after_a_day(chaos: scenarios.Chaos, url: str) -> dict[str, Any]:
    return await scenarios.twilio_and_sendgrid_storm(
        chaos, url, leads=20, storm=5.0, long_retry_after=86400.0
    )


async def shopmonkey_storm(chaos: scenarios.Chaos, url: str) -> dict[str, Any]:
    return await scenarios.shopmonkey_storm(chaos, url, leads=100, storm=30.0)


async def two_daemons(chaos: scenarios.Chaos, url: str) -> dict[str, Any]:
    return await scenarios.two_daemons(chaos, url, leads=1000, fast_forward=False)


RUNS: dict[str, list[tuple[str, Scenario]]] = {
    "kill9": [("kill9", kill9)],
    "outage": [("outage", outage)],
    "storms": [
        ("twilio-sendgrid-storm", twilio_sendgrid_storm),
        ("twilio-retry-after-a-day", retry_after_a_day),
        ("shopmonkey-storm", shopmonkey_storm),
    ],
    "two-daemons": [("two-daemons", two_daemons)],
}
RUNS["all"] = [run for name in ("kill9", "outage", "storms", "two-daemons") for run in RUNS[name]]


async def one(name: str, scenario: Scenario, own_server: bool = False) -> dict[str, Any]:
    scanner = PiiScanner()
    started = time.monotonic()
    result: dict[str, Any] = {"scenario": name}
    async with bench_database("chaos", own_server=own_server) as url:
        try:
            async with scenarios.chaos_world(scanner) as chaos:
                result["numbers"] = await scenario(chaos, url)
            result["ok"] = True
        except AssertionError as exc:
            result["ok"] = False
            result["broken_promise"] = str(exc)[:2000]
            result["where"] = traceback.format_exc(limit=-3)[-1500:]
    leaks = scanner.leaks()
    result["leaks"] = [str(leak) for leak in leaks[:10]]
    result["ok"] = result["ok"] and not leaks
    result["wall_s"] = round(time.monotonic() - started, 1)
    return result


async def main(which: str, own_server: bool) -> int:
    cancel_on_sigterm()
    ok = True
    for name, scenario in RUNS[which]:
        result = await one(name, scenario, own_server)
        print(json.dumps(result, indent=2, default=str), flush=True)
        ok = ok and result["ok"]
    return 0 if ok else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("which", choices=sorted(RUNS))
    parser.add_argument("--own-postgres", action="store_true", help="a PostgreSQL of its own")
    args = parser.parse_args()
    sys.exit(asyncio.run(main(args.which, args.own_postgres)))
