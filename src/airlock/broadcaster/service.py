"""The broadcaster: drain the queue through every healthy relay, then watch the chain.

One asyncio task does the passes in turn (expire, dispatch, reconcile, bump); the link
monitor runs beside it and wakes it the instant a relay comes back. Every pass reads its
work from the store and writes its verdicts back before it acts on them again, so a
crash (even ``kill -9``) at any moment loses nothing: on restart, items still marked
``sending`` are sent again — the same bytes, so at most a duplicate a node recognises,
never a second nonce.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, NamedTuple

from airlock.audit import entries as audit_entries
from airlock.broadcaster import decide, routes
from airlock.broadcaster.decide import ChainVerdict, SendVerdict
from airlock.broadcaster.linklog import LinkLog
from airlock.broadcaster.results import AlertHook, PassResult, Resigner, alert_key
from airlock.clock import wall_clock_ms
from airlock.config import BroadcasterConfig
from airlock.queue.errors import PayloadTampered, StaleItems, StoreUnavailable
from airlock.queue.items import Item
from airlock.queue.leases import evm_lane
from airlock.queue.sends import Attempt, Lane, Mined, StoredVariant
from airlock.queue.states import State
from airlock.queue.store import ChainRecord, SendRecord, Store
from airlock.relays.health import Change, LinkState, Monitor
from airlock.relays.jsonrpc import (
    POOL_SIZE,
    EvmRelay,
    RawTx,
    RelayRpcError,
    RelayTransportError,
)
from airlock.relays.outcomes import Classified, Outcome, Receipt

if TYPE_CHECKING:
    from airlock.broadcaster.failover import RouteLinks
    from airlock.broadcaster.keeper import LaneKeeper
    from airlock.broadcaster.metrics import Metrics

log = logging.getLogger("airlock.broadcaster")

UNKNOWN_HEAD = 1 << 62  # a block number no chain reaches: "watch no confirmed item"
MAX_WAVE = 1000  # items per wave at most, however large the relays' batches
PIPELINE_WAVES = 4  # waves per dispatch pass before reconcile gets a turn
IDLE_TICK_S = 0.2  # how often an idle broadcaster looks for new work in the queue
STOP_S = 10.0  # a stopping service finishes its round within this
MINED_STATES = frozenset({State.CONFIRMED, State.REPLACED})  # settled by a receipt of ours
ONCE_RECEIPT_GRACE_MS = 3_000  # --once waits this long for a fresh send's receipt
ONCE_STALL_S = 30.0  # --once stops when only resends happened for this long
STORE_RETRY_S = 1.0  # a shared queue's server unreachable: try again after this


class _Seen(NamedTuple):
    """One reconcile read: the senders' nonces, the head, and receipts per hash."""

    chain_nonces: dict[str, int]
    head: int
    asked: dict[str, list[str]]
    receipts: dict[str, Receipt | None]


@dataclass(frozen=True)
class _Pick:
    item: Item
    idx: int
    raw: RawTx

    def begun(self) -> _Pick:
        """The pick as the store holds it once its wave is marked on its way."""
        state = State.SENDING if self.item.state is State.QUEUED else self.item.state
        return replace(self, item=replace(self.item, state=state, active_idx=self.idx))


