"""The offline verifier against an attacker: one realistic log, exported once, then copied
and tampered with in every way we can think of. Each tamper must fail, naming the entry or
the checkpoint file it touched."""

from __future__ import annotations

import base64
import json
import re
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
import rlp
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from eth_account import Account
from eth_utils import keccak
from tests.kits.backends import BOTH
from tests.kits.clocks import FakeClock
from tests.kits.labels import unique_label
from tests.kits.postgres import fresh_name
from tests.kits.queue import FIELDS, queue_tx

from airlock.audit import entries, merkle
from airlock.audit.checkpoint import DASH, body, key_hint, make_note, parse_note
from airlock.audit.evm_check import SECP256K1_N, EvmCheckError, check_enqueued_evm
from airlock.audit.export import export
from airlock.audit.log import AuditKey, checkpoint
from airlock.audit.manifest import note_id
from airlock.audit.manifest import note_name as note_file
from airlock.audit.order_check import key_fingerprint
from airlock.audit.proof import InclusionError, prove, verify_inclusion_proof
from airlock.audit.verify import verify_export
from airlock.broadcaster.setup import resigner
from airlock.encoding.canonical import canonical
from airlock.errors import InvalidInput
from airlock.hsm.keyring import HsmEcdsaKey
from airlock.queue.bybit import IntentKey, cancel_order, enqueue_order
from airlock.queue.evm import enqueue_transaction
from airlock.queue.journal import CheckpointRecord
from airlock.queue.policy import OrderRequest, PolicyConfig, decide_order
from airlock.queue.states import State
from airlock.queue.store import Store
from airlock.signer import evm
from airlock.signer.bybit import load_intent_public_key
from airlock.signer.ladder import LadderSpec

ATTACKER_ETH = Account.from_key("0x" + "42" * 32)
LEGACY = {
    "chain_id": 31337,
    "to": "0x" + "22" * 20,
    "value": 5,
    "gas": 21000,
    "gas_price": 3 * 10**9,
    "tx_type": 0,
}
SIZES = [3, 8, 13, 16]  # the checkpoints the log fixture signs, in order
TOTAL = 16


@dataclass
class Log:
    store: Store
    audit_key: AuditKey
    pem: bytes
    eth: HsmEcdsaKey  # the first sender's key
    senders: list[str]
    checkpoints: list[CheckpointRecord]
    pristine: Path  # full export: entries 0..15, checkpoints at sizes 3, 8, 13, 16
    ranged: Path  # entries 3..9: checkpoint of size 8 inside, size 13 as the tail


@pytest.fixture(scope="module", params=BOTH)
def log(request, tmp_path_factory, keyring, kek) -> Iterator[Log]:
    """The log, written once per engine: the verifier must not care which one wrote it."""
    base = tmp_path_factory.mktemp("audit-tamper")
    location: Path | str = base / "queue.db"
    if request.param == "postgres":
        cluster = request.getfixturevalue("pg_cluster")
        location = cluster.create_database(fresh_name())
    clock = FakeClock(tick_ms=7)
    keys = []
    for _ in range(2):
        label = unique_label("tamper-eth")
        keyring.generate("secp256k1", label)
        keys.append(keyring.ecdsa_key(label, curve="secp256k1"))
    audit_key = AuditKey(keyring, unique_label("tamper-audit"))
    ladder = LadderSpec(levels=3, with_cancel=True)
    with Store.open(location, kek, clock_ms=clock) as store:
        a1 = queue_tx(store, keys[0], ladder=ladder).item  # entry 0
        a2 = queue_tx(store, keys[0], ladder=ladder).item  # 1
        b1 = enqueue_transaction(
            store, keys[1], LEGACY, ladder=LadderSpec(levels=2, with_cancel=True)
        ).item  # 2: a legacy (type 0) transaction
        checkpoint(store, audit_key)  # size 3
        store.items.transition(a1.id, State.SENDING, "dispatch")  # 3
        store.items.transition(a1.id, State.SENT, "accepted by rpc-a")  # 4
        a3 = queue_tx(store, keys[0], ladder=ladder).item  # 5
        assert store.items.cancel(a2.id).action == "cancel_requested"  # 6
        store.items.transition(a1.id, State.CONFIRMED, "mined in block 1234")  # 7
        checkpoint(store, audit_key)  # size 8
        assert store.items.cancel(b1.id).action == "cancelled"  # 8
        queue_tx(store, keys[1], ttl_s=1)  # 9
        clock.now += 5_000
        assert [r.action for r in store.items.expire_due()] == ["expired"]  # 10
        store.nonces.sync(31337, {a1.account: 1, b1.account: 0})  # 11, 12
        checkpoint(store, audit_key)  # size 13
        store.keys.rotate("quarterly rotation")  # 13
        store.items.transition(a3.id, State.SENDING, "dispatch")  # 14
        store.items.transition(a3.id, State.SENT, "accepted by rpc-b")  # 15
        export(store, audit_key, base / "pristine")  # signs size 16
        export(store, audit_key, base / "ranged", first=3, last=9)
        records = store.audit.checkpoints()
        assert [c.size for c in records] == SIZES
        yield Log(
            store=store,
            audit_key=audit_key,
            pem=audit_key.pem.encode(),
            eth=keys[0],
            senders=[a1.account, b1.account],
            checkpoints=records,
            pristine=base / "pristine",
            ranged=base / "ranged",
        )


# --------------------------------------------------------------------------- helpers


def copy(src: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(src, tmp_path / "export"))


def read_lines(export_dir: Path) -> list[bytes]:
    return (export_dir / "entries.jsonl").read_bytes().split(b"\n")[:-1]


def write_lines(export_dir: Path, lines: list[bytes]) -> None:
    (export_dir / "entries.jsonl").write_bytes(b"".join(line + b"\n" for line in lines))


def edit_line(export_dir: Path, number: int, edit: Callable[[bytes], bytes]) -> None:
    """Change entry ``number`` of a full export (line index = entry number)."""
    lines = read_lines(export_dir)
    changed = edit(lines[number])
    assert changed != lines[number], "the tamper changed nothing"
    lines[number] = changed
    write_lines(export_dir, lines)


def replace_once(old: bytes, new: bytes) -> Callable[[bytes], bytes]:
    def edit(line: bytes) -> bytes:
        assert old in line, (old, line[:200])
        return line.replace(old, new, 1)

    return edit


def bump_digit(field: str) -> Callable[[bytes], bytes]:
    """One byte changed: the last digit of an integer member (the JSON stays canonical)."""

    def edit(line: bytes) -> bytes:
        match = re.search(b'"' + field.encode() + rb'":(\d+)', line)
        assert match, (field, line[:200])
        end = match.end(1) - 1
        digit = (line[end] - ord("0") + 1) % 10
        return line[:end] + str(digit).encode() + line[end + 1 :]

    return edit


bump_time_digit = bump_digit("time_ms")


def entry(export_dir: Path, number: int) -> dict[str, Any]:
    return json.loads(read_lines(export_dir)[number])


def manifest(export_dir: Path) -> dict[str, Any]:
    return json.loads((export_dir / "manifest.json").read_text())


def write_manifest(export_dir: Path, data: dict[str, Any]) -> None:
    (export_dir / "manifest.json").write_text(json.dumps(data, indent=2))


def failed(export_dir: Path, pem: bytes | None) -> str:
    report = verify_export(export_dir, pem)
    assert not report.ok, "the tampered export verified"
    assert report.problem is not None
    return report.problem


def note_name(size: int) -> str:
    return f"{SIZES.index(size) + 1:06d}.note"


class Attacker:
    """A P-256 key that is not the audit key."""

    def __init__(self) -> None:
        self.private = ec.generate_private_key(ec.SECP256R1())
        self.public = self.private.public_key()
        self.pem = self.public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def sign_der(self, message: bytes) -> bytes:
        return self.private.sign(message, ec.ECDSA(hashes.SHA256()))

    def note(self, origin: str, size: int, root: bytes) -> str:
        return make_note(origin, size, root, self.public, self.sign_der)


def reforge(
    export_dir: Path,
    attacker: Attacker,
    edit: Callable[[list[dict[str, Any]]], None] | None = None,
    replace_pem: bool = True,
) -> None:
    """A consistent forgery of a full export: edit the entries, rebuild the hash chain and
    re-sign every checkpoint with the attacker's key (and, by default, ship its PEM)."""
    parsed = [json.loads(line) for line in read_lines(export_dir)]
    if edit is not None:
        edit(parsed)
    prev, lines = entries.GENESIS_PREV, []
    for data in parsed:
        data["prev"] = prev
        line = canonical(data)
        lines.append(line)
        prev = entries.entry_hash(line).hex()
    write_lines(export_dir, lines)
    leaves = [merkle.leaf_hash(line) for line in lines]
    info = manifest(export_dir)
    for name in info["checkpoints"]:
        path = export_dir / "checkpoints" / name
        size = parse_note(path.read_text()).size
        path.write_text(attacker.note(info["origin"], size, merkle.root(leaves[:size])))
    if replace_pem:
        (export_dir / "audit-key.pem").write_bytes(attacker.pem)


# --------------------------------------------------------------------------- pristine


def test_the_log_has_what_the_fixture_wrote(log):
    kinds = [entry(log.pristine, n)["type"] for n in range(TOTAL)]
    assert kinds == [
        entries.ITEM_ENQUEUED,
        entries.ITEM_ENQUEUED,
        entries.ITEM_ENQUEUED,
        entries.ITEM_TRANSITION,
        entries.ITEM_TRANSITION,
        entries.ITEM_ENQUEUED,
        entries.ITEM_CANCEL_REQUESTED,
        entries.ITEM_TRANSITION,
        entries.ITEM_TRANSITION,
        entries.ITEM_ENQUEUED,
        entries.ITEM_TRANSITION,
        entries.NONCE_SYNC,
        entries.NONCE_SYNC,
        entries.DATA_KEY_ROTATED,
        entries.ITEM_TRANSITION,
        entries.ITEM_TRANSITION,
    ]
    assert entry(log.pristine, 10)["data"]["to"] == "expired"
    assert entry(log.pristine, 8)["data"]["to"] == "cancelled"
    assert [v["kind"] for v in entry(log.pristine, 0)["data"]["variants"]] == [
        "step",
        "step",
        "step",
        "cancel",
    ]
    assert manifest(log.pristine)["checkpoints"] == [note_name(s) for s in SIZES]


