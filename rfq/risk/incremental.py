"""The risk monitor kept between blocks: a block re-computes only the netting sets it touched.

``assess`` of ``rfq.risk.monitor`` starts from the whole market each time: every live
contract's SA-CCR trades, every netting set, the CCR table and the exposure network. A block
changes a few contracts (a trade opens one, a confirmation moves one's cash margin, a maturity
ends one); only a fixing marks them all. ``IncrementalMonitor`` holds the live contracts by
(client, dealer) netting pair with each pair's two directed exposures, and re-computes a pair
only when one of its contracts, its cash margin, the prices implied by the marks or the
business date changed. The CCR table and the network are then built from the cached
exposures, which number the netting sets, not the contracts. Its assessment is the one
``assess`` gives for the same contracts (a property test holds them equal); prices follow
``market_prices``: live marks first, the stale marks of ended contracts only where no live
contract prices an underlying.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable, Mapping
from typing import Any

from rfq.contracts.model import ContractView, PaymentStatus, Status
from rfq.identity import Member
from rfq.ledger.state import BlockResult, Guarantee, LedgerState
from rfq.ledger.tx import PriceFixing
from rfq.money import from_micros
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
from rfq.risk.positions import Pair, PositionTable

FIXING_KIND = str(PriceFixing.__struct_config__.tag)
NOT_HELD = frozenset({PaymentStatus.PENDING, PaymentStatus.FAILED})
"""An initial margin payment in these states is not (yet) in custody."""


def changed_contracts(state: LedgerState, result: BlockResult) -> set[str] | None:
    """The contracts a block executed on ``state`` changed, or None for all of them (a price
    fixing marks every live contract): those its outputs name and those of the payments its
    transactions refer to (a confirmed initial margin moves into custody)."""
    if any(r.ok and r.kind == FIXING_KIND for r in result.receipts):
        return None
    changed = {cid for o in result.outputs if (cid := getattr(o, "contract_id", None))}
    for receipt in result.receipts:
        for ref in receipt.refs:
            if (payment := state.payments.get(ref)) is not None:
                changed.add(payment.contract_id)
    return changed


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
        elif old is None and view.mark is not None:
            # a new contract implies a price only for an underlying none priced yet
            legs = view.contract.terms.legs
            unpriced = any(g.underlying not in self._live_prices for g in legs)
            self._reprice = self._reprice or unpriced
        self._live[cid] = view
        members = self._pairs.get(pair)
        if members is None:
            members = self._pairs[pair] = {}
            self._ordered = None
        members[cid] = view
        if old is None:
            for party in pair:
                self._open[party] = self._open.get(party, 0) + 1
            if not self._table.add(view):
                self._scalar.setdefault(pair, set()).add(cid)
        elif cid in self._table:
            self._table.set_mtm(cid, view.client_mtm)
        if cash_margin > 0:
            self._cash[cid] = cash_margin
        else:
            self._cash.pop(cid, None)
        self._dirty.add(pair)

    def _leave(self, cid: str, pair: Pair) -> None:
        del self._live[cid]
        members = self._pairs[pair]
        del members[cid]
        if not members:
            del self._pairs[pair]
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
            self._live_prices = market_prices(self._live.values(), (), self._known)
            prices = market_prices((), self._defaulted.values(), self._live_prices)
            self._reprice = False
            if prices != self._prices:
                self._prices = prices
                self._dirty.update(self._pairs)
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
