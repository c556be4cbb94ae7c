"""What a smart derivative contract is, and the records its life leaves behind.

A contract is the client's ``Terms`` plus what the dealer's accepted quote added (the fixed
price, or the option premium inside ``terms.option``), the initial margin rate, the two
parties and the variation-margin terms. Everything here is a frozen msgspec Struct so that
the same contract encodes to the same bytes on every authority.
"""

from __future__ import annotations

import datetime as dt
import enum
import math
import re

import msgspec

from rfq.errors import ValidationError
from rfq.instruments import Terms, validate_terms
from rfq.messages import Quote
from rfq.money import Micros


class Status(enum.StrEnum):
    """Lifecycle of a contract: live -> (margin_call) -> settled, closed_out or defaulted.

    ``in_default`` is the one waiting state: a party missed a margin-call deadline and the
    ledger has yet to apply the ``CreditEvent`` that runs the loss waterfall (it needs the
    collateral and guarantee lines, which the ledger owns).
    """

    LIVE = "live"
    MARGIN_CALL = "margin_call"
    IN_DEFAULT = "in_default"
    SETTLED = "settled"
    CLOSED_OUT = "closed_out"
    DEFAULTED = "defaulted"

    @property
    def terminal(self) -> bool:
        return self in _TERMINAL


_TERMINAL = frozenset({Status.SETTLED, Status.CLOSED_OUT, Status.DEFAULTED})


class PaymentKind(enum.StrEnum):
    """Why money moves; part of each payment's idempotency id. The contracts emit the first
    six; the ledger adds initial margin (into custody), its return, and margin calls."""

    PREMIUM = "premium"
    VARIATION_MARGIN = "variation_margin"
    SETTLEMENT = "settlement"
    CLOSE_OUT = "close_out"
    COLLATERAL = "collateral"
    GUARANTEE = "guarantee"
    INITIAL_MARGIN = "initial_margin"
    IM_RETURN = "im_return"
    MARGIN_CALL = "margin_call"


class PaymentStatus(enum.StrEnum):
    """Where a payment instruction stands on chain."""

    PENDING = "pending"  # waiting for the bank
    CONFIRMED = "confirmed"  # the bank moved the money and the chain holds its confirmation
    FAILED = "failed"  # the bank could not move it (retried while due, unless unexecutable)
    LAPSED = "lapsed"  # its contract ended before it was met


