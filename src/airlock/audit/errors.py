"""The audit room's place in airlock's exception tree.

Every error an auditor's tools raise on purpose (canonical form, checkpoints, proofs,
signed transactions and intents, the verifier's first failure) is an :class:`AuditError`,
so the CLI's one ``AirlockError`` handler turns each into a message and an exit status
instead of a traceback. Pure: no imports beyond :mod:`airlock.errors`.
"""

from airlock.errors import AirlockError


class AuditError(AirlockError):
    """Something in an audit entry, note, proof or export does not hold."""
