"""Payments and custody as a component: the money the contracts move, as instructions the bank
confirms or fails.

Contracts emit payment instructions (``rfq.contracts``); the ledger adds initial margin (cash
the credit line and guarantees do not cover, paid into the bank's custody account, returned
when the contract ends) and the margin calls' payments. Every instruction waits for the bank's
``payment_confirmed``, applied exactly once per instruction.

**Margin calls are paid per netting set.** The calls one block makes from one payer to one
payee, due the same day, are one ``MarginSet`` and one payment of their sum (a fixing that
calls 100,000 contracts between a handful of pairs makes a handful of payments, not 100,000).
Its confirmation meets every call of the set at once (``NettedMarginPosted``); its failure
leaves each of them short, and past its due date in default. A contract that ends with its call
open takes its call out of the set: the set's payment lapses and one for the rest replaces it
(``<set>/margin_call/<n+1>``), so no money moves for a call nobody owes any more.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

import msgspec

from rfq.contracts.events import (
    MarginCallLapsed,
    MarginCalls,
    MarginShort,
    NettedMarginPosted,
    PaymentInstruction,
)
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
    lapsed_height: int | None = None
    """The height it lapsed at (a margin call no longer owed)."""

    @property
    def final_height(self) -> int | None:
        """The height nothing changes it any more from (confirmed or lapsed)."""
        return self.confirmed_height if self.confirmed_height is not None else self.lapsed_height


class MarginSet(msgspec.Struct, frozen=True):
    """The open margin calls one block made from one payer to one payee, due the same day,
    paid together by ``payment_id`` (their sum), as columns: call ``seqs[k]`` of
    ``contract_ids[k]`` for ``amounts[k]`` micros. Keyed by ``margin_set_key``; it leaves
    the state when paid or when no call is left in it."""

    payment_id: str
    contract_ids: tuple[str, ...]
    seqs: tuple[int, ...]
    amounts: tuple[Micros, ...]

    def without(self, contracts: set[str], payment_id: str) -> MarginSet:
        """The set with the calls of ``contracts`` taken out, paid by ``payment_id``."""
        keep = [k for k, cid in enumerate(self.contract_ids) if cid not in contracts]
        return MarginSet(
            payment_id,
            tuple([self.contract_ids[k] for k in keep]),
            tuple([self.seqs[k] for k in keep]),
            tuple([self.amounts[k] for k in keep]),
        )


def margin_set_key(payer: str, payee: str, height: int, due: dt.date) -> str:
    """The netting set of a call: its parties, the height it was made at and its due date."""
    return f"netting/{payer}/{payee}/{height}/{due.isoformat()}"


def margin_payment_id(set_key: str, revision: int) -> str:
    """The id of a netting set's payment: revision 1 is the first, each call taken out of
    the set makes the next."""
    return f"{set_key}/margin_call/{revision}"


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


def call_payment(state: LedgerState, contract_id: str) -> Payment | None:
    """The payment of the netting set the contract's open margin call is in (None: no open
    call)."""
    view = state.book.find(contract_id)
    call = view.margin_call if view is not None else None
    if call is None:
        return None
    key = margin_set_key(call.payer, call.payee, call.height, call.due)
    margin_set = state.margin_sets.get(key)
    return state.payments.get(margin_set.payment_id) if margin_set is not None else None


def book_payment(state: LedgerState, out: PaymentInstruction) -> None:
    """A contract's payment instruction."""
    payer = out.payer
    amount = out.amount  # micros: the contract rounded its figure onto the grid
    if out.kind == PaymentKind.COLLATERAL:
        # The defaulter's collateral is cash margin held in custody: earmark it now.
        payer = CUSTODY
        held = state.custody.get(out.payer) or 0
        state.custody[out.payer] = max(held - amount, 0)
    instruct(state, out.id, out.contract_id, out.kind, payer, out.payee, amount, out.date)


