"""The account over REST: positions and the wallet into the store (issue 17).

Run by the venue side's reconcile after every (re)connect and every ``[bybit]
account_seconds``: the stream keeps the rows current between passes, this pass covers
its gaps (no snapshot on subscribe). Positions are listed with ``settleCoin`` (open ones
only: a complete listing, so a stored position it leaves out is flat now) over every
page; the wallet is the UNIFIED account's. Each row keeps the venue's time, and the store
keeps whichever is newer, the stream's or this pass's. A failed pass is logged and tried
again: it never holds up orders and fills.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from airlock.broadcaster.account_views import BadRow, Seen, balances_of, position_of
from airlock.queue.account import Position
from airlock.relays.errors import BybitError

if TYPE_CHECKING:
    from airlock.broadcaster.venue import VenueBroadcaster

log = logging.getLogger("airlock.broadcaster.bybit")


async def read_account(venue: VenueBroadcaster) -> None:
    try:
        # The rows are stamped on the venue's clock: measure it first, or a pass right
        # after an outage (offset not yet measured again) would be stamped in the future
        # and hide every newer state (the chaos suite's seed 79).
        await venue.client.sync_time(retry=False)
        await _positions(venue)
        await _wallet(venue)
    except BybitError as exc:
        log.info("bybit positions and wallet not read, tried again next pass: %s", exc)
        return
    venue.account_read()


async def _positions(venue: VenueBroadcaster) -> None:
    settings = venue.settings
    asked_ms = venue.client.server_now_ms()
    rows = await venue.client.positions(settings.category, settle_coin=settings.settle_coin)
    seen = Seen(settings.account, "rest", venue.store.now_ms(), asked_ms)
    found: list[Position] = []
    for row in rows:
        try:
            found.append(position_of(row, settings.category, seen))
        except BadRow as exc:
            log.warning("bybit: a position row not stored: %s", exc)
    venue.store.account.reconcile_positions(settings.account, settings.category, found, asked_ms)


async def _wallet(venue: VenueBroadcaster) -> None:
    asked_ms = venue.client.server_now_ms()
    wallets = await venue.client.wallet_balance("UNIFIED")
    seen = Seen(venue.settings.account, "rest", venue.store.now_ms(), asked_ms)
    for wallet in wallets:
        try:
            venue.store.account.put_balances(balances_of(wallet, seen))
        except BadRow as exc:
            log.warning("bybit: a wallet row not stored: %s", exc)
