"""Envelope encryption: data keys in memory, wrapped at rest by a key-encryption key in the HSM.

A data key (DEK) is 32 random bytes used with AES-256-GCM from ``cryptography``. It is
stored only as ``AES-GCM(KEK, dek)`` computed inside the HSM, in ``data_keys``. The
newest data key is the primary: it encrypts; older ones stay for reading.

Every field ciphertext is ``0x01 || nonce (12) || ciphertext || tag (16)`` with a random
nonce and associated data ``airlock/v1|<table>|<row id>|<column>|<key id>``, so a
ciphertext moved to another row, column or key id fails authentication.

Random 96-bit nonces are safe for 2^32 encryptions per key (NIST SP 800-38D). airlock
counts encryptions per key in the database, reserving them in blocks (a crash can only
over-count), and rotates to a new data key long before: by default after 2^24.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from airlock.encoding.records import Row
from airlock.queue.db import Conn
from airlock.queue.errors import KekError, PayloadTampered

FORMAT = 1
NONCE_BYTES = 12
TAG_BYTES = 16
DEFAULT_ROTATE_AFTER = 1 << 24
RESERVE_BLOCK = 256


class Kek(Protocol):
    """A key-encryption key that never leaves its HSM."""

    label: str

    def wrap(self, nonce: bytes, plaintext: bytes, aad: bytes) -> bytes: ...

    def unwrap(self, nonce: bytes, ciphertext: bytes, aad: bytes) -> bytes: ...


def field_aad(table: str, row_id: str, column: str, key_id: int) -> bytes:
    """The associated data that ties a ciphertext to its one place in the database."""
    return f"airlock/v1|{table}|{row_id}|{column}|{key_id}".encode()


def _wrap_aad(key_id: int, kek_label: str) -> bytes:
    return field_aad("data_keys", str(key_id), "dek", key_id) + b"|" + kek_label.encode()


@dataclass(frozen=True)
class Sealed:
    key_id: int
    blob: bytes


class Envelope:
    """Data keys for one database connection. Call methods inside the store's transaction."""

    def __init__(
        self,
        conn: Conn,
        kek: Kek,
        clock_ms: Callable[[], int],
        rotate_after: int = DEFAULT_ROTATE_AFTER,
    ) -> None:
        if rotate_after < 1 or rotate_after >= 1 << 32:
            raise ValueError("rotate_after must be between 1 and 2^32 - 1")
        self._conn = conn
        self._kek = kek
        self._clock_ms = clock_ms
        self._rotate_after = rotate_after
        self._deks: dict[int, AESGCM] = {}
        self._primary: int | None = None
        self._reserved = 0  # encryptions reserved in the database and not yet used

    # -- data keys ----------------------------------------------------------------

    def ensure_primary(self) -> int:
        """Make sure a primary data key exists (the first one on a fresh database)."""
        row = self._conn.execute("SELECT max(key_id) FROM data_keys").fetchone()
        if row[0] is None:
            return self.rotate("first data key")
        self._cipher(int(row[0]))  # proves the KEK can unwrap it, or raises KekError
        return int(row[0])

    def rotate(self, reason: str) -> int:
        """Create a new primary data key; old keys remain for decryption."""
        dek = AESGCM.generate_key(bit_length=256)
        key_id = int(
            self._conn.execute("SELECT coalesce(max(key_id), 0) + 1 FROM data_keys").fetchone()[0]
        )
        wrap_nonce = os.urandom(NONCE_BYTES)
        wrapped = self._kek.wrap(wrap_nonce, dek, _wrap_aad(key_id, self._kek.label))
        self._conn.execute(
            "INSERT INTO data_keys (key_id, kek_label, wrap_nonce, wrapped, created_ms, reason)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (key_id, self._kek.label, wrap_nonce, wrapped, self._clock_ms(), reason),
        )
        self._deks[key_id] = AESGCM(dek)
        self._primary, self._reserved = key_id, 0
        return key_id

    def forget_uncommitted(self) -> None:
        """After a rollback: reservations and a new primary may not exist on disk."""
        if self._primary is not None:
            self._deks.pop(self._primary, None)
        self._primary, self._reserved = None, 0

    def _cipher(self, key_id: int) -> AESGCM:
        cipher = self._deks.get(key_id)
        if cipher is not None:
            return cipher
        row = self._conn.execute(
            "SELECT kek_label, wrap_nonce, wrapped FROM data_keys WHERE key_id = ?", (key_id,)
        ).fetchone()
        if row is None:
            raise KeyError(key_id)
        if row["kek_label"] != self._kek.label:
            raise KekError(
                f"data key {key_id} is wrapped by KEK {row['kek_label']!r}, but the configured "
                f"KEK is {self._kek.label!r}; set [queue] kek_label to {row['kek_label']!r}"
            )
        dek = self._kek.unwrap(row["wrap_nonce"], row["wrapped"], _wrap_aad(key_id, row[0]))
        cipher = AESGCM(dek)
        self._deks[key_id] = cipher
        return cipher

    def _take_primary(self) -> int:
        """The primary key id, with one encryption counted against it."""
        if self._reserved == 0:
            latest = self._conn.execute(
                "SELECT key_id, encryptions FROM data_keys ORDER BY key_id DESC LIMIT 1"
            ).fetchone()
            if latest is None or latest["encryptions"] >= self._rotate_after:
                key_id = self.rotate("automatic: encryption count reached the rotation limit")
                used = 0
            else:
                key_id, used = int(latest["key_id"]), int(latest["encryptions"])
            block = min(RESERVE_BLOCK, self._rotate_after - used)  # never past the limit
            self._conn.execute(
                "UPDATE data_keys SET encryptions = encryptions + ? WHERE key_id = ?",
                (block, key_id),
            )
            self._primary, self._reserved = key_id, block
        self._reserved -= 1
        assert self._primary is not None
        return self._primary

    # -- fields ---------------------------------------------------------------------

    def seal(self, table: str, row_id: str, column: str, plaintext: bytes) -> Sealed:
        key_id = self._take_primary()
        nonce = os.urandom(NONCE_BYTES)
        aad = field_aad(table, row_id, column, key_id)
        blob = bytes([FORMAT]) + nonce + self._cipher(key_id).encrypt(nonce, plaintext, aad)
        return Sealed(key_id, blob)

    def open(self, table: str, row_id: str, column: str, key_id: int, blob: bytes) -> bytes:
        """Decrypt one field; :class:`PayloadTampered` says where and why it failed."""
        where = f"{table}.{column} of {row_id} (data key {key_id})"
        if len(blob) < 1 + NONCE_BYTES + TAG_BYTES or blob[0] != FORMAT:
            raise PayloadTampered(f"{where}: not an airlock ciphertext (bad length or format)")
        try:
            cipher = self._cipher(key_id)
        except KeyError:
            raise PayloadTampered(f"{where}: data key {key_id} does not exist") from None
        nonce, body = blob[1 : 1 + NONCE_BYTES], blob[1 + NONCE_BYTES :]
        try:
            return cipher.decrypt(nonce, body, field_aad(table, row_id, column, key_id))
        except InvalidTag:
            raise PayloadTampered(
                f"{where}: failed authentication: the ciphertext was altered, moved from "
                "another row, or its key id changed"
            ) from None

    def key_rows(self) -> list[Row]:
        rows: list[Row] = self._conn.execute(
            "SELECT key_id, kek_label, created_ms, encryptions, reason FROM data_keys"
            " ORDER BY key_id"
        ).fetchall()
        return rows
