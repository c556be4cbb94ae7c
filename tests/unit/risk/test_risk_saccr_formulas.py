"""Each SA-CCR formula on its own, then the margined-below-unmargined property."""

from __future__ import annotations

import math
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rfq.errors import ValidationError
from rfq.risk.saccr import (
    MULTIPLIER_FLOOR,
    NettingSet,
    OptionSpec,
    Trade,
    commodity_hedging_set_addon,
    compute_netting_set,
    ir_effective_notional,
    ir_maturity_bucket,
    maturity_factor_margined,
    maturity_factor_unmargined,
    option_delta,
    pfe_multiplier,
    replacement_cost_margined,
    replacement_cost_unmargined,
    supervisory_duration,
    systematic_idiosyncratic_addon,
)


def _linear(
    trade_id: str,
    asset_class: str,
    notional: float,
    delta: float,
    *,
    maturity: float = 1.0,
    **fields: Any,
) -> Trade:
    return Trade(
        id=trade_id,
        asset_class=asset_class,
        notional=notional,
        mtm=0.0,
        maturity=maturity,
        delta=delta,
        **fields,
    )


def _unmargined(*trades: Trade) -> NettingSet:
    return NettingSet(id="alice-bank", trades=trades)


# --- supervisory duration ---------------------------------------------------------------------


def test_supervisory_duration_discounts_at_five_percent_between_start_and_end() -> None:
    # (exp(0) - exp(-0.5)) / 0.05 = (1 - 0.60653) / 0.05 = 7.8694
    assert supervisory_duration(0, 10) == pytest.approx(7.86939, abs=1e-5)
    # A 1-into-10y swaption: (exp(-0.05) - exp(-0.55)) / 0.05 = 7.4856
    assert supervisory_duration(1, 11) == pytest.approx(7.48559, abs=1e-5)


def test_supervisory_duration_is_close_to_the_tenor_for_short_trades() -> None:
    assert supervisory_duration(0, 0.1) == pytest.approx(0.1, rel=0.003)


# --- maturity factors -------------------------------------------------------------------------


def test_an_unmargined_maturity_factor_grows_as_the_root_of_maturity_up_to_a_year() -> None:
    assert maturity_factor_unmargined(0.75) == pytest.approx(math.sqrt(0.75))
    assert maturity_factor_unmargined(1.0) == 1.0
    assert maturity_factor_unmargined(30.0) == 1.0


def test_an_unmargined_maturity_factor_floors_maturity_at_ten_business_days() -> None:
    # sqrt(10 / 250) = 0.2, however short the trade.
    assert maturity_factor_unmargined(0.0) == pytest.approx(0.2)
    assert maturity_factor_unmargined(1 / 250) == pytest.approx(0.2)


def test_a_margined_maturity_factor_is_one_and_a_half_root_mpor_over_250_days() -> None:
    assert maturity_factor_margined(10) == pytest.approx(0.3)  # 1.5 x sqrt(10/250) = 1.5 x 0.2
    assert maturity_factor_margined(14) == pytest.approx(1.5 * math.sqrt(14 / 250))
    assert maturity_factor_margined(20) == pytest.approx(1.5 * math.sqrt(0.08))


# --- supervisory delta ------------------------------------------------------------------------


def test_a_bought_put_has_negative_delta_and_a_sold_put_positive() -> None:
    # d1 = (ln(0.06 / 0.05) + 0.5 x 0.25 x 1) / 0.5 = 0.61464; N(-d1) = 0.26940.
    assert option_delta("put", True, 0.06, 0.05, 1.0, 0.5) == pytest.approx(-0.26940, abs=1e-5)
    assert option_delta("put", False, 0.06, 0.05, 1.0, 0.5) == pytest.approx(0.26940, abs=1e-5)


