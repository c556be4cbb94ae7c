"""The terminal's pure models: the RFQ ticket as typed, rows built from market data, and
the client's P&L per contract.

``TicketDraft`` holds the ticket's fields exactly as the user typed them; ``default_ticket``
fills it for a business date (legs on futures months listed that day). ``build_request``
turns a draft into the ``Terms`` an RFQ carries, checking them with the same rules a dealer
applies (``validate_terms`` through ``validate_rfq``: no expired or unlisted month; the
default dealers' per-trade limits, ``check_trade_limits``; the RFQ deadline range of
``rfq.messages``), and raises ``TicketError`` naming the ticket field at fault, so the form
can show the message beside that field.
"""

from __future__ import annotations

import calendar
import datetime as dt
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from peers.market import MarketData
from rfq.contracts.model import ContractView
from rfq.contracts.payoff import signed_size
from rfq.contracts.templates import REGISTRY
from rfq.errors import ValidationError
from rfq.instruments import (
    CATALOG,
    Leg,
    Side,
    Template,
    Terms,
    Underlying,
    listed_underlyings,
)
from rfq.messages import MAX_DEADLINE_S, MIN_DEADLINE_S, Rfq, check_deadline_s, validate_rfq
from rfq.pricing.limits import DEFAULT_TRADE_LIMITS, TradeLimits, check_trade_limits
from tui.format import product

TICKET_FIELDS = (
    "template",
    "legs",
    "side",
    "quantity",
    "multiplier",
    "maturity",
    "avg_start",
    "avg_end",
    "option_type",
    "strike",
    "dealers",
    "deadline",
)

DEFAULT_MATURITY = "3m"


class TicketError(Exception):
    """A ticket that cannot be sent; ``field`` is the ticket field to mark."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}")


@dataclass(frozen=True)
class TicketDraft:
    """The RFQ ticket's fields as text, the way the form holds them (``default_ticket``
    gives the ticket's opening values for a business date)."""

    template: str = Template.PRICE_SWAP.value
    legs: str = ""
    side: str = Side.BUY.value
    quantity: str = "1000"
    multiplier: str = "1"
    maturity: str = DEFAULT_MATURITY
    avg_start: str = ""
    avg_end: str = ""
    option_type: str = "call"
    strike: str = ""
    all_dealers: bool = True
    dealers: tuple[str, ...] = ()
    deadline: str = "5"


@dataclass(frozen=True)
class RfqRequest:
    """What the ticket asks the session to send."""

    terms: Terms
    dealers: tuple[str, ...] | None
    deadline_s: float
    clamped_from: float | None = None
    """The deadline typed, when it was outside the RFQ range and ``deadline_s`` is its bound."""

    @property
    def summary(self) -> str:
        who = "all dealers" if self.dealers is None else ", ".join(self.dealers)
        buys = self.terms.client_side == Side.BUY
        text = (
            f"client {'buys' if buys else 'sells'} {self.terms.quantity:g} x "
            f"{product(self.terms)} to {self.terms.maturity} from {who}"
        )
        if self.terms.option is not None:
            text += f", {'paying' if buys else 'receiving'} the premium"
        if self.clamped_from is not None:
            text += f"; deadline {self.deadline_s:g} s (clamped from {self.clamped_from:g})"
        return text


# --------------------------------------------------------------------------------------------
# Default legs: futures months listed on the business date


def default_legs(template: str, today: dt.date, maturity: dt.date | None = None) -> str:
    """Legs a ticket of ``template`` opens with on ``today`` (the template's own
    ``default_legs``): the nearest rebar month listed then that trades to ``maturity`` (the
    default tenor when None); HC minus RB of that month for a spread; the next rebar month
    minus it for a calendar spread."""
    return REGISTRY[template].default_legs(today, maturity)


def example_legs(today: dt.date) -> tuple[str, str]:
    """A single leg and a spread listed on ``today``, for the ticket's hints."""
    return default_legs(Template.PRICE_SWAP, today), default_legs(Template.SPREAD_SWAP, today)


def default_ticket(today: dt.date, **fields: Any) -> TicketDraft:
    """The ticket's opening values on ``today`` (``fields`` replace some of them)."""
    return replace(TicketDraft(legs=default_legs(Template.PRICE_SWAP, today)), **fields)


_TERM = re.compile(
    r"\s*(?P<sign>[+-])?\s*(?:(?P<pre>\d+(?:\.\d+)?)\s*\*\s*)?(?P<id>[A-Za-z][A-Za-z0-9_]*)"
    r"(?:\s*\*\s*(?P<post>\d+(?:\.\d+)?))?\s*"
)
_TENOR = re.compile(r"^\s*(\d+)\s*([dwmy])\s*$", re.IGNORECASE)


