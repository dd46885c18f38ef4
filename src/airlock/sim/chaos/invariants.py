"""The invariants checked after every scenario, from the chain, the simulator and the store.

Why from three sources: the store says what airlock believes, the chain and the venue
simulator say what happened; a duplicate, a loss or a *phantom* (the chain or the venue
holds something the store says never went) is a disagreement between them, and the
store alone could never show one. Each failure is recorded on the scenario's
:class:`~airlock.sim.chaos.report.Outcome` with what failed, in a fixed order (states,
EVM, senders, orders, fills, account, nonces, audit), and the run goes on.
"""

from __future__ import annotations

import logging
from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from airlock.audit.export import export
from airlock.audit.verify import verify_export
from airlock.broadcaster.venue_decide import DONE_STATUSES, OPEN_STATUSES
from airlock.queue.store import Store
from airlock.queue.venue import Fill, VenueRef
from airlock.sim.anvil import Anvil
from airlock.sim.bybit import BybitSim
from airlock.sim.chaos.accounts import wait_account_match
from airlock.sim.chaos.report import Outcome

if TYPE_CHECKING:
    from airlock.sim.chaos.rig import Rig


class Checked(Protocol):
    """What the invariants read of a scenario (one broadcaster, or a fleet)."""

    out: Outcome
    rig: Rig
    plan: Any  # its ``seed``
    dir: Path
    log_path: Path
    senders: list[str]
    evm_ids: list[str]
    order_ids: list[str]


log = logging.getLogger("airlock.chaos")

EVM_OK = {"confirmed", "replaced", "cancelled", "expired", "queued"}
ORDER_OK = {"sent", "confirmed", "cancelled", "expired", "queued"}
EXECUTED = {"confirmed", "replaced", "sent"}
LOG_TAIL = 8  # lines of the service's log kept with a failed seed
ACCOUNT_WAIT_S = 2.0  # after the settle nothing should still be writing: a short bound


def check_invariants(
    sc: Checked, store: Store, sim: BybitSim, summary: dict[str, Any] | None
) -> None:
    """Every invariant, each failure recorded with what failed:

    1. states: nothing left ``sending``; EVM items end confirmed/replaced/cancelled/expired
       (or still queued), orders placed (sent/confirmed) or withdrawn (or still queued);
       ``needs_operator``, ``quarantined``, ``rejected`` are findings that fail the seed;
    2. at most once: per EVM item at most one variant hash has a receipt; each sender's
       chain nonce equals its items with a receipt; per orderLinkId exactly one venue order
       for a placed order, none for a withdrawn or queued one, none under an unknown id;
    3. nothing lost: a confirmed EVM item's own hash has a successful receipt; a
       ``replaced`` one has its cancel mined; every execution on the venue is stored
       exactly once, by execId, as the venue has it, and none the venue does not have;
    4. agreement with the venue: each placed order's item state, stored status and filled
       quantity are the venue's (open -> ``sent``, final -> ``confirmed``); the store's
       positions and balances are the simulator's (within a bound: the last writes may
       still be landing);
    5. no nonce gap (``store.nonces.status()``);
    6. the audit log exports and verifies offline with the public key only.
    """
    out, anvil = sc.out, sc.rig.anvil
    for side, ids in (("evm", sc.evm_ids), ("bybit", sc.order_ids)):
        for item_id in ids:
            out.states[f"{side} {store.items.get(item_id).state}"] += 1
    mined_by_sender: Counter[str] = Counter()
    for item_id in sc.evm_ids:
        account, mined = _check_evm_item(out, anvil, store, item_id)
        mined_by_sender[account] += 1 if mined else 0
    _check_senders(out, anvil, sc.senders, mined_by_sender)
    _check_orders(out, store, sim, sc.order_ids)
    check_fills(out, store, sim)
    _check_account(out, store, sim)
    for status in store.nonces.status():
        if status.gaps:
            out.fail(f"nonce gap for {status.sender}: {status.gaps}")
    _check_audit(sc, store)
    if summary is not None and summary.get("alerts"):
        out.findings.append(f"settle alerts: {len(summary['alerts'])}")
    if not out.ok:
        tail = sc.log_path.read_text(errors="replace").splitlines()[-LOG_TAIL:]
        out.findings += [f"log: {line}" for line in tail]
        log.debug("seed %s failed", sc.plan.seed)


