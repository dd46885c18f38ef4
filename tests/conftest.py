"""Shared fixtures: one real SoftHSM token per test process, in a temporary data dir, and
a local anvil chain. The helpers tests import live in tests/kits/ (see its docstring).

``pkcs11.lib()`` caches the loaded module per path for the whole process and SoftHSM
reads ``SOFTHSM2_CONF`` only at ``C_Initialize``, so every test in one pytest process
shares this single token home. Under pytest-xdist each worker is its own process with its
own temporary directory, so each has its own token: nothing here is shared between workers.

Tests marked ``slow`` (subprocesses, kills, chaos) are collected first so that a parallel
run starts its longest tests early instead of ending on them.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings
from tests.kits import anvil as anvil_kit
from tests.kits.labels import unique_label

from airlock.config import HsmConfig, embedded_paths, load_config
from airlock.hsm.keyring import HsmEcdsaKey, KeyRing
from airlock.hsm.pin import read_pin_file
from airlock.hsm.softhsm import init_embedded
from airlock.queue.kek import HsmKek
from airlock.queue.store import Store
from airlock.sim.anvil import Anvil

# Fixtures kept beside their helpers: pg_cluster and pg_url; queue_backend and
# queue_location (and both engines for a module that sets BACKENDS).
pytest_plugins = ["tests.kits.postgres", "tests.kits.backends"]

settings.register_profile("airlock", deadline=None)  # no test fails on how long it took
settings.load_profile("airlock")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)  # stable


@pytest.fixture(scope="session")
def token_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("airlock-home")
    init_embedded(home)
    return home


@pytest.fixture(scope="session")
def hsm_config(token_home: Path) -> HsmConfig:
    return load_config(env={"AIRLOCK_HOME": str(token_home)}).hsm


@pytest.fixture(scope="session")
def user_pin(token_home: Path) -> str:
    """The PIN from the file init_embedded wrote; never from AIRLOCK_PIN in the env."""
    return read_pin_file(embedded_paths(token_home)["user_pin"])


@pytest.fixture(scope="session")
def keyring(hsm_config: HsmConfig, user_pin: str) -> Iterator[KeyRing]:
    ring = KeyRing.open(hsm_config, pin=user_pin)
    yield ring
    ring.close()


@pytest.fixture
def eth_key(keyring: KeyRing) -> HsmEcdsaKey:
    label = unique_label("eth")
    keyring.generate("secp256k1", label)
    return keyring.ecdsa_key(label, curve="secp256k1")


@pytest.fixture(scope="session")
def kek(keyring: KeyRing) -> HsmKek:
    """The session's key-encryption key (created on first use, like a fresh install)."""
    return HsmKek(keyring, unique_label("kek"))


@pytest.fixture
def store(queue_location: Path | str, kek: HsmKek) -> Iterator[Store]:
    """A fresh queue: a file in a temporary directory, or a fresh PostgreSQL database in a
    module that sets ``BACKENDS`` (tests/kits/backends.py)."""
    with Store.open(queue_location, kek) as opened:
        yield opened


@pytest.fixture
def dead_url() -> Iterator[str]:
    """A loopback port that is bound but never listens: connections are refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


@pytest.fixture(scope="module")
def module_anvil(request: pytest.FixtureRequest) -> Iterator[Anvil]:
    """One anvil node for all the tests of a module that sets ``ANVIL_PER_MODULE = True``
    (what ``anvil`` returns there); for that module's module-scoped fixtures."""
    with anvil_kit.node_for(request.module) as node:
        yield node


@pytest.fixture
def anvil(request: pytest.FixtureRequest) -> Iterator[Anvil]:
    """A local chain (id 31337), fresh per test because tests pause mining, set fees and
    reorg. A module may set ``ANVIL_PER_MODULE = True`` (one node for all its tests) and
    ``ANVIL_AUTOMINE = False`` (mined only on ``evm_mine``): see tests/kits/anvil.py."""
    if anvil_kit.per_module(request.module):
        yield request.getfixturevalue("module_anvil")
        return
    with anvil_kit.node_for(request.module) as node:
        yield node
