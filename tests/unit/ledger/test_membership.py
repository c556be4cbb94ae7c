"""Membership after the genesis, run by the state machine: admit, suspend, reinstate, offboard."""

from __future__ import annotations

import msgspec
import pytest

from rfq.genesis import public_identity
from rfq.identity import Identity, Role
from rfq.ledger.tx import (
    CloseOutRequest,
    CreditEventTx,
    OffboardMember,
    RegisterMember,
    ReinstateMember,
    SuspendMember,
)

from .harness import T0, Chain, Net, make_net, trade_tx


@pytest.fixture
def net() -> Net:
    return make_net()


@pytest.fixture
def chain(net: Net) -> Chain:
    return Chain(net)


def admission(net: Net, member_id: str, role: Role = Role.DEALER) -> RegisterMember:
    identity = Identity.generate(member_id, role)
    net.ids[member_id] = identity
    public = public_identity(identity, f"Dealer {member_id}")
    return RegisterMember(public.member(external_rating="A", capital=1e8), public.proof)


def test_a_member_admitted_with_its_proof_of_possession_joins_the_directory(net, chain):
    result = chain.block(net.tx("REG", admission(net, "D9"), at_ms=T0))
    assert result.receipts[0].ok, result.receipts[0].reason
    assert "D9" in chain.state.members
    assert "D9" in chain.state.directory
    assert chain.state.ratings["D9"].external == "A"


def test_an_admitted_dealer_can_trade_at_once(net, chain):
    chain.block(net.tx("REG", admission(net, "D9"), at_ms=T0))
    result = chain.block(trade_tx(net, rfq_id="r1", dealer="D9", at_ms=T0 + 1000))
    assert result.receipts[0].ok, result.receipts[0].reason


def test_an_admission_without_a_valid_proof_is_refused_and_changes_nothing(net, chain):
    good = admission(net, "D9")
    forged = msgspec.structs.replace(good, proof=admission(net, "D8").proof)
    result = chain.block(
        net.tx("REG", msgspec.structs.replace(good, proof=""), at_ms=T0),
        net.tx("REG", forged, at_ms=T0),
    )
    assert [r.ok for r in result.receipts] == [False, False]
    assert "proof is not a base64" in result.receipts[0].reason
    assert "does not verify against sign_key" in result.receipts[1].reason
    assert "D9" not in chain.state.members
    assert len(chain.state.members) == len(net.genesis.members)


def test_an_id_already_registered_or_a_key_already_used_is_refused(net, chain):
    first = admission(net, "D9")
    same_id = admission(net, "D9")
    c1 = net.genesis.member("C1")
    reused = RegisterMember(msgspec.structs.replace(first.member, id="D7"), first.proof)
    taken_key = msgspec.structs.replace(first.member, id="D6", sign_key=c1.sign_key)
    result = chain.block(
        net.tx("REG", first, at_ms=T0),
        net.tx("REG", same_id, at_ms=T0),
        net.tx("REG", reused, at_ms=T0),
        net.tx("REG", RegisterMember(taken_key, first.proof), at_ms=T0),
    )
    assert [r.ok for r in result.receipts] == [True, False, False, False]
    assert result.receipts[1].reason == "member D9 exists"
    assert result.receipts[2].reason == "member D7: its key is already D9's"
    assert result.receipts[3].reason == "member D6: its key is already C1's"


def test_only_the_regulator_admits_suspends_and_offboards(net, chain):
    result = chain.block(
        net.tx("D1", admission(net, "D9"), at_ms=T0),
        net.tx("D1", SuspendMember("C1", "no"), at_ms=T0),
        net.tx("C2", OffboardMember("C1", "no"), at_ms=T0),
    )
    assert [r.reason for r in result.receipts] == [
        "a dealer may not submit 'register_member'",
        "a dealer may not submit 'suspend_member'",
        "a client may not submit 'offboard_member'",
    ]


def test_a_suspended_member_cannot_trade_but_may_still_send_other_transactions(net, chain):
    chain.block(trade_tx(net, rfq_id="r0", client="C2", at_ms=T0))
    result = chain.block(net.tx("REG", SuspendMember("C1", "late filings"), at_ms=T0 + 500))
    assert result.receipts[0].ok, result.receipts[0].reason
    standing = chain.state.standing["C1"]
    assert (standing.status, standing.reason) == ("suspended", "late filings")
    result = chain.block(trade_tx(net, rfq_id="r1", at_ms=T0 + 1000))
    assert "client C1 is suspended" in result.receipts[0].reason
    contract = next(iter(chain.state.trades))
    result = chain.block(net.tx("C2", CloseOutRequest(contract), at_ms=T0 + 1500))
    assert result.receipts[0].ok, result.receipts[0].reason


