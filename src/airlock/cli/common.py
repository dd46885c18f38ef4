"""What every command shares: config, the HSM, the queue, error handling and output.

Start-up: the command tree (``airlock --help``) imports the cli modules, so they import
only click, the standard library and airlock's pure modules at the top. What a command
needs beyond that (the HSM, the queue, the signer, the network) it imports inside its
body, or gets here: :func:`config`, :func:`keyring` and :func:`open_store` import the
configuration, the HSM and the queue when first called.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from airlock.errors import AirlockError

if TYPE_CHECKING:
    from airlock.api.client import Airlock
    from airlock.config import AirlockConfig
    from airlock.hsm.keyring import KeyRing
    from airlock.queue.store import Store


def fail(message: str) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(1)


class AirlockGroup(click.Group):
    """Turns AirlockError into 'error: ...' on stderr with exit status 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except AirlockError as exc:
            fail(str(exc))


def config(ctx: click.Context) -> AirlockConfig:
    from airlock.config import load_config  # the policy and Bybit rooms, and cryptography

    return load_config(ctx.obj.get("config_path"))


def keyring(ctx: click.Context) -> KeyRing:
    from airlock.hsm.keyring import KeyRing  # pkcs11, asn1crypto, cryptography
    from airlock.hsm.pin import terminal_prompt

    return KeyRing.open(config(ctx).hsm, prompt=terminal_prompt)


@contextmanager
def library(ctx: click.Context) -> Iterator[Airlock]:
    """The library (:class:`airlock.Airlock`) over this command's configuration, the PIN
    asked at the terminal when no other source has it. Closing it signs an audit
    checkpoint when one is due, so the log is checkpointed even when only the CLI writes."""
    from airlock.api.client import Airlock  # the HSM, the queue, the signer
    from airlock.hsm.pin import terminal_prompt

    with Airlock.open(config(ctx), prompt=terminal_prompt) as opened:
        yield opened


@contextmanager
def open_store(ctx: click.Context) -> Iterator[tuple[Store, KeyRing]]:
    """The queue and the HSM session under the library, for the operator's commands that
    work on the queue itself (keys, nonces, export, audit)."""
    with library(ctx) as opened:
        yield opened.store, opened.keyring


def emit(as_json: bool, data: Any, text: Callable[[], str]) -> None:
    click.echo(json.dumps(data, indent=2) if as_json else text())


def warn(message: str) -> None:
    click.echo(f"warning: {message}", err=True)


config_option = click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path, dir_okay=False),
    help="airlock.toml to use (default: $AIRLOCK_HOME/airlock.toml).",
)
"""``--config`` on a subcommand, as well as before it (``airlock --config F …``)."""


def use_config(ctx: click.Context, config_path: Path | None) -> None:
    """Make a subcommand's ``--config`` the one every later lookup uses."""
    if config_path is not None:
        ctx.obj["config_path"] = config_path
