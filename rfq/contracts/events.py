"""The two channels of the contract engine: what happens to the book, and what it produces.

``BookEvent`` is the tagged union the ledger feeds in (one per transaction or block tick);
``BookOutput`` is the tagged union the book returns (lifecycle records and payment
instructions for the settlement bank). Both are tagged on ``type`` so the same records print
as JSON objects with a ``type`` field. Schemas evolve append-only: new fields get defaults.
"""

from __future__ import annotations

import datetime as dt

import msgspec

from rfq.contracts.model import Contract, PaymentKind, Status
from rfq.money import Micros

# --------------------------------------------------------------------------------------------
# Inputs


class _Event(msgspec.Struct, frozen=True, forbid_unknown_fields=True, tag_field="type"):
    pass


class Price(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    underlying: str
    price: float


class Fixing(_Event, frozen=True, tag="fixing"):
    """Official prices of some underlyings on ``date`` (one oracle tick).

    Keyed by (underlying, date): the same price again is a no-op, a different one is refused,
    and an underlying's fixings must arrive in date order (so averages never double count).
    """

    date: dt.date
    prices: tuple[Price, ...]

    @classmethod
    def one(cls, underlying: str, date: dt.date, price: float) -> Fixing:
        return cls(date=date, prices=(Price(underlying, price),))


class OpenContract(_Event, frozen=True, tag="open_contract"):
    """A committed trade spawns its contract instance (same as ``ContractBook.add``)."""

    contract: Contract


class MarginPosted(_Event, frozen=True, tag="margin_posted"):
    """``payer`` transfers ``amount`` (micros) of variation margin; clears its open call when
    it covers it. Keyed by ``id`` (the ledger transaction id)."""

    id: str
    contract_id: str
    payer: str
    amount: Micros


class NettedMarginPosted(_Event, frozen=True, tag="netted_margin_posted"):
    """One payment of ``payer`` met the margin calls of one netting set at once, as columns:
    call ``seqs[k]`` of ``contract_ids[k]`` for ``amounts[k]`` micros; each contract's
    variation margin moves by its call's amount. Keyed by ``id`` (the payment); a call that is
    not open as named refuses the whole posting."""

    id: str
    payer: str
    contract_ids: tuple[str, ...]
    seqs: tuple[int, ...]
    amounts: tuple[Micros, ...]


class BlockPassed(_Event, frozen=True, tag="block_passed"):
    """The chain's clock: apply at the start of each block, before its transactions.

    A margin call past its due date whose payer was reported short puts the called party in
    default; contracts whose maturity is on or before ``date`` settle if their fixings are in.
    A height at or below the book's is a no-op.
    """

    height: int
    date: dt.date


class MarginShort(_Event, frozen=True, tag="margin_short"):
    """The bank could not move the money of margin call ``seq``: the payer is short. Past the
    call's due date this defaults the payer (at once, or when the due date passes)."""

    contract_id: str
    seq: int
    reason: str = ""


class CloseOut(_Event, frozen=True, tag="close_out"):
    """Early termination agreed by both parties, at ``price`` (a settlement level) or, when
    None, at the weighted fixing of ``date``. Keyed by ``id``."""

    id: str
    contract_id: str
    date: dt.date
    price: float | None = None


class GuaranteeLine(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A guarantor's line available to the defaulting party (from the ledger's registry;
    micros)."""

    guarantor: str
    available: Micros


class CreditEvent(_Event, frozen=True, tag="credit_event"):
    """``party`` defaults: all its open contracts terminate at the current mark, the amount
    it owes is met from ``collateral`` (its cash margin in custody, micros) first, then from
    the guarantee lines in order. Keyed by ``id``."""

    id: str
    party: str
    collateral: Micros = 0
    guarantees: tuple[GuaranteeLine, ...] = ()


BookEvent = (
    Fixing
    | OpenContract
    | MarginPosted
    | NettedMarginPosted
    | MarginShort
    | BlockPassed
    | CloseOut
    | CreditEvent
)

# --------------------------------------------------------------------------------------------
# Outputs


class _Output(msgspec.Struct, frozen=True, tag_field="type"):
    pass


class ContractOpened(_Output, frozen=True, tag="contract_opened"):
    contract_id: str
    client: str
    dealer: str
    notional: float
    initial_margin: float


class PaymentInstruction(_Output, frozen=True, tag="payment_instruction"):
    """Money the settlement bank must move. ``id`` is ``<contract>/<kind>/<n>``: the n-th
    payment of that kind on that contract, so a replayed event can never mint a new one.
    ``amount`` is integer micros: the engine's float figure rounded once onto the grid."""

    id: str
    contract_id: str
    kind: PaymentKind
    payer: str
    payee: str
    amount: Micros
    date: dt.date | None


class MarginCalls(_Output, frozen=True, tag="margin_calls"):
    """The variation-margin calls one fixing made from ``payer`` to ``payee``, due by the
    end of ``due``, as columns (a fixing may call every live contract: one record per pair
    and due date): call ``seqs[k]`` of ``contract_ids[k]`` for ``amounts[k]`` micros, at
    the float value ``client_mtms[k]``; contracts in the order they were opened."""

    payer: str
    payee: str
    date: dt.date
    due: dt.date
    contract_ids: tuple[str, ...]
    seqs: tuple[int, ...]
    amounts: tuple[Micros, ...]
    client_mtms: tuple[float, ...]


class MarginCallsMet(_Output, frozen=True, tag="margin_calls_met"):
    """Calls ``seqs[k]`` of ``contract_ids[k]`` are met (one posting met them)."""

    contract_ids: tuple[str, ...]
    seqs: tuple[int, ...]


class MarginCallLapsed(_Output, frozen=True, tag="margin_call_lapsed"):
    """The contract ended with call ``seq`` still open: it is owed no more (its payment must
    shrink by ``outstanding``). ``height`` and ``due`` are the call's."""

    contract_id: str
    seq: int
    payer: str
    payee: str
    outstanding: Micros
    height: int
    due: dt.date


class DefaultTriggered(_Output, frozen=True, tag="default_triggered"):
    """``party`` missed a margin call: the ledger should apply a ``CreditEvent`` for it."""

    contract_id: str
    party: str
    reason: str
    height: int


class ContractSettled(_Output, frozen=True, tag="settlement"):
    contract_id: str
    date: dt.date
    settlement_price: float
    client_pnl: float
    dealer_pnl: float


class ContractClosedOut(_Output, frozen=True, tag="close_out"):
    contract_id: str
    date: dt.date
    price: float
    agreed: bool
    client_pnl: float
    dealer_pnl: float


class ContractDefaulted(_Output, frozen=True, tag="default"):
    """One contract of a defaulter: what it owed and how the waterfall met it (micros); the
    P&L figures are the engine's floats."""

    contract_id: str
    party: str
    date: dt.date | None
    mark: float | None
    owed_by_defaulter: Micros
    collateral_applied: Micros
    guarantee_applied: Micros
    unrecovered: Micros
    client_pnl: float
    dealer_pnl: float


class GuaranteeUse(msgspec.Struct, frozen=True):
    guarantor: str
    amount: Micros


class CreditEventResolved(_Output, frozen=True, tag="credit_event_resolved"):
    """The waterfall's totals. ``shortfall`` is what collateral left for the guarantors;
    ``unrecovered`` is what the counterparties lose. ``recovery_rate`` = recovered / exposure
    (1 when nothing was owed). Amounts in micros."""

    event_id: str
    party: str
    contract_ids: tuple[str, ...]
    exposure: Micros
    collateral_applied: Micros
    guarantee_applied: Micros
    guarantees: tuple[GuaranteeUse, ...]
    shortfall: Micros
    unrecovered: Micros
    recovery_rate: float


class RatingRecord(_Output, frozen=True, tag="rating_record"):
    """One finished trade for a party's rating history: the paper's formula 3,
    ``(Rt_prev, Sz, Len, Coll, Margin, Guar, Def, RR)`` (field names as ``rfq.rating``'s
    ``RatingTuple``).

    ``rt_prev`` is left None for the ledger to fill (the book holds no ratings). ``size`` is
    the notional, ``length_days`` the days from trade date to the end, ``collateral`` the
    initial margin (client) plus the variation margin the party had posted at the end,
    ``guarantee`` what a guarantor paid for the party (the ledger may substitute the line
    amount), ``recovery_rate`` None unless the party defaulted.
    """

    party: str
    counterparty: str
    contract_id: str
    outcome: Status
    end_date: dt.date | None
    size: float
    length_days: int
    collateral: float
    margin: bool
    guarantee: float
    default: bool
    recovery_rate: float | None
    rt_prev: float | None = None

    def as_tuple(self) -> tuple[float | None, float, int, float, bool, float, bool, float | None]:
        """Formula 3, in the paper's order."""
        return (
            self.rt_prev,
            self.size,
            self.length_days,
            self.collateral,
            self.margin,
            self.guarantee,
            self.default,
            self.recovery_rate,
        )


BookOutput = (
    ContractOpened
    | PaymentInstruction
    | MarginCalls
    | MarginCallsMet
    | MarginCallLapsed
    | DefaultTriggered
    | ContractSettled
    | ContractClosedOut
    | ContractDefaulted
    | CreditEventResolved
    | RatingRecord
)

_event_encoder = msgspec.msgpack.Encoder()
_event_decoder = msgspec.msgpack.Decoder(BookEvent)
_output_decoder = msgspec.msgpack.Decoder(BookOutput)


def encode(record: BookEvent | BookOutput) -> bytes:
    return _event_encoder.encode(record)


def decode_event(data: bytes) -> BookEvent:
    """Typed decoder for the input channel; raises ``msgspec.DecodeError`` on garbage."""
    event: BookEvent = _event_decoder.decode(data)
    return event


def decode_output(data: bytes) -> BookOutput:
    output: BookOutput = _output_decoder.decode(data)
    return output
