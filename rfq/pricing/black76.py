"""Black-76: European options on a forward (or future), discounted at a flat rate.

Our contracts settle in cash on the forward of their reference at maturity, so Black's 1976
formula is the natural model: ``c = e^{-rT} (F N(d1) - K N(d2))``,
``p = e^{-rT} (K N(-d2) - F N(-d1))``, ``d1 = (ln(F/K) + s^2 T / 2) / (s sqrt T)``,
``d2 = d1 - s sqrt T``. The normal CDF uses ``erfc`` so deep tails keep their precision.
"""

from __future__ import annotations

import math
from typing import Literal

import msgspec

from rfq.errors import ValidationError

OptionKind = Literal["call", "put"]

_SQRT2 = math.sqrt(2.0)
_SQRT2PI = math.sqrt(2.0 * math.pi)


def norm_cdf(x: float) -> float:
    """Standard normal CDF."""
    return 0.5 * math.erfc(-x / _SQRT2)


def norm_pdf(x: float) -> float:
    """Standard normal density."""
    return math.exp(-0.5 * x * x) / _SQRT2PI


class Black76(msgspec.Struct, frozen=True):
    """An option's value and sensitivities per unit of the underlying.

    ``delta`` is dV/dF (discounted); ``vega`` is dV/d(sigma) per 1.00 of volatility (divide by
    100 for a vol point).
    """

    price: float
    delta: float
    vega: float


def _check(forward: float, strike: float, tenor_years: float, vol: float, rate: float) -> None:
    if not (math.isfinite(forward) and forward > 0):
        raise ValidationError("forward must be positive", where="forward")
    if not (math.isfinite(strike) and strike > 0):
        raise ValidationError("strike must be positive", where="strike")
    if not (math.isfinite(tenor_years) and tenor_years >= 0):
        raise ValidationError("time to expiry cannot be negative", where="tenor_years")
    if not (math.isfinite(vol) and vol >= 0):
        raise ValidationError("volatility cannot be negative", where="vol")
    if not math.isfinite(rate):
        raise ValidationError("rate must be finite", where="rate")


def black76(
    kind: OptionKind,
    forward: float,
    strike: float,
    tenor_years: float,
    vol: float,
    rate: float = 0.0,
) -> Black76:
    """Price, delta and vega of a European ``kind`` on ``forward`` struck at ``strike``."""
    _check(forward, strike, tenor_years, vol, rate)
    df = math.exp(-rate * tenor_years)
    sd = vol * math.sqrt(tenor_years)
    if sd == 0.0:
        # Expiry or no volatility: the discounted intrinsic value; at the money the delta is
        # the limit of the smooth one (half).
        if kind == "call":
            itm = 1.0 if forward > strike else 0.5 if forward == strike else 0.0
            return Black76(df * max(forward - strike, 0.0), df * itm, 0.0)
        itm = 1.0 if forward < strike else 0.5 if forward == strike else 0.0
        return Black76(df * max(strike - forward, 0.0), -df * itm, 0.0)
    d1 = (math.log(forward / strike) + 0.5 * sd * sd) / sd
    d2 = d1 - sd
    vega = df * forward * norm_pdf(d1) * math.sqrt(tenor_years)
    if kind == "call":
        price = df * (forward * norm_cdf(d1) - strike * norm_cdf(d2))
        return Black76(max(price, 0.0), df * norm_cdf(d1), vega)
    price = df * (strike * norm_cdf(-d2) - forward * norm_cdf(-d1))
    return Black76(max(price, 0.0), -df * norm_cdf(-d1), vega)


def black76_price(
    kind: OptionKind,
    forward: float,
    strike: float,
    tenor_years: float,
    vol: float,
    rate: float = 0.0,
) -> float:
    """The option's value per unit."""
    return black76(kind, forward, strike, tenor_years, vol, rate).price


def black76_delta(
    kind: OptionKind,
    forward: float,
    strike: float,
    tenor_years: float,
    vol: float,
    rate: float = 0.0,
) -> float:
    """dV/dF, discounted."""
    return black76(kind, forward, strike, tenor_years, vol, rate).delta


def black76_vega(
    kind: OptionKind,
    forward: float,
    strike: float,
    tenor_years: float,
    vol: float,
    rate: float = 0.0,
) -> float:
    """dV/d(sigma) per 1.00 of volatility."""
    return black76(kind, forward, strike, tenor_years, vol, rate).vega


def black76_quantile_payoff(
    kind: OptionKind, forward: float, strike: float, tenor_years: float, vol: float, z: float
) -> float:
    """The payoff at maturity when the forward ends ``z`` standard deviations on the option's
    side (lognormal, martingale drift): the option writer's potential future exposure."""
    _check(forward, strike, tenor_years, vol, 0.0)
    sd = vol * math.sqrt(tenor_years)
    if kind == "call":
        return max(forward * math.exp(z * sd - 0.5 * sd * sd) - strike, 0.0)
    return max(strike - forward * math.exp(-z * sd - 0.5 * sd * sd), 0.0)
