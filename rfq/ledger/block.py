"""Blocks, commit seals, the quorum and proposer rules, and the pure checks a block must pass.

A block is a header, the opaque encoded transactions (the state machine decodes them) and the
IBFT 2.0 commit seals of a quorum of authorities. The header commits to everything that is
agreed: the parent (``prev_hash``), the transactions (``tx_root``, ``tx_count``), the state
after them (``state_root``) and the authority set that must seal it (``authority_set_hash``).

Field meanings consensus relies on:

- ``round`` is the round whose commit seals this copy of the block carries, and it is left
  out of ``hash()`` (as Besu's QBFT leaves the round out of its on-chain block hash). A block
  locked in round ``r`` is re-proposed in ``r' > r`` with only ``round`` replaced (see
  ``with_round``), and a quorum may commit it in either round: honest authorities can hold
  copies of one block (one hash) that differ in ``round`` and seals. So nothing agreed may
  depend on ``round`` or the seals: not the state transition, not liveness accounting (use
  ``proposer``, which is hashed).
- ``proposer`` is the authority that built the block: ``proposer_for(height, r)`` for the
  round ``r`` it was first proposed in; a re-proposed locked block keeps its builder.
- ``authority_set_hash`` is the hash of the set that seals this block (the set running
  consensus at this height); ``verify_seals`` checks the ids it is given against it.
- ``prev_hash`` of the genesis block (height 0) is the genesis file's hash.

Seals sign ``commit_digest(header_hash, round)``: a domain-separated digest binding the block
and the commit round, so a commit seal can never be confused with any other signature made
with the same member key, nor moved to another round.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

import msgspec

from rfq.errors import RfqError
from rfq.identity import Directory, Identity, verify_signature
from rfq.ledger.merkle import merkle_root

_encoder = msgspec.msgpack.Encoder()

COMMIT_DOMAIN = b"botc/ibft2/commit-seal/v1\x00"
AUTHORITY_SET_DOMAIN = b"botc/authority-set/v1\x00"


class BlockError(RfqError):
    """A block that fails a check; ``height`` and ``reason`` say which and why."""

    def __init__(self, height: int, reason: str) -> None:
        self.height = height
        self.reason = reason
        super().__init__(f"block {height}: {reason}")


# --------------------------------------------------------------------------------------------
# Quorum and proposer rules


def max_faulty(n: int) -> int:
    """``f``: the most Byzantine authorities ``n`` can tolerate, ``(n - 1) // 3``."""
    return (n - 1) // 3


