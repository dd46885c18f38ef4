"""One typed configuration object, loaded from ``airlock.toml`` and the environment.

Precedence, highest first: environment variables, the TOML file, built-in defaults.
With no PKCS#11 module configured anywhere, airlock uses the *embedded* SoftHSM2 token
that ``airlock init`` creates under the data directory: fine for development and drills,
never for production keys.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from airlock.errors import ConfigError
from airlock.hsm.uri import parse_pkcs11_uri

EMBEDDED_TOKEN_LABEL = "airlock"
SOFTHSM_MODULE_CANDIDATES = (
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/local/lib/softhsm/libsofthsm2.so",
    "/opt/homebrew/lib/softhsm/libsofthsm2.so",
)


@dataclass(frozen=True)
class HsmConfig:
    """Where the keys live and how to log in.

    ``pin_source`` is ``file:/path`` or ``env:NAME``; it is consulted after the
    ``AIRLOCK_PIN`` / ``AIRLOCK_PIN_FILE`` variables and before an interactive prompt.
    ``softhsm_conf`` is exported as ``SOFTHSM2_CONF`` before the module loads.
    """

    module_path: Path
    token_label: str
    pin_source: str | None = None
    softhsm_conf: Path | None = None
    embedded: bool = False


@dataclass(frozen=True)
class QueueConfig:
    """The encrypted queue: where it lives and how its data keys are handled.

    ``rotate_after``: encryptions under one data key before a new one is made; far below
    the 2^32 random-nonce limit of AES-GCM.
    """

    path: Path
    kek_label: str = "airlock-kek"
    rotate_after: int = 1 << 24


@dataclass(frozen=True)
class EvmConfig:
    """Defaults for queued transactions; the CLI options override them."""

    bump_pct: float = 12.5
    max_fee_cap: int | None = None  # wei per gas; None: only the node's 1-ether fee cap


@dataclass(frozen=True)
class AuditConfig:
    """The audit log's checkpoint key and how often a checkpoint is signed."""

    key_label: str = "airlock-audit"
    checkpoint_every: int = 1000  # entries
    checkpoint_seconds: int = 60


@dataclass(frozen=True)
class AirlockConfig:
    home: Path
    hsm: HsmConfig
    queue: QueueConfig
    evm: EvmConfig = EvmConfig()
    audit: AuditConfig = AuditConfig()
    source: Path | None = None  # the TOML file read, if any


def airlock_home(env: Mapping[str, str] = os.environ) -> Path:
    """The data directory: ``$AIRLOCK_HOME`` or ``~/.airlock``."""
    raw = env.get("AIRLOCK_HOME")
    return Path(raw).expanduser() if raw else Path.home() / ".airlock"


def find_softhsm_module() -> Path | None:
    """The SoftHSM2 module installed on this machine, if any."""
    for candidate in SOFTHSM_MODULE_CANDIDATES:
        if Path(candidate).is_file():
            return Path(candidate)
    return None


def embedded_paths(home: Path) -> dict[str, Path]:
    """Files of the embedded SoftHSM token, all under the data directory."""
    base = home / "softhsm"
    return {
        "dir": base,
        "conf": base / "softhsm2.conf",
        "tokens": base / "tokens",
        "user_pin": base / "user.pin",
        "so_pin": base / "so.pin",
    }


def load_config(path: Path | None = None, env: Mapping[str, str] = os.environ) -> AirlockConfig:
    """Load the configuration; ``path`` defaults to ``$AIRLOCK_HOME/airlock.toml``.

    A missing default file is fine (embedded defaults); a missing explicit file is not.
    """
    home = airlock_home(env)
    explicit = path is not None
    path = Path(path) if path is not None else home / "airlock.toml"
    data: dict[str, Any] = {}
    if path.exists():
        try:
            data = tomllib.loads(path.read_text())
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read config {path}: {exc}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config {path} is not valid TOML: {exc}") from exc
    elif explicit:
        raise ConfigError(f"config file {path} does not exist")
    hsm = _hsm_config(home, _table(data, "hsm", path), env)
    return AirlockConfig(
        home=home,
        hsm=hsm,
        queue=_queue_config(home, _table(data, "queue", path)),
        evm=_evm_config(_table(data, "evm", path)),
        audit=_audit_config(_table(data, "audit", path)),
        source=path if path.exists() else None,
    )


def _table(data: Mapping[str, Any], name: str, path: Path) -> dict[str, Any]:
    table = data.get(name, {})
    if not isinstance(table, dict):
        raise ConfigError(f"config {path}: [{name}] must be a table")
    return table


