"""The local sections: ``[queue]``, ``[evm]``, ``[audit]``, ``[service]`` and ``[api]``.

Each field declares what it accepts (:mod:`airlock.config.settings`); the two rules below
relate fields: alerts are sent signed or not at all, and TCP clients need a token.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from airlock.config import checks
from airlock.config.settings import load_section, section, setting
from airlock.errors import ConfigError
from airlock.vocab import LogFormat


@section
class QueueConfig:
    """The encrypted queue: where it lives and how its data keys are handled.

    ``rotate_after``: encryptions under one data key before a new one is made; far below
    the 2^32 random-nonce limit of AES-GCM.
    """

    path: Path = setting(check=checks.nonempty_path)  # the loader's default: $AIRLOCK_HOME
    url: str | None = setting(default=None, check=checks.postgres_url)  # a shared server
    kek_label: str = setting(default="airlock-kek", check=checks.label)
    rotate_after: int = setting(default=1 << 24, low=1, high=(1 << 32) - 1)

    @property
    def location(self) -> Path | str:
        """Where the queue lives: the PostgreSQL URL when one is set, else the file."""
        return self.url if self.url is not None else self.path


@section
class EvmConfig:
    """Defaults for queued transactions; the CLI options override them."""

    bump_pct: float = setting(default=12.5, low=10, high=1000)
    max_fee_cap: int | None = setting(
        default=None, low=1, high=10**30
    )  # wei/gas; None: the node's cap


@section
class AuditConfig:
    """The audit log's checkpoint key and how often a checkpoint is signed."""

    key_label: str = setting(default="airlock-audit", check=checks.label)
    checkpoint_every: int = setting(default=1000, low=1, high=10**9)  # entries
    checkpoint_seconds: int = setting(default=60, low=1, high=86400)


@section
class ServiceConfig:
    """The broadcaster as a service (``[service]``): metrics, logs, alert delivery."""

    metrics_host: str = setting(default="127.0.0.1", check=checks.loopback_host)
    metrics_port: int = setting(default=9464, low=0, high=65535)  # 0: no metrics endpoint
    log_format: LogFormat = "text"
    webhook_url: str | None = setting(
        default=None, check=checks.http_url
    )  # alerts POSTed as JSON ...
    webhook_secret_label: str | None = setting(default=None, check=checks.label)  # ... HMAC-signed
    webhook_timeout_seconds: float = setting(default=5.0, low=0.1, high=120)
    alert_command: tuple[str, ...] = setting(
        default=(), check=checks.argv
    )  # alert JSON on its stdin
    alert_command_timeout_seconds: float = setting(default=10.0, low=0.1, high=600)
    alert_dedup_seconds: float = setting(
        default=300.0, low=0, high=86_400
    )  # same alert: not re-sent


@section
class ApiConfig:
    """The service's local HTTP API (``[api]``): a Unix socket, and optionally loopback TCP.

    The socket is made mode 0600 (0660 with ``socket_group``: the bot's group). TCP is only
    on loopback and only with a bearer token read from ``token_file`` (mode 0600).
    """

    enabled: bool = True
    socket: Path | None = setting(
        default=None, check=checks.file_path
    )  # None: $AIRLOCK_HOME/api.sock
    socket_group: str | None = setting(default=None, check=checks.group)
    listen: tuple[str, int] | None = setting(default=None, check=checks.loopback_listen)
    token_file: Path | None = setting(default=None, check=checks.file_path)
    max_body_bytes: int = setting(default=1 << 20, low=1024, high=64 << 20)
    max_batch: int = setting(default=1000, low=1, high=10_000)

    def socket_path(self, home: Path) -> Path:
        return self.socket if self.socket is not None else home / "api.sock"


def load_queue(
    home: Path, table: Mapping[str, Any], env: Mapping[str, str] | None = None
) -> QueueConfig:
    """``[queue]``: a file (SQLite, the default) or ``url`` (PostgreSQL, shared by several
    broadcasters); ``AIRLOCK_QUEUE_URL`` in the environment wins over the file's ``url``."""
    config = load_section(QueueConfig, "queue", table, path=home / "queue.db")
    raw = (env or {}).get("AIRLOCK_QUEUE_URL")
    if raw:
        config = replace(config, url=checks.postgres_url("AIRLOCK_QUEUE_URL", "", raw))
    return config


def load_service(table: Mapping[str, Any]) -> ServiceConfig:
    """``[service]``: a webhook only with the HSM key that signs its alerts."""
    config = load_section(ServiceConfig, "service", table)
    if (config.webhook_url is None) != (config.webhook_secret_label is None):
        raise ConfigError(
            "[service] webhook_url and webhook_secret_label go together: alerts are sent "
            "signed (import the secret with airlock hsm import-secret)"
        )
    return config


def load_api(table: Mapping[str, Any]) -> ApiConfig:
    """``[api]``: TCP only with a bearer token; the socket's file mode guards the rest."""
    config = load_section(ApiConfig, "api", table)
    if config.listen is not None and config.token_file is None:
        raise ConfigError(
            "[api] listen needs token_file: TCP clients must present a bearer token (the "
            "Unix socket needs none: its file mode decides who may connect)"
        )
    return config
