"""Pre-trade messages (paper section II.2, figure 3) and who may send each.

Every payload is a frozen msgspec Struct with a string tag; the envelope's ``kind`` repeats the
tag and the channel's role table says which roles may send it. New fields are only ever
appended with defaults (msgspec schema evolution), so old peers keep decoding.

- ``Rfq``: a client asks for a price on ``Terms``, from every dealer or from a chosen list,
  with a response deadline.
- ``Quote``: a dealer's firm, time-limited price for one client and one RFQ (sealed to it).
- ``Decline``: a dealer's refusal with a machine-readable code.
- ``Accept``: the client takes one quote. It carries the dealer's signed quote, so the accept
  alone proves both sides' consent to the authorities: it is the trade transaction.
- ``Cancel``: the client withdraws an RFQ.
- ``Price``: a signed price from the oracle (``close`` marks the day's fixing).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from typing import Final

import msgspec

from rfq.errors import DECODE_ERRORS, ValidationError
from rfq.instruments import CATALOG, Terms, Underlying, validate_terms
from rfq.policy import BusChannel, channel_roles
from rfq.signing import SignedMessage

_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")

MIN_DEADLINE_S: Final = 1.0
MAX_DEADLINE_S: Final = 300.0
"""An RFQ's response deadline is 1 to 300 seconds after it is sent; anything else is refused
(``check_deadline_s``), not clamped: a caller that wants clamping (the terminal) clamps."""


class Rfq(msgspec.Struct, frozen=True, tag="rfq"):
    id: str
    client: str
    terms: Terms
    deadline_ms: int
    dealers: tuple[str, ...] = ()
    collateral: float = 0.0
    guarantee: float = 0.0

    @property
    def is_direct(self) -> bool:
        return bool(self.dealers)


class Cancel(msgspec.Struct, frozen=True, tag="rfq_cancel"):
    rfq_id: str
    client: str


class Quote(msgspec.Struct, frozen=True, tag="quote"):
    """A firm price. For an option ``price`` is the premium per unit, else the fixed price."""

    id: str
    rfq_id: str
    client: str
    dealer: str
    terms: Terms
    price: float
    valid_until_ms: int
    initial_margin_rate: float
    credit_line: float


class Decline(msgspec.Struct, frozen=True, tag="decline"):
    rfq_id: str
    client: str
    dealer: str
    code: str
    text: str


class Accept(msgspec.Struct, frozen=True, tag="accept"):
    """The client's acceptance; ``quote`` is the dealer's ``SignedMessage`` carrying the Quote."""

    rfq_id: str
    quote_id: str
    client: str
    dealer: str
    quote: SignedMessage


class Price(msgspec.Struct, frozen=True, tag="px"):
    underlying: str
    price: float
    date: dt.date
    seq: int
    close: bool = False


class HistoryRequest(msgspec.Struct, frozen=True, tag="px_history_req"):
    underlyings: tuple[str, ...] = ()


class History(msgspec.Struct, frozen=True, tag="px_history"):
    """Daily closing fixings per underlying, oldest first, as (date, price) pairs."""

    series: dict[str, list[tuple[dt.date, float]]]


RfqChannelMessage = Rfq | Cancel
QuoteChannelMessage = Quote | Decline
PriceChannelMessage = Price
OracleReply = History

# Who may send each kind on each channel: derived from the role-policy table.
RFQ_ROLES: Final = channel_roles(BusChannel.RFQS)
QUOTE_ROLES: Final = channel_roles(BusChannel.QUOTES)
PRICE_ROLES: Final = channel_roles(BusChannel.PRICES)
ORACLE_QUERY_ROLES: Final = channel_roles(BusChannel.ORACLE_QUERY)
ORACLE_REPLY_ROLES: Final = channel_roles(BusChannel.ORACLE_REPLY)

_quote_decoder = msgspec.msgpack.Decoder(Quote)


def decode_quote(signed: SignedMessage) -> Quote:
    """The Quote inside a dealer's signed message (raises ValidationError if it is not one)."""
    if signed.kind != "quote":
        raise ValidationError(f"expected a quote, got {signed.kind!r}", where="quote")
    try:
        return _quote_decoder.decode(signed.body)
    except DECODE_ERRORS as exc:
        raise ValidationError(f"quote does not decode: {exc}", where="quote") from None


def check_id(value: str, *, where: str) -> None:
    if not _ID.match(value):
        raise ValidationError(
            f"{value!r} is not a valid id (1-64 letters, digits, '-' or '_')", where=where
        )


def check_deadline_s(deadline_s: float) -> None:
    """Refuse a response deadline outside 1 to 300 seconds (``ValidationError`` on
    ``deadline`` naming the range)."""
    if not MIN_DEADLINE_S <= deadline_s <= MAX_DEADLINE_S:
        raise ValidationError(
            f"the response deadline must be {MIN_DEADLINE_S:g} to {MAX_DEADLINE_S:g} seconds, "
            f"not {deadline_s:g}",
            where="deadline",
        )


def validate_rfq(
    rfq: Rfq,
    *,
    today: dt.date,
    now_ms: int,
    dealers: frozenset[str] | None = None,
    catalog: Mapping[str, Underlying] = CATALOG,
    sent_ms: int | None = None,
) -> None:
    """Refuse an RFQ no dealer could quote: raises ``ValidationError`` naming the field.

    ``today`` is the market's business date (maturity must be after it, and the terms must
    trade then: no expired or unlisted futures month, see ``rfq.instruments.check_listed``);
    ``dealers`` the dealers of the network (a chosen list must name only those); ``sent_ms``
    when the RFQ was sent (the client's clock, as signed): its deadline must then be 1 to 300
    seconds after it.
    """
    check_id(rfq.id, where="id")
    validate_terms(rfq.terms, catalog=catalog, today=today)
    if rfq.terms.maturity <= today:
        raise ValidationError(
            f"maturity {rfq.terms.maturity} is not after {today}", where="maturity"
        )
    if sent_ms is not None:
        check_deadline_s((rfq.deadline_ms - sent_ms) / 1000)
    if rfq.deadline_ms <= now_ms:
        raise ValidationError("the response deadline has already passed", where="deadline")
    if rfq.collateral < 0 or rfq.guarantee < 0:
        raise ValidationError("collateral and guarantee cannot be negative", where="collateral")
    if len(set(rfq.dealers)) != len(rfq.dealers):
        raise ValidationError("a dealer is named twice", where="dealers")
    if dealers is not None:
        unknown = [d for d in rfq.dealers if d not in dealers]
        if unknown:
            raise ValidationError(f"not dealers: {', '.join(unknown)}", where="dealers")
