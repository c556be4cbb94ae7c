"""Fair value per template from the oracle's prices, before spread, credit and skew.

The value is per unit of quantity in the contract's price units: the fair fixed price of a swap
or forward, the fair premium of an option. Forwards:

* a futures month (catalog ``contract_month`` set) is its own forward: the latest price, flat
  for every date up to its expiry;
* a spot reference or an index is carried from the latest price at a continuously compounded
  cost-of-carry rate ``c`` (default 0): ``F(d) = S exp(c (d - today) / 365)``.

Per template: price swap and forward -- the forward at maturity; spot swap -- spot carried to
maturity; average-price swap -- the mean over the window's fixing dates of the fixing where the
date is already fixed (on or before today) and of the forward otherwise (future fixing dates are
weekdays unless ``include_weekends``; a past date with no fixing had none and is left out);
spread, calendar spread and index basket -- the weighted sum of the legs' forwards; European
option -- Black-76 on the weighted forward with the GARCH(1,1) vol of the weighted history (see
``rfq.pricing.garch``), discounted at ``discount_rate``.

When the latest price of an underlying is missing, its last fixing on or before today stands in;
with neither, ``MissingPrice`` is raised.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping, Sequence

import msgspec

from rfq.errors import ValidationError
from rfq.instruments import CATALOG, Leg, Terms, Underlying
from rfq.pricing.black76 import Black76
from rfq.pricing.errors import MissingPrice, Unsupported
from rfq.pricing.garch import PERIODS_PER_YEAR, VolEstimate, VolModel, vol_model

FixingHistory = Mapping[dt.date, float]
"""One underlying's fixings by date."""

DAYS_PER_YEAR = 365.0


class FairValue(msgspec.Struct, frozen=True):
    """A template's fair value per unit and how it was reached."""

    template: str
    value: float
    forward: float
    leg_forwards: tuple[float, ...]
    tenor_years: float
    vol: VolEstimate | None = None
    option: Black76 | None = None
    fixed_dates: int = 0
    forward_dates: int = 0
    discount_factor: float = 1.0


def is_futures(underlying: Underlying) -> bool:
    """A futures month is its own forward; anything else is carried."""
    return underlying.contract_month is not None


def _lookup(underlying: str, catalog: Mapping[str, Underlying]) -> Underlying:
    try:
        return catalog[underlying]
    except KeyError:
        raise ValidationError(f"unknown underlying {underlying!r}", where="legs") from None


def latest_price(
    underlying: str,
    *,
    today: dt.date,
    prices: Mapping[str, float],
    fixings: Mapping[str, FixingHistory],
) -> float:
    """The latest price, else the last fixing on or before ``today``."""
    price = prices.get(underlying)
    if price is None:
        history = fixings.get(underlying, {})
        past = [d for d in history if d <= today]
        if not past:
            raise MissingPrice(underlying, on=today)
        price = history[max(past)]
    if not math.isfinite(price):
        raise MissingPrice(underlying, on=today)
    return float(price)


def carry(spot: float, *, today: dt.date, on: dt.date, rate: float) -> float:
    """Spot carried from ``today`` to ``on`` at a continuously compounded rate."""
    return spot * math.exp(rate * (on - today).days / DAYS_PER_YEAR)


def leg_forward(
    underlying: str,
    on: dt.date,
    *,
    today: dt.date,
    prices: Mapping[str, float],
    fixings: Mapping[str, FixingHistory],
    carry_rate: float = 0.0,
    catalog: Mapping[str, Underlying] = CATALOG,
) -> float:
    """The forward of one underlying for delivery on ``on``."""
    ref = _lookup(underlying, catalog)
    price = latest_price(underlying, today=today, prices=prices, fixings=fixings)
    if is_futures(ref):
        return price
    return carry(price, today=today, on=on, rate=carry_rate)


def fixing_dates(start: dt.date, end: dt.date, *, include_weekends: bool = False) -> list[dt.date]:
    """Dates in ``[start, end]`` that are expected to carry a fixing."""
    out: list[dt.date] = []
    d = start
    while d <= end:
        if include_weekends or d.weekday() < 5:
            out.append(d)
        d += dt.timedelta(days=1)
    return out


def basket_history(
    legs: Sequence[Leg], fixings: Mapping[str, FixingHistory]
) -> dict[dt.date, float]:
    """The weighted sum of the legs' fixings on the dates all legs fixed.

    A fixings store may memoise this (a peer's market cache knows when closes change): if it
    has a ``basket_history(legs)`` method, that answers instead.
    """
    memo = getattr(fixings, "basket_history", None)
    if memo is not None:
        cached: dict[dt.date, float] = memo(tuple(legs))
        return cached
    return compute_basket_history(legs, fixings)


def compute_basket_history(
    legs: Sequence[Leg], fixings: Mapping[str, FixingHistory]
) -> dict[dt.date, float]:
    histories = [fixings.get(leg.underlying, {}) for leg in legs]
    if not histories:
        return {}
    common = set(histories[0])
    for h in histories[1:]:
        common &= set(h)
    return {
        d: sum(leg.weight * h[d] for leg, h in zip(legs, histories, strict=True))
        for d in sorted(common)
    }


