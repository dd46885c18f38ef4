"""A real browser for the tests: Debian's ``chromium``, headless, over the DevTools protocol.

No driver and no new dependency: the browser is started with
``--remote-debugging-port=0``, the port it picked is read from ``DevToolsActivePort`` in
its throw-away profile directory, and the kit speaks the Chrome DevTools Protocol (CDP)
over one websocket (aiohttp's client, on an event loop of its own in a background thread)
behind a small synchronous facade::

    with browser_or_skip() as browser:          # or Browser.start() where it must exist
        page = browser.open("http://127.0.0.1:9464/")   # http(s):// or file://
        page.wait_for("document.querySelector('#queue-live') !== null", 30)
        page.text("#queue-live")                 # textContent, or None: no such element
        page.evaluate("document.title")          # any JS expression, by value
        page.screenshot(artifacts_dir() / "page.png")
        assert page.errors == []                 # console errors, exceptions, failed loads

Waiting is always a bounded poll (:meth:`Page.wait_for`), never a sleep. A page that
reloads itself (meta refresh) keeps its page object: the CDP session belongs to the tab,
and an evaluation that races a navigation is retried within its bound.

Chromium missing is a skip, naming the package, unless ``AIRLOCK_REQUIRE_CHROMIUM`` is
set (make test sets it: there the Makefile installed ``chromium``, so missing is a
failure), as tests/kits/postgres.py does for PostgreSQL. ``AIRLOCK_CHROMIUM`` names
another binary. Cleanup holds on a failure: the browser's process group is killed and
its profile directory removed when the block ends.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest

REQUIRE_ENV = "AIRLOCK_REQUIRE_CHROMIUM"
BINARY_ENV = "AIRLOCK_CHROMIUM"
ARTIFACTS_ENV = "AIRLOCK_ARTIFACTS"
NAMES = ("chromium",)  # Debian's package installs /usr/bin/chromium
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"  # git-ignored

START_TIMEOUT_S = 30.0  # the browser up and its DevTools port written
CALL_TIMEOUT_S = 30.0  # one CDP command answered
STOP_TIMEOUT_S = 10.0
POLL_S = 0.05

FLAGS = (
    "--headless",
    "--no-sandbox",  # root in a container: the setuid sandbox is not available
    "--disable-gpu",
    "--remote-debugging-port=0",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-extensions",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--mute-audio",
    "--hide-scrollbars",
    "--password-store=basic",
)
# Evaluations that fail only because the page is between two documents (a reload).
NAVIGATING = ("Execution context was destroyed", "Cannot find context", "navigated or closed")


Listener = Callable[[str, dict[str, Any]], None]  # (CDP event method, its params)


class ChromiumMissing(RuntimeError):
    """No chromium binary on this machine."""


class CdpError(RuntimeError):
    """The browser answered a command with an error."""


class JsError(RuntimeError):
    """The evaluated expression threw."""


# --------------------------------------------------------------------------- finding it


def find_chromium(env: Mapping[str, str] = os.environ) -> str:
    """The browser binary: ``$AIRLOCK_CHROMIUM``, else ``chromium`` on PATH."""
    named = env.get(BINARY_ENV)
    if named:
        if shutil.which(named) is None:
            raise ChromiumMissing(f"{BINARY_ENV}={named} is not an executable")
        return named
    for name in NAMES:
        found = shutil.which(name, path=env.get("PATH", os.defpath))
        if found is not None:
            return found
    raise ChromiumMissing(
        "chromium not found on PATH (Debian: apt-get install chromium; make test installs it)"
    )


def required(env: Mapping[str, str] = os.environ) -> bool:
    """Whether a missing chromium is an error here (any value but empty or 0)."""
    return env.get(REQUIRE_ENV, "") not in ("", "0")


def chromium_or_skip(env: Mapping[str, str] = os.environ) -> str:
    """The binary, or a skip (a failure when ``AIRLOCK_REQUIRE_CHROMIUM`` is set)."""
    try:
        return find_chromium(env)
    except ChromiumMissing as exc:
        if required(env):
            pytest.fail(f"{exc} ({REQUIRE_ENV} is set, so this is an error)", pytrace=False)
        pytest.skip(f"{exc} (set {REQUIRE_ENV}=1 to make this an error)")


@contextlib.contextmanager
def browser_or_skip(env: Mapping[str, str] = os.environ, **options: Any) -> Iterator[Browser]:
    """:meth:`Browser.start` with the binary of :func:`chromium_or_skip`."""
    with Browser.start(executable=chromium_or_skip(env), **options) as browser:
        yield browser


def artifacts_dir(env: Mapping[str, str] = os.environ) -> Path:
    """Where tests keep what a person looks at afterwards (screenshots): kept after the
    run; ``$AIRLOCK_ARTIFACTS`` or ``test-artifacts/`` at the repository root."""
    path = Path(env.get(ARTIFACTS_ENV) or ARTIFACTS)
    path.mkdir(parents=True, exist_ok=True)
    return path


# --------------------------------------------------------------------------- the wire


class _Connection:
    """One websocket to the browser, on a private event loop in a daemon thread.

    Commands are matched to their answers by id; events go to the listener of their CDP
    session (one per page)."""

    def __init__(self, ws_url: str) -> None:
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._listeners: dict[str, Listener] = {}
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._http: aiohttp.ClientSession | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._reader: asyncio.Task[None] | None = None
        self._run(self._open(ws_url), START_TIMEOUT_S)

    def _run(self, coro: Any, timeout_s: float) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout_s + 5)

    async def _open(self, ws_url: str) -> None:
        self._http = aiohttp.ClientSession(trust_env=False)
        self._ws = await self._http.ws_connect(ws_url, max_msg_size=0, autoping=True)
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self._ws is not None
        async for message in self._ws:
            if message.type is not aiohttp.WSMsgType.TEXT:
                continue
            data = json.loads(message.data)
            if "id" in data:
                future = self._pending.pop(data["id"], None)
                if future is not None and not future.done():
                    future.set_result(data)
            else:
                listener = self._listeners.get(data.get("sessionId", ""))
                if listener is not None:
                    with contextlib.suppress(Exception):  # one odd event must not end the reader
                        listener(data["method"], data.get("params", {}))
        for future in self._pending.values():  # the browser went away
            if not future.done():
                future.set_exception(CdpError("the browser closed the connection"))

    async def _send(
        self, method: str, params: Mapping[str, Any], session: str | None, timeout_s: float
    ) -> Any:
        assert self._ws is not None
        number = next(self._ids)
        future: asyncio.Future[Any] = self._loop.create_future()
        self._pending[number] = future
        message: dict[str, Any] = {"id": number, "method": method, "params": dict(params)}
        if session is not None:
            message["sessionId"] = session
        await self._ws.send_str(json.dumps(message))
        try:
            async with asyncio.timeout(timeout_s):
                answer = await future
        finally:
            self._pending.pop(number, None)
        if "error" in answer:
            error = answer["error"]
            raise CdpError(f"{method}: {error.get('message')} ({error.get('code')})")
        return answer.get("result", {})

    def call(
        self,
        method: str,
        params: Mapping[str, Any] | None = None,
        *,
        session: str | None = None,
        timeout_s: float = CALL_TIMEOUT_S,
    ) -> Any:
        """One CDP command, answered within ``timeout_s``; its result."""
        return self._run(self._send(method, params or {}, session, timeout_s), timeout_s)

    def listen(self, session: str, listener: Listener) -> None:
        self._listeners[session] = listener

    def close(self) -> None:
        async def shut() -> None:
            if self._ws is not None:
                await self._ws.close()
            if self._reader is not None:
                with contextlib.suppress(Exception):
                    await self._reader
            if self._http is not None:
                await self._http.close()

        with contextlib.suppress(Exception):
            self._run(shut(), STOP_TIMEOUT_S)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(STOP_TIMEOUT_S)
        if not self._thread.is_alive():
            self._loop.close()


# --------------------------------------------------------------------------- the browser


@dataclass
class Browser:
    """A headless chromium process and the connection to it; use :meth:`start`."""

    process: subprocess.Popen[bytes]
    profile: Path
    connection: _Connection
    pages: list[Page] = field(default_factory=list)

    @classmethod
    @contextlib.contextmanager
    def start(
        cls, *, executable: str | None = None, timeout_s: float = START_TIMEOUT_S
    ) -> Iterator[Browser]:
        """A fresh browser for the block (its own profile); killed and removed after."""
        binary = executable or find_chromium()
        profile = Path(tempfile.mkdtemp(prefix="airlock-chromium-"))
        log = (profile / "chromium.log").open("wb")
        process = subprocess.Popen(
            [binary, *FLAGS, f"--user-data-dir={profile}", "about:blank"],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,  # its own process group: killed whole at the end
        )
        log.close()
        browser: Browser | None = None
        try:
            ws_url = _devtools_url(process, profile, timeout_s)
            browser = cls(process, profile, _Connection(ws_url))
            yield browser
        finally:
            if browser is not None:
                browser.connection.close()
            _kill_group(process)
            shutil.rmtree(profile, ignore_errors=True)

    def open(
        self,
        url: str,
        *,
        width: int = 1280,
        height: int = 900,
        mobile: bool = False,
        timeout_s: float = CALL_TIMEOUT_S,
    ) -> Page:
        """A new tab of ``width`` x ``height`` CSS pixels (``mobile``: a phone's viewport
        rules and touch), navigated to ``url`` and loaded."""
        target = self.connection.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        attached = self.connection.call(
            "Target.attachToTarget", {"targetId": target, "flatten": True}
        )
        page = Page(self.connection, target, attached["sessionId"])
        self.connection.listen(page.session, page._on_event)
        for domain in ("Page", "Runtime", "Log"):
            page.call(f"{domain}.enable")
        page.set_viewport(width, height, mobile=mobile)
        self.pages.append(page)
        page.navigate(url, timeout_s=timeout_s)
        return page

    def log_tail(self, size: int = 4000) -> str:
        """The end of the browser's own stderr (for a failure message)."""
        path = self.profile / "chromium.log"
        return path.read_bytes()[-size:].decode(errors="replace") if path.exists() else ""


