"""An overdue margin call whose payer nobody reported short waits, and a block does not pass
over such calls one by one: the columns know which open calls were reported short, through
a rollback and a restore alike."""

from __future__ import annotations

import msgspec

from rfq.contracts import BlockPassed, ContractBook, DefaultTriggered, Fixing, MarginShort
from rfq.contracts.model import MarginTerms, Status

from .contracts_factory import D, contract

MARGIN = MarginTerms(threshold=5000.0, minimum_transfer_amount=1000.0, cure_days=1)
CONTRACTS = 50


def _book_with_overdue_calls() -> ContractBook:
    """Fifty margined contracts, each with a call on Bob due by the 7th, now the 9th."""
    book = ContractBook()
    book.apply(BlockPassed(1, D(2025, 11, 3)))
    for k in range(CONTRACTS):
        book.add(contract(f"C{k:02d}", fixed=3000.0, margin=MARGIN))
    book.apply(Fixing.one("RB2601", D(2025, 11, 6), 3070))
    assert all(book.get(f"C{k:02d}").margin_call is not None for k in range(CONTRACTS))
    book.apply(BlockPassed(2, D(2025, 11, 9)))
    return book


def test_only_calls_reported_short_are_overdue_for_a_block():
    book = _book_with_overdue_calls()
    day = D(2025, 11, 10).toordinal()
    assert book._cols.overdue(day).size == 0  # none reported short: nothing to look at
    book.apply(MarginShort("C07", 1, "insufficient funds"))  # past due: defaults at once
    book.checkpoint()
    book.apply(MarginShort("C11", 1, "insufficient funds"))
    assert book.get("C11").status == Status.IN_DEFAULT
    book.rollback()  # the notice undone: C11's call is open and unreported again
    assert book.get("C11").status == Status.MARGIN_CALL
    assert book._cols.overdue(day).size == 0


def test_a_call_reported_short_before_its_due_date_defaults_after_a_restore_too():
    book = ContractBook()
    book.apply(BlockPassed(1, D(2025, 11, 3)))
    for k in range(3):
        book.add(contract(f"C{k}", fixed=3000.0, margin=MARGIN))
    book.apply(Fixing.one("RB2601", D(2025, 11, 6), 3070))  # calls due by the 7th
    book.apply(MarginShort("C1", 1, "insufficient funds"))  # before the due date: waits
    restored = ContractBook.from_state_bytes(book.state_bytes())
    for b in (book, restored):
        out = b.apply(BlockPassed(2, D(2025, 11, 8)))
        assert [(o.contract_id, o.party) for o in out if isinstance(o, DefaultTriggered)] == [
            ("C1", "bob")
        ]
        assert [b.get(f"C{k}").status for k in range(3)] == [
            Status.MARGIN_CALL,
            Status.IN_DEFAULT,
            Status.MARGIN_CALL,
        ]
    assert restored.state_digest() == book.state_digest()


def test_a_view_without_its_call_is_the_view_with_the_call_left_out():
    book = _book_with_overdue_calls()
    whole = book.get("C03")
    assert whole.margin_call is not None and whole.status == Status.MARGIN_CALL
    bare = book.find("C03", with_call=False)
    assert bare == msgspec.structs.replace(whole, margin_call=None)
