"""The ``airlock`` command: a thin layer that parses, calls the library and prints.

Errors raised on purpose (:class:`AirlockError`) become one line on stderr and exit 1.
PINs are never options: they come from AIRLOCK_PIN, AIRLOCK_PIN_FILE, the configured
pin_source, or a no-echo prompt.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from airlock.config import AirlockConfig, load_config
from airlock.errors import AirlockError, InvalidInput
from airlock.hsm.keyring import KeyRing
from airlock.hsm.keys import KeyKind
from airlock.hsm.pin import terminal_prompt
from airlock.hsm.softhsm import WARNING, init_embedded
from airlock.signer import evm


def _fail(message: str) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(1)


class AirlockGroup(click.Group):
    """Turns AirlockError into 'error: ...' on stderr with exit status 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except AirlockError as exc:
            _fail(str(exc))


def _config(ctx: click.Context) -> AirlockConfig:
    return load_config(ctx.obj.get("config_path"))


def _keyring(ctx: click.Context) -> KeyRing:
    return KeyRing.open(_config(ctx).hsm, prompt=terminal_prompt)


def _emit(as_json: bool, data: Any, text: Callable[[], str]) -> None:
    click.echo(json.dumps(data, indent=2) if as_json else text())


@click.group(cls=AirlockGroup)
@click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path, dir_okay=False),
    help="airlock.toml to use (default: $AIRLOCK_HOME/airlock.toml).",
)
@click.version_option(package_name="airlock")
@click.pass_context
def cli(ctx: click.Context, config_path: Path | None) -> None:
    """Sign ahead with an HSM, queue durably, broadcast when a link returns."""
    ctx.ensure_object(dict)
    ctx.obj["config_path"] = config_path


@cli.command()
@click.pass_context
def init(ctx: click.Context) -> None:
    """Create the data dir and, with no HSM configured, the embedded SoftHSM token."""
    config = _config(ctx)
    click.echo(f"data dir: {config.home}")
    if not config.hsm.embedded:
        config.home.mkdir(mode=0o700, parents=True, exist_ok=True)
        click.echo(f"HSM: {config.hsm.module_path} token {config.hsm.token_label!r} (configured)")
        return
    report = init_embedded(config.home)
    for item in report.created:
        click.echo(f"created {item}")
    if not report.changed:
        click.echo("already initialised; nothing created")
    click.echo(f"warning: {WARNING}", err=True)


@cli.group()
def hsm() -> None:
    """Keys in the HSM: generate, import, list, export public keys."""


