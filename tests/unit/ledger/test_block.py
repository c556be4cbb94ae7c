"""Blocks, commit seals, quorum and proposer rules: any tampering is caught by some check."""

from __future__ import annotations

import hashlib

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from rfq.identity import Directory, Identity, Role
from rfq.ledger.block import (
    Block,
    BlockError,
    BlockHeader,
    CommitSeal,
    authority_set_hash,
    build_block,
    check_block,
    commit_digest,
    first_round_of,
    genesis_block,
    make_seal,
    max_faulty,
    proposer_for,
    quorum,
    verify_header_link,
    verify_seals,
    verify_tx_root,
    with_round,
    with_seals,
)
from rfq.ledger.merkle import EMPTY_ROOT, merkle_root, proof, verify_proof

CHAIN = "botc-test"
NAMES = ("alice", "bob", "carol", "dave")


def key(name: str, role: Role = Role.DEALER) -> Identity:
    return Identity(name, role, hashlib.sha256(name.encode()).digest())


KEYS = {name: key(name) for name in NAMES}
ERIN = key("erin")  # a dealer, but not an authority
DIRECTORY = Directory([k.member(n.title()) for n, k in KEYS.items()] + [ERIN.member("Erin")])
GENESIS = genesis_block(CHAIN, b"G" * 32, NAMES, b"S" * 32, 1_000)


def block_one(
    round: int = 0, txs: tuple[bytes, ...] = (b"trade-1", b"trade-2", b"fixing")
) -> Block:
    return build_block(
        GENESIS.header,
        proposer=proposer_for(1, round, NAMES),
        round=round,
        timestamp_ms=2_000,
        txs=txs,
        state_root=b"R" * 32,
        authorities=NAMES,
    )


def sealed(block: Block, by: tuple[str, ...] = ("alice", "bob", "carol")) -> Block:
    h = block.hash()
    return with_seals(block, [make_seal(KEYS[n], h, block.header.round) for n in by])


def reheader(block: Block, **changes: object) -> Block:
    """The same block (txs, seals) under a header with some fields changed."""
    return Block(msgspec.structs.replace(block.header, **changes), block.txs, block.seals)


# --------------------------------------------------------------------------------------------
# Rules


@pytest.mark.parametrize(
    ("n", "f", "q"),
    [(1, 0, 1), (2, 0, 2), (3, 0, 2), (4, 1, 3), (5, 1, 4), (6, 1, 4), (7, 2, 5), (10, 3, 7)],
)
def test_quorum_is_two_thirds_rounded_up_and_tolerates_f_faults(n: int, f: int, q: int) -> None:
    assert max_faulty(n) == f
    assert quorum(n) == q


@pytest.mark.parametrize("n", range(1, 101))
def test_two_quorums_always_share_an_honest_authority_and_f_crashes_leave_a_quorum(n: int) -> None:
    f, q = max_faulty(n), quorum(n)
    assert 2 * q - n >= f + 1  # safety: the overlap of any two quorums exceeds f
    assert q <= n - f  # liveness: the n - f correct authorities make a quorum
    if n % 3 == 1:
        assert q == 2 * f + 1


def test_the_proposer_rotates_round_robin_over_the_sorted_set() -> None:
    shuffled = ("dave", "bob", "alice", "carol")
    assert [proposer_for(h, 0, shuffled) for h in range(5)] == [
        "alice",
        "bob",
        "carol",
        "dave",
        "alice",
    ]
    assert [proposer_for(1, r, shuffled) for r in range(4)] == ["bob", "carol", "dave", "alice"]
    with pytest.raises(ValueError, match="empty"):
        proposer_for(1, 0, ())


def test_the_round_a_block_was_first_proposed_in_follows_from_its_builder() -> None:
    for height in range(6):
        for round in range(4):
            builder = proposer_for(height, round, NAMES)
            assert first_round_of(height, builder, NAMES) == round
    assert first_round_of(1, "erin", NAMES) is None


def test_the_authority_set_hash_ignores_order_and_repeats_but_not_membership() -> None:
    assert authority_set_hash(NAMES) == authority_set_hash(reversed(NAMES))
    assert authority_set_hash(NAMES) == authority_set_hash((*NAMES, "alice"))
    assert authority_set_hash(NAMES) != authority_set_hash(NAMES[:3])
    assert authority_set_hash(NAMES) != authority_set_hash((*NAMES, "erin"))


def test_a_commit_digest_binds_the_header_hash_and_the_round() -> None:
    h = block_one().hash()
    assert commit_digest(h, 0) != commit_digest(h, 1)
    assert commit_digest(h, 0) != commit_digest(b"\x00" * 32, 0)
    assert commit_digest(h, 0) != hashlib.sha256(h).digest()


# --------------------------------------------------------------------------------------------
# Structures


def test_the_header_hash_is_sha256_of_its_msgpack_without_the_round_and_cached() -> None:
    header = block_one().header
    fields = [getattr(header, f) for f in BlockHeader.__struct_fields__ if f != "round"]
    assert header.hash() == hashlib.sha256(msgspec.msgpack.encode(fields)).digest()
    assert header.hash() is header.hash()
    decoded = msgspec.msgpack.decode(msgspec.msgpack.encode(header), type=BlockHeader)
    assert decoded == header and decoded.hash() == header.hash()


