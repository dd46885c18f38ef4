"""The public library's tests' parts (tests/test_api_*.py): a config with a venue that is
down, the arguments of one valid transaction and one valid order, and a snapshot of
everything an all-or-nothing failure must leave as it was."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.kits.labels import unique_label

from airlock import Airlock
from airlock.api.orders import Reachability
from airlock.config import AirlockConfig, load_config
from airlock.hsm.keyring import HsmEcdsaKey

TO = "0x" + "ab" * 20
GWEI = 10**9
DOWN = Reachability(False, None, "venue down (test)")


def make_config(home: Path, dead_url: str, *, bybit: bool = True, extra: str = "") -> AirlockConfig:
    """An airlock.toml in ``home`` with a [bybit] section on a dead port (nothing listens)."""
    text = extra
    if bybit:
        text += (
            f'\n[bybit]\nbase_url = "{dead_url}"\napi_key = "test-key-1"\n'
            f'secret_label = "bybit-hmac"\nintent_key_label = "{unique_label("intents")}"\n'
        )
    path = home / "airlock.toml"
    path.write_text(text)
    return load_config(path, env={"AIRLOCK_HOME": str(home)})


def tx_args(signing_key: HsmEcdsaKey, **changes: Any) -> dict[str, Any]:
    """``Airlock.queue_transaction`` arguments of a valid transfer; ``None`` drops one."""
    args = {
        "key": signing_key.label,
        "chain_id": 1,
        "to": TO,
        "value": 1000,
        "gas": 21000,
        "max_fee": 30 * GWEI,
        "priority_fee": GWEI,
    }
    args.update(changes)
    return {k: v for k, v in args.items() if v is not None}


def order_args(key: str, **changes: Any) -> dict[str, Any]:
    """``Airlock.queue_order`` arguments of a valid GTC limit buy; ``None`` drops one."""
    args = {
        "symbol": "BTCUSDT",
        "side": "Buy",
        "order_type": "Limit",
        "qty": "0.01",
        "price": "60000",
        "tif": "GTC",
        "ttl": 600,
        "idempotency_key": key,
    }
    args.update(changes)
    return {k: v for k, v in args.items() if v is not None}


def snapshot(al: Airlock) -> tuple[Any, ...]:
    """Everything an all-or-nothing failure must leave as it was."""
    store = al.store
    nonces = [(n.chain_id, n.sender, n.next_nonce) for n in store.nonces.status()]
    return [i.id for i in al.items()], store.events.last_id(), nonces
