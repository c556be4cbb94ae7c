"""Trades and contracts as a component: a client's accept of a dealer's quote becomes a live
contract in the contract book (``rfq.contracts.book``) once its initial margin is covered, the
oracle's fixings and the chain's clock drive the book, both parties together close a contract
out, and whatever the book outputs becomes ledger state here, in one fixed order."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

import msgspec

from rfq.clock import utc_date
from rfq.contracts.book import ContractBook, canonical_contract
from rfq.contracts.events import (
    BlockPassed,
    BookEvent,
    BookOutput,
    CloseOut,
    ContractClosedOut,
    ContractDefaulted,
    ContractSettled,
    CreditEventResolved,
    DefaultTriggered,
    Fixing,
    MarginCallLapsed,
    MarginCalls,
    OpenContract,
    PaymentInstruction,
    RatingRecord,
)
from rfq.contracts.events import Price as FixingPrice
from rfq.contracts.model import MarginTerms, PaymentKind, contract_of, validate_contract
from rfq.contracts.payoff import initial_margin
from rfq.errors import ValidationError
from rfq.identity import Genesis, Role
from rfq.instruments import check_listed
from rfq.ledger.block import BlockHeader
from rfq.ledger.components import guarantees, members, payments, retention
from rfq.ledger.components.base import (
    Component,
    LedgerError,
    Part,
    PartRows,
    Refs,
    TxContext,
    tx_kind,
)
from rfq.ledger.components.guarantees import Guarantee
from rfq.ledger.digest import BucketPath
from rfq.ledger.proof import BOOK, CONTRACTS, LIVE, LiveWitness
from rfq.ledger.snapshot import Table
from rfq.ledger.tx import CloseOutRequest, PriceFixing
from rfq.messages import Accept, Quote, decode_quote
from rfq.money import Micros, from_micros, to_micros
from rfq.signing import signature_valid, tx_id

if TYPE_CHECKING:
    from rfq.ledger.state import LedgerState

ACCEPT_GRACE_MS = 5_000
"""How long after a quote's valid-until its accept may still be committed (transit time)."""

_encoder = msgspec.msgpack.Encoder()


class Trade(msgspec.Struct, frozen=True):
    rfq_id: str
    contract_id: str
    client: str
    dealer: str
    quote_id: str
    price: float
    tx_id: str
    height: int
    initial_margin: Micros
    dealer_line: Micros
    guarantee_cover: tuple[tuple[str, Micros], ...]
    cash_margin: Micros
    """Money in micros: the initial margin, the part of it the dealer's line covers, the
    parts guarantors' lines cover (by guarantee id) and the cash rest the client pays."""
    replay_until_ms: int = 0
    """The block time until which an accept of this trade's quote could still commit (its
    validity plus ``ACCEPT_GRACE_MS``): the trade is not pruned before (retention)."""


def business_date(timestamp_ms: int, book: ContractBook) -> dt.date:
    """The later of the block timestamp's UTC date and the newest fixing date on chain.

    In live operation they agree; a simulated oracle that compresses time moves the market
    date ahead and contracts follow it. Node clocks never enter.
    """
    clock = utc_date(timestamp_ms)
    marks = [d for d in (book.mark_date, book.date) if d is not None]
    return max([clock, *marks])


# -- the book's door -------------------------------------------------------------------------


def book_event(state: LedgerState, event: BookEvent) -> list[BookOutput]:
    """Apply one event to the contract book (it refuses atomically) and absorb its outputs."""
    try:
        outputs = state.book.apply(event)
    except ValidationError as exc:
        raise LedgerError(f"refused by the contract: {exc}") from None
    absorb(state, outputs)
    return outputs


def absorb(state: LedgerState, outputs: Iterable[BookOutput]) -> None:
    """Turn the book's outputs into ledger state, in a fixed order: the waterfall's totals,
    then money (so collateral leaves custody before leftovers return; margin calls by netting
    set), then contract ends, credit events and ratings."""
    outputs = list(outputs)
    state.block_result().outputs.extend(outputs)
    for out in outputs:
        if isinstance(out, CreditEventResolved):
            guarantees.apply_waterfall(state, out)
    calls: list[MarginCalls] = []
    lapsed: list[MarginCallLapsed] = []
    for out in outputs:
        if isinstance(out, PaymentInstruction):
            payments.book_payment(state, out)
        elif isinstance(out, MarginCalls):
            calls.append(out)
        elif isinstance(out, MarginCallLapsed):
            lapsed.append(out)
    if lapsed:
        payments.margin_calls_lapsed(state, lapsed)
    if calls:
        payments.margin_calls_made(state, calls)
    for out in outputs:
        match out:
            case DefaultTriggered():
                view = state.book.find(out.contract_id)
                if view is not None and not view.status.terminal:
                    guarantees.credit_event(
                        state, out.party, f"{out.contract_id}/default/{out.height}", out.reason
                    )
            case ContractSettled() | ContractClosedOut() | ContractDefaulted():
                _ended(state, out.contract_id, out.date)
            case RatingRecord():
                members.rate(state, out)
            case _:
                pass


