"""The one owner of the PKCS#11 session.

SoftHSM (and several real HSM modules) crash or corrupt state when two threads use a
session at once, and python-pkcs11 initialises modules without OS locking. So a single
thread owns the library, the token and the logged-in session; everybody else hands it
small functions through a queue and gets a ``concurrent.futures.Future`` back. That makes
the HSM safe from any number of threads and from asyncio, and lets callers pipeline:
the worker runs ``C_Sign`` without the GIL while callers do their Python work.

When the token goes away (session handle invalid, device removed, module finalised) the
worker logs in again and retries the operation once; if the token stays away the caller
gets :class:`TokenUnavailable`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pkcs11

from airlock.config import HsmConfig
from airlock.hsm import errors
from airlock.hsm.discovery import module_path

T = TypeVar("T")

DEFAULT_TIMEOUT = 30.0

# Failures that mean "the session or token is gone", worth one reconnect and retry.
_RECONNECT_ERRORS: tuple[type[Exception], ...] = (
    pkcs11.SessionHandleInvalid,
    pkcs11.SessionClosed,
    pkcs11.DeviceRemoved,
    pkcs11.DeviceError,
    pkcs11.TokenNotPresent,
    pkcs11.UserNotLoggedIn,
    pkcs11.ObjectHandleInvalid,
    pkcs11.KeyHandleInvalid,
)


@dataclass
class Connection:
    """What the worker thread holds: the module, the token, a session and handle cache."""

    lib: Any
    token: Any
    session: Any
    handles: dict[Any, Any] = field(default_factory=dict)
    generation: int = 0


def check_module(path: Path) -> None:
    """Fail early, with a clear message, on a module path that cannot be a PKCS#11 module."""
    if not path.exists():
        raise errors.ModuleLoadError(
            f"PKCS#11 module {path} does not exist; install it (SoftHSM: apt-get install "
            f"softhsm2) or fix [hsm] module / AIRLOCK_PKCS11_MODULE"
        )
    if not path.is_file():
        raise errors.ModuleLoadError(f"PKCS#11 module {path} is not a file")
    if not os.access(path, os.R_OK):
        raise errors.ModuleLoadError(f"PKCS#11 module {path} is not readable by this user")


