"""Durable enqueue: airlock's encrypted queue against a bare SQLite insert, same durability.

All figures come from one run in one directory, so the ratios hold on a noisy machine
even when the absolute rates do not:

- airlock: ``Store.enqueue`` of an already-signed EIP-1559 transaction (signed once by
  the HSM before timing), one item per ``BEGIN IMMEDIATE ... COMMIT`` on WAL with
  ``synchronous=FULL``: idempotency check, sequence number, AES-256-GCM of the payload and
  of the signed bytes, the item and variant rows, and the audit entry (canonical JSON,
  encrypted, chained);
- bare: a plain sqlite3 connection to another file in the same directory, same pragmas,
  one ``BEGIN IMMEDIATE; INSERT INTO t (id, payload); COMMIT`` per item, with a plaintext
  payload of exactly the size airlock stores as ciphertext for the same item.

Rounds alternate (airlock, bare, airlock, ...). Latency is per item (perf_counter_ns);
p50, p99 and items/s are medians over rounds of the per-round figures (the pooled
distribution is shown too); the throughput ratio is the median of the per-round ratios.

A breakdown follows (outside the timed rounds): HSM calls made while timing, SQL
statements per enqueue, WAL pages appended per commit, one more durable round per side
split into commits that ran an automatic WAL checkpoint and the rest, the same loops
with ``synchronous=OFF`` (no fsync: the CPU part) and the encryption alone.

Usage: python bench/enqueue.py [--n 500] [--rounds 7] [--json] [--dir DIR]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from airlock.queue.envelope import NONCE_BYTES, TAG_BYTES
from airlock.queue.items import Kind
from airlock.queue.kek import HsmKek
from airlock.queue.store import Built, Draft, Store, VariantDraft
from airlock.signer import evm
from benchkit import open_bench_token, transfers

P99_TARGET_MS = 2.0
RATIO_TARGET = 0.5
WARMUP = 50
SEAL_OVERHEAD = 1 + NONCE_BYTES + TAG_BYTES  # format byte, nonce, tag


class CountingKek:
    """The HSM KEK, counting the calls that reach the HSM."""

    def __init__(self, inner: HsmKek) -> None:
        self._inner = inner
        self.label = inner.label
        self.calls = 0

    def wrap(self, nonce: bytes, plaintext: bytes, aad: bytes) -> bytes:
        self.calls += 1
        return self._inner.wrap(nonce, plaintext, aad)

    def unwrap(self, nonce: bytes, ciphertext: bytes, aad: bytes) -> bytes:
        self.calls += 1
        return self._inner.unwrap(nonce, ciphertext, aad)


def percentile(sorted_ns: list[int], q: float) -> float:
    """Nearest-rank percentile of sorted nanoseconds, in milliseconds."""
    rank = max(1, math.ceil(q * len(sorted_ns)))
    return sorted_ns[rank - 1] / 1e6


def json_bytes(value: Any) -> bytes:
    # The encoding Store uses for payloads (store.core.json_bytes).
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def bare_connect(path: Path) -> sqlite3.Connection:
    """The durability airlock's queue uses (schema.connect), and nothing else."""
    conn = sqlite3.connect(path, isolation_level=None)
    assert conn.execute("PRAGMA journal_mode=WAL").fetchone()[0] == "wal"
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("CREATE TABLE IF NOT EXISTS t (id TEXT PRIMARY KEY, payload BLOB)")
    return conn


class Items:
    """N pre-signed transactions, in the two shapes the two sides store."""

    def __init__(self, signed: list[evm.SignedTx], intents: list[evm.TxIntent]) -> None:
        self.n = len(signed)
        self.requests: list[dict[str, Any]] = []
        self.builds: list[Callable[[int | None], Built]] = []
        self.bare_payloads: list[bytes] = []
        for intent, tx in zip(intents, signed, strict=True):
            as_json = evm.intent_as_json(intent)
            request = {"intent": as_json, "key": "bench", "ttl_seconds": None}
            built = Built(
                payload={"intent": as_json, "sender": tx.sender, "ladder_truncated": False},
                variants=(
                    VariantDraft(
                        kind="step",
                        tx_hash=tx.hash_hex,
                        fee_per_gas=intent.max_fee_per_gas,
                        tip_per_gas=intent.max_priority_fee_per_gas,
                        raw=tx.raw,
                    ),
                ),
            )
            plain = json_bytes(dict(built.payload, request=request)) + tx.raw
            self.requests.append(request)
            self.builds.append(lambda _nonce, b=built: b)
            # The same number of bytes airlock stores as ciphertext (payload + raw), clear.
            self.bare_payloads.append(plain.ljust(len(plain) + 2 * SEAL_OVERHEAD, b"\0"))

    def head(self, k: int) -> Items:
        """The first ``k`` items (shares the signed content)."""
        head = Items([], [])
        head.n = min(k, self.n)
        head.requests = self.requests[:k]
        head.builds = self.builds[:k]
        head.bare_payloads = self.bare_payloads[:k]
        return head

    def draft(self, tag: str, i: int, account: str) -> Draft:
        return Draft(
            kind=Kind.EVM_TX,
            account=account,
            strategy="bench",
            idempotency_key=f"bench:{tag}:{i}",
            request=self.requests[i % self.n],
            chain_id=1,
            signer="bench",
        )

    def drafts(self, tag: str, account: str) -> list[Draft]:
        return [self.draft(tag, i, account) for i in range(self.n)]

    def bare_rows(self, tag: str) -> list[tuple[str, bytes]]:
        return [(f"{tag}:{i:020d}", p) for i, p in enumerate(self.bare_payloads)]


