"""Fail when a file in src/ is longer than a newcomer reads in one sitting, or a function
longer than one screen: 700 lines a module, 60 a function (docs/architecture.md).

Usage: python scripts/check_sizes.py [--files N] [--functions N]   (exit 1 when over)
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "airlock"


def oversized(max_file: int, max_function: int) -> list[str]:
    problems = []
    for path in sorted(SRC.rglob("*.py")):
        text = path.read_text()
        where = path.relative_to(SRC.parent)
        lines = text.count("\n")
        if lines > max_file:
            problems.append(f"{where}: {lines} lines (at most {max_file})")
        for node in ast.walk(ast.parse(text, str(path))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > max_function:
                    problems.append(
                        f"{where}:{node.lineno}: {node.name} is {length} lines "
                        f"(at most {max_function})"
                    )
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=700)
    parser.add_argument("--functions", type=int, default=60)
    args = parser.parse_args()
    problems = oversized(args.files, args.functions)
    for problem in problems:
        print(problem, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
