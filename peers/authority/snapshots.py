"""Snapshots written off the consensus path, and only what changed: on a thread of their own.

A decided block is stored at once (``ChainStore.append``); the snapshot due at its height
is captured in the same step, cheaply (``LedgerState.snapshot_rows`` since the writer's
``base``, the height of the snapshot it last wrote: the entries and records changed since,
referenced), and handed to the ``SnapshotWriter``, which encodes the rows and writes them
through its own connection, a batch at a time (``SqliteChainStore.save_snapshot``), while
the node goes on deciding blocks. A snapshot so costs what changed since the last one, not
the size of the state (and, every few, a whole one: ``ChainStore.delta_base``). It exists
once its last part is in: a crash before that leaves the previous snapshots as they were.

One snapshot is in hand at a time; one falling due while another is still being written is
skipped (counted; the node does not capture it): the next is only ``snapshot_every`` blocks
away, and a restart replays the blocks after the newest snapshot in any case. After a failed
write the writer's ``base`` is whatever the store holds, so the next capture is rows since
that (or every row, if the state does not know that height).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import structlog

from peers.authority.store import SqliteChainStore
from rfq.ledger.snapshot import SnapshotRows

log = structlog.get_logger(__name__)


class WriterStopped(Exception):
    """The writer was told to stop while a snapshot was being written (``abandon``)."""


class SnapshotWriter:
    """Encodes and writes one snapshot at a time on a daemon thread, with its own SQLite
    connection to the store at ``path``; ``between(part)`` runs after each part written
    (tests interrupt a snapshot there)."""

    def __init__(
        self,
        path: Path,
        *,
        between: Callable[[int], None] | None = None,
    ) -> None:
        self.path = path
        self.between = between
        self.written = 0
        self.skipped = 0
        self.failed = 0
        self.rows_written = 0
        """Rows of every snapshot written (a delta's rows, or all of a full one)."""
        self._base: int | None = None
        self._job: tuple[int, bytes, Callable[[], SnapshotRows]] | None = None
        self._busy = False
        self._closing = False
        self._abandon = False
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None

    @property
    def busy(self) -> bool:
        with self._cond:
            return self._busy

    @property
    def base(self) -> int | None:
        """What the next capture's rows are to be taken since: the height of the snapshot
        the store holds, unless a whole one is due (``ChainStore.delta_base``; None: every
        row)."""
        with self._cond:
            return self._base

    @base.setter
    def base(self, height: int | None) -> None:
        """What the store holds, read at start (before any snapshot is submitted)."""
        with self._cond:
            self._base = height

    def submit(self, height: int, state_root: bytes, encode: Callable[[], SnapshotRows]) -> bool:
        """Write the snapshot rows ``encode()`` gives, the state at ``height`` with
        ``state_root``; False (skipped, counted) while another is being written."""
        with self._cond:
            if self._closing:
                return False
            if self._busy:
                self.skipped += 1
                return False
            self._job, self._busy = (height, state_root, encode), True
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="snapshot-writer", daemon=True
                )
                self._thread.start()
            self._cond.notify_all()
        return True

    def wait(self, timeout: float | None = None) -> bool:
        """Until no snapshot is being written; False if ``timeout`` passed first."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._busy, timeout)

    def close(self, timeout: float | None = None) -> None:
        """Finish the snapshot in hand (if any) and stop the thread."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)

    def abandon(self) -> None:
        """Stop as a crash would: the snapshot in hand stops after the part being written,
        unfinished (its parts are left for the next start to clear)."""
        with self._cond:
            self._abandon = True
        self.close()

    def _run(self) -> None:
        store = SqliteChainStore(self.path)
        try:
            while True:
                with self._cond:
                    self._cond.wait_for(lambda: self._job is not None or self._closing)
                    job = self._job
                    if job is None:
                        return
                self._write(store, *job)
                with self._cond:
                    self._job, self._busy = None, False
                    self._cond.notify_all()
        finally:
            store.close()

    def _write(
        self,
        store: SqliteChainStore,
        height: int,
        state_root: bytes,
        encode: Callable[[], SnapshotRows],
    ) -> None:
        def between(part: int) -> None:
            if self._abandon:
                raise WriterStopped
            if self.between is not None:
                self.between(part)

        try:
            rows = encode()
            store.save_snapshot(state_root, rows, between)
        except WriterStopped:
            log.info("snapshot_abandoned", height=height)
        except Exception as exc:  # the stored snapshot stands; the next one may succeed
            self.failed += 1
            with self._cond:
                self._base = store.delta_base()
            log.error("snapshot_failed", height=height, error=str(exc))
        else:
            self.written += 1
            self.rows_written += rows.row_count
            with self._cond:
                self._base = store.delta_base()
            log.info("snapshot_written", height=height, base=rows.base, rows=rows.row_count)