def airlock_round(store: Store, drafts: list[Draft], items: Items) -> tuple[list[int], float]:
    latencies = []
    clock = time.perf_counter_ns
    start = clock()
    for draft, build in zip(drafts, items.builds, strict=True):
        t0 = clock()
        store.items.enqueue(draft, build)
        latencies.append(clock() - t0)
    return latencies, (clock() - start) / 1e9


def bare_round(conn: sqlite3.Connection, rows: list[tuple[str, bytes]]) -> tuple[list[int], float]:
    latencies = []
    clock = time.perf_counter_ns
    start = clock()
    for row in rows:
        t0 = clock()
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT INTO t (id, payload) VALUES (?, ?)", row)
        conn.execute("COMMIT")
        latencies.append(clock() - t0)
    return latencies, (clock() - start) / 1e9


def summary(per_round: list[list[int]], rates: list[float]) -> dict[str, Any]:
    """Medians over rounds (what the targets use), and the pooled distribution."""
    rounds = [sorted(lat) for lat in per_round]
    pooled = sorted(ns for lat in per_round for ns in lat)
    p99s = [percentile(lat, 0.99) for lat in rounds]
    return {
        "p50_ms": round(statistics.median(percentile(lat, 0.50) for lat in rounds), 3),
        "p99_ms": round(statistics.median(p99s), 3),
        "items_per_s": round(statistics.median(rates)),
        "p99_ms_per_round": [round(x, 3) for x in p99s],
        "items_per_s_per_round": [round(r) for r in rates],
        "pooled_p50_ms": round(percentile(pooled, 0.50), 3),
        "pooled_p99_ms": round(percentile(pooled, 0.99), 3),
        "pooled_mean_ms": round(statistics.mean(pooled) / 1e6, 3),
        "pooled_max_ms": round(pooled[-1] / 1e6, 3),
    }


def until_checkpoint(db: Path, run_one: Callable[[int], object], limit: int = 20_000) -> int:
    """Commit until SQLite checkpoints ``db`` (only checkpoints write the main file)."""
    start = db.stat().st_mtime_ns
    for i in range(limit):
        run_one(i)
        if db.stat().st_mtime_ns != start:
            return i + 1
    raise RuntimeError(f"no WAL checkpoint of {db} after {limit} commits")


def checkpoint_split(db: Path, run_one: Callable[[int], int], k: int) -> dict[str, Any]:
    """Run ``k`` timed commits; split their latencies by whether a checkpoint ran."""
    with_ckpt, without = [], []
    last = db.stat().st_mtime_ns
    for i in range(k):
        ns = run_one(i)
        mtime = db.stat().st_mtime_ns
        (with_ckpt if mtime != last else without).append(ns)
        last = mtime
    without.sort()
    total = sum(with_ckpt) + sum(without)
    return {
        "checkpoints": len(with_ckpt),
        "checkpoint_commit_median_ms": (
            round(statistics.median(with_ckpt) / 1e6, 3) if with_ckpt else None
        ),
        "other_commits_p50_ms": round(percentile(without, 0.50), 3),
        "other_commits_p99_ms": round(percentile(without, 0.99), 3),
        "share_of_time_in_checkpoint_commits": round(sum(with_ckpt) / total, 3),
    }


