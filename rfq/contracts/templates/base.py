"""What a contract template is: every piece the engine, the dealers, the regulator, the terminal
and the load tools need from it, declared in one class.

A template subclasses ``ContractTemplate`` and fills in its abstract pieces; ``register``
(``rfq.contracts.templates``) refuses one that lacks any of them, naming what is missing. The
shared behaviour of the linear templates (swaps and forwards: ``level - fixed``) lives in
``LinearTemplate``; the helpers here (``linear_payoff``, ``linear_trades``, ``option_trades``,
``single_month``...) are the building blocks the built-in templates share and a new template
may reuse.
"""

from __future__ import annotations

import abc
import datetime as dt
import math
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Literal, Protocol

import msgspec
import numpy as np
import numpy.typing as npt

from rfq.errors import RfqError, ValidationError
from rfq.instruments import (
    CATALOG,
    AssetClass,
    Averaging,
    Leg,
    OptionTerms,
    Side,
    Terms,
    Underlying,
    listed_futures,
)

if TYPE_CHECKING:
    from rfq.contracts.model import Contract, ContractView
    from rfq.pricing.fair_value import FairValue, FixingHistory
    from rfq.pricing.garch import VolModel
    from rfq.risk.saccr import OptionSpec, Trade

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]

DAYS_PER_YEAR = 365.0
MIN_OPTION_EXPIRY_YEARS = 1.0 / DAYS_PER_YEAR
OTHER_COMMODITIES = "other"
CALL, PUT = 0, 1
"""``PayoffRow.flag`` of an option row."""


class TemplateError(RfqError):
    """A template the registry refuses (a duplicate name, a missing piece) or an unknown name."""


# --------------------------------------------------------------------------------------------
# Payoff


class PayoffRow(msgspec.Struct, frozen=True):
    """One contract's payoff parameters as the vectorised book stores them: a price, a strike
    and a small integer flag (call or put, or whatever the template's ``vector_payoff`` reads)."""

    fixed: float = 0.0
    strike: float = 0.0
    flag: int = 0


VectorPayoff = Callable[[F64, F64, F64, I64], F64]
"""``(mark, fixed, strike, flag) -> unit payoff`` over numpy rows, elementwise, float64 in the
same order as the template's scalar ``unit_payoff`` so both agree bit for bit."""


def linear_payoff(mark: F64, fixed: F64, strike: F64, flag: I64) -> F64:
    """``level - fixed``: swaps and forwards."""
    out: F64 = mark - fixed
    return out


def option_payoff(mark: F64, fixed: F64, strike: F64, flag: I64) -> F64:
    """``max(level - K, 0)`` for a call, ``max(K - level, 0)`` for a put."""
    call = np.maximum(mark - strike, 0.0)
    put = np.maximum(strike - mark, 0.0)
    out: F64 = np.where(flag == PUT, put, call)
    return out


# --------------------------------------------------------------------------------------------
# Pricing


@dataclass(frozen=True)
class PricingInputs:
    """What ``rfq.pricing.fair_value`` hands a template: the market and the legs' forwards to
    maturity (``leg_forwards``, weighted sum ``forward``), already computed."""

    today: dt.date
    prices: Mapping[str, float]
    fixings: Mapping[str, FixingHistory]
    vol_models: Mapping[str, VolModel]
    carry_rate: float
    discount_rate: float
    include_weekends: bool
    catalog: Mapping[str, Underlying]
    tenor_years: float
    leg_forwards: tuple[float, ...]
    forward: float


# --------------------------------------------------------------------------------------------
# SA-CCR mapping


@dataclass(frozen=True)
class Placement:
    """Where an underlying sits in SA-CCR: asset class, hedging set and risk factor."""

    asset_class: str
    hedging_set: str | None
    reference: str
    is_index: bool = False


