"""Start-up: the command tree, --help, --version and status --no-probe load no heavy module.

Each check runs in a fresh interpreter and looks at ``sys.modules`` afterwards, so it
holds on a machine of any speed (the wall times are in bench/startup.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

AIRLOCK = [sys.executable, "-m", "airlock.cli"]

# Never needed to list the commands or print help: the signer, the network, the metrics,
# the HSM and the queue, and airlock's rooms that load them.
HEAVY = (
    "web3",
    "eth_account",
    "eth_keys",
    "eth_utils",
    "rlp",
    "coincurve",
    "aiohttp",
    "prometheus_client",
    "pkcs11",
    "asyncio",
    "airlock.config",
    "airlock.hsm.keyring",
    "airlock.queue.store",
    "airlock.signer.evm",
    "airlock.relays.jsonrpc",
    "airlock.broadcaster.setup",
)
# status --no-probe opens the HSM and the queue, but neither the signer nor the network.
NETWORK_AND_SIGNER = (
    "web3",
    "eth_account",
    "eth_keys",
    "eth_utils",
    "rlp",
    "coincurve",
    "aiohttp",
    "prometheus_client",
    "airlock.signer.evm",
    "airlock.relays.jsonrpc",
    "airlock.broadcaster.setup",
    "airlock.cli.status_probe",
)

RUN_THEN_LIST = """
import json, sys
from airlock.cli.main import cli
try:
    cli({args!r}, prog_name="airlock", obj={{}})
except SystemExit as exc:
    code = exc.code
else:
    code = 0
print(json.dumps({{"code": code, "loaded": sorted(m for m in {watch!r} if m in sys.modules)}}))
"""


def _env(home: Path | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRLOCK_", "SOFTHSM2"))}
    if home is not None:
        env["AIRLOCK_HOME"] = str(home)
    return env


def _loaded_after(args: list[str], watch: tuple[str, ...], home: Path | None = None):
    code = RUN_THEN_LIST.format(args=args, watch=watch)
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=_env(home), timeout=60
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.splitlines()[-1])
    return result["code"], result["loaded"], done


def test_importing_the_cli_loads_no_heavy_module():
    code = "import sys; import airlock.cli.main; print(sorted(set({!r}) & set(sys.modules)))"
    code = code.format(HEAVY)
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=_env(), timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


@pytest.mark.parametrize(
    "args",
    [["--help"], ["--version"], ["status", "--help"], ["bybit", "order", "--help"]],
)
def test_help_and_version_load_no_heavy_module(args: list[str]):
    code, loaded, done = _loaded_after(args, HEAVY)
    assert code == 0, done.stderr
    assert loaded == []


@pytest.fixture(scope="module")
def home_with_a_queue(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A token, a key, one queued transaction and a relay: what status reads."""
    home = tmp_path_factory.mktemp("startup-home")
    steps = [
        ["init"],
        ["hsm", "keygen", "--type", "secp256k1", "--label", "k"],
        ["evm", "queue", "--key", "k", "--chain-id", "1", "--to",
         "0x000000000000000000000000000000000000dEaD", "--value", "1", "--gas", "21000",
         "--max-fee", "30000000000", "--priority-fee", "1000000000"],
    ]  # fmt: skip
    for step in steps:
        done = subprocess.run(
            [*AIRLOCK, *step], capture_output=True, text=True, env=_env(home), timeout=60
        )
        assert done.returncode == 0, done.stderr
    (home / "airlock.toml").write_text(
        '[[relays]]\nname = "node-a"\nkind = "evm-rpc"\nurl = "http://127.0.0.1:9/"\nchain_id = 1\n'
    )
    return home


def test_status_without_probes_loads_neither_the_signer_nor_the_network(
    home_with_a_queue: Path,
):
    code, loaded, done = _loaded_after(
        ["status", "--no-probe", "--json"], NETWORK_AND_SIGNER, home_with_a_queue
    )
    assert code == 0, done.stderr
    assert loaded == []
    data = json.loads("\n".join(done.stdout.splitlines()[:-1]))
    assert data["queue"]["live"] == 1 and len(data["nonces"]) == 1
    assert data["links"]["relays"][0]["state"] == "not probed"
