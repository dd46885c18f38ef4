"""What one seed does: a scenario's plan, drawn from ``random.Random(seed)`` and nothing else.

A plan is pure data so that a seed named in a report (``--seeds 137``) replays the same
scenario on any machine, and ``python -m airlock.sim.chaos plan`` can print it without
starting anything. The draws happen in one fixed order, spelled out in :func:`make_plan`:
reordering them, or drawing one more number anywhere, changes every seed's scenario and
makes every seed in an old report name a different one.

The Bybit stream faults came later (issue 17): they are drawn by a generator of their own,
``random.Random(f"{STREAM_SALT}:{seed}")``, after the rest, into fields of their own
(``send_over``, ``stream``, ``stream_faults``), so every seed still draws the scenario it
drew before them and gains its stream faults on top.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

RELAYS = ("rpc-a", "rpc-b")

# Fault kinds a plan draws from (with weights), beyond the initial outage of each link.
FAULT_WEIGHTS: dict[str, int] = {
    "link_flap": 3,
    "slow_link": 2,
    "garbage": 2,
    "http_error": 1,
    "flaky": 2,
    "lying_relay": 3,
    "kill9": 3,
    "hsm_outage": 2,
    "bybit_fault": 3,
    "clock_jump": 1,
    "venue_flap": 2,
    "reorg": 3,
    "operator_cancel": 1,
}
GARBAGE_KINDS = ("html", "truncated", "wrong_id", "not_jsonrpc", "deep", "empty")
BYBIT_FAULTS = ("lose_response_after_accept", "ret_code_10006", "ret_code_10016", "delay")
RELAY_FAULTS = ("slow_link", "garbage", "http_error", "flaky", "lying_relay")
MAX_KILLS = 2  # kill -9 twice in a 2 s timeline already leaves little time to serve

# The private (and trade) stream's timers under chaos, scaled like the others: a silent
# stream is judged after STREAM_STALE_S, so a silence drawn longer than that is replaced.
STREAM_PING_S = 0.25
STREAM_STALE_S = 1.0
STREAM_SALT = "airlock-chaos-stream"
WS_SHARE = 0.35  # the seeds that send orders over the trade stream (send_over = "ws")
STREAM_WEIGHTS: dict[str, int] = {
    "stream_drop": 3,
    "stream_silence": 2,
    "stream_gap_loss": 2,
    "stream_dup_exec": 2,
    "trade_reply_lost": 4,  # only by the seeds that send over the trade stream
}
SENDS_OVER_ANY = frozenset(STREAM_WEIGHTS) - {"trade_reply_lost"}
MARK_PRICE = "59000"  # crosses the resting buys at 60000: fills to reconcile


@dataclass(frozen=True)
class Event:
    """One thing the timeline does at ``at`` seconds: ``kind`` with its ``params``."""

    at: float
    kind: str
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Plan:
    """Everything one scenario does: its intents, its timeline of faults, its venue clock."""

    seed: int
    duration: float
    senders: int
    per_sender: int
    orders: int
    batch_size: int
    skew_ms: int  # the venue clock against ours at the start
    hsm_outage: tuple[float, float] | None  # (start, duration) in timeline seconds
    events: tuple[Event, ...]
    faults: tuple[str, ...]  # the fault kinds drawn, one per injection
    send_over: str = "rest"  # [bybit] send_over: "ws" puts orders on the trade stream
    stream: tuple[Event, ...] = ()  # the stream faults' events (their own generator)
    stream_faults: tuple[str, ...] = ()

    @property
    def intents(self) -> int:
        return self.senders * self.per_sender + self.orders

    @property
    def timeline(self) -> tuple[Event, ...]:
        """Every event, the stream's among the others, in time order."""
        return tuple(sorted((*self.events, *self.stream), key=lambda e: e.at))

    @property
    def all_faults(self) -> tuple[str, ...]:
        return (*self.faults, *self.stream_faults)


@dataclass
class _Draw:
    """A plan while it is drawn: the generator and what was drawn so far, shared by the
    per-kind steps so each of them stays a few lines."""

    rng: random.Random
    duration: float
    events: list[Event] = field(default_factory=list)
    faults: list[str] = field(default_factory=list)
    hsm_outage: tuple[float, float] | None = None
    kills: int = 0

    def window(self, min_d: float = 0.2, max_d: float = 1.2) -> tuple[float, float]:
        """A fault's (start, end) inside the timeline: two draws, start first."""
        start = self.rng.uniform(0.0, self.duration - 0.3)
        return start, min(self.duration - 0.05, start + self.rng.uniform(min_d, max_d))

    def mode(self, at: float, target: str, mode: str, **params: Any) -> None:
        """A fault proxy (or, with --netns, the veth link) switched at ``at``."""
        self.events.append(Event(at, "mode", {"target": target, "mode": mode, **params}))


