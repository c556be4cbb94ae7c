"""SA-CCR of bilateral netting sets from numpy columns of trade positions.

Both the whole-market monitor (``rfq.risk.monitor.assess``) and the incremental one compute a
(client, dealer) netting set here. A live contract of a built-in template becomes one row per
SA-CCR trade from the client's side (the dealer's side is its negation: the same notional, the
opposite delta and value), holding what does not change over its life (underlying, weight,
size, side, maturity, option terms, hedging set and risk factor) once. A valuation (the prices,
the business date) turns the rows of any set of netting pairs into positions, add-ons and EADs
in a few array operations: a fixing block re-values a hundred thousand contracts at once, a
block of trades only the pairs it touched.

The figures are ``rfq.risk.saccr.compute_netting_set``'s to rounding (a test holds them within
1e-9). Sums run in a canonical order (a pair's contracts by id, risk factors by key) and every
element-wise step is the same whether one pair or all are valued, so a figure never depends on
the order contracts arrived in, nor on which other pairs were valued with it.

A contract the columns cannot express (a template with its own SA-CCR mapping, an asset class
other than commodity or equity, an option on several legs or with a strike at or below zero)
is refused by ``add``: its netting pair goes to the scalar path (``pair_exposures``).
"""

from __future__ import annotations

import bisect
import datetime as dt
import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy.special import ndtr

from rfq.contracts.model import ContractView
from rfq.contracts.templates import template_of
from rfq.contracts.templates.base import (
    DAYS_PER_YEAR,
    MIN_OPTION_EXPIRY_YEARS,
    LinearTemplate,
    SaccrView,
    placement_of,
)
from rfq.contracts.templates.european_option import EuropeanOption
from rfq.instruments import Side
from rfq.risk.saccr import (
    ALPHA,
    COMMODITY_CORRELATION,
    COMMODITY_FACTOR,
    COMMODITY_HEDGING_SETS,
    COMMODITY_VOLATILITY,
    ELECTRICITY,
    ELECTRICITY_FACTOR,
    ELECTRICITY_VOLATILITY,
    EQUITY_INDEX_CORRELATION,
    EQUITY_INDEX_FACTOR,
    EQUITY_INDEX_VOLATILITY,
    EQUITY_SINGLE_NAME_CORRELATION,
    EQUITY_SINGLE_NAME_FACTOR,
    EQUITY_SINGLE_NAME_VOLATILITY,
    MIN_MATURITY_YEARS,
    MULTIPLIER_FLOOR,
    AddOns,
    NettingSetResult,
    maturity_factor_margined,
)

Pair = tuple[str, str]
F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]

LINEAR, CALL, PUT = 0, 1, 2
EQUITY_SET = -1
"""The hedging-set index of an equity risk factor (commodity sets are 0..3)."""

_COLUMNS: dict[str, Any] = {
    "underlying": np.int64,
    "weight": np.float64,
    "size": np.float64,
    "fallback": np.float64,
    "maturity": np.int64,
    "long": np.bool_,
    "kind": np.int8,
    "strike": np.float64,
    "group": np.int64,
    "mtm": np.float64,
}


@dataclass(frozen=True, slots=True)
class _Group:
    """One SA-CCR risk factor: its asset class's hedging set, correlation, factor, volatility."""

    key: str
    hedging_set: int
    correlation: float
    factor: float
    volatility: float


@dataclass(slots=True)
class _PairOrder:
    """A pair's contracts in id order, each one's row slots, and all of them in that order
    as one array (None: re-derive it)."""

    ids: list[str]
    slots: list[list[int]]
    rows: I64 | None


_STATIC = tuple(name for name in _COLUMNS if name != "mtm")


@dataclass(frozen=True, slots=True)
class PairTerms:
    """What a netting pair's collateral needs besides its trades (``pair_exposures``)."""

    margined: bool
    threshold: float
    mta: float
    vm_to_client: float
    cash_im: float