def test_a_bought_call_has_positive_delta_and_a_sold_call_negative() -> None:
    # N(d1) = N(0.61464) = 0.73060
    assert option_delta("call", True, 0.06, 0.05, 1.0, 0.5) == pytest.approx(0.73060, abs=1e-5)
    assert option_delta("call", False, 0.06, 0.05, 1.0, 0.5) == pytest.approx(-0.73060, abs=1e-5)


def test_an_at_the_money_call_and_put_deltas_add_up_to_one_in_size() -> None:
    call = option_delta("call", True, 100, 100, 2.0, 0.2)
    put = option_delta("put", True, 100, 100, 2.0, 0.2)
    assert call - put == pytest.approx(1.0)


def test_an_option_trade_uses_its_asset_class_supervisory_volatility() -> None:
    # An FX call, bought, at the money for one year: delta N(0.5 x 0.15) = N(0.075) = 0.52989.
    option = OptionSpec(type="call", bought=True, price=7.0, strike=7.0, expiry=1.0)
    trade = Trade(
        id="fx-call",
        asset_class="fx",
        hedging_set="USD/CNY",
        notional=1000,
        mtm=0,
        maturity=1,
        option=option,
    )
    result = compute_netting_set(_unmargined(trade))
    assert result.addon.fx == pytest.approx(0.04 * 1000 * 0.52989, abs=1e-3)


# --- the multiplier ---------------------------------------------------------------------------


def test_the_multiplier_is_one_while_the_set_is_not_over_collateralised() -> None:
    assert pfe_multiplier(0.0, 100.0) == 1.0
    assert pfe_multiplier(50.0, 100.0) == 1.0


def test_the_multiplier_falls_with_over_collateralisation_but_never_below_five_percent() -> None:
    # 0.05 + 0.95 exp(-20 / (2 x 0.95 x 282.13)) = 0.96521
    assert pfe_multiplier(-20.0, 282.13) == pytest.approx(0.96521, abs=1e-5)
    deep = pfe_multiplier(-1e9, 1.0)
    assert deep >= MULTIPLIER_FLOOR
    assert deep == pytest.approx(MULTIPLIER_FLOOR)


def test_the_multiplier_floor_holds_when_there_is_no_add_on() -> None:
    assert pfe_multiplier(-10.0, 0.0) == MULTIPLIER_FLOOR
    assert pfe_multiplier(10.0, 0.0) == 1.0


# --- interest rate buckets --------------------------------------------------------------------


def test_interest_rate_buckets_split_at_one_and_five_years() -> None:
    assert [ir_maturity_bucket(e) for e in (0.5, 1.0, 4.0, 5.0, 5.01, 30.0)] == [1, 2, 2, 2, 3, 3]


def test_adjacent_interest_rate_buckets_correlate_at_70_percent_and_distant_ones_at_30() -> None:
    assert ir_effective_notional(1, 0, 0) == 1.0
    assert ir_effective_notional(1, 1, 0) == pytest.approx(math.sqrt(1 + 1 + 1.4))
    assert ir_effective_notional(0, 1, 1) == pytest.approx(math.sqrt(1 + 1 + 1.4))
    assert ir_effective_notional(1, 0, 1) == pytest.approx(math.sqrt(1 + 1 + 0.6))
    # Opposite positions in neighbouring buckets offset: sqrt(1 + 1 - 1.4).
    assert ir_effective_notional(1, -1, 0) == pytest.approx(math.sqrt(0.6))


def test_interest_rate_trades_in_two_currencies_do_not_offset() -> None:
    usd = _linear("usd", "interest_rate", 10_000, 1, hedging_set="USD", start=0, end=2)
    eur = _linear("eur", "interest_rate", 10_000, -1, hedging_set="EUR", start=0, end=2)
    one = compute_netting_set(_unmargined(usd)).addon.interest_rate
    both = compute_netting_set(_unmargined(usd, eur)).addon.interest_rate
    assert both == pytest.approx(2 * one)


# --- credit and equity ------------------------------------------------------------------------


