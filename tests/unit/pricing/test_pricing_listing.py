"""Futures months roll with the business date: what is listed, what terms validation refuses,
and what the default dealer strategy declines.

Every future lists the next three of its January, May and September months; a month's last
trading day is the 15th of the month (the Friday before when that is a weekend).
"""

from __future__ import annotations

import datetime as dt

import pytest

from rfq.errors import ValidationError
from rfq.instruments import (
    CATALOG,
    FUTURES_ROOTS,
    Leg,
    Side,
    Template,
    Terms,
    last_trading_day,
    listed_futures,
    listed_underlyings,
    validate_terms,
)
from rfq.pricing.strategy import DeclineCode, DeclineDecision, PricingContext, QuoteDecision, decide

D = dt.date


def swap(underlying: str, today: dt.date, maturity: dt.date) -> Terms:
    return Terms(Template.PRICE_SWAP, (Leg(underlying),), Side.BUY, 100.0, today, maturity)


def test_the_last_trading_day_is_the_15th_or_the_friday_before_a_weekend() -> None:
    assert last_trading_day(2027, 1) == D(2027, 1, 15)  # a Friday
    assert last_trading_day(2027, 5) == D(2027, 5, 14)  # the 15th is a Saturday
    assert last_trading_day(2026, 9) == D(2026, 9, 15)


def test_on_new_year_2027_the_listed_months_are_2701_2705_2709_and_2601_is_long_gone() -> None:
    listed = listed_underlyings(D(2027, 1, 4))
    for root in FUTURES_ROOTS:
        assert [u.id for u in listed_futures(root, D(2027, 1, 4))] == [
            f"{root}2701",
            f"{root}2705",
            f"{root}2709",
        ]
    assert "RB2601" not in listed
    assert {"TSBILLET", "CSI300"} <= set(listed)
    assert len(listed) == 3 * len(FUTURES_ROOTS) + 2


def test_a_month_trades_on_its_last_trading_day_and_the_next_is_listed_the_day_after() -> None:
    on_the_day = [u.id for u in listed_futures("RB", D(2027, 1, 15))]
    day_after = [u.id for u in listed_futures("RB", D(2027, 1, 16))]
    assert on_the_day == ["RB2701", "RB2705", "RB2709"]
    assert day_after == ["RB2705", "RB2709", "RB2801"]


def test_the_catalog_still_knows_expired_months_for_the_contracts_written_on_them() -> None:
    rb2601 = CATALOG["RB2601"]
    assert rb2601.last_trading_day == D(2026, 1, 15)
    assert rb2601.expired(D(2027, 1, 4)) and not rb2601.expired(D(2026, 1, 15))
    assert CATALOG["TSBILLET"].last_trading_day is None


def test_terms_on_an_expired_month_are_refused_naming_the_underlying() -> None:
    today = D(2027, 1, 4)
    terms = swap("RB2601", today, D(2027, 2, 1))
    validate_terms(terms)  # a contract on chain stays valid: no date, no listing check
    with pytest.raises(ValidationError, match="RB2601 expired") as caught:
        validate_terms(terms, today=today)
    assert caught.value.where == "legs[0].underlying"


def test_terms_on_a_month_not_listed_yet_are_refused_naming_what_trades() -> None:
    with pytest.raises(ValidationError, match="RB2801 is not listed yet") as caught:
        validate_terms(swap("RB2801", D(2027, 1, 4), D(2027, 2, 1)), today=D(2027, 1, 4))
    assert "RB2701, RB2705, RB2709" in caught.value.message


def test_a_maturity_after_the_months_last_trading_day_is_refused_naming_maturity() -> None:
    today = D(2027, 1, 4)
    validate_terms(swap("RB2701", today, D(2027, 1, 15)), today=today)
    with pytest.raises(ValidationError, match="last trading day 2027-01-15") as caught:
        validate_terms(swap("RB2701", today, D(2027, 1, 18)), today=today)
    assert caught.value.where == "maturity"


def test_a_calendar_spread_must_mature_by_its_near_legs_last_trading_day() -> None:
    today = D(2027, 1, 4)
    legs = (Leg("RB2705", 1.0), Leg("RB2709", -1.0))
    spread = Terms(Template.CALENDAR_SPREAD, legs, Side.BUY, 10.0, today, D(2027, 6, 1))
    with pytest.raises(ValidationError, match="RB2705's last trading day") as caught:
        validate_terms(spread, catalog=CATALOG, today=today)
    assert caught.value.where == "maturity"


def context(today: dt.date) -> PricingContext:
    return PricingContext(
        today, {"RB2601": 3100.0, "RB2701": 3150.0}, client_rating=65.0, credit_limit=1e9
    )


def test_the_default_dealer_declines_an_expired_month_with_the_reason() -> None:
    today = D(2027, 1, 4)
    decision = decide(swap("RB2601", today, D(2027, 2, 1)), context(today))
    assert isinstance(decision, DeclineDecision)
    assert decision.code == DeclineCode.BAD_TERMS
    assert "RB2601 expired: its last trading day was 2026-01-15" in decision.text


def test_the_default_dealer_declines_a_maturity_after_the_last_trading_day() -> None:
    today = D(2027, 1, 4)
    decision = decide(swap("RB2701", today, D(2027, 2, 1)), context(today))
    assert isinstance(decision, DeclineDecision)
    assert "after RB2701's last trading day" in decision.text
    quoted = decide(swap("RB2701", today, D(2027, 1, 15)), context(today))
    assert isinstance(quoted, QuoteDecision)