def make_plan(seed: int) -> Plan:
    """Everything a scenario does, drawn from ``random.Random(seed)`` only.

    The order of the draws is part of the seed's meaning: the duration; each link's
    initial outage; 2-5 faults (kind, relay, then the kind's own draws); the mark
    crossing; the venue's clock skew; then the intents (senders, transfers per sender,
    orders, batch size). Then, from their own generator, the stream faults
    (:func:`draw_stream`)."""
    rng = random.Random(seed)
    draw = _Draw(rng, round(rng.uniform(1.6, 2.6), 2))
    _draw_initial_outages(draw)
    kinds, weights = zip(*FAULT_WEIGHTS.items(), strict=True)
    for _ in range(rng.randint(2, 5)):
        _draw_fault(draw, kinds, weights)
    if rng.random() < 0.5:  # the mark crosses the resting buys at 60000: fills to reconcile
        draw.events.append(Event(rng.uniform(0.3, draw.duration), "mark", {"price": MARK_PRICE}))
    skew = rng.randint(-3000, 3000)
    draw.faults.append("clock_skew")
    draw.events.sort(key=lambda e: e.at)
    send_over, stream, stream_faults = draw_stream(seed, draw.duration, draw.events)
    return Plan(
        seed=seed,
        duration=draw.duration,
        senders=rng.randint(1, 3),
        per_sender=rng.randint(1, 4),
        orders=rng.randint(1, 4),
        batch_size=rng.choice([1, 4, 100]),
        skew_ms=skew,
        hsm_outage=draw.hsm_outage,
        events=tuple(draw.events),
        faults=tuple(draw.faults),
        send_over=send_over,
        stream=stream,
        stream_faults=stream_faults,
    )


def _draw_initial_outages(draw: _Draw) -> None:
    """The outage everything was queued in: each link (and the venue) may still be down
    at the start and come back a little later."""
    for target in (*RELAYS, "venue"):
        if draw.rng.random() < 0.5:
            back = draw.rng.uniform(0.1, draw.duration * 0.6)
            draw.mode(0.0, target, "down")
            draw.mode(back, target, "pass")
            draw.faults.append("initial_outage")


def _draw_fault(draw: _Draw, kinds: Sequence[str], weights: Sequence[int]) -> None:
    """One fault: its kind and a relay are always drawn (even when the kind ignores the
    relay), so every later draw stays where it was."""
    kind = draw.rng.choices(kinds, weights)[0]
    relay = draw.rng.choice(RELAYS)
    if kind == "hsm_outage" and draw.hsm_outage is not None:
        kind = "reorg"  # one outage window per scenario: the serve process knows one
    if kind == "kill9" and draw.kills >= MAX_KILLS:
        kind = "lying_relay"
    draw.faults.append(kind)
    _DRAWERS[kind](draw, kind, relay)


def _link_flap(draw: _Draw, kind: str, relay: str) -> None:
    """One to three short downs of one relay link, one after another."""
    rng = draw.rng
    at = rng.uniform(0.0, draw.duration - 0.4)
    for _ in range(rng.randint(1, 3)):
        down_for = rng.uniform(0.05, 0.4)
        draw.mode(at, relay, "down")
        draw.mode(at + down_for, relay, "pass")
        at += down_for + rng.uniform(0.05, 0.3)


def _relay_window(draw: _Draw, kind: str, relay: str) -> None:
    """A relay misbehaving (slow, garbage, errors, flaky, lying) for a window."""
    start, end = draw.window()
    params = _relay_fault(draw.rng, kind)
    draw.events.append(Event(start, "mode", {"target": relay, **params}))
    draw.mode(end, relay, "pass")


def _relay_fault(rng: random.Random, kind: str) -> dict[str, Any]:
    """The fault proxy mode and its settings for one relay fault kind."""
    if kind == "slow_link":
        return {"mode": "slow", "delay_ms": rng.choice([50, 150, 400])}
    if kind == "garbage":
        return {"mode": "garbage", "kind": rng.choice(GARBAGE_KINDS)}
    if kind == "http_error":
        return {"mode": "error", "status": rng.choice([500, 502, 503, 429])}
    if kind == "lying_relay":
        return {"mode": "lie"}
    faults = [
        ("error", {"status": 502}),
        ("garbage", {"kind": rng.choice(GARBAGE_KINDS)}),
        ("lose_response", {}),
        ("slow", {"delay_ms": 100}),
        ("lie", {}),
    ]
    return {"mode": "flaky", "p": round(rng.uniform(0.3, 0.8), 2), "faults": faults}