def test_systematic_and_idiosyncratic_parts_combine_entities() -> None:
    # Two single names of opposite sign cancel in the systematic part only:
    # sqrt((0.5 x 100 - 0.5 x 100)^2 + 0.75 x (100^2 + 100^2)) = sqrt(15,000) = 122.47
    assert systematic_idiosyncratic_addon([(100, 0.5), (-100, 0.5)]) == pytest.approx(
        math.sqrt(15_000)
    )
    # One entity alone keeps its full add-on: sqrt(0.64 x 100^2 + 0.36 x 100^2) = 100.
    assert systematic_idiosyncratic_addon([(100, 0.8)]) == pytest.approx(100)


def test_equity_single_names_and_indices_use_their_factors_and_correlations() -> None:
    name = _linear("bob-shares", "equity", 1000, 1, reference="Bob Corp")
    index = _linear("csi-300", "equity", 1000, -1, reference="CSI 300", is_index=True)
    # Single name 32% x 1000 = 320 (rho 0.5); index 20% x 1000 = -200 (rho 0.8):
    # sqrt((0.5 x 320 - 0.8 x 200)^2 + 0.75 x 320^2 + 0.36 x 200^2) = sqrt(0 + 76,800 + 14,400)
    result = compute_netting_set(_unmargined(name, index))
    assert result.addon.equity == pytest.approx(math.sqrt(91_200))


def test_credit_trades_on_one_entity_net_before_aggregation() -> None:
    bought = _linear("cds-1", "credit", 1000, 1, reference="Carol Ltd", rating="A", start=0, end=5)
    sold = _linear("cds-2", "credit", 1000, -1, reference="Carol Ltd", rating="A", start=0, end=5)
    assert compute_netting_set(_unmargined(bought, sold)).addon.credit == pytest.approx(0.0)


# --- commodity --------------------------------------------------------------------------------


def test_commodity_types_in_one_hedging_set_offset_only_through_40_percent_correlation() -> None:
    # sqrt((0.4 x (100 - 100))^2 + 0.84 x (100^2 + 100^2)) = sqrt(16,800)
    assert commodity_hedging_set_addon([100, -100]) == pytest.approx(math.sqrt(16_800))
    assert commodity_hedging_set_addon([100]) == pytest.approx(100)


def test_the_same_commodity_type_nets_fully_and_different_hedging_sets_add_up() -> None:
    long_oil = _linear("wti", "commodity", 1000, 1, hedging_set="energy", reference="crude_oil")
    short_oil = _linear("brent", "commodity", 1000, -1, hedging_set="energy", reference="crude_oil")
    gas = _linear("gas", "commodity", 1000, -1, hedging_set="energy", reference="natural_gas")
    corn = _linear("corn", "commodity", 1000, 1, hedging_set="agricultural", reference="corn")
    assert compute_netting_set(_unmargined(long_oil, short_oil)).addon.commodity == 0.0
    # Oil vs gas in energy: sqrt(0.84 x 2 x 180^2) = 233.3; corn alone 180.
    both = compute_netting_set(_unmargined(long_oil, gas, corn)).addon.commodity
    assert both == pytest.approx(math.sqrt(0.84 * 2 * 180**2) + 180)


def test_electricity_has_its_own_40_percent_factor() -> None:
    power = _linear("power", "commodity", 1000, 1, hedging_set="energy", reference="electricity")
    oil = _linear("oil", "commodity", 1000, 1, hedging_set="energy", reference="crude_oil")
    assert compute_netting_set(_unmargined(power)).addon.commodity == pytest.approx(400)
    assert compute_netting_set(_unmargined(oil)).addon.commodity == pytest.approx(180)