def _ended(state: LedgerState, contract_id: str, date: dt.date | None) -> None:
    """A contract ended: its close-out requests go, its margin calls lapse, guarantee
    allocations free up, the client's cash margin for it goes back from custody, and it is
    due to leave the hot state (retention)."""
    if contract_id in state.close_requests:
        del state.close_requests[contract_id]
    trade = state.trades.get(contract_id)
    payments.contract_ended(state, contract_id, trade, date)
    if trade is not None:
        guarantees.free_cover(state, trade.guarantee_cover)
    retention.schedule(state, contract_id, state.height + state.params.retain_blocks)


def _pass_block(state: LedgerState, parent: BlockHeader) -> None:
    """The chain's clock for the contracts: ``BlockPassed`` at the block's business date
    (margin-call deadlines, maturities) and whatever credit events missed calls trigger."""
    state.block_date = business_date(state.timestamp_ms, state.book)
    absorb(state, state.book.apply(BlockPassed(height=state.height, date=state.block_date)))


def _first_date(state: LedgerState) -> None:
    state.block_date = business_date(0, state.book)


# -- transactions ----------------------------------------------------------------------------


def accept(state: LedgerState, tx: Accept, ctx: TxContext) -> Refs:
    """A trade: the client's accept carrying the dealer's signed quote."""
    signed_quote = tx.quote
    quote_id = tx_id(_encoder.encode(signed_quote))
    if tx.client != ctx.sender:
        raise LedgerError(f"accept names client {tx.client}, signed by {ctx.sender}")
    dealer = state.members.get(signed_quote.sender)
    if dealer is None or dealer.role != Role.DEALER:
        raise LedgerError(f"the quote is not signed by a dealer ({signed_quote.sender!r})")
    if signed_quote.chain_id != state.genesis.chain_id:
        raise LedgerError("the quote belongs to another network")
    if quote_id not in ctx.verified and not signature_valid(signed_quote, state.directory):
        raise LedgerError("the quote's signature does not verify")
    try:
        quote: Quote = decode_quote(signed_quote)
    except ValidationError as exc:
        raise LedgerError(str(exc)) from None
    if quote.dealer != signed_quote.sender:
        raise LedgerError(f"quote in the name of {quote.dealer}, signed by {signed_quote.sender}")
    if quote.client != tx.client:
        raise LedgerError(f"the quote is addressed to {quote.client}, not {tx.client}")
    members.refuse_if_barred(state, "client", quote.client)
    members.refuse_if_barred(state, "dealer", quote.dealer)
    if (quote.id, quote.rfq_id, quote.dealer) != (tx.quote_id, tx.rfq_id, tx.dealer):
        raise LedgerError("the accept does not match the quote it carries")
    if ctx.signed.timestamp_ms > quote.valid_until_ms:
        raise LedgerError("accepted after the quote's validity")
    if state.timestamp_ms > quote.valid_until_ms + ACCEPT_GRACE_MS:
        raise LedgerError("the quote expired before the accept was committed")
    if quote.rfq_id in state.trades:
        raise LedgerError(f"RFQ {quote.rfq_id} is already traded")
    params, today = state.params, state.block_date
    contract = contract_of(
        quote,
        MarginTerms(
            threshold=params.default_threshold,
            minimum_transfer_amount=params.default_mta,
            cure_days=params.margin_cure_days,
        ),
    )
    terms = contract.terms
    if terms.maturity <= today:
        raise LedgerError(f"maturity {terms.maturity} has passed")
    try:  # what trades on the business date: no expired month, no maturity past one
        check_listed(terms, today)
    except ValidationError as exc:
        raise LedgerError(f"not tradable on {today}: {exc}") from None
    try:
        contract = canonical_contract(contract)
        validate_contract(contract)
    except ValidationError as exc:
        raise LedgerError(f"refused by the contract: {exc}") from None
    # Initial margin: the dealer's line, then the guarantors' lines, then cash. A trade
    # whose cash part the client's capital cannot carry never becomes a live contract.
    margin = to_micros(initial_margin(contract))  # the float model's figure, onto the grid
    dealer_line = min(max(to_micros(quote.credit_line), 0), margin)
    rest = margin - dealer_line
    cover: list[tuple[Guarantee, Micros]] = []
    for g in sorted(guarantees.live_guarantees(state, quote.client), key=lambda g: g.id):
        if rest <= 0:
            break
        take = min(g.available, rest)
        if take > 0:
            cover.append((g, take))
            rest -= take
    cash = max(rest, 0)
    in_use = state.margin_in_use.get(quote.client) or 0
    capital = to_micros(state.members[quote.client].capital)
    if cash > 0 and in_use + cash > capital:  # margin_headroom says the same, before cover
        raise LedgerError(
            f"initial margin {from_micros(margin):,.2f} exceeds {quote.client}'s credit lines "
            f"({from_micros(margin - cash):,.2f}) and the capital the chain knows of "
            f"({from_micros(capital - in_use):,.2f} free of {from_micros(capital):,.2f})"
        )
    book_event(state, OpenContract(contract))  # the last step that can refuse
    guarantees.allocate(state, cover)
    if cash > 0:
        state.margin_in_use[quote.client] = in_use + cash
    refs = [contract.id]
    margin_id = payments.instruct(
        state,
        f"{contract.id}/initial_margin/1",
        contract.id,
        PaymentKind.INITIAL_MARGIN,
        quote.client,
        payments.CUSTODY,
        cash,
        None,
    )
    if margin_id is not None:
        refs.append(margin_id)
    state.trades[quote.rfq_id] = Trade(
        rfq_id=quote.rfq_id,
        contract_id=contract.id,
        client=quote.client,
        dealer=quote.dealer,
        quote_id=quote.id,
        price=quote.price,
        tx_id=ctx.tx_hex,
        height=state.height,
        initial_margin=margin,
        dealer_line=dealer_line,
        guarantee_cover=tuple((g.id, take) for g, take in cover),
        cash_margin=cash,
        replay_until_ms=quote.valid_until_ms + ACCEPT_GRACE_MS,
    )
    return tuple(refs)


