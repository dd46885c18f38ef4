"""RFC 6962 / RFC 9162 Merkle tree: published vectors, then properties.

The vectors below are copied from transparency-dev/merkle (the Go Merkle library of the
certificate-transparency project), file ``proof/verify_test.go``: the eight leaf inputs
(``leaves``), the roots of the trees of sizes 1..8 (``roots``), the inclusion proofs
(``inclusionProofs``, whose leaf numbers there are 1-based: ``{1, 8, ...}`` is leaf index 0)
and the consistency proofs (``consistencyProofs``). The hasher vectors come from
``rfc6962/rfc6962_test.go`` in the same repository.
"""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from airlock.audit.merkle import (
    EMPTY_ROOT,
    Frontier,
    ProofError,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    node_hash,
    root,
    root_from_inclusion,
    verify_consistency,
    verify_inclusion,
)

# ------------------------------------------------------------------ published vectors

# transparency-dev/merkle, proof/verify_test.go: `leaves`
CT_ENTRIES = [
    bytes.fromhex(h)
    for h in (
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    )
]

# transparency-dev/merkle, proof/verify_test.go: `roots` (tree sizes 1..8)
CT_ROOTS = [
    bytes.fromhex(h)
    for h in (
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    )
]


def _hx(*hashes: str) -> list[bytes]:
    return [bytes.fromhex(h) for h in hashes]


# transparency-dev/merkle, proof/verify_test.go: `inclusionProofs`, with the 1-based leaf
# numbers converted to 0-based indexes: (index, tree size, audit path).
CT_INCLUSION = [
    (0, 1, []),
    (
        0,
        8,
        _hx(
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ),
    ),
    (
        5,
        8,
        _hx(
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ),
    ),
    (2, 3, _hx("fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125")),
    (
        1,
        5,
        _hx(
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ),
    ),
]

# transparency-dev/merkle, proof/verify_test.go: `consistencyProofs`: (size1, size2, proof).
CT_CONSISTENCY = [
    (1, 1, []),
    (
        1,
        8,
        _hx(
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ),
    ),
    (
        6,
        8,
        _hx(
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ),
    ),
    (
        2,
        5,
        _hx(
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ),
    ),
    (
        6,
        7,
        _hx(
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ),
    ),
]

CT_LEAVES = [leaf_hash(e) for e in CT_ENTRIES]


