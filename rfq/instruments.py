"""Instrument terms shared by RFQs, pricing and smart contracts, and the underlyings catalog.

A client's RFQ carries ``Terms`` (what it wants to trade); the dealer's quote adds the price;
the contract spawned on chain is ``Terms`` plus the agreed price and margin rate
(``rfq.contracts``). Underlying ids are single NATS subject tokens (no dots), e.g. ``RB2605``
for the SHFE rebar May-2026 future, so prices travel on ``otc.px.RB2605``.
"""

from __future__ import annotations

import datetime as dt
import enum
import functools
import re
import types
from collections.abc import Mapping
from typing import Annotated, Literal

import msgspec

from rfq.errors import ValidationError


class Template(enum.StrEnum):
    """Names of the built-in smart-contract templates (DESIGN.md section 6). What a template
    is and does lives in its module under ``rfq.contracts.templates``; ``Terms.template`` is
    any registered name."""

    PRICE_SWAP = "price_swap"
    SPOT_SWAP = "spot_swap"
    AVERAGE_PRICE_SWAP = "average_price_swap"
    SPREAD_SWAP = "spread_swap"
    CALENDAR_SPREAD = "calendar_spread"
    INDEX_SWAP = "index_swap"
    FORWARD = "forward"
    EUROPEAN_OPTION = "european_option"


TemplateName = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
"""A template's name on the wire: any registered one (``validate_terms`` refuses the rest)."""


class Side(enum.StrEnum):
    """The client's side. ``buy`` receives (settlement - fixed) x quantity x multiplier."""

    BUY = "buy"
    SELL = "sell"


