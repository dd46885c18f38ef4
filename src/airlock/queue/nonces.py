"""Nonce tracking per (chain id, sender), run inside the store's write transaction.

Rules:
- an item *holds* its nonce from the transaction that stores it; the unique index on
  holders makes a second holder impossible;
- allocation takes the lowest free slot at or above the base (a slot freed by a local
  cancel is filled first), else the counter;
- ``sync`` raises the counter and the base to the chain's pending nonce and never lowers
  either: a load-balanced node can answer from behind;
- the counter is lowered only over slots proven empty: released by an item that never
  left the machine, with nothing held above them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from airlock.encoding.records import Row, plain
from airlock.queue.db import Conn
from airlock.queue.errors import NonceConflict
from airlock.queue.items import Item
from airlock.queue.states import LIVE


@dataclass(frozen=True)
class Allocation:
    nonce: int
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class NonceStatus:
    chain_id: int
    sender: str
    next_nonce: int
    base_nonce: int
    chain_pending: int | None
    synced_ms: int | None
    live: int  # items holding a nonce that may still go out or have gone out
    lowest_live: int | None
    gaps: list[int] = field(default_factory=list)

    def as_json(self) -> dict[str, object]:
        return plain(self)


@dataclass(frozen=True)
class SyncResult:
    chain_id: int
    sender: str
    before: int
    after: int
    chain_pending: int
    conflicts: list[str]  # queued items whose nonce the chain has already used
    behind: bool  # the node reported less than we have allocated

    def as_json(self) -> dict[str, object]:
        return {
            "chain_id": self.chain_id,
            "sender": self.sender,
            "next_before": self.before,
            "next_after": self.after,
            "chain_pending": self.chain_pending,
            "conflicts": self.conflicts,
            "node_behind": self.behind,
        }


def _row(conn: Conn, chain_id: int, sender: str) -> Row | None:
    row: Row | None = conn.execute(
        "SELECT * FROM nonces WHERE chain_id = ? AND sender = ?", (chain_id, sender)
    ).fetchone()
    return row


# The counter row is read and written in one write transaction, which no other writer
# can interleave with (db.py): a plain read, then an insert or an update.


def _insert(conn: Conn, chain_id: int, sender: str, **values: int) -> None:
    names = ", ".join(values)
    marks = ", ".join("?" for _ in values)
    conn.execute(
        f"INSERT INTO nonces (chain_id, sender, {names}) VALUES (?, ?, {marks})",
        (chain_id, sender, *values.values()),
    )


def _update(conn: Conn, chain_id: int, sender: str, **values: int) -> None:
    sets = ", ".join(f"{name} = ?" for name in values)
    conn.execute(
        f"UPDATE nonces SET {sets} WHERE chain_id = ? AND sender = ?",
        (*values.values(), chain_id, sender),
    )


def _holder(conn: Conn, chain_id: int, sender: str, nonce: int) -> Row | None:
    row: Row | None = conn.execute(
        "SELECT id, state FROM items WHERE holds_nonce = 1 AND chain_id = ? AND account = ?"
        " AND nonce = ?",
        (chain_id, sender, nonce),
    ).fetchone()
    return row


def _held(conn: Conn, chain_id: int, sender: str) -> list[int]:
    return [
        r[0]
        for r in conn.execute(
            "SELECT nonce FROM items WHERE holds_nonce = 1 AND chain_id = ? AND account = ?"
            " ORDER BY nonce",
            (chain_id, sender),
        )
    ]


def allocate(conn: Conn, chain_id: int, sender: str, explicit: int | None = None) -> Allocation:
    """Choose the nonce for a new item. Call :func:`claim` in the same transaction."""
    row = _row(conn, chain_id, sender)
    if explicit is not None:
        return _check_explicit(conn, chain_id, sender, explicit, row)
    if row is None:
        return Allocation(
            0,
            (
                f"the nonce counter of {sender} on chain {chain_id} starts at 0 and was never "
                "synced with a node; if this key was used before, run 'airlock nonce sync "
                "--rpc URL' when a link is up",
            ),
        )
    candidate = row["base_nonce"]
    for nonce in _held(conn, chain_id, sender):  # ascending: the first hole is the answer
        if nonce > candidate:
            break
        if nonce == candidate:
            candidate += 1
    return Allocation(min(candidate, row["next_nonce"]))


def _check_explicit(
    conn: Conn,
    chain_id: int,
    sender: str,
    nonce: int,
    row: Row | None,
) -> Allocation:
    holder = _holder(conn, chain_id, sender, nonce)
    if holder is not None:
        raise NonceConflict(
            f"nonce {nonce} of {sender} on chain {chain_id} is already used by item "
            f"{holder['id']} ({holder['state']}); leave --nonce out to get the next free one"
        )
    if row is not None and row["chain_pending"] is not None and nonce < row["chain_pending"]:
        raise NonceConflict(
            f"nonce {nonce} of {sender} on chain {chain_id} is already used on chain (the "
            f"node's pending nonce was {row['chain_pending']} at the last sync)"
        )
    next_nonce = 0 if row is None else row["next_nonce"]
    if nonce > next_nonce:
        return Allocation(
            nonce,
            (
                f"nonce {nonce} leaves nonces {next_nonce}..{nonce - 1} of {sender} unused: "
                "the network will hold this transaction until they are filled",
            ),
        )
    return Allocation(nonce)


def later_live(conn: Conn, item: Item) -> bool:
    """Whether a live item of the same sender holds a higher nonce (and waits on this one)."""
    if not item.holds_nonce:
        return False
    live = tuple(str(s) for s in LIVE)
    row = conn.execute(
        "SELECT 1 FROM items WHERE holds_nonce = 1 AND chain_id = ? AND account = ?"
        f" AND nonce > ? AND state IN ({', '.join('?' for _ in live)}) LIMIT 1",
        (item.chain_id, item.account, item.nonce, *live),
    ).fetchone()
    return row is not None


def claim(conn: Conn, chain_id: int, sender: str, nonce: int) -> None:
    """Advance the counter past ``nonce`` (the item holding it is stored alongside)."""
    row = _row(conn, chain_id, sender)
    if row is None:
        _insert(conn, chain_id, sender, next_nonce=nonce + 1, base_nonce=nonce)
    else:
        top, base = max(row["next_nonce"], nonce + 1), min(row["base_nonce"], nonce)
        _update(conn, chain_id, sender, next_nonce=top, base_nonce=base)


def release(conn: Conn, item_id: str, chain_id: int, sender: str) -> None:
    """Free the slot of an item that never left the machine; lower the counter over empties."""
    conn.execute("UPDATE items SET holds_nonce = 0 WHERE id = ?", (item_id,))
    row = _row(conn, chain_id, sender)
    if row is None:
        return
    held = _held(conn, chain_id, sender)
    floor = max(row["base_nonce"], row["chain_pending"] or 0)
    top = max(held[-1] + 1 if held else floor, floor)
    if top < row["next_nonce"]:
        conn.execute(
            "UPDATE nonces SET next_nonce = ? WHERE chain_id = ? AND sender = ?",
            (top, chain_id, sender),
        )


def sync(conn: Conn, chain_id: int, sender: str, pending: int, now_ms: int) -> SyncResult:
    """Record the chain's pending nonce: raise the counter and base, never lower them."""
    row = _row(conn, chain_id, sender)
    before = 0 if row is None else row["next_nonce"]
    after = max(before, pending)
    if row is None:
        _insert(
            conn,
            chain_id,
            sender,
            next_nonce=after,
            base_nonce=pending,
            chain_pending=pending,
            synced_ms=now_ms,
        )
    else:
        _update(
            conn,
            chain_id,
            sender,
            next_nonce=after,
            base_nonce=max(row["base_nonce"], pending),
            chain_pending=max(row["chain_pending"] or 0, pending),
            synced_ms=now_ms,
        )
    conflicts = [
        r["id"]
        for r in conn.execute(
            "SELECT id FROM items WHERE holds_nonce = 1 AND chain_id = ? AND account = ?"
            " AND nonce < ? AND state = 'queued' ORDER BY nonce",
            (chain_id, sender, pending),
        )
    ]
    return SyncResult(chain_id, sender, before, after, pending, conflicts, pending < before)