class MarginTerms(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Variation-margin terms (CSA style, the paper's formula 6).

    The party out of the money must have transferred ``|MTM| - threshold`` to the other;
    a call is made only when the difference from what is held reaches the minimum transfer
    amount. A call made on business day D is due by the end of business day D + ``cure_days``
    (business time, never a count of blocks); past that, a payer the bank has reported short
    is in default. A call still unpaid because nobody has acted (the bank is down) waits.
    """

    threshold: float = 0.0
    minimum_transfer_amount: float = 0.0
    cure_days: int = 1


class Contract(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """An executed trade: terms, agreed price, margin rate, parties, margin terms.

    ``fixed_price`` is required except for a template priced by its premium
    (``european_option``: ``terms.option.premium``). ``margin`` None means the trade is not
    margined (no variation margin, the ``Margin`` flag of formula 3 is 0).
    """

    id: str
    terms: Terms
    client: str
    dealer: str
    fixed_price: float | None = None
    initial_margin_rate: float = 0.0
    margin: MarginTerms | None = None


_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")


def _finite(value: float, where: str, *, positive: bool = False, nonneg: bool = False) -> None:
    if not math.isfinite(value):
        raise ValidationError("must be a finite number", where=where)
    if positive and not value > 0:
        raise ValidationError("must be positive", where=where)
    if nonneg and value < 0:
        raise ValidationError("cannot be negative", where=where)


def validate_contract(contract: Contract) -> None:
    """Refuse a contract the engine could not run; ``ValidationError.where`` names the field."""
    if not _ID.match(contract.id):
        raise ValidationError(f"contract id {contract.id!r} is not a valid id", where="id")
    if not contract.client:
        raise ValidationError("client id is required", where="client")
    if not contract.dealer:
        raise ValidationError("dealer id is required", where="dealer")
    if contract.client == contract.dealer:
        raise ValidationError("client and dealer must differ", where="dealer")
    terms = contract.terms
    validate_terms(terms)
    _finite(terms.quantity, "quantity", positive=True)
    _finite(terms.multiplier, "multiplier", positive=True)
    for i, leg in enumerate(terms.legs):
        _finite(leg.weight, f"legs[{i}].weight")
    if terms.option is not None:
        _finite(terms.option.strike, "option.strike", positive=True)
        _finite(terms.option.premium, "option.premium", nonneg=True)
    if contract.fixed_price is None:
        from rfq.contracts.templates import template_of

        if not template_of(terms).premium_priced:
            raise ValidationError(f"{terms.template} needs a fixed price", where="fixed_price")
    else:
        _finite(contract.fixed_price, "fixed_price")
    _finite(contract.initial_margin_rate, "initial_margin_rate", nonneg=True)
    if contract.margin is not None:
        _finite(contract.margin.threshold, "margin.threshold", nonneg=True)
        _finite(
            contract.margin.minimum_transfer_amount, "margin.minimum_transfer_amount", nonneg=True
        )
        if not 0 <= contract.margin.cure_days <= 30:
            raise ValidationError("must be 0 to 30 days", where="margin.cure_days")


class MarginCall(msgspec.Struct, frozen=True):
    """An open variation-margin call: ``payer`` owes ``outstanding`` by the end of ``due``;
    ``short`` once the bank has reported the payer cannot pay it (``MarginShort``). Both
    amounts are integer micros (``rfq.money``)."""

    seq: int
    payer: str
    payee: str
    amount: Micros
    outstanding: Micros
    date: dt.date
    height: int
    due: dt.date
    short: bool = False


class Outcome(msgspec.Struct, frozen=True):
    """How a contract ended. Money is the client's: dealer figures are the negation.

    ``settlement_price`` is the level the payoff used (maturity fixing, mean of the window,
    agreed or fixed close-out level, or the mark at default). ``client_value`` is the
    contract's value to the client at the end (ex premium); ``client_pnl`` includes the
    premium for options.
    """

    status: Status
    date: dt.date
    height: int
    settlement_price: float | None
    client_value: float
    client_pnl: float
    dealer_pnl: float
    defaulting_party: str | None = None
    recovery_rate: float | None = None


class ContractView(msgspec.Struct, frozen=True):
    """A read-only picture of one contract as the book holds it now.

    ``mark`` is the current settlement-price estimate (for an average-price swap the mean of
    the fixings so far with today's level for the window's remaining weekdays) and
    ``client_mtm`` the contract's value to the client; both None until every leg is priced.
    ``vm_balance`` is the net variation margin transferred from dealer to client (negative:
    the client has posted to the dealer).
    """

    contract: Contract
    status: Status
    ordinal: int
    initial_margin: float
    notional: float
    mark: float | None
    client_mtm: float | None
    vm_balance: float
    margin_call: MarginCall | None
    avg_sum: float
    avg_count: int
    defaulting_party: str | None
    outcome: Outcome | None

    @property
    def id(self) -> str:
        return self.contract.id

    @property
    def dealer_mtm(self) -> float | None:
        return None if self.client_mtm is None else -self.client_mtm


def contract_of(quote: Quote, margin: MarginTerms | None) -> Contract:
    """The contract an accepted quote spawns: its terms at the quoted price (an option's
    price is its premium, per unit). The ledger opens exactly this; a dealer sizes the initial
    margin it asks from it."""
    terms = quote.terms
    fixed: float | None = quote.price
    if terms.option is not None:
        option = msgspec.structs.replace(terms.option, premium=quote.price)
        terms = msgspec.structs.replace(terms, option=option)
        fixed = None
    return Contract(
        id=quote.rfq_id,
        terms=terms,
        client=quote.client,
        dealer=quote.dealer,
        fixed_price=fixed,
        initial_margin_rate=quote.initial_margin_rate,
        margin=margin,
    )
