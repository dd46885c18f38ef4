"""The web3.py integration against web3.py itself: a real anvil node, the real SoftHSM
token, a real queue and the real broadcaster service.

A bot's unchanged ``w3.eth.send_transaction(tx)`` must be answered by airlock (signed in
the HSM, durable in the queue, nothing at the node) and mined only once a broadcaster
runs; everything else web3 asks must still reach the node.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hexbytes import HexBytes
from tests.kits.broadcast import FAST, GWEI, RECIPIENT, relay
from web3 import AsyncHTTPProvider, AsyncWeb3, HTTPProvider, Web3, WebSocketProvider
from web3.exceptions import Web3Exception

from airlock.api import Airlock, AsyncAirlock, Queued
from airlock.api.web3 import AirlockSender, airlock_middleware, idempotent
from airlock.broadcaster.setup import build_service
from airlock.config import AirlockConfig, HsmConfig, QueueConfig
from airlock.errors import ConfigError, InvalidInput
from airlock.hsm.keyring import HsmEcdsaKey, KeyRing
from airlock.queue.errors import IdempotencyConflict
from airlock.queue.kek import HsmKek
from airlock.queue.store import Store
from airlock.signer.evm import address_from_public_key
from airlock.sim.anvil import Anvil

pytestmark = pytest.mark.anvil
ANVIL_PER_MODULE = True  # one node: every test funds its own key

RECIPIENT_CS = Web3.to_checksum_address(RECIPIENT)


@pytest.fixture
def config(tmp_path: Path, token_home: Path, hsm_config: HsmConfig, kek: HsmKek, anvil: Anvil):
    """One relay, the anvil node; a fast broadcaster; the session's token and KEK."""
    return AirlockConfig(
        home=token_home,
        hsm=hsm_config,
        queue=QueueConfig(path=tmp_path / "queue.db", kek_label=kek.label),
        relays=(relay("anvil", anvil.url),),
        broadcaster=FAST,
    )


@pytest.fixture
def store(config: AirlockConfig, kek: HsmKek) -> Iterator[Store]:
    with Store.open(config.queue.path, kek) as opened:
        yield opened


@pytest.fixture
def al(config: AirlockConfig, keyring: KeyRing, store: Store) -> Airlock:
    return Airlock(config, keyring, store)


@pytest.fixture
def address(eth_key: HsmEcdsaKey, anvil: Anvil) -> str:
    """The HSM key's address, funded from nothing (anvil_setBalance)."""
    funded = address_from_public_key(eth_key.public_key)
    anvil.rpc("anvil_setBalance", [funded, hex(10**21)])
    return funded


@pytest.fixture
def seen() -> list[Queued]:
    return []


@pytest.fixture
def sender(al: Airlock, eth_key: HsmEcdsaKey, address: str, seen: list[Queued]) -> AirlockSender:
    return airlock_middleware(al, eth_key.label, on_queued=seen.append)


@pytest.fixture
def w3(anvil: Anvil, sender: AirlockSender) -> Web3:
    """The bot's own Web3, with airlock added as the outermost layer."""
    w3 = Web3(HTTPProvider(anvil.url))
    w3.middleware_onion.add(sender, name="airlock")
    return w3


def bot_tx(anvil: Anvil, sender: str, **changes: Any) -> dict[str, Any]:
    """What a web3 bot builds for send_transaction: every field the node would fill."""
    base_fee = int(anvil.rpc("eth_getBlockByNumber", ["latest", False])["baseFeePerGas"], 16)
    tx: dict[str, Any] = {
        "from": sender,
        "to": RECIPIENT_CS,
        "value": 12345,
        "gas": 21000,
        "maxFeePerGas": 2 * base_fee + GWEI,
        "maxPriorityFeePerGas": GWEI,
        "chainId": anvil.chain_id,
    }
    tx.update(changes)
    return {k: v for k, v in tx.items() if v is not None}


def broadcast_once(config: AirlockConfig, store: Store, keyring: KeyRing) -> None:
    """The real broadcaster service, built from the configuration, run to quiet once."""

    async def once() -> None:
        service = build_service(config, store, keyring)
        async with service.started():
            await service.run_once()

    asyncio.run(once())


def at_node(anvil: Anvil, tx_hash: HexBytes, address: str) -> bool:
    """Whether the node has heard of the transaction or of any from ``address``."""
    known = anvil.rpc("eth_getTransactionByHash", [tx_hash.to_0x_hex()]) is not None
    pending = int(anvil.rpc("eth_getTransactionCount", [address, "pending"]), 16)
    return known or pending > 0


