"""The whole configuration: ``airlock.toml`` read once, each table handed to its section.

Precedence, highest first: environment variables, the TOML file, built-in defaults.
Unknown top-level tables are ignored (a newer file on an older airlock); unknown keys inside
a known table are refused, because a misspelt setting silently left at its default is the
likeliest configuration mistake.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from airlock.config.bybit import BybitConfig, load_bybit
from airlock.config.checks import expand_path
from airlock.config.hsm import HsmConfig, load_hsm
from airlock.config.network import (
    BroadcasterConfig,
    FailoverConfig,
    LinkConfig,
    RelayConfig,
    load_broadcaster,
    load_links,
    load_relays,
)
from airlock.config.sections import (
    ApiConfig,
    AuditConfig,
    EvmConfig,
    QueueConfig,
    ServiceConfig,
    load_api,
    load_queue,
    load_service,
)
from airlock.config.settings import load_section
from airlock.config.slo import SloConfig
from airlock.errors import ConfigError


@dataclass(frozen=True)
class AirlockConfig:
    home: Path
    hsm: HsmConfig
    queue: QueueConfig
    evm: EvmConfig = field(default_factory=EvmConfig)
    audit: AuditConfig = field(default_factory=AuditConfig)
    relays: tuple[RelayConfig, ...] = ()
    links: tuple[LinkConfig, ...] = ()
    broadcaster: BroadcasterConfig = field(default_factory=BroadcasterConfig)
    bybit: BybitConfig | None = None  # None: no [bybit] section
    failover: FailoverConfig = field(default_factory=FailoverConfig)
    service: ServiceConfig = field(default_factory=ServiceConfig)
    api: ApiConfig = field(default_factory=ApiConfig)
    slo: SloConfig = field(default_factory=SloConfig)
    source: Path | None = None  # the TOML file read, if any


def airlock_home(env: Mapping[str, str] = os.environ) -> Path:
    """The data directory: ``$AIRLOCK_HOME`` or ``~/.airlock``."""
    raw = env.get("AIRLOCK_HOME")
    return expand_path("AIRLOCK_HOME", raw) if raw else Path.home() / ".airlock"


def load_config(path: Path | None = None, env: Mapping[str, str] = os.environ) -> AirlockConfig:
    """Load the configuration; ``path`` defaults to ``$AIRLOCK_HOME/airlock.toml``.

    A missing default file is fine (embedded defaults); a missing explicit file is not.
    """
    home = airlock_home(env)
    explicit = path is not None
    path = Path(path) if path is not None else home / "airlock.toml"
    if path.exists():
        data = _read(path)
    elif explicit:
        raise ConfigError(f"config file {path} does not exist")
    else:
        data = {}
    hsm = load_hsm(home, _table(data, "hsm", path), env)
    links = load_links(_array_of_tables(data, "links", path))
    return AirlockConfig(
        home=home,
        hsm=hsm,
        queue=load_queue(home, _table(data, "queue", path), env),
        evm=load_section(EvmConfig, "evm", _table(data, "evm", path)),
        audit=load_section(AuditConfig, "audit", _table(data, "audit", path)),
        relays=load_relays(_array_of_tables(data, "relays", path), links),
        links=links,
        broadcaster=load_broadcaster(_table(data, "broadcaster", path)),
        bybit=load_bybit(_table(data, "bybit", path)) if "bybit" in data else None,
        failover=load_section(FailoverConfig, "failover", _table(data, "failover", path)),
        service=load_service(_table(data, "service", path)),
        api=load_api(_table(data, "api", path)),
        slo=load_section(SloConfig, "slo", _table(data, "slo", path)),
        source=path if path.exists() else None,
    )


def _read(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text())
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read config {path}: {exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config {path} is not valid TOML: {exc}") from exc


def _table(data: Mapping[str, Any], name: str, path: Path) -> dict[str, Any]:
    table = data.get(name, {})
    if not isinstance(table, dict):
        raise ConfigError(f"config {path}: [{name}] must be a table")
    return table


def _array_of_tables(data: Mapping[str, Any], name: str, path: Path) -> list[dict[str, Any]]:
    items = data.get(name, [])
    if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
        raise ConfigError(f"config {path}: {name} must be an array of tables ([[{name}]])")
    return items
