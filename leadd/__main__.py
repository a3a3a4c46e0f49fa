"""Command line: `leadd run | check-config | migrate | send-test-lead | leads | report |
hash-password`, `leadd --version`."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

from leadd import __version__, logs
from leadd import config as configmod
from leadd.config.convert import format_duration

EXIT_CONFIG = 2


def _load(path_arg: str | None, *, allow_demo: bool) -> configmod.Config:
    path = configmod.resolve_path(path_arg)
    if path is None:
        if not allow_demo:
            print("leadd: no config: pass --config PATH or set LEADD_CONFIG", file=sys.stderr)
            raise SystemExit(EXIT_CONFIG)
        return configmod.demo()
    return configmod.load(path)


def cmd_run(args: argparse.Namespace) -> int:
    cfg = _load(args.config, allow_demo=True)
    logs.setup(cfg.logging.level, cfg.logging.format)
    log = logs.get_logger("leadd")
    if cfg.source == "<built-in demo>":
        log.info(
            "config.demo_defaults",
            hint="no config file: running on built-in demo defaults (embedded PostgreSQL, "
            "dry-run providers, demo_mode). Copy config.example.yaml to config.yaml to configure.",
        )
    from leadd.daemon import Daemon

    with _runner() as runner:
        return runner.run(Daemon(cfg).run())


def _runner() -> asyncio.Runner:
    """uvloop when installed (a dependency on Linux): the send path is bound by socket writes
    to PostgreSQL and the providers, which uvloop's transports do with less CPU."""
    try:
        import uvloop
    except ImportError:
        return asyncio.Runner()
    return asyncio.Runner(loop_factory=uvloop.new_event_loop)


def cmd_check_config(args: argparse.Namespace) -> int:
    cfg = _load(args.config, allow_demo=True)
    print(f"config:     {cfg.source}")
    print(f"tenant:     {cfg.tenant.name} ({cfg.tenant.id})")
    print(
        f"database:   {'external' if cfg.database.url else 'embedded under ' + str(cfg.state_dir)}"
    )
    print(f"http:       {cfg.http.host}:{cfg.http.port} (public {cfg.http.public_url})")
    print(f"demo_mode:  {cfg.demo_mode}")
    print(f"locations:  {len(cfg.locations)}")
    for loc in cfg.locations:
        print(
            f"  - {loc.id}: {loc.name} [{loc.timezone}] sequence={loc.sequence} services={len(loc.services)}"
        )
    print(f"sequences:  {len(cfg.sequences)}")
    for name, steps in cfg.sequences.items():
        print(f"  - {name}: " + ", ".join(f"{s.name}({s.channel}+{s.delay:g}s)" for s in steps))
    ttl = format_duration(cfg.chat.link_ttl)
    print(f"chat:       {cfg.chat.base_url}/<token> (links expire after {ttl})")
    print(f"staff:      {len(cfg.staff)} inbox user(s) at {cfg.http.public_url}/inbox")
    for provider, mode in cfg.providers_summary().items():
        print(f"{provider + ':':<11} {mode}")
    for warning in configmod.warnings(cfg):
        print(f"warning:    {warning}")
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    cfg = _load(args.config, allow_demo=True)
    logs.setup(cfg.logging.level, cfg.logging.format)

    async def go() -> int:
        from leadd.store import opened

        async with opened(cfg, sync=True) as (_, applied):
            print(f"schema up to date; applied now: {applied or 'nothing'}")
        return 0

    return asyncio.run(go())


def cmd_send_test_lead(args: argparse.Namespace) -> int:
    cfg = _load(args.config, allow_demo=True)
    from leadd.testlead import send_test_lead

    return asyncio.run(send_test_lead(cfg, url=args.url))


def cmd_hash_password(args: argparse.Namespace) -> int:
    """Print an Argon2id hash for `staff[].password_hash`. The password is asked twice on a
    terminal, or read as one line from standard input (never from the command line, where
    other users and the shell history could see it)."""
    import getpass

    from leadd.conversations.staff import hash_password

    if sys.stdin.isatty():
        password = getpass.getpass("Password: ")
        if getpass.getpass("Again: ") != password:
            print("leadd: the passwords differ", file=sys.stderr)
            return 1
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    try:
        print(hash_password(password))
    except ValueError as exc:
        print(f"leadd: {exc}", file=sys.stderr)
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="leadd", description=__doc__)
    parser.add_argument("--version", action="version", version=f"leadd {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for name, fn, help_ in (
        ("run", cmd_run, "run the daemon in the foreground"),
        ("check-config", cmd_check_config, "validate the config and print a summary"),
        ("migrate", cmd_migrate, "apply the database schema and exit"),
        (
            "send-test-lead",
            cmd_send_test_lead,
            "post a signed demo order webhook to a running leadd",
        ),
    ):
        p = subparsers.add_parser(name, help=help_)
        p.add_argument("--config", help="config file (default: $LEADD_CONFIG, else ./config.yaml)")
        p.set_defaults(fn=fn)
        if name == "send-test-lead":
            p.add_argument("--url", help="leadd base URL (default: from http.host/port)")
    from leadd import cli_ops  # leads list|show|set-state|pause|resume, report (issue 9)

    cli_ops.register(subparsers, _load)
    p = subparsers.add_parser(
        "hash-password", help="print an Argon2id hash for a staff user's password_hash"
    )
    p.set_defaults(fn=cmd_hash_password)
    args = parser.parse_args(argv)
    try:
        return int(args.fn(args))
    except configmod.ConfigError as exc:
        print(f"leadd: invalid configuration ({len(exc.problems)} problem(s)):", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return EXIT_CONFIG
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
