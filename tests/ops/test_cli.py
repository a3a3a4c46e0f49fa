"""`leadd leads ...` and `leadd report` against a real database: main() in-process for the
commands, and subprocesses for the embedded server with the daemon stopped and running."""

from __future__ import annotations

import asyncio
import csv
import getpass
import io
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import yaml

from leadd.__main__ import main
from tests.conftest import base_config, free_port
from tests.helpers import DaemonProcess
from tests.ops.support import (
    T0,
    add_lead,
    add_message,
    add_tenant,
    add_touch_point,
    at,
    opt_out,
    set_status,
)

Seed = Callable[[asyncpg.Connection], Awaitable[Any]]


def seed(database_url: str, fn: Seed) -> Any:
    async def go() -> Any:
        conn = await asyncpg.connect(database_url)
        try:
            await add_tenant(conn)
            return await fn(conn)
        finally:
            await conn.close()

    return asyncio.run(go())


def fetch(database_url: str, query: str, *args: Any) -> list[asyncpg.Record]:
    async def go() -> list[asyncpg.Record]:
        conn = await asyncpg.connect(database_url)
        try:
            return list(await conn.fetch(query, *args))
        finally:
            await conn.close()

    return asyncio.run(go())


@pytest.fixture
def config_path(database_url: str, tmp_path: Path) -> str:
    data = base_config()
    data["database"] = {"url": database_url}
    data["locations"].append({**data["locations"][0], "id": "north", "name": "North"})
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


