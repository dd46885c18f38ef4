"""Audit verification: ``verify_export`` against bare SHA-256 of the same lines, same run.

Two exports are generated in a temporary directory (not through the durable store: the
entries are encoded and chained directly with ``airlock.audit.entries``, the Merkle
frontier is kept as they are written, and checkpoints are signed with a software P-256
key through ``checkpoint.make_note``; the manifest is the one ``export.py`` writes):

- mixed: ``--evm-share`` (default 10 %) ``item.enqueued`` EVM entries, each with two
  signed EIP-1559 variants (a ``step`` transfer and its ``cancel``, a 0-value transfer to
  the sender with the same nonce and a higher fee), the rest ``item.transition`` entries
  for those items. ``--distinct`` (default 200) items are signed once with eth-account
  software keys (4 senders) and reused, each time under a new item id and idempotency key:
  the verifier recovers every variant of every entry (there is no cache to defeat);
- transitions only: the same number of ``item.transition`` entries, no signature to
  recover, so the cost of the recovery shows.

Checkpoints every 10,000 entries and one at the end. ``verify_export(dir, pem).ok`` must
hold for both before anything is timed.

- verify: ``verify_export`` end to end (reads manifest, key, notes and entries.jsonl);
- baseline: read entries.jsonl, split it into lines, ``hashlib.sha256(line).digest()``
  per line: bare hashing of the same bytes.

Rounds alternate (verify mixed, baseline mixed, verify transitions, baseline
transitions); rates are medians over rounds, ratios are medians of per-round ratios.
A breakdown of where verification spends its time on the mixed log follows (outside the
rounds; see ``breakdown``), with two possible replacements timed against what they would
replace, and the ratio a verifier would reach if it did nothing but the hashing it cannot
skip (chain hash, leaf hash, Merkle frontier): the ceiling for any verifier of this format
written in Python.

Usage: python bench/audit_verify.py [--entries 100000] [--rounds 5] [--evm-share 0.1]
       [--distinct 200] [--json] [--dir DIR]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import coincurve
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from eth_account import Account
from eth_utils import keccak

from airlock.audit import entries, merkle
from airlock.audit.checkpoint import make_note
from airlock.audit.content import Content
from airlock.audit.evm_check import decode as decode_fields
from airlock.audit.export import FORMAT
from airlock.audit.verify import verify_export
from airlock.encoding import canonical
from airlock.queue import ulid

TARGET = 0.25
CHECKPOINT_EVERY = 10_000
SENDERS = 4
CHAIN_ID = 1
START_MS = 1_790_000_000_000
GWEI = 10**9

# What the broadcaster and reconciler write, in the sizes they write it.
TRANSITIONS = [
    ("queued", "sending", "dispatch"),
    ("sending", "sent", "accepted by rpc-a, rpc-b"),
    ("sent", "confirmed", "included in block 21876543, 12 confirmations"),
    ("sending", "queued", "every link failed at transport level: rpc-a timeout, rpc-b reset"),
    ("queued", "sending", "dispatch (attempt 2)"),
    ("sent", "replaced", "nonce used by variant 1 (cancel) 0x5b1e...c0de"),
    ("queued", "expired", "ttl of 300 s passed before dispatch"),
    ("queued", "cancelled", "cancelled by operator: strategy halted"),
]


@dataclass(frozen=True)
class Template:
    """One signed EVM item: its sender, nonce and variants as the audit entry holds them."""

    account: str
    nonce: int
    variants: list[dict[str, Any]]


def sign_templates(n: int) -> list[Template]:
    """``n`` items (two signed variants each) spread over ``SENDERS`` software keys."""
    accounts = [
        Account.from_key(keccak(f"airlock-bench-audit-{i}".encode())) for i in range(SENDERS)
    ]
    out = []
    for i in range(n):
        account, nonce = accounts[i % SENDERS], i // SENDERS
        base = {"type": 2, "chainId": CHAIN_ID, "nonce": nonce, "gas": 21000}
        step = dict(
            base,
            to="0x000000000000000000000000000000000000dEaD",
            value=10**15 + i,
            maxFeePerGas=30 * GWEI,
            maxPriorityFeePerGas=GWEI,
        )
        cancel = dict(
            base, to=account.address, value=0, maxFeePerGas=60 * GWEI, maxPriorityFeePerGas=2 * GWEI
        )
        variants = []
        for idx, (kind, tx) in enumerate((("step", step), ("cancel", cancel))):
            signed = account.sign_transaction(tx)
            raw = bytes(signed.raw_transaction)
            variants.append(
                {
                    "idx": idx,
                    "kind": kind,
                    "hash": "0x" + keccak(raw).hex(),
                    "fee_per_gas": str(tx["maxFeePerGas"]),
                    "tip_per_gas": str(tx["maxPriorityFeePerGas"]),
                    "raw": "0x" + raw.hex(),
                }
            )
        out.append(Template(account.address, nonce, variants))
    return out


def entry_stream(
    count: int, evm_share: float, templates: list[Template], seed: int
) -> Iterator[tuple[int, str, str | None, dict[str, Any]]]:
    """(time_ms, type, item, data) for ``count`` entries; every ``1/evm_share``-th entry
    (evenly spread) is an ``item.enqueued``, the rest are transitions of recent items."""
    rng = random.Random(seed)
    now = START_MS
    recent: list[str] = []
    strategy_seq = 0
    enqueued = 0
    for n in range(count):
        now += rng.randrange(0, 40)
        if templates and evm_share > 0 and int((n + 1) * evm_share) > enqueued:
            enqueued += 1
            item_id = ulid.encode((now << 80) | rng.getrandbits(80))
            t = templates[(enqueued - 1) % len(templates)]
            strategy_seq += 1
            data = {
                "kind": "evm_tx",
                "account": t.account,
                "strategy": "mm-eth-usdc",
                "seq": strategy_seq,
                "idempotency_key": f"mm-eth-usdc:{strategy_seq:010d}",
                "priority": 50,
                "state": "queued",
                "created_ms": now,
                "updated_ms": now,
                "expires_ms": now + 300_000,
                "chain_id": CHAIN_ID,
                "nonce": t.nonce,
                "private": False,
                "cancel_requested": False,
                "signer": "hot-eth-1",
                "variants": t.variants,
            }
            recent = [item_id, *recent[:15]]
            yield now, entries.ITEM_ENQUEUED, item_id, data
        else:
            if not recent:  # a transitions-only log: items enqueued before the export
                recent = [ulid.encode((now << 80) | rng.getrandbits(80)) for _ in range(16)]
            item_id = recent[rng.randrange(len(recent))]
            frm, to, reason = TRANSITIONS[rng.randrange(len(TRANSITIONS))]
            yield now, entries.ITEM_TRANSITION, item_id, {"from": frm, "to": to, "reason": reason}


def write_export(
    out: Path, count: int, evm_share: float, templates: list[Template], seed: int
) -> tuple[bytes, dict[str, int]]:
    """Write an export of ``count`` entries into ``out``; returns the public key PEM and
    the number of entries of each type."""
    signing_key = ec.generate_private_key(ec.SECP256R1())
    public_key = signing_key.public_key()
    pem = public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    origin = "airlock.local/" + random.Random(seed).randbytes(8).hex()

    def sign_der(message: bytes) -> bytes:
        return signing_key.sign(message, ec.ECDSA(hashes.SHA256()))

    (out / "checkpoints").mkdir(parents=True, exist_ok=True)
    frontier = merkle.Frontier()
    names: list[str] = []

    def sign_checkpoint() -> None:
        note = make_note(origin, frontier.size, frontier.root(), public_key, sign_der)
        names.append(f"{len(names) + 1:06d}.note")
        (out / "checkpoints" / names[-1]).write_text(note)

    kinds: dict[str, int] = {}
    prev = entries.GENESIS_PREV
    with open(out / "entries.jsonl", "wb") as handle:
        for seq, (time_ms, kind, item, data) in enumerate(
            entry_stream(count, evm_share, templates, seed)
        ):
            line = entries.encode(seq, prev, time_ms, kind, item, data)
            handle.write(line + b"\n")
            prev = entries.entry_hash(line).hex()
            frontier.append(merkle.leaf_hash(line))
            kinds[kind] = kinds.get(kind, 0) + 1
            if frontier.size % CHECKPOINT_EVERY == 0:
                sign_checkpoint()
    if frontier.size % CHECKPOINT_EVERY:
        sign_checkpoint()
    (out / "audit-key.pem").write_bytes(pem)
    manifest: dict[str, Any] = {
        "format": FORMAT,
        "origin": origin,
        "key_name": origin,
        "first": 0,
        "count": count,
        "frontier": [],
        "checkpoints": names,
        "tail": None,
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return pem, kinds


def bare_sha256(directory: Path) -> int:
    """The baseline: read the same file, split it into lines, SHA-256 of each line."""
    data = (directory / "entries.jsonl").read_bytes()
    lines = data.split(b"\n")[:-1]
    sha256 = hashlib.sha256
    for line in lines:
        sha256(line).digest()
    return len(lines)


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def breakdown(directory: Path, pem: bytes) -> dict[str, float]:
    """Microseconds per entry (averaged over all entries) of each part of verification.

    One pass over the lines doing what ``_verify`` does per entry, with a clock read
    between the parts; ``sum_of_parts_us`` adds the undotted ones, to compare with a
    separate end-to-end ``verify_export_us``. Dotted names are "of which" parts, timed
    again on their own next to the call they belong to. ``what_if_`` figures time a
    possible replacement in whole passes, next to a pass of what it replaces.
    """
    total, report = timed(lambda: verify_export(directory, pem))
    assert report.ok, report.problem
    read, lines = timed(lambda: (directory / "entries.jsonl").read_bytes().split(b"\n")[:-1])
    n = len(lines)
    hook, no_float = canonical._reject_duplicates, canonical._no_float
    clock = time.perf_counter
    keys = (
        "parse_canonical",
        "parse_canonical.json_loads_with_duplicate_key_hook",
        "parse_canonical.value_walk_check",
        "parse_canonical.reencode_and_compare",
        "entry_shape_checks",
        "sha256_chain_leaf_and_frontier",
        "report_bookkeeping",
        "check_enqueued_evm",
        "check_enqueued_evm.keccak_of_raw",
        "check_enqueued_evm.decode_fields",
        "check_enqueued_evm.recover_transaction",
    )
    parts = dict.fromkeys(keys, 0.0)
    raws: list[bytes] = []
    senders: list[bytes] = []
    scratch = Content(first=0)  # the verifier's content rules, as verify_export runs them
    frontier = merkle.Frontier()
    prev: bytes | None = None
    for number, line in enumerate(lines):
        t0 = clock()
        entry = canonical.parse_canonical(line)
        t1 = clock()
        value = json.loads(
            line.decode("utf-8"),
            object_pairs_hook=hook,
            parse_float=no_float,
            parse_constant=no_float,
        )
        t2 = clock()
        canonical._check(value, "$")
        t3 = clock()
        assert canonical_dumps(value).encode("utf-8") == line
        t4 = clock()
        shape_checks(number, entry)
        t5 = clock()
        assert prev is None or entry["prev"] == prev.hex()
        prev = entries.entry_hash(line)
        frontier.append(merkle.leaf_hash(line))
        if frontier.size % CHECKPOINT_EVERY == 0:
            frontier.root()
        t6 = clock()
        scratch.check(number, entry)
        t7 = clock()
        spans = (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4, t6 - t5)
        for key, seconds in zip(keys[:6], spans, strict=True):
            parts[key] += seconds
        data = entry["data"]
        if entry["type"] != entries.ITEM_ENQUEUED or data.get("kind") != "evm_tx":
            parts["report_bookkeeping"] += t7 - t6
            continue
        parts["check_enqueued_evm"] += t7 - t6
        for variant in data["variants"]:
            raws.append(bytes.fromhex(variant["raw"][2:]))
            t0 = clock()
            keccak(raws[-1]).hex()
            t1 = clock()
            decode_fields(raws[-1])
            t2 = clock()
            Account.recover_transaction(raws[-1])
            t3 = clock()
            parts["check_enqueued_evm.keccak_of_raw"] += t1 - t0
            parts["check_enqueued_evm.decode_fields"] += t2 - t1
            parts["check_enqueued_evm.recover_transaction"] += t3 - t2
            senders.append(bytes.fromhex(data["account"][2:]))

    # The replacements, each against what it replaces, in whole passes that keep no
    # results; the two sides of a pair alternate three times and the best pass counts.
    def each(fn: Callable[[Any], Any], items: list[Any]) -> Callable[[], None]:
        def loop() -> None:
            for x in items:
                fn(x)

        return loop

    pairs = {
        ("pass_parse_canonical", "what_if_parse"): (
            each(canonical.parse_canonical, lines),
            each(what_if_parse, lines),
        ),
        ("pass_recover_transaction", "what_if_recover"): (
            each(Account.recover_transaction, raws),
            each(sketch_recover_typed, raws),
        ),
        ("bare_sha256", "hashes_only"): (
            lambda: bare_sha256(directory),
            lambda: hashes_only(directory),
        ),
    }
    passes: dict[str, float] = {}
    for names, fns in pairs.items():
        runs = [[timed(fn)[0] for fn in fns] for _ in range(3)]
        for i, name in enumerate(names):
            passes[name] = min(r[i] for r in runs)
    assert [sketch_recover_typed(r) for r in raws] == senders

    def us(seconds: float, per: int = n) -> float:
        return round(seconds / max(1, per) * 1e6, 2)

    top = ("parse_canonical", "entry_shape_checks", "sha256_chain_leaf_and_frontier")
    top += ("report_bookkeeping", "check_enqueued_evm")
    out = {"read_and_split_us": us(read)}
    out.update({f"{k}_us": us(v) for k, v in parts.items()})
    out["sum_of_parts_us"] = us(read + sum(parts[k] for k in top))
    out["verify_export_us"] = us(total)
    out["evm_variants"] = len(raws)
    out["pass_parse_canonical_us"] = us(passes["pass_parse_canonical"])
    out["what_if_parse_us"] = us(passes["what_if_parse"])
    out["pass_recover_transaction_us_per_variant"] = us(
        passes["pass_recover_transaction"], len(raws)
    )
    out["what_if_recover_us_per_variant"] = us(passes["what_if_recover"], len(raws))
    out["pass_bare_sha256_us"] = us(passes["bare_sha256"])
    out["pass_hashes_only_us"] = us(passes["hashes_only"])
    out["ceiling_ratio_hashes_only"] = round(passes["bare_sha256"] / passes["hashes_only"], 3)
    return out


def hashes_only(directory: Path) -> None:
    """The hashing no verifier can skip, and nothing else: read, split, per line the chain
    hash (in hex, as ``prev`` holds it), the leaf hash, the frontier, and the roots at the
    checkpoints."""
    lines = (directory / "entries.jsonl").read_bytes().split(b"\n")[:-1]
    frontier = merkle.Frontier()
    for line in lines:
        entries.entry_hash(line).hex()
        frontier.append(merkle.leaf_hash(line))
        if frontier.size % CHECKPOINT_EVERY == 0:
            frontier.root()


def shape_checks(number: int, entry: dict[str, Any]) -> None:
    """What ``verify._entry`` checks after ``parse_canonical`` (a copy, to time it alone)."""
    shape = {"v": int, "seq": int, "prev": str, "time_ms": int, "type": str, "data": dict}
    assert isinstance(entry, dict) and set(entry) == {*shape, "item"}
    for key, kind in shape.items():
        assert isinstance(entry[key], kind) and not isinstance(entry[key], bool)
    assert entry["seq"] == number and entry["v"] == entries.VERSION


def what_if_parse(line: bytes) -> Any:
    """``parse_canonical`` without the duplicate-key hook (a duplicate key cannot
    round-trip: ``json.loads`` keeps one of them) and without the value walk: integers are
    range-checked as they are parsed, a lone surrogate fails the UTF-8 encoding, and only
    a line that is not ASCII can hold a non-ASCII key (then the walk runs)."""
    try:
        value = json.loads(
            line.decode("utf-8"),
            parse_int=safe_int,
            parse_float=canonical._no_float,
            parse_constant=canonical._no_float,
        )
        if not line.isascii():
            canonical._check(value, "$")
        same = canonical_dumps(value).encode("utf-8") == line
    except (UnicodeError, ValueError, RecursionError) as exc:
        raise canonical.CanonicalError(f"not canonical JSON: {exc}") from None
    if not same:
        raise canonical.CanonicalError("valid JSON, but not in canonical form")
    return value


def safe_int(text: str) -> int:
    value = int(text)
    if abs(value) > canonical.MAX_SAFE_INTEGER:
        raise canonical.CanonicalError(f"integer {text} is too large; use a decimal string")
    return value


def canonical_dumps(value: Any) -> str:
    """What ``canonical.canonical`` runs after its value walk."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )


