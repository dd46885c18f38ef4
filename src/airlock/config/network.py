"""The EVM network side: ``[[links]]``, ``[[relays]]``, ``[broadcaster]`` and ``[failover]``.

Each field declares what it accepts (:mod:`airlock.config.settings`); below each section
are the few rules that relate its fields: a link is an address *or* a proxy, only private
relays take a method or an auth key, a connect timeout never exceeds the whole request's,
re-signing needs a cap.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import field, replace
from typing import Any

from airlock.config import checks
from airlock.config.settings import load_section, require_keys, section, setting
from airlock.errors import ConfigError
from airlock.vocab import PrivateMethod, RelayKind, RelayRole


@section
class LinkConfig:
    """A network path: outgoing connections bound to a local address, or through a proxy.

    With neither set, the link is the operating system's default route.
    """

    name: str = setting(check=checks.name)
    source_address: str | None = setting(
        default=None, check=checks.ip_address
    )  # local IP to bind to
    proxy: str | None = setting(
        default=None, check=checks.http_url
    )  # every request goes through it


@section
class RelayConfig:
    """One endpoint transactions are sent to (``[[relays]]``).

    ``evm-private`` relays only ever receive transactions queued as private, and private
    transactions only ever go to them. ``method`` is how a private relay takes a
    transaction: a Protect-style ``eth_sendRawTransaction`` endpoint, or
    ``eth_sendPrivateTransaction``. ``auth_key_label`` names a secp256k1 HSM key whose
    EIP-191 signature of the body goes in ``X-Flashbots-Signature``.
    """

    name: str = setting(check=checks.name)
    kind: RelayKind = setting()
    url: str = setting(check=checks.http_url)
    chain_id: int = setting(low=1, high=(1 << 63) - 1)
    link: str | None = setting(default=None, check=checks.reference)  # a [[links]] name
    method: PrivateMethod = "eth_sendRawTransaction"
    auth_key_label: str | None = setting(default=None, check=checks.label)
    timeout_seconds: float = setting(
        default=5.0, low=0.1, high=120
    )  # whole request, connect included
    connect_timeout_seconds: float = setting(default=2.0, low=0.1, high=60)
    batch_size: int = setting(default=100, low=1, high=1000)  # JSON-RPC calls per HTTP request
    role: RelayRole = "primary"  # backups carry what the failover rules allow

    @property
    def private(self) -> bool:
        return self.kind == "evm-private"


@section
class HealthConfig:
    """Probing and the hysteresis of the UP / DEGRADED / DOWN state machine."""

    probe_seconds: float = setting(
        default=5.0, low=0.01, high=3600
    )  # between probes of an up relay
    probe_down_seconds: float = setting(
        default=0.5, low=0.01, high=3600
    )  # ... of a down or degraded
    fall: int = setting(default=3, low=1, high=100)  # consecutive failures: DEGRADED -> DOWN
    rise: int = setting(default=2, low=1, high=100)  # consecutive successes: DEGRADED -> UP
    slow_ms: int = setting(default=2000, low=1, high=600_000)  # a slower successful probe: degraded


@section
class BroadcasterConfig:
    """When the broadcaster calls a transaction mined, stuck, or dropped."""

    confirmations: int = setting(
        default=3, low=1, high=10_000
    )  # blocks on the receipt's, counting it
    reorg_depth: int = setting(
        default=64, low=1, high=100_000
    )  # confirmed items are re-checked this deep
    bump_after_blocks: int = setting(
        default=3, low=1, high=10_000
    )  # no receipt after these: next variant
    bump_after_seconds: float = setting(
        default=60.0, low=0.1, high=86400
    )  # ... or this long, first wins
    rebroadcast_seconds: float = setting(
        default=120.0, low=0.1, high=86400
    )  # pending, unknown: resend
    reconcile_seconds: float = setting(default=30.0, low=0.1, high=86400)  # periodic reconcile pass
    resign: bool = False  # ladder exhausted: re-sign a higher fee through the HSM
    resign_max_fee_per_gas: int | None = setting(
        default=None, low=1, high=10**30
    )  # its cap, wei/gas
    name: str | None = setting(
        default=None, check=checks.name
    )  # on a shared queue: this one's name in leases (default: the host name)
    lease_ms: int | None = setting(
        default=None, low=100, high=600_000
    )  # on a shared queue: how long a lane is held unrenewed (default: [failover] heartbeat_gap_ms)
    health: HealthConfig = field(default_factory=HealthConfig)


@section
class FailoverConfig:
    """The outage playbook's rules (``[failover]``), applied by ``broadcaster.failover``."""

    heartbeat_gap_ms: int = setting(
        default=3000, low=1, high=3_600_000
    )  # OUTAGE: no primary answered ...
    missed_acks: int = setting(
        default=2, low=1, high=1000
    )  # ... or all missed this many probes in a row
    backup_window_s: float = setting(
        default=30.0, low=0, high=86_400
    )  # backups carry cancels this long
    backup_latency_ms: float = setting(
        default=200.0, low=0, high=600_000
    )  # above: critical orders capped
    critical_slippage_bps: int = setting(default=10, low=0, high=9_999)  # the cap for them: 0.1 %
    escalate_queue_items: int = setting(
        default=50, low=0, high=10_000_000
    )  # escalate: more live items ...
    escalate_oldest_s: float = setting(
        default=120.0, low=0, high=30 * 86_400
    )  # ... or the oldest waits


