"""What can go wrong in the queue, each with a message an operator can act on."""

from __future__ import annotations

from airlock.errors import AirlockError, InvalidInput


class QueueError(AirlockError):
    """Base class of queue errors."""


class SchemaTooNew(QueueError):
    """The database was written by a newer airlock; it is left untouched."""


class StoreUnavailable(QueueError):
    """The database file cannot be opened or is not an airlock queue."""


class KekError(QueueError):
    """The key-encryption key is missing, of the wrong type, or cannot unwrap the data keys."""


class PayloadTampered(QueueError):
    """A ciphertext failed authentication; its item was quarantined and is never sent."""


class ItemNotFound(QueueError, InvalidInput):
    """No item with that id."""


class IdempotencyConflict(QueueError, InvalidInput):
    """The idempotency key already names an item with different content."""


class NonceConflict(QueueError, InvalidInput):
    """An explicit nonce is already used, locally or on chain."""


class StaleItems(QueueError):
    """Items changed state since they were read (another process moved them); nothing
    was written. Read them again."""


class IllegalTransition(QueueError):
    """A state change the table does not allow; nothing was written."""


class AuditIntegrityError(QueueError):
    """The stored log no longer matches what was signed; airlock refuses to sign more."""