def test_pristine_export_verifies_with_the_given_key(log):
    report = verify_export(log.pristine, log.pem)
    assert report.ok, report.problem
    assert report.problem is None and report.warnings == []
    assert (report.entries, report.first, report.checkpoints) == (TOTAL, 0, 4)
    assert report.signed_size == TOTAL and report.key_source == "given"
    assert report.signers == set(log.senders)
    assert report.origin == log.store.audit.origin()
    assert report.kinds[entries.ITEM_ENQUEUED] == 5 and report.kinds[entries.NONCE_SYNC] == 2


def test_pristine_export_without_a_key_warns_that_the_key_came_from_it(log):
    report = verify_export(log.pristine, None)
    assert report.ok, report.problem
    assert report.key_source == "export"
    assert len(report.warnings) == 1
    assert "the public key came from the export itself" in report.warnings[0]
    assert "not who signed it" in report.warnings[0]


# --------------------------------------------------------------------------- one changed entry


@pytest.mark.parametrize(
    ("number", "edit"),
    [
        (4, bump_time_digit),
        (5, bump_time_digit),  # an item.enqueued entry: its variants still check out
        (3, replace_once(b'"reason":"dispatch"', b'"reason":"dispatcH"')),
        (10, replace_once(b'"to":"expired"', b'"to":"queued!"')),
        (11, bump_digit("chain_pending")),
        (13, replace_once(b'"reason":"quarterly rotation"', b'"reason":"quarterly_rotation"')),
    ],
    ids=["time-4", "time-5", "reason-3", "state-10", "nonce-11", "rotation-13"],
)
def test_one_byte_in_a_middle_entry_names_it(log, tmp_path, number, edit):
    assert number + 1 not in SIZES  # not the last entry a checkpoint covers
    tampered = copy(log.pristine, tmp_path)
    edit_line(tampered, number, edit)
    problem = failed(tampered, log.pem)
    assert problem.startswith(f"entry {number}: its hash is not the prev of entry {number + 1}")
    assert f"entry {number} was altered" in problem


@pytest.mark.parametrize("size", SIZES)
def test_a_change_to_the_last_entry_a_checkpoint_covers_is_named_by_the_root(log, tmp_path, size):
    tampered = copy(log.pristine, tmp_path)
    edit_line(tampered, size - 1, bump_time_digit)
    problem = failed(tampered, log.pem)
    assert problem == (
        f"entry {size - 1}: the entries up to it do not hash to the root signed in checkpoint "
        f"{note_name(size)}: entry {size - 1} (the last it covers) was altered"
    )


def test_a_change_to_the_prev_of_an_entry_names_the_pair(log, tmp_path):
    tampered = copy(log.pristine, tmp_path)
    prev = entry(tampered, 5)["prev"].encode()
    edit_line(tampered, 5, replace_once(prev, prev[:-1] + (b"0" if prev[-1:] != b"0" else b"1")))
    assert failed(tampered, log.pem).startswith(
        "entry 4: its hash is not the prev of entry 5: entry 4 was altered (or entry 5's prev was)"
    )


def test_entry_zero_must_start_from_the_zero_hash(log, tmp_path):
    tampered = copy(log.pristine, tmp_path)
    edit_line(tampered, 0, replace_once(b'"prev":"' + b"0" * 64, b'"prev":"' + b"0" * 63 + b"1"))
    assert failed(tampered, log.pem) == "entry 0: prev must be 64 zeros (the start of the log)"


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (replace_once(b'"type":', b"'type':"), "entry 6: not JSON"),
        (replace_once(b',"type":', b', "type":'), "entry 6: valid JSON, but not in canonical form"),
        (replace_once(b'"time_ms":', b'"time_ms":1.5e0,"x":'), "entry 6: floating point number"),
        (replace_once(b'"v":1}', b'"v":1,"x":1}'), "entry 6: not an airlock audit entry"),
        (replace_once(b'"v":1}', b'"v":2}'), "entry 6: unknown entry version 2"),
        (replace_once(b'"v":1}', b'"v":true}'), "entry 6: v is not of type int"),
        (replace_once(b'"seq":6', b'"seq":7'), "entry 6: found entry number 7 in its place"),
        (replace_once(b'"reason":"', b'"reason":"\xff'), "entry 6: not UTF-8"),
    ],
    ids=["quote", "space", "float", "extra-field", "version", "bool", "seq", "utf8"],
)
def test_a_byte_that_breaks_the_entry_format_names_the_entry(log, tmp_path, edit, message):
    tampered = copy(log.pristine, tmp_path)
    edit_line(tampered, 6, edit)
    assert failed(tampered, log.pem).startswith(message)


# --------------------------------------------------------------------------- signed transactions


def variant_edit(number: int, change: Callable[[dict[str, Any]], None]):
    """Edit entry ``number``'s data in place, keeping it canonical (the chain then breaks,
    but the transaction check runs first and names the entry)."""

    def edit(line: bytes) -> bytes:
        data = json.loads(line)
        change(data["data"])
        return canonical(data)

    return edit


def other_key_tx(data: dict[str, Any], **overrides: Any) -> str:
    tx = {
        "chainId": data["chain_id"],
        "nonce": data["nonce"],
        "to": "0x" + "11" * 20,
        "value": 1000,
        "gas": 21000,
        "maxFeePerGas": 2 * 10**9,
        "maxPriorityFeePerGas": 10**9,
    }
    tx.update(overrides)
    return "0x" + bytes(ATTACKER_ETH.sign_transaction(tx).raw_transaction).hex()


def set_raw(variant: dict[str, Any], raw_hex: str) -> None:
    variant["raw"] = raw_hex
    variant["hash"] = "0x" + keccak(bytes.fromhex(raw_hex[2:])).hex()


def test_a_changed_tx_hash_names_the_entry(log, tmp_path):
    tampered = copy(log.pristine, tmp_path)
    old = entry(tampered, 1)["data"]["variants"][2]["hash"].encode()
    new = old[:-1] + (b"a" if old[-1:] != b"a" else b"b")
    edit_line(tampered, 1, replace_once(old, new))
    assert failed(tampered, log.pem) == (
        "entry 1: variant 2: recorded hash is not the hash of its raw bytes"
    )


def test_a_changed_raw_byte_names_the_entry(log, tmp_path):
    tampered = copy(log.pristine, tmp_path)
    raw = entry(tampered, 2)["data"]["variants"][1]["raw"].encode()
    flipped = raw[:40] + (b"0" if raw[40:41] != b"0" else b"1") + raw[41:]
    edit_line(tampered, 2, replace_once(raw, flipped))
    assert failed(tampered, log.pem) == (
        "entry 2: variant 1: recorded hash is not the hash of its raw bytes"
    )


def test_a_variant_replaced_by_another_signers_tx_names_the_entry(log, tmp_path):
    tampered = copy(log.pristine, tmp_path)

    def swap(data: dict[str, Any]) -> None:
        set_raw(data["variants"][0], other_key_tx(data))

    edit_line(tampered, 5, variant_edit(5, swap))
    sender = log.senders[0]
    assert failed(tampered, log.pem) == (
        f"entry 5: variant 0: signed by {ATTACKER_ETH.address}, not by the declared sender {sender}"
    )


def test_a_declared_nonce_that_is_not_the_signed_one_names_the_entry(log, tmp_path):
    tampered = copy(log.pristine, tmp_path)
    edit_line(tampered, 5, variant_edit(5, lambda d: d.update(nonce=d["nonce"] + 7)))
    assert failed(tampered, log.pem) == (
        "entry 5: variant 0: signed for chain 31337 nonce 2, declared chain 31337 nonce 9"
    )


@pytest.fixture(scope="module")
def evm_data(log) -> dict[str, Any]:
    """Entry 0's data: a type-2 transaction of sender 0, three steps and a cancel."""
    return entry(log.pristine, 0)["data"]


def own_tx(log: Log, data: dict[str, Any], **fields: Any) -> str:
    """A transaction the real sender's HSM key signs (for a cancel that is not one)."""
    intent = evm.make_intent(
        **dict(
            {
                "chain_id": data["chain_id"],
                "nonce": data["nonce"],
                "to": data["account"],
                "value": 0,
                "gas": 21000,
                "max_fee_per_gas": 4 * 10**9,
                "max_priority_fee_per_gas": 2 * 10**9,
            },
            **fields,
        )
    )
    return evm.sign_transaction(intent, log.eth).raw_hex


def test_the_recorded_transactions_pass_the_check(log, evm_data):
    assert check_enqueued_evm(evm_data) == log.senders[0]
    legacy = entry(log.pristine, 2)["data"]
    assert legacy["variants"][0]["raw"].startswith("0xf8")  # an RLP list: type 0
    assert check_enqueued_evm(legacy) == log.senders[1]


def mutate(data: dict[str, Any], change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    copied = json.loads(json.dumps(data))
    change(copied)
    return copied


def drop_r(raw_hex: str) -> str:
    raw = bytes.fromhex(raw_hex[2:])
    fields = rlp.decode(raw[1:])
    fields[-2] = b""  # r = 0: no point to recover
    return "0x" + (raw[:1] + rlp.encode(fields)).hex()


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("sender", "variant 0: signed by {real}, not by the declared sender {attacker}"),
        ("other-key", "variant 1: signed by {attacker}, not by the declared sender {real}"),
        ("nonce", "variant 0: signed for chain 31337 nonce 0, declared chain 31337 nonce 1"),
        ("chain", "variant 0: signed for chain 31337 nonce 0, declared chain 1 nonce 0"),
        ("cancel-value", "variant 3: a cancel must be a 0-value transfer to the sender"),
        ("cancel-elsewhere", "variant 3: a cancel must be a 0-value transfer to the sender"),
        ("no-eip155", "a legacy transaction without EIP-155 replay protection"),
        ("not-a-tx", "the raw bytes are not a signed transaction: 0 fields, a type 2 tra"),
        ("type-3", "variant 0: transaction type 3 is not accepted (types 0, 1 and 2 are)"),
        (
            "long-prefix",
            "variant 0: the raw bytes are not a signed transaction: Long list prefix used for "
            "short list",
        ),
        ("not-hex", "variant 2: raw is not hex"),
        ("no-recover", "variant 0: y, r or s out of range: the signature does not recover"),
        ("no-variants", "an EVM item without an account or variants"),
        ("variant-not-object", "variant 1: a variant is not an object"),
    ],
)
def test_check_enqueued_evm_refuses(log, evm_data, case, message):
    real, attacker = log.senders[0], ATTACKER_ETH.address
    changes: dict[str, Callable[[dict[str, Any]], None]] = {
        "sender": lambda d: d.update(account=attacker),
        "other-key": lambda d: set_raw(d["variants"][1], other_key_tx(d)),
        "nonce": lambda d: d.update(nonce=1),
        "chain": lambda d: d.update(chain_id=1),
        "cancel-value": lambda d: set_raw(d["variants"][3], own_tx(log, d, value=1)),
        "cancel-elsewhere": lambda d: set_raw(d["variants"][3], own_tx(log, d, to=attacker)),
        "no-eip155": lambda d: set_raw(
            d["variants"][0],
            "0x"
            + bytes(
                Account.from_key("0x" + "43" * 32)
                .sign_transaction({"nonce": 0, "to": real, "value": 0, "gas": 21000, "gasPrice": 1})
                .raw_transaction
            ).hex(),
        ),
        "not-a-tx": lambda d: set_raw(d["variants"][0], "0x02c0"),
        "type-3": lambda d: set_raw(d["variants"][0], "0x03c0"),
        "long-prefix": lambda d: set_raw(d["variants"][0], "0x02f8028080"),
        "not-hex": lambda d: d["variants"][2].update(raw="0xzz"),
        "no-recover": lambda d: set_raw(d["variants"][0], drop_r(d["variants"][0]["raw"])),
        "no-variants": lambda d: d.update(variants=[]),
        "variant-not-object": lambda d: d["variants"].insert(1, "0x00"),
    }
    with pytest.raises(EvmCheckError) as caught:
        check_enqueued_evm(mutate(evm_data, changes[case]))
    assert message.format(real=real, attacker=attacker) in str(caught.value)


