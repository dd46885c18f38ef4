"""The service's local HTTP API: the library's methods as JSON over HTTP, and an event stream.

Paths (docs/api.md and docs/openapi.yaml are the contract)::

    POST /v1/transactions            queue_transaction      201 new, 200 replayed
    POST /v1/transactions:batch      queue_transactions     all or nothing
    POST /v1/orders                  queue_order
    POST /v1/orders:batch            queue_orders
    GET  /v1/items/{id}              item
    GET  /v1/items?state=&kind=&after=&limit=
    POST /v1/items/{id}/cancel       cancel
    GET  /v1/events?after=N          Server-Sent Events; Last-Event-ID resumes
    GET  /v1/health

Bodies mirror the library's keyword arguments (integers that may exceed 2^53 as decimal
strings). Every error is an RFC 9457 problem document (:mod:`airlock.api.problems`). A
body is read up to ``[api] max_body_bytes`` and parsed with the depth-limited reader, so
neither a huge nor a deeply nested body can hurt the service. Each call runs the blocking
library in a worker thread: an HSM signature or an fsync never stalls the event loop that
also drives the broadcaster.
"""

from __future__ import annotations

import asyncio
import functools
import hmac
import json
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from aiohttp import web
from aiohttp.typedefs import Middleware

from airlock.api import problems
from airlock.api.client import Airlock
from airlock.api.records import Queued
from airlock.encoding.jsonlimit import loads_limited
from airlock.errors import AirlockError, InvalidInput

log = logging.getLogger("airlock.api")

T = TypeVar("T")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

BODY_DEPTH = 16  # a transaction with an access list is 4 deep; a batch of them 6
EVENTS_PAGE = 500
EVENTS_POLL_S = 0.05  # how often a quiet stream looks for new events
KEEPALIVE_S = 15.0  # a comment line this often, so proxies and clients see a live stream
MAX_EVENT_ID = 2**63 - 1  # SQLite's largest integer
AIRLOCK_KEY: web.AppKey[Airlock] = web.AppKey("airlock", Airlock)


def make_app(
    al: Airlock,
    *,
    token: str | None = None,
    max_body_bytes: int = 1 << 20,
    max_batch: int = 1000,
) -> web.Application:
    """The application over ``al``; ``token`` set: every request needs it (TCP)."""
    app = web.Application(
        middlewares=[_problems_middleware, *([_bearer(token)] if token else [])],
        client_max_size=max_body_bytes,
    )
    app[AIRLOCK_KEY] = al
    api = _Api(al, max_body_bytes, max_batch)
    app.on_shutdown.append(api.stop_streams)
    app.router.add_post("/v1/transactions", api.queue_transaction)
    app.router.add_post("/v1/transactions:batch", api.queue_transactions)
    app.router.add_post("/v1/orders", api.queue_order)
    app.router.add_post("/v1/orders:batch", api.queue_orders)
    # No implicit HEAD: a HEAD of the event stream writes nothing, so it would never
    # notice its client leave, and the contract (docs/openapi.yaml) has none.
    app.router.add_get("/v1/items", api.items, allow_head=False)
    app.router.add_get("/v1/items/{item_id}", api.item, allow_head=False)
    app.router.add_post("/v1/items/{item_id}/cancel", api.cancel)
    app.router.add_get("/v1/events", api.events, allow_head=False)
    app.router.add_get("/v1/health", api.health, allow_head=False)
    return app