def _rlp_item(b: bytes, i: int) -> tuple[int, int]:
    """(payload start, item end) of the RLP item at offset ``i``."""
    p = b[i]
    if p < 0x80:
        return i, i + 1
    if p < 0xB8 or 0xC0 <= p < 0xF8:
        return i + 1, i + 1 + p - (0x80 if p < 0xC0 else 0xC0)
    size = p - (0xB7 if p < 0xC0 else 0xF7)
    length = int.from_bytes(b[i + 1 : i + 1 + size], "big")
    return i + 1 + size, i + 1 + size + length


def sketch_recover_typed(raw: bytes) -> bytes:
    """The sender address (20 bytes) of a signed type-1/2 transaction: one RLP walk over
    offsets, one keccak of the signing payload, one libsecp256k1 recovery (coincurve).
    A sketch of a faster ``check_enqueued_evm``, measured only in the breakdown."""
    body = raw[1:]
    start, end = _rlp_item(body, 0)
    spans = []
    while start < end:
        spans.append((start, *_rlp_item(body, start)))
        start = spans[-1][2]
    unsigned = body[spans[0][0] : spans[-3][0]]
    length = len(unsigned)
    header = (
        bytes([0xC0 + length])
        if length < 56
        else bytes([0xF7 + (length.bit_length() + 7) // 8])
        + length.to_bytes((length.bit_length() + 7) // 8, "big")
    )
    digest = keccak(raw[:1] + header + unsigned)
    y, r, s = (body[a:b] for _, a, b in spans[-3:])
    signature = r.rjust(32, b"\0") + s.rjust(32, b"\0") + (y or b"\0")
    point = coincurve.PublicKey.from_signature_and_message(signature, digest, hasher=None)
    return keccak(point.format(compressed=False)[1:])[-20:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--evm-share", type=float, default=0.10)
    parser.add_argument("--distinct", type=int, default=200)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--dir", type=Path, default=None, help="where to write (default: tmp)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="airlock-bench-audit-", dir=args.dir) as tmp:
        run(args, Path(tmp))


def run(args: argparse.Namespace, tmp: Path) -> None:
    n = args.entries
    sign_s, templates = timed(lambda: sign_templates(args.distinct))
    mixed, plain = tmp / "mixed", tmp / "transitions"
    gen_s, (mixed_pem, mixed_kinds) = timed(
        lambda: write_export(mixed, n, args.evm_share, templates, args.seed)
    )
    plain_pem, _ = write_export(plain, n, 0.0, [], args.seed)
    for directory, pem in ((mixed, mixed_pem), (plain, plain_pem)):
        report = verify_export(directory, pem)
        if not report.ok or report.entries != n or report.signed_size != n:
            raise SystemExit(f"the generated export {directory.name} does not verify: {report}")

    sides: dict[str, list[float]] = {k: [] for k in ("vm", "bm", "vt", "bt")}
    ratios_mixed, ratios_plain = [], []
    for _ in range(args.rounds):
        for key, fn in (
            ("vm", lambda: verify_export(mixed, mixed_pem)),
            ("bm", lambda: bare_sha256(mixed)),
            ("vt", lambda: verify_export(plain, plain_pem)),
            ("bt", lambda: bare_sha256(plain)),
        ):
            seconds, _ = timed(fn)
            sides[key].append(n / seconds)
        ratios_mixed.append(sides["vm"][-1] / sides["bm"][-1])
        ratios_plain.append(sides["vt"][-1] / sides["bt"][-1])
    ratio = statistics.median(ratios_mixed)
    lines = (mixed / "entries.jsonl").read_bytes().split(b"\n")[:-1]
    plain_lines = (plain / "entries.jsonl").read_bytes().split(b"\n")[:-1]
    report = {
        "entries": n,
        "cpus": os.cpu_count(),
        "mix": {k: round(v / n, 4) for k, v in sorted(mixed_kinds.items())},
        "evm_variants_per_enqueued": 2,
        "distinct_signed_items": args.distinct,
        "checkpoints": -(-n // CHECKPOINT_EVERY),
        "mean_line_bytes_mixed": round(sum(map(len, lines)) / n),
        "mean_line_bytes_transitions": round(sum(map(len, plain_lines)) / n),
        "setup_signing_s": round(sign_s, 2),
        "setup_generate_mixed_s": round(gen_s, 2),
        "rounds": args.rounds,
        "verify_mixed_per_s": round(statistics.median(sides["vm"])),
        "sha256_mixed_per_s": round(statistics.median(sides["bm"])),
        "ratio_mixed": round(ratio, 4),
        "ratio_mixed_per_round": [round(r, 4) for r in ratios_mixed],
        "verify_transitions_per_s": round(statistics.median(sides["vt"])),
        "sha256_transitions_per_s": round(statistics.median(sides["bt"])),
        "ratio_transitions_only": round(statistics.median(ratios_plain), 4),
        "ratio_transitions_per_round": [round(r, 4) for r in ratios_plain],
        "target": TARGET,
        "pass": ratio >= TARGET,
        "breakdown_mixed_us_per_entry": breakdown(mixed, mixed_pem),
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return
    for name, value in report.items():
        if isinstance(value, dict):
            print(name)
            for k, v in value.items():
                print(f"  {k:40} {v}")
        else:
            print(f"{name:32} {value}")


if __name__ == "__main__":
    main()