def test_send_transaction_is_queued_then_mined_by_the_broadcaster(
    w3, al, anvil, address, seen, config, store, keyring, kek
):
    tx_hash = w3.eth.send_transaction(bot_tx(anvil, address))

    (queued,) = seen
    assert tx_hash == HexBytes(queued.hashes[0]) == HexBytes(queued.variants[0].hash)
    assert queued.variants[0].kind == "step" and queued.account.lower() == address.lower()
    with Store.open(config.queue.path, kek) as other:  # durable: another connection sees it
        assert tx_hash.to_0x_hex() in {v.tx_hash for v in other.items.variants(queued.id)}
    assert not at_node(anvil, tx_hash, address)

    broadcast_once(config, store, keyring)

    receipt = w3.eth.wait_for_transaction_receipt(tx_hash, timeout=15)
    assert receipt["status"] == 1
    assert receipt["from"] == address
    assert receipt["to"] == RECIPIENT_CS
    assert al.item(queued.id).state == "confirmed"


def test_answers_without_the_node(al, eth_key, dead_url, seen):
    """The point of signing ahead: a node that refuses connections changes nothing."""
    sender = airlock_middleware(al, eth_key.label, on_queued=seen.append)
    w3 = Web3(HTTPProvider(dead_url))
    w3.middleware_onion.add(sender)
    tx = {
        "from": sender.address,
        "to": RECIPIENT_CS,
        "value": 1,
        "gas": 21000,
        "maxFeePerGas": 3 * GWEI,
        "maxPriorityFeePerGas": GWEI,
        "chainId": 31337,
    }
    assert w3.eth.send_transaction(tx) == HexBytes(seen[0].hashes[0])


def test_defaults_fill_what_the_dict_lacks(al, eth_key, anvil, address, seen):
    sender = airlock_middleware(
        al,
        eth_key.label,
        on_queued=seen.append,
        chain_id=anvil.chain_id,
        gas=30000,
        max_fee=5 * GWEI,
        priority_fee=GWEI,
        ladder=2,
        with_cancel=True,
    )
    w3 = Web3(HTTPProvider(anvil.url))
    w3.middleware_onion.add(sender)
    tx_hash = w3.eth.send_transaction({"from": address, "to": RECIPIENT_CS})
    (queued,) = seen
    assert tx_hash == HexBytes(queued.hashes[0])
    assert [v.kind for v in queued.variants] == ["step", "step", "cancel"]
    assert queued.variants[0].fee_per_gas == 5 * GWEI and queued.chain_id == anvil.chain_id
    detail = al.inspect(queued.id)["payload"]["intent"]
    assert int(detail["gas"]) == 30000 and int(detail["value"]) == 0
    # the dict's own fee wins, and the fee defaults stay out of it as a group
    w3.eth.send_transaction({"from": address, "to": RECIPIENT_CS, "gasPrice": 7 * GWEI})
    assert seen[1].variants[0].fee_per_gas == 7 * GWEI and seen[1].variants[0].tip_per_gas is None


def test_a_nonce_from_the_bot_is_used(w3, anvil, address, seen):
    w3.eth.send_transaction(bot_tx(anvil, address, nonce=0))
    w3.eth.send_transaction(bot_tx(anvil, address))  # allocated: the next one
    assert [q.nonce for q in seen] == [0, 1]


@pytest.mark.parametrize(
    ("removed", "field"),
    [
        (("chainId",), "chainId"),
        (("gas",), "gas"),
        (("maxFeePerGas", "maxPriorityFeePerGas"), "maxFeePerGas"),
    ],
)
def test_a_missing_chain_id_gas_or_fee_is_a_clear_error(w3, al, anvil, address, removed, field):
    tx = bot_tx(anvil, address, **dict.fromkeys(removed))
    with pytest.raises(InvalidInput) as caught:
        w3.eth.send_transaction(tx)
    # airlock's own error reaches the bot unchanged: a ValueError, not a web3 RPC error
    assert isinstance(caught.value, ValueError) and not isinstance(caught.value, Web3Exception)
    assert caught.value.field == field
    assert "without asking the node" in str(caught.value)
    assert "airlock_middleware(" in str(caught.value)
    assert al.items() == []


def test_other_methods_reach_the_node(w3, anvil):
    assert w3.eth.block_number == int(anvil.rpc("eth_blockNumber"), 16)
    assert w3.eth.chain_id == anvil.chain_id
    assert w3.eth.get_balance(RECIPIENT_CS) == int(
        anvil.rpc("eth_getBalance", [RECIPIENT, "latest"]), 16
    )


