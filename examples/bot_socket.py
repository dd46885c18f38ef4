#!/usr/bin/env python3
"""An asyncio trading bot on the service's local API: HTTP over its Unix socket.

The bot holds no HSM session and no queue: ``airlock broadcaster run`` does, and signs
and queues what the bot posts. The bot queues three transfers (a batch of two, then one
on its own), then follows the event stream (``GET /v1/events``, Server-Sent Events) until
each of them is confirmed, reconnecting with ``Last-Event-ID`` whenever the stream breaks
(a restart of the service loses no event and repeats none). The idempotency keys are
fixed: running the bot again answers with the same items.

Settings (environment, with defaults for the embedded drill setup):

    EXAMPLE_SOCKET        the API socket      ($AIRLOCK_HOME/api.sock, ~/.airlock/api.sock)
    EXAMPLE_KEY           HSM label of the sending secp256k1 key   (hot-1)
    EXAMPLE_CHAIN_ID      chain id                                 (31337, anvil)
    EXAMPLE_TO            recipient            (0x000000000000000000000000000000000000dEaD)
    EXAMPLE_MAX_FEE       max fee per gas, wei                     (30 gwei)
    EXAMPLE_PRIORITY_FEE  priority fee per gas, wei                (1 gwei)
    EXAMPLE_ID            prefix of the idempotency keys           (socket)
    EXAMPLE_WAIT_S        how long to follow the events            (60)

Exit status: 0 every transfer confirmed, 2 the wait ended first, 1 a request was refused
(the problem document is printed) or a transfer ended otherwise.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp

URL = "http://airlock"  # any host: the connection goes to the socket
GWEI = 10**9
FAILED = {"expired", "cancelled", "rejected", "replaced", "quarantined", "needs_operator"}


class Refused(Exception):
    """The service answered with a problem document (RFC 9457)."""


def setting(name: str, default: str) -> str:
    return os.environ.get(name) or default


def default_socket() -> str:
    home = os.environ.get("AIRLOCK_HOME") or str(Path.home() / ".airlock")
    return str(Path(home) / "api.sock")


async def call(session: aiohttp.ClientSession, method: str, path: str, body: Any = None) -> Any:
    async with session.request(method, URL + path, json=body) as response:
        answer = await response.json(content_type=None)
        if response.status >= 400:
            raise Refused(
                f"{method} {path}: {response.status} {answer.get('title')}: {answer.get('detail')}"
            )
        return answer


def transfer(n: int) -> dict[str, Any]:
    return {
        "key": setting("EXAMPLE_KEY", "hot-1"),
        "chain_id": int(setting("EXAMPLE_CHAIN_ID", "31337")),
        "to": setting("EXAMPLE_TO", "0x000000000000000000000000000000000000dEaD"),
        "value": str(1000 + n),  # big integers travel as decimal strings
        "gas": 21000,
        "max_fee": setting("EXAMPLE_MAX_FEE", str(30 * GWEI)),
        "priority_fee": setting("EXAMPLE_PRIORITY_FEE", str(GWEI)),
        "ladder": 2,
        "with_cancel": True,
        "ttl": 3600,
        "idempotency_key": f"{setting('EXAMPLE_ID', 'socket')}-pay-{n}",
    }


async def follow(
    session: aiohttp.ClientSession, after: int, states: dict[str, str], deadline: float
) -> bool:
    """Print events after ``after`` until every item in ``states`` settled (True) or the
    deadline passes (False); resume with Last-Event-ID after any break."""
    last = after
    while time.monotonic() < deadline:
        headers = {"Last-Event-ID": str(last)}
        timeout = aiohttp.ClientTimeout(total=None, sock_read=None)
        try:
            async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
                async with session.get(
                    URL + "/v1/events", headers=headers, timeout=timeout
                ) as stream:
                    if stream.status != 200:
                        raise Refused(f"GET /v1/events: {stream.status} {await stream.text()}")
                    fields: dict[str, str] = {}
                    async for raw in stream.content:
                        line = raw.decode().rstrip("\r\n")
                        if line and not line.startswith(":"):
                            name, _, value = line.partition(":")
                            fields[name] = value.removeprefix(" ")
                        elif not line and "data" in fields:
                            last = int(fields["id"])
                            event = json.loads(fields["data"])
                            fields = {}
                            if event["item"] in states and event["type"] != "item.fill":
                                states[event["item"]] = event["state"]
                                print(
                                    f"event {last}: {event['item']} "
                                    f"{event.get('from_state') or '-'} -> {event['state']}"
                                )
                            if all(s == "confirmed" or s in FAILED for s in states.values()):
                                return True
        except TimeoutError:
            return False
        except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError) as exc:
            print(f"stream broke ({exc.__class__.__name__}); resuming after event {last}")
            await asyncio.sleep(0.5)
    return False


async def run() -> int:
    socket = setting("EXAMPLE_SOCKET", default_socket())
    deadline = time.monotonic() + float(setting("EXAMPLE_WAIT_S", "60"))
    connector = aiohttp.UnixConnector(path=socket)
    async with aiohttp.ClientSession(
        connector=connector, timeout=aiohttp.ClientTimeout(total=30)
    ) as session:
        health = await call(session, "GET", "/v1/health")
        after = int(health["last_event_id"])
        print(f"service {health['status']} on {socket}, last event {after}")
        batch = await call(
            session, "POST", "/v1/transactions:batch", {"transactions": [transfer(1), transfer(2)]}
        )
        single = await call(session, "POST", "/v1/transactions", transfer(3))
        queued = [*batch["items"], single]
        states = {}
        for item in queued:
            states[item["id"]] = item["state"]
            replayed = " (replayed)" if item["replayed"] else ""
            print(
                f"queued {item['id']} nonce {item['nonce']} {item['state']}{replayed}: "
                f"{item['variants'][0]['hash']}"
            )
        settled = all(s == "confirmed" or s in FAILED for s in states.values())
        if not settled and not await follow(session, after, states, deadline):
            print(f"not confirmed in time (the items stay queued or on their way): {states}")
            return 2
        for item_id in states:
            item = await call(session, "GET", f"/v1/items/{item_id}")
            mined = item["mined"]["hash"] if item["mined"] else "-"
            print(f"{item_id}: {item['state']} {mined}")
            states[item_id] = item["state"]
        return 0 if all(s == "confirmed" for s in states.values()) else 1


def main() -> int:
    try:
        return asyncio.run(run())
    except Refused as exc:
        print(f"refused: {exc}", file=sys.stderr)
    except (aiohttp.ClientError, OSError) as exc:
        print(f"cannot reach the service: {exc}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
