"""The asynchronous JSON-RPC client for one EVM relay, as the broadcaster uses it.

A relay is an endpoint reached over a link (design/ARCHITECTURE.md, "Links"): the client
binds its connections to the link's source address or sends them through its proxy, and
never to anything else (no proxy from the environment, no redirects followed: a redirect
could carry a private transaction to a public endpoint). The HTTP layer
(:mod:`airlock.relays.http`, :mod:`airlock.relays.aiohttp_transport`) does the binding,
the timeouts and the size-limited reads; ``transport=`` replaces it in a test.

Nothing a relay answers is believed blindly. Bodies are read with a size limit and parsed
with a depth limit (:mod:`airlock.encoding.jsonlimit`); every JSON-RPC reply must carry one of
our ids exactly once and exactly one of ``result`` / ``error``; results are checked for
shape. Any violation is a :class:`RelayTransportError` for the whole request: a link or
server that garbles one reply cannot be trusted with the others. A well-formed JSON-RPC
error for one call is that call's answer (:class:`Reply`, or :class:`RelayRpcError` from
:meth:`EvmRelay.call`).

:meth:`EvmRelay.send_raw` never raises: each transaction gets a
:class:`~airlock.relays.outcomes.Classified`, TRANSPORT when its request failed.

This module must not import ``airlock.queue`` or ``airlock.hsm``: the Flashbots signer is
an injected callable (:class:`FlashbotsAuth`, built with
:func:`airlock.signer.eip191.make_flashbots_signer`).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from eth_utils.crypto import keccak

from airlock.encoding.jsonlimit import loads_limited
from airlock.errors import ConfigError
from airlock.redact import redact_url
from airlock.relays.aiohttp_transport import AiohttpTransport
from airlock.relays.classify import classify_error, classify_send_result, transport
from airlock.relays.errors import (
    SHOW_CHARS,
    BodyTooLarge,
    ConnectTimeout,
    HttpError,
    ReadTimeout,
    RelayRpcError,
    RelayTransportError,
    clip,
)
from airlock.relays.http import AsyncTransport, HttpClient, Request, Response, Timeouts
from airlock.relays.outcomes import Classified, Receipt
from airlock.signer.eip191 import flashbots_message, personal_message_digest

if TYPE_CHECKING:  # airlock.config imports airlock.hsm.uri, which relays must not load
    from airlock.config import LinkConfig, RelayConfig

SEND_RAW = "eth_sendRawTransaction"
SEND_PRIVATE = "eth_sendPrivateTransaction"
FLASHBOTS_HEADER = "X-Flashbots-Signature"
POOL_SIZE = 8
"""Connections kept alive per relay, and HTTP requests in flight at once."""
DEFAULT_MAX_RESPONSE_BYTES = 8 << 20
"""8 MiB: the largest answer is a batch of ``batch_size`` receipts or transactions (up to
1000 calls of a few KiB each), twice the Bybit client's 4 MiB of one page of rows."""
_BLOCK_TAGS = frozenset({"latest", "pending", "safe", "finalized", "earliest"})

_HASH = re.compile(r"0x[0-9a-fA-F]{64}")
_ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")
_QUANTITY = re.compile(r"0x[0-9a-fA-F]{1,64}")

T = TypeVar("T")
Call = tuple[str, list[Any]]

__all__ = [  # the errors live in airlock.relays.errors; callers catch them from here too
    "EvmRelay",
    "FlashbotsAuth",
    "Probe",
    "RawTx",
    "Receipt",
    "RelayRpcError",
    "RelayTransportError",
    "Reply",
    "started",
]


@dataclass(frozen=True)
class Reply:
    """One call's answer within a batch: a result, or a JSON-RPC error code and message."""

    result: Any = None
    error_code: int | None = None
    error_message: str | None = None

    @property
    def ok(self) -> bool:
        return self.error_code is None and self.error_message is None


@dataclass(frozen=True)
class Probe:
    """What a health probe learned: the relay's chain and its head."""

    chain_id: int
    block_number: int


