"""``airlock slo``: the service levels of a window, computed from the record.

Reads the audit log (through the HSM: its entries are encrypted under the queue's data
keys), so the figures survive restarts and cover every broadcaster that shares the queue.
Text by default, ``--json`` for machines, ``--html FILE`` for the document that is signed
off after a drill (it includes the audit log's verdict, verified up to its latest signed
checkpoint). The exit status is 0 whatever the verdict, or 2 with ``--strict`` when a
figure failed; 1 for errors.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import click

from airlock.cli import common
from airlock.clock import wall_clock_ms
from airlock.errors import InvalidInput

if TYPE_CHECKING:  # imported when the command runs: the CLI starts without them
    from airlock.hsm.keyring import KeyRing
    from airlock.queue.store import Store
    from airlock.slo import Report, Timeline

_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)([smhd])")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}


@click.command("slo")
@common.config_option
@click.option("--since", help="The window: the last 24h, 90m, 7d, 3600s (default 24h).")
@click.option("--from", "start", help="Window start: ISO 8601 (UTC if no zone) or Unix ms.")
@click.option("--to", "end", help="Window end (default now), same forms as --from.")
@click.option("--json", "as_json", is_flag=True, help="Every figure and its inputs as JSON.")
@click.option("--html", type=click.Path(dir_okay=False, path_type=Path), help="Write the report.")
@click.option("--strict", is_flag=True, help="Exit 2 when a figure fails its target.")
@click.pass_context
def slo(
    ctx: click.Context,
    config_path: Path | None,
    since: str | None,
    start: str | None,
    end: str | None,
    as_json: bool,
    html: Path | None,
    strict: bool,
) -> None:
    """Availability, failover, persist and queued-age figures against the [slo] targets."""
    from airlock.slo import Targets, Window, read_report
    from airlock.slo.read import Follower
    from airlock.slo.render import as_json as report_json
    from airlock.slo.render import render_text

    common.use_config(ctx, config_path)
    settings = common.config(ctx)
    now = wall_clock_ms()
    window = Window(*window_of(since, start, end, now))
    with common.open_store(ctx) as (store, ring):
        if html is None:
            report = read_report(store, window, Targets.of(settings.slo))
        else:
            follower = Follower(store)
            report = follower.report(window, Targets.of(settings.slo))
            write_html(html, report, follower.timeline, store, ring)
    common.emit(as_json, report_json(report), lambda: render_text(report))
    if html is not None:
        click.echo(f"report written to {html}", err=True)
    if strict and not report.passed:
        ctx.exit(2)


def window_of(since: str | None, start: str | None, end: str | None, now: int) -> tuple[int, int]:
    """(from_ms, to_ms) from the options; a clear error for every bad combination."""
    if since is not None and start is not None:
        raise InvalidInput("give --since or --from, not both")
    to_ms = now if end is None else moment("--to", end)
    if start is not None:
        from_ms = moment("--from", start)
    else:
        from_ms = to_ms - int(duration_s(since or "24h") * 1000)
    if from_ms >= to_ms:
        raise InvalidInput(f"the window is empty: --from {from_ms} is not before --to {to_ms}")
    return from_ms, to_ms


def duration_s(text: str) -> float:
    match = _DURATION_RE.fullmatch(text.strip())
    if match is None or float(match.group(1)) <= 0:
        raise InvalidInput(f"--since must be a duration like 24h, 90m, 7d or 3600s, got {text!r}")
    return float(match.group(1)) * _UNIT_S[match.group(2)]


def moment(option: str, text: str) -> int:
    """Unix milliseconds, or an ISO 8601 time (UTC when it names no zone)."""
    raw = text.strip()
    if raw.isdigit():
        return int(raw)
    try:
        parsed = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidInput(
            f"{option} must be Unix milliseconds or ISO 8601 (2026-12-04T10:00:00Z), got {text!r}"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return int(parsed.timestamp() * 1000)


def write_html(path: Path, report: Report, timeline: Timeline, store: Store, ring: KeyRing) -> None:
    from airlock.audit.log import AuditKey
    from airlock.slo.html import document
    from airlock.slo.read import audit_verdict

    verdict = audit_verdict(store, AuditKey(ring))
    text = document(report, timeline, title="airlock service levels", audit=verdict)
    path.write_text(text, encoding="utf-8")
