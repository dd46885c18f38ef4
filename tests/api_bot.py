"""A trading bot that knows airlock only as HTTP over its Unix socket (tests/test_api_outage.py).

It queues Bybit orders and EVM transfers (batches and single POSTs, each with an
idempotency key of its own, retried with the same key while the service is away) and
follows ``GET /v1/events``, writing every event it receives to ``events.jsonl`` as it
goes and reconnecting with ``Last-Event-ID`` whenever the stream breaks. It exits 0 once
every item it queued has reached its goal in the events it saw (an order ``sent``: placed
at the venue; a transaction ``confirmed``), 2 when ``--deadline`` passes first, 1 when
the service answers a request with an error.

Files in ``--out``: ``events.jsonl`` (one event a line, in the order received),
``queued.jsonl`` (one acknowledged request a line: path, status, attempts, item ids),
``streams.jsonl`` (one line per stream connection: the Last-Event-ID it resumed from),
``queued.done`` once every request is acknowledged.

Usage: python tests/api_bot.py --socket PATH --plan PLAN.json --out DIR [--deadline S]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp

BASE = "http://airlock"  # the host is ignored over a Unix socket
RETRY_S = 0.05  # the bot's back-off between attempts while the service is away
GOALS = {"bybit_order": "sent", "evm_tx": "confirmed"}
AWAY = (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, asyncio.TimeoutError)


class Refused(Exception):
    """The service answered a request with an error status."""


class Deadline(Exception):
    """``--deadline`` passed before the items settled."""


class Bot:
    def __init__(self, socket: str, plan: dict[str, Any], out: Path, deadline: float) -> None:
        self.socket = socket
        self.plan = plan
        self.out = out
        self.deadline = time.monotonic() + deadline
        self.kinds: dict[str, str] = {}  # item id -> kind, of every item this bot queued
        self.reached: set[str] = set()  # items whose goal state an event announced
        self.states: dict[str, str] = {}
        self.last_event_id = 0
        self.queued_all = asyncio.Event()
        self.settled = asyncio.Event()

    # -- queueing ---------------------------------------------------------------------

    def requests(self) -> Iterator[tuple[str, dict[str, Any]]]:
        """Each round: a batch of orders, a batch of transfers, then single orders and
        single transfers. Every key is derived from the plan: a retry repeats it."""
        p = self.plan
        senders, run = p["senders"], p["run"]
        order_no = 0
        tx_no = {s: 0 for s in senders}

        def order() -> dict[str, Any]:
            nonlocal order_no
            order_no += 1
            return {
                "symbol": "BTCUSDT",
                "side": "Buy" if order_no % 2 else "Sell",
                "order_type": "Limit",
                "qty": "0.01",
                "price": "60000" if order_no % 2 else "70000",
                "tif": "GTC",
                "ttl": 3600,
                "idempotency_key": f"{run}-order-{order_no}",
            }

        def transfer(k: int) -> dict[str, Any]:
            sender = senders[k % len(senders)]
            n = tx_no[sender]
            tx_no[sender] += 1
            return {
                "key": sender,
                "chain_id": p["chain_id"],
                "to": p["to"],
                "value": str(10**12 + n),
                "gas": 21000,
                "max_fee": str(p["max_fee"]),
                "priority_fee": str(p["priority_fee"]),
                "ladder": 2,
                "with_cancel": n % 2 == 0,
                "ttl": 3600,
                "idempotency_key": f"{run}-tx-{sender}-{n}",
            }

        for _ in range(p["rounds"]):
            orders = [order() for _ in range(p["order_batch"])]
            yield "/v1/orders:batch", {"orders": orders, "venue": "auto"}
            yield (
                "/v1/transactions:batch",
                {"transactions": [transfer(k) for k in range(p["tx_batch"])]},
            )
            for _ in range(p["order_single"]):
                yield "/v1/orders", order()
            for k in range(p["tx_single"]):
                yield "/v1/transactions", transfer(k)

    async def queue(self, session: aiohttp.ClientSession) -> None:
        with (self.out / "queued.jsonl").open("a") as log:
            for path, body in self.requests():
                status, attempts, answer = await self.post(session, path, body)
                items = answer.get("items", [answer])
                for item in items:
                    self.kinds[item["id"]] = item["kind"]
                record = {
                    "path": path,
                    "status": status,
                    "attempts": attempts,
                    "items": [i["id"] for i in items],
                    "replayed": [i["replayed"] for i in items],
                    "keys": [i["idempotency_key"] for i in items],
                    "order_link_ids": [i["order_link_id"] for i in items],
                    "rules": [i["rule"] for i in items],
                    "venue_reachable": [i["venue_reachable"] for i in items],
                }
                log.write(json.dumps(record) + "\n")
                log.flush()
        (self.out / "queued.done").write_text(f"{len(self.kinds)}\n")
        self.queued_all.set()
        self.check_settled()

    async def post(
        self, session: aiohttp.ClientSession, path: str, body: dict[str, Any]
    ) -> tuple[int, int, dict[str, Any]]:
        """POST until the service answers; the same body (the same keys) every time."""
        attempts = 0
        while True:
            attempts += 1
            try:
                async with session.post(BASE + path, json=body) as response:
                    answer = await response.json(content_type=None)
                    if response.status not in (200, 201):
                        raise Refused(f"POST {path}: {response.status} {answer}")
                    return response.status, attempts, answer
            except AWAY:
                self.check_deadline(f"POST {path} ({attempts} attempts)")
                await asyncio.sleep(RETRY_S)

    # -- the event stream -------------------------------------------------------------

    async def follow(self, session: aiohttp.ClientSession) -> None:
        """Read the stream until every item settled; resume after each break."""
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=5, sock_read=None)
        with (
            (self.out / "events.jsonl").open("a") as events,
            (self.out / "streams.jsonl").open("a") as streams,
        ):
            while not self.settled.is_set():
                self.check_deadline("the items to settle")
                headers = {"Last-Event-ID": str(self.last_event_id)}
                try:
                    async with session.get(
                        BASE + "/v1/events", headers=headers, timeout=timeout
                    ) as response:
                        if response.status != 200:
                            raise Refused(f"GET /v1/events: {response.status}")
                        streams.write(json.dumps({"resumed_after": self.last_event_id}) + "\n")
                        streams.flush()
                        await self.read_stream(response, events)
                except AWAY:
                    pass
                if not self.settled.is_set():
                    await asyncio.sleep(RETRY_S)

    async def read_stream(self, response: aiohttp.ClientResponse, events: Any) -> None:
        fields: dict[str, str] = {}
        while not self.settled.is_set():
            self.check_deadline("the items to settle")
            try:  # a stream that stays open but silent must not outlive the deadline
                async with asyncio.timeout(max(self.deadline - time.monotonic(), 0.01)):
                    raw = await response.content.readline()
            except TimeoutError:
                continue  # the deadline check above raises
            if not raw:
                return  # the service closed the stream
            line = raw.decode().rstrip("\r\n")
            if line.startswith(":"):
                continue  # a keep-alive comment
            if line:
                name, _, value = line.partition(":")
                fields[name] = value.removeprefix(" ")
                continue
            if "data" in fields:
                self.on_event(int(fields["id"]), fields.get("event"), fields["data"], events)
            fields = {}

    def on_event(self, event_id: int, kind: str | None, data: str, events: Any) -> None:
        event = json.loads(data)
        record = {
            "id": event_id,
            "event": kind,
            "type": event["type"],
            "item": event["item"],
            "state": event.get("state"),
            "from_state": event.get("from_state"),
            "reason": event.get("reason"),
        }
        events.write(json.dumps(record) + "\n")
        events.flush()
        self.last_event_id = event_id
        if event["type"] != "item.fill":
            self.states[event["item"]] = event["state"]
        self.check_settled()

    def check_settled(self) -> None:
        if not self.queued_all.is_set():
            return
        if all(self.states.get(i) == GOALS[k] for i, k in self.kinds.items()):
            self.settled.set()

    def check_deadline(self, what: str) -> None:
        if time.monotonic() > self.deadline:
            raise Deadline(f"deadline passed waiting for {what}")

    async def run(self) -> None:
        connector = aiohttp.UnixConnector(path=self.socket)
        timeout = aiohttp.ClientTimeout(total=30)
        async with (
            aiohttp.ClientSession(connector=connector, timeout=timeout) as session,
            asyncio.TaskGroup() as tasks,  # one failing stops the other
        ):
            tasks.create_task(self.follow(session))
            tasks.create_task(self.queue(session))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--socket", required=True)
    parser.add_argument("--plan", required=True, type=Path)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--deadline", type=float, default=120.0)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    bot = Bot(args.socket, json.loads(args.plan.read_text()), args.out, args.deadline)
    try:
        asyncio.run(bot.run())
    except ExceptionGroup as group:
        first = group.exceptions[0]
        if isinstance(first, Refused):
            print(f"bot: refused: {first}", file=sys.stderr)
            return 1
        if isinstance(first, Deadline):
            pending = {i: s for i, k in bot.kinds.items() if (s := bot.states.get(i)) != GOALS[k]}
            print(
                f"bot: {first}; last event {bot.last_event_id}; "
                f"{len(pending)} unsettled, e.g. {list(pending.items())[:5]}",
                file=sys.stderr,
            )
            return 2
        raise
    print(json.dumps({"items": len(bot.kinds), "last_event_id": bot.last_event_id}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
