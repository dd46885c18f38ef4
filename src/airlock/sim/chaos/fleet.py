"""The fleet: several broadcaster processes on one PostgreSQL queue, each on its own paths.

``python -m airlock.sim.chaos run --store postgres --broadcasters 3 --seeds 1-50``. Per
seed, in a fresh database on one private cluster: 5 HSM senders with 40 transfers each
and 50 Bybit orders are queued; each broadcaster (a real ``airlock broadcaster run``
subprocess) has its own two relay proxies to the chain and its own proxy to the venue
simulator, so its links flap on their own. The plan cuts a broadcaster's whole path, one
of its relays, or its venue link, for a while, several times, and SIGKILLs one of them
twice (restarted each time). When the timeline ends every fault is cleared, every
broadcaster gets SIGTERM (each must stop cleanly and let go of its lanes), and ``--once``
settles the rest; then the invariants of :mod:`airlock.sim.chaos.invariants` hold or the
seed fails.

Two figures per seed: **handover**, from the moment a broadcaster's every relay went
down while it held sender lanes with work, to the first send for those lanes by another
broadcaster; **takeover**, the same from a ``kill -9`` (the lease runs out first).
"""

from __future__ import annotations

import contextlib
import random
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from airlock.hsm.keyring import KeyRing
from airlock.queue.leases import evm_lane
from airlock.queue.store import Store
from airlock.sim.anvil import free_port
from airlock.sim.bybit import BybitSim
from airlock.sim.chaos import processes
from airlock.sim.chaos.intents import (
    CHAIN_ID,
    SYMBOL,
    Funded,
    fund_senders,
    queue_orders,
    queue_transfer,
)
from airlock.sim.chaos.invariants import check_invariants
from airlock.sim.chaos.plan import RELAYS, Event
from airlock.sim.chaos.report import Outcome, summarise
from airlock.sim.chaos.rig import Rig, rig
from airlock.sim.chaos.scenario import API_KEY, RELAY, run_one, scaled_settings
from airlock.sim.faultproxy import FaultProxy
from airlock.sim.postgres import PgCluster, start_cluster

BATCH_SIZE = 100
LEASE_MS = 1000  # the lease, scaled to the timeline like every other timer here
UP_TIMEOUT_S = 30.0
SETTLE_TIMEOUT_S = 120.0

_CONFIG = """
[queue]
url = "{url}"
kek_label = "{kek_label}"
{relays}
[broadcaster]
name = "{name}"
lease_ms = {lease_ms}
confirmations = 1
reconcile_seconds = 0.3
rebroadcast_seconds = 1.0

{scaled}
[api]
socket = "{socket}"
"""


