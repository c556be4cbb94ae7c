"""The default waterfall (paper section II.3): collateral first, then the guarantors up to
their lines, the rest is the counterparties' loss.

Pure arithmetic on what the ledger hands in (the defaulter's collateral and its available
guarantee lines, which live in the ledger's guarantee registry). Claims are served in the
order given (the book passes them in contract-id order): deterministic, and never applies
more than a pool holds or a claim asks. Pro-rata sharing across counterparties would be a
ledger policy on top (pass claims one at a time).
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from rfq.contracts.events import GuaranteeLine, GuaranteeUse
from rfq.errors import ValidationError


class ClaimRecovery(msgspec.Struct, frozen=True):
    """What one claim got back: from collateral, from each guarantor, and what is lost."""

    claim: float
    collateral: float
    guarantees: tuple[GuaranteeUse, ...]
    unrecovered: float

    @property
    def guaranteed(self) -> float:
        total = 0.0
        for use in self.guarantees:
            total = total + use.amount
        return total


class Waterfall(msgspec.Struct, frozen=True):
    exposure: float
    collateral_applied: float
    guarantee_applied: float
    guarantees: tuple[GuaranteeUse, ...]
    shortfall: float
    unrecovered: float
    recovery_rate: float
    claims: tuple[ClaimRecovery, ...]


def waterfall(
    claims: Sequence[float], collateral: float, lines: Sequence[GuaranteeLine]
) -> Waterfall:
    """Apply ``collateral`` then ``lines`` (in order) to ``claims`` (in order).

    ``shortfall`` is what the collateral left uncovered (what the guarantors were asked
    for); ``recovery_rate`` = (collateral + guarantees applied) / exposure, 1.0 when nothing
    was owed.
    """
    if not collateral >= 0 or collateral == float("inf"):
        raise ValidationError("collateral must be a finite amount >= 0", where="collateral")
    for k, line in enumerate(lines):
        if not line.available >= 0 or line.available == float("inf"):
            raise ValidationError(
                "a guarantee line must be a finite amount >= 0", where=f"guarantees[{k}]"
            )
    pool = float(collateral)
    left = [float(line.available) for line in lines]
    out: list[ClaimRecovery] = []
    for claim in map(float, claims):
        from_collateral = min(pool, claim)
        pool = pool - from_collateral
        rest = claim - from_collateral
        uses: list[GuaranteeUse] = []
        for k, line in enumerate(lines):
            if rest <= 0:
                break
            paid = min(left[k], rest)
            if paid > 0:
                left[k] = left[k] - paid
                rest = rest - paid
                uses.append(GuaranteeUse(line.guarantor, paid))
        out.append(ClaimRecovery(claim, from_collateral, tuple(uses), max(rest, 0.0)))
    exposure = 0.0
    applied = 0.0
    guaranteed = 0.0
    by_guarantor: dict[str, float] = {}
    for rec in out:
        exposure = exposure + rec.claim
        applied = applied + rec.collateral
        for use in rec.guarantees:
            guaranteed = guaranteed + use.amount
            by_guarantor[use.guarantor] = by_guarantor.get(use.guarantor, 0.0) + use.amount
    order = list(dict.fromkeys(line.guarantor for line in lines))
    totals = tuple(GuaranteeUse(g, by_guarantor[g]) for g in order if g in by_guarantor)
    recovered = applied + guaranteed
    return Waterfall(
        exposure=exposure,
        collateral_applied=applied,
        guarantee_applied=guaranteed,
        guarantees=totals,
        shortfall=max(exposure - applied, 0.0),
        unrecovered=max(exposure - recovered, 0.0),
        recovery_rate=1.0 if exposure <= 0 else min(recovered / exposure, 1.0),
        claims=tuple(out),
    )
