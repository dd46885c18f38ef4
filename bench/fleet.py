"""Several broadcasters on one PostgreSQL queue: drain throughput, enqueue latency and the
hand-over time, each against a baseline measured in the same run.

``python bench/drain.py --store postgres [--broadcasters 1,2,3]`` (or ``python
bench/fleet.py``). One SoftHSM token, one private PostgreSQL cluster (real durability:
fsync and synchronous_commit on), fresh anvils:

1. **drain** - N = senders x nonces transfers are HSM-signed once into an SQLite queue;
   each side drains the same signed bytes on its own fresh anvil (automine on), every
   broadcaster a real ``airlock broadcaster run`` process with ``--relays`` relays
   straight at that anvil:
   - the baseline: the SQLite queue (a copy of the file), one broadcaster;
   - for each count k: the queue copied into a fresh PostgreSQL database (``airlock db
     copy``'s code), k broadcasters. So that they share from the start, a gate in this
     process holds every lane while they come up and lets go of them all at once when
     every one shows its presence.
   Each side is timed by its own records, the same way: from the first send to the last
   confirmation (so neither start-up nor the gate is counted). The ratio is each side's
   items/s over the baseline's. A stalled anvil automine is
   nudged with ``evm_mine`` (counted), as bench/drain.py does.
2. **enqueue** - ``Store.items.enqueue`` of pre-signed transfers, one item per commit, on
   the PostgreSQL queue, against a bare ``INSERT`` of a row of the same size, one per
   commit, into a plain table on the same server over one connection (psycopg,
   autocommit): p50 and p99 of each, rounds alternating.
3. **hand-over** - two broadcaster processes with the default failover, health and lease
   settings, each with one relay behind its own fault proxy, transfers trickling in: the
   proxy of the one holding the lanes is cut; the time from the cut to the first send for
   those lanes through the other's relay, ``--handovers`` times.

Usage: python bench/fleet.py [--senders 10] [--nonces 100] [--relays 3]
       [--broadcasters 1,2,3] [--enqueue 300] [--handovers 8]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from functools import partial
from pathlib import Path
from typing import Any

import benchkit
import drain
import enqueue as enq
from airlock.broadcaster.keeper import KeeperSettings, LaneKeeper
from airlock.config import embedded_paths
from airlock.hsm.keyring import KeyRing
from airlock.queue.copy import copy_to_postgres
from airlock.queue.kek import HsmKek
from airlock.queue.leases import evm_lane
from airlock.queue.states import State
from airlock.queue.store import Store
from airlock.signer import evm
from airlock.sim.anvil import Anvil, start_anvil
from airlock.sim.faultproxy import FaultProxy
from airlock.sim.postgres import PgCluster, start_cluster

UP_TIMEOUT_S = 60.0
DRAIN_TIMEOUT_S = 600.0
STALL_S = 2.0  # no new confirmation this long: nudge anvil with evm_mine
HANDOVER_TIMEOUT_S = 60.0
TARGET_HANDOVER_P50_MS = 5000

_CONFIG = """
[queue]
{queue}
kek_label = "{kek_label}"
{relays}
[broadcaster]
name = "{name}"
confirmations = 1
bump_after_blocks = 10000
bump_after_seconds = 3600
rebroadcast_seconds = 3600
reconcile_seconds = {reconcile_s}
{health}
[service]
metrics_port = 0

