"""The offline verifier: an export directory and a public key, no HSM, no database.

It reads the export's files once (:func:`read_export`, the only I/O) and checks their
bytes (:func:`check_export`, pure) in the order of docs/audit-format.md §4. It stops at
the first problem and names it (later problems are usually its echoes): the entry number
and what is wrong, or the file and what is wrong.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from airlock.audit import entries, merkle
from airlock.audit.checkpoint import (
    Checkpoint,
    CheckpointError,
    load_public_key,
    spki_der,
    verify_note,
)
from airlock.audit.content import Content, ContentError, check_form
from airlock.audit.errors import AuditError
from airlock.audit.manifest import Manifest, ManifestError, parse_manifest
from airlock.encoding.canonical import CanonicalError, parse_canonical


class VerifyFailure(AuditError):
    """The first thing found wrong with an export."""


@dataclass
class Report:
    ok: bool = False
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


@dataclass(frozen=True)
class ExportFiles:
    """The bytes of one export as read from disk; None where a file is absent."""

    directory: Path
    manifest: bytes | None
    entries: bytes | None
    audit_key: bytes | None
    # every name in checkpoints/ (None for one that is not a regular file)
    notes: dict[str, bytes | None]


def verify_export(directory: Path, public_key_pem: bytes | None = None) -> Report:
    """Check everything in ``directory``; ``report.ok`` says whether it all holds."""
    report = Report()
    try:
        check_export(read_export(directory), public_key_pem, report)
        report.ok = True
    except VerifyFailure as exc:
        report.problem = str(exc)
    return report


def read_export(directory: Path) -> ExportFiles:
    """Read the four parts of an export (docs/audit-format.md §3); other files are not
    part of it and are not read."""
    folder = directory / "checkpoints"
    try:
        names = sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []
        notes = {name: _read(folder / name) for name in names}
        return ExportFiles(
            directory=directory,
            manifest=_read(directory / "manifest.json"),
            entries=_read(directory / "entries.jsonl"),
            audit_key=_read(directory / "audit-key.pem"),
            notes=notes,
        )
    except OSError as exc:
        raise VerifyFailure(f"{exc.filename}: cannot be read: {exc.strerror}") from None


def _read(path: Path) -> bytes | None:
    return path.read_bytes() if path.is_file() else None


# ------------------------------------------------------------------------- the checks


def check_export(files: ExportFiles, public_key_pem: bytes | None, report: Report) -> None:
    """§4, in order, over bytes already read; raises :class:`VerifyFailure`."""
    manifest = _manifest(files)
    report.origin, report.first = manifest.origin, manifest.first
    key = _public_key(files.audit_key, public_key_pem, report)
    notes = _checkpoints(files.notes, manifest, key, report)
    tail_name = manifest.tail.checkpoint if manifest.tail else None
    by_size = {cp.size: (name, cp) for name, cp in notes if name != tail_name}
    frontier = _frontier(manifest)
    lines = _lines(files.entries)
    if not lines:
        raise VerifyFailure("entries.jsonl holds no entries")
    content = Content(manifest.first)
    _check_entries(lines, manifest.first, frontier, by_size, content, report)
    end = manifest.first + len(lines)
    _check_cover(manifest, notes, end, len(lines))
    if manifest.tail is not None:
        _check_tail(manifest, notes, end, frontier)
    covered = max(cp.size for _, cp in notes)
    if covered < end:
        raise VerifyFailure(
            f"entries {covered}..{end - 1} are not covered by any checkpoint: they are unsigned"
        )
    report.entries = len(lines)
    report.signed_size = covered
    report.signers, report.intent_keys = content.signers, content.intent_keys
    report.warnings.extend(content.warnings)


def _check_entries(
    lines: list[bytes],
    first: int,
    frontier: merkle.Frontier,
    by_size: dict[int, tuple[str, Checkpoint]],
    content: Content,
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
        _note_entry(number, entry, report)
        try:
            content.check(number, entry)
        except ContentError as exc:
            raise VerifyFailure(f"entry {number}: {exc}") from None
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


def _entry(number: int, line: bytes) -> dict[str, Any]:
    try:
        return check_form(number, parse_canonical(line))
    except (CanonicalError, ContentError) as exc:
        raise VerifyFailure(f"entry {number}: {exc}") from None


def _note_entry(number: int, entry: dict[str, Any], report: Report) -> None:
    """What the report shows of every entry: its type and its time."""
    report.kinds[entry["type"]] += 1
    time_ms = entry["time_ms"]
    report.first_ms = time_ms if report.first_ms is None else min(report.first_ms, time_ms)
    report.last_ms = time_ms if report.last_ms is None else max(report.last_ms, time_ms)
    if entry["type"] not in entries.KINDS and report.kinds[entry["type"]] == 1:
        report.warnings.append(f"entry {number}: unknown entry type {entry['type']!r} (kept)")


def _check_cover(
    manifest: Manifest, notes: list[tuple[str, Checkpoint]], end: int, lines: int
) -> None:
    """No checkpoint but the tail signs past the export's end (§4 step 5)."""
    tail_name = manifest.tail.checkpoint if manifest.tail else None
    beyond = [(name, cp) for name, cp in notes if cp.size > end and name != tail_name]
    if beyond:
        name, cp = beyond[0]
        raise VerifyFailure(
            f"checkpoint {name} signs {cp.size} entries but the export ends at entry "
            f"{end - 1}: entries were removed from the end (truncated)"
        )
    if lines != manifest.count:
        raise VerifyFailure(
            f"entries.jsonl holds {lines} entries but the manifest lists "
            f"{manifest.count}: entries were removed or added"
        )


