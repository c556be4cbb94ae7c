"""Payments and custody as a component: the money the contracts move, as instructions the bank
confirms or fails.

Contracts emit payment instructions (``rfq.contracts``); the ledger adds initial margin (cash
the credit line and guarantees do not cover, paid into the bank's custody account, returned
when the contract ends) and the payment for each margin call (on the bank's confirmation the
call is met). Every instruction waits for the bank's ``payment_confirmed``, applied exactly once
per instruction; a failed margin call leaves the payer short, and past its due date in default.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

import msgspec

from rfq.contracts.events import MarginCalled, MarginPosted, MarginShort, PaymentInstruction
from rfq.contracts.model import PaymentKind, PaymentStatus
from rfq.ledger.components import guarantees, retention
from rfq.ledger.components.base import Component, LedgerError, Refs, TxContext, tx_kind
from rfq.ledger.tx import PaymentConfirmed, PaymentFailed
from rfq.money import Micros, to_micros

if TYPE_CHECKING:
    from rfq.ledger.components.contracts import Trade
    from rfq.ledger.state import LedgerState

CUSTODY = "CUSTODY"
"""The bank's custody account: where cash initial margin is held while a contract lives."""


class Payment(msgspec.Struct, frozen=True):
    id: str
    contract_id: str
    kind: PaymentKind
    payer: str
    payee: str
    amount: Micros
    created_height: int
    date: dt.date | None = None
    status: PaymentStatus = PaymentStatus.PENDING
    confirmed_height: int | None = None
    bank_ref: str | None = None
    failure: str | None = None
    due: dt.date | None = None
    """The business date by whose end the payment is due (margin calls); None: at once."""


def instruct(
    state: LedgerState,
    payment_id: str,
    contract_id: str,
    kind: PaymentKind,
    payer: str,
    payee: str,
    amount: Micros,
    date: dt.date | None,
    *,
    status: PaymentStatus = PaymentStatus.PENDING,
    bank_ref: str | None = None,
    due: dt.date | None = None,
) -> str | None:
    """Record a payment instruction (its id), or nothing for less than one money grid
    step: a zero or negative movement is never an instruction."""
    if payment_id in state.payments:
        return payment_id
    if amount <= 0:
        return None
    payment = Payment(
        id=payment_id,
        contract_id=contract_id,
        kind=kind,
        payer=payer,
        payee=payee,
        amount=amount,
        created_height=state.height,
        date=date,
        status=status,
        confirmed_height=state.height if status == PaymentStatus.CONFIRMED else None,
        bank_ref=bank_ref,
        due=due,
    )
    state.payments[payment_id] = payment
    state.block_result().payments.append(payment)
    if status == PaymentStatus.CONFIRMED:
        retention.payment_final(state, payment)
    return payment_id


def book_payment(state: LedgerState, out: PaymentInstruction, settled_by: str | None) -> None:
    """A contract's payment instruction. ``settled_by``: the confirmed margin-call payment
    whose posting produced it; its variation margin has already moved."""
    payer = out.payer
    amount = out.amount  # micros: the contract rounded its figure onto the grid
    if out.kind == PaymentKind.COLLATERAL:
        # The defaulter's collateral is cash margin held in custody: earmark it now.
        payer = CUSTODY
        held = state.custody.get(out.payer) or 0
        state.custody[out.payer] = max(held - amount, 0)
    settled = out.kind == PaymentKind.VARIATION_MARGIN and settled_by is not None
    instruct(
        state,
        out.id,
        out.contract_id,
        out.kind,
        payer,
        out.payee,
        amount,
        out.date,
        status=PaymentStatus.CONFIRMED if settled else PaymentStatus.PENDING,
        bank_ref=settled_by if settled else None,
    )


def margin_called(state: LedgerState, out: MarginCalled) -> None:
    instruct(
        state,
        f"{out.contract_id}/margin_call/{out.seq}",
        out.contract_id,
        PaymentKind.MARGIN_CALL,
        out.payer,
        out.payee,
        out.amount,
        out.date,
        due=out.due,
    )


