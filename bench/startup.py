"""CLI start-up: wall time of ``airlock --help`` and ``airlock status --no-probe`` against a
bare ``python -c pass`` with the same interpreter, all in one run.

The figures that matter are the deltas: each command's wall time less the bare
interpreter's (fork, exec, interpreter start-up and site-packages are common to both), so
they hold on a noisy machine even when the absolute times do not. Per repetition the
commands run in turn (bare, --help, --version, status), after a few warm-up rounds, so a
slow patch of the machine hits each of them alike; median and p90 are over repetitions.

``status --no-probe`` reads a throw-away AIRLOCK_HOME made for the run, with what an
operator's home has: ``airlock init`` (the embedded SoftHSM token), a secp256k1 key, one
queued transaction (so the queue, the nonce counters and the notes are read, which opens
the HSM to unwrap the queue's data key) and an airlock.toml with two relays (shown as
not probed). Targets: --help within 0.25 s of the bare interpreter, status --no-probe
within 0.5 s (medians).

Usage: python bench/startup.py [--n 30] [--warmup 3] [--json] [--dir DIR]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

TARGETS_S = {"help": 0.25, "status": 0.5}

LABELS = {
    "bare": "python -c pass",
    "help": "airlock --help",
    "version": "airlock --version",
    "status": "airlock status --no-probe",
}

CONFIG = """\
[[relays]]
name = "node-a"
kind = "evm-rpc"
url = "http://127.0.0.1:9/"
chain_id = 1

[[relays]]
name = "node-b"
kind = "evm-rpc"
url = "http://127.0.0.1:9/"
chain_id = 1
role = "backup"
"""


def airlock_command() -> list[str]:
    """The ``airlock`` console script beside this interpreter, else ``python -m``."""
    script = Path(sys.executable).with_name("airlock")
    return [str(script)] if script.exists() else [sys.executable, "-m", "airlock.cli"]


def setup_home(home: Path, airlock: list[str]) -> dict[str, str]:
    env = dict(os.environ, AIRLOCK_HOME=str(home))
    env.pop("AIRLOCK_CONFIG", None)
    steps = [
        ["init"],
        ["hsm", "keygen", "--type", "secp256k1", "--label", "bench"],
        ["evm", "queue", "--key", "bench", "--chain-id", "1", "--to",
         "0x000000000000000000000000000000000000dEaD", "--value", "1", "--gas", "21000",
         "--max-fee", "30000000000", "--priority-fee", "1000000000"],
    ]  # fmt: skip
    for step in steps:
        subprocess.run([*airlock, *step], env=env, check=True, capture_output=True)
    (home / "airlock.toml").write_text(CONFIG)
    return env


def wall_s(command: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    done = subprocess.run(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({done.returncode}): {done.stderr!r}")
    return seconds


def p90(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[max(1, math.ceil(0.9 * len(ordered))) - 1]


def measure(n: int, warmup: int, env: dict[str, str], airlock: list[str]) -> dict[str, Any]:
    commands = {
        "bare": [sys.executable, "-c", "pass"],
        "help": [*airlock, "--help"],
        "version": [*airlock, "--version"],
        "status": [*airlock, "status", "--no-probe"],
    }
    times: dict[str, list[float]] = {name: [] for name in commands}
    for i in range(warmup + n):
        for name, command in commands.items():
            seconds = wall_s(command, env)
            if i >= warmup:
                times[name].append(seconds)
    figures: dict[str, Any] = {}
    bare_median, bare_p90 = statistics.median(times["bare"]), p90(times["bare"])
    for name in commands:
        median, tail = statistics.median(times[name]), p90(times[name])
        figures[name] = {
            "command": LABELS[name],
            "median_s": round(median, 4),
            "p90_s": round(tail, 4),
            "delta_median_s": round(median - bare_median, 4),
            "delta_p90_s": round(tail - bare_p90, 4),
        }
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=30, help="timed repetitions per command")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--dir", type=Path, default=None, help="where to make the home (tmp)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    airlock = airlock_command()
    with tempfile.TemporaryDirectory(prefix="airlock-bench-startup-", dir=args.dir) as tmp:
        env = setup_home(Path(tmp), airlock)
        figures = measure(args.n, args.warmup, env, airlock)
    targets = {
        name: {
            "delta_median_s": figures[name]["delta_median_s"],
            "target_s": limit,
            "pass": figures[name]["delta_median_s"] <= limit,
        }
        for name, limit in TARGETS_S.items()
    }
    report = {
        "n": args.n,
        "warmup": args.warmup,
        "cpus": os.cpu_count(),
        "python": sys.executable,
        "airlock": " ".join(airlock),
        **figures,
        "targets": targets,
        "pass": all(t["pass"] for t in targets.values()),
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"{args.n} repetitions each after {args.warmup} warm-up rounds; {sys.executable}")
    print(f"{'command':40} {'median s':>9} {'p90 s':>9} {'delta med':>10} {'delta p90':>10}")
    for name in ("bare", "help", "version", "status"):
        f = figures[name]
        print(
            f"{f['command']:40} {f['median_s']:9.3f} {f['p90_s']:9.3f} "
            f"{f['delta_median_s']:+10.3f} {f['delta_p90_s']:+10.3f}"
        )
    for name, t in targets.items():
        verdict = "PASS" if t["pass"] else "FAIL"
        print(f"{name}: delta {t['delta_median_s']:.3f} s, target <= {t['target_s']} s: {verdict}")


if __name__ == "__main__":
    main()
