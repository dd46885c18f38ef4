"""Fail on any import in src/airlock that breaks the house rules of docs/architecture.md.

Every module belongs to one room; rooms are stacked, and an import may only point at the
module's own room or a room below it. A few arrows the stacking would allow are refused
outright (the network room never touches the store; drills are never imported by
production code). Imports inside functions and under ``TYPE_CHECKING`` count like any
other: a type-only arrow is still an arrow a reader has to follow.

Usage: python scripts/check_imports.py [--graph]   (exit 1 on a violation)
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections import Counter
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"

# Top to bottom. A module's room is the longest prefix listed here that it starts with.
# The CLI sits above the library: it is one of the library's clients (docs/architecture.md).
ROOMS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("cli", ("airlock.cli",)),
    ("api", ("airlock.api",)),
    ("sim", ("airlock.sim",)),
    ("broadcaster", ("airlock.broadcaster",)),
    ("relays", ("airlock.relays",)),
    ("slo", ("airlock.slo",)),
    ("audit", ("airlock.audit.log", "airlock.audit.export", "airlock.audit.proof")),
    ("queue", ("airlock.queue",)),
    ("audit format", ("airlock.audit",)),
    ("signer", ("airlock.signer",)),
    ("hsm", ("airlock.hsm",)),
    ("config", ("airlock.config",)),
    (
        "leaves",
        (
            "airlock.errors",
            "airlock.encoding",
            "airlock.clock",
            "airlock.redact",
            "airlock.vocab",
            "airlock.pkcs11_uri",
        ),
    ),
)
LEVEL = {name: level for level, (name, _) in enumerate(ROOMS)}

# Arrows the stacking allows but the design refuses: (from room, to room, why).
REFUSED: tuple[tuple[str, str, str], ...] = (
    ("relays", "queue", "relays/ never touches the store: it returns outcomes"),
    ("relays", "audit", "relays/ never touches the store or the log"),
    ("api", "sim", "sim/ is never imported by production code (only `airlock demo`)"),
    ("broadcaster", "sim", "sim/ is never imported by production code"),
)
# The one production module that may import sim/: the `airlock demo` command.
SIM_IMPORTERS = ("airlock.cli.main",)
# The package facade re-exports the public names; it is nobody's dependency.
FACADE = "airlock"


def room_of(module: str) -> str | None:
    best: tuple[int, str] | None = None
    for name, prefixes in ROOMS:
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and (
                best is None or len(prefix) > best[0]
            ):
                best = (len(prefix), name)
    return None if best is None else best[1]


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path, module: str) -> list[tuple[int, str]]:
    """(line, imported airlock module) for every import in the file."""
    tree = ast.parse(path.read_text(), str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.startswith("airlock")]
        elif isinstance(node, ast.ImportFrom):
            target = _resolve(node, package)
            if target and target.startswith("airlock"):
                found += _from_targets(node, target)
    return found


def _resolve(node: ast.ImportFrom, package: str) -> str | None:
    if node.level == 0:
        return node.module
    base = package.split(".")
    base = base[: len(base) - node.level + 1]
    return ".".join([*base, *([node.module] if node.module else [])])


def _from_targets(node: ast.ImportFrom, target: str) -> list[tuple[int, str]]:
    """``from airlock.audit import entries``: the arrow goes to ``airlock.audit.entries``."""
    if target in ("airlock", "airlock.audit", "airlock.queue", "airlock.relays"):
        return [(node.lineno, f"{target}.{a.name}") for a in node.names]
    return [(node.lineno, target)]


def violations(edges: list[tuple[str, int, str]]) -> list[str]:
    problems = []
    for source, line, target in edges:
        a, b = room_of(source), room_of(target)
        where = f"{source.replace('.', '/')}.py:{line}: {source} -> {target}"
        if source == FACADE or a is None or b is None or a == b:
            if a is None and source != FACADE:
                problems.append(f"{where}: {source} is in no room of the table")
            continue
        if b == "sim" and source not in SIM_IMPORTERS:
            problems.append(f"{where}: sim/ is imported only by `airlock demo`")
            continue
        refused = [why for x, y, why in REFUSED if (x, y) == (a, b)]
        if refused:
            problems.append(f"{where}: {refused[0]}")
        elif LEVEL[b] < LEVEL[a] and not (b == "sim" and source in SIM_IMPORTERS):
            problems.append(f"{where}: {a} may not import {b}, a room above it")
    return problems


def collect() -> list[tuple[str, int, str]]:
    edges = []
    for path in sorted((SRC / "airlock").rglob("*.py")):
        module = module_name(path)
        edges += [(module, line, target) for line, target in imports(path, module)]
    return edges


def _by_level(item: tuple[tuple[str | None, str | None], int]) -> tuple[int, int]:
    (a, b), _ = item
    return LEVEL.get(a or "", 99), LEVEL.get(b or "", 99)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--graph", action="store_true", help="print the arrows between rooms")
    args = parser.parse_args()
    edges = collect()
    if args.graph:
        counts = Counter((room_of(s), room_of(t)) for s, _, t in edges if s != FACADE)
        for (a, b), n in sorted(counts.items(), key=_by_level):
            if a != b:
                print(f"{a:>12} -> {b:<12} {n}")
    problems = violations(edges)
    for problem in problems:
        print(problem, file=sys.stderr)
    print(
        f"{len(edges)} imports checked, {len(problems)} breaking the house rules", file=sys.stderr
    )
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