def parse_legs(text: str, today: dt.date | None = None) -> tuple[Leg, ...]:
    """``RB2705``, ``HC2705 - RB2705``, ``0.6*RB2705 + 0.4*HC2705`` -> legs (ids upper-cased).

    ``today`` picks the months the error messages suggest (listed that day)."""
    single, spread = example_legs(today) if today is not None else ("RByymm", "HCyymm - RByymm")
    source = text.strip()
    if not source:
        raise TicketError("legs", f"enter an underlying, e.g. {single} (or {spread})")
    legs: list[Leg] = []
    position = 0
    while position < len(source):
        match = _TERM.match(source, position)
        if match is None or match.end() == position:
            raise TicketError("legs", f"cannot read {source[position:]!r} (try {spread})")
        if legs and match.group("sign") is None:
            raise TicketError("legs", "join legs with + or -")
        weight = float(match.group("pre") or match.group("post") or 1.0)
        if match.group("sign") == "-":
            weight = -weight
        legs.append(Leg(match.group("id").upper(), weight))
        position = match.end()
    return tuple(legs)


def add_months(day: dt.date, months: int) -> dt.date:
    month_index = day.month - 1 + months
    year, month = day.year + month_index // 12, month_index % 12 + 1
    return dt.date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def parse_date(text: str, today: dt.date, *, field: str) -> dt.date:
    """An ISO date, or a tenor from ``today``: ``90d``, ``6w``, ``3m``, ``1y``."""
    source = text.strip()
    if not source:
        raise TicketError(field, "enter a date (YYYY-MM-DD) or a tenor such as 3m")
    tenor = _TENOR.match(source)
    if tenor:
        count, unit = int(tenor.group(1)), tenor.group(2).lower()
        if unit == "d":
            return today + dt.timedelta(days=count)
        if unit == "w":
            return today + dt.timedelta(weeks=count)
        return add_months(today, count * (12 if unit == "y" else 1))
    try:
        return dt.date.fromisoformat(source)
    except ValueError:
        raise TicketError(field, f"{source!r} is not a date (YYYY-MM-DD) or tenor (3m)") from None


def parse_number(text: str, *, field: str, label: str) -> float:
    source = text.strip().replace(",", "").replace("_", "")
    if not source:
        raise TicketError(field, f"enter the {label}")
    try:
        value = float(source)
    except ValueError:
        raise TicketError(field, f"{text.strip()!r} is not a number") from None
    if not math.isfinite(value):
        raise TicketError(field, f"the {label} must be a finite number")
    return value


# ValidationError.where (from validate_terms / validate_rfq) -> the ticket field to mark.
_WHERE_FIELD = {
    "legs": "legs",
    "quantity": "quantity",
    "multiplier": "multiplier",
    "maturity": "maturity",
    "averaging": "avg_start",
    "option": "strike",
    "option.strike": "strike",
    "option.premium": "strike",
    "dealers": "dealers",
    "deadline": "deadline",
}


def field_of(where: str | None) -> str:
    if where is None:
        return "ticket"
    if where.startswith("legs"):
        return "legs"
    return _WHERE_FIELD.get(where, "ticket")


@dataclass(frozen=True)
class _DraftReader:
    """The draft's fields, parsed for a template's own ticket rows (``ticket_extras``)."""

    draft: TicketDraft
    today: dt.date

    def text(self, field: str) -> str:
        value = getattr(self.draft, field)
        assert isinstance(value, str)
        return value

    def date(self, field: str) -> dt.date:
        return parse_date(self.text(field), self.today, field=field)

    def number(self, field: str, label: str) -> float:
        return parse_number(self.text(field), field=field, label=label)


def build_terms(draft: TicketDraft, today: dt.date) -> Terms:
    """The draft's terms, parsed but not yet checked against the contract rules: the common
    fields here, the template's own rows by its ``ticket_extras``."""
    template = REGISTRY.get(draft.template)
    if template is None:
        raise TicketError("template", f"unknown template {draft.template!r}")
    try:
        side = Side(draft.side)
    except ValueError:
        raise TicketError("side", "choose buy or sell") from None
    legs = parse_legs(draft.legs, today)
    quantity = parse_number(draft.quantity, field="quantity", label="quantity")
    multiplier = parse_number(draft.multiplier, field="multiplier", label="multiplier")
    maturity = parse_date(draft.maturity, today, field="maturity")
    try:
        extras = template.ticket_extras(_DraftReader(draft, today))
    except ValidationError as exc:
        raise TicketError(exc.where or "ticket", exc.message) from None
    return Terms(
        template=template.name,
        legs=legs,
        client_side=side,
        quantity=quantity,
        trade_date=today,
        maturity=maturity,
        multiplier=multiplier,
        averaging=extras.averaging,
        option=extras.option,
    )


