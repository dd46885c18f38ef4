"""The HSM outage: the broadcaster service with a keyring whose signing fails in a window.

Why a process of our own at all: SoftHSM cannot be told to go away for a second, so the
outage is simulated one level up, in the keyring. Everything else is the real thing: the
service lock, the queue and the HSM session opened as ``airlock broadcaster run`` opens
them, and the service made by the CLI's own factory
(:func:`airlock.broadcaster.setup.build_service`) with the outage keyring injected as its
``keyring``. So the Bybit request signer, the re-signer, relay auth and alert signing all
meet the outage, while key lookups and the queue's AES-GCM key unwrapping (the
:class:`~airlock.queue.kek.HsmKek` is built on the real ring) keep working, as they do
when only a token's signing fails.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from concurrent.futures import Future
from contextlib import nullcontext
from pathlib import Path
from typing import Any

from airlock.audit.log import AuditKey, checkpoint_if_due
from airlock.broadcaster.alerts import configure_logging
from airlock.broadcaster.lock import ServiceLock
from airlock.broadcaster.runner import Service
from airlock.broadcaster.setup import build_service
from airlock.config import AirlockConfig, load_config
from airlock.hsm.errors import TokenUnavailable
from airlock.hsm.keyring import HsmEcdsaKey, KeyRing
from airlock.hsm.keys import KeyInfo
from airlock.hsm.kinds import KeyKind
from airlock.hsm.pin import terminal_prompt
from airlock.hsm.worker import HsmWorker
from airlock.queue.kek import HsmKek
from airlock.queue.store import Store

log = logging.getLogger("airlock.chaos")

HSM_REFUSED = "chaos: HSM signing refused (simulated outage)"  # the runner counts these lines


class OutageWindow:
    """The outage: ``start`` to ``start + duration`` seconds after ``since`` (epoch
    seconds; by default the moment the service starts). A restart inside a timeline
    passes the timeline's 0 as ``since``, so the window stays where the plan put it."""

    def __init__(self, start: float, duration: float, since: float | None) -> None:
        self.start, self.duration = start, duration
        self.since = since

    def begin(self) -> None:
        """The service starts now: a window without ``since`` counts from here."""
        if self.since is None:
            self.since = time.time()

    def check(self, what: str) -> None:
        """Raise TokenUnavailable (and log :data:`HSM_REFUSED`) inside the window."""
        since = self.since if self.since is not None else time.time() + 1e9
        if since + self.start <= time.time() < since + self.start + self.duration:
            log.warning("%s: %s", HSM_REFUSED, what)
            raise TokenUnavailable(f"{what}: the token went away (chaos outage)")


class _OutageKey(HsmEcdsaKey):
    """An ECDSA key whose every way of signing meets the window first."""

    def __init__(self, worker: HsmWorker, info: KeyInfo, window: OutageWindow) -> None:
        super().__init__(worker, info)
        self._window = window

    def submit_digest(self, digest: bytes) -> Future[bytes]:
        refused = self._refused()
        return refused if refused is not None else super().submit_digest(digest)

    def submit_digests(self, digests: list[bytes]) -> Future[list[bytes]]:
        refused = self._refused()
        return refused if refused is not None else super().submit_digests(digests)

    def sign_digest(self, digest: bytes) -> bytes:
        self._window.check(f"ECDSA with {self.label!r}")
        return super().sign_digest(digest)

    async def sign_digest_async(self, digest: bytes) -> bytes:
        self._window.check(f"ECDSA with {self.label!r}")
        return await super().sign_digest_async(digest)

    def _refused(self) -> Future[Any] | None:
        """A future already failed with the refusal, as the HSM worker would fail it."""
        future: Future[Any] = Future()
        try:
            self._window.check(f"ECDSA with {self.label!r}")
        except Exception as exc:
            future.set_exception(exc)
            return future
        return None


class _OutageRing(KeyRing):
    """A KeyRing on another ring's session whose signing (HMAC, RSA, ECDSA) meets the
    window; it never closes the session, which belongs to the ring it was made from."""

    def __init__(self, worker: HsmWorker, window: OutageWindow) -> None:
        super().__init__(worker)
        self._window = window

    def hmac_sha256(self, label: str, data: bytes) -> bytes:
        self._window.check(f"HMAC with {label!r}")
        return super().hmac_sha256(label, data)

    def rsa_sign_sha256(self, label: str, data: bytes) -> bytes:
        self._window.check(f"RSA with {label!r}")
        return super().rsa_sign_sha256(label, data)

    def ecdsa_key(self, label: str, curve: KeyKind | str | None = None) -> HsmEcdsaKey:
        key = super().ecdsa_key(label, curve)
        return _OutageKey(self.worker, key.info, self._window)

    def close(self) -> None:  # the real ring is closed by its owner
        pass


def outage_keyring(ring: KeyRing, window: OutageWindow) -> KeyRing:
    """A KeyRing on ``ring``'s session whose signing operations (HMAC, RSA, ECDSA) raise
    :class:`~airlock.hsm.errors.TokenUnavailable` inside ``window``; everything else
    (key lookups, the queue's AES-GCM key wrapping) works as usual."""
    return _OutageRing(ring.worker, window)


def serve(config_path: Path, window: OutageWindow) -> int:
    """``airlock broadcaster run`` with its signing on an outage keyring: the same lock,
    the same queue and HSM session, the same service factory, and an audit checkpoint
    when one is due on a clean stop; no local API, which the chaos suite does not use."""
    settings = load_config(config_path)
    configure_logging(settings.service.log_format, False)
    lock = ServiceLock(settings.queue.path) if settings.queue.url is None else nullcontext()
    with lock, KeyRing.open(settings.hsm, prompt=terminal_prompt) as real:
        kek = HsmKek(real, settings.queue.kek_label)
        with Store.open(
            settings.queue.location, kek, rotate_after=settings.queue.rotate_after
        ) as store:
            service = build_service(settings, store, outage_keyring(real, window))
            window.begin()
            asyncio.run(_until_signalled(service))
            _checkpoint_if_due(settings, store, real)
    return 0


def _checkpoint_if_due(settings: AirlockConfig, store: Store, ring: KeyRing) -> None:
    """What closing the library does after ``airlock broadcaster run``: sign an audit
    checkpoint when ``[audit]`` says one is due (with the real ring: a stop is no outage)."""
    audit = settings.audit
    checkpoint_if_due(
        store,
        AuditKey(ring, audit.key_label),
        max_entries=audit.checkpoint_every,
        max_age_ms=audit.checkpoint_seconds * 1000,
    )


async def _until_signalled(service: Service) -> None:
    """Run the service until SIGTERM or SIGINT, as ``airlock broadcaster run`` does."""
    async with service.started():
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        await service.run(stop)
