"""The checks a field's annotation cannot express: labels, names, URLs, paths, addresses.

Each is a :data:`~airlock.config.settings.Check`, ``(where, key, value) -> value``, named
by a field's ``setting(check=...)``; ``where`` is the section as messages print it
(``[bybit]``, ``[[relays]] "a"``). A check that must not echo the value (an API key, a URL
with credentials) says so.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from airlock.errors import ConfigError
from airlock.redact import redact_url

_NAME_RE = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_API_KEY_RE = re.compile(r"[\x21-\x7e]{1,128}")
LOOPBACK_HOSTS = ("127.0.0.1", "::1", "localhost")


def label(where: str, key: str, value: Any) -> str:
    """An HSM object label: any string of 1-64 characters."""
    if not isinstance(value, str) or not 1 <= len(value) <= 64:
        raise ConfigError(f"{where} {key} must be a string of 1-64 characters")
    return value


def name(where: str, key: str, value: Any) -> str:
    """A name other settings refer to (a link, a relay): safe in logs, metrics and messages."""
    if not isinstance(value, str) or not _NAME_RE.fullmatch(value):
        raise ConfigError(
            f"{where} {key} must be 1-64 characters of A-Z a-z 0-9 _ . -, got {value!r}"
        )
    return value


def group(where: str, key: str, value: Any) -> str:
    """A Unix group name, with the characters :func:`name` allows."""
    if not isinstance(value, str) or not _NAME_RE.fullmatch(value):
        raise ConfigError(
            f"{where} {key} must be a group name (1-64 characters of A-Z a-z 0-9 _ . -), "
            f"got {value!r}"
        )
    return value


def reference(where: str, key: str, value: Any) -> Any:
    """Any value: what it must name is known only to the loader (a ``[[links]]`` entry)."""
    return value


def ws_url(where: str, key: str, value: Any) -> str:
    """A ``ws://`` or ``wss://`` URL with a host (a venue's stream)."""
    if isinstance(value, str) and value.lower().startswith(("ws://", "wss://")):
        http_url(where, key, "http" + value[2:])  # the same rules for the rest of it
        return value
    raise ConfigError(f"{where} {key} must be a ws:// or wss:// URL")


def http_url(where: str, key: str, value: Any) -> str:
    """An ``http://`` or ``https://`` URL with a host; messages print it redacted."""
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{where} {key} must be a non-empty string")
    if any(ch.isspace() or ord(ch) < 0x20 or ord(ch) == 0x7F for ch in value):
        raise ConfigError(f"{where} {key} must not contain whitespace")
    shown = redact_url(value)
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as exc:
        raise ConfigError(f"{where} {key} is not a valid URL ({shown}): {exc}") from exc
    if parts.scheme.lower() not in ("http", "https"):
        raise ConfigError(f"{where} {key} must be an http:// or https:// URL, got {shown}")
    if not parts.hostname:
        raise ConfigError(f"{where} {key} has no host: {shown}")
    return value


def ip_address(where: str, key: str, value: Any) -> str:
    """An IPv4 or IPv6 literal, normalised (``2001:DB8::0:1`` -> ``2001:db8::1``)."""
    try:
        address = ipaddress.ip_address(value) if isinstance(value, str) else None
    except ValueError:
        address = None
    if address is None:
        raise ConfigError(f"{where} {key} must be an IPv4 or IPv6 address, got {value!r}")
    return str(address)


def api_key(where: str, key: str, value: Any) -> str:
    """1-128 printable ASCII characters; never echoed (a misplaced secret is the likeliest)."""
    if not isinstance(value, str) or not _API_KEY_RE.fullmatch(value):
        got = f"{len(value)} characters" if isinstance(value, str) else type(value).__name__
        raise ConfigError(
            f"{where} {key} must be 1-128 printable ASCII characters without spaces, got {got}"
        )
    return value


def expand_path(what: str, raw: str) -> Path:
    """``raw`` as a Path, ``~`` expanded; a ``~user`` with no such user is a ConfigError."""
    try:
        return Path(raw).expanduser()
    except RuntimeError as exc:  # "Could not determine home directory."
        raise ConfigError(f"{what}: cannot expand {raw!r}: {exc}") from None


def postgres_url(where: str, key: str, value: Any) -> str:
    """A ``postgresql://`` URL with a host and a database; messages print it redacted."""
    name = f"{where} {key}".strip()
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{name} must be a postgresql:// URL")
    shown = redact_url(value)
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as exc:
        raise ConfigError(f"{name} is not a valid URL ({shown}): {exc}") from exc
    if parts.scheme not in ("postgresql", "postgres") or not parts.hostname:
        raise ConfigError(f"{name} must be a postgresql://user@host:port/db URL, got {shown}")
    if not parts.path.strip("/"):
        raise ConfigError(f"{name} must name a database (postgresql://…/dbname), got {shown}")
    return value


def nonempty_path(where: str, key: str, value: Any) -> Path:
    """A path (``~`` expanded) the file names as a non-empty string."""
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{where} {key} must be a non-empty string")
    return expand_path(f"{where} {key}", value)


def file_path(where: str, key: str, value: Any) -> Path:
    """A file path (``~`` expanded); like :func:`nonempty_path`, its message shows the value."""
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{where} {key} must be a file path, got {value!r}")
    return expand_path(f"{where} {key}", value)


def argv(where: str, key: str, value: Any) -> tuple[str, ...]:
    """A command as its argument vector: run without a shell, so nothing is re-parsed."""
    if not isinstance(value, list) or not value or not all(isinstance(a, str) and a for a in value):
        raise ConfigError(f"{where} {key} must be a non-empty list of strings (argv, no shell)")
    return tuple(value)


def loopback_host(where: str, key: str, value: Any) -> str:
    """A loopback address: what listens there has no authentication."""
    if value not in LOOPBACK_HOSTS:
        raise ConfigError(
            f"{where} {key} must be a loopback address (127.0.0.1, ::1 or localhost), "
            f"got {value!r}: the endpoint has no authentication"
        )
    return str(value)


def loopback_listen(where: str, key: str, value: Any) -> tuple[str, int]:
    """``"127.0.0.1:8750"`` or ``"[::1]:8750"``: loopback only, a port from 1 to 65535."""
    text = value if isinstance(value, str) else ""
    host, _, port = text.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if host not in LOOPBACK_HOSTS or not port.isdigit():
        raise ConfigError(
            f"{where} {key} must be a loopback host:port such as '127.0.0.1:8750', got {value!r}"
        )
    number = int(port)
    if not 1 <= number <= 65535:
        raise ConfigError(f"{where} {key} port must be 1..65535, got {number}")
    return host, number