def crafted_raw(data: dict[str, Any], field: int, value: Any) -> str:
    """Variant 0 of ``data`` (type 2) with one RLP field replaced: decodes, but is wrong."""
    raw = bytes.fromhex(data["variants"][0]["raw"][2:])
    fields = rlp.decode(raw[1:])
    fields[field] = value
    return "0x" + (raw[:1] + rlp.encode(fields)).hex()


MALFORMED = [(5, b"\x01\x02"), (1, [b"\x01"]), (6, [b""])]  # to of 2 bytes; list nonce, value
MALFORMED_IDS = ["short-to", "list-nonce", "list-value"]


@pytest.mark.parametrize(("field", "value"), MALFORMED, ids=MALFORMED_IDS)
def test_check_enqueued_evm_refuses_malformed_fields(evm_data, field, value):
    def change(data: dict[str, Any]) -> None:
        set_raw(data["variants"][0], crafted_raw(data, field, value))

    with pytest.raises(EvmCheckError, match="the raw bytes are not a signed transaction"):
        check_enqueued_evm(mutate(evm_data, change))


@pytest.mark.parametrize(("field", "value"), MALFORMED, ids=MALFORMED_IDS)
def test_a_malformed_transaction_in_an_entry_is_named(log, tmp_path, field, value):
    tampered = copy(log.pristine, tmp_path)

    def change(data: dict[str, Any]) -> None:
        set_raw(data["variants"][0], crafted_raw(data, field, value))

    edit_line(tampered, 5, variant_edit(5, change))
    assert failed(tampered, log.pem).startswith("entry 5: ")


# --------------------------------------------------------------------------- missing, extra, moved


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda ls: ls.pop(6), "entry 6: found entry number 7 in its place"),
        (lambda ls: ls.insert(7, ls[6]), "entry 7: found entry number 6 in its place"),
        (lambda ls: ls.insert(6, ls.pop(7)), "entry 6: found entry number 7 in its place"),
        (lambda ls: ls.insert(0, ls.pop()), "entry 0: found entry number 15 in its place"),
    ],
    ids=["delete", "duplicate", "swap", "last-first"],
)
def test_deleted_duplicated_reordered_entries(log, tmp_path, change, message):
    tampered = copy(log.pristine, tmp_path)
    lines = read_lines(tampered)
    change(lines)
    write_lines(tampered, lines)
    problem = failed(tampered, log.pem)
    assert problem == f"{message}: entries were deleted, inserted, duplicated or reordered"


@pytest.mark.parametrize(("cut", "named"), [(1, 16), (3, 16), (4, 13), (8, 13), (9, 8)])
@pytest.mark.parametrize("fix_count", [False, True])
def test_truncation_is_named_by_the_checkpoint_it_leaves_uncovered(
    log, tmp_path, cut, named, fix_count
):
    tampered = copy(log.pristine, tmp_path)
    lines = read_lines(tampered)
    write_lines(tampered, lines[:-cut])
    if fix_count:
        write_manifest(tampered, manifest(tampered) | {"count": TOTAL - cut})
    assert failed(tampered, log.pem) == (
        f"checkpoint {note_name(named)} signs {named} entries but the export ends at entry "
        f"{TOTAL - cut - 1}: entries were removed from the end (truncated)"
    )


def test_truncation_with_the_later_checkpoints_removed_leaves_entries_unsigned(log, tmp_path):
    tampered = copy(log.pristine, tmp_path)
    write_lines(tampered, read_lines(tampered)[:11])
    for size in (13, 16):
        (tampered / "checkpoints" / note_name(size)).unlink()
    info = manifest(tampered)
    write_manifest(tampered, info | {"count": 11, "checkpoints": [note_name(3), note_name(8)]})
    assert failed(tampered, log.pem) == (
        "entries 8..10 are not covered by any checkpoint: they are unsigned"
    )


def test_truncation_to_an_earlier_checkpoint_is_an_older_but_valid_export(log, tmp_path):
    """Not detectable from the export alone (it is exactly what an export made earlier
    looks like): the report's signed_size is what the auditor compares with the newest
    checkpoint they know of."""
    tampered = copy(log.pristine, tmp_path)
    write_lines(tampered, read_lines(tampered)[:13])
    (tampered / "checkpoints" / note_name(16)).unlink()
    info = manifest(tampered)
    write_manifest(tampered, info | {"count": 13, "checkpoints": info["checkpoints"][:3]})
    report = verify_export(tampered, log.pem)
    assert report.ok, report.problem
    assert report.signed_size == 13 < TOTAL


def test_a_count_that_does_not_match_the_lines(log, tmp_path):
    tampered = copy(log.pristine, tmp_path)
    write_manifest(tampered, manifest(tampered) | {"count": TOTAL + 1})
    assert failed(tampered, log.pem) == (
        f"entries.jsonl holds {TOTAL} entries but the manifest lists {TOTAL + 1}: entries "
        "were removed or added"
    )


def test_an_appended_entry_is_unsigned(log, tmp_path):
    tampered = copy(log.pristine, tmp_path)
    lines = read_lines(tampered)
    last = json.loads(lines[-1])
    extra = entries.encode(
        TOTAL,
        entries.entry_hash(lines[-1]).hex(),
        last["time_ms"] + 1,
        "item.transition",
        last["item"],
        {"from": "sent", "to": "confirmed", "reason": "forged"},
    )
    write_lines(tampered, [*lines, extra])
    write_manifest(tampered, manifest(tampered) | {"count": TOTAL + 1})
    assert failed(tampered, log.pem) == (
        f"entries {TOTAL}..{TOTAL} are not covered by any checkpoint: they are unsigned"
    )


def test_a_missing_final_newline(log, tmp_path):
    tampered = copy(log.pristine, tmp_path)
    path = tampered / "entries.jsonl"
    path.write_bytes(path.read_bytes()[:-1])
    assert failed(tampered, log.pem) == (
        "entries.jsonl: the last line is cut short (no final newline)"
    )


def test_crlf_line_ends_in_entries_jsonl(log, tmp_path):
    tampered = copy(log.pristine, tmp_path)
    path = tampered / "entries.jsonl"
    path.write_bytes(path.read_bytes().replace(b"\n", b"\r\n"))
    assert failed(tampered, log.pem) == "entry 0: valid JSON, but not in canonical form"


def test_a_cut_last_line(log, tmp_path):
    tampered = copy(log.pristine, tmp_path)
    path = tampered / "entries.jsonl"
    path.write_bytes(path.read_bytes()[:-20] + b"\n")
    assert failed(tampered, log.pem).startswith(f"entry {TOTAL - 1}: not JSON")


# --------------------------------------------------------------------------- checkpoints


def resign(note: str, blob_edit: Callable[[bytes], bytes]) -> str:
    """Apply ``blob_edit`` to the base64 (hint || signature) of the note's one signature."""
    head, _, line = note.rstrip("\n").rpartition("\n")
    dash, name, sig = line.split(" ")
    blob = blob_edit(base64.b64decode(sig))
    return f"{head}\n{dash} {name} {base64.b64encode(blob).decode()}\n"


def flip(at: int) -> Callable[[bytes], bytes]:
    return lambda blob: blob[:at] + bytes([blob[at] ^ 0x01]) + blob[at + 1 :]


@pytest.mark.parametrize(
    ("tamper", "message"),
    [
        (lambda n: resign(n, flip(12)), "the signature does not verify: the note was altered"),
        (lambda n: resign(n, flip(-3)), "the signature does not verify: the note was altered"),
        (lambda n: resign(n, flip(1)), "signed by another key"),
        (lambda n: n.replace("\n8\n", "\n9\n", 1), "the signature does not verify"),
        (
            lambda n: n.replace(n.split("\n")[2], base64.b64encode(b"\x00" * 32).decode(), 1),
            "the signature does not verify",
        ),
        (lambda n: n.replace(" ", "  ", 1), "malformed signature line"),
        (lambda n: n[: n.rindex(" ") + 5] + "!" + n[n.rindex(" ") + 6 :], "is not base64"),
        (lambda n: n.replace("\n\n", "\n", 1), "no blank line between"),
        (lambda n: n.rstrip("\n"), "the signature block must end with a newline"),
    ],
    ids=["sig-r", "sig-s", "hint", "size", "root", "sig-line", "base64", "blank", "newline"],
)
def test_a_changed_checkpoint_names_its_file(log, tmp_path, tamper, message):
    tampered = copy(log.pristine, tmp_path)
    path = tampered / "checkpoints" / note_name(8)
    path.write_text(tamper(path.read_text()))
    problem = failed(tampered, log.pem)
    assert problem.startswith(f"checkpoint {note_name(8)}: ")
    assert message in problem


def test_a_forged_checkpoint_with_its_own_key_hint(log, tmp_path):
    tampered = copy(log.pristine, tmp_path)
    origin = manifest(tampered)["origin"]
    path = tampered / "checkpoints" / note_name(16)
    real = parse_note(path.read_text())
    path.write_text(Attacker().note(origin, TOTAL, real.root))
    problem = failed(tampered, log.pem)
    assert problem.startswith(f"checkpoint {note_name(16)}: no signature by key {origin!r}")
    assert problem.endswith("signed by another key")


