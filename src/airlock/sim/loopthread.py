"""A loopback server that runs its own event loop in a background thread.

The simulators (fault proxy, private relay) serve HTTP while the caller's code runs:
synchronous tests and asyncio code alike. This base class owns the thread and the loop;
a subclass provides ``_astart`` (open listeners) and ``_astop`` (close everything), both
run on the server's loop, each bounded in time.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import threading
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import NoReturn, Self

from aiohttp import web

HOST = "127.0.0.1"
Handler = Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]
START_TIMEOUT = 5.0
STOP_TIMEOUT = 5.0


class LoopThread:
    """Start/stop and context-manager plumbing for a server on its own loop thread."""

    thread_name = "airlock-sim"

    def __init__(self, port: int = 0) -> None:
        self._port = port  # 0: a free port, known once started
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self._port}"

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> Self:
        """Start the loop thread and block until ``_astart`` is done (or raise, bounded)."""
        if self._thread is not None:
            raise RuntimeError(f"{type(self).__name__} already started")
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._thread = threading.Thread(
            target=self._run_loop, args=(loop,), name=self.thread_name, daemon=True
        )
        self._thread.start()
        try:
            asyncio.run_coroutine_threadsafe(self._astart(), loop).result(START_TIMEOUT)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Run ``_astop`` on the loop, then stop the loop and the thread, each bounded."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None or loop.is_closed():
            return
        if thread.is_alive():
            future = asyncio.run_coroutine_threadsafe(self._astop(), loop)
            try:
                future.result(STOP_TIMEOUT)
            finally:
                loop.call_soon_threadsafe(loop.stop)
                thread.join(STOP_TIMEOUT)

    def __enter__(self) -> Self:
        return self if self.running else self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @staticmethod
    def _run_loop(loop: asyncio.AbstractEventLoop) -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_forever()
        finally:
            loop.close()

    @staticmethod
    async def _listen(server: web.Server, port: int) -> asyncio.Server:
        """Listen on loopback; SO_REUSEADDR so a restart can bind the same port."""
        loop = asyncio.get_running_loop()
        return await loop.create_server(server, HOST, port, reuse_address=True)

    async def _open_listener(self, handler: Handler) -> asyncio.Server:
        """Start serving ``handler`` on ``self._port`` (a free one when 0); learn the port."""
        server = web.Server(handler, handler_cancellation=True, access_log=None)
        listener = await self._listen(server, self._port)
        self._port = listener.sockets[0].getsockname()[1]
        return listener

    @staticmethod
    async def _cancel_the_rest() -> None:
        """Cancel every other task on this loop (bounded) so none outlives it."""
        current = asyncio.current_task()
        others = [task for task in asyncio.all_tasks() if task is not current]
        for task in others:
            task.cancel()
        if others:
            await asyncio.wait(others, timeout=STOP_TIMEOUT / 2)

    async def _astart(self) -> None:
        raise NotImplementedError

    async def _astop(self) -> None:
        raise NotImplementedError


async def reset_connection(request: web.BaseRequest) -> NoReturn:
    """Reset the client's connection with no answer (RST): the "response lost" fault.

    Losing the connection cancels the handler; this waits for that and never returns."""
    transport = request.transport
    if transport is not None:
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        transport.abort()
    await asyncio.get_running_loop().create_future()
    raise ConnectionResetError("the simulator dropped the connection")
