"""Parse a JSON body from the network without letting its nesting crash the process.

``eth_account`` raises Python's recursion limit to 100000 when it is imported. After that,
``json.loads`` on a body nested a few tens of thousands of levels deep no longer stops at
a ``RecursionError``: the C scanner recurses until the C stack overflows and the process
dies with SIGSEGV. A relay, or anything between us and it, must not be able to do that,
so the nesting depth is measured *before* the parser sees the body.

The measurement never loops over characters in Python (bodies of 100 KB arrive thousands
of times a second in the benchmarks); every step is one C-speed pass over bytes:

1. escaped backslashes, then escaped quotes, are deleted (left to right, as a JSON lexer
   pairs them), so every ``"`` left opens or closes a string;
2. ``bytes.translate`` deletes every byte except ``"[]{}``: a small skeleton;
3. in it, ``""`` pairs are deleted (an empty string, or the end of one string and the
   start of the next with nothing between: either way no bracket outside a string goes),
   and whatever strings are left (those with brackets inside) go with one regex;
4. each pass then deletes every innermost ``[]`` and ``{}`` pair at once (through a
   placeholder, so a pair made by this pass's own deletions waits for the next pass): the
   number of passes is the depth, and past ``max_depth`` passes it gives up. A run of
   more than ``max_depth`` opening brackets is refused before the first pass, so the
   plain ``[[[[…]]]]`` attack costs one scan; the worst case is ``max_depth`` passes over
   the skeleton, bounded by the response size limit of the caller.

A skeleton that does not peel away completely is unbalanced, so the body is not JSON and
is refused right there (an unclosed ``[[[[…`` would otherwise make the C scanner recurse
just as deep before it found the missing end). Where a body is not JSON because of a
backslash outside a string, this lexing and the parser's agree up to that backslash, and
the parser stops there: the depth it can reach is still bounded by the measured one.
"""

from __future__ import annotations

import json
import re
from typing import Any

DEFAULT_MAX_DEPTH = 64
"""Far above any JSON-RPC answer airlock reads (a batch of receipts with logs is ~5 deep)."""

_NOT_SKELETON = bytes(b for b in range(256) if b not in b'"[]{}')
_STRING_IN_SKELETON = re.compile(rb'"[^"]*"')
_PLACEHOLDER = b"."
_ONE_KIND = bytes.maketrans(b"{}", b"[]")


def loads_limited(body: bytes, max_depth: int = DEFAULT_MAX_DEPTH) -> Any:
    """Parse ``body`` as UTF-8 JSON nested at most ``max_depth`` deep.

    Raises :class:`ValueError` with a message saying what is wrong (not UTF-8, not JSON,
    nested too deep). ``NaN`` and ``Infinity`` are refused: they are not JSON, and no
    node sends them.
    """
    if max_depth < 1:
        raise ValueError(f"max_depth must be at least 1, got {max_depth}")
    data = bytes(body)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"body is not UTF-8: {exc.reason} at byte {exc.start}") from None
    _check_depth(data, max_depth)
    try:
        return json.loads(text, parse_constant=_refuse_constant)
    except ValueError as exc:  # JSONDecodeError, or an integer too long to convert
        raise ValueError(f"body is not JSON: {exc}") from None


def nesting_depth(body: bytes, limit: int) -> int | None:
    """Depth of the bracket nesting of ``body``, or None once it exceeds ``limit``.

    Raises :class:`ValueError` if the brackets outside strings do not balance.
    """
    skeleton = _bracket_skeleton(body)
    if b"[" * (limit + 1) in skeleton.translate(_ONE_KIND):
        return None  # a run of limit + 1 opening brackets: the common attack, in one pass
    depth = 0
    while skeleton:
        if depth == limit:
            return None
        peeled = (
            skeleton.replace(b"[]", _PLACEHOLDER)
            .replace(b"{}", _PLACEHOLDER)
            .translate(None, _PLACEHOLDER)
        )
        if len(peeled) == len(skeleton):
            raise ValueError("body is not JSON: its brackets do not balance")
        skeleton = peeled
        depth += 1
    return depth


def _bracket_skeleton(body: bytes) -> bytes:
    """The brackets of ``body`` that are outside JSON strings, in order."""
    if b"\\" in body:
        body = body.replace(b"\\\\", b"").replace(b'\\"', b"")
    skeleton = body.translate(None, _NOT_SKELETON).replace(b'""', b"")
    if b'"' in skeleton:
        skeleton = _STRING_IN_SKELETON.sub(b"", skeleton)
        if b'"' in skeleton:
            raise ValueError("body is not JSON: a string is not terminated")
    return skeleton


def _check_depth(body: bytes, max_depth: int) -> None:
    if nesting_depth(body, max_depth) is None:
        raise ValueError(f"body is nested deeper than {max_depth} levels; refused unparsed")


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")