def _check_evm_item(out: Outcome, anvil: Anvil, store: Store, item_id: str) -> tuple[str, bool]:
    """Invariants 1-3 for one EVM item; returns its sender and whether a variant is mined."""
    item = store.items.get(item_id)
    state = str(item.state)
    variants = store.items.variants(item_id)
    mined = []
    for v in variants:
        receipt = anvil.rpc("eth_getTransactionReceipt", [v.tx_hash])
        if receipt is not None:
            mined.append((v, receipt))
    if state not in EVM_OK:
        pooled = _pooled(anvil, [v.tx_hash for v in variants])
        where = f"; in the node's pool, unmined: {pooled}" if pooled else ""
        out.fail(f"evm item {item_id} ends {state} ({item.state_reason}){where}")
    if len(mined) > 1:
        out.duplicates += len(mined) - 1
        out.fail(f"DUPLICATE: evm item {item_id} has {len(mined)} variants mined")
    if state == "confirmed":
        own = [r for v, r in mined if v.tx_hash == item.mined_hash]
        if not own or int(own[0]["status"], 16) != 1:
            out.losses += 1
            out.fail(f"LOSS: evm item {item_id} confirmed as {item.mined_hash}, no receipt")
    elif state == "replaced":
        if not mined:
            out.losses += 1
            out.fail(
                f"LOSS: evm item {item_id} is replaced (its cancel mined, or its nonce "
                "used), but none of its variants is on the chain now"
            )
    elif mined:
        out.phantoms += 1
        out.fail(f"evm item {item_id} is {state} but {mined[0][0].tx_hash} is mined")
    return item.account.lower(), bool(mined)


def _pooled(anvil: Anvil, hashes: list[str]) -> list[str]:
    """Which of ``hashes`` the node holds unmined: said with a stuck item, it tells a
    transaction that went out from one that never did."""
    return [
        tx_hash
        for tx_hash in hashes
        if (tx := anvil.rpc("eth_getTransactionByHash", [tx_hash])) is not None
        and tx.get("blockNumber") is None
    ]


def _check_senders(out: Outcome, anvil: Anvil, senders: list[str], mined: Counter[str]) -> None:
    """At most once, per sender: its chain nonce counts exactly its mined items."""
    for sender in senders:
        count = int(anvil.rpc("eth_getTransactionCount", [sender, "latest"]), 16)
        have = mined[sender.lower()]
        if count != have:
            out.duplicates += max(0, count - have)
            out.losses += max(0, have - count)
            out.fail(f"sender {sender}: chain nonce {count}, {have} items mined")


def _check_orders(out: Outcome, store: Store, sim: BybitSim, order_ids: list[str]) -> None:
    """Invariants 1-3 for the Bybit orders, by orderLinkId against the simulator's book."""
    rows = {o["orderLinkId"]: o for o in sim.orders()}
    placed = Counter(o["orderLinkId"] for o in sim.orders())
    ours = set()
    for item_id in order_ids:
        found = store.venue.of_item(item_id)
        if found is None:
            out.fail(f"order {item_id} has no venue reference")
            continue
        item, ref = found
        state = str(item.state)
        ours.add(ref.link_id)
        n = placed.get(ref.link_id, 0)
        if state not in ORDER_OK:
            out.fail(f"order {item_id} ({ref.link_id}) ends {state} ({item.state_reason})")
        if n > 1:
            out.duplicates += n - 1
            out.fail(f"DUPLICATE: {ref.link_id} placed {n} times")
        if state in EXECUTED and n == 0:
            out.losses += 1
            out.fail(f"LOSS: order {item_id} is {state}, the venue has no {ref.link_id}")
        if state not in EXECUTED and state != "sending" and n:
            out.phantoms += 1
            out.fail(f"order {item_id} is {state} but the venue holds {ref.link_id}")
        if state in EXECUTED and n == 1:
            _check_order_state(out, store, item_id, state, ref, rows[ref.link_id])
    strangers = set(placed) - ours
    if strangers:
        out.duplicates += len(strangers)
        out.fail(f"DUPLICATE: venue orders under unknown orderLinkIds {sorted(strangers)}")


