"""``[hsm]``: which PKCS#11 module and token hold the keys, and where the PIN comes from.

Special among the sections: its keys are not its fields (``uri`` fills in the others), and
the environment overrides the file. With no module configured anywhere, airlock uses the
*embedded* SoftHSM2 token that ``airlock init`` creates under the data directory. Finding
the installed SoftHSM2 library is the HSM room's job (:mod:`airlock.hsm.discovery`): the
configuration only says "embedded" and never looks at the disk for it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from airlock.config.checks import expand_path
from airlock.config.settings import check_keys
from airlock.errors import ConfigError
from airlock.pkcs11_uri import parse_pkcs11_uri

EMBEDDED_TOKEN_LABEL = "airlock"
HSM_KEYS = frozenset({"uri", "module", "token", "pin_source", "softhsm_conf"})
_ENV = {
    "AIRLOCK_PKCS11_URI": "uri",
    "AIRLOCK_PKCS11_MODULE": "module",
    "AIRLOCK_TOKEN_LABEL": "token",
}


@dataclass(frozen=True)
class HsmConfig:
    """Where the keys live and how to log in.

    ``module_path`` is ``None`` for the embedded token: the HSM room finds the installed
    SoftHSM2 when it opens the module. ``pin_source`` is ``file:/path`` or ``env:NAME``; it
    is consulted after the ``AIRLOCK_PIN`` / ``AIRLOCK_PIN_FILE`` variables and before an
    interactive prompt. ``softhsm_conf`` is exported as ``SOFTHSM2_CONF`` before the module
    loads.
    """

    module_path: Path | None
    token_label: str
    pin_source: str | None = None
    softhsm_conf: Path | None = None
    embedded: bool = False


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


def load_hsm(home: Path, table: Mapping[str, Any], env: Mapping[str, str]) -> HsmConfig:
    """``[hsm]`` with the environment's overrides; no module anywhere: the embedded token."""
    settings = _settings(table, env)
    token = settings.get("token") or EMBEDDED_TOKEN_LABEL
    softhsm_conf = settings.get("softhsm_conf") or env.get("SOFTHSM2_CONF")
    if "module" in settings:
        return HsmConfig(
            module_path=expand_path("[hsm] module", settings["module"]),
            token_label=token,
            pin_source=settings.get("pin_source"),
            softhsm_conf=expand_path("[hsm] softhsm_conf", softhsm_conf) if softhsm_conf else None,
        )
    paths = embedded_paths(home)
    return HsmConfig(
        module_path=None,
        token_label=token,
        pin_source=settings.get("pin_source") or f"file:{paths['user_pin']}",
        softhsm_conf=paths["conf"],
        embedded=True,
    )


def _settings(table: Mapping[str, Any], env: Mapping[str, str]) -> dict[str, str]:
    """The file's strings, then the variables, then what a ``pkcs11:`` URI names."""
    check_keys("hsm", table, set(HSM_KEYS))
    for key, value in table.items():
        if not isinstance(value, str):
            raise ConfigError(f"[hsm] {key} must be a string")
    settings = dict(table)
    settings.update({key: env[var] for var, key in _ENV.items() if env.get(var)})
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
    return settings
