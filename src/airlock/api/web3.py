"""web3.py integration: a bot's ``w3.eth.send_transaction(tx)`` signed in the HSM and queued.

A bot that already builds web3 ``TxParams`` dicts adds one middleware::

    sender = airlock_middleware(al, key="hot-1", chain_id=1, ladder=3)
    w3.middleware_onion.add(sender)          # the outermost layer
    tx_hash = w3.eth.send_transaction({"from": sender.address, "to": ..., ...})

The middleware answers ``eth_sendTransaction`` from the key's address itself, as web3's
own ``SignAndSendRawMiddlewareBuilder`` intercepts it, but nothing goes to the node: the
transaction (with its fee ladder and cancel) is signed in the HSM and stored in the
durable queue by :meth:`Airlock.queue_transaction`, and the answer is the hash of its
first fee level. The broadcaster service sends it later. Every other request, and by
default a transaction from any other address, goes on to the node unchanged.

Airlock signs ahead, through node outages, so this path never asks the node: chainId,
gas and the fees come from the dict or from the middleware's defaults, never from
``eth_chainId``/``eth_estimateGas``/the latest block (a bot that wants the node's chain
id passes ``chain_id=w3.eth.chain_id`` once, at set-up). That is also why it must be
the outermost layer: web3's default ``gas_price_strategy``, ``validation`` and
``gas_estimate`` middlewares ask the node about every ``eth_sendTransaction`` (and
``validation`` drops ``chainId``) before an inner layer sees it.

This is the only module that imports web3 (it is heavy): import it only where a bot uses it.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import itertools
import logging
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from web3.middleware.base import Web3Middleware

from airlock.api.aio import AsyncAirlock
from airlock.api.checks import TX_OPTIONS
from airlock.api.client import Airlock
from airlock.api.records import Queued
from airlock.errors import ConfigError, InvalidInput

if TYPE_CHECKING:
    from web3 import AsyncWeb3, Web3
    from web3.types import AsyncMakeRequestFn, MakeRequestFn, RPCEndpoint, RPCResponse

__all__ = ["AirlockMiddleware", "AirlockSender", "airlock_middleware", "idempotent"]

log = logging.getLogger(__name__)

SEND_TRANSACTION = "eth_sendTransaction"

# web3's default middlewares that ask the node about every eth_sendTransaction.
NODE_ASKING = ("gas_price_strategy", "validation", "gas_estimate")

# Defaults filled into a dict that lacks them: our keyword -> the web3 field it fills.
FIELD_DEFAULTS = {"chain_id": "chainId", "gas": "gas", "tx_type": "type"}
# Fees are one group: filled only when the dict names no fee at all, so a dict's own
# gasPrice never meets a default maxFeePerGas.
FEE_DEFAULTS = {
    "max_fee": "maxFeePerGas",
    "priority_fee": "maxPriorityFeePerGas",
    "gas_price": "gasPrice",
}
# Per-transaction things, never defaults (the key is its own argument; an idempotency
# key shared by every transaction would replay the first one for ever).
NOT_DEFAULTS = frozenset({"key", "to", "value", "data", "nonce", "access_list", "idempotency_key"})

_IDEMPOTENCY_KEY: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "airlock_web3_idempotency_key", default=None
)
_REPLY_IDS = itertools.count(1)


@contextlib.contextmanager
def idempotent(key: str) -> Iterator[None]:
    """Queue the ``send_transaction`` calls in the block under idempotency ``key``.

    TxParams has no place for one (web3 would refuse an unknown field), so it travels in
    a context variable: it follows the call into the middleware, in threads and asyncio
    tasks alike. A retry of the same dict under the same key answers with the first
    item's hash and stores nothing new; another dict under it raises
    :class:`~airlock.queue.errors.IdempotencyConflict`. One transaction per key.
    """
    if not isinstance(key, str) or not key:
        raise InvalidInput(
            "the idempotency key must be a non-empty string", field="idempotency_key"
        )
    token = _IDEMPOTENCY_KEY.set(key)
    try:
        yield
    finally:
        _IDEMPOTENCY_KEY.reset(token)


class AirlockSender:
    """One HSM key as a web3 sender: the middleware builder ``middleware_onion.add`` takes
    (web3 calls it with each ``Web3`` it builds the onion for).

    ``address`` is the key's checksum address, the ``from`` it answers for; :meth:`queue`
    queues one web3 dict directly, the way the middleware does. Build it with
    :func:`airlock_middleware`.
    """

    def __init__(
        self,
        al: Airlock | AsyncAirlock,
        key: str,
        *,
        pass_through: bool = True,
        on_queued: Callable[[Queued], None] | None = None,
        **defaults: Any,
    ) -> None:
        self.airlock = al.sync if isinstance(al, AsyncAirlock) else al
        self.key = key
        self.pass_through = pass_through
        self.on_queued = on_queued
        self.field_defaults, self.fee_defaults, self.options = _split_defaults(defaults)
        self.address = _address(self.airlock, key)  # a missing key fails here, at set-up

    def __call__(self, w3: Web3 | AsyncWeb3[Any] | None) -> AirlockMiddleware:
        if w3 is not None:
            _check_outermost(w3, self)
        return AirlockMiddleware(w3, self)

    def owns(self, tx: Mapping[str, Any]) -> bool:
        """Whether ``tx`` is this key's to sign. Another sender (a missing ``from`` too:
        web3 fills it from ``w3.eth.default_account`` before any middleware) goes to the
        node, or is refused when ``pass_through`` is off."""
        sender = tx.get("from")
        if isinstance(sender, str) and sender.lower() == self.address.lower():
            return True
        if not self.pass_through:
            raise InvalidInput(
                f"tx['from'] is {sender} but this airlock middleware signs only for "
                f"{self.address} (key {self.key!r}) and pass_through is off",
                field="from",
            )
        return False

    def queue(self, tx: Mapping[str, Any], idempotency_key: str | None = None) -> Queued:
        """Queue ``tx`` with the defaults filled in: durable when it returns."""
        queued = self.airlock.queue_transaction(
            self.filled(tx), key=self.key, idempotency_key=idempotency_key, **self.options
        )
        for warning in queued.warnings:  # web3 returns only the hash: say the rest here
            log.warning("airlock item %s: %s", queued.id, warning)
        if self.on_queued is not None:
            self.on_queued(queued)
        return queued

    def filled(self, tx: Mapping[str, Any]) -> dict[str, Any]:
        """``tx`` with the defaults where it has none and ``value`` 0 when absent (as web3
        fills it); raises naming what is still missing, since the node is never asked."""
        filled = dict(tx)
        filled.setdefault("value", 0)
        for name, value in self.field_defaults.items():
            filled.setdefault(name, value)
        if not any(name in filled for name in FEE_DEFAULTS.values()):
            filled.update(self.fee_defaults)
        _require_offline_fields(filled)
        return filled


class AirlockMiddleware(Web3Middleware):
    """The layer itself: answers the sender's ``eth_sendTransaction`` with the first hash
    of the queued item, without calling the layers below it; the rest goes down."""

    def __init__(self, w3: Web3 | AsyncWeb3[Any] | None, sender: AirlockSender) -> None:
        super().__init__(w3)  # type: ignore[arg-type]  # None only outside an onion
        self.sender = sender

    def _ours(self, method: RPCEndpoint, params: Any) -> Mapping[str, Any] | None:
        """The transaction dict when this request is the sender's to answer."""
        if method != SEND_TRANSACTION or not params or not isinstance(params[0], Mapping):
            return None
        return params[0] if self.sender.owns(params[0]) else None

    def wrap_make_request(self, make_request: MakeRequestFn) -> MakeRequestFn:
        def middleware(method: RPCEndpoint, params: Any) -> RPCResponse:
            tx = self._ours(method, params)
            if tx is None:
                return make_request(method, params)
            return _reply(self.sender.queue(tx, _IDEMPOTENCY_KEY.get()))

        return middleware

    async def async_wrap_make_request(self, make_request: AsyncMakeRequestFn) -> AsyncMakeRequestFn:
        async def middleware(method: RPCEndpoint, params: Any) -> RPCResponse:
            tx = self._ours(method, params)
            if tx is None:
                return await make_request(method, params)
            # HSM signatures and an fsync must not stall the bot's event loop.
            queued = await asyncio.to_thread(self.sender.queue, tx, _IDEMPOTENCY_KEY.get())
            return _reply(queued)

        return middleware

    # Persistent-connection providers (WebSocket, async IPC) only let a middleware rewrite
    # a request, never answer it (and web3 itself refuses eth_sendTransaction in a batch):
    # refuse rather than let the sender's transaction reach the node unsigned.

    def request_processor(self, method: RPCEndpoint, params: Any) -> Any:
        if self._ours(method, params) is not None:
            raise ConfigError(
                "airlock answers eth_sendTransaction itself, which web3 allows only over a "
                "request/response provider: use HTTPProvider, AsyncHTTPProvider or the "
                "sync IPCProvider for the bot's sends (not WebSocketProvider or "
                "AsyncIPCProvider)"
            )
        return method, params

    async def async_request_processor(self, method: RPCEndpoint, params: Any) -> Any:
        return self.request_processor(method, params)