def quorum(n: int) -> int:
    """IBFT 2.0's quorum ``ceil(2n / 3)`` (Besu's rule).

    Equals ``2f + 1`` when ``n = 3f + 1``; for other ``n`` it is the smallest size whose two
    quorums always share at least ``f + 1`` authorities (one honest): ``2q - n >= f + 1``.
    n=4: 3, n=5: 4, n=6: 4, n=7: 5.
    """
    return -(-2 * n // 3)


def sorted_authorities(ids: Iterable[str]) -> tuple[str, ...]:
    """The canonical order of an authority set: sorted, without duplicates."""
    return tuple(sorted(set(ids)))


def proposer_for(height: int, round: int, authorities: Iterable[str]) -> str:
    """Round-robin: ``sorted(authorities)[(height + round) % n]``.

    Each height starts one place further along the sorted set, and each round change moves to
    the next authority, so a crashed proposer costs one round, never the height.
    """
    ordered = sorted_authorities(authorities)
    if not ordered:
        raise ValueError("an empty authority set has no proposer")
    return ordered[(height + round) % len(ordered)]


def first_round_of(height: int, proposer: str, authorities: Iterable[str]) -> int | None:
    """The first round (below ``n``) whose proposer is ``proposer``: the round a block built
    by ``proposer`` was first proposed in, modulo ``n``. ``None`` for a non-member.

    Agreed data for liveness accounting: ``header.proposer`` is hashed, ``header.round`` is
    not (copies of one block may carry different rounds), so the proposers of rounds
    ``0 .. first_round_of(...) - 1`` are the ones every node agrees missed their turn.
    """
    ordered = sorted_authorities(authorities)
    if proposer not in ordered:
        return None
    return (ordered.index(proposer) - height) % len(ordered)


def authority_set_hash(ids: Iterable[str]) -> bytes:
    """SHA-256 over the sorted, de-duplicated ids: any order of the same set hashes the same."""
    return hashlib.sha256(AUTHORITY_SET_DOMAIN + _encoder.encode(sorted_authorities(ids))).digest()


# --------------------------------------------------------------------------------------------
# Structures


class BlockHeader(
    msgspec.Struct, frozen=True, array_like=True, forbid_unknown_fields=True, dict=True
):
    """What the authorities agree on. ``hash()`` is its identity (cached: headers are frozen);
    every field but ``round`` enters it."""

    chain_id: str
    height: int
    prev_hash: bytes
    timestamp_ms: int
    proposer: str
    round: int
    tx_root: bytes
    state_root: bytes
    authority_set_hash: bytes
    tx_count: int

    def hash(self) -> bytes:
        """SHA-256 of the canonical msgpack encoding of the fields in order, ``round`` left
        out (it is the commit round, bound by the seals instead); computed once per instance."""
        cached: bytes | None = self.__dict__.get("_hash")
        if cached is None:
            cached = hashlib.sha256(_encoder.encode(self.hashed_fields())).digest()
            self.__dict__["_hash"] = cached
        return cached

    def hashed_fields(self) -> tuple[object, ...]:
        return (
            self.chain_id,
            self.height,
            self.prev_hash,
            self.timestamp_ms,
            self.proposer,
            self.tx_root,
            self.state_root,
            self.authority_set_hash,
            self.tx_count,
        )


class CommitSeal(msgspec.Struct, frozen=True, array_like=True, forbid_unknown_fields=True):
    """An authority's Ed25519 signature over ``commit_digest(header hash, round)``."""

    authority: str
    signature: bytes


class Block(msgspec.Struct, frozen=True, array_like=True, forbid_unknown_fields=True, dict=True):
    """A header, its encoded transactions and (once decided) a quorum of commit seals."""

    header: BlockHeader
    txs: tuple[bytes, ...] = ()
    seals: tuple[CommitSeal, ...] = ()

    @property
    def height(self) -> int:
        return self.header.height

    def hash(self) -> bytes:
        """The header's hash: transactions enter through ``tx_root``, seals are outside it."""
        return self.header.hash()

    def computed_tx_root(self) -> bytes:
        """Merkle root of ``txs``, computed once per instance (the costly part of a check)."""
        cached: bytes | None = self.__dict__.get("_tx_root")
        if cached is None:
            cached = merkle_root(self.txs)
            self.__dict__["_tx_root"] = cached
        return cached


def commit_digest(header_hash: bytes, round: int) -> bytes:
    """What a commit seal signs: the domain, the header hash and the commit round.

    16 signed bytes hold any round msgpack can carry, so a hostile header never makes it raise.
    """
    return hashlib.sha256(
        COMMIT_DOMAIN + header_hash + round.to_bytes(16, "big", signed=True)
    ).digest()


def make_seal(identity: Identity, header_hash: bytes, round: int) -> CommitSeal:
    return CommitSeal(identity.member_id, identity.sign(commit_digest(header_hash, round)))


def seal_valid(seal: CommitSeal, header_hash: bytes, round: int, directory: Directory) -> bool:
    """True when the sealer is known and signed this header hash for this round."""
    if seal.authority not in directory or not isinstance(seal.signature, bytes):
        return False
    return verify_signature(
        directory.verify_key(seal.authority), seal.signature, commit_digest(header_hash, round)
    )


def build_block(
    parent: BlockHeader,
    *,
    proposer: str,
    round: int,
    timestamp_ms: int,
    txs: Sequence[bytes],
    state_root: bytes,
    authorities: Iterable[str],
) -> Block:
    """The unsealed block a proposer offers on top of ``parent`` (roots and counts filled in)."""
    txs = tuple(txs)
    root = merkle_root(txs)
    header = BlockHeader(
        chain_id=parent.chain_id,
        height=parent.height + 1,
        prev_hash=parent.hash(),
        timestamp_ms=timestamp_ms,
        proposer=proposer,
        round=round,
        tx_root=root,
        state_root=state_root,
        authority_set_hash=authority_set_hash(authorities),
        tx_count=len(txs),
    )
    block = Block(header=header, txs=txs)
    block.__dict__["_tx_root"] = root
    return block


def with_round(block: Block, round: int) -> Block:
    """The same unsealed block (same hash) for another round: how a locked block is
    re-proposed, and how a block accepted in one round is decided with another's seals."""
    if block.header.round == round and not block.seals:
        return block
    header = msgspec.structs.replace(block.header, round=round)
    header.__dict__["_hash"] = block.header.hash()
    out = Block(header=header, txs=block.txs)
    if "_tx_root" in block.__dict__:
        out.__dict__["_tx_root"] = block.__dict__["_tx_root"]
    return out


def with_seals(block: Block, seals: Iterable[CommitSeal]) -> Block:
    """The decided block: ``seals`` sorted by authority so every node stores the same bytes."""
    out = Block(
        header=block.header, txs=block.txs, seals=tuple(sorted(seals, key=lambda s: s.authority))
    )
    if "_tx_root" in block.__dict__:
        out.__dict__["_tx_root"] = block.__dict__["_tx_root"]
    return out


def genesis_block(
    chain_id: str,
    genesis_hash: bytes,
    authorities: Iterable[str],
    state_root: bytes,
    timestamp_ms: int,
) -> Block:
    """Block 0: no transactions, no proposer, no seals; ``prev_hash`` is the genesis hash."""
    header = BlockHeader(
        chain_id=chain_id,
        height=0,
        prev_hash=genesis_hash,
        timestamp_ms=timestamp_ms,
        proposer="",
        round=0,
        tx_root=merkle_root(()),
        state_root=state_root,
        authority_set_hash=authority_set_hash(authorities),
        tx_count=0,
    )
    return Block(header=header)


# --------------------------------------------------------------------------------------------
# Checks: each returns the problems found (empty when the block passes)


def verify_header_link(parent: BlockHeader, header: BlockHeader) -> list[str]:
    """``header`` extends ``parent``: same chain, next height, parent hash, no earlier time."""
    problems: list[str] = []
    if header.chain_id != parent.chain_id:
        problems.append(f"chain {header.chain_id!r} is not the parent's {parent.chain_id!r}")
    if header.height != parent.height + 1:
        problems.append(f"height {header.height} does not follow {parent.height}")
    if header.prev_hash != parent.hash():
        problems.append("prev_hash is not the parent's hash")
    if header.timestamp_ms < parent.timestamp_ms:
        problems.append(
            f"timestamp {header.timestamp_ms} is before the parent's {parent.timestamp_ms}"
        )
    if header.round < 0:
        problems.append(f"round {header.round} is negative")
    return problems


def verify_tx_root(block: Block) -> list[str]:
    """The transactions are the ones the header commits to (root and count)."""
    problems: list[str] = []
    if block.header.tx_count != len(block.txs):
        problems.append(f"tx_count {block.header.tx_count} but {len(block.txs)} transactions")
    if block.computed_tx_root() != block.header.tx_root:
        problems.append("tx_root does not match the transactions")
    return problems


def verify_seals(block: Block, authorities: Sequence[str], directory: Directory) -> list[str]:
    """A quorum of distinct current authorities sealed this header in its round.

    Every seal must be good: an unknown, duplicate, non-authority or invalid seal is a problem
    even when a quorum of good ones remains (a decided block carries exactly what was agreed).
    The genesis block (height 0) must carry no seals: it is checked by rebuilding it.
    """
    header = block.header
    members = sorted_authorities(authorities)
    problems: list[str] = []
    if authority_set_hash(members) != header.authority_set_hash:
        problems.append("the authority set is not the one the header commits to")
    if header.height == 0:
        if block.seals:
            problems.append("the genesis block carries seals")
        return problems
    digest_hash = header.hash()
    allowed = set(members)
    good: set[str] = set()
    seen: set[str] = set()
    for seal in block.seals:
        who = seal.authority
        if who in seen:
            problems.append(f"duplicate seal by {who!r}")
            continue
        seen.add(who)
        if who not in allowed:
            problems.append(f"seal by {who!r}, who is not an authority")
        elif not seal_valid(seal, digest_hash, header.round, directory):
            problems.append(f"seal by {who!r} does not verify")
        else:
            good.add(who)
    need = quorum(len(members))
    if len(good) < need:
        problems.append(f"{len(good)} valid seals, a quorum of {len(members)} is {need}")
    return problems


def check_block(
    parent: BlockHeader, block: Block, authorities: Sequence[str], directory: Directory
) -> None:
    """Every check on a decided block received from elsewhere (sync); ``BlockError`` if any."""
    problems = (
        verify_header_link(parent, block.header)
        + verify_tx_root(block)
        + verify_seals(block, authorities, directory)
    )
    if problems:
        raise BlockError(block.header.height, "; ".join(problems))
