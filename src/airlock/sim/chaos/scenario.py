"""One scenario per seed: queue the plan's intents, start the service, play the timeline.

Why the broadcaster is a real subprocess (``airlock broadcaster run``, or ``python -m
airlock.sim.chaos serve`` while the plan's HSM outage is still ahead): so ``kill -9`` is
real and a restart recovers from exactly what a crash leaves. When the timeline ends every
fault is cleared, the service is stopped with SIGTERM (it must stop cleanly) and
``airlock broadcaster run --once --json`` settles the queue, bounded; then
:func:`~airlock.sim.chaos.invariants.check_invariants` reads the chain, the simulator and
the store. :func:`run_seeds` runs many seeds on one :class:`~airlock.sim.chaos.rig.Rig`;
a seed that fails, or whose runner breaks, is reported and the run goes on.
"""

from __future__ import annotations

import contextlib
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from airlock.errors import AirlockError
from airlock.hsm.keyring import KeyRing
from airlock.queue.states import State
from airlock.queue.store import Store
from airlock.sim.anvil import free_port
from airlock.sim.bybit import CREATE, BybitSim
from airlock.sim.chaos import processes
from airlock.sim.chaos.accounts import STALE_LINE, count_stream_events, wait_account_match
from airlock.sim.chaos.intents import CHAIN_ID, SYMBOL, queue_orders, queue_transfers
from airlock.sim.chaos.invariants import check_invariants
from airlock.sim.chaos.netns import netns_available
from airlock.sim.chaos.outage import HSM_REFUSED
from airlock.sim.chaos.plan import (
    RELAYS,
    STREAM_PING_S,
    STREAM_STALE_S,
    Event,
    Plan,
    make_plan,
)
from airlock.sim.chaos.report import Outcome, summarise
from airlock.sim.chaos.rig import Rig, rig
from airlock.sim.faultproxy import FaultProxy

API_KEY = "airlock-chaos"
SETTLE_TIMEOUT_S = 60.0  # the --once settle: bounded, a hang is a finding
UP_TIMEOUT_S = 30.0
LIVE_ACCOUNT_S = 3.0  # the running service's store may take this long to match the venue
# The timelines are seconds long: the rebroadcast timer (120 s by default) is scaled down
# with them. It is what brings back a transaction a reorg dropped before airlock saw it
# mined (airlock cannot tell that from a slow pool: the chain only says "no receipt").
REBROADCAST_S = 1.0
PLUG = ("down", "pass")  # with --netns, rpc-a's down/pass are its veth interface
# Event kinds applied before the start when at 0 (a stream fault armed then waits for the
# first message, reply or execution it applies to).
PRESTART = ("mode", "cancel", "bybit_fault", "stream_lose", "stream_dup", "trade_lose")

_CONFIG = """
[queue]
path = "{db}"
kek_label = "{kek_label}"
{relays}
[broadcaster]
confirmations = 1
reconcile_seconds = 0.2
rebroadcast_seconds = {rebroadcast}

{scaled}"""
SCALED = """
[broadcaster.health]
probe_seconds = 0.2
probe_down_seconds = 0.05

[bybit]
base_url = "{venue}"
api_key = "{api_key}"
secret_label = "{secret_label}"
intent_key_label = "{intent_label}"
recv_window_ms = 2000
timeout_seconds = 1.0
probe_seconds = 0.1
reconcile_seconds = 0.3
retry_base_seconds = 0.02
retry_cap_seconds = 0.2
send_over = "{send_over}"

[bybit.stream]
ping_seconds = {ping_s}
stale_seconds = {stale_s}
auth_timeout_seconds = 2.0
backoff = "full-jitter"
backoff_base_seconds = 0.05
backoff_cap_seconds = 0.5

[service]
metrics_port = 0
"""
"""The links', the venue's and its streams' timers, scaled to a seconds-long timeline
(the fleet's too). The private stream is on (the default), pinged every STREAM_PING_S and
replaced after STREAM_STALE_S of silence."""
RELAY = """
[[relays]]
name = "{name}"
kind = "evm-rpc"
url = "{url}"
chain_id = {chain_id}
batch_size = {batch_size}
timeout_seconds = 1.0
connect_timeout_seconds = 0.5
"""