class _Api:
    def __init__(self, al: Airlock, max_body_bytes: int, max_batch: int) -> None:
        self.al = al
        self.max_body_bytes = max_body_bytes
        self.max_batch = max_batch
        self.stopping = asyncio.Event()

    async def stop_streams(self, _: web.Application) -> None:
        """End every event stream when the server shuts down: a stream never ends by
        itself, and the runner would otherwise wait out its shutdown timeout for each."""
        self.stopping.set()

    async def _call(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        return await asyncio.to_thread(functools.partial(fn, *args, **kwargs))

    # -- queueing -----------------------------------------------------------------------

    async def queue_transaction(self, request: web.Request) -> web.Response:
        body = await self._object(request)
        tx = body.pop("tx", None)
        queued = await self._call(self.al.queue_transaction, tx, **body)
        return _queued(queued)

    async def queue_transactions(self, request: web.Request) -> web.Response:
        batch = self._batch(await self._object(request), "transactions")
        return _queued_batch(await self._call(self.al.queue_transactions, batch))

    async def queue_order(self, request: web.Request) -> web.Response:
        body = await self._object(request)
        return _queued(await self._call(self.al.queue_order, **body))

    async def queue_orders(self, request: web.Request) -> web.Response:
        body = await self._object(request)
        venue = body.pop("venue", "auto")
        batch = self._batch(body, "orders")
        return _queued_batch(await self._call(self.al.queue_orders, batch, venue=venue))

    def _batch(self, body: dict[str, Any], name: str) -> list[Any]:
        unknown = sorted(set(body) - {name})
        if unknown:
            raise InvalidInput(
                f"unknown member(s) of a batch: {', '.join(unknown)}", field=unknown[0]
            )
        batch = body.get(name)
        if not isinstance(batch, list) or not batch:
            raise InvalidInput(f"{name} must be a non-empty list", field=name)
        if len(batch) > self.max_batch:
            raise InvalidInput(
                f"{name} holds {len(batch)} items; at most {self.max_batch} per batch "
                "([api] max_batch)",
                field=name,
            )
        return batch

    async def _object(self, request: web.Request) -> dict[str, Any]:
        """The body as a JSON object, size- and depth-limited."""
        if request.content_length is not None and request.content_length > self.max_body_bytes:
            raise _Refusal(problems.too_large(self.max_body_bytes))
        try:
            raw = await request.read()
        except web.HTTPRequestEntityTooLarge:
            raise _Refusal(problems.too_large(self.max_body_bytes)) from None
        try:
            body = loads_limited(raw, BODY_DEPTH)
        except ValueError as exc:
            raise _Refusal(problems.bad_body(str(exc))) from None
        if not isinstance(body, dict):
            raise _Refusal(problems.bad_body(f"the body must be a JSON object, not {_kind(body)}"))
        return body

    # -- reading and cancelling ---------------------------------------------------------

    async def item(self, request: web.Request) -> web.Response:
        found = await self._call(self.al.item, request.match_info["item_id"])
        return _json(found.as_json())

    async def items(self, request: web.Request) -> web.Response:
        query = request.query
        _only(query, {"state", "kind", "after", "limit"})
        found = await self._call(
            self.al.items,
            _list(query, "state"),
            _list(query, "kind"),
            after=query.get("after"),
            limit=_int(query, "limit", 1, 10_000, default=100),
        )
        return _json({"items": [i.as_json() for i in found]})

    async def cancel(self, request: web.Request) -> web.Response:
        outcome = await self._call(self.al.cancel, request.match_info["item_id"])
        return _json(outcome.as_json())

    async def health(self, request: web.Request) -> web.Response:
        last = await self._call(self.al.store.events.last_id)
        return _json({"status": "ok", "last_event_id": last})

    # -- the event stream ---------------------------------------------------------------

    async def events(self, request: web.Request) -> web.StreamResponse:
        """Every event after ``Last-Event-ID`` (or ``?after=``), then new ones as they are
        committed, until the client goes away or the service stops."""
        _only(request.query, {"after", "item"})
        after = _resume_point(request)
        item = request.query.get("item")
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-cache",
                "X-Accel-Buffering": "no",
            }
        )
        await response.prepare(request)
        woken = asyncio.Event()  # a commit in this process: look now, not at the next poll
        loop = asyncio.get_running_loop()

        def wake() -> None:
            loop.call_soon_threadsafe(woken.set)

        unsubscribe = self.al.store.events.on_commit(wake)
        try:
            await self._follow(request, response, after, item, woken)
        finally:
            unsubscribe()
        return response

    async def _follow(
        self,
        request: web.Request,
        response: web.StreamResponse,
        after: int,
        item: str | None,
        woken: asyncio.Event,
    ) -> None:
        quiet = 0.0
        while not self.stopping.is_set() and _connected(request):
            woken.clear()
            rows = await self._call(self.al.events, after, EVENTS_PAGE, item)
            for event in rows:
                await response.write(_sse(event.id, event.type, event.as_json()))
                after = event.id
            if len(rows) == EVENTS_PAGE:
                continue
            if not rows:
                quiet += EVENTS_POLL_S
                if quiet >= KEEPALIVE_S:
                    await response.write(b": keep-alive\n\n")
                    quiet = 0.0
            else:
                quiet = 0.0
            await self._pause(woken)

    async def _pause(self, woken: asyncio.Event) -> None:
        """Wait one poll interval (other processes' writes), or less: a commit of this
        process, or the server shutting down."""
        waits = [asyncio.ensure_future(e.wait()) for e in (woken, self.stopping)]
        try:
            await asyncio.wait(waits, timeout=EVENTS_POLL_S, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for wait in waits:
                wait.cancel()


class _Refusal(Exception):
    """A request refused before it reached the library (body, query, auth)."""

    def __init__(self, problem: problems.Problem) -> None:
        super().__init__(problem.detail)
        self.problem = problem


@web.middleware
async def _problems_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except _Refusal as exc:
        return _problem(exc.problem)
    except AirlockError as exc:
        return _problem(problems.of_error(exc))
    except web.HTTPNotFound:
        return _problem(problems.not_found(request.path))
    except web.HTTPMethodNotAllowed as exc:
        response = _problem(problems.not_allowed(request.method, request.path))
        response.headers["Allow"] = ", ".join(sorted(exc.allowed_methods))  # RFC 9110
        return response
    except web.HTTPRequestEntityTooLarge:  # the exception does not keep the limit
        return _problem(problems.too_large(request.client_max_size))
    except (ConnectionResetError, asyncio.CancelledError):
        raise
    except Exception:
        reference = uuid.uuid4().hex[:12]
        log.exception("local API: unexpected error (reference %s)", reference)
        return _problem(problems.internal(reference))


def _bearer(token: str) -> Middleware:
    expected = token.encode()

    @web.middleware
    async def check(request: web.Request, handler: Handler) -> web.StreamResponse:
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        # The scheme is case-insensitive (RFC 9110 11.1); the token is compared in
        # constant time whatever the scheme, so a wrong one takes as long as a right one.
        # aiohttp keeps bytes that are not UTF-8 as surrogates: give them back as bytes.
        given_bytes = given.strip().encode("utf-8", "surrogateescape")
        matches = hmac.compare_digest(given_bytes, expected)
        if not matches or scheme.lower() != "bearer":
            response = _problem(problems.unauthorized())
            response.headers["WWW-Authenticate"] = 'Bearer realm="airlock"'
            return response
        return await handler(request)

    return check


def _resume_point(request: web.Request) -> int:
    """``Last-Event-ID`` (a reconnecting EventSource sends it) wins over ``?after=``."""
    raw = request.headers.get("Last-Event-ID", "").strip()
    if raw:
        return _whole("Last-Event-ID", raw, 0, MAX_EVENT_ID)
    return _int(request.query, "after", 0, MAX_EVENT_ID, default=0)


def _connected(request: web.Request) -> bool:
    """Whether the client is still there: a quiet stream writes nothing for a while, so a
    client that left would otherwise be polled for until the next keep-alive."""
    return request.transport is not None and not request.transport.is_closing()


def _only(query: Any, known: set[str]) -> None:
    unknown = sorted(set(query) - known)
    if unknown:
        raise InvalidInput(f"unknown query parameter(s): {', '.join(unknown)}", field=unknown[0])


def _list(query: Any, name: str) -> list[str] | None:
    """``?state=a&state=b`` or ``?state=a,b``."""
    values = [part for raw in query.getall(name, []) for part in raw.split(",") if part]
    return values or None


def _int(query: Any, name: str, low: int, high: int, *, default: int) -> int:
    raw = query.get(name)
    return default if raw is None else _whole(name, raw, low, high)


def _whole(name: str, raw: str, low: int, high: int) -> int:
    """ASCII digits only (``str.isdigit`` also takes "²", which ``int`` refuses), and in
    range (SQLite's integers end at 2^63 - 1)."""
    if not raw.isascii() or not raw.isdigit() or not low <= int(raw) <= high:
        raise InvalidInput(f"{name} must be a whole number {low}..{high}, got {raw!r}", field=name)
    return int(raw)


def _kind(value: Any) -> str:
    return {list: "an array", str: "a string", bool: "a boolean"}.get(
        type(value), "a number" if isinstance(value, int | float) else "null"
    )


def _sse(event_id: int, kind: str, data: dict[str, Any]) -> bytes:
    return f"id: {event_id}\nevent: {kind}\ndata: {json.dumps(data)}\n\n".encode()


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(
        body=json.dumps(data).encode(), status=status, content_type="application/json"
    )


def _queued(queued: Queued) -> web.Response:
    return _json(queued.as_json(), 200 if queued.replayed else 201)


def _queued_batch(batch: list[Queued]) -> web.Response:
    status = 200 if all(q.replayed for q in batch) else 201
    return _json({"items": [q.as_json() for q in batch]}, status)


def _problem(problem: problems.Problem) -> web.Response:
    return web.Response(
        body=problem.body(), status=problem.status, content_type=problems.CONTENT_TYPE
    )
