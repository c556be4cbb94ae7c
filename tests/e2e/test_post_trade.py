"""Post-trade end to end: from client C1's RFQ to the bank's last confirmation, on chain."""

from __future__ import annotations

import pytest

from peers.bank import JournalState
from rfq.contracts.model import Status
from rfq.ledger.state import CUSTODY
from rfq.money import from_micros

pytestmark = pytest.mark.integration


async def test_c1s_swap_lives_is_margined_closed_out_and_every_payment_is_settled_once(
    marketplace,
):
    market = marketplace
    bank, books = market.bank, market.books
    funded = books.total_micros()
    opening = bank.balances()

    # RFQ -> quotes -> accept -> a final block -> a live contract
    traded = await market.trade("C1", quantity=1000)
    cid, dealer, price = traded.id, traded.quote.dealer, traded.quote.price
    assert traded.receipt.refs == (cid, f"{cid}/initial_margin/1")
    view = await market.contract(cid)
    assert view.status == Status.LIVE
    assert (view.contract.client, view.contract.dealer, view.contract.fixed_price) == (
        "C1",
        dealer,
        price,
    )
    im = traded.trade.cash_margin
    assert type(im) is int and im > 0  # integer micros
    assert from_micros(im) == pytest.approx(traded.quote.initial_margin_rate * price * 1000)

    # the bank takes C1's initial margin into custody and confirms it
    await market.until(lambda: market.settled(cid), what="the initial margin confirmed")
    margin = await market.payment(f"{cid}/initial_margin/1")
    assert (margin.payer, margin.payee, margin.amount) == ("C1", CUSTODY, im)

    # the oracle's next close is 60 below C1's price: a margin call on chain
    day1 = market.next_day()
    drop = 60.0
    fixing = await market.fix(day1, price - drop)
    assert fixing.ok
    await market.until(lambda: market.call_payment(cid), what="the margin call instruction")
    call = await market.call_payment(cid)
    assert call is not None and call.contract_id.startswith(f"netting/C1/{dealer}/")
    assert (call.payer, call.payee) == ("C1", dealer)
    assert from_micros(call.amount) == pytest.approx(drop * 1000)

    # the bank pays the call: the contract is live again, the variation margin has moved
    await market.until(lambda: market.settled(cid), what="the margin call paid")
    view = await market.contract(cid)
    assert view.status == Status.LIVE
    assert view.mark == price - drop
    assert view.vm_balance == pytest.approx(-drop * 1000)
    paid_call = await market.payment(call.id)
    assert paid_call is not None and paid_call.status == "confirmed"
    assert not [p for p in (await market.payments(cid)).values() if p.kind == "variation_margin"]

    # both parties ask to close out at the same level: it terminates
    level = price - 20.0
    asked, agreed = await market.close_out(cid, "C1", dealer, level)
    assert asked.ok and asked.refs == (cid, "pending")
    assert agreed.ok and agreed.refs == (cid, "closed_out")
    view = await market.contract(cid)
    assert view.status == Status.CLOSED_OUT
    assert view.outcome.client_pnl == pytest.approx(-20.0 * 1000)

    # close-out payment and the initial margin back: instructed, executed, confirmed
    await market.until(lambda: market.settled(cid), what="close-out payments confirmed")
    payments = await market.payments(cid)
    assert sorted(payments) == sorted(
        f"{cid}/{kind}/1" for kind in ("initial_margin", "close_out", "im_return")
    )
    close = payments[f"{cid}/close_out/1"]
    assert (close.payer, close.payee) == (dealer, "C1")
    assert from_micros(close.amount) == pytest.approx((drop - 20.0) * 1000)  # -20k, posted -60k
    back = payments[f"{cid}/im_return/1"]
    assert (back.payer, back.payee, back.amount) == (CUSTODY, "C1", im)

    # the bank's books: every instruction executed once, its reference on chain, money kept
    await market.until(lambda: bank.counts()["unconfirmed"] == 0, what="the bank's receipts")
    journal = {e.instruction_id: e for e in books.journal()}
    payments[call.id] = paid_call
    executed = set(payments)
    assert set(journal) == executed
    for instruction_id in executed:
        entry, on_chain = journal[instruction_id], payments[instruction_id]
        assert entry.state == JournalState.CONFIRMED
        assert (entry.bank_ref, entry.height) == (on_chain.bank_ref, on_chain.confirmed_height)
        assert entry.amount == on_chain.amount
        assert [ok for _, _, ok in market.confirmations_on_chain(instruction_id)] == [True]
    assert books.total_micros() == funded and books.balanced()
    balances = bank.balances()  # to the micro: C1 paid the call, got the close-out back
    assert balances["C1"] == opening["C1"] - call.amount + close.amount
    assert balances[dealer] == opening[dealer] + call.amount - close.amount
    assert from_micros(balances["C1"] - opening["C1"]) == pytest.approx(-20_000.0)
    assert balances[CUSTODY] == opening[CUSTODY] == 0
    counts = bank.counts()
    assert (counts["executed"], counts["confirmed"], counts["failed"]) == (4, 4, 0)
