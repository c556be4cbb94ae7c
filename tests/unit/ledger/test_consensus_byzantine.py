"""Byzantine authorities: equivocation never forks the chain and always leaves evidence."""

from __future__ import annotations

import hashlib

import msgspec
import pytest

from rfq.ledger.block import Block, make_seal
from rfq.ledger.consensus import (
    Commit,
    Evidence,
    Prepare,
    Proposal,
    RoundChange,
    decode_consensus,
    verify_evidence,
)
from rfq.signing import SignedMessage, sign_payload

from .test_consensus_harness import CHAIN, MALLORY, ManualNetwork, TimedNetwork


def two_blocks(net: TimedNetwork | ManualNetwork, name: str) -> tuple[Block, Block]:
    node = net[name]
    return (
        node.build([b"bob pays alice 100"], round=0),
        node.build([b"bob pays dave 100"], round=0),
    )


def offences(evidence: list[Evidence]) -> set[tuple[str, str, int, int]]:
    out = set()
    for e in evidence:
        a, b = decode_consensus(e.msg_a), decode_consensus(e.msg_b)
        assert (a.height, a.round) == (b.height, b.round)
        out.add((e.offender, e.msg_a.kind, a.height, a.round))
    return out


def test_bob_proposing_two_blocks_to_different_validators_forks_nothing_and_is_caught() -> None:
    net = TimedNetwork(4, seed=31, byzantine={"bob"}, max_height=1)
    block_a, block_b = two_blocks(net, "bob")
    offer_a = net.sign("bob", Proposal(1, 0, block_a))
    offer_b = net.sign("bob", Proposal(1, 0, block_b))
    net.start()
    net.inject("bob", "alice", offer_a, delay=1)
    net.inject("bob", "carol", offer_a, delay=1)
    net.inject("bob", "dave", offer_b, delay=1)
    # The bus is a broadcast medium: each validator sees the other offer, later.
    net.inject("bob", "alice", offer_b, delay=40)
    net.inject("bob", "carol", offer_b, delay=40)
    net.inject("bob", "dave", offer_a, delay=40)
    net.run_until_height(1)
    net.assert_safe()
    decided = {net[n].chain[1].hash() for n in ("alice", "carol", "dave")}
    assert len(decided) == 1
    assert decided.isdisjoint({block_a.hash(), block_b.hash()})  # neither got a quorum
    for name in ("alice", "carol", "dave"):
        node = net[name]
        assert offences(node.evidence) == {("bob", "ibft_proposal", 1, 0)}
        (evidence,) = node.evidence
        assert {evidence.msg_a, evidence.msg_b} == {offer_a, offer_b}
        assert verify_evidence(evidence.msg_a, evidence.msg_b, net.directory, net.names) is None


def test_bob_voting_for_both_of_his_blocks_gets_one_decided_and_the_other_never() -> None:
    """bob feeds alice and carol block A with his prepare and commit, dave block B likewise:
    A gathers a quorum, B cannot, and dave (who holds B) syncs A rather than fork."""
    net = TimedNetwork(4, seed=32, byzantine={"bob"}, max_height=2)
    block_a, block_b = two_blocks(net, "bob")
    bob = net["bob"]
    seal = {b.hash(): make_seal(bob.identity, b.hash(), 0).signature for b in (block_a, block_b)}
    side = {"alice": block_a, "carol": block_a, "dave": block_b}
    net.start()
    for name, block in side.items():
        h = block.hash()
        net.inject("bob", name, net.sign("bob", Proposal(1, 0, block)), delay=1)
        net.inject("bob", name, net.sign("bob", Prepare(1, 0, h)), delay=2)
        net.inject("bob", name, net.sign("bob", Commit(1, 0, h, seal[h])), delay=3)
    net.run_until_height(1, within=200_000)
    net.assert_safe()
    assert net["alice"].chain[1].hash() == block_a.hash()
    assert net["carol"].chain[1].hash() == block_a.hash()
    dave = net["dave"]
    assert dave.height >= 2 and dave.chain[1].hash() == block_a.hash()
    assert 1 in dave.synced  # dave never accepted A, so he took it from the chain, seals checked


def test_dave_preparing_and_committing_two_hashes_leaves_evidence_with_alice() -> None:
    net = ManualNetwork(4, byzantine={"dave"}, max_height=1)
    net.start()
    proposal = decode_consensus(next(m for _, m in net.log if m.kind == "ibft_proposal"))
    assert isinstance(proposal, Proposal)
    real, fake = proposal.block.hash(), hashlib.sha256(b"a block nobody proposed").digest()
    dave = net["dave"]
    alice = net["alice"]
    for h in (fake, real, fake):  # the third is a repeat: no second piece of evidence
        alice.receive(net.sign("dave", Prepare(1, 0, h)))
    for h in (fake, real):
        seal = make_seal(dave.identity, h, 0).signature
        alice.receive(net.sign("dave", Commit(1, 0, h, seal)))
    assert offences(alice.evidence) == {
        ("dave", "ibft_prepare", 1, 0),
        ("dave", "ibft_commit", 1, 0),
    }
    for e in alice.evidence:
        assert verify_evidence(e.msg_a, e.msg_b, net.directory, net.names) is None
    net.deliver_all()
    net.assert_safe()
    assert {net[n].height for n in ("alice", "bob", "carol")} == {2}
    sealers = {s.authority for s in net["alice"].chain[1].seals}
    assert "dave" not in sealers  # alice counted dave's first commit (for the fake hash) only


