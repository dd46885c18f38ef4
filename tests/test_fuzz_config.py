"""Fuzz: airlock.config.load_config over random TOML documents.

Contract: an :class:`AirlockConfig` or :class:`ConfigError` (with a message), nothing else,
within the time bound. Documents are built from the real section and key names with values
of right and wrong types, plus raw random text.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from dataclasses import fields
from pathlib import Path
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from tests.kits.fuzz import fuzz, no_hang

from airlock.config import (
    AirlockConfig,
    BroadcasterConfig,
    BybitConfig,
    FailoverConfig,
    HealthConfig,
    LinkConfig,
    PolicyConfig,
    RelayConfig,
    ServiceConfig,
    load_config,
)
from airlock.config.hsm import HSM_KEYS as _HSM_KEYS
from airlock.config.settings import setting_names
from airlock.errors import ConfigError

_BROADCASTER_KEYS = setting_names(BroadcasterConfig)
_BYBIT_KEYS = setting_names(BybitConfig)
_HEALTH_KEYS = setting_names(HealthConfig)
_LINK_KEYS = setting_names(LinkConfig)
_POLICY_KEYS = setting_names(PolicyConfig)
_RELAY_KEYS = setting_names(RelayConfig)
_SERVICE_KEYS = setting_names(ServiceConfig)

SECTIONS: dict[str, set[str]] = {
    "hsm": _HSM_KEYS,
    "queue": {"path", "kek_label", "rotate_after"},
    "evm": {"bump_pct", "max_fee_cap"},
    "audit": {"key_label", "checkpoint_every", "checkpoint_seconds"},
    "broadcaster": _BROADCASTER_KEYS,
    "bybit": _BYBIT_KEYS,
    "failover": {f.name for f in fields(FailoverConfig)},
    "service": _SERVICE_KEYS,
}
ARRAYS: dict[str, set[str]] = {"links": _LINK_KEYS, "relays": _RELAY_KEYS}
SUBTABLES: dict[str, set[str]] = {"health": _HEALTH_KEYS, "policy": _POLICY_KEYS}

GOOD_STRINGS = [
    "airlock",
    "a-label",
    "linear",
    "spot",
    "evm-rpc",
    "evm-private",
    "primary",
    "backup",
    "eth_sendRawTransaction",
    "eth_sendPrivateTransaction",
    "text",
    "json",
    "GTC",
    "IOC",
    "127.0.0.1",
    "::1",
    "localhost",
    "10.0.0.1",
    "fe80::1%eth0",
    "http://127.0.0.1:8545",
    "https://user:pw@relay.example/v3/0123456789abcdef0123",
    "http://[::1]:99999",
    "http://[::1",
    "https://",
    "ftp://host",
    "pkcs11:token=airlock?module-path=/usr/lib/softhsm/libsofthsm2.so",
    "pkcs11:token=a;token=b",
    "pkcs11:object=x?pin-value=1234",
    "pkcs11:type=bogus",
    "file:/tmp/pin",
    "env:AIRLOCK_PIN",
    "/usr/lib/softhsm/libsofthsm2.so",
    "~/airlock/queue.db",
    "~nosuchuser-airlock-fuzz/queue.db",  # expanduser() cannot resolve this user
    "",
    " ",
    "x" * 65,
    "ABCD1234",
    "key with space",
]


def toml_key(key: str) -> str:
    return json.dumps(key)  # a TOML basic string is a JSON string without lone surrogates


def toml_value(value: Any) -> str:
    """One TOML value; tables inline, so any nesting is one expression."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{toml_key(k)} = {toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(type(value))


def toml_document(data: dict[str, Any]) -> str:
    return "".join(f"{toml_key(k)} = {toml_value(v)}\n" for k, v in data.items())