@dataclass(frozen=True)
class RawTx:
    """Signed transaction bytes and their hash (lowercase ``0x`` hex), as queued.

    ``sender`` (optional) keeps one sender's transactions in order where a relay takes
    them one request at a time: a nonce must not overtake the one before it.
    """

    raw: bytes
    tx_hash: str
    sender: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.raw, bytes) or not self.raw:
            raise ValueError("raw must be non-empty bytes")
        if not isinstance(self.tx_hash, str) or not _HASH.fullmatch(self.tx_hash):
            raise ValueError(f"tx_hash must be 0x + 64 hex digits, got {self.tx_hash!r}")
        if self.tx_hash != self.tx_hash.lower():
            raise ValueError(f"tx_hash must be lowercase, got {self.tx_hash!r}")

    @classmethod
    def of(cls, raw: bytes) -> RawTx:
        """The RawTx of ``raw``, its hash computed (keccak256 of the signed envelope)."""
        return cls(bytes(raw), "0x" + keccak(bytes(raw)).hex())


@dataclass(frozen=True)
class FlashbotsAuth:
    """Who signs ``X-Flashbots-Signature``: a checksum address and an async signer that
    takes the 32-byte EIP-191 digest and returns 65 bytes ``r || s || v``."""

    address: str
    sign: Callable[[bytes], Awaitable[bytes]]


class _Garbage(ValueError):
    """A reply or result does not have the shape JSON-RPC and the method promise."""


