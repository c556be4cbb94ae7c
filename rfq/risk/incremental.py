"""The risk monitor kept between blocks: a block re-computes only what it touched.

``assess`` of ``rfq.risk.monitor`` starts from the whole market each time: every live
contract's SA-CCR trades, every netting set, the CCR table and the exposure network. A block
changes a few contracts (a trade opens one, a confirmation moves one's cash margin, a maturity
ends one); only a fixing marks them all. ``IncrementalMonitor`` holds the live contracts by
(client, dealer) netting pair as rows of SA-CCR positions (``rfq.risk.positions``), each pair's
margin terms and collateral as exact running sums, its two directed exposures, and per
institution its EAD as a debtor and its CCR row. It re-values a pair only when one of its
contracts or its cash margin changed, a price one of its underlyings has moved, or the business
date moved; the dirty pairs are valued together in a few array operations (a fixing: all of
them), and only the rows of the institutions in them are re-derived. The exposure network is
built when a cascade or a what-if first asks for it. Its assessment is the one ``assess`` gives
for the same contracts, to the bit (a property test holds them equal); prices follow
``market_prices``: live marks first, the stale marks of ended contracts only where no live
contract prices an underlying.
"""

from __future__ import annotations

import bisect
import datetime as dt
import math
from collections import Counter
from collections.abc import Collection, Iterable, Mapping
from typing import Any

from rfq.contracts.model import ContractView, PaymentStatus, Status
from rfq.contracts.templates import template_of
from rfq.identity import Member
from rfq.ledger.state import BlockResult, Guarantee, LedgerState
from rfq.money import from_micros
from rfq.queries import CcrRow
from rfq.risk.monitor import (
    DEFAULT_RECOVERY_RATE,
    INSTITUTION_ROLES,
    MPOR_DAYS,
    Assessment,
    DirectedExposure,
    ccr_row,
    exposure_network,
    market_prices,
    netting_pair_exposures,
    observed_defaults,
)
from rfq.risk.positions import Pair, PairTerms, PositionTable

NOT_HELD = frozenset({PaymentStatus.PENDING, PaymentStatus.FAILED})
"""An initial margin payment in these states is not (yet) in custody."""


def changed_contracts(state: LedgerState, result: BlockResult) -> set[str] | None:
    """The contracts a block executed on ``state`` changed, or None for all of them (a price
    fixing marks every live contract): those its outputs name, those of the payments its
    transactions refer to (a confirmed initial margin moves into custody) and those it pruned
    (gone from the book: ``IncrementalMonitor.drop``)."""
    if result.fixed:
        return None
    return named_contracts(state, result)


def named_contracts(state: LedgerState, result: BlockResult) -> set[str]:
    """The contracts a block's outputs name, those of the payments it referred to, and those
    it pruned (retention)."""
    changed = {cid for o in result.outputs if (cid := getattr(o, "contract_id", None))}
    for o in result.outputs:  # the book's batches of calls name their contracts as columns
        changed.update(getattr(o, "contract_ids", ()))
    changed.update(p.key for p in result.pruned if p.component == "contracts")
    for receipt in result.receipts:
        for ref in receipt.refs:
            if (payment := state.payments.get(ref)) is not None:
                changed.add(payment.contract_id)
    return changed


def feed(
    monitor: IncrementalMonitor,
    state: LedgerState,
    named: Collection[str] | None,
    fixing: bool = False,
) -> int:
    """Put into ``monitor`` what blocks executed on ``state`` changed since the last feed:
    ``named`` the contracts they named (``named_contracts``, read as each block is applied),
    ``fixing`` whether one was a price fixing; None: everything in the book, as a monitor
    starting on a state needs. Returns how many contracts it put.

    A fixing re-marks every live contract: those the monitor holds are re-read (an ended
    contract is not: it stays as it ended), with the cash margin it has for them unless a
    block named them (only a payment or a contract event moves a margin into custody)."""
    book = state.book
    ids: Iterable[str]
    if named is None:
        ids = book.ids()
    elif fixing:
        # the order contracts are put in changes no figure (the monitor's sums are canonical)
        ids = [*monitor.live, *sorted(set(named) - monitor.live.keys())]
    else:
        ids = sorted(named)
    put = 0
    for cid in ids:
        view = book.find(cid, with_call=False)  # the risk models read no margin call
        if view is None:  # out of the hot state: it ended (and was pruned in the same block)
            monitor.drop(cid)
            continue
        if named is None or cid in named or cid not in monitor.live:
            monitor.put(view, cash_margin_held(state, cid))
        else:
            monitor.remark(view)
        put += 1
    return put


