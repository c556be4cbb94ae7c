"""The oracle publishes what is listed: an expired month stops, the next one starts on the curve.

RB2701's last trading day is Friday 15 January 2027; the next business day, Monday the 18th,
RB2801 is listed in its place.
"""

from __future__ import annotations

import datetime as dt
import math

import pytest

from peers.market import MarketData
from peers.oracle import CARRY_PER_MONTH, Simulator
from rfq.instruments import listed_underlyings
from rfq.messages import Price


def steps(sim: Simulator, n: int) -> list[list[Price]]:
    """``n`` intraday steps (with one tick a day, ``n`` days)."""
    return [list(sim.ticks()) for _ in range(n)]


def test_an_expired_month_stops_and_the_newly_listed_one_starts_publishing() -> None:
    sim = Simulator(start=dt.date(2027, 1, 14), seed=5, ticks_per_day=1, history_days=0)
    thursday, friday, monday = steps(sim, 3)
    assert {p.date for p in friday} == {dt.date(2027, 1, 15)}
    assert "RB2701" in {p.underlying for p in friday}
    assert "RB2801" not in {p.underlying for p in friday}
    assert {p.date for p in monday} == {dt.date(2027, 1, 18)}
    published = {p.underlying for p in monday}
    assert "RB2701" not in published and "RB2801" in published
    assert published == set(listed_underlyings(dt.date(2027, 1, 18)))
    assert len(thursday) == len(monday)


def test_a_newly_listed_month_continues_the_curve_of_its_root() -> None:
    sim = Simulator(start=dt.date(2027, 1, 15), seed=5, ticks_per_day=2, history_days=0)
    steps(sim, 2)  # Friday's two ticks; the close rolls the listing for Monday
    assert sim.date == dt.date(2027, 1, 18)
    level = dict(zip(sim.ids, (math.exp(x) for x in sim.log_prices), strict=True))
    for root in ("RB", "HC", "PP", "Y", "C", "SC"):
        assert f"{root}2701" not in level
        assert level[f"{root}2801"] == pytest.approx(level[f"{root}2709"] * (1 + CARRY_PER_MONTH))
    assert sim.history["RB2801"] == []  # no made-up past for a new month
    assert sim.history["RB2701"][-1][0] == dt.date(2027, 1, 15)  # its final close is kept


def test_at_the_start_the_listed_months_sit_on_a_carry_curve() -> None:
    sim = Simulator(start=dt.date(2027, 1, 4), seed=1, history_days=0)
    level = dict(zip(sim.ids, (math.exp(x) for x in sim.log_prices), strict=True))
    assert sim.ids == list(listed_underlyings(dt.date(2027, 1, 4)))
    assert level["RB2701"] == pytest.approx(3150.0)
    assert level["RB2705"] == pytest.approx(3150.0 * 1.01)
    assert level["RB2709"] == pytest.approx(3150.0 * 1.02)


def test_the_market_watch_lists_live_months_only_even_with_an_expired_months_last_price() -> None:
    market = MarketData()
    market.on_price(Price("RB2701", 3200.0, dt.date(2027, 1, 15), 1, close=True))
    assert "RB2701" in market.listed()
    market.on_price(Price("RB2705", 3230.0, dt.date(2027, 1, 18), 2))
    listed = market.listed()
    assert "RB2701" not in listed and "RB2801" in listed
    assert market.latest["RB2701"].price == 3200.0  # kept: contracts settle on it
