"""``airlock bybit order``, ``cancel`` and ``orders``: parse, call the library, print.

What an order needs beyond its fields (whether the venue is reachable, the slow-link rule,
the intent key, the outage policy) is the library's (:meth:`airlock.Airlock.queue_order`),
so a bot gets the same answers as an operator. Only ``order --venue auto`` touches the
network: one unsigned GET /v5/market/time to tell the policy whether the venue is up.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from airlock.cli import common
from airlock.errors import InvalidInput
from airlock.vocab import CATEGORIES

if TYPE_CHECKING:
    from airlock.api.records import Item

_VENUE_MODES = ("auto", "up", "down")


def _when(ms: int | None) -> str | None:
    if ms is None:
        return None
    moment = datetime.fromtimestamp(ms / 1000, UTC)
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


# --------------------------------------------------------------------------- group


@click.group("bybit")
def bybit_group() -> None:
    """Bybit orders: queue them under the outage policy, cancel them, list them."""


# --------------------------------------------------------------------------- order


@bybit_group.command("order")
@click.option("--symbol", required=True, help="Instrument, e.g. BTCUSDT.")
@click.option("--side", required=True, type=click.Choice(["Buy", "Sell"]))
@click.option("--type", "order_type", required=True, type=click.Choice(["Limit", "Market"]))
@click.option("--qty", required=True, help="Quantity, a plain decimal such as 0.01.")
@click.option("--price", help="Limit price (Limit orders only).")
@click.option(
    "--tif",
    type=click.Choice(["GTC", "PostOnly", "IOC", "FOK"]),
    help="Time in force (default GTC for Limit, IOC for Market).",
)
@click.option(
    "--ttl",
    type=int,
    help="Seconds the order may wait unsent before it expires (default from [bybit.policy]).",
)
@click.option(
    "--ref-price",
    help="Market orders in an outage: the reference price, at the instrument's tick precision.",
)
@click.option(
    "--slippage-bps",
    help="Market orders in an outage: the most the price may move against you, in bps.",
)
@click.option(
    "--idempotency-key",
    help="Queueing the same key again returns the same order (default: a new cli-<uuid>).",
)
@click.option(
    "--category",
    type=click.Choice(list(CATEGORIES)),
    help="Bybit category (default: [bybit] category).",
)
@click.option("--reduce-only", is_flag=True, help="Only ever shrink a position.")
@click.option(
    "--venue",
    "venue_mode",
    type=click.Choice(_VENUE_MODES),
    default="auto",
    show_default=True,
    help="Is the venue reachable? auto probes GET /v5/market/time (2 s); up and down "
    "force the answer, for drills.",
)
@common.config_option
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def bybit_order(
    ctx: click.Context,
    /,
    config_path: Path | None,
    venue_mode: str,
    as_json: bool,
    **options: Any,
) -> None:
    """Queue an order under the outage policy.

    The policy decides whether the order may wait for the link, in what form and for how
    long; the HSM signs its intent; the broadcaster sends it. Exit status 1 when the policy
    refuses it: the rule is named on stderr, nothing is queued, the refusal is audited.

    --venue up|down skips the probe and forces the policy's view of the venue: for drills,
    or when the probe cannot tell (a venue reachable only through another link).
    """
    common.use_config(ctx, config_path)
    key = options.pop("idempotency_key")
    if key is None:
        key = f"cli-{uuid.uuid4().hex}"
        click.echo(f"idempotency key {key} (pass --idempotency-key {key} to retry)", err=True)
    with common.library(ctx) as al:
        queued = al.queue_order(**options, idempotency_key=key, venue=venue_mode)
    for note in queued.notes:
        click.echo(note, err=True)
    for warning in queued.warnings:
        common.warn(warning)
    data = {
        "id": queued.id,
        "state": str(queued.state),
        "order_link_id": queued.order_link_id,
        "idempotency_key": key,
        "rule": queued.rule,
        "message": queued.message,
        "expires_ms": queued.expires_ms,
        "expires_at": _when(queued.expires_ms),
        "venue_reachable": queued.venue_reachable,
        "replayed": queued.replayed,
        "intent": queued.intent,
    }
    common.emit(as_json, data, lambda: _order_text(data))


def _order_text(data: dict[str, Any]) -> str:
    lines = [
        f"item: {data['id']}" + (" (replayed)" if data["replayed"] else ""),
        f"state: {data['state']}",
        f"orderLinkId: {data['order_link_id']}",
        f"idempotency key: {data['idempotency_key']}",
        f"rule: {data['rule']}: {data['message']}",
        f"expires: {data['expires_at'] or 'never'}",
    ]
    intent = data.get("intent") or {}
    if intent:
        price = "" if intent.get("price") is None else f" @ {intent['price']}"
        lines.append(
            f"intent: {intent.get('orderType')} {intent.get('timeInForce')} "
            f"{intent.get('side')} {intent.get('qty')} {intent.get('symbol')}{price}"
            + (" reduce-only" if intent.get("reduceOnly") else "")
        )
    return "\n".join(lines)


# --------------------------------------------------------------------------- cancel


@bybit_group.command("cancel")
@click.option("--order-link-id", "link_id", help="The orderLinkId of the order to cancel.")
@click.option("--item", "item_id", help="The queue item id of the order to cancel.")
@common.config_option
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def bybit_cancel(
    ctx: click.Context,
    link_id: str | None,
    item_id: str | None,
    config_path: Path | None,
    as_json: bool,
) -> None:
    """Cancel an order, locally if it was never sent.

    Otherwise a cancel is signed now and queued ahead of every new order; the broadcaster
    sends it when the venue is reachable. Give exactly one of --order-link-id or --item.
    """
    if (link_id is None) == (item_id is None):
        raise click.UsageError("give exactly one of --order-link-id or --item")
    common.use_config(ctx, config_path)
    with common.library(ctx) as al:
        al.bybit_config  # noqa: B018 - fails clearly without a [bybit] section
        if link_id is not None:
            order = al.order(link_id)
        else:
            assert item_id is not None
            order = al.item(item_id)  # ItemNotFound names the id
            if order.kind != "bybit_order":
                raise InvalidInput(f"item {item_id!r} is a {order.kind} item, not a Bybit order")
        outcome = al.cancel(order.id)
    cancel = outcome.cancel_item
    data = {
        "action": outcome.action,
        "rule": outcome.rule,
        "message": outcome.message,
        "order": {
            "id": outcome.item.id,
            "state": str(outcome.item.state),
            "order_link_id": outcome.item.order_link_id,
        },
        "cancel_item": None if cancel is None else cancel.id,
        "replayed": outcome.replayed,
    }

    def text() -> str:
        if cancel is None:
            what = "cancelled locally, nothing was sent"
        else:
            again = "; it was already queued, nothing new stored" if outcome.replayed else ""
            what = f"cancel queued ahead of new orders (item {cancel.id}){again}"
        link = outcome.item.order_link_id
        return f"{link} ({outcome.item.id}): {what}\nrule: {outcome.rule}: {outcome.message}"

    common.emit(as_json, data, text)


# --------------------------------------------------------------------------- orders


@bybit_group.command("orders")
@click.option("--limit", type=click.IntRange(1), help="At most this many items.")
@common.config_option
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def bybit_orders(
    ctx: click.Context, limit: int | None, config_path: Path | None, as_json: bool
) -> None:
    """List Bybit orders and cancels, newest first.

    Each with what the venue last said of it. Metadata only: nothing is decrypted, nothing
    is sent."""
    common.use_config(ctx, config_path)
    with common.library(ctx) as al:
        found = al.items(kind=["bybit_order", "bybit_cancel"], limit=limit, newest_first=True)
    rows = [_order_row(item) for item in found]
    common.emit(as_json, rows, lambda: _orders_table(rows))


def _order_row(item: Item) -> dict[str, Any]:
    return {
        "id": item.id,
        "action": "order" if item.kind == "bybit_order" else "cancel",
        "category": item.category,
        "symbol": item.symbol,
        "state": str(item.state),
        "venue_status": item.venue_status,
        "cum_exec_qty": item.cum_qty,
        "avg_price": item.avg_price,
        "order_link_id": item.order_link_id,
        "order_id": item.venue_order_id,
        "fills": len(item.fills),
        "account": item.account,
        "created_ms": item.created_ms,
        "expires_ms": item.expires_ms,
        "seen_ms": item.venue_seen_ms,
    }


def _orders_table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "no Bybit orders"
    lines = [
        f"{'ID':<26}  {'ACTION':<6} {'SYMBOL':<12} {'STATE':<14} {'VENUE':<16} "
        f"{'CUMQTY':>10} {'AVGPRICE':>12} {'FILLS':>5}  ORDERLINKID"
    ]
    for r in rows:
        lines.append(
            f"{r['id']:<26}  {r['action']:<6} {r['symbol']:<12} {r['state']:<14} "
            f"{r['venue_status'] or '-':<16} {r['cum_exec_qty'] or '-':>10} "
            f"{r['avg_price'] or '-':>12} {r['fills']:>5}  {r['order_link_id']}"
        )
    return "\n".join(lines)


@bybit_group.command("positions")
@common.config_option
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def bybit_positions(ctx: click.Context, config_path: Path | None, as_json: bool) -> None:
    """Positions as the private stream and REST reconcile last saw them (from the store:
    nothing is sent)."""
    common.use_config(ctx, config_path)
    with common.library(ctx) as al:
        rows = [p.as_json() for p in al.positions()]
    common.emit(as_json, rows, lambda: _positions_table(rows))


@bybit_group.command("balance")
@common.config_option
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def bybit_balance(ctx: click.Context, config_path: Path | None, as_json: bool) -> None:
    """Wallet coins as last seen (from the store: nothing is sent)."""
    common.use_config(ctx, config_path)
    with common.library(ctx) as al:
        rows = [b.as_json() for b in al.balances()]
    common.emit(as_json, rows, lambda: _balances_table(rows))


@bybit_group.command("resume")
@common.config_option
@click.pass_context
def bybit_resume(ctx: click.Context, config_path: Path | None) -> None:
    """After fixing a refused key: let the running service's Bybit side connect again."""
    common.use_config(ctx, config_path)
    with common.library(ctx) as al:
        al.resume_bybit()
    click.echo("resume requested: the service's Bybit stream connects again within seconds")


def _positions_table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "no positions seen yet (the service reads them from the venue)"
    lines = [f"{'ACCOUNT':<10} {'SYMBOL':<12} {'SIDE':<5} {'SIZE':>12} {'AVGPRICE':>12} "
             f"{'UPNL':>10}  SEEN (SOURCE)"]  # fmt: skip
    for r in rows:
        lines.append(
            f"{r['account']:<10} {r['symbol']:<12} {r['side'] or 'flat':<5} {r['size']:>12} "
            f"{r['avg_price']:>12} {r['unrealised_pnl'] or '-':>10}  "
            f"{_when(r['venue_ms'])} ({r['source']})"
        )
    return "\n".join(lines)


def _balances_table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "no balances seen yet (the service reads them from the venue)"
    lines = [f"{'ACCOUNT':<10} {'COIN':<8} {'WALLET':>18} {'EQUITY':>18}  SEEN (SOURCE)"]
    for r in rows:
        lines.append(
            f"{r['account']:<10} {r['coin']:<8} {r['wallet_balance']:>18} {r['equity']:>18}  "
            f"{_when(r['venue_ms'])} ({r['source']})"
        )
    return "\n".join(lines)
