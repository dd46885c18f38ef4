"""`airlock evm queue`, `queue`, `nonce` and `keys` as an operator runs them: subprocesses."""

from __future__ import annotations

import json
import sqlite3
import stat
from pathlib import Path

import pytest
from eth_account import Account
from tests.kits.cli import TRANSFER, command_line, run

pytestmark = pytest.mark.slow
ANVIL_PER_MODULE = True


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    home = tmp_path_factory.mktemp("cli-queue-home")
    assert run(home, "init").returncode == 0
    assert run(home, "hsm", "keygen", "--type", "secp256k1", "--label", "q").returncode == 0
    return home


def queue_args(*extra: str, **overrides: str) -> list[str]:
    options = TRANSFER
    return [*command_line(["evm", "queue", "--key", "q"], options, overrides), *extra]


def queue_json(home: Path, *extra: str, **overrides: str) -> dict:
    done = run(home, *queue_args(*extra, "--json", **overrides))
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_queue_prints_id_nonce_and_every_variant_hash(home):
    data = queue_json(home, "--ladder", "3", "--with-cancel", "--ttl", "600")
    assert len(data["id"]) == 26 and data["state"] == "queued"
    assert [v["kind"] for v in data["variants"]] == ["step", "step", "step", "cancel"]
    shown = json.loads(run(home, "queue", "show", data["id"], "--json").stdout)
    for variant in shown["variants"]:
        assert Account.recover_transaction(variant["raw"]) == data["sender"]
    assert shown["payload"]["intent"]["nonce"] == data["nonce"]
    plain = run(home, *queue_args())
    assert plain.returncode == 0 and len(plain.stdout.strip()) == 26


def test_same_idempotency_key_gives_the_same_item(home):
    first = queue_json(home, "--idempotency-key", "cli-idem")
    again = run(home, *queue_args("--idempotency-key", "cli-idem"))
    assert again.returncode == 0
    assert again.stdout.strip() == first["id"]
    assert "already queued" in again.stderr
    listed = json.loads(run(home, "queue", "list", "--json").stdout)
    assert [i["id"] for i in listed].count(first["id"]) == 1


def test_list_show_cancel(home):
    data = queue_json(home)
    listed = run(home, "queue", "list", "--state", "queued")
    assert data["id"] in listed.stdout
    text = run(home, "queue", "show", data["id"])
    assert "variant 0 (step)" in text.stdout and "history: - -> queued" in text.stdout
    cancelled = run(home, "queue", "cancel", data["id"], "--json")
    assert json.loads(cancelled.stdout)["state"] == "cancelled"
    again = run(home, "queue", "cancel", data["id"])
    assert again.returncode == 1 and "only queued items can be cancelled" in again.stderr
    assert data["id"] not in run(home, "queue", "list", "--state", "queued").stdout


def test_export_writes_private_json_lines(home, tmp_path):
    queue_json(home)
    out = tmp_path / "export.jsonl"
    done = run(home, "queue", "export", "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert records and all(r["item"]["state"] in {"queued", "sending", "sent"} for r in records)
    assert all(r["variants"][0]["raw"].startswith("0x") for r in records)
    assert f"exported {len(records)} items" in done.stderr


def test_keys_rotate_and_list(home):
    before = json.loads(run(home, "keys", "list", "--json").stdout)
    rotated = json.loads(run(home, "keys", "rotate", "--json").stdout)
    assert rotated["primary_key_id"] == before[-1]["key_id"] + 1
    data = queue_json(home)
    assert run(home, "queue", "show", data["id"]).returncode == 0


def test_nonce_status_and_explicit_nonce_conflict(home):
    data = queue_json(home)
    status = json.loads(run(home, "nonce", "status", "--json").stdout)
    [row] = [r for r in status if r["sender"] == data["sender"]]
    assert row["next_nonce"] == data["nonce"] + 1
    used = run(home, *queue_args("--nonce", str(data["nonce"])))
    assert used.returncode == 1 and f"already used by item {data['id']}" in used.stderr


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--bump-pct", "5"], "5"),
        (["--ladder", "0"], "0"),
        (["--max-fee-cap", "1000"], "cap"),
        (["--ttl", "0"], "0"),
        (["--idempotency-key", " x"], "idempotency key"),
    ],
)
def test_bad_queue_options(home, extra, message):
    before = run(home, "queue", "list", "--json").stdout
    done = run(home, *queue_args(*extra))
    assert done.returncode != 0 and message in done.stderr
    assert run(home, "queue", "list", "--json").stdout == before  # nothing stored


def test_tampered_item_is_reported_and_quarantined(home):
    data = queue_json(home)
    conn = sqlite3.connect(home / "queue.db", isolation_level=None)
    blob = bytearray(
        conn.execute("SELECT payload FROM items WHERE id = ?", (data["id"],)).fetchone()[0]
    )
    blob[-1] ^= 0xFF
    conn.execute("UPDATE items SET payload = ? WHERE id = ?", (bytes(blob), data["id"]))
    conn.close()
    verify = run(home, "queue", "verify")
    assert verify.returncode == 1 and data["id"] in verify.stderr
    shown = run(home, "queue", "show", data["id"])
    assert shown.returncode == 1 and "failed authentication" in shown.stderr
    assert "quarantined" in shown.stderr
    [item] = [
        i for i in json.loads(run(home, "queue", "list", "--json").stdout) if i["id"] == data["id"]
    ]
    assert item["state"] == "quarantined"


@pytest.mark.anvil
def test_nonce_sync_raises_the_counter_to_the_chain(home, anvil):
    data = queue_json(home)
    anvil.rpc("anvil_setNonce", [data["sender"], hex(40)])
    synced = run(home, "nonce", "sync", "--rpc", anvil.url, "--json")
    assert synced.returncode == 0, synced.stderr
    [row] = [r for r in json.loads(synced.stdout) if r["sender"] == data["sender"]]
    assert (row["chain_pending"], row["next_after"]) == (40, 40)
    assert row["conflicts"]  # queued items below 40 can no longer be mined as signed
    assert queue_json(home)["nonce"] == 40


def test_nonce_sync_with_a_dead_or_wrong_endpoint(home):
    dead = run(home, "nonce", "sync", "--rpc", "http://127.0.0.1:9", "--timeout", "2")
    assert dead.returncode == 1 and "cannot reach the node" in dead.stderr
    bad = run(home, "nonce", "sync", "--rpc", "ftp://example")
    assert bad.returncode == 1 and "http://" in bad.stderr