class EvmRelay(HttpClient):
    """One relay: a keep-alive connection pool over its link, and typed calls.

    Use ``async with EvmRelay(...)`` (or :meth:`start` / :meth:`close`). Every request has
    the relay's timeouts: ``timeout_seconds`` for the whole request, connect included,
    and ``connect_timeout_seconds`` for the TCP connect. At most :data:`POOL_SIZE`
    requests are in flight; the others wait *before* their timeout starts, so a large
    batch split in many chunks does not time out in the queue. ``transport`` replaces the
    network (tests); by default it is an :class:`AiohttpTransport` bound to the link.
    """

    def __init__(
        self,
        config: RelayConfig,
        link: LinkConfig | None = None,
        *,
        auth: FlashbotsAuth | None = None,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        transport: AsyncTransport | None = None,
    ) -> None:
        _check_config(config, link)
        super().__init__(
            transport or _link_transport(config, link),
            label=f"relay {config.name!r}",
            max_response_bytes=max_response_bytes,
        )
        self._config = config
        self._link = link
        self._auth = auth
        self._ids = itertools.count(1)
        self._slots = asyncio.Semaphore(POOL_SIZE)

    # -- identity -------------------------------------------------------------------

    @property
    def name(self) -> str:
        return self._config.name

    @property
    def private(self) -> bool:
        return self._config.private

    @property
    def chain_id(self) -> int:
        """The chain the configuration says this relay serves (compare with probe())."""
        return self._config.chain_id

    @property
    def config(self) -> RelayConfig:
        return self._config

    def __repr__(self) -> str:
        link = self._link.name if self._link else None
        return f"EvmRelay(name={self.name!r}, url={redact_url(self._config.url)!r}, link={link!r})"

    # -- lifecycle ------------------------------------------------------------------

    async def start(self) -> None:
        """Open the connection pool (bound to the link's source address, if any)."""
        if not self._started:  # fresh slots: a restarted relay may run in another loop
            self._slots = asyncio.Semaphore(POOL_SIZE)
        await super().start()

    # -- generic calls --------------------------------------------------------------

    async def call(self, method: str, params: list[Any]) -> Any:
        """``method(params)`` as one request; its result, or an error raised.

        Raises :class:`RelayTransportError` or :class:`RelayRpcError`.
        """
        (reply,) = await self._exchange([(method, params)])
        return self._result(method, reply)

    async def batch(self, calls: Sequence[Call]) -> list[Reply]:
        """The calls as JSON-RPC batches of ``batch_size``; one :class:`Reply` per call, in
        order. Any chunk that fails raises :class:`RelayTransportError` (after all chunks
        have finished, so nothing is left running)."""
        replies: list[Reply] = []
        for outcome in await self._chunks(list(calls)):
            if isinstance(outcome, BaseException):
                raise outcome
            replies.extend(outcome)
        return replies

    # -- sending ----------------------------------------------------------------------

    async def send_raw(self, txs: Sequence[RawTx]) -> list[Classified]:
        """Send signed transactions; one classified outcome per tx, in order. Never raises.

        ``eth_sendPrivateTransaction`` relays get one ``[{"tx": …}]`` request per tx
        (Flashbots-style relays take no batches); every other relay gets
        ``eth_sendRawTransaction`` in batches. A failed request makes every tx in it
        TRANSPORT.
        """
        txs = list(txs)
        try:
            if self._config.method == SEND_PRIVATE:
                return await self._send_private(txs)
            return await self._send_batched(txs)
        except Exception as exc:  # the contract: an outcome per tx, never an exception
            return [transport(self._failure(exc))] * len(txs)

    async def _send_batched(self, txs: list[RawTx]) -> list[Classified]:
        calls: list[Call] = [(SEND_RAW, ["0x" + tx.raw.hex()]) for tx in txs]
        outcomes = await self._chunks(calls)
        results: list[Classified] = []
        for chunk, outcome in zip(_chunked(txs, self._batch_size), outcomes, strict=True):
            if isinstance(outcome, BaseException):
                results.extend([transport(self._failure(outcome))] * len(chunk))
            else:
                results.extend(
                    _classify(tx, reply) for tx, reply in zip(chunk, outcome, strict=True)
                )
        return results

    async def _send_private(self, txs: list[RawTx]) -> list[Classified]:
        async def send_one(tx: RawTx) -> Classified:
            try:
                result = await self.call(SEND_PRIVATE, [{"tx": "0x" + tx.raw.hex()}])
            except RelayRpcError as exc:
                return classify_error(exc.message, exc.code)
            except Exception as exc:
                return transport(self._failure(exc))
            return classify_send_result(result, tx.tx_hash)

        async def send_lane(lane: list[int]) -> None:
            for n in lane:  # in the caller's (nonce) order
                answers[n] = await send_one(txs[n])

        answers: list[Classified | None] = [None] * len(txs)
        lanes: dict[object, list[int]] = {}
        for n, tx in enumerate(txs):
            lanes.setdefault(tx.sender if tx.sender is not None else n, []).append(n)
        await asyncio.gather(*(send_lane(lane) for lane in lanes.values()))
        return [a for a in answers if a is not None]

    # -- reads the broadcaster needs -------------------------------------------------

    async def probe(self) -> Probe:
        """Chain id and head block in one batch: the health probe."""
        chain, head = await self.batch([("eth_chainId", []), ("eth_blockNumber", [])])
        return Probe(
            chain_id=self._quantity("eth_chainId", self._result("eth_chainId", chain)),
            block_number=self._quantity("eth_blockNumber", self._result("eth_blockNumber", head)),
        )

    async def block_number(self) -> int:
        return self._quantity("eth_blockNumber", await self.call("eth_blockNumber", []))

    async def block_hash(self, number: int) -> str | None:
        """The hash of canonical block ``number`` (lowercase), or None if the relay has none."""
        if isinstance(number, bool) or not isinstance(number, int) or number < 0:
            raise ValueError(f"block number must be a non-negative int, got {number!r}")
        method = "eth_getBlockByNumber"
        block = await self.call(method, [hex(number), False])
        if block is None:
            return None
        return self._checked(method, _block_hash_of, block, number)

    async def receipts(self, hashes: Sequence[str]) -> dict[str, Receipt | None]:
        """Receipts by tx hash: a :class:`Receipt`, None for "no receipt", and no key at
        all when the relay answered that call with an error (e.g. ``transaction indexing
        is in progress``): unknown, ask again later."""
        method = "eth_getTransactionReceipt"
        answers = await self._per_key(method, _unique(hashes, _HASH, "tx hash"), lambda h: [h])
        return {
            tx_hash: None if raw is None else self._checked(method, _receipt_of, raw, tx_hash)
            for tx_hash, raw in answers.items()
        }

    async def transaction_counts(
        self, senders: Sequence[str], block: str = "latest"
    ) -> dict[str, int]:
        """Nonces (``eth_getTransactionCount``) by sender at ``block``; a sender whose call
        got a JSON-RPC error has no key."""
        if block not in _BLOCK_TAGS and not _QUANTITY.fullmatch(block):
            raise ValueError(f"block must be a tag or a hex quantity, got {block!r}")
        method = "eth_getTransactionCount"
        unique = _unique(senders, _ADDRESS, "address")
        answers = await self._per_key(method, unique, lambda sender: [sender, block])
        return {sender: self._quantity(method, raw) for sender, raw in answers.items()}

    async def known(self, hashes: Sequence[str]) -> dict[str, bool]:
        """Whether the relay knows each tx (``eth_getTransactionByHash`` is not null); a
        hash whose call got a JSON-RPC error has no key."""
        method = "eth_getTransactionByHash"
        answers = await self._per_key(method, _unique(hashes, _HASH, "tx hash"), lambda h: [h])
        return {
            tx_hash: raw is not None and self._checked(method, _tx_matches, raw, tx_hash)
            for tx_hash, raw in answers.items()
        }

    async def _per_key(
        self, method: str, keys: list[str], params: Callable[[str], list[Any]]
    ) -> dict[str, Any]:
        """One batched call per key; the results of those answered without an error."""
        replies = await self.batch([(method, params(key)) for key in keys])
        return {key: reply.result for key, reply in zip(keys, replies, strict=True) if reply.ok}

    # -- one HTTP request -------------------------------------------------------------

    @property
    def _batch_size(self) -> int:
        """Calls per request: ``batch_size``, or 1 for an ``eth_sendPrivateTransaction``
        relay (Flashbots-style relays refuse JSON-RPC batches of any method)."""
        if self._config.method == SEND_PRIVATE:
            return 1
        return max(1, self._config.batch_size)

    async def _chunks(self, calls: list[Call]) -> list[list[Reply] | BaseException]:
        """Each chunk of ``batch_size`` calls as one request, concurrently (bounded)."""
        chunks = _chunked(calls, self._batch_size)
        return list(
            await asyncio.gather(*(self._exchange(c) for c in chunks), return_exceptions=True)
        )

    async def _exchange(self, calls: list[Call]) -> list[Reply]:
        """One HTTP request for ``calls``: a single request object for one call (relays
        that take no batches still work with ``batch_size = 1``), an array otherwise."""
        ids = [next(self._ids) for _ in calls]
        requests = [
            {"jsonrpc": "2.0", "id": request_id, "method": method, "params": params}
            for request_id, (method, params) in zip(ids, calls, strict=True)
        ]
        single = len(requests) == 1
        body = json.dumps(requests[0] if single else requests, separators=(",", ":")).encode()
        what = calls[0][0] if single else _batch_name(calls)
        answer = await self._post(body, what)
        try:
            return [_single_reply(answer, ids[0])] if single else _batch_replies(answer, ids)
        except _Garbage as exc:
            raise RelayTransportError(self.name, f"{what}: {exc}") from None

    async def _post(self, body: bytes, what: str) -> Any:
        """POST ``body`` (signed if the relay wants it); the parsed JSON answer."""
        self._require_started()
        async with self._slots:
            headers = {"Content-Type": "application/json", "Accept": "application/json"}
            if self._auth is not None:
                headers[FLASHBOTS_HEADER] = await self._flashbots_signature(body, what)
            raw = await self._fetch(body, headers, what)
        try:
            return loads_limited(raw)
        except ValueError as exc:
            raise RelayTransportError(
                self.name, f"{what}: unusable answer ({exc}); it starts {_show(raw[:60])}"
            ) from None

    async def _fetch(self, body: bytes, headers: dict[str, str], what: str) -> bytes:
        request = Request(
            "POST",
            self._config.url,
            max_bytes=self._max_response_bytes,
            body=body,
            headers=headers,
            error_preview_bytes=SHOW_CHARS,
        )
        try:
            response = await self._send(request)
        except HttpError as exc:
            raise RelayTransportError(self.name, f"{what}: {self._why(exc)}") from None
        if not response.ok:
            raise RelayTransportError(self.name, _http_failure(response, what))
        return response.body

    def _why(self, exc: HttpError) -> str:
        """The HTTP layer's failure in this relay's words (the URL redacted: messages
        reach logs, the CLI and the audit log)."""
        shown = redact_url(self._config.url)
        if isinstance(exc, ConnectTimeout):
            limit = self._config.connect_timeout_seconds
            return f"could not connect to {shown} within {limit} s"
        if isinstance(exc, ReadTimeout):
            return f"no complete answer from {shown} within {self._config.timeout_seconds} s"
        if isinstance(exc, BodyTooLarge):
            return exc.detail
        return f"request to {shown} failed: {exc.detail}"

    async def _flashbots_signature(self, body: bytes, what: str) -> str:
        """``address:0x<sig>``: EIP-191 signature of ``0x`` + hex keccak256(body).

        A signer that fails or hangs makes the request impossible, which for the caller is
        the same as a dead link: RelayTransportError (the probe fails too, and alerts).
        """
        assert self._auth is not None
        digest = personal_message_digest(flashbots_message(body))
        try:
            async with asyncio.timeout(self._config.timeout_seconds):
                signature = await self._auth.sign(digest)
        except Exception as exc:
            raise RelayTransportError(
                self.name, f"{what}: cannot sign the {FLASHBOTS_HEADER} header: {exc!r}"
            ) from exc
        if not isinstance(signature, bytes | bytearray) or len(signature) != 65:
            raise RelayTransportError(
                self.name, f"{what}: the {FLASHBOTS_HEADER} signer returned no 65-byte signature"
            )
        return f"{self._auth.address}:0x{bytes(signature).hex()}"

    # -- helpers ----------------------------------------------------------------------

    def _result(self, method: str, reply: Reply) -> Any:
        if not reply.ok:
            raise RelayRpcError(self.name, method, reply.error_code or 0, reply.error_message or "")
        return reply.result

    def _quantity(self, method: str, value: Any) -> int:
        return self._checked(method, _quantity, value, "the result")

    def _checked(self, method: str, parse: Callable[..., T], *args: Any) -> T:
        """Run a result parser; its complaint becomes a RelayTransportError naming the call."""
        try:
            return parse(*args)
        except _Garbage as exc:
            raise RelayTransportError(self.name, f"{method}: {exc}") from None

    def _failure(self, exc: BaseException) -> str:
        if isinstance(exc, RelayTransportError):
            return str(exc)
        return f"relay {self.name!r}: {type(exc).__name__}: {exc}"