def _group_of(underlying: str) -> _Group | None:
    """The risk factor ``rfq.risk.saccr._position`` puts a trade on this underlying in."""
    placement = placement_of(underlying)
    if placement.asset_class == "commodity":
        hedging = (placement.hedging_set or "").strip().lower()
        factor = placement.reference.strip().lower()
        if hedging not in COMMODITY_HEDGING_SETS or not factor:
            return None
        if factor == ELECTRICITY:
            if hedging != "energy":
                return None
            scale, vol = ELECTRICITY_FACTOR, ELECTRICITY_VOLATILITY
        else:
            scale, vol = COMMODITY_FACTOR, COMMODITY_VOLATILITY
        hs = COMMODITY_HEDGING_SETS.index(hedging)
        return _Group(f"commodity|{hedging}|{factor}", hs, COMMODITY_CORRELATION, scale, vol)
    if placement.asset_class == "equity":
        reference = placement.reference.strip()
        if not reference:
            return None
        if placement.is_index:
            key = f"equity|index:{reference}"
            return _Group(
                key,
                EQUITY_SET,
                EQUITY_INDEX_CORRELATION,
                EQUITY_INDEX_FACTOR,
                EQUITY_INDEX_VOLATILITY,
            )
        return _Group(
            f"equity|name:{reference}",
            EQUITY_SET,
            EQUITY_SINGLE_NAME_CORRELATION,
            EQUITY_SINGLE_NAME_FACTOR,
            EQUITY_SINGLE_NAME_VOLATILITY,
        )
    return None


