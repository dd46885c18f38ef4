"""RFC 6962 / RFC 9162 Merkle tree hashing and proofs. Pure functions over bytes.

Leaf hash ``SHA-256(0x00 || entry)``, node hash ``SHA-256(0x01 || left || right)``, the
empty tree hashes to ``SHA-256("")``. A tree of n leaves splits at the largest power of two
smaller than n. Proof generation takes the list of leaf hashes; verification takes only the
proof, so an auditor needs nothing else.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from airlock.audit.errors import AuditError

EMPTY_ROOT = hashlib.sha256(b"").digest()


class ProofError(AuditError, ValueError):
    """A proof does not verify, or its parameters are impossible."""


def leaf_hash(entry: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + entry).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two strictly smaller than n (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


def root(leaves: Sequence[bytes]) -> bytes:
    """The Merkle tree hash of ``leaves`` (leaf hashes, not entries)."""
    if not leaves:
        return EMPTY_ROOT
    return Frontier.of(leaves).root()


class Frontier:
    """The right edge of a growing tree: one hash per set bit of its size.

    Appending is O(log n) and the root of the current size is O(log n), so an auditor can
    check every checkpoint while streaming through the entries once.
    """

    def __init__(self) -> None:
        self.size = 0
        self._stack: list[bytes] = []  # perfect subtree roots, largest first

    @classmethod
    def of(cls, leaves: Sequence[bytes]) -> Frontier:
        frontier = cls()
        for leaf in leaves:
            frontier.append(leaf)
        return frontier

    def append(self, leaf: bytes) -> None:
        self._stack.append(leaf)
        self.size += 1
        size = self.size
        while size & 1 == 0:  # merge the perfect subtrees that now have a sibling
            right = self._stack.pop()
            self._stack[-1] = node_hash(self._stack[-1], right)
            size >>= 1

    def root(self) -> bytes:
        if not self._stack:
            return EMPTY_ROOT
        acc = self._stack[-1]
        for left in reversed(self._stack[:-1]):
            acc = node_hash(left, acc)
        return acc

    def hashes(self) -> list[bytes]:
        """The perfect subtree roots, largest (leftmost) first: enough to continue the tree."""
        return list(self._stack)

    @classmethod
    def resume(cls, size: int, hashes: Sequence[bytes]) -> Frontier:
        """Continue a tree of ``size`` leaves from its :meth:`hashes`."""
        if size < 0 or len(hashes) != bin(size).count("1"):
            raise ProofError(f"a frontier of a {size}-leaf tree has {bin(size).count('1')} hashes")
        frontier = cls()
        frontier.size, frontier._stack = size, list(hashes)
        return frontier


# ------------------------------------------------------------------- inclusion (RFC 9162 2.1.3)


def inclusion_proof(index: int, leaves: Sequence[bytes]) -> list[bytes]:
    """The audit path of leaf ``index`` in the tree of ``leaves``."""
    if not 0 <= index < len(leaves):
        raise ProofError(f"leaf {index} is not in a tree of {len(leaves)} leaves")
    return _path(index, list(leaves))


def _path(index: int, leaves: list[bytes]) -> list[bytes]:
    if len(leaves) <= 1:
        return []
    k = _split(len(leaves))
    if index < k:
        return [*_path(index, leaves[:k]), root(leaves[k:])]
    return [*_path(index - k, leaves[k:]), root(leaves[:k])]


def root_from_inclusion(index: int, size: int, leaf: bytes, proof: Sequence[bytes]) -> bytes:
    """The root implied by an inclusion proof (RFC 9162 2.1.3.2)."""
    if not 0 <= index < size:
        raise ProofError(f"leaf {index} is not in a tree of {size} leaves")
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            raise ProofError("inclusion proof is longer than the tree is deep")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while fn & 1 == 0 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("inclusion proof is shorter than the tree is deep")
    return r


def verify_inclusion(
    index: int, size: int, leaf: bytes, proof: Sequence[bytes], expected_root: bytes
) -> None:
    if root_from_inclusion(index, size, leaf, proof) != expected_root:
        raise ProofError(f"inclusion proof of leaf {index} does not lead to the tree's root")


# ----------------------------------------------------------------- consistency (RFC 9162 2.1.4)


def consistency_proof(old_size: int, leaves: Sequence[bytes]) -> list[bytes]:
    """Proof that the tree of the first ``old_size`` leaves is a prefix of ``leaves``."""
    if not 0 < old_size <= len(leaves):
        raise ProofError(f"no consistency proof from size {old_size} to {len(leaves)}")
    return _subproof(old_size, list(leaves), True)


def _subproof(m: int, leaves: list[bytes], complete: bool) -> list[bytes]:
    n = len(leaves)
    if m == n:
        return [] if complete else [root(leaves)]
    k = _split(n)
    if m <= k:
        return [*_subproof(m, leaves[:k], complete), root(leaves[k:])]
    return [*_subproof(m - k, leaves[k:], False), root(leaves[:k])]


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> None:
    """Check that ``old_root`` (of ``old_size``) is a prefix of ``new_root`` (RFC 9162 2.1.4.2)."""
    if not 0 < old_size <= new_size:
        raise ProofError(f"no consistency from size {old_size} to {new_size}")
    if old_size == new_size:
        if proof or old_root != new_root:
            raise ProofError("equal sizes need an empty proof and equal roots")
        return
    path = list(proof)
    if old_size & (old_size - 1) == 0:  # a power of two: the old root is the first node
        path.insert(0, old_root)
    if not path:
        raise ProofError("consistency proof is empty")
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise ProofError("consistency proof is too long")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while fn & 1 == 0 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("consistency proof is too short")
    if fr != old_root:
        raise ProofError(f"consistency proof does not lead to the old root (size {old_size})")
    if sr != new_root:
        raise ProofError(f"consistency proof does not lead to the new root (size {new_size})")
