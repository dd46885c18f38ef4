"""Canonical JSON: one byte string per value, so hashes and signatures are reproducible.

The form is RFC 8785 (JCS) restricted to values where JCS and a plain encoder agree:

- objects, arrays, strings, integers, ``true``, ``false``, ``null``; no floating point;
- integers within ±(2^53 - 1) (larger quantities, such as wei, are decimal strings);
- object keys are ASCII strings, sorted by code point, unique;
- no whitespace; ``,`` and ``:`` separators;
- strings are UTF-8; ``"`` and ``\\`` are escaped, as are control characters below
  U+0020 (``\\b \\f \\n \\r \\t`` in short form, others as ``\\u00xx`` with lower-case
  hex); everything else, including non-ASCII, is written as itself; lone surrogates are
  refused.

Pure module with no airlock imports: the queue writes entries with it, and an auditor's
verifier reads them with it.
"""

from __future__ import annotations

import json
from typing import Any

MAX_SAFE_INTEGER = (1 << 53) - 1


class CanonicalError(ValueError):
    """A value cannot be put in canonical form, or bytes are not in it."""


def _check(value: Any, path: str) -> None:
    if value is None or isinstance(value, bool):
        return
    if isinstance(value, int):
        if abs(value) > MAX_SAFE_INTEGER:
            raise CanonicalError(f"{path}: integer {value} is too large; use a decimal string")
        return
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise CanonicalError(f"{path}: string holds a lone surrogate") from None
        return
    if isinstance(value, list | tuple):
        for i, item in enumerate(value):
            _check(item, f"{path}[{i}]")
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str) or not key.isascii():
                raise CanonicalError(f"{path}: object keys must be ASCII strings, got {key!r}")
            _check(item, f"{path}.{key}")
        return
    raise CanonicalError(f"{path}: {type(value).__name__} has no canonical JSON form")


def canonical(value: Any) -> bytes:
    """The canonical bytes of ``value``."""
    _check(value, "$")
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [k for k, _ in pairs]
    if len(set(keys)) != len(keys):
        raise CanonicalError("an object has a duplicate key")
    return dict(pairs)


def parse_canonical(data: bytes) -> Any:
    """Parse ``data`` and insist it is exactly the canonical form of what it holds."""
    try:
        value = json.loads(
            data.decode("utf-8"),
            object_pairs_hook=_reject_duplicates,
            parse_float=_no_float,
            parse_constant=_no_float,
        )
    except UnicodeDecodeError:
        raise CanonicalError("not UTF-8") from None
    except RecursionError:
        raise CanonicalError("nested too deeply") from None
    except CanonicalError:
        raise
    except ValueError as exc:
        raise CanonicalError(f"not JSON: {exc}") from None
    try:
        again = canonical(value)
    except RecursionError:
        raise CanonicalError("nested too deeply") from None
    if again != data:
        raise CanonicalError("valid JSON, but not in canonical form")
    return value


def _no_float(text: str) -> Any:
    raise CanonicalError(f"floating point number {text} is not allowed")