def status(conn: Conn) -> list[NonceStatus]:
    """Every tracked (chain, sender) with its live nonces and the gaps below them."""
    out = []
    live_states = tuple(str(s) for s in LIVE)
    marks = ", ".join("?" for _ in live_states)
    for row in conn.execute("SELECT * FROM nonces ORDER BY chain_id, sender").fetchall():
        chain_id, sender = row["chain_id"], row["sender"]
        live = [
            r[0]
            for r in conn.execute(
                "SELECT nonce FROM items WHERE holds_nonce = 1 AND chain_id = ? AND account = ?"
                f" AND state IN ({marks}) ORDER BY nonce",
                (chain_id, sender, *live_states),
            )
        ]
        floor = max(row["base_nonce"], row["chain_pending"] or 0)
        gaps = _gaps(_held(conn, chain_id, sender), floor, max(live, default=floor))
        out.append(
            NonceStatus(
                chain_id=chain_id,
                sender=sender,
                next_nonce=row["next_nonce"],
                base_nonce=row["base_nonce"],
                chain_pending=row["chain_pending"],
                synced_ms=row["synced_ms"],
                live=len(live),
                lowest_live=live[0] if live else None,
                gaps=gaps,
            )
        )
    return out


MAX_GAPS_LISTED = 100


def _gaps(held: list[int], start: int, stop: int) -> list[int]:
    """Free slots in [start, stop) given the ascending held nonces; at most MAX_GAPS_LISTED."""
    gaps: list[int] = []
    expected = start
    for nonce in [*held, stop]:
        if nonce < expected:
            continue
        gaps.extend(range(expected, min(nonce, stop, expected + MAX_GAPS_LISTED - len(gaps))))
        if nonce >= stop or len(gaps) >= MAX_GAPS_LISTED:
            break
        expected = nonce + 1
    return gaps


def senders(conn: Conn, chain_id: int) -> list[str]:
    return [
        r[0]
        for r in conn.execute(
            "SELECT sender FROM nonces WHERE chain_id = ? ORDER BY sender", (chain_id,)
        )
    ]
