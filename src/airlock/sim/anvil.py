"""Start a local anvil node on a free loopback port, for the demo and the tests.

The binary comes from the pinned npm package the Makefile unpacks into ``tools/``;
``AIRLOCK_ANVIL`` (set by make) or ``PATH`` finds it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from airlock.errors import AirlockError

START_TIMEOUT = 20.0
RPC_TIMEOUT = 10.0


class AnvilError(AirlockError):
    """anvil is missing, did not start, or answered with an error."""


def find_anvil() -> str:
    candidates = [os.environ.get("AIRLOCK_ANVIL", "")]
    repo_tools = Path(__file__).resolve().parents[3] / "tools"
    candidates += [str(p) for p in sorted(repo_tools.glob("anvil-*/package/bin/anvil"))]
    candidates.append(shutil.which("anvil") or "")
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise AnvilError("anvil not found: run 'make deps' (it installs the pinned anvil into tools/)")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def rpc(url: str, method: str, params: list[Any], timeout: float = RPC_TIMEOUT) -> Any:
    """One JSON-RPC call over HTTP with an explicit timeout; errors raise AnvilError."""
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).encode()
    request = urllib.request.Request(url, body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        reply = json.loads(response.read())
    if "error" in reply:
        raise AnvilError(f"{method}: {reply['error'].get('message', reply['error'])}")
    return reply["result"]


@dataclass
class Anvil:
    """A running anvil process; use as a context manager so it always stops."""

    process: subprocess.Popen[bytes]
    port: int
    chain_id: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def rpc(self, method: str, params: list[Any] | None = None) -> Any:
        return rpc(self.url, method, params or [])

    def wait_for_receipt(self, tx_hash: str, timeout: float = 15.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            receipt: dict[str, Any] | None = self.rpc("eth_getTransactionReceipt", [tx_hash])
            if receipt is not None:
                return receipt
            time.sleep(0.05)
        raise AnvilError(f"no receipt for {tx_hash} within {timeout} s")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def __enter__(self) -> Anvil:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_anvil(chain_id: int = 31337, block_time: float | None = None) -> Anvil:
    """Start anvil and wait (bounded) until it answers ``eth_chainId``.

    anvil binds port 0 itself and prints the port it got: choosing a free port first and
    handing it over would race every other process on the machine (a parallel test worker,
    or any outgoing connection's ephemeral port) for it.
    """
    args = [find_anvil(), "--host", "127.0.0.1", "--port", "0", "--chain-id", str(chain_id)]
    if block_time is not None:
        args += ["--block-time", str(block_time)]
    process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    listening = _PortReader(process)
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            err = process.stderr.read().decode(errors="replace") if process.stderr else ""
            raise AnvilError(f"anvil exited at start: {err.strip()}")
        port = listening.port.result_or_none(timeout=0.05)
        if port is None:
            continue
        anvil = Anvil(process, port, chain_id)
        try:
            if int(anvil.rpc("eth_chainId"), 16) == chain_id:
                return anvil
        except (OSError, AnvilError):
            time.sleep(0.05)
    Anvil(process, 0, chain_id).stop()
    raise AnvilError(f"anvil did not start listening within {START_TIMEOUT} s")


class _Once:
    """A value set once by one thread and awaited, with a bound, by another."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self._value: int | None = None

    def set(self, value: int) -> None:
        self._value = value
        self._event.set()

    def result_or_none(self, timeout: float) -> int | None:
        self._event.wait(timeout)
        return self._value


class _PortReader(threading.Thread):
    """Reads anvil's stdout: the port from its "Listening on" line, then drains the rest.

    anvil logs every RPC method it serves; a pipe nobody reads would fill and stall it.
    """

    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        super().__init__(name="anvil-stdout", daemon=True)
        self._stdout = process.stdout
        self.port = _Once()
        self.start()

    def run(self) -> None:
        stdout = self._stdout
        assert stdout is not None
        for line in stdout:
            match = _LISTENING.search(line)
            if match:
                self.port.set(int(match.group(1)))
                break
        for _ in iter(lambda: stdout.read(65536), b""):
            pass


_LISTENING = re.compile(rb"Listening on [0-9.]+:([0-9]+)")
