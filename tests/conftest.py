"""Shared fixtures: one real SoftHSM token per test session, in a temporary data dir."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from airlock.config import HsmConfig, load_config
from airlock.hsm.keyring import KeyRing
from airlock.hsm.softhsm import init_embedded


@pytest.fixture(scope="session")
def token_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("airlock-home")
    init_embedded(home)
    return home


@pytest.fixture(scope="session")
def hsm_config(token_home: Path) -> HsmConfig:
    return load_config(env={"AIRLOCK_HOME": str(token_home)}).hsm


@pytest.fixture(scope="session")
def keyring(hsm_config: HsmConfig) -> Iterator[KeyRing]:
    ring = KeyRing.open(hsm_config, pin=None, prompt=None)
    yield ring
    ring.close()


@pytest.fixture
def eth_key(keyring: KeyRing):
    label = f"eth-{uuid.uuid4().hex[:10]}"
    keyring.generate("secp256k1", label)
    return keyring.ecdsa_key(label, curve="secp256k1")