def test_a_forged_checkpoint_that_claims_the_audit_key_hint(log, tmp_path):
    tampered = copy(log.pristine, tmp_path)
    origin = manifest(tampered)["origin"]
    path = tampered / "checkpoints" / note_name(16)
    real = parse_note(path.read_text())
    forged = make_note(origin, TOTAL, real.root, log.audit_key.public_key, Attacker().sign_der)
    path.write_text(forged)
    assert failed(tampered, log.pem) == (
        f"checkpoint {note_name(16)}: the signature does not verify: the note was altered or forged"
    )


def test_an_older_checkpoint_replayed_over_the_newest(log, tmp_path):
    tampered = copy(log.pristine, tmp_path)
    folder = tampered / "checkpoints"
    shutil.copyfile(folder / note_name(3), folder / note_name(16))
    assert failed(tampered, log.pem) == (
        f"checkpoint {note_name(16)}: size 3 does not grow past the previous checkpoint's 13 "
        "(replayed or reordered checkpoint)"
    )


def test_an_older_checkpoint_replayed_under_a_new_name(log, tmp_path):
    tampered = copy(log.pristine, tmp_path)
    folder = tampered / "checkpoints"
    shutil.copyfile(folder / note_name(8), folder / "000005.note")
    info = manifest(tampered)
    write_manifest(tampered, info | {"checkpoints": [*info["checkpoints"], "000005.note"]})
    assert failed(tampered, log.pem) == (
        "checkpoint 000005.note: size 8 does not grow past the previous checkpoint's 16 "
        "(replayed or reordered checkpoint)"
    )


def test_reordered_checkpoints_in_the_manifest(log, tmp_path):
    tampered = copy(log.pristine, tmp_path)
    info = manifest(tampered)
    names = info["checkpoints"]
    write_manifest(tampered, info | {"checkpoints": [names[1], names[0], *names[2:]]})
    assert failed(tampered, log.pem) == (
        f"manifest.json: checkpoints: {note_name(3)} is not listed in id order"
    )


def test_a_checkpoint_file_not_in_the_manifest(log, tmp_path):
    tampered = copy(log.pristine, tmp_path)
    folder = tampered / "checkpoints"
    shutil.copyfile(folder / note_name(8), folder / "000009.note")
    assert failed(tampered, log.pem) == (
        "checkpoints/: files 000009.note differ from the manifest's list (a checkpoint was "
        "added or removed)"
    )


def test_a_checkpoint_listed_but_missing(log, tmp_path):
    tampered = copy(log.pristine, tmp_path)
    (tampered / "checkpoints" / note_name(8)).unlink()
    assert failed(tampered, log.pem) == (
        f"checkpoints/: files {note_name(8)} differ from the manifest's list (a checkpoint "
        "was added or removed)"
    )


def test_all_checkpoints_removed(log, tmp_path):
    tampered = copy(log.pristine, tmp_path)
    shutil.rmtree(tampered / "checkpoints")
    write_manifest(tampered, manifest(tampered) | {"checkpoints": []})
    assert failed(tampered, log.pem) == ("the export holds no checkpoint: nothing in it is signed")


@pytest.mark.parametrize("names", [[None, None, None, None], ["000001.note", 2, 3, 4]])
def test_checkpoint_names_that_are_not_strings(log, tmp_path, names):
    tampered = copy(log.pristine, tmp_path)
    write_manifest(tampered, manifest(tampered) | {"checkpoints": names})
    assert failed(tampered, log.pem).startswith("manifest.json: checkpoints")


def test_a_checkpoint_of_another_log_signed_with_the_same_audit_key(log, tmp_path):
    """Two databases may share one HSM audit key: their notes name their own origin."""
    tampered = copy(log.pristine, tmp_path)
    origin = manifest(tampered)["origin"]
    path = tampered / "checkpoints" / note_name(8)
    real = parse_note(path.read_text())
    key = log.audit_key
    # Its key name is the other log's origin (as airlock writes it) ...
    other = make_note("airlock.local/0000000000000000", 8, real.root, key.public_key, key.sign_der)
    path.write_text(other)
    problem = failed(tampered, log.pem)
    assert problem.startswith(f"checkpoint {note_name(8)}: no signature by key {origin!r}")
    # ... or, crafted, this log's key name over the other log's body.
    text = body("airlock.local/0000000000000000", 8, real.root)
    blob = base64.b64encode(parse_note(other).signatures[0][1] + key.sign_der(text.encode()))
    path.write_text(f"{text}\n{DASH} {origin} {blob.decode()}\n")
    assert failed(tampered, log.pem) == (
        f"checkpoint {note_name(8)}: it is for log 'airlock.local/0000000000000000', not "
        f"{origin!r} (a checkpoint from another log)"
    )


def test_a_checkpoint_of_another_log_with_its_key_substituted(log, tmp_path):
    tampered = copy(log.pristine, tmp_path)
    attacker = Attacker()
    path = tampered / "checkpoints" / note_name(8)
    path.write_text(attacker.note("attacker.example/log", 8, parse_note(path.read_text()).root))
    (tampered / "audit-key.pem").write_bytes(attacker.pem)
    assert failed(tampered, log.pem) == (
        "audit-key.pem in the export is not the public key you gave: the export's key was "
        "substituted"
    )


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {
                "origin": "airlock.local/ffffffffffffffff",
                "key_name": "airlock.local/ffffffffffffffff",
            },
            "checkpoint 000001.note: no signature by key 'airlock.local/ffffffffffffffff'",
        ),
        (
            {"key_name": "airlock.local/ffffffffffffffff"},
            "manifest.json: key_name 'airlock.local/ffffffffffffffff' is not the origin",
        ),
        ({"first": 1}, "manifest.json: frontier: a frontier of a 1-leaf tree has 1 hashes"),
        ({"format": "airlock-audit-export/2"}, "manifest.json: format is not"),
        ({"count": 0}, "manifest.json: first must be >= 0 and count >= 1"),
        ({"count": "16"}, "manifest.json: count is missing or not of type int"),
        ({"tail": {"checkpoint": 1}}, "manifest.json: tail must be null or hold exactly a che"),
    ],
    ids=["origin", "key-name", "first", "format", "count", "count-type", "tail"],
)
def test_a_changed_manifest(log, tmp_path, change, message):
    tampered = copy(log.pristine, tmp_path)
    write_manifest(tampered, manifest(tampered) | change)
    origin = manifest(log.pristine)["origin"]
    assert failed(tampered, log.pem).startswith(message.format(origin=origin))


# --------------------------------------------------------------------------- the public key


def test_a_substituted_key_and_checkpoints(log, tmp_path):
    """The attacker rewrites an entry, rebuilds the chain and the tree and signs every
    checkpoint with their own key. The real key catches it; the export's own key cannot."""
    tampered = copy(log.pristine, tmp_path)

    def rewrite(parsed: list[dict[str, Any]]) -> None:
        parsed[7]["data"]["reason"] = "never mined"

    reforge(tampered, Attacker(), rewrite)
    assert failed(tampered, log.pem) == (
        "audit-key.pem in the export is not the public key you gave: the export's key was "
        "substituted"
    )
    report = verify_export(tampered, None)
    assert report.ok  # documented: without --pubkey only integrity is shown, not the signer
    assert report.key_source == "export"
    assert "the public key came from the export itself" in report.warnings[0]


def test_checkpoints_resigned_without_substituting_the_key(log, tmp_path):
    tampered = copy(log.pristine, tmp_path)
    reforge(tampered, Attacker(), replace_pem=False)
    for pem in (log.pem, None):
        problem = failed(tampered, pem)
        assert problem.startswith(f"checkpoint {note_name(3)}: no signature by key")
        assert problem.endswith("signed by another key")


def test_a_substituted_key_without_the_pem_in_the_export(log, tmp_path):
    """audit-key.pem is part of every export (§3): without it the export fails, with or
    without --pubkey, before any checkpoint is read."""
    tampered = copy(log.pristine, tmp_path)
    reforge(tampered, Attacker())
    (tampered / "audit-key.pem").unlink()
    for pem in (log.pem, None):
        assert failed(tampered, pem) == (
            "audit-key.pem is missing: an export carries its audit key"
        )


def test_a_consistent_forgery_still_fails_the_transaction_check(log, tmp_path):
    """Even when the checkpoints are the attacker's (no --pubkey), a variant signed by
    another Ethereum key does not pass as the declared sender's."""
    tampered = copy(log.pristine, tmp_path)

    def swap(parsed: list[dict[str, Any]]) -> None:
        data = parsed[9]["data"]
        set_raw(data["variants"][0], other_key_tx(data))

    reforge(tampered, Attacker(), swap)
    assert failed(tampered, None) == (
        f"entry 9: variant 0: signed by {ATTACKER_ETH.address}, not by the declared sender "
        f"{log.senders[1]}"
    )


def test_a_bad_pubkey(log, tmp_path):
    rsa_like = b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"
    assert failed(log.pristine, rsa_like).startswith("--pubkey: not a PEM public key")
    k1 = ec.generate_private_key(ec.SECP256K1()).public_key()
    k1_pem = k1.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert failed(log.pristine, k1_pem) == (
        "--pubkey: the audit key must be an ECDSA P-256 public key"
    )
    assert failed(log.pristine, Attacker().pem) == (
        "audit-key.pem in the export is not the public key you gave: the export's key was "
        "substituted"
    )


# --------------------------------------------------------------------------- a range export


def test_a_range_export_verifies(log):
    info = manifest(log.ranged)
    assert (info["first"], info["count"]) == (3, 7)
    assert len(info["frontier"]) == 2  # 3 = 0b11: a 2-leaf and a 1-leaf subtree
    assert info["checkpoints"] == [note_name(8), note_name(13)]
    assert info["tail"]["checkpoint"] == note_name(13) and info["tail"]["proof"]
    for pem in (log.pem, None):
        report = verify_export(log.ranged, pem)
        assert report.ok, report.problem
        assert (report.first, report.entries, report.signed_size) == (3, 7, 13)
    assert read_lines(log.ranged) == read_lines(log.pristine)[3:10]


def test_a_range_export_with_a_changed_frontier_hash(log, tmp_path):
    tampered = copy(log.ranged, tmp_path)
    info = manifest(tampered)
    info["frontier"][1] = "00" * 32
    write_manifest(tampered, info)
    problem = failed(tampered, log.pem)
    # The frontier is only checked through the first root it leads to (checkpoint 8).
    assert problem.startswith(
        f"entry 7: the entries up to it do not hash to the root signed in checkpoint {note_name(8)}"
    )