[api]
enabled = false
"""
_RELAY = """
[[relays]]
name = "{name}"
kind = "evm-rpc"
url = "{url}"
chain_id = {chain_id}
batch_size = {batch}
timeout_seconds = 30.0
connect_timeout_seconds = 2.0
"""
_FAST_HEALTH = """
[broadcaster.health]
probe_seconds = 0.2
probe_down_seconds = 0.05
"""


def config_text(name: str, queue: str, kek_label: str, urls: list[str], fast: bool = True) -> str:
    """A broadcaster's airlock.toml: its queue, its relays (``name``-prefixed), and for
    the drain the timers drain.py uses (no bumps; reconcile on every new block)."""
    relays = "".join(
        _RELAY.format(name=f"{name}-rpc-{n}", url=url, chain_id=drain.CHAIN_ID, batch=drain.BATCH)
        for n, url in enumerate(urls)
    )
    return _CONFIG.format(
        queue=queue,
        kek_label=kek_label,
        relays=relays,
        name=name,
        reconcile_s=0.5 if fast else 30.0,
        health=_FAST_HEALTH if fast else "",
    )


class Fleet:
    """Broadcaster processes of one side, started and stopped together."""

    def __init__(self, home: Path, workdir: Path) -> None:
        self.home, self.dir = home, workdir
        self.processes: list[subprocess.Popen[bytes]] = []

    def start(self, name: str, text: str) -> subprocess.Popen[bytes]:
        config = self.dir / f"{name}.toml"
        config.write_text(text)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRLOCK_", "SOFTHSM2"))}
        env["AIRLOCK_HOME"] = str(self.home)
        env["AIRLOCK_PIN_FILE"] = str(embedded_paths(self.home)["user_pin"])
        with (self.dir / f"{name}.log").open("ab") as err:
            argv = [sys.executable, "-m", "airlock.cli", "--config", str(config)]
            process = subprocess.Popen(
                [*argv, "broadcaster", "run", "-q"], env=env, stdout=subprocess.DEVNULL, stderr=err
            )
        self.processes.append(process)
        return process

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        self.processes.clear()

    def alive(self) -> None:
        for process in self.processes:
            if process.poll() is not None:
                logs = "".join(p.read_text()[-2000:] for p in sorted(self.dir.glob("*.log")))
                raise RuntimeError(f"a broadcaster exited ({process.returncode}):\n{logs}")


def wait(check: Callable[[], bool], timeout: float, what: str, poll: float = 0.02) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(poll)


def present(store: Store, names: list[str]) -> bool:
    """Every named broadcaster shows its presence in the leases."""
    now = store.leases.now_ms()
    holders = {
        lease.holder.split("/")[0] for lease in store.leases.all().values() if lease.live(now)
    }
    return set(names) <= holders


def until_confirmed(store: Store, anvil: Anvil, n: int, fleet: Fleet) -> int:
    """Poll until ``n`` items are confirmed, nudging a stalled automine; the nudges."""
    nudges, last, last_change = 0, -1, time.monotonic()
    deadline = time.monotonic() + DRAIN_TIMEOUT_S
    while (done := store.items.count(State.CONFIRMED)) < n:
        now = time.monotonic()
        if done != last:
            last, last_change = done, now
        elif now - last_change > STALL_S:
            anvil.rpc("evm_mine", [])
            nudges += 1
            last_change = now
        if now > deadline:
            raise RuntimeError(f"drain not done: {drain.state_counts(store)}")
        fleet.alive()
        time.sleep(0.02)
    return nudges


@contextmanager
def fresh_anvil(senders: list[drain.Sender]) -> Iterator[Anvil]:
    with start_anvil() as anvil:
        drain.fund(anvil.url, [s.address for s in senders])
        yield anvil


def drain_window(store: Store) -> tuple[float, int]:
    """Seconds from the first send to the last confirmation, as the store recorded them
    (the same definition on every side, whatever its start-up or gate took), and the
    items counted."""
    first_send, last_confirm, n = None, None, 0
    for item in store.items.select([State.CONFIRMED]):
        sends = [a.at_ms for _, a in store.sends.attempts(item.id)]
        confirms = [t.at_ms for t in store.items.history(item.id) if t.to_state is State.CONFIRMED]
        if sends:
            first_send = min(sends) if first_send is None else min(first_send, *sends)
        last_confirm = max(confirms) if last_confirm is None else max(last_confirm, *confirms)
        n += 1
    assert first_send is not None and last_confirm is not None
    return (last_confirm - first_send) / 1000, n


def sqlite_side(
    source: Path, kek: HsmKek, senders: list[drain.Sender], n: int, args: Any, work: Path
) -> dict[str, Any]:
    """The baseline: one broadcaster on a copy of the SQLite queue."""
    side = work / "sqlite"
    side.mkdir()
    shutil.copy(source, side / "queue.db")
    fleet = Fleet(args.home, side)
    with fresh_anvil(senders) as anvil, Store.open(side / "queue.db", kek) as store:
        queue = f'path = "{side / "queue.db"}"'
        process = fleet.start(
            "solo", config_text("solo", queue, kek.label, [anvil.url] * args.relays)
        )
        try:
            wait(
                lambda: (
                    store.notes.get("broadcaster.pid") == str(process.pid) or bool(fleet.alive())
                ),
                UP_TIMEOUT_S,
                "the SQLite broadcaster",
            )
            nudges = until_confirmed(store, anvil, n, fleet)
        finally:
            fleet.stop()
        seconds, _ = drain_window(store)
    return {"broadcasters": 1, "store": "sqlite", "seconds": round(seconds, 3),
            "items_per_s": round(n / seconds), "evm_mine_nudges": nudges}  # fmt: skip


def postgres_side(
    source: Path,
    cluster: PgCluster,
    kek: HsmKek,
    senders: list[drain.Sender],
    n: int,
    k: int,
    args: Any,
    work: Path,
) -> dict[str, Any]:
    """k broadcasters on a copy of the queue in PostgreSQL, let go at once by a gate."""
    side = work / f"postgres-{k}"
    side.mkdir()
    url = cluster.create_database(f"fleet_{k}_{os.urandom(3).hex()}")
    copy_to_postgres(source, url)
    fleet = Fleet(args.home, side)
    names = [f"b{i}" for i in range(k)]
    with fresh_anvil(senders) as anvil, Store.open(url, kek) as store:
        gate = LaneKeeper(store, lambda _lane: True, KeeperSettings(lease_ms=60_000), holder="gate")
        gate.tick()  # its presence
        gate.tick()  # every lane with work
        assert gate.held == store.leases.work(), "the gate must hold every lane"
        try:
            for name in names:
                text = config_text(name, f'url = "{url}"', kek.label, [anvil.url] * args.relays)
                fleet.start(name, text)
            wait(lambda: present(store, names) or bool(fleet.alive()), UP_TIMEOUT_S, "the fleet")
            gate.release_all("bench: go")
            nudges = until_confirmed(store, anvil, n, fleet)
            shares = lane_shares(store)
        finally:
            fleet.stop()
        seconds, _ = drain_window(store)
    return {"broadcasters": k, "store": "postgres", "seconds": round(seconds, 3),
            "items_per_s": round(n / seconds), "evm_mine_nudges": nudges,
            "lanes_taken": shares}  # fmt: skip


def lane_shares(store: Store) -> dict[str, int]:
    """How many sender lanes each broadcaster took, from the lease rows."""
    taken: dict[str, int] = {}
    for lane, lease in store.leases.all().items():
        if lane.startswith("evm:"):
            name = lease.holder.split("/")[0]
            taken[name] = taken.get(name, 0) + 1
    return dict(sorted(taken.items()))


def enqueue_figures(ring: KeyRing, kek: HsmKek, cluster: PgCluster, n: int) -> dict[str, Any]:
    """Enqueue one by one on PostgreSQL against a bare INSERT on the same server."""
    ring.generate("secp256k1", "fleet-enqueue")
    key = ring.ecdsa_key("fleet-enqueue", curve="secp256k1")
    intents = benchkit.transfers(n)
    items = enq.Items(evm.sign_transactions(intents, key), intents)
    account = evm.address_from_public_key(key.public_key)
    url = cluster.create_database(f"enqueue_{os.urandom(3).hex()}")
    with Store.open(url, kek) as store, cluster.connect(url.rsplit("/", 1)[1]) as bare:
        bare.execute("CREATE TABLE t (id TEXT PRIMARY KEY, payload BYTEA)")
        warm = items.head(20)
        enq.airlock_round(store, warm.drafts("warm", account), warm)
        bare_round(bare, warm.bare_rows("warm"))
        ours, theirs, our_rates, their_rates = [], [], [], []
        for r in range(3):
            lat, took = enq.airlock_round(store, items.drafts(f"r{r}", account), items)
            ours.append(lat)
            our_rates.append(n / took)
            lat, took = bare_round(bare, items.bare_rows(f"r{r}"))
            theirs.append(lat)
            their_rates.append(n / took)
    airlock, plain = enq.summary(ours, our_rates), enq.summary(theirs, their_rates)
    return {
        "n": n,
        "rounds": 3,
        "airlock_p50_ms": airlock["p50_ms"],
        "airlock_p99_ms": airlock["p99_ms"],
        "airlock_items_per_s": airlock["items_per_s"],
        "bare_p50_ms": plain["p50_ms"],
        "bare_p99_ms": plain["p99_ms"],
        "bare_items_per_s": plain["items_per_s"],
        "ratio_items_per_s": round(airlock["items_per_s"] / plain["items_per_s"], 3),
        "ratio_p99": round(airlock["p99_ms"] / plain["p99_ms"], 2),
    }


def bare_round(conn: Any, rows: list[tuple[str, bytes]]) -> tuple[list[int], float]:
    latencies = []
    clock = time.perf_counter_ns
    start = clock()
    for row in rows:
        t0 = clock()
        conn.execute("INSERT INTO t (id, payload) VALUES (%s, %s)", row)  # autocommit: a commit
        latencies.append(clock() - t0)
    return latencies, (clock() - start) / 1e9


def handover_figures(
    cluster: PgCluster, kek: HsmKek, ring: KeyRing, args: Any, work: Path
) -> dict[str, Any]:
    """Two broadcasters with the default failover, health and lease settings, one sender:
    the holder of its lane has its relay cut, ``args.handovers`` times (so alternating)."""
    side = work / "handover"
    side.mkdir()
    senders = drain.make_senders(ring, "handover", 1)  # one lane: one holder to cut
    url = cluster.create_database(f"handover_{os.urandom(3).hex()}")
    samples: list[int] = []
    with ExitStack() as stack:
        anvil = stack.enter_context(fresh_anvil(senders))
        store = stack.enter_context(Store.open(url, kek))
        proxies = {
            name: stack.enter_context(FaultProxy(anvil.url).start()) for name in ("b0", "b1")
        }
        fleet = Fleet(args.home, side)
        stack.callback(fleet.stop)
        fields = drain.fee_fields(anvil.url)
        lanes = {evm_lane(drain.CHAIN_ID, s.address) for s in senders}
        drain.queue(store, senders, 2, fields)  # work, so that the lane exists
        for name, proxy in proxies.items():
            fleet.start(
                name, config_text(name, f'url = "{url}"', kek.label, [proxy.url], fast=False)
            )
        wait(lambda: present(store, list(proxies)), UP_TIMEOUT_S, "the two broadcasters")
        sent = 2
        for _ in range(args.handovers):
            holder = wait_for_holder(store, lanes)
            other = next(name for name in proxies if name != holder)
            cut_ms = time.time_ns() // 1_000_000
            proxies[holder].set_mode("down")
            drain.queue(store, senders, 2, dict(fields, value=fields["value"] + sent))
            sent += 2
            first = wait_first_send(store, other, cut_ms)
            samples.append(first - cut_ms)
            proxies[holder].set_mode("pass")
            wait(partial(all_confirmed, store, sent), HANDOVER_TIMEOUT_S, "sent")
    ordered = sorted(samples)
    return {
        "samples": len(samples),
        "p50_ms": int(statistics.median(ordered)),
        "max_ms": ordered[-1],
        "each_ms": samples,
        "lease_ms": 3000,
        "target_p50_ms": TARGET_HANDOVER_P50_MS,
        "pass": statistics.median(ordered) < TARGET_HANDOVER_P50_MS,
    }


def all_confirmed(store: Store, n: int) -> bool:
    return store.items.count(State.CONFIRMED) == n


def wait_for_holder(store: Store, lanes: set[str]) -> str:
    """The broadcaster holding every one of ``lanes``."""
    found: list[str] = []

    def one_holder() -> bool:
        now = store.leases.now_ms()
        leases = store.leases.all()
        holders = {leases[lane].holder.split("/")[0] for lane in lanes if lane in leases
                   and leases[lane].live(now)}  # fmt: skip
        found[:] = sorted(holders)
        return len(holders) == 1 and all(
            lane in leases and leases[lane].live(now) for lane in lanes
        )

    wait(one_holder, HANDOVER_TIMEOUT_S, "one holder of the lanes", poll=0.05)
    return found[0]


def wait_first_send(store: Store, name: str, since_ms: int) -> int:
    """The time of the first send through ``name``'s relay after ``since_ms``."""
    first: list[int] = []

    def sent() -> bool:
        times = [
            a.at_ms
            for item in store.items.select([State.SENT, State.CONFIRMED, State.SENDING])
            for _, a in store.sends.attempts(item.id)
            if a.relay.startswith(f"{name}-") and a.at_ms >= since_ms
        ]
        first[:] = sorted(times)[:1]
        return bool(first)

    wait(sent, HANDOVER_TIMEOUT_S, f"a send by {name}", poll=0.05)
    return first[0]


