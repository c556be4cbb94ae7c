"""What the chain refuses end to end: the reason is in the receipt and nothing changes."""

from __future__ import annotations

import pytest

from peers.bank import Purpose
from rfq.ledger.tx import PaymentConfirmed, signed_decoder

pytestmark = pytest.mark.integration

RECEIPT = "warehouse receipt WR-2026-118"


async def test_guarantor_g1_cannot_pledge_one_asset_twice_nor_lend_beyond_value_or_capacity(
    marketplace,
):
    market, g1 = marketplace, marketplace.guarantor
    first = await g1.grant("C1", line=1e6, asset=RECEIPT, asset_value=2e6, guarantee_id="g1")
    assert first.ok, first.reason
    before = await market.guarantees()

    double = await g1.grant("C2", line=5e5, asset=RECEIPT, asset_value=2e6, guarantee_id="g2")
    over_value = await g1.grant(
        "C2", line=3e6, asset="deposit certificate DC-77", asset_value=2e6, guarantee_id="g3"
    )
    capacity = market.genesis.member("G1").capital  # 3e8, of which 1e6 is promised to C1
    over_capacity = await g1.grant(
        "C2", line=capacity, asset="mine deed MD-9", asset_value=2 * capacity, guarantee_id="g4"
    )

    assert not double.ok and double.reason == "asset already pledged to guarantee g1"
    assert not over_value.ok
    assert over_value.reason == "line 3000000.0 exceeds the pledged asset's value 2000000.0"
    assert not over_capacity.ok
    assert over_capacity.reason == (f"line {capacity} exceeds G1's free capacity {capacity - 1e6}")
    assert await market.guarantees() == before
    await g1.refresh()
    assert sorted(g1.lines) == ["g1"]


async def test_a_replayed_payment_confirmation_is_refused_and_changes_nothing(marketplace):
    market, bank, books = marketplace, marketplace.bank, marketplace.books
    traded = await market.trade("C2")
    instruction_id = f"{traded.id}/initial_margin/1"
    await market.until(lambda: market.settled(traded.id), what="the initial margin confirmed")
    sent = books.out_tx(instruction_id, Purpose.CONFIRM)
    [(height, tx_id, ok)] = market.confirmations_on_chain(instruction_id)
    assert ok and tx_id == sent.tx_id
    payments_before, balances_before = await market.payments(), bank.balances()

    # the very bytes again: the same transaction, the one final receipt, no second commit
    replay = await bank.ledger.submit_signed(signed_decoder.decode(sent.tx))
    assert replay == sent.tx_id
    again = await bank.ledger.wait(replay, timeout=10)
    assert again.ok and again.height == height

    # a fresh confirmation of the same instruction: refused, with the reason
    payment = payments_before[instruction_id]
    second = await bank.ledger.submit_and_wait(
        PaymentConfirmed(instruction_id, payment.amount, "BANK-forged-second"), timeout=15
    )
    assert not second.ok
    assert second.reason == f"payment {instruction_id} is already confirmed"

    assert [h for h, _, ok in market.confirmations_on_chain(instruction_id) if ok] == [height]
    after = await market.payments()
    assert after == payments_before
    assert after[instruction_id].bank_ref == books.entry(instruction_id).bank_ref
    assert bank.balances() == balances_before
    assert bank.counts()["executed"] == 1
