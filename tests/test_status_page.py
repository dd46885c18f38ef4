"""The service's live status page (issue 19, item 4): ``GET /`` beside ``/metrics``.

Three layers. The renderer alone (pure: every section and hook there, the phone
viewport, hostile text escaped, the stylesheet allowed by its CSP hash). The endpoint
in-process (security headers, ``/status.json``, the loopback ``Host`` rule, a status that
fails or hangs). Then a real browser, headless Debian ``chromium`` over the DevTools
protocol (tests/kits/browser.py): the renderer's output at a phone's width, and a real
run: the service built by ``build_service`` on a real SQLite queue, a real anvil behind
two fault proxies, the endpoint on port 0; the page is loaded once and refreshes itself
while the test takes both links down, queues transfers, and brings the links back.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import struct
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from tests.kits import browser as browser_kit
from tests.kits import bybit as bybit_kit
from tests.kits.broadcast import make_senders, queue_transfers
from tests.kits.cli import airlock
from tests.kits.waiting import wait_until

from airlock.broadcaster import status as status_data
from airlock.broadcaster import statuspage
from airlock.broadcaster.metrics import Metrics
from airlock.broadcaster.runner import Service
from airlock.broadcaster.setup import build_service, build_venue
from airlock.config import load_config
from airlock.queue.kek import HsmKek
from airlock.queue.states import State
from airlock.queue.store import Store
from airlock.sim.anvil import Anvil
from airlock.sim.faultproxy import FaultProxy

HOSTILE = '"><script>alert(1)</script><img src=x onerror=alert(2)>&amp;'
PHONE = {"width": 390, "height": 844, "mobile": True}
WAIT_S = 60  # every bound on a wait (they only matter when a test fails)


# --------------------------------------------------------------------------- sample data


def relay_row(name: str, state: str, **extra: Any) -> dict[str, Any]:
    usable = state in ("up", "degraded")
    row = {
        "name": name,
        "kind": "evm-rpc",
        "role": "primary",
        "url": "http://127.0.0.1:8545",
        "link": None,
        "chain_id": 31337,
        "probed": True,
        "state": state,
        "usable": usable,
        "head": 12 if usable else None,
        "latency_ms": 3 if usable else None,
        "last_error": None if usable else "connection refused",
    }
    return row | extra


def sample(**changes: Any) -> dict[str, Any]:
    """Status data as the service produces it: one relay up, one down, Bybit up, two
    queued transfers, one sender, a running broadcaster and one open alert."""
    bybit = status_data.bybit_row(
        "main", "https://api.bybit.com", 5000, status_data.live_bybit_probe(True, -7, 41.6, None)
    )
    relays = [relay_row("rpc-a", "up"), relay_row("rpc-b", "down")]
    links = {
        "probed": True,
        "relays": relays,
        "bybit": bybit,
        "down": ["rpc-b"],
        "any_up": True,
    }
    data: dict[str, Any] = {
        "generated_ms": 1_718_000_000_000,
        "queue_path": "/var/lib/airlock/queue.db",
        "links": links,
        "queue": {
            "exists": True,
            "live": 2,
            "total": 3,
            "by_kind": {"evm_tx": {"queued": 2, "confirmed": 1}},
            "by_state": {"queued": 2, "confirmed": 1},
            "oldest_live": {
                "id": "01J0000000000000000000000A",
                "kind": "evm_tx",
                "state": "queued",
                "account": "0x" + "ab" * 20,
                "created_ms": 1_717_999_935_000,
                "age_s": 65,
            },
        },
        "nonces": [
            {
                "chain_id": 31337,
                "sender": "0x" + "ab" * 20,
                "next_nonce": 3,
                "base_nonce": 0,
                "chain_pending": 1,
                "synced_ms": None,
                "live": 2,
                "lowest_live": 1,
                "gaps": [],
                "synced_age_s": None,
            }
        ],
        "broadcaster": {
            "heartbeat_ms": 1_717_999_998_000,
            "heartbeat_age_s": 2,
            "stale": False,
            "last_reconcile_ms": 1_717_999_990_000,
            "last_reconcile_age_s": 10,
            "pid": 4242,
        },
        "alerts": [
            {
                "key": "relay.down.rpc-b",
                "message": "relay rpc-b is down",
                "severity": "critical",
                "first_ms": 1_717_999_900_000,
                "last_ms": 1_717_999_990_000,
                "count": 3,
                "sent_ms": None,
                "resolved_ms": None,
                "first_age_s": 100,
                "last_age_s": 10,
            }
        ],
    }
    return data | changes


def hostile_sample() -> dict[str, Any]:
    """Every string a relay, the venue or an alert could bring in, made hostile."""
    data = sample()
    data["links"]["relays"][1] |= {"name": HOSTILE, "url": f"http://h/{HOSTILE}"}
    data["links"]["relays"][1]["last_error"] = HOSTILE
    data["links"]["down"] = [HOSTILE]
    data["links"]["bybit"]["account"] = HOSTILE
    data["alerts"][0] |= {"key": HOSTILE, "message": HOSTILE, "severity": HOSTILE}
    data["queue"]["oldest_live"]["account"] = HOSTILE
    data["queue_path"] = HOSTILE
    return data


class Dom(HTMLParser):
    """Every start tag with its attributes, and the page's text."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.style: list[str] = []
        self._in_style = False
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        self._in_style = tag == "style"

    def handle_endtag(self, tag: str) -> None:
        self._in_style = False

    def handle_data(self, data: str) -> None:
        (self.style if self._in_style else self.text).append(data)

    def find(self, tag: str | None = None, **attrs: str) -> list[dict[str, str | None]]:
        return [
            a
            for t, a in self.tags
            if (tag is None or t == tag) and all(a.get(k) == v for k, v in attrs.items())
        ]


