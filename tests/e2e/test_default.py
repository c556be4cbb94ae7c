"""A client's default end to end: collateral first, then the guarantor, and the rating falls."""

from __future__ import annotations

import pytest

from rfq.contracts.model import Status
from rfq.identity import NetworkParams
from rfq.ledger.state import CUSTODY
from rfq.money import from_micros
from rfq.money import to_micros as M

pytestmark = pytest.mark.integration

RECEIPT = "warehouse receipt WR-2026-118"


@pytest.fixture
def net_params() -> NetworkParams:
    """A margin call is due by the end of its own business day; idle blocks every 300 ms."""
    return NetworkParams(
        block_time_ms=50, idle_block_ms=300, round_timeout_ms=1000, margin_cure_days=0
    )


async def test_c1_misses_a_margin_call_and_collateral_then_guarantor_g1_cover_dealer_loss(
    marketplace,
):
    market = marketplace
    bank, books, g1 = market.bank, market.books, market.guarantor
    funded = books.total_micros()
    rating_before = (await market.ratings("C1"))["C1"]
    line = 0.0

    async def pledge_then_accept(quote) -> None:
        # C1 pledges a warehouse receipt with G1 for half the initial margin, then accepts.
        nonlocal line
        line = round(quote.initial_margin_rate * quote.price * 1000 / 2, 2)
        receipt = await g1.grant(
            "C1", line=line, asset=RECEIPT, asset_value=2 * line, guarantee_id="g1"
        )
        assert receipt.ok, receipt.reason

    traded = await market.trade("C1", quantity=1000, before_accept=pledge_then_accept)
    cid, dealer, price = traded.id, traded.quote.dealer, traded.quote.price
    trade = traded.trade
    assert trade.guarantee_cover == (("g1", M(line)),)
    cash = trade.cash_margin  # micros, like every amount on chain
    assert cash == trade.initial_margin - M(line) and cash > 0

    # C1 pays the cash part of its initial margin, then has nothing left at the bank
    await market.until(lambda: market.settled(cid), what="the cash margin confirmed")
    opening = bank.balances()
    bank.set_balance("C1", 0)
    await market.until(lambda: g1.lines.get("g1") is not None and g1.lines["g1"].allocated > 0)
    assert g1.lines["g1"].allocated == M(line)

    # the next close costs C1 its collateral plus half the line: a margin call it cannot meet
    loss = from_micros(cash) + line / 2
    call_day = market.next_day()
    await market.fix(call_day, price - loss / 1000)
    await market.until(lambda: market.call_payment(cid), what="the margin call")
    call_id = (await market.call_payment(cid)).id
    await market.until(
        lambda: _status(market, call_id, "failed"), what="the bank reporting the call unpaid"
    )
    call = await market.payment(call_id)
    assert call.payer == "C1" and from_micros(call.amount) == pytest.approx(loss)
    assert call.failure.startswith("insufficient funds: C1 holds 0.00")
    assert call.due == call_day
    assert (await market.contract(cid)).status == Status.MARGIN_CALL  # short, but not yet due

    # the next business day's close: the call's due date has passed, the payer is short, the
    # contract defaults and the waterfall runs
    await market.fix(market.next_day(call_day), price - loss / 1000)
    await market.until(
        lambda: _contract_status(market, cid, Status.DEFAULTED), what="the default", timeout=30
    )
    view = await market.contract(cid)
    assert view.outcome.defaulting_party == "C1"
    await market.until(lambda: _all_confirmed(market, cid), what="the payouts confirmed")
    payments = await market.payments(cid)
    collateral = payments[f"{cid}/collateral/1"]
    assert (collateral.payer, collateral.payee) == (CUSTODY, dealer)
    assert collateral.amount == cash  # all of the cash margin in custody
    guarantee = payments[f"{cid}/guarantee/1"]
    assert (guarantee.payer, guarantee.payee) == ("G1", dealer)
    assert from_micros(guarantee.amount) == pytest.approx(line / 2)
    assert f"{cid}/im_return/1" not in payments  # the collateral took all of it
    missed = await market.payment(call_id)  # paid per netting set: not the contract's own
    assert missed is not None and missed.status == "lapsed"  # failed, then its contract defaulted

    # the guarantor's line shows the payout; the allocation is released
    on_chain = (await market.guarantees())["g1"]
    assert on_chain.paid == guarantee.amount
    assert on_chain.allocated == 0
    await market.until(lambda: g1.lines["g1"].paid > 0, what="G1's monitor seeing the payout")
    assert g1.exposure().paid == pytest.approx(line / 2)

    # C1's rating falls; the default is in its history
    assert (await market.ratings("C1"))["C1"] < rating_before

    # the bank's books: the payouts moved, the call did not, nothing was created
    journal = {e.instruction_id: e for e in books.journal()}
    assert call_id not in journal
    assert {f"{cid}/collateral/1", f"{cid}/guarantee/1"} <= set(journal)
    balances = bank.balances()
    assert balances["C1"] == 0
    assert balances[CUSTODY] == opening[CUSTODY] - cash == 0
    assert balances["G1"] == opening["G1"] - guarantee.amount
    assert balances[dealer] == opening[dealer] + cash + guarantee.amount
    assert books.balanced()
    assert books.total_micros() == funded - opening["C1"]  # C1's cash was taken out
    assert bank.counts()["failed"] == 1


async def _status(market, instruction_id: str, status: str) -> bool:
    payment = await market.payment(instruction_id)
    return payment is not None and payment.status == status


async def _contract_status(market, contract_id: str, status: Status) -> bool:
    return (await market.contract(contract_id)).status == status


async def _all_confirmed(market, contract_id: str) -> bool:
    rest = list((await market.payments(contract_id)).values())
    return len(rest) >= 3 and all(p.status == "confirmed" for p in rest)