def test_equivocation_seen_only_inside_a_round_change_certificate_is_evidence_too() -> None:
    """dave prepares the real block to alice and bob but another to carol. carol never sees
    the first directly: it reaches her inside alice's prepare certificate, in a round change."""
    net = ManualNetwork(4, byzantine={"dave"}, max_height=1)
    net.drop = lambda src, dst, m: m.kind == "ibft_commit"
    net.start()
    proposal = decode_consensus(next(m for _, m in net.log if m.kind == "ibft_proposal"))
    assert isinstance(proposal, Proposal)
    good = net.sign("dave", Prepare(1, 0, proposal.block.hash()))
    other = net.sign("dave", Prepare(1, 0, hashlib.sha256(b"other").digest()))
    net["alice"].receive(good)
    net["bob"].receive(good)
    net["carol"].receive(other)
    net.deliver_all()
    alice = net["alice"].instance
    assert alice is not None and alice.prepared_round == 0 and good in alice.prepared_cert
    assert net["carol"].evidence == []
    for name in ("alice", "bob", "carol"):
        net.fire(name)
    net.deliver_all()
    assert offences(net["carol"].evidence) == {("dave", "ibft_prepare", 1, 0)}
    (evidence,) = net["carol"].evidence
    assert {evidence.msg_a, evidence.msg_b} == {good, other}
    net.assert_safe()


# --------------------------------------------------------------------------------------------
# verify_evidence: what governance relies on before evicting anyone

NET = ManualNetwork(4)


def signed(name: str, payload: msgspec.Struct, nonce: int = 1) -> SignedMessage:
    who = NET[name].identity
    return sign_payload(who, payload, chain_id=CHAIN, nonce=nonce, timestamp_ms=0, expires_ms=1)


H1, H2 = b"\x01" * 32, b"\x02" * 32


def test_two_prepares_by_one_authority_for_one_round_and_different_blocks_are_evidence() -> None:
    a, b = signed("dave", Prepare(1, 0, H1)), signed("dave", Prepare(1, 0, H2), 2)
    assert verify_evidence(a, b, NET.directory, NET.names) is None


@pytest.mark.parametrize(
    ("a", "b", "why"),
    [
        (Prepare(1, 0, H1), Prepare(1, 0, H1), "same block"),
        (Prepare(1, 0, H1), Prepare(1, 1, H2), "different height or round"),
        (Prepare(1, 0, H1), Prepare(2, 0, H2), "different height or round"),
        (Prepare(1, 0, H1), Commit(1, 0, H2, b""), "cannot conflict"),
        (RoundChange(1, 1), RoundChange(1, 1, 0), "cannot conflict"),
    ],
)
def test_statements_that_do_not_conflict_are_no_evidence(
    a: msgspec.Struct, b: msgspec.Struct, why: str
) -> None:
    problem = verify_evidence(signed("dave", a), signed("dave", b, 2), NET.directory)
    assert problem is not None and why in problem


def test_evidence_must_come_from_one_signer_with_good_signatures() -> None:
    a, b = signed("dave", Prepare(1, 0, H1)), signed("carol", Prepare(1, 0, H2))
    assert verify_evidence(a, b, NET.directory) == "signed by different members"
    forged = msgspec.structs.replace(signed("dave", Prepare(1, 0, H2)), signature=b"\x00" * 64)
    assert verify_evidence(a, forged, NET.directory) == "a signature does not verify"
    m1 = sign_payload(
        MALLORY, Prepare(1, 0, H1), chain_id=CHAIN, nonce=1, timestamp_ms=0, expires_ms=1
    )
    m2 = sign_payload(
        MALLORY, Prepare(1, 0, H2), chain_id=CHAIN, nonce=2, timestamp_ms=0, expires_ms=1
    )
    assert verify_evidence(m1, m2, NET.directory, NET.names) == "'mallory' is not an authority"
    other = sign_payload(
        NET["dave"].identity, Prepare(1, 0, H2), chain_id="x", nonce=3, timestamp_ms=0, expires_ms=1
    )
    assert verify_evidence(a, other, NET.directory) == "different chains"
    garbage = msgspec.structs.replace(a, body=b"\xc1")
    assert verify_evidence(a, garbage, NET.directory) == "a signature does not verify"
