"""Where the user PIN comes from: never from argv.

Order: ``AIRLOCK_PIN``, then ``AIRLOCK_PIN_FILE``, then the configured ``pin_source``
(``file:/path`` or ``env:NAME``), then an interactive prompt when a terminal is attached.
"""

from __future__ import annotations

import getpass
import os
import stat
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

from airlock.hsm.errors import PinError

Prompt = Callable[[str], str]


def read_pin_file(path: Path) -> str:
    """Read a PIN file, dropping the one trailing newline editors add."""
    try:
        raw = path.read_text()
    except FileNotFoundError:
        raise PinError(f"PIN file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise PinError(f"cannot read PIN file {path}: {exc}") from exc
    pin = raw.removesuffix("\n").removesuffix("\r")
    if not pin:
        raise PinError(f"PIN file {path} is empty")
    if "\n" in pin:
        raise PinError(f"PIN file {path} holds more than one line; it must hold only the PIN")
    return pin


def pin_file_too_open(path: Path) -> bool:
    """True when group or others may read the PIN file (callers warn about it)."""
    try:
        return bool(path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO))
    except OSError:
        return False


def resolve_pin(
    pin_source: str | None,
    env: Mapping[str, str] = os.environ,
    prompt: Prompt | None = None,
) -> str:
    """Return the user PIN from the first source that is set.

    ``prompt`` is called only if nothing else is configured; pass ``None`` to forbid
    prompting (services), in which case a missing PIN is an error that says what to set.
    """
    if env.get("AIRLOCK_PIN"):
        return env["AIRLOCK_PIN"]
    if env.get("AIRLOCK_PIN_FILE"):
        return read_pin_file(Path(env["AIRLOCK_PIN_FILE"]).expanduser())
    if pin_source:
        return _from_source(pin_source, env)
    if prompt is not None:
        pin = prompt("HSM user PIN: ")
        if not pin:
            raise PinError("no PIN entered")
        return pin
    raise PinError(
        "no HSM PIN: set AIRLOCK_PIN_FILE (a file holding the PIN) or AIRLOCK_PIN, "
        "configure [hsm] pin_source, or run from a terminal to be prompted"
    )


def _from_source(source: str, env: Mapping[str, str]) -> str:
    scheme, colon, rest = source.partition(":")
    if colon and scheme == "file":
        return read_pin_file(Path(rest).expanduser())
    if colon and scheme == "env":
        if not env.get(rest):
            raise PinError(f"pin_source names environment variable {rest}, which is not set")
        return env[rest]
    if source.startswith("/"):
        return read_pin_file(Path(source))
    raise PinError(f"unknown pin_source {source!r}: use file:/path or env:NAME")


def terminal_prompt(message: str) -> str:
    """Prompt on the terminal without echo; refuse when there is no terminal."""
    if not sys.stdin.isatty():
        raise PinError("no HSM PIN configured and no terminal to ask on: set AIRLOCK_PIN_FILE")
    return getpass.getpass(message)
