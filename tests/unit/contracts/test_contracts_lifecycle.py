"""The contract lifecycle in a ``ContractBook``: margin, calls, defaults, close-outs, idempotency.

Alice is the client, Bob the dealer, Carol a second dealer, Gina a guarantor.
"""

from __future__ import annotations

import pytest

from rfq.contracts import (
    BlockPassed,
    CloseOut,
    ContractBook,
    ContractClosedOut,
    ContractDefaulted,
    ContractOpened,
    ContractSettled,
    CreditEvent,
    CreditEventResolved,
    DefaultTriggered,
    Fixing,
    GuaranteeLine,
    MarginCalls,
    MarginCallsMet,
    MarginPosted,
    MarginShort,
    MarginTerms,
    PaymentInstruction,
    Price,
    RatingRecord,
    Status,
)
from rfq.errors import ValidationError
from rfq.instruments import Side, Template
from rfq.money import to_micros as M

from .contracts_factory import D, contract

MARGIN = MarginTerms(threshold=5000.0, minimum_transfer_amount=1000.0, cure_days=1)


def fix(day: int, price: float, underlying: str = "RB2601") -> Fixing:
    return Fixing.one(underlying, D(2025, 11, day), price)


def of(kind: type, outputs: list) -> list:
    return [o for o in outputs if isinstance(o, kind)]


@pytest.fixture
def book() -> ContractBook:
    """Alice buys 100 t of RB2601 from Bob at 3000, margined (threshold 5,000, MTA 1,000)."""
    b = ContractBook()
    b.apply(BlockPassed(1, D(2025, 11, 3)))
    b.add(contract("C1", fixed=3000.0, margin=MARGIN))
    return b


def test_opening_a_contract_reports_its_notional_and_initial_margin():
    b = ContractBook()
    (opened,) = b.add(contract("C1", fixed=3150.0, quantity=100, multiplier=10, rate=0.1))
    assert opened == ContractOpened("C1", "alice", "bob", 3150000.0, 315000.0)
    assert b.get("C1").status == Status.LIVE


def test_variation_margin_waits_for_the_threshold_and_the_minimum_transfer_amount(book):
    assert book.apply(fix(4, 3040)) == []  # MTM 4,000 under the 5,000 threshold
    assert book.apply(fix(5, 3055)) == []  # 5,500: 500 above it, under the 1,000 MTA
    (call,) = book.apply(fix(6, 3070))  # 7,000: 2,000 above, a call on Bob
    assert isinstance(call, MarginCalls)
    assert (call.payer, call.payee, call.contract_ids, call.amounts, call.client_mtms) == (
        "bob",
        "alice",
        ("C1",),
        (M(2000),),
        (7000.0,),
    )
    assert call.due == D(2025, 11, 7)  # made on the 6th, one business day of cure
    assert book.get("C1").status == Status.MARGIN_CALL


def test_margin_posted_clears_the_call_and_moves_money_once(book):
    book.apply(fix(6, 3070))
    out = book.apply(MarginPosted("tx1", "C1", "bob", M(2000)))
    (pay,) = of(PaymentInstruction, out)
    assert (pay.id, pay.payer, pay.payee, pay.amount, pay.kind) == (
        "C1/variation_margin/1",
        "bob",
        "alice",
        M(2000),
        "variation_margin",
    )
    assert of(MarginCallsMet, out) == [MarginCallsMet(("C1",), (1,))]
    view = book.get("C1")
    assert (view.status, view.vm_balance, view.margin_call) == (Status.LIVE, 2000.0, None)
    # The same posting again: nothing.
    assert book.apply(MarginPosted("tx1", "C1", "bob", M(2000))) == []
    assert book.get("C1").vm_balance == 2000.0


def test_a_partial_posting_leaves_the_rest_of_the_call_open(book):
    book.apply(fix(6, 3070))
    out = book.apply(MarginPosted("tx1", "C1", "bob", M(1500)))
    assert of(MarginCallsMet, out) == []
    call = book.get("C1").margin_call
    assert call is not None
    assert call.outstanding == M(500)
    assert of(MarginCallsMet, book.apply(MarginPosted("tx2", "C1", "bob", M(500)))) == [
        MarginCallsMet(("C1",), (1,))
    ]


