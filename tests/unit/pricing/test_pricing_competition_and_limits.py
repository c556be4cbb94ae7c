"""Dealers compete (each its own default profile) and refuse outsized risk (per-trade limits).

The market on Monday 4 January 2027: RB2705 3484 (the rebar price that three identical dealers
all quoted before), CSI 300 4600, TSBILLET 3050. Alice (BBB) asks for 1000 t.
"""

from __future__ import annotations

import datetime as dt
import math

import msgspec
import pytest

from rfq.errors import ValidationError
from rfq.instruments import Leg, OptionTerms, Side, Template, Terms
from rfq.pricing.limits import (
    DEFAULT_TRADE_LIMITS,
    Limit,
    LimitBreach,
    TradeLimits,
    check_trade_limits,
    gross_notional,
)
from rfq.pricing.strategy import (
    DEFAULT_CREDIT_LIMIT,
    DeclineCode,
    DeclineDecision,
    PricingContext,
    QuoteDecision,
    QuoteParams,
    dealer_profile,
    decide,
)

TODAY = dt.date(2027, 1, 4)
PRICES = {"RB2705": 3484.0, "CSI300": 4600.0, "TSBILLET": 3050.0}
BBB, AAA = 65.0, 95.0


def swap(quantity: float = 1000.0, days: int = 90, underlying: str = "RB2705") -> Terms:
    maturity = TODAY + dt.timedelta(days=days)
    return Terms(Template.PRICE_SWAP, (Leg(underlying),), Side.BUY, quantity, TODAY, maturity)


def ctx(params: QuoteParams, rating: float = BBB) -> PricingContext:
    return PricingContext(TODAY, PRICES, client_rating=rating, credit_limit=1e12, params=params)


def price(terms: Terms, params: QuoteParams, rating: float = BBB) -> float:
    decision = decide(terms, ctx(params, rating))
    assert isinstance(decision, QuoteDecision), decision
    return decision.price


DEFAULT = QuoteParams()


def declined(terms: Terms, params: QuoteParams = DEFAULT) -> DeclineDecision:
    decision = decide(terms, ctx(params))
    assert isinstance(decision, DeclineDecision), decision
    return decision


# --- competition -------------------------------------------------------------------------------


def test_three_dealers_quote_three_different_prices_for_one_rfq() -> None:
    prices = {d: price(swap(), dealer_profile(d).params) for d in ("D1", "D2", "D3")}
    assert prices == {"D1": 3489.0, "D2": 3487.0, "D3": 3491.0}


def test_a_dealers_profile_is_the_same_on_every_run_and_differs_from_its_neighbours() -> None:
    assert dealer_profile("D1") == dealer_profile("D1")
    spreads = [dealer_profile(f"D{n}").params.half_spread_bps for n in range(1, 6)]
    assert len(set(spreads)) == 5
    assert all(4.0 <= s <= 20.0 for s in spreads)
    assert dealer_profile("BigBank").params != dealer_profile("SmallBank").params


def test_appetite_scales_the_credit_limit_and_the_per_trade_limits() -> None:
    for dealer in ("D1", "D2", "D3", "BigBank"):
        p = dealer_profile(dealer)
        assert 0.5 <= p.appetite <= 1.0
        assert p.credit_limit == pytest.approx(DEFAULT_CREDIT_LIMIT * p.appetite, rel=0.01)
        limits = p.params.limits
        assert limits.max_notional == pytest.approx(
            DEFAULT_TRADE_LIMITS.max_notional * p.appetite, rel=0.01
        )
        assert 730 <= limits.max_tenor_days <= DEFAULT_TRADE_LIMITS.max_tenor_days
        assert limits.max_notional <= DEFAULT_TRADE_LIMITS.max_notional


