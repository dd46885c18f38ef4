"""The examples in examples/ run against the embedded defaults: an AIRLOCK_HOME made by
``airlock init``, a key ``hot-1``, anvil behind one relay, the Bybit simulator, and the
service (``airlock broadcaster run``) serving its local API on ``$AIRLOCK_HOME/api.sock``.
Each example is run as its user would run it, with no settings but ``AIRLOCK_HOME``; what
it says is checked, and so is the queue (through ``airlock queue list``)."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import pytest
from tests.kits.waiting import wait_until

from airlock.sim.anvil import Anvil, start_anvil
from airlock.sim.bybit import BybitSim

pytestmark = [pytest.mark.anvil, pytest.mark.slow]

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
AIRLOCK = [sys.executable, "-m", "airlock.cli"]
API_KEY = "examples-key"


@dataclass
class Rig:
    home: Path
    anvil: Anvil
    sim: BybitSim
    address: str

    @property
    def env(self) -> dict[str, str]:
        """The environment of a user of the embedded defaults: only AIRLOCK_HOME."""
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("AIRLOCK_", "SOFTHSM2", "EXAMPLE_"))
        }
        env["AIRLOCK_HOME"] = str(self.home)
        return env

    def airlock(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [*AIRLOCK, *args], input=stdin, capture_output=True, text=True, env=self.env, timeout=60
        )
        assert done.returncode == 0, (args, done.stderr)
        return done

    def example(self, *argv: str, **settings: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            list(argv),
            capture_output=True,
            text=True,
            env=self.env | settings,
            timeout=120,
            cwd=EXAMPLES,
        )

    def items(self) -> dict[str, dict]:
        """Every queued item by idempotency key, read from the queue by the CLI."""
        listed = json.loads(self.airlock("queue", "list", "--json").stdout)
        return {item["idempotency_key"]: item for item in listed}


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    home = tmp_path_factory.mktemp("examples")
    secret = secrets.token_hex(32)
    with ExitStack() as stack:
        anvil = stack.enter_context(start_anvil())
        sim = stack.enter_context(BybitSim(API_KEY, secret=secret.encode()))
        rig = Rig(home, anvil, sim, "")
        rig.airlock("init")
        rig.airlock("hsm", "keygen", "--type", "secp256k1", "--label", "hot-1")
        rig.airlock("hsm", "import-secret", "--label", "bybit-hmac", stdin=secret + "\n")
        rig.address = rig.airlock("evm", "address", "--key", "hot-1").stdout.strip()
        anvil.rpc("anvil_setBalance", [rig.address, hex(10**21)])
        (home / "airlock.toml").write_text(
            f"""
[service]
metrics_port = 0  # tests run side by side: no fixed port

[[relays]]
name = "anvil"
kind = "evm-rpc"
url = "{anvil.url}"
chain_id = {anvil.chain_id}

[broadcaster]
confirmations = 1
reconcile_seconds = 0.2

[broadcaster.health]
probe_seconds = 0.2
probe_down_seconds = 0.05