# --------------------------------------------------------------------------- the renderer


def test_every_section_its_hooks_and_a_phone_viewport():
    text = statuspage.render_page(sample(), refresh_s=7)
    assert text.startswith("<!DOCTYPE html>\n")
    dom = Dom(text)
    sections = [a["id"] for t, a in dom.tags if t == "section"]
    assert sections == ["links", "queue", "nonces", "broadcaster", "alerts"]
    [viewport] = dom.find("meta", name="viewport")
    assert viewport["content"] == "width=device-width, initial-scale=1"
    [refresh] = dom.find("meta", **{"http-equiv": "refresh"})
    assert refresh["content"] == "7"
    rows = {a["data-link"]: a for t, a in dom.tags if "data-link" in a}
    assert rows["rpc-a"]["data-state"] == "up" and rows["rpc-a"]["data-usable"] == "true"
    assert rows["rpc-b"]["data-state"] == "down" and rows["rpc-b"]["data-usable"] == "false"
    assert rows["bybit"]["data-state"] == "up" and rows["bybit"]["data-kind"] == "bybit"
    [links] = dom.find("section", id="links")
    assert (links["data-any-up"], links["data-down"], links["data-links"]) == ("true", "1", "3")
    [live] = dom.find(id="queue-live")
    assert live["data-count"] == "2"
    assert dom.find(id="queue-total")[0]["data-count"] == "3"
    assert dom.find(**{"data-kind": "evm_tx", "data-state": "confirmed", "data-count": "1"})
    assert dom.find(id="queue-oldest")[0]["data-item"] == "01J0000000000000000000000A"
    assert dom.find("tr", **{"data-chain": "31337", "data-sender": "0x" + "ab" * 20})
    assert dom.find("section", id="broadcaster")[0]["data-state"] == "running"
    assert dom.find("section", id="alerts")[0]["data-open"] == "1"
    assert dom.find("li", **{"data-alert": "relay.down.rpc-b", "data-severity": "critical"})
    words = " ".join(dom.text)
    assert "DOWN: rpc-b" in words and "clock offset -7 ms" in words and "42 ms" in words
    assert "waiting 1 min" in words and "head 12" in words
    assert "airlock: 2 of 3 links up, 2 live" in words  # the title


def test_the_page_is_self_contained():
    dom = Dom(statuspage.render_page(sample()))
    assert not dom.find("script") and not dom.find("img") and not dom.find("iframe")
    linked = [a.get("href") or a.get("src") for _, a in dom.tags if {"href", "src"} & set(a)]
    assert linked == ["data:,"]  # the empty favicon, nothing fetched
    assert len(dom.style) == 1