@dataclass(frozen=True)
class FleetPlan:
    """One seed's fleet: its size, its work, and its timeline."""

    seed: int
    broadcasters: int
    senders: int
    per_sender: int
    orders: int
    duration: float
    victim: int  # the broadcaster killed twice
    events: tuple[Event, ...]

    @property
    def upfront(self) -> int:
        """Rounds of transfers queued before the start (the rest arrive during it)."""
        return max(1, self.per_sender * 2 // 5)

    @property
    def faults(self) -> Counter[str]:
        return Counter(
            f"{e.params['target']} down" if e.kind == "flap" else e.kind
            for e in self.events
            if e.kind == "kill9" or e.params.get("down")
        )


def make_fleet_plan(
    seed: int, broadcasters: int = 3, transfers: int = 200, orders: int = 50, senders: int = 5
) -> FleetPlan:
    """The seed's plan: per broadcaster 1-3 cuts (its whole path, one relay, or its venue
    link) of 0.5-2.5 s, and two ``kill -9`` of one broadcaster, over 8 s."""
    rng = random.Random(seed * 104_729 + broadcasters)
    duration = 8.0
    events: list[Event] = []
    for b in range(broadcasters):
        for _ in range(rng.randint(1, 3)):
            at = round(rng.uniform(0.3, duration - 2.5), 2)
            length = round(rng.uniform(0.5, 2.5), 2)
            target = rng.choice(("path", "path", "relay", "venue"))
            params = {"broadcaster": b, "target": target, "relay": rng.choice(RELAYS)}
            events.append(Event(at, "flap", {**params, "down": True}))
            events.append(Event(round(at + length, 2), "flap", {**params, "down": False}))
    victim = rng.randrange(broadcasters)
    for at in sorted(round(rng.uniform(0.5, duration - 1.0), 2) for _ in range(2)):
        events.append(Event(at, "kill9", {"broadcaster": victim}))
    events.sort(key=lambda e: (e.at, e.kind))
    per_sender = max(1, transfers // senders)
    return FleetPlan(
        seed, broadcasters, senders, per_sender, orders, duration, victim, tuple(events)
    )


@dataclass
class Member:
    """One broadcaster of the fleet: its name, configuration, links and process."""

    name: str
    config: Path
    proxies: dict[str, FaultProxy]
    process: subprocess.Popen[bytes] | None = None
    down: Counter[str] = field(default_factory=Counter)  # proxy -> cuts in force

    def path_down(self) -> bool:
        return all(self.down[relay] > 0 for relay in RELAYS)


class FleetScenario:
    """Runs one :class:`FleetPlan`; :meth:`run` returns what it did and found. Carries
    what :func:`~airlock.sim.chaos.invariants.check_invariants` reads."""

    def __init__(self, rig: Rig, cluster: PgCluster, plan: FleetPlan, workdir: Path) -> None:
        self.rig = rig
        self.cluster = cluster
        self.plan = plan
        self.dir = workdir
        self.out = Outcome(plan.seed)
        self.rng = random.Random(plan.seed * 7919 + 3)
        self.log_path = workdir / "broadcasters.log"
        self.members: list[Member] = []
        self.senders: list[str] = []
        self.evm_ids: list[str] = []
        self.order_ids: list[str] = []
        self.started_at = 0.0
        self._cuts: list[tuple[int, str, set[str]]] = []  # (ms, broadcaster, lanes held)
        self._kills: list[tuple[int, str, set[str]]] = []
        self._funded: Funded | None = None

    def run(self) -> Outcome:
        began = time.monotonic()
        self.out.faults.update(self.plan.faults)
        with contextlib.ExitStack() as stack:
            store, sim = self._make_world(stack)
            for member in self.members:
                self._start(member)
            try:
                for member in self.members:
                    self._wait_up(store, member)
                self.started_at = time.time()
                stop = threading.Event()
                trickle = threading.Thread(target=self._trickle, args=(store, stop), daemon=True)
                trickle.start()
                try:
                    self._timeline(store)
                finally:
                    stop.set()
                    trickle.join(timeout=60)
                for n in range(len(self.evm_ids) // self.plan.senders, self.plan.per_sender):
                    self._queue_round(store, n)  # what the trickle had no time for
            finally:
                self._clear(store, sim)
            summary = self._settle()
            check_invariants(self, store, sim, summary)
            self._measure(store)
        self.out.wall_s = round(time.monotonic() - began, 3)
        return self.out

    # -- setup ---------------------------------------------------------------------

    def _make_world(self, stack: contextlib.ExitStack) -> tuple[Store, BybitSim]:
        plan, anvil = self.plan, self.rig.anvil
        url = self.cluster.create_database(f"fleet_{plan.seed}_{random.getrandbits(32):08x}")
        store = stack.enter_context(Store.open(url, self.rig.kek))
        self._funded = fund_senders(self.rig, plan.seed, plan.senders)
        self.senders = self._funded.senders
        for n in range(plan.upfront):
            self._queue_round(store, n)
        self.order_ids = queue_orders(store, self.rig, plan.seed, plan.orders)
        self.out.evm_items = plan.senders * plan.per_sender
        self.out.bybit_items = len(self.order_ids)
        sim = BybitSim(API_KEY, secret=self.rig.secret, port=free_port())
        sim.set_mark_price(SYMBOL, "61000")
        stack.enter_context(sim.start())
        for b in range(plan.broadcasters):
            name = f"b{b}"
            proxies = {
                relay: stack.enter_context(FaultProxy(anvil.url, seed=plan.seed + n).start())
                for n, relay in enumerate(RELAYS)
            }
            proxies["venue"] = stack.enter_context(FaultProxy(sim.url, seed=plan.seed).start())
            config = self.dir / f"{name}.toml"
            config.write_text(self._config(name, url, proxies))
            self.members.append(Member(name, config, proxies))
        return store, sim

    def _queue_round(self, store: Store, n: int) -> None:
        assert self._funded is not None
        for sender in range(self.plan.senders):
            self.evm_ids.append(queue_transfer(store, self._funded, sender, n))

    def _trickle(self, store: Store, stop: threading.Event) -> None:
        """The rest of the transfers, a round at a time over most of the timeline: work
        keeps arriving while links flap and broadcasters die, as it does from bots."""
        rounds = range(self.plan.upfront, self.plan.per_sender)
        gap_s = 0.8 * self.plan.duration / max(len(rounds), 1)
        for n in rounds:
            self._queue_round(store, n)
            if stop.wait(gap_s):
                return

    def _config(self, name: str, url: str, proxies: dict[str, FaultProxy]) -> str:
        relays = "".join(
            RELAY.format(
                name=f"{name}-{relay}",
                url=proxies[relay].url,
                chain_id=CHAIN_ID,
                batch_size=BATCH_SIZE,
            )
            for relay in RELAYS
        )
        scaled = scaled_settings(proxies["venue"].url, self.rig)
        return _CONFIG.format(
            url=url,
            kek_label=self.rig.kek.label,
            relays=relays,
            name=name,
            socket=self.dir / f"{name}.sock",
            lease_ms=LEASE_MS,
            scaled=scaled,
        )

    # -- the processes -------------------------------------------------------------

    def _start(self, member: Member) -> None:
        argv = [sys.executable, "-m", "airlock.cli", "--config", str(member.config)]
        argv += ["broadcaster", "run"]
        with self.log_path.open("ab") as err:
            member.process = subprocess.Popen(
                argv, env=self.rig.env(), stdout=subprocess.DEVNULL, stderr=err
            )

    def _wait_up(self, store: Store, member: Member) -> None:
        """Until the member shows its presence in the leases (its holder name carries
        its pid): it is up and sharing."""
        assert member.process is not None
        prefix = f"{member.name}/{member.process.pid}/"
        deadline = time.monotonic() + UP_TIMEOUT_S
        while not any(lease.holder.startswith(prefix) for lease in store.leases.all().values()):
            if member.process.poll() is not None or time.monotonic() > deadline:
                tail = self.log_path.read_text(errors="replace").splitlines()[-6:]
                raise RuntimeError(
                    f"{member.name} did not start ({member.process.poll()}){self._why()}; "
                    "the log ends: " + " | ".join(tail)
                )
            time.sleep(0.02)

    def _why(self) -> str:
        """The last ``error:`` line in the members' (shared) log: what the CLI says when
        a service fails, so a member that exited names its cause."""
        lines = self.log_path.read_text(errors="replace").splitlines()
        errors = [line for line in lines if line.startswith("error:")]
        return f": the log's last error: {errors[-1]}" if errors else ""

    def _stop(self, store: Store, member: Member) -> None:
        """SIGTERM; it must stop cleanly (releasing its lanes) in time."""
        wait_up = partial(self._wait_up, store, member)
        processes.stop(member.process, member.name, self.out, wait_up)

    def _settle(self) -> dict[str, Any] | None:
        """``--once`` with the first member's configuration."""
        config = self.members[0].config
        return processes.settle(config, self.rig.env(), self.log_path, self.out, SETTLE_TIMEOUT_S)

    # -- the timeline --------------------------------------------------------------

    def _timeline(self, store: Store) -> None:
        for event in self.plan.events:
            delay = event.at - (time.time() - self.started_at)
            if delay > 0:
                time.sleep(delay)
            member = self.members[event.params["broadcaster"]]
            if event.kind == "kill9":
                self._kill9(store, member)
            else:
                self._flap(store, member, event.params)
        rest = self.plan.duration - (time.time() - self.started_at)
        if rest > 0:
            time.sleep(rest)

    def _flap(self, store: Store, member: Member, params: dict[str, Any]) -> None:
        """A cut starts or ends; a proxy is down while any cut of it is in force. The
        moment a member's last relay goes down is a handover to measure."""
        names = {"path": [*RELAYS, "venue"], "relay": [params["relay"]], "venue": ["venue"]}
        was_down = member.path_down()
        for name in names[params["target"]]:
            member.down[name] += 1 if params["down"] else -1
            mode = "down" if member.down[name] > 0 else "pass"
            if member.proxies[name].mode != mode:
                member.proxies[name].set_mode(mode)
        if member.path_down() and not was_down:
            self._cuts.append(_moment(store, member.name))

    def _kill9(self, store: Store, member: Member) -> None:
        process = member.process
        if process is None or process.poll() is not None:
            code = process.returncode if process is not None else None
            self.out.fail(f"{member.name} had exited ({code}) before its kill -9{self._why()}")
        else:
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=10)
            self.out.kills += 1
            self._kills.append(_moment(store, member.name))
        time.sleep(self.rng.uniform(0.05, 0.4))
        self._start(member)

    def _clear(self, store: Store, sim: BybitSim) -> None:
        """Every fault cleared (each proxy's counts kept), then every member stopped."""
        for member in self.members:
            for name, proxy in member.proxies.items():
                proxy.set_mode("pass")
                member.down[name] = 0
                self.out.faulted_requests.update(
                    {
                        f"{member.name}-{name}:{m}": n
                        for m, n in proxy.stats().items()
                        if m != "pass"
                    }
                )
        sim.clear_faults()
        for member in self.members:
            self._stop(store, member)

    # -- figures -------------------------------------------------------------------

    def _measure(self, store: Store) -> None:
        """Handover and takeover times, from the attempts the store recorded: after a
        cut, the first send for the cut member's lanes through another member's relays;
        after a kill, the first send for the dead process's lanes by anyone (the dead
        cannot send; its restart is a new holder)."""
        sends = self._sends_by_lane(store)
        moments = [(m, self.out.handovers_ms, True) for m in self._cuts]
        moments += [(m, self.out.takeovers_ms, False) for m in self._kills]
        for (at_ms, name, lanes), into, others_only in moments:
            later = [
                ms
                for lane in lanes
                for ms, relay in sends.get(lane, [])
                if ms >= at_ms and not (others_only and relay.startswith(f"{name}-"))
            ]
            if later:
                into.append(min(later) - at_ms)

    def _sends_by_lane(self, store: Store) -> dict[str, list[tuple[int, str]]]:
        found: dict[str, list[tuple[int, str]]] = {}
        for item_id in self.evm_ids:
            item = store.items.get(item_id)
            lane = evm_lane(item.chain_id, item.account)
            for _, attempt in store.sends.attempts(item_id):
                found.setdefault(lane, []).append((attempt.at_ms, attempt.relay))
        return found


def _moment(store: Store, name: str) -> tuple[int, str, set[str]]:
    """Now (ms), the member, and the sender lanes with work it holds now."""
    now_ms = time.time_ns() // 1_000_000
    db_now = store.leases.now_ms()
    work = store.leases.work()
    held = {
        lane
        for lane, lease in store.leases.all().items()
        if lease.holder.startswith(f"{name}/")
        and lease.live(db_now)
        and lane in work
        and lane.startswith("evm:")
    }
    return now_ms, name, held


def run_fleet_seeds(
    seeds: Sequence[int],
    broadcasters: int = 3,
    say: Callable[[str], None] = print,
    keep: Path | None = None,
    *,
    token: tuple[Path, KeyRing] | None = None,
    cluster: PgCluster | None = None,
    size: dict[str, int] | None = None,
) -> dict[str, Any]:
    """Each seed's fleet on one rig and one private PostgreSQL cluster (a database per
    seed). ``token`` and ``cluster``: a test session's, instead of new ones; ``size``:
    ``transfers``, ``orders``, ``senders`` instead of 200, 50, 5."""
    began = time.monotonic()
    outcomes: list[Outcome] = []
    home, ring = token or (None, None)
    with contextlib.ExitStack() as stack:
        shared = stack.enter_context(rig(home, ring))
        if cluster is None:
            cluster = stack.enter_context(start_cluster())
        for seed in seeds:
            plan = make_fleet_plan(seed, broadcasters, **(size or {}))
            run = partial(_run_fleet, shared, cluster, plan)
            outcomes.append(run_one(seed, set(plan.faults), run, keep, say))
    summary = summarise(seeds, outcomes, time.monotonic() - began)
    summary["fleet"] = fleet_figures(broadcasters, outcomes)
    return summary


def _run_fleet(shared: Rig, cluster: PgCluster, plan: FleetPlan, workdir: Path) -> Outcome:
    return FleetScenario(shared, cluster, plan, workdir).run()


def fleet_figures(broadcasters: int, outcomes: list[Outcome]) -> dict[str, Any]:
    """The hand-over times of a run: p50 and max, in ms (None without samples)."""

    def spread(samples: list[int]) -> dict[str, Any]:
        if not samples:
            return {"samples": 0, "p50_ms": None, "max_ms": None}
        return {
            "samples": len(samples),
            "p50_ms": int(statistics.median(samples)),
            "max_ms": max(samples),
        }

    return {
        "broadcasters": broadcasters,
        "store": "postgres",
        "lease_ms": LEASE_MS,
        "handover": spread([ms for o in outcomes for ms in o.handovers_ms]),
        "takeover": spread([ms for o in outcomes for ms in o.takeovers_ms]),
    }