def _kill9(draw: _Draw, kind: str, relay: str) -> None:
    """``kill -9`` of the broadcaster (and a restart) somewhere after its start."""
    draw.kills += 1
    draw.events.append(Event(draw.rng.uniform(0.3, draw.duration - 0.2), "kill9", {}))


def _hsm_outage(draw: _Draw, kind: str, relay: str) -> None:
    """The HSM refusing to sign for a window: not an event, the serve process keeps it."""
    start, end = draw.window(0.4, 1.5)
    draw.hsm_outage = (round(start, 3), round(end - start, 3))


def _bybit_fault(draw: _Draw, kind: str, relay: str) -> None:
    """A venue fault armed in the simulator (at 0: before the service starts)."""
    rng = draw.rng
    which = rng.choice(BYBIT_FAULTS)
    params: dict[str, Any] = {"count": rng.randint(1, 2)}
    if which.startswith("ret_code_"):
        params |= {"fault": "ret_code", "code": int(which.removeprefix("ret_code_"))}
    elif which == "delay":
        params |= {"fault": "delay", "ms": rng.choice([200, 600, 1300])}
    else:
        params |= {"fault": which}
    params["create_only"] = rng.random() < 0.7
    at = 0.0 if rng.random() < 0.6 else rng.uniform(0.0, draw.duration * 0.7)
    draw.events.append(Event(at, "bybit_fault", params))
    draw.faults[-1] = f"bybit_{which}"


def _clock_jump(draw: _Draw, kind: str, relay: str) -> None:
    """The venue's clock jumps forward only: it never runs backwards (a step back of ours
    looks the same from here); a backward jump would stamp fills in the venue's future,
    which no reader can see (seed 191 of the first run)."""
    jump = draw.rng.choice([1500, 3000])
    at = draw.rng.uniform(0.2, draw.duration - 0.2)
    draw.events.append(Event(at, "skew", {"delta_ms": jump}))


def _venue_flap(draw: _Draw, kind: str, relay: str) -> None:
    """The venue link down for a window."""
    start, end = draw.window(0.1, 0.6)
    draw.mode(start, "venue", "down")
    draw.mode(end, "venue", "pass")


def _reorg(draw: _Draw, kind: str, relay: str) -> None:
    """An anvil reorg of depth 1-3 (the runner waits for a confirmed item first)."""
    at = draw.rng.uniform(0.4, draw.duration - 0.1)
    draw.events.append(Event(at, "reorg", {"depth": draw.rng.randint(1, 3)}))


def _operator_cancel(draw: _Draw, kind: str, relay: str) -> None:
    """An operator cancel, during the outage (before the start) or later."""
    rng = draw.rng
    at = 0.0 if rng.random() < 0.6 else rng.uniform(0.0, draw.duration * 0.5)
    draw.events.append(Event(at, "cancel", {"pick": rng.random()}))


_DRAWERS: dict[str, Callable[[_Draw, str, str], None]] = {
    "link_flap": _link_flap,
    **dict.fromkeys(RELAY_FAULTS, _relay_window),
    "kill9": _kill9,
    "hsm_outage": _hsm_outage,
    "bybit_fault": _bybit_fault,
    "clock_jump": _clock_jump,
    "venue_flap": _venue_flap,
    "reorg": _reorg,
    "operator_cancel": _operator_cancel,
}


# -- the Bybit stream faults (issue 17) ---------------------------------------------------


@dataclass
class _Moments:
    """When the timeline makes the venue push: the mark moves (fills: execution, order,
    position and wallet messages) and the orders that arrive while it runs."""

    marks: list[float]
    orders: list[float] = field(default_factory=list)

    def mark(self, draw: _Draw) -> float:
        """The first mark move; one of the stream's own when the plan has none."""
        if not self.marks:
            self.marks.append(draw.rng.uniform(0.3, draw.duration - 0.2))
            draw.events.append(Event(self.marks[0], "mark", {"price": MARK_PRICE}))
        return self.marks[0]