def test_the_csp_allows_exactly_the_inline_stylesheet():
    dom = Dom(statuspage.render_page(sample()))
    digest = base64.b64encode(hashlib.sha256(dom.style[0].encode()).digest()).decode()
    assert f"style-src 'sha256-{digest}'" in statuspage.CSP
    assert statuspage.CSP.startswith("default-src 'none';")
    assert "script-src" not in statuspage.CSP and "unsafe" not in statuspage.CSP


def test_hostile_text_is_escaped_everywhere():
    text = statuspage.render_page(hostile_sample())
    dom = Dom(text)
    assert not dom.find("script") and not dom.find("img")
    assert not [a for _, a in dom.tags if any(k.startswith("on") for k in a)]
    assert "<script>" not in text and "<img" not in text
    # The browser shows the text as it was: parsed back, every hostile string is intact.
    assert HOSTILE in dom.find(**{"data-state": "down"})[0]["data-link"]  # type: ignore[operator]
    assert dom.find("li", **{"data-alert": HOSTILE})
    words = "".join(dom.text)
    assert words.count(HOSTILE) >= 6  # name, error, DOWN list, alert key and message, path
    assert f"{HOSTILE.upper()}" in words  # the severity badge


def test_a_store_that_cannot_be_read_leaves_the_links_shown():
    data = {k: v for k, v in sample().items() if k in ("generated_ms", "queue_path", "links")}
    data["store_error"] = "the queue could not be read (StoreUnavailable)"
    dom = Dom(statuspage.render_page(data))
    assert [a["id"] for t, a in dom.tags if t == "section"] == ["links", "store-error"]
    assert not dom.find(id="queue-live")
    assert "the queue could not be read (StoreUnavailable)" in " ".join(dom.text)
    gone = Dom(statuspage.render_unavailable(HOSTILE, refresh_s=3))
    assert gone.find("section", id="unavailable") and not gone.find("script")
    assert HOSTILE in " ".join(gone.text)
    assert gone.find("meta", **{"http-equiv": "refresh"})[0]["content"] == "3"


@pytest.mark.parametrize(
    ("asked", "used"),
    [(None, 5), ("2", 2), ("0", 1), ("-4", 1), ("100000", 300), ("1e3", 5), ("x", 5)],
)
def test_the_refresh_asked_for_is_bounded(asked, used):
    assert statuspage.refresh_from_query(asked) == used


def test_the_broadcaster_and_queue_states_in_words():
    stale = sample()
    stale["broadcaster"] |= {"stale": True, "heartbeat_age_s": 600}
    assert "NOT RUNNING? last heartbeat 10 min ago" in statuspage.render_page(stale)
    never = sample(queue=status_data.no_store(Path("q.db"))["queue"])
    never["broadcaster"] = status_data.no_store(Path("q.db"))["broadcaster"]
    dom = Dom(statuspage.render_page(never))
    assert dom.find("section", id="broadcaster")[0]["data-state"] == "never"
    assert dom.find("section", id="queue")[0]["data-exists"] == "false"
    assert dom.find(id="queue-live")[0]["data-count"] == "0"


class Unreadable:
    """A store whose server went away: every read raises."""

    shown = "postgresql://db.example/airlock"

    def __getattr__(self, name: str) -> Any:
        raise ConnectionError("the server went away")


def test_the_document_reads_the_store_and_survives_one_that_fails(store):
    links = status_data.links_section([], {}, None, probed=True)
    read = status_data.document(store, links, now=1_000)
    assert list(read) == ["generated_ms", "queue_path", "links", *status_data.SECTIONS[1:]]
    assert read["queue"]["exists"] is True and read["queue"]["live"] == 0
    assert read["generated_ms"] == 1_000 and read["queue_path"] == store.shown
    failed = status_data.document(Unreadable(), links, now=1_000)  # type: ignore[arg-type]
    assert failed["store_error"] == "the queue could not be read (ConnectionError)"
    assert set(failed) == {"generated_ms", "queue_path", "links", "store_error"}