def contract_ended(
    state: LedgerState, contract_id: str, trade: Trade | None, date: dt.date | None
) -> None:
    """Its open margin calls lapse, its cash margin no longer counts against the client's
    capital and goes back from custody (whatever a default's waterfall left of it)."""
    for call_id in state.book.payment_ids(contract_id):  # confirmed ones may have gone
        call = state.payments.get(call_id)
        if call is None or call.kind != PaymentKind.MARGIN_CALL:
            continue
        if call.status in (PaymentStatus.PENDING, PaymentStatus.FAILED):
            state.payments[call.id] = msgspec.structs.replace(call, status=PaymentStatus.LAPSED)
    if trade is None:
        return
    in_use = state.margin_in_use.get(trade.client)
    if in_use is not None and trade.cash_margin > 0:
        left = in_use - trade.cash_margin
        if left > 0:
            state.margin_in_use[trade.client] = left
        else:
            del state.margin_in_use[trade.client]
    margin = state.payments.get(f"{contract_id}/initial_margin/1")
    if margin is None or margin.status != PaymentStatus.CONFIRMED:
        return
    held = state.custody.get(trade.client) or 0
    refund = min(margin.amount, held)
    if refund > 0:
        state.custody[trade.client] = held - refund
        instruct(
            state,
            f"{contract_id}/im_return/1",
            contract_id,
            PaymentKind.IM_RETURN,
            CUSTODY,
            trade.client,
            refund,
            date,
        )


def confirm(state: LedgerState, tx: PaymentConfirmed, ctx: TxContext) -> Refs:
    payment = state.payments.get(tx.instruction_id)
    if payment is None:
        raise LedgerError(f"no payment instruction {tx.instruction_id!r}")
    if payment.status == PaymentStatus.CONFIRMED:
        raise LedgerError(f"payment {tx.instruction_id} is already confirmed")
    if payment.status == PaymentStatus.LAPSED:
        raise LedgerError(f"payment {tx.instruction_id} lapsed: its contract has ended")
    if tx.amount != payment.amount:
        raise LedgerError(f"confirmed {tx.amount} micros, instructed {payment.amount}")
    if payment.kind == PaymentKind.MARGIN_CALL:  # the contract's event first: it may refuse
        posted = MarginPosted(
            id=payment.id,
            contract_id=payment.contract_id,
            payer=payment.payer,
            amount=payment.amount,
        )
        state.book_event(posted, settled_by=payment.id)
    state.payments[payment.id] = msgspec.structs.replace(
        payment,
        status=PaymentStatus.CONFIRMED,
        confirmed_height=state.height,
        bank_ref=tx.bank_ref,
        failure=None,
    )
    if payment.kind == PaymentKind.INITIAL_MARGIN:
        held = state.custody.get(payment.payer) or 0
        state.custody[payment.payer] = held + payment.amount
    retention.payment_final(state, state.payments[payment.id])  # may leave the hot state
    return (payment.id,)


def fail(state: LedgerState, tx: PaymentFailed, ctx: TxContext) -> Refs:
    payment = state.payments.get(tx.instruction_id)
    if payment is None:
        raise LedgerError(f"no payment instruction {tx.instruction_id!r}")
    if payment.status == PaymentStatus.CONFIRMED:
        raise LedgerError(f"payment {tx.instruction_id} is already confirmed")
    if payment.status == PaymentStatus.LAPSED:
        raise LedgerError(f"payment {tx.instruction_id} lapsed: its contract has ended")
    state.payments[payment.id] = msgspec.structs.replace(
        payment, status=PaymentStatus.FAILED, failure=tx.reason[:200]
    )
    if payment.kind == PaymentKind.MARGIN_CALL:  # the payer is short: past its due, a default
        seq = int(payment.id.rsplit("/", 1)[1])
        view = state.book.find(payment.contract_id)
        call = view.margin_call if view is not None else None
        if call is not None and call.seq == seq and not call.short:
            state.book_event(MarginShort(payment.contract_id, seq, tx.reason[:200]))
    return (payment.id,)


def margin_headroom(state: LedgerState, client: str) -> Micros:
    """The initial margin, beyond a dealer's credit line, that the client can still take
    on: its capital less the cash margin of its live contracts, plus its guarantors'
    available lines (an accept needing more is refused)."""
    member = state.members.get(client)
    if member is None:
        return 0
    lines = sum(g.available for g in guarantees.live_guarantees(state, client))
    return to_micros(member.capital) - (state.margin_in_use.get(client) or 0) + lines


COMPONENT = Component(
    "payments",
    maps={"payments": Payment, "custody": Micros, "margin_in_use": Micros},
    kinds=(tx_kind(PaymentConfirmed, confirm), tx_kind(PaymentFailed, fail)),
)
"""``custody``: per client, its cash initial margin the bank holds; ``margin_in_use``: per
client, the cash initial margin its live contracts require (both in micros)."""