# --------------------------------------------------------------------------- pure parts


@contextlib.asynccontextmanager
async def started(relays: Sequence[EvmRelay]) -> AsyncIterator[list[EvmRelay]]:
    """Start every relay's session; close them all on the way out, whatever happens."""
    async with contextlib.AsyncExitStack() as stack:
        for relay in relays:
            await stack.enter_async_context(relay)
        yield list(relays)


def _link_transport(config: RelayConfig, link: LinkConfig | None) -> AiohttpTransport:
    """The network as the link reaches it: its source address or its proxy, the relay's
    timeouts, and one connection per request slot."""
    return AiohttpTransport(
        Timeouts(config.timeout_seconds, config.connect_timeout_seconds),
        source_address=link.source_address if link else None,
        proxy=link.proxy if link else None,
        pool_size=POOL_SIZE,
    )


def _check_config(config: RelayConfig, link: LinkConfig | None) -> None:
    """Refuse a relay that would silently use another path than its configured link."""
    if not config.url.startswith(("http://", "https://")):
        raise ConfigError(f"relay {config.name!r}: url must start with http:// or https://")
    given = link.name if link else None
    if given != config.link:
        raise ConfigError(
            f"relay {config.name!r} is configured on link {config.link!r} but was given "
            f"link {given!r}"
        )
    if config.timeout_seconds <= 0 or config.connect_timeout_seconds <= 0:
        raise ConfigError(f"relay {config.name!r}: timeouts must be positive")


