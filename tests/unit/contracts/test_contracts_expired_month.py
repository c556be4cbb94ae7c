"""A contract on a futures month that stopped fixing settles at that month's last fixing.

Alice buys 100 t of RB2601 from Bob at 3000, maturing Tuesday 20 January 2026, five days after
RB2601's last trading day (15 January): the oracle's last RB2601 close is that day's, 3100.
"""

from __future__ import annotations

import datetime as dt

import pytest

from rfq.contracts import BlockPassed, ContractBook, ContractSettled, Fixing, Price, Status
from rfq.instruments import Template

from .contracts_factory import D, contract

MATURITY = D(2026, 1, 20)


def book_with(*legs: tuple[str, float], maturity: dt.date = MATURITY) -> ContractBook:
    b = ContractBook()
    b.apply(BlockPassed(1, D(2026, 1, 5)))
    template = Template.CALENDAR_SPREAD if len(legs) == 2 else Template.PRICE_SWAP
    b.add(
        contract(
            "C1",
            template=template,
            legs=legs,
            fixed=3000.0 if len(legs) == 1 else 50.0,
            trade_date=D(2026, 1, 5),
            maturity=maturity,
        )
    )
    return b


def settled(outputs: list) -> list[ContractSettled]:
    return [o for o in outputs if isinstance(o, ContractSettled)]


def test_after_maturity_a_leg_that_stopped_fixing_settles_at_its_last_fixing() -> None:
    b = book_with(("RB2601", 1.0))
    b.apply(Fixing.one("RB2601", D(2026, 1, 14), 3050.0))
    b.apply(Fixing.one("RB2601", D(2026, 1, 15), 3100.0))  # the last trading day
    # The market moves on without RB2601: other months fix through and past maturity.
    assert settled(b.apply(Fixing.one("RB2605", D(2026, 1, 20), 3200.0))) == []
    assert settled(b.apply(Fixing.one("RB2605", D(2026, 1, 21), 3210.0))) == []
    (done,) = settled(b.apply(BlockPassed(2, D(2026, 1, 21))))
    assert done.settlement_price == 3100.0
    assert done.client_pnl == pytest.approx((3100.0 - 3000.0) * 100)
    assert b.get("C1").status == Status.SETTLED


def test_the_fallback_waits_for_a_block_dated_after_maturity() -> None:
    b = book_with(("RB2601", 1.0))
    b.apply(Fixing.one("RB2601", D(2026, 1, 15), 3100.0))
    b.apply(Fixing.one("RB2605", D(2026, 1, 21), 3210.0))
    assert settled(b.apply(BlockPassed(2, D(2026, 1, 20)))) == []  # dated on maturity: waits
    assert b.get("C1").status == Status.LIVE
    assert settled(b.apply(BlockPassed(3, D(2026, 1, 21))))[0].settlement_price == 3100.0


def test_a_late_maturity_fixing_is_still_awaited_while_no_fixing_is_dated_after_maturity() -> None:
    # Blocks run ahead of the oracle (clock date past maturity, fixings behind): no fallback,
    # the maturity fixing settles when it comes.
    b = book_with(("RB2601", 1.0), maturity=D(2026, 1, 14))
    b.apply(Fixing.one("RB2601", D(2026, 1, 13), 3050.0))
    assert settled(b.apply(BlockPassed(2, D(2026, 1, 16)))) == []
    assert settled(b.apply(Fixing.one("RB2601", D(2026, 1, 14), 3080.0)))[0].settlement_price == (
        3080.0
    )


def test_a_spread_settles_each_leg_on_its_own_fixing_the_expired_one_on_its_last() -> None:
    b = book_with(("RB2605", 1.0), ("RB2601", -1.0))
    b.apply(Fixing(D(2026, 1, 15), (Price("RB2601", 3100.0), Price("RB2605", 3150.0))))
    b.apply(Fixing.one("RB2605", D(2026, 1, 20), 3190.0))  # RB2601 fixes no more
    b.apply(Fixing.one("RB2605", D(2026, 1, 21), 3200.0))
    (done,) = settled(b.apply(BlockPassed(2, D(2026, 1, 21))))
    assert done.settlement_price == 3190.0 - 3100.0  # RB2605 on maturity, RB2601 its last
    assert done.client_pnl == pytest.approx((90.0 - 50.0) * 100)


def test_a_leg_with_no_fixing_at_all_keeps_the_contract_open() -> None:
    b = book_with(("RB2601", 1.0))
    b.apply(Fixing.one("RB2605", D(2026, 1, 21), 3210.0))
    assert settled(b.apply(BlockPassed(2, D(2026, 1, 22)))) == []
    assert b.get("C1").status == Status.LIVE


def test_two_books_and_a_restored_snapshot_settle_the_expired_month_identically() -> None:
    events = [
        Fixing.one("RB2601", D(2026, 1, 15), 3100.0),
        Fixing.one("RB2605", D(2026, 1, 21), 3210.0),
    ]
    a, b = book_with(("RB2601", 1.0)), book_with(("RB2601", 1.0))
    for event in events:
        assert a.apply(event) == b.apply(event)
    c = ContractBook.from_state_bytes(a.state_bytes())
    block = BlockPassed(2, D(2026, 1, 21))
    assert a.apply(block) == b.apply(block) == c.apply(block)
    assert a.state_digest() == b.state_digest() == c.state_digest()