def test_a_changed_frontier_is_named_as_the_frontier(log, tmp_path):
    tampered = copy(log.ranged, tmp_path)
    info = manifest(tampered)
    info["frontier"][1] = "00" * 32
    write_manifest(tampered, info)
    assert "frontier" in failed(tampered, log.pem)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda f: f.pop(), "manifest.json: frontier: a frontier of a 3-leaf tree has 2 hashes"),
        (
            lambda f: f.__setitem__(0, "zz"),
            "manifest.json: frontier: 'zz' is not a 32-byte lower-case hex hash",
        ),
    ],
    ids=["short", "not-hex"],
)
def test_a_range_export_with_a_malformed_frontier(log, tmp_path, change, message):
    tampered = copy(log.ranged, tmp_path)
    info = manifest(tampered)
    change(info["frontier"])
    write_manifest(tampered, info)
    assert failed(tampered, log.pem) == message


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda p: p.__setitem__(0, "00" * 32), "consistency proof does not lead to the"),
        (lambda p: p.append("00" * 32), "consistency proof is too long"),
        (lambda p: p.pop(), "consistency proof is too short"),
        (
            lambda p: p.__setitem__(0, "xyz"),
            "manifest.json: tail proof: 'xyz' is not a 32-byte lower-case hex hash",
        ),
    ],
    ids=["hash", "longer", "shorter", "not-hex"],
)
def test_a_range_export_with_a_changed_tail_proof(log, tmp_path, change, message):
    tampered = copy(log.ranged, tmp_path)
    info = manifest(tampered)
    change(info["tail"]["proof"])
    write_manifest(tampered, info)
    problem = failed(tampered, log.pem)
    if not message.startswith("manifest.json"):
        assert problem.startswith(
            f"entries 3..9 are not a prefix of the log signed in checkpoint {note_name(13)}: "
        )
    assert message in problem


def test_a_range_export_with_a_changed_last_entry_fails_the_tail_proof(log, tmp_path):
    tampered = copy(log.ranged, tmp_path)
    lines = read_lines(tampered)
    lines[-1] = bump_time_digit(lines[-1])  # entry 9: no checkpoint ends there
    write_lines(tampered, lines)
    assert failed(tampered, log.pem) == (
        f"entries 3..9 are not a prefix of the log signed in checkpoint {note_name(13)}: "
        "consistency proof does not lead to the old root (size 10)"
    )


def test_a_range_export_with_a_changed_middle_entry(log, tmp_path):
    tampered = copy(log.ranged, tmp_path)
    lines = read_lines(tampered)
    lines[2] = bump_time_digit(lines[2])  # entry 5
    write_lines(tampered, lines)
    assert failed(tampered, log.pem).startswith("entry 5: its hash is not the prev of entry 6")


def test_a_range_export_without_its_tail(log, tmp_path):
    tampered = copy(log.ranged, tmp_path)
    (tampered / "checkpoints" / note_name(13)).unlink()
    info = manifest(tampered)
    write_manifest(tampered, info | {"tail": None, "checkpoints": [note_name(8)]})
    assert failed(tampered, log.pem) == (
        "entries 8..9 are not covered by any checkpoint: they are unsigned"
    )


def test_a_range_export_with_its_tail_named_but_missing(log, tmp_path):
    tampered = copy(log.ranged, tmp_path)
    info = manifest(tampered)
    info["tail"]["checkpoint"] = "000007.note"
    write_manifest(tampered, info)
    assert failed(tampered, log.pem) == (
        "manifest.json: tail checkpoint '000007.note' is not the last listed checkpoint "
        "(000003.note)"
    )


def test_a_range_export_whose_tail_checkpoint_was_removed(log, tmp_path):
    tampered = copy(log.ranged, tmp_path)
    (tampered / "checkpoints" / note_name(13)).unlink()
    write_manifest(tampered, manifest(tampered) | {"checkpoints": [note_name(8)]})
    assert failed(tampered, log.pem) == (
        f"manifest.json: tail checkpoint {note_name(13)!r} is not the last listed checkpoint "
        f"({note_name(8)})"
    )


# --------------------------------------------------------------------------- inclusion proofs


@pytest.fixture(scope="module")
def proof(log) -> dict[str, Any]:
    """Entry 5 (an item.enqueued) in checkpoint 2 (size 8)."""
    return prove(log.store, 5, log.checkpoints[1].id)


def test_every_entry_has_a_proof_in_every_checkpoint_that_covers_it(log):
    for record in log.checkpoints:
        for index in range(record.size):
            found = verify_inclusion_proof(prove(log.store, index, record.id), log.pem)
            assert found["seq"] == index


def test_an_inclusion_proof_verifies(log, proof):
    found = verify_inclusion_proof(json.loads(json.dumps(proof)), log.pem)
    assert found == entry(log.pristine, 5)
    assert proof["tree_size"] == 8 and len(proof["path"]) == 3


def other_note(log: Log) -> str:
    return log.checkpoints[2].note


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda p, _: p.update(entry=bump_time_digit(p["entry"].encode()).decode()),
            "inclusion proof of leaf 5 does not lead to the tree's root: the entry is not in "
            "the signed log as given",
        ),
        (
            lambda p, _: p["path"].__setitem__(1, "00" * 32),
            "inclusion proof of leaf 5 does not lead to the tree's root",
        ),
        (lambda p, _: p["path"].append("00" * 32), "inclusion proof is longer than the tree"),
        (lambda p, _: p["path"].pop(), "inclusion proof is shorter than the tree is deep"),
        (lambda p, _: p.update(index=4), "the entry is not entry number 4"),
        (lambda p, _: p.update(tree_size=9), "the checkpoint signs size 8, not 9"),
        (lambda p, log: p.update(checkpoint=other_note(log)), "the checkpoint signs size 13"),
        (
            lambda p, _: p.update(checkpoint=p["checkpoint"].replace("\n8\n", "\n9\n")),
            "the signature does not verify: the note was altered or forged",
        ),
        (lambda p, _: p.update(origin="airlock.local/x"), "the checkpoint is for log"),
        (lambda p, _: p.update(key_name="airlock.local/x"), "signed by another key"),
        (lambda p, _: p.update(entry=p["entry"].replace(",", ", ", 1)), "not in canonical"),
        (lambda p, _: p["path"].__setitem__(0, "zz"), "malformed proof"),
        (lambda p, _: p.pop("path"), "malformed proof"),
        (lambda p, _: p.update(format="x"), "not an airlock-inclusion-proof/1 file"),
    ],
    ids=[
        "entry",
        "path-hash",
        "path-longer",
        "path-shorter",
        "index",
        "tree-size",
        "other-checkpoint",
        "note-body",
        "origin",
        "key-name",
        "entry-form",
        "path-not-hex",
        "no-path",
        "format",
    ],
)
def test_a_tampered_inclusion_proof(log, proof, change, message):
    tampered = json.loads(json.dumps(proof))
    change(tampered, log)
    with pytest.raises(InclusionError, match=re.escape(message)):
        verify_inclusion_proof(tampered, log.pem)


def test_an_entry_moved_to_another_index_with_its_path(log, proof):
    """Entry 4 with entry 5's path and index 4: both the seq and the root check refuse."""
    tampered = dict(proof, entry=read_lines(log.pristine)[4].decode())
    with pytest.raises(InclusionError, match="the entry is not entry number 5"):
        verify_inclusion_proof(tampered, log.pem)
    tampered["index"] = 4
    with pytest.raises(InclusionError, match="inclusion proof of leaf 4 does not lead"):
        verify_inclusion_proof(tampered, log.pem)


def test_an_inclusion_proof_with_another_key(log, proof):
    with pytest.raises(InclusionError, match="signed by another key"):
        verify_inclusion_proof(proof, Attacker().pem)
    attacker = Attacker()
    note = parse_note(proof["checkpoint"])
    forged = dict(proof, checkpoint=attacker.note(note.origin, note.size, note.root))
    with pytest.raises(InclusionError, match="signed by another key"):
        verify_inclusion_proof(forged, log.pem)
    assert verify_inclusion_proof(forged, attacker.pem)["seq"] == 5  # what a wrong key shows


def test_high_s_signature_is_refused():
    """Nodes refuse high-s signatures (EIP-2), so a log holding one records something that
    was never broadcastable: the verifier says so."""
    from airlock.audit.evm_check import decode, recover_address

    account = Account.create()
    signed = account.sign_transaction(
        {
            "type": 2,
            "chainId": 1,
            "nonce": 0,
            "to": "0x" + "11" * 20,
            "value": 1,
            "gas": 21000,
            "maxFeePerGas": 2,
            "maxPriorityFeePerGas": 1,
        }
    )
    fields = decode(bytes(signed.raw_transaction))
    assert recover_address(fields) == bytes.fromhex(account.address[2:])
    flipped = replace(fields, s=SECP256K1_N - fields.s, y=1 - fields.y)
    with pytest.raises(EvmCheckError, match="high-s"):
        recover_address(flipped)


# =========================================================================== issue 21
# The rules docs/audit-format.md states so that two verifiers written from it agree. Most
# tampers below are consistent forgeries (chain rebuilt, checkpoints re-signed by an
# attacker, verified with the export's own key): only the rule under test can catch them.


def forged(log: Log, tmp_path: Path, edit: Callable[[list[dict[str, Any]]], None]) -> Path:
    tampered = copy(log.pristine, tmp_path)
    reforge(tampered, Attacker(), edit)
    return tampered


def variant_of(number: int, idx: int, change: Callable[[dict[str, Any]], None]):
    def edit(parsed: list[dict[str, Any]]) -> None:
        change(parsed[number]["data"]["variants"][idx])

    return edit


def data_of(number: int, change: Callable[[dict[str, Any]], None]):
    def edit(parsed: list[dict[str, Any]]) -> None:
        change(parsed[number]["data"])

    return edit