def placement_of(underlying_id: str) -> Placement:
    """Commodities by the catalog's hedging set and commodity type; equity underlyings quoted in
    points are indices; anything else is the conservative commodity set "other"."""
    u = CATALOG.get(underlying_id)
    if u is not None and u.asset_class == AssetClass.COMMODITY:
        return Placement("commodity", u.hedging_set, u.commodity_type or u.root)
    if u is not None and u.asset_class == AssetClass.EQUITY:
        return Placement("equity", None, u.root or u.id, is_index=u.unit == "points")
    return Placement("commodity", OTHER_COMMODITIES, underlying_id)


@dataclass(frozen=True)
class SaccrView:
    """One contract from a creditor's side, as SA-CCR needs it (``rfq.risk.monitor``)."""

    view: ContractView
    long: bool
    """The creditor receives ``level - fixed`` (the buying client, or the dealer facing a
    selling client)."""
    size: float
    maturity: float
    """Years (actual/365) from the chain's business date."""
    mtm: float
    prices: Mapping[str, float]

    @property
    def sign(self) -> float:
        return 1.0 if self.long else -1.0

    def leg_price(self, underlying: str) -> float:
        """A leg's price: the latest known, else (one leg) the agreed price or strike, else the
        catalog's reference price, else the contract's price level."""
        if underlying in self.prices:
            return self.prices[underlying]
        contract = self.view.contract
        option = contract.terms.option
        agreed = contract.fixed_price if contract.fixed_price is not None else None
        if agreed is None and option is not None:
            agreed = option.strike
        from rfq.contracts.templates import template_of

        if template_of(contract.terms).single_leg and agreed is not None:
            return agreed
        known = CATALOG.get(underlying)
        if known is not None:
            return known.start_price
        return abs(agreed) if agreed is not None else 0.0


def saccr_trade(
    trade_id: str,
    placement: Placement,
    *,
    notional: float,
    mtm: float,
    maturity: float,
    delta: float | None = None,
    option: OptionSpec | None = None,
) -> Trade:
    from rfq.risk.saccr import Trade

    return Trade(
        id=trade_id,
        asset_class=placement.asset_class,
        notional=notional,
        mtm=mtm,
        maturity=maturity,
        hedging_set=placement.hedging_set,
        reference=placement.reference,
        is_index=placement.is_index,
        delta=delta,
        option=option,
    )


def linear_trades(exposure: SaccrView) -> tuple[Trade, ...]:
    """One trade per leg at ``|weight x price| x size``, delta +-1 by side and weight's sign,
    the contract's mtm on its first trade."""
    contract = exposure.view.contract
    legs = contract.terms.legs
    sign = exposure.sign
    trades = []
    for k, leg in enumerate(legs):
        price = exposure.leg_price(leg.underlying)
        trades.append(
            saccr_trade(
                contract.id if len(legs) == 1 else f"{contract.id}/{k}",
                placement_of(leg.underlying),
                notional=abs(leg.weight * price) * exposure.size,
                mtm=exposure.mtm if k == 0 else 0.0,
                maturity=exposure.maturity,
                delta=sign if leg.weight > 0 else -sign,
            )
        )
    return tuple(trades)


def option_trades(exposure: SaccrView) -> tuple[Trade, ...]:
    """One trade at ``|forward| x size`` with BCBS 279's supervisory option delta (``bought``
    when the creditor is the buyer); a forward at or below zero counts as deep in the money."""
    from rfq.risk.saccr import OptionSpec

    contract = exposure.view.contract
    terms = contract.terms
    option = terms.option
    assert option is not None, "validate_terms guarantees option terms"
    forward = math.fsum(leg.weight * exposure.leg_price(leg.underlying) for leg in terms.legs)
    placement = placement_of(terms.legs[0].underlying)
    notional = abs(forward) * exposure.size
    if forward > 0:
        spec = OptionSpec(
            type=option.type,
            bought=exposure.long,
            price=forward,
            strike=option.strike,
            expiry=max(exposure.maturity, MIN_OPTION_EXPIRY_YEARS),
        )
        return (
            saccr_trade(
                contract.id,
                placement,
                notional=notional,
                mtm=exposure.mtm,
                maturity=exposure.maturity,
                option=spec,
            ),
        )
    # A level at or below zero has no supervisory delta: count the option as deep in the
    # money (delta of a call +-1, of a put -+1), the conservative side.
    delta = exposure.sign if option.type == "call" else -exposure.sign
    return (
        saccr_trade(
            contract.id,
            placement,
            notional=notional,
            mtm=exposure.mtm,
            maturity=exposure.maturity,
            delta=delta,
        ),
    )