[bybit]
base_url = "{sim.url}"
api_key = "{API_KEY}"
secret_label = "bybit-hmac"
probe_seconds = 0.2
reconcile_seconds = 0.5
retry_base_seconds = 0.05
retry_cap_seconds = 0.5
"""
        )
        yield rig


def answers(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.connect(str(path))
        except (FileNotFoundError, ConnectionRefusedError):
            return False
    return True


@pytest.fixture(scope="module")
def service(rig: Rig) -> Iterator[subprocess.Popen[bytes]]:
    """``airlock broadcaster run`` on the rig, serving $AIRLOCK_HOME/api.sock."""
    log = rig.home / "service.log"
    with log.open("ab") as sink:
        process = subprocess.Popen(
            [*AIRLOCK, "broadcaster", "run", "-q"],
            env=rig.env,
            stdout=sink,
            stderr=sink,
            stdin=subprocess.DEVNULL,
        )
    try:
        wait_until(
            lambda: process.poll() is not None or answers(rig.home / "api.sock"),
            60,
            "the service to serve its socket",
        )
        assert process.poll() is None, log.read_text()
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        assert process.returncode == 0, log.read_text()[-4000:]


def assert_mined(rig: Rig, item: dict) -> None:
    assert item["state"] == "confirmed", item
    receipt = rig.anvil.rpc("eth_getTransactionReceipt", [item["mined"]["hash"]])
    assert receipt is not None and int(receipt["status"], 16) == 1
    assert receipt["from"].lower() == rig.address.lower()


def test_the_library_bot_queues_in_an_outage_and_confirms_once_the_service_runs(
    rig: Rig, request: pytest.FixtureRequest
):
    bot = [sys.executable, "bot_library.py"]
    # No service yet: the bot queues, its wait ends, nothing has gone out.
    first = rig.example(*bot, EXAMPLE_WAIT_S="1")
    assert first.returncode == 2, first.stderr
    assert f"sender hot-1: {rig.address}" in first.stdout
    assert "(new)" in first.stdout and "still queued after 1 s" in first.stdout
    assert first.stdout.count("  step ") == 3 and first.stdout.count("  cancel ") == 1
    assert "live items:" in first.stdout
    items = rig.items()
    tx, order = items["library-pay-1"], items["library-order-1"]
    assert (tx["kind"], tx["state"], tx["nonce"]) == ("evm_tx", "queued", 0)
    assert (order["kind"], order["state"]) == ("bybit_order", "queued")
    assert f"transaction {tx['id']}: queued" in first.stdout
    assert f"order {order['id']}: queued" in first.stdout

    request.getfixturevalue("service")
    # The same bot again: the same items (replayed), confirmed this time.
    second = rig.example(*bot)
    assert second.returncode == 0, second.stderr
    assert f"transaction {tx['id']}:" in second.stdout and "(replayed" in second.stdout
    assert f"transaction {tx['id']} confirmed: 0x" in second.stdout
    items = rig.items()
    assert_mined(rig, items["library-pay-1"])
    assert sum(1 for key in items if key.startswith("library-")) == 2
    link = json.loads(rig.airlock("queue", "show", order["id"], "--json").stdout)
    link_id = link["payload"]["intent"]["orderLinkId"]
    wait_until(lambda: rig.sim.order(order_link_id=link_id) is not None, 30, "the order placed")


def test_the_socket_bot_queues_and_follows_the_event_stream(rig: Rig, service):
    bot = [sys.executable, "bot_socket.py"]
    done = rig.example(*bot)
    assert done.returncode == 0, (done.stdout, done.stderr)
    items = rig.items()
    queued = [items[f"socket-pay-{n}"] for n in (1, 2, 3)]
    for item in queued:
        assert_mined(rig, item)
        assert f"queued {item['id']} nonce {item['nonce']}" in done.stdout
        assert f"{item['id']} sent -> confirmed" in done.stdout
        assert f"{item['id']}: confirmed {item['mined']['hash']}" in done.stdout
    assert "(replayed)" not in done.stdout
    # Again: the same three items, already confirmed; nothing new is queued.
    again = rig.example(*bot)
    assert again.returncode == 0, again.stderr
    assert again.stdout.count("(replayed)") == 3
    assert {k: v["id"] for k, v in rig.items().items() if k.startswith("socket-")} == {
        f"socket-pay-{n}": item["id"] for n, item in zip((1, 2, 3), queued, strict=True)
    }


@pytest.mark.skipif(shutil.which("curl") is None, reason="needs curl")
def test_the_curl_script_queues_replays_lists_and_reads_the_events(rig: Rig, service):
    done = rig.example("bash", "queue_with_curl.sh")
    assert done.returncode == 0, (done.stdout, done.stderr)
    item = rig.items()["curl-pay-1"]
    assert_mined(rig, item)
    out = done.stdout
    assert '"status": "ok"' in out
    assert out.index("HTTP 201") < out.index("HTTP 200") < out.index("HTTP 409")
    assert f"item {item['id']}, state queued" in out
    assert f'"id": "{item["id"]}", "kind": "evm_tx"' in out  # the listing
    assert f"confirmed: {item['mined']['hash']}" in out
    assert "event: item.created" in out and '"state": "confirmed"' in out
    assert out.rstrip().endswith("done")


def test_the_socket_examples_fail_when_no_service_answers(rig: Rig, tmp_path: Path):
    nowhere = str(tmp_path / "no.sock")
    bot = rig.example(sys.executable, "bot_socket.py", EXAMPLE_SOCKET=nowhere)
    assert bot.returncode == 1 and "cannot reach the service" in bot.stderr
    if shutil.which("curl") is not None:
        script = rig.example("bash", "queue_with_curl.sh", EXAMPLE_SOCKET=nowhere)
        assert script.returncode == 1 and "cannot reach the service" in script.stderr
