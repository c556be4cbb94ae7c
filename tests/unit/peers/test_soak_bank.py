"""bank_conserves: the books against the chain's payments, on hand-built books."""

from __future__ import annotations

from peers.bank import JournalEntry, JournalState
from peers.soak import BankView, check_bank_conserves
from rfq.ledger.state import Payment
from rfq.money import MICROS, to_micros

END_MS = 100_000
BLOCK_MS = {h: 1_000 * h for h in range(1, 101)}


def payment(pid: str, status: str = "confirmed", *, kind="initial_margin", height=10, **kw):
    fields = {"payer": "C1", "payee": "CUSTODY", "amount": 100.0, **kw}
    return Payment(
        pid, "k", kind, fields.pop("payer"), fields.pop("payee"), to_micros(fields.pop("amount")),
        created_height=height, status=status,
        confirmed_height=height + 1 if status == "confirmed" else None, **fields,
    )  # fmt: skip


def entry(pid: str, amount: float = 100.0, state=JournalState.CONFIRMED, at_ms=11_000, ref=None):
    return JournalEntry(
        1, pid, "k", "initial_margin", "C1", "CUSTODY", to_micros(amount), ref or f"B-{pid}", at_ms,
        state, 11, "",
    )  # fmt: skip


def books(*entries: JournalEntry, funded=1_000 * MICROS, total=None) -> BankView:
    return BankView(
        list(entries),
        [("C1", funded, 0)],
        {"C1": funded if total is None else total},
    )


def check(bank, *payments):
    return check_bank_conserves(
        bank, {p.id: p for p in payments}, block_ms=BLOCK_MS.get, end_ms=END_MS, due_s=10
    )


def test_books_that_match_the_chain_one_for_one_are_clean():
    paid = payment("k/initial_margin/1", bank_ref="B-k/initial_margin/1")
    fresh = payment("k/im_return/1", "pending", height=95)  # not yet due
    vm = payment("k/variation_margin/1", kind="variation_margin", bank_ref="k/initial_margin/1")
    assert check(books(entry("k/initial_margin/1")), paid, fresh, vm) == []


def test_books_that_create_money_are_a_violation():
    [v] = check(books(funded=10 * MICROS, total=11 * MICROS))
    assert v.ids == ("BANK",) and "paid in" in v.detail


def test_a_payment_confirmed_on_chain_but_never_executed_is_named():
    [v] = check(books(), payment("k/initial_margin/1"))
    assert (v.height, v.ids) == (11, ("k/initial_margin/1",))
    assert "never executed" in v.detail


def test_an_amount_that_differs_between_chain_and_books_is_named():
    [v] = check(books(entry("k/initial_margin/1", amount=99.0)), payment("k/initial_margin/1"))
    assert "the bank moved 99.0" in v.detail


def test_an_instruction_pending_past_its_due_time_is_named():
    [v] = check(books(), payment("k/collateral/1", "pending", kind="collateral", height=40))
    assert v.height == 40 and "pending since block 40" in v.detail


def test_a_failed_instruction_whose_payer_now_has_the_funds_is_named():
    failed = payment("k/initial_margin/2", "failed", amount=50.0, failure="insufficient funds")
    [v] = check(books(), failed)
    assert v.ids == ("k/initial_margin/2", "C1") and "stays failed" in v.detail


def test_an_execution_the_chain_refused_or_does_not_know_is_named():
    refused = entry("k/initial_margin/1", state=JournalState.REFUSED)
    found = check(books(refused, entry("ghost")), payment("k/initial_margin/1", "pending"))
    details = " | ".join(v.detail for v in found)
    assert "refused the bank's confirmation" in details
    assert "ghost, which is no instruction on chain" in details


def test_money_moved_long_ago_for_an_unconfirmed_instruction_is_named():
    stuck = entry("k/initial_margin/1", state=JournalState.EXECUTED, at_ms=20_000)
    [v] = check(books(stuck), payment("k/initial_margin/1", "pending"))
    assert "chain has it pending" in v.detail


def test_no_books_at_all_is_a_violation():
    [v] = check_bank_conserves(None, {}, block_ms=BLOCK_MS.get, end_ms=END_MS, due_s=10)
    assert v.invariant == "bank_conserves"


def test_a_margin_call_paid_as_its_contract_defaulted_is_refused_reversed_and_not_a_violation():
    """The one race of asynchronous settlement: the payer's default elsewhere ends this
    contract while the bank pays its call; the chain refuses, the books reverse."""
    lapsed = payment("k/margin_call/1", "lapsed", kind="margin_call")
    other = payment("k/initial_margin/1", "lapsed")
    refused = JournalState.REFUSED
    assert check(books(entry("k/margin_call/1", state=refused)), lapsed) == []
    [v] = check(books(entry("k/initial_margin/1", state=refused)), other)
    assert "refused the bank's confirmation" in v.detail