def test_the_monitors_word_is_the_state_and_a_dead_link_shows_no_stale_figures():
    from airlock.relays.health import HealthSnapshot, LinkState

    def snap(state: LinkState) -> HealthSnapshot:
        return HealthSnapshot("rpc-a", 1, state, 12, 5, "refused", 6, 0, 99)

    up, degraded = (
        status_data.live_relay_probe(snap(s)) for s in (LinkState.UP, LinkState.DEGRADED)
    )
    assert (up["state"], up["head"], up["latency_ms"], up["last_error"]) == ("up", 99, 12, None)
    assert degraded["state"] == "degraded" and degraded["usable"] is True
    down = status_data.live_relay_probe(snap(LinkState.DOWN))
    assert (down["usable"], down["head"], down["latency_ms"]) == (False, None, None)
    assert down["last_error"] == "refused"
    assert status_data.live_bybit_probe(False, 40, 3.2, None) == {
        "usable": False, "offset_ms": None, "latency_ms": None, "last_error": None,
    }  # fmt: skip
    assert status_data.live_bybit_probe(True, -40, 3.6, None)["latency_ms"] == 4


async def test_the_venue_row_is_the_supervisors_view(store, keyring):
    keys = bybit_kit.make_keys(keyring)
    with bybit_kit.sim_for(keys) as sim:
        config = bybit_kit.settings(keys, sim.url, account="desk-1")
        venue = build_venue(config, keyring, store)
        service = Service(store, None, venue, bybit=config)
        before = service.links()
        async with venue.client:
            assert await venue.connect()
            after = service.links()
    assert before["bybit"]["state"] == "down" and before["any_up"] is False
    assert before["down"] == ["bybit"] and before["bybit"]["offset_ms"] is None
    row = after["bybit"]
    assert (row["state"], row["usable"], row["account"]) == ("up", True, "desk-1")
    assert isinstance(row["offset_ms"], int) and isinstance(row["latency_ms"], int)
    assert row["url"] == sim.url and after["down"] == [] and after["any_up"] is True
    assert after["relays"] == [] and after["probed"] is True


# --------------------------------------------------------------------------- the endpoint


async def fetch(url: str, **headers: str) -> tuple[int, dict[str, str], str]:
    async with aiohttp.ClientSession() as http, http.get(url, headers=headers) as answer:
        return answer.status, dict(answer.headers), await answer.text()


async def test_the_endpoint_serves_the_page_and_its_json_with_security_headers():
    calls: list[int] = []

    def status() -> dict[str, Any]:  # synchronous: run in a worker thread
        calls.append(1)
        return sample()

    async with Metrics().serve("127.0.0.1", 0, status=status) as server:
        code, headers, text = await fetch(f"{server.url}/?refresh=2")
        json_code, json_headers, body = await fetch(f"{server.url}/status.json")
        health, _, _ = await fetch(f"{server.url}/healthz")
    assert code == 200 and headers["Content-Type"] == "text/html; charset=utf-8"
    assert headers["Content-Security-Policy"] == statuspage.CSP
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Cache-Control"] == "no-store"
    assert Dom(text).find("meta", **{"http-equiv": "refresh"})[0]["content"] == "2"
    assert json_code == 200 and json_headers["Content-Type"].startswith("application/json")
    assert json_headers["X-Content-Type-Options"] == "nosniff"
    assert json.loads(body) == sample() and body == json.dumps(sample(), indent=2)
    assert health == 200 and len(calls) == 2


async def test_a_foreign_host_name_is_refused():
    """A page elsewhere that rebinds its name to 127.0.0.1 sends its own name as Host."""
    async with Metrics().serve("127.0.0.1", 0, status=sample) as server:
        foreign = await fetch(f"{server.url}/", Host="attacker.example")
        foreign_json = await fetch(f"{server.url}/status.json", Host="attacker.example:9464")
        named = await fetch(f"{server.url}/", Host=f"localhost:{server.port}")
        v6 = await fetch(f"{server.url}/", Host=f"[::1]:{server.port}")
    assert foreign[0] == 421 and foreign_json[0] == 421
    assert "<" not in foreign[2] and "rpc-a" not in foreign_json[2]
    assert named[0] == 200 and v6[0] == 200


