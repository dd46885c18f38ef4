"""The transaction options ``evm sign`` and ``evm queue`` share."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

F = Callable[..., Any]


def tx_options(*, nonce_required: bool) -> Callable[[F], F]:
    """Decorate a command with the options that describe one transaction."""
    nonce_help = "Account nonce." if nonce_required else "Account nonce (default: allocated)."
    options = [
        click.option("--key", "label", required=True, help="secp256k1 key label."),
        click.option("--chain-id", required=True),
        click.option("--nonce", required=nonce_required, help=nonce_help),
        click.option("--to", required=True, help="Recipient address (checksum or lower case)."),
        click.option("--value", required=True, help="Amount in wei (integer)."),
        click.option("--data", default="0x", show_default=True, help="Call data as 0x-hex."),
        click.option("--gas", required=True, help="Gas limit (>= 21000)."),
        click.option("--max-fee", help="maxFeePerGas in wei (type 2)."),
        click.option("--priority-fee", help="maxPriorityFeePerGas in wei (type 2)."),
        click.option("--gas-price", help="gasPrice in wei (type 0 or 1)."),
        click.option(
            "--type", "tx_type", type=click.Choice(["0", "1", "2"]), help="Transaction type."
        ),
        click.option("--access-list", help='JSON: [{"address": "0x..", "storageKeys": ["0x.."]}]'),
    ]

    def decorate(fn: F) -> F:
        for option in reversed(options):
            fn = option(fn)
        return fn

    return decorate


def intent_fields(options: dict[str, Any]) -> dict[str, Any]:
    """The make_intent arguments (all but the nonce) from the parsed options."""
    tx_type = options["tx_type"]
    return {
        "chain_id": options["chain_id"],
        "to": options["to"],
        "value": options["value"],
        "gas": options["gas"],
        "data": options["data"],
        "gas_price": options["gas_price"],
        "max_fee_per_gas": options["max_fee"],
        "max_priority_fee_per_gas": options["priority_fee"],
        "tx_type": int(tx_type) if tx_type is not None else None,
        "access_list": options["access_list"],
    }
