"""The offline verifier: an export directory and a public key, no HSM, no database.

It stops at the first problem and names it (later problems are usually its echoes):
the entry number and what is wrong, or the checkpoint file and what is wrong.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

from airlock.audit import entries, merkle
from airlock.audit.canonical import CanonicalError, parse_canonical
from airlock.audit.checkpoint import (
    Checkpoint,
    CheckpointError,
    load_public_key,
    spki_der,
    verify_note,
)
from airlock.audit.evm_check import EvmCheckError, check_enqueued_evm
from airlock.audit.order_check import OrderCheckError, check_enqueued_order
from airlock.relays.jsonbody import loads_limited


class VerifyFailure(Exception):
    """The first thing found wrong with an export."""


@dataclass
class Report:
    ok: bool = False
    # What each EVM item declared when queued (sender, chain, nonce): later variants of
    # the item are held to it.
    evm_items: dict[str, dict[str, Any]] = field(default_factory=dict, repr=False)
    problem: str | None = None
    entries: int = 0
    first: int = 0
    checkpoints: int = 0
    signed_size: int = 0
    origin: str = ""
    key_source: str = ""
    signers: set[str] = field(default_factory=set)
    intent_keys: set[str] = field(default_factory=set)  # fingerprints of order-intent keys
    kinds: Counter[str] = field(default_factory=Counter)
    first_ms: int | None = None
    last_ms: int | None = None
    warnings: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "problem": self.problem,
            "origin": self.origin,
            "entries": self.entries,
            "first_entry": self.first,
            "checkpoints": self.checkpoints,
            "signed_size": self.signed_size,
            "key_source": self.key_source,
            "signers": sorted(self.signers),
            "intent_keys": sorted(self.intent_keys),
            "entry_types": dict(sorted(self.kinds.items())),
            "first_ms": self.first_ms,
            "last_ms": self.last_ms,
            "warnings": self.warnings,
        }


def verify_export(directory: Path, public_key_pem: bytes | None = None) -> Report:
    """Check everything in ``directory``; ``report.ok`` says whether it all holds."""
    report = Report()
    try:
        _verify(directory, public_key_pem, report)
        report.ok = True
    except VerifyFailure as exc:
        report.problem = str(exc)
    return report


def _verify(directory: Path, public_key_pem: bytes | None, report: Report) -> None:
    manifest = _manifest(directory)
    report.origin = manifest["origin"]
    report.first = first = manifest["first"]
    key = _public_key(directory, public_key_pem, report)
    notes = _checkpoints(directory, manifest, key, report)
    tail_name = manifest["tail"]["checkpoint"] if manifest.get("tail") else None
    by_size = {cp.size: (name, cp) for name, cp in notes if name != tail_name}
    frontier = _frontier(manifest)
    lines = _lines(directory)
    _check_entries(lines, first, frontier, by_size, report)
    if not lines:
        raise VerifyFailure("entries.jsonl holds no entries")
    end = first + len(lines)
    beyond = [name for name, cp in notes if cp.size > end and name != tail_name]
    if beyond:
        raise VerifyFailure(
            f"checkpoint {beyond[0]} signs {_size_of(notes, beyond[0])} entries but the "
            f"export ends at entry {end - 1}: entries were removed from the end (truncated)"
        )
    if len(lines) != manifest["count"]:
        raise VerifyFailure(
            f"entries.jsonl holds {len(lines)} entries but the manifest lists "
            f"{manifest['count']}: entries were removed or added"
        )
    if tail_name is not None:
        _check_tail(manifest["tail"], manifest["first"], notes, end, frontier)
    if not notes:
        raise VerifyFailure("the export holds no checkpoint: nothing in it is signed")
    covered = max(cp.size for _, cp in notes)
    if covered < end:
        raise VerifyFailure(
            f"entries {covered}..{end - 1} are not covered by any checkpoint: they are unsigned"
        )
    report.entries = len(lines)
    report.signed_size = covered


def _check_entries(
    lines: list[bytes],
    first: int,
    frontier: merkle.Frontier,
    by_size: dict[int, tuple[str, Checkpoint]],
    report: Report,
) -> None:
    """Each entry in order: its form, its number, its link to the one before, its content,
    and the signed root wherever a checkpoint ends."""
    prev_hash: bytes | None = None
    for offset, line in enumerate(lines):
        number = first + offset
        entry = _entry(number, line)
        if number == 0 and entry["prev"] != entries.GENESIS_PREV:
            raise VerifyFailure("entry 0: prev must be 64 zeros (the start of the log)")
        if prev_hash is not None and entry["prev"] != prev_hash.hex():
            raise VerifyFailure(
                f"entry {number - 1}: its hash is not the prev of entry {number}: entry "
                f"{number - 1} was altered (or entry {number}'s prev was)"
            )
        _check_content(number, entry, report)
        prev_hash = entries.entry_hash(line)
        frontier.append(merkle.leaf_hash(line))
        if frontier.size in by_size:
            name, cp = by_size[frontier.size]
            if frontier.root() != cp.root:
                blame = f"entry {number} (the last it covers) was altered"
                if first > 0:
                    blame += " or the manifest's frontier (unsigned) is wrong"
                raise VerifyFailure(
                    f"entry {number}: the entries up to it do not hash to the root signed in "
                    f"checkpoint {name}: {blame}"
                )


def _size_of(notes: list[tuple[str, Checkpoint]], name: str) -> int:
    return next(cp.size for n, cp in notes if n == name)


def _check_tail(
    tail: dict[str, Any],
    first: int,
    notes: list[tuple[str, Checkpoint]],
    end: int,
    frontier: merkle.Frontier,
) -> None:
    found = [cp for name, cp in notes if name == tail["checkpoint"]]
    if not found:
        raise VerifyFailure(f"manifest.json: tail checkpoint {tail['checkpoint']} is missing")
    proof = [_hex32(h, "tail proof") for h in tail["proof"]]
    try:
        merkle.verify_consistency(end, found[0].size, frontier.root(), found[0].root, proof)
    except merkle.ProofError as exc:
        raise VerifyFailure(
            f"entries {first}..{end - 1} are not a prefix of the log signed in "
            f"checkpoint {tail['checkpoint']}: {exc}"
        ) from None


def _manifest(directory: Path) -> dict[str, Any]:
    path = directory / "manifest.json"
    try:
        # depth-limited: with eth_account loaded, json.loads of a deeply nested file
        # overflows the C stack (SIGSEGV) instead of raising
        manifest = loads_limited(path.read_bytes())
    except FileNotFoundError:
        raise VerifyFailure(f"{path} is missing: not an airlock audit export") from None
    except (OSError, ValueError) as exc:
        raise VerifyFailure(f"manifest.json cannot be read: {exc}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != entries.EXPORT_FORMAT:
        raise VerifyFailure(f"manifest.json: format is not {entries.EXPORT_FORMAT!r}")
    shape = {
        "origin": str,
        "key_name": str,
        "first": int,
        "count": int,
        "frontier": list,
        "checkpoints": list,
    }
    for key, kind in shape.items():
        if not isinstance(manifest.get(key), kind) or isinstance(manifest.get(key), bool):
            raise VerifyFailure(f"manifest.json: {key} is missing or not of type {kind.__name__}")
    if not all(isinstance(name, str) for name in manifest["checkpoints"]):
        raise VerifyFailure("manifest.json: checkpoints must be a list of file names")
    if not all(isinstance(h, str) for h in manifest["frontier"]):
        raise VerifyFailure("manifest.json: frontier must be a list of hex hashes")
    if manifest["first"] < 0 or manifest["count"] < 1:
        raise VerifyFailure("manifest.json: first must be >= 0 and count >= 1")
    tail = manifest.get("tail")
    if tail is not None and (
        not isinstance(tail, dict)
        or not isinstance(tail.get("checkpoint"), str)
        or not isinstance(tail.get("proof"), list)
    ):
        raise VerifyFailure("manifest.json: tail must hold a checkpoint name and a proof list")
    return manifest


def _public_key(directory: Path, given: bytes | None, report: Report) -> ec.EllipticCurvePublicKey:
    exported_path = directory / "audit-key.pem"
    try:
        exported = load_public_key(exported_path.read_bytes()) if exported_path.exists() else None
    except (CheckpointError, OSError) as exc:
        raise VerifyFailure(f"audit-key.pem: {exc}") from None
    if given is None:
        if exported is None:
            raise VerifyFailure("no public key: pass --pubkey (audit-key.pem is missing)")
        report.key_source = "export"
        report.warnings.append(
            "the public key came from the export itself: this proves the log is intact, not "
            "who signed it; pass --pubkey with the key you obtained from the operator"
        )
        return exported
    try:
        key = load_public_key(given)
    except CheckpointError as exc:
        raise VerifyFailure(f"--pubkey: {exc}") from None
    report.key_source = "given"
    if exported is not None and spki_der(exported) != spki_der(key):
        raise VerifyFailure(
            "audit-key.pem in the export is not the public key you gave: the export's key was "
            "substituted"
        )
    return key


def _checkpoints(
    directory: Path, manifest: dict[str, Any], key: ec.EllipticCurvePublicKey, report: Report
) -> list[tuple[str, Checkpoint]]:
    folder = directory / "checkpoints"
    on_disk = sorted(p.name for p in folder.glob("*.note")) if folder.is_dir() else []
    listed = manifest["checkpoints"]
    if sorted(listed) != on_disk:
        extra = sorted(set(on_disk) - set(listed)) or sorted(set(listed) - set(on_disk))
        raise VerifyFailure(
            f"checkpoints/: files {', '.join(extra)} differ from the manifest's list "
            "(a checkpoint was added or removed)"
        )
    out: list[tuple[str, Checkpoint]] = []
    for name in listed:
        try:
            cp = verify_note((folder / name).read_text(), key, manifest["key_name"])
        except (CheckpointError, OSError, UnicodeDecodeError) as exc:
            raise VerifyFailure(f"checkpoint {name}: {exc}") from None
        if cp.origin != manifest["origin"]:
            raise VerifyFailure(
                f"checkpoint {name}: it is for log {cp.origin!r}, not {manifest['origin']!r} "
                "(a checkpoint from another log)"
            )
        if out and cp.size <= out[-1][1].size:
            raise VerifyFailure(
                f"checkpoint {name}: size {cp.size} does not grow past the previous "
                f"checkpoint's {out[-1][1].size} (replayed or reordered checkpoint)"
            )
        if cp.size <= manifest["first"]:
            raise VerifyFailure(f"checkpoint {name}: it covers none of the exported entries")
        out.append((name, cp))
    report.checkpoints = len(out)
    return out


def _frontier(manifest: dict[str, Any]) -> merkle.Frontier:
    hashes = [_hex32(h, "manifest frontier") for h in manifest["frontier"]]
    try:
        return merkle.Frontier.resume(manifest["first"], hashes)
    except merkle.ProofError as exc:
        raise VerifyFailure(f"manifest.json: frontier: {exc}") from None


def _hex32(value: Any, what: str) -> bytes:
    try:
        raw = bytes.fromhex(value) if isinstance(value, str) else b""
    except ValueError:
        raw = b""
    if len(raw) != 32:
        raise VerifyFailure(f"{what}: {value!r} is not a 32-byte hex hash")
    return raw


def _lines(directory: Path) -> list[bytes]:
    try:
        data = (directory / "entries.jsonl").read_bytes()
    except OSError as exc:
        raise VerifyFailure(f"entries.jsonl cannot be read: {exc}") from None
    if data and not data.endswith(b"\n"):
        raise VerifyFailure("entries.jsonl: the last line is cut short (no final newline)")
    return data.split(b"\n")[:-1] if data else []


_ENTRY_SHAPE = {"v": int, "seq": int, "prev": str, "time_ms": int, "type": str, "data": dict}
_ENTRY_KEYS = {*_ENTRY_SHAPE, "item"}


def _entry(number: int, line: bytes) -> dict[str, Any]:
    try:
        entry = parse_canonical(line)
    except CanonicalError as exc:
        raise VerifyFailure(f"entry {number}: {exc}") from None
    if not isinstance(entry, dict) or entry.keys() != _ENTRY_KEYS:
        raise VerifyFailure(f"entry {number}: not an airlock audit entry (wrong fields)")
    for key, kind in _ENTRY_SHAPE.items():
        if not isinstance(entry[key], kind) or isinstance(entry[key], bool):
            raise VerifyFailure(f"entry {number}: {key} is not of type {kind.__name__}")
    if entry["seq"] != number:
        raise VerifyFailure(
            f"entry {number}: found entry number {entry['seq']} in its place: entries were "
            "deleted, inserted, duplicated or reordered"
        )
    if entry["v"] != entries.VERSION:
        raise VerifyFailure(f"entry {number}: unknown entry version {entry['v']}")
    return entry


def _check_content(number: int, entry: dict[str, Any], report: Report) -> None:
    report.kinds[entry["type"]] += 1
    time_ms = entry["time_ms"]
    report.first_ms = time_ms if report.first_ms is None else min(report.first_ms, time_ms)
    report.last_ms = time_ms if report.last_ms is None else max(report.last_ms, time_ms)
    if entry["type"] not in entries.KINDS and report.kinds[entry["type"]] == 1:
        report.warnings.append(f"entry {number}: unknown entry type {entry['type']!r} (kept)")
    if entry["type"] == entries.ITEM_ENQUEUED and entry["data"].get("kind") == "evm_tx":
        try:
            report.signers.add(check_enqueued_evm(entry["data"]))
        except EvmCheckError as exc:
            raise VerifyFailure(f"entry {number}: {exc}") from None
        data = entry["data"]
        report.evm_items[entry["item"]] = {k: data.get(k) for k in ("account", "chain_id", "nonce")}
    elif entry["type"] == entries.ITEM_ENQUEUED and entry["data"].get("kind") in BYBIT_KINDS:
        try:
            report.intent_keys.add(check_enqueued_order(entry["data"]))
        except OrderCheckError as exc:
            raise VerifyFailure(f"entry {number}: {exc}") from None
    elif entry["type"] == entries.ITEM_VARIANT_ADDED:
        _check_added_variant(number, entry, report)


BYBIT_KINDS = ("bybit_order", "bybit_cancel")  # both carry an HSM-signed intent


def _check_added_variant(number: int, entry: dict[str, Any], report: Report) -> None:
    """A variant signed after enqueue must hold to what the item declared when queued."""
    declared = report.evm_items.get(entry["item"])
    if declared is None:
        report.warnings.append(
            f"entry {number}: variant added to item {entry['item']}, which was queued before "
            "this export's first entry: its signer was not checked"
        )
        return
    try:
        check_enqueued_evm({**declared, "variants": [entry["data"]]})
    except EvmCheckError as exc:
        raise VerifyFailure(f"entry {number}: {exc}") from None
