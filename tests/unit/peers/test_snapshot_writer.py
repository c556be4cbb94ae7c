"""Snapshots are rows, written apart from blocks on the writer's thread, a part at a time:
a whole one, then only the rows changed since, applied in order when read, and a whole one
again every few. One exists only once its last part is in, so a process killed while
writing one leaves the snapshots before it, and the next start clears what it left."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import msgspec
import pytest

from peers.authority.snapshots import SnapshotWriter
from peers.authority.store import MAX_DELTAS, PART_BYTES, SqliteChainStore, StoreError
from rfq.instruments import Side
from rfq.ledger.snapshot import (
    MAP,
    SNAPSHOT_VERSION,
    Frame,
    SnapshotRows,
    Table,
    assemble,
    map_entries,
)
from rfq.ledger.state import LedgerState
from tests.unit.ledger.test_snapshot_roundtrip import NET, Run

_encoder = msgspec.msgpack.Encoder()


def synthetic(
    height: int, base: int | None, changes: dict[str, object | None], table: str = "t"
) -> SnapshotRows:
    """Rows of a one-table snapshot: ``changes`` key -> value (None: deleted)."""
    frame = Frame(SNAPSHOT_VERSION, height, 0, {}, {table: MAP})
    present = dict(map_entries((k, v) for k, v in changes.items() if v is not None))
    rows = [(k, present.get(k)) for k in sorted(changes)]
    return SnapshotRows(
        height, base, _encoder.encode(frame), {table: Table(MAP, base is None, rows)}
    )


def expected(height: int, values: dict[str, object], table: str = "t") -> bytes:
    frame = _encoder.encode(Frame(SNAPSHOT_VERSION, height, 0, {}, {table: MAP}))
    return assemble(frame, {table: [e for _, e in map_entries(sorted(values.items()))]})


def stored(store: SqliteChainStore) -> list[tuple[int, int | None]]:
    """(height, base) of every snapshot stored."""
    rows = store.db.execute("SELECT height, base FROM snapshot_index ORDER BY height")
    return [(int(h), None if b is None else int(b)) for h, b in rows]


def test_a_ledgers_snapshots_written_whole_then_as_changes_read_back_as_its_snapshots(
    tmp_path: Path,
) -> None:
    store = SqliteChainStore(tmp_path / "chain.db")
    run = Run()
    for _ in range(3):
        run.step(("trade", "C1", "D1", Side.BUY, 100, 30, False, 0.0, 0))
    state = run.chain.state
    store.save_snapshot(state.state_root(), state.snapshot_rows(store.snapshot_height())())
    first = state.height
    assert store.latest_snapshot() == (first, state.state_root(), state.snapshot())
    for op in [("trade", "C2", "D2", Side.SELL, 250.5, 5, True, 0.1, 0), ("fix", 0.05)]:
        run.step(op)
    rows = state.snapshot_rows(store.snapshot_height())()
    assert rows.base == first
    assert len(rows.tables["book.contracts"].rows) == 1  # the new one: a fixing moves rows
    assert len(rows.tables["book.live"].rows) == 1  # ... of the live table, all in one chunk
    assert len(rows.tables["trades"].rows) == 1  # one new trade
    store.save_snapshot(state.state_root(), rows)
    assert store.latest_snapshot() == (state.height, state.state_root(), state.snapshot())
    assert [h for h, _, _ in store.snapshots()] == [first, state.height]
    found = store.latest_snapshot()
    assert found is not None
    assert LedgerState.restore(NET.genesis, found[2]).state_root() == state.state_root()


def test_changes_replace_and_delete_rows_applied_in_order_on_the_whole_one(
    tmp_path: Path,
) -> None:
    store = SqliteChainStore(tmp_path / "chain.db")
    pad = "x" * 1000  # so that the whole one outweighs the deltas
    store.save_snapshot(b"a" * 32, synthetic(10, None, {"k1": pad, "k2": 2, "k3": 3}))
    store.save_snapshot(b"b" * 32, synthetic(20, 10, {"k2": 20, "k3": None, "k4": 4}))
    store.save_snapshot(b"c" * 32, synthetic(30, 20, {"k3": 33, "k4": None}))
    assert store.latest_snapshot() == (
        30,
        b"c" * 32,
        expected(30, {"k1": pad, "k2": 20, "k3": 33}),
    )
    assert [h for h, _, _ in store.snapshots()] == [10, 20, 30]
    assert store.snapshots()[1] == (20, b"b" * 32, expected(20, {"k1": pad, "k2": 20, "k4": 4}))
    assert (store.snapshot_height(), store.delta_base()) == (30, 30)
    store.save_snapshot(b"c" * 32, synthetic(30, 30, {}))  # of the very same state: nothing
    assert stored(store) == [(10, None), (20, 10), (30, 20)]


def test_a_whole_snapshot_is_due_after_max_deltas_or_deltas_outweighing_it_and_drops_them(
    tmp_path: Path,
) -> None:
    store = SqliteChainStore(tmp_path / "chain.db")
    assert store.delta_base() is None
    store.save_snapshot(b"a" * 32, synthetic(1, None, {"k": 0, "big": "x" * 1000}))
    for height in range(2, MAX_DELTAS + 2):
        assert store.delta_base() == height - 1
        store.save_snapshot(b"a" * 32, synthetic(height, height - 1, {"k": height}))
    assert store.delta_base() is None  # MAX_DELTAS deltas since the whole one
    top = MAX_DELTAS + 2
    store.save_snapshot(b"b" * 32, synthetic(top, None, {"k": top}))
    assert stored(store) == [(top, None)]
    (parts,) = store.db.execute("SELECT COUNT(*) FROM snapshot_parts").fetchone()
    assert parts == 1
    store.save_snapshot(b"c" * 32, synthetic(top + 1, top, {"big": "y" * 1000}))
    assert store.delta_base() is None  # the delta holds more bytes than the whole one


def test_changes_since_a_height_the_store_does_not_hold_are_refused(tmp_path: Path) -> None:
    store = SqliteChainStore(tmp_path / "chain.db")
    with pytest.raises(StoreError, match="rows since height 5 do not apply"):
        store.save_snapshot(b"a" * 32, synthetic(10, 5, {"k": 1}))
    store.save_snapshot(b"a" * 32, synthetic(10, None, {"k": 1}))
    with pytest.raises(StoreError, match=r"stored snapshot \(at 10\)"):
        store.save_snapshot(b"b" * 32, synthetic(20, 15, {"k": 2}))
    assert store.latest_snapshot() == (10, b"a" * 32, expected(10, {"k": 1}))


def test_a_process_killed_while_writing_a_snapshot_leaves_the_one_before(tmp_path: Path) -> None:
    db = tmp_path / "chain.db"
    keys = 3 * PART_BYTES // 1000
    script = textwrap.dedent(
        f"""
        import os
        from peers.authority.store import SqliteChainStore
        from tests.unit.peers.test_snapshot_writer import synthetic
        store = SqliteChainStore({str(db)!r})
        store.save_snapshot(b"a" * 32, synthetic(10, None, {{"k1": 1, "k2": 2}}))
        def die(part):
            if part == 1:
                os._exit(9)  # killed after the second part of the next snapshot
        changes = {{f"n{{i:05d}}": "v" * 1000 for i in range({keys})}}
        changes["k1"] = None
        store.save_snapshot(b"b" * 32, synthetic(20, 10, changes), die)
        """
    )
    done = subprocess.run([sys.executable, "-c", script], timeout=60, check=False)
    assert done.returncode == 9
    store = SqliteChainStore(db)
    assert store.latest_snapshot() == (10, b"a" * 32, expected(10, {"k1": 1, "k2": 2}))
    assert store.clear_partial_snapshots() == 2
    store.save_snapshot(b"c" * 32, synthetic(20, 10, {"k2": 22}))
    assert store.latest_snapshot() == (20, b"c" * 32, expected(20, {"k1": 1, "k2": 22}))


def test_the_writer_writes_on_its_thread_and_skips_a_snapshot_due_while_busy(
    tmp_path: Path,
) -> None:
    db = tmp_path / "chain.db"
    SqliteChainStore(db).close()
    release = threading.Event()
    threads: list[str] = []

    def slow() -> SnapshotRows:
        threads.append(threading.current_thread().name)
        release.wait(10)
        return synthetic(5, None, {"k": 1})

    writer = SnapshotWriter(db)
    assert writer.base is None
    assert writer.submit(5, b"r" * 32, slow)
    assert not writer.submit(6, b"s" * 32, lambda: synthetic(6, None, {"k": 2}))  # skipped
    assert writer.skipped == 1
    release.set()
    assert writer.wait(10)
    assert writer.base == 5  # the stored snapshot: the next one holds what changed since
    assert writer.submit(9, b"t" * 32, lambda: synthetic(9, 7, {"k": 3}))  # a wrong base
    assert writer.wait(10)
    writer.close(10)
    assert threads == ["snapshot-writer"]
    assert (writer.written, writer.failed, writer.base, writer.rows_written) == (1, 1, 5, 1)
    assert SqliteChainStore(db).latest_snapshot() == (5, b"r" * 32, expected(5, {"k": 1}))


def test_a_writer_abandoned_mid_snapshot_leaves_the_snapshot_before(tmp_path: Path) -> None:
    db = tmp_path / "chain.db"
    store = SqliteChainStore(db)
    store.save_snapshot(b"a" * 32, synthetic(3, None, {"k": 1}))
    second_batch = threading.Event()
    go_on = threading.Event()

    def between(batch: int) -> None:
        if batch == 1:
            second_batch.set()
            go_on.wait(10)

    writer = SnapshotWriter(db, between=between)
    writer.base = 3
    changes = {f"n{i:05d}": "v" * 1000 for i in range(3 * PART_BYTES // 1000)}
    writer.submit(9, b"b" * 32, lambda: synthetic(9, 3, changes))
    assert second_batch.wait(10)
    stopper = threading.Thread(target=writer.abandon)
    stopper.start()
    go_on.set()
    stopper.join(10)
    assert writer.written == 0 and writer.base == 3
    assert store.latest_snapshot() == (3, b"a" * 32, expected(3, {"k": 1}))