def test_an_electricity_option_uses_the_150_percent_volatility() -> None:
    option = OptionSpec(type="call", bought=True, price=50, strike=50, expiry=1)
    power = Trade(
        id="power-call",
        asset_class="commodity",
        hedging_set="energy",
        reference="electricity",
        notional=1000,
        mtm=0,
        maturity=1,
        option=option,
    )
    # delta = N(0.5 x 1.5) = N(0.75) = 0.77337
    result = compute_netting_set(_unmargined(power))
    assert result.addon.commodity == pytest.approx(400 * 0.77337, abs=0.01)


# --- FX ---------------------------------------------------------------------------------------


def test_fx_trades_on_one_pair_net_whichever_way_the_pair_is_written() -> None:
    eur_usd = _linear("fx-1", "fx", 1000, 1, hedging_set="EUR/USD")
    usd_eur = _linear("fx-2", "fx", 1000, 1, hedging_set="USD/EUR")
    gbp_usd = _linear("fx-3", "fx", 1000, 1, hedging_set="GBP/USD")
    assert compute_netting_set(_unmargined(eur_usd, usd_eur)).addon.fx == 0.0
    assert compute_netting_set(_unmargined(eur_usd, gbp_usd)).addon.fx == pytest.approx(80)


# --- replacement cost -------------------------------------------------------------------------


def test_unmargined_replacement_cost_is_the_positive_part_of_value_net_of_collateral() -> None:
    assert replacement_cost_unmargined(100, 30) == 70
    assert replacement_cost_unmargined(100, 130) == 0
    assert replacement_cost_unmargined(-10, -30) == 20  # posted collateral adds to exposure


def test_margined_replacement_cost_covers_what_the_margin_terms_let_build_up() -> None:
    # max(V - C, TH + MTA - NICA, 0)
    assert replacement_cost_margined(100, 30, 0, 5, 0) == 70
    assert replacement_cost_margined(10, 10, 50, 5, 20) == 35  # TH + MTA - NICA binds
    assert replacement_cost_margined(10, 50, 0, 5, 150) == 0


def test_a_netting_set_reports_its_replacement_cost_of_either_kind() -> None:
    trade = Trade(
        id="t", asset_class="fx", hedging_set="EUR/USD", notional=1, mtm=10, maturity=1, delta=1
    )
    unmargined = compute_netting_set(NettingSet(id="plain", trades=(trade,), collateral=4))
    assert unmargined.rc == 6
    margined = compute_netting_set(
        NettingSet(
            id="csa",
            trades=(trade,),
            margined=True,
            collateral=4,
            threshold=20,
            mta=1,
            nica=3,
            mpor_days=10,
        )
    )
    assert margined.rc == 18  # max(10 - 4, 20 + 1 - 3, 0)


# --- the margined cap and alpha ---------------------------------------------------------------


def test_a_short_dated_margined_set_is_capped_at_its_unmargined_ead() -> None:
    # Ten-day trades: unmargined MF = sqrt(10/250) = 0.2; margined with a 20-day MPOR
    # MF = 1.5 x sqrt(20/250) = 0.42, so the margined EAD would exceed the unmargined one.
    trades = tuple(
        _linear(f"t{i}", "fx", 1000, 1, hedging_set="EUR/USD", maturity=10 / 250) for i in range(3)
    )
    margined = NettingSet(
        id="dave-csa", trades=trades, margined=True, threshold=0, mta=0, nica=0, mpor_days=20
    )
    result = compute_netting_set(margined)
    unmargined = compute_netting_set(msgspec.structs.replace(margined, margined=False))
    assert result.capped
    assert result.ead == pytest.approx(unmargined.ead)
    # Unmargined: 1.4 x 4% x 3,000 x 0.2 = 33.6.
    assert result.ead == pytest.approx(33.6)


def test_ead_is_alpha_times_replacement_cost_plus_pfe() -> None:
    trade = _linear("t", "equity", 1000, 1, reference="Erin plc")
    result = compute_netting_set(_unmargined(msgspec.structs.replace(trade, mtm=50)))
    assert result.ead == pytest.approx(1.4 * (50 + 320))


