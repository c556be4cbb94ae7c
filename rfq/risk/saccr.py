"""SA-CCR: the Basel Committee's standardised approach for counterparty credit risk (BCBS 279).

``EAD = alpha x (RC + PFE)`` per netting set (paper formula 5), with ``alpha = 1.4``,
``PFE = multiplier x AddOn_aggregate`` (formula 7) and RC from formula 6. The add-on is the sum
over the five asset classes; each asset class aggregates *hedging sets* (IR: currency with three
maturity buckets, FX: currency pair, credit and equity: one set with a systematic and an
idiosyncratic part, commodity: energy / metals / agricultural / other with commodity types
inside). A trade enters its hedging set through its *effective notional contribution*
``delta x d x MF`` scaled by its supervisory factor:

- ``d``: adjusted notional. IR and credit: notional x supervisory duration; FX, equity and
  commodity: the notional as given (the foreign leg, or price x units, in reporting currency).
- ``MF``: maturity factor. Unmargined ``sqrt(min(M, 1))`` with M floored at 10 business days;
  margined ``1.5 x sqrt(MPOR / 250)``.
- ``delta``: +1 / -1 for a linear trade; for an option Black-Scholes N(d1) with the supervisory
  volatility of its asset class, signed by call/put and bought/sold.

Supervisory factors are applied per trade before aggregation; for IR and FX this is the same as
applying the (single) factor to the hedging set, and it lets a credit entity or commodity type mix
trades with different factors without a special case.

A margined netting set's EAD is capped at the EAD of the same set computed unmargined (BCBS 279,
footnote to paragraph 128; CRE52.1), so ``ead <= ead_unmargined`` always holds.

Everything here is pure and deterministic; ``compute_netting_set`` is the entry point the
regulator's monitor calls per bilateral netting set.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import msgspec

from rfq.errors import ValidationError
from rfq.instruments import AssetClass
from rfq.risk._decode import decode

ALPHA = 1.4
MULTIPLIER_FLOOR = 0.05
BUSINESS_DAYS_PER_YEAR = 250.0
MIN_MATURITY_YEARS = 10.0 / BUSINESS_DAYS_PER_YEAR
SUPERVISORY_DURATION_RATE = 0.05


# BCBS 279 Table 2: supervisory factors, correlations and option volatilities.
IR_FACTOR = 0.005
IR_VOLATILITY = 0.50
FX_FACTOR = 0.04
FX_VOLATILITY = 0.15
CREDIT_SINGLE_NAME_FACTORS: dict[str, float] = {
    "AAA": 0.0038,
    "AA": 0.0038,
    "A": 0.0042,
    "BBB": 0.0054,
    "BB": 0.0106,
    "B": 0.0160,
    "CCC": 0.0600,
}
CREDIT_INDEX_FACTORS: dict[str, float] = {"IG": 0.0038, "SG": 0.0106}
CREDIT_SINGLE_NAME_CORRELATION = 0.50
CREDIT_INDEX_CORRELATION = 0.80
CREDIT_SINGLE_NAME_VOLATILITY = 1.00
CREDIT_INDEX_VOLATILITY = 0.80
EQUITY_SINGLE_NAME_FACTOR = 0.32
EQUITY_INDEX_FACTOR = 0.20
EQUITY_SINGLE_NAME_CORRELATION = 0.50
EQUITY_INDEX_CORRELATION = 0.80
EQUITY_SINGLE_NAME_VOLATILITY = 1.20
EQUITY_INDEX_VOLATILITY = 0.75
COMMODITY_HEDGING_SETS = ("energy", "metals", "agricultural", "other")
COMMODITY_FACTOR = 0.18
COMMODITY_VOLATILITY = 0.70
ELECTRICITY = "electricity"
ELECTRICITY_FACTOR = 0.40
ELECTRICITY_VOLATILITY = 1.50
COMMODITY_CORRELATION = 0.40
# Correlation between IR maturity buckets: adjacent buckets 70%, buckets 1 and 3 30%.
IR_ADJACENT_BUCKET_CORRELATION = 0.70
IR_DISTANT_BUCKET_CORRELATION = 0.30


# ---------------------------------------------------------------------------------------------
# Input: the typed objects the calculator takes (and the CLI decodes JSON into).


class OptionSpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """An option's terms for its supervisory delta; ``expiry`` is years to the latest exercise."""

    type: Literal["call", "put"]
    bought: bool
    price: float
    strike: float
    expiry: float