def run(args: Any) -> dict[str, Any]:
    counts = [int(c) for c in str(args.broadcasters).split(",")]
    with tempfile.TemporaryDirectory(prefix="airlock-bench-", dir=args.dir) as tmp:
        work = Path(tmp)
        args.home = work / "home"
        args.home.mkdir()
        with benchkit.open_bench_token(args.home) as ring, start_cluster() as cluster:
            kek = HsmKek(ring)
            senders = drain.make_senders(ring, "fleet-sender", args.senders)
            n = args.senders * args.nonces
            source = work / "source.db"
            started = time.perf_counter()
            with start_anvil() as anvil, Store.open(source, kek) as store:
                drain.queue(store, senders, n, drain.fee_fields(anvil.url))
            queued_s = round(time.perf_counter() - started, 1)
            baseline = sqlite_side(source, kek, senders, n, args, work)
            sides = [postgres_side(source, cluster, kek, senders, n, k, args, work) for k in counts]
            enqueue = enqueue_figures(ring, kek, cluster, args.enqueue)
            handover = handover_figures(cluster, kek, ring, args, work)
    for side in sides:
        side["ratio_vs_sqlite"] = round(side["items_per_s"] / baseline["items_per_s"], 3)
    return {
        "bench": "fleet",
        "n": n,
        "senders": args.senders,
        "relays": args.relays,
        "cpus": os.cpu_count(),
        "queued_and_signed_s": queued_s,
        "sqlite": baseline,
        "postgres": sides,
        "enqueue": enqueue,
        "handover": handover,
    }


