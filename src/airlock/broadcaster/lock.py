"""One broadcaster per queue database: an exclusive lock held for the life of the process.

Why a lock although every write is guarded by the state it read: two broadcasters would
each send what the other is sending (twice the traffic, twice the rate-limit budget) and
their reconciles would race each other's retries. Refusing the second one is simpler and
clearer for an operator than making two cooperate.

``flock`` on ``<queue.db>.broadcaster.lock``: the kernel drops the lock when the process
ends, however it ends (``kill -9`` included), so a crash never leaves a stale lock behind.
The file holds the owner's pid, for the error message only.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import Self

from airlock.errors import AirlockError


class ServiceLocked(AirlockError):
    """Another broadcaster holds the queue database."""


class ServiceLock:
    def __init__(self, db_path: Path) -> None:
        self.db_path = db_path
        self.path = db_path.with_name(db_path.name + ".broadcaster.lock")
        self._fd: int | None = None

    def acquire(self) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise ServiceLocked(
                f"another broadcaster (pid {owner}) is running on {self.db_path}:"
                " stop it first (one broadcaster per queue database)"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)  # closing the descriptor drops the flock

    def __enter__(self) -> Self:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
