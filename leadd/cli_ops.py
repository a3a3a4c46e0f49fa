"""`leadd leads list|show|set-state|pause|resume` and `leadd report`: the ops use cases from
a terminal, on the database the config names (so they work with the daemon stopped).

Without `database.url` that is the embedded server under state_dir: pgserver counts the
processes using a data directory, so this attaches to the daemon's running server, or starts
it and stops it again when done (only if no daemon started using it meanwhile).
Tables for people; `--json` (and `report --format json|csv`) for scripts. Exit codes:
0 done, 1 refused (not found, conflict) or database unreachable, 2 bad arguments or config.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import getpass
import json
import os
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from leadd import config as configmod
from leadd.lifecycle import STATES
from leadd.operations import BadRequest, OpsDeps, OpsError, params, views
from leadd.operations import leads as lead_ops
from leadd.operations import report as report_ops
from leadd.operations.leads import OPERATOR_STATES
from leadd.store import DB_ERRORS
from leadd.store.models import LeadDetail, Report, ReportSection

LoadConfig = Callable[..., configmod.Config]
UseCase = Callable[[OpsDeps], Awaitable[int]]
EXIT_REFUSED, EXIT_USAGE = 1, 2


def register(subparsers: Any, load: LoadConfig) -> None:
    """Add `leads` and `report` to the `leadd` command line; `load` reads --config."""
    leads = subparsers.add_parser("leads", help="list, show and steer leads")
    actions = leads.add_subparsers(dest="action", required=True)

    p = _command(actions, "list", "leads, newest first", load, _list)
    p.add_argument("--state", choices=STATES)
    p.add_argument("--location", help="a configured location id")
    p.add_argument("--since", help="created at or after (ISO 8601 date or time; UTC)")
    p.add_argument("--until", help="created before (ISO 8601 date or time; UTC)")
    p.add_argument("--q", help="name, phone or e-mail")
    p.add_argument("--limit", default=str(params.DEFAULT_LIMIT), help="page size (1-200)")
    p.add_argument("--cursor", help="the next page (printed under the table)")

    p = _command(actions, "show", "a lead and its timeline", load, _show)
    p.add_argument("id")
    p = _command(actions, "set-state", "move a lead forward", load, _set_state)
    p.add_argument("id")
    p.add_argument("state", choices=OPERATOR_STATES)
    p.add_argument("--reason", required=True, help="why (kept on the lead's timeline)")
    for action, fn in (("pause", _pause), ("resume", _resume)):
        p = _command(actions, action, f"{action} the lead's automated sequence", load, fn)
        p.add_argument("id")

    p = _command(subparsers, "report", "the funnel report", load, _report, json_flag=False)
    p.add_argument("--since", help="leads created at or after (default: 7 days ago)")
    p.add_argument("--until", help="leads created before (default: now)")
    p.add_argument("--location", help="one configured location id")
    p.add_argument("--format", choices=("text", "json", "csv"), default="text")


def _command(
    parent: Any,
    name: str,
    help_: str,
    load: LoadConfig,
    fn: Callable[[argparse.Namespace, OpsDeps], Awaitable[int]],
    *,
    json_flag: bool = True,
) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = parent.add_parser(name, help=help_, description=help_)
    p.add_argument("--config", help="config file (default: $LEADD_CONFIG, else ./config.yaml)")
    if json_flag:
        p.add_argument("--json", action="store_true", help="print JSON (for scripts)")
    p.set_defaults(fn=lambda args: run(load(args.config, allow_demo=True), lambda d: fn(args, d)))
    return p


def run(cfg: configmod.Config, use_case: UseCase) -> int:
    """Open the database the config names, run one use case, close it again."""
    try:
        return asyncio.run(_with_deps(cfg, use_case))
    except BadRequest as exc:
        print(f"leadd: {exc.reason}", file=sys.stderr)
        return EXIT_USAGE
    except OpsError as exc:
        extra = "".join(f" ({k}: {v})" for k, v in exc.extra.items())
        print(f"leadd: {exc.reason}{extra}", file=sys.stderr)
        return EXIT_REFUSED
    except DB_ERRORS as exc:
        print(f"leadd: database unavailable: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_REFUSED


async def _with_deps(cfg: configmod.Config, use_case: UseCase) -> int:
    from leadd.store import opened

    async with opened(cfg) as (store, _):
        return await use_case(OpsDeps(cfg, store))


def actor() -> str:
    """Who did it, for the lead's timeline: cli:<unix user>."""
    try:
        return f"cli:{getpass.getuser()}"
    except (OSError, KeyError):
        return f"cli:uid{os.getuid()}"


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, ensure_ascii=False))


