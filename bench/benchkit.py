"""Set-up the benchmarks share: a throw-away SoftHSM token and simple transfers to sign."""

from __future__ import annotations

import inspect
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from airlock.config import load_config
from airlock.hsm.keyring import KeyRing
from airlock.hsm.softhsm import init_embedded
from airlock.signer import evm


def open_bench_token(home: Path) -> KeyRing:
    """A fresh embedded token under ``home``, logged in."""
    init_embedded(home)
    return KeyRing.open(load_config(env={"AIRLOCK_HOME": str(home)}).hsm)


def transfers(n: int) -> list[evm.TxIntent]:
    """``n`` type-2 transfers with nonces 0..n-1."""
    return [
        evm.make_intent(
            chain_id=1,
            nonce=i,
            to="0x000000000000000000000000000000000000dEaD",
            value=10**15 + i,
            gas=21000,
            max_fee_per_gas=30 * 10**9,
            max_priority_fee_per_gas=10**9,
        )
        for i in range(n)
    ]


class Stopwatch:
    """Wall time spent inside chosen callables, by patching them on their owner.

    The broadcasters await or call each timed callable one at a time, so the parts add up
    and the rest is the broadcaster's own Python between them. ``restore`` undoes the
    patches (needed when the owner is a module or a class, not a throw-away instance).
    """

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self._undo: list[Callable[[], None]] = []

    def reset(self) -> None:
        self.seconds.clear()
        self.calls.clear()

    def wrap(self, owner: object, name: str, label: str) -> None:
        fn = getattr(owner, name)
        clock = time.perf_counter
        if inspect.iscoroutinefunction(fn):

            async def timed_async(*args: Any, **kwargs: Any) -> Any:
                t0 = clock()
                try:
                    return await fn(*args, **kwargs)
                finally:
                    self.seconds[label] += clock() - t0
                    self.calls[label] += 1

            setattr(owner, name, timed_async)
        else:

            def timed(*args: Any, **kwargs: Any) -> Any:
                t0 = clock()
                try:
                    return fn(*args, **kwargs)
                finally:
                    self.seconds[label] += clock() - t0
                    self.calls[label] += 1

            setattr(owner, name, timed)
        self._undo.append(lambda: setattr(owner, name, fn))

    def restore(self) -> None:
        while self._undo:
            self._undo.pop()()