def test_a_better_grade_gets_a_tighter_spread_from_a_dealer_that_tightens() -> None:
    tightening = QuoteParams(half_spread_bps=10.0, tighten_bps_per_grade=2.0)
    bbb = decide(swap(), ctx(tightening, BBB))
    aaa = decide(swap(), ctx(tightening, AAA))
    assert isinstance(bbb, QuoteDecision) and isinstance(aaa, QuoteDecision)
    assert bbb.half_spread == pytest.approx(10e-4 * 3484)
    assert aaa.half_spread == pytest.approx(4e-4 * 3484)  # three grades above BBB
    assert aaa.price < bbb.price


def test_inventory_skew_moves_a_dealers_price() -> None:
    params = dealer_profile("D1").params
    flat = decide(swap(), ctx(params))
    long = decide(swap(), msgspec.structs.replace(ctx(params), inventory={"RB2705": 50_000.0}))
    assert isinstance(flat, QuoteDecision) and isinstance(long, QuoteDecision)
    assert long.skew == pytest.approx(-params.skew_per_unit * 50_000.0)
    assert long.price < flat.price


# --- limits ------------------------------------------------------------------------------------


def test_an_option_for_a_trillion_tonnes_is_declined_for_the_notional_limit() -> None:
    option = msgspec.structs.replace(
        swap(quantity=1e12),
        template=Template.EUROPEAN_OPTION,
        option=OptionTerms("call", 3500.0),
    )
    for params in (DEFAULT, *(dealer_profile(d).params for d in ("D1", "D2", "D3"))):
        d = declined(option, params)
        assert d.code == DeclineCode.NOTIONAL_LIMIT
        assert "notional 3,484,000,000,000,000 exceeds the limit" in d.text


def test_a_99_year_swap_is_declined_for_the_tenor_limit() -> None:
    d = declined(swap(days=99 * 365, underlying="TSBILLET"))
    assert d.code == DeclineCode.TENOR_LIMIT
    assert "tenor 36135 days exceeds the limit of 1095 days" in d.text


def test_a_dealers_own_limits_bind_below_the_defaults() -> None:
    params = QuoteParams(limits=TradeLimits(max_notional=1e6, max_tenor_days=30))
    assert declined(swap(quantity=1000, days=30), params).code == DeclineCode.NOTIONAL_LIMIT
    assert declined(swap(quantity=100), params).code == DeclineCode.TENOR_LIMIT  # 90 days
    assert price(swap(quantity=100, days=30), params) > 3484


def test_the_notional_is_gross_on_the_legs_and_uses_reference_levels_without_a_price() -> None:
    spread = Terms(
        Template.SPREAD_SWAP,
        (Leg("HC2705", 1.0), Leg("RB2705", -1.0)),
        Side.BUY,
        1000.0,
        TODAY,
        TODAY + dt.timedelta(days=60),
    )
    # HC2705 has no price yet: its reference level, 3300.
    assert gross_notional(spread, PRICES) == pytest.approx(1000 * (3300 + 3484))
    index = Terms(
        Template.INDEX_SWAP,
        (Leg("CSI300"),),
        Side.SELL,
        2.0,
        TODAY,
        TODAY + dt.timedelta(days=60),
        multiplier=300.0,
    )
    assert gross_notional(index, PRICES) == pytest.approx(2 * 300 * 4600)


def test_the_ticket_check_refuses_what_every_default_dealer_would_decline() -> None:
    with pytest.raises(LimitBreach) as caught:
        check_trade_limits(swap(quantity=1e12), today=TODAY, prices=PRICES)
    assert caught.value.limit == Limit.NOTIONAL
    assert caught.value.where == "quantity"
    assert isinstance(caught.value, ValidationError)
    with pytest.raises(LimitBreach) as caught:
        check_trade_limits(swap(days=2000, underlying="TSBILLET"), today=TODAY, prices=PRICES)
    assert caught.value.limit == Limit.TENOR
    assert caught.value.where == "maturity"
    check_trade_limits(swap(), today=TODAY, prices=PRICES)  # an ordinary trade passes


def test_an_infinite_quantity_breaks_the_notional_limit() -> None:
    with pytest.raises(LimitBreach):
        check_trade_limits(swap(quantity=math.inf), today=TODAY, prices=PRICES)
