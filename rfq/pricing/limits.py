"""Per-trade risk limits: the largest notional and the longest tenor a dealer will quote.

A dealer's default strategy declines an RFQ beyond its limits (``notional_limit``,
``tenor_limit``) before pricing it; the RFQ ticket calls ``check_trade_limits`` with the
market's prices to refuse the same RFQ before it is sent.

* **Notional** is gross, on the legs traded: ``quantity x multiplier x sum |w_i x P_i|`` at the
  latest price of each leg (the underlying's reference level when none is known yet). For an
  option it is the notional of the underlying, not of the premium; for a spread it is both
  legs, not the (possibly tiny) difference.
* **Tenor** is the calendar days from today to maturity.

``DEFAULT_TRADE_LIMITS`` is the most any default dealer accepts (each dealer's own limits,
``rfq.pricing.strategy.dealer_profile``, are a share of it), so an RFQ it refuses would get
no quote from a default dealer.
"""

from __future__ import annotations

import datetime as dt
import enum
import math
from collections.abc import Mapping

import msgspec

from rfq.errors import ValidationError
from rfq.instruments import CATALOG, Terms, Underlying


class Limit(enum.StrEnum):
    """Which limit an RFQ breaks (the dealer's decline code)."""

    NOTIONAL = "notional_limit"
    TENOR = "tenor_limit"


class TradeLimits(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Per-trade limits of one dealer: CNY of gross notional, calendar days of tenor."""

    max_notional: float = 1.0e9
    max_tenor_days: int = 3 * 365


DEFAULT_TRADE_LIMITS = TradeLimits()


class LimitBreach(ValidationError):
    """Terms beyond a dealer's limit; ``limit`` names which, ``value`` and ``maximum`` say by
    how much."""

    def __init__(
        self,
        limit: Limit,
        message: str,
        *,
        value: float,
        maximum: float,
        where: str | None = None,
    ) -> None:
        self.limit = limit
        self.value = value
        self.maximum = maximum
        default = "quantity" if limit == Limit.NOTIONAL else "maturity"
        super().__init__(message, where=where or default)


def gross_notional(
    terms: Terms, prices: Mapping[str, float], *, catalog: Mapping[str, Underlying] = CATALOG
) -> float:
    """``quantity x multiplier x sum |w_i x P_i|`` at the latest prices (reference levels for
    legs with no price)."""
    per_unit = 0.0
    for leg in terms.legs:
        price = prices.get(leg.underlying)
        if price is None:
            known = catalog.get(leg.underlying)
            price = known.start_price if known is not None else 0.0
        per_unit += abs(leg.weight * price)
    return terms.quantity * terms.multiplier * per_unit


def check_trade_limits(
    terms: Terms,
    limits: TradeLimits = DEFAULT_TRADE_LIMITS,
    *,
    today: dt.date,
    prices: Mapping[str, float],
    catalog: Mapping[str, Underlying] = CATALOG,
) -> None:
    """Raise ``LimitBreach`` (a ``ValidationError`` naming ``maturity`` or ``quantity``) when
    ``terms`` exceed ``limits``; the tenor is checked first, it needs no price."""
    tenor = (terms.maturity - today).days
    if tenor > limits.max_tenor_days:
        raise LimitBreach(
            Limit.TENOR,
            f"tenor {tenor} days exceeds the limit of {limits.max_tenor_days} days",
            value=tenor,
            maximum=limits.max_tenor_days,
        )
    notional = gross_notional(terms, prices, catalog=catalog)
    if not (math.isfinite(notional) and notional <= limits.max_notional):
        raise LimitBreach(
            Limit.NOTIONAL,
            f"notional {notional:,.0f} exceeds the limit of {limits.max_notional:,.0f}",
            value=notional,
            maximum=limits.max_notional,
            # the field that took it over: the multiplier when one lot would have fitted
            where="multiplier"
            if terms.multiplier > 1 and notional / terms.multiplier <= limits.max_notional
            else "quantity",
        )
