"""Floods of consensus messages for far-future heights: what waits is bounded, consensus goes on.

The measured attack: 500 Prepares of 100 kB for far-future heights, signed by a candidate
that is no authority, held for ever by every authority (100 MB each). Now a vote naming a
block hash that is not 32 bytes does not decode, a non-authority's future messages are
dropped, and each authority may have only a bounded number waiting (its oldest evicted).
"""

from __future__ import annotations

import hashlib

import msgspec
import pytest

from rfq.identity import Role
from rfq.ledger.consensus import (
    DEFAULT_FUTURE_PER_SENDER,
    Commit,
    ConsensusError,
    FutureBuffer,
    FutureDrop,
    Prepare,
    RoundChange,
    decode_consensus,
)
from rfq.signing import SignedMessage, sign_payload

from .test_consensus_harness import CHAIN, MALLORY, TimedNetwork, identity

H = hashlib.sha256(b"a block").digest()
AUTHORITIES = ("alice", "bob", "carol", "dave")
CANDIDATE = identity("gina", Role.DEALER)  # eligible to become an authority, but is none


def signed(who: str, payload: msgspec.Struct, nonce: int = 1) -> SignedMessage:
    signer = MALLORY if who == "mallory" else CANDIDATE if who == "gina" else identity(who)
    return sign_payload(
        signer, payload, chain_id=CHAIN, nonce=nonce, timestamp_ms=0, expires_ms=30_000
    )


def prepare(who: str, height: int, nonce: int = 1) -> tuple[SignedMessage, Prepare]:
    payload = Prepare(height, 0, H)
    return signed(who, payload, nonce), payload


def test_a_prepare_naming_a_100_kb_block_hash_does_not_decode() -> None:
    body = msgspec.msgpack.encode(["ibft_prepare", 9, 0, b"x" * 100_000])
    message = msgspec.structs.replace(signed("bob", Prepare(9, 0, H)), body=body)
    with pytest.raises(msgspec.ValidationError):
        decode_consensus(message)


def test_a_commit_with_a_100_kb_seal_does_not_decode() -> None:
    body = msgspec.msgpack.encode(["ibft_commit", 9, 0, H, b"s" * 100_000])
    message = msgspec.structs.replace(signed("bob", Commit(9, 0, H, b"")), body=body)
    with pytest.raises(msgspec.ValidationError):
        decode_consensus(message)


def test_a_thousand_future_prepares_from_a_candidate_that_is_no_authority_are_all_dropped() -> None:
    buffer = FutureBuffer()
    for i in range(1_000):
        message, payload = prepare("gina", 2 + i % 3, nonce=i + 1)
        assert buffer.add(message, payload, current=1, authorities=AUTHORITIES) == (
            FutureDrop.NOT_AUTHORITY
        )
    assert len(buffer) == 0 and buffer.bytes_held == 0
    assert buffer.drops == {FutureDrop.NOT_AUTHORITY: 1_000}


def test_an_authority_flooding_future_prepares_keeps_only_its_newest_and_others_keep_theirs() -> (
    None
):
    buffer = FutureBuffer(heights_ahead=4, per_sender=16)
    bobs = prepare("bob", 2)
    assert buffer.add(*bobs, current=1, authorities=AUTHORITIES) is None
    for i in range(1_000):
        message, payload = prepare("carol", 2 + i % 4, nonce=i + 1)
        assert buffer.add(message, payload, current=1, authorities=AUTHORITIES) is None
    assert buffer.held_by("carol") == 16 and buffer.held_by("bob") == 1
    assert buffer.drops == {FutureDrop.EVICTED: 1_000 - 16}
    kept = [m for m, _ in buffer.take(2)]
    assert kept[0] == bobs[0]
    assert [m.nonce for m in kept[1:]] == [n for n in range(985, 1001) if (n - 1) % 4 == 0]
    assert len(buffer) == 12, "heights 3, 4 and 5 still wait"


def test_messages_too_far_ahead_or_for_passed_heights_are_not_held() -> None:
    buffer = FutureBuffer(heights_ahead=4)
    far, passed = prepare("bob", 6), prepare("bob", 1)
    assert buffer.add(*far, current=1, authorities=AUTHORITIES) == FutureDrop.TOO_FAR
    assert buffer.add(*passed, current=1, authorities=AUTHORITIES) == FutureDrop.PASSED
    assert buffer.add(*prepare("bob", 5), current=1, authorities=AUTHORITIES) is None
    assert buffer.heights() == {5}


