"""`airlock demo` (what `make demo` runs) end to end, as a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.anvil


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
    assert result["states"] == {"confirmed": 5, "cancelled": 2}  # 2 txs + 3 orders filled
    assert result["bybit"] == {"orders_placed": 3, "orders_refused": 1, "fills": 3}
    assert result["audit_verified"] is True
    assert len(result["mined"]) == 2 and result["queued"] == 3
    assert (
        "link down: queued" in done.stderr
        and "link b back" in done.stderr
        and "nothing sent" in done.stderr
        and "refused at once" in done.stderr
        and "placed exactly once" in done.stderr
    )
    assert list(tmp_path.iterdir()) == []
