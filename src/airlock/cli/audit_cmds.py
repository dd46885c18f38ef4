"""Audit commands. `verify` and `verify-inclusion` need no HSM and no database: they are
what an auditor runs on their own machine."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import click

from airlock.cli import common

if TYPE_CHECKING:
    from airlock.audit.log import AuditKey
    from airlock.hsm.keyring import KeyRing

_DIR = click.Path(path_type=Path, file_okay=False)
_FILE = click.Path(path_type=Path, dir_okay=False, exists=True)


@click.group("audit")
def audit_group() -> None:
    """The tamper-evident log: checkpoints, export, offline verification, proofs."""


def _audit_key(ctx: click.Context, ring: KeyRing) -> AuditKey:
    from airlock.audit.log import AuditKey  # the HSM and the queue

    return AuditKey(ring, common.config(ctx).audit.key_label)


@audit_group.command("checkpoint")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def audit_checkpoint(ctx: click.Context, as_json: bool) -> None:
    """Sign a checkpoint of the log now (the HSM's audit key)."""
    from airlock.audit.log import checkpoint  # the HSM and the queue

    with common.open_store(ctx) as (store, ring):
        record = checkpoint(store, _audit_key(ctx, ring))
    data = {"id": record.id, "size": record.size, "root": record.root.hex(), "note": record.note}
    common.emit(as_json, data, lambda: record.note.rstrip("\n"))


@audit_group.command("pubkey")
@click.pass_context
def audit_pubkey(ctx: click.Context) -> None:
    """Print the audit public key (PEM): hand it to auditors out of band."""
    with common.keyring(ctx) as ring:
        click.echo(_audit_key(ctx, ring).pem, nl=False)


@audit_group.command("export")
@click.option("--out", required=True, type=_DIR, help="Directory to write (created).")
@click.option("--from", "first", type=click.IntRange(0), default=0, help="First entry.")
@click.option("--to", "last", type=click.IntRange(0), help="Last entry, inclusive (default: end).")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def audit_export(
    ctx: click.Context, out: Path, first: int, last: int | None, as_json: bool
) -> None:
    """Write decrypted entries, checkpoints, the public key and a manifest to a directory."""
    from airlock.audit.export import export  # the HSM and the queue

    with common.open_store(ctx) as (store, ring):
        result = export(store, _audit_key(ctx, ring), out, first, last)
    data = {
        "out": str(result.out),
        "first": result.first,
        "count": result.count,
        "checkpoints": result.checkpoints,
    }
    common.emit(
        as_json,
        data,
        lambda: (
            f"exported entries {result.first}..{result.first + result.count - 1} and "
            f"{result.checkpoints} checkpoint(s) to {result.out}"
        ),
    )


@audit_group.command("verify")
@click.argument("directory", type=click.Path(path_type=Path, file_okay=False, exists=True))
@click.option("--pubkey", type=_FILE, help="The audit public key (PEM) you trust.")
@click.option("--json", "as_json", is_flag=True)
def audit_verify(directory: Path, pubkey: Path | None, as_json: bool) -> None:
    """Verify an export offline: hash chain, Merkle roots, checkpoint signatures, every
    signed transaction. Exits 1 naming the first problem."""
    from airlock.audit.verify import verify_export  # rlp, eth_utils, coincurve, cryptography

    report = verify_export(directory, pubkey.read_bytes() if pubkey else None)
    if as_json:
        click.echo(json.dumps(report.as_json(), indent=2))
    elif report.ok:
        span = f"{_time(report.first_ms)} .. {_time(report.last_ms)}"
        click.echo(
            f"OK: {report.entries} entries ({report.first}..{report.first + report.entries - 1})"
            f", {report.checkpoints} checkpoint(s) signing {report.signed_size} entries\n"
            f"log: {report.origin}\ntime: {span}\n"
            f"signers seen: {', '.join(sorted(report.signers)) or 'none'}\n"
            f"entry types: {', '.join(f'{k} {v}' for k, v in sorted(report.kinds.items()))}"
        )
    for warning in report.warnings:
        common.warn(warning)
    if not report.ok:
        common.fail(f"audit verification FAILED: {report.problem}")


def _time(ms: int | None) -> str:
    if ms is None:
        return "-"
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")


@audit_group.command("prove")
@click.argument("entry", type=click.IntRange(0))
@click.option("--checkpoint", "checkpoint_id", required=True, type=click.IntRange(1))
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False))
@click.pass_context
def audit_prove(ctx: click.Context, entry: int, checkpoint_id: int, out: Path | None) -> None:
    """Print (or write) the inclusion proof of one entry in one checkpoint."""
    from airlock.audit import proof as proofs  # the queue, cryptography

    with common.open_store(ctx) as (store, _):
        proof = proofs.prove(store, entry, checkpoint_id)
    text = json.dumps(proof, indent=2) + "\n"
    if out is None:
        click.echo(text, nl=False)
    else:
        out.write_text(text)


@audit_group.command("verify-inclusion")
@click.argument("proof_file", type=_FILE)
@click.option("--pubkey", required=True, type=_FILE, help="The audit public key (PEM).")
@click.option("--origin", help="The log it must come from (airlock.local/...).")
@click.option("--json", "as_json", is_flag=True)
def audit_verify_inclusion(
    proof_file: Path, pubkey: Path, origin: str | None, as_json: bool
) -> None:
    """Check that one entry is in the log signed by the audit key. No HSM, no database."""
    from airlock.audit import proof as proofs  # cryptography

    try:
        proof = json.loads(proof_file.read_text())
        entry = proofs.verify_inclusion_proof(proof, pubkey.read_bytes())
    except (ValueError, proofs.InclusionError) as exc:
        common.fail(f"inclusion proof FAILED: {exc}")
        return
    if origin is not None and proof["origin"] != origin:
        common.fail(f"inclusion proof FAILED: it is for log {proof['origin']!r}, not {origin!r}")
    data = {
        "ok": True,
        "index": proof["index"],
        "tree_size": proof["tree_size"],
        "type": entry["type"],
        "item": entry["item"],
    }
    common.emit(
        as_json,
        data,
        lambda: (
            f"OK: entry {proof['index']} ({entry['type']}) is in the log of "
            f"{proof['tree_size']} entries signed by this key"
        ),
    )