def _check_tail(
    manifest: Manifest, notes: list[tuple[str, Checkpoint]], end: int, frontier: merkle.Frontier
) -> None:
    assert manifest.tail is not None
    name, cp = notes[-1]  # the manifest holds the tail to be the last listed checkpoint
    if cp.size <= end:
        raise VerifyFailure(
            f"manifest.json: tail checkpoint {name} signs {cp.size} entries, no more than the "
            f"export holds ({end}): a tail is only for a checkpoint beyond the export's end"
        )
    try:
        merkle.verify_consistency(end, cp.size, frontier.root(), cp.root, manifest.tail.proof)
    except merkle.ProofError as exc:
        raise VerifyFailure(
            f"entries {manifest.first}..{end - 1} are not a prefix of the log signed in "
            f"checkpoint {name}: {exc}"
        ) from None


def _manifest(files: ExportFiles) -> Manifest:
    if files.manifest is None:
        path = files.directory / "manifest.json"
        raise VerifyFailure(f"{path} is missing: not an airlock audit export")
    try:
        return parse_manifest(files.manifest)
    except ManifestError as exc:
        raise VerifyFailure(f"manifest.json: {exc}") from None


def _public_key(
    exported_pem: bytes | None, given: bytes | None, report: Report
) -> ec.EllipticCurvePublicKey:
    """§4 step 2: the export's own key is always present and in airlock's PEM form; the
    given one, if any, must be the same key (compared as DER, whatever its PEM layout)."""
    if exported_pem is None:
        raise VerifyFailure("audit-key.pem is missing: an export carries its audit key")
    try:
        exported = load_public_key(exported_pem)
    except CheckpointError as exc:
        raise VerifyFailure(f"audit-key.pem: {exc}") from None
    if _pem(exported) != exported_pem:
        raise VerifyFailure(
            "audit-key.pem: not in the form airlock writes (one PUBLIC KEY block, base64 in "
            "64-character lines, LF line ends, nothing else)"
        )
    if given is None:
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
    if spki_der(exported) != spki_der(key):
        raise VerifyFailure(
            "audit-key.pem in the export is not the public key you gave: the export's key was "
            "substituted"
        )
    return key


def _pem(key: ec.EllipticCurvePublicKey) -> bytes:
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _checkpoints(
    on_disk: dict[str, bytes | None],
    manifest: Manifest,
    key: ec.EllipticCurvePublicKey,
    report: Report,
) -> list[tuple[str, Checkpoint]]:
    listed = list(manifest.checkpoints)
    if sorted(listed) != sorted(on_disk) or any(on_disk[name] is None for name in listed):
        extra = sorted(set(on_disk) - set(listed)) or sorted(set(listed) - set(on_disk))
        extra = extra or [name for name in listed if on_disk[name] is None]
        raise VerifyFailure(
            f"checkpoints/: files {', '.join(extra)} differ from the manifest's list "
            "(a checkpoint was added or removed)"
        )
    if not listed:
        raise VerifyFailure("the export holds no checkpoint: nothing in it is signed")
    out: list[tuple[str, Checkpoint]] = []
    for name in listed:
        cp = _note(name, on_disk[name] or b"", manifest, key)
        if out and cp.size <= out[-1][1].size:
            raise VerifyFailure(
                f"checkpoint {name}: size {cp.size} does not grow past the previous "
                f"checkpoint's {out[-1][1].size} (replayed or reordered checkpoint)"
            )
        if cp.size <= manifest.first:
            raise VerifyFailure(f"checkpoint {name}: it covers none of the exported entries")
        out.append((name, cp))
    report.checkpoints = len(out)
    return out


def _note(name: str, data: bytes, manifest: Manifest, key: ec.EllipticCurvePublicKey) -> Checkpoint:
    try:
        cp = verify_note(data.decode("utf-8"), key, manifest.key_name)
    except UnicodeDecodeError:
        raise VerifyFailure(f"checkpoint {name}: not UTF-8") from None
    except CheckpointError as exc:
        raise VerifyFailure(f"checkpoint {name}: {exc}") from None
    if cp.origin != manifest.origin:
        raise VerifyFailure(
            f"checkpoint {name}: it is for log {cp.origin!r}, not {manifest.origin!r} "
            "(a checkpoint from another log)"
        )
    return cp


def _frontier(manifest: Manifest) -> merkle.Frontier:
    try:
        return merkle.Frontier.resume(manifest.first, manifest.frontier)
    except merkle.ProofError as exc:
        raise VerifyFailure(f"manifest.json: frontier: {exc}") from None


def _lines(data: bytes | None) -> list[bytes]:
    if data is None:
        raise VerifyFailure("entries.jsonl is missing")
    if data and not data.endswith(b"\n"):
        raise VerifyFailure("entries.jsonl: the last line is cut short (no final newline)")
    return data.split(b"\n")[:-1] if data else []
