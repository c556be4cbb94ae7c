"""A defaulted member cannot trade: the session refuses its quotes before anything is sent."""

from __future__ import annotations

import time

import pytest

from peers.counterparty import AcceptRefused, ClientSession
from peers.ledger_client import LedgerClient
from rfq.ledger.tx import CreditEventTx
from rfq.messages import Quote

from .chainkit import start_authorities, terms, wait_for

pytestmark = pytest.mark.integration


async def test_client_c1_sees_dealer_d3_defaulted_and_its_quote_is_not_tradable(
    nats_server, network, bus_factory
):
    nodes = await start_authorities(network, bus_factory)
    genesis = network.genesis()
    reg = await LedgerClient(await bus_factory("REG"), genesis).start()
    receipt = await reg.submit_and_wait(CreditEventTx("D3", "insolvency"), timeout=15)
    assert receipt.ok, receipt.reason
    await wait_for(lambda: all("D3" in n.state.standing for n in nodes.values()))
    session = await ClientSession(await bus_factory("C1"), genesis).start()
    await session.refresh_standing(max_age_s=0)
    assert session.standing == {"D3": "defaulted"}
    now = int(time.time() * 1000)
    quote = Quote("q1", "r1", "C1", "D3", terms(), 3200.0, now + 30_000, 0.1, 0.0)
    assert not session.tradable(quote)
    with pytest.raises(AcceptRefused, match="D3 is defaulted on chain") as refused:
        await session.accept(quote)
    assert refused.value.reason == "defaulted"
    assert session.accepted == {}
    good = Quote("q2", "r2", "C1", "D1", terms(), 3200.0, now + 30_000, 0.1, 0.0)
    assert session.tradable(good)
    for node in nodes.values():
        await node.stop()


async def test_a_dealer_declines_a_defaulted_client_and_stops_quoting_once_defaulted_itself(
    nats_server, network, bus_factory
):
    from peers.dealer import DealerBot
    from rfq.messages import Decline, Rfq

    nodes = await start_authorities(network, bus_factory)
    genesis = network.genesis()
    reg = await LedgerClient(await bus_factory("REG"), genesis).start()
    d1 = await DealerBot(await bus_factory("D1"), genesis).start()
    for party in ("C2", "D1"):
        receipt = await reg.submit_and_wait(CreditEventTx(party, "insolvency"), timeout=15)
        assert receipt.ok, receipt.reason
        await wait_for(lambda p=party: all(p in n.state.standing for n in nodes.values()))
        await d1.sync_from_chain()

        rfq = Rfq(
            id=f"C3-{party}",
            client="C2" if party == "C2" else "C3",
            terms=terms(),
            deadline_ms=int(time.time() * 1000) + 5000,
        )
        answer = await d1.handle_rfq(rfq)
        assert isinstance(answer, Decline) and answer.code == "defaulted", answer
        who = "the client (C2)" if party == "C2" else "this dealer (D1)"
        assert answer.text == f"{who} is defaulted on chain"
    await d1.close()
    for node in nodes.values():
        await node.stop()


class FlatPrice:
    """Quotes every RFQ at 3,400 with a 10% initial margin and no credit line."""

    def price(self, rfq, context):
        return context.quote(rfq, price=3400.0, initial_margin_rate=0.1)


async def test_a_dealer_declines_a_trade_whose_margin_the_client_cannot_carry(
    nats_server, network, bus_factory
):
    from peers.dealer import DealerBot
    from rfq.instruments import Terms
    from rfq.messages import Decline, Rfq

    nodes = await start_authorities(network, bus_factory)
    genesis = network.genesis()
    d1 = await DealerBot(await bus_factory("D1"), genesis, strategy=FlatPrice()).start()
    await d1.sync_from_chain()
    capital = genesis.member("C2").capital
    assert d1.headroom["C2"] == capital  # nothing in use, no guarantee
    small, large = terms(), terms()
    large = Terms(**{**{f: getattr(small, f) for f in small.__struct_fields__}, "quantity": 1e5})
    deadline = int(time.time() * 1000) + 5000
    fits = await d1.handle_rfq(Rfq(id="C2-small", client="C2", terms=small, deadline_ms=deadline))
    assert isinstance(fits, Quote), fits
    too_big = await d1.handle_rfq(Rfq(id="C2-big", client="C2", terms=large, deadline_ms=deadline))
    assert isinstance(too_big, Decline) and too_big.code == "margin_capacity"
    assert "34,000,000.00 beyond our line exceeds what the client can carry" in too_big.text
    await d1.close()
    for node in nodes.values():
        await node.stop()
