"""``python -m airlock.sim.chaos``: run seeds, print plans, and the two child commands.

``serve`` (the service with an HSM outage) and ``forward`` (the relay inside a network
namespace) are started by the runner itself. Each command imports its modules when it
runs, so a child loads only what it needs: a restart after ``kill -9`` happens inside a
two-second timeline, and the namespace's relay must answer ``ready`` at once.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

DESCRIPTION = (
    "The seeded chaos suite: combined faults against the real broadcaster, with invariants."
)


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m airlock.sim.chaos", description=DESCRIPTION)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the scenarios of some seeds and check invariants")
    run.add_argument("--seeds", default="1-200", help="e.g. 1-200, 137, 1,5,9-12")
    run.add_argument("--json", action="store_true", help="print every figure as JSON")
    run.add_argument("--report", type=Path, help="write the Markdown report here")
    run.add_argument("--keep", type=Path, help="keep each scenario's directory under here")
    run.add_argument(
        "--netns",
        choices=("off", "auto", "on"),
        default="off",
        help="rpc-a over a veth pair in a network namespace, flaps as interface down (root)",
    )
    run.add_argument(
        "--store",
        choices=("sqlite", "postgres"),
        default="sqlite",
        help="sqlite: one broadcaster (the default); postgres: a fleet on one shared queue",
    )
    run.add_argument(
        "--broadcasters", type=int, default=3, help="with --store postgres: how many (1-8)"
    )
    fwd = sub.add_parser("forward", help=argparse.SUPPRESS)
    fwd.add_argument("listen")
    fwd.add_argument("to")
    show = sub.add_parser("plan", help="print the fault plan of some seeds; nothing runs")
    show.add_argument("--seeds", required=True)
    srv = sub.add_parser("serve", help="the broadcaster service with a simulated HSM outage")
    srv.add_argument("--config", type=Path, required=True)
    srv.add_argument("--hsm-outage", required=True, help="START_S,DURATION_S")
    srv.add_argument("--since", type=float, help="epoch seconds START_S counts from (default: now)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Dispatch one command; ``run`` exits 1 when any seed failed."""
    args = _parse_args(argv)
    if args.command == "forward":
        from airlock.sim.chaos.netns import forward

        return forward(args.listen, args.to)
    if args.command == "serve":
        from airlock.sim.chaos.outage import OutageWindow, serve

        start, duration = (float(x) for x in args.hsm_outage.split(","))
        return serve(args.config, OutageWindow(start, duration, args.since))
    from airlock.sim.chaos.plan import make_plan, parse_seeds

    seeds = parse_seeds(args.seeds)
    if args.command == "plan":
        for seed in seeds:
            print(json.dumps(asdict(make_plan(seed)), indent=2))
        return 0
    return _run(args, seeds)


def _run(args: argparse.Namespace, seeds: list[int]) -> int:
    """``run``: progress lines as seeds finish (on stderr with --json, so stdout stays
    one JSON document), the report if asked, then the summary."""
    from airlock.sim.chaos.report import print_summary, write_report
    from airlock.sim.chaos.scenario import run_seeds

    if args.keep is not None:
        args.keep.mkdir(parents=True, exist_ok=True)
    say = _say_stderr if args.json else _say
    if args.store == "postgres":
        from airlock.sim.chaos.fleet import run_fleet_seeds
        from airlock.sim.chaos.report import write_fleet_report

        if not 1 <= args.broadcasters <= 8:
            print("--broadcasters must be between 1 and 8", file=sys.stderr)
            return 2
        summary = run_fleet_seeds(seeds, args.broadcasters, say, keep=args.keep)
        if args.report is not None:
            write_fleet_report(args.report, summary)
    else:
        summary = run_seeds(seeds, say, keep=args.keep, netns=args.netns)
        if args.report is not None:
            write_report(args.report, summary)
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print_summary(summary)
    return 0 if summary["failed"] == 0 else 1


def _say(line: str) -> None:
    print(line, flush=True)


def _say_stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


if __name__ == "__main__":
    threading.current_thread().name = "chaos"
    sys.exit(main())