class Broadcaster:
    """Drains one store through a set of relays. Not thread-safe: one event loop owns it."""

    def __init__(
        self,
        store: Store,
        relays: Sequence[EvmRelay],
        config: BroadcasterConfig,
        *,
        resigner: Resigner | None = None,
        clock_ms: Callable[[], int] = wall_clock_ms,
    ) -> None:
        self.store = store
        self.relays = list(relays)
        self.config = config
        self.monitor = Monitor(self.relays, config.health, on_change=self._on_health)
        self._resigner = resigner
        self._clock_ms = clock_ms
        self._tries: dict[str, int] = defaultdict(int)
        self.last_reconcile_ms = 0
        self._last_head: dict[int, int] = {}
        self.alerts: list[str] = []
        self.router: Callable[[int], RouteLinks] | None = None  # priority -> relay role or none
        self.alert_hook: AlertHook | None = None  # the service's alert delivery, if any
        self.metrics: Metrics | None = None
        self.keeper: LaneKeeper | None = None  # a shared queue: the lanes this one holds
        self.link_log = LinkLog(store, "evm", lambda: self.keeper.holder if self.keeper else None)
        self.reconcile_asked = asyncio.Event()  # a lane was taken: reconcile it now
        # A wave is what every relay takes in one go over its connection pool. At most two
        # are unrecorded at any time (one being written, the next in flight), so a slow
        # link or a crash costs at most two waves of repeated (same-bytes) sends.
        widest = max((r.config.batch_size for r in self.relays), default=1)
        self.wave = min(MAX_WAVE, widest * POOL_SIZE)

    # -- the loops ---------------------------------------------------------------------

    async def run_once(self, max_rounds: int = 100_000) -> PassResult:
        """Probe every relay once, then run rounds until one changes nothing.

        Resending alone is not progress for ever: when no item has changed state for
        ``ONCE_STALL_S`` (a transaction no node will mine, rebroadcast on a short
        timer), the run ends and leaves it to the service."""
        total = PassResult()
        await self._first_probes()
        if self.keeper is not None:  # lanes just taken are sent for once reconciled
            total.add(await self.reconcile())
        last_change = time.monotonic()
        for _ in range(max_rounds):
            result = await self.round(settle=True)
            total.add(result)
            if result.sent or result.settled or result.expired:
                last_change = time.monotonic()
            elif time.monotonic() - last_change > ONCE_STALL_S:
                log.warning("--once: nothing changed state for %.0f s; stopping", ONCE_STALL_S)
                break
            if result.progress == 0 and not result.more and not await self._retry_soon():
                break
        return total

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Serve until ``stop`` is set (or the task is cancelled)."""
        stop = stop or asyncio.Event()
        self.link_log.restart()
        monitor = asyncio.create_task(self.monitor.run(), name="airlock-link-monitor")
        try:
            await self._first_probes()
            returned = True
            while not stop.is_set():
                if returned:
                    self.monitor.returned.clear()
                    log.info("a relay is (back) up: dispatching, then reconciling")
                asked = self.reconcile_asked.is_set()
                self.reconcile_asked.clear()
                try:
                    result = await self.round(force_reconcile=returned or asked)
                except StoreUnavailable as exc:
                    returned = await self._store_lost(exc, stop)
                    continue
                returned = False
                if result.more or result.sent or result.bumped:
                    continue  # a backlog: the next wave goes at once
                returned = await self._wait_for_work(stop)
        finally:
            monitor.cancel()
            await asyncio.gather(monitor, return_exceptions=True)

    @contextlib.asynccontextmanager
    async def serving(self) -> AsyncIterator[Broadcaster]:
        """Run the service in the background of the caller's event loop for the block."""
        stop = asyncio.Event()
        task = asyncio.create_task(self.run(stop), name="airlock-broadcaster")
        try:
            yield self
        finally:
            stop.set()
            async with asyncio.timeout(STOP_S):
                await task

    async def _store_lost(self, exc: StoreUnavailable, stop: asyncio.Event) -> bool:
        """The queue's server went away: hold no lane, wait, reconcile (see _record)."""
        log.warning("the queue is unreachable, retrying in %.0f s: %s", STORE_RETRY_S, exc)
        if self.keeper is not None:
            self.keeper.lost()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(STORE_RETRY_S):
                await stop.wait()
        return True

    async def _first_probes(self) -> None:
        """Probe every relay once; say which are unusable and why (a wrong URL or auth
        key otherwise shows only as a relay that never comes up)."""
        for name, snap in (await self.monitor.probe_all()).items():
            if not snap.usable:
                log.warning("relay %s is %s at start: %s", name, snap.state, snap.last_error)
            self.link_log.first_view(name, str(snap.state), snap.last_error)

    async def _wait_for_work(self, stop: asyncio.Event) -> bool:
        """Sleep until a relay returns, the queue may have work, or ``stop``; True if a
        relay returned (the dispatcher must not wait out a polling interval for that)."""
        waiters = [
            asyncio.ensure_future(self.monitor.returned.wait()),
            asyncio.ensure_future(self.reconcile_asked.wait()),
            asyncio.ensure_future(stop.wait()),
        ]
        try:
            await asyncio.wait(waiters, timeout=IDLE_TICK_S, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()
        return self.monitor.returned.is_set()

    def _reconcile_due(self) -> bool:
        if self._clock_ms() - self.last_reconcile_ms >= self.config.reconcile_seconds * 1000:
            return True
        for chain_id in {r.chain_id for r in self.relays}:
            head = self._best_head(chain_id)
            if head is not None and head > self._last_head.get(chain_id, -1):
                return True  # a new block: receipts may have appeared
        return False

    async def _retry_soon(self) -> bool:
        """In ``--once`` runs: wait for sends backing off, and for fresh sends to show a
        receipt (a node under load mines a moment later), a few seconds at most."""
        now = self._clock_ms()
        due = [
            i.retry_ms
            for i in self.store.items.select([State.SENDING])
            if i.retry_ms is not None and self._has_relay(i)
        ]
        fresh = [
            i.sent_ms
            for i in self.store.items.select([State.SENT])
            if i.sent_ms is not None and now - i.sent_ms < ONCE_RECEIPT_GRACE_MS
        ]
        if fresh and not due:
            await asyncio.sleep(IDLE_TICK_S)
            return True
        if not due:
            return False
        wait_ms = min(due) - now
        if wait_ms > 5_000:
            return False
        await asyncio.sleep(max(wait_ms, 0) / 1000)
        return True

    async def round(self, force_reconcile: bool = False, settle: bool = False) -> PassResult:
        """Expire, dispatch what is due, and reconcile when due (a relay came back, a new
        block, the periodic timer) — or, with ``settle``, as soon as nothing more is sent
        (``--once``). A backlog drains first; in-flight items are not re-read per wave."""
        result = PassResult()
        result.expired = len(self.store.items.expire_due())
        result.add(await self.dispatch())
        if force_reconcile or (settle and result.sent == 0) or self._reconcile_due():
            result.add(await self.reconcile())
        return result

    # -- dispatch ----------------------------------------------------------------------

    async def dispatch(self, max_waves: int = PIPELINE_WAVES) -> PassResult:
        """Send up to ``max_waves`` waves of due items, per sender in nonce order, to every
        eligible relay; ``more`` says whether more were due.

        Waves are pipelined: the next wave is marked and on the wire while the answers to
        the previous one are judged and written, so the relays work while the disk does.
        Every wave is still marked ``sending`` before its bytes leave and recorded before
        its items are read again.
        """
        result = PassResult()
        in_flight: tuple[list[_Pick], asyncio.Task[list[dict[str, Classified]]]] | None = None
        waves = 0
        while True:
            picks = []
            if waves < max_waves:
                picks = self._next_wave(in_flight[0] if in_flight else [], result)
            following: tuple[list[_Pick], asyncio.Task[Any]] | None = None
            if picks:
                waves += 1
                following = (picks, asyncio.create_task(self._fan_out(picks)))
            if in_flight is not None:
                sent_picks, answers = in_flight[0], await in_flight[1]
                records, again = self._judge(sent_picks, answers, result)
                if not await asyncio.to_thread(self._record, records):  # next wave flies
                    again = []
                result.sent += sum(1 for r in records if r.accepted)
                if again:  # underpriced: the next fee level, at once
                    result.sent += await self._send(again, result)
            if following is None:
                result.more = result.sent > 0  # something went: more may be due
                return result
            in_flight = following

    def _next_wave(self, in_flight: list[_Pick], result: PassResult) -> list[_Pick]:
        """Read, pick and durably mark the next wave.

        Senders with items in the wave still in flight wait for its answers: one sender's
        nonces never race each other to a node (a node holding many out-of-order future
        nonces is slow at best, and some relays refuse nonce gaps)."""
        busy = {(p.item.chain_id, p.item.account) for p in in_flight}
        senders = None if self.keeper is None else self.keeper.evm_dispatch_senders()
        due = [
            i
            for i in self.store.sends.dispatchable(self.wave + len(in_flight), senders)
            if (i.chain_id, i.account) not in busy and self._has_relay(i)
        ][: self.wave]
        picks = self._picks(due, result)
        if not picks:
            return []
        try:
            self.store.sends.begin([(p.item, p.idx) for p in picks])
        except StaleItems as exc:  # e.g. an operator cancelled one meanwhile
            log.info("wave not sent, read again next round: %s", exc)
            return []
        return [p.begun() for p in picks]

    def _picks(self, due: list[Item], result: PassResult) -> list[_Pick]:
        stored = self.store.sends.wave_variants([item.id for item in due])
        picks = []
        for item in due:
            variants = stored[item.id]
            if not variants:
                continue
            idx = item.active_idx
            if idx is None:
                idx = decide.first_variant([v.kind for v in variants], item.cancel_requested)
            pick = self._pick(item, variants[idx], result)
            if pick is not None:
                picks.append(pick)
        return picks

    def _pick(self, item: Item, variant: StoredVariant, result: PassResult) -> _Pick | None:
        try:
            raw = self.store.sends.open_variant(item, variant)
        except PayloadTampered as exc:
            self._alert(result, f"item {item.id} quarantined: {exc}", item.id)
            return None
        tx = RawTx(raw=raw, tx_hash=variant.tx_hash, sender=item.account)
        return _Pick(item, variant.idx, tx)

    async def _send(self, picks: list[_Pick], result: PassResult) -> int:
        """Mark, fan out, judge, record; underpriced items go again at the next level."""
        accepted = 0
        while picks:
            try:
                self.store.sends.begin([(p.item, p.idx) for p in picks])
            except StaleItems as exc:  # e.g. an operator cancelled one meanwhile
                log.info("wave not sent, read again next round: %s", exc)
                return accepted
            picks = [p.begun() for p in picks]
            answers = await self._fan_out(picks)
            records, again = self._judge(picks, answers, result)
            if not self._record(records):
                return accepted
            accepted += sum(1 for r in records if r.accepted)
            picks = again
        return accepted

    def _record(self, records: list[SendRecord]) -> bool:
        """The answers of a wave, written; False if an item moved since it was marked (an
        operator's cancel; the broadcaster that took its lane and reconciled it first):
        nothing is written, the items are read again next round (a send is at worst
        repeated with the same bytes)."""
        try:
            self.store.sends.record(records)
        except StaleItems as exc:
            log.info("a wave's answers not recorded, read again next round: %s", exc)
            return False
        return True

    async def _fan_out(self, picks: list[_Pick]) -> list[dict[str, Classified]]:
        """The same bytes to every usable relay of the right chain and privacy, at once."""
        groups: dict[tuple[int | None, bool, int], list[int]] = defaultdict(list)
        for n, pick in enumerate(picks):
            groups[(pick.item.chain_id, pick.item.private, pick.item.priority)].append(n)
        answers: list[dict[str, Classified]] = [{} for _ in picks]
        calls = []
        for (chain_id, private, priority), members in groups.items():
            txs = [picks[n].raw for n in members]
            for relay in self._eligible(chain_id, private, priority):
                calls.append((relay, members, relay.send_raw(txs)))
        replies = await asyncio.gather(*(c for _, _, c in calls))
        for (relay, members, _), reply in zip(calls, replies, strict=True):
            self._report_health(relay, reply)
            if self.metrics is not None:
                for answer in reply:
                    self.metrics.observe_send(relay.name, str(answer.outcome))
            for n, answer in zip(members, reply, strict=True):
                answers[n][relay.name] = answer
        return answers

    def _report_health(self, relay: EvmRelay, reply: list[Classified]) -> None:
        failed = [a for a in reply if a.outcome is Outcome.TRANSPORT]
        if reply and len(failed) == len(reply):
            self.monitor.report_send(relay.name, False, failed[0].message)
        elif reply:
            self.monitor.report_send(relay.name, True)

    def _judge(
        self, picks: list[_Pick], answers: list[dict[str, Classified]], result: PassResult
    ) -> tuple[list[SendRecord], list[_Pick]]:
        now = self._clock_ms()
        records, again = [], []
        for pick, answer in zip(picks, answers, strict=True):
            item = pick.item
            judgement = decide.judge_send(answer, self._tries[item.id])
            if judgement.alert:
                self._alert(result, f"item {item.id}: {judgement.alert}", item.id)
            attempts = tuple(
                Attempt(relay, str(a.outcome), a.rule or "unrecognised", a.message, now)
                for relay, a in sorted(answer.items())
            )
            head = self._best_head(item.chain_id)
            record = SendRecord(
                item.id, item.state, pick.idx, attempts, False, None, judgement.reason
            )
            verdict = judgement.verdict
            if verdict in (SendVerdict.SENT, SendVerdict.NONCE_USED):
                self._tries.pop(item.id, None)
                target = State.SENT if item.state is not State.NEEDS_OPERATOR else None
                record = _with(record, accepted=True, target=target, head=head)
            elif verdict is SendVerdict.NEXT_VARIANT:
                following = self._next_pick(item, pick.idx, result)
                if following is not None:
                    again.append(following)
                else:
                    why = f"{judgement.reason}; no higher fee level left: an operator decides"
                    self._alert(result, f"item {item.id}: {why}", item.id)
                    record = _with(record, target=State.NEEDS_OPERATOR, reason=why)
            elif verdict is SendVerdict.REJECTED:
                target = State.REJECTED if item.state is State.SENDING else State.NEEDS_OPERATOR
                record = _with(record, target=target)
            else:
                self._tries[item.id] += 1
                if item.state is State.SENDING:
                    record = _with(record, retry_ms=now + judgement.retry_ms)
            records.append(record)
        return records, again

    def _next_pick(self, item: Item, idx: int, result: PassResult) -> _Pick | None:
        variants = self.store.sends.wave_variants([item.id])[item.id]
        following = decide.next_step([v.kind for v in variants], idx)
        if following is None and self._resigner is not None and variants[idx].kind == "step":
            draft = self._resigner(self.store, item)
            if draft is not None:
                following = self.store.sends.add_variant(item.id, draft)
                log.info("item %s: re-signed variant %d in the HSM", item.id, following)
                variants = self.store.sends.wave_variants([item.id])[item.id]
        if following is None:
            return None
        return self._pick(item, variants[following], result)

    # -- reconcile and bump ------------------------------------------------------------

    async def reconcile(self) -> PassResult:
        """Ask the chain about every in-flight item; settle, bump or rebroadcast."""
        result = PassResult()
        self.last_reconcile_ms = self._clock_ms()
        generation = 0 if self.keeper is None else self.keeper.generation
        senders = None if self.keeper is None else self.keeper.evm_senders()
        lanes_by_path: dict[tuple[int | None, bool], list[Lane]] = defaultdict(list)
        for lane in self.store.sends.lanes(self._watch_from(), senders):
            lanes_by_path[(lane.item.chain_id, lane.item.private)].append(lane)
        failed: set[int | None] = set()  # chains some of whose items were not asked about
        for (chain_id, private), lanes in lanes_by_path.items():
            reader = self._reader(chain_id, private)
            if reader is None:
                failed.add(chain_id)
                continue
            try:
                await self._reconcile_slices(reader, lanes, result)
            except (RelayTransportError, RelayRpcError) as exc:
                failed.add(chain_id)
                self.monitor.report_send(reader.name, False, str(exc))
                log.warning("reconcile through %s failed: %s", reader.name, exc)
                if self.metrics is not None:
                    self.metrics.observe_reconcile("evm", "failed")
        if self.keeper is not None and senders is not None:
            done = {evm_lane(c, s) for c, s in senders if c not in failed}
            self.keeper.reconciled(done, generation)
        if self.metrics is not None:
            self.metrics.observe_reconcile("evm", "settled", result.settled)
        return result

    async def _reconcile_slices(
        self, reader: EvmRelay, lanes: list[Lane], result: PassResult
    ) -> None:
        """Reconcile ``lanes`` a wave at a time, the next wave's reads in flight while the
        last one's verdicts are written (the node works while the disk does)."""
        slices = [lanes[start : start + self.wave] for start in range(0, len(lanes), self.wave)]
        ahead = asyncio.create_task(self._observe(reader, slices[0]))
        try:
            for n, lanes_n in enumerate(slices):
                seen = await ahead
                if n + 1 < len(slices):
                    ahead = asyncio.create_task(self._observe(reader, slices[n + 1]))
                await self._settle(lanes_n, seen, result)
        finally:
            ahead.cancel()
            await asyncio.gather(ahead, return_exceptions=True)

    def _watch_from(self) -> int:
        """The lowest block whose confirmed items are still re-checked for reorgs. With no
        head known yet, none are: a long history is never re-read at start-up."""
        heads = []
        for chain_id in {r.chain_id for r in self.relays}:
            head = self._last_head.get(chain_id) or self._best_head(chain_id)
            if head is not None:
                heads.append(head)
        if not heads:
            return UNKNOWN_HEAD
        return max(0, min(heads) - self.config.reorg_depth)

    async def _observe(self, reader: EvmRelay, lanes: list[Lane]) -> _Seen:
        """What the chain says about ``lanes``: nonces, then head, then receipts."""
        senders = sorted(
            {lane.item.account for lane in lanes if lane.item.state not in MINED_STATES}
        )
        # The nonce first: a tx mined between the two reads must not look replaced.
        chain_nonces = await reader.transaction_counts(senders) if senders else {}
        head = await reader.block_number()
        self._last_head[reader.chain_id] = max(head, self._last_head.get(reader.chain_id, 0))
        asked = {lane.item.id: self._asked(lane) for lane in lanes}
        receipts = await reader.receipts(sorted({h for hs in asked.values() for h in hs}))
        return _Seen(chain_nonces, head, asked, receipts)

    async def _settle(self, lanes: list[Lane], seen: _Seen, result: PassResult) -> None:
        """Judge each lane on what was seen; write the verdicts; bump or resend."""
        chain_nonces, head, asked, receipts = seen
        records: list[ChainRecord] = []
        pending: list[Lane] = []
        resend: list[Lane] = []
        for lane in lanes:
            item = lane.item
            assert item.nonce is not None
            judged = decide.judge_chain(
                nonce=item.nonce,
                hashes=asked[item.id],
                receipts={h: receipts[h] for h in asked[item.id] if h in receipts},
                chain_nonce=chain_nonces.get(item.account),
                head=head,
                confirmations=self.config.confirmations,
                had_receipt=item.mined_hash,
            )
            record = self._chain_record(lane, judged, result)
            if record is not None:
                records.append(record)
            if judged.verdict is ChainVerdict.REORGED:
                resend.append(lane)
            elif judged.verdict is ChainVerdict.PENDING and item.state is State.SENT:
                pending.append(lane)
        if records:
            # In a thread: SQLite lets go of the GIL while it writes, and the next wave's
            # reads (already in flight) are answered meanwhile.
            try:
                await asyncio.to_thread(self.store.sends.record_chain, records)
            except StaleItems as exc:  # moved meanwhile (see _record): judged again later
                log.info("reconcile verdicts not recorded, read again next pass: %s", exc)
                return
            result.settled += len(records)
            # Reorged items are `sent` again now: resend them as the store holds them.
            resend = [replace(lane, item=self.store.items.get(lane.item.id)) for lane in resend]
        await self._bump_or_rebroadcast(pending, resend, head, result)

    @staticmethod
    def _asked(lane: Lane) -> list[str]:
        """A confirmed item (or one replaced by its own mined cancel) is watched through its
        mined hash only; others through every hash that may have reached a relay."""
        if lane.item.state in MINED_STATES and lane.item.mined_hash:
            return [lane.item.mined_hash]
        return lane.sent_hashes

    def _chain_record(
        self, lane: Lane, judged: decide.ChainJudgement, result: PassResult
    ) -> ChainRecord | None:
        item, verdict = lane.item, judged.verdict
        if verdict in (ChainVerdict.MINED, ChainVerdict.CONFIRMED):
            receipt = judged.receipt
            assert receipt is not None
            mined = Mined(receipt.tx_hash, receipt.block_number, receipt.block_hash)
            same = (item.mined_hash, item.mined_block_hash) == (mined.tx_hash, mined.block_hash)
            done = item.state in MINED_STATES or verdict is ChainVerdict.MINED
            if same and done and item.state is not State.SENDING:
                return None
            cancel = lane.kinds[lane.hashes.index(mined.tx_hash)] == "cancel"
            reason = judged.reason
            if cancel:
                reason = f"its pre-signed cancel was {reason}: the transaction itself never ran"
            return ChainRecord(item.id, item.state, str(verdict), reason, mined, cancel=cancel)
        if verdict is ChainVerdict.REPLACED and item.state is not State.NEEDS_OPERATOR:
            self._alert(result, f"item {item.id}: {judged.reason}", item.id)
            return ChainRecord(item.id, item.state, "replaced", judged.reason)
        if verdict is ChainVerdict.REORGED:
            self._alert(result, f"item {item.id}: {judged.reason}", item.id)
            return ChainRecord(item.id, item.state, "reorged", judged.reason)
        return None

    async def _bump_or_rebroadcast(
        self, pending: list[Lane], resend: list[Lane], head: int, result: PassResult
    ) -> None:
        """Stuck items get their next fee level; long-silent ones their bytes again."""
        now = self._clock_ms()
        policy = decide.BumpPolicy(
            self.config.bump_after_blocks, int(self.config.bump_after_seconds * 1000)
        )
        picks: list[_Pick] = []
        for lane in pending:
            item = lane.item
            move = decide.pending_move(
                fates=lane.fates,
                active=_active(item),
                sent_ms=item.sent_ms,
                sent_block=item.sent_block,
                now_ms=now,
                head=head,
                policy=policy,
                rebroadcast_ms=int(self.config.rebroadcast_seconds * 1000),
            )
            if move is decide.PendingMove.RESEND:
                resend.append(lane)
            elif move is decide.PendingMove.BUMP:
                pick = self._next_pick(item, _active(item), result)
                if pick is not None:
                    picks.append(pick)
                else:
                    why = "no receipt and no higher fee level left: an operator decides"
                    self._alert(result, f"item {item.id}: {why}", item.id)
                    self.store.items.transition(item.id, State.NEEDS_OPERATOR, why)
                    result.settled += 1
        stored = self.store.sends.wave_variants([lane.item.id for lane in resend])
        for lane in resend:
            pick = self._pick(lane.item, stored[lane.item.id][_active(lane.item)], result)
            if pick is not None:
                picks.append(pick)
        if picks:
            bumped = await self._send(picks, result)
            result.bumped += bumped
            if self.metrics is not None and bumped:
                self.metrics.observe_bump(bumped)

    # -- relays (broadcaster/routes.py) -------------------------------------------------

    def _eligible(
        self, chain_id: int | None, private: bool, priority: int | None = None
    ) -> list[EvmRelay]:
        return routes.eligible(self.relays, self.monitor, chain_id, private, priority, self.router)

    def _has_relay(self, item: Item) -> bool:
        return bool(self._eligible(item.chain_id, item.private, item.priority))

    def _reader(self, chain_id: int | None, private: bool) -> EvmRelay | None:
        return routes.reader(self.relays, self.monitor, chain_id, private)

    def _best_head(self, chain_id: int | None) -> int | None:
        return routes.best_head(self.relays, self.monitor, chain_id)

    # -- alerts ------------------------------------------------------------------------

    def _on_health(self, change: Change) -> None:
        log.log(
            logging.WARNING if change.new in (LinkState.DOWN, LinkState.DISABLED) else logging.INFO,
            "relay %s: %s -> %s (%s)",
            change.relay,
            change.old,
            change.new,
            change.reason,
        )
        self.link_log.changed(change.relay, str(change.old), str(change.new), change.reason)
        if change.new is LinkState.DISABLED:
            message = f"relay {change.relay} disabled: {change.reason}"
            self._alert(PassResult(), message, key=f"relay-disabled.{change.relay}")

    def _alert(
        self, result: PassResult, message: str, item_id: str | None = None, key: str = ""
    ) -> None:
        """Record an alert: through the service's delivery (de-duplicated, audited once
        per delivery) when there is one, else straight into the audit log."""
        log.warning("ALERT %s", message)
        result.alerts.append(message)
        self.alerts.append(message)
        key = key or alert_key("evm", item_id, message)
        if self.alert_hook is not None:
            self.alert_hook(key, message, item_id)
        else:  # the entry the service's delivery would write (docs/audit-format.md §1.4)
            data = {"key": key, "message": message, "severity": "warning"}
            self.store.audit.record(audit_entries.ALERT, data, item_id)


def _active(item: Item) -> int:
    return 0 if item.active_idx is None else item.active_idx


def _with(record: SendRecord, **changes: Any) -> SendRecord:
    return replace(record, **changes)
