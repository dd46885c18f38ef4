#!/usr/bin/env python3
"""A trading bot on the airlock library: queue a transfer and an order, list, wait.

The bot holds the HSM session and the queue itself (``Airlock.open()``); a running
``airlock broadcaster run`` sends what it queues the moment a link is up. Queueing works
during an outage: the transfer is signed (a fee ladder and a pre-signed cancel with it) and
durable when ``queue_transaction`` returns. The idempotency keys are fixed, so running the
bot again answers with the same items (``replayed``) instead of queueing twice.

Settings (environment, with defaults for the embedded drill setup):

    AIRLOCK_HOME          the data dir (airlock.toml, the queue, the embedded token)
    EXAMPLE_CONFIG        another airlock.toml (default: $AIRLOCK_HOME/airlock.toml)
    EXAMPLE_KEY           HSM label of the sending secp256k1 key   (hot-1)
    EXAMPLE_CHAIN_ID      chain id                                 (31337, anvil)
    EXAMPLE_TO            recipient            (0x000000000000000000000000000000000000dEaD)
    EXAMPLE_VALUE         wei to send                              (1000)
    EXAMPLE_MAX_FEE       max fee per gas, wei                     (30 gwei)
    EXAMPLE_PRIORITY_FEE  priority fee per gas, wei                (1 gwei)
    EXAMPLE_ID            prefix of the idempotency keys           (library)
    EXAMPLE_WAIT_S        how long to wait for the confirmation    (60)

Exit status: 0 confirmed, 2 still pending when the wait ended (it stays queued and goes
out when a link returns), 1 anything refused or failed.
"""

from __future__ import annotations

import os
import sys

from airlock import Airlock, AirlockError, ItemEnded, OrderRefused, WaitTimeout

GWEI = 10**9


def setting(name: str, default: str) -> str:
    return os.environ.get(name) or default


def main() -> int:
    key = setting("EXAMPLE_KEY", "hot-1")
    chain_id = int(setting("EXAMPLE_CHAIN_ID", "31337"))
    to = setting("EXAMPLE_TO", "0x000000000000000000000000000000000000dEaD")
    prefix = setting("EXAMPLE_ID", "library")
    wait_s = float(setting("EXAMPLE_WAIT_S", "60"))
    config = os.environ.get("EXAMPLE_CONFIG") or None
    try:
        with Airlock.open(config) as al:
            print(f"sender {key}: {al.address(key)}")
            tx = al.queue_transaction(
                key=key,
                chain_id=chain_id,
                to=to,
                value=int(setting("EXAMPLE_VALUE", "1000")),
                gas=21000,
                max_fee=int(setting("EXAMPLE_MAX_FEE", str(30 * GWEI))),
                priority_fee=int(setting("EXAMPLE_PRIORITY_FEE", str(GWEI))),
                ladder=3,  # three fee levels, signed now; bumps need no new signature
                with_cancel=True,  # and a pre-signed cancel of the same nonce
                ttl=3600,
                idempotency_key=f"{prefix}-pay-1",
            )
            print(
                f"transaction {tx.id}: {tx.state}, nonce {tx.nonce}"
                + (" (replayed: already queued)" if tx.replayed else " (new)")
            )
            for variant in tx.variants:
                print(f"  {variant.kind} {variant.idx}: {variant.hash} fee {variant.fee_per_gas}")
            for warning in tx.warnings:
                print(f"  warning: {warning}")

            if al.config.bybit is None:
                print("no [bybit] section in the configuration: no order queued")
            else:
                order = al.queue_order(
                    symbol="BTCUSDT",
                    side="Buy",
                    order_type="Limit",
                    qty="0.01",
                    price="60000",
                    tif="GTC",
                    ttl=600,
                    idempotency_key=f"{prefix}-order-1",
                )
                print(
                    f"order {order.id}: {order.state}, orderLinkId {order.order_link_id}, "
                    f"rule {order.rule}: {order.message}"
                    + (" (replayed)" if order.replayed else "")
                )

            print("live items:")
            for item in al.items(state=["queued", "sending", "sent"], limit=20):
                print(f"  {item.id} {item.kind} {item.state} {item.idempotency_key}")

            try:
                done = al.wait(tx.id, until={"confirmed"}, timeout=wait_s)
            except WaitTimeout as exc:
                state = exc.item.state
                print(
                    f"transaction {tx.id} still {state} after {wait_s:g} s: "
                    + (
                        "queued durably, it goes out when the broadcaster has a link"
                        if state == "queued"
                        else "on its way, not confirmed yet"
                    )
                )
                return 2
            print(f"transaction {done.id} confirmed: {done.mined_hash} in block {done.mined_block}")
            return 0
    except OrderRefused as exc:
        print(f"order refused by rule {exc.rule}: {exc}", file=sys.stderr)
    except ItemEnded as exc:
        print(f"transaction ended {exc.item.state}: {exc}", file=sys.stderr)
    except AirlockError as exc:
        print(f"airlock: {exc}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
