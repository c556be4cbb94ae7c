"""Fair value per template, checked against numbers computed by hand.

The market on Monday 2 March 2026: RB2605 3200, RB2609 3230, HC2605 3350 (futures, their own
forwards), TSBILLET 3050 and CSI300 4600 (spot / index, carried). Maturity 2 September 2026 is
184 days away.
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

import msgspec
import pytest

from rfq.instruments import Averaging, Leg, OptionTerms, Side, Template, Terms
from rfq.pricing.black76 import black76
from rfq.pricing.errors import MissingPrice, Unsupported
from rfq.pricing.fair_value import FixingHistory, fair_value, fixing_dates
from rfq.pricing.garch import GarchParams, VolSource, simulate_prices, vol_model

TODAY = dt.date(2026, 3, 2)  # a Monday
MATURITY = dt.date(2026, 9, 2)
T = 184 / 365
PRICES = {
    "RB2605": 3200.0,
    "RB2609": 3230.0,
    "HC2605": 3350.0,
    "TSBILLET": 3050.0,
    "CSI300": 4600.0,
}


def terms(template: Template, *legs: Leg, **kw: Any) -> Terms:
    base = Terms(template, legs, Side.BUY, 1000.0, TODAY, MATURITY)
    return msgspec.structs.replace(base, **kw)


def value(t: Terms, **kw: Any) -> float:
    return fair_value(t, today=TODAY, prices=PRICES, **kw).value


def test_a_price_swap_on_rebar_may_is_fair_at_the_future_s_latest_price() -> None:
    assert value(terms(Template.PRICE_SWAP, Leg("RB2605"))) == 3200.0


def test_a_forward_on_a_future_is_flat_and_on_spot_is_carried() -> None:
    assert value(terms(Template.FORWARD, Leg("RB2605")), carry_rate=0.05) == 3200.0
    assert value(terms(Template.FORWARD, Leg("TSBILLET")), carry_rate=0.03) == pytest.approx(
        3050.0 * math.exp(0.03 * 184 / 365)
    )


def test_a_spot_swap_on_tangshan_billet_carries_spot_to_maturity() -> None:
    t = terms(Template.SPOT_SWAP, Leg("TSBILLET"))
    assert value(t) == 3050.0
    assert value(t, carry_rate=0.05) == pytest.approx(3050.0 * math.exp(0.05 * 184 / 365))


def test_an_average_price_swap_uses_the_fixings_already_in_and_the_forward_for_the_rest() -> None:
    # Window Mon 23 Feb .. Fri 6 Mar; fixed: 23-27 Feb and today; to come: 3-6 Mar at 3200.
    window = Averaging(dt.date(2026, 2, 23), dt.date(2026, 3, 6))
    history: dict[dt.date, float] = {
        dt.date(2026, 2, 20): 9999.0,  # before the window: ignored
        dt.date(2026, 2, 23): 3100.0,
        dt.date(2026, 2, 24): 3110.0,
        dt.date(2026, 2, 25): 3120.0,
        dt.date(2026, 2, 26): 3130.0,
        dt.date(2026, 2, 27): 3140.0,
        TODAY: 3190.0,
    }
    t = terms(Template.AVERAGE_PRICE_SWAP, Leg("RB2605"), averaging=window)
    fv = fair_value(t, today=TODAY, prices=PRICES, fixings={"RB2605": history})
    assert fv.value == pytest.approx((3100 + 3110 + 3120 + 3130 + 3140 + 3190 + 4 * 3200) / 10)
    assert fv.value == pytest.approx(3159.0)
    assert (fv.fixed_dates, fv.forward_dates) == (6, 4)
    # Today's fixing not yet published: today counts at the forward.
    del history[TODAY]
    assert value(t, fixings={"RB2605": history}) == pytest.approx(3160.0)
    # A past weekday without a fixing (a holiday) is not in the average.
    del history[dt.date(2026, 2, 25)]
    assert value(t, fixings={"RB2605": history}) == pytest.approx(
        (3100 + 3110 + 3130 + 3140 + 5 * 3200) / 9
    )


def test_an_average_price_swap_on_spot_carries_spot_to_each_future_fixing_date() -> None:
    window = Averaging(dt.date(2026, 3, 9), dt.date(2026, 3, 15))  # Mon..Sun: five weekdays
    t = terms(Template.AVERAGE_PRICE_SWAP, Leg("TSBILLET"), averaging=window)
    expected = sum(3050.0 * math.exp(0.0365 * d / 365) for d in range(7, 12)) / 5
    assert value(t, carry_rate=0.0365) == pytest.approx(expected)
    assert value(t, carry_rate=0.0365, include_weekends=True) == pytest.approx(
        sum(3050.0 * math.exp(0.0365 * d / 365) for d in range(7, 14)) / 7
    )


def test_a_window_with_no_fixing_date_cannot_be_priced() -> None:
    weekend = Averaging(dt.date(2026, 3, 7), dt.date(2026, 3, 8))
    with pytest.raises(Unsupported):
        value(terms(Template.AVERAGE_PRICE_SWAP, Leg("RB2605"), averaging=weekend))


def test_the_hc_minus_rb_spread_is_the_difference_of_the_legs() -> None:
    t = terms(Template.SPREAD_SWAP, Leg("HC2605", 1.0), Leg("RB2605", -1.0))
    assert value(t) == 150.0


def test_a_rebar_calendar_spread_is_september_minus_may() -> None:
    t = terms(Template.CALENDAR_SPREAD, Leg("RB2609", 1.0), Leg("RB2605", -1.0))
    assert value(t) == 30.0


def test_an_index_swap_on_a_weighted_basket_is_the_weighted_sum_of_forwards() -> None:
    basket = terms(Template.INDEX_SWAP, Leg("RB2605", 0.6), Leg("HC2605", 0.4))
    assert value(basket) == pytest.approx(0.6 * 3200 + 0.4 * 3350)
    index = terms(Template.INDEX_SWAP, Leg("CSI300"), multiplier=300.0)
    assert value(index, carry_rate=0.02) == pytest.approx(4600 * math.exp(0.02 * 184 / 365))


def test_an_option_without_history_is_black76_at_the_catalog_vol() -> None:
    t = terms(Template.EUROPEAN_OPTION, Leg("RB2605"), option=OptionTerms("call", 3300.0))
    fv = fair_value(t, today=TODAY, prices=PRICES, discount_rate=0.02)
    assert fv.vol is not None
    assert fv.vol.source == VolSource.FALLBACK
    assert fv.vol.vol == 0.22  # RB's catalog vol
    assert fv.value == pytest.approx(black76("call", 3200.0, 3300.0, T, 0.22, 0.02).price)
    assert fv.discount_factor == pytest.approx(math.exp(-0.02 * T))


def test_an_option_with_a_long_history_uses_the_garch_vol_of_that_history() -> None:
    path = simulate_prices(GarchParams(2e-6, 0.08, 0.90), 600, start=3200.0, seed=11)
    history: FixingHistory = {TODAY - dt.timedelta(days=600 - i): p for i, p in enumerate(path)}
    t = terms(Template.EUROPEAN_OPTION, Leg("RB2605"), option=OptionTerms("put", 3100.0))
    fv = fair_value(t, today=TODAY, prices=PRICES, fixings={"RB2605": history})
    model = vol_model(list(history.values()), fallback_vol=0.22)
    assert fv.vol is not None
    assert fv.vol.source == VolSource.GARCH
    assert fv.vol.vol == pytest.approx(model.forecast(round(184 * 252 / 365)).vol)
    assert fv.value == pytest.approx(black76("put", 3200.0, 3100.0, T, fv.vol.vol).price)


def test_a_cached_vol_model_is_used_instead_of_refitting() -> None:
    model = vol_model([3200.0 * (1 + 0.01 * (i % 2)) for i in range(50)], fallback_vol=0.22)
    t = terms(Template.EUROPEAN_OPTION, Leg("RB2605"), option=OptionTerms("call", 3200.0))
    fv = fair_value(t, today=TODAY, prices=PRICES, vol_models={"RB2605": model})
    assert fv.vol is not None
    assert fv.vol.source == VolSource.SAMPLE


def test_a_missing_latest_price_falls_back_to_the_last_fixing_then_fails() -> None:
    t = terms(Template.PRICE_SWAP, Leg("PP2605"))
    fixings = {"PP2605": {TODAY - dt.timedelta(days=3): 7010.0, TODAY + dt.timedelta(days=1): 1.0}}
    assert value(t, fixings=fixings) == 7010.0
    with pytest.raises(MissingPrice) as info:
        value(t)
    assert info.value.underlying == "PP2605"


def test_future_fixing_dates_are_weekdays_unless_asked_otherwise() -> None:
    days = fixing_dates(dt.date(2026, 3, 6), dt.date(2026, 3, 9))  # Fri..Mon
    assert days == [dt.date(2026, 3, 6), dt.date(2026, 3, 9)]
    assert len(fixing_dates(dt.date(2026, 3, 6), dt.date(2026, 3, 9), include_weekends=True)) == 4