def build_request(
    draft: TicketDraft,
    *,
    client: str,
    today: dt.date,
    now_ms: int,
    dealers: frozenset[str],
    prices: Mapping[str, float] | None = None,
    limits: TradeLimits = DEFAULT_TRADE_LIMITS,
    catalog: Mapping[str, Underlying] = CATALOG,
) -> RfqRequest:
    """Check the draft as a dealer would; raises ``TicketError`` naming the field at fault.

    The terms must trade on ``today`` and stay within ``limits`` at ``prices`` (the latest
    price per underlying; reference levels stand in for missing ones): an RFQ beyond the
    default dealers' limits gets no quote. A positive deadline outside the RFQ range is
    clamped to it (``clamp_deadline``); zero or less is refused.
    """
    terms = build_terms(draft, today)
    typed = parse_number(draft.deadline, field="deadline", label="deadline (seconds)")
    deadline_s = clamp_deadline(typed)
    try:
        check_deadline_s(deadline_s)
    except ValidationError as exc:
        raise TicketError("deadline", exc.message) from None
    chosen: tuple[str, ...] | None = None
    if not draft.all_dealers:
        if not draft.dealers:
            raise TicketError("dealers", "pick at least one dealer (or ask all dealers)")
        chosen = tuple(draft.dealers)
    draft_rfq = Rfq(
        id=f"{client}-draft",
        client=client,
        terms=terms,
        deadline_ms=now_ms + int(deadline_s * 1000),
        dealers=chosen or (),
    )
    try:
        validate_rfq(draft_rfq, today=today, now_ms=now_ms, dealers=dealers, catalog=catalog)
        check_trade_limits(terms, limits, today=today, prices=prices or {}, catalog=catalog)
    except ValidationError as exc:
        raise TicketError(field_of(exc.where), exc.message) from None
    return RfqRequest(
        terms=terms,
        dealers=chosen,
        deadline_s=deadline_s,
        clamped_from=typed if deadline_s != typed else None,
    )


def clamp_deadline(seconds: float) -> float:
    """A positive deadline moved into the RFQ range (``MIN_DEADLINE_S`` to
    ``MAX_DEADLINE_S``): 600 -> 300, 0.5 -> 1. Zero or less stays (it is refused)."""
    if seconds <= 0:
        return seconds
    return min(max(seconds, MIN_DEADLINE_S), MAX_DEADLINE_S)


# --------------------------------------------------------------------------------------------
# Market watch rows


@dataclass(frozen=True)
class MarketRow:
    """One underlying in the market watch."""

    underlying: str
    name: str
    unit: str
    last: float | None
    previous_close: float | None
    closes: tuple[float, ...] = field(default=())

    @property
    def change(self) -> float | None:
        if self.last is None or self.previous_close is None:
            return None
        return self.last - self.previous_close

    @property
    def change_pct(self) -> float | None:
        change = self.change
        if change is None or not self.previous_close:
            return None
        return change / self.previous_close


def market_rows(
    market: MarketData, *, today: dt.date | None = None, history: int = 20
) -> list[MarketRow]:
    """A row per underlying listed on ``today`` (the market's business date when None):
    last price, change on the previous close, closes. Expired months are not shown."""
    listed = market.listed() if today is None else listed_underlyings(today)
    rows = []
    for underlying in listed.values():
        latest = market.latest.get(underlying.id)
        series = market.closes.get(underlying.id, {})
        closes = tuple(series[d] for d in sorted(series)[-history:])
        rows.append(
            MarketRow(
                underlying=underlying.id,
                name=underlying.name,
                unit=underlying.unit,
                last=latest.price if latest else None,
                previous_close=market.previous_close(underlying.id),
                closes=closes,
            )
        )
    return rows


# --------------------------------------------------------------------------------------------
# Blotter


def contract_pnl(view: ContractView) -> float | None:
    """The client's P&L on a contract: the outcome's once it ended; while it lives, its
    mark-to-market plus what changed hands at the start. For an option that is the premium:
    ``client_mtm`` is the option's value ex premium, so a bought option's P&L is its value
    less the premium paid, a sold one's its (negative) value plus the premium received."""
    if view.outcome is not None:
        return view.outcome.client_pnl
    if view.client_mtm is None:
        return None
    option = view.contract.terms.option
    if option is None:
        return view.client_mtm
    return view.client_mtm - option.premium * signed_size(view.contract)
