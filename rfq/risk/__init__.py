"""Counterparty and systemic risk, pure: SA-CCR EAD, expected loss, and default contagion.

- ``rfq.risk.saccr``: BCBS 279 SA-CCR per netting set (``compute_netting_set``).
- ``rfq.risk.loss``: EL = PD x EAD x LGD per counterparty, PD from a grade table or DF.
- ``rfq.risk.contagion``: the paper's cascade, Eisenberg-Noe clearing and DebtRank on one
  exposure network (``build_network`` then ``cascade`` / ``eisenberg_noe`` / ``debtrank``).
"""

from __future__ import annotations

from rfq.instruments import AssetClass
from rfq.risk.contagion import (
    CascadeResult,
    ClearingResult,
    ContagionInput,
    DebtRankResult,
    Exposure,
    ExposureNetwork,
    Institution,
    Shock,
    build_network,
    cascade,
    debtrank,
    decode_contagion_input,
    eisenberg_noe,
)
from rfq.risk.loss import (
    CounterpartyExposure,
    ExpectedLoss,
    default_frequency,
    expected_loss,
    expected_loss_of,
    expected_losses,
    loss_given_default,
    probability_of_default,
)
from rfq.risk.saccr import (
    AddOns,
    NettingSet,
    NettingSetResult,
    OptionSpec,
    SaccrInput,
    Trade,
    compute_netting_set,
    compute_netting_sets,
    decode_saccr_input,
)

__all__ = [
    "AddOns",
    "AssetClass",
    "CascadeResult",
    "ClearingResult",
    "ContagionInput",
    "CounterpartyExposure",
    "DebtRankResult",
    "ExpectedLoss",
    "Exposure",
    "ExposureNetwork",
    "Institution",
    "NettingSet",
    "NettingSetResult",
    "OptionSpec",
    "SaccrInput",
    "Shock",
    "Trade",
    "build_network",
    "cascade",
    "compute_netting_set",
    "compute_netting_sets",
    "debtrank",
    "decode_contagion_input",
    "decode_saccr_input",
    "default_frequency",
    "eisenberg_noe",
    "expected_loss",
    "expected_loss_of",
    "expected_losses",
    "loss_given_default",
    "probability_of_default",
]