async def test_a_status_that_fails_or_hangs_gives_the_unavailable_page(monkeypatch):
    never = asyncio.Event()

    async def hangs() -> dict[str, Any]:
        await never.wait()
        raise AssertionError("unreachable")

    def fails() -> dict[str, Any]:
        raise RuntimeError("secret detail that stays in the log")

    monkeypatch.setattr("airlock.broadcaster.metrics.STATUS_TIMEOUT_S", 0.2)
    async with Metrics().serve("127.0.0.1", 0, status=hangs) as server:
        slow = await fetch(f"{server.url}/")
        slow_json = await fetch(f"{server.url}/status.json")
    async with Metrics().serve("127.0.0.1", 0, status=fails) as server:
        broken = await fetch(f"{server.url}/")
    assert slow[0] == 503 and "took longer than 0.2 s" in slow[2]
    assert slow[1]["Content-Security-Policy"] == statuspage.CSP
    assert Dom(slow[2]).find("meta", **{"http-equiv": "refresh"})  # it keeps trying
    assert slow_json[0] == 503 and "took longer" in json.loads(slow_json[2])["error"]
    assert broken[0] == 503 and "RuntimeError" in broken[2] and "secret" not in broken[2]


async def test_without_a_status_there_is_no_page():
    async with Metrics().serve("127.0.0.1", 0) as server:
        assert (await fetch(f"{server.url}/"))[0] == 404
        assert (await fetch(f"{server.url}/status.json"))[0] == 404


# --------------------------------------------------------------------------- a real browser


@pytest.fixture(scope="module")
def browser() -> Iterator[browser_kit.Browser]:
    with browser_kit.browser_or_skip() as started:
        yield started


def png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    width, height = struct.unpack(">II", head[16:24])
    return width, height


NO_SIDEWAYS_SCROLL = "document.documentElement.scrollWidth <= window.innerWidth"


def test_missing_chromium_is_a_skip_unless_required(tmp_path):
    nowhere = {"PATH": str(tmp_path)}
    with pytest.raises(pytest.skip.Exception, match="AIRLOCK_REQUIRE_CHROMIUM=1"):
        browser_kit.chromium_or_skip(env=nowhere)
    with pytest.raises(pytest.fail.Exception, match="is set, so this is an error"):
        browser_kit.chromium_or_skip(env=nowhere | {browser_kit.REQUIRE_ENV: "1"})
    assert not browser_kit.required({browser_kit.REQUIRE_ENV: "0"})


@pytest.mark.browser
def test_the_kit_sees_console_errors_exceptions_and_failed_loads(browser, tmp_path):
    """The control for every ``page.errors == []``: errors of each kind are caught."""
    noisy = tmp_path / "noisy.html"
    noisy.write_text(
        "<!DOCTYPE html><title>noisy</title><p id=p>text</p>"
        '<img src="missing.png">'
        "<script>console.error('logged', 42); console.log('fine');"
        "setTimeout(() => { throw new Error('thrown late'); });</script>"
    )
    page = browser.open(noisy.as_uri())
    try:
        wait_until(lambda: len(page.errors) >= 3, WAIT_S, "the page's three errors")
        assert page.text("#p") == "text" and page.text("#nothing") is None
        assert page.count("p") == 1 and page.attr("img", "src") == "missing.png"
        with pytest.raises(AssertionError, match=r"timed out after 0\.2 s waiting for never"):
            page.wait_for("false", 0.2, "never")
        with pytest.raises(browser_kit.JsError, match="boom"):
            page.evaluate("(() => { throw new Error('boom'); })()")
        seen = page.errors
        console = page.console
    finally:
        page.close()
    assert any("logged 42" in e for e in seen), seen
    assert any("thrown late" in e for e in seen), seen
    assert any("missing.png" in e or "ERR_FILE_NOT_FOUND" in e for e in seen), seen
    assert not any("fine" in e for e in seen)
    assert any(e.text == "fine" and e.level == "log" for e in console)  # kept, not an error


