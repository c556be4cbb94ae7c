"""Snapshots are written apart from blocks, a part at a time, on the writer's thread: one
exists only once its last part is in, so a process killed while writing one leaves the
snapshots before it, and the next start clears what it left."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
from pathlib import Path

from peers.authority.snapshots import SnapshotWriter
from peers.authority.store import SqliteChainStore

OLD = bytes(range(256)) * 40
NEW = b"new state " * 1000


def test_a_snapshot_written_in_parts_reads_back_whole(tmp_path: Path) -> None:
    store = SqliteChainStore(tmp_path / "chain.db")
    parts = [NEW[i : i + 777] for i in range(0, len(NEW), 777)]
    store.save_snapshot_parts(7, b"r" * 32, parts)
    assert store.latest_snapshot() == (7, b"r" * 32, NEW)
    assert store.snapshots() == [(7, b"r" * 32, NEW)]


def test_a_process_killed_while_writing_a_snapshot_leaves_the_one_before(tmp_path: Path) -> None:
    db = tmp_path / "chain.db"
    script = textwrap.dedent(
        f"""
        import os
        from peers.authority.store import SqliteChainStore
        store = SqliteChainStore({str(db)!r})
        store.save_snapshot_parts(10, b"a" * 32, [{OLD!r}[:5000], {OLD!r}[5000:]])
        def die(seq):
            if seq == 2:
                os._exit(9)  # killed after the third part of the second snapshot
        parts = [{NEW!r}[i : i + 1000] for i in range(0, {len(NEW)}, 1000)]
        store.save_snapshot_parts(20, b"b" * 32, parts, die)
        """
    )
    done = subprocess.run([sys.executable, "-c", script], timeout=60, check=False)
    assert done.returncode == 9
    store = SqliteChainStore(db)
    assert store.latest_snapshot() == (10, b"a" * 32, OLD)
    assert store.clear_partial_snapshots() == 3
    assert store.latest_snapshot() == (10, b"a" * 32, OLD)


def test_older_snapshots_beyond_the_three_newest_go_with_their_parts(tmp_path: Path) -> None:
    store = SqliteChainStore(tmp_path / "chain.db")
    for height in (1, 2, 3, 4, 5):
        store.save_snapshot_parts(height, bytes([height]) * 32, [b"x" * height, b"y"])
    assert [h for h, _, _ in store.snapshots()] == [3, 4, 5]
    (parts,) = store.db.execute("SELECT COUNT(*) FROM snapshot_parts").fetchone()
    assert parts == 6


def test_the_writer_writes_on_its_thread_and_skips_a_snapshot_due_while_busy(
    tmp_path: Path,
) -> None:
    db = tmp_path / "chain.db"
    SqliteChainStore(db).close()
    release = threading.Event()
    threads: list[str] = []

    def slow() -> bytes:
        threads.append(threading.current_thread().name)
        release.wait(10)
        return NEW

    writer = SnapshotWriter(db, part_bytes=1000)
    assert writer.submit(5, b"r" * 32, slow)
    assert not writer.submit(6, b"s" * 32, lambda: OLD)  # one in hand: skipped
    assert writer.skipped == 1
    release.set()
    assert writer.wait(10)
    writer.close(10)
    assert threads == ["snapshot-writer"]
    assert (writer.written, writer.last_height) == (1, 5)
    assert SqliteChainStore(db).latest_snapshot() == (5, b"r" * 32, NEW)


def test_a_writer_abandoned_mid_snapshot_leaves_no_snapshot_and_its_parts_cleared(
    tmp_path: Path,
) -> None:
    db = tmp_path / "chain.db"
    store = SqliteChainStore(db)
    store.save_snapshot(3, b"a" * 32, OLD)
    second_part = threading.Event()
    go_on = threading.Event()

    def between(seq: int) -> None:
        if seq == 1:
            second_part.set()
            go_on.wait(10)

    writer = SnapshotWriter(db, part_bytes=1000, between=between)
    writer.submit(9, b"b" * 32, lambda: NEW)
    assert second_part.wait(10)
    stopper = threading.Thread(target=writer.abandon)
    stopper.start()
    go_on.set()
    stopper.join(10)
    assert writer.written == 0
    assert store.latest_snapshot() == (3, b"a" * 32, OLD)
    assert store.clear_partial_snapshots() == 3  # it stopped after the part it was on
