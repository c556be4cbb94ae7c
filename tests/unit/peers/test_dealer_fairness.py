"""Fair admission at a dealer: one small queue per client, priced round-robin."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest

from bus.client import Bus
from peers.dealer import RFQ_QUEUE_PER_CLIENT, DealerBot
from peers.netdir import create_network
from rfq.clock import utc_today
from rfq.identity import Directory
from rfq.instruments import Leg, Side, Template, Terms, listed_futures
from rfq.messages import Cancel, Rfq


def rfq(client: str, i: int) -> Rfq:
    today = utc_today()
    terms = Terms(
        Template.PRICE_SWAP,
        (Leg(listed_futures("RB", today)[-1].id),),
        Side.BUY,
        100,
        today,
        today + dt.timedelta(days=90),
    )
    return Rfq(id=f"{client}-{i}", client=client, terms=terms, deadline_ms=2**62)


@pytest.fixture(scope="module")
def net(tmp_path_factory):
    return create_network(tmp_path_factory.mktemp("fair") / "net")


@pytest.fixture
def bot(net) -> DealerBot:
    genesis = net.genesis()
    directory = Directory(genesis.members)
    bus = Bus(net.identity("D1"), directory, genesis.chain_id, ["nats://127.0.0.1:1"])
    return DealerBot(bus, genesis, attach_market=False)


async def test_a_client_flooding_rfqs_is_served_in_turn_and_its_excess_dropped(bot) -> None:
    priced: list[str] = []

    async def handle(r: Rfq) -> None:
        priced.append(r.id)
        await asyncio.sleep(0)

    bot.handle_rfq = handle  # type: ignore[method-assign]
    for i in range(100):
        bot._enqueue(rfq("C1", i))
    bot._enqueue(rfq("C2", 0))
    bot._enqueue(rfq("C3", 0))
    assert bot.queued == RFQ_QUEUE_PER_CLIENT + 2
    assert bot.stats["rate_limited"] == 100 - RFQ_QUEUE_PER_CLIENT
    pricer = asyncio.create_task(bot._price_in_turn())
    try:
        while bot.queued:
            await asyncio.sleep(0)
    finally:
        pricer.cancel()
    assert priced[:3] == ["C1-0", "C2-0", "C3-0"], "one turn each, the flood's first"
    assert priced[3:] == [f"C1-{i}" for i in range(1, RFQ_QUEUE_PER_CLIENT)]


async def test_the_cancels_a_dealer_remembers_are_bounded(bot, monkeypatch) -> None:
    monkeypatch.setattr("peers.dealer.SEEN_RFQS_KEPT", 10)

    class Seen:
        def __init__(self, payload: Cancel) -> None:
            self.payload = payload
            self.sender = payload.client

    for i in range(50):
        await bot._on_rfq(Seen(Cancel(rfq_id=f"C1-{i}", client="C1")), None)  # type: ignore[arg-type]
    assert len(bot.cancelled) == 10 and "C1-49" in bot.cancelled and "C1-0" not in bot.cancelled