def test_margin_flows_back_when_the_market_turns(book):
    book.apply(fix(6, 3070))
    book.apply(MarginPosted("tx1", "C1", "bob", M(2000)))
    assert book.apply(fix(7, 3075)) == []  # 2,500 needed, 2,000 held: under the MTA
    (call,) = book.apply(fix(10, 3000))  # MTM 0: Alice returns the 2,000
    assert (call.payer, call.payee, call.amounts) == ("alice", "bob", (M(2000),))


def test_a_call_unpaid_because_nobody_acted_waits_past_its_due_date(book):
    """Blocks alone never default anyone: without the bank's word that the payer is short,
    an overdue call stays open (the bank may be down) and is met when the money moves."""
    book.apply(fix(6, 3070))  # due by the end of the 7th
    for height in range(2, 200):
        assert book.apply(BlockPassed(height, D(2025, 11, 9))) == []
    assert book.get("C1").status == Status.MARGIN_CALL
    out = book.apply(MarginPosted("tx1", "C1", "bob", M(2000)))
    assert of(MarginCallsMet, out) == [MarginCallsMet(("C1",), (1,))]


def test_a_payer_reported_short_may_still_pay_until_the_call_is_due(book):
    book.apply(fix(6, 3070))
    assert book.apply(MarginShort("C1", 1, "insufficient funds")) == []
    assert book.apply(BlockPassed(2, D(2025, 11, 7))) == []  # the due date itself: still in time
    out = book.apply(MarginPosted("tx1", "C1", "bob", M(2000)))
    assert of(MarginCallsMet, out) == [MarginCallsMet(("C1",), (1,))]
    assert book.apply(BlockPassed(3, D(2025, 11, 8))) == []


def test_a_short_notice_after_the_due_date_defaults_at_once(book):
    book.apply(fix(6, 3070))
    book.apply(BlockPassed(2, D(2025, 11, 8)))
    (trigger,) = book.apply(MarginShort("C1", 1, "insufficient funds"))
    assert isinstance(trigger, DefaultTriggered) and trigger.party == "bob"
    assert "short at the deadline" in trigger.reason


def test_a_call_paid_to_the_last_grid_step_leaves_nothing_outstanding(book):
    """The traced residue: a call of 1,234.5678901 paid as the chain rounds it (1,234.567890)
    left 1e-7 outstanding and defaulted a payer who paid in full."""
    book.apply(fix(6, 3070.012345678901))
    call = book.get("C1").margin_call
    assert call is not None and type(call.amount) is int  # micros: on the grid
    book.apply(MarginPosted("tx1", "C1", "bob", call.amount))
    assert book.get("C1").margin_call is None


def test_a_short_payer_past_the_due_date_is_put_in_default(book):
    book.apply(fix(6, 3070))  # call on Bob, due by the end of the 7th
    assert book.apply(MarginShort("C1", 1, "insufficient funds")) == []
    assert book.apply(BlockPassed(2, D(2025, 11, 7))) == []
    (trigger,) = book.apply(BlockPassed(3, D(2025, 11, 8)))
    assert trigger == DefaultTriggered(
        "C1", "bob", "short at the deadline: margin call 1 of 2,000.00 due 2025-11-07 unpaid", 3
    )
    assert book.get("C1").status == Status.IN_DEFAULT
    # No more calls, no more postings; the ledger now applies the credit event.
    assert book.apply(fix(10, 3200)) == []
    with pytest.raises(ValidationError, match="in_default"):
        book.apply(MarginPosted("late", "C1", "bob", M(2000)))
    out = book.apply(CreditEvent("ce1", "bob", collateral=0))
    (defaulted,) = of(ContractDefaulted, out)
    # Bob owes Alice the MTM of 20,000; nothing to recover it from.
    assert (defaulted.owed_by_defaulter, defaulted.unrecovered) == (M(20000), M(20000))
    view = book.get("C1")
    assert (view.status, view.defaulting_party) == (Status.DEFAULTED, "bob")
    records = of(RatingRecord, out)
    assert [(r.party, r.default, r.recovery_rate) for r in records] == [
        ("alice", False, None),
        ("bob", True, 0.0),
    ]


