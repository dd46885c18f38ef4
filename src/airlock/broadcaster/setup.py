"""Build a broadcaster from the configuration: relays, their links and auth, re-signing.

The only place that joins the HSM to the network side: it hands relays an injected
signer for ``X-Flashbots-Signature`` and the broadcaster a re-signing callable, so
neither ``relays/`` nor ``broadcaster/service`` ever holds a key object of its own.
"""

from __future__ import annotations

import contextlib

from airlock.broadcaster.alerts import AlertSink
from airlock.broadcaster.keeper import KeeperSettings, LaneKeeper, holder_name
from airlock.broadcaster.metrics import Metrics
from airlock.broadcaster.results import Resigner
from airlock.broadcaster.runner import Service
from airlock.broadcaster.service import Broadcaster
from airlock.broadcaster.slo_gauges import SloCollector
from airlock.broadcaster.venue import VenueBroadcaster, VenueSettings
from airlock.broadcaster.venue_stream import TradeLink, VenueStream
from airlock.config import AirlockConfig, BybitConfig
from airlock.errors import ConfigError
from airlock.hsm.keyring import KeyRing
from airlock.queue.items import Item
from airlock.queue.payloads import TxPayload
from airlock.queue.store import Store, VariantDraft
from airlock.relays.bybit import BackoffPolicy, BybitClient
from airlock.relays.bybit_stream import stream_url
from airlock.relays.jsonrpc import EvmRelay, FlashbotsAuth
from airlock.signer import evm
from airlock.signer.bybit import hmac_signature, rsa_signature
from airlock.signer.eip191 import make_flashbots_signer
from airlock.signer.ladder import fee_of, level_above


def build_relays(config: AirlockConfig, keyring: KeyRing | None) -> list[EvmRelay]:
    """One client per ``[[relays]]`` entry, bound to its link, with its auth key if any."""
    if not config.relays:
        raise ConfigError(
            f"no relays configured: add [[relays]] entries to {config.home / 'airlock.toml'} "
            "(see docs/configuration.md)"
        )
    links = {link.name: link for link in config.links}
    relays = []
    for relay in config.relays:
        auth = None
        if relay.auth_key_label is not None:
            if keyring is None:
                raise ConfigError(f"relay {relay.name!r} needs the HSM for its auth key")
            key = keyring.ecdsa_key(relay.auth_key_label, curve="secp256k1")
            address, sign = make_flashbots_signer(key)
            auth = FlashbotsAuth(address=address, sign=sign)
        link = links.get(relay.link) if relay.link else None
        relays.append(EvmRelay(relay, link, auth=auth))
    return relays


def make_resigner(config: AirlockConfig, keyring: KeyRing) -> Resigner | None:
    """The re-signer the configuration allows, or None when re-signing is off."""
    settings = config.broadcaster
    if not settings.resign or settings.resign_max_fee_per_gas is None:
        return None
    return resigner(keyring, settings.resign_max_fee_per_gas, config.evm.bump_pct)


def resigner(keyring: KeyRing, cap: int, bump_pct: float) -> Resigner:
    """Sign one fee level above an item's top variant with its own HSM key, never above
    ``cap`` wei per gas; None when no valid replacement fits under the cap."""

    def resign(store: Store, item: Item) -> VariantDraft | None:
        if item.signer is None:
            return None
        intent = evm.intent_from_json(TxPayload.of(store.items.payload(item.id)).intent)
        steps = [v for v in store.items.variants(item.id) if v.kind == "step"]
        top = max(steps, key=lambda v: v.fee_per_gas)
        following = level_above(intent, top.fee_per_gas, top.tip_per_gas, bump_pct, cap)
        if following is None:
            return None
        signed = evm.sign_transaction(following, keyring.ecdsa_key(item.signer, "secp256k1"))
        return VariantDraft(
            kind="step",
            tx_hash=signed.hash_hex,
            fee_per_gas=fee_of(following),
            tip_per_gas=following.max_priority_fee_per_gas,
            raw=signed.raw,
        )

    return resign


