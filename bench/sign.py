"""Signing throughput: airlock's HSM-signed type-2 transactions against raw C_Sign.

All figures come from one run on one SoftHSM token, so the ratios hold on a noisy
machine even when the absolute rates do not:

- raw C_Sign: the worker thread signs the same 32-byte digest N times back to back
  (no queue hand-off, no Python work): the ceiling for one session;
- airlock: ``sign_transactions`` over N distinct EIP-1559 intents (validation excluded,
  signing payload, keccak, HSM signature, low-s, recovery id, envelope, tx hash);
- airlock, one by one: ``sign_transaction`` in a loop (no pipelining);
- eth-account: software signing of the same transactions, for reference.

The reported ratio is the median of per-round ratios (baseline and airlock alternate).

Usage: python bench/sign.py [--n 2000] [--rounds 7] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

from eth_account import Account

from airlock.hsm import keys as hsm_keys
from airlock.signer import evm
from benchkit import open_bench_token, transfers

TARGET = 0.85


def rate(n: int, seconds: float) -> float:
    return n / seconds if seconds > 0 else float("inf")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    n = args.n
    with (
        tempfile.TemporaryDirectory(prefix="airlock-bench-") as tmp,
        open_bench_token(Path(tmp)) as ring,
    ):
        ring.generate("secp256k1", "bench")
        key = ring.ecdsa_key("bench", curve="secp256k1")
        intents = transfers(n)
        digest = evm.signing_digest(intents[0])
        evm.sign_transactions(intents[:50], key)  # warm up caches and handles

        def raw_loop(conn: hsm_keys.Connection) -> float:
            from airlock.hsm.keyring import _ecdsa_sign

            start = time.perf_counter()
            for _ in range(n):
                _ecdsa_sign(conn, "bench", digest)
            return time.perf_counter() - start

        # Alternate baseline and subject over several rounds and take medians, so
        # that a burst of load from elsewhere hits both sides alike.
        raw_rates, airlock_rates, ratios = [], [], []
        for _ in range(args.rounds):
            raw_rates.append(rate(n, ring.worker.run(raw_loop, timeout=600)))
            start = time.perf_counter()
            signed = evm.sign_transactions(intents, key)
            airlock_rates.append(rate(n, time.perf_counter() - start))
            ratios.append(airlock_rates[-1] / raw_rates[-1])
        raw_rate = statistics.median(raw_rates)
        airlock_rate = statistics.median(airlock_rates)

        start = time.perf_counter()
        for intent in intents:
            evm.sign_transaction(intent, key)
        single_rate = rate(n, time.perf_counter() - start)

    account = Account.create()
    tx_dicts = [
        {
            "type": 2,
            "chainId": 1,
            "nonce": i,
            "to": "0x000000000000000000000000000000000000dEaD",
            "value": 10**15 + i,
            "gas": 21000,
            "maxFeePerGas": 30 * 10**9,
            "maxPriorityFeePerGas": 10**9,
        }
        for i in range(n)
    ]
    start = time.perf_counter()
    for tx in tx_dicts:
        account.sign_transaction(tx)
    software_rate = rate(n, time.perf_counter() - start)

    assert len(signed) == n and all(s.s <= evm.SECP256K1_N // 2 for s in signed)
    ratio = statistics.median(ratios)
    report = {
        "n": n,
        "cpus": os.cpu_count(),
        "raw_c_sign_per_s": round(raw_rate),
        "airlock_type2_per_s": round(airlock_rate),
        "airlock_one_by_one_per_s": round(single_rate),
        "eth_account_software_per_s": round(software_rate),
        "rounds": args.rounds,
        "ratio_airlock_over_raw": round(ratio, 3),
        "ratio_per_round": [round(r, 3) for r in ratios],
        "ratio_one_by_one_over_raw": round(single_rate / raw_rate, 3),
        "target": TARGET,
        "pass": ratio >= TARGET,
    }
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        for name, value in report.items():
            print(f"{name:32} {value}")


if __name__ == "__main__":
    main()
