"""The happy path: every authority up, every message delivered; blocks decided and sealed."""

from __future__ import annotations

import itertools

import pytest

import rfq.ledger.block as block_module
from rfq.ledger.block import check_block, proposer_for, quorum, verify_seals
from rfq.ledger.consensus import Prepare, Proposal, decode_consensus

from .test_consensus_harness import ManualNetwork, TimedNetwork


def test_four_authorities_decide_the_same_blocks_at_heights_one_to_five() -> None:
    net = TimedNetwork(4, seed=1, max_height=5)
    net.start()
    net.run_until_height(5)
    chains = {name: [b.hash() for b in node.chain] for name, node in net.nodes.items()}
    assert len(set(map(tuple, chains.values()))) == 1
    assert len(chains["alice"]) == 6  # genesis + 5
    for node in net.nodes.values():
        assert sorted(node.decided) == [1, 2, 3, 4, 5], "each decided by consensus, none synced"
        assert not node.rejects and not node.evidence
    net.assert_safe()


def test_every_decided_block_carries_a_quorum_of_valid_seals_and_links_to_its_parent() -> None:
    net = TimedNetwork(4, seed=2, max_height=4)
    net.start()
    net.run_until_height(4)
    chain = net["carol"].chain
    for parent, block in itertools.pairwise(chain):
        assert verify_seals(block, net.names, net.directory) == []
        assert len(block.seals) >= quorum(4)
        check_block(parent.header, block, net.names, net.directory)


def test_the_proposer_rotates_with_the_height_and_round_zero_suffices() -> None:
    net = TimedNetwork(4, seed=3, max_height=8)
    net.start()
    net.run_until_height(8)
    headers = [b.header for b in net["alice"].chain[1:]]
    assert [h.round for h in headers] == [0] * 8
    assert [h.proposer for h in headers] == [proposer_for(h.height, 0, net.names) for h in headers]
    assert [h.proposer for h in headers] == ["bob", "carol", "dave", "alice"] * 2


@pytest.mark.parametrize("n", [5, 6, 7])
def test_larger_authority_sets_decide_too(n: int) -> None:
    net = TimedNetwork(n, seed=n, max_height=3)
    net.start()
    net.run_until_height(3)
    assert {node.height for node in net.nodes.values()} == {4}
    net.assert_safe()
    for block in net["alice"].chain[1:]:
        assert verify_seals(block, net.names, net.directory) == []


def test_one_height_costs_one_proposal_and_a_prepare_and_commit_per_authority() -> None:
    net = ManualNetwork(4, max_height=1)
    net.start()
    net.deliver_all()
    kinds = [m.kind for _, m in net.log]
    assert kinds.count("ibft_proposal") == 1
    assert kinds.count("ibft_prepare") == 4
    assert kinds.count("ibft_commit") == 4
    assert kinds.count("ibft_round_change") == 0


def test_messages_arriving_in_reverse_order_still_decide() -> None:
    net = ManualNetwork(4, max_height=1)
    net.start()
    while net.pending:
        net.deliver_at(len(net.pending) - 1)  # always the newest first
    assert {node.height for node in net.nodes.values()} == {2}
    net.assert_safe()


def test_a_block_of_two_thousand_transactions_is_hashed_once_per_authority(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    roots: list[int] = []
    real = block_module.merkle_root

    def counting(items):  # type: ignore[no-untyped-def]
        roots.append(len(items))
        return real(items)

    monkeypatch.setattr(block_module, "merkle_root", counting)
    net = ManualNetwork(4, max_height=1, txs_per_block=2000)
    net.start()
    net.deliver_all()
    block = net["alice"].chain[1]
    assert block.header.tx_count == 2000
    assert {node.chain[1].hash() for node in net.nodes.values()} == {block.hash()}
    # bob builds the block (one root); alice, carol and dave each check the decoded proposal
    # once: re-executing it (the state root) and deciding it reuse that root.
    assert roots.count(2000) == 4


def test_every_validator_prepares_the_hash_of_the_proposed_block() -> None:
    net = ManualNetwork(4, max_height=1)
    net.start()
    net.deliver_all()
    proposal = decode_consensus(next(m for _, m in net.log if m.kind == "ibft_proposal"))
    assert isinstance(proposal, Proposal)
    for node in net.nodes.values():
        prepares = [decode_consensus(m) for m in node.sent if m.kind == "ibft_prepare"]
        assert prepares == [Prepare(1, 0, proposal.block.hash())]
