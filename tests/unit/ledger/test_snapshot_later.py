"""A snapshot captured at one height and encoded later (on the node's writer thread, while
blocks go on executing) is exactly that height's snapshot; a state restored from a snapshot
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
from rfq.ledger.digest import ENCODE_CHUNK, DigestMap
from rfq.ledger.state import LedgerState

from .test_snapshot_roundtrip import NET, Run, _op

_encoder = msgspec.msgpack.Encoder()


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(st.lists(_op, min_size=5, max_size=30))
def test_a_snapshot_captured_at_a_height_encodes_to_that_heights_bytes_after_more_blocks(ops):
    captured: list[tuple[int, bytes, object]] = []

    def capture(state: LedgerState) -> None:
        captured.append((state.height, state.snapshot(), state.snapshot_later()))

    run = Run(after_block=capture)
    for op in ops:
        run.step(op)
    for height, expected, later in captured:
        assert later() == expected, f"at {height}"  # type: ignore[operator]


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
                if name == "dirty":
                    continue
                x, y = getattr(live, name)[a], getattr(cols, name)[b]
                assert x == y or (np.isnan(x) and np.isnan(y)), f"{cid} {name}"

    run = Run(after_block=fresh_equals_cached)
    for op in ops:
        run.step(op)


def test_a_map_encoded_in_chunks_is_byte_for_byte_the_map_encoded_whole():
    for size in (0, 1, 15, 16, ENCODE_CHUNK - 1, ENCODE_CHUNK, 3 * ENCODE_CHUNK + 7, 70_000):
        m: DigestMap[int] = DigestMap("m", int)
        for k in range(size):
            m[f"k{k:06d}"] = k
        later = m.encode_later()
        m["k000000"] = -1  # a write after the capture is not in it
        expected = _encoder.encode({f"k{k:06d}": k for k in range(size)})
        assert later() == expected, size


def test_a_book_restored_from_bytes_with_a_record_out_of_order_is_refused():
    run = Run()
    run.step(("trade", "C1", "D1", Side.BUY, 100, 30, False, 0.0, 0))
    run.step(("trade", "C2", "D2", Side.SELL, 100, 30, False, 0.0, 0))
    snap = run.chain.state.book.snapshot()
    shuffled = msgspec.structs.replace(snap, contracts=tuple(reversed(snap.contracts)))
    with pytest.raises(ValidationError, match="id order"):
        ContractBook.from_state_bytes(_encoder.encode(shuffled))