def wal_frames_per_commit(path: Path, commit: Callable[[int], None], k: int = 20) -> float:
    """WAL pages appended per commit, from a checkpoint's frame count (k commits).

    RESTART, not TRUNCATE: the WAL file keeps its size, so later rounds do not grow it.
    """
    probe = sqlite3.connect(path, isolation_level=None)
    try:
        probe.execute("PRAGMA wal_checkpoint(RESTART)")
        for i in range(k):
            commit(i)
        frames = probe.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()[1]
    finally:
        probe.close()
    return frames / k


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--dir", type=Path, default=None, help="parent of the temp dir")
    args = parser.parse_args()
    n, rounds = args.n, args.rounds
    with tempfile.TemporaryDirectory(prefix="airlock-bench-", dir=args.dir) as tmp:
        home = Path(tmp)
        with open_bench_token(home) as ring:
            ring.generate("secp256k1", "bench")
            key = ring.ecdsa_key("bench", curve="secp256k1")
            intents = transfers(n)
            items = Items(evm.sign_transactions(intents, key), intents)  # signed once
            account = evm.address_from_public_key(key.public_key)
            kek = CountingKek(HsmKek(ring))
            store = Store.open(home / "queue.db", kek)
            bare = bare_connect(home / "bare.db")

            # Warm up both sides (statement caches, first pages, data key reservation).
            warm = items.head(WARMUP)
            airlock_round(store, warm.drafts("warm", account), warm)
            bare_round(bare, warm.bare_rows("warm"))
            reader = sqlite3.connect(home / "queue.db")
            stored = reader.execute(
                "SELECT sum(length(i.payload) + length(v.raw)) FROM items i"
                " JOIN variants v ON v.item_id = i.id WHERE i.idempotency_key LIKE 'bench:warm:%'"
            ).fetchone()[0]
            reader.close()
            assert stored == sum(map(len, warm.bare_payloads)), "payload sizes differ"
            # Then each side until its first automatic checkpoint: from there on its WAL
            # file is rewritten in place instead of growing (a growing file makes every
            # fsync commit file-system metadata too), as in a queue that has been running.
            until_checkpoint(
                home / "queue.db",
                lambda i: store.items.enqueue(
                    items.draft("warm2", i, account), items.builds[i % n]
                ),
            )
            until_checkpoint(
                home / "bare.db",
                lambda i: bare_round(bare, [(f"warm2:{i:020d}", items.bare_payloads[i % n])]),
            )

            hsm_calls_before = kek.calls
            al_lat: list[list[int]] = []
            bare_lat: list[list[int]] = []
            al_rates, bare_rates, ratios = [], [], []
            for r in range(rounds):
                drafts, rows = items.drafts(str(r), account), items.bare_rows(str(r))
                lat, secs = airlock_round(store, drafts, items)
                al_lat.append(lat)
                al_rates.append(n / secs)
                lat, secs = bare_round(bare, rows)
                bare_lat.append(lat)
                bare_rates.append(n / secs)
                ratios.append(al_rates[-1] / bare_rates[-1])
            hsm_calls = kek.calls - hsm_calls_before

            # -- where the time goes ------------------------------------------------------
            statements: list[str] = []
            store.core.conn.set_trace_callback(statements.append)  # diagnostics only
            store.items.enqueue(items.drafts("trace", account)[0], items.builds[0])
            store.core.conn.set_trace_callback(None)

            al_drafts = items.drafts("frames", account)
            al_frames = wal_frames_per_commit(
                home / "queue.db", lambda i: store.items.enqueue(al_drafts[i], items.builds[i])
            )
            bare_rows = items.bare_rows("frames")
            bare_frames = wal_frames_per_commit(
                home / "bare.db",
                lambda i: bare_round(bare, bare_rows[i : i + 1]),
            )

            autockpt = store.core.conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0]
            # One more durable round per side, telling apart the commits that ran an
            # automatic WAL checkpoint (the main file is only written by checkpoints).
            al_drafts = items.drafts("ckpt", account)

            def one_airlock(i: int) -> int:
                t0 = time.perf_counter_ns()
                store.items.enqueue(al_drafts[i], items.builds[i])
                return time.perf_counter_ns() - t0

            bare_rows = items.bare_rows("ckpt")
            ckpt_al = checkpoint_split(home / "queue.db", one_airlock, n)
            ckpt_bare = checkpoint_split(
                home / "bare.db", lambda i: bare_round(bare, bare_rows[i : i + 1])[0][0], n
            )

            # The same loops without fsync: what is left is CPU (Python, SQLite, AES).
            store.core.conn.execute("PRAGMA synchronous=OFF")  # diagnostics only
            bare.execute("PRAGMA synchronous=OFF")
            nosync_al, nosync_bare = [], []
            head = items.head(200)
            for r in range(3):
                nosync_al += airlock_round(store, head.drafts(f"nosync{r}", account), head)[0]
                nosync_bare += bare_round(bare, head.bare_rows(f"nosync{r}"))[0]
            store.close()
            bare.close()

        # Encryption alone: JSON encoding and two AES-256-GCM seals, as Envelope.seal does.
        cipher = AESGCM(AESGCM.generate_key(bit_length=256))
        seal_ns = []
        for request, build in zip(items.requests, items.builds, strict=True):
            built = build(None)
            t0 = time.perf_counter_ns()
            plain = json_bytes(dict(built.payload, request=request))
            cipher.encrypt(os.urandom(NONCE_BYTES), plain, b"airlock/v1|items|x|payload|1")
            cipher.encrypt(os.urandom(NONCE_BYTES), built.variants[0].raw, b"airlock/v1|v|x|raw|1")
            seal_ns.append(time.perf_counter_ns() - t0)

    airlock = summary(al_lat, al_rates)
    baseline = summary(bare_lat, bare_rates)
    ratio = statistics.median(ratios)
    p99_ratio = airlock["p99_ms"] / baseline["p99_ms"]
    nosync_al_ms = statistics.median(nosync_al) / 1e6
    nosync_bare_ms = statistics.median(nosync_bare) / 1e6
    report = {
        "n": n,
        "rounds": rounds,
        "cpus": os.cpu_count(),
        "sqlite": sqlite3.sqlite_version,
        "stored_bytes_per_item": round(statistics.mean(map(len, items.bare_payloads))),
        "airlock": airlock,
        "bare": baseline,
        "ratio_items_per_s": round(ratio, 3),
        "ratio_per_round": [round(x, 3) for x in ratios],
        "ratio_p99": round(p99_ratio, 2),
        "ratio_p50": round(airlock["p50_ms"] / baseline["p50_ms"], 2),
        "targets": {
            "p99_ms": {
                "target": P99_TARGET_MS,
                "value": airlock["p99_ms"],
                "pass": airlock["p99_ms"] <= P99_TARGET_MS,
            },
            "ratio_items_per_s": {
                "target": RATIO_TARGET,
                "value": round(ratio, 3),
                "pass": ratio >= RATIO_TARGET,
            },
        },
        "breakdown": {
            "hsm_calls_while_timing": hsm_calls,
            "sql_statements_per_enqueue": len(statements),
            "sql_per_enqueue": [" ".join(s.split())[:70] for s in statements],
            "bare_sql_statements_per_insert": 3,
            "wal_frames_per_commit_airlock": round(al_frames, 1),
            "wal_frames_per_commit_bare": round(bare_frames, 1),
            "wal_autocheckpoint_pages": autockpt,
            "commits_per_checkpoint_airlock": round(autockpt / al_frames),
            "commits_per_checkpoint_bare": round(autockpt / bare_frames),
            "checkpoint_split_airlock": ckpt_al,
            "checkpoint_split_bare": ckpt_bare,
            "p50_ms_no_fsync_airlock": round(nosync_al_ms, 3),
            "p50_ms_no_fsync_bare": round(nosync_bare_ms, 3),
            "p50_ms_fsync_part_airlock": round(airlock["p50_ms"] - nosync_al_ms, 3),
            "p50_ms_fsync_part_bare": round(baseline["p50_ms"] - nosync_bare_ms, 3),
            "p50_ms_encryption_alone": round(statistics.median(seal_ns) / 1e6, 3),
        },
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(
        f"durable enqueue, n={n} x {rounds} rounds, {report['cpus']} cpus, SQLite "
        f"{report['sqlite']}, {report['stored_bytes_per_item']} B stored per item"
    )
    print(
        f"{'':8} {'p50 ms':>7} {'p99 ms':>7} {'items/s':>8}  |  pooled over rounds:"
        f" {'p50 ms':>7} {'p99 ms':>7} {'mean ms':>7} {'max ms':>7}"
    )
    for name, side in (("airlock", airlock), ("bare", baseline)):
        print(
            f"{name:8} {side['p50_ms']:7.3f} {side['p99_ms']:7.3f} {side['items_per_s']:8}  |"
            f"  {'':18} {side['pooled_p50_ms']:7.3f} {side['pooled_p99_ms']:7.3f}"
            f" {side['pooled_mean_ms']:7.3f} {side['pooled_max_ms']:7.3f}"
        )
    print(f"airlock p99 per round       {' '.join(map(str, airlock['p99_ms_per_round']))}")
    per_round = " ".join(f"{x:.3f}" for x in ratios)
    print(f"ratio items/s airlock/bare  {report['ratio_items_per_s']}  per round {per_round}")
    print(f"ratio p99 airlock/bare      {report['ratio_p99']}")
    print(f"ratio p50 airlock/bare      {report['ratio_p50']}")
    for name, target in report["targets"].items():
        op = "<=" if name == "p99_ms" else ">="
        verdict = "PASS" if target["pass"] else "FAIL"
        print(f"target {name:20} {target['value']} {op} {target['target']}  {verdict}")
    print("breakdown")
    for name, value in report["breakdown"].items():
        if name == "sql_per_enqueue":
            continue
        if isinstance(value, dict):
            value = ", ".join(f"{k} {v}" for k, v in value.items())
        print(f"  {name:34} {value}")


if __name__ == "__main__":
    main()
