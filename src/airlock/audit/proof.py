"""Inclusion proofs that stand alone: one entry, its audit path and the signed checkpoint.

A proof file is JSON::

    {"format": "airlock-inclusion-proof/1", "origin": ..., "key_name": ...,
     "index": N, "tree_size": S, "entry": "<canonical entry text>",
     "path": ["<hex>", ...], "checkpoint": "<signed note text>"}
"""

from __future__ import annotations

from typing import Any

from airlock.audit import merkle
from airlock.audit.checkpoint import CheckpointError, load_public_key, verify_note
from airlock.audit.errors import AuditError
from airlock.encoding.canonical import CanonicalError, parse_canonical
from airlock.errors import InvalidInput
from airlock.queue.store import Store

FORMAT = "airlock-inclusion-proof/1"


class InclusionError(AuditError, ValueError):
    """The proof does not show the entry in the signed log."""


def prove(store: Store, index: int, checkpoint_id: int) -> dict[str, Any]:
    """The inclusion proof of entry ``index`` in checkpoint ``checkpoint_id``."""
    records = {c.id: c for c in store.audit.checkpoints()}
    record = records.get(checkpoint_id)
    if record is None:
        known = ", ".join(str(i) for i in records) or "none yet"
        raise InvalidInput(f"no checkpoint {checkpoint_id} (checkpoints: {known})")
    if not 0 <= index < record.size:
        raise InvalidInput(
            f"entry {index} is not in checkpoint {checkpoint_id}, which covers entries "
            f"0..{record.size - 1}"
        )
    leaves = store.audit.leaves(record.size)
    [entry] = list(store.audit.entries(index, index + 1))
    origin = store.audit.origin()
    return {
        "format": FORMAT,
        "origin": origin,
        "key_name": origin,
        "index": index,
        "tree_size": record.size,
        "entry": entry.decode(),
        "path": [h.hex() for h in merkle.inclusion_proof(index, leaves)],
        "checkpoint": record.note,
    }


def verify_inclusion_proof(proof: Any, public_key_pem: bytes) -> dict[str, Any]:
    """Check a proof file's content; returns the entry. Raises :class:`InclusionError`."""
    if not isinstance(proof, dict) or proof.get("format") != FORMAT:
        raise InclusionError(f"not an {FORMAT} file")
    try:
        key = load_public_key(public_key_pem)
        checkpoint = verify_note(str(proof["checkpoint"]), key, str(proof["key_name"]))
        entry_bytes = str(proof["entry"]).encode()
        entry = parse_canonical(entry_bytes)
        path = [bytes.fromhex(h) for h in proof["path"]]
        index, size = int(proof["index"]), int(proof["tree_size"])
    except (CheckpointError, CanonicalError) as exc:
        raise InclusionError(str(exc)) from None
    except (KeyError, TypeError, ValueError) as exc:
        raise InclusionError(f"malformed proof: {exc}") from None
    if checkpoint.origin != proof["origin"]:
        raise InclusionError(f"the checkpoint is for log {checkpoint.origin!r}")
    if checkpoint.size != size:
        raise InclusionError(f"the checkpoint signs size {checkpoint.size}, not {size}")
    if not isinstance(entry, dict) or entry.get("seq") != index:
        raise InclusionError(f"the entry is not entry number {index}")
    try:
        merkle.verify_inclusion(index, size, merkle.leaf_hash(entry_bytes), path, checkpoint.root)
    except merkle.ProofError as exc:
        raise InclusionError(f"{exc}: the entry is not in the signed log as given") from None
    return entry
