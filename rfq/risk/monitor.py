"""The regulator's live CCR and systemic-risk monitor, pure: chain data in, CCR table, alerts and
the exposure network out (paper section III.2-III.3).

**Netting sets.** Every (client, dealer) pair with live contracts is one bilateral netting set
(one CSA: the contracts' variation-margin terms). SA-CCR (``rfq.risk.saccr``) is run on it twice,
once from each party's side: ``Exposure(creditor, debtor)`` is what the creditor stands to lose
if the debtor defaults. Each contract becomes SA-CCR trades from the creditor's side, by its
template's ``saccr_trades`` (``rfq.contracts.templates``); the built-in templates map them so:

- one trade per leg, classified by ``rfq.instruments.CATALOG``: commodities in their hedging set
  (metals, energy, agricultural) with the commodity type (steel, crude_oil, ...) as the risk
  factor, equity underlyings quoted in points as an equity index; an underlying the catalog does
  not know (or of an asset class the catalog does not use) goes to the conservative commodity
  hedging set "other" under its own id;
- adjusted notional ``|weight x price| x quantity x multiplier`` at the leg's current price
  (see ``leg_prices``); delta +1 when the creditor is long the leg (the buying client, or the
  dealer facing a selling client; a leg of negative weight flips it), -1 otherwise;
- a European option is one trade with the supervisory delta of BCBS 279 (``option.price`` is
  the current level of its legs, the forward; ``bought`` when the creditor is the buyer);
- maturity and option expiry in years (actual/365) from the chain's business date;
- ``mtm`` is the contract's value to the creditor: ``client_mtm`` for the client, its negation
  for the dealer (0 while a leg has no price yet), carried on the contract's first trade.

Collateral ``C`` = variation margin held + cash initial margin held. ``vm_balance`` is the net
variation margin transferred dealer -> client: the client holds ``vm_balance``, the dealer
``-vm_balance``. The client's cash initial margin sits in the bank's custody account and goes to
the dealer on the client's default, so it is independent collateral the *dealer* holds (NICA);
a client's posted, segregated margin is not netted against its exposure to the dealer (BCBS 279
leaves bankruptcy-remote posted collateral out of NICA). Credit lines and guarantee cover are
not collateral. A netting set whose contracts are all margined is margined with the contracts'
threshold and MTA (the largest, if they differ) and an MPOR of ``MPOR_DAYS`` business days; its
EAD is capped at the unmargined EAD (``compute_netting_set``).

**Per institution** (the ``CcrRow`` convention in ``rfq.queries``): ``ead`` is the sum of SA-CCR
EAD over the netting sets in which the institution is the *debtor*, i.e. what its counterparties
would lose were it to default; ``el = pd x ead x lgd`` (formula 4). ``pd``: 1 for an institution
that has defaulted on chain (observed), else ``rfq.rating.pd_of`` of its on-chain rating score
(its external grade if the chain has no score, ``UNRATED_GRADE`` if it has neither). ``lgd = 1 -
RR`` (formula 9): ``RR`` the mean recovery rate observed in the institution's own defaults on
chain, else ``DEFAULT_RECOVERY_RATE``. An institution alerts while ``ead`` is above its genesis
``ccr_threshold`` (0: never); ``crossings`` reports each crossing once.

**Exposure network** (formulas 10-11): institutions with their genesis ``capital`` (also
Eisenberg-Noe's external assets and DebtRank's weight); an edge creditor -> debtor for every
positive EAD, losing the debtor's ``lgd``. A guarantor's live lines for a client (``line - paid``,
in guarantee-id order, as the ledger's default waterfall uses them) take over that much of the
dealers' exposures to the client, pro rata: the dealers' edges shrink and the guarantor gets an
edge to the client for the cover (the pledged asset is off chain and not counted).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import math
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import msgspec
import numpy as np

from rfq.contracts.model import ContractView, Status
from rfq.contracts.templates import template_of
from rfq.contracts.templates.base import (
    DAYS_PER_YEAR,
    SaccrView,
)
from rfq.errors import ValidationError
from rfq.identity import Member, Role
from rfq.instruments import Side
from rfq.ledger.state import Guarantee
from rfq.money import from_micros
from rfq.queries import CcrRow, RiskAlert, WhatIfReply
from rfq.rating import grade_of, pd_of
from rfq.risk.contagion import (
    Exposure,
    ExposureNetwork,
    Institution,
    build_network,
    cascade,
    debtrank,
    eisenberg_noe,
)
from rfq.risk.loss import expected_loss
from rfq.risk.positions import Pair, PairTerms, PositionTable
from rfq.risk.saccr import NettingSet, NettingSetResult, Trade, compute_netting_set

DEFAULT_RECOVERY_RATE = 0.40
"""RR when an institution has no default on chain: the market convention for senior unsecured
claims (ISDA standard CDS model), so LGD = 60 %."""

UNRATED_GRADE = "BB"
"""The grade of an institution with neither an on-chain nor an external rating: speculative."""

MPOR_DAYS = 10.0
"""Margin period of risk of a margined netting set, in business days (BCBS 279, daily margin)."""


INSTITUTION_ROLES = frozenset({Role.CLIENT, Role.DEALER, Role.CCP, Role.GUARANTOR})
"""Members that carry credit risk: rows of the CCR table and nodes of the exposure network."""

MODELS = ("cascade", "debtrank", "eisenberg-noe")


# ---------------------------------------------------------------------------------------------
# Input and output


@dataclass(frozen=True)
class MonitorInput:
    """What the monitor reads from the chain at one height.

    ``contracts``: views of live contracts (ended ones may be included: defaulted ones give
    observed defaults and recovery rates, the rest are ignored). ``cash_margin``: per contract
    id, the client's cash initial margin held in custody for it (confirmed, not yet returned).
    ``ratings``: on-chain rating scores (0..100). ``prices``: latest price per underlying where
    the caller knows it (``leg_prices`` fills in the rest).
    """

    height: int
    as_of: dt.date
    members: tuple[Member, ...]
    contracts: tuple[ContractView, ...]
    cash_margin: Mapping[str, float] = field(default_factory=dict)
    ratings: Mapping[str, float] = field(default_factory=dict)
    guarantees: tuple[Guarantee, ...] = ()
    prices: Mapping[str, float] = field(default_factory=dict)
    recovery_rate: float = DEFAULT_RECOVERY_RATE
    mpor_days: float = MPOR_DAYS


class DirectedExposure(msgspec.Struct, frozen=True):
    """SA-CCR of one bilateral netting set from the creditor's side: the creditor would lose
    ``result.ead`` if the debtor defaulted."""

    netting_set: str
    creditor: str
    debtor: str
    contracts: int
    result: NettingSetResult

    @property
    def ead(self) -> float:
        return self.result.ead


@dataclass(frozen=True, eq=False)
class Assessment:
    """The monitor's picture at one height: the CCR table, the directed exposures behind it and
    the exposure network contagion runs on (``source``: the network, or what builds it the
    first time a cascade or a what-if asks for it)."""

    height: int
    rows: tuple[CcrRow, ...]
    exposures: tuple[DirectedExposure, ...]
    source: ExposureNetwork | Callable[[], ExposureNetwork]

    @functools.cached_property
    def network(self) -> ExposureNetwork:
        source = self.source
        return source if isinstance(source, ExposureNetwork) else source()

    def row(self, institution: str) -> CcrRow | None:
        for row in self.rows:
            if row.institution == institution:
                return row
        return None

    @property
    def above(self) -> frozenset[str]:
        """Institutions whose EAD is above their threshold now."""
        return frozenset(r.institution for r in self.rows if r.alert)


# ---------------------------------------------------------------------------------------------
# Prices


def market_prices(
    live: Iterable[ContractView],
    ended: Iterable[ContractView],
    known: Mapping[str, float] | None = None,
) -> dict[str, float]:
    """``leg_prices`` from the live contracts' marks, then from the marks ended contracts were
    left with: those are stale, so they only price what no live contract does. Each group is
    read in contract id order, so the figure never depends on the order views arrive in."""
    return leg_prices(_by_id(ended), leg_prices(_by_id(live), known))


def _by_id(views: Iterable[ContractView]) -> list[ContractView]:
    """The views ``leg_prices`` can learn from, in contract id order. Of the marked contracts
    on one leg of one weight only the first by id can: it prices that underlying (or finds
    it priced) at its turn, so every later one finds nothing unknown."""
    first: dict[tuple[str, float], ContractView] = {}
    rest: list[ContractView] = []
    for view in views:
        if not _marked(view):
            continue
        legs = view.contract.terms.legs
        if len(legs) != 1:
            rest.append(view)
            continue
        key = (legs[0].underlying, legs[0].weight)
        seen = first.get(key)
        if seen is None or view.contract.id < seen.contract.id:
            first[key] = view
    return sorted((*first.values(), *rest), key=lambda v: v.contract.id)


def _marked(view: ContractView) -> bool:
    return (
        view.mark is not None
        and math.isfinite(view.mark)
        and not template_of(view.contract.terms).averaging
    )


def leg_prices(
    views: Iterable[ContractView], known: Mapping[str, float] | None = None
) -> dict[str, float]:
    """Latest price per underlying: ``known`` first, then what the contracts' marks imply.

    A contract's ``mark`` is the weighted sum of its legs' latest fixings on chain (an
    average-price swap's is a blend with past fixings, so it is not used): a contract with one
    leg of unknown price gives that price, repeated until nothing new is learnt.
    """
    prices = dict(known or {})
    marked = [v for v in views if _marked(v)]
    changed = True
    while changed:
        changed = False
        for view in marked:
            legs = view.contract.terms.legs
            unknown = [leg for leg in legs if leg.underlying not in prices]
            if len(unknown) != 1 or unknown[0].weight == 0:
                continue
            rest = math.fsum(
                leg.weight * prices[leg.underlying] for leg in legs if leg is not unknown[0]
            )
            assert view.mark is not None
            prices[unknown[0].underlying] = (view.mark - rest) / unknown[0].weight
            changed = True
    return prices


# ---------------------------------------------------------------------------------------------
# Contract terms -> SA-CCR trades (each template's ``saccr_trades``)


def contract_trades(
    view: ContractView, *, creditor: str, as_of: dt.date, prices: Mapping[str, float]
) -> tuple[Trade, ...]:
    """One contract as SA-CCR trades from ``creditor``'s side (its client or its dealer)."""
    contract = view.contract
    if creditor not in (contract.client, contract.dealer):
        raise ValidationError(f"{creditor!r} is not a party", where=f"contract {contract.id!r}")
    terms = contract.terms
    long = (terms.client_side == Side.BUY) == (creditor == contract.client)
    size = terms.quantity * terms.multiplier
    maturity = max((terms.maturity - as_of).days, 0) / DAYS_PER_YEAR
    value = 0.0 if view.client_mtm is None else view.client_mtm
    mtm = value if creditor == contract.client else -value
    return template_of(terms).saccr_trades(SaccrView(view, long, size, maturity, mtm, prices))


# ---------------------------------------------------------------------------------------------
# Bilateral netting sets


def netting_set_id(client: str, dealer: str, creditor: str) -> str:
    """``client|dealer>creditor``: the pair's netting set seen from the creditor's side."""
    return f"{client}|{dealer}>{creditor}"


def bilateral_exposures(
    inp: MonitorInput, prices: Mapping[str, float] | None = None
) -> tuple[DirectedExposure, ...]:
    """SA-CCR of every (client, dealer) netting set of live contracts, from both sides.

    Ordered by (client, dealer), the dealer's exposure to the client first.
    """
    if prices is None:
        live = [v for v in inp.contracts if not v.status.terminal]
        ended = [v for v in inp.contracts if v.status.terminal]
        prices = market_prices(live, ended, inp.prices)
    pairs: dict[Pair, list[ContractView]] = {}
    for view in inp.contracts:
        if not view.status.terminal:
            pairs.setdefault((view.contract.client, view.contract.dealer), []).append(view)
    table = PositionTable()
    scalar = {pair for pair, views in pairs.items() if not all([table.add(v) for v in views])}
    found = netting_pair_exposures(
        table, pairs, scalar, inp.cash_margin, inp.as_of, prices, inp.mpor_days
    )
    return tuple(x for pair in sorted(found) for x in found[pair])


def pair_terms(views: Iterable[ContractView], cash_margin: Mapping[str, float]) -> PairTerms:
    """A netting pair's margin terms and collateral (``pair_exposures`` spells them out)."""
    terms = [v.contract.margin for v in views]
    margined = all(m is not None for m in terms)
    return PairTerms(
        margined=margined,
        threshold=max((m.threshold for m in terms if m is not None), default=0.0),
        mta=max((m.minimum_transfer_amount for m in terms if m is not None), default=0.0),
        vm_to_client=math.fsum(v.vm_balance for v in views),
        cash_im=math.fsum(max(cash_margin.get(v.contract.id, 0.0), 0.0) for v in views),
    )


def netting_pair_exposures(
    table: PositionTable,
    pairs: Mapping[Pair, Collection[ContractView]],
    scalar: Collection[Pair],
    cash_margin: Mapping[str, float],
    as_of: dt.date,
    prices: Mapping[str, float],
    mpor_days: float,
    terms_of: Callable[[Pair], PairTerms] | None = None,
) -> dict[Pair, tuple[DirectedExposure, DirectedExposure]]:
    """The pairs' exposures: those in ``scalar`` (a contract ``table`` could not hold) one by
    one with ``pair_exposures``, the others valued together from ``table``'s columns.
    ``terms_of`` gives a pair's ``pair_terms`` where the caller keeps them."""
    out: dict[Pair, tuple[DirectedExposure, DirectedExposure]] = {}
    vector = sorted(pair for pair in pairs if pair not in scalar)
    if terms_of is None:
        terms = [pair_terms(pairs[pair], cash_margin) for pair in vector]
    else:
        terms = [terms_of(pair) for pair in vector]
    results = table.evaluate(vector, terms, prices, as_of, mpor_days)
    for pair, result in zip(vector, results, strict=True):
        if result is None:  # a non-finite figure: the scalar path names the fault
            scalar = {*scalar, pair}
            continue
        count = len(pairs[pair])
        client, dealer = pair
        out[pair] = (
            DirectedExposure(result[0].id, dealer, client, count, result[0]),
            DirectedExposure(result[1].id, client, dealer, count, result[1]),
        )
    for pair in scalar:
        if pair in pairs:
            out[pair] = pair_exposures(*pair, pairs[pair], cash_margin, as_of, prices, mpor_days)
    return out


def pair_exposures(
    client: str,
    dealer: str,
    views: Iterable[ContractView],
    cash_margin: Mapping[str, float],
    as_of: dt.date,
    prices: Mapping[str, float],
    mpor_days: float,
) -> tuple[DirectedExposure, DirectedExposure]:
    """The (client, dealer) netting set's SA-CCR from both sides: the dealer's exposure to the
    client first. ``views``: the pair's live contracts."""
    ordered = sorted(views, key=lambda v: v.contract.id)
    terms = [v.contract.margin for v in ordered]
    margined = all(m is not None for m in terms)
    threshold = max((m.threshold for m in terms if m is not None), default=0.0)
    mta = max((m.minimum_transfer_amount for m in terms if m is not None), default=0.0)
    vm_to_client = math.fsum(v.vm_balance for v in ordered)
    cash_im = math.fsum(max(cash_margin.get(v.contract.id, 0.0), 0.0) for v in ordered)
    out: list[DirectedExposure] = []
    for creditor, debtor in ((dealer, client), (client, dealer)):
        if creditor == dealer:
            nica, held_vm = cash_im, -vm_to_client
        else:
            nica, held_vm = 0.0, vm_to_client
        trades = tuple(
            t
            for v in ordered
            for t in contract_trades(v, creditor=creditor, as_of=as_of, prices=prices)
        )
        ns = NettingSet(
            id=netting_set_id(client, dealer, creditor),
            trades=trades,
            margined=margined,
            collateral=held_vm + nica,
            threshold=threshold if margined else None,
            mta=mta if margined else None,
            nica=nica if margined else None,
            mpor_days=mpor_days if margined else None,
        )
        out.append(
            DirectedExposure(
                netting_set=ns.id,
                creditor=creditor,
                debtor=debtor,
                contracts=len(ordered),
                result=compute_netting_set(ns),
            )
        )
    return out[0], out[1]


# ---------------------------------------------------------------------------------------------
# PD, LGD and the CCR table


def observed_defaults(views: Iterable[ContractView]) -> dict[str, tuple[float, ...]]:
    """Institutions that defaulted on chain, each with the recovery rates of its defaulted
    contracts (empty when none was recorded)."""
    found: dict[str, list[float]] = {}
    for view in views:
        if view.status != Status.DEFAULTED:
            continue
        outcome = view.outcome
        party = (outcome.defaulting_party if outcome else None) or view.defaulting_party
        if party is None:
            continue
        rates = found.setdefault(party, [])
        if outcome is not None and outcome.recovery_rate is not None:
            rates.append(min(max(outcome.recovery_rate, 0.0), 1.0))
    return {party: tuple(rates) for party, rates in found.items()}


@dataclass(frozen=True)
class Credit:
    """An institution's grade, PD and LGD as the monitor uses them."""

    grade: str
    pd: float
    lgd: float


def credit_of(
    member: Member,
    ratings: Mapping[str, float],
    defaults: Mapping[str, tuple[float, ...]],
    recovery_rate: float = DEFAULT_RECOVERY_RATE,
) -> Credit:
    """PD: 1 after an observed default ("D"), else from the on-chain score, the external grade
    or ``UNRATED_GRADE``. LGD: 1 - the mean observed recovery, else 1 - ``recovery_rate``."""
    recoveries = defaults.get(member.id, ())
    rr = math.fsum(recoveries) / len(recoveries) if recoveries else recovery_rate
    if not 0.0 <= rr <= 1.0:
        raise ValidationError(f"recovery rate must be in [0, 1], got {rr}", where=member.id)
    lgd = 1.0 - rr
    if member.id in defaults:
        return Credit("D", 1.0, lgd)
    score = ratings.get(member.id)
    if score is not None and math.isfinite(score) and 0.0 <= score <= 100.0:
        return Credit(str(grade_of(score)), _pd_of(score), lgd)
    grade = member.external_rating or UNRATED_GRADE
    return Credit(grade, _pd_of(grade), lgd)


_pd_of = functools.lru_cache(maxsize=8192)(pd_of)
"""``pd_of`` is pure and the scores repeat from block to block."""


def ccr_row(
    member: Member,
    ratings: Mapping[str, float],
    defaults: Mapping[str, tuple[float, ...]],
    recovery_rate: float,
    ead: float,
    netting_sets: int,
    open_contracts: int,
) -> CcrRow:
    """An institution's row of the CCR table (``ead``: what it owes over its netting sets)."""
    credit = credit_of(member, ratings, defaults, recovery_rate)
    return CcrRow(
        institution=member.id,
        role=str(member.role),
        grade=credit.grade,
        pd=credit.pd,
        lgd=credit.lgd,
        ead=ead,
        el=expected_loss(credit.pd, ead, credit.lgd, where=member.id),
        threshold=member.ccr_threshold,
        netting_sets=netting_sets,
        open_contracts=open_contracts,
        alert=member.ccr_threshold > 0 and ead > member.ccr_threshold,
    )


def assess(inp: MonitorInput) -> Assessment:
    """The CCR table, the directed exposures and the exposure network at ``inp.height``."""
    live = [v for v in inp.contracts if not v.status.terminal]
    prices = market_prices(live, [v for v in inp.contracts if v.status.terminal], inp.prices)
    open_contracts: dict[str, int] = {}
    for view in inp.contracts:
        if not view.status.terminal:
            for party in (view.contract.client, view.contract.dealer):
                open_contracts[party] = open_contracts.get(party, 0) + 1
    return assessment_of(
        inp.height,
        inp.members,
        bilateral_exposures(inp, prices),
        observed_defaults(inp.contracts),
        open_contracts,
        inp.ratings,
        inp.guarantees,
        inp.recovery_rate,
    )


def assessment_of(
    height: int,
    members: Iterable[Member],
    exposures: tuple[DirectedExposure, ...],
    defaults: Mapping[str, tuple[float, ...]],
    open_contracts: Mapping[str, int],
    ratings: Mapping[str, float],
    guarantees: Iterable[Guarantee],
    recovery_rate: float,
) -> Assessment:
    """The CCR table and the exposure network from the netting sets' exposures: what both the
    whole-market ``assess`` and the incremental monitor end with."""
    institutions = [m for m in members if m.role in INSTITUTION_ROLES]
    owed: dict[str, list[float]] = {}
    counterparties: dict[str, set[str]] = {}
    for x in exposures:
        owed.setdefault(x.debtor, []).append(x.ead)
        counterparties.setdefault(x.debtor, set()).add(x.creditor)
    rows: list[CcrRow] = []
    lgd: dict[str, float] = {}
    for m in institutions:
        row = ccr_row(
            m,
            ratings,
            defaults,
            recovery_rate,
            math.fsum(owed.get(m.id, ())),
            len(counterparties.get(m.id, ())),
            open_contracts.get(m.id, 0),
        )
        lgd[m.id] = row.lgd
        rows.append(row)
    guarantees = tuple(guarantees)
    return Assessment(
        height,
        tuple(rows),
        exposures,
        lambda: exposure_network(institutions, exposures, lgd, guarantees),
    )


# ---------------------------------------------------------------------------------------------
# The exposure network


def exposure_network(
    institutions: Sequence[Member],
    exposures: Iterable[DirectedExposure],
    lgd: Mapping[str, float],
    guarantees: Iterable[Guarantee] = (),
) -> ExposureNetwork:
    """Nodes with their genesis capital; an edge creditor -> debtor per positive EAD losing the
    debtor's LGD; guarantors' live lines take over part of the dealers' exposures to a client.
    """
    ids = {m.id for m in institutions}
    nodes = [
        Institution(id=m.id, capital=m.capital, external_assets=m.capital, weight=m.capital)
        for m in institutions
    ]
    claims: dict[str, list[tuple[str, float]]] = {}
    for x in exposures:
        if x.ead > 0 and x.creditor in ids and x.debtor in ids:
            claims.setdefault(x.debtor, []).append((x.creditor, x.ead))
    lines: dict[str, list[Guarantee]] = {}
    for g in sorted(guarantees, key=lambda g: g.id):
        if g.status == "live" and g.line - g.paid > 0 and g.guarantor in ids:
            lines.setdefault(g.client, []).append(g)
    edges: list[Exposure] = []
    for debtor, owed in claims.items():
        loss = lgd.get(debtor, 1.0 - DEFAULT_RECOVERY_RATE)
        total = math.fsum(amount for _, amount in owed)
        remaining = total
        cover: dict[str, float] = {}
        for g in lines.get(debtor, ()):
            if g.guarantor == debtor or remaining <= 0:
                continue
            take = min(from_micros(g.line - g.paid), remaining)
            cover[g.guarantor] = cover.get(g.guarantor, 0.0) + take
            remaining -= take
        scale = remaining / total if total > 0 else 1.0
        for creditor, amount in owed:
            if amount * scale > 0:
                edges.append(Exposure(creditor, debtor, amount * scale, loss))
        for guarantor, amount in cover.items():
            edges.append(Exposure(guarantor, debtor, amount, loss))
    return build_network(nodes, edges)


# ---------------------------------------------------------------------------------------------
# Alerts and what-if


def crossings(
    previous: Collection[str], rows: Iterable[CcrRow]
) -> tuple[frozenset[str], tuple[str, ...]]:
    """(institutions above their threshold now, those that crossed since ``previous``).

    An institution alerts once per crossing: it must fall back to its threshold or below before
    it can alert again.
    """
    rows = list(rows)
    above = frozenset(r.institution for r in rows if r.alert)
    crossed = tuple(r.institution for r in rows if r.alert and r.institution not in previous)
    return above, crossed


def alert_for(assessment: Assessment, institution: str) -> RiskAlert:
    """The alert for ``institution`` with the cascade its default would start (formulas 10-11)."""
    row = assessment.row(institution)
    if row is None:
        raise ValidationError(f"unknown institution {institution!r}", where="alert")
    result = cascade(assessment.network, (institution,))
    return RiskAlert(
        height=assessment.height,
        institution=institution,
        ead=row.ead,
        threshold=row.threshold,
        cascade_rounds=result.rounds,
        cascade_defaulted=result.defaulted,
    )


def what_if(
    network: ExposureNetwork, shocked: Sequence[str], model: str = "cascade"
) -> WhatIfReply:
    """How far the default of ``shocked`` spreads under ``model`` (cascade, debtrank or
    eisenberg-noe); ``losses`` is what each institution loses.

    cascade: ``amount x lgd`` from each defaulted debtor. debtrank: final stress x capital.
    eisenberg-noe: the shocked institutions' external assets are wiped out and the clearing
    vector found; a creditor loses the unpaid share of what its debtors owe it.
    """
    if model not in MODELS:
        raise ValidationError(f"unknown model {model!r} (expected one of {', '.join(MODELS)})")
    if not shocked:
        raise ValidationError("name at least one institution to default", where="institutions")
    for name in shocked:
        network.index_of(name, where="institutions")
    shocked = tuple(dict.fromkeys(shocked))
    if model == "cascade":
        result = cascade(network, shocked)
        return WhatIfReply(model, shocked, result.rounds, result.defaulted, result.losses)
    if model == "debtrank":
        ranked = debtrank(network, shocked)
        losses = {
            name: ranked.stress[name] * float(network.capital[i])
            for i, name in enumerate(network.ids)
        }
        return WhatIfReply(model, shocked, ranked.rounds, ranked.defaulted, losses)
    external = network.external_assets.copy()
    index = [network.index_of(name) for name in shocked]
    external[index] = 0.0
    hit = dataclasses.replace(network, external_assets=external)
    cleared = eisenberg_noe(hit)
    p_bar = hit.owed()
    paid = np.array([cleared.payments[name] for name in hit.ids])
    unpaid = np.divide(p_bar - paid, p_bar, out=np.zeros(hit.size), where=p_bar > 0)
    lost = np.bincount(
        hit.creditor, weights=hit.amount * unpaid[hit.debtor], minlength=hit.size
    ).astype(np.float64)
    first = tuple(name for name in network.ids if name in shocked)
    rounds = [first]
    for step in cleared.rounds:
        new = tuple(name for name in step if name not in shocked)
        if new:
            rounds.append(new)
    defaulted = tuple(name for name in network.ids if name in shocked or name in cleared.defaulted)
    losses = {name: float(lost[i]) for i, name in enumerate(network.ids)}
    return WhatIfReply(model, shocked, tuple(rounds), defaulted, losses)
