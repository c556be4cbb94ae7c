"""The market's rules over a real nats-server: dealers compete, expired months do not trade,
deadlines stay within 1 to 300 seconds.

The oracle simulates from Thursday 14 January 2027: RB2701 trades until Friday the 15th, its
last trading day; dealers D1-D3 run the default strategy with their own profiles (as under
``botc up``), client C1 asks.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from dataclasses import dataclass

import pytest

from peers.counterparty import ClientSession
from peers.dealer import DealerBot, DefaultStrategy
from peers.oracle import OracleService, Simulator
from rfq.errors import ValidationError
from rfq.instruments import Leg, Side, Template, Terms
from rfq.messages import Decline, Quote, Rfq
from rfq.pricing.strategy import dealer_profile

pytestmark = pytest.mark.integration

START = dt.date(2027, 1, 14)


def swap(underlying: str, today: dt.date, days: int = 1) -> Terms:
    return Terms(
        Template.PRICE_SWAP,
        (Leg(underlying),),
        Side.BUY,
        1000.0,
        today,
        today + dt.timedelta(days=days),
    )


@dataclass
class Market:
    sim: Simulator
    oracle: OracleService
    dealers: dict[str, DealerBot]
    client: ClientSession

    async def publish_day(self) -> dt.date:
        """One simulated business day; returns the date published."""
        date = self.sim.date
        for _ in range(self.sim.ticks_per_day):
            for price in self.sim.ticks():
                await self.oracle.publish(price)
        await self.oracle.bus.flush()
        sessions = [d.market for d in self.dealers.values()] + [self.client.market]
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not all(m.today == date for m in sessions):
            await asyncio.sleep(0.02)
        assert all(m.today == date for m in sessions)
        return date


@pytest.fixture
async def market(nats_server, bus_factory, network) -> Market:
    genesis = network.genesis()
    sim = Simulator(start=START, seed=7, ticks_per_day=1)
    oracle = OracleService(await bus_factory("ORACLE"))
    oracle.history = {k: list(v) for k, v in sim.history.items()}
    await oracle.start()
    dealers = {}
    for dealer_id in ("D1", "D2", "D3"):
        profile = dealer_profile(dealer_id)
        dealers[dealer_id] = await DealerBot(
            await bus_factory(dealer_id),
            genesis,
            strategy=DefaultStrategy(profile.params),
            credit_limit=profile.credit_limit,
        ).start()
    client = await ClientSession(await bus_factory("C1"), genesis).start()
    await client.market.attach(client.bus)
    m = Market(sim, oracle, dealers, client)
    await m.publish_day()
    return m


async def test_three_dealers_with_their_own_profiles_quote_three_prices_for_one_rfq(market):
    rfq = await market.client.send_rfq(swap("RB2705", START, days=90), deadline_s=5)
    answers = await rfq.collect()
    assert all(isinstance(a, Quote) for a in answers)
    prices = {a.dealer: a.price for a in answers if isinstance(a, Quote)}
    assert set(prices) == {"D1", "D2", "D3"}
    assert len(set(prices.values())) == 3, prices


async def test_an_expired_month_is_no_longer_published_or_quoted(market):
    friday = await market.publish_day()
    assert friday == dt.date(2027, 1, 15)
    assert "RB2701" in market.client.market.listed()
    monday = await market.publish_day()
    assert monday == dt.date(2027, 1, 18)
    assert "RB2701" not in market.client.market.listed()
    assert "RB2801" in market.client.market.latest  # the newly listed month has a price
    assert market.client.market.latest["RB2701"].date == friday  # its last price is Friday's
    # The client refuses to send it...
    with pytest.raises(ValidationError, match="RB2701 expired") as refused:
        await market.client.send_rfq(swap("RB2701", monday))
    assert refused.value.where == "legs[0].underlying"
    # ...and a dealer that gets one anyway declines it with the reason.
    sneaky = Rfq(
        id="C1-sneaky",
        client="C1",
        terms=swap("RB2701", monday),
        deadline_ms=int(time.time() * 1000) + 5000,
    )
    answer = await market.dealers["D1"].handle_rfq(sneaky)
    assert isinstance(answer, Decline)
    assert answer.code == "bad_terms"
    assert "RB2701 expired: its last trading day was 2027-01-15" in answer.text
    # The new month trades.
    rfq = await market.client.send_rfq(swap("RB2801", monday, days=30), deadline_s=5)
    assert all(isinstance(a, Quote) for a in await rfq.collect())


@pytest.mark.parametrize("deadline_s", [0.01, 0.999, 300.5, 3600.0, float("nan"), float("inf")])
async def test_a_deadline_outside_1_to_300_seconds_is_refused_before_sending(market, deadline_s):
    before = market.client.bus.outbox.last_nonce
    with pytest.raises(ValidationError, match="1 to 300 seconds") as refused:
        await market.client.send_rfq(swap("RB2705", START, days=30), deadline_s=deadline_s)
    assert refused.value.where == "deadline"
    assert market.client.bus.outbox.last_nonce == before


@pytest.mark.parametrize(
    ("flag", "value", "problem"),
    [
        ("--half-spread-bps", "-1", "--half-spread-bps must be a number >= 0"),
        ("--skew-per-unit", "nan", "--skew-per-unit must be a number >= 0"),
        ("--max-notional", "0", "--max-notional must be > 0"),
        ("--max-tenor-days", "0", "--max-tenor-days must be at least 1"),
    ],
)
def test_bad_dealer_pricing_flags_exit_2_naming_the_flag(network, capsys, flag, value, problem):
    from peers.cli import main

    assert main(["dealer", "--net", str(network.path), "--id", "D1", flag, value]) == 2
    err = capsys.readouterr().err
    assert problem in err
    assert "Traceback" not in err
