"""The durable, encrypted queue: the one object the rest of airlock writes items through.

A :class:`Store` is one queue database, reached through parts that each keep one job,
the way sqlite-utils reaches ``db["table"]``::

    store.items     queue (one, or a batch all or nothing), read, move, cancel, export
    store.sends     the EVM broadcaster's waves, attempts, receipts and variants
    store.venue     Bybit items: venue references, what the venue said, fills
    store.nonces    nonce counters per (chain, sender) and their sync with a node
    store.keys      the data keys the HSM's key-encryption key wraps
    store.alerts    alerts, counted and de-duplicated across restarts
    store.notes     the service's notes for ``airlock status``
    store.audit     the tamper-evident log: entries, leaves, signed checkpoints
    store.events    the numbered stream of creations, state changes and fills
    store.leases    the lanes several broadcasters share one queue by
    store.account   a venue account's positions and balances, as last seen

Every change is one write transaction, durable when the method returns, together with
its history row, its event and its audit entry: SQLite (a file, the embedded default:
``BEGIN IMMEDIATE`` on WAL with ``synchronous=FULL``) or PostgreSQL (a ``postgresql://``
URL, several broadcasters sharing one queue: queue/db.py says how the writers are kept in
one line).
"""

from __future__ import annotations

from pathlib import Path

from airlock.clock import ClockMs, wall_clock_ms
from airlock.queue.db import open_database
from airlock.queue.envelope import DEFAULT_ROTATE_AFTER, Envelope, Kek
from airlock.queue.store.account import Account
from airlock.queue.store.audit import Audit
from airlock.queue.store.core import Core
from airlock.queue.store.events import Events
from airlock.queue.store.items import Items
from airlock.queue.store.keys import Keys
from airlock.queue.store.leases import Leases
from airlock.queue.store.nonces import Nonces
from airlock.queue.store.notes import Alerts, Notes
from airlock.queue.store.records import (
    Builder,
    Built,
    CancelResult,
    ChainRecord,
    Draft,
    Enqueued,
    SendRecord,
    Variant,
    VariantDraft,
    VariantKind,
)
from airlock.queue.store.sends import Sends
from airlock.queue.store.venue import Venue

__all__ = [
    "Builder",
    "Built",
    "CancelResult",
    "ChainRecord",
    "Draft",
    "Enqueued",
    "SendRecord",
    "Store",
    "Variant",
    "VariantDraft",
    "VariantKind",
]


class Store:
    """One queue database. Safe to share between threads; several processes may open it."""

    def __init__(self, core: Core, location: Path | str) -> None:
        self.core = core
        self.location = location
        self.engine = core.db.engine
        self.shown = core.db.shown
        self.items = Items(core)
        self.sends = Sends(core)
        self.venue = Venue(core)
        self.nonces = Nonces(core)
        self.keys = Keys(core)
        self.alerts = Alerts(core)
        self.notes = Notes(core)
        self.audit = Audit(core)
        self.events = Events(core)
        self.leases = Leases(core)
        self.account = Account(core)

    @classmethod
    def open(
        cls,
        location: Path | str,
        kek: Kek,
        *,
        clock_ms: ClockMs = wall_clock_ms,
        rotate_after: int = DEFAULT_ROTATE_AFTER,
    ) -> Store:
        """Open (creating or migrating) the queue at ``location`` (a file, or a
        ``postgresql://`` URL); prove the KEK works."""
        db = open_database(location)
        try:
            db.migrate()
            envelope = Envelope(db.conn, kek, clock_ms, rotate_after)
            core = Core(db, envelope, clock_ms)
            with core.transaction():
                envelope.ensure_primary()
        except BaseException:
            db.close()
            raise
        return cls(core, location)

    @property
    def path(self) -> Path:
        """The SQLite file (the embedded queue); a PostgreSQL queue has no file."""
        if not isinstance(self.location, Path):
            raise TypeError(f"the queue at {self.shown} is a PostgreSQL database, not a file")
        return self.location

    def close(self) -> None:
        self.core.db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def now_ms(self) -> int:
        """The store's clock: the time every change it writes is stamped with."""
        return self.core.clock_ms()
