"""The closed sets of words airlock reads from config files, the CLI and the venue.

Each set is declared once, as a ``Literal`` type for the type checker, and its values as a
tuple for the code that checks input at runtime (the tuple is derived from the type, so the
two cannot drift apart). A leaf: no airlock imports, so the config floor, the signer, the
broadcaster and the CLI can all share one spelling of each word.
"""

from __future__ import annotations

from typing import Literal, get_args

# -- Bybit V5 ---------------------------------------------------------------------------

Category = Literal["linear", "spot", "inverse"]
Side = Literal["Buy", "Sell"]
OrderType = Literal["Limit", "Market"]
TimeInForce = Literal["GTC", "IOC", "FOK", "PostOnly"]
SignType = Literal["hmac", "rsa"]  # HSM-held HMAC secret, or an RSA key (self-generated API key)
MarketLimitTif = Literal["GTC", "IOC"]  # what a Market order rewritten as a Limit order gets

CATEGORIES: tuple[Category, ...] = get_args(Category)
SIDES: tuple[Side, ...] = get_args(Side)
ORDER_TYPES: tuple[OrderType, ...] = get_args(OrderType)
TIMES_IN_FORCE: tuple[TimeInForce, ...] = get_args(TimeInForce)
SIGN_TYPES: tuple[SignType, ...] = get_args(SignType)

# -- relays and the service -------------------------------------------------------------

RelayKind = Literal["evm-rpc", "evm-private"]
RelayRole = Literal["primary", "backup"]  # backups carry what the failover rules allow
PrivateMethod = Literal["eth_sendRawTransaction", "eth_sendPrivateTransaction"]
LogFormat = Literal["text", "json"]

RELAY_KINDS: tuple[RelayKind, ...] = get_args(RelayKind)
RELAY_ROLES: tuple[RelayRole, ...] = get_args(RelayRole)
PRIVATE_METHODS: tuple[PrivateMethod, ...] = get_args(PrivateMethod)
LOG_FORMATS: tuple[LogFormat, ...] = get_args(LogFormat)

StreamBackoff = Literal["full-jitter", "fixed"]
"""How a venue's stream spaces its reconnection attempts."""
DcpProduct = Literal["DERIVATIVES", "SPOT", "OPTIONS"]
"""The product Bybit's Disconnect Cancel Protection covers (the venue's default is OPTIONS)."""
SendOver = Literal["rest", "ws"]
"""How Bybit orders are sent: REST, or the trade stream (REST when it is down)."""
