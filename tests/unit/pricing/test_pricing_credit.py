"""The rating-adjusted credit charge: a hand-computed case and its monotonicity properties."""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from rfq.instruments import Leg, OptionTerms, Side, Template, Terms
from rfq.pricing.credit import (
    EPE_FACTOR,
    client_owes_dealer,
    credit_charge,
    linear_epe,
    reference_abs_vol,
    trade_epe,
    trade_pfe,
)
from rfq.pricing.fair_value import fair_value
from rfq.rating import Grade

TODAY = dt.date(2026, 3, 2)
MATURITY = dt.date(2026, 9, 2)
T = 184 / 365
PRICES = {"RB2605": 3200.0, "HC2605": 3350.0}

scores = st.floats(0.0, 100.0)
tenors = st.floats(0.0, 10.0)
vols = st.floats(0.0, 5000.0)
amounts = st.floats(0.0, 1e8)
units = st.floats(1.0, 1e6)


def test_alice_s_bbb_charge_on_a_rebar_swap_matches_the_hand_computation() -> None:
    # 1000 t of RB2605 at 3200, catalog vol 22 %, 184 days; BBB: PD 0.2 %, LGD 45 %.
    epe = 3200 * 0.22 * math.sqrt(T) / math.sqrt(2 * math.pi)
    charge = credit_charge(65.0, epe_per_unit=epe, tenor_years=T, units=1000.0)
    assert charge.total == pytest.approx(0.002 * 0.45 * epe * 1000 * T)
    assert charge.per_unit == pytest.approx(0.002 * 0.45 * epe * T)
    assert charge.per_unit == pytest.approx(0.0905, abs=5e-4)
    # Collateral of 150,000 leaves 1000 x EPE - 150,000 exposed.
    covered = credit_charge(65.0, epe_per_unit=epe, tenor_years=T, units=1000.0, collateral=1.5e5)
    assert covered.uncollateralised == pytest.approx(1000 * epe - 1.5e5)


def test_a_grade_and_its_anchor_score_give_the_same_charge() -> None:
    a = credit_charge(Grade.B, epe_per_unit=100.0, tenor_years=1.0, units=10.0)
    b = credit_charge(45.0, epe_per_unit=100.0, tenor_years=1.0, units=10.0)
    assert a == b


def test_exposure_never_goes_below_zero_when_bob_over_collateralises() -> None:
    c = credit_charge(30.0, epe_per_unit=10.0, tenor_years=1.0, units=10.0, collateral=1e6)
    assert c.uncollateralised == 0.0
    assert c.per_unit == 0.0


@given(a=scores, b=scores, epe=vols, t=tenors, n=units, coll=amounts)
def test_a_worse_rating_never_gets_a_smaller_charge(
    a: float, b: float, epe: float, t: float, n: float, coll: float
) -> None:
    worse, better = sorted((a, b))
    kw = {"epe_per_unit": epe, "tenor_years": t, "units": n, "collateral": coll}
    assert credit_charge(worse, **kw).per_unit >= credit_charge(better, **kw).per_unit


@given(s=scores, t1=tenors, t2=tenors, vol=vols, n=units, coll=amounts)
def test_a_longer_tenor_never_gets_a_smaller_charge(
    s: float, t1: float, t2: float, vol: float, n: float, coll: float
) -> None:
    short, long = sorted((t1, t2))

    def charge(t: float) -> float:
        return credit_charge(
            s, epe_per_unit=linear_epe(vol, t), tenor_years=t, units=n, collateral=coll
        ).per_unit

    assert charge(long) >= charge(short)


@given(
    s=scores,
    epe=vols,
    t=tenors,
    n=units,
    c=st.tuples(amounts, amounts),
    which=st.sampled_from(["collateral", "guarantee", "initial_margin"]),
)
def test_more_collateral_margin_or_guarantee_never_gets_a_larger_charge(
    s: float, epe: float, t: float, n: float, c: tuple[float, float], which: str
) -> None:
    less, more = sorted(c)
    base = {"epe_per_unit": epe, "tenor_years": t, "units": n}
    assert (
        credit_charge(s, **base, **{which: more}).per_unit
        <= credit_charge(s, **base, **{which: less}).per_unit
    )


def option(side: Side) -> Terms:
    return Terms(
        Template.EUROPEAN_OPTION,
        (Leg("RB2605"),),
        side,
        100.0,
        TODAY,
        MATURITY,
        option=OptionTerms("call", 3300.0),
    )


def test_carol_buying_an_option_owes_nothing_so_the_dealer_has_no_exposure_to_her() -> None:
    t = option(Side.BUY)
    fv = fair_value(t, today=TODAY, prices=PRICES)
    assert not client_owes_dealer(t)
    assert trade_epe(t, fv, 704.0) == 0.0
    assert trade_pfe(t, fv, 704.0) == 0.0


def test_dave_writing_an_option_exposes_the_dealer_to_its_undiscounted_premium() -> None:
    t = option(Side.SELL)
    fv = fair_value(t, today=TODAY, prices=PRICES, discount_rate=0.03)
    assert client_owes_dealer(t)
    assert trade_epe(t, fv, 704.0) == pytest.approx(fv.value * math.exp(0.03 * T))
    assert trade_pfe(t, fv, 704.0) > trade_epe(t, fv, 704.0)


def test_a_linear_trade_s_epe_is_0_4_sigma_sqrt_t() -> None:
    t = Terms(Template.PRICE_SWAP, (Leg("RB2605"),), Side.SELL, 1.0, TODAY, MATURITY)
    fv = fair_value(t, today=TODAY, prices=PRICES)
    assert trade_epe(t, fv, 704.0) == pytest.approx(704.0 * math.sqrt(T) * EPE_FACTOR)
    assert abs(EPE_FACTOR - 0.3989) < 1e-4


def spread() -> Terms:
    legs = (Leg("HC2605", 1.0), Leg("RB2605", -1.0))
    return Terms(Template.SPREAD_SWAP, legs, Side.BUY, 1000.0, TODAY, MATURITY)


def test_a_spread_without_history_gets_no_diversification_credit() -> None:
    t = spread()
    fv = fair_value(t, today=TODAY, prices=PRICES)
    xv = reference_abs_vol(t, fv, today=TODAY, fixings={}, vol_models={})
    assert xv.basis == "no_diversification"
    assert xv.abs_vol == pytest.approx(3350 * 0.22 + 3200 * 0.22)


def test_a_spread_with_shared_history_uses_the_realised_vol_of_the_difference() -> None:
    rng = np.random.default_rng(5)
    days = [TODAY - dt.timedelta(days=k) for k in range(60, 0, -1)]
    common = np.cumsum(rng.normal(0, 30, 60))
    rb = {d: 3200 + float(x) for d, x in zip(days, common, strict=True)}
    noise = rng.normal(0, 3, 60)
    hc = {d: 3350 + float(x + e) for d, x, e in zip(days, common, noise, strict=True)}
    t = spread()
    fv = fair_value(t, today=TODAY, prices=PRICES)
    xv = reference_abs_vol(t, fv, today=TODAY, fixings={"HC2605": hc, "RB2605": rb}, vol_models={})
    diffs = np.diff([hc[d] - rb[d] for d in days])
    assert xv.basis == "basket_sample"
    assert xv.abs_vol == pytest.approx(float(np.std(diffs, ddof=1)) * math.sqrt(252))
    assert xv.abs_vol < 0.2 * (3350 * 0.22 + 3200 * 0.22)
