"""`airlock audit` as an operator and an auditor run it: real subprocesses, a real token.

The operator queues, cancels, checkpoints and exports; the auditor verifies the export and
an inclusion proof with nothing but the files and the public key."""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
from tests.kits.cli import TRANSFER, command_line, run

pytestmark = pytest.mark.slow


@dataclass(frozen=True)
class Audited:
    home: Path
    export: Path
    pem: Path
    sender: str
    checkpoint: dict


def queue_args(**overrides: str) -> list[str]:
    options = {**TRANSFER, "ladder": "2"}
    command = command_line(["evm", "queue", "--key", "audit-eth"], options, overrides)
    return [*command, "--with-cancel", "--json"]


def ok(home: Path, *args: str) -> str:
    done = run(home, *args)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture(scope="module")
def audited(tmp_path_factory) -> Audited:
    home = tmp_path_factory.mktemp("cli-audit-home")
    files = tmp_path_factory.mktemp("cli-audit-files")
    ok(home, "init")
    ok(home, "hsm", "keygen", "--type", "secp256k1", "--label", "audit-eth")
    queued = [json.loads(ok(home, *queue_args())) for _ in range(3)]
    assert [q["nonce"] for q in queued] == [0, 1, 2]
    assert [v["kind"] for v in queued[0]["variants"]] == ["step", "step", "cancel"]
    cancelled = json.loads(ok(home, "queue", "cancel", queued[1]["id"], "--json"))
    assert cancelled["action"] == "cancel_requested"  # nonce 2 waits on it
    record = json.loads(ok(home, "audit", "checkpoint", "--json"))
    assert record["size"] == 4  # three enqueued, one cancel requested
    out = files / "export"
    ok(home, "audit", "export", "--out", str(out))
    pem = files / "audit.pem"
    pem.write_text(ok(home, "audit", "pubkey"))
    assert pem.read_text().startswith("-----BEGIN PUBLIC KEY-----")
    return Audited(home, out, pem, queued[0]["sender"], record)


def test_verify_prints_ok_and_the_signer(audited):
    done = run(audited.home, "audit", "verify", str(audited.export), "--pubkey", str(audited.pem))
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("OK: 4 entries (0..3)")
    assert f"signers seen: {audited.sender}" in done.stdout
    assert "item.cancel_requested 1, item.enqueued 3" in done.stdout
    assert done.stderr == ""


def test_verify_json(audited):
    done = run(
        audited.home,
        "audit",
        "verify",
        str(audited.export),
        "--pubkey",
        str(audited.pem),
        "--json",
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["ok"] is True and report["problem"] is None
    assert report["entries"] == 4 and report["signed_size"] == 4
    assert report["signers"] == [audited.sender] and report["key_source"] == "given"


def test_verify_without_pubkey_warns(audited):
    done = run(audited.home, "audit", "verify", str(audited.export))
    assert done.returncode == 0, done.stderr
    assert "warning: the public key came from the export itself" in done.stderr


def test_verify_needs_no_database_and_no_hsm(audited, tmp_path):
    empty = tmp_path / "auditor-home"
    empty.mkdir()
    done = run(empty, "audit", "verify", str(audited.export), "--pubkey", str(audited.pem))
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("OK: 4 entries")
    assert list(empty.iterdir()) == []  # no token, no queue, no config was created


def test_one_flipped_byte_fails_naming_the_entry(audited, tmp_path):
    tampered = Path(shutil.copytree(audited.export, tmp_path / "export"))
    path = tampered / "entries.jsonl"
    lines = path.read_bytes().split(b"\n")
    match = re.search(rb'"time_ms":\d+', lines[1])
    assert match
    at = match.end() - 1  # the last digit of entry 1's time
    lines[1] = lines[1][:at] + str((lines[1][at] - ord("0") + 1) % 10).encode() + lines[1][at + 1 :]
    path.write_bytes(b"\n".join(lines))
    done = run(audited.home, "audit", "verify", str(tampered), "--pubkey", str(audited.pem))
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.startswith(
        "error: audit verification FAILED: entry 1: its hash is not the prev of entry 2"
    )


def test_prove_and_verify_inclusion(audited, tmp_path):
    proof = tmp_path / "p.json"
    checkpoint_id = str(audited.checkpoint["id"])
    ok(audited.home, "audit", "prove", "1", "--checkpoint", checkpoint_id, "--out", str(proof))
    done = run(tmp_path, "audit", "verify-inclusion", str(proof), "--pubkey", str(audited.pem))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == (
        "OK: entry 1 (item.enqueued) is in the log of 4 entries signed by this key"
    )
    data = json.loads(proof.read_text())
    data["path"][0] = "00" * 32
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(data))
    done = run(tmp_path, "audit", "verify-inclusion", str(bad), "--pubkey", str(audited.pem))
    assert done.returncode == 1
    assert done.stderr.startswith(
        "error: inclusion proof FAILED: inclusion proof of leaf 1 does not lead to the tree's root"
    )


def test_a_chain_id_and_nonce_beyond_2_53_queue_export_and_verify(tmp_path):
    """Issue 21: these used to crash the writer (a CanonicalError traceback). Entries hold
    such integers as decimal strings (docs/audit-format.md §1.1) and verify."""
    home = tmp_path / "home"
    home.mkdir()
    ok(home, "init")
    ok(home, "hsm", "keygen", "--type", "secp256k1", "--label", "audit-eth")
    big = str(2**53 + 1)
    queued = json.loads(ok(home, *queue_args(chain_id=big, nonce=big)))
    assert queued["nonce"] == 2**53 + 1
    out = tmp_path / "export"
    exported = json.loads(ok(home, "audit", "export", "--out", str(out), "--json"))
    assert exported["count"] == 1
    (line,) = (out / "entries.jsonl").read_bytes().splitlines()
    data = json.loads(line)["data"]
    assert (data["chain_id"], data["nonce"]) == (big, big)
    pem = tmp_path / "audit.pem"
    pem.write_text(ok(home, "audit", "pubkey"))
    done = run(home, "audit", "verify", str(out), "--pubkey", str(pem), "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["signers"] == [queued["sender"]]


def test_export_to_is_inclusive(audited, tmp_path):
    out = tmp_path / "range"
    done = json.loads(
        ok(audited.home, "audit", "export", "--out", str(out), "--from", "1", "--to", "2", "--json")
    )
    assert (done["first"], done["count"]) == (1, 2)  # entries 1 and 2
    assert len((out / "entries.jsonl").read_bytes().splitlines()) == 2
    verified = run(audited.home, "audit", "verify", str(out), "--pubkey", str(audited.pem))
    assert verified.returncode == 0, verified.stderr
    assert verified.stdout.startswith("OK: 2 entries (1..2)")


def test_verify_fails_without_the_exports_key_file_even_with_pubkey(audited, tmp_path):
    tampered = Path(shutil.copytree(audited.export, tmp_path / "export"))
    (tampered / "audit-key.pem").unlink()
    done = run(audited.home, "audit", "verify", str(tampered), "--pubkey", str(audited.pem))
    assert done.returncode == 1
    assert done.stderr == (
        "error: audit verification FAILED: audit-key.pem is missing: an export carries its "
        "audit key\n"
    )


def test_an_empty_log_is_refused_by_export(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    ok(home, "init")
    done = run(home, "audit", "export", "--out", str(tmp_path / "out"))
    assert done.returncode == 1
    assert done.stderr == "error: the audit log is empty: there is nothing to export yet\n"