def scaled_settings(venue_url: str, rig: Rig, send_over: str = "rest") -> str:
    """:data:`SCALED` for one venue link (the fleet's members' too)."""
    return SCALED.format(
        venue=venue_url,
        api_key=API_KEY,
        secret_label=rig.secret_label,
        intent_label=rig.intent.label,
        send_over=send_over,
        ping_s=STREAM_PING_S,
        stale_s=STREAM_STALE_S,
    )


class VenueClock:
    """The venue's clock: ours plus a skew the timeline can move."""

    def __init__(self, skew_ms: int) -> None:
        self.skew_ms = skew_ms

    def __call__(self) -> int:
        return time.time_ns() // 1_000_000 + self.skew_ms


@dataclass
class World:
    """What one scenario's timeline acts on, made fresh for it: the queue, the venue
    simulator and its clock, the fault proxies (two relays and the venue link), and the
    configuration the service is started with."""

    store: Store
    sim: BybitSim
    clock: VenueClock
    proxies: dict[str, FaultProxy]
    config: Path


class Scenario:
    """Runs one :class:`~airlock.sim.chaos.plan.Plan` against a :class:`Rig` in its own
    directory; :meth:`run` returns what it did and found."""

    def __init__(self, rig: Rig, plan: Plan, workdir: Path) -> None:
        self.rig = rig
        self.plan = plan
        self.dir = workdir
        self.out = Outcome(plan.seed)
        self.rng = random.Random(plan.seed * 7919 + 1)  # actions' own draws
        self.process: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0  # time.time() of the timeline's 0
        self.log_path = workdir / "broadcaster.log"
        self.funded_block = 0
        self.evm_ids: list[str] = []
        self.order_ids: list[str] = []
        self.senders: list[str] = []
        self.mode: dict[str, str] = {}
        self._store: Store | None = None
        self._lost_before = 0  # messages the venue had lost when the last loss was armed

    def run(self) -> Outcome:
        """Queue, start, play the timeline, clear every fault, stop, settle, check."""
        began = time.monotonic()
        self.out.faults.update(self.plan.all_faults)
        with contextlib.ExitStack() as stack:
            world = self._make_world(stack)
            self._prestart(world)
            self._start(world.config, first=True)
            try:
                self._wait_up(world.store)
                self.started_at = time.time()
                self._timeline(world)
            finally:
                self._clear(world)
            self._count_venue_faults(world.sim)
            if self.plan.hsm_outage is not None:
                self.out.hsm_outages = 1
            summary = self._settle(world.config)
            self.out.hsm_refusals = self.log_path.read_text(errors="replace").count(HSM_REFUSED)
            check_invariants(self, world.store, world.sim, summary)
        self.out.wall_s = round(time.monotonic() - began, 3)
        return self.out

    # -- setup ---------------------------------------------------------------------

    def _make_world(self, stack: contextlib.ExitStack) -> World:
        """The queue with the plan's intents in it, the simulator, the fault proxies (rpc-a
        behind the veth link with --netns), and the service's configuration."""
        plan, anvil = self.plan, self.rig.anvil
        db = self.dir / "queue.db"
        config = self.dir / "airlock.toml"
        clock = VenueClock(plan.skew_ms)
        venue_port = free_port()
        store = stack.enter_context(Store.open(db, self.rig.kek))
        self._store = store
        queued = queue_transfers(store, self.rig, plan.seed, plan.senders, plan.per_sender)
        self.senders, self.evm_ids = queued.senders, queued.evm_ids
        self.funded_block = queued.funded_block
        self.order_ids = queue_orders(store, self.rig, plan.seed, plan.orders)
        self.out.evm_items, self.out.bybit_items = len(self.evm_ids), len(self.order_ids)
        sim = BybitSim(API_KEY, secret=self.rig.secret, port=venue_port, clock_ms=clock)
        sim.set_mark_price(SYMBOL, "61000")
        stack.enter_context(sim.start())
        proxies = {
            name: stack.enter_context(FaultProxy(anvil.url, seed=plan.seed + n).start())
            for n, name in enumerate(RELAYS)
        }
        proxies["venue"] = stack.enter_context(FaultProxy(sim.url, seed=plan.seed).start())
        urls = {k: p.url for k, p in proxies.items()}
        if self.rig.netns is not None:  # rpc-a across the veth pair, then its proxy
            self.rig.netns.target_port = int(urls["rpc-a"].rpartition(":")[2])
            self.rig.netns.set_up(True)
            urls["rpc-a"] = self.rig.netns.url
        self._write_config(config, db, urls)
        return World(store, sim, clock, proxies, config)

    def _write_config(self, path: Path, db: Path, urls: dict[str, str]) -> None:
        """airlock.toml with every timer scaled to a two-second timeline."""
        relays = "".join(
            RELAY.format(
                name=name, url=urls[name], chain_id=CHAIN_ID, batch_size=self.plan.batch_size
            )
            for name in RELAYS
        )
        scaled = scaled_settings(urls["venue"], self.rig, self.plan.send_over)
        text = _CONFIG.format(
            db=db,
            kek_label=self.rig.kek.label,
            relays=relays,
            rebroadcast=REBROADCAST_S,
            scaled=scaled,
        )
        path.write_text(text)

    def _prestart(self, world: World) -> None:
        """What happens at 0 happens before the process starts: the outage it starts in."""
        for event in self.plan.timeline:
            if event.at == 0.0 and event.kind == "mode":
                self._set_mode(world.proxies, event.params)
            elif event.at == 0.0 and event.kind in PRESTART:
                self._apply(event, world)

    # -- the broadcaster process -----------------------------------------------------

    def _start(self, config: Path, first: bool = False) -> None:
        """Start the service: ``airlock broadcaster run``, or ``serve`` while the HSM
        outage window is still ahead. The first start's window counts from its own
        service start (the timeline's 0 is when the service is up); a restart's from the
        timeline's 0."""
        now = 0.0 if first else time.time() - self.started_at
        outage = self.plan.hsm_outage
        if outage is not None and now < outage[0] + outage[1]:
            argv = [sys.executable, "-m", "airlock.sim.chaos", "serve", "--config", str(config)]
            argv += ["--hsm-outage", f"{outage[0]},{outage[1]}"]
            if not first:
                argv += ["--since", repr(self.started_at)]
        else:
            argv = [sys.executable, "-m", "airlock.cli", "--config", str(config)]
            argv += ["broadcaster", "run", "-q"]
        with self.log_path.open("ab") as err:
            self.process = subprocess.Popen(
                argv, env=self.rig.env(), stdout=subprocess.DEVNULL, stderr=err
            )

    def _wait_up(self, store: Store | None) -> None:
        """Until the service wrote its pid: the timeline starts with a running service."""
        assert self.process is not None and store is not None
        deadline = time.monotonic() + UP_TIMEOUT_S
        while store.notes.get("broadcaster.pid") != str(self.process.pid):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the broadcaster did not start ({self.process.poll()})")
            time.sleep(0.02)

    def _kill9(self) -> None:
        assert self.process is not None
        if self.process.poll() is not None:
            self.out.fail(f"broadcaster had exited (status {self.process.returncode}) before kill")
        else:
            self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)
        self.out.kills += 1

    def _stop(self) -> None:
        assert self._store is not None
        store = self._store
        processes.stop(self.process, "broadcaster", self.out, lambda: self._wait_up(store))

    def _settle(self, config: Path) -> dict[str, Any] | None:
        return processes.settle(config, self.rig.env(), self.log_path, self.out, SETTLE_TIMEOUT_S)

    # -- the timeline --------------------------------------------------------------

    def _timeline(self, world: World) -> None:
        """Each event at its time from the start; an event that cannot happen yet comes
        back a little later, within the timeline; then the rest of the timeline."""
        pending = [e for e in self.plan.timeline if e.at > 0.0 or e.kind not in PRESTART]
        while pending:
            event = pending.pop(0)
            delay = event.at - (time.time() - self.started_at)
            if delay > 0:
                time.sleep(delay)
            retry = self._apply(event, world)
            if retry is not None and retry.at < self.plan.duration:
                pending.append(retry)
                pending.sort(key=lambda e: e.at)
        rest = self.plan.duration - (time.time() - self.started_at)
        if rest > 0:
            time.sleep(rest)

    def _apply(self, event: Event, world: World) -> Event | None:
        """Do one event; an event that cannot happen yet returns itself, a little later."""
        params = event.params
        if event.kind == "mode":
            self._set_mode(world.proxies, params)
        elif event.kind == "kill9":
            self._kill9()
            time.sleep(self.rng.uniform(0.02, 0.3))
            self._start(world.config)
        elif event.kind == "bybit_fault":
            extra = {k: v for k, v in params.items() if k in ("code", "ms")}
            path = CREATE if params["create_only"] else None
            world.sim.inject(params["fault"], count=params["count"], path=path, **extra)
        elif event.kind == "skew":
            world.clock.skew_ms += params["delta_ms"]
        elif event.kind == "mark":
            world.sim.set_mark_price(SYMBOL, params["price"])
        elif event.kind == "cancel":
            self._operator_cancel(world.store, params["pick"])
        elif event.kind == "orders":  # arriving while the service runs (send_over = "ws")
            ids = queue_orders(world.store, self.rig, self.plan.seed, params["count"],
                               first=len(self.order_ids))  # fmt: skip
            self.order_ids += ids
            self.out.bybit_items += len(ids)
        elif event.kind == "reorg":
            return self._reorg(event, world.store)
        else:
            return self._stream_fault(event, world.sim)
        return None

    def _stream_fault(self, event: Event, sim: BybitSim) -> Event | None:
        """A Bybit stream fault, in the simulator (thread-safe). The drop that ends a gap
        waits (within the timeline) until the loss armed before it met a message."""
        params = event.params
        if event.kind == "stream_drop":
            if params.get("after_loss") and _lost(sim) == self._lost_before:
                return Event(event.at + 0.1, event.kind, params)
            sim.drop_streams()
        elif event.kind == "stream_silence":
            sim.silence_streams(params["on"])
        elif event.kind == "stream_lose":
            self._lost_before = _lost(sim)
            sim.lose_stream_messages(params["count"])
        elif event.kind == "stream_dup":
            sim.duplicate_executions(params["count"])
        elif event.kind == "trade_lose":
            sim.lose_trade_replies(params["count"])
        else:
            raise ValueError(f"unknown event kind {event.kind!r}")
        return None

    def _set_mode(self, proxies: dict[str, FaultProxy], params: dict[str, Any]) -> None:
        """A fault proxy's mode; with --netns, rpc-a's down/up is the cable instead."""
        netns = self.rig.netns
        if netns is not None and params["target"] == "rpc-a" and params["mode"] in PLUG:
            netns.set_up(params["mode"] == "pass")  # the cable, not the relay
            self.out.veth_flaps += params["mode"] == "down"
            if params["mode"] == "down":
                return
        settings = {k: v for k, v in params.items() if k not in ("target", "mode")}
        proxies[params["target"]].set_mode(params["mode"], **settings)
        self.mode[params["target"]] = params["mode"]

    def _operator_cancel(self, store: Store, pick: float) -> None:
        item_id = self.evm_ids[int(pick * len(self.evm_ids))]
        try:
            result = store.items.cancel(item_id, "chaos: cancelled by the operator")
        except AirlockError as exc:  # no longer queued: it may have left already
            self.out.findings.append(f"operator cancel refused: {type(exc).__name__}")
            return
        self.out.findings.append(f"operator cancel: {result.action}")

    def _reorg(self, event: Event, store: Store) -> Event | None:
        """Reorg ``depth`` blocks once an item is confirmed, never below the funding block
        (anvil would forget the balances it set, which no real chain does)."""
        anvil = self.rig.anvil
        head = int(anvil.rpc("eth_blockNumber"), 16)
        depth = min(int(event.params["depth"]), head - self.funded_block)
        confirmed = any(store.items.get(i).state is State.CONFIRMED for i in self.evm_ids)
        if not confirmed or depth < 1:
            return Event(event.at + 0.1, event.kind, event.params)
        anvil.rpc("anvil_reorg", [depth, []])
        self.out.reorgs += 1
        self.out.reorged_blocks += depth
        return None

    # -- the end of the timeline ---------------------------------------------------

    def _clear(self, world: World) -> None:
        """Every fault cleared (each proxy's counts kept), faults the timeline armed but
        no request consumed disarmed, and the service stopped with SIGTERM."""
        if self.rig.netns is not None:
            self.rig.netns.set_up(True)
        for name, proxy in world.proxies.items():
            proxy.set_mode("pass")
            self.mode[name] = "pass"
            stats = proxy.stats()
            self.out.faulted_requests.update(
                {f"{name}:{m}": n for m, n in stats.items() if m != "pass"}
            )
        world.sim.clear_faults()
        world.sim.silence_streams(False)
        if self.process is not None:
            if self.process.poll() is None:
                self._account_live(world)
            else:  # the seed fails (in _stop): say why, as the CLI said it
                lines = self.log_path.read_text(errors="replace").splitlines()
                self.out.findings += [line for line in lines if line.startswith("error:")][-1:]
            self._stop()  # fails the seed if the service exited by itself meanwhile

    def _account_live(self, world: World) -> None:
        """Whether the running service's own store (its stream, and the REST passes after
        each reconnect) agrees with the venue's positions and wallet, within a bound: a
        figure, not an invariant (the one after the settle is)."""
        diff = wait_account_match(world.store, world.sim, LIVE_ACCOUNT_S)
        self.out.account_live = not diff
        if diff:
            self.out.findings.append(
                f"account not current {LIVE_ACCOUNT_S:g} s after the timeline: {'; '.join(diff)}"
            )

    def _count_venue_faults(self, sim: BybitSim) -> None:
        """What the venue's faults and clock did, as the simulator answered them."""
        for request in sim.requests():
            if request.lost:
                self.out.faulted_requests["venue:lost after accept"] += 1
            elif request.ret_code not in (None, 0):
                self.out.faulted_requests[f"venue:retCode {request.ret_code}"] += 1
            elif request.status != 200:
                self.out.faulted_requests[f"venue:HTTP {request.status}"] += 1
        count_stream_events(sim, self.out)
        log = self.log_path.read_text(errors="replace")
        self.out.stream["silent streams replaced"] += log.count(STALE_LINE)


