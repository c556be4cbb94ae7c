"""Bad input to one instance: every refusal is a ``Reject`` with a reason, never an exception."""

from __future__ import annotations

import hashlib

import msgspec
import pytest

from rfq.ledger.block import Block, make_seal
from rfq.ledger.consensus import (
    Action,
    Broadcast,
    Commit,
    ConsensusError,
    Decide,
    Defer,
    Justification,
    Prepare,
    Proposal,
    QbftInstance,
    Reject,
    RejectReason,
    RoundChange,
)
from rfq.signing import SignedMessage, sign_payload

from .test_consensus_harness import CHAIN, MALLORY, ManualNetwork, Node, identity, next_state_root

H = hashlib.sha256(b"some block").digest()


@pytest.fixture
def net() -> ManualNetwork:
    network = ManualNetwork(4, max_height=1)
    network.start()
    return network


def alice_instance(net: ManualNetwork) -> QbftInstance:
    instance = net["alice"].instance
    assert instance is not None
    return instance


def reason(actions: list[Action]) -> RejectReason:
    (action,) = actions
    assert isinstance(action, Reject), action
    return action.reason


def detail(actions: list[Action]) -> str:
    (action,) = actions
    assert isinstance(action, Reject), action
    return action.detail


def by_mallory(payload: msgspec.Struct, *, chain: str = CHAIN) -> SignedMessage:
    return sign_payload(MALLORY, payload, chain_id=chain, nonce=1, timestamp_ms=0, expires_ms=1)


def bobs_block(net: ManualNetwork, round: int = 0, **header: object) -> Block:
    block = net["bob"].build([b"a trade"], round=round)
    if header:
        block = Block(msgspec.structs.replace(block.header, **header), block.txs)
    return block


# --------------------------------------------------------------------------------------------
# The envelope-level checks


def test_a_prepare_from_mallory_who_is_no_authority_is_rejected(net: ManualNetwork) -> None:
    assert reason(alice_instance(net).handle(by_mallory(Prepare(1, 0, H)))) == (
        RejectReason.NOT_AUTHORITY
    )


def test_a_message_for_a_later_height_is_deferred_and_an_earlier_one_ignored(
    net: ManualNetwork,
) -> None:
    alice = alice_instance(net)
    later = net.sign("carol", Prepare(3, 0, H))
    assert alice.handle(later) == [Defer(later, 3)]
    assert alice.handle(net.sign("carol", Prepare(0, 0, H))) == []


def test_mallorys_message_for_a_later_height_is_deferred_for_that_heights_set_to_judge(
    net: ManualNetwork,
) -> None:
    message = by_mallory(Prepare(2, 0, H))
    assert alice_instance(net).handle(message) == [Defer(message, 2)]


def test_a_message_from_another_network_is_rejected(net: ManualNetwork) -> None:
    other = sign_payload(
        net["carol"].identity, Prepare(1, 0, H), chain_id="elsewhere", nonce=1, timestamp_ms=0,
        expires_ms=1,
    )  # fmt: skip
    assert reason(alice_instance(net).handle(other)) == RejectReason.WRONG_CHAIN


def test_an_unknown_kind_or_garbage_body_is_rejected(net: ManualNetwork) -> None:
    alice = alice_instance(net)
    good = net.sign("carol", Prepare(1, 0, H))
    assert reason(alice.handle(msgspec.structs.replace(good, kind="rfq"))) == (
        RejectReason.UNEXPECTED_KIND
    )
    assert reason(alice.handle(msgspec.structs.replace(good, body=b"\xc1garbage"))) == (
        RejectReason.MALFORMED
    )
    assert reason(alice.handle(msgspec.structs.replace(good, kind="ibft_commit"))) == (
        RejectReason.MALFORMED
    )
    assert reason(alice.handle(good, Commit(1, 0, H, b""))) == RejectReason.MALFORMED


@pytest.mark.parametrize("round", [-1, 10_001, 2**63 - 1])
def test_a_round_out_of_range_is_rejected(net: ManualNetwork, round: int) -> None:
    assert reason(alice_instance(net).handle(net.sign("carol", Prepare(1, round, H)))) == (
        RejectReason.BAD_ROUND
    )