def _check_keys(section: str, table: Mapping[str, Any], known: set[str]) -> None:
    unknown = set(table) - known
    if unknown:
        raise ConfigError(
            f"[{section}]: unknown setting(s) {', '.join(sorted(unknown))}; "
            f"known: {', '.join(sorted(known))}"
        )


def _int_setting(section: str, key: str, value: Any, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConfigError(f"[{section}] {key} must be an integer in {low}..{high}, got {value!r}")
    return value


def _label_setting(section: str, key: str, table: Mapping[str, Any]) -> str:
    label = table[key]
    if not isinstance(label, str) or not 1 <= len(label) <= 64:
        raise ConfigError(f"[{section}] {key} must be a string of 1-64 characters")
    return label


def _queue_config(home: Path, table: Mapping[str, Any]) -> QueueConfig:
    _check_keys("queue", table, {"path", "kek_label", "rotate_after"})
    config = QueueConfig(path=home / "queue.db")
    if "path" in table:
        if not isinstance(table["path"], str) or not table["path"]:
            raise ConfigError("[queue] path must be a non-empty string")
        config = replace(config, path=Path(table["path"]).expanduser())
    if "kek_label" in table:
        config = replace(config, kek_label=_label_setting("queue", "kek_label", table))
    if "rotate_after" in table:
        value = _int_setting("queue", "rotate_after", table["rotate_after"], 1, (1 << 32) - 1)
        config = replace(config, rotate_after=value)
    return config


def _audit_config(table: Mapping[str, Any]) -> AuditConfig:
    _check_keys("audit", table, {"key_label", "checkpoint_every", "checkpoint_seconds"})
    config = AuditConfig()
    if "key_label" in table:
        config = replace(config, key_label=_label_setting("audit", "key_label", table))
    if "checkpoint_every" in table:
        value = _int_setting("audit", "checkpoint_every", table["checkpoint_every"], 1, 10**9)
        config = replace(config, checkpoint_every=value)
    if "checkpoint_seconds" in table:
        value = _int_setting("audit", "checkpoint_seconds", table["checkpoint_seconds"], 1, 86400)
        config = replace(config, checkpoint_seconds=value)
    return config


def _evm_config(table: Mapping[str, Any]) -> EvmConfig:
    _check_keys("evm", table, {"bump_pct", "max_fee_cap"})
    config = EvmConfig()
    if "bump_pct" in table:
        value = table["bump_pct"]
        if isinstance(value, bool) or not isinstance(value, int | float) or not 10 <= value <= 1000:
            raise ConfigError(f"[evm] bump_pct must be a number in 10..1000, got {value!r}")
        config = replace(config, bump_pct=float(value))
    if "max_fee_cap" in table:
        value = _int_setting("evm", "max_fee_cap", table["max_fee_cap"], 1, 10**30)
        config = replace(config, max_fee_cap=value)
    return config


_HSM_KEYS = {"uri", "module", "token", "pin_source", "softhsm_conf"}


def _hsm_config(home: Path, table: Mapping[str, Any], env: Mapping[str, str]) -> HsmConfig:
    _check_keys("hsm", table, _HSM_KEYS)
    for key, value in table.items():
        if not isinstance(value, str):
            raise ConfigError(f"[hsm] {key} must be a string")
    settings = dict(table)
    env_map = {
        "AIRLOCK_PKCS11_URI": "uri",
        "AIRLOCK_PKCS11_MODULE": "module",
        "AIRLOCK_TOKEN_LABEL": "token",
    }
    for var, key in env_map.items():
        if env.get(var):
            settings[key] = env[var]
    if "uri" in settings:
        uri = parse_pkcs11_uri(settings["uri"])
        for key, value in (
            ("module", uri.module_path),
            ("token", uri.token),
            ("pin_source", uri.pin_source),
        ):
            if value is None:
                continue
            if key in settings and settings[key] != value:
                raise ConfigError(f"[hsm] {key} and the pkcs11 URI disagree; set only one")
            settings[key] = value
    softhsm_conf = settings.get("softhsm_conf") or env.get("SOFTHSM2_CONF")
    if "module" in settings:
        return HsmConfig(
            module_path=Path(settings["module"]).expanduser(),
            token_label=settings.get("token") or EMBEDDED_TOKEN_LABEL,
            pin_source=settings.get("pin_source"),
            softhsm_conf=Path(softhsm_conf).expanduser() if softhsm_conf else None,
        )
    paths = embedded_paths(home)
    module = find_softhsm_module()
    return HsmConfig(
        module_path=module or Path(SOFTHSM_MODULE_CANDIDATES[0]),
        token_label=settings.get("token") or EMBEDDED_TOKEN_LABEL,
        pin_source=settings.get("pin_source") or f"file:{paths['user_pin']}",
        softhsm_conf=paths["conf"],
        embedded=True,
    )