def test_what_one_authority_may_have_waiting_is_bounded_in_bytes_too() -> None:
    buffer = FutureBuffer(bytes_per_sender=1_000)
    big = RoundChange(2, 1)
    for i in range(50):
        message = msgspec.structs.replace(
            signed("bob", big, nonce=i + 1), body=msgspec.msgpack.encode(big) + b"\0" * 300
        )
        buffer.add(message, big, current=1, authorities=AUTHORITIES)
    assert buffer.bytes_held <= 1_000 and buffer.held_by("bob") == 3
    huge = msgspec.structs.replace(signed("bob", big, nonce=99), body=b"\0" * 2_000)
    assert buffer.add(huge, big, current=1, authorities=AUTHORITIES) == FutureDrop.OVERSIZED


def test_taking_a_height_forgets_every_lower_one() -> None:
    buffer = FutureBuffer()
    for height in (2, 3, 4):
        buffer.add(*prepare("bob", height, nonce=height), current=1, authorities=AUTHORITIES)
    assert [p.height for _, p in buffer.take(3)] == [3]
    assert buffer.heights() == {4}
    [(last, _)] = buffer.take(4)
    assert last.nonce == 4 and len(buffer) == 0 and buffer.bytes_held == 0


def test_a_buffer_with_no_room_is_a_misuse() -> None:
    with pytest.raises(ConsensusError):
        FutureBuffer(per_sender=0)


def test_consensus_goes_on_under_a_flood_of_future_prepares_from_a_candidate_and_an_authority() -> (
    None
):
    """gina (no authority) and dave (a Byzantine authority) each send every honest node 2,000
    Prepares for heights 2 to 11: the chain still reaches height 6 and no node ever holds
    more than its bound."""
    net = TimedNetwork(4, seed=5, byzantine={"dave"}, max_height=6)
    net.start()
    largest: dict[str, int] = {}
    for dst in ("alice", "bob", "carol"):
        for i in range(2_000):
            height = 2 + i % 10
            flood = signed("gina", Prepare(height, 0, H), nonce=i + 1)
            net.inject("gina", dst, flood, delay=i % 50)
            net.inject("dave", dst, net.sign("dave", Prepare(height, 0, H)), delay=i % 50)
    for step in range(1, 61):
        net.run(step * 1_000)
        for node in net.honest():
            largest[node.name] = max(largest.get(node.name, 0), len(node.deferred))
            assert node.deferred.held_by("gina") == 0
            assert node.deferred.held_by("dave") <= DEFAULT_FUTURE_PER_SENDER
    net.assert_safe()
    assert all(node.height > 6 for node in net.honest())
    # dave's share plus what the honest authorities had waiting: never the flood.
    assert max(largest.values()) <= 4 * DEFAULT_FUTURE_PER_SENDER
    alice = net["alice"].deferred.drops
    assert alice[FutureDrop.NOT_AUTHORITY] > 0 and alice[FutureDrop.EVICTED] > 0


NESTED = b"\x91" * 50_000 + b"\xc0"  # a one-element array, 50,000 levels deep


def nested_from(who: str) -> SignedMessage:
    """A validly signed consensus message whose body nests 50,000 levels deep."""
    m = msgspec.structs.replace(signed(who, Prepare(1, 0, H)), body=NESTED)
    return msgspec.structs.replace(m, signature=identity(who).sign(m.signing_bytes()))


def test_evidence_whose_payload_nests_50000_deep_is_refused_with_a_reason() -> None:
    from rfq.ledger.consensus import verify_evidence

    from .test_consensus_harness import Network

    net = Network(4)
    good = signed("bob", Prepare(1, 0, H))
    problem = verify_evidence(good, nested_from("bob"), net.directory, net.names)
    assert problem is not None and "does not decode" in problem


def test_a_round_change_certificate_nesting_50000_deep_is_a_bad_certificate_not_a_crash() -> None:
    from rfq.ledger.consensus import Reject, RejectReason

    from .test_consensus_harness import ManualNetwork

    net = ManualNetwork(4, max_height=1)
    net.start()
    alice = net["alice"].instance
    assert alice is not None
    block = net["bob"].build([b"x"], round=0)
    rc = RoundChange(1, 1, 0, block, (nested_from("carol"), nested_from("dave")))
    [action] = alice.handle(net.sign("carol", rc))
    assert isinstance(action, Reject) and action.reason == RejectReason.BAD_CERTIFICATE