def test_empty_root_is_sha256_of_nothing() -> None:
    # transparency-dev/merkle, rfc6962/rfc6962_test.go: "RFC6962 Empty"
    expected = bytes.fromhex("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
    assert hashlib.sha256(b"").digest() == expected
    assert expected == EMPTY_ROOT
    assert root([]) == expected
    assert Frontier().root() == expected


def test_hasher_vectors() -> None:
    # transparency-dev/merkle, rfc6962/rfc6962_test.go: TestRFC6962Hasher
    assert leaf_hash(b"") == bytes.fromhex(
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
    )
    assert leaf_hash(b"L123456") == bytes.fromhex(
        "395aa064aa4c29f7010acfe3f25db9485bbd4b91897b6ad7ad547639252b4d56"
    )
    assert node_hash(b"N123", b"N456") == bytes.fromhex(
        "aa217fe888e47007fa15edab33c2b492a722cb106c64667fc2b044444de66bbb"
    )
    # The empty tree is not the tree holding one empty entry.
    assert leaf_hash(b"") != EMPTY_ROOT


@pytest.mark.parametrize("size", range(1, 9))
def test_published_roots(size: int) -> None:
    assert root(CT_LEAVES[:size]) == CT_ROOTS[size - 1]
    assert Frontier.of(CT_LEAVES[:size]).root() == CT_ROOTS[size - 1]


@pytest.mark.parametrize(("index", "size", "path"), CT_INCLUSION)
def test_published_inclusion_proofs(index: int, size: int, path: list[bytes]) -> None:
    leaves = CT_LEAVES[:size]
    assert inclusion_proof(index, leaves) == path
    assert root_from_inclusion(index, size, CT_LEAVES[index], path) == CT_ROOTS[size - 1]
    verify_inclusion(index, size, CT_LEAVES[index], path, CT_ROOTS[size - 1])


@pytest.mark.parametrize(("index", "size", "path"), CT_INCLUSION)
def test_published_inclusion_proofs_tampered(index: int, size: int, path: list[bytes]) -> None:
    # The probes of corruptInclusionProof in the same Go file, where they make sense here.
    good_root, leaf = CT_ROOTS[size - 1], CT_LEAVES[index]
    some_hash = bytes.fromhex("abacaba000000000000000000000000000000000000000000060061e00123456")
    probes: list[tuple[int, int, bytes, list[bytes], bytes]] = [
        (index - 1, size, leaf, path, good_root),
        (index + 1, size, leaf, path, good_root),
        (index ^ 2, size, leaf, path, good_root),
        (index, size * 2, leaf, path, good_root),
        (index, size // 2, leaf, path, good_root),
        (index, size, leaf_hash(b"WrongLeaf"), path, good_root),
        (index, size, leaf, path, EMPTY_ROOT),
        (index, size, leaf, path, some_hash),
        (index, size, leaf, [*path, b""], good_root),
        (index, size, leaf, [*path, good_root], good_root),
        (index, size, leaf, [b"", *path], good_root),
        (index, size, leaf, [good_root, *path], good_root),
    ]
    for i in range(len(path)):
        flipped = list(path)
        flipped[i] = bytes([flipped[i][0] ^ 8]) + flipped[i][1:]
        probes.append((index, size, leaf, flipped, good_root))
    if path:
        probes.append((index, size, leaf, path[:-1], good_root))
    if len(path) > 1:
        probes.append((index, size, leaf, [path[0], some_hash, *path[1:]], good_root))
    for i, s, lf, p, r in probes:
        with pytest.raises(ProofError):
            verify_inclusion(i, s, lf, p, r)


@pytest.mark.parametrize(("old", "new", "path"), CT_CONSISTENCY)
def test_published_consistency_proofs(old: int, new: int, path: list[bytes]) -> None:
    assert consistency_proof(old, CT_LEAVES[:new]) == path
    verify_consistency(old, new, CT_ROOTS[old - 1], CT_ROOTS[new - 1], path)


@pytest.mark.parametrize(("old", "new", "path"), [c for c in CT_CONSISTENCY if c[2]])
def test_published_consistency_proofs_tampered(old: int, new: int, path: list[bytes]) -> None:
    r1, r2 = CT_ROOTS[old - 1], CT_ROOTS[new - 1]
    probes: list[tuple[int, int, bytes, bytes, list[bytes]]] = [
        (old - 1, new, r1, r2, path),
        (old + 1, new, r1, r2, path),
        (old ^ 2, new, r1, r2, path),
        (old, new * 2, r1, r2, path),
        (old, new // 2, r1, r2, path),
        (old, new, leaf_hash(b"WrongRoot"), r2, path),
        (old, new, r1, leaf_hash(b"WrongRoot"), path),
        (old, new, r2, r1, path),
        (old, new, r1, r2, []),
        (old, new, r1, r2, [*path, b""]),
        (old, new, r1, r2, [*path, r1]),
        (old, new, r1, r2, [*path, r2]),
        (old, new, r1, r2, [b"", *path]),
        (old, new, r1, r2, [r1, *path]),
        (old, new, r1, r2, [r2, *path]),
        (old, new, r1, r2, [path[0], *path]),
        (old, new, r1, r2, path[:-1]),
    ]
    for i in range(len(path)):
        flipped = list(path)
        flipped[i] = bytes([flipped[i][0] ^ 16]) + flipped[i][1:]
        probes.append((old, new, r1, r2, flipped))
    for s1, s2, a, b, p in probes:
        with pytest.raises(ProofError):
            verify_consistency(s1, s2, a, b, p)


# ------------------------------------------------------------------------- edge cases


def test_root_from_inclusion_refuses_impossible_positions() -> None:
    leaf = CT_LEAVES[0]
    for index, size in [(0, 0), (1, 1), (8, 8), (9, 8), (-1, 8), (-1, 0)]:
        with pytest.raises(ProofError, match=f"leaf {index} is not in a tree of {size} leaves"):
            root_from_inclusion(index, size, leaf, [])
        with pytest.raises(ProofError):
            verify_inclusion(index, size, leaf, [], CT_ROOTS[0])


def test_root_from_inclusion_length_errors() -> None:
    # A one-leaf tree takes no path; any hash is one too many.
    with pytest.raises(ProofError, match="longer"):
        root_from_inclusion(0, 1, CT_LEAVES[0], [CT_LEAVES[1]])
    with pytest.raises(ProofError, match="shorter"):
        root_from_inclusion(0, 2, CT_LEAVES[0], [])
    assert root_from_inclusion(0, 1, CT_LEAVES[0], []) == CT_LEAVES[0]


def test_inclusion_proof_refuses_index_out_of_range() -> None:
    for index, leaves in [(0, []), (8, CT_LEAVES), (-1, CT_LEAVES)]:
        with pytest.raises(ProofError):
            inclusion_proof(index, leaves)


def test_consistency_proof_refuses_impossible_sizes() -> None:
    for old in (0, -1, 9):
        with pytest.raises(ProofError):
            consistency_proof(old, CT_LEAVES)


def test_verify_consistency_edges() -> None:
    r = CT_ROOTS
    for old, new in [(0, 0), (0, 1), (2, 1), (-1, 3)]:
        with pytest.raises(ProofError, match="no consistency"):
            verify_consistency(old, new, EMPTY_ROOT, EMPTY_ROOT, [])
    verify_consistency(3, 3, r[2], r[2], [])
    with pytest.raises(ProofError, match="equal sizes"):
        verify_consistency(3, 3, r[2], r[3], [])
    with pytest.raises(ProofError, match="equal sizes"):
        verify_consistency(3, 3, r[2], r[2], [EMPTY_ROOT])
    # From a power of two the old root is implied, but an empty proof still cannot reach a
    # bigger tree.
    with pytest.raises(ProofError):
        verify_consistency(4, 8, r[3], r[7], [])
    with pytest.raises(ProofError, match="empty"):
        verify_consistency(3, 8, r[2], r[7], [])


def test_a_root_is_only_bound_to_its_size_by_the_checkpoint() -> None:
    # RFC 9162 verification cannot tell some sizes apart: leaf 0's path in a 3-leaf tree has
    # the same shape as in a 4-leaf tree, so the same (path, root) also passes with size 4.
    # That is why a root must always travel with its size in a signed checkpoint.
    path = inclusion_proof(0, CT_LEAVES[:3])
    verify_inclusion(0, 4, CT_LEAVES[0], path, CT_ROOTS[2])
    proof = consistency_proof(2, CT_LEAVES[:3])
    verify_consistency(2, 4, CT_ROOTS[1], CT_ROOTS[2], proof)


# ------------------------------------------------------------------------- properties

MAX = 300
LEAVES = [leaf_hash(i.to_bytes(4, "big")) for i in range(MAX + 2)]


def _mth(leaves: list[bytes]) -> bytes:
    """RFC 6962 section 2.1 MTH, written out recursively as an independent reference."""
    n = len(leaves)
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return leaves[0]
    k = 1
    while k * 2 < n:
        k *= 2
    return hashlib.sha256(b"\x01" + _mth(leaves[:k]) + _mth(leaves[k:])).digest()


def _flip(proof: list[bytes], which: int, bit: int) -> list[bytes]:
    out = list(proof)
    h = bytearray(out[which])
    h[bit // 8] ^= 1 << (bit % 8)
    out[which] = bytes(h)
    return out


@settings(max_examples=25, deadline=None)
@given(size=st.integers(1, MAX))
def test_every_inclusion_proof_verifies(size: int) -> None:
    leaves = LEAVES[:size]
    tree_root = _mth(leaves)
    assert root(leaves) == tree_root
    for index in range(size):
        path = inclusion_proof(index, leaves)
        verify_inclusion(index, size, leaves[index], path, tree_root)


@settings(max_examples=150, deadline=None)
@given(data=st.data(), size=st.integers(1, MAX))
def test_tampered_inclusion_proofs_fail(data: st.DataObject, size: int) -> None:
    leaves = LEAVES[:size]
    tree_root = root(leaves)
    index = data.draw(st.integers(0, size - 1), label="index")
    path = inclusion_proof(index, leaves)
    leaf = leaves[index]
    verify_inclusion(index, size, leaf, path, tree_root)

    if path:
        which = data.draw(st.integers(0, len(path) - 1), label="which")
        bit = data.draw(st.integers(0, 255), label="bit")
        with pytest.raises(ProofError):
            verify_inclusion(index, size, leaf, _flip(path, which, bit), tree_root)
        with pytest.raises(ProofError, match="shorter"):
            verify_inclusion(index, size, leaf, path[:-1], tree_root)
    extra = data.draw(st.sampled_from([EMPTY_ROOT, tree_root, leaf]), label="extra")
    with pytest.raises(ProofError, match="longer"):
        verify_inclusion(index, size, leaf, [*path, extra], tree_root)

    # Any other index: a different leaf position, or one that is not in the tree at all.
    other = data.draw(st.integers(-2, size + 2).filter(lambda i: i != index), label="other")
    with pytest.raises(ProofError):
        verify_inclusion(other, size, leaf, path, tree_root)

    # Another size, checked against that tree's own root. (Against this tree's root some
    # other sizes do pass; see test_a_root_is_only_bound_to_its_size_by_the_checkpoint.)
    other_size = data.draw(st.integers(0, MAX + 2).filter(lambda s: s != size), label="size")
    with pytest.raises(ProofError):
        verify_inclusion(index, other_size, leaf, path, root(LEAVES[:other_size]))


@settings(max_examples=150, deadline=None)
@given(data=st.data(), new=st.integers(1, MAX))
def test_consistency_proofs_verify_and_tampering_fails(data: st.DataObject, new: int) -> None:
    old = data.draw(st.integers(1, new), label="old")
    leaves = LEAVES[:new]
    old_root, new_root = _mth(leaves[:old]), _mth(leaves)
    proof = consistency_proof(old, leaves)
    verify_consistency(old, new, old_root, new_root, proof)
    if old == new:
        assert proof == []
        return

    assert proof
    which = data.draw(st.integers(0, len(proof) - 1), label="which")
    bit = data.draw(st.integers(0, 255), label="bit")
    bad: list[tuple[bytes, bytes, list[bytes]]] = [
        (old_root, new_root, _flip(proof, which, bit)),
        (old_root, new_root, proof[:-1]),
        (old_root, new_root, proof[1:]),
        (old_root, new_root, [*proof, new_root]),
        (old_root, new_root, [proof[0], *proof]),
        (old_root, new_root, []),
        (new_root, old_root, proof),
        (leaf_hash(b"wrong"), new_root, proof),
        (old_root, leaf_hash(b"wrong"), proof),
    ]
    for r1, r2, p in bad:
        with pytest.raises(ProofError):
            verify_consistency(old, new, r1, r2, p)

    # Another old size, checked against that prefix's root.
    other = data.draw(st.integers(1, new).filter(lambda m: m != old), label="other")
    with pytest.raises(ProofError):
        verify_consistency(other, new, _mth(leaves[:other]), new_root, proof)


@settings(max_examples=20, deadline=None)
@given(size=st.integers(0, MAX))
def test_frontier_matches_reference_for_every_prefix(size: int) -> None:
    frontier = Frontier()
    assert frontier.root() == _mth([])
    for n in range(1, size + 1):
        frontier.append(LEAVES[n - 1])
        assert frontier.size == n
        assert len(frontier.hashes()) == bin(n).count("1")
        expected = _mth(LEAVES[:n])
        assert frontier.root() == expected
        assert Frontier.of(LEAVES[:n]).root() == expected
        assert root(LEAVES[:n]) == expected


@settings(max_examples=100, deadline=None)
@given(data=st.data(), total=st.integers(0, MAX))
def test_frontier_resume_continues_identically(data: st.DataObject, total: int) -> None:
    cut = data.draw(st.integers(0, total), label="cut")
    saved = Frontier.of(LEAVES[:cut])
    resumed = Frontier.resume(saved.size, saved.hashes())
    assert resumed.size == cut
    assert resumed.root() == saved.root()
    for leaf in LEAVES[cut:total]:
        resumed.append(leaf)
    whole = Frontier.of(LEAVES[:total])
    assert resumed.size == whole.size == total
    assert resumed.hashes() == whole.hashes()
    assert resumed.root() == whole.root() == root(LEAVES[:total])


@settings(max_examples=100, deadline=None)
@given(data=st.data(), size=st.integers(0, MAX))
def test_frontier_resume_refuses_wrong_hash_count(data: st.DataObject, size: int) -> None:
    hashes = Frontier.of(LEAVES[:size]).hashes()
    count = data.draw(st.integers(0, 12).filter(lambda c: c != len(hashes)), label="count")
    wrong = (hashes + LEAVES[: max(0, count - len(hashes))])[:count]
    assert len(wrong) == count
    with pytest.raises(ProofError, match=f"{size}-leaf tree"):
        Frontier.resume(size, wrong)


def test_frontier_resume_refuses_negative_size() -> None:
    with pytest.raises(ProofError):
        Frontier.resume(-1, [])


def test_frontier_hashes_is_a_copy() -> None:
    frontier = Frontier.of(CT_LEAVES[:7])
    frontier.hashes().clear()
    assert frontier.root() == CT_ROOTS[6]