class Leg(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    underlying: str
    weight: float = 1.0


class Averaging(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Inclusive window of fixing dates whose mean settles an average-price swap."""

    start: dt.date
    end: dt.date


class OptionTerms(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A European option on the weighted legs. ``premium`` is per unit, paid by a buying client;
    in an RFQ it is 0 and the dealer's quoted price becomes the premium."""

    type: Literal["call", "put"]
    strike: float
    premium: float = 0.0


class Terms(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """What is traded, without the price: the part of a contract a client puts in an RFQ."""

    template: TemplateName
    """A registered template's name (``rfq.contracts.templates``)."""
    legs: tuple[Leg, ...]
    client_side: Side
    quantity: float
    trade_date: dt.date
    maturity: dt.date
    multiplier: float = 1.0
    averaging: Averaging | None = None
    option: OptionTerms | None = None

    @property
    def underlyings(self) -> tuple[str, ...]:
        return tuple(leg.underlying for leg in self.legs)

    @property
    def tenor_years(self) -> float:
        return max((self.maturity - self.trade_date).days, 0) / 365.0


_UNDERLYING_ID = re.compile(r"^[A-Za-z0-9_-]{1,32}$")


def validate_terms(
    terms: Terms,
    *,
    catalog: Mapping[str, Underlying] | None = None,
    today: dt.date | None = None,
) -> None:
    """Refuse terms no contract could be built from; ``catalog`` also checks underlyings exist.

    Raises ``ValidationError`` naming the field. The trade date is the caller's "today": a
    maturity on or before it is in the past. With ``today`` (the business date of a new
    trade) the terms must also be tradable then (``check_listed``): no expired or unlisted
    month, no maturity after a month's last trading day. Contracts already on chain are
    validated without it, so a month expiring never invalidates them. What a template asks of
    its legs, averaging window and option terms is its own (``ContractTemplate.validate_legs``
    and ``validate_extras``).
    """
    from rfq.contracts.templates import REGISTRY

    template = REGISTRY.get(terms.template)
    if template is None:
        names = ", ".join(REGISTRY)
        raise ValidationError(
            f"unknown template {terms.template!r} (one of {names})", where="template"
        )
    if not terms.legs:
        raise ValidationError("at least one leg is required", where="legs")
    for i, leg in enumerate(terms.legs):
        if not _UNDERLYING_ID.match(leg.underlying):
            raise ValidationError(
                f"underlying {leg.underlying!r} is not a valid id", where=f"legs[{i}].underlying"
            )
        if catalog is not None and leg.underlying not in catalog:
            raise ValidationError(
                f"unknown underlying {leg.underlying!r}", where=f"legs[{i}].underlying"
            )
        if leg.weight == 0 or leg.weight != leg.weight:
            raise ValidationError("weight must be a non-zero number", where=f"legs[{i}].weight")
    template.validate_legs(terms, catalog)
    if not terms.quantity > 0:
        raise ValidationError("quantity must be positive", where="quantity")
    if not terms.multiplier > 0:
        raise ValidationError("multiplier must be positive", where="multiplier")
    if terms.maturity <= terms.trade_date:
        raise ValidationError(
            f"maturity {terms.maturity} is not after the trade date {terms.trade_date}",
            where="maturity",
        )
    template.validate_extras(terms)
    if today is not None:
        check_listed(terms, today, catalog=catalog)


# --------------------------------------------------------------------------------------------
# Underlyings catalog


class AssetClass(enum.StrEnum):
    """SA-CCR asset classes (BCBS 279)."""

    INTEREST_RATE = "interest_rate"
    FX = "fx"
    CREDIT = "credit"
    EQUITY = "equity"
    COMMODITY = "commodity"


class Underlying(msgspec.Struct, frozen=True):
    """A priced reference: a futures month, a spot assessment or an index.

    ``hedging_set`` and ``commodity_type`` place it in SA-CCR; ``annual_vol`` and
    ``start_price`` (the root's reference level) drive the oracle's simulation; ``root``
    groups months of one future. A futures month has a ``contract_month`` (``YYMM``) and a
    ``last_trading_day``: it trades while it is one of its root's next three delivery months
    (``listed_futures``), up to and including that day, and has no price after it.
    """

    id: str
    name: str
    venue: str
    root: str
    unit: str
    asset_class: AssetClass
    hedging_set: str
    commodity_type: str
    start_price: float
    annual_vol: float
    tick: float
    contract_month: str | None = None
    currency: str = "CNY"
    last_trading_day: dt.date | None = None

    def expired(self, today: dt.date) -> bool:
        """True once the last trading day has passed: no trading, no price, no new fixing."""
        return self.last_trading_day is not None and today > self.last_trading_day


class FuturesRoot(msgspec.Struct, frozen=True):
    """One listed future (all its months): exchange, unit, SA-CCR placement, reference level."""

    root: str
    name: str
    venue: str
    unit: str
    hedging_set: str
    commodity_type: str
    price: float
    annual_vol: float
    tick: float


FUTURES: tuple[FuturesRoot, ...] = (
    FuturesRoot("RB", "SHFE rebar", "SHFE", "CNY/t", "metals", "steel", 3150.0, 0.22, 1.0),
    FuturesRoot(
        "HC", "SHFE hot-rolled coil", "SHFE", "CNY/t", "metals", "steel", 3300.0, 0.22, 1.0
    ),
    FuturesRoot(
        "PP", "DCE polypropylene", "DCE", "CNY/t", "energy", "petrochemicals", 7000.0, 0.18, 1.0
    ),
    FuturesRoot(
        "Y", "DCE soybean oil", "DCE", "CNY/t", "agricultural", "soybean_oil", 7900.0, 0.2, 2.0
    ),
    FuturesRoot("C", "DCE corn", "DCE", "CNY/t", "agricultural", "corn", 2250.0, 0.14, 1.0),
    FuturesRoot("SC", "INE crude oil", "INE", "CNY/bbl", "energy", "crude_oil", 520.0, 0.32, 0.1),
)
FUTURES_ROOTS: tuple[str, ...] = tuple(f.root for f in FUTURES)

DELIVERY_MONTHS: tuple[int, ...] = (1, 5, 9)
"""Listed delivery months of every future: the SHFE/DCE main months, January, May, September."""
LISTED_MONTHS = 3
"""How many delivery months of a root trade at once (the next three)."""
LAST_TRADING_DAY = 15
"""Day of the delivery month a future last trades (SHFE style); a weekend moves it earlier."""
CENTURY = 2000
"""Contract months are ``YYMM``: ``RB2705`` is May 2027, so ids span 2000 to 2099."""


def last_trading_day(year: int, month: int) -> dt.date:
    """The 15th of the delivery month, or the Friday before when the 15th is a weekend.

    Exchange holidays are not modelled: the oracle's calendar is Monday to Friday, so the last
    trading day always has a close (the month's final fixing).
    """
    day = dt.date(year, month, LAST_TRADING_DAY)
    while day.weekday() >= 5:
        day -= dt.timedelta(days=1)
    return day


def listed_months(today: dt.date, count: int = LISTED_MONTHS) -> tuple[tuple[int, int], ...]:
    """(year, month) of the next ``count`` delivery months still trading on ``today``, front
    first: a month trades up to and including its last trading day, and the next one is
    listed the day after."""
    found: list[tuple[int, int]] = []
    year = today.year
    while len(found) < count:
        for month in DELIVERY_MONTHS:
            if len(found) < count and last_trading_day(year, month) >= today:
                found.append((year, month))
        year += 1
    return tuple(found)


def month_code(year: int, month: int) -> str:
    """``YYMM``: (2027, 5) -> ``2705``."""
    return f"{year % 100:02d}{month:02d}"


def futures_month(root: FuturesRoot, year: int, month: int) -> Underlying:
    """The ``root`` future delivering in ``month`` of ``year`` (e.g. ``RB2705``)."""
    code = month_code(year, month)
    return Underlying(
        id=f"{root.root}{code}",
        name=f"{root.name} {code}",
        venue=root.venue,
        root=root.root,
        unit=root.unit,
        asset_class=AssetClass.COMMODITY,
        hedging_set=root.hedging_set,
        commodity_type=root.commodity_type,
        start_price=root.price,
        annual_vol=root.annual_vol,
        tick=root.tick,
        contract_month=code,
        last_trading_day=last_trading_day(year, month),
    )


SPOT_AND_INDICES: tuple[Underlying, ...] = (
    Underlying(
        id="TSBILLET",
        name="Tangshan billet (spot)",
        venue="spot",
        root="TSBILLET",
        unit="CNY/t",
        asset_class=AssetClass.COMMODITY,
        hedging_set="metals",
        commodity_type="steel",
        start_price=3050.0,
        annual_vol=0.2,
        tick=10.0,
    ),
    Underlying(
        id="CSI300",
        name="CSI 300 index",
        venue="CSI",
        root="CSI300",
        unit="points",
        asset_class=AssetClass.EQUITY,
        hedging_set="CSI300",
        commodity_type="",
        start_price=4600.0,
        annual_vol=0.2,
        tick=0.2,
    ),
)
"""Underlyings that never expire."""


def listed_futures(root: str, today: dt.date) -> tuple[Underlying, ...]:
    """The months of ``root`` that trade on ``today``, front month first."""
    spec = _ROOTS[root]
    return tuple(futures_month(spec, y, m) for y, m in listed_months(today))


def listed_underlyings(today: dt.date) -> dict[str, Underlying]:
    """What trades on ``today``: the next three months of every future, the spot and the index.

    The one listing everything uses: the oracle publishes these, the market watch shows them,
    simulated clients trade them and ``validate_terms(..., today=)`` refuses anything else.
    """
    return dict(_listing(today))


@functools.lru_cache(maxsize=64)
def _listing(today: dt.date) -> Mapping[str, Underlying]:
    """``listed_underlyings``, computed once a date: every accepted trade checks it."""
    out: dict[str, Underlying] = {}
    for spec in FUTURES:
        for year, month in listed_months(today):
            u = futures_month(spec, year, month)
            out[u.id] = u
    for u in SPOT_AND_INDICES:
        out[u.id] = u
    return types.MappingProxyType(out)


def check_listed(
    terms: Terms, today: dt.date, *, catalog: Mapping[str, Underlying] | None = None
) -> None:
    """Refuse terms on a month that does not trade on ``today`` or that mature after one of
    their months' last trading day (no fixing exists then). Raises ``ValidationError``
    naming the field."""
    known = CATALOG if catalog is None else catalog
    listed = _listing(today)
    for i, leg in enumerate(terms.legs):
        u = known.get(leg.underlying)
        if u is None or u.last_trading_day is None:
            continue
        where = f"legs[{i}].underlying"
        if u.expired(today):
            raise ValidationError(
                f"{u.id} expired: its last trading day was {u.last_trading_day}", where=where
            )
        if u.root in _ROOTS and u.id not in listed:
            months = ", ".join(x.id for x in listed_futures(u.root, today))
            raise ValidationError(f"{u.id} is not listed yet (trading now: {months})", where=where)
        if terms.maturity > u.last_trading_day:
            raise ValidationError(
                f"maturity {terms.maturity} is after {u.id}'s last trading day "
                f"{u.last_trading_day}",
                where="maturity",
            )


def is_expired(
    underlying: str, today: dt.date, *, catalog: Mapping[str, Underlying] | None = None
) -> bool:
    """True for a futures month whose last trading day is before ``today`` (unknown ids and
    underlyings without a last trading day never expire)."""
    u = (CATALOG if catalog is None else catalog).get(underlying)
    return u is not None and u.expired(today)


_ROOTS: dict[str, FuturesRoot] = {f.root: f for f in FUTURES}


def _build_catalog() -> dict[str, Underlying]:
    entries: dict[str, Underlying] = {}
    for spec in FUTURES:
        for yy in range(100):
            for month in DELIVERY_MONTHS:
                u = futures_month(spec, CENTURY + yy, month)
                entries[u.id] = u
    for u in SPOT_AND_INDICES:
        entries[u.id] = u
    return entries


CATALOG: dict[str, Underlying] = _build_catalog()
"""Every underlying id the core can resolve: each future's delivery months of 2000-2099 (so a
contract on an expired month is still classified, marked and settled), the spot and the
index. It is reference data, not a listing: what trades on a date is
``listed_underlyings(today)``."""