@pytest.mark.browser
def test_the_page_on_a_phone_shows_hostile_text_as_text(browser, tmp_path):
    page_file = tmp_path / "status.html"
    page_file.write_text(statuspage.render_page(hostile_sample(), refresh_s=300))
    page = browser.open(page_file.as_uri(), **PHONE)
    try:
        assert page.evaluate("window.innerWidth") == PHONE["width"]
        assert page.evaluate(NO_SIDEWAYS_SCROLL), "the page scrolls sideways on a phone"
        assert page.count("script") == 0 and page.count("img") == 0
        assert page.evaluate("document.querySelectorAll('[data-link]').length") == 3
        js = "document.querySelector('[data-state=down]').dataset.link"
        assert page.evaluate(js) == HOSTILE
        assert page.text("#queue-live") == "2"
        # On a narrow screen each link row is a card: its header row is hidden.
        assert (
            page.evaluate("getComputedStyle(document.querySelector('#links thead')).display")
            == "none"
        )
        assert page.errors == []
    finally:
        page.close()


def write_config(tmp_path: Path, store: Store, kek: HsmKek, relays: dict[str, str]) -> Path:
    """The airlock.toml of the run: the test's queue, two relays, fast probes, and no
    endpoint of its own (the test opens it on port 0 with ``Service.serving``)."""
    text = f'[queue]\npath = "{store.path}"\nkek_label = "{kek.label}"\n'
    text += "\n[service]\nmetrics_port = 0\n"
    for name, url in relays.items():
        text += (
            f'\n[[relays]]\nname = "{name}"\nkind = "evm-rpc"\nurl = "{url}"\n'
            "chain_id = 31337\ntimeout_seconds = 2.0\nconnect_timeout_seconds = 0.5\n"
        )
    text += (
        "\n[broadcaster]\nconfirmations = 1\nreconcile_seconds = 0.2\n"
        "\n[broadcaster.health]\nprobe_seconds = 0.2\nprobe_down_seconds = 0.05\n"
    )
    path = tmp_path / "airlock.toml"
    path.write_text(text)
    return path


def links_are(state: str, names: list[str]) -> str:
    """JS: every named link row shows ``state``."""
    row = "document.querySelector('[data-link=\"{}\"]')?.dataset.state === '{}'"
    return " && ".join(row.format(name, state) for name in names)


def live_is(test: str) -> str:
    """JS: the live count shown, compared (``test`` like ``=== 6``)."""
    return f"Number(document.querySelector('#queue-live')?.dataset.count ?? NaN) {test}"


@pytest.mark.anvil
@pytest.mark.slow
@pytest.mark.browser
async def test_the_page_follows_an_outage_live(
    store, kek, keyring, token_home, anvil: Anvil, browser, tmp_path
):
    senders = make_senders(keyring, anvil, 2)
    names = ["rpc-a", "rpc-b"]
    with FaultProxy(anvil.url).start() as a, FaultProxy(anvil.url).start() as b:
        config = write_config(tmp_path, store, kek, {"rpc-a": a.url, "rpc-b": b.url})
        settings = load_config(config, env={"AIRLOCK_HOME": str(token_home)})
        service = build_service(settings, store, keyring)
        stop = asyncio.Event()
        async with service.started(), service.serving("127.0.0.1", 0) as server:
            task = asyncio.create_task(service.run(stop))
            try:
                page = await asyncio.to_thread(browser.open, f"{server.url}/?refresh=1", **PHONE)
                seen = await outage_seen_live(page, store, senders, anvil, (a, b), names)
                await asyncio.to_thread(keep_screenshots, page)
                served = (await fetch(f"{server.url}/status.json"))[2]
            finally:
                stop.set()
                await asyncio.wait_for(task, 30)
    assert page.loads >= 4, "the page did not refresh itself"  # opened once, not navigated
    assert seen["peak"] == 6 and seen["after"] == 0
    assert all(store.items.get(i).state is State.CONFIRMED for i in seen["ids"])
    assert page.errors == [], page.errors
    same_as_the_cli(json.loads(served), token_home, config)