text = st.text(st.characters(exclude_categories=("Cs",)), max_size=30)
scalars = st.one_of(
    st.booleans(),
    st.integers(-(2**63), 2**63 - 1),  # TOML integers are 64-bit
    st.sampled_from([0, 1, -1, 3, 10, 100, 65535, 65536, 2**32 - 1, 2**32, 2**63 - 1]),
    st.floats(),
    st.sampled_from([0.0, 0.01, 0.1, 0.5, 1.0, 2.0, 12.5, 120.0, 1e300]),
    st.sampled_from(GOOD_STRINGS),
    text,
    st.datetimes(),
    st.dates(),
    st.times(),
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3),
    max_leaves=6,
)


def table_of(keys: set[str]) -> st.SearchStrategy[dict[str, Any]]:
    names = st.sampled_from(sorted(keys)) | text
    return st.dictionaries(names, values, max_size=len(keys) + 1)


@st.composite
def section_value(draw: st.DrawFn, keys: set[str]) -> Any:
    table = draw(table_of(keys))
    for name, sub_keys in SUBTABLES.items():  # [broadcaster.health], [bybit.policy]
        if name in table and draw(st.booleans()):
            table[name] = draw(table_of(sub_keys))
    return draw(st.sampled_from([table, table, table, [table], "not a table", 1]))


@st.composite
def documents(draw: st.DrawFn) -> dict[str, Any]:
    doc: dict[str, Any] = {}
    for name in draw(st.sets(st.sampled_from(sorted(SECTIONS)), max_size=len(SECTIONS))):
        doc[name] = draw(section_value(SECTIONS[name]))
    for name in draw(st.sets(st.sampled_from(sorted(ARRAYS)), max_size=2)):
        tables = draw(st.lists(table_of(ARRAYS[name]), max_size=3))
        doc[name] = draw(st.sampled_from([tables, tables, {"not": "an array"}, [1, 2]]))
    if draw(st.integers(0, 9)) == 0:
        doc[draw(text)] = draw(values)  # an unknown top-level key
    return doc


def check_load(path: Path, home: Path) -> None:
    with no_hang():
        try:
            config = load_config(path, env={"AIRLOCK_HOME": str(home)})
        except ConfigError as exc:
            assert str(exc), "a ConfigError without a message"
            return
    assert isinstance(config, AirlockConfig)


@fuzz(300)
@given(doc=documents())
def test_structured_documents_load_or_raise_config_error(doc, tmp_path):
    path = tmp_path / "airlock.toml"
    path.write_text(toml_document(doc))
    check_load(path, tmp_path)


TOML_BITS = st.sampled_from(
    [
        "[hsm]\n",
        "[queue]\n",
        "[[relays]]\n",
        "[[links]]\n",
        "[bybit]\n",
        "[bybit.policy]\n",
        "[broadcaster.health]\n",
        "[service]\n",
        'name = "a"\n',
        'kind = "evm-rpc"\n',
        'url = "http://127.0.0.1:1"\n',
        "chain_id = 1\n",
        "x = [\n",
        "x = {\n",
        'x = """\n',
        "x = 1979-05-27T07:32:00Z\n",
        "x = 0x_1\n",
        "x = inf\n",
        "= 1\n",
        "[\n",
        "\\",
        "\x00",
        "\ufeff",
    ]
)


@fuzz(200)
@given(raw=st.lists(TOML_BITS | st.text(max_size=20), max_size=12).map("".join) | st.binary())
def test_raw_text_loads_or_raises_config_error(raw, tmp_path):
    path = tmp_path / "airlock.toml"
    if isinstance(raw, bytes):
        path.write_bytes(raw)
    else:
        path.write_text(raw, errors="surrogatepass")
    check_load(path, tmp_path)


