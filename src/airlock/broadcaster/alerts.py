"""Alert delivery: a signed webhook and a command hook, de-duplicated through the queue.

Every alert is counted in the queue (``store.alerts.note``), which also decides whether
it goes out now: the first time, again after it was resolved, or once the
de-duplication window since the last delivery has passed. A delivered alert is:

* POSTed as compact JSON (sorted keys) to ``[service] webhook_url`` with
  ``X-Airlock-Signature: sha256=<hex HMAC-SHA256 of the body>``; the HMAC key is an HSM
  secret (``webhook_secret_label``), the timestamp is inside the signed body (and
  repeated in ``X-Airlock-Timestamp``), so a receiver can refuse replays;
* written to the stdin of ``[service] alert_command`` (argv, no shell), killed at its
  timeout.

Delivery never raises: a failure is logged (the webhook URL only redacted) and counted
in ``airlock_alert_failures_total``. Also here: the JSON log formatter and
:func:`configure_logging`. Receivers and metrics: docs/observability.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import hmac
import json
import logging
import os
import signal
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TextIO

import aiohttp

from airlock.clock import wall_clock_ms
from airlock.config import LOG_FORMATS, ServiceConfig
from airlock.errors import ConfigError
from airlock.queue.alerts import AlertRecord
from airlock.queue.store import Store
from airlock.redact import redact_url

if TYPE_CHECKING:
    from airlock.broadcaster.metrics import Metrics

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Airlock-Signature"
TIMESTAMP_HEADER = "X-Airlock-Timestamp"
RETRY_DELAY_S = 0.25  # before the one retry after a connection failure
STDERR_LOGGED = 500  # characters of a failing command's stderr put in the log
# environment variables an alert command never inherits: the HSM PIN
_SECRET_ENV_PREFIXES = ("AIRLOCK_PIN",)


class AlertSink:
    """Raise, de-duplicate and deliver alerts.

    ``sign(body) -> mac`` makes the webhook signature (the service passes
    ``lambda data: keyring.hmac_sha256(config.webhook_secret_label, data)``); it is
    called in a worker thread. A webhook URL without a signer is refused: alerts only
    ever leave signed.
    """

    def __init__(
        self,
        store: Store,
        config: ServiceConfig,
        sign: Callable[[bytes], bytes] | None = None,
        metrics: Metrics | None = None,
        *,
        clock_ms: Callable[[], int] = wall_clock_ms,
    ) -> None:
        if config.webhook_url is not None and sign is None:
            raise ConfigError(
                "[service] webhook_url is set but no signer was given: alerts are sent "
                "signed with webhook_secret_label"
            )
        self._store = store
        self._config = config
        self._sign = sign
        self._metrics = metrics
        self._clock_ms = clock_ms
        # used only while the store cannot be written: key -> last delivery (ms)
        self._fallback_sent: dict[str, int] = {}

    @property
    def webhook_shown(self) -> str | None:
        """The webhook URL as it may be shown or logged."""
        url = self._config.webhook_url
        return None if url is None else redact_url(url)

    async def raise_(
        self,
        key: str,
        message: str,
        severity: str = "warning",
        details: dict[str, Any] | None = None,
        *,
        item: str | None = None,
    ) -> bool:
        """Count the alert; deliver it if it is due. True when it was due (delivery was
        attempted on every configured channel), False when de-duplication held it back.
        ``item`` is the queue item the alert is about, if any (its audit entry names it).
        Never raises."""
        dedup_ms = round(self._config.alert_dedup_seconds * 1000)
        try:
            record, deliver = await asyncio.to_thread(
                self._store.alerts.note,
                key,
                message,
                severity=severity,
                dedup_ms=dedup_ms,
                item=item,
            )
        except Exception as exc:
            # the alert may be about the store itself: deliver it anyway, de-duplicated
            # in memory for as long as the store cannot be written
            log.error("alert %s: the queue could not record it (%s)", key, type(exc).__name__)
            self._count_failure("store")
            record, deliver = self._fallback(key, message, severity, dedup_ms)
        if self._metrics is not None:
            self._metrics.observe_alert(key, deliver)
        if not deliver:
            log.info("alert %s suppressed (seen %d times)", key, record.count, extra={"key": key})
            return False
        log.warning("ALERT %s: %s", key, message, extra={"key": key, "severity": severity})
        now_ms = self._clock_ms()
        body = alert_body(record, details, now_ms)
        await asyncio.gather(self._post(key, body, now_ms), self._run_command(key, body))
        return True

    def resolve(self, key: str) -> bool:
        """The condition is over: the next alert under ``key`` is delivered at once."""
        self._fallback_sent.pop(key, None)
        return self._store.alerts.resolve(key)

    def _fallback(
        self, key: str, message: str, severity: str, dedup_ms: int
    ) -> tuple[AlertRecord, bool]:
        now = self._clock_ms()
        last = self._fallback_sent.get(key)
        deliver = last is None or now - last >= dedup_ms
        if deliver:
            self._fallback_sent[key] = now
        record = AlertRecord(key, message, severity, now, now, 1, now if deliver else last, None)
        return record, deliver

    def _count_failure(self, channel: str) -> None:
        if self._metrics is not None:
            self._metrics.observe_alert_failure(channel)

    # -- webhook ------------------------------------------------------------------------

    async def _post(self, key: str, body: bytes, now_ms: int) -> None:
        url = self._config.webhook_url
        if url is None or self._sign is None:
            return
        shown = redact_url(url)
        try:
            mac = await asyncio.to_thread(self._sign, body)
        except Exception as exc:
            log.error("alert %s: signing for %s failed (%s)", key, shown, type(exc).__name__)
            self._count_failure("webhook")
            return
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: "sha256=" + mac.hex(),
            TIMESTAMP_HEADER: str(now_ms),
            "User-Agent": "airlock-alerts",
        }
        timeout = aiohttp.ClientTimeout(total=self._config.webhook_timeout_seconds)
        for attempt in (1, 2):
            try:
                async with (
                    aiohttp.ClientSession(timeout=timeout, trust_env=False) as session,
                    session.post(url, data=body, headers=headers, allow_redirects=False) as resp,
                ):
                    status = resp.status
                    await resp.read()
            except (aiohttp.ClientConnectorError, aiohttp.ServerDisconnectedError) as exc:
                if attempt == 1:
                    log.info("alert %s: %s unreachable (%s), retrying", key, shown, _why(exc))
                    await asyncio.sleep(RETRY_DELAY_S)
                    continue
                log.error("alert %s: webhook %s unreachable (%s)", key, shown, _why(exc))
                self._count_failure("webhook")
                return
            except TimeoutError:
                log.error(
                    "alert %s: webhook %s timed out after %g s",
                    key,
                    shown,
                    self._config.webhook_timeout_seconds,
                )
                self._count_failure("webhook")
                return
            except Exception as exc:
                # aiohttp messages can carry the full URL: log the type only
                log.error("alert %s: webhook %s failed (%s)", key, shown, type(exc).__name__)
                self._count_failure("webhook")
                return
            if 200 <= status < 300:
                log.info("alert %s delivered to %s", key, shown)
            else:
                log.error("alert %s: webhook %s answered HTTP %d", key, shown, status)
                self._count_failure("webhook")
            return

    # -- command ------------------------------------------------------------------------

    async def _run_command(self, key: str, body: bytes) -> None:
        argv = self._config.alert_command
        if not argv:
            return
        name = os.path.basename(argv[0])
        timeout = self._config.alert_command_timeout_seconds
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
                env=_command_env(),
                start_new_session=True,  # its own process group: a timeout kills it all
            )
        except OSError as exc:
            log.error("alert %s: command %s could not start (%s)", key, name, _why(exc))
            self._count_failure("command")
            return
        try:
            async with asyncio.timeout(timeout):
                _, stderr = await proc.communicate(body)
        except TimeoutError:
            _kill(proc)
            await proc.wait()
            log.error("alert %s: command %s killed after %g s", key, name, timeout)
            self._count_failure("command")
            return
        except BaseException:
            _kill(proc)
            raise
        if proc.returncode != 0:
            text = stderr.decode("utf-8", "replace").strip()[:STDERR_LOGGED]
            log.error("alert %s: command %s exited %d: %s", key, name, proc.returncode, text)
            self._count_failure("command")


def alert_body(record: AlertRecord, details: dict[str, Any] | None, now_ms: int) -> bytes:
    """The exact bytes the webhook signs and the command reads: compact, sorted keys."""
    payload = {
        "key": record.key,
        "message": record.message,
        "severity": record.severity,
        "count": record.count,
        "first_ms": record.first_ms,
        "last_ms": record.last_ms,
        "details": details or {},
        "source": "airlock",
        "timestamp_ms": now_ms,
    }
    text = json.dumps(payload, separators=(",", ":"), sort_keys=True, default=str)
    return text.encode()


def verify_signature(secret: bytes, body: bytes, header: str) -> bool:
    """What a receiver does: constant-time compare of ``sha256=<hex>`` (tests, tools)."""
    expected = "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, header)


def _command_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(_SECRET_ENV_PREFIXES)}


def _kill(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        proc.kill()


def _why(exc: BaseException) -> str:
    """A failure without URLs: the OS error text if there is one, else the type."""
    os_error = getattr(exc, "os_error", None)
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    if isinstance(os_error, OSError) and os_error.strerror:
        return os_error.strerror
    return type(exc).__name__


# -- logs ---------------------------------------------------------------------------------

# attributes every LogRecord has; anything else came in through ``extra=``
_RECORD_ATTRS = frozenset(
    vars(logging.LogRecord("x", logging.INFO, "x", 0, "x", None, None)).keys()
) | {"message", "asctime", "taskName"}
_SECRET_WORDS = ("secret", "password", "passwd", "pin", "token", "signature", "authorization")


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``time`` (ISO-8601 UTC), ``level``, ``logger``,
    ``message``, every ``extra=`` field, and ``exc`` with the traceback if any.

    Extra fields named like a secret (secret, password, pin, token, signature,
    authorization) are written as ``***`` and fields named like a URL are redacted with
    :func:`redact_url`; the message itself is written as given, so never format a
    secret into one.
    """

    def format(self, record: logging.LogRecord) -> str:
        created = dt.datetime.fromtimestamp(record.created, dt.UTC)
        out: dict[str, Any] = {
            "time": created.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name, value in vars(record).items():
            if name in _RECORD_ATTRS or name in out:
                continue
            out[name] = _safe_extra(name, value)
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        if record.stack_info:
            out["stack"] = self.formatStack(record.stack_info)
        return json.dumps(out, default=str, ensure_ascii=False)


def _safe_extra(name: str, value: Any) -> Any:
    lowered = name.lower()
    if any(word in lowered for word in _SECRET_WORDS):
        return "***"
    if "url" in lowered and isinstance(value, str):
        return redact_url(value)
    return value


TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class _Handler(logging.StreamHandler[TextIO]):
    """The handler :func:`configure_logging` installs, marked so a later call replaces it."""

    _airlock = True


def configure_logging(format: str = "text", verbose: bool = False) -> logging.Handler:
    """Log to stderr as text or JSON lines (``[service] log_format``); INFO with
    ``verbose``, else WARNING. Replaces a handler an earlier call installed."""
    if format not in LOG_FORMATS:
        raise ConfigError(f"log format must be one of {', '.join(LOG_FORMATS)}, got {format!r}")
    handler = _Handler(sys.stderr)
    handler.setFormatter(JsonFormatter() if format == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        if getattr(old, "_airlock", False):
            root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.INFO if verbose else logging.WARNING)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    return handler
