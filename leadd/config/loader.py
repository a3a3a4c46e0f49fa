"""Where a configuration comes from: a YAML file, or the built-in demo."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import yaml

from leadd.config.build import build
from leadd.config.demo import DEMO_CONFIG
from leadd.config.model import Config
from leadd.config.node import ConfigError


def load(path: str | os.PathLike[str], env: Mapping[str, str] | None = None) -> Config:
    """Read and validate a YAML config file."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            [f"{p}: file not found; pass --config PATH or set LEADD_CONFIG"]
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([f"{p}: cannot read: {exc}"]) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError([f"{p}: {where}invalid YAML: {problem}"]) from None
    return build(data, source=str(p), env=env)


def demo(env: Mapping[str, str] | None = None) -> Config:
    return build(DEMO_CONFIG, env=env)


def resolve_path(cli_path: str | None, env: Mapping[str, str] | None = None) -> Path | None:
    """--config, else $LEADD_CONFIG, else ./config.yaml if present, else None (demo)."""
    env = os.environ if env is None else env
    if cli_path:
        return Path(cli_path)
    if env.get("LEADD_CONFIG"):
        return Path(env["LEADD_CONFIG"])
    default = Path("config.yaml")
    return default if default.exists() else None