def cash_margin_held(state: LedgerState, contract_id: str) -> float:
    """The client's cash initial margin in custody for a contract: booked with the trade,
    counted once the bank has paid it (not while pending or failed)."""
    trade = state.trades.get(contract_id)
    if trade is None or trade.cash_margin <= 0:
        return 0.0
    payment = state.payments.get(f"{contract_id}/initial_margin/1")
    if payment is not None and payment.status in NOT_HELD:
        return 0.0
    return from_micros(trade.cash_margin)  # the risk models compute in currency units


EXACT_SCALE = 2**1074
"""Every finite float is a whole multiple of 2**-1074: sums kept as integers of that unit are
exact, and one division rounds them as ``math.fsum`` does."""


def exact(value: float) -> int:
    numerator, denominator = value.as_integer_ratio()
    return numerator * (EXACT_SCALE // denominator)


class _PairSums:
    """A netting pair's margin terms and collateral, kept as its contracts come and go."""

    __slots__ = ("cash", "mtas", "thresholds", "unmargined", "vm")

    def __init__(self) -> None:
        self.unmargined = 0
        self.thresholds: Counter[float] = Counter()
        self.mtas: Counter[float] = Counter()
        self.vm = 0
        self.cash = 0

    def terms(self) -> PairTerms:
        return PairTerms(
            margined=self.unmargined == 0,
            threshold=max(self.thresholds, default=0.0),
            mta=max(self.mtas, default=0.0),
            vm_to_client=self.vm / EXACT_SCALE,
            cash_im=self.cash / EXACT_SCALE,
        )

    def count(self, view: ContractView, sign: int) -> None:
        margin = view.contract.margin
        if margin is None:
            self.unmargined += sign
            return
        for counter, value in (
            (self.thresholds, margin.threshold),
            (self.mtas, margin.minimum_transfer_amount),
        ):
            counter[value] += sign
            if not counter[value]:
                del counter[value]


class IncrementalMonitor:
    """``put`` each contract a block changed (with its cash margin held), then ``assess``.

    Kept between blocks: the live contracts by netting pair with their SA-CCR rows
    (``PositionTable``), each pair's two directed exposures, each institution's exposures as a
    debtor with its EAD, and its CCR row. A block re-values the pairs it touched (all of them
    together, in a few array operations, when a fixing moved the prices or the business date
    moved on), and re-derives the rows of the institutions in those pairs; the exposure network
    is built only when a cascade or a what-if asks for it.
    """

    def __init__(
        self,
        *,
        recovery_rate: float = DEFAULT_RECOVERY_RATE,
        mpor_days: float = MPOR_DAYS,
        known_prices: Mapping[str, float] | None = None,
    ) -> None:
        self.recovery_rate = recovery_rate
        self.mpor_days = mpor_days
        self._known = dict(known_prices or {})
        self._live: dict[str, ContractView] = {}
        self._pairs: dict[Pair, dict[str, ContractView]] = {}
        self._table = PositionTable()
        self._scalar: dict[Pair, set[str]] = {}
        """Per pair, its contracts the table cannot hold (the pair is valued the scalar way)."""
        self._defaulted: dict[str, ContractView] = {}
        self._defaults: dict[str, tuple[float, ...]] | None = None
        self._cash: dict[str, float] = {}
        self._sums: dict[Pair, _PairSums] = {}
        self._exposures: dict[Pair, tuple[DirectedExposure, DirectedExposure]] = {}
        self._ordered: list[Pair] | None = None
        self._owed: dict[str, dict[str, tuple[str, float]]] = {}
        """Per debtor, per netting set: (creditor, EAD)."""
        self._ead: dict[str, tuple[float, int]] = {}
        """Per debtor: (EAD, netting sets)."""
        self._open: dict[str, int] = {}
        self._rows: dict[str, tuple[tuple[Any, ...], CcrRow]] = {}
        self._dirty: set[Pair] = set()
        self._reprice = True
        self._prices: dict[str, float] = {}
        self._live_prices: dict[str, float] = {}
        self._single_leg: dict[tuple[str, float], list[str]] = {}
        """Live contracts of one leg (not averaging), by (underlying, weight), in id order."""
        self._multi_leg: dict[str, None] = {}
        self._by_underlying: dict[str, Counter[Pair]] = {}
        """The netting pairs holding a leg on each underlying: those a price moves."""
        """What the live contracts' marks alone price (``market_prices``' first step)."""
        self._as_of: dt.date | None = None
        self.recomputed = 0
        """Netting pairs re-computed by the last ``assess``."""

    @property
    def live(self) -> Mapping[str, ContractView]:
        return self._live

    @property
    def defaulted(self) -> Mapping[str, ContractView]:
        return self._defaulted

    def cash_margin(self, contract_id: str) -> float:
        """The cash margin held the monitor has for a live contract."""
        return self._cash.get(contract_id, 0.0)

    def drop(self, contract_id: str) -> None:
        """The contract left the hot state (retention) without the monitor seeing it end: it
        leaves its netting set; its default, if it was put as defaulted, stays observed."""
        old = self._live.get(contract_id)
        if old is not None:
            self._leave(contract_id, (old.contract.client, old.contract.dealer))
            self._reprice = self._reprice or old.mark is not None

    def remark(self, view: ContractView) -> None:
        """``put`` with the cash margin the monitor holds for it, made short for the common
        case of a fixing: a live contract that stays live with a new mark and value."""
        cid = view.contract.id
        old = self._live.get(cid)
        if old is None or old.status is not view.status or view.status.terminal:
            self.put(view, self._cash.get(cid, 0.0))
            return
        pair = (view.contract.client, view.contract.dealer)
        self._live[cid] = view
        self._pairs[pair][cid] = view
        if old.mark != view.mark:
            self._reprice = True
        if old.client_mtm != view.client_mtm and cid in self._table:
            self._table.set_mtm(cid, view.client_mtm)
        if old.vm_balance != view.vm_balance:
            self._sums[pair].vm += exact(view.vm_balance) - exact(old.vm_balance)
        self._dirty.add(pair)

    def put(self, view: ContractView, cash_margin: float = 0.0) -> None:
        """The contract as it now stands: live, or ended (it leaves its netting set)."""
        cid = view.contract.id
        pair = (view.contract.client, view.contract.dealer)
        old = self._live.get(cid)
        if view.status == Status.DEFAULTED:
            self._defaulted[cid] = view
            self._defaults = None
            self._reprice = self._reprice or view.mark is not None
        if view.status.terminal:
            if old is not None:
                self._leave(cid, pair)
                self._reprice = self._reprice or old.mark is not None
            return
        if old is not None and old.mark != view.mark:
            self._reprice = True
        elif old is None:
            # a new contract moves a price only if it comes first of its kind, or prices an
            # underlying none priced yet
            first = self._keep_priced(view)
            if view.mark is not None and not self._reprice:
                legs = view.contract.terms.legs
                unpriced = any(g.underlying not in self._live_prices for g in legs)
                self._reprice = first or unpriced
        self._live[cid] = view
        members = self._pairs.get(pair)
        if members is None:
            members = self._pairs[pair] = {}
            self._sums[pair] = _PairSums()
            self._ordered = None
        members[cid] = view
        sums = self._sums[pair]
        if old is None:
            for party in pair:
                self._open[party] = self._open.get(party, 0) + 1
            if not self._table.add(view):
                self._scalar.setdefault(pair, set()).add(cid)
            sums.count(view, 1)
            sums.vm += exact(view.vm_balance)
        else:
            if cid in self._table:
                self._table.set_mtm(cid, view.client_mtm)
            if old.vm_balance != view.vm_balance:
                sums.vm += exact(view.vm_balance) - exact(old.vm_balance)
        held = self._cash.get(cid, 0.0)
        if cash_margin != held and (cash_margin > 0 or held > 0):
            sums.cash += exact(max(cash_margin, 0.0)) - exact(held)
            if cash_margin > 0:
                self._cash[cid] = cash_margin
            else:
                del self._cash[cid]
        self._dirty.add(pair)

    def _keep_priced(self, view: ContractView) -> bool:
        """Index a new live contract for ``_live_market_prices``; True if it now comes first
        of its leg and weight (or has several legs)."""
        terms = view.contract.terms
        cid = view.contract.id
        for leg in terms.legs:
            pairs = self._by_underlying.setdefault(leg.underlying, Counter())
            pairs[(view.contract.client, view.contract.dealer)] += 1
        if template_of(terms).averaging:
            return False
        if len(terms.legs) != 1:
            self._multi_leg[cid] = None
            return True
        ids = self._single_leg.setdefault((terms.legs[0].underlying, terms.legs[0].weight), [])
        i = bisect.bisect_left(ids, cid)
        ids.insert(i, cid)
        return i == 0

    def _forget_priced(self, view: ContractView) -> None:
        terms = view.contract.terms
        cid = view.contract.id
        for leg in terms.legs:
            pairs = self._by_underlying[leg.underlying]
            pairs[(view.contract.client, view.contract.dealer)] -= 1
            if pairs[(view.contract.client, view.contract.dealer)] <= 0:
                del pairs[(view.contract.client, view.contract.dealer)]
        self._multi_leg.pop(cid, None)
        key = (terms.legs[0].underlying, terms.legs[0].weight) if len(terms.legs) == 1 else None
        ids = self._single_leg.get(key) if key is not None else None
        if ids is not None:
            i = bisect.bisect_left(ids, cid)
            if i < len(ids) and ids[i] == cid:
                del ids[i]
                if not ids:
                    del self._single_leg[key]  # type: ignore[arg-type]

    def _live_market_prices(self) -> dict[str, float]:
        """``market_prices(live, (), known)`` from what can price: per single leg and weight
        the first marked contract by id, and every marked contract of several legs."""
        live = self._live
        views = []
        for ids in self._single_leg.values():
            for cid in ids:
                view = live[cid]
                if view.mark is not None and math.isfinite(view.mark):
                    views.append(view)
                    break
        views.extend(live[cid] for cid in self._multi_leg)
        return market_prices(views, (), self._known)

    def _leave(self, cid: str, pair: Pair) -> None:
        view = self._live.pop(cid)
        self._forget_priced(view)
        members = self._pairs[pair]
        del members[cid]
        sums = self._sums[pair]
        sums.count(view, -1)
        sums.vm -= exact(view.vm_balance)
        sums.cash -= exact(self._cash.get(cid, 0.0))
        if not members:
            del self._pairs[pair], self._sums[pair]
            self._ordered = None
        for party in pair:
            self._open[party] -= 1
        self._table.remove(cid)
        scalar = self._scalar.get(pair)
        if scalar is not None:
            scalar.discard(cid)
            if not scalar:
                del self._scalar[pair]
        self._cash.pop(cid, None)
        self._dirty.add(pair)

    def assess(
        self,
        height: int,
        as_of: dt.date,
        members: Iterable[Member],
        ratings: Mapping[str, float],
        guarantees: Iterable[Guarantee],
    ) -> Assessment:
        if self._reprice:
            self._live_prices = self._live_market_prices()
            prices = market_prices((), self._defaulted.values(), self._live_prices)
            self._reprice = False
            if prices != self._prices:
                moved = {u for u in prices.keys() | self._prices.keys()}
                moved = {u for u in moved if prices.get(u) != self._prices.get(u)}
                self._prices = prices
                for underlying in moved:
                    self._dirty.update(self._by_underlying.get(underlying, ()))
        if as_of != self._as_of:
            self._as_of = as_of
            self._dirty.update(self._pairs)
        touched = self._revalue(as_of)
        if self._defaults is None:
            self._defaults = observed_defaults(self._defaulted.values())
        defaults = self._defaults
        institutions = [m for m in members if m.role in INSTITUTION_ROLES]
        rows: list[CcrRow] = []
        for m in institutions:
            ead, netting_sets = self._ead.get(m.id, (0.0, 0))
            inputs = (
                m,
                ratings.get(m.id),
                defaults.get(m.id),
                ead,
                netting_sets,
                self._open.get(m.id, 0),
            )
            cached = self._rows.get(m.id)
            if cached is None or cached[0] != inputs:
                cached = (inputs, ccr_row(m, ratings, defaults, self.recovery_rate, *inputs[3:]))
                self._rows[m.id] = cached
            rows.append(cached[1])
        for gone in touched - {m.id for m in institutions}:
            self._rows.pop(gone, None)
        if self._ordered is None:
            self._ordered = sorted(self._pairs)
        exposures = tuple(x for pair in self._ordered for x in self._exposures[pair])
        lgd = {row.institution: row.lgd for row in rows}
        guarantees = tuple(guarantees)
        return Assessment(
            height,
            tuple(rows),
            exposures,
            lambda: exposure_network(institutions, exposures, lgd, guarantees),
        )

    def _revalue(self, as_of: dt.date) -> set[str]:
        """Re-compute the dirty pairs; the institutions whose debts moved."""
        dirty, self._dirty = self._dirty, set()
        present = {pair: self._pairs[pair].values() for pair in dirty if pair in self._pairs}
        found = netting_pair_exposures(
            self._table,
            present,
            {pair for pair in present if pair in self._scalar},
            self._cash,
            as_of,
            self._prices,
            self.mpor_days,
            lambda pair: self._sums[pair].terms(),
        )
        self.recomputed = len(found)
        touched: set[str] = set()
        for pair in dirty:
            new = found.get(pair)
            old = self._exposures.pop(pair, None) if new is None else self._exposures.get(pair)
            if new is not None:
                self._exposures[pair] = new
            for x in old or ():
                self._owed[x.debtor].pop(x.netting_set, None)
                touched.add(x.debtor)
            for x in new or ():
                self._owed.setdefault(x.debtor, {})[x.netting_set] = (x.creditor, x.ead)
                touched.add(x.debtor)
        for debtor in touched:
            owed = self._owed.get(debtor)
            if not owed:
                self._owed.pop(debtor, None)
                self._ead.pop(debtor, None)
                continue
            ead = math.fsum(amount for _, amount in owed.values())
            self._ead[debtor] = (ead, len({creditor for creditor, _ in owed.values()}))
        return touched
