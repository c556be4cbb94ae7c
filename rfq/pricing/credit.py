"""A rating-adjusted credit charge, CVA style, and the exposure a trade adds to a credit line.

    charge = PD(client rating) x LGD x max(EPE x units - collateral - IM - guarantee, 0) x T

per unit of quantity (divided by ``units = quantity x multiplier``), so it can be added to a
price. ``PD`` is the one-year PD of ``rfq.rating.pd_of``; ``PD x T`` is the first-order
probability of default within the tenor. ``LGD`` defaults to 45 % (Basel II foundation IRB,
senior unsecured).

Expected positive exposure (EPE) per unit -- who owes whom decides it:

* Linear trades (swaps, forwards): either side can end up owing, and the settlement value moves
  like ``abs_vol x sqrt(T)`` with ``abs_vol`` the annual vol of the reference in price units
  (``F x sigma`` for one leg). With the value normal and centred on zero at inception,
  ``E[max(V_T, 0)] = abs_vol x sqrt(T) / sqrt(2 pi)``, i.e. ``EPE = 0.399 x abs_vol x sqrt(T)``.
  This is the exposure at maturity; the time average of a Brownian exposure over the life
  is 2/3 of it, so the approximation is deliberately conservative.
* An option the client **buys** pays its premium up front; after that only the dealer owes, so
  the dealer bears no credit risk on the client: EPE 0, charge 0.
* An option the client **sells** (writes) makes the client owe the payoff; its expected value
  at maturity is the undiscounted premium, which is the EPE.

Collateral, initial margin actually posted and third-party guarantees reduce the uncollateralised
exposure one for one, never below zero. For credit limits the same netting applies to a
potential future exposure at the 95 % quantile (``z = 1.645``) instead of the expectation.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping
from typing import TYPE_CHECKING

import msgspec
import numpy as np

from rfq.errors import ValidationError
from rfq.instruments import CATALOG, Leg, Terms, Underlying
from rfq.pricing.fair_value import FairValue, FixingHistory, basket_history, settlement_vol
from rfq.pricing.garch import MIN_SAMPLE_RETURNS, PERIODS_PER_YEAR, VolModel
from rfq.rating import Grade, pd_of

if TYPE_CHECKING:
    from rfq.contracts.templates.base import ContractTemplate

EPE_FACTOR = 1.0 / math.sqrt(2.0 * math.pi)
PFE_Z = 1.6448536269514722  # one-sided 95 % normal quantile
DEFAULT_LGD = 0.45


def _non_negative(value: float, where: str) -> float:
    if not (math.isfinite(value) and value >= 0):
        raise ValidationError(f"{where} must be a finite number >= 0", where=where)
    return float(value)


def linear_epe(abs_vol: float, tenor_years: float) -> float:
    """EPE per unit of a linear trade: ``abs_vol x sqrt(T) / sqrt(2 pi)``."""
    return (
        EPE_FACTOR
        * _non_negative(abs_vol, "abs_vol")
        * math.sqrt(_non_negative(tenor_years, "tenor_years"))
    )


def linear_pfe(abs_vol: float, tenor_years: float, z: float = PFE_Z) -> float:
    """Potential future exposure per unit of a linear trade at quantile ``z``."""
    return (
        z * _non_negative(abs_vol, "abs_vol") * math.sqrt(_non_negative(tenor_years, "tenor_years"))
    )


def _template(terms: Terms) -> ContractTemplate:
    from rfq.contracts.templates import template_of

    return template_of(terms)


def client_owes_dealer(terms: Terms) -> bool:
    """Whether the client can end up owing the dealer (false only for a bought option)."""
    return _template(terms).client_owes_dealer(terms)


def trade_epe(terms: Terms, fair: FairValue, abs_vol: float) -> float:
    """EPE per unit of ``terms`` for the dealer, from its fair value and the reference's vol
    (the template's ``epe_per_unit``; 0 when the client can never owe the dealer)."""
    template = _template(terms)
    if not template.client_owes_dealer(terms):
        return 0.0
    return template.epe_per_unit(terms, fair, abs_vol)


def trade_pfe(terms: Terms, fair: FairValue, abs_vol: float, z: float = PFE_Z) -> float:
    """Potential future exposure per unit for credit limits (95 % by default)."""
    template = _template(terms)
    if not template.client_owes_dealer(terms):
        return 0.0
    return template.pfe_per_unit(terms, fair, abs_vol, z)


class CreditCharge(msgspec.Struct, frozen=True):
    """The charge per unit and its ingredients (money amounts in the settlement currency)."""

    per_unit: float
    total: float
    pd: float
    lgd: float
    epe_per_unit: float
    uncollateralised: float
    tenor_years: float


def uncollateralised(
    exposure: float, *, collateral: float = 0.0, initial_margin: float = 0.0, guarantee: float = 0.0
) -> float:
    """Exposure left after collateral, posted margin and guarantees, never below zero."""
    cover = (
        _non_negative(collateral, "collateral")
        + _non_negative(initial_margin, "initial_margin")
        + _non_negative(guarantee, "guarantee")
    )
    return max(_non_negative(exposure, "exposure") - cover, 0.0)


def credit_charge(
    rating: Grade | str | float,
    *,
    epe_per_unit: float,
    tenor_years: float,
    units: float,
    lgd: float = DEFAULT_LGD,
    collateral: float = 0.0,
    initial_margin: float = 0.0,
    guarantee: float = 0.0,
) -> CreditCharge:
    """``PD x LGD x uncollateralised EPE x T``, also per unit of ``units`` (quantity x
    multiplier). A worse rating, a longer tenor or a larger EPE never lowers it; more
    collateral, margin or guarantee never raises it."""
    if not (math.isfinite(units) and units > 0):
        raise ValidationError("units must be positive", where="units")
    if not (math.isfinite(lgd) and 0.0 <= lgd <= 1.0):
        raise ValidationError("LGD must be in [0, 1]", where="lgd")
    pd = pd_of(rating)
    epe = _non_negative(epe_per_unit, "epe_per_unit")
    tenor = _non_negative(tenor_years, "tenor_years")
    exposed = uncollateralised(
        epe * units, collateral=collateral, initial_margin=initial_margin, guarantee=guarantee
    )
    total = pd * lgd * exposed * tenor
    return CreditCharge(total / units, total, pd, lgd, epe, exposed, tenor)


class ExposureVol(msgspec.Struct, frozen=True):
    """Annual volatility of the settlement reference in price units, and where it came from."""

    abs_vol: float
    basis: str


def reference_abs_vol(
    terms: Terms,
    fair: FairValue,
    *,
    today: dt.date,
    fixings: Mapping[str, FixingHistory],
    vol_models: Mapping[str, VolModel],
    catalog: Mapping[str, Underlying] = CATALOG,
) -> ExposureVol:
    """How much the settlement value of one unit moves in a year, in price units.

    One leg: ``|F| x sigma`` with sigma from ``settlement_vol`` (GARCH, sample or catalog).
    Several legs: the basket's realised vol of daily changes when the legs share at least
    ``MIN_SAMPLE_RETURNS`` + 1 fixing dates (it sees their correlation), else the
    no-diversification bound ``sum |w_i F_i sigma_i|``.
    """
    legs = terms.legs
    if len(legs) == 1:
        est = settlement_vol(
            legs,
            today=today,
            maturity=terms.maturity,
            leg_forwards=fair.leg_forwards,
            fixings=fixings,
            vol_models=vol_models,
            catalog=catalog,
        )
        return ExposureVol(abs(fair.leg_forwards[0] * legs[0].weight) * est.vol, est.source.value)
    history = basket_history(legs, fixings)
    values = [v for d, v in history.items() if d <= today]
    if len(values) > MIN_SAMPLE_RETURNS:
        changes = np.diff(np.asarray(values, dtype=np.float64))
        vol = float(np.std(changes, ddof=1)) * math.sqrt(PERIODS_PER_YEAR)
        if math.isfinite(vol) and vol > 0:
            return ExposureVol(vol, "basket_sample")
    total = 0.0
    for leg, f in zip(legs, fair.leg_forwards, strict=True):
        est = settlement_vol(
            (Leg(leg.underlying),),
            today=today,
            maturity=terms.maturity,
            leg_forwards=(f,),
            fixings=fixings,
            vol_models=vol_models,
            catalog=catalog,
        )
        total += abs(leg.weight * f) * est.vol
    return ExposureVol(total, "no_diversification")