def trading_days(today: dt.date, maturity: dt.date) -> int:
    """Calendar days to maturity in trading days (252 a year), at least one."""
    days = max((maturity - today).days, 0)
    return max(round(days * PERIODS_PER_YEAR / DAYS_PER_YEAR), 1)


def settlement_vol(
    legs: Sequence[Leg],
    *,
    today: dt.date,
    maturity: dt.date,
    leg_forwards: Sequence[float],
    fixings: Mapping[str, FixingHistory],
    vol_models: Mapping[str, VolModel],
    catalog: Mapping[str, Underlying] = CATALOG,
) -> VolEstimate:
    """Relative (lognormal) vol of the weighted settlement reference to ``maturity``.

    One leg: its cached model or a fit of its fixings, falling back to the catalog vol. Several
    legs: a fit of the basket's history (needs a positive basket), falling back to the
    no-diversification bound ``sum |w_i F_i s_i| / |sum w_i F_i|``.
    """
    horizon = trading_days(today, maturity)
    if len(legs) == 1 and legs[0].weight == 1.0:
        u = legs[0].underlying
        model = vol_models.get(u)
        if model is None:
            history = fixings.get(u, {})
            prices = [history[d] for d in sorted(history) if d <= today]
            model = vol_model(prices, fallback_vol=_lookup(u, catalog).annual_vol)
        return model.forecast(horizon)
    basket = sum(leg.weight * f for leg, f in zip(legs, leg_forwards, strict=True))
    gross = sum(
        abs(leg.weight * f) * _lookup(leg.underlying, catalog).annual_vol
        for leg, f in zip(legs, leg_forwards, strict=True)
    )
    if basket == 0:
        raise Unsupported("the basket's forward is zero: no relative volatility")
    fallback = gross / abs(basket)
    history = basket_history(legs, fixings)
    prices = [v for d, v in history.items() if d <= today]
    if any(p <= 0 for p in prices):
        prices = []
    return vol_model(prices, fallback_vol=fallback).forecast(horizon)


def fair_value(
    terms: Terms,
    *,
    today: dt.date,
    prices: Mapping[str, float],
    fixings: Mapping[str, FixingHistory] | None = None,
    vol_models: Mapping[str, VolModel] | None = None,
    carry_rate: float = 0.0,
    discount_rate: float = 0.0,
    include_weekends: bool = False,
    catalog: Mapping[str, Underlying] = CATALOG,
) -> FairValue:
    """Fair value per unit of ``terms`` on ``today`` (terms assumed valid, maturity ahead):
    the legs' forwards to maturity, then the template's own ``fair_value``."""
    fixings = fixings or {}
    vol_models = vol_models or {}
    tenor = max((terms.maturity - today).days, 0) / DAYS_PER_YEAR
    fwd = [
        leg_forward(
            leg.underlying,
            terms.maturity,
            today=today,
            prices=prices,
            fixings=fixings,
            carry_rate=carry_rate,
            catalog=catalog,
        )
        for leg in terms.legs
    ]
    forward = sum(leg.weight * f for leg, f in zip(terms.legs, fwd, strict=True))
    from rfq.contracts.templates import template_of
    from rfq.contracts.templates.base import PricingInputs

    market = PricingInputs(
        today=today,
        prices=prices,
        fixings=fixings,
        vol_models=vol_models,
        carry_rate=carry_rate,
        discount_rate=discount_rate,
        include_weekends=include_weekends,
        catalog=catalog,
        tenor_years=tenor,
        leg_forwards=tuple(fwd),
        forward=forward,
    )
    return template_of(terms).fair_value(terms, market)


def average_price(
    terms: Terms,
    today: dt.date,
    prices: Mapping[str, float],
    fixings: Mapping[str, FixingHistory],
    carry_rate: float,
    include_weekends: bool,
    catalog: Mapping[str, Underlying],
) -> FairValue:
    """An average-price swap's fair value: the mean over the window's fixing dates of the
    fixing where fixed and the forward otherwise."""
    window = terms.averaging
    if window is None:
        raise ValidationError("average_price_swap needs an averaging window", where="averaging")
    (leg,) = terms.legs
    u = leg.underlying
    history = fixings.get(u, {})
    fixed = [p for d, p in history.items() if window.start <= d <= window.end and d <= today]
    expected = fixing_dates(window.start, window.end, include_weekends=include_weekends)
    to_come = [d for d in expected if d > today or (d == today and d not in history)]
    if not fixed and not to_come:
        if expected:
            raise MissingPrice(u, on=expected[0])
        raise Unsupported(f"the averaging window {window.start}..{window.end} has no fixing dates")
    forwards = [
        leg_forward(
            u,
            d,
            today=today,
            prices=prices,
            fixings=fixings,
            carry_rate=carry_rate,
            catalog=catalog,
        )
        for d in to_come
    ]
    value = (sum(fixed) + sum(forwards)) / (len(fixed) + len(forwards))
    at_maturity = leg_forward(
        u,
        terms.maturity,
        today=today,
        prices=prices,
        fixings=fixings,
        carry_rate=carry_rate,
        catalog=catalog,
    )
    tenor = max((terms.maturity - today).days, 0) / DAYS_PER_YEAR
    return FairValue(
        terms.template,
        value,
        at_maturity,
        (at_maturity,),
        tenor,
        fixed_dates=len(fixed),
        forward_dates=len(forwards),
    )