def print_summary(s: dict[str, Any]) -> None:
    print(f"\nfleet drain: N={s['n']} transfers from {s['senders']} senders, "
          f"{s['relays']} relays per broadcaster, {s['cpus']} cpus")  # fmt: skip
    base = s["sqlite"]
    print(f"  {'sqlite, 1 broadcaster (baseline)':40} {base['items_per_s']:>7} items/s")
    for side in s["postgres"]:
        print(
            f"  {'postgres, ' + str(side['broadcasters']) + ' broadcaster(s)':40} "
            f"{side['items_per_s']:>7} items/s  x{side['ratio_vs_sqlite']}  "
            f"lanes {side['lanes_taken']}"
        )
    e = s["enqueue"]
    print(
        f"  postgres enqueue p50 {e['airlock_p50_ms']} ms p99 {e['airlock_p99_ms']} ms "
        f"({e['airlock_items_per_s']}/s); bare INSERT p50 {e['bare_p50_ms']} ms p99 "
        f"{e['bare_p99_ms']} ms ({e['bare_items_per_s']}/s)"
    )
    h = s["handover"]
    print(
        f"  hand-over (default settings) p50 {h['p50_ms']} ms, max {h['max_ms']} ms over "
        f"{h['samples']}: target p50 < {h['target_p50_ms']} ms "
        f"{'PASS' if h['pass'] else 'FAIL'}"
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--broadcasters", default="1,2,3", help="counts to run, e.g. 1,2,3")
    parser.add_argument("--enqueue", type=int, default=300, help="items per enqueue round")
    parser.add_argument("--handovers", type=int, default=8, help="hand-over repetitions")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--senders", type=int, default=10)
    parser.add_argument("--nonces", type=int, default=100)
    parser.add_argument("--relays", type=int, default=3)
    parser.add_argument("--dir", type=Path, default=None, help="parent of the temp dir")
    add_arguments(parser)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    summary = run(args)
    summary["total_seconds"] = round(time.perf_counter() - started, 1)
    print_summary(summary)
    print(f"total runtime {summary['total_seconds']} s")
    print(json.dumps(summary, separators=(",", ":")))


if __name__ == "__main__":
    main()