def fixing(state: LedgerState, tx: PriceFixing, ctx: TxContext) -> Refs:
    prices = tuple(FixingPrice(u, p) for u, p in tx.prices)
    book_event(state, Fixing(date=tx.date, prices=prices))
    return ()


def close_out(state: LedgerState, tx: CloseOutRequest, ctx: TxContext) -> Refs:
    """One party's request; the contract closes out when the other asks the same."""
    sender = ctx.sender
    view = state.book.find(tx.contract_id)
    if view is None:
        raise LedgerError(f"no contract {tx.contract_id!r}")
    if sender not in (view.contract.client, view.contract.dealer):
        raise LedgerError(f"{sender} is not a party to {tx.contract_id}")
    if view.status.terminal:
        raise LedgerError(f"contract {tx.contract_id} has ended ({view.status})")
    pending = dict(state.close_requests.get(tx.contract_id) or ())
    pending[sender] = tx.price
    other = view.contract.dealer if sender == view.contract.client else view.contract.client
    if other not in pending or pending[other] != tx.price:
        state.close_requests[tx.contract_id] = tuple(sorted(pending.items()))
        return (tx.contract_id, "pending")
    date = state.book.mark_date or business_date(state.timestamp_ms, state.book)
    book_event(
        state, CloseOut(id=ctx.tx_hex, contract_id=tx.contract_id, date=date, price=tx.price)
    )
    if tx.contract_id in state.close_requests:
        del state.close_requests[tx.contract_id]
    return (tx.contract_id, "closed_out")


def _book_initial(genesis: Genesis) -> ContractBook:
    return ContractBook()


def _book_digest(book: ContractBook) -> bytes:
    return book.state_digest()


def _book_tables(book: ContractBook, changed_only: bool, advance: bool) -> dict[str, Table]:
    return book.rows_later(changed_only=changed_only, advance=advance)


def _book_load(header: bytes, tables: Mapping[str, bytes]) -> ContractBook:
    return ContractBook.from_rows(header, tables[CONTRACTS], tables[LIVE])


def _prove_contract(
    book: ContractBook, key: str
) -> tuple[bytes | None, BucketPath, bytes, LiveWitness | None]:
    return book.contract_proof(key)


COMPONENT = Component(
    "contracts",
    maps={"trades": Trade, "close_requests": tuple[tuple[str, float | None], ...]},
    parts=(
        Part(
            BOOK,
            "book",
            bytes,
            initial=_book_initial,
            digest=_book_digest,
            rows=PartRows(
                (CONTRACTS, LIVE),
                ContractBook.header_bytes,
                _book_tables,
                ContractBook.track_rows,
                _book_load,
            ),
            proofs={CONTRACTS: _prove_contract},
        ),
    ),
    kinds=(
        tx_kind(Accept, accept),
        tx_kind(PriceFixing, fixing),
        tx_kind(CloseOutRequest, close_out),
    ),
    setup=_first_date,
    begin_block=_pass_block,
)
