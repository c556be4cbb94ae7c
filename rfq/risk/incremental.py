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
from collections.abc import Iterable, Mapping

import msgspec

from rfq.contracts.model import ContractView, PaymentStatus, Status
from rfq.identity import Member
from rfq.ledger.state import BlockResult, Guarantee, LedgerState
from rfq.ledger.tx import PriceFixing
from rfq.money import from_micros
from rfq.risk.monitor import (
    DEFAULT_RECOVERY_RATE,
    MPOR_DAYS,
    Assessment,
    DirectedExposure,
    assessment_of,
    market_prices,
    observed_defaults,
    pair_exposures,
)

Pair = tuple[str, str]

FIXING_KIND = str(PriceFixing.__struct_config__.tag)
NOT_HELD = frozenset({PaymentStatus.PENDING, PaymentStatus.FAILED})
"""An initial margin payment in these states is not (yet) in custody."""


def changed_contracts(state: LedgerState, result: BlockResult) -> set[str] | None:
    """The contracts a block executed on ``state`` changed, or None for all of them (a price
    fixing marks every live contract): those its outputs name, those of the payments its
    transactions refer to (a confirmed initial margin moves into custody) and those it pruned
    (gone from the book: ``IncrementalMonitor.drop``)."""
    if any(r.ok and r.kind == FIXING_KIND for r in result.receipts):
        return None
    changed = {cid for o in result.outputs if (cid := getattr(o, "contract_id", None))}
    changed.update(p.key for p in result.pruned if p.component == "contracts")
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
    """``put`` each contract a block changed (with its cash margin held), then ``assess``."""

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
        self._defaulted: dict[str, ContractView] = {}
        self._cash: dict[str, float] = {}
        self._exposures: dict[Pair, tuple[DirectedExposure, DirectedExposure]] = {}
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
            self._reprice = self._reprice or view.mark is not None
        if view.status.terminal:
            if old is not None:
                del self._live[cid]
                members = self._pairs[pair]
                del members[cid]
                if not members:
                    del self._pairs[pair]
                self._cash.pop(cid, None)
                self._dirty.add(pair)
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
        self._pairs.setdefault(pair, {})[cid] = view
        if cash_margin > 0:
            self._cash[cid] = cash_margin
        else:
            self._cash.pop(cid, None)
        self._dirty.add(pair)

    def drop(self, contract_id: str) -> None:
        """The contract left the hot state (retention): it ended long before, so it is in no
        netting set; its default, if it defaulted, stays among the observed ones."""
        view = self._live.get(contract_id)
        if view is not None:  # its end was never put: take it out as ended now
            self.put(msgspec.structs.replace(view, status=Status.SETTLED))

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
        self.recomputed = 0
        for pair in self._dirty:
            views = self._pairs.get(pair)
            if views is None:
                self._exposures.pop(pair, None)
                continue
            self._exposures[pair] = pair_exposures(
                *pair, views.values(), self._cash, as_of, self._prices, self.mpor_days
            )
            self.recomputed += 1
        self._dirty.clear()
        open_contracts: dict[str, int] = {}
        for (client, dealer), views in self._pairs.items():
            for party in (client, dealer):
                open_contracts[party] = open_contracts.get(party, 0) + len(views)
        exposures = tuple(x for pair in sorted(self._exposures) for x in self._exposures[pair])
        return assessment_of(
            height,
            members,
            exposures,
            observed_defaults(self._defaulted.values()),
            open_contracts,
            ratings,
            guarantees,
            self.recovery_rate,
        )