def test_an_offboarded_member_can_send_nothing_and_its_contracts_stay_on_the_book(net, chain):
    chain.block(trade_tx(net, rfq_id="r0", client="C1", at_ms=T0))
    contract = next(iter(chain.state.trades))
    chain.block(net.tx("REG", SuspendMember("C1", "review"), at_ms=T0 + 200))
    result = chain.block(net.tx("REG", OffboardMember("C1", "left the market"), at_ms=T0 + 500))
    assert result.receipts[0].ok, result.receipts[0].reason
    assert chain.state.standing["C1"].status == "offboarded"
    result = chain.block(net.tx("C1", CloseOutRequest(contract), at_ms=T0 + 1000))
    assert result.receipts[0].reason.startswith("sender C1 was offboarded at height")
    assert contract in chain.state.trades


def test_a_standing_is_not_set_twice_and_neither_authorities_nor_the_regulator_are_barred(
    net, chain
):
    result = chain.block(
        net.tx("REG", OffboardMember("C1", "gone"), at_ms=T0),
        net.tx("REG", SuspendMember("C1", "again"), at_ms=T0),
        net.tx("REG", SuspendMember("D1", "an authority"), at_ms=T0),
        net.tx("REG", OffboardMember("REG", "me"), at_ms=T0),
        net.tx("REG", SuspendMember("X1", "who"), at_ms=T0),
        net.tx("REG", SuspendMember("C2", " "), at_ms=T0),
    )
    assert [r.reason for r in result.receipts] == [
        "",
        f"C1 is already offboarded (height {chain.state.height})",
        "D1 is an authority: evict it first",
        "the regulator cannot be suspended or offboarded",
        "unknown member 'X1'",
        "suspended needs a reason",
    ]


def test_a_reinstated_member_trades_again_and_can_be_suspended_again(net, chain):
    chain.block(net.tx("REG", SuspendMember("C1", "late filings"), at_ms=T0))
    result = chain.block(net.tx("REG", ReinstateMember("C1", "filed"), at_ms=T0 + 200))
    assert result.receipts[0].ok, result.receipts[0].reason
    assert result.receipts[0].refs == ("C1",)
    assert "C1" not in chain.state.standing
    result = chain.block(trade_tx(net, rfq_id="r1", at_ms=T0 + 1000))
    assert result.receipts[0].ok, result.receipts[0].reason
    result = chain.block(net.tx("REG", SuspendMember("C1", "again"), at_ms=T0 + 1500))
    assert result.receipts[0].ok, result.receipts[0].reason


def test_only_a_suspension_is_lifted_and_only_by_the_regulator_with_a_reason(net, chain):
    chain.block(
        net.tx("REG", SuspendMember("C1", "review"), at_ms=T0),
        net.tx("REG", OffboardMember("C2", "left"), at_ms=T0),
        net.tx("REG", CreditEventTx("D3", "missed a margin call"), at_ms=T0),
    )
    assert chain.state.standing["D3"].status == "defaulted"
    result = chain.block(
        net.tx("D1", ReinstateMember("C1", "mine"), at_ms=T0 + 100),
        net.tx("REG", ReinstateMember("C1", " "), at_ms=T0 + 100),
        net.tx("REG", ReinstateMember("C2", "back"), at_ms=T0 + 100),
        net.tx("REG", ReinstateMember("D2", "fine"), at_ms=T0 + 100),
        net.tx("REG", ReinstateMember("X1", "who"), at_ms=T0 + 100),
        net.tx("REG", ReinstateMember("D3", "paid"), at_ms=T0 + 100),
    )
    height = chain.state.standing["C2"].height
    assert [r.reason for r in result.receipts] == [
        "a dealer may not submit 'reinstate_member'",
        "reinstate needs a reason",
        f"C2 is offboarded (height {height}): only a suspension can be lifted",
        "D2 is not suspended",
        "unknown member 'X1'",
        f"D3 is defaulted (height {height}): only a suspension can be lifted",
    ]
    assert chain.state.standing["C1"].status == "suspended"
    assert chain.state.standing["C2"].status == "offboarded"