# --------------------------------------------------------------------------- leads


async def _list(args: argparse.Namespace, deps: OpsDeps) -> int:
    result = await lead_ops.list_leads(
        deps,
        state=args.state,
        location=args.location,
        since=params.timestamp("since", args.since) if args.since else None,
        until=params.timestamp("until", args.until) if args.until else None,
        q=args.q,
        cursor=args.cursor,
        limit=params.limit(args.limit),
    )
    if args.json:
        leads = [views.lead_summary(lead) for lead in result.leads]
        _print_json({"leads": leads, "next_cursor": result.next_cursor})
        return 0
    rows = [
        [
            str(lead.id),
            _time(lead.created_at),
            lead.state + (" (paused)" if lead.paused_at else ""),
            lead.location_id,
            lead.name or "-",
            lead.phone or "-",
            lead.email or "-",
        ]
        for lead in result.leads
    ]
    print(_table(["ID", "CREATED (UTC)", "STATE", "LOCATION", "NAME", "PHONE", "E-MAIL"], rows))
    if result.next_cursor:
        print(f"\nmore: --cursor {result.next_cursor}")
    return 0


async def _show(args: argparse.Namespace, deps: OpsDeps) -> int:
    detail = await lead_ops.show_lead(deps, params.lead_id(args.id))
    if args.json:
        _print_json(views.lead_detail(detail))
    else:
        print(render_lead(detail))
    return 0


async def _set_state(args: argparse.Namespace, deps: OpsDeps) -> int:
    lead_id = params.lead_id(args.id)
    change = await lead_ops.set_state(
        deps, lead_id, state=args.state, reason=args.reason, actor=actor()
    )
    if args.json:
        _print_json(views.state_change(change))
    else:
        print(f"lead {change.lead_id}: {change.from_state} -> {change.to_state}")
    return 0


async def _pause(args: argparse.Namespace, deps: OpsDeps) -> int:
    change = await lead_ops.pause(deps, params.lead_id(args.id), actor=actor())
    if args.json:
        _print_json(views.pause_change(change))
    else:
        print(f"lead {change.lead_id}: {'paused' if change.changed else 'already paused'}")
    return 0


async def _resume(args: argparse.Namespace, deps: OpsDeps) -> int:
    change = await lead_ops.resume(deps, params.lead_id(args.id), actor=actor())
    if args.json:
        _print_json(views.pause_change(change))
    elif not change.changed:
        print(f"lead {change.lead_id}: not paused")
    else:
        print(
            f"lead {change.lead_id}: resumed; {change.skipped} step(s) that came due while "
            "paused skipped"
        )
    return 0


def render_lead(detail: LeadDetail) -> str:
    """The lead and its timeline for a terminal: message texts, dry-run ones marked."""
    data = views.lead_detail(detail)
    lead = data["lead"]
    name = " ".join(x for x in (detail.first_name, detail.last_name) if x) or "-"
    vehicle = detail.vehicle or {}
    car = " ".join(str(vehicle[k]) for k in ("year", "make", "model") if vehicle.get(k))
    services = ", ".join(
        str(s.get("name")) + (f" (${s['price']:.2f})" if s.get("price") is not None else "")
        for s in detail.services
        if isinstance(s, dict)
    )
    opted = [c for c, on in lead["opted_out"].items() if on]
    lines = [
        f"lead {detail.id}  {detail.state}"
        + (f"  PAUSED since {_time(detail.paused_at)}" if detail.paused_at else ""),
        f"  location  {detail.location_id}  (source {detail.source}, order "
        f"{detail.order_number or detail.shopmonkey_order_id}, created {_time(detail.created_at)})",
        f"  customer  {name}  {detail.phone or '-'}  {detail.email or '-'}",
        f"  vehicle   {car or vehicle.get('description') or '-'}",
        f"  services  {services or '-'}",
        f"  opted out {', '.join(opted) or 'no'}",
        "",
        "timeline (UTC)",
    ]
    for entry in data["timeline"]:
        line = _timeline_line(entry)
        if line:
            lines.append(f"  {entry['at'][:19].replace('T', ' ')}  {line}")
    return "\n".join(lines)


