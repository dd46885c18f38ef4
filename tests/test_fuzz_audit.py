"""Fuzz: exported audit files. A small real export (SoftHSM-signed), mutated byte by byte
and line by line; and the canonical JSON parser over random bytes.

Contract: verify_export returns a report, never raises and never hangs; ok=True only when
what was mutated still means the same (the bytes of entries and notes unchanged, the
manifest's JSON unchanged); parse_canonical raises CanonicalError only.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from tests.kits.clocks import FakeClock
from tests.kits.fuzz import fuzz, no_hang
from tests.kits.labels import unique_label
from tests.kits.queue import queue_tx

from airlock.audit.checkpoint import (
    CheckpointError,
    load_public_key,
    parse_note,
    spki_der,
    verify_note,
)
from airlock.audit.export import export
from airlock.audit.log import AuditKey, checkpoint
from airlock.audit.verify import Report, verify_export
from airlock.encoding.canonical import CanonicalError, canonical, parse_canonical
from airlock.queue.states import State
from airlock.queue.store import Store


@dataclass(frozen=True)
class Export:
    path: Path
    pem: bytes
    files: tuple[str, ...]  # relative paths of the files a mutation may hit


@pytest.fixture(scope="module")
def pristine(tmp_path_factory, keyring, kek) -> Iterator[Export]:
    """Five entries, two checkpoints (one the export's own tail), the key's PEM."""
    base = tmp_path_factory.mktemp("fuzz-audit")
    label = unique_label("fuzz-eth")
    keyring.generate("secp256k1", label)
    eth = keyring.ecdsa_key(label, curve="secp256k1")
    audit_key = AuditKey(keyring, unique_label("fuzz-audit"))
    with Store.open(base / "queue.db", kek, clock_ms=FakeClock(tick_ms=7)) as store:
        item = queue_tx(store, eth).item
        checkpoint(store, audit_key)
        store.items.transition(item.id, State.SENDING, "dispatch")
        store.items.transition(item.id, State.SENT, "accepted")
        export(store, audit_key, base / "export")
    path = base / "export"
    files = tuple(sorted(str(p.relative_to(path)) for p in path.rglob("*") if p.is_file()))
    report = verify_export(path, audit_key.pem.encode())
    assert report.ok, report.problem
    yield Export(path, audit_key.pem.encode(), files)


def mutate(data: bytes, draw: st.DrawFn) -> bytes:
    """One mutation of the kinds a damaged or forged file shows."""
    kind = draw(st.sampled_from(["flip", "insert", "delete", "line", "splice", "value"]))
    if kind == "value":  # a structured edit: one JSON value of one line, re-encoded
        lines = data.split(b"\n")
        i = draw(st.integers(0, max(0, len(lines) - 1)))
        try:
            obj = json.loads(lines[i])
        except ValueError:
            kind = "flip"
        else:
            if isinstance(obj, dict) and obj:
                key = draw(st.sampled_from(sorted(obj)))
                obj[key] = draw(
                    st.one_of(
                        st.none(),
                        st.booleans(),
                        st.integers(-(2**70), 2**70),
                        st.text(max_size=10),
                        st.lists(st.integers(), max_size=2),
                        st.dictionaries(st.text(max_size=4), st.integers(), max_size=2),
                    )
                )
                try:  # entries are canonical JSON; the manifest is plain JSON
                    encoded = canonical(obj) if b'"prev"' in lines[i] else None
                except CanonicalError:  # an earlier mutation made it non-canonical
                    encoded = None
                lines[i] = encoded or json.dumps(obj).encode()
                return b"\n".join(lines)
            kind = "flip"
    if not data:
        return draw(st.binary(min_size=1, max_size=20))
    at = draw(st.integers(0, len(data) - 1))
    if kind == "flip":
        bit = 1 << draw(st.integers(0, 7))
        return data[:at] + bytes([data[at] ^ bit]) + data[at + 1 :]
    if kind == "insert":
        return data[:at] + draw(st.binary(min_size=1, max_size=8)) + data[at:]
    if kind == "delete":
        size = draw(st.integers(1, 16))
        return data[:at] + data[at + size :]
    lines = data.split(b"\n")
    i = draw(st.integers(0, len(lines) - 1))
    if kind == "line":
        action = draw(st.sampled_from(["drop", "dup", "swap", "replace"]))
        if action == "drop":
            del lines[i]
        elif action == "dup":
            lines.insert(i, lines[i])
        elif action == "swap" and len(lines) > 1:
            j = draw(st.integers(0, len(lines) - 1))
            lines[i], lines[j] = lines[j], lines[i]
        else:
            lines[i] = draw(
                st.sampled_from([b"", b"{}", b"[" * 100_000, b"9" * 5000, "\u2014 x y".encode()])
                | st.binary(max_size=30)
            )
        return b"\n".join(lines)
    # splice: a line of the file repeated with a random tail
    return data + lines[i] + draw(st.binary(max_size=10))


@st.composite
def mutations(draw: st.DrawFn, files: tuple[str, ...]) -> list[tuple[str, bytes | None]]:
    """One to three files, each mutated (or, rarely, deleted: None)."""
    chosen = draw(st.lists(st.sampled_from(files), min_size=1, max_size=3, unique=True))
    return [(name, None if draw(st.integers(0, 19)) == 0 else b"") for name in chosen]


def same_meaning(
    name: str, before: bytes, after: bytes | None, key_given: bool, pem: bytes
) -> bool:
    if name == "audit-key.pem":  # only compared with the given key, or used when none is
        if after is None:
            return key_given
        try:
            return spki_der(load_public_key(after)) == spki_der(load_public_key(before))
        except CheckpointError:
            return False
    if after is None:
        return False
    if after == before:
        return True
    if name.endswith(".note"):  # extra bytes outside the signed body (a repeated signature
        # line, say) leave a note that still verifies: the same signed checkpoint
        try:
            old = parse_note(before.decode())
            new = parse_note(after.decode())
            key = load_public_key(pem)
            verify_note(after.decode(), key, old.signatures[0][0])
        except (CheckpointError, UnicodeDecodeError):
            return False
        return (new.origin, new.size, new.root) == (old.origin, old.size, old.root)
    if name == "manifest.json":  # parsed as JSON: its spacing is not part of what is checked
        try:
            return json.loads(after) == json.loads(before)
        except (ValueError, RecursionError):
            return False
    return False


@fuzz(150, deadline_ms=None)
@given(data=st.data())
def test_mutated_exports_verify_to_a_report(pristine, tmp_path_factory, data):
    work = tmp_path_factory.mktemp("mutated") / "export"
    shutil.copytree(pristine.path, work)
    plan = data.draw(mutations(pristine.files))
    given_pem = data.draw(st.sampled_from([pristine.pem, None]))
    changed = False
    for name, deleted in plan:
        target = work / name
        before = target.read_bytes()
        if deleted is None:
            target.unlink()
            after = None
        else:
            after = mutate(before, data.draw)
            target.write_bytes(after)
        kept = same_meaning(name, before, after, given_pem is not None, pristine.pem)
        changed = changed or not kept
    with no_hang():
        report = verify_export(work, given_pem)
    assert isinstance(report, Report)
    if report.ok:
        assert not changed, f"a mutated export verified: {plan}"
    else:
        assert report.problem
    shutil.rmtree(work.parent)


def _read(path: Path) -> bytes | None:
    return path.read_bytes() if path.exists() else None


# ----------------------------------------------------------------------------- canonical

CANONICAL_SAMPLES = [
    b"{}",
    b'{"a":1}',
    b'{"b":1,"a":2}',
    b'{"a":1,"a":1}',
    b"1.0",
    b"1e3",
    b"-0",
    b"NaN",
    b"Infinity",
    b"9" * 5000,
    b'"\\ud800"',
    b'"\\u00e9"',
    '"\u00e9"'.encode(),
    b"[" * 100_000 + b"]" * 100_000,
    b"[" * 100_000,
    b'{"a":' * 50_000 + b"1" + b"}" * 50_000,
    b"\xff",
    b" {}",
    b"{} ",
]


@fuzz(800)
@given(
    data=st.sampled_from(CANONICAL_SAMPLES)
    | st.binary(max_size=100)
    | st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=10),
        lambda inner: (
            st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
        ),
        max_leaves=10,
    ).map(lambda v: json.dumps(v).encode())
)
def test_parse_canonical_value_or_canonical_error(data):
    with no_hang():
        try:
            value = parse_canonical(data)
        except CanonicalError as exc:
            assert str(exc)
            return
    assert canonical(value) == data
