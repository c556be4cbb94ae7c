"""The settlement bank stops between executing and confirming, and starts again."""

from __future__ import annotations

import asyncio

import pytest

from peers.bank import Execution, JournalState, OutState, Purpose
from rfq.ledger.state import CUSTODY
from rfq.money import to_micros as M

pytestmark = pytest.mark.integration


@pytest.fixture
def bank_autostart() -> bool:
    return False


async def test_a_bank_stopped_after_executing_c1s_margin_confirms_it_once_after_a_restart(
    marketplace,
):
    market = marketplace
    c1 = await market.trade("C1")
    c2 = await market.trade("C2")
    first_id, second_id = (f"{t.id}/initial_margin/1" for t in (c1, c2))

    # the first bank executes one instruction and is stopped before it submits the confirmation
    executed = asyncio.Event()
    crashed_on: list[Execution] = []

    async def crash_after_execute(execution: Execution) -> None:
        crashed_on.append(execution)
        executed.set()
        await asyncio.Event().wait()  # never returns: the process "dies" here

    bank = await market.start_bank(after_execute=crash_after_execute)
    books = market.books
    funded = books.total_micros()
    await asyncio.wait_for(executed.wait(), 15)
    await bank.close()
    [execution] = crashed_on
    stopped_id = execution.entry.instruction_id
    assert stopped_id in (first_id, second_id)
    other_id = second_id if stopped_id == first_id else first_id
    [entry] = books.journal()
    assert entry.state == JournalState.EXECUTED
    stored = books.out_tx(stopped_id, Purpose.CONFIRM)
    assert stored.state == OutState.OPEN and stored.submits == 0
    assert (await market.payment(stopped_id)).status == "pending"
    assert market.confirmations_on_chain(stopped_id) == []
    payer = entry.payer
    assert bank.balances()[payer] == M(5.0e7) - entry.amount
    await market.stop_bank()

    # a new bank process, on its own connection, on the same books
    bank = await market.start_bank()
    books = market.books
    await market.until(
        lambda: bank.counts()["confirmed"] == 2, what="both margins confirmed after the restart"
    )
    assert len(books.journal()) == 2
    for instruction_id in (stopped_id, other_id):
        on_chain = await market.payment(instruction_id)
        entry = books.entry(instruction_id)
        assert on_chain.status == "confirmed"
        assert on_chain.bank_ref == entry.bank_ref
        commits = market.confirmations_on_chain(instruction_id)
        assert [ok for _, _, ok in commits] == [True]  # confirmed once, never twice
    # the stopped instruction was confirmed with the bytes signed before the stop
    [(_, tx_id, _)] = market.confirmations_on_chain(stopped_id)
    assert tx_id == stored.tx_id
    assert books.entry(stopped_id).bank_ref == execution.entry.bank_ref

    # each executed once: C1 and C2 paid their margins once, custody holds both
    balances = bank.balances()
    for traded in (c1, c2):
        assert balances[traded.trade.client] == M(5.0e7) - traded.trade.cash_margin
    assert balances[CUSTODY] == c1.trade.cash_margin + c2.trade.cash_margin
    assert books.total_micros() == funded and books.balanced()
    polls = bank.polls
    await market.until(lambda: bank.polls >= polls + 2, what="two further polls")  # change nothing
    assert bank.counts()["executed"] == 2