# --------------------------------------------------------------------------------------------
# The terminal's ticket


class TicketReader(Protocol):
    """The ticket's typed fields, parsed by the terminal (each raises its own error naming the
    field)."""

    def date(self, field: str) -> dt.date: ...

    def number(self, field: str, label: str) -> float: ...

    def text(self, field: str) -> str: ...


class TicketExtras(msgspec.Struct, frozen=True):
    """The terms a template's own ticket rows add to the common ones."""

    averaging: Averaging | None = None
    option: OptionTerms | None = None


TicketRow = Literal["averaging", "option"]
"""Optional rows of the ticket (the terminal renders the ones a template declares)."""


@dataclass(frozen=True)
class TicketSpec:
    """What the RFQ ticket shows for a template: its optional rows, whether the side reads as
    an option's buyer or seller (paying or getting the premium) or as paying or receiving the
    fixed price, and whether a market-watch pick fills the legs."""

    rows: tuple[TicketRow, ...] = ()
    premium_side: bool = False
    market_pick: bool = True


def covering_months(root: str, today: dt.date, maturity: dt.date) -> list[str]:
    """The months of ``root`` listed on ``today`` that still trade on ``maturity`` (a swap to
    that date fixes on them), front first; the far listed month when none does."""
    listed = listed_futures(root, today)
    covering = [
        u.id for u in listed if u.last_trading_day is not None and u.last_trading_day >= maturity
    ]
    return covering or [listed[-1].id]


def default_maturity(today: dt.date) -> dt.date:
    """The ticket's default tenor (three months) from ``today``."""
    import calendar

    month_index = today.month - 1 + 3
    year, month = today.year + month_index // 12, month_index % 12 + 1
    return dt.date(year, month, min(today.day, calendar.monthrange(year, month)[1]))


def nearest_rebar(today: dt.date, maturity: dt.date | None) -> str:
    """The nearest rebar month listed on ``today`` that trades to ``maturity``."""
    return covering_months("RB", today, maturity or default_maturity(today))[0]


# --------------------------------------------------------------------------------------------
# Random terms: the load generator and the contracts benchmark


@dataclass(frozen=True)
class LoadDraw:
    """The common part of one simulated client's RFQ (``peers.load.random_terms``), drawn
    before the template's own: the template uses what it needs."""

    today: dt.date
    maturity: dt.date
    underlying: str
    """A futures month still trading at maturity."""
    month: str
    listed: tuple[Underlying, ...]
    """The listed months of the future ``underlying`` belongs to."""
    side: Side
    quantity: float
    spot: Callable[[str], float]
    """The latest price of an underlying (its reference level when none)."""


@dataclass(frozen=True)
class BenchPool:
    """What the contracts benchmark draws from (``peers.benchmarks.contracts``)."""

    trade_date: dt.date
    future: str
    """The futures month drawn for this contract."""
    futures: Sequence[str]
    roots: Sequence[str]
    months: Sequence[str]


@dataclass(frozen=True)
class BenchShape:
    legs: tuple[Leg, ...]
    maturity: dt.date
    multiplier: float = 1.0
    averaging: Averaging | None = None


# --------------------------------------------------------------------------------------------
# The template


