"""A real link for rpc-a: a veth pair into a network namespace (``--netns``, root only).

Why: the fault proxy makes a flap by closing its port, which the client sees as a refused
connection. A pulled cable looks different (no route to host, answers in flight lost), and
only the kernel can make it. This module holds the plumbing and nothing else: it imports
only the standard library, because ``python -m airlock.sim.chaos forward`` (the relay
inside the namespace) runs it as a child that must start at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future

NETNS_SUBNET = "10.213.{k}.{host}"
IP_TIMEOUT_S = 5


def netns_available() -> tuple[bool, str]:
    """Whether this machine lets us make a namespace and a veth pair (root, iproute2)."""
    if os.geteuid() != 0:
        return False, "not root: ip netns needs CAP_SYS_ADMIN and CAP_NET_ADMIN"
    name = f"alkchk{os.getpid() % 100000}"
    try:
        subprocess.run(
            ["ip", "netns", "add", name], check=True, capture_output=True, timeout=IP_TIMEOUT_S
        )
    except (OSError, subprocess.SubprocessError) as exc:
        return False, f"'ip netns add' failed: {exc}"
    subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=IP_TIMEOUT_S)
    return True, "ip netns add works (root)"


class _Relay(threading.Thread):
    """A loopback-free TCP relay on its own loop: ``listen`` -> ``target()`` (host, port).

    ``target`` is called per connection, so one relay serves every scenario of a run while
    rpc-a's fault proxy (a new port each scenario) changes under it."""

    def __init__(self, host: str, port: int, target: Callable[[], tuple[str, int]]) -> None:
        super().__init__(name=f"chaos-relay-{host}:{port}", daemon=True)
        self.host, self.port, self.target = host, port, target
        self.loop = asyncio.new_event_loop()
        self.ready: Future[None] = Future()

    def run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            server = self.loop.run_until_complete(
                asyncio.start_server(self._client, self.host, self.port)
            )
        except OSError as exc:
            self.ready.set_exception(exc)
            return
        self.ready.set_result(None)
        self.loop.run_forever()
        server.close()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target())
        except OSError:
            writer.close()
            return
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.join(5)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy one direction until it ends; a reset is the end too (that is what a flap does)."""
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (OSError, asyncio.IncompleteReadError):
        pass
    finally:
        with contextlib.suppress(OSError):
            writer.close()


class NetnsLink:
    """rpc-a reached over a real link: the broadcaster connects to an address inside a
    network namespace, across a veth pair; a relay there sends the bytes back across the
    pair to a relay on the host side, which forwards to rpc-a's fault proxy. A flap takes
    the host end of the pair down: the kernel drops the connected route, new connects
    fail with "no route to host" (an ``unreachable`` route with a high metric stops the
    default route from carrying the packets off the machine), and answers still on their
    way over the pair are lost, as on a pulled cable; the fault proxy's closed port shows
    refused connections instead."""

    def __init__(self) -> None:
        k = os.getpid() % 250 + 1
        self.ns = f"airlock-chaos-{os.getpid()}"
        self.host_if, self.ns_if = f"alk{os.getpid() % 100000}h", f"alk{os.getpid() % 100000}n"
        self.host_ip = NETNS_SUBNET.format(k=k, host=1)
        self.ns_ip = NETNS_SUBNET.format(k=k, host=2)
        self.subnet = NETNS_SUBNET.format(k=k, host=0) + "/30"
        self.port = 18545
        self.target_port = 0  # rpc-a's proxy, per scenario
        self._host_relay: _Relay | None = None
        self._ns_relay: subprocess.Popen[bytes] | None = None
        self.flaps = 0

    @property
    def url(self) -> str:
        return f"http://{self.ns_ip}:{self.port}"

    def _ip(self, *args: str) -> None:
        subprocess.run(["ip", *args], check=True, capture_output=True, timeout=IP_TIMEOUT_S)

    def start(self) -> NetnsLink:
        """Make the namespace, the pair and both relays; undo everything if a step fails."""
        self._ip("netns", "add", self.ns)
        try:
            self._make_pair()
            self._start_relays()
        except BaseException:
            self.stop()
            raise
        return self

    def _make_pair(self) -> None:
        self._ip("link", "add", self.host_if, "type", "veth", "peer", "name", self.ns_if)
        self._ip("link", "set", self.ns_if, "netns", self.ns)
        self._ip("addr", "add", f"{self.host_ip}/30", "dev", self.host_if)
        # With the interface down its connected route goes: without this the default
        # route would carry the packets off the machine instead of failing them.
        self._ip("route", "add", "unreachable", self.subnet, "metric", "4000")
        self._ip("link", "set", self.host_if, "up")
        inside = ("netns", "exec", self.ns, "ip")
        self._ip(*inside, "addr", "add", f"{self.ns_ip}/30", "dev", self.ns_if)
        self._ip(*inside, "link", "set", self.ns_if, "up")
        self._ip(*inside, "link", "set", "lo", "up")

    def _start_relays(self) -> None:
        from airlock.sim.anvil import free_port

        back = free_port()
        self._host_relay = _Relay(self.host_ip, back, lambda: ("127.0.0.1", self.target_port))
        self._host_relay.start()
        self._host_relay.ready.result(5)
        argv = ["ip", "netns", "exec", self.ns, sys.executable, "-m", "airlock.sim.chaos"]
        argv += ["forward", f"{self.ns_ip}:{self.port}", f"{self.host_ip}:{back}"]
        self._ns_relay = subprocess.Popen(argv, stdout=subprocess.PIPE)
        assert self._ns_relay.stdout is not None
        if self._ns_relay.stdout.readline().strip() != b"ready":
            raise RuntimeError("the relay inside the namespace did not start")

    def set_up(self, up: bool) -> None:
        """The cable in (``up``) or pulled: the host end of the pair up or down."""
        self._ip("link", "set", self.host_if, "up" if up else "down")
        self.flaps += 0 if up else 1

    def stop(self) -> None:
        """Remove what :meth:`start` made; each step tolerates what is already gone."""
        if self._ns_relay is not None:
            self._ns_relay.kill()
            self._ns_relay.wait(5)
        if self._host_relay is not None:
            self._host_relay.stop()
        for args in (
            ["netns", "del", self.ns],
            ["link", "del", self.host_if],
            ["route", "del", "unreachable", self.subnet],
        ):
            subprocess.run(["ip", *args], capture_output=True, timeout=IP_TIMEOUT_S)


@contextlib.contextmanager
def netns_link(wanted: bool) -> Iterator[NetnsLink | None]:
    """The veth link for a whole run when ``wanted``, removed at the end; else None."""
    if not wanted:
        yield None
        return
    link = NetnsLink().start()
    try:
        yield link
    finally:
        link.stop()


def forward(listen: str, to: str) -> int:
    """``forward HOST:PORT HOST:PORT``: the relay inside the namespace (prints ``ready``)."""
    host, _, port = listen.rpartition(":")
    to_host, _, to_port = to.rpartition(":")
    relay = _Relay(host, int(port), lambda: (to_host, int(to_port)))
    relay.start()
    relay.ready.result(5)
    print("ready", flush=True)
    signal.sigwait({signal.SIGTERM, signal.SIGINT})
    return 0
