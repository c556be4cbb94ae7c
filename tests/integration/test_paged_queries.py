"""Paged queries through a real nats-server and the ledger client: a pagination continues on
another authority when the first stops answering, a cursor of another member is refused over
the bus, and a dealer's sync reads only the trades committed since its last one."""

from __future__ import annotations

import pytest

from peers.ledger_client import LedgerClient, QueryDenied
from rfq.queries import ContractsQuery, ContractsReply, TradesQuery, TradesReply

from .chainkit import TxFactory, committed, start_authorities, submit, wait_for

pytestmark = pytest.mark.integration

TRADES = 12


async def test_a_pagination_moves_to_another_authority_midway_and_reads_every_row_once(
    network, nats_server, bus_factory
):
    nodes = await start_authorities(network, bus_factory)
    txs = TxFactory(network)
    c1 = await LedgerClient(await bus_factory("C1"), network.genesis()).start()
    await submit(c1.bus, [txs.trade(f"p{i:02d}", client="C1") for i in range(TRADES)])
    await wait_for(committed(nodes.values(), TRADES), what="the trades final on every node")

    whole = await c1.query_all(ContractsQuery(limit=5), ContractsReply)
    assert len(whole.contracts) == whole.total == TRADES

    first = await c1.query(ContractsQuery(limit=5))
    assert isinstance(first, ContractsReply) and first.next_cursor
    answered = c1.authorities[0]
    await nodes.pop(answered).stop()  # the one that made the cursor is gone
    rest = []
    cursor = first.next_cursor
    while cursor:
        page = await c1.query(ContractsQuery(limit=5, cursor=cursor), timeout=1.0)
        assert isinstance(page, ContractsReply)
        rest.extend(page.contracts)
        cursor = page.next_cursor
    assert c1.authorities[0] != answered
    ids = [v.contract.id for v in (*first.contracts, *rest)]
    assert ids == sorted(ids) and len(set(ids)) == TRADES == len(ids)

    c2 = await LedgerClient(await bus_factory("C2"), network.genesis()).start()
    with pytest.raises(QueryDenied, match="cursor is C1's, not C2's"):
        await c2.query(ContractsQuery(limit=5, cursor=first.next_cursor), timeout=1.0)
    with pytest.raises(QueryDenied, match="unknown cursor"):
        await c2.query(TradesQuery(cursor="not-a-cursor"), timeout=1.0)
    await c1.close()
    await c2.close()
    for node in nodes.values():
        await node.stop()


async def test_a_dealers_sync_reads_only_the_trades_committed_since_the_last_one(
    network, nats_server, bus_factory
):
    from peers.dealer import DealerBot

    nodes = await start_authorities(network, bus_factory)
    txs = TxFactory(network)
    c1 = await LedgerClient(await bus_factory("C1"), network.genesis()).start()
    d1 = await DealerBot(await bus_factory("D1"), network.genesis()).start()
    await submit(c1.bus, [txs.trade(f"s{i:02d}", client="C1") for i in range(4)])
    await wait_for(committed(nodes.values(), 4), what="four trades final")
    assert await d1.sync_from_chain() == 4  # not following the chain: only these syncs
    seen = d1.synced_height
    assert seen >= max(t.height for t in next(iter(nodes.values())).state.trades.values())

    asked: list[TradesQuery] = []
    real_query = d1.ledger.query

    async def spy(query, **kw):  # type: ignore[no-untyped-def]
        if isinstance(query, TradesQuery):
            asked.append(query)
        return await real_query(query, **kw)

    d1.ledger.query = spy  # type: ignore[method-assign]
    await submit(c1.bus, [txs.trade(f"s{i:02d}", client="C1") for i in range(4, 6)])
    await wait_for(committed(nodes.values(), 6), what="two more trades final")
    assert await d1.sync_from_chain() == 2
    assert asked and all(q.since_height >= seen for q in asked)
    reply = await real_query(TradesQuery(party="D1", since_height=seen))
    assert isinstance(reply, TradesReply) and reply.total == 2
    assert d1.booked == {f"s{i:02d}" for i in range(6)}
    await d1.close()
    await c1.close()
    for node in nodes.values():
        await node.stop()