class ContractTemplate(abc.ABC):
    """One smart-contract template. Subclass it, fill in every abstract piece, and
    ``register`` the class (``rfq.contracts.templates``).

    Class attributes: ``name`` (the ``Terms.template`` on the wire, unique), ``label`` and
    ``short`` (the terminal's words for it), ``single_leg`` (one leg at weight 1),
    ``averaging`` (settles on the mean of its window's fixings), ``premium_priced`` (the
    quoted price is a premium inside ``terms.option``, not a fixed price), ``load_weight``
    (how often simulated clients ask for it), ``ticket`` (its ticket rows).
    """

    name: ClassVar[str]
    label: ClassVar[str]
    short: ClassVar[str]
    single_leg: ClassVar[bool] = False
    averaging: ClassVar[bool] = False
    premium_priced: ClassVar[bool] = False
    load_weight: ClassVar[float] = 0.0
    ticket: ClassVar[TicketSpec] = TicketSpec()
    min_price: ClassVar[float | None] = None
    """The lowest price a dealer quotes (an option's premium is never negative)."""

    # -- terms -------------------------------------------------------------------------------

    @abc.abstractmethod
    def validate_legs(self, terms: Terms, catalog: Mapping[str, Underlying] | None) -> None:
        """Refuse legs this template cannot settle on (``ValidationError`` naming the field)."""

    def validate_extras(self, terms: Terms) -> None:
        """Refuse averaging or option terms that do not belong (after the common checks)."""
        refuse_averaging(terms)
        refuse_option(terms)

    # -- payoff ------------------------------------------------------------------------------

    @abc.abstractmethod
    def unit_payoff(self, contract: Contract, settlement: float) -> float:
        """Payoff per unit (x quantity x multiplier, signed by side) at this settlement level."""

    @abc.abstractmethod
    def payoff_row(self, contract: Contract) -> PayoffRow:
        """The parameters ``vector_payoff`` reads for this contract."""

    @staticmethod
    @abc.abstractmethod
    def vector_payoff(mark: F64, fixed: F64, strike: F64, flag: I64) -> F64:
        """``unit_payoff`` over numpy rows (templates sharing one function share its pass)."""

    def notional_price(self, contract: Contract) -> float:
        """The price notional and initial margin scale with: the fixed price, or the strike
        when there is none (a premium is not a price level)."""
        if contract.fixed_price is not None:
            return contract.fixed_price
        assert contract.terms.option is not None, "validate_contract guarantees one of the two"
        return contract.terms.option.strike

    # -- pricing -----------------------------------------------------------------------------

    @abc.abstractmethod
    def fair_value(self, terms: Terms, market: PricingInputs) -> FairValue:
        """Fair value per unit (the fair fixed price, or premium) on ``market.today``."""

    def client_owes_dealer(self, terms: Terms) -> bool:
        """Whether the client can end up owing the dealer (false only for a bought option)."""
        return True

    @abc.abstractmethod
    def epe_per_unit(self, terms: Terms, fair: FairValue, abs_vol: float) -> float:
        """Expected positive exposure per unit for the dealer's credit charge."""

    @abc.abstractmethod
    def pfe_per_unit(self, terms: Terms, fair: FairValue, abs_vol: float, z: float) -> float:
        """Potential future exposure per unit at quantile ``z`` for credit limits."""

    def quote_delta(self, fair: FairValue) -> float:
        """Sensitivity of the price to the legs' level, for inventory skew."""
        return 1.0

    def reference_price(self, terms: Terms, price: float) -> float:
        """The price a quote's notional (and initial margin) scales with."""
        return price

    # -- SA-CCR ------------------------------------------------------------------------------

    @abc.abstractmethod
    def saccr_trades(self, exposure: SaccrView) -> tuple[Trade, ...]:
        """The contract as SA-CCR trades from the creditor's side (asset class, hedging set,
        delta, adjusted notional, maturity)."""

    # -- the terminal ------------------------------------------------------------------------

    @abc.abstractmethod
    def default_legs(self, today: dt.date, maturity: dt.date | None) -> str:
        """Legs the ticket opens with on ``today`` (as typed: ``RB2705``, ``HC2705 - RB2705``)."""

    def ticket_extras(self, reader: TicketReader) -> TicketExtras:
        """The terms the template's own ticket rows give."""
        return TicketExtras()

    # -- random terms ------------------------------------------------------------------------

    @abc.abstractmethod
    def load_terms(self, rng: random.Random, draw: LoadDraw) -> Terms:
        """A simulated client's plausible RFQ of this template."""

    @abc.abstractmethod
    def bench_shape(
        self, rng: np.random.Generator, pool: BenchPool, maturity: dt.date
    ) -> BenchShape:
        """Legs (and window) of one benchmark contract."""

    def bench_option(
        self, rng: np.random.Generator, level: float, fixed: float | None
    ) -> tuple[float | None, OptionTerms | None]:
        """(fixed price, option terms) of one benchmark contract."""
        return fixed, None