def leadd(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_leads_list_table_json_filters_and_pages(
    database_url: str, config_path: str, capsys: pytest.CaptureFixture[str]
) -> None:
    async def make(conn: asyncpg.Connection) -> list[uuid.UUID]:
        return [
            await add_lead(conn, created_at=at(0), first_name="Jamie", email="jamie@example.com"),
            await add_lead(
                conn,
                created_at=at(1),
                first_name="Pat",
                state="engaged",
                location="north",
                phone="+15125550199",
            ),  # fmt: skip
            await add_lead(conn, created_at=at(2), first_name="Sam", phone=None),
        ]

    a, b, c = seed(database_url, make)
    code, out, err = leadd(capsys, "leads", "list", "--config", config_path, "--json")
    assert code == 0, err
    body = json.loads(out)
    assert [x["id"] for x in body["leads"]] == [str(c), str(b), str(a)]
    assert body["next_cursor"] is None

    code, out, _ = leadd(capsys, "leads", "list", "--config", config_path)
    assert code == 0
    header, *lines = out.splitlines()
    assert header.split()[:3] == ["ID", "CREATED", "(UTC)"]
    assert [line.split()[0] for line in lines] == [str(c), str(b), str(a)]
    assert "Pat Rivera" in out and "+15125550199" in out and "2026-03-02 15:01" in out

    for args, expected in [
        (["--state", "engaged"], [b]),
        (["--location", "north"], [b]),
        (["--q", "512 555 0199"], [b]),
        (["--q", "JAMIE@example.com"], [a]),
        (["--since", at(1).isoformat()], [c, b]),
        (["--until", "2026-03-02T15:01:00Z"], [a]),
    ]:
        code, out, err = leadd(capsys, "leads", "list", "--config", config_path, "--json", *args)
        assert code == 0, err
        assert [x["id"] for x in json.loads(out)["leads"]] == [str(x) for x in expected], args

    code, out, _ = leadd(capsys, "leads", "list", "--config", config_path, "--limit", "2")
    cursor = out.rsplit("--cursor ", 1)[1].strip()
    code, out, _ = leadd(capsys, "leads", "list", "--config", config_path, "--json",
                         "--cursor", cursor)  # fmt: skip
    assert [x["id"] for x in json.loads(out)["leads"]] == [str(a)]

    for args, parameter in [(["--limit", "500"], "limit"), (["--location", "x"], "location"),
                            (["--cursor", "nope"], "cursor"), (["--since", "soon"], "since")]:  # fmt: skip
        code, out, err = leadd(capsys, "leads", "list", "--config", config_path, *args)
        assert code == 2 and err.startswith(f"leadd: {parameter}: ") and out == "", args


def test_leads_show_prints_the_timeline_with_texts(
    database_url: str, config_path: str, capsys: pytest.CaptureFixture[str]
) -> None:
    async def make(conn: asyncpg.Connection) -> uuid.UUID:
        lead = await add_lead(conn, path=("contacted", "engaged"), email="jamie@example.com")
        await add_touch_point(conn, lead, state="sent", sent_at=at(0.1), provider_id="DRYabc",
                              dry_run=True)  # fmt: skip
        await add_message(conn, lead, direction="outbound", body="Hi Jamie, thanks!",
                          provider_id="DRYabc", created_at=at(0.1))  # fmt: skip
        await add_touch_point(conn, lead, step_index=1, state="sent", sent_at=at(0.2),
                              provider_id="SMok")  # fmt: skip
        await set_status(conn, "SMok", "delivered")
        await add_message(conn, lead, direction="outbound", body="Real one", provider_id="SMok",
                          created_at=at(0.2))  # fmt: skip
        await add_message(conn, lead, body="Yes, Tuesday?", created_at=at(3))
        await add_touch_point(conn, lead, step_index=2, state="skipped", step_name="day1",
                              last_error="lead is engaged", due_at=at(days=1))  # fmt: skip
        await opt_out(conn, "email", "jamie@example.com", created_at=at(4))
        return lead

    lead = seed(database_url, make)
    code, out, err = leadd(capsys, "leads", "show", str(lead), "--config", config_path)
    assert code == 0, err
    assert f"lead {lead}  engaged" in out
    assert "->  leadd: 'Hi Jamie, thanks!' [dry-run]" in out
    assert "->  leadd: 'Real one' [delivered]" in out
    assert "<-  customer: 'Yes, Tuesday?'" in out
    assert "step      day1 (sms) skipped: lead is engaged" in out
    assert "opt-out   email jamie@example.com (keyword)" in out
    assert "opted out email" in out

    code, out, _ = leadd(capsys, "leads", "show", str(lead), "--config", config_path, "--json")
    detail = json.loads(out)
    texts = [(e["text"], e["dry_run"]) for e in detail["timeline"] if e["type"] == "message"]
    assert texts == [("Hi Jamie, thanks!", True), ("Real one", False), ("Yes, Tuesday?", False)]
    assert detail["lead"]["opted_out"] == {"sms": False, "email": True}

    code, out, err = leadd(capsys, "leads", "show", str(uuid.uuid4()), "--config", config_path)
    assert code == 1 and err == "leadd: lead not found\n"
    code, out, err = leadd(capsys, "leads", "show", "42", "--config", config_path)
    assert code == 1 and err == "leadd: lead not found\n"


def test_set_state_pause_resume_record_the_unix_user(
    database_url: str, config_path: str, capsys: pytest.CaptureFixture[str]
) -> None:
    lead = seed(database_url, lambda conn: add_lead(conn, path=("contacted",)))
    code, out, err = leadd(capsys, "leads", "set-state", str(lead), "qualified",
                           "--reason", "called, wants brakes", "--config", config_path)  # fmt: skip
    assert code == 0, err
    assert out == f"lead {lead}: contacted -> qualified\n"
    code, out, _ = leadd(capsys, "leads", "pause", str(lead), "--config", config_path, "--json")
    assert code == 0 and json.loads(out)["paused"] is True
    code, out, _ = leadd(capsys, "leads", "resume", str(lead), "--config", config_path)
    assert code == 0 and "resumed; 0 step(s)" in out
    rows = fetch(database_url, "SELECT cause, actor, detail FROM lead_events "
                 "WHERE actor IS NOT NULL ORDER BY id")  # fmt: skip
    me = f"cli:{getpass.getuser()}"
    assert [(r["cause"], r["actor"]) for r in rows] == [
        ("ops.state", me), ("ops.paused", me), ("ops.resumed", me)
    ]  # fmt: skip
    assert json.loads(rows[0]["detail"]) == {"reason": "called, wants brakes"}

    code, out, err = leadd(capsys, "leads", "set-state", str(lead), "qualified", "--reason", "x",
                           "--config", config_path)  # fmt: skip
    assert code == 1 and "current_state: qualified" in err and out == ""
    with pytest.raises(SystemExit) as exc:
        main(["leads", "set-state", str(lead), "engaged", "--reason", "x", "--config", config_path])
    assert exc.value.code == 2
    capsys.readouterr()


def test_report_text_json_csv(
    database_url: str, config_path: str, capsys: pytest.CaptureFixture[str]
) -> None:
    async def make(conn: asyncpg.Connection) -> None:
        a = await add_lead(conn, path=("contacted", "engaged"))
        await add_touch_point(conn, a, state="sent", sent_at=at(0.5), provider_id="SM1")
        await add_message(conn, a, body="yes")
        await add_lead(conn, location="north", source="poll")

    seed(database_url, make)
    window = ["--since", T0.date().isoformat(), "--until", "2026-03-03", "--config", config_path]
    code, out, err = leadd(capsys, "report", *window, "--format", "json")
    assert code == 0, err
    body = json.loads(out)
    assert body["total"]["leads"] == 2 and body["total"]["speed_to_lead_p50"] == 30.0
    assert [s["location_id"] for s in body["locations"]] == ["downtown", "north"]

    code, out, _ = leadd(capsys, "report", *window, "--format", "csv")
    table = list(csv.reader(io.StringIO(out)))
    assert table[0] == ["location", "metric", "value"]
    values = {(loc, metric): value for loc, metric, value in table[1:]}
    assert values[("total", "leads")] == "2"
    assert values[("downtown", "reply_rate")] == "1.0"
    assert values[("north", "source.poll")] == "1"
    assert values[("total", "speed_to_lead_p50_s")] == "30.0"
    assert values[("north", "speed_to_lead_p50_s")] == ""

    code, out, _ = leadd(capsys, "report", *window)
    assert "leads created 2026-03-02 00:00 to 2026-03-03 00:00 UTC" in out
    [leads_row] = [line for line in out.splitlines() if line.startswith("leads ")]
    assert leads_row.split() == ["leads", "2", "1", "1"]
    assert "30.0s" in out and "100.0%" in out

    code, out, err = leadd(capsys, "report", "--location", "nowhere", "--config", config_path)
    assert code == 2 and "location" in err


def test_unreachable_database_is_one_clear_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = base_config()
    data["database"] = {"url": f"postgresql://postgres@127.0.0.1:{free_port()}/x",
                        "connect_timeout": "2s"}  # fmt: skip
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    code, out, err = leadd(capsys, "leads", "list", "--config", str(path))
    assert code == 1 and out == ""
    assert err.startswith("leadd: database unavailable: ") and "Traceback" not in err


# --------------------------------------------------------------------------- embedded server


def _cli(workdir: Path, config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "leadd", *args, "--config", str(config)],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=120,
        env={k: v for k, v in os.environ.items() if not k.startswith("LEADD_")},
    )