@hsm.command("keygen")
@click.option(
    "--type",
    "kind",
    required=True,
    type=click.Choice([k.value for k in KeyKind if k is not KeyKind.HMAC]),
)
@click.option("--label", required=True, help="Unique key label on the token.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def hsm_keygen(ctx: click.Context, kind: str, label: str, as_json: bool) -> None:
    """Generate a non-extractable key inside the HSM."""
    with _keyring(ctx) as ring:
        info = ring.generate(kind, label)
    data = _key_json(info)
    _emit(
        as_json,
        data,
        lambda: (
            f"generated {info.kind} key {info.label!r}"
            + (f" address {data['address']}" if "address" in data else "")
        ),
    )


@hsm.command("import-secret")
@click.option("--label", required=True, help="Unique label for the secret.")
@click.pass_context
def hsm_import_secret(ctx: click.Context, label: str) -> None:
    """Import an HMAC secret (a Bybit API secret) from stdin, or a prompt at a terminal."""
    if sys.stdin.isatty():
        secret = click.prompt("API secret", hide_input=True, err=True)
    else:
        secret = sys.stdin.readline()
    secret = secret.removesuffix("\n").removesuffix("\r")
    if not secret:
        raise InvalidInput("no secret given on stdin")
    with _keyring(ctx) as ring:
        info = ring.import_hmac_secret(label, secret.encode())
    click.echo(f"imported {info.kind} secret {info.label!r} (sensitive, non-extractable)")


@hsm.command("keys")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def hsm_keys(ctx: click.Context, as_json: bool) -> None:
    """List the keys airlock can use: label, type, and address for secp256k1 keys."""
    with _keyring(ctx) as ring:
        rows = [_key_json(info) for info in ring.list()]

    def text() -> str:
        if not rows:
            return "no keys; create one with 'airlock hsm keygen'"
        return "\n".join(
            f"{r['label']:<24} {r['type']:<10} {r.get('address', '')}".rstrip() for r in rows
        )

    _emit(as_json, rows, text)


@hsm.command("pubkey")
@click.option("--key", "label", required=True, help="Key label.")
@click.pass_context
def hsm_pubkey(ctx: click.Context, label: str) -> None:
    """Print a key's public key as PEM (to register with Bybit or hand to an auditor)."""
    with _keyring(ctx) as ring:
        click.echo(ring.public_key_pem(label), nl=False)


def _key_json(info: Any) -> dict[str, Any]:
    data: dict[str, Any] = {"label": info.label, "type": str(info.kind)}
    if info.kind is KeyKind.SECP256K1:
        data["address"] = evm.address_from_public_key(info.public_key)
    return data


@cli.group("evm")
def evm_group() -> None:
    """Ethereum: addresses and HSM-signed transactions."""


@evm_group.command("address")
@click.option("--key", "label", required=True, help="secp256k1 key label.")
@click.pass_context
def evm_address(ctx: click.Context, label: str) -> None:
    """Print the checksum address of a secp256k1 key."""
    with _keyring(ctx) as ring:
        key = ring.ecdsa_key(label, curve="secp256k1")
    click.echo(evm.address_from_public_key(key.public_key))


@evm_group.command("sign")
@click.option("--key", "label", required=True, help="secp256k1 key label.")
@click.option("--chain-id", required=True)
@click.option("--nonce", required=True)
@click.option("--to", required=True, help="Recipient address (checksum or lower case).")
@click.option("--value", required=True, help="Amount in wei (integer).")
@click.option("--data", default="0x", show_default=True, help="Call data as 0x-hex.")
@click.option("--gas", required=True, help="Gas limit (>= 21000).")
@click.option("--max-fee", help="maxFeePerGas in wei (type 2).")
@click.option("--priority-fee", help="maxPriorityFeePerGas in wei (type 2).")
@click.option("--gas-price", help="gasPrice in wei (type 0 or 1).")
@click.option("--type", "tx_type", type=click.Choice(["0", "1", "2"]), help="Transaction type.")
@click.option("--access-list", help='JSON: [{"address": "0x..", "storageKeys": ["0x.."]}]')
@click.option("--json", "as_json", is_flag=True, help="Also print hash, sender and type.")
@click.pass_context
def evm_sign(
    ctx: click.Context, label: str, as_json: bool, tx_type: str | None, **fields: Any
) -> None:
    """Sign a transaction in the HSM and print it as 0x-hex. Touches no queue, no network."""
    intent = evm.make_intent(
        chain_id=fields["chain_id"],
        nonce=fields["nonce"],
        to=fields["to"],
        value=fields["value"],
        gas=fields["gas"],
        data=fields["data"],
        gas_price=fields["gas_price"],
        max_fee_per_gas=fields["max_fee"],
        max_priority_fee_per_gas=fields["priority_fee"],
        tx_type=int(tx_type) if tx_type is not None else None,
        access_list=fields["access_list"],
    )
    with _keyring(ctx) as ring:
        signed = evm.sign_transaction(intent, ring.ecdsa_key(label, curve="secp256k1"))
    data = {
        "raw": signed.raw_hex,
        "hash": signed.hash_hex,
        "sender": signed.sender,
        "type": signed.tx_type,
        "nonce": signed.nonce,
        "chain_id": signed.chain_id,
    }
    _emit(as_json, data, lambda: signed.raw_hex)


@cli.command()
@click.option("--json", "as_json", is_flag=True)
def demo(as_json: bool) -> None:
    """Run the drill on embedded defaults: SoftHSM signs, a local anvil mines."""
    from airlock.sim.demo import run_demo  # sim/ is only ever imported by the demo

    result = run_demo(lambda line: click.echo(f"· {line}", err=True))
    _emit(as_json, result, lambda: "\n".join(f"{k}: {v}" for k, v in result.items()))


def main() -> None:
    cli(obj={})
