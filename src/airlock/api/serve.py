"""Serving the local HTTP API: a Unix socket closed to other users, optional loopback TCP.

The socket is bound inside a private (0700) directory, given its mode (0600, or 0660 and
the ``[api] socket_group`` for a bot running as another user), and only then renamed into
place: at no moment can another user connect, and nothing changes the process-wide umask
(other threads are running). A socket left by a killed service is replaced; one that
still answers belongs to a running service and is refused. TCP listens on loopback only
and only with a bearer token read from a file that nobody else can read.
"""

from __future__ import annotations

import contextlib
import grp
import os
import socket
import stat
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from aiohttp import web

from airlock.api.client import Airlock
from airlock.api.http import make_app
from airlock.api.orders import Reachability, ReachabilityView
from airlock.config import AirlockConfig, ApiConfig
from airlock.errors import AirlockError, ConfigError

if TYPE_CHECKING:
    from airlock.broadcaster.runner import Service
    from airlock.hsm.keyring import KeyRing

MIN_TOKEN_CHARS = 32


class ApiUnavailable(AirlockError):
    """The local API cannot be served: its socket is taken or cannot be made."""


@dataclass(frozen=True)
class ApiServer:
    """Where the API is being served."""

    socket: Path
    tcp: tuple[str, int] | None = None

    @property
    def tcp_url(self) -> str | None:
        if self.tcp is None:
            return None
        host, port = self.tcp
        return f"http://{f'[{host}]' if ':' in host else host}:{port}"


def service_airlock(config: AirlockConfig, keyring: KeyRing, service: Service) -> Airlock:
    """The library over the service's own HSM session and queue. Whether the venue is
    reachable is what the service's link supervisor last found: no probe per order."""
    return Airlock.over(config, keyring, service.store, _venue_view(service))


def _venue_view(service: Service) -> ReachabilityView | None:
    if service.venue is None:
        return None
    supervisor = service.venue.supervisor

    def view() -> Reachability:
        if not supervisor.is_connected:
            note = "venue unreachable per the service's link supervisor; the outage policy applies"
            return Reachability(False, None, note)
        latency = supervisor.latency_ms
        shown = "unmeasured" if latency is None else f"{latency:.0f} ms"
        note = f"venue reachable per the service's link supervisor (last probe {shown})"
        return Reachability(True, latency, note)

    return view


@contextlib.asynccontextmanager
async def serve_api(al: Airlock, config: ApiConfig, home: Path) -> AsyncIterator[ApiServer]:
    """Serve ``al`` on the socket (and TCP) that ``config`` names until the block ends."""
    path = config.socket_path(home)
    runners: list[web.AppRunner] = []
    bound: int | None = None  # the inode of the socket file this server made
    try:
        runner = await _runner(al, config, token=None)
        runners.append(runner)
        sock = bind_private_socket(path, config.socket_group)
        bound = path.lstat().st_ino
        await web.SockSite(runner, sock).start()
        tcp = None
        if config.listen is not None:
            assert config.token_file is not None  # the configuration insists on it
            tcp_runner = await _runner(al, config, token=read_token(config.token_file))
            runners.append(tcp_runner)
            site = web.TCPSite(tcp_runner, *config.listen, reuse_address=True)
            await site.start()
            tcp = (config.listen[0], _bound_port(tcp_runner))
        yield ApiServer(path, tcp)
    finally:
        for runner in reversed(runners):
            await runner.cleanup()
        if bound is not None:
            _remove_own_socket(path, bound)


async def _runner(al: Airlock, config: ApiConfig, token: str | None) -> web.AppRunner:
    app = make_app(
        al, token=token, max_body_bytes=config.max_body_bytes, max_batch=config.max_batch
    )
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
    await runner.setup()
    return runner


def bind_private_socket(path: Path, group: str | None = None) -> socket.socket:
    """A listening Unix socket at ``path``, mode 0600 (0660 for ``group``) from the start."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    _clear_stale(path)
    gid = _group_id(group) if group is not None else None
    private = Path(tempfile.mkdtemp(prefix=".api-", dir=path.parent))  # mode 0700
    staged = private / "s"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(str(staged))
        if gid is not None:
            os.chown(staged, -1, gid)
        os.chmod(staged, 0o660 if gid is not None else 0o600)
        os.rename(staged, path)
        sock.listen(128)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        raise ApiUnavailable(f"cannot serve the local API at {path}: {exc}") from exc
    finally:
        with contextlib.suppress(FileNotFoundError):
            staged.unlink()
        private.rmdir()
    return sock


def _clear_stale(path: Path) -> None:
    """Remove a socket nobody answers on; refuse a live one, or a file that is no socket."""
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise ApiUnavailable(f"{path} exists and is not a socket: not replacing it")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(str(path))
    except (ConnectionRefusedError, FileNotFoundError):
        path.unlink(missing_ok=True)  # left by a service that was killed
        return
    finally:
        probe.close()
    raise ApiUnavailable(f"another service already serves the local API at {path}")


def _group_id(name: str) -> int:
    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        raise ConfigError(f"[api] socket_group {name!r} is not a group on this machine") from None


def read_token(path: Path) -> str:
    """The bearer token for TCP: a file only its owner can read, at least 32 characters."""
    try:
        info = path.stat()
        text = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(f"[api] token_file {path}: {exc}") from None
    if info.st_mode & 0o077:
        raise ConfigError(
            f"[api] token_file {path} is readable by others (mode "
            f"{stat.S_IMODE(info.st_mode):04o}): chmod 600 it"
        )
    if len(text) < MIN_TOKEN_CHARS or not text.isprintable() or " " in text:
        raise ConfigError(
            f"[api] token_file {path} must hold one token of at least {MIN_TOKEN_CHARS} "
            "printable characters without spaces (e.g. from 'openssl rand -hex 32')"
        )
    return text


def _bound_port(runner: web.AppRunner) -> int:
    for site in runner.sites:
        server = getattr(site, "_server", None)
        if server is not None and server.sockets:
            return int(server.sockets[0].getsockname()[1])
    raise ApiUnavailable("the API's TCP listener has no socket")


def _remove_own_socket(path: Path, inode: int) -> None:
    """Remove the socket file this server made, and nothing else: a server refused
    because another one serves there must not unlink the live one's socket, nor a server
    that stops remove the socket a newer one has put in its place meanwhile."""
    with contextlib.suppress(FileNotFoundError):
        info = path.lstat()
        if stat.S_ISSOCK(info.st_mode) and info.st_ino == inode:
            path.unlink()
