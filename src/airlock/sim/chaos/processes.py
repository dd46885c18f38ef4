"""The broadcaster processes of a scenario: stopped as an operator stops them, and the
bounded ``--once`` that settles the queue afterwards. Shared by the one-broadcaster
scenario and the fleet; each failure is recorded on the scenario's outcome."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from airlock.sim.chaos.report import Outcome

STOP_TIMEOUT_S = 20.0


def stop(
    process: subprocess.Popen[bytes] | None,
    who: str,
    out: Outcome,
    wait_up: Callable[[], None],
) -> None:
    """SIGTERM, as an operator would, once the process is up (``wait_up``: a service
    still starting has no handler yet); it must stop cleanly within STOP_TIMEOUT_S."""
    if process is None:
        return
    if process.poll() is not None:
        out.fail(f"{who} exited by itself during the timeline ({process.returncode})")
        return
    try:
        wait_up()
    except RuntimeError as exc:
        out.fail(f"restarted {who} never came up: {exc}")
    process.send_signal(signal.SIGTERM)
    try:
        code = process.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)
        out.fail(f"{who} ignored SIGTERM for {STOP_TIMEOUT_S} s")
        return
    if code != 0:
        out.fail(f"{who} stopped with status {code} after SIGTERM")


def settle(
    config: Path, env: Mapping[str, str], log_path: Path, out: Outcome, timeout_s: float
) -> dict[str, Any] | None:
    """``broadcaster run --once --json``: bounded, and its summary read back."""
    argv = [sys.executable, "-m", "airlock.cli", "--config", str(config)]
    argv += ["broadcaster", "run", "--once", "--json", "-q"]
    with log_path.open("ab") as err:
        process = subprocess.Popen(argv, env=dict(env), stdout=subprocess.PIPE, stderr=err)
        try:
            printed, _ = process.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate(timeout=10)
            out.fail(f"settle (--once) did not finish within {timeout_s} s")
            return None
    if process.returncode != 0:
        out.fail(f"settle (--once) exited {process.returncode}")
        return None
    try:
        data: dict[str, Any] = json.loads(printed)
    except ValueError:
        out.fail("settle (--once) printed no JSON summary")
        return None
    return data