def _batch_name(calls: list[Call]) -> str:
    methods = {method for method, _ in calls}
    kind = f" {next(iter(methods))}" if len(methods) == 1 else ""
    return f"batch of {len(calls)}{kind} calls"


def _chunked(items: list[T], size: int) -> list[list[T]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def _unique(values: Sequence[str], pattern: re.Pattern[str], what: str) -> list[str]:
    """Validated values, duplicates dropped (order kept): one call per distinct value."""
    for value in values:
        if not isinstance(value, str) or not pattern.fullmatch(value):
            raise ValueError(f"not a 0x-prefixed {what}: {value!r}")
    return list(dict.fromkeys(values))


def _classify(tx: RawTx, reply: Reply) -> Classified:
    if reply.ok:
        return classify_send_result(reply.result, tx.tx_hash)
    return classify_error(reply.error_message or "", reply.error_code)


def _single_reply(answer: Any, request_id: int) -> Reply:
    if isinstance(answer, list):
        raise _Garbage("answered a single call with an array")
    reply_id, reply = _reply_of(answer)
    if reply_id != request_id:
        raise _Garbage(f"the reply has id {reply_id}, the request had {request_id}")
    return reply


def _batch_replies(answer: Any, ids: list[int]) -> list[Reply]:
    """Match a batch answer to the request ids: each exactly once, nothing else."""
    if isinstance(answer, dict):
        raise _Garbage(f"answered a batch with a single object: {_show(answer)}")
    if not isinstance(answer, list):
        raise _Garbage(f"answered a batch with {_kind(answer)}, not an array")
    wanted = set(ids)
    by_id: dict[int, Reply] = {}
    for element in answer:
        reply_id, reply = _reply_of(element)
        if reply_id not in wanted:
            raise _Garbage(f"a reply has id {reply_id}, which no call in the batch had")
        if reply_id in by_id:
            raise _Garbage(f"id {reply_id} is answered twice")
        by_id[reply_id] = reply
    if len(by_id) != len(ids):
        missing = [i for i in ids if i not in by_id]
        raise _Garbage(f"{len(missing)} of {len(ids)} calls got no reply (ids {missing[:5]})")
    return [by_id[i] for i in ids]


def _reply_of(element: Any) -> tuple[int, Reply]:
    """One JSON-RPC response object: its id and its Reply, or _Garbage."""
    if not isinstance(element, dict):
        raise _Garbage(f"a reply is {_kind(element)}, not an object")
    version = element.get("jsonrpc", "2.0")  # absent is tolerated; another version is not
    if version != "2.0":
        raise _Garbage(f"a reply says jsonrpc {_show(version)}, not '2.0'")
    has_result, has_error = "result" in element, "error" in element
    reply_id = element.get("id")
    if type(reply_id) is not int:  # bool and float ids compare equal to ints: refuse them
        detail = f": {_show(element['error'])}" if has_error else ""
        shown = "no id" if "id" not in element else f"id {_show(reply_id)}"
        raise _Garbage(f"a reply has {shown}, not one of ours{detail}")
    if has_result == has_error:
        raise _Garbage(
            f"reply {reply_id} has {'both' if has_result else 'neither'} result and error"
        )
    if has_result:
        return reply_id, Reply(result=element["result"])
    error = element["error"]
    if not isinstance(error, dict):
        raise _Garbage(f"reply {reply_id} has an error that is not an object: {_show(error)}")
    code, message = error.get("code"), error.get("message")
    if type(code) is not int or not isinstance(message, str):
        raise _Garbage(f"reply {reply_id} has a malformed error object: {_show(error)}")
    return reply_id, Reply(error_code=code, error_message=message)


def _quantity(value: Any, what: str) -> int:
    """A strict JSON-RPC hex quantity: ``0x`` and 1-64 hex digits, nothing else."""
    if not isinstance(value, str) or not _QUANTITY.fullmatch(value):
        raise _Garbage(f"{what} is {_show(value)}, not a hex quantity")
    return int(value, 16)


def _hash(value: Any, what: str) -> str:
    if not isinstance(value, str) or not _HASH.fullmatch(value):
        raise _Garbage(f"{what} is {_show(value)}, not a 32-byte hex hash")
    return value.lower()


def _receipt_of(raw: Any, tx_hash: str) -> Receipt:
    if not isinstance(raw, dict):
        raise _Garbage(f"the receipt for {tx_hash} is {_kind(raw)}, not an object")
    answered = _hash(raw.get("transactionHash"), "transactionHash")
    if answered != tx_hash.lower():
        raise _Garbage(f"asked for the receipt of {tx_hash}, got the receipt of {answered}")
    return Receipt(
        tx_hash=answered,
        block_number=_quantity(raw.get("blockNumber"), f"blockNumber of {tx_hash}"),
        block_hash=_hash(raw.get("blockHash"), f"blockHash of {tx_hash}"),
        status=_quantity(raw.get("status"), f"status of {tx_hash}"),
    )


def _tx_matches(raw: Any, tx_hash: str) -> bool:
    if not isinstance(raw, dict):
        raise _Garbage(f"the transaction {tx_hash} is {_kind(raw)}, not an object")
    answered = _hash(raw.get("hash"), "hash")
    if answered != tx_hash.lower():
        raise _Garbage(f"asked for transaction {tx_hash}, got {answered}")
    return True


def _block_hash_of(block: Any, number: int) -> str:
    if not isinstance(block, dict):
        raise _Garbage(f"block {number} is {_kind(block)}, not an object")
    answered = _quantity(block.get("number"), "the block's number")
    if answered != number:
        raise _Garbage(f"asked for block {number}, got block {answered}")
    return _hash(block.get("hash"), f"the hash of block {number}")


def _http_failure(response: Response, what: str) -> str:
    """``HTTP 503 Service Unavailable`` and the start of the body, for the operator."""
    shown = f": {_show(response.body)}" if response.body else ""
    return f"{what}: HTTP {response.status} {response.reason}".rstrip() + shown


def _kind(value: Any) -> str:
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean"}
    if value is None:
        return "null"
    return names.get(type(value), "a number" if isinstance(value, int | float) else "?")


def _show(value: Any) -> str:
    """A short printable rendering of something a relay sent, for an error message."""
    if isinstance(value, bytes):
        return clip(repr(value.decode("utf-8", errors="replace")))
    return clip(json.dumps(value))