def draw_stream(
    seed: int, duration: float, events: Sequence[Event]
) -> tuple[str, tuple[Event, ...], tuple[str, ...]]:
    """A seed's stream faults, from ``random.Random(f"{STREAM_SALT}:{seed}")``, in this
    order: ``send_over``; with ``ws``, 1-2 orders queued while the timeline runs (the
    ones queued before it go out before the trade stream is up, over REST); then 1-3
    faults (kind, then its own draws). ``events``: the plan's others, whose mark move
    the losses and duplicates are armed before."""
    draw = _Draw(random.Random(f"{STREAM_SALT}:{seed}"), duration)
    send_over = "ws" if draw.rng.random() < WS_SHARE else "rest"
    moments = _Moments(sorted(e.at for e in events if e.kind == "mark"))
    if send_over == "ws":
        at = draw.rng.uniform(0.4, duration - 0.3)
        draw.events.append(Event(at, "orders", {"count": draw.rng.randint(1, 2)}))
        moments.orders.append(at)
    table = {k: w for k, w in STREAM_WEIGHTS.items() if send_over == "ws" or k in SENDS_OVER_ANY}
    kinds, weights = zip(*table.items(), strict=True)
    for _ in range(draw.rng.randint(1, 3)):
        kind = draw.rng.choices(kinds, weights)[0]
        draw.faults.append(kind)
        _STREAM_DRAWERS[kind](draw, moments)
    draw.events.sort(key=lambda e: e.at)
    return send_over, tuple(draw.events), tuple(draw.faults)


def _stream_drop(draw: _Draw, moments: _Moments) -> None:
    """One or two resets of every stream connection, as a network drop."""
    for _ in range(draw.rng.randint(1, 2)):
        draw.events.append(Event(draw.rng.uniform(0.1, draw.duration - 0.1), "stream_drop"))


def _stream_silence(draw: _Draw, moments: _Moments) -> None:
    """Every open stream stops answering and receiving for longer than the stale bound
    (a dead path TCP has not noticed): airlock must judge it silent and replace it. The
    end may fall after the timeline's: the timeline waits for it."""
    start = draw.rng.uniform(0.1, draw.duration - 0.3)
    length = draw.rng.uniform(STREAM_STALE_S + 0.2, STREAM_STALE_S + 0.8)
    draw.events.append(Event(start, "stream_silence", {"on": True}))
    draw.events.append(Event(start + length, "stream_silence", {"on": False}))


def _stream_gap_loss(draw: _Draw, moments: _Moments) -> None:
    """The next 1-3 pushed messages lost, then the streams dropped: messages lost in a
    gap, which the REST pass after the reconnect must recover (exactly once). Armed just
    before the mark moves (its fills are pushed), or before the start (the first orders'
    messages); the drop (``after_loss``) waits for the loss to have met a message."""
    rng = draw.rng
    count = rng.randint(1, 3)
    at = 0.0 if rng.random() < 0.3 else max(0.0, moments.mark(draw) - 0.02)
    gap = rng.uniform(0.05, 0.4)
    draw.events.append(Event(at, "stream_lose", {"count": count}))
    draw.events.append(Event(max(at + gap, 0.1), "stream_drop", {"after_loss": True}))


def _stream_dup_exec(draw: _Draw, moments: _Moments) -> None:
    """The next 1-3 execution messages delivered twice: each execId must be stored once.
    Armed before the first mark move."""
    count = draw.rng.randint(1, 3)
    at = draw.rng.uniform(0.0, max(0.0, moments.mark(draw) - 0.05))
    draw.events.append(Event(at, "stream_dup", {"count": count}))


def _trade_reply_lost(draw: _Draw, moments: _Moments) -> None:
    """The next 1-2 trade-stream replies not sent though the op ran (send_over = "ws"):
    an answer lost after accept, to be looked up before any resend. Armed before the
    start (for whichever order meets the trade stream first) or just before the orders
    that arrive while the timeline runs."""
    rng = draw.rng
    count = rng.randint(1, 2)
    at = 0.0 if rng.random() < 0.4 or not moments.orders else moments.orders[0] - 0.02
    draw.events.append(Event(at, "trade_lose", {"count": count}))


_STREAM_DRAWERS: dict[str, Callable[[_Draw, _Moments], None]] = {
    "stream_drop": _stream_drop,
    "stream_silence": _stream_silence,
    "stream_gap_loss": _stream_gap_loss,
    "stream_dup_exec": _stream_dup_exec,
    "trade_reply_lost": _trade_reply_lost,
}


def parse_seeds(spec: str) -> list[int]:
    """``1-200``, ``137``, ``1,5,9-12`` -> the seeds, in order, without repeats."""
    seeds: list[int] = []
    for part in spec.split(","):
        part = part.strip()
        if not part:
            continue
        low, dash, high = part.partition("-")
        values = range(int(low), int(high) + 1) if dash else [int(low)]
        seeds += [s for s in values if s not in seeds]
    if not seeds:
        raise ValueError(f"no seeds in {spec!r}")
    return seeds
