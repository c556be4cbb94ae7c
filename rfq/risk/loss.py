"""Expected loss per counterparty: EL = PD x EAD x LGD (paper formulas 4, 8, 9).

EAD comes from SA-CCR (``rfq.risk.saccr``), LGD = 1 - RR, and PD either from a rating grade
through a grade -> PD table the caller supplies (the rating scale lives elsewhere and this module
must not depend on it) or from an observed default frequency DF = defaulted / all obligors.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

import msgspec

from rfq.errors import ValidationError


def _probability(value: float, name: str, where: str | None) -> float:
    if not math.isfinite(value) or not 0.0 <= value <= 1.0:
        raise ValidationError(f"{name} must be between 0 and 1, got {value}", where=where)
    return value


def loss_given_default(recovery_rate: float, *, where: str | None = None) -> float:
    """LGD = 1 - RR: the share of the exposure not recovered (formula 9)."""
    return 1.0 - _probability(recovery_rate, "recovery rate", where)


def default_frequency(
    defaulted_obligors: int, total_obligors: int, *, where: str | None = None
) -> float:
    """DF = defaulted obligors / all obligors: an observed stand-in for PD (formula 8)."""
    if total_obligors <= 0:
        raise ValidationError("total obligors must be positive", where=where)
    if not 0 <= defaulted_obligors <= total_obligors:
        raise ValidationError(
            f"defaulted obligors must be between 0 and {total_obligors}, got {defaulted_obligors}",
            where=where,
        )
    return defaulted_obligors / total_obligors


def probability_of_default(
    grade: str, pd_by_grade: Mapping[str, float], *, where: str | None = None
) -> float:
    """PD of a rating grade from the caller's grade -> PD table."""
    try:
        pd = pd_by_grade[grade]
    except KeyError:
        raise ValidationError(f"no PD for rating grade {grade!r}", where=where) from None
    return _probability(pd, f"PD of grade {grade!r}", where)


def expected_loss(pd: float, ead: float, lgd: float, *, where: str | None = None) -> float:
    """EL = PD x EAD x LGD (formula 4)."""
    _probability(pd, "PD", where)
    _probability(lgd, "LGD", where)
    if not math.isfinite(ead) or ead < 0:
        raise ValidationError(f"EAD must not be negative, got {ead}", where=where)
    return pd * ead * lgd


class CounterpartyExposure(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One exposure to a counterparty (e.g. one netting set's EAD) with what EL needs.

    PD comes from ``pd`` when given (e.g. an observed default frequency), else from ``grade``.
    """

    counterparty: str
    ead: float
    recovery_rate: float
    grade: str | None = None
    pd: float | None = None


class ExpectedLoss(msgspec.Struct, frozen=True):
    counterparty: str
    pd: float
    ead: float
    lgd: float
    el: float


def expected_loss_of(
    exposure: CounterpartyExposure, pd_by_grade: Mapping[str, float] | None = None
) -> ExpectedLoss:
    """EL of one exposure; refuses it when neither a PD nor a known grade is given."""
    where = f"counterparty {exposure.counterparty!r}"
    if exposure.pd is not None:
        pd = _probability(exposure.pd, "PD", where)
    elif exposure.grade is not None and pd_by_grade is not None:
        pd = probability_of_default(exposure.grade, pd_by_grade, where=where)
    else:
        raise ValidationError("needs a PD, or a rating grade and a grade -> PD table", where=where)
    lgd = loss_given_default(exposure.recovery_rate, where=where)
    el = expected_loss(pd, exposure.ead, lgd, where=where)
    return ExpectedLoss(exposure.counterparty, pd=pd, ead=exposure.ead, lgd=lgd, el=el)


def expected_losses(
    exposures: Iterable[CounterpartyExposure], pd_by_grade: Mapping[str, float] | None = None
) -> dict[str, float]:
    """EL per counterparty, summed over its exposures (e.g. its several netting sets)."""
    totals: dict[str, float] = {}
    for exposure in exposures:
        result = expected_loss_of(exposure, pd_by_grade)
        totals[result.counterparty] = totals.get(result.counterparty, 0.0) + result.el
    return totals
