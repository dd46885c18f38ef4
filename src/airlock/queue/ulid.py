"""ULIDs: 48-bit millisecond time + 80 random bits, Crockford base32, 26 characters.

Sortable by creation time, so ``ORDER BY id`` is creation order. Within one millisecond a
generator increments the random part, so ids from one process are strictly increasing.
"""

from __future__ import annotations

import secrets
import threading
import time

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_RANDOM_BITS = 80


def encode(value: int) -> str:
    """The 26-character Crockford base32 form of a 128-bit integer."""
    chars = []
    for _ in range(26):
        chars.append(_ALPHABET[value & 31])
        value >>= 5
    return "".join(reversed(chars))


def timestamp_ms(ulid: str) -> int:
    """The creation time encoded in ``ulid``, in Unix milliseconds."""
    value = 0
    for char in ulid.upper():
        value = value * 32 + _ALPHABET.index(char)
    return value >> _RANDOM_BITS


def is_ulid(text: str) -> bool:
    return len(text) == 26 and text[0] in "01234567" and all(c in _ALPHABET for c in text)


class UlidGenerator:
    """Monotonic ULIDs; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last_ms = -1
        self._last_random = 0

    def new(self, now_ms: int | None = None) -> str:
        ms = int(time.time() * 1000) if now_ms is None else now_ms
        with self._lock:
            if ms <= self._last_ms:
                ms = self._last_ms
                rand = self._last_random + 1
                if rand >> _RANDOM_BITS:  # 2^80 ids in one ms: move to the next ms
                    ms, rand = ms + 1, secrets.randbits(_RANDOM_BITS)
            else:
                rand = secrets.randbits(_RANDOM_BITS)
            self._last_ms, self._last_random = ms, rand
        return encode((ms << _RANDOM_BITS) | rand)
