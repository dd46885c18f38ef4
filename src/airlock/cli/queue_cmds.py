"""Queue, nonce and data-key commands: thin wrappers over :mod:`airlock.queue`."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import click

from airlock.cli import common
from airlock.cli.tx_options import tx_options
from airlock.queue.states import LIVE, State
from airlock.signer.ladder import MAX_LADDER

if TYPE_CHECKING:
    from airlock.api.records import Item

_PRIORITIES = ("cancel", "risk-reducing", "normal")
# The library's cancel outcomes, in the words `queue cancel --json` has always printed.
_CANCEL_ACTIONS = {"local": "cancelled", "presigned": "cancel_requested", "queued": "cancel_queued"}
_STATES = click.Choice([s.value for s in State])


@click.command("queue")
@tx_options(nonce_required=False)
@click.option(
    "--ladder",
    "levels",
    type=click.IntRange(1, MAX_LADDER),
    default=1,
    show_default=True,
    help="Pre-sign at this many fee levels.",
)
@click.option(
    "--bump-pct",
    type=click.FloatRange(10, 1000),
    help="Fee rise per level in percent (>= 10; default from config, 12.5).",
)
@click.option(
    "--max-fee-cap",
    type=click.IntRange(min=1),
    help="No level's max fee (or gas price) above this, in wei per gas.",
)
@click.option("--with-cancel", is_flag=True, help="Also pre-sign a cancel at the top fee.")
@click.option("--ttl", type=click.IntRange(1), help="Seconds before an unsent item expires.")
@click.option("--idempotency-key", help="Queueing the same key again returns the same item.")
@click.option("--strategy", default="default", show_default=True, help="Strategy id.")
@click.option("--private", is_flag=True, help="Only ever send through private relays.")
@click.option(
    "--priority", type=click.Choice(list(_PRIORITIES)), default="normal", show_default=True
)
@click.option("--json", "as_json", is_flag=True, help="Print id, nonce and every variant hash.")
@click.pass_context
def evm_queue(ctx: click.Context, /, label: str, as_json: bool, **options: Any) -> None:
    """Sign a transaction (and its fee ladder) in the HSM and queue it durably.

    Nothing touches the network. Prints the item id once it is on disk.
    """
    tx_type = options.pop("tx_type")
    with common.library(ctx) as al:
        queued = al.queue_transaction(
            key=label,
            ladder=options.pop("levels"),
            tx_type=None if tx_type is None else int(tx_type),
            **options,
        )
    for warning in queued.warnings:
        common.warn(warning)
    data = {
        "id": queued.id,
        "existing": queued.replayed,
        "state": str(queued.state),
        "sender": queued.account,
        "chain_id": queued.chain_id,
        "nonce": queued.nonce,
        "variants": [v.as_json() for v in queued.variants],
    }
    common.emit(as_json, data, lambda: queued.id)


# --------------------------------------------------------------------------- queue


@click.group("queue")
def queue_group() -> None:
    """The encrypted queue: list, inspect, cancel, verify and export items."""


@queue_group.command("list")
@click.option("--state", "states", type=_STATES, multiple=True, help="Only these states.")
@click.option("--limit", type=click.IntRange(1), help="At most this many items.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def queue_list(
    ctx: click.Context, states: tuple[str, ...], limit: int | None, as_json: bool
) -> None:
    """Items in creation order, with their state (metadata only: nothing is decrypted)."""
    with common.library(ctx) as al:
        found = al.items(state=states or None, limit=limit)
    common.emit(as_json, [i.as_json() for i in found], lambda: _item_table(found))


def _item_table(found: list[Item]) -> str:
    if not found:
        return "no items"
    now = time.time() * 1000
    lines = [
        f"{'ID':<26}  {'KIND':<12} {'STATE':<14} {'PRIO':>4}  {'NONCE':>6}  {'AGE':>7}  ACCOUNT"
    ]
    for item in found:
        state = str(item.state) + ("*" if item.cancel_requested else "")
        nonce = "" if item.nonce is None else str(item.nonce)
        lines.append(
            f"{item.id:<26}  {item.kind:<12} {state:<14} {item.priority:>4}  {nonce:>6}  "
            f"{_age(now - item.created_ms):>7}  {item.account}"
        )
    if any(i.cancel_requested for i in found):
        lines.append("* its pre-signed cancel will be sent in its place")
    return "\n".join(lines)


def _age(ms: float) -> str:
    seconds = int(ms // 1000)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


@queue_group.command("show")
@click.argument("item_id")
@click.option("--json", "as_json", is_flag=True, help="Everything, with each variant's raw bytes.")
@click.pass_context
def queue_show(ctx: click.Context, item_id: str, as_json: bool) -> None:
    """One item, decrypted through the HSM: payload, signed variants, history."""
    with common.library(ctx) as al:
        record = al.inspect(item_id)
    if "error" in record:
        common.fail(f"{record['error']} (the item is now {record['item']['state']})")
    common.emit(as_json, record, lambda: _show_text(record))


def _show_text(record: dict[str, Any]) -> str:
    item, payload = record["item"], record.get("payload", {})
    lines = [f"{k}: {v}" for k, v in item.items() if v is not None]
    for key, value in payload.get("intent", {}).items():
        lines.append(f"intent.{key}: {value}")
    for variant in record.get("variants", []):
        tip = "" if variant["tip_per_gas"] is None else f" tip {variant['tip_per_gas']}"
        lines.append(
            f"variant {variant['idx']} ({variant['kind']}): {variant['hash']} "
            f"fee {variant['fee_per_gas']}{tip}"
        )
    for step in record["history"]:
        lines.append(f"history: {step['from'] or '-'} -> {step['to']}: {step['reason']}")
    return "\n".join(lines)


@queue_group.command("cancel")
@click.argument("item_id")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def queue_cancel(ctx: click.Context, item_id: str, as_json: bool) -> None:
    """Cancel an item: locally if it never left (nothing touches the network).

    A transaction whose nonce later ones need is replaced by its pre-signed cancel; a Bybit
    order already at the venue gets a signed cancel, queued ahead of new orders."""
    with common.library(ctx) as al:
        outcome = al.cancel(item_id)
    data = {
        "id": outcome.item.id,
        "action": _CANCEL_ACTIONS[outcome.action],
        "state": str(outcome.item.state),
        "message": outcome.message,
        "cancel_item": None if outcome.cancel_item is None else outcome.cancel_item.id,
    }
    common.emit(as_json, data, lambda: f"{outcome.item.id}: {outcome.message}")


@queue_group.command("verify")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def queue_verify(ctx: click.Context, as_json: bool) -> None:
    """Decrypt every live item; quarantine any that fail authentication."""
    with common.open_store(ctx) as (store, _):
        checked = len(store.items.select(sorted(LIVE)))
        problems = store.items.verify()
    data = {
        "checked": checked,
        "quarantined_or_flagged": [{"id": i, "problem": p} for i, p in problems],
    }
    common.emit(as_json, data, lambda: f"{checked} live items checked, {len(problems)} bad")
    for item_id, problem in problems:
        click.echo(f"error: {item_id}: {problem}", err=True)
    if problems:
        raise SystemExit(1)


@queue_group.command("export")
@click.option(
    "--out",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Write JSON lines here (mode 0600) instead of stdout.",
)
@click.option(
    "--state",
    "states",
    type=_STATES,
    multiple=True,
    help="Only these states (default: the live ones).",
)
@click.option("--all", "everything", is_flag=True, help="Every item, terminal ones included.")
@click.pass_context
def queue_export(
    ctx: click.Context, out: Path | None, states: tuple[str, ...], everything: bool
) -> None:
    """Decrypted items with their signed bytes, one JSON object per line.

    The output holds signed transactions (no keys): anyone holding it can broadcast them.
    """
    wanted = None if everything else [State(s) for s in states] or sorted(LIVE)
    with common.open_store(ctx) as (store, _):
        records = store.items.export(wanted)
        if out is None:
            # sys.stdout, not click.get_text_stream (deprecated in click 8.5): the lines are
            # ASCII JSON, so no encoding fix-up is needed
            written, bad = _write_lines(records, sys.stdout)
        else:
            fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with open(fd, "w") as handle:
                written, bad = _write_lines(records, handle)
    click.echo(
        f"exported {written} items" + (f", {bad} failed to decrypt" if bad else ""), err=True
    )
    if bad:
        raise SystemExit(1)


def _write_lines(records: Iterator[dict[str, Any]], handle: TextIO) -> tuple[int, int]:
    """Write one JSON object per line; return (lines written, records that failed)."""
    written = bad = 0
    for record in records:
        handle.write(json.dumps(record, sort_keys=True) + "\n")
        written += 1
        bad += "error" in record
    handle.flush()
    return written, bad


# --------------------------------------------------------------------------- nonce


@click.group("nonce")
def nonce_group() -> None:
    """Nonce counters per (chain, sender): status and sync with a node."""


@nonce_group.command("status")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def nonce_status(ctx: click.Context, as_json: bool) -> None:
    """Next nonce, live items and gaps for every sender the queue knows."""
    with common.open_store(ctx) as (store, _):
        rows = store.nonces.status()

    def text() -> str:
        if not rows:
            return "no senders yet"
        lines = []
        for r in rows:
            synced = "never synced" if r.synced_ms is None else f"chain pending {r.chain_pending}"
            gaps = f", GAPS at {', '.join(map(str, r.gaps))}" if r.gaps else ""
            lines.append(
                f"chain {r.chain_id} {r.sender}: next {r.next_nonce}, {r.live} live, {synced}{gaps}"
            )
        return "\n".join(lines)

    common.emit(as_json, [r.as_json() for r in rows], text)
    if any(r.gaps for r in rows):
        common.warn(
            "nonce gaps: later transactions wait until each gap is filled; the next "
            "transaction queued for that sender takes the lowest free nonce"
        )


@nonce_group.command("sync")
@click.option("--rpc", "url", required=True, help="JSON-RPC URL of a node.")
@click.option("--key", "labels", multiple=True, help="Also sync this key's address.")
@click.option("--timeout", type=click.FloatRange(0.1, 120), default=10, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def nonce_sync(
    ctx: click.Context, url: str, labels: tuple[str, ...], timeout: float, as_json: bool
) -> None:
    """Raise local nonce counters to the node's pending nonce (never lower them)."""
    with common.library(ctx) as al:
        results = al.sync_nonces(url, keys=labels, timeout=timeout)
    for r in results:
        if r.behind:
            common.warn(
                f"{r.sender}: the node reports pending nonce {r.chain_pending} but "
                f"{r.before} are allocated here; not lowered (a lagging node, or queued "
                "transactions the node has not seen yet)"
            )
        if r.conflicts:
            common.warn(
                f"{r.sender}: queued items {', '.join(r.conflicts)} hold nonces the "
                "chain has already used; they cannot be mined as signed"
            )

    def text() -> str:
        return "\n".join(
            f"chain {r.chain_id} {r.sender}: next {r.before} -> {r.after} "
            f"(chain pending {r.chain_pending})"
            for r in results
        )

    common.emit(as_json, [r.as_json() for r in results], text)


# --------------------------------------------------------------------------- keys


@click.group("keys")
def keys_group() -> None:
    """The queue's data keys (wrapped by the HSM's key-encryption key)."""


@keys_group.command("rotate")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def keys_rotate(ctx: click.Context, as_json: bool) -> None:
    """Make a new primary data key; older ones are kept for reading."""
    with common.open_store(ctx) as (store, _):
        key_id = store.keys.rotate()
    common.emit(as_json, {"primary_key_id": key_id}, lambda: f"new primary data key {key_id}")


@keys_group.command("list")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def keys_list(ctx: click.Context, as_json: bool) -> None:
    """Data keys: id, wrapping KEK, encryptions counted, why it was made."""
    with common.open_store(ctx) as (store, _):
        rows = store.keys.all()
    common.emit(
        as_json,
        rows,
        lambda: "\n".join(
            f"key {r['key_id']}: kek {r['kek_label']}, {r['encryptions']} encryptions reserved, "
            f"{r['reason']}"
            for r in rows
        ),
    )
