"""Write an audit export: everything an auditor needs, in one directory.

Layout (see docs/audit-format.md)::

    DIR/manifest.json          what is in the export, and how to continue the tree
    DIR/entries.jsonl          entries first .. first+count-1, canonical bytes, one per line
    DIR/checkpoints/NNNNNN.note signed notes, by checkpoint id (six digits, more past 999999)
    DIR/audit-key.pem          the audit public key (an auditor should have it from elsewhere)
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from airlock.audit import entries, merkle
from airlock.audit.log import AuditKey, checkpoint
from airlock.audit.manifest import note_name
from airlock.errors import InvalidInput
from airlock.queue.store import Store

FORMAT = entries.EXPORT_FORMAT


@dataclass(frozen=True)
class ExportResult:
    out: Path
    first: int
    count: int
    checkpoints: int


def export(
    store: Store, key: AuditKey, out: Path, first: int = 0, last: int | None = None
) -> ExportResult:
    """Export entries ``first .. last`` (inclusive; default: to the end).

    A full export signs a checkpoint of the whole log first, so every entry is covered.
    A range that ends before the log does comes with a consistency proof from its end to
    the first checkpoint that covers it. An empty log has nothing to export (and nothing
    worth signing), so it is refused before anything is signed or written.
    """
    if store.audit.size() == 0:
        raise InvalidInput("the audit log is empty: there is nothing to export yet")
    if last is None:
        checkpoint(store, key)
    size = store.audit.size()
    stop = size if last is None else last + 1
    if not 0 <= first < stop <= size:
        raise InvalidInput(
            f"no entries {first}..{stop - 1} to export: the log holds entries 0..{size - 1}"
        )
    records = store.audit.checkpoints()
    cover = next((c for c in records if c.size >= stop), None)
    if cover is None:
        cover = checkpoint(store, key)
        records.append(cover)
    included = [c for c in records if first < c.size <= stop]
    leaves = store.audit.leaves(cover.size)
    tail = None
    if cover.size > stop:
        included.append(cover)
        tail = {
            "checkpoint": note_name(cover.id),
            "proof": [h.hex() for h in merkle.consistency_proof(stop, leaves)],
        }
    out.mkdir(parents=True, exist_ok=True)
    notes = out / "checkpoints"
    notes.mkdir(exist_ok=True)
    for record in included:
        (notes / note_name(record.id)).write_bytes(record.note.encode())
    with open(out / "entries.jsonl", "wb") as handle:
        for entry in store.audit.entries(first, stop):
            handle.write(entry + b"\n")
    (out / "audit-key.pem").write_bytes(key.pem.encode())
    manifest: dict[str, Any] = {
        "format": FORMAT,
        "v": entries.VERSION,
        "origin": store.audit.origin(),
        "key_name": store.audit.origin(),
        "first": first,
        "count": stop - first,
        "frontier": [h.hex() for h in merkle.Frontier.of(leaves[:first]).hashes()],
        "checkpoints": [note_name(c.id) for c in included],
        "tail": tail,
    }
    text = json.dumps(manifest, indent=2, sort_keys=True) + "\n"
    (out / "manifest.json").write_bytes(text.encode())  # bytes: LF on every platform
    return ExportResult(out, first, stop - first, len(included))
