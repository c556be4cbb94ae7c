"""The book's journal: ``rollback`` puts the book back exactly as it was at ``checkpoint``
(state bytes, digest, and how it carries on), whatever the events did in between; ``release``
keeps them."""

from __future__ import annotations

import pytest

from rfq.contracts import ContractBook, MarginTerms
from rfq.contracts.events import BlockPassed, CloseOut, CreditEvent, Fixing, MarginPosted, Price
from rfq.errors import ValidationError
from rfq.instruments import Template

from .contracts_factory import D, contract

MARGIN = MarginTerms(threshold=5_000.0, minimum_transfer_amount=1_000.0, cure_days=1)


def base() -> ContractBook:
    b = ContractBook()
    b.apply(BlockPassed(1, D(2025, 11, 3)))
    for i in range(6):
        b.add(contract(f"C{i}", fixed=3000.0 + i, margin=MARGIN, maturity=D(2025, 11, 10 + i)))
    b.apply(Fixing.one("RB2601", D(2025, 11, 4), 3100.0))
    b.state_digest()
    return b


def events() -> list[object]:
    """A block that opens a two-leg spread (wider legs), meets a margin call, closes out and
    defaults contracts (a compaction), fixes prices (a tick) and passes maturities."""
    return [
        BlockPassed(2, D(2025, 11, 5)),
        contract(
            "S1",
            template=Template.SPREAD_SWAP,
            legs=(("HC2601", 1.0), ("RB2601", -1.0)),
            fixed=-151.0,
            quantity=1000,
        ),
        MarginPosted("pay-1", "C0", "bob", 10_000_000_000),  # 10,000.00 in micros
        CloseOut("close-1", "C1", D(2025, 11, 5), 3150.0),
        CreditEvent("credit-1", "alice", 0, ()),
        Fixing(D(2025, 11, 12), (Price("HC2601", 3700.0), Price("RB2601", 3800.0))),
        BlockPassed(3, D(2025, 11, 13)),
    ]


def apply(book: ContractBook, items: list[object]) -> None:
    for item in items:
        try:
            if isinstance(item, BlockPassed | Fixing | MarginPosted | CloseOut | CreditEvent):
                book.apply(item)
            else:
                book.add(item)  # type: ignore[arg-type]
        except ValidationError:
            pass  # refused atomically, as a block's refused transaction


@pytest.mark.parametrize("cut", range(len(events()) + 1))
def test_a_rollback_after_any_prefix_of_a_block_restores_the_book_exactly(cut):
    book = base()
    before, digest = book.state_bytes(), book.state_digest()
    book.checkpoint()
    apply(book, events()[:cut])
    book.state_digest()  # the caches move too: the rollback must put them back
    book.rollback()
    assert book.state_bytes() == before
    assert book.state_digest() == digest
    assert ContractBook.from_state_bytes(before).state_digest() == digest
    # It carries on as a book that never saw the block.
    twin = base()
    apply(book, events())
    apply(twin, events())
    assert book.state_bytes() == twin.state_bytes()
    assert book.state_digest() == twin.state_digest()


def test_a_release_keeps_the_block_as_if_applied_without_a_journal():
    book, twin = base(), base()
    book.checkpoint()
    apply(book, events())
    book.release()
    apply(twin, events())
    assert book.state_bytes() == twin.state_bytes()
    assert book.state_digest() == twin.state_digest()
    assert not book.journaling


def test_a_second_checkpoint_or_a_rollback_without_one_is_refused():
    book = base()
    with pytest.raises(ValidationError):
        book.rollback()
    book.checkpoint()
    with pytest.raises(ValidationError):
        book.checkpoint()
