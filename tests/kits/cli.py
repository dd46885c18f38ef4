"""The CLI as an operator runs it: ``python -m airlock.cli`` in a subprocess, with an
environment that holds only what the test gives it (no AIRLOCK_* or SOFTHSM2* of the
developer's shell leaks in), bounded by a timeout."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tests.kits.waiting import wait_until

from airlock.config import embedded_paths
from airlock.hsm.pin import read_pin_file
from airlock.queue.store import Store

AIRLOCK = [sys.executable, "-m", "airlock.cli"]
TRANSFER = {
    "chain-id": "31337",
    "to": "0x000000000000000000000000000000000000dead",
    "value": "1000",
    "gas": "21000",
    "max-fee": "3000000000",
    "priority-fee": "1000000000",
}
"""``evm queue`` options for a transfer every check accepts (``command_line`` changes one)."""


def user_env(home: Path, **extra: str) -> dict[str, str]:
    """This process's environment without any AIRLOCK_* or SOFTHSM2* variable, then
    ``AIRLOCK_HOME=home`` and ``extra``: a user of the embedded defaults."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRLOCK_", "SOFTHSM2"))}
    env["AIRLOCK_HOME"] = str(home)
    env.update(extra)
    return env


def run(home: Path, *args: str, stdin: str | None = None, env: dict | None = None):
    """``airlock *args`` to completion (60 s at most); text output captured."""
    full_env = user_env(home, **(env or {}))
    return subprocess.run(
        [*AIRLOCK, *args], input=stdin, capture_output=True, text=True, env=full_env, timeout=60
    )


def command_line(command: list[str], options: dict[str, str], overrides: dict[str, str]):
    """``command`` with ``--name value`` for each option; overrides replace (``_`` -> ``-``)."""
    merged = dict(options, **{name.replace("_", "-"): v for name, v in overrides.items()})
    return [*command, *(part for name, value in merged.items() for part in (f"--{name}", value))]


def airlock(home: Path, *args: str) -> Any:
    """Run the CLI (bounded by run()'s timeout) with the PIN from the token's PIN file,
    never in argv; ``elapsed`` is the wall time it took."""
    pin_file = embedded_paths(home)["user_pin"]
    assert all(read_pin_file(pin_file) not in arg for arg in args)
    started = time.monotonic()
    done = run(home, *args, env={"AIRLOCK_PIN_FILE": str(pin_file)})
    done.elapsed = time.monotonic() - started
    return done


def broadcaster(home: Path, config: Path, *extra: str) -> subprocess.Popen[bytes]:
    """``airlock broadcaster run -q`` started in the background, PIN from the PIN file."""
    env = user_env(home, AIRLOCK_PIN_FILE=str(embedded_paths(home)["user_pin"]))
    return subprocess.Popen(
        [*AIRLOCK, "--config", str(config), "broadcaster", "run", "-q", *extra],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def wait_running(store: Store, process: subprocess.Popen[bytes]) -> None:
    """Until the service in ``process`` wrote its pid: its start-up is over, the drain is
    on. Kill moments count from here, not from the spawn: a start-up as slow as the machine
    (~0.5 s here) would swallow them, and no kill would land inside the drain."""
    wait_until(
        lambda: (
            process.poll() is not None or store.notes.get("broadcaster.pid") == str(process.pid)
        ),
        60,
        "the broadcaster to start",
    )
    assert process.poll() is None, process.communicate()[1].decode()