class PositionTable:
    """Rows of SA-CCR trades of live contracts, by netting pair; ``evaluate`` values pairs."""

    def __init__(self) -> None:
        self._cols: dict[str, np.ndarray[Any, Any]] = {
            name: np.zeros(1024, dtype) for name, dtype in _COLUMNS.items()
        }
        self._high = 0
        self._free: list[int] = []
        self._pending: list[tuple[int, dict[str, Any]]] = []
        self._slots: dict[str, list[int]] = {}
        self._pair_of: dict[str, Pair] = {}
        self._pairs: dict[Pair, _PairOrder] = {}
        self._underlyings: dict[str, int] = {}
        self._groups: dict[str, int] = {}
        self._group_list: list[_Group] = []
        self._group_cache: dict[str, _Group | None] = {}
        self._group_arrays: tuple[F64, F64, F64, list[tuple[int, int, float]]] | None = None

    def __contains__(self, contract_id: object) -> bool:
        return contract_id in self._slots

    # -- rows ------------------------------------------------------------------------------

    def add(self, view: ContractView) -> bool:
        """Hold the contract's rows (replacing any it had); False if it cannot be expressed."""
        cid = view.contract.id
        if cid in self._slots:
            self.set_mtm(cid, view.client_mtm)
            return True
        rows = self._rows_of(view)
        if rows is None:
            return False
        pair = (view.contract.client, view.contract.dealer)
        slots = [self._slot() for _ in rows]
        self._pending.extend(zip(slots, rows, strict=True))
        self._cols["mtm"][slots] = 0.0  # a slot taken again still holds its old value
        self._slots[cid] = slots
        self._pair_of[cid] = pair
        order = self._pairs.get(pair)
        if order is None:
            order = self._pairs[pair] = _PairOrder([], [], None)
        i = bisect.bisect_left(order.ids, cid)
        order.ids.insert(i, cid)
        order.slots.insert(i, slots)
        order.rows = None
        self.set_mtm(cid, view.client_mtm)
        return True

    def set_mtm(self, contract_id: str, client_mtm: float | None) -> None:
        """The contract's value to the client now (carried on its first trade, 0 unpriced)."""
        self._cols["mtm"][self._slots[contract_id][0]] = 0.0 if client_mtm is None else client_mtm

    def remove(self, contract_id: str) -> None:
        slots = self._slots.pop(contract_id, None)
        if slots is None:
            return
        pair = self._pair_of.pop(contract_id)
        order = self._pairs[pair]
        i = bisect.bisect_left(order.ids, contract_id)
        del order.ids[i], order.slots[i]
        order.rows = None
        if not order.ids:
            del self._pairs[pair]
        self._free.extend(slots)

    def _slot(self) -> int:
        if self._free:
            return self._free.pop()
        if self._high == len(self._cols["mtm"]):
            for name, column in self._cols.items():
                grown = np.zeros(2 * len(column), column.dtype)
                grown[: len(column)] = column
                self._cols[name] = grown
        self._high += 1
        return self._high - 1

    def _rows_of(self, view: ContractView) -> list[dict[str, Any]] | None:
        contract = view.contract
        terms = contract.terms
        template = template_of(terms)
        mapping = type(template).saccr_trades
        if mapping is LinearTemplate.saccr_trades:
            kind = LINEAR
        elif mapping is EuropeanOption.saccr_trades and terms.option is not None:
            if len(terms.legs) != 1 or not math.isfinite(terms.option.strike):
                return None
            if terms.option.strike <= 0:
                return None
            kind = CALL if terms.option.type == "call" else PUT
        else:
            return None
        size = terms.quantity * terms.multiplier
        long = terms.client_side == Side.BUY
        if not math.isfinite(size) or size < 0:
            return None
        unpriced = SaccrView(view, long, size, 0.0, 0.0, {})
        rows = []
        for leg in terms.legs:
            group = self._group_index(leg.underlying)
            if group is None or not math.isfinite(leg.weight):
                return None
            rows.append(
                {
                    "underlying": self._underlying_index(leg.underlying),
                    "weight": leg.weight,
                    "size": size,
                    "fallback": unpriced.leg_price(leg.underlying),
                    "maturity": terms.maturity.toordinal(),
                    "long": long,
                    "kind": kind,
                    "strike": terms.option.strike if terms.option is not None else 0.0,
                    "group": group,
                }
            )
        return rows

    def _underlying_index(self, underlying: str) -> int:
        return self._underlyings.setdefault(underlying, len(self._underlyings))

    def _group_index(self, underlying: str) -> int | None:
        if underlying not in self._group_cache:
            self._group_cache[underlying] = _group_of(underlying)
        group = self._group_cache[underlying]
        if group is None:
            return None
        index = self._groups.get(group.key)
        if index is None:
            index = self._groups[group.key] = len(self._group_list)
            self._group_list.append(group)
            self._group_arrays = None
        return index

    def _rows(self, pair: Pair) -> I64:
        """The pair's row slots, its contracts in id order (each contract's legs in order)."""
        order = self._pairs[pair]
        if order.rows is None:
            order.rows = np.fromiter(itertools.chain.from_iterable(order.slots), np.int64)
        return order.rows

    def _flush(self) -> None:
        """Write the rows added since the last valuation into the columns, column by column."""
        latest = dict(self._pending)  # a slot freed and taken again: its newest row
        self._pending = []
        if not latest:
            return
        slots = np.fromiter(latest, np.int64, len(latest))
        for name in _STATIC:
            self._cols[name][slots] = [row[name] for row in latest.values()]

    def _groups_arrays(self) -> tuple[F64, F64, F64, list[tuple[int, int, float]]]:
        if self._group_arrays is None:
            groups = self._group_list
            self._group_arrays = (
                np.array([g.factor for g in groups], np.float64),
                np.array([g.volatility for g in groups], np.float64),
                np.array([g.correlation for g in groups], np.float64),
                [
                    (self._groups[g.key], g.hedging_set, g.correlation)
                    for g in sorted(groups, key=lambda g: g.key)
                ],
            )
        return self._group_arrays

    # -- valuation -------------------------------------------------------------------------

    def evaluate(
        self,
        pairs: Sequence[Pair],
        terms: Sequence[PairTerms],
        prices: Mapping[str, float],
        as_of: dt.date,
        mpor_days: float,
    ) -> list[tuple[NettingSetResult, NettingSetResult] | None]:
        """Each pair's SA-CCR from the dealer's side then the client's (None where a figure
        came out non-finite: the scalar path then says what is wrong)."""
        n = len(pairs)
        if n == 0:
            return []
        self._flush()
        parts = [self._rows(pair) for pair in pairs]
        rows = np.concatenate(parts)
        local = np.repeat(np.arange(n), [len(p) for p in parts])
        factor, volatility, _, order = self._groups_arrays()
        cols = self._cols
        known = np.full(len(self._underlyings), np.nan)
        for underlying, index in self._underlyings.items():
            price = prices.get(underlying)
            if price is not None:
                known[index] = price
        with np.errstate(all="ignore"):
            given = known[cols["underlying"][rows]]
            level_price = np.where(np.isnan(given), cols["fallback"][rows], given)
            days = cols["maturity"][rows] - as_of.toordinal()
            years = np.maximum(days, 0) / DAYS_PER_YEAR
            mf = np.sqrt(np.minimum(np.maximum(years, MIN_MATURITY_YEARS), 1.0))
            weight, size = cols["weight"][rows], cols["size"][rows]
            long, kind = cols["long"][rows], cols["kind"][rows]
            group = cols["group"][rows]
            sign = np.where(long, 1.0, -1.0)
            level = weight * level_price
            notional = np.abs(level) * size
            linear_delta = np.where(weight > 0, sign, -sign)
            expiry = np.maximum(years, MIN_OPTION_EXPIRY_YEARS)
            vol = volatility[group]
            d1 = (np.log(level / cols["strike"][rows]) + 0.5 * vol * vol * expiry) / (
                vol * np.sqrt(expiry)
            )
            call = kind == CALL
            cdf = ndtr(np.where(call, d1, -d1))
            option_delta = np.where(call, np.where(long, cdf, -cdf), np.where(long, -cdf, cdf))
            deep = np.where(call, sign, -sign)
            delta = np.where(kind == LINEAR, linear_delta, np.where(level > 0, option_delta, deep))
            amount = delta * notional * factor[group]
            width = len(self._group_list)
            key = local * width + group
            mf_margined = maturity_factor_margined(mpor_days)
            unmargined = self._addons(_sums(key, amount * mf, n * width), n, order)
            margined = self._addons(_sums(key, amount * mf_margined, n * width), n, order)
            value = _sums(local, cols["mtm"][rows], n)
            results = self._netting_sets(pairs, terms, value, unmargined, margined)
        return results

    @staticmethod
    def _addons(sums: F64, n: int, order: list[tuple[int, int, float]]) -> tuple[F64, F64]:
        """(equity, commodity) add-ons per pair from the per-risk-factor sums."""
        width = len(sums) // n if n else 0
        by_factor = sums.reshape(n, width)
        eq_sys, eq_idio = np.zeros(n), np.zeros(n)
        hs_sys = [np.zeros(n) for _ in COMMODITY_HEDGING_SETS]
        hs_idio = [np.zeros(n) for _ in COMMODITY_HEDGING_SETS]
        for index, hedging, rho in order:
            addon = by_factor[:, index]
            if hedging == EQUITY_SET:
                eq_sys += rho * addon
                eq_idio += (1.0 - rho * rho) * addon * addon
            else:
                hs_sys[hedging] += rho * addon
                hs_idio[hedging] += (1.0 - rho * rho) * addon * addon
        equity = np.sqrt(eq_sys * eq_sys + eq_idio)
        commodity = np.zeros(n)
        for s, i in zip(hs_sys, hs_idio, strict=True):
            commodity += np.sqrt(s * s + i)
        return equity, commodity

    @staticmethod
    def _netting_sets(
        pairs: Sequence[Pair],
        terms: Sequence[PairTerms],
        value: F64,
        unmargined: tuple[F64, F64],
        margined: tuple[F64, F64],
    ) -> list[tuple[NettingSetResult, NettingSetResult] | None]:
        vm = np.array([t.vm_to_client for t in terms])
        cash = np.array([t.cash_im for t in terms])
        threshold = np.array([t.threshold for t in terms])
        mta = np.array([t.mta for t in terms])
        add_u = 0.0 + unmargined[0] + unmargined[1]
        add_m = 0.0 + margined[0] + margined[1]
        sides = []
        # the dealer's side (NICA: the client's cash margin), then the client's
        for v, collateral, nica in ((-value, -vm + cash, cash), (value, vm + 0.0, 0.0 * cash)):
            mult_u = _multiplier(v - collateral, add_u)
            rc_u = np.maximum(v - collateral, 0.0)
            pfe_u = mult_u * add_u
            ead_u = ALPHA * (rc_u + pfe_u)
            mult_m = _multiplier(v - collateral, add_m)
            rc_m = np.maximum(np.maximum(v - collateral, threshold + mta - nica), 0.0)
            pfe_m = mult_m * add_m
            ead_m = ALPHA * (rc_m + pfe_m)
            sides.append(
                [
                    a.tolist()
                    for a in (v, collateral, rc_u, pfe_u, mult_u, ead_u, rc_m, pfe_m, mult_m, ead_m)
                ]
            )
        addons_u = [a.tolist() for a in (*unmargined, add_u)]
        addons_m = [a.tolist() for a in (*margined, add_m)]
        out: list[tuple[NettingSetResult, NettingSetResult] | None] = []
        for i, ((client, dealer), t) in enumerate(zip(pairs, terms, strict=True)):
            pair_sides = []
            for side, creditor in zip(sides, (dealer, client), strict=True):
                v, c, rc_u, pfe_u, mult_u, ead_u, rc_m, pfe_m, mult_m, ead_m = (
                    column[i] for column in side
                )
                ns_id = f"{client}|{dealer}>{creditor}"
                if not t.margined:
                    pair_sides.append(
                        NettingSetResult(
                            ns_id, False, v, c, rc_u, pfe_u, mult_u, _addons(addons_u, i), ead_u
                        )
                    )
                    continue
                pair_sides.append(
                    NettingSetResult(
                        ns_id,
                        True,
                        v,
                        c,
                        rc_m,
                        pfe_m,
                        mult_m,
                        _addons(addons_m, i),
                        min(ead_m, ead_u),
                        ead_unmargined=ead_u,
                        capped=ead_u < ead_m,
                    )
                )
            dealer_side, client_side = pair_sides
            finite = all(math.isfinite(s.ead) for s in pair_sides)
            out.append((dealer_side, client_side) if finite else None)
        return out


def _sums(bins: I64, weights: F64, length: int) -> F64:
    """Per bin, its weights added in array order (``np.bincount``: sequential, so canonical
    when the rows are)."""
    return np.bincount(bins, weights, length).astype(np.float64)


def _addons(columns: list[list[float]], i: int) -> AddOns:
    equity, commodity, aggregate = columns[0][i], columns[1][i], columns[2][i]
    return AddOns(0.0, 0.0, 0.0, equity, commodity, aggregate)


def _multiplier(v_minus_c: F64, addon: F64) -> F64:
    """``rfq.risk.saccr.pfe_multiplier`` element-wise."""
    floor = MULTIPLIER_FLOOR
    with np.errstate(all="ignore"):
        exponent = v_minus_c / (2.0 * (1.0 - floor) * addon)
        scaled = np.minimum(1.0, floor + (1.0 - floor) * np.exp(np.minimum(exponent, 0.0)))
    return np.where(addon <= 0.0, np.where(v_minus_c >= 0.0, 1.0, floor), scaled)