def test_another_sender_passes_through_to_the_node(w3, al, anvil):
    dev = w3.eth.accounts[0]  # unlocked at anvil: the node signs and mines it
    tx_hash = w3.eth.send_transaction(bot_tx(anvil, dev, chainId=None))
    assert w3.eth.wait_for_transaction_receipt(tx_hash, timeout=15)["from"] == dev
    assert al.items() == []


def test_another_sender_is_refused_when_pass_through_is_off(al, eth_key, anvil):
    w3 = Web3(HTTPProvider(anvil.url))
    w3.middleware_onion.add(airlock_middleware(al, eth_key.label, pass_through=False))
    dev = w3.eth.accounts[0]
    before = w3.eth.get_transaction_count(dev, "pending")
    with pytest.raises(InvalidInput) as caught:
        w3.eth.send_transaction(bot_tx(anvil, dev))
    assert caught.value.field == "from"
    assert w3.eth.get_transaction_count(dev, "pending") == before


def test_an_idempotent_retry_answers_the_same_hash(w3, al, anvil, address, seen):
    tx = bot_tx(anvil, address)
    with idempotent("order-42"):
        first = w3.eth.send_transaction(tx)
        again = w3.eth.send_transaction(tx)  # the bot retries after a timeout, say
    assert first == again
    assert [q.replayed for q in seen] == [False, True]
    assert len(al.items()) == 1
    with idempotent("order-42"), pytest.raises(IdempotencyConflict):
        w3.eth.send_transaction(dict(tx, value=tx["value"] + 1))
    w3.eth.send_transaction(tx)  # outside the block: a new item, no key
    assert len(al.items()) == 2


def test_injected_innermost_is_refused(al, eth_key, anvil):
    """inject(layer=0), as web3's docs show for signing, puts web3's node-asking layers
    outside airlock: refused on the first request rather than failing in an outage."""
    w3 = Web3(HTTPProvider(anvil.url))
    w3.middleware_onion.inject(airlock_middleware(al, eth_key.label), layer=0)
    with pytest.raises(ConfigError, match="outermost"):
        _ = w3.eth.block_number


async def test_a_websocket_provider_is_refused_not_sent(al, eth_key, anvil, address):
    """A persistent-connection provider lets a middleware rewrite a request, never answer
    it: the send is refused before anything leaves, the rest still works."""
    sender = airlock_middleware(al, eth_key.label)
    async with AsyncWeb3(WebSocketProvider(anvil.url.replace("http", "ws"))) as w3:
        w3.middleware_onion.add(sender)
        assert await w3.eth.chain_id == anvil.chain_id
        with pytest.raises(ConfigError, match="not WebSocketProvider"):
            await w3.eth.send_transaction(bot_tx(anvil, address))
    assert al.items() == []
    assert int(anvil.rpc("eth_getTransactionCount", [address, "pending"]), 16) == 0


def test_bad_defaults_fail_at_set_up(al, eth_key):
    with pytest.raises(InvalidInput, match="idempotent"):
        airlock_middleware(al, eth_key.label, idempotency_key="k")
    with pytest.raises(InvalidInput) as caught:
        airlock_middleware(al, eth_key.label, max_fees=1)
    assert caught.value.field == "max_fees"


async def test_async_web3(al, eth_key, anvil, address, seen, config, store, keyring):
    sender = airlock_middleware(AsyncAirlock(al), eth_key.label, on_queued=seen.append)
    w3 = AsyncWeb3(AsyncHTTPProvider(anvil.url))
    w3.middleware_onion.add(sender)
    assert await w3.eth.chain_id == anvil.chain_id  # passes through
    tx = bot_tx(anvil, address)
    with idempotent("async-1"):
        tx_hash = await w3.eth.send_transaction(tx)
        assert await w3.eth.send_transaction(tx) == tx_hash
    assert tx_hash == HexBytes(seen[0].hashes[0]) and seen[1].replayed
    assert not at_node(anvil, tx_hash, address)
    await asyncio.to_thread(broadcast_once, config, store, keyring)
    receipt = await w3.eth.wait_for_transaction_receipt(tx_hash, timeout=15)
    assert receipt["status"] == 1 and receipt["from"] == address
    await w3.provider.disconnect()


def test_importing_the_library_does_not_import_web3():
    code = "import sys, airlock.api; assert 'web3' not in sys.modules, 'web3 imported'"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