def _devtools_url(process: subprocess.Popen[bytes], profile: Path, timeout_s: float) -> str:
    """The browser's websocket, from DevToolsActivePort (port, then path), bounded."""
    marker = profile / "DevToolsActivePort"
    deadline = time.monotonic() + timeout_s
    while True:
        if marker.exists():
            lines = marker.read_text().split()
            if len(lines) >= 2:
                return f"ws://127.0.0.1:{int(lines[0])}{lines[1]}"
        if process.poll() is not None:
            tail = (profile / "chromium.log").read_bytes()[-3000:].decode(errors="replace")
            raise RuntimeError(f"chromium exited with {process.returncode} at start:\n{tail}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"chromium wrote no DevToolsActivePort within {timeout_s} s")
        time.sleep(POLL_S)


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the browser's process group, SIGKILL after a bound; reaped."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, sig)
        try:
            process.wait(timeout=STOP_TIMEOUT_S)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)  # any helper left in the group
            return
        except subprocess.TimeoutExpired:
            continue


# --------------------------------------------------------------------------- a page


@dataclass(frozen=True)
class ConsoleEntry:
    source: str  # console, exception, log
    level: str
    text: str


@dataclass
class Page:
    """One tab. :attr:`console` holds every message since it opened; :attr:`errors`
    those that are errors (console.error, uncaught exceptions, failed loads, CSP);
    :attr:`loads` counts the documents loaded in it (a page that reloads itself adds
    one each time)."""

    connection: _Connection
    target: str
    session: str
    console: list[ConsoleEntry] = field(default_factory=list)
    loads: int = 0

    @property
    def errors(self) -> list[str]:
        return [f"{e.source}: {e.text}" for e in self.console if e.level in ("error", "assert")]

    def _on_event(self, method: str, params: dict[str, Any]) -> None:
        if method == "Page.loadEventFired":
            self.loads += 1
        elif method == "Runtime.consoleAPICalled":
            words = [_remote_text(arg) for arg in params.get("args", [])]
            self.console.append(ConsoleEntry("console", params.get("type", ""), " ".join(words)))
        elif method == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            text = details.get("exception", {}).get("description") or details.get("text", "")
            self.console.append(ConsoleEntry("exception", "error", str(text)))
        elif method == "Log.entryAdded":
            entry = params.get("entry", {})
            text = f"{entry.get('text', '')} {entry.get('url', '')}".strip()
            self.console.append(ConsoleEntry("log", entry.get("level", ""), text))

    def call(self, method: str, params: Mapping[str, Any] | None = None, **kw: Any) -> Any:
        """A CDP command in this tab's session."""
        return self.connection.call(method, params, session=self.session, **kw)

    def set_viewport(self, width: int, height: int, *, mobile: bool = False) -> None:
        metrics = {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile}
        self.call("Emulation.setDeviceMetricsOverride", metrics)
        self.call("Emulation.setTouchEmulationEnabled", {"enabled": mobile})

    def navigate(self, url: str, *, timeout_s: float = CALL_TIMEOUT_S) -> None:
        """Go to ``url`` and wait until its document has loaded."""
        answer = self.call("Page.navigate", {"url": url}, timeout_s=timeout_s)
        if answer.get("errorText"):
            raise RuntimeError(f"could not load {url}: {answer['errorText']}")
        self.wait_for("document.readyState === 'complete'", timeout_s, f"{url} to load")

    def evaluate(self, expression: str, *, timeout_s: float = 10.0) -> Any:
        """The value of a JS expression (promises awaited). An evaluation that races a
        reload of the page is tried again within ``timeout_s``; a throw is a JsError."""
        deadline = time.monotonic() + timeout_s
        params = {"expression": expression, "returnByValue": True, "awaitPromise": True}
        while True:
            try:
                answer = self.call("Runtime.evaluate", params, timeout_s=timeout_s)
            except CdpError as exc:
                if not any(m in str(exc) for m in NAVIGATING) or time.monotonic() > deadline:
                    raise
                time.sleep(POLL_S)
                continue
            if "exceptionDetails" in answer:
                details = answer["exceptionDetails"]
                text = details.get("exception", {}).get("description") or details.get("text")
                raise JsError(f"{expression!r} threw: {text}")
            return answer.get("result", {}).get("value")

    def wait_for(self, predicate: str, timeout_s: float, what: str | None = None) -> Any:
        """Poll the JS expression ``predicate`` until it is truthy; its value. Fails after
        ``timeout_s`` seconds, naming ``what`` and the last value or error seen."""
        deadline = time.monotonic() + timeout_s
        last: Any = None
        while True:
            try:
                last = self.evaluate(predicate, timeout_s=min(10.0, timeout_s))
            except (CdpError, JsError) as exc:
                last = exc
            else:
                if last:
                    return last
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"timed out after {timeout_s} s waiting for {what or predicate} "
                    f"(last: {last!r}; page errors: {self.errors})"
                )
            time.sleep(POLL_S)

    def text(self, selector: str) -> str | None:
        """The ``textContent`` of the first element matching ``selector``; None if none."""
        found = self.evaluate(f"document.querySelector({json.dumps(selector)})?.textContent")
        return None if found is None else str(found)

    def attr(self, selector: str, name: str) -> str | None:
        """An attribute of the first element matching ``selector``; None if none."""
        js = f"document.querySelector({json.dumps(selector)})?.getAttribute({json.dumps(name)})"
        found = self.evaluate(js)
        return None if found is None else str(found)

    def count(self, selector: str) -> int:
        """How many elements match ``selector``."""
        return int(self.evaluate(f"document.querySelectorAll({json.dumps(selector)}).length"))

    def screenshot(self, path: Path | str, *, full_page: bool = True) -> Path:
        """A PNG of the page (all of it, or the viewport) written to ``path``."""
        params: dict[str, Any] = {"format": "png"}
        if full_page:
            size = self.call("Page.getLayoutMetrics")["cssContentSize"]
            params["captureBeyondViewport"] = True
            params["clip"] = {
                "x": 0,
                "y": 0,
                "width": max(1, round(size["width"])),
                "height": max(1, round(size["height"])),
                "scale": 1,
            }
        data = self.call("Page.captureScreenshot", params)["data"]
        out = Path(path)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(base64.b64decode(data))
        return out

    def close(self) -> None:
        self.connection.call("Target.closeTarget", {"targetId": self.target})


def _remote_text(arg: Mapping[str, Any]) -> str:
    """A console argument as text: its value, else its description."""
    if "value" in arg:
        return str(arg["value"])
    return str(arg.get("description", arg.get("type", "")))
