"""Four authorities over a real nats-server: commits, crashes, catch-up."""

from __future__ import annotations

import time

import pytest

from .chainkit import AUTHORITIES, TxFactory, committed, start_authorities, submit, wait_for

pytestmark = pytest.mark.integration


async def test_four_authorities_commit_a_thousand_transactions_identically(
    nats_server, network, bus_factory
):
    nodes = await start_authorities(network, bus_factory)
    factory = TxFactory(network)
    c1, c2 = await bus_factory("C1"), await bus_factory("C2")
    await submit(
        c1, [factory.trade(f"r{i}", client="C1", dealer=f"D{i % 3 + 1}") for i in range(500)]
    )
    await submit(
        c2, [factory.trade(f"s{i}", client="C2", dealer=f"D{i % 3 + 1}") for i in range(500)]
    )
    await wait_for(
        committed(nodes.values(), 1000),
        timeout=120,
        what="1000 trades on every authority",
    )
    tip = min(n.head.height for n in nodes.values())
    for h in range(1, tip + 1):
        hashes = {n.store.block(h).hash() for n in nodes.values()}
        assert len(hashes) == 1, f"fork at height {h}"
    assert len({n.store.block(tip).header.state_root for n in nodes.values()}) == 1
    for node in nodes.values():
        await node.stop()


async def test_client_c1_is_told_its_trade_is_final_and_sees_only_its_own_contracts(
    nats_server, network, bus_factory
):
    from peers.ledger_client import LedgerClient, QueryDenied
    from rfq.queries import ContractsQuery, ContractsReply, StatusQuery

    nodes = await start_authorities(network, bus_factory)
    factory = TxFactory(network)
    genesis = network.genesis()
    c1 = await LedgerClient(await bus_factory("C1"), genesis).start()
    c2 = await LedgerClient(await bus_factory("C2"), genesis).start()
    reg = await LedgerClient(await bus_factory("REG"), genesis).start()
    mine = factory.trade("c1-trade", client="C1")
    theirs = factory.trade("c2-trade", client="C2", dealer="D2")
    await c2.bus.nc.publish("otc.tx.C2", theirs)
    import hashlib

    tx_id = hashlib.sha256(mine).hexdigest()
    await c1.bus.nc.publish("otc.tx.C1", mine)
    receipt = await c1.wait(tx_id, timeout=20)
    assert receipt.ok, receipt.reason
    assert receipt.refs[0] == "c1-trade"
    replay = await c1.wait(hashlib.sha256(mine).hexdigest(), timeout=1)
    assert replay.ok  # the same id: still the one final receipt
    await wait_for(lambda: all("c2-trade" in n.state.trades for n in nodes.values()))
    own = await c1.query(ContractsQuery())
    assert isinstance(own, ContractsReply)
    assert [v.contract.id for v in own.contracts] == ["c1-trade"]
    with pytest.raises(QueryDenied, match="only see its own"):
        await c1.query(ContractsQuery(party="C2"))
    everything = await reg.query(ContractsQuery())
    assert sorted(v.contract.id for v in everything.contracts) == ["c1-trade", "c2-trade"]
    status = await c1.query(StatusQuery())
    assert status.authorities == AUTHORITIES
    for node in nodes.values():
        await node.stop()


async def test_an_accept_carrying_a_forged_quote_never_commits(nats_server, network, bus_factory):
    """C1 signs an accept around a 'quote' that D1 never signed (the signature is D2's over
    other bytes): every authority refuses it at execution."""
    import hashlib

    import msgspec

    from peers.ledger_client import LedgerClient
    from rfq.messages import Accept
    from rfq.signing import SignedMessage

    nodes = await start_authorities(network, bus_factory)
    factory = TxFactory(network)
    genuine = msgspec.msgpack.decode(factory.trade("forged", dealer="D1"), type=SignedMessage)
    accept = msgspec.msgpack.decode(genuine.body, type=Accept)
    bad_quote = msgspec.structs.replace(accept.quote, signature=b"\x01" * 64)
    forged = factory.sign("C1", msgspec.structs.replace(accept, quote=bad_quote))
    c1 = await LedgerClient(await bus_factory("C1"), network.genesis()).start()
    await c1.bus.nc.publish("otc.tx.C1", forged)
    receipt = await c1.wait(hashlib.sha256(forged).hexdigest(), timeout=20)
    assert not receipt.ok
    assert receipt.reason == "the quote's signature does not verify"
    assert all("forged" not in n.state.trades for n in nodes.values())
    for node in nodes.values():
        await node.stop()


