"""`airlock demo` (what `make demo` runs) end to end, as a subprocess; then the same drill
kept (`--keep`) and reported (`--report`): `airlock slo` on the kept data dir agrees with
the drill's own stopwatch, and the HTML report renders in headless Chromium."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from tests.kits.browser import artifacts_dir, browser_or_skip

pytestmark = [pytest.mark.anvil, pytest.mark.slow]


def plain_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRLOCK_", "SOFTHSM2"))}
    env["AIRLOCK_HOME"] = str(home)
    if "AIRLOCK_ANVIL" in os.environ:
        env["AIRLOCK_ANVIL"] = os.environ["AIRLOCK_ANVIL"]
    return env


def test_demo_drill_passes_its_invariants(tmp_path):
    env = plain_env(tmp_path)  # the demo must not need (or touch) a data dir
    done = subprocess.run(
        [sys.executable, "-m", "airlock.cli", "demo", "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["states"] == {"confirmed": 22, "cancelled": 2}  # 19 txs + 3 orders filled
    bybit = result["bybit"]
    assert (bybit["orders_placed"], bybit["orders_refused"], bybit["fills"]) == (3, 1, 3)
    assert result["duplicates"] == 0 and result["lost"] == 0
    assert result["audit_verified"] is True
    assert result["mined"] == 19 and result["queued"] == 20 and result["bumped"] > 0
    assert result["link_return_to_first_send_ms"] >= 0
    assert (
        "signing and queueing [####################] 20/20" in done.stderr
        and "link b back" in done.stderr
        and "drill report" in done.stderr
        and "nothing sent" in done.stderr
        and "refused at once" in done.stderr
        and "placed exactly once" in done.stderr
    )
    assert list(tmp_path.iterdir()) == []


def test_a_kept_drill_reports_slos_that_agree_with_its_stopwatch(tmp_path):
    kept, page_file = tmp_path / "drill", tmp_path / "drill.html"
    argv = ["demo", "--json", "--keep", str(kept), "--report", str(page_file)]
    env = plain_env(tmp_path / "elsewhere")
    done = subprocess.run(
        [sys.executable, "-m", "airlock.cli", *argv], capture_output=True, text=True, env=env,
        timeout=180,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    drill = json.loads(done.stdout)
    assert drill["data_dir"] == str(kept) and (kept / "queue.db").exists()
    slo = subprocess.run(
        [sys.executable, "-m", "airlock.cli", "slo", "--json"],
        capture_output=True, text=True, env=plain_env(kept), timeout=60,
    )  # fmt: skip
    assert slo.returncode == 0, slo.stderr
    figures = json.loads(slo.stdout)
    # Every figure has a value.
    names = {(f["name"], f["subject"]) for f in figures["figures"]}
    assert {("availability", "rpc-a"), ("availability", "rpc-b"), ("availability", "bybit"),
            ("failover p95", "evm"), ("failover p95", "bybit"), ("persist p95", "every item"),
            ("within bound", "evm_tx/default"), ("within bound", "bybit_order/default")
            } <= names  # fmt: skip
    assert all(f["value"] is not None for f in figures["figures"]), figures["figures"]
    # Persist: the record's interval lies inside the stopwatch's (it starts at the store
    # call and ends at the entry, before the commit), to the millisecond.
    persist = figures["persist_ms"]
    assert persist["count"] == drill["queued"] + drill["bybit"]["orders_placed"] + 1
    assert 0 < persist["p50"] <= drill["persist_ms"]["p50"] + 1
    assert persist["max"] <= drill["persist_ms"]["max"] + 1
    # Return -> first send: the record starts when the link was seen back, the stopwatch
    # when the drill brought it back; both end at the first accepted send.
    (evm,) = [e for e in figures["failover"]["events"] if e["side"] == "evm"]
    assert evm["cause"] == "return"
    assert 0 <= evm["ms"] <= drill["link_return_to_first_send_ms"]
    (bybit,) = [e for e in figures["failover"]["events"] if e["side"] == "bybit"]
    assert 0 <= bybit["ms"] <= drill["bybit"]["return_to_first_send_ms"] + 1000
    # The links were cut on purpose: each shows its outage.
    links = {link["link"]: link for link in figures["links"]}
    assert all(links[n]["outages"] >= 1 for n in ("rpc-a", "rpc-b", "bybit"))
    queued = {q["kind"]: q for q in figures["queued"]}
    assert queued["evm_tx"]["fates"]["executed"] == drill["mined"]

    # The same document for the kept queue, from `airlock slo --html`.
    html = tmp_path / "slo.html"
    argv = ["slo", "--since", "1h", "--html", str(html), "--strict"]
    strict = subprocess.run(
        [sys.executable, "-m", "airlock.cli", *argv],
        capture_output=True, text=True, env=plain_env(kept), timeout=60,
    )  # fmt: skip
    assert strict.returncode == 2, strict.stderr  # the drill cut every link: availability fails
    assert "availability" in strict.stdout and "FAIL" in strict.stdout
    assert 'id="audit-verdict" data-ok="true"' in html.read_text()

    with browser_or_skip() as browser:
        page = browser.open(page_file.as_uri())
        page.wait_for("document.querySelector('#slo-table') !== null", 30, "the SLO table")
        rows = page.evaluate(
            "[...document.querySelectorAll('#slo-table tr[data-figure]')]"
            ".map(r => [r.dataset.figure, r.dataset.subject, r.dataset.status])"
        )
        assert {(r[0], r[1]) for r in rows} == names
        assert page.count("svg[data-plot='lanes'] rect.seg[data-state='down']") >= 3
        assert page.count("svg[data-plot='steps'] path[data-series]") == 4
        assert page.attr("#audit-verdict", "data-ok") == "true"
        page.screenshot(artifacts_dir() / "drill-report.png")
        assert page.errors == []
