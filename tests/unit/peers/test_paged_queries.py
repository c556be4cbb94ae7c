"""Paged queries with real cursors: pages that concatenate to the whole with the right total,
stay stable while rows arrive, cost their size (indexes, not whole-state reads), and clear
refusals for a cursor that is unknown, another member's, another query's or expired, and for
a reply that would be too big."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from peers.authority.queries import QueryService
from peers.authority.store import SqliteChainStore
from rfq.identity import Role
from rfq.queries import (
    CURSOR_TTL_BLOCKS,
    MAX_RECEIPTS,
    PAGE_LIMIT,
    ContractsQuery,
    ContractsReply,
    CursorRefused,
    PaymentsQuery,
    QueryRefused,
    ReceiptsQuery,
    ReceiptsReply,
    TradesQuery,
    TradesReply,
    make_cursor,
    page_of,
    read_cursor,
    refusal,
)
from tests.unit.ledger.harness import T0, Chain, make_net, trade_tx

TRADES = 300


def _trades(net: Any, start: int, count: int, at_ms: int) -> list[bytes]:
    return [
        trade_tx(
            net,
            rfq_id=f"r{i:04d}",
            client=("C1", "C2")[i % 2],
            dealer=("D1", "D2")[i % 3 % 2],
            at_ms=at_ms - 500,
            im_rate=0.0,
        )
        for i in range(start, start + count)
    ]


@pytest.fixture(scope="module")
def market(tmp_path_factory):
    """Block 1 with 300 trades between C1/C2 and D1/D2, stored with its receipts."""
    net = make_net()
    chain = Chain(net)
    result = chain.block(*_trades(net, 0, TRADES, T0), at_ms=T0)
    assert all(r.ok for r in result.receipts)
    store = SqliteChainStore(tmp_path_factory.mktemp("paged") / "chain.db")
    return net, chain, store, result


def ask(market, query, who: str = "REG", role: Role = Role.REGULATOR, **service: Any):
    _, chain, store, _ = market
    return QueryService("D1", store, **service).answer(chain.state, chain.head, 0, who, role, query)


def read_all(ask_page, query, rows: str) -> tuple[list[Any], list[int]]:
    """Every page of ``query`` by cursor: the rows and each page's total."""
    out: list[Any] = []
    totals: list[int] = []
    cursor = query.cursor
    while True:
        reply = ask_page(msgspec.structs.replace(query, cursor=cursor))
        assert not isinstance(reply, QueryRefused), reply.reason
        out.extend(getattr(reply, rows))
        totals.append(reply.total)
        cursor = reply.next_cursor
        if not cursor:
            return out, totals


# --------------------------------------------------------------------------------------------
# pages


@pytest.mark.parametrize("limit", [1, 7, 64, PAGE_LIMIT])
def test_a_members_contract_pages_concatenate_to_its_whole_book_with_the_total(market, limit):
    book = market[1].state.book
    rows, totals = read_all(
        lambda q: ask(market, q, "D1", Role.DEALER), ContractsQuery(limit=limit), "contracts"
    )
    expected = [v.contract.id for v in book.by_party("D1")]
    assert [v.contract.id for v in rows] == expected
    assert set(totals) == {len(expected)} and 0 < len(expected) < TRADES


