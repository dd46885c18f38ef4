""":class:`AsyncAirlock`: the library for asyncio bots, the same methods awaited.

Each call runs the blocking one in a worker thread (the queue and the HSM session are
safe to share between threads, and an HSM signature or an fsync must not stall the bot's
event loop); :meth:`AsyncAirlock.wait` polls without blocking the loop.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Collection, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from airlock.api.client import Airlock
from airlock.api.records import Cancelled, Event, Item, Queued
from airlock.api.waiting import DEFAULT_WAIT_S, WAIT_POLL_S, WaitTimeout, judge, wanted_states

if TYPE_CHECKING:
    from airlock.config import AirlockConfig
    from airlock.hsm.pin import Prompt

T = TypeVar("T")


class AsyncAirlock:
    """:class:`Airlock` for asyncio: ``async with await AsyncAirlock.open() as al: ...``."""

    def __init__(self, sync: Airlock) -> None:
        self.sync = sync

    @classmethod
    async def open(
        cls,
        config: str | Path | AirlockConfig | None = None,
        *,
        pin: str | None = None,
        prompt: Prompt | None = None,
    ) -> AsyncAirlock:
        return cls(await asyncio.to_thread(Airlock.open, config, pin=pin, prompt=prompt))

    async def close(self) -> None:
        await asyncio.to_thread(self.sync.close)

    async def __aenter__(self) -> AsyncAirlock:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _call(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        return await asyncio.to_thread(functools.partial(fn, *args, **kwargs))

    async def queue_transaction(
        self, tx: Mapping[str, Any] | None = None, /, **options: Any
    ) -> Queued:
        return await self._call(self.sync.queue_transaction, tx, **options)

    async def queue_transactions(self, transactions: Iterable[Mapping[str, Any]]) -> list[Queued]:
        return await self._call(self.sync.queue_transactions, list(transactions))

    async def queue_order(self, **options: Any) -> Queued:
        return await self._call(self.sync.queue_order, **options)

    async def queue_orders(
        self, batch: Iterable[Mapping[str, Any]], *, venue: str = "auto"
    ) -> list[Queued]:
        return await self._call(self.sync.queue_orders, list(batch), venue=venue)

    async def cancel(self, item_id: str) -> Cancelled:
        return await self._call(self.sync.cancel, item_id)

    async def item(self, item_id: str) -> Item:
        return await self._call(self.sync.item, item_id)

    async def items(
        self,
        state: str | Collection[str] | None = None,
        kind: str | Collection[str] | None = None,
        *,
        after: str | None = None,
        limit: int | None = None,
        newest_first: bool = False,
    ) -> list[Item]:
        return await self._call(
            self.sync.items, state, kind, after=after, limit=limit, newest_first=newest_first
        )

    async def order(self, order_link_id: str) -> Item:
        return await self._call(self.sync.order, order_link_id)

    async def events(
        self, after: int = 0, limit: int = 1000, item_id: str | None = None
    ) -> list[Event]:
        return await self._call(self.sync.events, after, limit, item_id)

    async def wait(
        self,
        item_id: str,
        until: str | Collection[str] = ("confirmed",),
        timeout: float = DEFAULT_WAIT_S,
    ) -> Item:
        """As :meth:`Airlock.wait`, sleeping on the event loop between looks."""
        wanted = wanted_states(until)
        clock = self.sync._monotonic  # the clock the Airlock was given (tests inject one)
        deadline = clock() + timeout
        while True:
            item = await self.item(item_id)
            verdict = judge(item, wanted)
            if verdict is not None:
                return verdict
            if clock() >= deadline:
                raise WaitTimeout(f"item {item_id} still {item.state} after {timeout:g} s", item)
            await asyncio.sleep(WAIT_POLL_S)