def test_the_credit_event_waterfall_uses_collateral_then_the_guarantor_then_books_the_loss():
    b = ContractBook()
    b.apply(BlockPassed(1, D(2025, 11, 3)))
    b.add(contract("A-bob", fixed=3000.0, quantity=100))  # Alice buys
    b.add(contract("B-carol", fixed=3000.0, quantity=100 * 40 / 60, dealer="carol"))
    b.add(contract("Z-bob", fixed=2800.0, quantity=10, side=Side.SELL))  # Alice is owed here
    b.apply(fix(4, 2400))  # Alice owes 60,000 to Bob and 40,000 to Carol; Bob owes her 4,000
    out = b.apply(
        CreditEvent(
            "ce1",
            "alice",
            collateral=M(30000),
            guarantees=(GuaranteeLine("gina", M(50000)),),
        )
    )
    (summary,) = of(CreditEventResolved, out)
    assert summary.contract_ids == ("A-bob", "B-carol", "Z-bob")
    assert summary.exposure == M(100000)
    assert summary.collateral_applied == M(30000)
    assert summary.shortfall == M(70000)
    assert summary.guarantee_applied == M(50000)
    assert summary.unrecovered == M(20000)
    assert summary.recovery_rate == 0.8
    pays = [
        (p.contract_id, p.kind, p.payer, p.payee, p.amount) for p in of(PaymentInstruction, out)
    ]
    assert pays == [
        ("A-bob", "collateral", "alice", "bob", M(30000)),
        ("A-bob", "guarantee", "gina", "bob", M(30000)),
        ("B-carol", "guarantee", "gina", "carol", M(20000)),
        ("Z-bob", "close_out", "bob", "alice", M(4000)),
    ]
    defaults = {d.contract_id: d for d in of(ContractDefaulted, out)}
    assert defaults["B-carol"].unrecovered == M(20000)
    alice = [r for r in of(RatingRecord, out) if r.party == "alice"]
    assert [(r.contract_id, r.default, r.recovery_rate, r.guarantee) for r in alice] == [
        ("A-bob", True, 0.8, 30000.0),
        ("B-carol", True, 0.8, 20000.0),
        ("Z-bob", True, 0.8, 0.0),
    ]
    assert all(v.status == Status.DEFAULTED for v in b.by_party("alice"))
    # Replaying the credit event changes nothing.
    before = b.state_bytes()
    assert b.apply(CreditEvent("ce1", "alice", collateral=M(30000))) == []
    assert b.state_bytes() == before


def test_a_guarantor_pays_no_more_than_its_line_and_several_lines_are_used_in_order():
    b = ContractBook()
    b.add(contract("A", fixed=3000.0, quantity=100))
    b.apply(fix(4, 2000))  # Alice owes 100,000
    out = b.apply(
        CreditEvent(
            "ce",
            "alice",
            collateral=M(10000),
            guarantees=(GuaranteeLine("gina", M(50000)), GuaranteeLine("hugo", M(100000))),
        )
    )
    (summary,) = of(CreditEventResolved, out)
    assert [(g.guarantor, g.amount) for g in summary.guarantees] == [
        ("gina", M(50000)),
        ("hugo", M(40000)),
    ]
    assert (summary.unrecovered, summary.recovery_rate) == (0, 1.0)


def test_a_close_out_at_an_agreed_price_settles_the_difference_net_of_margin(book):
    book.apply(fix(6, 3070))
    book.apply(MarginPosted("tx1", "C1", "bob", M(2000)))
    out = book.apply(CloseOut("co1", "C1", D(2025, 11, 7), price=3050.0))
    (closed,) = of(ContractClosedOut, out)
    assert (closed.price, closed.agreed, closed.client_pnl, closed.dealer_pnl) == (
        3050.0,
        True,
        5000.0,
        -5000.0,
    )
    (pay,) = of(PaymentInstruction, out)
    assert (pay.kind, pay.payer, pay.payee, pay.amount) == ("close_out", "bob", "alice", M(3000))
    (rating,) = of(RatingRecord, out)
    assert (rating.party, rating.length_days, rating.margin, rating.default) == (
        "alice",
        4,
        True,
        False,
    )
    assert book.get("C1").status == Status.CLOSED_OUT
    assert book.apply(CloseOut("co1", "C1", D(2025, 11, 7), price=3050.0)) == []
    with pytest.raises(ValidationError, match="closed_out"):
        book.apply(CloseOut("co2", "C1", D(2025, 11, 7), price=3100.0))