def _check_order_state(
    out: Outcome, store: Store, item_id: str, state: str, ref: VenueRef, row: dict[str, Any]
) -> None:
    """A placed order's item agrees with the venue's row: its state (an order open on the
    venue is ``sent``, a final one ``confirmed``), its stored status, its filled quantity,
    and the fills stored for it add up to that quantity."""
    status, cum = str(row["orderStatus"]), Decimal(str(row["cumExecQty"]))
    want = "sent" if status in OPEN_STATUSES else "confirmed" if status in DONE_STATUSES else "?"
    stored_cum = Decimal(ref.cum_qty) if ref.cum_qty else Decimal(0)
    filled = sum((Decimal(f.exec_qty) for f in store.venue.fills(item_id)), Decimal(0))
    if state != want or ref.status != status or stored_cum != cum or filled != cum:
        out.fail(
            f"order {item_id} ({ref.link_id}) disagrees with the venue: {state}, stored "
            f"status {ref.status} filled {stored_cum} (fills {filled}); the venue has it "
            f"{status} filled {cum}"
        )


def check_fills(out: Outcome, store: Store, sim: BybitSim) -> None:
    """Every execution on the venue is stored exactly once, by execId, with the venue's
    order, side, quantity and price; none is stored that the venue does not have."""
    venue = {e["execId"]: e for e in sim.executions()}
    stored = store.venue.fills()
    counts = Counter(f.exec_id for f in stored)
    twice = sorted(e for e, n in counts.items() if n > 1)
    missing = sorted(venue.keys() - counts.keys())
    strange = sorted(counts.keys() - venue.keys())
    if twice:
        out.duplicates += sum(counts[e] - 1 for e in twice)
        out.fail(f"DUPLICATE: executions stored more than once: {twice}")
    if missing:
        out.losses += len(missing)
        out.fail(f"LOSS: {len(missing)} of {len(venue)} venue executions not stored: {missing}")
    if strange:
        out.phantoms += len(strange)
        out.fail(f"executions stored that the venue does not have: {strange}")
    for fill in stored:
        row = venue.get(fill.exec_id)
        if row is not None and _fill_fields(fill) != _fill_fields(row):
            out.fail(f"execution {fill.exec_id} stored as {_fill_fields(fill)}, "
                     f"the venue has {_fill_fields(row)}")  # fmt: skip


def _fill_fields(fill: Fill | dict[str, Any]) -> tuple[str, str, str, Decimal, Decimal]:
    """What a stored fill and a venue execution must agree on."""
    if isinstance(fill, Fill):
        return (fill.link_id, fill.symbol, fill.side, Decimal(fill.exec_qty),
                Decimal(fill.exec_price))  # fmt: skip
    return (str(fill["orderLinkId"]), str(fill["symbol"]), str(fill["side"]),
            Decimal(str(fill["execQty"])), Decimal(str(fill["execPrice"])))  # fmt: skip


def _check_account(out: Outcome, store: Store, sim: BybitSim) -> None:
    """The store's positions and balances are the venue's, after the settle's REST pass
    (polled for up to ACCOUNT_WAIT_S in case a write is still landing)."""
    diff = wait_account_match(store, sim, ACCOUNT_WAIT_S)
    out.account_ok = not diff
    if diff:
        out.fail(f"account differs from the venue after the settle: {'; '.join(diff)}")


def _check_audit(sc: Checked, store: Store) -> None:
    """The audit log exports and verifies offline with the audit public key only."""
    out = sc.out
    try:
        directory = sc.dir / "audit"
        export(store, sc.rig.audit_key, directory)
        report = verify_export(directory, sc.rig.audit_key.pem.encode())
        out.audit_ok, out.audit_entries = report.ok, report.entries
        if not report.ok:
            out.fail(f"audit export does not verify: {report.problem}")
    except Exception as exc:  # an export that cannot be made is itself the finding
        out.audit_ok = False
        out.fail(f"audit export failed: {type(exc).__name__}: {exc}")
