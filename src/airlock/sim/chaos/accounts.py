"""The Bybit account after a scenario: the store's positions and balances against the
simulator's, and what the venue's streams saw.

Why a bounded wait: the store is written by another process (the service, then the
``--once`` settle, whose REST pass covers every gap the stream left), so a comparison made
the moment a write is due could report a difference that is only late. The wait polls
until the two agree or the bound passes, and then says what still differs, side by side.
Positions are compared by (category, symbol) for what is open (size > 0 on the venue, not
flat in the store): side and size. Balances by coin: ``walletBalance`` (the equity moves
with the mark; the wallet only with fills and fees).
"""

from __future__ import annotations

import time
from decimal import Decimal

from airlock.queue.store import Store
from airlock.sim.bybit import BybitSim
from airlock.sim.chaos.report import Outcome

POLL_S = 0.05
STALE_LINE = "dropped: stale"
"""What the service logs (airlock.relays.stream_supervisor) when it replaces a silent stream."""

# What the simulator's stream record says, as "venue:<what>" faulted requests.
_STREAM_FAULTS = {
    ("close", "drop"): "stream connection dropped",
    ("lost", "fault"): "stream message lost",
    ("lost", "silenced"): "stream message lost (silenced)",
    ("duplicate", ""): "stream execution duplicated",
    ("reply_lost", ""): "trade reply lost",
}

Held = tuple[str, Decimal]


def account_diff(store: Store, sim: BybitSim) -> list[str]:
    """What differs between the store's account and the venue's; empty when they agree."""
    venue: dict[str, Held] = {}
    for row in sim.positions():
        if Decimal(str(row["size"])) > 0:
            venue[f"{row['category']}/{row['symbol']}"] = (str(row["side"]), Decimal(row["size"]))
    stored: dict[str, Held] = {}
    for position in store.account.positions():
        if Decimal(position.size) != 0:
            stored[f"{position.category}/{position.symbol}"] = (
                position.side,
                Decimal(position.size),
            )
    diff = [
        f"position {key}: venue {_held(venue.get(key))}, stored {_held(stored.get(key))}"
        for key in sorted(venue.keys() | stored.keys())
        if venue.get(key) != stored.get(key)
    ]
    wallet = {str(c["coin"]): Decimal(str(c["walletBalance"])) for c in sim.wallet()["coin"]}
    balances = {b.coin: Decimal(b.wallet_balance) for b in store.account.balances()}
    for coin in sorted(wallet.keys() | balances.keys()):
        have, want = balances.get(coin), wallet.get(coin, Decimal(0))  # the venue lists
        if have != want and not (have == 0 and coin not in wallet):  # non-zero coins only
            diff.append(f"balance {coin}: venue walletBalance {want}, stored {have}")
    return diff


def wait_account_match(store: Store, sim: BybitSim, bound_s: float) -> list[str]:
    """Poll :func:`account_diff` until it is empty or ``bound_s`` passed; the last diff."""
    deadline = time.monotonic() + bound_s
    while True:
        diff = account_diff(store, sim)
        if not diff or time.monotonic() >= deadline:
            return diff
        time.sleep(POLL_S)


def count_stream_events(sim: BybitSim, out: Outcome) -> None:
    """The stream faults as the venue met them (``faulted_requests``), and the streams'
    connections, authentications and trade ops (``stream``)."""
    for event in sim.stream_log():
        detail = event.detail if event.kind in ("close", "lost") else ""
        fault = _STREAM_FAULTS.get((event.kind, detail))
        if fault is not None:
            out.faulted_requests[f"venue:{fault}"] += 1
        if event.kind == "connect":
            out.stream[f"{event.stream} connections"] += 1
        elif event.kind == "auth" and event.ok:
            out.stream[f"{event.stream} authenticated"] += 1
        elif event.kind == "op":
            out.stream["trade ops"] += 1


def _held(held: Held | None) -> str:
    return "flat" if held is None else f"{held[0]} {held[1]}"
