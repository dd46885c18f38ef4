"""`airlock broadcaster run`, `reconcile` and `links status` as an operator runs them:
real subprocesses, a real SoftHSM token, a real anvil and a real fault proxy.

Every test writes its own airlock.toml with its own queue file and uses its own HSM key,
so the tests share one token and one anvil without seeing each other's items. The PIN
only ever reaches the commands through AIRLOCK_PIN_FILE, never through argv.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.kits.cli import airlock, command_line, run

from airlock.config import embedded_paths
from airlock.hsm.pin import read_pin_file
from airlock.sim.anvil import Anvil
from airlock.sim.faultproxy import FaultProxy

pytestmark = pytest.mark.slow
ANVIL_PER_MODULE = True  # one node: every test has its own key and queue

CHAIN_ID = 31337
API_KEY = "0123456789abcdef0123456789abcdef"
SECRET = "s3cr3t-pw"  # distinctive, so a hit in the output cannot be a coincidence


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    home = tmp_path_factory.mktemp("cli-broadcast-home")
    done = run(home, "init")
    assert done.returncode == 0, done.stderr
    return home


@pytest.fixture
def down_proxy(anvil: Anvil) -> Iterator[FaultProxy]:
    """A relay whose link is cut: the port refuses connections."""
    with FaultProxy(anvil.url).start() as proxy:
        proxy.set_mode("down")
        yield proxy


def relay_table(name: str, url: str, chain_id: int = CHAIN_ID, **extra: Any) -> str:
    lines = [
        "[[relays]]",
        f'name = "{name}"',
        'kind = "evm-rpc"',
        f'url = "{url}"',
        f"chain_id = {chain_id}",
    ]
    lines += [f"{key} = {json.dumps(value)}" for key, value in extra.items()]
    return "\n".join(lines) + "\n"


def write_config(
    path: Path, relays: list[str], confirmations: int = 1, broadcaster: bool = True
) -> Path:
    text = f'[queue]\npath = "{path.parent / "queue.db"}"\n\n' + "\n".join(relays)
    if broadcaster:
        text += f"\n[broadcaster]\nconfirmations = {confirmations}\n"
    path.write_text(text)
    return path


def new_sender(home: Path, anvil: Anvil | None) -> str:
    """A fresh secp256k1 key in the HSM (its label), funded on anvil when given."""
    label = f"bc-{uuid.uuid4().hex[:10]}"
    gen = airlock(home, "hsm", "keygen", "--type", "secp256k1", "--label", label, "--json")
    assert gen.returncode == 0, gen.stderr
    if anvil is not None:
        address = json.loads(gen.stdout)["address"]
        anvil.rpc("anvil_setBalance", [address, hex(10**20)])
    return label


def queue_transfer(home: Path, config: Path, label: str) -> dict:
    options = {
        "chain-id": str(CHAIN_ID),
        "to": "0x000000000000000000000000000000000000dEaD",
        "value": "1000",
        "gas": "21000",
        "max-fee": "3000000000",
        "priority-fee": "1000000000",
    }
    command = ["--config", str(config), "evm", "queue", "--key", label]
    done = airlock(home, *command_line(command, options, {}), "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def queue_list(home: Path, config: Path) -> dict[str, dict]:
    done = airlock(home, "--config", str(config), "queue", "list", "--json")
    assert done.returncode == 0, done.stderr
    return {item["id"]: item for item in json.loads(done.stdout)}


def once(home: Path, config: Path, *extra: str) -> Any:
    return airlock(home, "broadcaster", "run", "--once", "--config", str(config), *extra)


def chain_nonce(anvil: Anvil, address: str) -> int:
    return int(anvil.rpc("eth_getTransactionCount", [address, "latest"]), 16)


@pytest.mark.anvil
def test_once_sends_everything_then_nothing_twice(home, anvil, tmp_path):
    config = write_config(tmp_path / "airlock.toml", [relay_table("anvil", anvil.url)])
    label = new_sender(home, anvil)
    queued = [queue_transfer(home, config, label) for _ in range(3)]
    sender = queued[0]["sender"]
    assert [q["nonce"] for q in queued] == [0, 1, 2]

    first = once(home, config, "--json")
    assert first.returncode == 0, first.stderr
    summary = json.loads(first.stdout)
    assert summary["sent"] == 3
    assert summary["queue"] == {"confirmed": 3}
    assert summary["alerts"] == []

    listed = queue_list(home, config)
    assert set(listed) == {q["id"] for q in queued}
    for q in queued:
        item = listed[q["id"]]
        assert item["state"] == "confirmed", item
        mined = item["mined"]["hash"]
        assert mined in {v["hash"] for v in q["variants"]}
        receipt = anvil.rpc("eth_getTransactionReceipt", [mined])
        assert receipt is not None and receipt["status"] == "0x1"
        assert receipt["from"].lower() == sender.lower()
        assert int(receipt["blockNumber"], 16) == item["mined"]["block"]
    assert chain_nonce(anvil, sender) == 3

    again = once(home, config, "--json")
    assert again.returncode == 0, again.stderr
    summary = json.loads(again.stdout)
    assert (summary["sent"], summary["bumped_or_rebroadcast"]) == (0, 0)
    assert summary["queue"] == {"confirmed": 3}
    assert chain_nonce(anvil, sender) == 3  # nothing went out twice

    pin = read_pin_file(embedded_paths(home)["user_pin"])
    for done in (first, again):
        assert pin not in done.stdout and pin not in done.stderr


@pytest.mark.anvil
def test_once_with_the_only_relay_down_sends_nothing_and_exits(home, anvil, down_proxy, tmp_path):
    # The longest timeouts allowed: a refused connection taken for one that might still
    # answer would sit out 60 s (and hit run()'s own 60 s bound). Given up on at once, the
    # run takes under a second here: the 30 s bound holds on a far slower machine too.
    cut = relay_table("cut", down_proxy.url, timeout_seconds=120, connect_timeout_seconds=60)
    config = write_config(tmp_path / "airlock.toml", [cut])
    label = new_sender(home, anvil)
    queued = [queue_transfer(home, config, label) for _ in range(2)]

    done = once(home, config, "--json")
    assert done.returncode == 0, done.stderr
    assert done.elapsed < 30, f"a refused connection took {done.elapsed:.1f} s to give up on"
    summary = json.loads(done.stdout)
    assert summary["sent"] == 0
    assert summary["queue"] == {"queued": 2}
    listed = queue_list(home, config)
    assert [listed[q["id"]]["state"] for q in queued] == ["queued", "queued"]
    assert down_proxy.sent_raw_transactions() == []
    assert chain_nonce(anvil, queued[0]["sender"]) == 0


@pytest.mark.anvil
def test_links_status_up_down_disabled(home, anvil, down_proxy, tmp_path):
    relays = [
        relay_table("good", anvil.url),
        relay_table("cut", down_proxy.url),
        relay_table("wrong-chain", anvil.url, chain_id=1),
    ]
    config = write_config(tmp_path / "airlock.toml", relays)

    as_json = airlock(home, "links", "status", "--config", str(config), "--json")
    assert as_json.returncode == 0, as_json.stderr
    rows = {row["relay"]: row for row in json.loads(as_json.stdout)}
    assert list(rows) == ["good", "cut", "wrong-chain"]

    good = rows["good"]
    # The first probe of a relay takes it from DOWN to DEGRADED: usable either way.
    assert good["state"] in {"up", "degraded"} and good["usable"] is True
    assert isinstance(good["head"], int) and good["last_error"] is None
    assert good["expected_chain_id"] == CHAIN_ID and good["url"] == anvil.url

    cut = rows["cut"]
    assert cut["state"] == "down" and cut["usable"] is False
    assert cut["last_error"] and cut["consecutive_failures"] == 1

    wrong = rows["wrong-chain"]
    assert wrong["state"] == "disabled" and wrong["usable"] is False
    assert wrong["expected_chain_id"] == 1
    assert "chain id" in wrong["last_error"]
    assert "reports 31337" in wrong["last_error"] and "configured 1" in wrong["last_error"]

    text = airlock(home, "links", "status", "--config", str(config))
    assert text.returncode == 0, text.stderr
    lines = text.stdout.splitlines()
    assert len(lines) == 3
    states = {line.split()[0]: line.split()[1] for line in lines}
    assert states == {"good": good["state"], "cut": "down", "wrong-chain": "disabled"}
    [wrong_line] = [line for line in lines if line.startswith("wrong-chain")]
    assert "reports 31337" in wrong_line and "configured 1" in wrong_line


@pytest.mark.anvil
def test_links_status_never_prints_url_credentials(home, anvil, down_proxy, tmp_path):
    keyed_down = f"http://user:{SECRET}@127.0.0.1:{down_proxy.port}/v3/{API_KEY}"
    keyed_anvil = f"http://user:{SECRET}@127.0.0.1:{anvil.port}/v3/{API_KEY}"
    relays = [relay_table("cut", keyed_down), relay_table("keyed", keyed_anvil)]
    config = write_config(tmp_path / "airlock.toml", relays)

    as_json = airlock(home, "links", "status", "--config", str(config), "--json")
    assert as_json.returncode == 0, as_json.stderr
    rows = {row["relay"]: row for row in json.loads(as_json.stdout)}
    assert rows["cut"]["url"] == f"http://***@127.0.0.1:{down_proxy.port}/v3/***"
    assert rows["keyed"]["url"] == f"http://***@127.0.0.1:{anvil.port}/v3/***"
    assert rows["cut"]["state"] == "down" and rows["cut"]["last_error"]
    text = airlock(home, "links", "status", "--config", str(config))
    assert text.returncode == 0, text.stderr
    assert "cut" in text.stdout and "keyed" in text.stdout

    for done in (as_json, text):
        for leaked in (SECRET, API_KEY):
            assert leaked not in done.stdout and leaked not in done.stderr


@pytest.mark.anvil
def test_reconcile_settles_what_was_sent_and_sends_nothing_new(home, anvil, tmp_path):
    relays = [relay_table("anvil", anvil.url)]
    deep = write_config(tmp_path / "airlock.toml", relays, confirmations=50)
    label = new_sender(home, anvil)
    sent = [queue_transfer(home, deep, label) for _ in range(2)]

    first = once(home, deep, "--json")
    assert first.returncode == 0, first.stderr
    summary = json.loads(first.stdout)
    assert summary["sent"] == 2
    assert summary["queue"] == {"sent": 2}  # mined, not yet 50 blocks deep

    late = queue_transfer(home, deep, label)  # reconcile must not dispatch this one
    anvil.rpc("anvil_mine", [hex(50)])
    done = airlock(home, "reconcile", "--config", str(deep), "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["sent"] == 0 and result["settled"] == 2
    assert result["queue"] == {"confirmed": 2, "queued": 1}
    listed = queue_list(home, deep)
    assert [listed[s["id"]]["state"] for s in sent] == ["confirmed", "confirmed"]
    assert listed[late["id"]]["state"] == "queued"
    assert chain_nonce(anvil, sent[0]["sender"]) == 2

    text = airlock(home, "reconcile", "--config", str(deep))
    assert text.returncode == 0, text.stderr
    assert "queue: queued 1, confirmed 2" in text.stdout


def assert_clean_failure(done: Any, *needles: str) -> None:
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert done.stdout == ""
    assert done.stderr.startswith("error:"), done.stderr
    assert "Traceback" not in done.stderr
    for needle in needles:
        assert needle in done.stderr, done.stderr


def test_no_relays_is_a_clean_error(home, tmp_path):
    config = write_config(tmp_path / "airlock.toml", [])
    assert_clean_failure(once(home, config), "[[relays]]")
    assert_clean_failure(airlock(home, "reconcile", "--config", str(config)), "[[relays]]")
    status = airlock(home, "links", "status", "--config", str(config))
    assert_clean_failure(status, "[[relays]]")


def test_bad_relay_kind_names_the_relay_and_the_key(home, tmp_path):
    table = relay_table("typo", "http://127.0.0.1:8545").replace("evm-rpc", "evm-rcp")
    config = write_config(tmp_path / "airlock.toml", [table])
    done = once(home, config)
    assert_clean_failure(done, '[[relays]] "typo"', "kind", "evm-rcp", "evm-rpc")


def test_missing_config_file_is_a_clean_error(home, tmp_path):
    missing = tmp_path / "nowhere.toml"
    assert_clean_failure(once(home, missing), str(missing), "does not exist")
    links = airlock(home, "links", "status", "--config", str(missing))
    assert_clean_failure(links, "does not exist")
