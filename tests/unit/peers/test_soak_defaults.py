"""no_solvent_default: each default's cause, from the bank's balance at the deadline."""

from __future__ import annotations

from peers.bank import JournalEntry, JournalState
from peers.netdir import create_network
from peers.soak import (
    BankView,
    DefaultFact,
    check_no_solvent_default,
    explain_defaults,
    underfunded_clients,
)
from rfq.money import MICROS, to_micros

BLOCK_MS = {h: 1_000 * h for h in range(1, 200)}


def entry(seq: int, payer: str, payee: str, amount: float, at_ms: int) -> JournalEntry:
    return JournalEntry(
        seq, f"i{seq}", "k", "margin_call", payer, payee, to_micros(amount), f"B-{seq}", at_ms,
        JournalState.CONFIRMED, None, "",
    )  # fmt: skip


BANK = BankView(
    journal=[entry(1, "C3", "D1", 900.0, 5_000), entry(2, "D1", "C1", 100.0, 6_000)],
    funding=[("C1", 50 * MICROS, 0), ("C3", 1_000 * MICROS, 0), ("D1", 10**6 * MICROS, 0)],
    balances={},
)


def call(member: str, amount: float, *, deadline: int = 70, **extra) -> DefaultFact:
    return DefaultFact(
        member, "margin_call", deadline + 1, f"margin call 1 unmet by block {deadline}",
        contract=f"{member}-k", payment_id=f"{member}-k/margin_call/1", amount=amount,
        deadline_height=deadline, **extra,
    )  # fmt: skip


def explain(*defaults: DefaultFact, failing=frozenset({"C3"})):
    return explain_defaults(
        defaults, failing=failing, balance_at=BANK.balance_at, block_ms=BLOCK_MS.get
    )


def test_the_balance_at_a_time_is_rebuilt_from_the_funding_and_the_journal():
    assert BANK.balance_at("C3", 4_999) == 1_000.0
    assert BANK.balance_at("C3", 5_000) == 100.0
    assert BANK.balance_at("C1", 7_000) == 150.0
    assert BANK.balance_at("C9", 7_000) is None


def test_a_designed_to_fail_client_short_at_the_deadline_is_an_expected_default():
    [report] = explain(call("C3", 500.0))
    assert report.expected and report.solvent is False
    assert report.cause.startswith("short at the deadline: held 100.00, owed 500.00")
    assert check_no_solvent_default([report]) == []


def test_a_dealer_that_held_the_money_at_the_deadline_defaulted_solvent():
    [report] = explain(call("D1", 2040.0, failure="not paid: too close"))
    [v] = check_no_solvent_default([report])
    assert (v.invariant, v.height, v.ids) == ("no_solvent_default", 71, ("D1", "D1-k"))
    assert "not short: held 1000800.00" in v.detail and "not paid: too close" in v.detail


def test_a_margin_call_confirmed_on_chain_that_still_defaults_is_a_solvent_default():
    [report] = explain(call("C3", 5000.0, confirmed_height=53))
    assert report.solvent
    [v] = check_no_solvent_default([report])
    assert "paid, yet defaulted" in v.detail and "confirmed at height 53" in v.detail


def test_a_default_of_a_member_not_designed_to_fail_is_unexpected_even_when_short():
    [report] = explain(call("C1", 5000.0))
    assert report.solvent is False and not report.expected
    [v] = check_no_solvent_default([report])
    assert "not designed to fail" in v.detail


def test_an_explicit_credit_event_carries_its_reason_as_the_cause():
    fact = DefaultFact("C3", "credit_event", 40, "bankruptcy filing")
    [report] = explain(fact)
    assert report.cause == "credit event: bankruptcy filing" and report.solvent is None
    assert check_no_solvent_default([report]) == []


def test_an_eviction_of_an_authority_is_unexpected():
    [report] = explain(DefaultFact("D2", "eviction", 90, "missed 5 proposals in a row"))
    [v] = check_no_solvent_default([report])
    assert v.ids == ("D2",) and "evicted: missed 5 proposals" in v.detail


def test_clients_opened_with_less_than_the_default_balance_count_as_designed_to_fail(tmp_path):
    genesis = create_network(tmp_path / "net").genesis()
    books = BankView([], [("C1", 5 * 10**7 * MICROS, 0), ("C5", 1_000 * MICROS, 0)], {})
    assert underfunded_clients(genesis, books) == {"C5"}
    assert underfunded_clients(genesis, None) == frozenset()