def test_a_close_out_without_a_price_uses_the_days_fixing(book):
    book.apply(fix(6, 3020))
    book.apply(fix(7, 2990))
    (closed, _, _) = book.apply(CloseOut("co1", "C1", D(2025, 11, 6)))
    assert (closed.price, closed.agreed, closed.client_pnl) == (3020.0, False, 2000.0)


def test_a_close_out_on_a_day_without_a_fixing_is_refused():
    b = ContractBook()
    b.add(contract("C2"))
    with pytest.raises(ValidationError, match="no fixing"):
        b.apply(CloseOut("co", "C2", D(2025, 11, 6)))


def test_the_same_fixing_twice_changes_nothing_and_a_different_one_is_refused(book):
    first = book.apply(fix(6, 3070))
    assert len(first) == 1
    before = book.state_bytes()
    assert book.apply(fix(6, 3070)) == []
    assert book.state_bytes() == before
    with pytest.raises(ValidationError, match="already fixed"):
        book.apply(fix(6, 3071))
    with pytest.raises(ValidationError, match="date order"):
        book.apply(fix(5, 3000))
    assert book.state_bytes() == before


def test_replayed_blocks_and_contracts_are_no_ops(book):
    before = book.state_bytes()
    assert book.apply(BlockPassed(1, D(2025, 11, 3))) == []
    assert book.add(contract("C1", fixed=3000.0, margin=MARGIN)) == []
    assert book.state_bytes() == before
    with pytest.raises(ValidationError, match="another contract"):
        book.add(contract("C1", fixed=3001.0))


def test_a_contract_settles_at_maturity_and_then_ignores_later_fixings():
    b = ContractBook()
    b.add(contract("C1", fixed=3000.0, maturity=D(2025, 11, 10)))
    out = b.apply(fix(10, 3100))
    (settled,) = of(ContractSettled, out)
    assert (settled.settlement_price, settled.client_pnl) == (3100.0, 10000.0)
    (pay,) = of(PaymentInstruction, out)
    assert pay.id == "C1/settlement/1"
    view = b.get("C1")
    assert b.apply(fix(11, 5000)) == []
    assert b.get("C1") == view
    assert view.outcome is not None
    assert view.outcome.client_pnl == 10000.0


def test_a_block_dated_after_maturity_settles_once_the_fixings_are_known():
    b = ContractBook()
    b.add(contract("C1", fixed=3000.0, maturity=D(2025, 11, 10), margin=MARGIN))
    assert b.apply(BlockPassed(1, D(2025, 11, 11))) == []  # no fixing yet: waits
    # A maturity fixing on a holiday is missing: the next one settles it (following).
    out = b.apply(fix(12, 2900))
    assert of(ContractSettled, out)[0].settlement_price == 2900.0
    assert of(MarginCalls, out) == []  # nothing is called on the day a contract ends


def test_an_average_price_swap_marks_the_fixings_so_far_plus_today_for_the_rest():
    b = ContractBook()
    b.add(
        contract(
            "A1",
            template=Template.AVERAGE_PRICE_SWAP,
            legs=(("C2601", 1.0),),
            fixed=2240.0,
            quantity=500,
            averaging=(D(2025, 11, 3), D(2025, 11, 7)),
            maturity=D(2025, 11, 7),
        )
    )
    b.apply(fix(3, 2240, "C2601"))
    assert b.get("A1").mark == 2240.0
    b.apply(fix(4, 2260, "C2601"))
    # (2240 + 2260 + 2260 x 3) / 5
    assert b.get("A1").mark == 2256.0
    assert b.apply(fix(4, 2260, "C2601")) == []  # the same day twice is averaged once
    assert (b.get("A1").avg_sum, b.get("A1").avg_count) == (4500.0, 2)
    b.apply(fix(5, 2250, "C2601"))
    b.apply(fix(6, 2250, "C2601"))
    (settled, _, _) = b.apply(fix(7, 2250, "C2601"))
    assert settled.settlement_price == 2250.0  # 11,250 / 5
    assert settled.client_pnl == 5000.0  # (2250 - 2240) x 500


