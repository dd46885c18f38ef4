"""``airlock bybit order``, ``cancel`` and ``orders``: thin over :mod:`airlock.queue.bybit`.

``order`` asks the outage policy (:func:`airlock.queue.policy.decide_order`) whether the
order may wait for the link, signs its intent with the HSM's P-256 intent key and queues
it; the broadcaster sends it. ``cancel`` drops a never-sent order locally or queues a
signed cancel ahead of every new order. ``orders`` lists what the queue knows of each Bybit
item, including what the venue last said of it. Only ``order --venue auto`` touches the
network: one unsigned GET /v5/market/time to tell the policy whether the venue is up.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from airlock.audit import entries as audit_entries
from airlock.cli import common
from airlock.errors import AirlockError, ConfigError, InvalidInput
from airlock.hsm import errors as hsm_errors
from airlock.hsm.kinds import KeyKind
from airlock.queue.items import Item, Kind
from airlock.redact import redact_url
from airlock.signer.bybit import CATEGORIES

if TYPE_CHECKING:
    from airlock.config import BybitConfig, FailoverConfig
    from airlock.hsm.keyring import KeyRing
    from airlock.queue.bybit import IntentKey
    from airlock.queue.policy import OrderRequest
    from airlock.queue.store import Store
    from airlock.queue.venue import VenueRef

PROBE_TIMEOUT_S = 2.0
"""How long ``--venue auto`` waits for GET /v5/market/time before calling the venue down."""

_VENUE_MODES = ("auto", "up", "down")


def _bybit_settings(ctx: click.Context) -> BybitConfig:
    settings = common.config(ctx)
    if settings.bybit is None:
        where = settings.source or settings.home / "airlock.toml"
        raise ConfigError(
            f"no [bybit] section in {where}: add one with base_url, api_key and secret_label "
            "(or rsa_key_label) to queue Bybit orders (see docs/configuration.md)"
        )
    return settings.bybit


def _intent_key(ring: KeyRing, label: str) -> IntentKey:
    """The HSM P-256 key that signs order intents; created (and said so) on first use."""
    from airlock.queue.bybit import IntentKey  # the queue: sqlite3, cryptography

    try:
        ring.info(label)
    except hsm_errors.KeyNotFound:
        ring.generate(KeyKind.P256, label)
        click.echo(
            f"created the P-256 intent key {label!r} in the HSM (the broadcaster checks every "
            "order against it); 'airlock hsm pubkey --key "
            f"{label}' prints its public key for auditors",
            err=True,
        )
    return IntentKey(ring.ecdsa_key(label, curve="p256"), label, ring.public_key_pem(label))


def _probe(settings: BybitConfig) -> tuple[bool, str, float | None]:
    """One unsigned GET /v5/market/time, no retry, at most PROBE_TIMEOUT_S: is the venue up?"""
    import asyncio

    from airlock.relays.bybit import BybitClient  # aiohttp: only --venue auto probes

    def never_signs(_: bytes) -> str:
        raise RuntimeError("the reachability probe sends no signed request")

    async def ask() -> float:
        client = BybitClient(
            settings.base_url,
            settings.api_key,
            never_signs,
            settings.sign_type,
            timeout_s=PROBE_TIMEOUT_S,
        )
        async with client:
            started = time.monotonic()
            await client.sync_time(retry=False)
            return time.monotonic() - started

    shown = redact_url(settings.base_url)
    try:
        elapsed = asyncio.run(ask())
    except (AirlockError, OSError) as exc:
        return False, f"venue unreachable ({exc}); the outage policy applies", None
    note = f"venue reachable: {shown} answered the time probe in {elapsed * 1000:.0f} ms"
    return True, note, elapsed * 1000


def _reachability(settings: BybitConfig, mode: str) -> tuple[bool, float | None]:
    """Whether the venue answers, and in how many ms (None when not probed)."""
    latency = None
    if mode == "auto":
        reachable, note, latency = _probe(settings)
    else:
        reachable = mode == "up"
        state = "reachable" if reachable else "unreachable"
        note = f"venue taken as {state} (--venue {mode}, not probed)"
    click.echo(note, err=True)
    return reachable, latency


def _slow_link_rule(
    store: Store, request: OrderRequest, latency_ms: float, config: FailoverConfig
) -> OrderRequest:
    """The playbook's rule for a slow link: above ``backup_latency_ms`` a Market order is
    sent as an IOC Limit within ``critical_slippage_bps`` of ``--ref-price``, or refused.
    The decision is audited (``failover.decision``) either way."""
    from airlock.broadcaster.failover import Mode, ModeState, critical_order  # the policy

    slow = ModeState(Mode.OUTAGE, 0, "slow-link", {"latency_ms": round(latency_ms, 1)})
    ref = None if request.ref_price is None else str(request.ref_price)
    critical = critical_order(request.order_type, slow, latency_ms, ref, request.side, config)
    if critical.action == "send":
        return request
    store.record_event(audit_entries.FAILOVER_DECISION, critical.as_json())
    if critical.action == "refuse":
        raise InvalidInput(
            f"order refused ({critical.rule}): the link to the venue is slow "
            f"({latency_ms:.0f} ms > {config.backup_latency_ms:g} ms); a Market order needs "
            "--ref-price to be sent as a capped limit"
        )
    common.warn(
        f"slow link ({latency_ms:.0f} ms): Market order sent as an IOC Limit at "
        f"{critical.limit_price} ({config.critical_slippage_bps} bps from the ref price)"
    )
    return replace(
        request,
        order_type="Limit",
        price=critical.limit_price,
        tif="IOC",
        ref_price=None,
        slippage_bps=None,
    )


def _when(ms: int | None) -> str | None:
    if ms is None:
        return None
    moment = datetime.fromtimestamp(ms / 1000, UTC)
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


def _link_id(store: Store, item: Item) -> str:
    pair = store.venue_item(item.id)
    if pair is None:  # enqueue_order always writes the venue reference with the item
        raise InvalidInput(f"item {item.id} has no Bybit venue reference")
    return pair[1].link_id


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
    from airlock.queue.bybit import enqueue_order  # the queue, the policy, cryptography
    from airlock.queue.policy import OrderRequest, decide_order

    common.use_config(ctx, config_path)
    settings = _bybit_settings(ctx)
    reachable, latency_ms = _reachability(settings, venue_mode)
    key = options["idempotency_key"]
    if key is None:
        key = f"cli-{uuid.uuid4().hex}"
        click.echo(f"idempotency key {key} (pass --idempotency-key {key} to retry)", err=True)
    request = OrderRequest(
        category=options["category"] or settings.category,
        symbol=options["symbol"],
        side=options["side"],
        order_type=options["order_type"],
        qty=options["qty"],
        idempotency_key=key,
        price=options["price"],
        tif=options["tif"],
        ttl_s=options["ttl"],
        ref_price=options["ref_price"],
        slippage_bps=options["slippage_bps"],
        reduce_only=options["reduce_only"],
    )
    with common.open_store(ctx) as (store, ring):
        failover = common.config(ctx).failover
        if reachable and latency_ms is not None and latency_ms > failover.backup_latency_ms:
            request = _slow_link_rule(store, request, latency_ms, failover)
        # A retry of a queued key is answered with the stored item by enqueue_order, even
        # when the policy would refuse it now.
        decision = decide_order(request, venue_reachable=reachable, config=settings.policy)
        intent_key = _intent_key(ring, settings.intent_key_label)
        result = enqueue_order(store, request, decision, intent_key, account=settings.account)
        item = result.item
        link_id = _link_id(store, item)
        stored = store.payload(item.id)
    policy = stored.get("policy", {})  # a replay reports the decision it was queued under
    data = {
        "id": item.id,
        "state": str(item.state),
        "order_link_id": link_id,
        "idempotency_key": key,
        "rule": policy.get("rule", decision.rule),
        "message": policy.get("message", decision.message),
        "expires_ms": item.expires_ms,
        "expires_at": _when(item.expires_ms),
        "venue_reachable": reachable,
        "replayed": result.existing,
        "intent": stored.get("intent"),
    }
    if result.existing:
        common.warn(
            f"idempotency key already queued as {item.id} (now {item.state}); nothing new stored"
        )
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
    from airlock.queue.bybit import cancel_order  # the queue, the policy, cryptography

    if (link_id is None) == (item_id is None):
        raise click.UsageError("give exactly one of --order-link-id or --item")
    common.use_config(ctx, config_path)
    settings = _bybit_settings(ctx)
    with common.open_store(ctx) as (store, ring):
        order = _find_order(store, link_id, item_id)
        intent_key = _intent_key(ring, settings.intent_key_label)
        outcome = cancel_order(store, order, intent_key)
        order_link = _link_id(store, outcome.order)
    cancel = outcome.cancel
    data = {
        "action": outcome.action,
        "rule": outcome.rule,
        "message": outcome.message,
        "order": {
            "id": outcome.order.id,
            "state": str(outcome.order.state),
            "order_link_id": order_link,
        },
        "cancel_item": None if cancel is None else cancel.item.id,
        "replayed": cancel is not None and cancel.existing,
    }

    def text() -> str:
        if cancel is None:
            what = "cancelled locally, nothing was sent"
        else:
            again = "; it was already queued, nothing new stored" if cancel.existing else ""
            what = f"cancel queued ahead of new orders (item {cancel.item.id}){again}"
        return f"{order_link} ({outcome.order.id}): {what}\nrule: {outcome.rule}: {outcome.message}"

    common.emit(as_json, data, text)


def _find_order(store: Store, link_id: str | None, item_id: str | None) -> Item:
    if link_id is not None:
        pair = store.venue_order_by_link(link_id)
        if pair is None:
            raise InvalidInput(f"no Bybit order with orderLinkId {link_id!r} in the queue")
        return pair[0]
    assert item_id is not None
    item = store.get(item_id)  # ItemNotFound names the id
    if item.kind is not Kind.BYBIT_ORDER:
        raise InvalidInput(f"item {item_id!r} is a {item.kind} item, not a Bybit order")
    return item


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
    with common.open_store(ctx) as (store, _):
        pairs = store.venue_all(limit)
        counts = store.fill_counts()
    rows = [_order_row(item, ref, counts.get(item.id, 0)) for item, ref in pairs]
    common.emit(as_json, rows, lambda: _orders_table(rows))


def _order_row(item: Item, ref: VenueRef, fills: int) -> dict[str, Any]:
    return {
        "id": item.id,
        "action": ref.action,
        "category": ref.category,
        "symbol": ref.symbol,
        "state": str(item.state),
        "venue_status": ref.status,
        "cum_exec_qty": ref.cum_qty,
        "avg_price": ref.avg_price,
        "order_link_id": ref.link_id,
        "order_id": ref.order_id,
        "fills": fills,
        "account": item.account,
        "created_ms": item.created_ms,
        "expires_ms": item.expires_ms,
        "seen_ms": ref.seen_ms,
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
