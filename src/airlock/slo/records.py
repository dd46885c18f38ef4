"""The audit log read as a timeline: what the SLO figures are computed from.

Pure: :class:`Timeline` is fed decoded audit entries (``{"seq", "time_ms", "type",
"item", "data"}``, docs/audit-format.md §1) in log order and keeps only what the figures
need: each link's recorded state changes, each item's life (when its request reached the
store, when it was persisted, when it left the queue and how), the sends a relay or the
venue accepted, fee bumps, and how many items of each side wait to be sent. Entry times
are the writer's clock (the store's), the same clock for every figure.

Nothing here trusts process memory: a timeline rebuilt from the log after any number of
restarts, or from the shared log of several broadcasters, gives the same figures.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Side = str  # "evm" or "bybit": which path an item or a link belongs to
Fate = Literal["executed", "expired", "withdrawn", "failed"]

AVAILABLE = frozenset({"up", "degraded"})  # a link that can be sent to
WAITING = frozenset({"queued", "sending"})  # an item not yet taken by the network
EXECUTED = frozenset({"sent", "confirmed"})  # the network took it
FATES: dict[str, Fate] = {
    "sent": "executed",
    "confirmed": "executed",
    "expired": "expired",
    "cancelled": "withdrawn",
    "rejected": "failed",
    "replaced": "failed",
    "quarantined": "failed",
    "needs_operator": "failed",
}
ACCEPTED = frozenset({"accepted", "already_known"})  # a relay answer that took the bytes


@dataclass(frozen=True)
class LinkChange:
    """One ``relay.health`` entry: ``link`` is the relay (``by/relay`` on a shared queue)."""

    link: str
    side: Side
    at_ms: int
    old: str  # "unknown": the first view since a broadcaster started
    new: str


@dataclass
class ItemLife:
    """One item, from its ``item.enqueued`` entry on."""

    item: str
    kind: str
    strategy: str
    side: Side
    created_ms: int
    persisted_ms: int  # the entry's time: written in the enqueue's transaction
    received_ms: int | None  # when the request reached the store (None: older writers)
    state: str = "queued"
    fate: Fate | None = None
    left_ms: int | None = None  # when its fate was decided
    top_variant: int = -1  # the highest variant sent so far (EVM)


@dataclass(frozen=True)
class Mark:
    """Something that happened at a time, for the figures and the report's plots."""

    at_ms: int
    side: Side
    what: Literal["accepted", "bumped", "sent", "confirmed", "waiting"]
    value: int = 1  # for "waiting": the side's number of waiting items from now on


