"""Paged queries: every row exactly once across pages, a total, and refusals for bad limits."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from rfq.identity import Identity, Role
from rfq.queries import (
    MAX_RECEIPTS,
    PAGE_LIMIT,
    ReceiptsQuery,
    TradesQuery,
    newest_first_key,
    page,
    refusal,
)


@given(st.sets(st.text(min_size=1, max_size=6)), st.integers(min_value=1, max_value=7))
def test_walking_the_pages_returns_every_row_once_in_order_with_the_total(keys, limit):
    rows = sorted(keys)
    seen: list[str] = []
    cursor = ""
    while True:
        chunk, cursor, total = page(rows, str, cursor, limit)
        assert total == len(rows) and len(chunk) <= limit
        seen.extend(chunk)
        if not cursor:
            break
    assert seen == rows


def test_a_row_added_between_two_pages_does_not_shift_or_repeat_the_others():
    rows = ["a", "c", "e", "g"]
    first, cursor, _ = page(rows, str, "", 2)
    rows = ["a", "b", "c", "d", "e", "g"]  # b and d arrive before the next read
    second, cursor, total = page(rows, str, cursor, 2)
    assert (first, second, total) == (["a", "c"], ["d", "e"], 6)


def test_a_page_never_exceeds_the_page_limit_whatever_is_asked():
    rows = [f"{i:06d}" for i in range(PAGE_LIMIT + 5)]
    chunk, cursor, total = page(rows, str, "", 10**9)
    assert len(chunk) == PAGE_LIMIT and cursor == rows[PAGE_LIMIT - 1] and total == len(rows)


def test_newer_heights_sort_first():
    assert newest_first_key(10, "x") < newest_first_key(9, "a")


def test_a_zero_limit_is_refused_with_the_reason_and_many_receipts_are_paged_not_refused():
    member = Identity.generate("C1", Role.CLIENT).member("C1")
    assert "limit must be a positive" in (refusal(member, TradesQuery(limit=0)) or "")
    assert "since_height" in (refusal(member, TradesQuery(since_height=-1)) or "")
    many = ReceiptsQuery(tuple(f"{i:064x}" for i in range(MAX_RECEIPTS + 1)))
    assert refusal(member, many) is None
