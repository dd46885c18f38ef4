"""The ``airlock`` command: a thin layer that parses, calls the library and prints.

Errors raised on purpose (:class:`AirlockError`) become one line on stderr and exit 1.
PINs are never options: they come from AIRLOCK_PIN, AIRLOCK_PIN_FILE, the configured
pin_source, or a no-echo prompt.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from airlock.cli import common
from airlock.cli.audit_cmds import audit_group
from airlock.cli.broadcast_cmds import broadcaster_group, links_group, reconcile
from airlock.cli.bybit_cmds import bybit_group
from airlock.cli.db_cmds import db_group
from airlock.cli.queue_cmds import evm_queue, keys_group, nonce_group, queue_group
from airlock.cli.slo_cmds import slo
from airlock.cli.status_cmds import status
from airlock.cli.tx_options import intent_fields, tx_options
from airlock.errors import InvalidInput
from airlock.hsm.kinds import KeyKind


@click.group(cls=common.AirlockGroup)
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
    from airlock.hsm.softhsm import WARNING, init_embedded  # pkcs11

    config = common.config(ctx)
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
    with common.keyring(ctx) as ring:
        info = ring.generate(kind, label)
    data = _key_json(info)
    common.emit(
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
    with common.keyring(ctx) as ring:
        info = ring.import_hmac_secret(label, secret.encode())
    click.echo(f"imported {info.kind} secret {info.label!r} (sensitive, non-extractable)")


@hsm.command("keys")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def hsm_keys(ctx: click.Context, as_json: bool) -> None:
    """List the keys airlock can use: label, type, and address for secp256k1 keys."""
    with common.keyring(ctx) as ring:
        rows = [_key_json(info) for info in ring.list()]

    def text() -> str:
        if not rows:
            return "no keys; create one with 'airlock hsm keygen'"
        return "\n".join(
            f"{r['label']:<24} {r['type']:<10} {r.get('address', '')}".rstrip() for r in rows
        )

    common.emit(as_json, rows, text)


@hsm.command("pubkey")
@click.option("--key", "label", required=True, help="Key label.")
@click.pass_context
def hsm_pubkey(ctx: click.Context, label: str) -> None:
    """Print a key's public key as PEM (to register with Bybit or hand to an auditor)."""
    with common.keyring(ctx) as ring:
        click.echo(ring.public_key_pem(label), nl=False)


def _key_json(info: Any) -> dict[str, Any]:
    from airlock.signer import evm  # rlp, eth_utils, coincurve: for the address

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
    from airlock.signer import evm  # rlp, eth_utils, coincurve

    with common.keyring(ctx) as ring:
        key = ring.ecdsa_key(label, curve="secp256k1")
    click.echo(evm.address_from_public_key(key.public_key))


@evm_group.command("sign")
@tx_options(nonce_required=True)
@click.option("--json", "as_json", is_flag=True, help="Also print hash, sender and type.")
@click.pass_context
def evm_sign(ctx: click.Context, /, label: str, as_json: bool, **options: Any) -> None:
    """Sign a transaction in the HSM and print it as 0x-hex. Touches no queue, no network."""
    from airlock.signer import evm  # rlp, eth_utils, coincurve

    intent = evm.make_intent(**intent_fields(options), nonce=options["nonce"])
    with common.keyring(ctx) as ring:
        signed = evm.sign_transaction(intent, ring.ecdsa_key(label, curve="secp256k1"))
    data = {
        "raw": signed.raw_hex,
        "hash": signed.hash_hex,
        "sender": signed.sender,
        "type": signed.tx_type,
        "nonce": signed.nonce,
        "chain_id": signed.chain_id,
    }
    common.emit(as_json, data, lambda: signed.raw_hex)


evm_group.add_command(evm_queue)
cli.add_command(queue_group)
cli.add_command(nonce_group)
cli.add_command(keys_group)
cli.add_command(audit_group)
cli.add_command(broadcaster_group)
cli.add_command(links_group)
cli.add_command(reconcile)
cli.add_command(bybit_group)
cli.add_command(db_group)
cli.add_command(status)
cli.add_command(slo)


@cli.command()
@click.option("--json", "as_json", is_flag=True)
@click.option(
    "--keep",
    type=click.Path(file_okay=False, path_type=Path),
    help="Run in this new (or empty) directory and keep it: AIRLOCK_HOME=DIR airlock slo.",
)
@click.option(
    "--report",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the drill report (self-contained HTML) to this file.",
)
def demo(as_json: bool, keep: Path | None, report: Path | None) -> None:
    """Run the drill on embedded defaults: SoftHSM signs, a local anvil mines."""
    from airlock.sim.demo import run_demo  # sim/ is only ever imported by the demo

    say = lambda line: click.echo(f"· {line}", err=True)  # noqa: E731
    result = run_demo(say, keep=keep, report=report)
    common.emit(as_json, result, lambda: "\n".join(f"{k}: {v}" for k, v in result.items()))


def main() -> None:
    cli(obj={})
