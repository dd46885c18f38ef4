"""Settings declared once, next to their field, and the one loader that reads them.

A section of ``airlock.toml`` is a :func:`section`: a frozen dataclass whose fields say
what they accept where they are declared::

    probe_seconds: float = setting(default=5.0, low=0.01, high=3600)

:func:`load_section` derives the rest, so no section repeats it by hand: unknown keys
(every field is a key), required keys (fields without a default), the type (from the
annotation: ``int``, ``float``, ``bool``, a ``Literal``'s words, a nested section), the
bounds, and the error message, always ``<where> <key> must be <what>, got <value>``.
Values no annotation can describe (URLs, labels, paths, addresses) name a ``check`` from
:mod:`airlock.config.checks`; relations between fields stay small hand-written rules next
to their section.
"""

from __future__ import annotations

import dataclasses
import functools
import types
from collections.abc import Callable, Mapping
from dataclasses import MISSING, dataclass, field
from typing import Any, Literal, TypeVar, Union, dataclass_transform, get_args, get_origin
from typing import get_type_hints as _type_hints

from airlock.errors import ConfigError

T = TypeVar("T")
Check = Callable[[str, str, Any], Any]
"""``(where, key, raw value) -> value``, raising :class:`ConfigError` with the message."""

_META = "airlock.setting"


@dataclass(frozen=True)
class Setting:
    """What one field accepts, beyond its annotation.

    ``low``/``high`` bound numbers (``high=None`` with ``low=1``: any positive integer);
    ``check`` replaces the derived test for values no annotation describes; ``says``
    replaces the derived words for what is accepted ("GTC or IOC").
    """

    low: float | None = None
    high: float | None = None
    check: Check | None = None
    says: str | None = None


def setting(
    *,
    default: Any = MISSING,
    low: float | None = None,
    high: float | None = None,
    check: Check | None = None,
    says: str | None = None,
    repr: bool = True,
) -> Any:
    """A section field with its bounds or check; no ``default``: the key is required."""
    metadata = {_META: Setting(low=low, high=high, check=check, says=says)}
    if default is MISSING:
        return field(repr=repr, metadata=metadata)
    return field(default=default, repr=repr, metadata=metadata)


@dataclass_transform(frozen_default=True, field_specifiers=(setting, field))
def section(cls: type[T]) -> type[T]:
    """A frozen dataclass whose fields are the keys of one ``airlock.toml`` table."""
    return dataclass(frozen=True)(cls)


def where(section_name: str) -> str:
    """How messages name a section: ``queue`` -> ``[queue]``; ``[[relays]] "a"`` as is."""
    return section_name if section_name.startswith("[") else f"[{section_name}]"


# -- the loader ---------------------------------------------------------------------------


def load_section(cls: type[T], section_name: str, table: Mapping[str, Any], **given: Any) -> T:
    """``table`` as a ``cls``: only known keys, the required ones present, each value checked.

    ``given`` supplies fields the file may leave out but the code cannot default (the queue's
    path under the data directory); a value in ``table`` still wins.
    """
    readers = _readers(cls)
    check_keys(section_name, table, set(readers))
    required = tuple(n for n, r in readers.items() if r.required and n not in given)
    require_keys(section_name, table, required)
    values = {n: r.read(section_name, n, table[n]) for n, r in readers.items() if n in table}
    return cls(**{**given, **values})


def check_values(obj: Any, section_name: str) -> None:
    """Check an already built section against its declarations (a caller built it in code)."""
    for name, reader in _readers(type(obj)).items():
        reader.read(section_name, name, getattr(obj, name))


def setting_names(cls: type) -> frozenset[str]:
    """The keys a section's table may hold: its fields."""
    return frozenset(_readers(cls))


def check_keys(section_name: str, table: Mapping[str, Any], known: set[str]) -> None:
    unknown = set(table) - known
    if unknown:
        raise ConfigError(
            f"{where(section_name)}: unknown setting(s) {', '.join(sorted(unknown))}; "
            f"known: {', '.join(sorted(known))}"
        )


