"""`airlock demo` (what `make demo` runs) end to end, as a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytestmark = [pytest.mark.anvil, pytest.mark.slow]


def test_demo_drill_passes_its_invariants(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRLOCK_", "SOFTHSM2"))}
    env["AIRLOCK_HOME"] = str(tmp_path)  # the demo must not need (or touch) a data dir
    if "AIRLOCK_ANVIL" in os.environ:
        env["AIRLOCK_ANVIL"] = os.environ["AIRLOCK_ANVIL"]
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
