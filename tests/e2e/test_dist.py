"""`make dist`: one file, dist/leadd.pyz, that runs on the system Python with nothing else
installed. Built once per session (about half a minute) into a temporary directory; every run
strips PYTHONPATH and starts outside the repository, so only what is inside the file counts.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
import yaml

from leadd import __version__
from tests.conftest import ROOT, base_config, free_port
from tests.helpers import wait_for

SYSTEM_PYTHON = "/usr/bin/python3"


def system_python_matches() -> None:
    """The build uses this venv's pip, so it is only valid for a Python with the same ABI."""
    if not Path(SYSTEM_PYTHON).exists():
        reason = f"{SYSTEM_PYTHON} is missing"
    else:
        soabi = subprocess.run(
            [SYSTEM_PYTHON, "-c", "import sysconfig; print(sysconfig.get_config_var('SOABI'))"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        if soabi == sysconfig.get_config_var("SOABI"):
            return
        reason = f"{SYSTEM_PYTHON} is {soabi}, this venv {sysconfig.get_config_var('SOABI')}"
    if os.environ.get("CI"):
        pytest.fail(f"make dist cannot build for the system Python in CI: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def pyz() -> Iterator[Path]:
    system_python_matches()
    out = Path(tempfile.mkdtemp(prefix="leadd-dist-"))
    target = out / "leadd.pyz"
    venv = Path(sys.executable).parent.parent
    # INSTALLED= : this venv already has leadd and the test extras; do not reinstall into it.
    result = subprocess.run(
        ["make", "dist", f"VENV={venv}", "INSTALLED=", f"PYZ={target}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    yield target
    shutil.rmtree(out, ignore_errors=True)


def clean_env(tmp_path: Path) -> dict[str, str]:
    """No PYTHONPATH (the worktree's leadd must not be importable), no LEADD_* settings, and
    shiv's extraction directory under tmp_path instead of ~/.shiv."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH" and not k.startswith("LEADD_")}
    env["SHIV_ROOT"] = str(tmp_path / "shiv")
    return env


def start(tmp_path: Path, log: Path, *argv: str) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            argv, cwd=tmp_path, env=clean_env(tmp_path), stdout=out, stderr=subprocess.STDOUT
        )


def test_the_pyz_is_executable_with_the_system_python_shebang(pyz: Path, tmp_path: Path) -> None:
    assert pyz.read_bytes().startswith(f"#!{SYSTEM_PYTHON}\n".encode())
    result = subprocess.run(
        [str(pyz), "--version"],
        cwd=tmp_path,
        env=clean_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"leadd {__version__}"


def test_check_config_runs_from_the_pyz(pyz: Path, tmp_path: Path) -> None:
    example = ROOT / "config.example.yaml"
    result = subprocess.run(
        [SYSTEM_PYTHON, str(pyz), "check-config", "--config", str(example)],
        cwd=tmp_path,
        env=clean_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert f"config:     {example}" in result.stdout
    assert "twilio:     dry-run" in result.stdout
    # It imported leadd from the file, not from the repository.
    extracted = list((tmp_path / "shiv").glob("leadd.pyz_*/site-packages/leadd/__init__.py"))
    assert len(extracted) == 1


async def test_the_daemon_runs_from_the_pyz_and_stops_cleanly(
    pyz: Path, tmp_path: Path, database_url: str
) -> None:
    """`run` loads the compiled dependencies (asyncpg, uvloop, aiohttp, cryptography): ready,
    then SIGTERM, exit 0."""
    port = free_port()
    config = base_config()
    config["database"] = {"url": database_url}
    config["http"] = {"host": "127.0.0.1", "port": port, "public_url": f"http://127.0.0.1:{port}"}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    log = tmp_path / "leadd.log"
    proc = start(tmp_path, log, SYSTEM_PYTHON, str(pyz), "run", "--config", str(path))
    try:
        async with aiohttp.ClientSession() as session:

            async def ready() -> bool:
                assert proc.poll() is None, log.read_text()
                try:
                    async with session.get(f"http://127.0.0.1:{port}/readyz") as r:
                        return r.status == 200
                except aiohttp.ClientError:
                    return False

            await wait_for(ready, timeout=60, interval=0.2)
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(proc.wait, 30) == 0, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert '"status": "ok"' in log.read_text()
