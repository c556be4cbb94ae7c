"""Snapshots written off the consensus path: encoded and stored on a thread of their own.

A decided block is stored at once (``ChainStore.append``); the snapshot due at its height
is captured in the same step, cheaply (``LedgerState.snapshot_later``: the maps' dicts
copied, the book's cached record bytes referenced), and handed to the ``SnapshotWriter``,
which encodes it and writes it through its own connection, a part at a time
(``SqliteChainStore.save_snapshot_parts``), while the node goes on deciding blocks. The
snapshot exists once its last part is in: a crash before that leaves the previous snapshots
as they were, and the next start clears the parts left over.

One snapshot is in hand at a time; one falling due while another is still being written is
skipped (counted): the next is only ``snapshot_every`` blocks away, and a restart replays
the blocks after the newest snapshot in any case.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import structlog

from peers.authority.store import SqliteChainStore

log = structlog.get_logger(__name__)

PART_BYTES = 1 << 20
"""Bytes of a snapshot per part (each part its own short write transaction)."""


class WriterStopped(Exception):
    """The writer was told to stop while a snapshot was being written (``abandon``)."""


class SnapshotWriter:
    """Encodes and writes one snapshot at a time on a daemon thread, with its own SQLite
    connection to the store at ``path``; ``between(seq)`` runs after each part written
    (tests interrupt a snapshot there)."""

    def __init__(
        self,
        path: Path,
        *,
        part_bytes: int = PART_BYTES,
        between: Callable[[int], None] | None = None,
    ) -> None:
        self.path = path
        self.part_bytes = part_bytes
        self.between = between
        self.written = 0
        self.skipped = 0
        self.failed = 0
        self.last_height = 0
        """Height of the last snapshot written."""
        self._job: tuple[int, bytes, Callable[[], bytes]] | None = None
        self._busy = False
        self._closing = False
        self._abandon = False
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None

    @property
    def busy(self) -> bool:
        with self._cond:
            return self._busy

    def submit(self, height: int, state_root: bytes, encode: Callable[[], bytes]) -> bool:
        """Write the snapshot ``encode()`` gives, as the state at ``height`` with
        ``state_root``; False (skipped) while another is being written."""
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
        self, store: SqliteChainStore, height: int, state_root: bytes, encode: Callable[[], bytes]
    ) -> None:
        def between(seq: int) -> None:
            if self._abandon:
                raise WriterStopped
            if self.between is not None:
                self.between(seq)

        try:
            data = encode()
            size = self.part_bytes
            parts = (data[i : i + size] for i in range(0, max(len(data), 1), size))
            store.save_snapshot_parts(height, state_root, parts, between)
        except WriterStopped:
            log.info("snapshot_abandoned", height=height)
        except Exception as exc:  # the previous snapshots stand; the next one may succeed
            self.failed += 1
            log.error("snapshot_failed", height=height, error=str(exc))
        else:
            self.written += 1
            self.last_height = height
            log.info("snapshot_written", height=height, bytes=len(data))