def check_softhsm_conf(path: Path | None) -> None:
    """SoftHSM reports an unreadable config only as an opaque GeneralError: check first."""
    if path is None:
        return
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise errors.SoftHsmConfError(
            f"SOFTHSM2_CONF {path} does not exist; run 'airlock init' or fix the path"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise errors.SoftHsmConfError(f"SOFTHSM2_CONF {path} is not readable: {exc}") from exc
    for line in text.splitlines():
        key, _, value = line.partition("=")
        if key.strip() == "directories.tokendir":
            tokendir = Path(value.strip())
            if not tokendir.is_dir():
                raise errors.SoftHsmConfError(
                    f"SOFTHSM2_CONF {path}: token directory {tokendir} does not exist"
                )
            if not os.access(tokendir, os.R_OK | os.W_OK | os.X_OK):
                raise errors.SoftHsmConfError(
                    f"SOFTHSM2_CONF {path}: token directory {tokendir} is not writable"
                )
            return
    raise errors.SoftHsmConfError(f"SOFTHSM2_CONF {path} has no directories.tokendir line")


def load_module(config: HsmConfig) -> Any:
    """Load and initialise the PKCS#11 module named by the config."""
    path = module_path(config)
    check_module(path)
    if config.softhsm_conf is not None:
        check_softhsm_conf(config.softhsm_conf)
        os.environ["SOFTHSM2_CONF"] = str(config.softhsm_conf)
    elif "SOFTHSM2_CONF" in os.environ:
        check_softhsm_conf(Path(os.environ["SOFTHSM2_CONF"]))
    try:
        return pkcs11.lib(str(path))
    except pkcs11.GeneralError as exc:
        raise errors.ModuleLoadError(
            f"PKCS#11 module {path} failed to initialise ({exc!r}); for SoftHSM "
            f"check SOFTHSM2_CONF and its token directory"
        ) from exc
    except pkcs11.PKCS11Error as exc:
        raise errors.ModuleLoadError(f"{path} is not a usable PKCS#11 module: {exc}") from exc


def open_session(lib: Any, config: HsmConfig, pin: str) -> tuple[Any, Any]:
    """Find the token by label and log in, translating every failure."""
    try:
        token = lib.get_token(token_label=config.token_label)
    except pkcs11.NoSuchToken:
        raise errors.TokenNotFound(
            f"no token labelled {config.token_label!r} in module {module_path(config)}"
            + (
                "; run 'airlock init' to create the embedded development token"
                if config.embedded
                else "; check [hsm] token and that the device is connected"
            )
        ) from None
    except pkcs11.MultipleTokensReturned:
        raise errors.TokenNotFound(
            f"more than one token is labelled {config.token_label!r}; labels must be unique"
        ) from None
    flags = pkcs11.TokenFlag(token.flags)
    if flags & pkcs11.TokenFlag.USER_PIN_LOCKED:
        raise errors.PinLocked(
            f"the user PIN of token {config.token_label!r} is locked; the security "
            f"officer must unlock it (C_InitPIN) before airlock can log in"
        )
    try:
        session = token.open(rw=True, user_pin=pin)
    except pkcs11.UserAlreadyLoggedIn:
        # PKCS#11 login state is per process: another session of ours is logged in,
        # so this one already has the user's rights.
        session = token.open(rw=True)
    except pkcs11.PinIncorrect:
        extra = ""
        if flags & pkcs11.TokenFlag.USER_PIN_FINAL_TRY:
            extra = "; the next wrong PIN locks the token"
        raise errors.PinIncorrect(
            f"token {config.token_label!r} rejected the PIN (check AIRLOCK_PIN_FILE / "
            f"pin_source){extra}"
        ) from None
    except pkcs11.PinLocked:
        raise errors.PinLocked(
            f"the user PIN of token {config.token_label!r} is locked after too many wrong "
            f"PINs; the security officer must unlock it"
        ) from None
    except (pkcs11.PinLenRange, pkcs11.PinInvalid):
        raise errors.PinIncorrect(
            f"token {config.token_label!r} refused the PIN's length or characters"
        ) from None
    except pkcs11.UserPinNotInitialized:
        raise errors.PinError(
            f"token {config.token_label!r} has no user PIN yet; initialise it first"
        ) from None
    return token, session


_STOP = object()


class HsmWorker:
    """A thread that owns one logged-in PKCS#11 session and runs jobs on it in order."""

    def __init__(self, config: HsmConfig, pin: str, *, name: str = "airlock-hsm") -> None:
        self.config = config
        self._pin = pin
        self._jobs: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._conn: Connection | None = None
        self._generation = 0
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        started: Future[None] = Future()
        self._thread.start()
        self._jobs.put((lambda conn: None, started))
        try:
            started.result()  # connection errors surface here, in the caller's thread
        except BaseException:
            self.close()
            raise

    # -- public API ---------------------------------------------------------------

    def submit(self, fn: Callable[[Connection], T]) -> Future[T]:
        """Queue ``fn(connection)`` for the worker; returns at once with a Future."""
        if self._closed:
            raise errors.TokenUnavailable("the HSM worker is closed")
        future: Future[T] = Future()
        self._jobs.put((fn, future))
        return future

    def run(self, fn: Callable[[Connection], T], timeout: float | None = DEFAULT_TIMEOUT) -> T:
        """Run ``fn(connection)`` on the worker and wait for its result."""
        future = self.submit(fn)
        try:
            return future.result(timeout)
        except TimeoutError:
            raise errors.HsmOperationError(
                f"the HSM did not answer within {timeout} s; is the device hung?"
            ) from None

    async def arun(
        self, fn: Callable[[Connection], T], timeout: float | None = DEFAULT_TIMEOUT
    ) -> T:
        """Like :meth:`run`, for asyncio code: the event loop is never blocked."""
        future = asyncio.wrap_future(self.submit(fn))
        try:
            return await asyncio.wait_for(future, timeout)
        except TimeoutError:
            raise errors.HsmOperationError(
                f"the HSM did not answer within {timeout} s; is the device hung?"
            ) from None

    @property
    def generation(self) -> int:
        """How many times the worker has (re)connected; tests watch it."""
        return self._generation

    def close(self) -> None:
        """Log out, close the session and stop the thread. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._jobs.put(_STOP)
        self._thread.join(timeout=DEFAULT_TIMEOUT)

    def __enter__(self) -> HsmWorker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the worker thread -------------------------------------------------------

    def _loop(self) -> None:
        while True:
            job = self._jobs.get()
            if job is _STOP:
                self._disconnect()
                return
            fn, future = job
            if not future.set_running_or_notify_cancel():
                continue
            try:
                result = self._execute(fn)
            except BaseException as exc:  # handed to the caller, never lost
                future.set_exception(exc)
            else:
                future.set_result(result)

    def _execute(self, fn: Callable[[Connection], T]) -> T:
        if self._conn is None:
            self._connect()
        assert self._conn is not None
        try:
            return fn(self._conn)
        except _RECONNECT_ERRORS:
            self._disconnect()
        except pkcs11.GeneralError:
            # GeneralError from a module that was finalised under us; reconnect once.
            self._disconnect()
        try:
            self._connect()
        except errors.HsmError as exc:
            raise errors.TokenUnavailable(
                f"lost the HSM session and could not log in again: {exc}"
            ) from exc
        assert self._conn is not None
        return fn(self._conn)

    def _connect(self) -> None:
        lib = load_module(self.config)
        try:
            token, session = open_session(lib, self.config, self._pin)
        except errors.TokenNotFound:
            if self._generation == 0:
                raise  # never connected: a wrong label, not a token that went away
            # A module that lost its token may need a fresh C_Initialize to see it again.
            lib.reinitialize()
            token, session = open_session(lib, self.config, self._pin)
        self._generation += 1
        self._conn = Connection(lib=lib, token=token, session=session, generation=self._generation)

    def _disconnect(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        # A session that is already gone has nothing left to release.
        with contextlib.suppress(pkcs11.PKCS11Error):
            conn.session.close()
