"""The exception hierarchy every room raises from.

Callers catch :class:`AirlockError` at the edge (the CLI turns it into a message on
stderr and a non-zero exit). Each subclass says *what kind* of thing went wrong; the
message says what to do about it.
"""


class AirlockError(Exception):
    """Base class of every error airlock raises on purpose."""


class InvalidInput(AirlockError, ValueError):
    """Input from outside (CLI, config, API caller) failed validation at the boundary."""


class ConfigError(AirlockError):
    """The configuration is missing, unreadable or inconsistent."""