def _lost(sim: BybitSim) -> int:
    """Pushed messages the venue's loss fault has swallowed so far."""
    return sum(1 for e in sim.stream_log() if e.kind == "lost" and e.detail == "fault")


# -- many scenarios --------------------------------------------------------------------


def run_seeds(
    seeds: Sequence[int],
    say: Callable[[str], None] = print,
    keep: Path | None = None,
    token: tuple[Path, KeyRing] | None = None,
    netns: str = "off",
) -> dict[str, Any]:
    """Run each seed's scenario on one rig; a failure is reported and the run goes on.
    ``token``: an already open (home, KeyRing) to use instead of a new embedded token.
    ``netns``: ``on`` (rpc-a's flaps take a veth interface down), ``auto`` (when the
    machine allows it), ``off`` (the fault proxy makes every flap)."""
    began = time.monotonic()
    outcomes: list[Outcome] = []
    use_netns, why = netns_available() if netns != "off" else (False, "not asked for")
    if netns == "on" and not use_netns:
        raise RuntimeError(f"--netns on: {why}")
    home, ring = token or (None, None)
    with rig(home, ring, netns=use_netns) as shared:
        for seed in seeds:
            plan = make_plan(seed)
            run = lambda workdir, plan=plan: Scenario(shared, plan, workdir).run()  # noqa: E731
            outcomes.append(run_one(seed, set(plan.all_faults), run, keep, say))
    summary = summarise(seeds, outcomes, time.monotonic() - began)
    summary["netns"] = {"used": use_netns, "why": why}
    return summary