def test_a_block_survives_the_wire_with_its_seals() -> None:
    block = sealed(block_one())
    back = msgspec.msgpack.decode(msgspec.msgpack.encode(block), type=Block)
    assert back == block
    assert verify_seals(back, NAMES, DIRECTORY) == []


def test_build_block_fills_in_the_roots_counts_and_parent_link() -> None:
    block = block_one()
    h = block.header
    assert (h.chain_id, h.height, h.prev_hash) == (CHAIN, 1, GENESIS.hash())
    assert (h.tx_count, h.tx_root) == (3, merkle_root(block.txs))
    assert h.authority_set_hash == authority_set_hash(NAMES)
    assert verify_header_link(GENESIS.header, h) == [] and verify_tx_root(block) == []


def test_the_genesis_block_has_no_txs_no_proposer_and_no_seals() -> None:
    h = GENESIS.header
    assert (h.height, h.prev_hash, h.proposer, h.round, h.tx_count) == (0, b"G" * 32, "", 0, 0)
    assert h.tx_root == EMPTY_ROOT and GENESIS.seals == ()
    assert verify_seals(GENESIS, NAMES, DIRECTORY) == []
    forged = Block(GENESIS.header, seals=(make_seal(KEYS["alice"], GENESIS.hash(), 0),))
    assert verify_seals(forged, NAMES, DIRECTORY) == ["the genesis block carries seals"]


def test_re_proposing_in_another_round_changes_only_the_round_not_the_block_hash() -> None:
    block = block_one(round=0)
    again = with_round(block, 2)
    assert again.header.round == 2 and again.txs == block.txs
    assert msgspec.structs.replace(again.header, round=0) == block.header
    assert again.hash() == block.hash()
    fresh = BlockHeader(*[getattr(again.header, f) for f in BlockHeader.__struct_fields__])
    assert fresh.hash() == block.hash()  # not just the copied cache


def test_copies_of_one_block_sealed_in_different_rounds_share_its_hash_and_both_verify() -> None:
    """A quorum may commit a locked block in round 0 while others decide it in round 1:
    the copies differ in round and seals, never in identity, so the chain cannot fork."""
    early = sealed(block_one(round=0))
    late = sealed(with_round(block_one(round=0), 1), by=("bob", "carol", "dave"))
    assert early.hash() == late.hash()
    check_block(GENESIS.header, early, NAMES, DIRECTORY)
    check_block(GENESIS.header, late, NAMES, DIRECTORY)
    swapped = Block(late.header, late.txs, early.seals)  # round 0 seals on the round 1 copy
    assert "0 valid seals, a quorum of 4 is 3" in verify_seals(swapped, NAMES, DIRECTORY)


def test_seals_are_stored_sorted_by_authority() -> None:
    block = sealed(block_one(), by=("carol", "alice", "bob"))
    assert [s.authority for s in block.seals] == ["alice", "bob", "carol"]


def test_a_transaction_proves_its_inclusion_against_the_header() -> None:
    block = block_one()
    p = proof(block.txs, 1)
    assert verify_proof(block.header.tx_root, b"trade-2", p)
    assert p.size == block.header.tx_count


# --------------------------------------------------------------------------------------------
# Tampering

HEADER_CHANGES: list[tuple[str, object]] = [
    ("chain_id", "botc-other"),
    ("height", 2),
    ("prev_hash", b"P" * 32),
    ("timestamp_ms", 2_001),
    ("proposer", "dave"),
    ("round", 1),
    ("tx_root", b"T" * 32),
    ("state_root", b"X" * 32),
    ("authority_set_hash", b"A" * 32),
    ("tx_count", 4),
]


def test_the_table_of_changes_covers_every_header_field() -> None:
    assert {name for name, _ in HEADER_CHANGES} == set(BlockHeader.__struct_fields__)


@pytest.mark.parametrize(("field", "value"), HEADER_CHANGES)
def test_tampering_with_any_header_field_breaks_every_seal(field: str, value: object) -> None:
    block = sealed(block_one())
    forged = reheader(block, **{field: value})
    if field != "round":  # the round is bound by the seals, not the hash
        assert forged.hash() != block.hash()
    problems = verify_seals(forged, NAMES, DIRECTORY)
    assert "0 valid seals, a quorum of 4 is 3" in problems
    with pytest.raises(BlockError) as caught:
        check_block(GENESIS.header, forged, NAMES, DIRECTORY)
    assert caught.value.height == forged.header.height
    assert "valid seals" in caught.value.reason


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("chain_id", "botc-other", "chain"),
        ("height", 2, "height 2 does not follow 0"),
        ("prev_hash", b"P" * 32, "prev_hash is not the parent's hash"),
        ("timestamp_ms", 999, "before the parent's"),
    ],
)
def test_a_header_that_does_not_extend_its_parent_is_named(
    field: str, value: object, expected: str
) -> None:
    header = msgspec.structs.replace(block_one().header, **{field: value})
    problems = verify_header_link(GENESIS.header, header)
    assert len(problems) == 1 and expected in problems[0]


