"""WebSocket pass-through for the fault proxy: a venue's stream crosses the same link as
its REST calls, so cutting the link cuts both (the fault proxy closes every connection,
streams included, when it goes ``down``).

Frames are relayed as they come in both directions until either side closes; the other
side is then closed too. Faults are the proxy's link faults (``down``); what a stream says
is the simulator's business (its own stream faults).
"""

from __future__ import annotations

import asyncio
import contextlib

import aiohttp
from aiohttp import web

STREAM_TIMEOUT = aiohttp.ClientTimeout(total=None, sock_connect=5)


def is_upgrade(request: web.BaseRequest) -> bool:
    return request.headers.get("Upgrade", "").lower() == "websocket"


async def relay(
    request: web.BaseRequest, upstream: str, session: aiohttp.ClientSession
) -> web.StreamResponse:
    """Accept the client's WebSocket, open the upstream one, pump frames both ways."""
    target = upstream.replace("http", "ws", 1) + request.path_qs
    try:
        far = await session.ws_connect(target, timeout=aiohttp.ClientWSTimeout(ws_close=2))
    except (aiohttp.ClientError, TimeoutError) as exc:
        return web.Response(status=502, text=f"faultproxy: stream upstream unreachable: {exc!r}")
    near = web.WebSocketResponse(autoping=False)
    await near.prepare(request)
    pumps = [
        asyncio.ensure_future(_pump(near, far)),
        asyncio.ensure_future(_pump(far, near)),
    ]
    try:
        await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for pump in pumps:
            pump.cancel()
        await asyncio.gather(*pumps, return_exceptions=True)
        with contextlib.suppress(Exception):
            await far.close()
        with contextlib.suppress(Exception):
            await near.close()
    return near


async def _pump(
    source: web.WebSocketResponse | aiohttp.ClientWebSocketResponse,
    sink: web.WebSocketResponse | aiohttp.ClientWebSocketResponse,
) -> None:
    async for message in source:
        if message.type is aiohttp.WSMsgType.TEXT:
            await sink.send_str(message.data)
        elif message.type is aiohttp.WSMsgType.BINARY:
            await sink.send_bytes(message.data)
        elif message.type is aiohttp.WSMsgType.PING:
            await sink.ping(message.data)
        elif message.type is aiohttp.WSMsgType.PONG:
            await sink.pong(message.data)
        else:
            return
