"""The outage playbook as pure, deterministic rules: when is it an outage, which links may
carry what, what happens to market-critical orders on a slow backup, and when a human must
be called.

Why pure: failover decisions are the ones an auditor questions after the fact ("why did this
cancel go over the backup link, and why did that order wait?"). So nothing here does I/O or
reads a clock: every function takes ``now_ms`` (the caller's monotonic milliseconds) and the
:class:`~airlock.config.FailoverConfig`, the same inputs always give the same answer, and
every answer names the rule that fired (:data:`RULES`) together with the inputs it looked at
(``inputs``, plain JSON), so the audit entry ``failover.decision`` can record it verbatim
(``as_json()`` on every result) and the decision can be replayed.

The playbook (defaults of ``[failover]``, see docs/failover.md):

- **Mode.** A link is a relay or a venue connection with a role, ``primary`` or ``backup``.
  It is an OUTAGE when *every* primary link has either gone quiet for longer than the
  heartbeat gap (3 s; never having answered counts as quiet) or missed 2 probes in a row.
  One primary that still answers keeps the system NORMAL: a single dead path is the health
  monitor's business, not a reason to change what may be sent.
- **Routing.** In an OUTAGE only cancels and risk-reducing actions may use backup links, and
  only for the first 30 s of the outage: backups are usually slower, narrower or more
  expensive paths, and the actions that shrink exposure are the ones worth that price. Past
  the window, and for everything else at any time, items wait for a primary.
- **Slow backups.** A backup answering slower than 200 ms makes a market order a gamble on
  a price that has moved; a market-critical order then becomes a limit order capped 0.1 %
  from its reference price, or is refused without one.
- **Escalation.** More than 50 live items waiting, or the oldest waiting more than 120 s,
  means the outage is no longer something the queue rides out alone: an operator is called.

Health itself (probes, hysteresis, latency) is measured by :mod:`airlock.relays.health`;
a :class:`LinkView` is the slice of it these rules read (``last_ok_ms`` -> ``last_ack_ms``,
``consecutive_failures`` -> ``missed_acks``, ``latency_ms``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from typing import Any, Literal

from airlock.config import FailoverConfig
from airlock.errors import InvalidInput
from airlock.queue.items import Priority
from airlock.queue.policy import capped_limit_price, parse_bps
from airlock.vocab import ORDER_TYPES, RELAY_ROLES, SIDES, RelayRole

RouteLinks = RelayRole | Literal["none"]  # the relays a send may use now, or none
CriticalAction = Literal["send", "limit", "refuse"]

RULES: Mapping[str, str] = {
    # judge_mode
    "primary-up": "a primary link acked within the heartbeat gap without missing too many "
    "probes: NORMAL",
    "no-primaries": "no link has the primary role: nothing to fail over from, NORMAL",
    "heartbeat-gap": "every primary link has been silent longer than the heartbeat gap: OUTAGE",
    "missed-acks": "every primary link missed too many acks in a row: OUTAGE",
    "primaries-down": "every primary link is down, some by heartbeat gap and some by missed "
    "acks: OUTAGE",
    # route
    "normal": "NORMAL mode: primary links carry everything, unchanged",
    "backup-priority-window": "OUTAGE: a cancel or risk-reducing item goes over a backup link "
    "inside the backup window",
    "backup-window-over": "OUTAGE: the backup window is over, even cancels and risk-reducing "
    "items wait for a primary",
    "outage-hold": "OUTAGE: new orders and transfers wait for a primary link",
    "no-backup": "OUTAGE: a cancel or risk-reducing item may use a backup, but none is usable",
    # critical_order
    "latency-ok": "the backup answers within the latency threshold: the order goes as it is",
    "limit-has-cap": "a Limit order already carries its price cap: sent as it is",
    "slow-backup-limit": "slow (or unmeasured) backup: a Market order becomes a Limit order at "
    "the critical slippage cap",
    "slow-backup-refuse": "slow (or unmeasured) backup and no reference price: a Market order "
    "is refused",
    "invalid-ref-price": "slow backup and the reference price cannot be capped: a Market order "
    "is refused",
    # escalations
    "queue-depth": "more live items wait than the escalation threshold: call an operator",
    "queue-age": "the oldest live item has waited longer than the escalation threshold: call "
    "an operator",
}
"""Every rule a result of this module can name, with a one-line reason for the audit log."""


class Mode(StrEnum):
    """What the system as a whole believes about its primary links."""

    NORMAL = "normal"
    """At least one primary link answers: everything is routed as usual."""
    OUTAGE = "outage"
    """Every primary link is down: only what the routing rules allow may use backups."""


def window_ms(seconds: float) -> int:
    """A configured duration in seconds as whole milliseconds, the unit of ``now_ms``.

    Rounded, not truncated: ``2.01 * 1000`` is ``2009.999…`` in binary floating point, and a
    configured 2.01 s window must include the instant 2 010 ms after it opened.
    """
    return round(seconds * 1000)


def audit_plain(value: Any) -> Any:
    """``value`` with every float made canonical-JSON safe (the audit log has no floats):
    a whole number becomes an int, anything else its decimal text rounded to 0.001."""
    if isinstance(value, float):
        return int(value) if value.is_integer() else f"{value:.3f}".rstrip("0")
    if isinstance(value, dict):
        return {k: audit_plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [audit_plain(v) for v in value]
    return value


# ----------------------------------------------------------------------------- mode


@dataclass(frozen=True)
class LinkView:
    """One link (a relay or a venue connection) as the mode rule sees it.

    ``last_ack_ms``: when it last answered a probe or a request successfully (``None``:
    never). ``missed_acks``: consecutive failed probes or sends since then. ``latency_ms``:
    the last measured round trip (``None``: not measured).
    """

    name: str
    role: RelayRole
    last_ack_ms: int | None
    missed_acks: int
    latency_ms: float | None = None

    def __post_init__(self) -> None:
        if self.role not in RELAY_ROLES:
            raise InvalidInput(
                f"link {self.name!r}: role must be one of {', '.join(RELAY_ROLES)}, "
                f"got {self.role!r}"
            )
        if isinstance(self.missed_acks, bool) or self.missed_acks < 0:
            raise InvalidInput(
                f"link {self.name!r}: missed_acks must be 0 or more, got {self.missed_acks!r}"
            )


@dataclass(frozen=True)
class ModeState:
    """The mode, since when it holds, and why.

    ``since_ms`` is when the current mode began (as first judged), carried over from the
    previous judgement while the mode stays the same: the backup window counts from it.
    ``rule`` is the rule of *this* judgement (an outage may start as ``heartbeat-gap`` and
    continue as ``primaries-down``); ``inputs`` is what was looked at. Treat ``inputs`` as
    read-only.
    """

    mode: Mode
    since_ms: int
    rule: str
    inputs: dict[str, Any]

    def as_json(self) -> dict[str, Any]:
        """The judgement as the audit entry ``failover.decision`` records it."""
        return {
            "decision": "mode",
            "rule": self.rule,
            "inputs": audit_plain(self.inputs),
            "mode": str(self.mode),
            "since_ms": self.since_ms,
        }


def _down_by(link: LinkView, now_ms: int, config: FailoverConfig) -> list[str]:
    """Which OUTAGE conditions this primary link meets (empty: it is up)."""
    reasons = []
    if link.last_ack_ms is None or now_ms - link.last_ack_ms > config.heartbeat_gap_ms:
        reasons.append("heartbeat-gap")
    if link.missed_acks >= config.missed_acks:
        reasons.append("missed-acks")
    return reasons


def judge_mode(
    links: Sequence[LinkView],
    now_ms: int,
    config: FailoverConfig,
    previous: ModeState | None = None,
) -> ModeState:
    """NORMAL or OUTAGE, from the primary links alone.

    OUTAGE needs *every* primary down, each by ``heartbeat_gap_ms`` (strictly longer: a gap
    of exactly the threshold is still an answer in time; never acked counts as an infinite
    gap) or by ``missed_acks`` (at or above: "2 missed acks" means the second miss counts).
    Either condition alone is enough for a link, because they fail differently: a link that
    is probed rarely goes quiet before it can miss anything, a link probed often misses acks
    well before the gap is over. Backups never decide the mode: they are what an outage is
    survived *with*, not what defines it. With no primary at all there is nothing to fail
    over from, so the mode is NORMAL (``no-primaries``) and every link is used as a primary
    would be.

    The outage rule is ``heartbeat-gap`` when every primary is past the gap,
    ``missed-acks`` when every primary missed too many acks (and not all are past the gap),
    and ``primaries-down`` when the primaries went down for different reasons.
    """
    primaries = [link for link in links if link.role == "primary"]
    backups = [link.name for link in links if link.role != "primary"]
    rows = []
    downs = []
    for link in primaries:
        down = _down_by(link, now_ms, config)
        downs.append(down)
        rows.append(
            {
                "link": link.name,
                "gap_ms": None if link.last_ack_ms is None else now_ms - link.last_ack_ms,
                "missed_acks": link.missed_acks,
                "down_by": down,
            }
        )
    inputs: dict[str, Any] = {
        "now_ms": now_ms,
        "heartbeat_gap_ms": config.heartbeat_gap_ms,
        "missed_acks": config.missed_acks,
        "previous_mode": None if previous is None else str(previous.mode),
        "primaries": rows,
        "backups": backups,
    }
    if not primaries:
        mode, rule = Mode.NORMAL, "no-primaries"
    elif not all(downs):
        mode, rule = Mode.NORMAL, "primary-up"
    elif all("heartbeat-gap" in down for down in downs):
        mode, rule = Mode.OUTAGE, "heartbeat-gap"
    elif all("missed-acks" in down for down in downs):
        mode, rule = Mode.OUTAGE, "missed-acks"
    else:
        mode, rule = Mode.OUTAGE, "primaries-down"
    since = previous.since_ms if previous is not None and previous.mode is mode else now_ms
    return ModeState(mode=mode, since_ms=since, rule=rule, inputs=inputs)


# ----------------------------------------------------------------------------- routing


@dataclass(frozen=True)
class Route:
    """Which links an item may use now: ``primary``, ``backup``, or ``none`` (it waits)."""

    links: RouteLinks
    rule: str
    inputs: dict[str, Any]

    def as_json(self) -> dict[str, Any]:
        """The decision as the audit entry ``failover.decision`` records it."""
        inputs = audit_plain(self.inputs)
        return {"decision": "route", "rule": self.rule, "inputs": inputs, "links": self.links}


def route(
    priority: int,
    mode: ModeState,
    now_ms: int,
    config: FailoverConfig,
    backups_usable: bool,
) -> Route:
    """Where an item of ``priority`` may go in ``mode``.

    NORMAL: primaries, as always. OUTAGE: only items at :attr:`Priority.RISK_REDUCING` or
    more urgent (cancels, reduce-only orders) may use a backup, and only while
    ``now - since_ms <= backup_window_s`` (the window's last millisecond is still inside).
    The checks go from the item to the links: a normal-priority item is held
    (``outage-hold``) whatever the window or the backups; an eligible item past the window
    is held (``backup-window-over``) whether or not a backup is up, since past the window
    backups are not considered at all; only inside the window does a missing backup matter
    (``no-backup``). Why a window at all: a backup that carries risk reduction for the first
    seconds of an outage buys time; one that carries it indefinitely becomes an unplanned
    primary, with its lower capacity and its own failure modes, and the escalation rules
    should have brought an operator in by then.
    """
    prio = int(priority)
    inputs: dict[str, Any] = {
        "priority": prio,
        "mode": str(mode.mode),
        "backups_usable": backups_usable,
    }
    if mode.mode is Mode.NORMAL:
        return Route("primary", "normal", inputs)
    elapsed = now_ms - mode.since_ms
    limit = window_ms(config.backup_window_s)
    inputs.update(
        {
            "since_ms": mode.since_ms,
            "now_ms": now_ms,
            "elapsed_ms": elapsed,
            "backup_window_ms": limit,
            "eligible_max_priority": int(Priority.RISK_REDUCING),
        }
    )
    if prio > Priority.RISK_REDUCING:
        return Route("none", "outage-hold", inputs)
    if elapsed > limit:
        return Route("none", "backup-window-over", inputs)
    if not backups_usable:
        return Route("none", "no-backup", inputs)
    return Route("backup", "backup-priority-window", inputs)


# ----------------------------------------------------------------------------- slow backups


@dataclass(frozen=True)
class Critical:
    """What to do with a market-critical order about to leave.

    ``send``: as it is. ``limit``: as a Limit order at ``limit_price`` (the caller rebuilds
    and re-signs the intent; the orderLinkId stays). ``refuse``: not at all.
    """

    action: CriticalAction
    rule: str
    inputs: dict[str, Any]
    limit_price: str | None = None

    def as_json(self) -> dict[str, Any]:
        """The decision as the audit entry ``failover.decision`` records it."""
        return {
            "decision": "critical-order",
            "rule": self.rule,
            "inputs": audit_plain(self.inputs),
            "action": self.action,
            "limit_price": self.limit_price,
        }


def critical_order(
    order_type: str,
    mode: ModeState,
    backup_latency_ms: float | None,
    ref_price: str | None,
    side: str,
    config: FailoverConfig,
) -> Critical:
    """Send, cap or refuse a market-critical order, from the backup link's latency.

    In NORMAL the order goes over a primary and the backup's latency is irrelevant
    (``normal``). In an OUTAGE, a backup within ``backup_latency_ms`` (inclusive) is fast
    enough for the order as it is (``latency-ok``). Above it, a Market order would fill at
    whatever the book holds by the time it arrives, so it becomes a Limit at
    ``critical_slippage_bps`` from ``ref_price``, rounded towards the reference exactly as
    the enqueue policy does (:func:`~airlock.queue.policy.capped_limit_price`; a Buy never
    pays above the cap, a Sell never receives below it) - ``slow-backup-limit`` - or is
    refused when there is no reference to cap from (``slow-backup-refuse``) or it cannot be
    capped (``invalid-ref-price``). An unmeasured latency (``None``) counts as slow: the
    cap is the safe side of not knowing. A Limit order already has its cap (``limit-has-cap``).

    Raises :class:`~airlock.errors.InvalidInput` for an ``order_type`` or ``side`` outside
    ``Market``/``Limit`` and ``Buy``/``Sell``: those come from stored, validated intents, so
    anything else is a caller's bug, not an order to judge.
    """
    if order_type not in ORDER_TYPES:
        raise InvalidInput(
            f"order_type must be one of {', '.join(ORDER_TYPES)}, got {order_type!r}"
        )
    if side not in SIDES:
        raise InvalidInput(f"side must be one of {', '.join(SIDES)}, got {side!r}")
    inputs: dict[str, Any] = {
        "order_type": order_type,
        "side": side,
        "mode": str(mode.mode),
        "backup_latency_ms": backup_latency_ms,
        "latency_threshold_ms": config.backup_latency_ms,
        "ref_price": ref_price,
        "critical_slippage_bps": config.critical_slippage_bps,
    }
    if mode.mode is Mode.NORMAL:
        return Critical("send", "normal", inputs)
    if backup_latency_ms is not None and backup_latency_ms <= config.backup_latency_ms:
        return Critical("send", "latency-ok", inputs)
    if order_type == "Limit":
        return Critical("send", "limit-has-cap", inputs)
    if ref_price is None:
        return Critical("refuse", "slow-backup-refuse", inputs)
    bps: Decimal = parse_bps(config.critical_slippage_bps)
    try:
        price = capped_limit_price(side, ref_price, bps)
    except InvalidInput as exc:
        return Critical("refuse", "invalid-ref-price", {**inputs, "error": str(exc)})
    return Critical("limit", "slow-backup-limit", inputs, limit_price=price)


# ----------------------------------------------------------------------------- escalation


def _seconds(ms: int) -> str:
    """Milliseconds as seconds for a message: 121500 -> "121.5", 120000 -> "120"."""
    return f"{ms / 1000:.3f}".rstrip("0").rstrip(".")


@dataclass(frozen=True)
class Escalation:
    """A reason to call an operator. ``key`` is stable per rule, for de-duplication: the
    same escalation raised on every pass of an outage is one alert, not hundreds."""

    rule: str
    message: str
    inputs: dict[str, Any]
    key: str

    def as_json(self) -> dict[str, Any]:
        """The escalation as the audit entry ``failover.decision`` records it."""
        return {
            "decision": "escalation",
            "rule": self.rule,
            "inputs": audit_plain(self.inputs),
            "key": self.key,
            "message": self.message,
        }


def escalations(
    live_items: int, oldest_age_ms: int | None, config: FailoverConfig
) -> list[Escalation]:
    """The escalations due for the queue's current depth and age, depth first.

    Strictly above the thresholds (``> 50 items``, ``> 120 s``): the playbook's numbers are
    the most the queue is trusted to ride out alone. ``oldest_age_ms`` is ``None`` when no
    live item waits. Why both: a deep queue means much is at stake, an old item means one
    thing has waited too long for anyone's comfort, and either alone warrants a human.
    """
    found: list[Escalation] = []
    if live_items > config.escalate_queue_items:
        found.append(
            Escalation(
                rule="queue-depth",
                message=(
                    f"{live_items} live items waiting in the queue, above the escalation "
                    f"threshold of {config.escalate_queue_items}"
                ),
                inputs={"live_items": live_items, "threshold": config.escalate_queue_items},
                key="escalate.queue-depth",
            )
        )
    limit = window_ms(config.escalate_oldest_s)
    if oldest_age_ms is not None and oldest_age_ms > limit:
        found.append(
            Escalation(
                rule="queue-age",
                message=(
                    f"the oldest live item has waited {_seconds(oldest_age_ms)} s, above the "
                    f"escalation threshold of {_seconds(limit)} s"
                ),
                inputs={"oldest_age_ms": oldest_age_ms, "threshold_ms": limit},
                key="escalate.queue-age",
            )
        )
    return found


__all__ = [
    "RULES",
    "Critical",
    "Escalation",
    "LinkView",
    "Mode",
    "ModeState",
    "Route",
    "critical_order",
    "escalations",
    "judge_mode",
    "route",
    "window_ms",
]
