"""What a new user hits in the first hour, tried the way they would: a port already taken,
`send-test-lead` run twice."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

from tests.conftest import base_config
from tests.helpers import DaemonProcess


async def test_a_port_in_use_is_one_clear_error_line_and_exit_1(
    database_url: str, tmp_path: Path
) -> None:
    """Another program holds http.port: `leadd run` exits 1 with one error record naming the
    address and what to do; no traceback, no second and contradictory `leadd.stopped`."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        config = base_config()
        config["database"] = {"url": database_url}
        config["http"] = {"host": "127.0.0.1", "port": port}
        proc = DaemonProcess(config, tmp_path).start()
        try:
            assert proc.proc is not None
            code = await asyncio.to_thread(proc.proc.wait, 30)
        finally:
            proc.kill()
    output = proc.log()
    assert code == 1, output
    assert "Traceback" not in output
    events = proc.log_events()
    errors = [e for e in events if e["level"] == "error"]
    assert len(errors) == 1, output
    [error] = errors
    assert error["event"] == "leadd.stopped" and error["status"] == "fatal"
    assert error["error"] == (
        f"cannot listen on 127.0.0.1:{port}: the port is in use (another leadd, or another "
        "program): stop it or set http.port"
    )
    assert [e["event"] for e in events].count("leadd.stopped") == 1
    assert "database.ready" not in [e["event"] for e in events]  # it stopped before that