def airlock_middleware(
    al: Airlock | AsyncAirlock,
    key: str = "hot-1",
    *,
    pass_through: bool = True,
    on_queued: Callable[[Queued], None] | None = None,
    **defaults: Any,
) -> AirlockSender:
    """The middleware for HSM key ``key``: ``w3.middleware_onion.add(airlock_middleware(al))``.

    ``defaults`` are :meth:`Airlock.queue_transaction` keywords: ``chain_id``, ``gas``,
    ``tx_type`` and the fees (``max_fee`` + ``priority_fee``, or ``gas_price``) fill a
    dict that lacks them (the fees only when it names none); ``ladder``, ``bump_pct``,
    ``max_fee_cap``, ``with_cancel``, ``ttl``, ``strategy``, ``private`` and ``priority``
    apply to every transaction. ``pass_through=False`` refuses a transaction from another
    address instead of sending it to the node. ``on_queued`` receives each
    :class:`Queued` (its ``id`` is what :meth:`Airlock.wait` takes) once it is durable;
    what it raises reaches the caller with the item queued (retry under
    :func:`idempotent` to get the same answer).
    """
    return AirlockSender(al, key, pass_through=pass_through, on_queued=on_queued, **defaults)


def _split_defaults(
    defaults: Mapping[str, Any],
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """Field defaults and fee defaults (by their web3 names), and the per-call options;
    a name that is no option, or is per transaction, fails at set-up, not at a send."""
    fields, fees, options = {}, {}, {}
    for name, value in defaults.items():
        if name in NOT_DEFAULTS or name not in TX_OPTIONS:
            hint = " (use idempotent())" if name == "idempotency_key" else ""
            raise InvalidInput(
                f"{name!r} cannot be a default of the airlock middleware{hint}; defaults: "
                f"{', '.join(sorted(TX_OPTIONS - NOT_DEFAULTS))}",
                field=name,
            )
        if value is None:
            continue
        if name in FIELD_DEFAULTS:
            fields[FIELD_DEFAULTS[name]] = value
        elif name in FEE_DEFAULTS:
            fees[FEE_DEFAULTS[name]] = value
        else:
            options[name] = value
    return fields, fees, options


def _require_offline_fields(tx: Mapping[str, Any]) -> None:
    """What web3 would fetch from the node must be in ``tx``: say where to put it."""
    for web3_name, ours in (("chainId", "chain_id"), ("gas", "gas")):
        if tx.get(web3_name) is None:
            raise InvalidInput(
                f"tx has no {web3_name!r}: airlock signs ahead without asking the node, so "
                f"give it in the dict or as airlock_middleware(..., {ours}=...)",
                field=web3_name,
            )
    if all(tx.get(name) is None for name in FEE_DEFAULTS.values()):
        raise InvalidInput(
            "tx has no fee: airlock signs ahead without asking the node, so give "
            "maxFeePerGas and maxPriorityFeePerGas (or gasPrice) in the dict, or "
            "airlock_middleware(..., max_fee=..., priority_fee=...) (or gas_price=...)",
            field="maxFeePerGas",
        )


def _check_outermost(w3: Web3 | AsyncWeb3[Any], sender: AirlockSender) -> None:
    """Refuse to sit inside web3's node-asking middlewares: they would call the node (and
    drop chainId) for every transaction before airlock saw it, so outages would fail."""
    outer: list[str] = []
    for layer, name in w3.middleware_onion.middleware:
        if layer is sender:
            break
        outer.append(str(name))
    else:
        return  # not in this onion by itself (wrapped by the bot): nothing to judge
    asking = [name for name in outer if name in NODE_ASKING]
    if asking:
        raise ConfigError(
            f"the airlock middleware sits inside web3's {', '.join(asking)} middleware, "
            "which asks the node before airlock sees a transaction: add it as the "
            "outermost layer with w3.middleware_onion.add(...), not inject(..., layer=0)"
        )


def _address(al: Airlock, key: str) -> str:
    from airlock.signer.evm import address_from_public_key

    return address_from_public_key(al.keyring.ecdsa_key(key, curve="secp256k1").public_key)


def _reply(queued: Queued) -> RPCResponse:
    """The JSON-RPC answer web3 expects from the node: the first fee level's hash."""
    first = next(v.hash for v in queued.variants if v.kind == "step")
    return {"jsonrpc": "2.0", "id": next(_REPLY_IDS), "result": first}
