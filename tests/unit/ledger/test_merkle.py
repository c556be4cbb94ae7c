"""Merkle roots and inclusion proofs: RFC 6962's tree, no odd-leaf ambiguity, tamper-evident."""

from __future__ import annotations

import hashlib

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rfq.ledger.merkle import (
    EMPTY_ROOT,
    MerkleProof,
    leaf_hash,
    merkle_root,
    node_hash,
    proof,
    root_of_leaf_hashes,
    verify_proof,
)


def rfc6962_root(items: list[bytes]) -> bytes:
    """RFC 6962 section 2.1, written recursively as in the RFC: the reference to match."""
    if not items:
        return hashlib.sha256(b"").digest()
    if len(items) == 1:
        return hashlib.sha256(b"\x00" + items[0]).digest()
    k = 1
    while k * 2 < len(items):
        k *= 2
    return hashlib.sha256(b"\x01" + rfc6962_root(items[:k]) + rfc6962_root(items[k:])).digest()


TXS = [f"tx-{i}".encode() for i in range(40)]


def test_the_empty_list_has_a_defined_root_that_no_leaf_shares() -> None:
    assert merkle_root([]) == EMPTY_ROOT == hashlib.sha256(b"").digest()
    assert merkle_root([b""]) != EMPTY_ROOT


def test_one_item_roots_at_its_leaf_hash() -> None:
    assert merkle_root([b"trade"]) == leaf_hash(b"trade")


@pytest.mark.parametrize("n", range(0, 34))
def test_the_root_matches_rfc_6962_for_every_small_size(n: int) -> None:
    assert merkle_root(TXS[:n]) == rfc6962_root(TXS[:n])


def test_repeating_the_last_item_changes_the_root_unlike_bitcoin() -> None:
    a, b, c = b"a", b"b", b"c"
    assert merkle_root([a, b, c]) != merkle_root([a, b, c, c])
    assert merkle_root([a, b, c, d := b"d"]) != merkle_root([a, b, c, d, d])


def test_a_leaf_cannot_pose_as_an_interior_node() -> None:
    a, b = b"alice pays bob", b"bob pays carol"
    forged = leaf_hash(a) + leaf_hash(b)  # the bytes an interior node hashes, without its prefix
    assert merkle_root([forged]) != merkle_root([a, b])


def test_order_matters() -> None:
    assert merkle_root([b"x", b"y"]) != merkle_root([b"y", b"x"])


def test_precomputed_leaf_hashes_give_the_same_root() -> None:
    assert root_of_leaf_hashes([leaf_hash(t) for t in TXS[:13]]) == merkle_root(TXS[:13])


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 7, 8, 9, 16, 17, 33])
def test_every_leaf_proves_its_inclusion(n: int) -> None:
    items = TXS[:n]
    root = merkle_root(items)
    for i, item in enumerate(items):
        p = proof(items, i)
        assert (p.index, p.size) == (i, n)
        assert verify_proof(root, item, p)


def test_a_proof_survives_the_wire() -> None:
    p = proof(TXS[:11], 6)
    back = msgspec.msgpack.decode(msgspec.msgpack.encode(p), type=MerkleProof)
    assert verify_proof(merkle_root(TXS[:11]), TXS[6], back)


def test_a_proof_for_a_missing_leaf_is_an_index_error() -> None:
    with pytest.raises(IndexError):
        proof(TXS[:3], 3)
    with pytest.raises(IndexError):
        proof([], 0)


def tampered_proofs(p: MerkleProof) -> list[MerkleProof]:
    out = [
        msgspec.structs.replace(p, index=p.index + 1),
        msgspec.structs.replace(p, index=-1),
        msgspec.structs.replace(p, size=p.index),
        msgspec.structs.replace(p, size=0),
        msgspec.structs.replace(p, path=(*p.path, b"\x00" * 32)),
        msgspec.structs.replace(p, path=p.path[:-1]),
        msgspec.structs.replace(p, path=tuple(reversed(p.path))),
    ]
    for k, sibling in enumerate(p.path):
        flipped = bytes([sibling[0] ^ 1]) + sibling[1:]
        out.append(msgspec.structs.replace(p, path=(*p.path[:k], flipped, *p.path[k + 1 :])))
    return [t for t in out if t != p]


@pytest.mark.parametrize(("n", "i"), [(2, 0), (3, 2), (5, 4), (8, 3), (13, 6), (33, 32)])
def test_any_tampered_proof_fails(n: int, i: int) -> None:
    items = TXS[:n]
    root = merkle_root(items)
    good = proof(items, i)
    for bad in tampered_proofs(good):
        assert not verify_proof(root, items[i], bad), bad
    assert not verify_proof(root, b"forged trade", good)
    assert not verify_proof(merkle_root([*items[:-1], b"other"]), items[i], good)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.binary(max_size=12), min_size=1, max_size=40), st.data())
def test_any_list_roots_as_rfc_6962_and_proves_each_member(
    items: list[bytes], data: st.DataObject
) -> None:
    root = merkle_root(items)
    assert root == rfc6962_root(items)
    i = data.draw(st.integers(0, len(items) - 1))
    p = proof(items, i)
    assert verify_proof(root, items[i], p)
    j = data.draw(st.integers(0, len(items) - 1))
    if items[j] != items[i]:
        assert not verify_proof(root, items[j], p)


@given(st.builds(MerkleProof, st.integers(-5, 50), st.integers(-5, 50), st.lists(st.binary())))
def test_garbage_proofs_are_refused_without_raising(p: MerkleProof) -> None:
    items = TXS[:9]
    root = merkle_root(items)
    result = verify_proof(root, items[0], p)
    assert result is (p == proof(items, 0))


def test_the_tree_size_is_the_callers_to_pin_as_in_rfc_9162() -> None:
    # Leaf 6 sits in the same place in trees of 13 and 14 leaves, so the proof holds for both:
    # the root does not commit to the size. Blocks pin it with the header's tx_count.
    items = TXS[:13]
    p = proof(items, 6)
    assert verify_proof(merkle_root(items), items[6], msgspec.structs.replace(p, size=14))


def test_node_hash_is_not_symmetric() -> None:
    x, y = leaf_hash(b"x"), leaf_hash(b"y")
    assert node_hash(x, y) != node_hash(y, x)