def test_a_round_change_into_round_zero_is_rejected(net: ManualNetwork) -> None:
    assert reason(alice_instance(net).handle(net.sign("carol", RoundChange(1, 0)))) == (
        RejectReason.BAD_ROUND
    )


# --------------------------------------------------------------------------------------------
# Proposals


def test_only_the_rounds_proposer_may_propose(net: ManualNetwork) -> None:
    carol = net["carol"].build([b"carol's trade"], round=0)
    actions = alice_instance(net).handle(net.sign("carol", Proposal(1, 0, carol)))
    assert reason(actions) == RejectReason.WRONG_PROPOSER
    assert "'carol' is not round 0's proposer ('bob')" in detail(actions)


@pytest.mark.parametrize(
    ("header", "why"),
    [
        ({"height": 2}, "header is for height 2"),
        ({"round": 1}, "round 1"),
        ({"prev_hash": b"\x00" * 32}, "prev_hash"),
        ({"chain_id": "elsewhere"}, "chain"),
        ({"authority_set_hash": b"\x00" * 32}, "authority set"),
        ({"tx_root": b"\x00" * 32}, "tx_root"),
        ({"tx_count": 5}, "tx_count"),
        ({"proposer": "carol"}, "names 'carol' as proposer"),
        ({"timestamp_ms": -1}, "before the parent"),
    ],
)
def test_a_proposal_whose_block_does_not_fit_is_rejected_unprepared(
    net: ManualNetwork, header: dict[str, object], why: str
) -> None:
    alice = alice_instance(net)
    actions = alice.handle(net.sign("bob", Proposal(1, 0, bobs_block(net, **header))))
    assert reason(actions) == RejectReason.INVALID_BLOCK
    assert why in detail(actions)
    assert not [m for m in net["alice"].sent if m.kind == "ibft_prepare"]


def test_a_proposal_carrying_seals_is_rejected(net: ManualNetwork) -> None:
    block = bobs_block(net)
    sealed = Block(block.header, block.txs, (make_seal(net["bob"].identity, block.hash(), 0),))
    assert reason(alice_instance(net).handle(net.sign("bob", Proposal(1, 0, sealed)))) == (
        RejectReason.INVALID_BLOCK
    )


def test_a_round_zero_proposal_with_a_justification_is_rejected(net: ManualNetwork) -> None:
    proposal = Proposal(1, 0, bobs_block(net), Justification(()))
    assert reason(alice_instance(net).handle(net.sign("bob", proposal))) == (
        RejectReason.BAD_JUSTIFICATION
    )


def test_a_later_round_proposal_without_a_justification_is_rejected(net: ManualNetwork) -> None:
    block = net["carol"].build([b"x"], round=1)
    assert reason(alice_instance(net).handle(net.sign("carol", Proposal(1, 1, block)))) == (
        RejectReason.BAD_JUSTIFICATION
    )


def test_validate_block_raising_is_a_refusal_not_a_crash(net: ManualNetwork) -> None:
    def broken(block: Block) -> str | None:
        raise RuntimeError("database locked")

    net["alice"].validate_hook = broken
    actions = alice_instance(net).handle(net.sign("bob", Proposal(1, 0, bobs_block(net))))
    assert reason(actions) == RejectReason.BLOCK_REJECTED
    assert "database locked" in detail(actions)


def test_the_same_proposal_twice_is_handled_once(net: ManualNetwork) -> None:
    offer = net.sign("bob", Proposal(1, 0, bobs_block(net)))
    alice = alice_instance(net)
    first = alice.handle(offer)
    assert [a.message.kind for a in first if isinstance(a, Broadcast)] == ["ibft_prepare"]
    assert alice.handle(offer) == []


# --------------------------------------------------------------------------------------------
# Garbage justifications and certificates


def round_changes(
    net: ManualNetwork, round: int = 1, names: tuple[str, ...] = ("alice", "bob", "dave")
) -> tuple[SignedMessage, ...]:
    return tuple(net.sign(n, RoundChange(1, round)) for n in names)


