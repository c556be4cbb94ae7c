"""An authority's proven answers: header, seals and a witness per row, a light client believes
them, and a proven page stays small."""

from __future__ import annotations

import msgspec
import pytest

from peers.authority.queries import QueryService
from peers.authority.store import SqliteChainStore
from rfq.identity import Member, Role
from rfq.ledger.block import build_block, make_seal, with_seals
from rfq.ledger.light import LightClient, LightError
from rfq.ledger.state import Trade
from rfq.queries import (
    PROVEN_PAGE_LIMIT,
    ContractsQuery,
    ContractsReply,
    ProveQuery,
    ProveReply,
    RatingsQuery,
    RatingsReply,
    ReceiptsQuery,
    ReceiptsReply,
    TradesQuery,
    TradesReply,
    refusal,
)
from tests.unit.ledger.harness import T0, Chain, make_net, trade_tx

TRADES = 300


@pytest.fixture(scope="module")
def market(tmp_path_factory):
    """Block 1 with 300 trades (no margin), sealed by CCP, D1 and D2 and stored."""
    net = make_net()
    chain = Chain(net)
    parent = chain.head
    txs = [trade_tx(net, rfq_id=f"r{i:03d}", at_ms=T0 - 500, im_rate=0.0) for i in range(TRADES)]
    result = chain.block(*txs, at_ms=T0)
    block = build_block(
        parent,
        proposer=chain.head.proposer,
        round=0,
        timestamp_ms=T0,
        txs=txs,
        state_root=chain.state.state_root(),
        authorities=chain.state.gov.previous_set,
    )
    assert block.hash() == chain.head.hash()
    sealed = with_seals(
        block, [make_seal(net.ids[a], block.hash(), 0) for a in ("CCP", "D1", "D2")]
    )
    store = SqliteChainStore(tmp_path_factory.mktemp("d1") / "chain.db")
    store.append(sealed, receipts=result.receipts)
    assert len(chain.state.trades) == TRADES
    return net, chain, QueryService("D1", store), result


def ask(market, query, who: str = "REG", role: Role = Role.REGULATOR):
    _, chain, service, _ = market
    return service.answer(chain.state, chain.head, 0, who, role, query)


def test_a_proven_page_of_trades_is_believed_by_a_light_client_and_stays_small(market):
    net = market[0]
    reply = ask(market, TradesQuery(proven=True))
    assert isinstance(reply, TradesReply)
    assert len(reply.trades) == PROVEN_PAGE_LIMIT < TRADES and reply.next_cursor
    verified = LightClient(net.genesis).verify(reply.proof)
    assert verified.rows("trades", reply.trades, lambda t: t.rfq_id, Trade) == list(reply.trades)
    assert len(msgspec.msgpack.encode(reply)) < 1_000_000


def test_an_unproven_page_carries_no_proof_and_keeps_its_size(market):
    reply = ask(market, TradesQuery())
    assert isinstance(reply, TradesReply)
    assert len(reply.trades) == TRADES and reply.proof is None


def test_a_proven_receipt_carries_the_witness_of_its_committed_id(market):
    net, _, _, result = market
    ok = result.receipts[0]
    reply = ask(market, ReceiptsQuery((ok.tx_id, "ab" * 32), proven=True))
    assert isinstance(reply, ReceiptsReply) and reply.receipts == (ok,)
    assert LightClient(net.genesis).verify(reply.proof).committed(ok.tx_id)


def test_a_member_and_a_stranger_are_proven_present_and_absent(market):
    net = market[0]
    reply = ask(market, ProveQuery("members", ("C1", "ZZ_NOBODY")), "BANK", Role.BANK)
    assert isinstance(reply, ProveReply)
    verified = LightClient(net.genesis).verify(reply.proof)
    assert verified.entry("members", "C1").decode(Member).role == Role.CLIENT
    assert not verified.entry("members", "ZZ_NOBODY").present


def test_a_client_may_have_the_registry_proven_but_not_the_payments(market):
    net = market[0]
    c1 = next(m for m in net.genesis.members if m.id == "C1")
    assert refusal(c1, ProveQuery("members", ("D1",))) is None
    assert "not public" in (refusal(c1, ProveQuery("payments", ("x",))) or "")
    assert "at most" in (refusal(c1, ProveQuery("members", ("D1",) * 251)) or "")


def test_a_proven_page_of_contracts_proves_each_record_and_a_changed_one_is_refused(market):
    net = market[0]
    reply = ask(market, ContractsQuery(proven=True))
    assert isinstance(reply, ContractsReply) and len(reply.contracts) == PROVEN_PAGE_LIMIT
    verified = LightClient(net.genesis).verify(reply.proof)
    assert verified.contracts(reply.contracts) == list(reply.contracts)
    first = reply.contracts[0]
    made_up = msgspec.structs.replace(first, vm_balance=first.vm_balance + 0.5)  # half a unit
    with pytest.raises(LightError) as err:
        verified.contracts([made_up])
    assert err.value.kind == "bad_row"


def test_proven_ratings_hold_each_score_and_grade_and_a_made_up_score_is_refused(market):
    net = market[0]
    reply = ask(market, RatingsQuery(proven=True), "D1", Role.DEALER)
    assert isinstance(reply, RatingsReply) and "C1" in reply.ratings
    verified = LightClient(net.genesis).verify(reply.proof)
    verified.ratings(reply.ratings, reply.grades, reply.standing)
    with pytest.raises(LightError) as err:
        verified.ratings({**reply.ratings, "C1": 0.999}, reply.grades, reply.standing)
    assert err.value.kind == "bad_row"
    with pytest.raises(LightError):  # no witness of a standing entry that is not on chain
        verified.ratings(reply.ratings, reply.grades, {"D3": "defaulted"})