def run_one(
    seed: int,
    faults: set[str],
    run: Callable[[Path], Outcome],
    keep: Path | None,
    say: Callable[[str], None],
) -> Outcome:
    """One seed run in its own directory, its verdict line and its failures said as they
    happen; a runner that breaks is a failed seed, and the run goes on."""
    with _workdir(seed, keep) as workdir:
        try:
            outcome = run(workdir)
        except Exception as exc:  # the runner itself broke: a failed seed, go on
            outcome = Outcome(seed)
            outcome.fail(f"scenario crashed: {type(exc).__name__}: {exc}")
    verdict = "ok" if outcome.ok else "FAILED"
    say(
        f"seed {seed:>4} {verdict:<6} {outcome.wall_s:5.1f} s  "
        f"faults {','.join(sorted(faults))}  states {dict(outcome.states)}"
    )
    for failure in outcome.failures:
        say(f"  seed {seed}: {failure}")
    return outcome


@contextlib.contextmanager
def _workdir(seed: int, keep: Path | None) -> Iterator[Path]:
    """A scenario's directory: removed afterwards, unless ``keep`` names where to keep it."""
    if keep is not None:
        yield Path(tempfile.mkdtemp(prefix=f"seed-{seed}-", dir=keep))
        return
    with tempfile.TemporaryDirectory(prefix=f"seed-{seed}-") as tmp:
        yield Path(tmp)