def _timeline_line(e: dict[str, Any]) -> str | None:
    kind = e["type"]
    if kind == "event":
        who = f" by {e['actor']}" if e["actor"] else ""
        reason = e["detail"].get("reason") if isinstance(e["detail"], dict) else None
        change = e["to_state"] if e["from_state"] in (None, e["to_state"]) else (
            f"{e['from_state']} -> {e['to_state']}"
        )  # fmt: skip
        return f"state     {change} ({e['cause']}{who})" + (f": {reason}" if reason else "")
    if kind == "message":
        arrow = "<-" if e["direction"] == "inbound" else "->"
        marks = " [dry-run]" if e["dry_run"] else ""
        status = f" [{e['delivery_status']}]" if e["delivery_status"] else ""
        return f"{e['channel']:<5} {arrow}  {e['author']}: {e['text']!r}{marks}{status}"
    if kind == "touch_point":
        if e["state"] == "sent":
            return None  # shown as its message
        why = f": {e['reason']}" if e["reason"] else ""
        return f"step      {e['step']} ({e['channel']}) {e['state']}{why}"
    return f"opt-out   {e['channel']} {e['address']} ({e['reason']})"


# --------------------------------------------------------------------------- report


async def _report(args: argparse.Namespace, deps: OpsDeps) -> int:
    result = await report_ops.funnel_report(
        deps,
        since=params.timestamp("since", args.since) if args.since else None,
        until=params.timestamp("until", args.until) if args.until else None,
        location=args.location,
    )
    if args.format == "json":
        _print_json(views.report(result))
    elif args.format == "csv":
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(["location", "metric", "value"])
        writer.writerows(report_rows(result))
    else:
        print(render_report(result))
    return 0


def _metrics(s: ReportSection) -> list[tuple[str, Any]]:
    """(metric, value) pairs of one section, the same names in text and CSV."""
    out: list[tuple[str, Any]] = [("leads", s.leads)]
    out += [(f"source.{k}", v) for k, v in sorted(s.by_source.items())]
    out += [(f"state.{k}", s.by_state[k]) for k in STATES if k in s.by_state]
    for stage in s.funnel:
        out.append((f"reached.{stage.stage}", stage.reached))
        out.append((f"conversion.{stage.stage}", stage.conversion))
    out += [("contacted", s.contacted), ("replied", s.replied), ("reply_rate", s.reply_rate)]
    out += [("lost", s.lost), ("answered", s.answered)]
    out += [
        ("speed_to_lead_p50_s", s.speed_to_lead_p50),
        ("speed_to_lead_p90_s", s.speed_to_lead_p90),
    ]
    out += [("opted_out.sms", s.opted_out_sms), ("opted_out.email", s.opted_out_email)]
    for channel, counts in sorted(s.messages.items()):
        for key in ("sent", "delivered", "failed", "dry_run"):
            out.append((f"messages.{channel}.{key}", getattr(counts, key)))
    return out


def report_rows(r: Report) -> list[list[Any]]:
    rows = []
    for section in (r.total, *r.locations):
        for metric, value in _metrics(section):
            rows.append([section.location_id or "total", metric, "" if value is None else value])
    return rows


def render_report(r: Report) -> str:
    sections = (r.total, *r.locations)
    header = ["", "total", *(s.location_id or "" for s in r.locations)]
    columns = [dict(_metrics(s)) for s in sections]
    names: list[str] = []
    for column in columns:  # every metric any section has, in first-seen order
        names += [n for n in column if n not in names]
    rows = [[name, *(_cell(name, c.get(name)) for c in columns)] for name in names]
    where = f"location {r.location_id}" if r.location_id else "all locations"
    title = f"funnel report: leads created {_time(r.since)} to {_time(r.until)} UTC, {where}"
    notes = (
        "reached.X: leads that got at least to X; conversion.X: reached.X / the stage before;\n"
        "reply_rate: replied / contacted; speed to lead: created -> first message a provider "
        "accepted (dry-run sends excluded)"
    )
    return f"{title}\n\n{_table(header, rows)}\n\n{notes}"


def _cell(name: str, value: Any) -> str:
    if value is None:
        return "-"
    if name.startswith("conversion.") or name == "reply_rate":
        return f"{value * 100:.1f}%"
    if name.startswith("speed_to_lead"):
        return _duration(float(value))
    return str(value)


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


# --------------------------------------------------------------------------- formatting


def _time(value: Any) -> str:
    return value.strftime("%Y-%m-%d %H:%M") if value is not None else "-"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    if not rows:
        return "(none)"
    widths = [max(len(str(r[i])) for r in (header, *rows)) for i in range(len(header))]
    lines = [
        "  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)) for r in (header, *rows)
    ]
    return "\n".join(line.rstrip() for line in lines)
