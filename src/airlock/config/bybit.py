"""The Bybit venue: ``[bybit]`` and its outage policy, ``[bybit.policy]``.

:class:`PolicyConfig` is also built in code (tests, the drill, benchmarks), so unlike the
other sections it checks itself when constructed; :mod:`airlock.queue.policy` applies it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import field
from typing import Any

from airlock.config import checks
from airlock.config.settings import check_values, load_section, section, setting
from airlock.errors import ConfigError
from airlock.vocab import Category, DcpProduct, MarketLimitTif, SendOver, SignType, StreamBackoff

BPS_PER_UNIT = 10_000
"""Basis points in 1 (100 %). A Sell cap at 10 000 bps would be a limit price of zero."""


@section
class PolicyConfig:
    """The outage playbook's knobs. Defaults follow ../shared/design/ARCHITECTURE.md.

    ``default_ttl_s``: how long a GTC or PostOnly order given no ``--ttl`` waits for the link
    (1 hour): long enough to ride out an ordinary outage, short enough that nobody forgets it.

    ``max_ttl_s``: the longest any order may wait (1 day). Beyond it the trader's view of the
    market is too old for the order to still be what they meant.

    ``market_ttl_s``: how long a Market order rewritten as a Limit order waits when given no
    ``--ttl`` (60 s). Shorter than ``default_ttl_s`` because its price comes from a reference
    snapshot, which ages fast; the converted order should rest only briefly.

    ``immediate_ttl_s``: how long an IOC, FOK or Market order accepted while the venue is up
    may sit in the queue (5 s) if the link drops before it is sent; after that it expires
    rather than fire late.

    ``max_slippage_bps``: the widest slippage cap a Market-to-Limit rewrite accepts (500 bps =
    5 %). Must stay below 10 000: a Sell capped at 100 % would be a limit price of zero.

    ``allow_market_with_ref``: whether Market orders may be rewritten at all in an outage
    (True). False refuses every Market order while the venue is unreachable.

    ``market_limit_tif``: the time in force of the rewritten order. GTC (default) lets it rest
    until filled or its TTL ends; IOC would make it a true "market order with a price limit"
    (fill what is available within the cap, cancel the rest).
    """

    default_ttl_s: int = setting(default=3600, low=1)
    max_ttl_s: int = setting(default=86_400, low=1)
    market_ttl_s: int = setting(default=60, low=1)
    immediate_ttl_s: int = setting(default=5, low=1)
    max_slippage_bps: int = setting(default=500, low=0, high=BPS_PER_UNIT - 1)
    allow_market_with_ref: bool = True
    market_limit_tif: MarketLimitTif = setting(default="GTC", says="GTC or IOC")

    def __post_init__(self) -> None:
        """A bad policy is a setup mistake: refuse it when built, wherever it was built."""
        check_values(self, "bybit.policy")
        for name in ("default_ttl_s", "market_ttl_s", "immediate_ttl_s"):
            if getattr(self, name) > self.max_ttl_s:
                raise ConfigError(
                    f"[bybit.policy] {name} ({getattr(self, name)}) exceeds max_ttl_s "
                    f"({self.max_ttl_s})"
                )


@section
class StreamConfig:
    """The private stream (``[bybit.stream]``): fills and order changes the moment they
    happen, a REST pass after every reconnect (docs/bybit.md#the-private-stream)."""

    enabled: bool = True
    url: str | None = setting(default=None, check=checks.ws_url)  # None: beside base_url
    ping_seconds: float = setting(default=20.0, low=0.05, high=600)  # Bybit: every 20 s
    stale_seconds: float = setting(default=45.0, low=0.1, high=3600)  # silent this long: replaced
    auth_timeout_seconds: float = setting(default=10.0, low=0.1, high=120)  # first start bound
    backoff: StreamBackoff = "full-jitter"
    backoff_base_seconds: float = setting(default=0.5, low=0.001, high=600)
    backoff_cap_seconds: float = setting(default=30.0, low=0.001, high=3600)


@section
class BybitConfig:
    """The Bybit V5 venue (``[bybit]``): where orders go and which HSM keys sign them.

    Exactly one of ``secret_label`` (an HSM secret object for HMAC-SHA256 request
    signatures) and ``rsa_key_label`` (an HSM RSA key for self-generated API keys) is set.
    ``intent_key_label`` names the P-256 key that signs order intents at enqueue time.
    ``api_key`` is not a secret to Bybit, but airlock never prints it in full: it is left
    out of ``repr`` and shown as :attr:`api_key_hint`.
    """

    base_url: str = setting(check=checks.http_url)
    api_key: str = setting(check=checks.api_key, repr=False)
    secret_label: str | None = setting(default=None, check=checks.label)
    rsa_key_label: str | None = setting(default=None, check=checks.label)
    recv_window_ms: int = setting(default=5000, low=1, high=60_000)
    intent_key_label: str = setting(default="airlock-intents", check=checks.label)
    category: Category = "linear"
    timeout_seconds: float = setting(
        default=10.0, low=0.1, high=120
    )  # whole request, connect included
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    account: str = setting(default="bybit", check=checks.label)  # the queue's name for this account
    probe_seconds: float = setting(
        default=5.0, low=0.01, high=3600
    )  # link and key, while connected
    reconcile_seconds: float = setting(default=30.0, low=0.01, high=86_400)  # also at (re)connect
    retry_base_seconds: float = setting(
        default=0.5, low=0.001, high=600
    )  # backoff for link failures
    retry_cap_seconds: float = setting(
        default=30.0, low=0.001, high=3600
    )  # ... never longer than this
    retry_jitter: float = setting(
        default=0.2, low=0, high=1
    )  # ... shortened by up to this at random
    stream: StreamConfig = field(default_factory=StreamConfig)
    account_seconds: float = setting(
        default=60.0, low=0.01, high=86_400
    )  # positions and wallet over REST (also at every reconnect)
    settle_coin: str = setting(default="USDT", check=checks.name)  # whose positions are listed
    dcp_window_s: int | None = setting(default=None, low=3, high=300)  # None: DCP not armed
    dcp_product: DcpProduct = "DERIVATIVES"
    send_over: SendOver = "rest"  # "ws": orders over the trade stream, REST when it is down

    @property
    def sign_type(self) -> SignType:
        """How requests are signed: ``hmac`` (``secret_label``) or ``rsa`` (``rsa_key_label``)."""
        return "rsa" if self.rsa_key_label is not None else "hmac"

    @property
    def api_key_hint(self) -> str:
        """The API key safe to print: its first 4 characters and an ellipsis.

        Never more than half the key, so a short (test) key is not shown whole either.
        """
        return self.api_key[: min(4, len(self.api_key) // 2)] + "\u2026"


def load_bybit(table: Mapping[str, Any]) -> BybitConfig:
    """``[bybit]``: one way to sign requests, and a backoff whose cap is not below its base."""
    config = load_section(BybitConfig, "bybit", table)
    labels = [key for key in ("secret_label", "rsa_key_label") if getattr(config, key) is not None]
    if len(labels) != 1:
        problem = "both are set" if labels else "neither is set"
        raise ConfigError(
            f"[bybit]: set exactly one of secret_label (HMAC secret in the HSM) or "
            f"rsa_key_label (RSA key in the HSM); {problem}"
        )
    if config.retry_cap_seconds < config.retry_base_seconds:
        raise ConfigError("[bybit] retry_cap_seconds must be at least retry_base_seconds")
    stream = config.stream
    if stream.backoff_cap_seconds < stream.backoff_base_seconds:
        raise ConfigError(
            "[bybit.stream] backoff_cap_seconds must be at least backoff_base_seconds"
        )
    if stream.stale_seconds <= stream.ping_seconds:
        raise ConfigError(
            "[bybit.stream] stale_seconds must be longer than ping_seconds: a stream is "
            "judged silent only after a ping went unanswered"
        )
    if config.dcp_window_s is not None and not stream.enabled:
        raise ConfigError(
            "[bybit] dcp_window_s needs the private stream ([bybit.stream] enabled): the "
            "venue cancels when every subscribed stream is gone, so one must be connected"
        )
    return config
