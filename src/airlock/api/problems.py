"""What each error means over HTTP: an RFC 9457 problem document and its status code.

Pure and table-tested. Every error the library raises on purpose has one row here; a
client can tell a bad request (400, naming the ``field``) from a policy refusal (422,
naming the ``rule``), a reused idempotency key (409; the detail names the item it
already names), an unknown item (404) and a service that cannot do it now (503).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from airlock.errors import AirlockError, ConfigError, InvalidInput
from airlock.queue.bybit import OrderRefused
from airlock.queue.errors import IdempotencyConflict, IllegalTransition, ItemNotFound

CONTENT_TYPE = "application/problem+json"
TYPE_PREFIX = "urn:airlock:problem:"


@dataclass(frozen=True)
class Problem:
    """One problem document: ``type`` is ``urn:airlock:problem:<slug>``."""

    status: int
    slug: str
    title: str
    detail: str
    extra: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        body = {
            "type": TYPE_PREFIX + self.slug,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        }
        return body | {k: v for k, v in self.extra.items() if v is not None}

    def body(self) -> bytes:
        return json.dumps(self.as_json()).encode()


def of_error(exc: AirlockError) -> Problem:
    """The problem document for an error the library raised on purpose."""
    if isinstance(exc, OrderRefused) and exc.rule != "invalid-order":
        return Problem(
            422,
            "order-refused",
            "The outage policy refused the order",
            str(exc),
            {"rule": exc.rule, "index": exc.index},
        )
    if isinstance(exc, IdempotencyConflict):
        return Problem(
            409,
            "idempotency-conflict",
            "The idempotency key already names other content",
            str(exc),
            {"index": exc.index},
        )
    if isinstance(exc, ItemNotFound):
        return Problem(404, "not-found", "No such item", str(exc))
    if isinstance(exc, IllegalTransition):
        return Problem(409, "wrong-state", "The item's state does not allow that", str(exc))
    if isinstance(exc, InvalidInput):
        extra = {"field": exc.field, "index": exc.index}
        if isinstance(exc, OrderRefused):
            extra["rule"] = exc.rule
        return Problem(400, "invalid-input", "The request is not valid", str(exc), extra)
    if isinstance(exc, ConfigError):
        return Problem(501, "not-configured", "This service is not configured for that", str(exc))
    return Problem(503, "unavailable", "The service cannot do that now", str(exc))


def bad_body(detail: str) -> Problem:
    return Problem(400, "invalid-json", "The body is not a JSON object airlock can read", detail)


def too_large(limit: int) -> Problem:
    return Problem(
        413,
        "too-large",
        "The body is too large",
        f"request bodies are limited to {limit} bytes ([api] max_body_bytes)",
    )


def unauthorized() -> Problem:
    return Problem(
        401,
        "unauthorized",
        "A bearer token is required",
        "send 'Authorization: Bearer <token>' with the token from [api] token_file",
    )


def not_found(path: str) -> Problem:
    return Problem(404, "no-such-path", "No such path", f"nothing is served at {path}")


def not_allowed(method: str, path: str) -> Problem:
    return Problem(405, "method-not-allowed", "Method not allowed", f"{method} {path}")


def internal(reference: str) -> Problem:
    return Problem(
        500,
        "internal",
        "Internal error",
        f"an unexpected error; the service log has it under reference {reference}",
    )
