"""Pricing: the pure model dealers quote with.

``black76`` (options on forwards), ``garch`` (GARCH(1,1) vol with fallbacks), ``fair_value``
(per template, from the oracle's prices), ``credit`` (rating-adjusted CVA-style charge and
exposure), ``limits`` (per-trade notional and tenor limits) and ``strategy`` (terms + context
-> quote or decline, and each dealer's default profile). No I/O, no clock.
"""

from rfq.pricing.black76 import Black76, black76
from rfq.pricing.credit import CreditCharge, credit_charge
from rfq.pricing.errors import GarchFitError, MissingPrice, PricingError, Unsupported
from rfq.pricing.fair_value import FairValue, fair_value
from rfq.pricing.garch import VolEstimate, VolModel, VolSource, estimate_vol, fit_garch, vol_model
from rfq.pricing.limits import (
    DEFAULT_TRADE_LIMITS,
    LimitBreach,
    TradeLimits,
    check_trade_limits,
    gross_notional,
)
from rfq.pricing.strategy import (
    DealerProfile,
    Decision,
    DeclineCode,
    DeclineDecision,
    PricingContext,
    QuoteDecision,
    QuoteParams,
    dealer_profile,
    decide,
)

__all__ = [
    "DEFAULT_TRADE_LIMITS",
    "Black76",
    "CreditCharge",
    "DealerProfile",
    "Decision",
    "DeclineCode",
    "DeclineDecision",
    "FairValue",
    "GarchFitError",
    "LimitBreach",
    "MissingPrice",
    "PricingContext",
    "PricingError",
    "QuoteDecision",
    "QuoteParams",
    "TradeLimits",
    "Unsupported",
    "VolEstimate",
    "VolModel",
    "VolSource",
    "black76",
    "check_trade_limits",
    "credit_charge",
    "dealer_profile",
    "decide",
    "estimate_vol",
    "fair_value",
    "fit_garch",
    "gross_notional",
    "vol_model",
]