async def test_a_query_never_sees_a_block_that_is_not_final(
    nats_server, network, bus_factory, monkeypatch
):
    """The proposer of height 1 runs alone, so its block executes and can never be final:
    the regulator's query waits for it to settle, then is answered from the final state."""
    from peers.authority import node as node_module
    from peers.ledger_client import LedgerClient
    from rfq.ledger.block import proposer_for
    from rfq.queries import ContractsQuery, TradesQuery

    monkeypatch.setattr(node_module, "QUERY_SETTLE_S", 0.5)
    first = proposer_for(1, 0, network.genesis().authorities.initial)
    nodes = await start_authorities(network, bus_factory, ids=(first,))
    alone = nodes[first]
    client = await bus_factory("C1")
    await submit(client, [TxFactory(network).trade("not-final")])
    await wait_for(lambda: alone.speculating, what="the lone proposer executes its block")
    pending = alone.executor.pending
    assert pending is not None and "not-final" in pending.state.trades
    assert "not-final" not in alone.state.trades  # the final state is apart from it
    reg = await LedgerClient(await bus_factory("REG"), network.genesis()).start()
    # Each query is held until the proposal is undone (QUERY_SETTLE_S): a generous reply
    # timeout, so that a loaded machine's slow answer is not mistaken for no answer.
    contracts = await reg.query(ContractsQuery(), timeout=10)
    assert contracts.height == 0
    assert contracts.contracts == ()
    assert (await reg.query(TradesQuery(), timeout=10)).trades == ()
    assert alone.stats["stuck_proposal_undone"] >= 1
    await alone.stop()


async def test_every_contracts_reply_is_the_chain_at_the_height_it_names(
    nats_server, network, bus_factory
):
    """The regulator queries while trades are being decided: each reply holds exactly the
    contracts of the blocks up to its height, never those of a proposal in flight."""
    import asyncio

    import msgspec

    from peers.ledger_client import LedgerClient
    from rfq.ledger.tx import Transaction
    from rfq.messages import Accept
    from rfq.queries import ContractsQuery
    from rfq.signing import SignedMessage

    nodes = await start_authorities(network, bus_factory)
    factory = TxFactory(network)
    client = await bus_factory("C1")
    reg = await LedgerClient(await bus_factory("REG"), network.genesis()).start()

    async def trade_in_bursts() -> None:
        for burst in range(15):
            await submit(client, [factory.trade(f"q{burst}-{i}") for i in range(10)])
            await asyncio.sleep(0.15)

    feeder = asyncio.create_task(trade_in_bursts())
    all_final = committed(nodes.values(), 150)
    replies = []
    deadline = time.monotonic() + 120
    while not (feeder.done() and all_final()):
        assert time.monotonic() < deadline, "the 150 trades were not final everywhere in 120 s"
        replies.append(await reg.query(ContractsQuery()))
    await feeder

    opened_at: dict[str, int] = {}
    for block in nodes["CCP"].store.blocks(1):
        for raw in block.txs:
            signed = msgspec.msgpack.decode(raw, type=SignedMessage)
            tx = msgspec.msgpack.decode(signed.body, type=Transaction)
            if isinstance(tx, Accept):
                opened_at[tx.rfq_id] = block.height
    assert len(opened_at) == 150
    for reply in replies:
        expected = {cid for cid, height in opened_at.items() if height <= reply.height}
        assert {v.contract.id for v in reply.contracts} == expected, f"at {reply.height}"
    assert len({r.height for r in replies}) > 3, "the queries did not race the blocks"
    assert sum(n.stats["queries_held"] for n in nodes.values()) > 0
    for node in nodes.values():
        await node.stop()


async def test_queries_come_in_pages_with_a_total_and_query_all_reads_every_row(
    nats_server, network, bus_factory
):
    from peers.ledger_client import LedgerClient
    from rfq.queries import ContractsQuery, ContractsReply, TradesQuery, TradesReply

    nodes = await start_authorities(network, bus_factory)
    factory = TxFactory(network)
    reg = await LedgerClient(await bus_factory("REG"), network.genesis()).start()
    c1 = await bus_factory("C1")
    ids = [f"paged-{i}" for i in range(7)]
    for rfq_id in ids:
        await c1.nc.publish("otc.tx.C1", factory.trade(rfq_id, client="C1"))
    await wait_for(lambda: all(len(n.state.trades) == 7 for n in nodes.values()))
    first = await reg.query(ContractsQuery(limit=3))
    assert isinstance(first, ContractsReply)
    assert (len(first.contracts), first.total) == (3, 7) and first.next_cursor
    every = await reg.query_all(ContractsQuery(limit=3), ContractsReply)
    assert [v.contract.id for v in every.contracts] == sorted(ids)
    trades = await reg.query_all(TradesQuery(limit=2), TradesReply)
    assert sorted(t.rfq_id for t in trades.trades) == sorted(ids) and trades.total == 7
    heights = [t.height for t in trades.trades]
    assert heights == sorted(heights, reverse=True)  # newest first
    for node in nodes.values():
        await node.stop()