def int_bytes(value: int) -> bytes:
    return value.to_bytes((value.bit_length() + 7) // 8, "big")


def attacker_variant(
    idx: int,
    kind: str,
    data: dict[str, Any],
    *,
    to: str,
    call_data: bytes = b"",
    mangle: Callable[[list[Any]], None] | None = None,
) -> dict[str, Any]:
    """A type-2 variant signed by ATTACKER_ETH; ``mangle`` edits its RLP fields before
    signing (so the signature is good over whatever bytes result)."""
    fee, tip = 3 * 10**9 + idx, 10**9
    fields: list[Any] = [
        int_bytes(int(data["chain_id"])),
        int_bytes(int(data["nonce"])),
        int_bytes(tip),
        int_bytes(fee),
        int_bytes(21000),
        bytes.fromhex(to[2:]),
        b"",
        call_data,
        [],
    ]
    if mangle is not None:
        mangle(fields)
    payload = b"\x02" + rlp.encode(fields)
    sig = ATTACKER_ETH.unsafe_sign_hash(keccak(payload))
    raw = b"\x02" + rlp.encode([*fields, int_bytes(sig.v - 27), int_bytes(sig.r), int_bytes(sig.s)])
    return {
        "idx": idx,
        "kind": kind,
        "hash": "0x" + keccak(raw).hex(),
        "raw": "0x" + raw.hex(),
        "fee_per_gas": str(fee),
        "tip_per_gas": str(tip),
    }


def attacker_item(
    call_data: bytes = b"", mangle: Callable[[list[Any]], None] | None = None
) -> Callable[[list[dict[str, Any]]], None]:
    """Entry 0 turned into the attacker's own EVM item: one step and a cancel."""

    def edit(parsed: list[dict[str, Any]]) -> None:
        data = parsed[0]["data"]
        data["account"] = ATTACKER_ETH.address
        step = attacker_variant(0, "step", data, to="0x" + "11" * 20, mangle=mangle)
        cancel = attacker_variant(1, "cancel", data, to=ATTACKER_ETH.address, call_data=call_data)
        data["variants"] = [step, cancel]

    return edit


def high_s(variant: dict[str, Any]) -> None:
    """The same signature in its other, high-s form: it still recovers to the sender."""
    raw = bytes.fromhex(variant["raw"][2:])
    fields = rlp.decode(raw[1:])
    s = int.from_bytes(fields[-1], "big")
    fields[-1] = int_bytes(SECP256K1_N - s)
    fields[-3] = int_bytes(1 - int.from_bytes(fields[-3], "big"))
    set_raw(variant, "0x" + (raw[:1] + rlp.encode(fields)).hex())


def test_a_consistent_forgery_of_an_attackers_own_item_verifies_with_its_own_key(log, tmp_path):
    """The baseline of the forgeries below: built right, they pass every rule."""
    report = verify_export(forged(log, tmp_path, attacker_item()), None)
    assert report.ok, report.problem
    assert ATTACKER_ETH.address in report.signers


ENTRY_RULES = [
    # -- §1: item
    (
        "item-integer",
        lambda p: p[3].update(item=12345),
        "entry 3: item 12345 is neither null nor an item id (a ULID: 26 upper-case Crockford "
        "base32 characters)",
    ),
    ("item-lower-case", lambda p: p[3].update(item=p[3]["item"].lower()), "entry 3: item '0"),
    (
        "item-null-on-a-transition",
        lambda p: p[3].update(item=None),
        "entry 3: entries of type item.transition name their item: item must not be null",
    ),
    (
        "item-on-a-nonce-sync",
        lambda p: p[11].update(item=p[0]["item"]),
        "entry 11: entries of type nonce.sync name no item: item must be null, not ",
    ),
    # -- §1.4: item.enqueued
    (
        "enqueued-twice",
        lambda p: p[5].update(item=p[0]["item"]),
        "entry 5: item {item0} was already queued at entry 0",
    ),
    (
        "unknown-item-kind",
        data_of(0, lambda d: d.update(kind="evm_txx")),
        "entry 0: item kind 'evm_txx' is not one of evm_tx, bybit_order, bybit_cancel",
    ),
    (
        "account-not-eip55",
        data_of(0, lambda d: d.update(account=d["account"].lower())),
        "entry 0: declared sender '0x",
    ),
    (
        "chain-id-as-a-string",
        data_of(0, lambda d: d.update(chain_id="31337")),
        "entry 0: chain_id is the string '31337': values up to 2^53 - 1 are JSON integers",
    ),
    (
        "nonce-as-a-string",
        data_of(0, lambda d: d.update(nonce="0")),
        "entry 0: nonce is the string '0': values up to 2^53 - 1 are JSON integers",
    ),
    (
        "chain-id-zero",
        data_of(0, lambda d: d.update(chain_id=0)),
        "entry 0: chain_id 0 is not an integer >= 1 (a JSON integer, or a decimal string above",
    ),
    # -- §1.4: variants
    (
        "kind-bump",
        variant_of(0, 1, lambda v: v.update(kind="bump")),
        "entry 0: variant 1: kind 'bump' is not 'step' or 'cancel'",
    ),
    (
        "extra-member",
        variant_of(0, 0, lambda v: v.update(note="x")),
        "entry 0: variant 0: members fee_per_gas, hash, idx, kind, note, raw, tip_per_gas, not "
        "fee_per_gas, hash, idx, kind, raw, tip_per_gas",
    ),
    (
        "missing-member",
        variant_of(0, 0, lambda v: v.pop("tip_per_gas")),
        "entry 0: variant 0: members fee_per_gas, hash, idx, kind, raw, not",
    ),
    (
        "repeated-idx",
        variant_of(0, 1, lambda v: v.update(idx=0)),
        "entry 0: variant 1: idx is 0, not 1 (its place among the item's)",
    ),
    (
        "cancel-not-last",
        data_of(
            0,
            lambda d: d.update(
                variants=[
                    *d["variants"][:2],
                    dict(d["variants"][3], idx=2),
                    dict(d["variants"][2], idx=3),
                ]
            ),
        ),
        "entry 0: variant 2: the variants are one or more steps, then at most one cancel",
    ),
    (
        "raw-upper-case",
        variant_of(0, 0, lambda v: v.update(raw="0x" + v["raw"][2:].upper())),
        "entry 0: variant 0: raw is not 0x and lower-case hex digits",
    ),
    (
        "hash-upper-case",
        variant_of(0, 0, lambda v: v.update(hash="0x" + v["hash"][2:].upper())),
        "entry 0: variant 0: recorded hash is not the hash of its raw bytes",
    ),
    ("high-s", variant_of(0, 0, high_s), "entry 0: variant 0: a high-s signature: nodes refuse it"),
    (
        "fee-not-the-signed-one",
        variant_of(0, 1, lambda v: v.update(fee_per_gas=str(int(v["fee_per_gas"]) + 1))),
        "entry 0: variant 1: fee_per_gas '{fee01}' is not the signed maxFeePerGas {fee01_signed}",
    ),
    (
        "fee-leading-zero",
        variant_of(0, 1, lambda v: v.update(fee_per_gas="0" + v["fee_per_gas"])),
        "entry 0: variant 1: fee_per_gas '0",
    ),
    (
        "tip-not-the-signed-one",
        variant_of(0, 0, lambda v: v.update(tip_per_gas="1")),
        "entry 0: variant 0: tip_per_gas '1' is not the signed maxPriorityFeePerGas 1000000000",
    ),
    (
        "legacy-fee",
        variant_of(2, 0, lambda v: v.update(fee_per_gas="1")),
        "entry 2: variant 0: fee_per_gas '1' is not the signed gasPrice 3000000000",
    ),
    (
        "legacy-with-a-tip",
        variant_of(2, 0, lambda v: v.update(tip_per_gas="1")),
        "entry 2: variant 0: tip_per_gas '1' must be null for a type 0 transaction",
    ),
    (
        "cancel-with-call-data",
        attacker_item(call_data=b"\x01"),
        "entry 0: variant 1: a cancel must carry no call data (on an EIP-7702 account a "
        "self-call runs code)",
    ),
    (
        "rlp-leading-zero-nonce",
        attacker_item(mangle=lambda f: f.__setitem__(1, b"\x00" + f[1])),
        "entry 0: variant 0: nonce has a leading zero byte: the raw bytes are not canonical RLP",
    ),
    (
        "rlp-leading-zero-fee",
        attacker_item(mangle=lambda f: f.__setitem__(3, b"\x00" + f[3])),
        "entry 0: variant 0: maxFeePerGas has a leading zero byte",
    ),
    # -- §1.4: alerts (entry 6 is not one; it becomes one)
    (
        "alert-extra-member",
        lambda p: p[6].update(type="alert", data={"message": "m", "key": "k", "x": "y"}),
        "entry 6: alert data has members key, message, x: an alert holds the strings key, "
        "message and severity (older writers: message only)",
    ),
    (
        "alert-without-severity",
        lambda p: p[6].update(type="alert", data={"message": "m", "key": "k"}),
        "entry 6: alert data has members key, message: an alert holds",
    ),
    (
        "alert-message-not-a-string",
        lambda p: p[6].update(type="alert", data={"message": 1}),
        "entry 6: alert data has members message: an alert holds",
    ),
]


@pytest.mark.parametrize(
    ("edit", "message"), [r[1:] for r in ENTRY_RULES], ids=[r[0] for r in ENTRY_RULES]
)
def test_a_forged_entry_that_breaks_a_content_rule_is_named(log, tmp_path, edit, message):
    first = entry(log.pristine, 0)
    fee = int(first["data"]["variants"][1]["fee_per_gas"])
    expected = message.format(item0=first["item"], fee01=fee + 1, fee01_signed=fee)
    assert failed(forged(log, tmp_path, edit), None).startswith(expected)


def test_an_alert_in_either_written_form_verifies(log, tmp_path):
    def alerts(parsed: list[dict[str, Any]]) -> None:
        parsed[6].update(type="alert", data={"key": "k", "message": "m", "severity": "warning"})
        parsed[13].update(type="alert", item=None, data={"message": "from an older writer"})

    report = verify_export(forged(log, tmp_path, alerts), None)
    assert report.ok, report.problem
    assert report.kinds["alert"] == 2


def test_the_first_prev_of_a_range_export_must_be_lower_case_hex(log, tmp_path):
    """Entry 3's prev points outside the range: only its form can be checked."""
    tampered = copy(log.ranged, tmp_path)
    lines = read_lines(tampered)
    prev = json.loads(lines[0])["prev"]
    lines[0] = lines[0].replace(prev.encode(), prev.upper().encode())
    write_lines(tampered, lines)
    assert failed(tampered, log.pem) == "entry 3: prev is not 64 lower-case hex digits"


# --------------------------------------------------------------------------- notes (§2)


def signed_note(log: Log, text: str, name: str | None = None) -> str:
    """A note over ``text`` signed by the real audit key: what only the rules can refuse."""
    key = log.audit_key
    blob = base64.b64encode(key_hint(key.public_key) + key.sign_der(text.encode())).decode()
    return f"{text}\n{DASH} {name or log.store.audit.origin()} {blob}\n"


def rewrite_note(tmp_path: Path, log: Log, make: Callable[[str], str]) -> Path:
    tampered = copy(log.pristine, tmp_path)
    path = tampered / "checkpoints" / note_name(8)
    path.write_bytes(make(path.read_bytes().decode()).encode())
    return tampered


def non_canonical_base64(data: bytes) -> str:
    """The base64 of ``data`` with non-zero unused bits: it decodes to the same bytes."""
    text = base64.b64encode(data).decode()
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    last = text.rstrip("=")[-1]
    changed = text.rstrip("=")[:-1] + alphabet[alphabet.index(last) ^ 1] + "=" * text.count("=")
    assert changed != text and base64.b64decode(changed) == data
    return changed


NOTE_RULES = [
    ("crlf", lambda log, n: n.replace("\n", "\r\n"), "the note has a CR (U+000D): lines end"),
    ("cr-only", lambda log, n: n.replace("\n", "\r"), "the note has a CR (U+000D)"),
    (
        "control-character",
        lambda log, n: n + f"{DASH} witness\u0007 AAAAAAAA\n",
        "the note holds the control character U+0007",
    ),
    (
        "extension-line",
        lambda log, n: signed_note(log, parse_note(n).body + "an extension line\n"),
        "the checkpoint body has 4 lines, not 3 (origin, size, root): extension lines are not "
        "part of airlock's checkpoints",
    ),
    (
        "repeated-signature",
        lambda log, n: n + n.rstrip("\n").rsplit("\n", 1)[1] + "\n",
        "2 signature lines by key '{origin}': a note carries one",
    ),
    (
        "second-signature-by-the-key-name",
        lambda log, n: n + signed_note(log, parse_note(n).body).rsplit("\n", 2)[1] + "\n",
        "2 signature lines by key '{origin}': a note carries one",
    ),
    (
        "root-not-canonical-base64",
        lambda log, n: signed_note(
            log,
            f"{parse_note(n).origin}\n8\n{non_canonical_base64(parse_note(n).root)}\n",
        ),
        "the root is not canonical base64",
    ),
]


@pytest.mark.parametrize(
    ("make", "message"), [r[1:] for r in NOTE_RULES], ids=[r[0] for r in NOTE_RULES]
)
def test_a_note_that_breaks_a_rule_of_its_form_is_named(log, tmp_path, make, message):
    tampered = rewrite_note(tmp_path, log, lambda n: make(log, n))
    problem = failed(tampered, log.pem)
    origin = log.store.audit.origin()
    assert problem.startswith(f"checkpoint {note_name(8)}: {message.format(origin=origin)}")


def test_a_note_that_is_not_utf8_is_named(log, tmp_path):
    tampered = copy(log.pristine, tmp_path)
    path = tampered / "checkpoints" / note_name(8)
    path.write_bytes(path.read_bytes() + b"\xff\n")
    assert failed(tampered, log.pem) == f"checkpoint {note_name(8)}: not UTF-8"


def test_a_cosignature_under_another_name_is_ignored(log, tmp_path):
    """C2SP cosigners (witnesses) add lines under their own names: not airlock's concern."""
    witness = Attacker()

    def cosign(note: str) -> str:
        sig = witness.sign_der(parse_note(note).body.encode())
        blob = base64.b64encode(key_hint(witness.public) + sig).decode()
        return f"{note}{DASH} witness.example {blob}\n"

    report = verify_export(rewrite_note(tmp_path, log, cosign), log.pem)
    assert report.ok, report.problem


# --------------------------------------------------------------------------- manifest (§3)


def manifest_text(export_dir: Path, text: str) -> None:
    (export_dir / "manifest.json").write_text(text)


MANIFEST_RULES = [
    (
        "extra-member",
        lambda m: m | {"comment": "hi"},
        "manifest.json: unknown members comment (the members are checkpoints, count, first, "
        "format, frontier, key_name, origin, tail, v)",
    ),
    (
        "missing-tail",
        lambda m: {k: v for k, v in m.items() if k != "tail"},
        "manifest.json: missing members tail",
    ),
    ("version-2", lambda m: m | {"v": 2}, "manifest.json: unknown version v=2"),
    ("version-bool", lambda m: m | {"v": True}, "manifest.json: unknown version v=True"),
    (
        "origin-form",
        lambda m: m | {"origin": "example.org/log", "key_name": "example.org/log"},
        "manifest.json: origin 'example.org/log' is not airlock.local/<16 lower-case hex>",
    ),
    (
        "origin-upper-case",
        lambda m: m | {"origin": m["origin"].upper(), "key_name": m["origin"].upper()},
        "manifest.json: origin 'AIRLOCK.LOCAL/",
    ),
    (
        "no-tail-when-none-needed",
        lambda m: m | {"tail": {"checkpoint": m["checkpoints"][-1], "proof": []}},
        "manifest.json: tail checkpoint 000004.note signs 16 entries, no more than the export "
        "holds (16): a tail is only for a checkpoint beyond the export's end",
    ),
    ("not-an-object", lambda m: [m], "manifest.json: is not a JSON object"),
]


@pytest.mark.parametrize(
    ("change", "message"), [r[1:] for r in MANIFEST_RULES], ids=[r[0] for r in MANIFEST_RULES]
)
def test_a_manifest_that_breaks_a_rule_is_named(log, tmp_path, change, message):
    tampered = copy(log.pristine, tmp_path)
    manifest_text(tampered, json.dumps(change(manifest(tampered))))
    assert failed(tampered, log.pem).startswith(message)


def test_a_manifest_with_a_duplicate_key(log, tmp_path):
    """json.loads would keep the last value: another verifier may keep the first."""
    tampered = copy(log.ranged, tmp_path)
    text = (tampered / "manifest.json").read_text()
    manifest_text(tampered, text.replace('"first": 3,', '"first": 0, "first": 3,', 1))
    assert failed(tampered, log.pem) == "manifest.json: cannot be read: duplicate key 'first'"
    nested = text.replace('"proof": [', '"checkpoint": "000003.note", "proof": [', 1)
    manifest_text(tampered, nested)
    assert failed(tampered, log.pem) == (
        "manifest.json: cannot be read: duplicate key 'checkpoint'"
    )


def test_a_manifest_without_v_is_version_1(log, tmp_path):
    """Exports written before ``v`` was added to the manifest verify as version 1."""
    tampered = copy(log.ranged, tmp_path)
    assert manifest(tampered)["v"] == 1
    write_manifest(tampered, {k: v for k, v in manifest(tampered).items() if k != "v"})
    report = verify_export(tampered, log.pem)
    assert report.ok, report.problem


@pytest.mark.parametrize("where", ["frontier", "tail"])
def test_upper_case_hex_in_the_manifest(log, tmp_path, where):
    tampered = copy(log.ranged, tmp_path)
    info = manifest(tampered)
    hashes = info["frontier"] if where == "frontier" else info["tail"]["proof"]
    hashes[0] = hashes[0].upper()
    write_manifest(tampered, info)
    what = "frontier" if where == "frontier" else "tail proof"
    assert failed(tampered, log.pem) == (
        f"manifest.json: {what}: {hashes[0]!r} is not a 32-byte lower-case hex hash"
    )


@pytest.mark.parametrize(
    "name", ["2.note", "0000002.note", "000000.note", "000002.NOTE", "00002a.note", "x/000002.note"]
)
def test_a_checkpoint_file_name_not_of_the_form(log, tmp_path, name):
    tampered = copy(log.pristine, tmp_path)
    info = manifest(tampered)
    info["checkpoints"][1] = name
    write_manifest(tampered, info)
    assert failed(tampered, log.pem) == (
        f"manifest.json: checkpoints: {name!r} is not a note file name (the checkpoint id, "
        "zero-padded to six digits, then .note)"
    )


def test_a_seven_digit_checkpoint_id_is_a_note_name(log, tmp_path):
    """Ids from 1000000 on are written unpadded: the name is the id, six digits at least."""
    assert (note_file(1000004), note_id("1000004.note"), note_id("01000004.note")) == (
        "1000004.note",
        1000004,
        None,
    )
    tampered = copy(log.pristine, tmp_path)
    folder = tampered / "checkpoints"
    (folder / note_name(16)).rename(folder / "1000004.note")
    info = manifest(tampered)
    write_manifest(tampered, info | {"checkpoints": [*info["checkpoints"][:3], "1000004.note"]})
    report = verify_export(tampered, log.pem)
    assert report.ok, report.problem


def test_any_other_file_in_checkpoints_is_refused(log, tmp_path):
    tampered = copy(log.pristine, tmp_path)
    (tampered / "checkpoints" / "README.txt").write_text("notes")
    assert failed(tampered, log.pem) == (
        "checkpoints/: files README.txt differ from the manifest's list (a checkpoint was "
        "added or removed)"
    )
    (tampered / "checkpoints" / "README.txt").unlink()
    (tampered / "notes.txt").write_text("an auditor's notes beside the export are not read")
    assert verify_export(tampered, log.pem).ok


# --------------------------------------------------------------------------- key and files (§3, §4)


def crlf_pem(pem: bytes) -> bytes:
    return pem.replace(b"\n", b"\r\n")


def test_audit_key_pem_must_be_in_the_form_airlock_writes(log, tmp_path):
    tampered = copy(log.pristine, tmp_path)
    (tampered / "audit-key.pem").write_bytes(crlf_pem(log.pem))
    for pem in (log.pem, None):
        assert failed(tampered, pem) == (
            "audit-key.pem: not in the form airlock writes (one PUBLIC KEY block, base64 in "
            "64-character lines, LF line ends, nothing else)"
        )


def test_pubkey_is_compared_as_a_key_not_as_bytes(log):
    report = verify_export(log.pristine, crlf_pem(log.pem))
    assert report.ok, report.problem
    assert report.key_source == "given"


def test_an_export_without_entries(log, tmp_path):
    tampered = copy(log.pristine, tmp_path)
    (tampered / "entries.jsonl").write_bytes(b"")
    assert failed(tampered, log.pem) == "entries.jsonl holds no entries"
    (tampered / "entries.jsonl").unlink()
    assert failed(tampered, log.pem) == "entries.jsonl is missing"


def test_an_empty_log_is_not_exported(store, keyring, tmp_path):
    key = AuditKey(keyring, unique_label("empty-audit"))
    with pytest.raises(InvalidInput, match="the audit log is empty: there is nothing to export"):
        export(store, key, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert store.audit.checkpoints() == []  # nothing signed either


# =========================================================================== a second log
# Bybit orders and cancels, alerts about an item, variants re-signed after enqueue, and a
# chain id and nonce beyond 2^53.

BIG_CHAIN = 2**53 + 1  # 9007199254740993: not a JSON-safe integer
BIG_NONCE = 2**53 + 7


@dataclass
class VenueLog:
    store: Store
    pem: bytes
    intent: IntentKey
    sender: str
    ids: dict[str, str]  # evm, order, cancel
    pristine: Path  # entries 0..7, checkpoints at 4 and 8
    ranged: Path  # entries 1..7: the EVM item was queued before the range


@pytest.fixture(scope="module")
def venue_log(tmp_path_factory, keyring, kek) -> Iterator[VenueLog]:
    base = tmp_path_factory.mktemp("audit-tamper-venue")
    label = unique_label("tamper-big")
    keyring.generate("secp256k1", label)
    eth = keyring.ecdsa_key(label, curve="secp256k1")
    intent_label = unique_label("tamper-intents")
    keyring.generate("p256", intent_label)
    intent = IntentKey(
        keyring.ecdsa_key(intent_label, curve="p256"),
        intent_label,
        keyring.public_key_pem(intent_label),
    )
    audit_key = AuditKey(keyring, unique_label("tamper-venue-audit"))
    resign = resigner(keyring, 10**12, 10)
    request = OrderRequest(
        category="linear",
        symbol="BTCUSDT",
        side="Buy",
        order_type="Limit",
        qty="0.010",
        price="65000.50",
        tif="GTC",
        ttl_s=600,
        idempotency_key="tamper-order",
    )
    with Store.open(base / "queue.db", kek, clock_ms=FakeClock(tick_ms=7)) as store:
        big = enqueue_transaction(
            store,
            eth,
            dict(FIELDS, chain_id=BIG_CHAIN),
            nonce=BIG_NONCE,
            ladder=LadderSpec(levels=1, with_cancel=True),
        ).item  # 0
        store.sends.add_variant(big.id, resign(store, store.items.get(big.id)))  # 1: idx 2
        decision = decide_order(request, venue_reachable=False, config=PolicyConfig())
        order = enqueue_order(store, request, decision, intent, account="main").item  # 2
        order = store.venue.begin(order, "sending to the venue")  # 3
        checkpoint(store, audit_key)  # size 4
        cancel = cancel_order(store, order, intent).cancel  # 4
        assert cancel is not None
        store.alerts.note(f"bybit.item.{order.id}", f"order {order.id}: look", item=order.id)  # 5
        store.audit.record(entries.ALERT, {"message": "an older writer's alert"}, order.id)  # 6
        store.sends.add_variant(big.id, resign(store, store.items.get(big.id)))  # 7: idx 3
        export(store, audit_key, base / "pristine")  # signs size 8
        export(store, audit_key, base / "ranged", first=1)
        yield VenueLog(
            store=store,
            pem=audit_key.pem.encode(),
            intent=intent,
            sender=big.account,
            ids={"evm": big.id, "order": order.id, "cancel": cancel.item.id},
            pristine=base / "pristine",
            ranged=base / "ranged",
        )


def venue_forged(
    venue_log: VenueLog, tmp_path: Path, edit: Callable[[list[dict[str, Any]]], None]
) -> Path:
    tampered = copy(venue_log.pristine, tmp_path)
    reforge(tampered, Attacker(), edit)
    return tampered


def test_the_venue_log_has_what_its_fixture_wrote(venue_log):
    got = [entry(venue_log.pristine, n) for n in range(8)]
    assert [e["type"] for e in got] == [
        entries.ITEM_ENQUEUED,
        entries.ITEM_VARIANT_ADDED,
        entries.ITEM_ENQUEUED,
        entries.ITEM_TRANSITION,
        entries.ITEM_ENQUEUED,
        entries.ALERT,
        entries.ALERT,
        entries.ITEM_VARIANT_ADDED,
    ]
    assert [got[n]["data"]["kind"] for n in (0, 2, 4)] == ["evm_tx", "bybit_order", "bybit_cancel"]
    assert [got[n]["data"]["idx"] for n in (1, 7)] == [2, 3]
    # The writer fills ``item`` of an alert about an item (both forms).
    assert got[5]["item"] == got[6]["item"] == venue_log.ids["order"]
    assert got[5]["data"].keys() == {"key", "message", "severity"}


def test_a_chain_id_and_nonce_beyond_2_53_are_written_as_strings_and_verify(venue_log):
    data = entry(venue_log.pristine, 0)["data"]
    assert (data["chain_id"], data["nonce"]) == (str(BIG_CHAIN), str(BIG_NONCE))
    report = verify_export(venue_log.pristine, venue_log.pem)
    assert report.ok, report.problem
    assert report.warnings == []
    assert report.signers == {venue_log.sender}
    assert report.intent_keys == {
        key_fingerprint(load_intent_public_key(venue_log.intent.public_pem.encode()))
    }


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"chain_id": str(BIG_CHAIN + 2)},
            f"signed for chain {BIG_CHAIN} nonce {BIG_NONCE}, declared chain {BIG_CHAIN + 2} "
            f"nonce {BIG_NONCE}",
        ),
        ({"nonce": "0" + str(BIG_NONCE)}, f"nonce '0{BIG_NONCE}' is not an integer >= 0"),
        ({"nonce": str(BIG_NONCE) + ".0"}, f"nonce '{BIG_NONCE}.0' is not an integer >= 0"),
    ],
    ids=["other-chain", "leading-zero", "decimal-point"],
)
def test_a_large_declared_quantity_is_held_to_its_one_form(venue_log, tmp_path, change, message):
    tampered = venue_forged(venue_log, tmp_path, data_of(0, lambda d: d.update(change)))
    assert message in failed(tampered, None)
    assert failed(tampered, None).startswith("entry 0: ")


