"""The bot of ``bench/api.py``: another process, one request at a time over the socket.

Usage: python bench/api_bot.py SOCKET orders|orders:batch|transactions N BATCH START KEY
Prints each request's latency in ns as a JSON list; exits non-zero on any non-201.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any

import aiohttp

DEAD = "0x000000000000000000000000000000000000dEaD"


def order(i: int) -> dict[str, Any]:
    return {
        "symbol": "BTCUSDT",
        "side": "Buy",
        "order_type": "Limit",
        "qty": "0.01",
        "price": str(50000 + i % 1000),
        "ttl": 3600,
        "idempotency_key": f"bench-o-{i}",
    }


def transaction(i: int, key: str) -> dict[str, Any]:
    return {
        "key": key,
        "chain_id": 1,
        "to": DEAD,
        "value": str(1000 + i),
        "gas": 21000,
        "max_fee": "30000000000",
        "priority_fee": "1000000000",
        "idempotency_key": f"bench-t-{i}",
    }


def request(what: str, i: int, batch: int, key: str) -> tuple[str, dict[str, Any]]:
    if what == "orders":
        return "/v1/orders", order(i) | {"venue": "down"}
    if what == "orders:batch":
        return "/v1/orders:batch", {
            "orders": [order(i * batch + j) for j in range(batch)],
            "venue": "down",
        }
    return "/v1/transactions", transaction(i, key)


async def main(path: str, what: str, n: int, batch: int, start: int, key: str) -> None:
    times = []
    connector = aiohttp.UnixConnector(path=path, limit=1)
    async with aiohttp.ClientSession(connector=connector) as session:
        for i in range(start, start + n):
            url, body = request(what, i, batch, key)
            t0 = time.perf_counter_ns()
            async with session.post("http://airlock" + url, json=body) as response:
                text = await response.text()
            times.append(time.perf_counter_ns() - t0)
            if response.status != 201:
                sys.exit(f"{url}: {response.status} {text}")
    print(json.dumps(times))


if __name__ == "__main__":
    socket, what, n, batch, start, key = sys.argv[1:7]
    asyncio.run(main(socket, what, int(n), int(batch), int(start), key))