def test_a_late_average_swap_picks_up_the_window_fixings_already_published():
    b = ContractBook()
    b.apply(fix(3, 2240, "C2601"))
    b.apply(fix(4, 2260, "C2601"))
    b.add(
        contract(
            "A1",
            template=Template.AVERAGE_PRICE_SWAP,
            legs=(("C2601", 1.0),),
            fixed=2250.0,
            averaging=(D(2025, 11, 3), D(2025, 11, 7)),
            maturity=D(2025, 11, 7),
        )
    )
    view = b.get("A1")
    assert (view.avg_sum, view.avg_count, view.mark) == (4500.0, 2, 2256.0)


def test_a_bought_option_pays_its_premium_at_inception_and_its_payoff_at_maturity():
    b = ContractBook()
    out = b.add(
        contract(
            "O1",
            template=Template.EUROPEAN_OPTION,
            legs=(("RB2605", 1.0),),
            fixed=None,
            option=("call", 3200.0, 50.0),
            maturity=D(2025, 11, 10),
        )
    )
    (premium,) = of(PaymentInstruction, out)
    assert (premium.id, premium.payer, premium.payee, premium.amount) == (
        "O1/premium/1",
        "alice",
        "bob",
        M(5000),
    )
    out = b.apply(fix(10, 3300, "RB2605"))
    (settled,) = of(ContractSettled, out)
    assert settled.client_pnl == 5000.0  # (100 - 50) x 100
    (pay,) = of(PaymentInstruction, out)
    assert (pay.payer, pay.payee, pay.amount) == ("bob", "alice", M(10000))


def test_queries_list_a_partys_contracts_by_id():
    b = ContractBook()
    b.add(contract("Z", dealer="carol"))
    b.add(contract("A"))
    b.add(contract("M", client="dave"))
    assert [v.id for v in b.by_party("alice")] == ["A", "Z"]
    assert [v.id for v in b.by_party("bob")] == ["A", "M"]
    assert b.find("nope") is None
    with pytest.raises(ValidationError):
        b.get("nope")


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"client": "bob"}, "dealer"),
        ({"fixed": None}, "fixed_price"),
        ({"rate": -0.1}, "initial_margin_rate"),
        ({"quantity": float("inf")}, "quantity"),
        ({"margin": MarginTerms(threshold=-1.0)}, "margin.threshold"),
    ],
)
def test_a_contract_the_engine_cannot_run_is_refused_naming_the_field(change, field):
    with pytest.raises(ValidationError) as err:
        ContractBook().add(contract("C1", **change))
    assert err.value.where == field


def test_margin_from_someone_outside_the_contract_is_refused(book):
    with pytest.raises(ValidationError, match="not a party"):
        book.apply(MarginPosted("tx", "C1", "mallory", M(10)))
    with pytest.raises(ValidationError, match="positive"):
        book.apply(MarginPosted("tx", "C1", "bob", 0))


def test_a_fixing_tick_with_several_underlyings_revalues_a_spread():
    b = ContractBook()
    b.add(
        contract(
            "S1",
            template=Template.SPREAD_SWAP,
            legs=(("HC2601", 1.0), ("RB2601", -1.0)),
            fixed=-151.0,
            quantity=1000,
        )
    )
    b.apply(Fixing(D(2025, 11, 4), (Price("HC2601", 3700.0), Price("RB2601", 3800.0))))
    view = b.get("S1")
    assert (view.mark, view.client_mtm, view.dealer_mtm) == (-100.0, 51000.0, -51000.0)


def test_the_state_digest_moves_with_the_state_and_only_with_it(book):
    digest = book.state_digest()
    assert len(digest) == 32
    assert book.state_digest() == digest
    book.apply(fix(6, 3070))
    moved = book.state_digest()
    assert moved != digest
    book.apply(fix(6, 3070))
    assert book.state_digest() == moved
    assert ContractBook.from_state_bytes(book.state_bytes()).state_digest() == moved
