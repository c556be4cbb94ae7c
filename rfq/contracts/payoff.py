"""Payoffs, one contract at a time: the engine's definition and the vectorised book's
reference. Each template's own payoff is its ``unit_payoff`` (``rfq.contracts.templates``);
this module is what every template shares.

Every figure is float64 computed in a fixed order so that every authority (and the numpy
columns in ``rfq.contracts.columns``) gets the same bits:

- level (settlement price) = ``w0*p0``, then ``+ w1*p1``, ... in leg order;
- per-unit payoff = ``level - fixed`` (swaps, forwards), ``max(level - K, 0)`` (call),
  ``max(K - level, 0)`` (put);
- value to the client = payoff x ``signed_size`` where ``signed_size`` = quantity x
  multiplier, negated when the client sells;
- an option's client P&L = ``(payoff - premium) x signed_size`` (one rounding, so
  ``max(S-K,0)*q*m - premium*q*m`` up to float noise);
- notional = ``|fixed_price| x (quantity x multiplier)``, with the strike as the price for an
  option without a fixed price; initial margin = rate x notional.

An average-price swap settles on the mean of the weighted fixings dated in its window. Before
that, its mark is ``(sum + level x r) / (count + r)``: the fixings so far with today's level
standing in for the ``r`` weekdays of the window still to fix.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence

from rfq.contracts.model import Contract
from rfq.contracts.templates import template_of
from rfq.instruments import Leg, Side


def size(contract: Contract) -> float:
    """quantity x multiplier."""
    return contract.terms.quantity * contract.terms.multiplier


def signed_size(contract: Contract) -> float:
    qm = size(contract)
    return qm if contract.terms.client_side == Side.BUY else -qm


def notional_price(contract: Contract) -> float:
    """The fixed price, or an option's strike when it has none (its premium is not a price
    level, and the strike is what the exposure scales with): the template's own rule."""
    return template_of(contract.terms).notional_price(contract)


def notional(contract: Contract) -> float:
    return abs(notional_price(contract)) * size(contract)


def initial_margin(contract: Contract) -> float:
    return contract.initial_margin_rate * notional(contract)


def premium_amount(contract: Contract) -> float:
    """The option premium in money (0 for other templates)."""
    option = contract.terms.option
    return 0.0 if option is None else option.premium * size(contract)


def level(legs: Sequence[Leg], prices: Mapping[str, float]) -> float:
    """Weighted sum of the legs' prices, in leg order."""
    acc = legs[0].weight * prices[legs[0].underlying]
    for leg in legs[1:]:
        acc = acc + leg.weight * prices[leg.underlying]
    return acc


def unit_payoff(contract: Contract, settlement: float) -> float:
    """Payoff per unit at this level, by the contract's template."""
    return template_of(contract.terms).unit_payoff(contract, settlement)


def client_value(contract: Contract, settlement: float) -> float:
    """What the contract is worth to the client at this level (premium already paid)."""
    return unit_payoff(contract, settlement) * signed_size(contract)


def client_pnl(contract: Contract, settlement: float) -> float:
    """The client's whole P&L if the contract settles at this level (premium included)."""
    payoff = unit_payoff(contract, settlement)
    option = contract.terms.option
    if option is not None:
        payoff = payoff - option.premium
    return payoff * signed_size(contract)


def weekdays(start: int, stop: int) -> int:
    """Mondays to Fridays among the date ordinals ``start <= d < stop`` (numpy's
    ``busday_count`` with no holidays, so the columns agree)."""
    if stop <= start:
        return 0
    full, extra = divmod(stop - start, 7)
    count = 5 * full
    first = (start - 1) % 7  # date.fromordinal(1) is a Monday
    for k in range(extra):
        if (first + k) % 7 < 5:
            count += 1
    return count


def remaining_days(contract: Contract, as_of: dt.date) -> int:
    """Weekdays of an averaging window strictly after ``as_of``."""
    averaging = contract.terms.averaging
    if averaging is None:
        return 0
    begin = max(as_of.toordinal() + 1, averaging.start.toordinal())
    return weekdays(begin, averaging.end.toordinal() + 1)


def average_estimate(avg_sum: float, avg_count: int, mark: float, remaining: int) -> float:
    den = avg_count + remaining
    if den == 0:
        return mark
    return (avg_sum + mark * remaining) / den


def variation_target(client_mtm: float, threshold: float) -> float:
    """Margin the dealer should have transferred to the client (negative: the client to the
    dealer): the exposure above the threshold."""
    excess = max(abs(client_mtm) - threshold, 0.0)
    return excess if client_mtm > 0 else -excess


def revalue(
    contract: Contract,
    prices: Mapping[str, float],
    as_of: dt.date,
    *,
    avg_sum: float = 0.0,
    avg_count: int = 0,
) -> tuple[float, float]:
    """(mark, client value) of one contract at the latest prices: the scalar revaluation."""
    mark = level(contract.terms.legs, prices)
    if template_of(contract.terms).averaging:
        mark = average_estimate(avg_sum, avg_count, mark, remaining_days(contract, as_of))
    return mark, client_value(contract, mark)


def reference_revalue(
    contract: Contract, history: Mapping[str, Mapping[dt.date, float]], as_of: dt.date
) -> tuple[float, float] | None:
    """Revalue from a plain fixing history, independently of the book's running state.

    Latest price of each leg on or before ``as_of``; for an average-price swap, the mean is
    rebuilt from every window date on which all legs fixed, in date order. None if a leg has
    no price yet.
    """
    latest: dict[str, float] = {}
    for leg in contract.terms.legs:
        dates = [d for d in history.get(leg.underlying, {}) if d <= as_of]
        if not dates:
            return None
        latest[leg.underlying] = history[leg.underlying][max(dates)]
    avg_sum, avg_count = 0.0, 0
    averaging = contract.terms.averaging
    if averaging is not None:
        days = sorted(
            set.intersection(*(set(history[leg.underlying]) for leg in contract.terms.legs))
        )
        for day in days:
            if averaging.start <= day <= min(averaging.end, as_of):
                fix = {leg.underlying: history[leg.underlying][day] for leg in contract.terms.legs}
                avg_sum = avg_sum + level(contract.terms.legs, fix)
                avg_count += 1
    return revalue(contract, latest, as_of, avg_sum=avg_sum, avg_count=avg_count)
