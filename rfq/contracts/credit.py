"""The default waterfall (paper section II.3): collateral first, then the guarantors up to
their lines, the rest is the counterparties' loss.

Pure integer arithmetic (micros) on what the ledger hands in (the defaulter's collateral and
its available guarantee lines, which live in the ledger's guarantee registry). Claims are
served in the order given (the book passes them in contract-id order): deterministic, and
never applies more than a pool holds or a claim asks. Pro-rata sharing across
counterparties would be a ledger policy on top (pass claims one at a time).
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from rfq.contracts.events import GuaranteeLine, GuaranteeUse
from rfq.errors import ValidationError
from rfq.money import Micros


class ClaimRecovery(msgspec.Struct, frozen=True):
    """What one claim got back: from collateral, from each guarantor, and what is lost
    (integer micros, like every amount)."""

    claim: Micros
    collateral: Micros
    guarantees: tuple[GuaranteeUse, ...]
    unrecovered: Micros

    @property
    def guaranteed(self) -> Micros:
        return sum(use.amount for use in self.guarantees)


class Waterfall(msgspec.Struct, frozen=True):
    exposure: Micros
    collateral_applied: Micros
    guarantee_applied: Micros
    guarantees: tuple[GuaranteeUse, ...]
    shortfall: Micros
    unrecovered: Micros
    recovery_rate: float
    claims: tuple[ClaimRecovery, ...]


def _micros(value: object, what: str, where: str) -> Micros:
    if type(value) is not int or value < 0:
        raise ValidationError(f"{what} must be a whole number of micros >= 0", where=where)
    return value


def waterfall(
    claims: Sequence[Micros], collateral: Micros, lines: Sequence[GuaranteeLine]
) -> Waterfall:
    """Apply ``collateral`` then ``lines`` (in order) to ``claims`` (in order), all in
    integer micros: the sums are exact, so what the guarantors pay per claim adds up to
    what comes off their lines.

    ``shortfall`` is what the collateral left uncovered (what the guarantors were asked
    for); ``recovery_rate`` = (collateral + guarantees applied) / exposure, 1.0 when nothing
    was owed.
    """
    pool = _micros(collateral, "collateral", "collateral")
    left = [
        _micros(line.available, "a guarantee line", f"guarantees[{k}]")
        for k, line in enumerate(lines)
    ]
    out: list[ClaimRecovery] = []
    for i, claim in enumerate(claims):
        claim = _micros(claim, "a claim", f"claims[{i}]")
        from_collateral = min(pool, claim)
        pool -= from_collateral
        rest = claim - from_collateral
        uses: list[GuaranteeUse] = []
        for k, line in enumerate(lines):
            if rest <= 0:
                break
            paid = min(left[k], rest)
            if paid > 0:
                left[k] -= paid
                rest -= paid
                uses.append(GuaranteeUse(line.guarantor, paid))
        out.append(ClaimRecovery(claim, from_collateral, tuple(uses), rest))
    exposure = sum(rec.claim for rec in out)
    applied = sum(rec.collateral for rec in out)
    by_guarantor: dict[str, Micros] = {}
    for rec in out:
        for use in rec.guarantees:
            by_guarantor[use.guarantor] = by_guarantor.get(use.guarantor, 0) + use.amount
    guaranteed = sum(by_guarantor.values())
    order = list(dict.fromkeys(line.guarantor for line in lines))
    totals = tuple(GuaranteeUse(g, by_guarantor[g]) for g in order if g in by_guarantor)
    recovered = applied + guaranteed
    return Waterfall(
        exposure=exposure,
        collateral_applied=applied,
        guarantee_applied=guaranteed,
        guarantees=totals,
        shortfall=max(exposure - applied, 0),
        unrecovered=max(exposure - recovered, 0),
        recovery_rate=1.0 if exposure <= 0 else min(recovered / exposure, 1.0),
        claims=tuple(out),
    )