# -- rules between fields -------------------------------------------------------------------


def load_links(items: list[dict[str, Any]]) -> tuple[LinkConfig, ...]:
    """``[[links]]``: each named uniquely, an address or a proxy (or neither), not both."""
    links = []
    for where, table in _named(items, "links"):
        link = load_section(LinkConfig, where, table)
        if link.source_address is not None and link.proxy is not None:
            raise ConfigError(f"{where}: set source_address or proxy, not both")
        links.append(link)
    return tuple(links)


def load_relays(
    items: list[dict[str, Any]], links: tuple[LinkConfig, ...]
) -> tuple[RelayConfig, ...]:
    """``[[relays]]``: each named uniquely, its ``link`` one of ``links``."""
    names = [link.name for link in links]
    return tuple(_relay(where, table, names) for where, table in _named(items, "relays"))


def _named(items: list[dict[str, Any]], kind: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """Each table with how messages name it: ``#2`` until its name is known, then ``"a"``."""
    seen: dict[str, int] = {}
    for index, table in enumerate(items, 1):
        where = f"[[{kind}]] #{index}"
        require_keys(where, table, ("name",))
        name = checks.name(where, "name", table["name"])
        if name in seen:
            raise ConfigError(f"{where} name {name!r} is already used by [[{kind}]] #{seen[name]}")
        seen[name] = index
        yield f'[[{kind}]] "{name}"', table


def _relay(where: str, table: Mapping[str, Any], link_names: list[str]) -> RelayConfig:
    relay = load_section(RelayConfig, where, table)
    if relay.link is not None and relay.link not in link_names:
        known = ", ".join(link_names) if link_names else "none are defined"
        raise ConfigError(
            f"{where} link must name a [[links]] entry, got {relay.link!r}; known: {known}"
        )
    if not relay.private and relay.method != RelayConfig.method:
        raise ConfigError(
            f"{where} method {relay.method!r} is only for evm-private relays; "
            f"evm-rpc relays always use {RelayConfig.method}"
        )
    if not relay.private and relay.auth_key_label is not None:
        raise ConfigError(f"{where} auth_key_label is only for evm-private relays")
    if "connect_timeout_seconds" not in table:
        # an unset connect timeout follows a total timeout set below it
        connect = min(relay.connect_timeout_seconds, relay.timeout_seconds)
        return replace(relay, connect_timeout_seconds=connect)
    if relay.connect_timeout_seconds > relay.timeout_seconds:
        raise ConfigError(
            f"{where} connect_timeout_seconds ({relay.connect_timeout_seconds:g}) must not "
            f"exceed timeout_seconds ({relay.timeout_seconds:g})"
        )
    return relay


def load_broadcaster(table: Mapping[str, Any]) -> BroadcasterConfig:
    """``[broadcaster]``: a reorg depth of at least the confirmations, a cap to re-sign under."""
    config = load_section(BroadcasterConfig, "broadcaster", table)
    if "reorg_depth" not in table:
        # an unset reorg depth follows confirmations set above it
        config = replace(config, reorg_depth=max(config.reorg_depth, config.confirmations))
    elif config.reorg_depth < config.confirmations:
        raise ConfigError(
            f"[broadcaster] reorg_depth ({config.reorg_depth}) must be >= confirmations "
            f"({config.confirmations})"
        )
    if config.resign and config.resign_max_fee_per_gas is None:
        raise ConfigError(
            "[broadcaster] resign = true needs resign_max_fee_per_gas: re-signing needs a cap"
        )
    return config