def test_a_range_export_warns_about_variants_of_items_queued_before_it(venue_log):
    report = verify_export(venue_log.ranged, venue_log.pem)
    assert report.ok, report.problem
    item, sender = venue_log.ids["evm"], venue_log.sender
    assert report.warnings == [
        f"entry {n}: variant added to item {item}, which was queued before this export's first "
        f"entry (1): its sender, chain id, nonce and index were not checked (it is signed by "
        f"{sender})"
        for n in (1, 7)
    ]


ADDED_RULES = [
    (
        "no-enqueued-in-a-full-export",
        lambda p: p[0].update(item="01ARZ3NDEKTSV4RRFFQ69G5FAV"),
        "entry 1: variant added to item {evm}, which no earlier entry queued: the export starts "
        "at entry 0, so the item.enqueued entry is missing",
    ),
    (
        "a-cancel",
        lambda p: p[1]["data"].update(kind="cancel"),
        "entry 1: variant 2: an added variant is a step (an item's cancel is signed when it is "
        "queued)",
    ),
    (
        "wrong-idx",
        lambda p: p[1]["data"].update(idx=1),
        "entry 1: variant 2: idx is 1, not 2 (its place among the item's)",
    ),
    (
        "idx-of-the-second-repeats-the-first",
        lambda p: p[7]["data"].update(idx=2),
        "entry 7: variant 3: idx is 2, not 3",
    ),
    (
        "to-a-bybit-item",
        lambda p: p[7].update(item=p[2]["item"]),
        "entry 7: variant added to item {order}, a bybit_order item: only evm_tx items have "
        "variants",
    ),
    (
        "signed-by-another-key",
        lambda p: set_raw(p[1]["data"], other_key_tx({"chain_id": BIG_CHAIN, "nonce": BIG_NONCE})),
        f"entry 1: variant 2: signed by {ATTACKER_ETH.address}, not by the declared sender",
    ),
    (
        "fee-not-the-signed-one",
        lambda p: p[1]["data"].update(fee_per_gas="1"),
        "entry 1: variant 2: fee_per_gas '1' is not the signed maxFeePerGas",
    ),
]


