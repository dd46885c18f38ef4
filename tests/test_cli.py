"""The CLI contract, run as a real subprocess against a real SoftHSM token."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from eth_account import Account
from tests.kits.cli import command_line, run

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cli-home")


@pytest.fixture(scope="module")
def ready(home: Path) -> Path:
    first = run(home, "init")
    assert first.returncode == 0, first.stderr
    assert str(home) in first.stdout
    assert "created SoftHSM token 'airlock'" in first.stdout
    assert "development and outage drills only" in first.stderr
    return home


def test_init_is_idempotent(ready):
    again = run(ready, "init")
    assert again.returncode == 0
    assert "nothing created" in again.stdout


def test_keygen_keys_address_sign(ready):
    gen = run(ready, "hsm", "keygen", "--type", "secp256k1", "--label", "cli-eth")
    assert gen.returncode == 0, gen.stderr
    address = run(ready, "evm", "address", "--key", "cli-eth").stdout.strip()
    assert address.startswith("0x") and len(address) == 42
    listed = json.loads(run(ready, "hsm", "keys", "--json").stdout)
    assert {"label": "cli-eth", "type": "secp256k1", "address": address} in listed
    signed = run(
        ready,
        "evm",
        "sign",
        "--key",
        "cli-eth",
        "--chain-id",
        "1",
        "--nonce",
        "7",
        "--to",
        "0x000000000000000000000000000000000000dEaD",
        "--value",
        "1000",
        "--gas",
        "21000",
        "--max-fee",
        "3000000000",
        "--priority-fee",
        "1000000000",
    )
    assert signed.returncode == 0, signed.stderr
    raw = signed.stdout.strip()
    assert Account.recover_transaction(raw) == address
    as_json = run(
        ready,
        "evm",
        "sign",
        "--key",
        "cli-eth",
        "--chain-id",
        "1",
        "--nonce",
        "7",
        "--to",
        "0x000000000000000000000000000000000000dead",
        "--value",
        "1000",
        "--gas",
        "21000",
        "--gas-price",
        "3000000000",
        "--type",
        "0",
        "--json",
    )
    data = json.loads(as_json.stdout)
    assert data["sender"] == address and data["type"] == 0
    assert Account.recover_transaction(data["raw"]) == address


def test_import_secret_from_stdin_and_pubkey(ready):
    imported = run(ready, "hsm", "import-secret", "--label", "cli-bybit", stdin="s" * 36 + "\n")
    assert imported.returncode == 0, imported.stderr
    short = run(ready, "hsm", "import-secret", "--label", "cli-short", stdin="short\n")
    assert short.returncode == 1 and "32" in short.stderr
    run(ready, "hsm", "keygen", "--type", "rsa2048", "--label", "cli-rsa")
    pem = run(ready, "hsm", "pubkey", "--key", "cli-rsa").stdout
    assert pem.startswith("-----BEGIN PUBLIC KEY-----")


def sign_args(**overrides: str) -> list[str]:
    """An `evm sign` command line for key cli-eth; keyword overrides replace one option."""
    options = {
        "chain-id": "1",
        "nonce": "0",
        "to": "0x000000000000000000000000000000000000dead",
        "value": "1",
        "gas": "21000",
        "gas-price": "1",
    }
    return command_line(["evm", "sign", "--key", "cli-eth"], options, overrides)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["evm", "address", "--key", "nope"], "no key labelled 'nope'"),
        (sign_args(to="0x000000000000000000000000000000000000DEAd"), "checksum"),
        (sign_args(value="1.5"), "value"),
        (sign_args(gas="20000"), "21000"),
    ],
)
def test_errors_go_to_stderr_with_nonzero_exit(ready, args, message):
    run(ready, "hsm", "keygen", "--type", "secp256k1", "--label", "cli-eth")
    result = run(ready, *args)
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.startswith("error:") and message in result.stderr


def test_wrong_pin_from_env(ready):
    result = run(ready, "hsm", "keys", env={"AIRLOCK_PIN": "not-the-pin"})
    assert result.returncode == 1
    assert "rejected the PIN" in result.stderr


def test_pin_is_not_an_option(ready):
    result = run(ready, "hsm", "keys", "--pin", "1234")
    assert result.returncode == 2
    assert "No such option" in result.stderr
