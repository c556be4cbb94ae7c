"""A snapshot captured at one height and encoded later (on the node's writer thread, while
blocks go on executing) is exactly that height's snapshot, whether as every row or as the
rows changed since the snapshot before; a state restored from a snapshot
takes the records' and entries' bytes as they are, and those are exactly what encoding its
decoded contents afresh gives, so the shortcut never hides a difference."""

from __future__ import annotations

import msgspec
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rfq.contracts.book import ContractBook
from rfq.contracts.columns import _COLUMNS
from rfq.errors import ValidationError
from rfq.instruments import Side
from rfq.ledger.digest import DigestMap
from rfq.ledger.snapshot import Table, apply_rows, assemble, container, sorted_entries
from rfq.ledger.state import LedgerState

from .test_snapshot_roundtrip import NET, Run, _op

_encoder = msgspec.msgpack.Encoder()


def assemble_table(table: Table) -> bytes:
    return container(table.kind, [entry for _, entry in table.rows if entry is not None])


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(st.lists(_op, min_size=5, max_size=30), st.integers(min_value=1, max_value=4))
def test_rows_captured_at_a_height_and_applied_to_the_last_snapshots_make_that_heights_bytes(
    ops, every
):
    """What a node does: every few blocks the rows changed since its last snapshot are
    captured, encoded later (after more blocks), and applied to the rows it holds; those
    rows always assemble to exactly the snapshot of the height they were captured at."""
    captured: list[tuple[int, bytes, object]] = []
    last: list[int | None] = [None]

    def capture(state: LedgerState) -> None:
        if state.height % every:
            return
        captured.append((state.height, state.snapshot(), state.snapshot_rows(last[0])))
        last[0] = state.height

    run = Run(after_block=capture)
    for op in ops:
        run.step(op)
    held: dict[str, dict[str, bytes]] = {}
    for n, (height, expected, later) in enumerate(captured):
        rows = later()  # type: ignore[operator]
        assert rows.height == height
        assert rows.base == (None if n == 0 else captured[n - 1][0])
        held = apply_rows(held, rows.tables)
        tables = {name: sorted_entries(entries) for name, entries in held.items()}
        assert assemble(rows.frame, tables) == expected, f"at {height}"


def test_a_delta_holds_only_what_changed_and_a_restored_state_starts_its_deltas_there():
    run = Run()
    for _ in range(4):
        run.step(("trade", "C1", "D1", Side.BUY, 100, 30, False, 0.0, 0))
    state = run.chain.state
    full = state.snapshot_rows()()
    assert full.base is None and all(t.full for t in full.tables.values())
    run.step(("trade", "C2", "D2", Side.SELL, 100, 30, False, 0.0, 0))
    delta = state.snapshot_rows(full.height)()
    assert delta.base == full.height
    assert not any(t.full for t in delta.tables.values())
    assert len(delta.tables["book.contracts"].rows) == 1  # the one new contract
    assert len(delta.tables["trades"].rows) == 1
    assert delta.row_count < full.row_count
    assert state.snapshot_rows(12345)().base is None  # a height it never snapshotted: all
    restored = LedgerState.restore(NET.genesis, state.snapshot())
    assert restored.snapshot_rows(restored.height)().row_count == 0
    assert restored.snapshot_rows(full.height)().base is None  # before its restore: all


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(st.lists(_op, min_size=5, max_size=30))
def test_a_restored_book_and_maps_hold_what_their_bytes_say_encoded_afresh(ops):
    def fresh_equals_cached(state: LedgerState) -> None:
        restored = LedgerState.restore(NET.genesis, state.snapshot())
        book = restored.book
        assert _encoder.encode(book.snapshot()) == book.state_bytes(), f"at {state.height}"
        for m in restored.maps():
            assert m.full_digest() == m.digest(), f"{m.name!r} at {state.height}"
        # The columns pushed in one pass equal those the book built a row at a time.
        live, cols = state.book._cols, book._cols
        assert [i for i in live.ids[: live.n] if live.active[live.slot[i]]] == [
            i for i in cols.ids[: cols.n] if cols.active[cols.slot[i]]
        ]
        for cid in cols.ids[: cols.n]:
            a, b = live.slot[cid], cols.slot[cid]
            for name in _COLUMNS:
                if name in ("dirty", "changed"):  # derived: what a block touched
                    continue
                x, y = getattr(live, name)[a], getattr(cols, name)[b]
                if name in ("client", "dealer"):  # each table numbers the parties it meets
                    x, y = live.parties[x], cols.parties[y]
                assert x == y or (np.isnan(x) and np.isnan(y)), f"{cid} {name}"

    run = Run(after_block=fresh_equals_cached)
    for op in ops:
        run.step(op)


def test_a_maps_rows_are_its_entries_and_a_delta_names_a_deleted_key_with_none():
    m: DigestMap[int] = DigestMap("m", int)
    for k in range(40):
        m[f"k{k:03d}"] = k
    full = m.rows_later(changed_only=True)  # nothing kept track of yet: every row
    m["k000"] = -1  # a write after the capture is not in it
    table = full()
    assert table.full and table.kind == "map"
    assert [key for key, _ in table.rows] == [f"k{k:03d}" for k in range(40)]
    whole = assemble_table(table)
    assert msgspec.msgpack.decode(whole) == {f"k{k:03d}": k for k in range(40)}
    del m["k001"]
    m["k999"] = 9
    later = m.rows_later(changed_only=True)
    assert sorted(later().rows) == sorted(
        [
            ("k000", _encoder.encode("k000") + _encoder.encode(-1)),
            ("k001", None),
            ("k999", _encoder.encode("k999") + _encoder.encode(9)),
        ]
    )


def test_a_book_restored_from_bytes_with_a_record_out_of_order_is_refused():
    run = Run()
    run.step(("trade", "C1", "D1", Side.BUY, 100, 30, False, 0.0, 0))
    run.step(("trade", "C2", "D2", Side.SELL, 100, 30, False, 0.0, 0))
    snap = run.chain.state.book.snapshot()
    shuffled = msgspec.structs.replace(snap, contracts=tuple(reversed(snap.contracts)))
    with pytest.raises(ValidationError, match="id order"):
        ContractBook.from_state_bytes(_encoder.encode(shuffled))
