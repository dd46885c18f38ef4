"""``airlock demo``: the drill on embedded defaults, grown issue by issue.

Today it proves the foundation end to end: a SoftHSM key signs an EIP-1559 transfer and a
local anvil node mines it; the sender recovered from the raw bytes must be the HSM key's
address. It runs in a throw-away data directory and stops everything it started.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

from eth_account import Account

from airlock.config import load_config
from airlock.errors import AirlockError
from airlock.hsm.keyring import KeyRing
from airlock.hsm.softhsm import init_embedded
from airlock.signer import evm
from airlock.sim.anvil import start_anvil

RECIPIENT = "0x000000000000000000000000000000000000dEaD"


class DemoFailed(AirlockError):
    """An invariant of the drill did not hold."""


def run_demo(say: Callable[[str], None]) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="airlock-demo-") as tmp:
        home = Path(tmp)
        say(f"data dir {home} (removed at the end)")
        init_embedded(home)
        say("SoftHSM token created (development and drills only)")
        config = load_config(env={"AIRLOCK_HOME": str(home)})
        with KeyRing.open(config.hsm) as ring:
            ring.generate("secp256k1", "demo-eth")
            key = ring.ecdsa_key("demo-eth", curve="secp256k1")
            sender = evm.address_from_public_key(key.public_key)
            say(f"secp256k1 key 'demo-eth' generated in the HSM: {sender}")
            with start_anvil() as anvil:
                say(f"anvil up on {anvil.url}")
                anvil.rpc("anvil_setBalance", [sender, hex(10**18)])
                base_fee = int(
                    anvil.rpc("eth_getBlockByNumber", ["latest", False])["baseFeePerGas"], 16
                )
                intent = evm.make_intent(
                    chain_id=anvil.chain_id,
                    nonce=int(anvil.rpc("eth_getTransactionCount", [sender, "pending"]), 16),
                    to=RECIPIENT,
                    value=10**15,
                    gas=21000,
                    max_fee_per_gas=2 * base_fee + 10**9,
                    max_priority_fee_per_gas=10**9,
                )
                signed = evm.sign_transaction(intent, key)
                say(f"signed type-2 transfer {signed.hash_hex}")
                sent = anvil.rpc("eth_sendRawTransaction", [signed.raw_hex])
                receipt = anvil.wait_for_receipt(sent)
        recovered = Account.recover_transaction(signed.raw_hex)
        result = {
            "hash": signed.hash_hex,
            "block": int(receipt["blockNumber"], 16),
            "status": int(receipt["status"], 16),
            "sender": sender,
            "recovered_sender": recovered,
        }
        if sent != signed.hash_hex or recovered != sender or result["status"] != 1:
            raise DemoFailed(f"demo invariant failed: {result}")
        return result
