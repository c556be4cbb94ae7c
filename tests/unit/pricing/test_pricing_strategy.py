"""The default quoting model: hand-computed quotes, every decline reason, pricing properties.

Market on Monday 2 March 2026 (no fixing history, so vols are the catalog's: RB and HC 22 %):
RB2609 3200, RB2701 3230, HC2609 3350, TSBILLET 3050. Maturity 2 September 2026, 184 days
(before the September months' last trading day, 15 September).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Mapping
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rfq.instruments import CATALOG, Averaging, Leg, OptionTerms, Side, Template, Terms, Underlying
from rfq.pricing.black76 import black76
from rfq.pricing.credit import EPE_FACTOR, PFE_Z
from rfq.pricing.garch import GarchParams, VolSource, simulate_prices, vol_model
from rfq.pricing.limits import TradeLimits
from rfq.pricing.strategy import (
    Decision,
    DeclineCode,
    DeclineDecision,
    PricingContext,
    QuoteDecision,
    QuoteParams,
    decide,
)
from rfq.rating import Grade

TODAY = dt.date(2026, 3, 2)
MATURITY = dt.date(2026, 9, 2)
T = 184 / 365
PRICES = {"RB2609": 3200.0, "RB2701": 3230.0, "HC2609": 3350.0, "TSBILLET": 3050.0}
BBB = 65.0


def swap(side: Side = Side.BUY, **kw: Any) -> Terms:
    base = Terms(Template.PRICE_SWAP, (Leg("RB2609"),), side, 1000.0, TODAY, MATURITY)
    return msgspec.structs.replace(base, **kw)


def call(side: Side, strike: float = 3300.0) -> Terms:
    return swap(side, template=Template.EUROPEAN_OPTION, option=OptionTerms("call", strike))


def ctx(rating: float = BBB, **kw: Any) -> PricingContext:
    base = PricingContext(TODAY, PRICES, client_rating=rating, credit_limit=1e7)
    return msgspec.structs.replace(base, **kw)


def quote(
    terms: Terms, context: PricingContext, catalog: Mapping[str, Underlying] = CATALOG
) -> QuoteDecision:
    decision = decide(terms, context, catalog=catalog)
    assert isinstance(decision, QuoteDecision), decision
    return decision


def decline(terms: Terms, context: PricingContext) -> DeclineDecision:
    decision = decide(terms, context)
    assert isinstance(decision, DeclineDecision), decision
    return decision


# --- hand-computed quotes ----------------------------------------------------------------------

EPE = 3200 * 0.22 * math.sqrt(T) * EPE_FACTOR  # per tonne, about 199.4
CHARGE_BBB = 0.002 * 0.45 * EPE * T  # about 0.0905 per tonne
PFE = PFE_Z * 3200 * 0.22 * math.sqrt(T) * 1000  # about 822,000


def test_alice_a_bbb_client_buying_rebar_pays_fair_plus_spread_plus_credit_rounded_up() -> None:
    q = quote(swap(Side.BUY), ctx(credit_limit=1e6))
    assert q.fair_value == 3200.0
    assert q.half_spread == pytest.approx(3.2)  # 10 bp of 3200
    assert q.credit_charge == pytest.approx(CHARGE_BBB)
    assert q.credit_charge == pytest.approx(0.0905, abs=5e-4)
    assert q.price == 3204.0  # 3203.29 rounded up to RB's 1 CNY tick
    assert q.rounding == pytest.approx(3204.0 - (3200 + 3.2 + CHARGE_BBB))
    # Credit terms: BBB margin 10 % of 3204 x 1000; a line for 40 % of it; limit room plenty.
    assert q.grade == Grade.BBB
    assert q.initial_margin_rate == 0.10
    assert q.initial_margin == pytest.approx(320_400.0)
    assert q.credit_line == pytest.approx(0.4 * 320_400.0)
    assert q.exposure == pytest.approx(PFE - (320_400.0 - 0.4 * 320_400.0))
    assert q.ttl_s == 30.0


def test_bob_a_bbb_client_selling_rebar_receives_fair_minus_spread_minus_credit_rounded_down() -> (
    None
):
    q = quote(swap(Side.SELL), ctx())
    assert q.credit_charge == pytest.approx(CHARGE_BBB)
    assert q.price == 3196.0  # 3196.71 rounded down


def test_a_ccc_client_pays_visibly_more_than_a_aaa_client() -> None:
    aaa = quote(swap(Side.BUY), ctx(rating=95.0))
    ccc = quote(swap(Side.BUY), ctx(rating=20.0))
    assert ccc.credit_charge == pytest.approx(0.25 * 0.45 * EPE * T)  # about 11.3
    assert ccc.price == math.ceil(3200 + 3.2 + 0.25 * 0.45 * EPE * T)
    assert aaa.price == 3204.0
    assert ccc.price > aaa.price + 10


def test_a_dealer_long_rebar_skews_both_prices_down() -> None:
    long = ctx(inventory={"RB2609": 10_000.0}, params=QuoteParams(skew_per_unit=0.001))
    buy, sell = quote(swap(Side.BUY), long), quote(swap(Side.SELL), long)
    assert buy.skew == pytest.approx(-10.0)
    assert buy.price == math.ceil(3200 + 3.2 + CHARGE_BBB - 10)  # 3194
    assert sell.price == math.floor(3200 - 3.2 - CHARGE_BBB - 10)  # 3186


def test_the_spread_swap_is_charged_on_its_legs_and_quoted_around_150() -> None:
    t = Terms(
        Template.SPREAD_SWAP,
        (Leg("HC2609", 1.0), Leg("RB2609", -1.0)),
        Side.BUY,
        1000.0,
        TODAY,
        MATURITY,
    )
    q = quote(t, ctx())
    assert q.fair_value == 150.0
    assert q.half_spread == pytest.approx(1e-3 * (3350 + 3200))
    assert q.abs_vol_basis == "no_diversification"
    assert q.price == math.ceil(150 + q.half_spread + q.credit_charge)


def test_carol_buying_a_call_pays_premium_plus_spread_and_no_credit_charge() -> None:
    q = quote(call(Side.BUY), ctx())
    premium = black76("call", 3200.0, 3300.0, T, 0.22).price
    assert q.fair_value == pytest.approx(premium)
    assert q.credit_charge == 0.0
    assert q.initial_margin_rate == 0.0
    assert q.exposure == 0.0
    assert q.price == math.ceil(premium + 3.2)


def test_dave_writing_a_call_receives_premium_less_spread_and_a_credit_charge() -> None:
    q = quote(call(Side.SELL), ctx())
    premium = black76("call", 3200.0, 3300.0, T, 0.22).price
    assert q.credit_charge == pytest.approx(0.002 * 0.45 * premium * T)
    assert q.price == math.floor(premium - 3.2 - q.credit_charge)
    assert q.notional == 3300.0 * 1000  # margin on the strike
    assert q.initial_margin_rate == 0.10


def test_the_credit_line_is_cut_to_what_fits_under_erin_s_limit() -> None:
    # Exposure with the full margin posted is PFE - 320,400; the room is 600,000.
    q = quote(swap(Side.BUY), ctx(credit_limit=600_000.0))
    assert q.credit_line == pytest.approx(600_000.0 - (PFE - 320_400.0))
    assert q.credit_line < 0.4 * 320_400.0
    assert q.exposure == pytest.approx(600_000.0)


def test_collateral_frank_brings_lowers_his_charge_and_his_exposure() -> None:
    bare = quote(swap(Side.BUY), ctx(rating=20.0))
    backed = quote(swap(Side.BUY), ctx(rating=20.0, collateral=100_000.0, guarantee=50_000.0))
    assert backed.credit_charge == pytest.approx(0.25 * 0.45 * (1000 * EPE - 150_000) * T / 1000)
    assert backed.credit_charge < bare.credit_charge
    # CCC gets no credit line: the whole margin is posted and nets the exposure with the rest.
    assert backed.credit_line == 0.0
    assert bare.exposure == pytest.approx(PFE - bare.initial_margin)
    assert backed.exposure == pytest.approx(PFE - 150_000.0 - backed.initial_margin)


def test_a_decision_is_deterministic_and_travels_as_a_tagged_union() -> None:
    a, b = decide(call(Side.SELL), ctx()), decide(call(Side.SELL), ctx())
    assert a == b
    assert msgspec.json.decode(msgspec.json.encode(a), type=Decision) == a
    d = decide(swap(maturity=TODAY), ctx())
    assert msgspec.json.decode(msgspec.json.encode(d), type=Decision) == d


def test_with_two_years_of_fixings_judy_s_quotes_use_the_garch_vol() -> None:
    path = simulate_prices(GarchParams(2e-6, 0.08, 0.90), 500, start=3200.0, seed=9)
    history = {TODAY - dt.timedelta(days=500 - i): p for i, p in enumerate(path)}
    context = ctx(fixings={"RB2609": history})
    opt, lin = quote(call(Side.SELL), context), quote(swap(Side.SELL), context)
    model = vol_model(path, fallback_vol=0.22)
    assert model.source == VolSource.GARCH
    assert opt.vol is not None
    assert opt.vol.source == VolSource.GARCH
    assert opt.vol.vol == pytest.approx(model.forecast(round(184 * 252 / 365)).vol)
    assert lin.abs_vol_basis == "garch"
    assert lin.abs_vol == pytest.approx(3200.0 * opt.vol.vol)
    # A cached model gives the same decision without refitting.
    assert decide(
        call(Side.SELL), ctx(fixings={"RB2609": history}, vol_models={"RB2609": model})
    ) == (decide(call(Side.SELL), context))


# --- declines ----------------------------------------------------------------------------------


def test_grace_s_rfq_maturing_before_its_trade_date_is_declined_as_bad_terms() -> None:
    d = decline(swap(maturity=TODAY - dt.timedelta(days=1)), ctx())
    assert d.code == DeclineCode.BAD_TERMS
    assert "maturity" in d.text


def test_an_rfq_that_matured_by_today_is_declined_as_bad_terms() -> None:
    stale = swap(trade_date=dt.date(2026, 1, 2), maturity=dt.date(2026, 3, 1))
    assert decline(stale, ctx()).code == DeclineCode.BAD_TERMS


def test_an_unknown_underlying_or_negative_collateral_is_declined_as_bad_terms() -> None:
    assert decline(swap(legs=(Leg("XX9999"),)), ctx()).code == DeclineCode.BAD_TERMS
    assert decline(swap(), ctx(collateral=-1.0)).code == DeclineCode.BAD_TERMS


def test_a_dealer_that_does_not_write_options_declines_them_as_unsupported() -> None:
    linear_only = QuoteParams(templates=frozenset({Template.PRICE_SWAP, Template.SPREAD_SWAP}))
    assert decline(call(Side.BUY), ctx(params=linear_only)).code == DeclineCode.UNSUPPORTED


def test_an_average_over_a_weekend_with_no_fixing_is_unsupported() -> None:
    t = swap(
        template=Template.AVERAGE_PRICE_SWAP,
        averaging=Averaging(dt.date(2026, 3, 7), dt.date(2026, 3, 8)),
    )
    assert decline(t, ctx()).code == DeclineCode.UNSUPPORTED


def test_heidi_s_rfq_on_an_underlying_without_any_price_is_declined_as_no_price() -> None:
    d = decline(swap(legs=(Leg("PP2609"),)), ctx())
    assert d.code == DeclineCode.NO_PRICE
    assert "PP2609" in d.text


def test_a_client_below_the_dealer_s_minimum_grade_is_declined_for_rating() -> None:
    d = decline(swap(), ctx(rating=45.0, params=QuoteParams(min_grade=Grade.BBB)))
    assert d.code == DeclineCode.RATING
    assert decide(swap(), ctx(rating=60.0, params=QuoteParams(min_grade=Grade.BBB))).__class__ is (
        QuoteDecision
    )


def test_ivan_whose_trade_would_breach_his_credit_limit_is_declined() -> None:
    d = decline(swap(), ctx(exposure=900_000.0, credit_limit=1_000_000.0))
    assert d.code == DeclineCode.CREDIT_LIMIT


def test_ivan_over_his_limit_can_still_buy_an_option_which_adds_no_exposure() -> None:
    q = quote(call(Side.BUY), ctx(exposure=2e6, credit_limit=1e6))
    assert q.exposure == 0.0
    assert q.credit_line == 0.0


# --- properties --------------------------------------------------------------------------------

# The properties are of the pricing model, over tenors up to four years: futures that never
# expire and limits that never bind (listing and limits have their own tests).
NEVER_EXPIRING = {k: msgspec.structs.replace(u, last_trading_day=None) for k, u in CATALOG.items()}
UNLIMITED = TradeLimits(max_notional=math.inf, max_tenor_days=10_000)


def linear_spread(side: Side) -> Terms:
    legs = (Leg("HC2609", 1.0), Leg("RB2609", -1.0))
    return Terms(Template.SPREAD_SWAP, legs, side, 1000.0, TODAY, MATURITY)


BUILDERS: dict[str, Callable[[Side], Terms]] = {
    "price_swap": lambda side: swap(side),
    "spot_swap": lambda side: swap(side, template=Template.SPOT_SWAP, legs=(Leg("TSBILLET"),)),
    "spread": linear_spread,
    "call": lambda side: call(side),
    "put": lambda side: swap(
        side, template=Template.EUROPEAN_OPTION, option=OptionTerms("put", 3100.0)
    ),
}

kinds = st.sampled_from(sorted(BUILDERS))
sides = st.sampled_from([Side.BUY, Side.SELL])
scores = st.floats(0.0, 100.0)
quantities = st.floats(1.0, 1e5)
days = st.integers(1, 1500)
money = st.floats(0.0, 1e8)


def build(kind: str, side: Side, qty: float, tenor_days: int) -> Terms:
    t = BUILDERS[kind](side)
    return msgspec.structs.replace(t, quantity=qty, maturity=TODAY + dt.timedelta(days=tenor_days))


def client_pays_more(side: Side, a: float, b: float) -> bool:
    """Whether price ``a`` is at least as bad as ``b`` for a client on ``side``."""
    return a >= b if side == Side.BUY else a <= b


@settings(max_examples=300)
@given(kind=kinds, side=sides, r=st.tuples(scores, scores), qty=quantities, n=days, c=money)
def test_a_worse_rating_never_gives_the_client_a_better_price(
    kind: str, side: Side, r: tuple[float, float], qty: float, n: int, c: float
) -> None:
    worse, better = sorted(r)
    t = build(kind, side, qty, n)
    for params in (
        QuoteParams(limits=UNLIMITED),
        QuoteParams(round_to_tick=False, skew_per_unit=0.01, limits=UNLIMITED),
        QuoteParams(tighten_bps_per_grade=2.0, limits=UNLIMITED),
    ):
        context = ctx(collateral=c, credit_limit=math.inf, inventory={"RB2609": 500.0})
        qw = quote(
            t, msgspec.structs.replace(context, client_rating=worse, params=params), NEVER_EXPIRING
        )
        qb = quote(
            t, msgspec.structs.replace(context, client_rating=better, params=params), NEVER_EXPIRING
        )
        assert client_pays_more(side, qw.price, qb.price)
        assert qw.credit_charge >= qb.credit_charge


@settings(max_examples=200)
@given(kind=kinds, side=sides, s=scores, qty=quantities, n=st.tuples(days, days), c=money)
def test_a_longer_tenor_never_gives_a_smaller_credit_charge(
    kind: str, side: Side, s: float, qty: float, n: tuple[int, int], c: float
) -> None:
    short, long = sorted(n)
    context = ctx(
        rating=s, collateral=c, credit_limit=math.inf, params=QuoteParams(limits=UNLIMITED)
    )
    qs = quote(build(kind, side, qty, short), context, NEVER_EXPIRING)
    ql = quote(build(kind, side, qty, long), context, NEVER_EXPIRING)
    assert ql.credit_charge * qty >= qs.credit_charge * qty - 1e-9


@settings(max_examples=200)
@given(
    kind=kinds,
    side=sides,
    s=scores,
    qty=quantities,
    n=days,
    c=st.tuples(money, money),
    g=st.tuples(money, money),
)
def test_more_collateral_or_a_guarantee_never_worsens_the_price_or_raises_the_charge(
    kind: str,
    side: Side,
    s: float,
    qty: float,
    n: int,
    c: tuple[float, float],
    g: tuple[float, float],
) -> None:
    (c_less, c_more), (g_less, g_more) = sorted(c), sorted(g)
    t = build(kind, side, qty, n)
    base = ctx(rating=s, credit_limit=math.inf, params=QuoteParams(limits=UNLIMITED))
    less = quote(
        t, msgspec.structs.replace(base, collateral=c_less, guarantee=g_less), NEVER_EXPIRING
    )
    more = quote(
        t, msgspec.structs.replace(base, collateral=c_more, guarantee=g_more), NEVER_EXPIRING
    )
    assert more.credit_charge <= less.credit_charge
    assert client_pays_more(side, less.price, more.price)
