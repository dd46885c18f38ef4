"""RFC 7512 ``pkcs11:`` URIs, the portable way to name a token and a key.

Only the attributes airlock uses are interpreted: ``token``, ``object``, ``type`` in the
path, ``module-path`` and ``pin-source`` in the query. ``pin-value`` is refused: a PIN
written into a URI ends up in shell history, process lists and config backups.

A leaf (it imports only :mod:`airlock.errors`) because the configuration parses
``[hsm] uri`` when it loads, and the configuration sits below the HSM room.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote

from airlock.errors import ConfigError

_PATH_ATTRS = {
    "token",
    "object",
    "type",
    "id",
    "manufacturer",
    "model",
    "serial",
    "library-description",
    "library-manufacturer",
    "library-version",
    "slot-description",
    "slot-id",
    "slot-manufacturer",
}
_QUERY_ATTRS = {"module-path", "module-name", "pin-source", "pin-value"}


@dataclass(frozen=True)
class Pkcs11Uri:
    token: str | None = None
    object: str | None = None
    type: str | None = None
    module_path: str | None = None
    pin_source: str | None = None


def _split_attrs(part: str, sep: str, allowed: set[str], where: str) -> dict[str, str]:
    attrs: dict[str, str] = {}
    for item in filter(None, part.split(sep)):
        name, eq, value = item.partition("=")
        if not eq:
            raise ConfigError(f"pkcs11 URI: {where} attribute {item!r} has no '='")
        name = name.lower()
        if name not in allowed and not name.startswith("x-"):
            raise ConfigError(f"pkcs11 URI: unknown {where} attribute {name!r}")
        if name in attrs:
            raise ConfigError(f"pkcs11 URI: attribute {name!r} given twice")
        attrs[name] = unquote(value)
    return attrs


def parse_pkcs11_uri(uri: str) -> Pkcs11Uri:
    """Parse a ``pkcs11:`` URI, refusing anything ambiguous or unsafe."""
    scheme, colon, rest = uri.partition(":")
    if not colon or scheme.lower() != "pkcs11":
        raise ConfigError(f"not a pkcs11: URI: {uri!r} (expected 'pkcs11:token=...')")
    path, _, query = rest.partition("?")
    path_attrs = _split_attrs(path, ";", _PATH_ATTRS, "path")
    query_attrs = _split_attrs(query, "&", _QUERY_ATTRS, "query")
    if "pin-value" in query_attrs:
        raise ConfigError(
            "pkcs11 URI: pin-value is refused (a PIN in a URI leaks through history and "
            "process lists); use pin-source=file:/path or the AIRLOCK_PIN_FILE variable"
        )
    if "module-name" in query_attrs and "module-path" not in query_attrs:
        raise ConfigError("pkcs11 URI: give module-path (a full path), not module-name")
    key_type = path_attrs.get("type")
    if key_type is not None and key_type not in {"private", "public", "secret-key", "cert", "data"}:
        raise ConfigError(f"pkcs11 URI: unknown object type {key_type!r}")
    return Pkcs11Uri(
        token=path_attrs.get("token"),
        object=path_attrs.get("object"),
        type=key_type,
        module_path=query_attrs.get("module-path"),
        pin_source=query_attrs.get("pin-source"),
    )
