"""Broadcaster drain: airlock's in-process broadcaster against anvil's own batched ingest.

Every figure comes from one run, so the ratios hold on a noisy machine even when the
absolute rates do not. Each round signs N = senders x nonces type-2 transfers in the
SoftHSM (one-level ladder: one variant per item), funds every sender with
``anvil_setBalance`` and measures, each side on its own fresh anvil (automine on):

1. **drain** — the N items queued with ``enqueue_transaction`` into a fresh Store are
   drained by a ``Broadcaster`` with ``--relays`` relays, all pointing straight at the
   same anvil (batch_size 100), ``confirmations=1``; timed from the start of
   ``run_once()`` (relays started and probed before) until every item is confirmed;
   - (a) anvil's ingest ceiling: the same raw bytes, in queue order, as 100-call JSON-RPC
     batches of ``eth_sendRawTransaction`` over one keep-alive connection
     (``http.client``), sequentially, timed until the last batch is answered (every
     transaction in anvil's pool);
   - (b) web3.py: ``Web3(HTTPProvider(url)).eth.send_raw_transaction(raw)`` one by one, on
     the first min(N, 2000) transactions, timed the same way;
   both also report, for information, the time until every transaction was mined. anvil
   1.7.1's automine stalls under batched load (ready transactions left in its pool, no new
   block) and has been seen to lose accepted transactions; a stall is nudged with
   ``evm_mine`` (counted), and a loss makes that figure n/a. The drain is timed until
   confirmed, so it is held to the stricter standard; it gets the same nudges (counted);
2. **reconcile** — ``--reconcile-items`` more transfers (default N, nonces continuing) are
   queued into the drained store and sent with ``Broadcaster.dispatch()`` only, so they
   are mined but the store still calls them ``sent``; then ONE ``reconcile()`` pass is timed
   (receipts, nonces, head, and the confirmations written to the store), against the
   bare baseline: ``eth_getTransactionReceipt`` for the same hashes, 100 per batch, one
   keep-alive connection, sequentially (timed before and after airlock's pass; the faster
   one counts). The drained items are first buried below the reorg window (``anvil_mine``
   of reorg_depth + 1 blocks and one untimed pass), so the pass reads exactly the items
   in flight. For information, a just-started broadcaster's pass over the final store is
   timed too (what it reads: the reorg window only);
3. **link return** — once, after the rounds: one relay behind a ``FaultProxy``,
   ``Broadcaster.run(stop)`` in the background (probe_down_seconds 0.05). ``--returns``
   times: proxy ``down``, wait until the monitor calls the relay DOWN, queue one item,
   proxy ``pass``; the latency is from the monitor's DOWN -> usable change (its
   ``on_change`` callback, stamped first) to the first send reply with an ACCEPTED
   outcome (the relay's ``send_raw``, wrapped).

A breakdown of the drain and the reconcile pass follows: wall time inside the store's
calls (all synchronous: they block the event loop), the fan-out and the chain reads, and
CPU time of this process and of anvil. ``--profile PREFIX`` writes cProfile stats of the
timed sections to PREFIX.drain.pstats and PREFIX.reconcile.pstats (the timed figures of a
profiled run are not comparable).

Usage: python bench/drain.py [--senders 100] [--nonces 100] [--relays 3] [--rounds 1]
       [--reconcile-items N] [--returns 20] [--profile PREFIX]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import http.client
import itertools
import json
import logging
import math
import os
import pstats
import statistics
import tempfile
import time
import urllib.parse
from collections.abc import Callable, Iterator
from contextlib import AsyncExitStack, ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from web3 import HTTPProvider, Web3

import benchkit
from airlock.broadcaster.service import Broadcaster
from airlock.config import BroadcasterConfig, HealthConfig, RelayConfig
from airlock.hsm.keyring import HsmEcdsaKey, KeyRing
from airlock.queue.evm import enqueue_transaction
from airlock.queue.kek import HsmKek
from airlock.queue.states import State
from airlock.queue.store import Store
from airlock.relays.health import Change, LinkState
from airlock.relays.jsonrpc import EvmRelay, RawTx
from airlock.relays.outcomes import Classified, Outcome
from airlock.signer import evm
from airlock.signer.ladder import LadderSpec
from airlock.sim.anvil import Anvil, start_anvil
from airlock.sim.faultproxy import FaultProxy
from benchkit import open_bench_token

CHAIN_ID = 31337
BATCH = 100
WEB3_MAX = 2000
BALANCE = hex(10**21)
RECIPIENT = "0x" + "22" * 20
GWEI = 10**9
LADDER = LadderSpec(levels=1)
MINED_TIMEOUT = 120.0
STALL_S = 0.02  # no nonce moved for this long with a non-empty pool: anvil stalled
DRAIN_TIMEOUT = 900.0

TARGET_VS_BATCHED = 0.5  # airlock drain items/s over (a)
TARGET_VS_WEB3 = 10.0  # airlock drain items/s over (b)
TARGET_RECONCILE = 0.5  # reconcile items/s over bare batched receipts
TARGET_RETURN_P50_MS = 50.0

# No bumps or rebroadcasts: a one-level ladder has nothing to bump to, and with automine
# the head moves with nearly every send, so a bump-after-blocks rule would fire at once.
DRAIN_CONFIG = dict(
    confirmations=1,
    bump_after_blocks=1_000_000,
    bump_after_seconds=3600.0,
    rebroadcast_seconds=3600.0,
)
RETURN_CONFIG = BroadcasterConfig(
    confirmations=1,
    reorg_depth=16,
    bump_after_blocks=1_000_000,
    bump_after_seconds=3600.0,
    rebroadcast_seconds=3600.0,
    reconcile_seconds=0.2,
    health=HealthConfig(probe_seconds=0.2, probe_down_seconds=0.05, fall=2, rise=2),
)


# --------------------------------------------------------------------------- plumbing


class KeepAlive:
    """JSON-RPC over one keep-alive HTTP/1.1 connection, one request at a time."""

    def __init__(self, url: str) -> None:
        parts = urllib.parse.urlsplit(url)
        self._conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, 60)
        self._path = parts.path or "/"
        self._ids = itertools.count(1)

    def __enter__(self) -> KeepAlive:
        return self

    def __exit__(self, *exc: object) -> None:
        self._conn.close()

    def post(self, body: bytes) -> Any:
        self._conn.request("POST", self._path, body, {"Content-Type": "application/json"})
        response = self._conn.getresponse()
        data = response.read()
        if response.status != 200:
            raise RuntimeError(f"HTTP {response.status}: {data[:200]!r}")
        return json.loads(data)

    def batch(self, calls: list[tuple[str, list[Any]]]) -> list[dict[str, Any]]:
        """The replies in call order (each a JSON-RPC response object)."""
        ids = [next(self._ids) for _ in calls]
        body = json.dumps(
            [
                {"jsonrpc": "2.0", "id": i, "method": m, "params": p}
                for i, (m, p) in zip(ids, calls, strict=True)
            ],
            separators=(",", ":"),
        ).encode()
        by_id = {r["id"]: r for r in self.post(body)}
        return [by_id[i] for i in ids]

    def results(self, calls: list[tuple[str, list[Any]]]) -> list[Any]:
        out = []
        for reply in self.batch(calls):
            if "error" in reply:
                raise RuntimeError(f"JSON-RPC error: {reply['error']}")
            out.append(reply["result"])
        return out


def chunks(seq: list[Any], size: int) -> Iterator[list[Any]]:
    for i in range(0, len(seq), size):
        yield seq[i : i + size]


def fund(url: str, addresses: list[str]) -> None:
    with KeepAlive(url) as rpc:
        for part in chunks(addresses, BATCH):
            rpc.results([("anvil_setBalance", [a, BALANCE]) for a in part])


def wait_mined(rpc: KeepAlive, expected: dict[str, int], timeout: float = MINED_TIMEOUT) -> int:
    """Until every sender's latest nonce reaches ``expected`` (all its txs mined); returns
    the number of ``evm_mine`` calls it had to make.

    anvil's automine can stall with transactions ready in its pool (seen under batched
    load: thousands left pending, no new block for minutes, until something else arrives).
    When no nonce has moved for STALL_S and the pool is not empty, one ``evm_mine``
    takes the next block; the calls are counted, and the time is the caller's.
    """
    senders = sorted(expected)
    deadline = time.monotonic() + timeout
    last_total, last_move, flushes = -1, time.monotonic(), 0
    while True:
        counts = []
        for part in chunks(senders, BATCH):
            counts += [
                int(c, 16)
                for c in rpc.results([("eth_getTransactionCount", [s, "latest"]) for s in part])
            ]
        short = [s for s, c in zip(senders, counts, strict=True) if c < expected[s]]
        if not short:
            return flushes
        now = time.monotonic()
        if sum(counts) != last_total:
            last_total, last_move = sum(counts), now
        elif now - last_move >= STALL_S:
            (pool,) = rpc.results([("txpool_status", [])])
            if int(pool["pending"], 16) + int(pool["queued"], 16):
                rpc.results([("evm_mine", [])])
                flushes += 1
            last_move = now
        if now > deadline:
            (pool,) = rpc.results([("txpool_status", [])])
            raise RuntimeError(
                f"{len(short)} senders not fully mined after {timeout} s (anvil's pool: {pool})"
            )
        time.sleep(0.002)


def cpu_s(pid: int) -> float:
    """User + system CPU time of another process (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Clocks:
    wall: float = 0.0
    cpu_self: float = 0.0
    cpu_anvil: float = 0.0


@contextmanager
def clocks(anvil: Anvil) -> Iterator[Clocks]:
    out = Clocks()
    w0, c0, a0 = time.perf_counter(), time.process_time(), cpu_s(anvil.process.pid)
    yield out
    out.wall = time.perf_counter() - w0
    out.cpu_self = time.process_time() - c0
    out.cpu_anvil = cpu_s(anvil.process.pid) - a0


@contextmanager
def profiled(path: Path | None) -> Iterator[None]:
    if path is None:
        yield
        return
    profile = cProfile.Profile()
    profile.enable()
    try:
        yield
    finally:
        profile.disable()
        profile.dump_stats(path)
        print(f"\n--- cProfile of {path.name} (top 25 by own time) ---")
        pstats.Stats(profile).sort_stats("tottime").print_stats(25)


class Stopwatch(benchkit.Stopwatch):
    """The shared stopwatch, with the table this benchmark prints."""

    def table(self, total: float) -> list[dict[str, Any]]:
        rows = [
            {
                "part": label,
                "calls": self.calls[label],
                "seconds": round(s, 3),
                "share": round(s / total, 3),
            }
            for label, s in sorted(self.seconds.items(), key=lambda kv: -kv[1])
        ]
        rest = total - sum(self.seconds.values())
        rows.append({"part": "rest (broadcaster Python)", "calls": None, "seconds": round(rest, 3)})
        rows[-1]["share"] = round(rest / total, 3)
        return rows


STORE_PARTS = {  # "part.method" of the store: what the broadcaster calls
    "items.expire_due": "store.items.expire_due (write txn)",
    "sends.dispatchable": "store.sends.dispatchable (read)",
    "sends.wave_variants": "store.sends.wave_variants (read)",
    "sends.open_variant": "store.sends.open_variant (AES-GCM open)",
    "sends.begin": "store.sends.begin (write txn)",
    "sends.record": "store.sends.record (write txn, audit)",
    "sends.lanes": "store.sends.lanes (read)",
    "sends.record_chain": "store.sends.record_chain (write txn, audit)",
    "items.select": "store.items.select (read)",
    "items.get": "store.items.get (read)",
    "audit.record": "store.audit.record (write txn, audit)",
}
RELAY_PARTS = {
    "transaction_counts": "relay.transaction_counts (HTTP)",
    "block_number": "relay.block_number (HTTP)",
    "receipts": "relay.receipts (HTTP)",
}


def instrument(watch: Stopwatch, broadcaster: Broadcaster) -> None:
    for path, label in STORE_PARTS.items():
        part, name = path.split(".")
        watch.wrap(getattr(broadcaster.store, part), name, label)
    watch.wrap(broadcaster, "_fan_out", "fan-out send_raw to every relay (HTTP)")
    for relay in broadcaster.relays:
        for name, label in RELAY_PARTS.items():
            watch.wrap(relay, name, label)


# --------------------------------------------------------------------------- the work


@dataclass(frozen=True)
class Sender:
    key: HsmEcdsaKey
    address: str


def make_senders(ring: KeyRing, prefix: str, count: int) -> list[Sender]:
    """``count`` fresh secp256k1 keys in the HSM, and their addresses."""
    senders = []
    for n in range(count):
        label = f"{prefix}-{n}"
        ring.generate("secp256k1", label)
        key = ring.ecdsa_key(label, curve="secp256k1")
        senders.append(Sender(key, evm.address_from_public_key(key.public_key)))
    return senders


def fee_fields(url: str) -> dict[str, Any]:
    with KeepAlive(url) as rpc:
        (block,) = rpc.results([("eth_getBlockByNumber", ["latest", False])])
    base_fee = int(block["baseFeePerGas"], 16)
    return {
        "chain_id": CHAIN_ID,
        "to": RECIPIENT,
        "value": 10**12,
        "gas": 21000,
        "max_fee_per_gas": 2 * base_fee + GWEI,
        "max_priority_fee_per_gas": GWEI,
    }


def queue(store: Store, senders: list[Sender], count: int, fields: dict[str, Any]) -> list[str]:
    """``count`` transfers, round-robin over the senders (nonce-major, as tests do)."""
    ids = []
    for n in range(count):
        sender = senders[n % len(senders)]
        entry = enqueue_transaction(
            store, sender.key, dict(fields, value=fields["value"] + n), ladder=LADDER
        )
        ids.append(entry.item.id)
    return ids


def drain_config(args: argparse.Namespace) -> BroadcasterConfig:
    return BroadcasterConfig(reconcile_seconds=args.reconcile_seconds, **DRAIN_CONFIG)


def relay_configs(url: str, count: int) -> list[RelayConfig]:
    return [
        RelayConfig(
            name=f"rpc-{n}",
            kind="evm-rpc",
            url=url,
            chain_id=CHAIN_ID,
            batch_size=BATCH,
            timeout_seconds=30.0,
            connect_timeout_seconds=2.0,
        )
        for n in range(count)
    ]


def state_counts(store: Store) -> dict[str, int]:
    return {str(s): c for s in State if (c := store.items.count(s))}


async def airlock_drain(
    broadcaster: Broadcaster, anvil: Anvil, expected: dict[str, int], profile: Path | None
) -> tuple[Clocks, int]:
    """Time run_once() until every item is confirmed. If a run ends with items still
    unconfirmed (anvil's automine stalled: see wait_mined), the chain is nudged the same
    way as for the baselines and run_once() runs again, all inside the timing."""
    await broadcaster.monitor.probe_all()  # the relays are up before the clock starts
    store = broadcaster.store
    n = sum(expected.values())
    flushes = 0
    with KeepAlive(anvil.url) as rpc, clocks(anvil) as took, profiled(profile):
        deadline = time.monotonic() + DRAIN_TIMEOUT
        await broadcaster.run_once()
        while store.items.count(State.CONFIRMED) < n:
            if time.monotonic() > deadline:
                raise RuntimeError(f"drain not done: {state_counts(store)}")
            flushes += wait_mined(rpc, expected)
            await broadcaster.run_once()
    return took, flushes


def bare_ingest(anvil: Anvil, raws: list[bytes], expected: dict[str, int]) -> dict[str, Any]:
    """(a): 100-tx batches over one keep-alive connection, sequentially."""
    with KeepAlive(anvil.url) as rpc:
        with clocks(anvil) as took:
            refused: list[str] = []
            for part in chunks(raws, BATCH):
                replies = rpc.batch([("eth_sendRawTransaction", ["0x" + r.hex()]) for r in part])
                refused += [r["error"]["message"] for r in replies if "error" in r]
        if refused:
            raise RuntimeError(f"anvil refused {len(refused)} transactions: {refused[:3]}")
        return side(len(raws), took, 0) | until_mined(rpc, expected, took)


def web3_loop(anvil: Anvil, raws: list[bytes], expected: dict[str, int]) -> dict[str, Any]:
    """(b): the plain web3.py loop, one request per transaction."""
    w3 = Web3(HTTPProvider(anvil.url))
    send = w3.eth.send_raw_transaction
    _ = w3.eth.chain_id  # open the session before timing, as a long-lived client would
    with KeepAlive(anvil.url) as rpc:
        with clocks(anvil) as took:
            for raw in raws:
                send(raw)
        return side(len(raws), took, 0) | until_mined(rpc, expected, took)


def until_mined(rpc: KeepAlive, expected: dict[str, int], took: Clocks) -> dict[str, Any]:
    """For information: how long until every transaction was also mined (the baselines'
    rates are ingest rates: every transaction accepted into anvil's pool)."""
    start = time.perf_counter()
    try:
        flushes = wait_mined(rpc, expected, timeout=30.0)
    except RuntimeError as exc:
        return {"mined_seconds": None, "evm_mine_calls": None, "mined_problem": str(exc)}
    return {
        "mined_seconds": round(took.wall + time.perf_counter() - start, 3),
        "evm_mine_calls": flushes,
    }


def expected_nonces(senders: list[Sender], count: int, base: int = 0) -> dict[str, int]:
    """Each sender's chain nonce once the first ``count`` round-robin transfers are in."""
    return {
        s.address: base + count // len(senders) + (1 if i < count % len(senders) else 0)
        for i, s in enumerate(senders)
    }


async def dispatch_only(broadcaster: Broadcaster) -> int:
    sent = 0
    while True:
        result = await broadcaster.dispatch()
        sent += result.sent
        if result.sent == 0 and not result.more:
            return sent


def bare_receipts(url: str, hashes: list[str]) -> float:
    """Seconds for batched eth_getTransactionReceipt of ``hashes``, one connection."""
    with KeepAlive(url) as rpc:
        start = time.perf_counter()
        missing = 0
        for part in chunks(hashes, BATCH):
            missing += sum(
                1
                for r in rpc.results([("eth_getTransactionReceipt", [h]) for h in part])
                if r is None
            )
        seconds = time.perf_counter() - start
    if missing:
        raise RuntimeError(f"{missing} receipts missing in the bare receipt baseline")
    return seconds


def rate(n: int, seconds: float) -> float:
    return n / seconds if seconds > 0 else math.inf


def side(n: int, took: Clocks, flushes: int) -> dict[str, Any]:
    return {
        "n": n,
        "seconds": round(took.wall, 3),
        "items_per_s": round(rate(n, took.wall)),
        "cpu_self_s": round(took.cpu_self, 2),
        "cpu_anvil_s": round(took.cpu_anvil, 2),
        "evm_mine_calls": flushes,
    }


async def one_round(
    args: argparse.Namespace, senders: list[Sender], kek: HsmKek, home: Path, r: int
) -> dict[str, Any]:
    """One drain with its two baselines and one reconcile pass, on fresh anvils."""
    n = args.senders * args.nonces
    addresses = [s.address for s in senders]
    profile = Path(args.profile) if args.profile else None
    out: dict[str, Any] = {"n": n}
    with ExitStack() as stack:
        anvil = stack.enter_context(start_anvil(CHAIN_ID))
        fund(anvil.url, addresses)
        fields = fee_fields(anvil.url)
        store = stack.enter_context(Store.open(home / f"drain-{r}.db", kek))
        t0 = time.perf_counter()
        ids = queue(store, senders, n, fields)
        out["queue_seconds"] = round(time.perf_counter() - t0, 2)
        raws = []
        for item_id in ids:
            ((_, raw),) = store.items.signed_variants(item_id)  # one variant per item
            raws.append(raw)

        # 1. the drain
        async with AsyncExitStack() as astack:
            relays = [
                await astack.enter_async_context(EvmRelay(c))
                for c in relay_configs(anvil.url, args.relays)
            ]
            broadcaster = Broadcaster(store, relays, drain_config(args))
            watch = Stopwatch()
            instrument(watch, broadcaster)
            watch.reset()
            took, flushes = await airlock_drain(
                broadcaster,
                anvil,
                expected_nonces(senders, n),
                profile and profile.with_suffix(".drain.pstats"),
            )
            out["drain"] = side(n, took, flushes) | {
                "breakdown": watch.table(took.wall),
                "states": state_counts(store),
                "alerts": len(broadcaster.alerts),
            }
            assert store.items.count(State.CONFIRMED) == n, state_counts(store)

            # (a) and (b), each on a fresh anvil, the same senders funded the same way
            with start_anvil(CHAIN_ID) as fresh:
                fund(fresh.url, addresses)
                out["batched"] = bare_ingest(fresh, raws, expected_nonces(senders, n))
            m = min(n, WEB3_MAX)
            with start_anvil(CHAIN_ID) as fresh:
                fund(fresh.url, addresses)
                out["web3"] = web3_loop(fresh, raws[:m], expected_nonces(senders, m))

            # 2. reconcile: a second batch, sent with dispatch() only, then one pass. First
            # the drained items are buried below the reorg window (empty blocks, and one
            # untimed pass to see the new head), so that the timed pass reads exactly the
            # k items in flight, as the baseline does.
            k = args.reconcile_items if args.reconcile_items is not None else n
            with KeepAlive(anvil.url) as rpc:
                rpc.results([("anvil_mine", [hex(broadcaster.config.reorg_depth + 1)])])
            await broadcaster.reconcile()
            more = queue(store, senders, k, fee_fields(anvil.url))
            hashes = [store.items.variants(i)[0].tx_hash for i in more]
            sent = await dispatch_only(broadcaster)
            assert sent == k and store.items.count(State.SENT) == k, (sent, state_counts(store))
            with KeepAlive(anvil.url) as rpc:
                out["reconcile_setup_evm_mine_calls"] = wait_mined(
                    rpc, expected_nonces(senders, k, base=args.nonces)
                )
            lanes = len(store.sends.lanes(broadcaster._watch_from()))  # what the pass will read
            assert lanes == k, (lanes, k)
            bare_before = bare_receipts(anvil.url, hashes)
            watch.reset()
            with (
                clocks(anvil) as rc,
                profiled(profile and profile.with_suffix(".reconcile.pstats")),
            ):
                result = await broadcaster.reconcile()
            bare_after = bare_receipts(anvil.url, hashes)
            assert store.items.count(State.CONFIRMED) == n + k, state_counts(store)
            bare = min(bare_before, bare_after)
            out["reconcile"] = side(k, rc, 0) | {
                "lanes_read": lanes,
                "settled": result.settled,
                "bare_seconds": [round(bare_before, 3), round(bare_after, 3)],
                "bare_items_per_s": round(rate(k, bare)),
                "breakdown": watch.table(rc.wall),
            }

            # For information: the same pass by a broadcaster that has not seen a head yet
            # (just started, or ``airlock reconcile``), over the store as it now is: nothing
            # in flight, every item confirmed long ago.
            cold = Broadcaster(store, relays, drain_config(args))
            await cold.monitor.probe_all()
            cold_lanes = len(store.sends.lanes(cold._watch_from()))
            start = time.perf_counter()
            cold_result = await cold.reconcile()
            out["reconcile_cold"] = {
                "in_flight": store.items.count(State.SENT) + store.items.count(State.SENDING),
                "lanes_read": cold_lanes,
                "settled": cold_result.settled,
                "seconds": round(time.perf_counter() - start, 3),
            }
    out["ratio_vs_batched"] = out["drain"]["items_per_s"] / out["batched"]["items_per_s"]
    out["ratio_vs_web3"] = out["drain"]["items_per_s"] / out["web3"]["items_per_s"]
    out["ratio_reconcile"] = out["reconcile"]["items_per_s"] / out["reconcile"]["bare_items_per_s"]
    return out


# --------------------------------------------------------------------------- link return


async def wait_for(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.005)


async def link_return(ring: KeyRing, kek: HsmKek, home: Path, reps: int) -> dict[str, Any]:
    (sender,) = make_senders(ring, "return-sender", 1)
    with (
        start_anvil(CHAIN_ID) as anvil,
        FaultProxy(anvil.url, seed=0).start() as proxy,
        Store.open(home / "return.db", kek) as store,
    ):
        fund(anvil.url, [sender.address])
        fields = fee_fields(anvil.url)
        config = RelayConfig(
            name="rpc-proxied",
            kind="evm-rpc",
            url=proxy.url,
            chain_id=CHAIN_ID,
            batch_size=BATCH,
            timeout_seconds=2.0,
            connect_timeout_seconds=0.5,
        )
        async with EvmRelay(config) as relay:
            broadcaster = Broadcaster(store, [relay], RETURN_CONFIG)
            returned_at: list[float] = []
            accepted_at: list[float] = []
            passed_at: list[float] = []
            hook = broadcaster.monitor._on_change  # diagnostics only

            def on_change(change: Change) -> None:
                if change.returned:
                    returned_at.append(time.monotonic())
                if hook is not None:
                    hook(change)

            broadcaster.monitor._on_change = on_change
            send_raw = relay.send_raw

            async def timed_send(txs: list[RawTx]) -> list[Classified]:
                answers = await send_raw(txs)
                if any(a.outcome is Outcome.ACCEPTED for a in answers):
                    accepted_at.append(time.monotonic())
                return answers

            relay.send_raw = timed_send  # type: ignore[method-assign]

            def state() -> LinkState:
                return broadcaster.monitor.snapshots()[config.name].state

            stop = asyncio.Event()
            task = asyncio.create_task(broadcaster.run(stop))
            latencies, wake = [], []
            try:
                await wait_for(lambda: state() is not LinkState.DOWN, 10, "the relay up")
                for rep in range(reps):
                    proxy.set_mode("down")
                    await wait_for(lambda: state() is LinkState.DOWN, 10, "the relay down")
                    entry = enqueue_transaction(
                        store, sender.key, dict(fields, value=fields["value"] + rep), ladder=LADDER
                    )
                    await asyncio.sleep(0.25)  # the broadcaster has looked and found no relay
                    assert store.items.get(entry.item.id).state is State.QUEUED
                    returned_at.clear()
                    accepted_at.clear()
                    passed_at[:] = [time.monotonic()]
                    proxy.set_mode("pass")
                    await wait_for(lambda: bool(accepted_at), 10, "the first accepted send")
                    (back,) = returned_at
                    latencies.append((accepted_at[0] - back) * 1000)
                    wake.append((back - passed_at[0]) * 1000)
                    item_id = entry.item.id
                    await wait_for(
                        lambda i=item_id: store.items.get(i).state is State.CONFIRMED,
                        10,
                        "confirmed",
                    )
            finally:
                stop.set()
                await asyncio.wait_for(task, timeout=10)
    ordered = sorted(latencies)
    return {
        "reps": reps,
        "p50_ms": round(nearest_rank(ordered, 0.5), 2),
        "p90_ms": round(nearest_rank(ordered, 0.9), 2),
        "max_ms": round(ordered[-1], 2),
        "pass_to_probe_ok_p50_ms": round(nearest_rank(sorted(wake), 0.5), 2),
        "latencies_ms": [round(x, 2) for x in latencies],
    }


def nearest_rank(ordered: list[float], q: float) -> float:
    return ordered[max(1, math.ceil(q * len(ordered))) - 1]


# --------------------------------------------------------------------------- report


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


async def run(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="airlock-bench-", dir=args.dir) as tmp:
        home = Path(tmp)
        with open_bench_token(home) as ring:
            kek = HsmKek(ring)
            senders = make_senders(ring, "drain-sender", args.senders)  # fresh anvil per round
            rounds = []
            for r in range(args.rounds):
                rounds.append(await one_round(args, senders, kek, home, r))
                print_round(r, rounds[-1])
            back = await link_return(ring, kek, home, args.returns)
    return summarise(args, rounds, back)


def print_round(r: int, o: dict[str, Any]) -> None:
    d, a, b, rc = o["drain"], o["batched"], o["web3"], o["reconcile"]
    print(f"\nround {r + 1}: N={o['n']} (queued and HSM-signed in {o['queue_seconds']} s)")
    print(f"  {'':34} {'items/s':>8} {'wall s':>8} {'cpu self s':>10} {'cpu anvil s':>11}")
    rows = [
        ("airlock drain, until confirmed", d),
        ("(a) anvil batched, 1 conn, ingest", a),
        (f"(b) web3.py loop, first {b['n']}, ingest", b),
        (f"airlock reconcile, {rc['n']} in flight", rc),
    ]
    for name, part in rows:
        print(
            f"  {name:34} {part['items_per_s']:8} {part['seconds']:8.3f}"
            f" {part['cpu_self_s']:10.2f} {part['cpu_anvil_s']:11.2f}"
        )
    print(
        f"  {'bare batched receipts (best of 2)':34} {rc['bare_items_per_s']:8}"
        f" {min(rc['bare_seconds']):8.3f}"
    )
    print(
        f"  drain states after: {d['states']}, {d['alerts']} alerts, {d['evm_mine_calls']}"
        f" evm_mine nudges; the reconcile pass read {rc['lanes_read']} lanes"
    )
    cold = o["reconcile_cold"]
    print(
        f"  a just-started broadcaster's reconcile pass over this store ({cold['in_flight']}"
        f" in flight) read {cold['lanes_read']} lanes in {cold['seconds']} s"
    )
    for name, part in (("(a)", a), ("(b)", b)):
        if part["mined_seconds"] is None:
            print(f"  {name} until also mined: n/a ({part['mined_problem']})")
        else:
            print(
                f"  {name} until also mined: {part['mined_seconds']:.3f} s"
                f" ({rate(part['n'], part['mined_seconds']):.0f} items/s,"
                f" {part['evm_mine_calls']} evm_mine nudges)"
            )
    for title, rows_ in (("drain", d["breakdown"]), ("reconcile", rc["breakdown"])):
        print(f"  where the {title} wall time goes:")
        for row in rows_:
            calls = "" if row["calls"] is None else f"{row['calls']:6} calls"
            print(f"    {row['part']:42} {row['seconds']:8.3f} s {row['share']:6.1%} {calls}")


def summarise(
    args: argparse.Namespace, rounds: list[dict[str, Any]], back: dict[str, Any]
) -> dict[str, Any]:
    def med(key: str, sub: str | None = None) -> float:
        return statistics.median(r[key][sub] if sub else r[key] for r in rounds)

    vs_a, vs_b, rec = med("ratio_vs_batched"), med("ratio_vs_web3"), med("ratio_reconcile")
    summary = {
        "bench": "drain",
        "senders": args.senders,
        "nonces": args.nonces,
        "n": rounds[0]["n"],
        "relays": args.relays,
        "rounds": args.rounds,
        "cpus": os.cpu_count(),
        "drain_items_per_s": round(med("drain", "items_per_s")),
        "batched_items_per_s": round(med("batched", "items_per_s")),
        "web3_items_per_s": round(med("web3", "items_per_s")),
        "web3_n": rounds[0]["web3"]["n"],
        "ratio_vs_batched": round(vs_a, 3),
        "pass_vs_batched": vs_a >= TARGET_VS_BATCHED,
        "ratio_vs_web3": round(vs_b, 2),
        "pass_vs_web3": vs_b >= TARGET_VS_WEB3,
        "drain_evm_mine_calls": sum(r["drain"]["evm_mine_calls"] for r in rounds),
        "batched_until_mined_s": [r["batched"]["mined_seconds"] for r in rounds],
        "reconcile_items": rounds[0]["reconcile"]["n"],
        "cold_reconcile_lanes": rounds[0]["reconcile_cold"]["lanes_read"],
        "cold_reconcile_s": rounds[0]["reconcile_cold"]["seconds"],
        "reconcile_items_per_s": round(med("reconcile", "items_per_s")),
        "bare_receipts_items_per_s": round(med("reconcile", "bare_items_per_s")),
        "ratio_reconcile": round(rec, 3),
        "pass_reconcile": rec >= TARGET_RECONCILE,
        "return_p50_ms": back["p50_ms"],
        "return_p90_ms": back["p90_ms"],
        "return_reps": back["reps"],
        "pass_return": back["p50_ms"] <= TARGET_RETURN_P50_MS,
        "profiled": bool(args.profile),
    }
    print(f"\nsummary (medians over {args.rounds} round(s), {os.cpu_count()} cpus)")
    lines = [
        ("drain vs (a) anvil batched", summary["ratio_vs_batched"], f">= {TARGET_VS_BATCHED}"),
        ("drain vs (b) web3.py loop", summary["ratio_vs_web3"], f">= {TARGET_VS_WEB3:g}"),
        ("reconcile vs bare receipts", summary["ratio_reconcile"], f">= {TARGET_RECONCILE}"),
        ("link return p50 ms", back["p50_ms"], f"<= {TARGET_RETURN_P50_MS:g}"),
    ]
    passes = [
        summary["pass_vs_batched"],
        summary["pass_vs_web3"],
        summary["pass_reconcile"],
        summary["pass_return"],
    ]
    for (name, value, target), ok in zip(lines, passes, strict=True):
        print(f"  {name:30} {value:>9} target {target:8} {verdict(ok)}")
    print(
        f"  link return: p90 {back['p90_ms']} ms, max {back['max_ms']} ms over {back['reps']};"
        f" proxy pass -> probe ok p50 {back['pass_to_probe_ok_p50_ms']} ms (not counted)"
    )
    if args.profile:
        print("  (profiled run: the timed figures are not comparable)")
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--store",
        choices=("sqlite", "postgres"),
        default="sqlite",
        help="postgres: the fleet figures of bench/fleet.py (several broadcasters on one "
        "PostgreSQL queue against one on SQLite, enqueue p99, hand-over time)",
    )
    parser.add_argument("--senders", type=int, default=None, help="default 100 (fleet: 10)")
    parser.add_argument("--nonces", type=int, default=None, help="default 100 (fleet: 100)")
    parser.add_argument("--relays", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument(
        "--reconcile-items", type=int, default=None, help="second batch size (default: N)"
    )
    parser.add_argument("--returns", type=int, default=20, help="link-return repetitions")
    parser.add_argument(
        "--reconcile-seconds",
        type=float,
        default=BroadcasterConfig().reconcile_seconds,
        help="the drain broadcaster's periodic reconcile (default: the config default)",
    )
    parser.add_argument("--profile", default=None, help="write cProfile stats to PREFIX.*")
    parser.add_argument("--dir", type=Path, default=None, help="parent of the temp dir")
    import fleet  # bench/fleet.py, which imports this module

    fleet.add_arguments(parser)
    args = parser.parse_args()
    if args.store == "postgres":
        args.senders, args.nonces = args.senders or 10, args.nonces or 100
        logging.getLogger("airlock").setLevel(logging.ERROR)
        started = time.perf_counter()
        result = fleet.run(args)
        result["total_seconds"] = round(time.perf_counter() - started, 1)
        fleet.print_summary(result)
        print(json.dumps(result, separators=(",", ":")))
        return
    args.senders, args.nonces = args.senders or 100, args.nonces or 100
    # Relay health changes and alerts are counted in the report, not logged as they happen.
    logging.getLogger("airlock").setLevel(logging.ERROR)
    started = time.perf_counter()
    summary = asyncio.run(run(args))
    summary["total_seconds"] = round(time.perf_counter() - started, 1)
    print(f"total runtime {summary['total_seconds']} s")
    print(json.dumps(summary, separators=(",", ":")))


if __name__ == "__main__":
    main()