async def test_cli_reaches_the_embedded_server_with_the_daemon_stopped_or_running(
    tmp_path: Path,
) -> None:
    """No database.url: with no daemon, the CLI starts the embedded server under state_dir
    and stops it after; with a daemon running on it, the CLI shares it and leaves it up."""
    port = free_port()
    data = base_config(state_dir=str(tmp_path / "state"))
    data["http"] = {"host": "127.0.0.1", "port": port, "public_url": f"http://127.0.0.1:{port}"}
    data["api"] = {"tokens": []}
    daemon = DaemonProcess(data, tmp_path)
    pgdata = tmp_path / "state" / "postgres"

    stopped = await asyncio.to_thread(_cli, tmp_path, daemon.config_path, "leads", "list", "--json")
    assert stopped.returncode == 0, stopped.stderr
    assert json.loads(stopped.stdout) == {"leads": [], "next_cursor": None}
    assert (pgdata / "PG_VERSION").exists() and not (pgdata / "postmaster.pid").exists()

    daemon.start()
    try:
        await daemon.wait_ready(timeout=90)
        running = await asyncio.to_thread(
            _cli, tmp_path, daemon.config_path, "report", "--format", "json"
        )
        assert running.returncode == 0, running.stderr
        assert json.loads(running.stdout)["total"]["leads"] == 0
        assert (pgdata / "postmaster.pid").exists()  # the daemon's server is still up
        assert (await daemon.wait_ready())["status"] == "ready"
        assert await asyncio.to_thread(daemon.terminate) == 0
    finally:
        daemon.kill()
    assert not (pgdata / "postmaster.pid").exists()