def build_venue(
    settings: BybitConfig, keyring: KeyRing, store: Store, metrics: Metrics | None = None
) -> VenueBroadcaster:
    """The Bybit side from ``[bybit]``: a client whose requests are signed by the HSM at
    send time, and the intent key's public half to check every intent before it leaves.

    Fails (HsmError) before anything is sent when a key is missing."""
    intent_pem = keyring.public_key_pem(settings.intent_key_label).encode()
    if settings.secret_label is not None:
        label = settings.secret_label
        keyring.info(label)  # a missing secret fails here, not at the first order

        def sign(payload: bytes) -> str:
            with _timed(metrics, "hmac"):
                return hmac_signature(lambda data: keyring.hmac_sha256(label, data), payload)
    else:
        assert settings.rsa_key_label is not None
        rsa_label = settings.rsa_key_label
        keyring.info(rsa_label)

        def sign(payload: bytes) -> str:
            with _timed(metrics, "rsa"):
                return rsa_signature(lambda data: keyring.rsa_sign_sha256(rsa_label, data), payload)

    backoff = BackoffPolicy(
        base_s=settings.retry_base_seconds,
        cap_s=settings.retry_cap_seconds,
        jitter=settings.retry_jitter,
    )
    venues: list[VenueBroadcaster] = []
    client = BybitClient(
        settings.base_url,
        settings.api_key,
        sign,
        settings.sign_type,
        recv_window_ms=settings.recv_window_ms,
        timeout_s=settings.timeout_seconds,
        backoff=backoff,
        on_alert=lambda message: venues[0].alert_from_client(message),
    )
    venue = VenueBroadcaster(
        store,
        client,
        intent_pem,
        VenueSettings(
            recv_window_ms=settings.recv_window_ms,
            probe_s=settings.probe_seconds,
            reconcile_s=settings.reconcile_seconds,
            backoff=backoff,
            category=settings.category,
            account=settings.account,
            account_s=settings.account_seconds,
            settle_coin=settings.settle_coin,
        ),
    )
    venues.append(venue)
    _streams(venue, settings)
    return venue


def _streams(venue: VenueBroadcaster, settings: BybitConfig) -> None:
    """The private stream (``[bybit.stream]``) and, with ``send_over = "ws"``, the trade
    stream beside it (the same host, ``/v5/trade``)."""
    if settings.stream.enabled:
        url = settings.stream.url or stream_url(settings.base_url)
        dcp = (
            None if settings.dcp_window_s is None else (settings.dcp_product, settings.dcp_window_s)
        )
        venue.stream = VenueStream(venue, url, settings.stream, dcp=dcp)
    if settings.send_over == "ws":
        url = (settings.stream.url or stream_url(settings.base_url)).replace(
            "/v5/private", "/v5/trade"
        )
        venue.trade = TradeLink(
            venue, url, settings.stream, reply_timeout_s=settings.timeout_seconds
        )  # a reply waits as long as a REST answer would


def _timed(metrics: Metrics | None, op: str) -> contextlib.AbstractContextManager[None]:
    """The HSM signing latency metric, when the service keeps metrics."""
    return metrics.time_sign(op) if metrics is not None else contextlib.nullcontext()


def build_service(config: AirlockConfig, store: Store, keyring: KeyRing) -> Service:
    """The whole service from the configuration: the EVM side for ``[[relays]]``, the
    Bybit side for ``[bybit]``, metrics and the status page (served by
    :meth:`Service.run` beside ``/metrics``), and alert delivery signed by the HSM's
    webhook secret. Nothing is started: use ``async with service.started()``. A missing
    key or secret fails here, before anything is sent."""
    if not config.relays and config.bybit is None:
        raise ConfigError(
            f"nothing to broadcast to: add [[relays]] or [bybit] to "
            f"{config.home / 'airlock.toml'} (see docs/configuration.md)"
        )
    metrics = Metrics(store)
    metrics.registry.register(SloCollector(store, config.slo))
    evm = None
    if config.relays:
        relays = build_relays(config, keyring)
        resign = make_resigner(config, keyring)
        evm = Broadcaster(store, relays, config.broadcaster, resigner=resign)
    venue = build_venue(config.bybit, keyring, store, metrics) if config.bybit else None
    sign = None
    label = config.service.webhook_secret_label
    if label is not None:
        keyring.info(label)

        def sign(body: bytes) -> bytes:
            return keyring.hmac_sha256(label, body)

    sink = AlertSink(store, config.service, sign, metrics)
    return Service(
        store,
        evm,
        venue,
        failover=config.failover,
        settings=config.service,
        sink=sink,
        metrics=metrics,
        keeper=build_keeper(config, store),
        bybit=config.bybit,
    )


def build_keeper(config: AirlockConfig, store: Store) -> LaneKeeper | None:
    """On a PostgreSQL queue, the lanes this broadcaster shares it by; on SQLite none (one
    broadcaster per file, by its lock)."""
    if store.engine != "postgres":
        return None
    lease_ms = config.broadcaster.lease_ms or config.failover.heartbeat_gap_ms
    settings = KeeperSettings(lease_ms=lease_ms, tick_ms=max(lease_ms // 4, 50))
    return LaneKeeper(store, settings=settings, holder=holder_name(config.broadcaster.name or ""))