VALID: dict[str, Any] = {
    "hsm": {"module": "/usr/lib/softhsm/libsofthsm2.so", "token": "airlock"},
    "queue": {"path": "/tmp/airlock-fuzz/queue.db", "kek_label": "kek", "rotate_after": 1000},
    "evm": {"bump_pct": 12.5, "max_fee_cap": 10**12},
    "audit": {"key_label": "audit", "checkpoint_every": 10, "checkpoint_seconds": 60},
    "links": [{"name": "wan"}, {"name": "lte", "source_address": "127.0.0.1"}],
    "relays": [
        {"name": "a", "kind": "evm-rpc", "url": "http://127.0.0.1:8545", "chain_id": 1},
        {
            "name": "p",
            "kind": "evm-private",
            "url": "https://relay.example",
            "chain_id": 1,
            "link": "lte",
            "method": "eth_sendPrivateTransaction",
            "auth_key_label": "fb",
            "timeout_seconds": 5.0,
            "connect_timeout_seconds": 1.0,
            "batch_size": 10,
            "role": "backup",
        },
    ],
    "broadcaster": {
        "confirmations": 2,
        "reorg_depth": 10,
        "resign": True,
        "resign_max_fee_per_gas": 10**11,
        "health": {"probe_seconds": 1.0, "fall": 3, "rise": 2, "slow_ms": 100},
    },
    "bybit": {
        "base_url": "https://api.bybit.com",
        "api_key": "ABCD1234",
        "secret_label": "bybit-secret",
        "category": "linear",
        "retry_base_seconds": 0.5,
        "retry_cap_seconds": 30.0,
        "policy": {"default_ttl_s": 60, "max_ttl_s": 600, "market_limit_tif": "IOC"},
    },
    "failover": {"heartbeat_gap_ms": 3000, "backup_window_s": 30.0},
    "service": {
        "metrics_port": 0,
        "log_format": "json",
        "webhook_url": "https://hooks.example/x",
        "webhook_secret_label": "hook",
        "alert_command": ["/bin/true"],
    },
}


def paths_of(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every place in ``value`` a mutation can hit: each table key and list index."""
    out = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, inner in value.items():
            out += paths_of(inner, (*prefix, key))
    elif isinstance(value, list):
        for index, inner in enumerate(value):
            out += paths_of(inner, (*prefix, index))
    return out


VALID_PATHS = paths_of(VALID)


@st.composite
def near_valid_documents(draw: st.DrawFn) -> dict[str, Any]:
    """The valid document with one to three values replaced, removed or joined by a stray key."""
    doc = json.loads(json.dumps(VALID))
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(VALID_PATHS))
        parent: Any = doc
        try:
            for step in path[:-1]:
                parent = parent[step]
            last = path[-1]
            parent[last]
        except (KeyError, IndexError, TypeError):
            continue
        action = draw(st.sampled_from(["replace", "replace", "replace", "delete", "stray"]))
        if action == "replace":
            parent[last] = draw(values)
        elif action == "delete":
            del parent[last]
        elif isinstance(parent, dict):
            parent[draw(text)] = draw(values)
    return doc


def test_the_valid_document_is_valid(tmp_path):
    path = tmp_path / "airlock.toml"
    path.write_text(toml_document(VALID))
    assert isinstance(load_config(path, env={"AIRLOCK_HOME": str(tmp_path)}), AirlockConfig)


@fuzz(300)
@given(doc=near_valid_documents())
def test_near_valid_documents_load_or_raise_config_error(doc, tmp_path):
    path = tmp_path / "airlock.toml"
    path.write_text(toml_document(doc))
    check_load(path, tmp_path)


SWEEP_VALUES: list[Any] = [
    *GOOD_STRINGS,
    True,
    0,
    -1,
    2**63 - 1,
    0.0,
    math.nan,
    math.inf,
    -math.inf,
    [],
    [""],
    {},
    {"x": 1},
    dt.datetime(2020, 1, 1),
    dt.time(1, 2),
]


def test_every_key_with_every_tricky_value(tmp_path):
    """A sweep the random search would rarely hit: each setting of the valid document set
    to each tricky value in turn (about 3,000 loads, each a ConfigError or a config)."""
    path = tmp_path / "airlock.toml"
    for where in VALID_PATHS:
        for value in SWEEP_VALUES:
            doc = json.loads(json.dumps(VALID))
            parent: Any = doc
            for step in where[:-1]:
                parent = parent[step]
            parent[where[-1]] = value
            path.write_text(toml_document(doc))
            try:
                check_load(path, tmp_path)
            except AssertionError:
                raise
            except Exception as exc:
                raise AssertionError(f"{where} = {value!r}: {type(exc).__name__}: {exc}") from exc
