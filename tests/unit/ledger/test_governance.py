"""The regulator's authority-management contract, run by the state machine."""

from __future__ import annotations

import msgspec
import pytest

from rfq.ledger.consensus import Prepare
from rfq.ledger.tx import ByzantineEvidence, Evict, Nominate, Veto

from .harness import T0, Chain, make_net


@pytest.fixture
def net():
    return make_net(liveness_missed_rounds=3, epoch_blocks=20)


@pytest.fixture
def chain(net):
    return Chain(net)


def test_the_regulator_nominates_and_vetoes_candidates(net, chain):
    result = chain.block(
        net.tx("REG", Nominate("G2"), at_ms=T0),
        net.tx("REG", Veto("G1"), at_ms=T0),
        net.tx("REG", Nominate("C1"), at_ms=T0),
        net.tx("REG", Veto("D1"), at_ms=T0),
    )
    assert [r.ok for r in result.receipts] == [True, True, False, False]
    assert "cannot be an authority" in result.receipts[2].reason
    assert "evict it instead" in result.receipts[3].reason
    assert chain.state.gov.candidates == ("G2",)
    assert chain.state.gov.vetoed == ("G1",)


def test_only_the_regulator_may_govern(net, chain):
    result = chain.block(net.tx("D1", Evict("D2", "I do not like D2"), at_ms=T0))
    assert result.receipts[0].reason == "a dealer may not submit 'gov_evict'"
    assert "D2" in chain.state.authorities


def test_an_eviction_takes_effect_at_the_next_height_and_is_filled_from_the_candidates(net, chain):
    result = chain.block(net.tx("REG", Evict("D3", "operator request"), at_ms=T0))
    [evict, join] = result.governance
    assert (evict.action, evict.member, evict.effective_height) == ("evict", "D3", 2)
    assert (join.action, join.member) == ("join", "G1")
    assert chain.state.gov.previous_set == ("CCP", "D1", "D2", "D3")  # decided block 1
    chain.block()
    assert chain.state.gov.previous_set == ("CCP", "D1", "D2", "G1")  # decides block 2
    assert chain.head.proposer in ("CCP", "D1", "D2", "G1")
    again = chain.block(net.tx("REG", Nominate("D3"), at_ms=T0 + 5000))
    assert "was evicted and cannot return" in again.receipts[0].reason


def test_an_authority_that_keeps_missing_its_proposals_is_evicted(net, chain):
    """D2 is down: each height it should propose is decided one round later by someone else."""
    missed = 0
    for _ in range(40):
        height = chain.head.height + 1
        from rfq.ledger.block import proposer_for

        due = proposer_for(height, 0, chain.state.authorities)
        round_ = 1 if due == "D2" else 0
        missed += round_
        chain.block(round=round_)
        if "D2" not in chain.state.authorities:
            break
    assert "D2" not in chain.state.authorities
    assert missed == 3
    [event] = [e for r in chain.results for e in r.governance if e.action == "evict"]
    assert event.reason == "missed 3 proposals in a row"
    assert "G1" in chain.state.authorities


def test_the_block_whose_start_evicts_a_silent_authority_names_the_set_that_decides_it(net, chain):
    """Validators of a height check the proposal for the set in force before it: the block
    that counts D2's last missed turn is still decided by D2's set (D2 is gone at the next
    height); naming the new set there made every proposal of that height invalid, and the
    chain halted."""
    from rfq.ledger.block import proposer_for

    for _ in range(40):
        deciding = chain.state.authorities
        height = chain.head.height + 1
        round_ = 1 if proposer_for(height, 0, deciding) == "D2" else 0
        chain.block(round=round_)
        assert chain.state.gov.previous_set == deciding, height
        if "D2" not in chain.state.authorities:
            break
    assert "D2" not in chain.state.authorities
    chain.block()
    assert "D2" not in chain.state.gov.previous_set


def test_a_successful_proposal_resets_the_missed_streak(net, chain):
    from rfq.ledger.block import proposer_for

    misses = 0
    for _ in range(19):  # within one epoch (20 blocks): no re-election
        height = chain.head.height + 1
        due = proposer_for(height, 0, chain.state.authorities)
        round_ = 0
        if due == "D2":
            misses += 1
            round_ = 1 if misses % 2 else 0  # misses every other turn: never 3 in a row
        chain.block(round=round_)
    assert "D2" in chain.state.authorities


def sign_prepare(net, who, block_hash, *, height=5, round_=0):
    return net.sign(who, Prepare(height=height, round=round_, block_hash=block_hash), at_ms=T0)


def test_two_conflicting_signed_prepares_evict_the_authority_that_signed_them(net, chain):
    a = sign_prepare(net, "D1", b"\x01" * 32)
    b = sign_prepare(net, "D1", b"\x02" * 32)
    result = chain.block(net.tx("C2", ByzantineEvidence(a, b), at_ms=T0))
    assert result.receipts[0].ok, result.receipts[0].reason
    assert "D1" not in chain.state.authorities
    assert "D1" in chain.state.gov.banned
    assert "equivocation" in result.governance[0].reason
    repeat = chain.block(net.tx("C2", ByzantineEvidence(b, a), at_ms=T0 + 1))
    assert "already evicted" in repeat.receipts[0].reason


@pytest.mark.parametrize(
    ("first", "second", "problem"),
    [
        (("D1", b"\x01" * 32, 5), ("D1", b"\x01" * 32, 5), "same block"),
        (("D1", b"\x01" * 32, 5), ("D2", b"\x02" * 32, 5), "different members"),
        (("D1", b"\x01" * 32, 5), ("D1", b"\x02" * 32, 6), "different height"),
        (("C1", b"\x01" * 32, 5), ("C1", b"\x02" * 32, 5), "not an authority"),
    ],
)
def test_evidence_that_proves_nothing_is_rejected(net, chain, first, second, problem):
    a = sign_prepare(net, first[0], first[1], height=first[2])
    b = sign_prepare(net, second[0], second[1], height=second[2])
    result = chain.block(net.tx("C2", ByzantineEvidence(a, b), at_ms=T0))
    assert problem in result.receipts[0].reason
    assert chain.state.authorities == ("CCP", "D1", "D2", "D3")


def test_forged_evidence_with_a_bad_signature_is_rejected(net, chain):
    a = sign_prepare(net, "D1", b"\x01" * 32)
    b = msgspec.structs.replace(a, body=msgspec.msgpack.encode(Prepare(5, 0, b"\x09" * 32)))
    result = chain.block(net.tx("C2", ByzantineEvidence(a, b), at_ms=T0))
    assert "signature" in result.receipts[0].reason
    assert "D1" in chain.state.authorities


def test_every_epoch_the_set_is_reelected_from_incumbents_and_candidates(net, chain):
    from rfq.ledger.block import proposer_for

    for _ in range(20):  # D3 misses two proposals early in the epoch (never 3 in a row)
        height = chain.head.height + 1
        due = proposer_for(height, 0, chain.state.authorities)
        chain.block(round=1 if due == "D3" and height < 8 else 0)
    assert dict(chain.state.gov.missed_streak).get("D3", 0) == 0
    [event] = [e for r in chain.results for e in r.governance if e.action == "reelect"]
    assert chain.state.authorities == ("CCP", "D1", "D2", "G1")
    assert chain.state.gov.candidates == ("D3",)
    assert event.reason == "changed"
