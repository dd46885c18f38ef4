"""One entry's form and content, checked against the export's earlier entries.

docs/audit-format.md §1 (members, types, ``item``) and §1.4 (checked content): signed EVM
variants, signed Bybit intents, variants added after enqueue, alerts. Entries of other
types are held to §1's rules only. Pure: parsed entries in, errors and findings out; the
verifier adds the entry number to each message.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from eth_utils.address import to_checksum_address

from airlock.audit import entries
from airlock.audit.errors import AuditError
from airlock.audit.evm_check import (
    Declared,
    EvmCheckError,
    check_added_variant,
    check_enqueued,
)
from airlock.audit.order_check import INTENTS, OrderCheckError, check_enqueued_order

EVM_TX = "evm_tx"
ITEM_KINDS = (EVM_TX, *INTENTS)  # evm_tx, bybit_order, bybit_cancel
ULID = re.compile(r"[0-7][0-9A-HJKMNP-TV-Z]{25}")  # Crockford base32, upper case
HEX64 = re.compile(r"[0-9a-f]{64}")
ALERT_FORMS = (frozenset({"key", "message", "severity"}), frozenset({"message"}))
_SHAPE: dict[str, type] = {
    "v": int,
    "seq": int,
    "prev": str,
    "time_ms": int,
    "type": str,
    "data": dict,
}


class ContentError(AuditError):
    """One entry breaks a rule of §1 or §1.4 (the message leaves out the entry number)."""


@dataclass
class ItemSeen:
    """An item the export queued: where, what kind, and (EVM) what it declared."""

    entry: int
    kind: str
    declared: Declared | None
    variants: int  # variants recorded so far: the next added one takes this index


def check_form(number: int, entry: Any) -> dict[str, Any]:
    """§1: exactly the members, their types, the entry number, the version, ``prev``'s
    form and ``item``'s (a ULID where the type is about an item, null where it is not)."""
    if not isinstance(entry, dict) or entry.keys() != set(entries.MEMBERS):
        raise ContentError("not an airlock audit entry (wrong fields)")
    for key, kind in _SHAPE.items():
        if not isinstance(entry[key], kind) or isinstance(entry[key], bool):
            raise ContentError(f"{key} is not of type {kind.__name__}")
    if entry["seq"] != number:
        raise ContentError(
            f"found entry number {entry['seq']} in its place: entries were deleted, "
            "inserted, duplicated or reordered"
        )
    if entry["v"] != entries.VERSION:
        raise ContentError(f"unknown entry version {entry['v']}")
    if not HEX64.fullmatch(entry["prev"]):
        raise ContentError("prev is not 64 lower-case hex digits")
    _check_item(entry["type"], entry["item"])
    return entry


def _check_item(kind: str, item: Any) -> None:
    if item is not None and not (isinstance(item, str) and ULID.fullmatch(item)):
        raise ContentError(
            f"item {item!r} is neither null nor an item id (a ULID: 26 upper-case Crockford "
            "base32 characters)"
        )
    if item is None and kind in entries.ABOUT_AN_ITEM:
        raise ContentError(f"entries of type {kind} name their item: item must not be null")
    if item is not None and kind in entries.ABOUT_NO_ITEM:
        raise ContentError(f"entries of type {kind} name no item: item must be null, not {item}")


@dataclass
class Content:
    """The content rules over one export's entries, in order, and what they found."""

    first: int  # the export's first entry: 0 means every earlier entry is in it
    items: dict[str, ItemSeen] = field(default_factory=dict)
    signers: set[str] = field(default_factory=set)
    intent_keys: set[str] = field(default_factory=set)
    warnings: list[str] = field(default_factory=list)

    def check(self, number: int, entry: dict[str, Any]) -> None:
        """§1.4 for entry ``number`` (already through :func:`check_form`)."""
        kind = entry["type"]
        try:
            if kind == entries.ITEM_ENQUEUED:
                self._enqueued(number, entry["item"], entry["data"])
            elif kind == entries.ITEM_VARIANT_ADDED:
                self._variant_added(number, entry["item"], entry["data"])
            elif kind == entries.ALERT:
                _check_alert(entry["data"])
        except (EvmCheckError, OrderCheckError) as exc:
            raise ContentError(str(exc)) from None

    def _enqueued(self, number: int, item: str, data: dict[str, Any]) -> None:
        if item in self.items:
            raise ContentError(f"item {item} was already queued at entry {self.items[item].entry}")
        kind = data.get("kind")
        if kind not in ITEM_KINDS:
            raise ContentError(f"item kind {kind!r} is not one of {', '.join(ITEM_KINDS)}")
        declared, variants = None, 0
        if kind == EVM_TX:
            declared = check_enqueued(data)
            self.signers.add(declared.account)
            variants = len(data["variants"])
        else:
            self.intent_keys.add(check_enqueued_order(data))
        self.items[item] = ItemSeen(number, kind, declared, variants)

    def _variant_added(self, number: int, item: str, data: dict[str, Any]) -> None:
        seen = self.items.get(item)
        if seen is None and self.first == 0:
            raise ContentError(
                f"variant added to item {item}, which no earlier entry queued: the export "
                "starts at entry 0, so the item.enqueued entry is missing"
            )
        if seen is None:
            signer = check_added_variant(data, None, None)
            self.warnings.append(
                f"entry {number}: variant added to item {item}, which was queued before this "
                f"export's first entry ({self.first}): its sender, chain id, nonce and index "
                f"were not checked (it is signed by {to_checksum_address(signer)})"
            )
            return
        if seen.declared is None:
            raise ContentError(
                f"variant added to item {item}, a {seen.kind} item: only evm_tx items have variants"
            )
        check_added_variant(data, seen.declared, seen.variants)
        seen.variants += 1


def _check_alert(data: dict[str, Any]) -> None:
    if data.keys() not in ALERT_FORMS or not all(isinstance(v, str) for v in data.values()):
        raise ContentError(
            f"alert data has members {', '.join(sorted(data)) or 'none'}: an alert holds "
            "the strings key, message and severity (older writers: message only)"
        )
