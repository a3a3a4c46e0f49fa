"""The chat link secret when none is configured: a random key kept in {state_dir}, made once.

Chat link tokens are derived from `chat.secret` (leadd/chatlinks.py), so the secret must
outlive a restart and be the same for every daemon sharing the database. The daemon calls
`with_secret` once at start-up; everything after reads the completed Config.
"""

from __future__ import annotations

import dataclasses
import os
import secrets
from pathlib import Path

from leadd.config.model import Config

KEY_FILE = "chat-link.key"


def with_secret(config: Config) -> Config:
    """`config` with chat.secret set: as configured, else the key in {state_dir}/chat-link.key,
    created (mode 0600) on first use."""
    if config.chat.secret:
        return config
    secret = _read_or_create(config.state_dir / KEY_FILE)
    return dataclasses.replace(config, chat=dataclasses.replace(config.chat, secret=secret))


def _read_or_create(path: Path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        # Written aside, then linked into place: os.link fails if the file exists, so of two
        # daemons starting together one key wins and neither reads a half-written file.
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(32) + "\n")
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    secret = path.read_text(encoding="ascii").strip()
    if len(secret) < 32:
        raise ValueError(f"{path}: chat link key is shorter than 32 characters; delete it")
    return secret
