"""The exception hierarchy every room raises from.

Callers catch :class:`AirlockError` at the edge (the CLI turns it into a message on
stderr and a non-zero exit). Each subclass says *what kind* of thing went wrong; the
message says what to do about it.
"""


class AirlockError(Exception):
    """Base class of every error airlock raises on purpose."""


class InvalidInput(AirlockError, ValueError):
    """Input from outside (CLI, config, API caller) failed validation at the boundary.

    ``field`` names the input that is wrong when one field is (the local API answers 400
    naming it); None when the problem is the combination, or not one field's. ``index``
    is the element of a batch it is about, when it is about one.
    """

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field
        self.index: int | None = None


class ConfigError(AirlockError):
    """The configuration is missing, unreadable or inconsistent."""
