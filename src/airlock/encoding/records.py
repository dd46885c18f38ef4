"""Typed records to and from their plain forms: a database row, a JSON object.

A record whose fields are named like its columns is read with :func:`from_row`; one whose
JSON names are its field names (some renamed, some left out) is written with
:func:`plain`. One place for the mapping, instead of a hand-written list of every field
in every record.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, Protocol


class Row(Protocol):
    """A database row readable by column name (``sqlite3.Row`` and its like)."""

    def __getitem__(self, key: str, /) -> Any: ...

    def keys(self) -> Any: ...


def from_row(cls: type[Any], row: Row, **converted: Any) -> dict[str, Any]:
    """The keyword arguments of ``cls`` read from ``row`` by field name; ``converted``
    overrides the fields a caller turns into their types (an enum, a bool)."""
    return {f.name: row[f.name] for f in dataclasses.fields(cls)} | converted


def plain(
    record: Any, rename: Mapping[str, str] | None = None, drop: tuple[str, ...] = ()
) -> dict[str, Any]:
    """``record``'s fields as a plain dict in field order, some renamed, some dropped."""
    names = rename or {}
    return {
        names.get(f.name, f.name): getattr(record, f.name)
        for f in dataclasses.fields(record)
        if f.name not in drop
    }