def require_keys(section_name: str, table: Mapping[str, Any], required: tuple[str, ...]) -> None:
    missing = [key for key in required if key not in table]
    if missing:
        raise ConfigError(
            f"{where(section_name)}: missing required setting(s) {', '.join(missing)}"
        )


# -- readers derived from the declarations -------------------------------------------------


@dataclass(frozen=True)
class _Reader:
    required: bool
    read: Callable[[str, str, Any], Any]  # (section name, key, raw value) -> value


_READERS: dict[type, dict[str, _Reader]] = {}


def _readers(cls: type) -> dict[str, _Reader]:
    """Each field's reader, derived once per section class."""
    if cls not in _READERS:
        hints = _type_hints(cls)
        readers = {}
        for item in dataclasses.fields(cls):
            spec = item.metadata.get(_META, Setting())
            required = item.default is MISSING and item.default_factory is MISSING
            read = _read_for(cls, item.name, hints[item.name], spec)
            readers[item.name] = _Reader(required, read)
        _READERS[cls] = readers
    return _READERS[cls]


def _read_for(cls: type, name: str, hint: Any, spec: Setting) -> Callable[[str, str, Any], Any]:
    """The test a field's value must pass, from its declaration."""
    if spec.check is not None:
        check = spec.check
        return lambda section_name, key, value: check(where(section_name), key, value)
    hint = _without_none(hint)
    if hint is bool:
        return _bool
    if hint is int and spec.low is not None:
        return functools.partial(_integer, spec.low, spec.high, spec.says)
    if hint is float and spec.low is not None and spec.high is not None:
        return functools.partial(_number, spec.low, spec.high, spec.says)
    if get_origin(hint) is Literal:
        return functools.partial(_choice, get_args(hint), spec.says)
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return functools.partial(_subsection, hint)
    # a declaration mistake, found the first time the section is used (the fuzz tests load all)
    raise TypeError(
        f"{cls.__name__}.{name}: a {hint!r} setting needs bounds (low=, high=) or a check"
    )


def _without_none(hint: Any) -> Any:
    """``int | None`` -> ``int``: ``None`` is a default, never a value read from TOML."""
    if get_origin(hint) in (Union, types.UnionType):
        args = [arg for arg in get_args(hint) if arg is not type(None)]
        if len(args) == 1:
            return args[0]
    return hint


def _refuse(section_name: str, key: str, says: str, value: Any) -> ConfigError:
    return ConfigError(f"{where(section_name)} {key} must be {says}, got {value!r}")


def _bool(section_name: str, key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise _refuse(section_name, key, "true or false", value)
    return value


def _integer(
    low: float, high: float | None, says: str | None, section_name: str, key: str, value: Any
) -> int:
    """An integer (never a bool) in ``low..high``; with no ``high``, any at least ``low``."""
    if isinstance(value, bool) or not isinstance(value, int):
        ok = False
    else:
        ok = low <= value and (high is None or value <= high)
    if not ok:
        raise _refuse(section_name, key, says or _integer_words(low, high), value)
    return int(value)


def _integer_words(low: float, high: float | None) -> str:
    if high is not None:
        return f"an integer in {low}..{high}"
    return "a positive integer" if low == 1 else f"an integer of at least {low}"


def _number(
    low: float, high: float, says: str | None, section_name: str, key: str, value: Any
) -> float:
    """An integer or float in ``low..high`` (never a bool, never NaN), as a float."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise _refuse(section_name, key, says or f"a number in {low}..{high}", value)
    return float(value)


def _choice(
    choices: tuple[str, ...], says: str | None, section_name: str, key: str, value: Any
) -> str:
    if value not in choices:
        raise _refuse(section_name, key, says or f"one of {', '.join(choices)}", value)
    return str(value)


def _subsection(cls: type, section_name: str, key: str, value: Any) -> Any:
    """A nested table (``[broadcaster.health]``), loaded like any section."""
    if isinstance(value, cls):  # check_values of a section built in code
        return value
    if not isinstance(value, dict):
        raise ConfigError(f"{where(section_name)} {key} must be a table ([{section_name}.{key}])")
    return load_section(cls, f"{section_name}.{key}", value)
