"""The private relay simulator in front of real anvil, and the broadcaster's private path
through it: an HSM auth key signing every request, private transactions sent with
``eth_sendPrivateTransaction`` and nowhere else, and a relay that refuses what is unsigned.

The broadcaster is built as production builds it (``airlock.toml`` -> ``load_config`` ->
``build_relays``), so what is checked is the configured path, not a hand-made client.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from eth_utils import keccak
from tests.kits.broadcast import assert_mined_exactly_once, fee_fields, make_senders
from tests.kits.labels import unique_label

from airlock.broadcaster.service import Broadcaster
from airlock.broadcaster.setup import build_relays
from airlock.config import AirlockConfig, load_config
from airlock.hsm.keyring import HsmEcdsaKey, KeyRing
from airlock.queue.evm import enqueue_transaction
from airlock.queue.kek import HsmKek
from airlock.queue.states import State
from airlock.queue.store import Enqueued, Store
from airlock.relays.jsonrpc import started
from airlock.signer import evm
from airlock.signer.eip191 import flashbots_message, sign_personal
from airlock.signer.ladder import LadderSpec
from airlock.sim.anvil import Anvil
from airlock.sim.privaterelay import (
    BAD_SIGNATURE_MESSAGE,
    BATCH_MESSAGE,
    CANCEL_PRIVATE,
    SEND_PRIVATE,
    SEND_RAW,
    SIGNATURE_HEADER,
    PrivateRelay,
)

pytestmark = pytest.mark.anvil

RELAY_NAME = "flashbots"
CLI_TIMEOUT = 60.0  # a subprocess starting (~1 s) or stopping: it only matters when failing


@pytest.fixture
def auth_key(keyring: KeyRing) -> HsmEcdsaKey:
    """A fresh secp256k1 key on the test token, used only to sign relay requests."""
    label = unique_label("fb-auth")
    keyring.generate("secp256k1", label)
    return keyring.ecdsa_key(label, curve="secp256k1")


@pytest.fixture
def relay(anvil: Anvil) -> Iterator[PrivateRelay]:
    with PrivateRelay(anvil.url) as running:
        yield running


# -- helpers ---------------------------------------------------------------------------


def write_config(
    tmp_path: Path,
    token_home: Path,
    kek: HsmKek,
    relay_url: str,
    auth_label: str | None,
) -> AirlockConfig:
    """An ``airlock.toml`` with one Flashbots-style relay, loaded as the CLI loads it."""
    auth = f"auth_key_label = {json.dumps(auth_label)}\n" if auth_label else ""
    text = (
        "[queue]\n"
        f"path = {json.dumps(str(tmp_path / 'queue.db'))}\n"
        f"kek_label = {json.dumps(kek.label)}\n"
        "\n[broadcaster]\nconfirmations = 1\n"
        "\n[[relays]]\n"
        f"name = {json.dumps(RELAY_NAME)}\n"
        'kind = "evm-private"\n'
        f'method = "{SEND_PRIVATE}"\n'
        f"{auth}"
        f"url = {json.dumps(relay_url)}\n"
        "chain_id = 31337\n"
    )
    path = tmp_path / "airlock.toml"
    path.write_text(text)
    return load_config(path, env={"AIRLOCK_HOME": str(token_home)})


@contextlib.contextmanager
def config_store(config: AirlockConfig, keyring: KeyRing) -> Iterator[Store]:
    """The queue the configuration names, opened with its KEK as the CLI opens it."""
    with Store.open(config.queue.path, HsmKek(keyring, config.queue.kek_label)) as store:
        yield store


def queue(
    store: Store, keyring: KeyRing, anvil: Anvil, count: int, *, private: bool
) -> list[Enqueued]:
    """``count`` transfers from one funded HSM sender, at consecutive nonces."""
    (sender,) = make_senders(keyring, anvil, 1)
    fields = fee_fields(anvil)
    return [
        enqueue_transaction(
            store,
            sender.key,
            dict(fields, value=fields["value"] + n),
            ladder=LadderSpec(levels=2),
            private=private,
        )
        for n in range(count)
    ]


def hashes_of(store: Store, queued: list[Enqueued]) -> set[str]:
    return {v.tx_hash for q in queued for v in store.items.variants(q.item.id)}


def rpc_body(method: str, params: list[Any], request_id: int = 1) -> bytes:
    call = {"jsonrpc": "2.0", "id": request_id, "method": method, "params": params}
    return json.dumps(call).encode()


def sign_header(key: HsmEcdsaKey, body: bytes) -> str:
    """What the relay client sends: ``address:0x<personal_sign of 0x+keccak(body)>``."""
    signature = asyncio.run(sign_personal(key, flashbots_message(body)))
    return f"{evm.address_from_public_key(key.public_key)}:0x{signature.hex()}"


def post(url: str, body: bytes, header: str | None = None) -> tuple[int, Any]:
    """POST ``body``; the HTTP status and the JSON answer, error statuses included."""
    headers = {"Content-Type": "application/json"}
    if header is not None:
        headers[SIGNATURE_HEADER] = header
    request = urllib.request.Request(url, body, headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, json.loads(exc.read())


# -- through the broadcaster ------------------------------------------------------------


async def test_private_sends_through_the_broadcaster_are_signed_by_the_hsm_auth_key(
    keyring, kek, token_home, anvil, relay, auth_key, tmp_path: Path
):
    config = write_config(tmp_path, token_home, kek, relay.url, auth_key.label)
    address = evm.address_from_public_key(auth_key.public_key)
    with config_store(config, keyring) as store:
        queued = queue(store, keyring, anvil, 3, private=True)
        relays = build_relays(config, keyring)
        async with started(relays):
            broadcaster = Broadcaster(store, relays, config.broadcaster)
            await broadcaster.run_once()
        assert_mined_exactly_once(store, anvil, queued)
        mined = {store.items.get(q.item.id).mined_hash for q in queued}
        assert mined <= relay.private_hashes()
        assert relay.private_hashes() <= hashes_of(store, queued)
    requests = relay.requests()
    assert requests and all(r.status == 200 for r in requests)
    assert len(relay.signers()) == len(requests)
    assert set(relay.signers()) == {address}
    methods = relay.methods()
    assert methods.count(SEND_PRIVATE) >= 3
    assert SEND_RAW not in methods  # a private relay is never handed a public send
    # One request per transaction, and one sender's nonces never overtake each other.
    order = [
        "0x" + keccak(bytes.fromhex(json.loads(r.body)["params"][0]["tx"][2:])).hex()
        for r in requests
        if r.method == SEND_PRIVATE
    ]
    by_nonce = [v.tx_hash for q in sorted(queued, key=lambda q: q.item.nonce) for v in q.variants]
    assert [h for h in order if h in by_nonce] == [h for h in by_nonce if h in order]


async def test_public_item_is_never_sent_to_the_private_relay(
    keyring, kek, token_home, anvil, relay, auth_key, tmp_path: Path
):
    config = write_config(tmp_path, token_home, kek, relay.url, auth_key.label)
    with config_store(config, keyring) as store:
        private = queue(store, keyring, anvil, 1, private=True)
        public = queue(store, keyring, anvil, 1, private=False)
        relays = build_relays(config, keyring)
        async with started(relays):
            await Broadcaster(store, relays, config.broadcaster).run_once()
        assert_mined_exactly_once(store, anvil, private)
        (public_item,) = public
        assert store.items.get(public_item.item.id).state is State.QUEUED
        public_hashes = hashes_of(store, public)
        public_raws = {raw.hex() for _, raw in store.items.signed_variants(public_item.item.id)}
    assert relay.private_hashes().isdisjoint(public_hashes)
    for request in relay.requests():  # not even a receipt query names it
        body = request.body.decode().lower()
        assert not any(h[2:] in body for h in public_hashes)
        assert not any(raw in body for raw in public_raws)


async def test_relay_without_auth_is_refused_and_stays_down(
    keyring, kek, token_home, anvil, relay, tmp_path: Path
):
    config = write_config(tmp_path, token_home, kek, relay.url, auth_label=None)
    with config_store(config, keyring) as store:
        queued = queue(store, keyring, anvil, 2, private=True)
        relays = build_relays(config, keyring)
        async with started(relays):
            broadcaster = Broadcaster(store, relays, config.broadcaster)
            await broadcaster.run_once()
            snapshot = broadcaster.monitor.snapshots()[RELAY_NAME].as_json()
        assert all(store.items.get(q.item.id).state is State.QUEUED for q in queued)
        assert not any(store.sends.attempts(q.item.id) for q in queued)
    assert snapshot["state"] == "down" and not snapshot["usable"]
    assert "HTTP 403" in snapshot["last_error"]
    assert BAD_SIGNATURE_MESSAGE in snapshot["last_error"]
    requests = relay.requests()
    assert requests, "the probe should have reached the relay"
    assert all(r.status == 403 and r.signer is None for r in requests)
    assert SEND_PRIVATE not in relay.methods()
    assert relay.private_hashes() == set()
    assert relay.signers() == []


# -- the relay on its own ----------------------------------------------------------------


def test_signature_must_cover_the_exact_body(relay, auth_key, anvil):
    body = rpc_body("eth_blockNumber", [])
    other = rpc_body("eth_blockNumber", [], request_id=2)
    status, answer = post(relay.url, body, sign_header(auth_key, other))
    assert status == 403
    assert answer["error"]["code"] == -32600
    assert answer["error"]["message"] == BAD_SIGNATURE_MESSAGE
    assert answer["id"] == 1

    status, answer = post(relay.url, body, sign_header(auth_key, body))
    assert status == 200 and int(answer["result"], 16) >= 0
    assert relay.signers() == [evm.address_from_public_key(auth_key.public_key)]
    assert [r.status for r in relay.requests()] == [403, 200]


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "0x1234:0xabcd",
        "0x" + "11" * 20,  # an address and no signature
        "0x" + "11" * 20 + ":0x" + "00" * 65,  # the right shape, recovers to nothing
    ],
)
def test_missing_or_malformed_signature_is_refused(relay, header):
    status, answer = post(relay.url, rpc_body("eth_chainId", []), header)
    assert status == 403
    assert answer["error"] == {
        "code": -32600,
        "message": BAD_SIGNATURE_MESSAGE,
        "data": answer["error"]["data"],
    }
    assert relay.signers() == []


def test_signature_claiming_another_address_is_refused(relay, auth_key):
    body = rpc_body("eth_chainId", [])
    _, signature = sign_header(auth_key, body).split(":")
    status, answer = post(relay.url, body, "0x" + "22" * 20 + ":" + signature)
    assert status == 403 and answer["error"]["message"] == BAD_SIGNATURE_MESSAGE
    assert "not by" in answer["error"]["data"]


def test_batch_is_refused(relay, auth_key):
    body = json.dumps(
        [
            {"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []},
            {"jsonrpc": "2.0", "id": 2, "method": "eth_blockNumber", "params": []},
        ]
    ).encode()
    status, answer = post(relay.url, body, sign_header(auth_key, body))
    assert status == 400
    assert answer == {
        "jsonrpc": "2.0",
        "id": None,
        "error": {"code": -32600, "message": BATCH_MESSAGE},
    }


def test_private_send_is_forwarded_and_its_error_returned_unchanged(
    keyring, relay, auth_key, anvil
):
    (sender,) = make_senders(keyring, anvil, 1)
    signed = evm.sign_transaction(evm.make_intent(**fee_fields(anvil), nonce=0), sender.key)
    body = rpc_body(SEND_PRIVATE, [{"tx": signed.raw_hex, "maxBlockNumber": "0x100"}])
    status, answer = post(relay.url, body, sign_header(auth_key, body))
    assert status == 200 and answer == {"jsonrpc": "2.0", "id": 1, "result": signed.hash_hex}
    assert anvil.wait_for_receipt(signed.hash_hex)["status"] == "0x1"
    assert relay.private_hashes() == {signed.hash_hex}

    again = rpc_body(SEND_PRIVATE, [{"tx": signed.raw_hex}], request_id=7)
    status, answer = post(relay.url, again, sign_header(auth_key, again))
    _, direct = post(anvil.url, rpc_body(SEND_RAW, [signed.raw_hex], request_id=7))
    assert status == 200 and "error" in direct
    assert answer == direct  # anvil's error, as anvil words it


def test_cancel_answers_true_and_reads_pass_through(relay, auth_key, anvil):
    body = rpc_body(CANCEL_PRIVATE, [{"txHash": "0x" + "AB" * 32}])
    status, answer = post(relay.url, body, sign_header(auth_key, body))
    assert status == 200 and answer["result"] is True
    assert relay.cancelled_hashes() == {"0x" + "ab" * 32}  # recorded lowercase

    body = rpc_body("eth_chainId", [])
    status, answer = post(relay.url, body, sign_header(auth_key, body))
    assert status == 200 and int(answer["result"], 16) == anvil.chain_id

    body = rpc_body(SEND_PRIVATE, [{"maxBlockNumber": "0x1"}])
    status, answer = post(relay.url, body, sign_header(auth_key, body))
    assert status == 200 and answer["error"]["code"] == -32602


def test_without_required_auth_unsigned_requests_pass_but_bad_signatures_do_not(anvil, auth_key):
    with PrivateRelay(anvil.url, require_auth=False) as open_relay:
        body = rpc_body("eth_chainId", [])
        status, answer = post(open_relay.url, body)
        assert status == 200 and int(answer["result"], 16) == anvil.chain_id
        other = rpc_body("eth_chainId", [], request_id=3)
        status, _ = post(open_relay.url, body, sign_header(auth_key, other))
        assert status == 403
        assert open_relay.signers() == []


def test_command_line_prints_its_url_and_stops_on_sigterm(anvil):
    command = [sys.executable, "-m", "airlock.sim.privaterelay", "--upstream", anvil.url]
    process = subprocess.Popen(
        [*command, "--no-auth"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    # readline() has no timeout: a watchdog kills a relay that never prints, ending it.
    watchdog = threading.Timer(CLI_TIMEOUT, process.kill)
    watchdog.start()
    try:
        assert process.stdout is not None
        url = process.stdout.readline().strip()
        watchdog.cancel()
        assert url.startswith("http://127.0.0.1:")
        status, answer = post(url, rpc_body("eth_chainId", []))
        assert status == 200 and int(answer["result"], 16) == anvil.chain_id
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=CLI_TIMEOUT) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=CLI_TIMEOUT)
