"""Merkle roots and inclusion proofs over byte strings (RFC 6962 / RFC 9162 tree shape).

Why this shape: leaves and interior nodes are hashed with different one-byte prefixes
(``0x00`` and ``0x01``), so a node can never be passed off as a leaf (second-preimage attack);
and an odd node at the end of a level is promoted unchanged instead of being paired with a
copy of itself, so ``[a, b, c]`` and ``[a, b, c, c]`` have different roots (Bitcoin's
CVE-2012-2459 ambiguity). Building level by level with promotion gives exactly the RFC 6962
tree (split at the largest power of two below ``n``), so proofs use RFC 9162's verifier.

The empty list's root is ``SHA-256("")`` (RFC 6962's ``MTH({})``), which no leaf or node hash
can equal without a SHA-256 preimage.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import msgspec

_LEAF = b"\x00"
_NODE = b"\x01"
_sha256 = hashlib.sha256

EMPTY_ROOT: bytes = _sha256(b"").digest()


class MerkleProof(msgspec.Struct, frozen=True, array_like=True, forbid_unknown_fields=True):
    """Inclusion proof of leaf ``index`` in a tree of ``size`` leaves: sibling hashes, bottom up.

    ``index`` and ``size`` are part of the proof because the tree shape (where promoted nodes
    sit) depends on them; the verifier needs both to know on which side each sibling goes.
    """

    index: int
    size: int
    path: tuple[bytes, ...]


def leaf_hash(item: bytes) -> bytes:
    return _sha256(_LEAF + item).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return _sha256(_NODE + left + right).digest()


def _next_level(level: list[bytes]) -> list[bytes]:
    paired = [node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
    if len(level) % 2:
        paired.append(level[-1])  # promoted, never duplicated
    return paired


def root_of_leaf_hashes(hashes: Sequence[bytes]) -> bytes:
    """Root over already-hashed leaves (callers holding transaction ids skip re-hashing)."""
    if not hashes:
        return EMPTY_ROOT
    level = list(hashes)
    while len(level) > 1:
        level = _next_level(level)
    return level[0]


def merkle_root(items: Sequence[bytes]) -> bytes:
    """Root over ``items`` in order; ``EMPTY_ROOT`` for no items."""
    return root_of_leaf_hashes([leaf_hash(x) for x in items])


def proof(items: Sequence[bytes], index: int) -> MerkleProof:
    """Inclusion proof for ``items[index]``; ``IndexError`` when there is no such item."""
    size = len(items)
    if not 0 <= index < size:
        raise IndexError(f"leaf {index} is not in a tree of {size}")
    level = [leaf_hash(x) for x in items]
    path: list[bytes] = []
    i = index
    while len(level) > 1:
        sibling = i ^ 1
        if sibling < len(level):
            path.append(level[sibling])
        level = _next_level(level)
        i //= 2
    return MerkleProof(index=index, size=size, path=tuple(path))


def verify_proof(root: bytes, item: bytes, inclusion: MerkleProof) -> bool:
    """True when ``inclusion`` proves ``item`` is leaf ``inclusion.index`` under ``root``.

    RFC 9162 section 2.1.3.2, verbatim: never raises, whatever the proof holds. As in RFC
    9162 the root does not commit to the tree size, so a caller that knows it (a block
    header's ``tx_count``) should also check ``inclusion.size``.
    """
    index, size, path = inclusion.index, inclusion.size, inclusion.path
    if not (isinstance(index, int) and isinstance(size, int)) or not 0 <= index < size:
        return False
    fn, sn = index, size - 1
    r = leaf_hash(item)
    for p in path:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root
