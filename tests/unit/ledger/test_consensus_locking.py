"""Round changes with locking: a block a quorum prepared is the one the next round decides."""

from __future__ import annotations

import msgspec

from rfq.ledger.block import Block, check_block, with_round
from rfq.ledger.consensus import (
    Justification,
    Proposal,
    RejectReason,
    RoundChange,
    ScheduleTimeout,
    decode_consensus,
)
from rfq.signing import SignedMessage

from .test_consensus_harness import ManualNetwork, TimedNetwork


def payloads(messages: list[SignedMessage], kind: str) -> list[object]:
    return [decode_consensus(m) for m in messages if m.kind == kind]


def round_zero_commits(src: str, dst: str, m: SignedMessage) -> bool:
    if m.kind != "ibft_commit":
        return False
    p = decode_consensus(m)
    return p.height == 1 and p.round == 0


def bobs_round_zero_block(net: ManualNetwork | TimedNetwork) -> Block:
    proposals = [decode_consensus(m) for s, m in net.log if s == "bob"]
    first = next(p for p in proposals if isinstance(p, Proposal))
    return first.block


def test_a_block_prepared_in_round_zero_whose_commits_are_lost_is_decided_in_round_one() -> None:
    net = TimedNetwork(4, seed=21, max_height=1)
    net.drop = round_zero_commits
    net.start()
    net.run_until_height(1)
    locked = bobs_round_zero_block(net)
    decided = net["alice"].chain[1]
    assert decided.hash() == with_round(locked, 1).hash()  # the locked block, not a new one
    assert decided.txs == locked.txs and decided.header.proposer == "bob"
    assert decided.header.round == 1
    assert (1, 1) not in net["carol"].made  # round 1's proposer built nothing new
    for node in net.nodes.values():
        changes = [rc for rc in payloads(node.sent, "ibft_round_change")]
        assert changes and all(
            isinstance(rc, RoundChange) and rc.prepared_round == 0 and rc.prepared_block == locked
            for rc in changes
        )
    net.assert_safe()


def test_a_lock_held_by_only_alice_and_bob_still_wins_the_round_change() -> None:
    """Prepares reach only alice and bob, so only they lock; any round-change quorum of three
    holds one of them, and carol must re-propose their block."""
    net = ManualNetwork(4, max_height=1)
    net.drop = lambda src, dst, m: (
        m.kind == "ibft_commit" or (m.kind == "ibft_prepare" and dst in ("carol", "dave"))
    )
    net.start()
    net.deliver_all()
    assert net["alice"].instance is not None and net["alice"].instance.prepared_round == 0
    assert net["carol"].instance is not None and net["carol"].instance.prepared_round is None
    locked = bobs_round_zero_block(net)
    net.drop = lambda src, dst, m: False
    for name in ("dave", "carol", "alice"):  # carol hears dave, herself, then alice: quorum
        net.fire(name)
    net.deliver_all()
    decided = net["carol"].chain[1]
    assert decided.hash() == with_round(locked, 1).hash()
    net.fire("bob")
    net.deliver_all()
    net.assert_safe()


def test_a_round_one_proposer_who_ignores_the_lock_is_refused() -> None:
    net = ManualNetwork(4, max_height=1)
    net.drop = round_zero_commits
    net.start()
    net.deliver_all()
    for name in net.names:
        net.fire(name)
    # Hold everything back: carol (round 1's proposer) would re-propose the locked block.
    changes = tuple(m for _, m in net.log if m.kind == "ibft_round_change")
    net.pending.clear()
    fresh = net["carol"].build([b"carol's own trade"], round=1)
    locked_cert = next(
        rc.prepared
        for rc in (decode_consensus(m) for m in changes)
        if isinstance(rc, RoundChange) and rc.prepared
    )
    cheats = {
        "alice": (Justification(changes), "0 prepares, a quorum is 3"),  # lock unproven
        "bob": (Justification(changes[:2], locked_cert), "2 round changes, a quorum is 3"),
        "dave": (
            Justification(changes, locked_cert),
            "must re-propose the block prepared in round 0",
        ),
    }
    for name, (justification, why) in cheats.items():
        node = net[name]
        node.receive(net.sign("carol", Proposal(1, 1, fresh, justification)))
        assert node.rejects[-1].reason == RejectReason.BAD_JUSTIFICATION
        assert why in node.rejects[-1].detail, node.rejects[-1].detail
        prepares = [decode_consensus(m) for m in node.sent if m.kind == "ibft_prepare"]
        assert [p.round for p in prepares] == [0]  # nothing prepared in round 1


def test_timeouts_double_each_round() -> None:
    net = TimedNetwork(4, seed=22, down={"carol", "dave"}, max_height=1, round_timeout_ms=500)
    armed: list[ScheduleTimeout] = []
    alice = net["alice"]
    real_apply = alice.apply

    def spy(actions):  # type: ignore[no-untyped-def]
        armed.extend(a for a in actions if isinstance(a, ScheduleTimeout))
        real_apply(actions)

    alice.apply = spy  # type: ignore[method-assign]
    net.start()
    net.run(500 + 1000 + 2000 + 4000 + 100)
    assert [(a.round, a.delay_ms) for a in armed][:4] == [(0, 500), (1, 1000), (2, 2000), (3, 4000)]


def test_a_re_proposed_block_equals_the_locked_one_but_for_its_round() -> None:
    net = TimedNetwork(4, seed=23, max_height=1)
    net.drop = round_zero_commits
    net.start()
    net.run_until_height(1)
    locked = bobs_round_zero_block(net)
    decided = net["dave"].chain[1]
    assert msgspec.structs.replace(decided.header, round=0) == locked.header


def test_alice_deciding_in_round_zero_and_the_rest_in_round_one_hold_one_block() -> None:
    """Round 0's commits reach only alice, and late; the others re-propose the lock and
    decide it in round 1. Two copies of block 1 (round 0 with alice's seals, round 1 with the
    others'), one hash: height 2 builds on it for everyone."""
    net = TimedNetwork(4, seed=24, max_height=3)

    def route(src: str, dst: str, m: SignedMessage) -> int | None:
        p = decode_consensus(m)
        late_commit = p.height == 1 and m.kind == "ibft_commit" and p.round == 0
        if dst == "alice" and net.now < 3_000:
            return 3_000 - net.now if late_commit else 3_500 - net.now  # round-0 commits first
        return None if late_commit else 5

    net.route = route
    net.start()
    net.run_until_height(3, within=600_000)
    alice, carol = net["alice"].chain[1], net["carol"].chain[1]
    assert (alice.header.round, carol.header.round) == (0, 1)
    assert alice.hash() == carol.hash() and alice.seals != carol.seals
    for node in net.nodes.values():
        assert node.height == 4
        check_block(net.genesis.header, node.chain[1], net.names, net.directory)
    net.assert_safe()
