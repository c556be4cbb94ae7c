"""Pricing: the pure model dealers quote with.

``black76`` (options on forwards), ``garch`` (GARCH(1,1) vol with fallbacks), ``fair_value``
(per template, from the oracle's prices), ``credit`` (rating-adjusted CVA-style charge and
exposure) and ``strategy`` (terms + context -> quote or decline). No I/O, no clock.
"""

from rfq.pricing.black76 import Black76, black76
from rfq.pricing.credit import CreditCharge, credit_charge
from rfq.pricing.errors import GarchFitError, MissingPrice, PricingError, Unsupported
from rfq.pricing.fair_value import FairValue, fair_value
from rfq.pricing.garch import VolEstimate, VolModel, VolSource, estimate_vol, fit_garch, vol_model
from rfq.pricing.strategy import (
    Decision,
    DeclineCode,
    DeclineDecision,
    PricingContext,
    QuoteDecision,
    QuoteParams,
    decide,
)

__all__ = [
    "Black76",
    "CreditCharge",
    "Decision",
    "DeclineCode",
    "DeclineDecision",
    "FairValue",
    "GarchFitError",
    "MissingPrice",
    "PricingContext",
    "PricingError",
    "QuoteDecision",
    "QuoteParams",
    "Unsupported",
    "VolEstimate",
    "VolModel",
    "VolSource",
    "black76",
    "credit_charge",
    "decide",
    "estimate_vol",
    "fair_value",
    "fit_garch",
    "vol_model",
]