# --------------------------------------------------------------------------------------------
# Shared pieces


def refuse_averaging(terms: Terms) -> None:
    if terms.averaging is not None:
        raise ValidationError(f"{terms.template} takes no averaging window", where="averaging")


def refuse_option(terms: Terms) -> None:
    if terms.option is not None:
        raise ValidationError(f"{terms.template} takes no option terms", where="option")


def one_leg(terms: Terms) -> None:
    if len(terms.legs) != 1 or terms.legs[0].weight != 1.0:
        raise ValidationError(f"{terms.template} takes exactly one leg with weight 1", where="legs")


def a_minus_b(terms: Terms) -> None:
    if len(terms.legs) != 2:
        raise ValidationError(f"{terms.template} takes two legs (A minus B)", where="legs")
    if terms.legs[0].weight <= 0 or terms.legs[1].weight >= 0:
        raise ValidationError(
            f"{terms.template} is leg A (weight > 0) minus leg B (weight < 0)", where="legs"
        )


def require_option(terms: Terms) -> OptionTerms:
    if terms.option is None:
        raise ValidationError(f"{terms.template} needs option terms", where="option")
    if not terms.option.strike > 0:
        raise ValidationError("strike must be positive", where="option.strike")
    if terms.option.premium < 0:
        raise ValidationError("premium cannot be negative", where="option.premium")
    return terms.option


def option_from_ticket(reader: TicketReader) -> OptionTerms:
    kind = reader.text("option_type")
    if kind not in ("call", "put"):
        raise ValidationError("choose call or put", where="option_type")
    return OptionTerms(
        type="call" if kind == "call" else "put",
        strike=reader.number("strike", "strike"),
    )


class LinearTemplate(ContractTemplate):
    """Swaps and forwards: the client who buys receives ``level - fixed`` per unit."""

    def unit_payoff(self, contract: Contract, settlement: float) -> float:
        assert contract.fixed_price is not None
        return settlement - contract.fixed_price

    def payoff_row(self, contract: Contract) -> PayoffRow:
        assert contract.fixed_price is not None
        return PayoffRow(fixed=contract.fixed_price)

    vector_payoff = staticmethod(linear_payoff)

    def fair_value(self, terms: Terms, market: PricingInputs) -> FairValue:
        """The weighted forward at maturity."""
        from rfq.pricing.fair_value import FairValue

        return FairValue(
            terms.template, market.forward, market.forward, market.leg_forwards, market.tenor_years
        )

    def epe_per_unit(self, terms: Terms, fair: FairValue, abs_vol: float) -> float:
        from rfq.pricing.credit import linear_epe

        return linear_epe(abs_vol, fair.tenor_years)

    def pfe_per_unit(self, terms: Terms, fair: FairValue, abs_vol: float, z: float) -> float:
        from rfq.pricing.credit import linear_pfe

        return linear_pfe(abs_vol, fair.tenor_years, z)

    def saccr_trades(self, exposure: SaccrView) -> tuple[Trade, ...]:
        return linear_trades(exposure)


class SingleFuture(LinearTemplate):
    """A linear template on one futures month at weight 1 (price swap, forward)."""

    single_leg = True

    def validate_legs(self, terms: Terms, catalog: Mapping[str, Underlying] | None) -> None:
        one_leg(terms)

    def default_legs(self, today: dt.date, maturity: dt.date | None) -> str:
        return nearest_rebar(today, maturity)

    def load_terms(self, rng: random.Random, draw: LoadDraw) -> Terms:
        return Terms(
            self.name, (Leg(draw.underlying),), draw.side, draw.quantity, draw.today, draw.maturity
        )

    def bench_shape(
        self, rng: np.random.Generator, pool: BenchPool, maturity: dt.date
    ) -> BenchShape:
        return BenchShape((Leg(pool.future),), maturity)
