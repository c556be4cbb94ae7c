"""Instrument terms shared by RFQs, pricing and smart contracts, and the underlyings catalog.

A client's RFQ carries ``Terms`` (what it wants to trade); the dealer's quote adds the price;
the contract spawned on chain is ``Terms`` plus the agreed price and margin rate
(``rfq.contracts``). Underlying ids are single NATS subject tokens (no dots), e.g. ``RB2605``
for the SHFE rebar May-2026 future, so prices travel on ``otc.px.RB2605``.
"""

from __future__ import annotations

import datetime as dt
import enum
import re
from typing import Literal

import msgspec

from rfq.errors import ValidationError


class Template(enum.StrEnum):
    """Smart-contract templates (DESIGN.md section 6)."""

    PRICE_SWAP = "price_swap"
    SPOT_SWAP = "spot_swap"
    AVERAGE_PRICE_SWAP = "average_price_swap"
    SPREAD_SWAP = "spread_swap"
    CALENDAR_SPREAD = "calendar_spread"
    INDEX_SWAP = "index_swap"
    FORWARD = "forward"
    EUROPEAN_OPTION = "european_option"


# Templates whose settlement is one underlying at weight 1.
SINGLE_LEG = frozenset(
    {
        Template.PRICE_SWAP,
        Template.SPOT_SWAP,
        Template.AVERAGE_PRICE_SWAP,
        Template.FORWARD,
        Template.EUROPEAN_OPTION,
    }
)
# Templates that settle on leg A minus leg B.
TWO_LEG = frozenset({Template.SPREAD_SWAP, Template.CALENDAR_SPREAD})


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

    template: Template
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


def validate_terms(terms: Terms, *, catalog: dict[str, Underlying] | None = None) -> None:
    """Refuse terms no contract could be built from; ``catalog`` also checks underlyings exist.

    Raises ``ValidationError`` naming the field. The trade date is the caller's "today": a
    maturity on or before it is in the past.
    """
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
    if terms.template in SINGLE_LEG and (len(terms.legs) != 1 or terms.legs[0].weight != 1.0):
        raise ValidationError(f"{terms.template} takes exactly one leg with weight 1", where="legs")
    if terms.template in TWO_LEG:
        if len(terms.legs) != 2:
            raise ValidationError(f"{terms.template} takes two legs (A minus B)", where="legs")
        if terms.legs[0].weight <= 0 or terms.legs[1].weight >= 0:
            raise ValidationError(
                f"{terms.template} is leg A (weight > 0) minus leg B (weight < 0)", where="legs"
            )
    if terms.template == Template.CALENDAR_SPREAD and catalog is not None:
        roots = {catalog[leg.underlying].root for leg in terms.legs}
        if len(roots) != 1:
            raise ValidationError("a calendar spread is two months of one future", where="legs")
    if not terms.quantity > 0:
        raise ValidationError("quantity must be positive", where="quantity")
    if not terms.multiplier > 0:
        raise ValidationError("multiplier must be positive", where="multiplier")
    if terms.maturity <= terms.trade_date:
        raise ValidationError(
            f"maturity {terms.maturity} is not after the trade date {terms.trade_date}",
            where="maturity",
        )
    if terms.template == Template.AVERAGE_PRICE_SWAP:
        if terms.averaging is None:
            raise ValidationError("average_price_swap needs an averaging window", where="averaging")
        if terms.averaging.start > terms.averaging.end:
            raise ValidationError("averaging window starts after it ends", where="averaging")
        if terms.averaging.end > terms.maturity:
            raise ValidationError("averaging window ends after maturity", where="averaging")
    elif terms.averaging is not None:
        raise ValidationError(f"{terms.template} takes no averaging window", where="averaging")
    if terms.template == Template.EUROPEAN_OPTION:
        if terms.option is None:
            raise ValidationError("european_option needs option terms", where="option")
        if not terms.option.strike > 0:
            raise ValidationError("strike must be positive", where="option.strike")
        if terms.option.premium < 0:
            raise ValidationError("premium cannot be negative", where="option.premium")
    elif terms.option is not None:
        raise ValidationError(f"{terms.template} takes no option terms", where="option")


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
    ``start_price`` drive the oracle's simulation; ``root`` groups months of one future.
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


def _future(
    root: str,
    month: str,
    name: str,
    venue: str,
    unit: str,
    hedging_set: str,
    commodity_type: str,
    price: float,
    vol: float,
    tick: float,
) -> Underlying:
    return Underlying(
        id=f"{root}{month}",
        name=f"{name} {month}",
        venue=venue,
        root=root,
        unit=unit,
        asset_class=AssetClass.COMMODITY,
        hedging_set=hedging_set,
        commodity_type=commodity_type,
        start_price=price,
        annual_vol=vol,
        tick=tick,
        contract_month=month,
    )


def _build_catalog() -> dict[str, Underlying]:
    entries: list[Underlying] = []
    futures = [
        # root, name, venue, unit, hedging set, commodity type, price, annual vol, tick
        ("RB", "SHFE rebar", "SHFE", "CNY/t", "metals", "steel", 3150.0, 0.22, 1.0),
        ("HC", "SHFE hot-rolled coil", "SHFE", "CNY/t", "metals", "steel", 3300.0, 0.22, 1.0),
        ("PP", "DCE polypropylene", "DCE", "CNY/t", "energy", "petrochemicals", 7000.0, 0.18, 1.0),
        ("Y", "DCE soybean oil", "DCE", "CNY/t", "agricultural", "soybean_oil", 7900.0, 0.2, 2.0),
        ("C", "DCE corn", "DCE", "CNY/t", "agricultural", "corn", 2250.0, 0.14, 1.0),
        ("SC", "INE crude oil", "INE", "CNY/bbl", "energy", "crude_oil", 520.0, 0.32, 0.1),
    ]
    months = ("2601", "2605", "2609")
    for root, name, venue, unit, hset, ctype, price, vol, tick in futures:
        for k, month in enumerate(months):
            # A gentle term structure: later months a little dearer (carry).
            entries.append(
                _future(
                    root, month, name, venue, unit, hset, ctype, price * (1 + 0.01 * k), vol, tick
                )
            )
    entries.append(
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
        )
    )
    entries.append(
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
        )
    )
    return {u.id: u for u in entries}


CATALOG: dict[str, Underlying] = _build_catalog()
