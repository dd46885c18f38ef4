"""The public API: the local socket against the library, and batches against one by one.

All figures come from one run on one throw-away SoftHSM token and queue, so the ratios
hold on a noisy machine even when the absolute rates do not:

- library: ``Airlock.queue_order`` in this process, one order at a time (the venue taken
  as down: each order is a GTC with a TTL, its intent signed by the HSM's P-256 key and
  stored in its own durable transaction), and ``Airlock.queue_transaction`` the same way
  (one EIP-1559 transfer, nonce allocated, signed by the HSM's secp256k1 key);
- socket: the same calls made by a bot in another process over the service's Unix
  socket (``POST /v1/orders``, ``POST /v1/transactions``, one request at a time, keep-
  alive), served by ``airlock.api.serve.serve_api`` over the same Airlock on an event loop
  thread here, as ``airlock broadcaster run`` serves it;
- batch: 100 orders in one ``queue_orders`` call (one durable transaction) against 100
  queued one by one, on each path: the library (``queue_orders`` against ``queue_order``)
  and the socket (one ``/v1/orders:batch`` request against 100 ``/v1/orders`` requests).

Rounds alternate library and socket. items/s is the median over rounds of each round's
rate; p99 is over the pooled per-item latencies. Targets (issue 15): socket >= 0.5 of the
library's rate; a batch of 100 orders >= 5x the one-by-one rate.

Usage: python bench/api.py [--n 200] [--rounds 5] [--batches 5] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from airlock.api.client import Airlock
from airlock.api.serve import serve_api
from airlock.config import ApiConfig, load_config
from airlock.hsm.keyring import KeyRing
from airlock.hsm.softhsm import init_embedded
from api_bot import order

DEAD = "0x000000000000000000000000000000000000dEaD"
KEY = "bench-hot"

BOT = Path(__file__).with_name("api_bot.py")


class Server:
    """The local API over ``al`` on its own event loop thread, as the service runs it."""

    def __init__(self, al: Airlock, socket: Path) -> None:
        self._al, self._socket = al, socket
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Server:
        self._thread.start()
        if not self._ready.wait(30):
            raise RuntimeError("the API did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._stop is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)

    def _run(self) -> None:
        async def serve() -> None:
            self._stop = asyncio.Event()
            config = ApiConfig(socket=self._socket)
            async with serve_api(self._al, config, self._socket.parent):
                self._ready.set()
                await self._stop.wait()

        self._loop.run_until_complete(serve())


def bot(socket: Path, what: str, n: int, start: int, batch: int = 1) -> list[int]:
    """Run the bot process; its per-request latencies in ns."""
    done = subprocess.run(
        [sys.executable, str(BOT), str(socket), what, str(n), str(batch), str(start), KEY],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"the bot failed: {done.stderr.strip()}")
    return json.loads(done.stdout)


def library_orders(al: Airlock, n: int, start: int) -> list[int]:
    times = []
    for i in range(start, start + n):
        t0 = time.perf_counter_ns()
        al.queue_order(**order(i), venue="down")
        times.append(time.perf_counter_ns() - t0)
    return times


def library_transactions(al: Airlock, n: int, start: int) -> list[int]:
    times = []
    for i in range(start, start + n):
        t0 = time.perf_counter_ns()
        al.queue_transaction(
            key=KEY,
            chain_id=1,
            to=DEAD,
            value=str(1000 + i),
            gas=21000,
            max_fee="30000000000",
            priority_fee="1000000000",
            idempotency_key=f"bench-t-{i}",
        )
        times.append(time.perf_counter_ns() - t0)
    return times


def rate(times: list[int]) -> float:
    return len(times) / (sum(times) / 1e9)


def p99_ms(times: list[int]) -> float:
    ordered = sorted(times)
    return ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))] / 1e6


def compare(rounds: int, run_library: Any, run_socket: Any) -> dict[str, float]:
    """Alternate rounds; medians of the per-round rates and ratios, pooled p99."""
    lib_rates, sock_rates, ratios = [], [], []
    lib_all: list[int] = []
    sock_all: list[int] = []
    for r in range(rounds):
        lib = run_library(r)
        sock = run_socket(r)
        lib_all += lib
        sock_all += sock
        lib_rates.append(rate(lib))
        sock_rates.append(rate(sock))
        ratios.append(rate(sock) / rate(lib))
    return {
        "library_items_per_s": round(statistics.median(lib_rates), 1),
        "socket_items_per_s": round(statistics.median(sock_rates), 1),
        "library_p99_ms": round(p99_ms(lib_all), 2),
        "socket_p99_ms": round(p99_ms(sock_all), 2),
        "socket_vs_library": round(statistics.median(ratios), 3),
    }


def batches(al: Airlock, socket: Path, count: int, size: int, base: int) -> dict[str, float]:
    """``count`` batches of ``size`` orders against as many orders one by one, on each
    path: the library in this process, and a bot over the socket."""
    lib_one, lib_batch, sock_one, sock_batch = [], [], [], []
    for b in range(count):
        start = base + b * 4 * size
        lib_one.append(rate(library_orders(al, size, start)))
        t0 = time.perf_counter_ns()
        al.queue_orders([order(i) for i in range(start + size, start + 2 * size)], venue="down")
        lib_batch.append(size / ((time.perf_counter_ns() - t0) / 1e9))
        sock_one.append(rate(bot(socket, "orders", size, start + 2 * size)))
        (elapsed,) = bot(socket, "orders:batch", 1, (start + 3 * size) // size, batch=size)
        sock_batch.append(size / (elapsed / 1e9))
    median = statistics.median
    return {
        "batch_size": size,
        "library_one_by_one_items_per_s": round(median(lib_one), 1),
        "library_batch_items_per_s": round(median(lib_batch), 1),
        "library_batch_vs_one_by_one": round(median(lib_batch) / median(lib_one), 2),
        "socket_one_by_one_items_per_s": round(median(sock_one), 1),
        "socket_batch_items_per_s": round(median(sock_batch), 1),
        "socket_batch_vs_one_by_one": round(median(sock_batch) / median(sock_one), 2),
    }


def run(n: int, rounds: int, count: int, directory: Path) -> dict[str, Any]:
    home = directory / "home"
    init_embedded(home)
    (home / "airlock.toml").write_text(
        '[bybit]\nbase_url = "http://127.0.0.1:9"\napi_key = "bench"\nsecret_label = "bench-api"\n'
    )
    config = load_config(env={"AIRLOCK_HOME": str(home)})
    ring = KeyRing.open(config.hsm)
    ring.generate("secp256k1", KEY)
    ring.close()
    socket = directory / "api.sock"
    with Airlock.open(config) as al, Server(al, socket):
        library_orders(al, 20, 10**6)  # warm-up: the intent key, caches, the WAL
        bot(socket, "orders", 20, 10**6 + 100)
        orders = compare(
            rounds,
            lambda r: library_orders(al, n, r * 2 * n),
            lambda r: bot(socket, "orders", n, r * 2 * n + n),
        )
        transactions = compare(
            rounds,
            lambda r: library_transactions(al, n, r * 2 * n),
            lambda r: bot(socket, "transactions", n, r * 2 * n + n),
        )
        batch = batches(al, socket, count, 100, 2 * 10**6)
    return {
        "n": n,
        "rounds": rounds,
        "orders": orders,
        "transactions": transactions,
        "batch": batch,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200, help="items per side per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batches", type=int, default=5, help="batches of 100 orders")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="airlock-bench-api-") as tmp:
        result = run(args.n, args.rounds, args.batches, Path(tmp))
    if args.json:
        print(json.dumps(result))
        return
    for part in ("orders", "transactions"):
        r = result[part]
        print(
            f"{part}: library {r['library_items_per_s']}/s p99 {r['library_p99_ms']} ms; "
            f"socket {r['socket_items_per_s']}/s p99 {r['socket_p99_ms']} ms; "
            f"socket/library {r['socket_vs_library']} (target >= 0.5)"
        )
    b = result["batch"]
    for path in ("library", "socket"):
        print(
            f"batch of {b['batch_size']} orders, {path}: one by one "
            f"{b[f'{path}_one_by_one_items_per_s']}/s, batch {b[f'{path}_batch_items_per_s']}/s"
            f" = {b[f'{path}_batch_vs_one_by_one']}x (target >= 5x)"
        )


if __name__ == "__main__":
    main()