def test_an_empty_netting_set_has_no_exposure() -> None:
    result = compute_netting_set(NettingSet(id="empty"))
    assert result.ead == 0.0
    assert result.addon.aggregate == 0.0


def test_a_linear_trade_needs_a_delta_of_plus_or_minus_one() -> None:
    trade = _linear("half", "fx", 1000, 0.5, hedging_set="EUR/USD")
    with pytest.raises(ValidationError, match="delta"):
        compute_netting_set(_unmargined(trade))


# --- property ---------------------------------------------------------------------------------

_fx = st.builds(
    lambda n, d, m, v, pair: Trade(
        id="", asset_class="fx", hedging_set=pair, notional=n, mtm=v, maturity=m, delta=d
    ),
    st.floats(0, 1e6),
    st.sampled_from([1.0, -1.0]),
    st.floats(0, 30),
    st.floats(-1e5, 1e5),
    st.sampled_from(["EUR/USD", "USD/CNY", "CNY/USD"]),
)
_ir = st.builds(
    lambda n, d, s, tenor, v, ccy: Trade(
        id="",
        asset_class="interest_rate",
        hedging_set=ccy,
        notional=n,
        mtm=v,
        start=s,
        end=s + tenor,
        maturity=s + tenor,
        delta=d,
    ),
    st.floats(0, 1e6),
    st.sampled_from([1.0, -1.0]),
    st.floats(0, 5),
    st.floats(0.01, 30),
    st.floats(-1e5, 1e5),
    st.sampled_from(["USD", "EUR"]),
)
_commodity = st.builds(
    lambda n, d, m, v, kind, bought: Trade(
        id="",
        asset_class="commodity",
        hedging_set="energy",
        reference=kind,
        notional=n,
        mtm=v,
        maturity=m,
        option=OptionSpec(type="call", bought=bought, price=60, strike=55, expiry=max(m, 0.1))
        if d is None
        else None,
        delta=d,
    ),
    st.floats(0, 1e6),
    st.sampled_from([1.0, -1.0, None]),
    st.floats(0, 30),
    st.floats(-1e5, 1e5),
    st.sampled_from(["crude_oil", "electricity"]),
    st.booleans(),
)
_credit = st.builds(
    lambda n, d, tenor, v, name, rating: Trade(
        id="",
        asset_class="credit",
        reference=name,
        rating=rating,
        notional=n,
        mtm=v,
        start=0,
        end=tenor,
        maturity=tenor,
        delta=d,
    ),
    st.floats(0, 1e6),
    st.sampled_from([1.0, -1.0]),
    st.floats(0.01, 10),
    st.floats(-1e5, 1e5),
    st.sampled_from(["Frank", "Grace"]),
    st.sampled_from(["AAA", "BBB", "CCC"]),
)


@settings(max_examples=300, deadline=None)
@given(
    trades=st.lists(st.one_of(_fx, _ir, _commodity, _credit), max_size=12),
    collateral=st.floats(-1e5, 1e5),
    threshold=st.floats(0, 1e5),
    mta=st.floats(0, 1e4),
    nica=st.floats(-1e5, 1e5),
    mpor_days=st.floats(1, 60),
)
def test_a_margined_netting_set_never_exceeds_the_same_set_unmargined(
    trades: list[Trade],
    collateral: float,
    threshold: float,
    mta: float,
    nica: float,
    mpor_days: float,
) -> None:
    numbered = tuple(msgspec.structs.replace(t, id=f"t{i}") for i, t in enumerate(trades))
    margined = NettingSet(
        id="heidi-csa",
        trades=numbered,
        margined=True,
        collateral=collateral,
        threshold=threshold,
        mta=mta,
        nica=nica,
        mpor_days=mpor_days,
    )
    unmargined = compute_netting_set(msgspec.structs.replace(margined, margined=False))
    result = compute_netting_set(margined)
    assert result.ead <= unmargined.ead
    assert result.ead >= 0.0