def carol_round_one(net: ManualNetwork, justification: Justification) -> SignedMessage:
    return net.sign("carol", Proposal(1, 1, net["carol"].build([b"c"], round=1), justification))


def test_a_proposal_justified_by_a_quorum_of_empty_round_changes_is_accepted(
    net: ManualNetwork,
) -> None:
    actions = alice_instance(net).handle(carol_round_one(net, Justification(round_changes(net))))
    assert [a.message.kind for a in actions if isinstance(a, Broadcast)] == ["ibft_prepare"]
    assert alice_instance(net).round == 1  # the justified proposal moved alice to round 1


def garbage_justifications(net: ManualNetwork) -> dict[str, Justification]:
    rcs = round_changes(net)
    forged = msgspec.structs.replace(rcs[0], signature=b"\x00" * 64)
    return {
        "too few": Justification(rcs[:2]),
        "a repeated sender": Justification((rcs[0], rcs[0], rcs[1])),
        "a forged signature": Justification((forged, *rcs[1:])),
        "mallory's round change": Justification((*rcs[:2], by_mallory(RoundChange(1, 1)))),
        "another round's": Justification(round_changes(net, round=2)),
        "a prepare in its place": Justification((*rcs[:2], net.sign("dave", Prepare(1, 1, H)))),
        "garbage bytes": Justification((*rcs[:2], msgspec.structs.replace(rcs[2], body=b"\x00"))),
        "prepares with no lock": Justification(rcs, (net.sign("dave", Prepare(1, 0, H)),)),
        "more than n": Justification(rcs + rcs[:2]),
        "another chain's": Justification(
            tuple(msgspec.structs.replace(m, chain_id="x") for m in rcs)
        ),
    }


@pytest.mark.parametrize(
    "case",
    [
        "too few",
        "a repeated sender",
        "a forged signature",
        "mallory's round change",
        "another round's",
        "a prepare in its place",
        "garbage bytes",
        "prepares with no lock",
        "more than n",
        "another chain's",
    ],
)
def test_a_proposal_with_a_bad_justification_is_rejected(net: ManualNetwork, case: str) -> None:
    justification = garbage_justifications(net)[case]
    alice = alice_instance(net)
    assert reason(alice.handle(carol_round_one(net, justification))) == (
        RejectReason.BAD_JUSTIFICATION
    )
    assert alice.round == 0


def prepared_everywhere(net: ManualNetwork) -> tuple[Block, tuple[SignedMessage, ...]]:
    """Let round 0 prepare (commits lost) and return bob's block and alice's certificate."""
    net.drop = lambda src, dst, m: m.kind == "ibft_commit"
    net.deliver_all()
    alice = alice_instance(net)
    assert alice.prepared_block is not None
    return alice.prepared_block, alice.prepared_cert


def garbage_round_changes(net: ManualNetwork) -> dict[str, RoundChange]:
    block, cert = prepared_everywhere(net)
    other = net["bob"].build([b"other"], round=0)
    tampered = Block(block.header, (b"swapped",), ())
    forged = msgspec.structs.replace(cert[0], signature=b"\x01" * 64)
    return {
        "a round but no block": RoundChange(1, 1, 0, None, cert),
        "a block but no round": RoundChange(1, 1, None, block, ()),
        "a certificate but no round": RoundChange(1, 1, None, None, cert),
        "no certificate": RoundChange(1, 1, 0, block, ()),
        "two prepares": RoundChange(1, 1, 0, block, cert[:2]),
        "a forged prepare": RoundChange(1, 1, 0, block, (forged, *cert[1:])),
        "another block's certificate": RoundChange(1, 1, 0, other, cert),
        "a repeated prepare": RoundChange(1, 1, 0, block, (cert[0], cert[0], cert[1])),
        "prepared in its own round": RoundChange(1, 1, 1, block, cert),
        "swapped transactions": RoundChange(1, 1, 0, tampered, cert),
        "mallory's prepare": RoundChange(
            1, 1, 0, block, (*cert[:2], by_mallory(Prepare(1, 0, block.hash())))
        ),
    }


