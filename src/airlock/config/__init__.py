"""One typed configuration object, loaded from ``airlock.toml`` and the environment.

Precedence, highest first: environment variables, the TOML file, built-in defaults.
With no PKCS#11 module configured anywhere, airlock uses the *embedded* SoftHSM2 token
that ``airlock init`` creates under the data directory: fine for development and drills,
never for production keys.

The floor of the house: this package imports nothing of airlock but the leaves
(:mod:`airlock.errors`, :mod:`airlock.redact`, :mod:`airlock.vocab`,
:mod:`airlock.pkcs11_uri`), so every room may read its settings from here.

- :mod:`~airlock.config.settings`: ``setting(...)`` declarations and the one loader
  that derives every section's validation from them;
- :mod:`~airlock.config.checks`: the values an annotation cannot describe (URLs, labels,
  paths, loopback addresses);
- :mod:`~airlock.config.hsm`, :mod:`~airlock.config.sections`,
  :mod:`~airlock.config.network`, :mod:`~airlock.config.bybit`: the sections, each with
  the few rules that relate its fields;
- :mod:`~airlock.config.load`: the file, its tables, and :class:`AirlockConfig`.
"""

from __future__ import annotations

from airlock.config.bybit import BPS_PER_UNIT, BybitConfig, PolicyConfig, StreamConfig
from airlock.config.hsm import EMBEDDED_TOKEN_LABEL, HsmConfig, embedded_paths
from airlock.config.load import AirlockConfig, airlock_home, load_config
from airlock.config.network import (
    BroadcasterConfig,
    FailoverConfig,
    HealthConfig,
    LinkConfig,
    RelayConfig,
)
from airlock.config.sections import ApiConfig, AuditConfig, EvmConfig, QueueConfig, ServiceConfig
from airlock.config.slo import SloConfig
from airlock.redact import redact_url
from airlock.vocab import LOG_FORMATS, PRIVATE_METHODS, RELAY_KINDS, RELAY_ROLES

__all__ = [
    "BPS_PER_UNIT",
    "EMBEDDED_TOKEN_LABEL",
    "LOG_FORMATS",
    "PRIVATE_METHODS",
    "RELAY_KINDS",
    "RELAY_ROLES",
    "AirlockConfig",
    "ApiConfig",
    "AuditConfig",
    "BroadcasterConfig",
    "BybitConfig",
    "EvmConfig",
    "FailoverConfig",
    "HealthConfig",
    "HsmConfig",
    "LinkConfig",
    "PolicyConfig",
    "QueueConfig",
    "RelayConfig",
    "ServiceConfig",
    "SloConfig",
    "StreamConfig",
    "airlock_home",
    "embedded_paths",
    "load_config",
    "redact_url",
]