def test_a_block_at_the_parents_timestamp_is_fine() -> None:
    header = msgspec.structs.replace(block_one().header, timestamp_ms=GENESIS.header.timestamp_ms)
    assert verify_header_link(GENESIS.header, header) == []


@pytest.mark.parametrize(
    "txs",
    [
        (b"trade-1", b"trade-2", b"fixinG"),
        (b"trade-2", b"trade-1", b"fixing"),
        (b"trade-1", b"trade-2"),
        (b"trade-1", b"trade-2", b"fixing", b"fixing"),
    ],
)
def test_tampering_with_the_transactions_is_caught_by_the_tx_root(
    txs: tuple[bytes, ...],
) -> None:
    block = sealed(block_one())
    forged = Block(block.header, txs, block.seals)
    assert verify_tx_root(forged)
    assert verify_seals(forged, NAMES, DIRECTORY) == []  # seals cover the header only...
    with pytest.raises(BlockError, match="tx"):  # ...which is why sync checks both
        check_block(GENESIS.header, forged, NAMES, DIRECTORY)


def test_a_sealed_block_passes_every_check() -> None:
    block = sealed(block_one())
    check_block(GENESIS.header, block, NAMES, DIRECTORY)
    check_block(GENESIS.header, sealed(block_one(), by=NAMES), NAMES, DIRECTORY)


def flip(signature: bytes) -> bytes:
    return bytes([signature[0] ^ 0x80]) + signature[1:]


def test_a_flipped_seal_bit_is_named_and_costs_the_quorum() -> None:
    block = sealed(block_one())
    seals = list(block.seals)
    seals[1] = CommitSeal(seals[1].authority, flip(seals[1].signature))
    problems = verify_seals(Block(block.header, block.txs, tuple(seals)), NAMES, DIRECTORY)
    assert problems == ["seal by 'bob' does not verify", "2 valid seals, a quorum of 4 is 3"]


def test_a_seal_from_the_wrong_round_does_not_verify() -> None:
    block = block_one()
    wrong = with_seals(block, [make_seal(KEYS[n], block.hash(), 1) for n in NAMES])
    assert "0 valid seals, a quorum of 4 is 3" in verify_seals(wrong, NAMES, DIRECTORY)


def test_erin_is_no_authority_so_her_seal_is_a_problem_even_with_a_quorum() -> None:
    block = sealed(block_one(), by=NAMES)
    extra = make_seal(ERIN, block.hash(), 0)
    forged = Block(block.header, block.txs, (*block.seals, extra))
    assert verify_seals(forged, NAMES, DIRECTORY) == ["seal by 'erin', who is not an authority"]


def test_a_seal_by_a_stranger_outside_the_directory_is_named() -> None:
    block = sealed(block_one())
    mystery = CommitSeal("zed", b"\x00" * 64)
    forged = Block(block.header, block.txs, (*block.seals, mystery))
    assert verify_seals(forged, NAMES, DIRECTORY) == ["seal by 'zed', who is not an authority"]


def test_alice_sealing_twice_counts_once_and_is_named() -> None:
    block = sealed(block_one(), by=("alice", "bob"))
    twice = Block(block.header, block.txs, (*block.seals, block.seals[0]))
    assert verify_seals(twice, NAMES, DIRECTORY) == [
        "duplicate seal by 'alice'",
        "2 valid seals, a quorum of 4 is 3",
    ]


def test_two_seals_are_not_a_quorum_of_four() -> None:
    assert verify_seals(sealed(block_one(), by=("alice", "bob")), NAMES, DIRECTORY) == [
        "2 valid seals, a quorum of 4 is 3"
    ]


def test_seals_checked_against_a_different_authority_set_are_refused() -> None:
    block = sealed(block_one(), by=NAMES)
    problems = verify_seals(block, (*NAMES, "erin"), DIRECTORY)
    assert problems == ["the authority set is not the one the header commits to"]


def test_a_signature_that_is_not_64_bytes_is_just_invalid() -> None:
    block = sealed(block_one())
    seals = (CommitSeal("dave", b"short"), *block.seals)
    assert verify_seals(Block(block.header, block.txs, seals), NAMES, DIRECTORY) == [
        "seal by 'dave' does not verify"
    ]


@given(
    st.integers(-(2**63), 2**64 - 1),
    st.lists(st.builds(CommitSeal, st.sampled_from([*NAMES, "erin", "zed"]), st.binary())),
)
def test_hostile_rounds_and_seals_give_problems_never_exceptions(
    round: int, seals: list[CommitSeal]
) -> None:
    block = reheader(Block(block_one().header, block_one().txs, tuple(seals)), round=round)
    assert verify_seals(block, NAMES, DIRECTORY)  # no real seal, so never a quorum


def test_block_error_carries_height_and_reason() -> None:
    err = BlockError(7, "2 valid seals")
    assert (err.height, err.reason, str(err)) == (7, "2 valid seals", "block 7: 2 valid seals")
