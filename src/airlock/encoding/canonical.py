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

A leaf (its only airlock import is the exception base): the queue writes audit entries
with it, the signer hashes order intents with it, an auditor's verifier reads them back.
"""

from __future__ import annotations

import json
from typing import Any

from airlock.errors import AirlockError

MAX_SAFE_INTEGER = (1 << 53) - 1


class CanonicalError(AirlockError, ValueError):
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


def _plain(value: Any) -> bool:
    """True when ``value`` is made only of exact JSON types within the limits: one tight
    walk, no paths. Anything else (an int subclass, or a value to refuse) takes the slow
    walk, which names the culprit."""
    stack = [value]
    while stack:
        item = stack.pop()
        kind = type(item)
        if kind is str or item is None or kind is bool:
            continue
        if kind is int:
            if -MAX_SAFE_INTEGER <= item <= MAX_SAFE_INTEGER:
                continue
            return False
        if kind is dict:
            for key in item:
                if type(key) is not str or not key.isascii():
                    return False
            stack.extend(item.values())
        elif kind is list or kind is tuple:
            stack.extend(item)
        else:
            return False
    return True


def canonical(value: Any) -> bytes:
    """The canonical bytes of ``value``."""
    if not _plain(value):
        _check(value, "$")
    try:
        return json.dumps(
            value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
        ).encode("utf-8")
    except UnicodeEncodeError:
        _check(value, "$")  # names the string with the lone surrogate
        raise


MAX_DEPTH = 64


def _depth(data: bytes) -> int:
    """How deeply arrays and objects nest, ignoring brackets inside strings."""
    depth = deepest = 0
    in_string = escaped = False
    for byte in data:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):  # [ {
            depth += 1
            deepest = max(deepest, depth)
        elif byte in (0x5D, 0x7D):
            depth -= 1
    return deepest


def parse_canonical(data: bytes) -> Any:
    """Parse ``data`` and insist it is exactly the canonical form of what it holds.

    Checked by re-encoding: whatever the parser tolerates (whitespace, other key orders,
    duplicate keys, other escapes) re-encodes to different bytes. Integers are range
    checked while parsing; the value walk for keys and surrogates runs only on lines that
    are not pure ASCII, the only ones where it can find something.
    """
    if data.count(b"[") + data.count(b"{") > MAX_DEPTH and _depth(data) > MAX_DEPTH:
        raise CanonicalError(f"nested more than {MAX_DEPTH} levels deep")
    try:
        text = data.decode("utf-8")
        value = json.loads(text, parse_float=_no_float, parse_constant=_no_float, parse_int=_int)
    except UnicodeDecodeError:
        raise CanonicalError("not UTF-8") from None
    except CanonicalError:
        raise
    except (ValueError, RecursionError) as exc:
        raise CanonicalError(f"not JSON: {exc}") from None
    if not data.isascii():
        _check(value, "$")
    try:
        again = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode(
            "utf-8"
        )
    except UnicodeEncodeError:
        raise CanonicalError("a string holds a lone surrogate") from None
    if again != data:
        json.loads(text, object_pairs_hook=_reject_duplicates)  # the likelier, clearer reason
        raise CanonicalError("valid JSON, but not in canonical form")
    return value


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [k for k, _ in pairs]
    if len(set(keys)) != len(keys):
        raise CanonicalError("an object has a duplicate key")
    return dict(pairs)


def _int(text: str) -> int:
    value = int(text)
    if abs(value) > MAX_SAFE_INTEGER:
        raise CanonicalError(f"integer {text} is too large; use a decimal string")
    return value


def _no_float(text: str) -> Any:
    raise CanonicalError(f"floating point number {text} is not allowed")