def test_a_clients_open_contracts_are_its_own_only_whatever_it_names(market):
    rows, totals = read_all(
        lambda q: ask(market, q, "C1", Role.CLIENT),
        ContractsQuery(open_only=True, limit=9),
        "contracts",
    )
    assert rows and all(v.contract.client == "C1" for v in rows)
    assert set(totals) == {len(rows)} == {TRADES // 2}
    theirs = [v.contract.id for v in market[1].state.book.by_party("C2")][:3]
    named = ask(market, ContractsQuery(ids=tuple(theirs)), "C1", Role.CLIENT)
    assert isinstance(named, ContractsReply) and named.contracts == () and named.total == 0


def test_the_regulators_pages_of_every_contract_and_every_trade_are_complete(market):
    state = market[1].state
    contracts, _ = read_all(lambda q: ask(market, q), ContractsQuery(limit=50), "contracts")
    assert [v.contract.id for v in contracts] == state.book.ids()
    trades, totals = read_all(lambda q: ask(market, q), TradesQuery(limit=33), "trades")
    assert sorted(t.rfq_id for t in trades) == sorted(state.trades) and set(totals) == {TRADES}


def test_a_dealers_trade_pages_are_newest_first_and_only_its_own(market):
    trades, totals = read_all(
        lambda q: ask(market, q, "D2", Role.DEALER), TradesQuery(limit=10), "trades"
    )
    mine = [t for t in market[1].state.trades.values() if t.dealer == "D2"]
    assert {t.rfq_id for t in trades} == {t.rfq_id for t in mine}
    assert set(totals) == {len(mine)} and all(t.dealer == "D2" for t in trades)
    keys = [(-t.height, t.rfq_id) for t in trades]
    assert keys == sorted(keys)


def test_pages_stay_stable_when_trades_arrive_between_two_of_them(tmp_path):
    net = make_net()
    chain = Chain(net)
    chain.block(*_trades(net, 0, 10, T0), at_ms=T0)
    service = QueryService("D1", SqliteChainStore(tmp_path / "chain.db"))

    def ask_page(query: Any) -> Any:
        return service.answer(chain.state, chain.head, 0, "REG", Role.REGULATOR, query)

    first = ask_page(ContractsQuery(limit=4))
    old = ask_page(TradesQuery(limit=4))
    chain.block(*_trades(net, 10, 5, T0 + 1000), at_ms=T0 + 1000)  # ids r0010.. sort last
    rest, totals = [], []
    cursor = first.next_cursor
    while cursor:
        reply = ask_page(ContractsQuery(limit=4, cursor=cursor))
        rest.extend(reply.contracts)
        totals.append(reply.total)
        cursor = reply.next_cursor
    ids = [v.contract.id for v in (*first.contracts, *rest)]
    assert ids == chain.state.book.ids() and len(ids) == 15 and set(totals) == {15}
    # Trades newest first: the new ones sort before the cursor, the old ones all follow.
    older, _ = read_all(ask_page, TradesQuery(limit=4, cursor=old.next_cursor), "trades")
    assert len(old.trades) + len(older) == 10
    assert {t.height for t in older} == {1}


def test_a_query_for_more_than_the_page_limit_gets_a_page_and_a_cursor():
    keys = [f"{i:06d}" for i in range(PAGE_LIMIT + 5)]
    assert page_of(keys, "", 10**9) == (0, PAGE_LIMIT, True)
    assert page_of(keys, keys[PAGE_LIMIT - 1], 10**9) == (PAGE_LIMIT, PAGE_LIMIT + 5, False)


def test_since_the_head_there_is_nothing_new_and_since_zero_is_everything(market):
    chain = market[1]
    reply = ask(market, TradesQuery(since_height=chain.head.height), "D1", Role.DEALER)
    assert isinstance(reply, TradesReply) and reply.trades == () and reply.total == 0
    assert reply.height == chain.head.height
    assert ask(market, TradesQuery(since_height=0), "D1", Role.DEALER).total > 0


def test_since_height_returns_exactly_the_newer_blocks_trades(tmp_path):
    net = make_net()
    chain = Chain(net)
    chain.block(*_trades(net, 0, 12, T0), at_ms=T0)
    service = QueryService("D1", SqliteChainStore(tmp_path / "chain.db"))
    seen = service.answer(chain.state, chain.head, 0, "D1", Role.DEALER, TradesQuery())
    chain.block(*_trades(net, 12, 6, T0 + 1000), at_ms=T0 + 1000)
    new = service.answer(
        chain.state, chain.head, 0, "D1", Role.DEALER, TradesQuery(since_height=seen.height)
    )
    assert isinstance(new, TradesReply) and new.height == 2
    expected = {t.rfq_id for t in chain.state.trades.values() if t.height == 2 and t.dealer == "D1"}
    assert {t.rfq_id for t in new.trades} == expected and new.total == len(expected) > 0


def test_receipts_for_more_ids_than_a_page_come_as_a_page_and_a_cursor(market):
    _, chain, store, result = market
    if store.height() == 0:
        from rfq.ledger.block import Block

        store.append(Block(chain.head, ()), receipts=result.receipts)
    real = [r.tx_id for r in result.receipts]
    ids = (*real, *(f"{i:064x}" for i in range(MAX_RECEIPTS)))  # 800 ids, 300 committed
    member = market[0].genesis.members[0]
    assert refusal(member, ReceiptsQuery(ids)) is None  # not refused: paged
    first = ask(market, ReceiptsQuery(ids))
    assert isinstance(first, ReceiptsReply) and first.next_cursor
    assert len(first.receipts) == len(real)  # the first 500 ids hold every real one
    second = ask(market, ReceiptsQuery(ids, cursor=first.next_cursor))
    assert isinstance(second, ReceiptsReply) and second.receipts == () and not second.next_cursor


# --------------------------------------------------------------------------------------------
# cursor refusals


def test_a_cursor_that_does_not_decode_is_refused_as_unknown(market):
    for junk in ("xyz", "pc1.!!notbase64", "pc1.AAAA", "0000000000"):
        reply = ask(market, ContractsQuery(cursor=junk), "C1", Role.CLIENT)
        assert isinstance(reply, QueryRefused) and "unknown cursor" in reply.reason


def test_another_members_cursor_is_refused_naming_whose_it_is(market):
    theirs = ask(market, ContractsQuery(limit=5), "C2", Role.CLIENT).next_cursor
    reply = ask(market, ContractsQuery(limit=5, cursor=theirs), "C1", Role.CLIENT)
    assert isinstance(reply, QueryRefused) and reply.reason == "cursor is C2's, not C1's"


def test_a_cursor_of_another_query_is_refused(market):
    cursor = ask(market, ContractsQuery(limit=5), "C1", Role.CLIENT).next_cursor
    for other in (ContractsQuery(open_only=True, cursor=cursor), TradesQuery(cursor=cursor)):
        reply = ask(market, other, "C1", Role.CLIENT)
        assert isinstance(reply, QueryRefused) and "another query" in reply.reason
    # Its page size and whether it is proven may change from page to page.
    again = ask(market, ContractsQuery(limit=9, proven=True, cursor=cursor), "C1", Role.CLIENT)
    assert isinstance(again, ContractsReply) and len(again.contracts) == 9


def test_a_cursor_older_than_its_lifetime_is_refused_as_expired_saying_how_old():
    query = PaymentsQuery(cursor=make_cursor("C1", PaymentsQuery(), "p1", height=10))
    assert read_cursor("C1", query, 10 + CURSOR_TTL_BLOCKS) == "p1"
    with pytest.raises(CursorRefused, match=f"expired: made at height 10, {CURSOR_TTL_BLOCKS + 1}"):
        read_cursor("C1", query, 11 + CURSOR_TTL_BLOCKS)
    # one made by an authority a few blocks ahead is fine (the client moved to another)
    assert read_cursor("C1", query, 7) == "p1"


def test_a_forged_cursor_moves_the_page_but_never_widens_what_the_asker_sees(market):
    book = market[1].state.book
    theirs = book.by_party("C2")[0].contract.id
    forged = make_cursor("C1", ContractsQuery(), theirs, market[1].head.height)
    reply = ask(market, ContractsQuery(cursor=forged), "C1", Role.CLIENT)
    assert isinstance(reply, ContractsReply) and reply.contracts
    assert all(v.contract.client == "C1" and v.contract.id > theirs for v in reply.contracts)


# --------------------------------------------------------------------------------------------
# over-size replies


def test_a_page_of_big_rows_over_the_reply_budget_is_refused_saying_to_ask_fewer(market):
    full = ask(market, ContractsQuery())
    size = len(msgspec.msgpack.encode(full))
    budget = size // 3
    reply = ask(market, ContractsQuery(), reply_budget=budget)
    assert isinstance(reply, QueryRefused)
    assert f"over the {budget:,} a reply may carry" in reply.reason
    assert "ask for fewer rows" in reply.reason
    smaller = ask(market, ContractsQuery(limit=TRADES // 4), reply_budget=budget)
    assert isinstance(smaller, ContractsReply) and len(smaller.contracts) == TRADES // 4
    assert len(msgspec.msgpack.encode(smaller)) <= budget


def test_contracts_since_a_height_are_those_opened_or_changed_after_it(tmp_path):
    net = make_net()
    chain = Chain(net)
    chain.block(*_trades(net, 0, 8, T0), at_ms=T0)
    service = QueryService("D1", SqliteChainStore(tmp_path / "chain.db"))

    def contracts(**filters: Any) -> ContractsReply:
        reply = service.answer(
            chain.state, chain.head, 0, "C1", Role.CLIENT, ContractsQuery(**filters)
        )
        assert isinstance(reply, ContractsReply)
        return reply

    seen = contracts()
    assert contracts(since_height=seen.height).total == 0
    chain.block(*_trades(net, 8, 4, T0 + 1000), at_ms=T0 + 1000)
    new = contracts(since_height=seen.height)
    assert {v.contract.id for v in new.contracts} == {"r0008", "r0010"} and new.total == 2
    # the delta folded into what was seen is what a full read gives now
    merged = {v.contract.id: v for v in seen.contracts} | {v.contract.id: v for v in new.contracts}
    assert sorted(merged) == [v.contract.id for v in contracts().contracts]
    # an ending is a change: C1's defaulted contracts come again, with their new status
    from rfq.ledger.tx import CreditEventTx

    before = chain.head.height
    result = chain.block(
        net.tx("REG", CreditEventTx("C1", "insolvency"), at_ms=T0 + 1500), at_ms=T0 + 2000
    )
    assert result.receipts[0].ok, result.receipts[0].reason
    ended = contracts(since_height=before)
    assert ended.total == len(merged) and all(v.status.terminal for v in ended.contracts)