class Trade(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One derivative in a netting set. Fields an asset class does not use may be left out.

    ``hedging_set``: IR currency, FX pair ("EUR/USD"), commodity set (energy|metals|agricultural|
    other). ``reference``: credit/equity entity or index, commodity type (crude_oil, electricity).
    ``rating``: credit single names AAA..CCC, indices IG or SG. ``start``/``end``/``maturity``
    are in years from today. Either ``delta`` (+1 long, -1 short) or ``option`` is given.
    """

    id: str
    asset_class: str
    notional: float | None = None
    mtm: float | None = None
    maturity: float | None = None
    hedging_set: str | None = None
    reference: str | None = None
    rating: str | None = None
    is_index: bool = False
    start: float | None = None
    end: float | None = None
    delta: float | None = None
    option: OptionSpec | None = None


class NettingSet(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Trades under one netting agreement, with their collateral terms.

    ``collateral`` is C: net collateral held after haircuts (negative if posted). A margined set
    also needs ``threshold``, ``mta``, ``nica`` and ``mpor_days`` (margin period of risk in
    business days).
    """

    id: str
    trades: tuple[Trade, ...] = ()
    margined: bool = False
    collateral: float = 0.0
    threshold: float | None = None
    mta: float | None = None
    nica: float | None = None
    mpor_days: float | None = None


class SaccrInput(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The ``botc risk saccr`` file."""

    netting_sets: tuple[NettingSet, ...]


# ---------------------------------------------------------------------------------------------
# Output.


class AddOns(msgspec.Struct, frozen=True):
    interest_rate: float
    fx: float
    credit: float
    equity: float
    commodity: float
    aggregate: float


class NettingSetResult(msgspec.Struct, frozen=True):
    """SA-CCR figures of one netting set.

    For a margined set ``rc``, ``pfe``, ``multiplier`` and ``addon`` are the margined figures and
    ``ead`` is ``min(margined EAD, ead_unmargined)``; ``capped`` says the cap bound.
    ``ead_unmargined`` is None for an unmargined set.
    """

    id: str
    margined: bool
    v: float
    collateral: float
    rc: float
    pfe: float
    multiplier: float
    addon: AddOns
    ead: float
    ead_unmargined: float | None = None
    capped: bool = False


# ---------------------------------------------------------------------------------------------
# The formulas, one function each.


def supervisory_duration(start: float, end: float) -> float:
    """SD = (exp(-0.05 S) - exp(-0.05 E)) / 0.05: IR and credit notionals scaled to duration."""
    r = SUPERVISORY_DURATION_RATE
    return (math.exp(-r * start) - math.exp(-r * end)) / r


def maturity_factor_unmargined(maturity_years: float) -> float:
    """MF = sqrt(min(M, 1) / 1), M floored at 10 business days: exposure grows up to one year."""
    m = max(maturity_years, MIN_MATURITY_YEARS)
    return math.sqrt(min(m, 1.0))


def maturity_factor_margined(mpor_days: float) -> float:
    """MF = 1.5 sqrt(MPOR / 250): a margined trade is exposed only over its margin period."""
    return 1.5 * math.sqrt(mpor_days / BUSINESS_DAYS_PER_YEAR)


def _normal_cdf(x: float) -> float:
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


def option_delta(
    kind: Literal["call", "put"],
    bought: bool,
    price: float,
    strike: float,
    expiry: float,
    volatility: float,
) -> float:
    """Supervisory delta of an option: +N(d1) bought call, -N(d1) sold call, -N(-d1) bought put,
    +N(-d1) sold put, with d1 = (ln(P/K) + sigma^2 T / 2) / (sigma sqrt(T))."""
    d1 = (math.log(price / strike) + 0.5 * volatility * volatility * expiry) / (
        volatility * math.sqrt(expiry)
    )
    if kind == "call":
        value = _normal_cdf(d1)
        return value if bought else -value
    value = _normal_cdf(-d1)
    return -value if bought else value


def ir_maturity_bucket(end: float) -> int:
    """IR bucket by end date: 1 under one year, 2 from one to five years, 3 over five years."""
    if end < 1.0:
        return 1
    if end <= 5.0:
        return 2
    return 3


def ir_effective_notional(d1: float, d2: float, d3: float) -> float:
    """Combine the three IR buckets with 70% correlation between neighbours and 30% across."""
    a = 2.0 * IR_ADJACENT_BUCKET_CORRELATION
    b = 2.0 * IR_DISTANT_BUCKET_CORRELATION
    value = d1 * d1 + d2 * d2 + d3 * d3 + a * d1 * d2 + a * d2 * d3 + b * d1 * d3
    return math.sqrt(max(value, 0.0))


def systematic_idiosyncratic_addon(entities: Iterable[tuple[float, float]]) -> float:
    """Credit/equity: sqrt((sum rho_k A_k)^2 + sum (1 - rho_k^2) A_k^2) over (A_k, rho_k).

    Entities hedge each other only through their common (systematic) factor.
    """
    systematic = 0.0
    idiosyncratic = 0.0
    for addon, rho in entities:
        systematic += rho * addon
        idiosyncratic += (1.0 - rho * rho) * addon * addon
    return math.sqrt(systematic * systematic + idiosyncratic)


def commodity_hedging_set_addon(type_addons: Iterable[float]) -> float:
    """One commodity hedging set: types hedge each other through a 40% correlation."""
    rho = COMMODITY_CORRELATION
    return systematic_idiosyncratic_addon((addon, rho) for addon in type_addons)


def pfe_multiplier(v_minus_c: float, addon_aggregate: float) -> float:
    """min(1, 5% + 95% exp((V - C) / (2 x 95% x AddOn))): over-collateralisation lowers PFE,
    never below 5% of the add-on."""
    floor = MULTIPLIER_FLOOR
    if addon_aggregate <= 0.0:
        return 1.0 if v_minus_c >= 0.0 else floor
    exponent = v_minus_c / (2.0 * (1.0 - floor) * addon_aggregate)
    return min(1.0, floor + (1.0 - floor) * math.exp(min(exponent, 0.0)))


def replacement_cost_unmargined(v: float, collateral: float) -> float:
    """RC = max(V - C, 0): what is lost today if the counterparty defaults."""
    return max(v - collateral, 0.0)


def replacement_cost_margined(
    v: float, collateral: float, threshold: float, mta: float, nica: float
) -> float:
    """RC = max(V - C, TH + MTA - NICA, 0): also the largest exposure the margin agreement lets
    build up before a call."""
    return max(v - collateral, threshold + mta - nica, 0.0)


def ead(rc: float, pfe: float) -> float:
    """EAD = alpha x (RC + PFE), alpha = 1.4 (paper formula 5)."""
    return ALPHA * (rc + pfe)


# ---------------------------------------------------------------------------------------------
# Validation: each trade becomes one position in one risk factor.


@dataclass(frozen=True, slots=True)
class _Position:
    """A trade reduced to what aggregation needs: ``amount`` is delta x d x supervisory factor."""

    asset_class: AssetClass
    hedging_set: str
    risk_factor: str
    correlation: float
    amount: float
    mf_unmargined: float


_FX_PAIR = re.compile(r"^\s*([^/\s]+)\s*/\s*([^/\s]+)\s*$")


def _where(ns: NettingSet, trade: Trade | None = None) -> str:
    if trade is None:
        return f"netting set {ns.id!r}"
    return f"netting set {ns.id!r}, trade {trade.id!r}"


def _need(value: float | None, name: str, where: str) -> float:
    if value is None:
        raise ValidationError(f"missing field {name!r}", where=where)
    if not math.isfinite(value):
        raise ValidationError(f"{name} must be a finite number, not {value!r}", where=where)
    return value


def _need_text(value: str | None, name: str, where: str) -> str:
    if value is None or not value.strip():
        raise ValidationError(f"missing field {name!r}", where=where)
    return value.strip()


def _position(ns: NettingSet, trade: Trade) -> _Position:
    where = _where(ns, trade)
    try:
        asset_class = AssetClass(trade.asset_class)
    except ValueError:
        known = ", ".join(a.value for a in AssetClass)
        raise ValidationError(
            f"unknown asset class {trade.asset_class!r} (expected one of {known})", where=where
        ) from None
    notional = _need(trade.notional, "notional", where)
    if notional < 0:
        raise ValidationError(f"notional must not be negative, got {notional}", where=where)
    _need(trade.mtm, "mtm", where)
    maturity = _need(trade.maturity, "maturity", where)
    if maturity < 0:
        raise ValidationError(f"maturity must not be negative, got {maturity}", where=where)

    if asset_class is AssetClass.INTEREST_RATE:
        hedging_set = _need_text(trade.hedging_set, "hedging_set", where).upper()
        start, end = _start_end(trade, where)
        factor, volatility, correlation = IR_FACTOR, IR_VOLATILITY, 0.0
        risk_factor = str(ir_maturity_bucket(end))
        adjusted = notional * supervisory_duration(start, end)
        sign = 1.0
    elif asset_class is AssetClass.FX:
        hedging_set, sign = _fx_pair(_need_text(trade.hedging_set, "hedging_set", where), where)
        factor, volatility, correlation = FX_FACTOR, FX_VOLATILITY, 0.0
        risk_factor = ""
        adjusted = notional
    elif asset_class is AssetClass.CREDIT:
        hedging_set = ""
        reference = _need_text(trade.reference, "reference", where)
        rating = _need_text(trade.rating, "rating", where).upper()
        factors = CREDIT_INDEX_FACTORS if trade.is_index else CREDIT_SINGLE_NAME_FACTORS
        if rating not in factors:
            kind = "a credit index" if trade.is_index else "a single name"
            raise ValidationError(
                f"rating {trade.rating!r} is not valid for {kind} "
                f"(expected one of {', '.join(factors)})",
                where=where,
            )
        factor = factors[rating]
        if trade.is_index:
            volatility, correlation = CREDIT_INDEX_VOLATILITY, CREDIT_INDEX_CORRELATION
        else:
            volatility, correlation = CREDIT_SINGLE_NAME_VOLATILITY, CREDIT_SINGLE_NAME_CORRELATION
        start, end = _start_end(trade, where)
        risk_factor = f"{'index' if trade.is_index else 'name'}:{reference}"
        adjusted = notional * supervisory_duration(start, end)
        sign = 1.0
    elif asset_class is AssetClass.EQUITY:
        hedging_set = ""
        reference = _need_text(trade.reference, "reference", where)
        if trade.is_index:
            factor, volatility = EQUITY_INDEX_FACTOR, EQUITY_INDEX_VOLATILITY
            correlation = EQUITY_INDEX_CORRELATION
        else:
            factor, volatility = EQUITY_SINGLE_NAME_FACTOR, EQUITY_SINGLE_NAME_VOLATILITY
            correlation = EQUITY_SINGLE_NAME_CORRELATION
        risk_factor = f"{'index' if trade.is_index else 'name'}:{reference}"
        adjusted = notional
        sign = 1.0
    else:
        hedging_set = _need_text(trade.hedging_set, "hedging_set", where).lower()
        if hedging_set not in COMMODITY_HEDGING_SETS:
            raise ValidationError(
                f"unknown commodity hedging set {trade.hedging_set!r} "
                f"(expected one of {', '.join(COMMODITY_HEDGING_SETS)})",
                where=where,
            )
        risk_factor = _need_text(trade.reference, "reference", where).lower()
        if risk_factor == ELECTRICITY:
            if hedging_set != "energy":
                raise ValidationError("electricity belongs to the energy hedging set", where=where)
            factor, volatility = ELECTRICITY_FACTOR, ELECTRICITY_VOLATILITY
        else:
            factor, volatility = COMMODITY_FACTOR, COMMODITY_VOLATILITY
        correlation = COMMODITY_CORRELATION
        adjusted = notional
        sign = 1.0

    delta = sign * _delta(trade, volatility, where)
    return _Position(
        asset_class=asset_class,
        hedging_set=hedging_set,
        risk_factor=risk_factor,
        correlation=correlation,
        amount=delta * adjusted * factor,
        mf_unmargined=maturity_factor_unmargined(maturity),
    )


def _start_end(trade: Trade, where: str) -> tuple[float, float]:
    start = _need(trade.start, "start", where)
    end = _need(trade.end, "end", where)
    if start < 0:
        raise ValidationError(f"start must not be negative, got {start}", where=where)
    if end <= start:
        raise ValidationError(f"end ({end}) must be after start ({start})", where=where)
    return start, end


def _fx_pair(pair: str, where: str) -> tuple[str, float]:
    """Canonical hedging set of a pair and the sign that maps the trade onto it: long EUR/USD is
    short USD/EUR, so both land in one hedging set."""
    match = _FX_PAIR.match(pair)
    if match is None or match.group(1).upper() == match.group(2).upper():
        raise ValidationError(
            f"FX hedging set must be a pair of two currencies such as 'EUR/USD', not {pair!r}",
            where=where,
        )
    base, quote = match.group(1).upper(), match.group(2).upper()
    if base <= quote:
        return f"{base}/{quote}", 1.0
    return f"{quote}/{base}", -1.0


def _delta(trade: Trade, volatility: float, where: str) -> float:
    if trade.option is not None and trade.delta is not None:
        raise ValidationError("give either 'delta' or 'option', not both", where=where)
    if trade.option is None:
        if trade.delta is None:
            raise ValidationError(
                "missing field 'delta' (+1 or -1 for a linear trade) or 'option'", where=where
            )
        if trade.delta not in (1.0, -1.0):
            raise ValidationError(
                f"delta of a linear trade must be +1 or -1, got {trade.delta}", where=where
            )
        return trade.delta
    option = trade.option
    for name in ("price", "strike", "expiry"):
        value = getattr(option, name)
        if not math.isfinite(value) or value <= 0:
            raise ValidationError(f"option {name} must be positive, got {value}", where=where)
    return option_delta(
        option.type, option.bought, option.price, option.strike, option.expiry, volatility
    )


# ---------------------------------------------------------------------------------------------
# Aggregation.


def _addons(positions: Sequence[_Position], margined_mf: float | None) -> AddOns:
    """Aggregate trade positions into the five asset-class add-ons.

    ``margined_mf`` replaces every trade's unmargined maturity factor when given.
    """
    ir: dict[str, list[float]] = {}
    fx: dict[str, float] = {}
    credit: dict[str, list[float]] = {}
    equity: dict[str, list[float]] = {}
    commodity: dict[str, dict[str, float]] = {}
    for p in positions:
        value = p.amount * (p.mf_unmargined if margined_mf is None else margined_mf)
        if p.asset_class is AssetClass.INTEREST_RATE:
            buckets = ir.setdefault(p.hedging_set, [0.0, 0.0, 0.0])
            buckets[int(p.risk_factor) - 1] += value
        elif p.asset_class is AssetClass.FX:
            fx[p.hedging_set] = fx.get(p.hedging_set, 0.0) + value
        elif p.asset_class is AssetClass.CREDIT:
            credit.setdefault(p.risk_factor, [0.0, p.correlation])[0] += value
        elif p.asset_class is AssetClass.EQUITY:
            equity.setdefault(p.risk_factor, [0.0, p.correlation])[0] += value
        else:
            types = commodity.setdefault(p.hedging_set, {})
            types[p.risk_factor] = types.get(p.risk_factor, 0.0) + value
    addon_ir = math.fsum(ir_effective_notional(*buckets) for buckets in ir.values())
    addon_fx = math.fsum(abs(value) for value in fx.values())
    addon_credit = systematic_idiosyncratic_addon((a, rho) for a, rho in credit.values())
    addon_equity = systematic_idiosyncratic_addon((a, rho) for a, rho in equity.values())
    addon_commodity = math.fsum(commodity_hedging_set_addon(t.values()) for t in commodity.values())
    return AddOns(
        interest_rate=addon_ir,
        fx=addon_fx,
        credit=addon_credit,
        equity=addon_equity,
        commodity=addon_commodity,
        aggregate=addon_ir + addon_fx + addon_credit + addon_equity + addon_commodity,
    )


def compute_netting_set(ns: NettingSet) -> NettingSetResult:
    """SA-CCR EAD of one netting set; a ``ValidationError`` names the set or trade at fault."""
    where = _where(ns)
    collateral = _need(ns.collateral, "collateral", where)
    seen: set[str] = set()
    positions: list[_Position] = []
    v = 0.0
    for trade in ns.trades:
        if trade.id in seen:
            raise ValidationError("duplicate trade id", where=_where(ns, trade))
        seen.add(trade.id)
        positions.append(_position(ns, trade))
        v += trade.mtm or 0.0

    unmargined_addon = _addons(positions, None)
    unmargined_multiplier = pfe_multiplier(v - collateral, unmargined_addon.aggregate)
    unmargined_rc = replacement_cost_unmargined(v, collateral)
    unmargined_pfe = unmargined_multiplier * unmargined_addon.aggregate
    unmargined_ead = ead(unmargined_rc, unmargined_pfe)
    if not ns.margined:
        return NettingSetResult(
            id=ns.id,
            margined=False,
            v=v,
            collateral=collateral,
            rc=unmargined_rc,
            pfe=unmargined_pfe,
            multiplier=unmargined_multiplier,
            addon=unmargined_addon,
            ead=unmargined_ead,
        )

    threshold = _non_negative(ns.threshold, "threshold", where)
    mta = _non_negative(ns.mta, "mta", where)
    nica = _need(ns.nica, "nica", where)
    mpor_days = _need(ns.mpor_days, "mpor_days", where)
    if mpor_days <= 0:
        raise ValidationError(f"mpor_days must be positive, got {mpor_days}", where=where)
    addon = _addons(positions, maturity_factor_margined(mpor_days))
    multiplier = pfe_multiplier(v - collateral, addon.aggregate)
    rc = replacement_cost_margined(v, collateral, threshold, mta, nica)
    pfe = multiplier * addon.aggregate
    margined_ead = ead(rc, pfe)
    return NettingSetResult(
        id=ns.id,
        margined=True,
        v=v,
        collateral=collateral,
        rc=rc,
        pfe=pfe,
        multiplier=multiplier,
        addon=addon,
        ead=min(margined_ead, unmargined_ead),
        ead_unmargined=unmargined_ead,
        capped=unmargined_ead < margined_ead,
    )


def _non_negative(value: float | None, name: str, where: str) -> float:
    number = _need(value, name, where)
    if number < 0:
        raise ValidationError(f"{name} must not be negative, got {number}", where=where)
    return number


def compute_netting_sets(netting_sets: Iterable[NettingSet]) -> tuple[NettingSetResult, ...]:
    """SA-CCR for several netting sets; ids must be unique so results can be told apart."""
    seen: set[str] = set()
    results: list[NettingSetResult] = []
    for ns in netting_sets:
        if ns.id in seen:
            raise ValidationError("duplicate netting set id", where=_where(ns))
        seen.add(ns.id)
        results.append(compute_netting_set(ns))
    return tuple(results)


# ---------------------------------------------------------------------------------------------
# Decoding the CLI file.


def _name_element(key: str, element: Any, index: int) -> str | None:
    label = {"netting_sets": "netting set", "trades": "trade"}.get(key)
    if label is not None and isinstance(element, dict) and isinstance(element.get("id"), str):
        return f"{label} {element['id']!r}"
    if label is not None:
        return f"{label} #{index + 1}"
    return None


def decode_saccr_input(raw: bytes) -> SaccrInput:
    """Decode the ``botc risk saccr`` JSON; unknown fields are refused so typos surface."""
    return decode(raw, SaccrInput, _name_element)
