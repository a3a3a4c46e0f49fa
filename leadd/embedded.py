"""Zero-setup PostgreSQL: a private server under state_dir, from the `pgserver` wheel."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from leadd.logs import get_logger

log = get_logger(__name__)


class EmbeddedPostgres:
    """Starts (or re-attaches to) a PostgreSQL data directory under `state_dir/postgres`.

    pgserver keeps one server per data directory and reference-counts users, so a second
    leadd on the same state_dir shares it instead of failing.
    """

    def __init__(self, state_dir: Path) -> None:
        self.pgdata = (state_dir / "postgres").resolve()
        self._server: Any = None

    async def start(self) -> str:
        self.pgdata.mkdir(parents=True, exist_ok=True)
        self._server = await asyncio.to_thread(self._start_sync)
        uri: str = self._server.get_uri()
        log.info("embedded_postgres.started", pgdata=str(self.pgdata))
        return uri

    def _start_sync(self) -> Any:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # platformdirs warns about XDG_RUNTIME_DIR as root
            import pgserver

            return pgserver.get_server(self.pgdata, cleanup_mode="stop")  # type: ignore[attr-defined]

    async def stop(self) -> None:
        if self._server is not None:
            server, self._server = self._server, None
            await asyncio.to_thread(server.cleanup)
            log.info("embedded_postgres.stopped")
