"""Set-up the benchmarks share: a throw-away SoftHSM token and simple transfers to sign."""

from __future__ import annotations

from pathlib import Path

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
