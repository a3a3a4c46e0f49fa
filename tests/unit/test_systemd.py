"""The systemd units: `systemd-analyze verify` is clean, hardening scores OK, settings agree with leadd."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from leadd import config as configmod
from leadd.web import connections
from tests.conftest import ROOT
from tests.helpers import system_tool

UNITS = ROOT / "packaging" / "systemd"
SHIPPED_EXEC = "/opt/leadd/venv/bin/leadd"
# unit file -> the name it is verified under (a template needs an instance)
CASES = {"leadd.service": "leadd.service", "leadd@.service": "leadd@acme.service"}


def systemd_analyze() -> str:
    return system_tool("systemd-analyze", "systemd")


def venv_leadd() -> Path:
    exe = Path(sys.executable).parent / "leadd"
    assert exe.exists(), f"{exe} missing: pip install -e . into this venv"
    return exe


def directives(text: str) -> dict[str, list[str]]:
    """Key -> values (keys such as Environment= may repeat), ignoring comments and sections."""
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";", "[")):
            continue
        key, _, value = line.partition("=")
        out.setdefault(key, []).append(value)
    return out


def seconds(value: str) -> float:
    m = re.fullmatch(r"(\d+)(s|min)?", value)
    assert m, value
    return int(m.group(1)) * (60 if m.group(2) == "min" else 1)


@pytest.fixture
def verify_copy(tmp_path: Path, request: pytest.FixtureRequest) -> Path:
    """A copy of the unit whose ExecStart points at this venv's leadd (verify checks it exists)."""
    unit: str = request.param
    text = (UNITS / unit).read_text()
    assert f"ExecStart={SHIPPED_EXEC} " in text
    path = tmp_path / CASES[unit]
    path.write_text(text.replace(f"ExecStart={SHIPPED_EXEC} ", f"ExecStart={venv_leadd()} "))
    return path


@pytest.mark.parametrize("verify_copy", list(CASES), indirect=True, ids=list(CASES))
def test_systemd_analyze_verify_is_clean(verify_copy: Path) -> None:
    tool = systemd_analyze()
    result = subprocess.run(
        [tool, "verify", "--recursive-errors=no", str(verify_copy)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=verify_copy.parent,
    )
    output = result.stdout + result.stderr
    ours = [line for line in output.splitlines() if verify_copy.name in line or "leadd" in line]
    assert result.returncode == 0, output
    assert ours == [], output


@pytest.mark.parametrize("verify_copy", list(CASES), indirect=True, ids=list(CASES))
def test_hardening_exposure_is_low(verify_copy: Path) -> None:
    """engine.md §3.4: the hardened unit scores ~1.4; threshold is on a 0-100 scale."""
    tool = systemd_analyze()
    result = subprocess.run(
        [tool, "security", "--offline=true", "--threshold=20", str(verify_copy)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=verify_copy.parent,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"Overall exposure level for \S+: [01]\.\d OK", result.stdout), result.stdout


def test_verify_catches_a_misspelled_key(tmp_path: Path) -> None:
    """Guards the guard: without --recursive-errors a typo would pass silently."""
    tool = systemd_analyze()
    text = (UNITS / "leadd.service").read_text().replace("WatchdogSec=", "WatchDogSec=")
    path = tmp_path / "leadd.service"
    path.write_text(text.replace(f"ExecStart={SHIPPED_EXEC} ", f"ExecStart={venv_leadd()} "))
    result = subprocess.run(
        [tool, "verify", "--recursive-errors=no", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert result.returncode != 0
    assert "WatchDogSec" in result.stdout + result.stderr


@pytest.mark.parametrize("unit", list(CASES))
def test_unit_settings_match_leadd(unit: str) -> None:
    d = directives((UNITS / unit).read_text())
    for key, value in {
        "Type": "notify",
        "NotifyAccess": "main",
        "WatchdogSec": "30",
        "Restart": "on-failure",
        "KillMode": "mixed",
        "DynamicUser": "yes",
        "ProtectSystem": "strict",
        "NoNewPrivileges": "yes",
        "CapabilityBoundingSet": "",
    }.items():
        assert d.get(key) == [value], (key, d.get(key))
    instance = "%i" if unit.endswith("@.service") else "config"
    assert d["ExecStart"] == [f"{SHIPPED_EXEC} run --config /etc/leadd/{instance}.yaml"]
    assert d["StateDirectory"] == (["leadd/%i"] if instance == "%i" else ["leadd"])
    # SIGKILL must not arrive while leadd is still draining within its shutdown_timeout.
    example = configmod.load(ROOT / "config.example.yaml", env={})
    assert seconds(d["TimeoutStopSec"][0]) > example.shutdown_timeout + 10
    assert seconds(d["TimeoutStopSec"][0]) > configmod.Config.shutdown_timeout + 10
    # Each client connection is a descriptor; leadd needs the cap plus its own (pool, providers).
    needed = (
        max(example.http.max_connections, configmod.HttpConfig.max_connections)
        + connections.OTHER_DESCRIPTORS
        + example.database.pool_max
    )
    assert d["LimitNOFILE"] == ["65536"]
    assert "MALLOC_MMAP_THRESHOLD_=131072" in d["Environment"]  # bodies go back to the system
    assert int(d["LimitNOFILE"][0]) >= 10 * needed
