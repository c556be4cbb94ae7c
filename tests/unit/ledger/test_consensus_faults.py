"""Crashes and refusals: live with f crashed, stalled (never forked) beyond, and no prepare for
a block the validator cannot reproduce."""

from __future__ import annotations

from rfq.ledger.block import Block, proposer_for, verify_seals
from rfq.ledger.consensus import Reject, RejectReason, decode_consensus

from .test_consensus_harness import TimedNetwork


def test_with_dave_crashed_the_other_three_still_decide_every_height() -> None:
    net = TimedNetwork(4, seed=11, down={"dave"}, max_height=4)
    net.start()
    net.run_until_height(4)
    for name in ("alice", "bob", "carol"):
        assert net[name].height == 5
        assert sorted(net[name].decided) == [1, 2, 3, 4]
    net.assert_safe()
    header = net["alice"].chain[3].header
    assert proposer_for(3, 0, net.names) == "dave"  # height 3 was dave's turn...
    assert (header.round, header.proposer) == (1, "alice")  # ...so round 1's proposer took it
    for block in net["alice"].chain[1:]:
        assert verify_seals(block, net.names, net.directory) == []
        assert "dave" not in {s.authority for s in block.seals}


def test_with_carol_and_dave_crashed_nothing_is_decided_and_nothing_forks() -> None:
    net = TimedNetwork(4, seed=12, down={"carol", "dave"}, max_height=2)
    net.start()
    net.run(60_000)
    assert net.published == {}
    for name in ("alice", "bob"):
        node = net[name]
        assert node.height == 1 and not node.decided
        assert node.instance is not None and node.instance.round >= 4  # still trying
        kinds = {m.kind for m in node.sent}
        assert "ibft_commit" not in kinds  # two prepares are never a quorum of four
    net.assert_safe()


def test_when_carol_comes_back_the_three_catch_up_on_rounds_and_decide() -> None:
    net = TimedNetwork(4, seed=13, down={"carol", "dave"}, max_height=2)
    net.start()
    net.run(60_000)
    net["carol"].restart()
    net.run_until_height(2, within=600_000)
    for name in ("alice", "bob", "carol"):
        assert net[name].height == 3, name
    net.assert_safe()
    first = net["carol"].chain[1]
    assert first.header.round > 4  # carol jumped to the others' round (the f + 1 rule)
    assert {s.authority for s in first.seals} == {"alice", "bob", "carol"}


def test_dave_restarting_last_syncs_the_blocks_he_missed_checking_their_seals() -> None:
    net = TimedNetwork(4, seed=14, down={"dave"}, max_height=3)
    net.start()
    net.run_until_height(2)
    net["dave"].restart()
    net.run_until_height(3, within=600_000)
    dave = net["dave"]
    assert dave.height == 4
    assert sorted(dave.synced) == [1, 2]
    assert 3 in dave.decided  # back in consensus from height 3 on
    net.assert_safe()


def test_seven_authorities_survive_two_crashes() -> None:
    net = TimedNetwork(7, seed=15, down={"erin", "grace"}, max_height=3)
    net.start()
    net.run_until_height(3)
    for node in net.honest():
        if node.up:
            assert node.height == 4
    net.assert_safe()


def test_seven_authorities_stall_with_three_crashed() -> None:
    net = TimedNetwork(7, seed=16, down={"erin", "frank", "grace"}, max_height=1)
    net.start()
    net.run(30_000)
    assert net.published == {}


def test_alice_refuses_to_prepare_a_block_whose_state_root_she_cannot_reproduce() -> None:
    net = TimedNetwork(4, seed=17, max_height=1)
    net["alice"].validate_hook = lambda block: "state root mismatch"
    net.start()
    net.run_until_height(1)
    alice = net["alice"]
    assert not [m for m in alice.sent if m.kind in ("ibft_prepare", "ibft_commit")]
    refusal = [r for r in alice.rejects if r.reason == RejectReason.BLOCK_REJECTED]
    assert len(refusal) == 1 and refusal[0].detail == "state root mismatch"
    assert refusal[0].message.kind == "ibft_proposal"
    for name in ("bob", "carol", "dave"):
        assert 1 in net[name].decided  # a quorum of three without her
    assert {s.authority for s in net["bob"].chain[1].seals} == {"bob", "carol", "dave"}
    net.assert_safe()


def test_a_proposal_with_a_wrong_state_root_is_refused_by_all_and_replaced_next_round() -> None:
    net = TimedNetwork(4, seed=18, max_height=1)
    bob = net["bob"]

    def wrong_root(round: int) -> Block:
        return bob.build([b"bob's trade"], round=round, state_root=b"\x00" * 32)

    bob.make_block = wrong_root  # type: ignore[method-assign]
    net.start()
    net.run_until_height(1)
    for name in ("alice", "carol", "dave"):
        reasons = [r.detail for r in net[name].rejects if isinstance(r, Reject)]
        assert "state root mismatch" in reasons
    block = net["alice"].chain[1]
    assert (block.header.round, block.header.proposer) == (1, "carol")
    prepares = [decode_consensus(m) for m in net["carol"].sent if m.kind == "ibft_prepare"]
    assert [p.round for p in prepares] == [1]  # nobody but bob prepared bob's block
    net.assert_safe()


def _proposer_crashes_after_proposing_and_returns_in_the_same_round(
    durable_votes: bool,
) -> TimedNetwork:
    net = TimedNetwork(4, seed=21, down={"dave"}, max_height=2)  # height 1 needs bob
    bob = net["bob"]
    assert proposer_for(1, 0, net.names) == "bob"
    bob.durable_votes = durable_votes
    net.start()  # bob proposes height 1 at once
    net.at(2, bob.crash)  # before the others' prepares reach him
    net.at(40, bob.restart)  # round 0 still running: its proposer is bob again
    net.run_until_height(2, within=600_000)
    return net


def test_an_authority_that_restarts_mid_round_never_signs_two_blocks_for_one_step() -> None:
    net = _proposer_crashes_after_proposing_and_returns_in_the_same_round(durable_votes=True)
    assert all(not node.evidence for node in net.nodes.values())
    proposals = [m for m in net["bob"].sent if m.kind == "ibft_proposal"]
    heights_rounds = [(p.height, p.round) for p in map(decode_consensus, proposals)]
    assert len(heights_rounds) == len(set(heights_rounds))  # one proposal a round
    for name in ("alice", "bob", "carol"):
        assert 1 in net[name].decided or 1 in net[name].synced, name
    net.assert_safe()


def test_without_its_votes_on_disk_a_restarted_proposer_would_equivocate() -> None:
    net = _proposer_crashes_after_proposing_and_returns_in_the_same_round(durable_votes=False)
    offenders = {e.offender for node in net.nodes.values() for e in node.evidence}
    assert offenders == {"bob"}
