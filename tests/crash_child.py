"""Child process for tests/test_queue_crash.py: enqueue signed transactions until killed.

Usage: crash_child.py QUEUE KEY_LABEL KEK_LABEL ROTATE_AFTER (QUEUE: a file or a
postgresql:// URL). AIRLOCK_HOME names the
token home and AIRLOCK_PIN carries the user PIN (never argv). Prints "ready" once the
token is open and the store is open, then one line "<item id> <nonce>" after each
enqueue returns (when it returns, the item is committed). Runs until SIGKILLed.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from airlock.config import load_config
from airlock.hsm.keyring import KeyRing
from airlock.queue.db import is_postgres
from airlock.queue.evm import enqueue_transaction
from airlock.queue.kek import HsmKek
from airlock.queue.store import Store
from airlock.signer.ladder import LadderSpec

FIELDS = {
    "chain_id": 31337,
    "to": "0x" + "22" * 20,
    "gas": 21000,
    "max_fee_per_gas": 2 * 10**9,
    "max_priority_fee_per_gas": 10**9,
}
LADDER = LadderSpec(levels=3, with_cancel=True)


def main(argv: list[str]) -> int:
    db_path, key_label, kek_label, rotate_after = argv
    pin = os.environ["AIRLOCK_PIN"]
    hsm = load_config(env={"AIRLOCK_HOME": os.environ["AIRLOCK_HOME"]}).hsm
    ring = KeyRing.open(hsm, pin=pin)
    key = ring.ecdsa_key(key_label, curve="secp256k1")
    location = db_path if is_postgres(db_path) else Path(db_path)
    store = Store.open(location, HsmKek(ring, kek_label), rotate_after=int(rotate_after))
    out = sys.stdout
    out.write("ready\n")
    out.flush()
    value = os.getpid() * 1_000_000
    while True:
        value += 1
        enqueued = enqueue_transaction(store, key, dict(FIELDS, value=value), ladder=LADDER)
        out.write(f"{enqueued.item.id} {enqueued.item.nonce}\n")
        out.flush()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