@pytest.mark.parametrize(
    ("edit", "message"), [r[1:] for r in ADDED_RULES], ids=[r[0] for r in ADDED_RULES]
)
def test_a_forged_added_variant_is_named(venue_log, tmp_path, edit, message):
    tampered = venue_forged(venue_log, tmp_path, edit)
    assert failed(tampered, None).startswith(message.format(**venue_log.ids))


def swap_intents(a: int, b: int) -> Callable[[list[dict[str, Any]]], None]:
    """Entry ``a`` gets entry ``b``'s intent and signature: validly signed by the real
    intent key, but the intent of the other kind of item."""

    def edit(parsed: list[dict[str, Any]]) -> None:
        for member in ("intent", "intent_signature"):
            parsed[a]["data"][member] = parsed[b]["data"][member]

    return edit


INTENT_RULES = [
    (
        "order-with-a-cancel-intent",
        swap_intents(2, 4),
        "entry 2: a bybit_order item carries a 'bybit.cancel' intent, not a 'bybit.order' one",
    ),
    (
        "cancel-with-an-order-intent",
        swap_intents(4, 2),
        "entry 4: a bybit_cancel item carries a 'bybit.order' intent, not a 'bybit.cancel' one",
    ),
    (
        "signature-upper-case",
        data_of(2, lambda d: d.update(intent_signature=d["intent_signature"].upper())),
        "entry 2: the intent signature is not lower-case hex",
    ),
    (
        "extra-intent-member",
        data_of(2, lambda d: d["intent"].update(note="x")),
        "entry 2: the bybit.order intent has members category, note, orderLinkId, orderType, "
        "price, qty, reduceOnly, side, symbol, timeInForce, type, v, not",
    ),
    (
        "intent-version",
        data_of(4, lambda d: d["intent"].update(v=2)),
        "entry 4: unknown bybit.cancel intent version 2",
    ),
    (
        "changed-quantity",
        data_of(2, lambda d: d["intent"].update(qty="100")),
        "entry 2: the order intent's signature does not verify",
    ),
    (
        "unknown-item-kind",
        data_of(2, lambda d: d.update(kind="bybit_spot")),
        "entry 2: item kind 'bybit_spot' is not one of evm_tx, bybit_order, bybit_cancel",
    ),
]


@pytest.mark.parametrize(
    ("edit", "message"), [r[1:] for r in INTENT_RULES], ids=[r[0] for r in INTENT_RULES]
)
def test_a_forged_bybit_intent_is_named(venue_log, tmp_path, edit, message):
    assert failed(venue_forged(venue_log, tmp_path, edit), None).startswith(message)