async def outage_seen_live(
    page: browser_kit.Page,
    store: Store,
    senders: list[Any],
    anvil: Anvil,
    proxies: tuple[FaultProxy, FaultProxy],
    names: list[str],
) -> dict[str, Any]:
    """The scripted outage, each step waited for in the rendered DOM."""

    async def wait(js: str, what: str) -> Any:
        return await asyncio.to_thread(page.wait_for, js, WAIT_S, what)

    await wait(links_are("up", names), "both links shown up")
    await wait(live_is("=== 0"), "an empty queue shown")
    styled = "getComputedStyle(document.querySelector('section')).borderTopLeftRadius"
    assert await asyncio.to_thread(page.evaluate, styled) == "8px"  # the CSP let the CSS in
    first = int(await asyncio.to_thread(page.attr, "body", "data-generated-ms") or 0)
    for proxy in proxies:
        await asyncio.to_thread(proxy.set_mode, "down")
    await wait(links_are("down", names), "both links shown down")
    await wait("document.querySelector('#links')?.dataset.anyUp === 'false'", "no link up")
    assert await asyncio.to_thread(page.text, "#links-alarm") is not None
    queued = await asyncio.to_thread(queue_transfers, store, senders, 3, anvil)
    await wait(live_is("=== 6"), "the six queued transfers shown")
    cell = "[data-kind=evm_tx][data-state=queued]"
    assert await asyncio.to_thread(page.attr, cell, "data-count") == "6"
    later = int(await asyncio.to_thread(page.attr, "body", "data-generated-ms") or 0)
    assert later > first  # a newer reading, though the test never navigated
    await asyncio.to_thread(page.screenshot, browser_kit.artifacts_dir() / "status-page-down.png")
    for proxy in proxies:
        await asyncio.to_thread(proxy.set_mode, "pass")
    await wait(links_are("up", names), "both links shown up again")
    await wait(live_is("< 6"), "the queue depth falling")
    await wait(live_is("=== 0"), "every transfer confirmed")
    done = "[data-kind=evm_tx][data-state=confirmed]"
    assert await asyncio.to_thread(page.attr, done, "data-count") == "6"
    assert await asyncio.to_thread(page.evaluate, NO_SIDEWAYS_SCROLL)
    return {"peak": 6, "after": 0, "ids": [q.item.id for q in queued]}


def keep_screenshots(page: browser_kit.Page) -> None:
    """The phone view and the desktop view, kept after the run; both real PNGs."""
    out = browser_kit.artifacts_dir()
    phone = page.screenshot(out / "status-page-phone.png")
    page.set_viewport(1280, 900)
    page.wait_for("window.innerWidth === 1280", WAIT_S, "the desktop viewport")
    desktop = page.screenshot(out / "status-page-desktop.png")
    for shot, width in ((phone, PHONE["width"]), (desktop, 1280)):
        size = png_size(shot)
        assert size[0] == width and size[1] >= 400, (shot, size)
        assert shot.stat().st_size > 10_000, f"{shot} is nearly empty"


def same_as_the_cli(served: dict[str, Any], home: Path, config: Path) -> None:
    """``airlock status --json --no-probe`` on the same queue shows the same queue,
    nonces, alerts and broadcaster (bar the ages, read at another moment), and the same
    configured links."""
    done = airlock(home, "--config", str(config), "status", "--json", "--no-probe")
    assert done.returncode == 0, done.stderr
    cli = json.loads(done.stdout)
    assert set(served) == set(cli) == {"generated_ms", "queue_path", *status_data.SECTIONS}
    assert served["queue"] == cli["queue"]  # drained: no oldest item, so no age
    assert served["queue_path"] == cli["queue_path"]

    def without_ages(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [{k: v for k, v in r.items() if not k.endswith("_age_s")} for r in rows]

    assert without_ages(served["nonces"]) == without_ages(cli["nonces"])
    assert without_ages(served["alerts"]) == without_ages(cli["alerts"])
    assert served["broadcaster"]["pid"] == cli["broadcaster"]["pid"] is not None
    static = ("name", "kind", "role", "url", "link", "chain_id")
    shown = [{k: r[k] for k in static} for r in served["links"]["relays"]]
    assert shown == [{k: r[k] for k in static} for r in cli["links"]["relays"]]
    assert [r["state"] for r in served["links"]["relays"]] == ["up", "up"]