@dataclass
class Timeline:
    """What the figures need, accumulated entry by entry (:meth:`feed`)."""

    links: list[LinkChange] = field(default_factory=list)
    items: dict[str, ItemLife] = field(default_factory=dict)
    marks: list[Mark] = field(default_factory=list)
    waiting: dict[Side, int] = field(default_factory=dict)
    first_ms: int | None = None
    last_ms: int | None = None
    next_seq: int = 0

    def feed(self, entry: dict[str, Any]) -> None:
        at = int(entry["time_ms"])
        self.first_ms = at if self.first_ms is None else self.first_ms
        self.last_ms = at
        self.next_seq = int(entry["seq"]) + 1
        data = entry.get("data") or {}
        reader = _READERS.get(str(entry["type"]))
        if reader is not None:
            reader(self, at, entry.get("item"), data)

    def prune(self, before_ms: int) -> Timeline:
        """Forget what a window starting at ``before_ms`` cannot need: marks and decided
        items older than it, and every link change but the last before it (the state the
        window starts in). The counts of waiting items stay exact."""
        waiting = {m.side: m for m in self.marks if m.what == "waiting" and m.at_ms < before_ms}
        self.marks = [*waiting.values(), *(m for m in self.marks if m.at_ms >= before_ms)]
        self.items = {
            k: v for k, v in self.items.items() if v.left_ms is None or v.left_ms >= before_ms
        }
        last: dict[str, LinkChange] = {}
        kept = []
        for change in self.links:
            if change.at_ms < before_ms:
                last[change.link] = change
            else:
                kept.append(change)
        self.links = sorted([*last.values(), *kept], key=lambda c: c.at_ms)
        return self

    # -- entry readers ---------------------------------------------------------------

    def _health(self, at: int, _item: Any, data: dict[str, Any]) -> None:
        relay = str(data["relay"])
        side = str(data.get("side") or ("bybit" if relay == "bybit" else "evm"))
        link = f"{data['by']}/{relay}" if data.get("by") else relay
        self.links.append(LinkChange(link, side, at, str(data["from"]), str(data["to"])))

    def _enqueued(self, at: int, item: Any, data: dict[str, Any]) -> None:
        kind = str(data["kind"])
        received = data.get("received_ms")
        life = ItemLife(
            item=str(item),
            kind=kind,
            strategy=str(data.get("strategy") or "default"),
            side="evm" if kind == "evm_tx" else "bybit",
            created_ms=int(data.get("created_ms") or at),
            persisted_ms=at,
            received_ms=None if received is None else int(received),
        )
        self.items[life.item] = life
        self._count_waiting(life.side, +1, at)

    def _transition(self, at: int, item: Any, data: dict[str, Any]) -> None:
        life = self.items.get(str(item))
        if life is None:
            return  # queued before the range read
        if life.side == "bybit" and data.get("to") == "sent" and data.get("from") == "sending":
            self.marks.append(Mark(at, life.side, "accepted"))
        self._move(life, str(data["to"]), at)

    def _sending(self, at: int, _item: Any, data: dict[str, Any]) -> None:
        for row in data.get("items") or []:
            life = self.items.get(str(row["item"]))
            variant = int(row.get("variant") or 0)
            if life is None:
                continue
            if 0 <= life.top_variant < variant:
                self.marks.append(Mark(at, life.side, "bumped"))
            life.top_variant = max(life.top_variant, variant)
            self._move(life, "sending", at)

    def _sent(self, at: int, _item: Any, data: dict[str, Any]) -> None:
        for row in data.get("items") or []:
            times = [
                int(a.get("at_ms") or at)
                for a in row.get("attempts") or []
                if a.get("outcome") in ACCEPTED
            ]
            if times:
                self.marks.append(Mark(min(times), "evm", "accepted"))
            life = self.items.get(str(row["item"]))
            if life is not None and row.get("to"):
                self._move(life, str(row["to"]), at)

    def _settled(self, at: int, _item: Any, data: dict[str, Any]) -> None:
        for row in data.get("items") or []:
            life = self.items.get(str(row["item"]))
            if life is not None and row.get("to"):
                self._move(life, str(row["to"]), at)

    # -- item states -----------------------------------------------------------------

    def _move(self, life: ItemLife, state: str, at: int) -> None:
        if state == life.state:
            return
        was_waiting, now_waiting = life.state in WAITING, state in WAITING
        if was_waiting != now_waiting:
            self._count_waiting(life.side, -1 if was_waiting else +1, at)
        if state in EXECUTED and life.state not in EXECUTED:
            self.marks.append(Mark(at, life.side, "sent"))
        if state == "confirmed":
            self.marks.append(Mark(at, life.side, "confirmed"))
        life.state = state
        fate = FATES.get(state)
        if fate is not None and life.fate is None:
            life.fate, life.left_ms = fate, at

    def _count_waiting(self, side: Side, delta: int, at: int) -> None:
        self.waiting[side] = self.waiting.get(side, 0) + delta
        self.marks.append(Mark(at, side, "waiting", self.waiting[side]))


_READERS = {
    "relay.health": Timeline._health,
    "item.enqueued": Timeline._enqueued,
    "item.transition": Timeline._transition,
    "items.sending": Timeline._sending,
    "items.sent": Timeline._sent,
    "items.settled": Timeline._settled,
}