@pytest.mark.parametrize(
    "case",
    [
        "a round but no block",
        "a block but no round",
        "a certificate but no round",
        "no certificate",
        "two prepares",
        "a forged prepare",
        "another block's certificate",
        "a repeated prepare",
        "prepared in its own round",
        "swapped transactions",
        "mallory's prepare",
    ],
)
def test_a_round_change_with_a_garbage_certificate_is_rejected(
    net: ManualNetwork, case: str
) -> None:
    rc = garbage_round_changes(net)[case]
    actions = alice_instance(net).handle(net.sign("dave", rc))
    assert reason(actions) == RejectReason.BAD_CERTIFICATE, detail(actions)


def test_a_round_change_with_a_true_certificate_is_taken(net: ManualNetwork) -> None:
    block, cert = prepared_everywhere(net)
    actions = alice_instance(net).handle(net.sign("dave", RoundChange(1, 1, 0, block, cert)))
    assert not [a for a in actions if isinstance(a, Reject)]


# --------------------------------------------------------------------------------------------
# Commits


def test_a_commit_with_a_bad_seal_is_rejected_and_not_counted(net: ManualNetwork) -> None:
    alice = alice_instance(net)
    dave = net["dave"].identity
    for bad in (b"\x00" * 64, make_seal(dave, H, 1).signature, make_seal(dave, b"x", 0).signature):
        assert reason(alice.handle(net.sign("dave", Commit(1, 0, H, bad)))) == (
            RejectReason.BAD_SEAL
        )
    good = net.sign("dave", Commit(1, 0, H, make_seal(dave, H, 0).signature))
    assert alice.handle(good) == []


def test_a_decided_instance_ignores_everything_after(net: ManualNetwork) -> None:
    alice = alice_instance(net)
    net.deliver_all()
    assert alice.decided is not None
    assert alice.handle(net.sign("carol", Prepare(1, 0, H))) == []
    assert alice.on_timeout(0) == []
    assert alice.start() == []


# --------------------------------------------------------------------------------------------
# Observers and misuse


def test_an_observer_decides_without_ever_signing() -> None:
    net = ManualNetwork(4, max_height=1)
    regulator = identity("regulator")

    def state_after_genesis(block: Block) -> bytes:
        return next_state_root(net.genesis.header.state_root, block)

    def sign(payload: msgspec.Struct) -> SignedMessage:
        raise AssertionError("an observer never signs")

    observer = QbftInstance(
        height=1,
        authorities=net.names,
        directory=net.directory,
        identity=regulator,
        parent=net.genesis.header,
        validate_block=lambda b: None if b.header.state_root == state_after_genesis(b) else "no",
        make_block=net["alice"].make_block,
        sign=sign,
    )
    assert not observer.is_validator
    assert observer.start() == []
    net.start()
    net.deliver_all()
    actions = [a for _, m in net.log for a in observer.handle(m)]
    assert all(isinstance(a, Decide) for a in actions)
    assert [a.block.hash() for a in actions if isinstance(a, Decide)] == [
        net["alice"].chain[1].hash()
    ]
    assert observer.on_timeout(0) == []


def test_an_instance_must_follow_its_parent() -> None:
    net = ManualNetwork(4)
    node: Node = net["alice"]
    with pytest.raises(ConsensusError, match="does not follow"):
        QbftInstance(
            height=2,
            authorities=net.names,
            directory=net.directory,
            identity=node.identity,
            parent=net.genesis.header,
            validate_block=node.validate,
            make_block=node.make_block,
            sign=node.sign,
        )


def test_a_make_block_for_the_wrong_round_is_the_shells_bug_and_raises() -> None:
    net = ManualNetwork(4, max_height=1)
    bob = net["bob"]
    bob.make_block = lambda round: bob.build([b"x"], round=round + 1)  # type: ignore[method-assign]
    with pytest.raises(ConsensusError, match="make_block"):
        net.start()