def margin_calls_made(state: LedgerState, calls: list[MarginCalls]) -> None:
    """One payment per netting set for the calls just made (the book groups them by payer,
    payee and due date; a set this block already made grows: nobody has seen its payment
    yet)."""
    for made in calls:
        key = margin_set_key(made.payer, made.payee, state.height, made.due)
        amount = sum(made.amounts)
        current = state.margin_sets.get(key)
        if current is not None:
            payment = state.payments[current.payment_id]
            state.payments[payment.id] = msgspec.structs.replace(
                payment, amount=payment.amount + amount
            )
            state.margin_sets[key] = MarginSet(
                payment.id,
                current.contract_ids + made.contract_ids,
                current.seqs + made.seqs,
                current.amounts + made.amounts,
            )
            continue
        payment_id = margin_payment_id(key, 1)
        instruct(
            state,
            payment_id,
            key,
            PaymentKind.MARGIN_CALL,
            made.payer,
            made.payee,
            amount,
            made.date,
            due=made.due,
        )
        state.margin_sets[key] = MarginSet(payment_id, made.contract_ids, made.seqs, made.amounts)


def margin_calls_lapsed(state: LedgerState, lapsed: list[MarginCallLapsed]) -> None:
    """Take the calls of ended contracts out of their sets: each set's payment lapses and,
    when calls are left, one for their sum replaces it."""
    gone: dict[str, set[str]] = {}
    for call in lapsed:
        key = margin_set_key(call.payer, call.payee, call.height, call.due)
        gone.setdefault(key, set()).add(call.contract_id)
    for key, contracts in gone.items():
        current = state.margin_sets.get(key)
        if current is None:
            continue
        payment = state.payments[current.payment_id]
        lapse(state, payment)
        payment_id = margin_payment_id(key, int(payment.id.rsplit("/", 1)[1]) + 1)
        rest = current.without(contracts, payment_id)
        if not rest.contract_ids:
            del state.margin_sets[key]
            continue
        instruct(
            state,
            payment_id,
            key,
            PaymentKind.MARGIN_CALL,
            payment.payer,
            payment.payee,
            sum(rest.amounts),
            payment.date,
            due=payment.due,
        )
        state.margin_sets[key] = rest


def lapse(state: LedgerState, payment: Payment) -> None:
    """An open instruction nobody owes any more (a confirmation of it is refused)."""
    if payment.status not in (PaymentStatus.PENDING, PaymentStatus.FAILED):
        return
    state.payments[payment.id] = lapsed = msgspec.structs.replace(
        payment, status=PaymentStatus.LAPSED, lapsed_height=state.height
    )
    retention.payment_final(state, lapsed)


def contract_ended(
    state: LedgerState, contract_id: str, trade: Trade | None, date: dt.date | None
) -> None:
    """Its cash margin no longer counts against the client's capital and goes back from
    custody (whatever a default's waterfall left of it). Its open margin call left its set
    as the book reported it lapsed (``margin_calls_lapsed``)."""
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
    if payment.kind == PaymentKind.MARGIN_CALL:  # the contracts' event first: it may refuse
        margin_set = _open_set(state, payment)
        state.book_event(
            NettedMarginPosted(
                payment.id,
                payment.payer,
                margin_set.contract_ids,
                margin_set.seqs,
                margin_set.amounts,
            )
        )
        del state.margin_sets[payment.contract_id]
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
    if payment.kind == PaymentKind.MARGIN_CALL and payment.status != PaymentStatus.FAILED:
        # The payer is short of every call of the set: past its due, a default. That default
        # ends the payer's other contracts, so a call may be gone by its turn: it is skipped.
        margin_set = _open_set(state, payment)
        for contract_id, seq in zip(margin_set.contract_ids, margin_set.seqs, strict=True):
            view = state.book.find(contract_id)
            call = view.margin_call if view is not None else None
            if call is not None and call.seq == seq and not call.short:
                state.book_event(MarginShort(contract_id, seq, tx.reason[:200]))
    return (payment.id,)


def _open_set(state: LedgerState, payment: Payment) -> MarginSet:
    margin_set = state.margin_sets.get(payment.contract_id)
    if margin_set is None or margin_set.payment_id != payment.id:
        raise LedgerError(f"payment {payment.id} is no open margin call")
    return margin_set


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
    maps={
        "payments": Payment,
        "margin_sets": MarginSet,
        "custody": Micros,
        "margin_in_use": Micros,
    },
    kinds=(tx_kind(PaymentConfirmed, confirm), tx_kind(PaymentFailed, fail)),
)
"""``margin_sets``: the netting sets with an open margin call; ``custody``: per client, its cash
initial margin the bank holds; ``margin_in_use``: per client, the cash initial margin its live
contracts require (both in micros)."""
