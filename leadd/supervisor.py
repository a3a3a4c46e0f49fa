"""Supervised tasks: named, restarted after a crash with exponential jittered backoff.

A crashed task is logged with its traceback, counted in `leadd_task_restarts_total` and shown
in /readyz while it waits to restart. The delay starts at 1 s, doubles per consecutive crash up
to 60 s, and resets once the task has run for a healthy minute. A task marked `critical` (the
HTTP server) is not hidden behind restarts: its crash takes the daemon down cleanly.

/readyz is unauthenticated, so a crash is shown there as `describe_error` words it (the
exception type and a fixed description), never by its message, which may quote a customer's
data or a connection string; the message and traceback go to the (masked) log.
"""

from __future__ import annotations

import asyncio
import time
import traceback
from collections.abc import Awaitable, Callable
from contextlib import suppress
from dataclasses import dataclass, field

from leadd import metrics
from leadd.backoff import Backoff
from leadd.errors import describe_error
from leadd.logs import get_logger

log = get_logger(__name__)

TaskFactory = Callable[[], Awaitable[None]]


@dataclass
class TaskState:
    name: str
    factory: TaskFactory
    critical: bool = False
    running: bool = False
    restarts: int = 0
    consecutive_failures: int = 0
    last_error: str | None = None
    started_at: float | None = None
    retry_at: float | None = None
    heartbeat: float | None = None  # monotonic time of the task's last sign of progress
    finished: bool = False

    def as_json(self) -> dict[str, object]:
        return {
            "running": self.running,
            "restarts": self.restarts,
            "last_error": self.last_error,
            "retry_in": round(max(0.0, self.retry_at - time.monotonic()), 1)
            if self.retry_at and not self.running
            else None,
        }


@dataclass
class Supervisor:
    shutdown: asyncio.Event
    backoff: Backoff = field(default_factory=lambda: Backoff(base=1.0, cap=60.0, jitter=0.2))
    healthy_after: float = 60.0
    tasks: dict[str, TaskState] = field(default_factory=dict)
    fatal: BaseException | None = None

    def add(self, name: str, factory: TaskFactory, *, critical: bool = False) -> TaskState:
        state = TaskState(name=name, factory=factory, critical=critical)
        self.tasks[name] = state
        metrics.TASK_UP.labels(name).set(0)
        metrics.TASK_RESTARTS.labels(name)
        return state

    def beat(self, name: str) -> None:
        """Record progress: the watchdog and /readyz use it to tell alive from merely present."""
        if name in self.tasks:
            self.tasks[name].heartbeat = time.monotonic()

    def problems(self) -> dict[str, str]:
        """Tasks that are not running, for /readyz."""
        out = {}
        for name, t in self.tasks.items():
            if not t.running and not t.finished:
                out[name] = f"not running (restarts={t.restarts}, last_error={t.last_error})"
        return out

    async def run(self) -> None:
        """Run every task until shutdown; returns when all have finished."""
        async with asyncio.TaskGroup() as tg:
            for state in self.tasks.values():
                tg.create_task(self._supervise(state), name=state.name)

    async def _supervise(self, t: TaskState) -> None:
        while not self.shutdown.is_set():
            t.running, t.started_at, t.retry_at = True, time.monotonic(), None
            metrics.TASK_UP.labels(t.name).set(1)
            try:
                await t.factory()
            except asyncio.CancelledError:
                t.running = False
                metrics.TASK_UP.labels(t.name).set(0)
                raise
            except Exception as exc:
                t.running = False
                metrics.TASK_UP.labels(t.name).set(0)
                t.last_error = f"{describe_error(exc)} (details in the log)"
                error = f"{type(exc).__name__}: {exc}"  # for the (masked) log only
                ran_for = time.monotonic() - (t.started_at or 0)
                if ran_for >= self.healthy_after:
                    t.consecutive_failures = 0
                if t.critical:
                    log.error(
                        "task.crashed_fatal",
                        task=t.name,
                        error=error,
                        traceback=traceback.format_exc(),
                    )
                    self.fatal = exc
                    self.shutdown.set()
                    return
                delay = self.backoff.delay(t.consecutive_failures)
                t.consecutive_failures += 1
                t.restarts += 1
                t.retry_at = time.monotonic() + delay
                metrics.TASK_RESTARTS.labels(t.name).inc()
                log.error(
                    "task.crashed",
                    task=t.name,
                    error=error,
                    restart_in=round(delay, 2),
                    restarts=t.restarts,
                    traceback=traceback.format_exc(),
                )
                with suppress(TimeoutError):
                    await asyncio.wait_for(self.shutdown.wait(), delay)
                continue
            # A task returning on its own during shutdown is the normal way out.
            t.running = False
            metrics.TASK_UP.labels(t.name).set(0)
            if self.shutdown.is_set():
                break
            t.last_error = "returned unexpectedly"
            log.warning("task.returned", task=t.name)
            with suppress(TimeoutError):
                await asyncio.wait_for(self.shutdown.wait(), self.backoff.delay(0))
        t.finished = True
