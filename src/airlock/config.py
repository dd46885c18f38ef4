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
from dataclasses import dataclass
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
class AirlockConfig:
    home: Path
    hsm: HsmConfig
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
    hsm_table = data.get("hsm", {})
    if not isinstance(hsm_table, dict):
        raise ConfigError(f"config {path}: [hsm] must be a table")
    hsm = _hsm_config(home, hsm_table, env)
    return AirlockConfig(home=home, hsm=hsm, source=path if path.exists() else None)


_HSM_KEYS = {"uri", "module", "token", "pin_source", "softhsm_conf"}


def _hsm_config(home: Path, table: Mapping[str, Any], env: Mapping[str, str]) -> HsmConfig:
    unknown = set(table) - _HSM_KEYS
    if unknown:
        raise ConfigError(
            f"[hsm]: unknown setting(s) {', '.join(sorted(unknown))}; "
            f"known: {', '.join(sorted(_HSM_KEYS))}"
        )
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
