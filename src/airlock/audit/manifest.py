"""An export's ``manifest.json``, parsed and held to docs/audit-format.md §3.

The manifest is plain JSON (its spacing is free) but nothing else about it is: exactly the
specified members, no duplicate keys, lower-case hex, note file names of one form, the
tail (if any) being the last listed checkpoint. Loose readings are where two verifiers
written from the spec would disagree, so each is refused with its reason. Pure: bytes in,
a typed record out.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass
from typing import Any

from airlock.audit import entries
from airlock.audit.errors import AuditError
from airlock.encoding.jsonlimit import loads_limited

ORIGIN = re.compile(r"airlock\.local/[0-9a-f]{16}")
HEX32 = re.compile(r"[0-9a-f]{64}")
_NOTE_NAME = re.compile(r"([0-9]{6,19})\.note")  # ids are SQLite integers: < 2^63
MEMBERS = frozenset(
    {"format", "v", "origin", "key_name", "first", "count", "frontier", "checkpoints", "tail"}
)
OPTIONAL = frozenset({"v"})  # absent from manifests written before it was added: version 1


class ManifestError(AuditError, ValueError):
    """The manifest is not one an airlock export writes."""


@dataclass(frozen=True)
class Tail:
    checkpoint: str
    proof: tuple[bytes, ...]


@dataclass(frozen=True)
class Manifest:
    version: int
    origin: str
    key_name: str
    first: int
    count: int
    frontier: tuple[bytes, ...]
    checkpoints: tuple[str, ...]
    tail: Tail | None


def note_name(checkpoint_id: int) -> str:
    """The file name of checkpoint ``checkpoint_id``: six digits, more from 1000000 on."""
    if checkpoint_id < 1:
        raise ManifestError(f"checkpoint ids start at 1, not {checkpoint_id}")
    return f"{checkpoint_id:06d}.note"


def note_id(name: str) -> int | None:
    """The checkpoint id a file name spells, or None if it is not of the one form."""
    match = _NOTE_NAME.fullmatch(name)
    if match is None or int(match[1]) < 1 or note_name(int(match[1])) != name:
        return None
    return int(match[1])


def parse_manifest(data: bytes) -> Manifest:
    """Parse and check ``manifest.json``; raises :class:`ManifestError` naming the member."""
    raw = _json(data)
    if raw.get("format") != entries.EXPORT_FORMAT:
        raise ManifestError(f"format is not {entries.EXPORT_FORMAT!r}")
    version = raw.get("v", entries.VERSION)
    if not _is_int(version) or version != entries.VERSION:
        raise ManifestError(f"unknown version v={version!r} (this verifier reads version 1)")
    _check_members(raw)
    origin, key_name = _text(raw, "origin"), _text(raw, "key_name")
    if not ORIGIN.fullmatch(origin):
        raise ManifestError(f"origin {origin[:60]!r} is not airlock.local/<16 lower-case hex>")
    if key_name != origin:
        raise ManifestError(f"key_name {key_name[:60]!r} is not the origin (airlock's key name)")
    first, count = _integer(raw, "first"), _integer(raw, "count")
    if first < 0 or count < 1:
        raise ManifestError("first must be >= 0 and count >= 1")
    checkpoints = _note_names(raw["checkpoints"])
    return Manifest(
        version=version,
        origin=origin,
        key_name=key_name,
        first=first,
        count=count,
        frontier=_hashes(raw["frontier"], "frontier"),
        checkpoints=checkpoints,
        tail=_tail(raw["tail"], checkpoints),
    )


def _check_members(raw: dict[str, Any]) -> None:
    """Exactly the specified members: an extra one is a reading two verifiers may differ
    on (ignore it? trust it?), so none is allowed."""
    extra = [name[:40] for name in sorted(raw.keys() - MEMBERS)]
    missing = sorted(MEMBERS - OPTIONAL - raw.keys())
    parts = [f"unknown members {', '.join(extra)}"] if extra else []
    parts += [f"missing members {', '.join(missing)}"] if missing else []
    if parts:
        raise ManifestError(f"{'; '.join(parts)} (the members are {', '.join(sorted(MEMBERS))})")


def _json(data: bytes) -> dict[str, Any]:
    # depth-limited first: with eth_account loaded, json.loads of a deeply nested file
    # overflows the C stack (SIGSEGV) instead of raising
    try:
        loads_limited(data)
        value = json.loads(data.decode("utf-8"), object_pairs_hook=_no_duplicates)
    except ValueError as exc:  # includes UnicodeDecodeError and ManifestError
        raise ManifestError(f"cannot be read: {exc}") from None
    if not isinstance(value, dict):
        raise ManifestError("is not a JSON object")
    return value


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    value = dict(pairs)
    if len(value) != len(pairs):
        repeated = next(key for key, count in Counter(k for k, _ in pairs).items() if count > 1)
        raise ManifestError(f"duplicate key {repeated!r}")
    return value


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _integer(raw: dict[str, Any], key: str) -> int:
    if not _is_int(raw[key]):
        raise ManifestError(f"{key} is missing or not of type int")
    return int(raw[key])


def _text(raw: dict[str, Any], key: str) -> str:
    if not isinstance(raw[key], str):
        raise ManifestError(f"{key} is not a string")
    return str(raw[key])


def _hashes(value: Any, what: str) -> tuple[bytes, ...]:
    if not isinstance(value, list):
        raise ManifestError(f"{what} must be a list of hex hashes")
    for item in value:
        if not isinstance(item, str) or not HEX32.fullmatch(item):
            raise ManifestError(f"{what}: {item!r} is not a 32-byte lower-case hex hash")
    return tuple(bytes.fromhex(item) for item in value)


def _note_names(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(name, str) for name in value):
        raise ManifestError("checkpoints must be a list of file names")
    ids: list[int] = []
    for name in value:
        found = note_id(name)
        if found is None:
            raise ManifestError(
                f"checkpoints: {name[:60]!r} is not a note file name (the checkpoint id, "
                "zero-padded to six digits, then .note)"
            )
        if ids and found <= ids[-1]:
            raise ManifestError(f"checkpoints: {name} is not listed in id order")
        ids.append(found)
    return tuple(value)


def _tail(value: Any, checkpoints: tuple[str, ...]) -> Tail | None:
    if value is None:
        return None
    if (
        not isinstance(value, dict)
        or value.keys() != {"checkpoint", "proof"}
        or not isinstance(value["checkpoint"], str)
    ):
        raise ManifestError("tail must be null or hold exactly a checkpoint name and a proof list")
    name = value["checkpoint"]
    if not checkpoints or name != checkpoints[-1]:
        last = checkpoints[-1] if checkpoints else "none"
        raise ManifestError(
            f"tail checkpoint {name[:60]!r} is not the last listed checkpoint ({last})"
        )
    return Tail(name, _hashes(value["proof"], "tail proof"))
