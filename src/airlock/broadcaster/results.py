"""What the EVM broadcaster's passes report, and the hooks it takes (kept apart from
the service so that the CLI and the runner can read results without the service)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from airlock.queue.items import Item
from airlock.queue.store import Store, VariantDraft

AlertHook = Callable[[str, str, "str | None"], None]  # (key, message, item id)


class Resigner(Protocol):
    """Signs one more fee level once the pre-signed ladder has run out (HSM online)."""

    def __call__(self, store: Store, item: Item) -> VariantDraft | None: ...


@dataclass
class PassResult:
    """What one round changed; ``--once`` stops when a round changes nothing."""

    sent: int = 0
    settled: int = 0  # state changes decided from the chain
    bumped: int = 0
    expired: int = 0
    alerts: list[str] = field(default_factory=list)
    more: bool = False  # something went out: more may be due right now

    @property
    def progress(self) -> int:
        return self.sent + self.settled + self.bumped + self.expired

    def add(self, other: PassResult) -> None:
        self.sent += other.sent
        self.settled += other.settled
        self.bumped += other.bumped
        self.expired += other.expired
        self.alerts += other.alerts
        self.more = self.more or other.more


def alert_key(side: str, item_id: str | None, message: str) -> str:
    """A stable de-duplication key: per item when there is one, else the message's lead."""
    if item_id is not None:
        return f"{side}.item.{item_id}"
    return f"{side}.{message.split(':')[0][:60]}"
