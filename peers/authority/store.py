"""An authority's chain store: final blocks, their receipts and state snapshots.

``ChainStore`` is what the node, the query service and the verifier need of it;
``SqliteChainStore`` keeps it in the authority's own SQLite database (WAL).

Every final block is written in one transaction with its receipts; the database is never
half a block ahead. Snapshots of the state after a block are written apart from it: every
``snapshot_every`` blocks by the node's ``SnapshotWriter`` on its own thread and connection,
a part at a time (the block that follows never waits for the whole), and on shutdown. A
snapshot exists once its last part is in; a crash while one is written leaves the previous
ones. On start the newest snapshot is loaded and the blocks after it re-executed.
``botc chain verify`` re-executes everything from the genesis and compares.

``history`` keeps what has left the hot state (``rfq.ledger.components.retention``): per
entry, the last height whose state held it and its witness (``rfq.ledger.light.Witness``:
value and path) against that height's state root; ``history_roots`` that height's root parts
and governance encoding. With the block's header and seals (``blocks``) they make the
``AnswerProof`` a light client checks (``peers.authority.history``). Rows are written right
after the block before the pruning one is final (``save_history``, idempotent).

The store also keeps the authority's own votes of the last two heights (``own_votes``): each
proposal, prepare and commit is recorded before it is signed, so an authority that crashes and
comes back mid-height never signs that step again for another block (equivocation, which gets
an authority evicted). Written through WAL with ``synchronous=NORMAL``: durable across a
process crash; a power cut could lose the last vote.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Protocol

import msgspec

from peers.errors import PeerError
from rfq.errors import DECODE_ERRORS
from rfq.ledger.block import Block
from rfq.ledger.state import Receipt

_block_decoder = msgspec.msgpack.Decoder(Block)
_receipt_decoder = msgspec.msgpack.Decoder(Receipt)
_encoder = msgspec.msgpack.Encoder()

SCHEMA = """
CREATE TABLE IF NOT EXISTS blocks (
    height INTEGER PRIMARY KEY,
    hash BLOB NOT NULL,
    data BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS snapshots (
    height INTEGER PRIMARY KEY,
    state_root BLOB NOT NULL,
    data BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS snapshot_parts (
    height INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (height, seq)
);
CREATE TABLE IF NOT EXISTS receipts (
    tx_id TEXT PRIMARY KEY,
    height INTEGER NOT NULL,
    sender TEXT NOT NULL,
    data BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS history (
    component TEXT NOT NULL,
    key TEXT NOT NULL,
    height INTEGER NOT NULL,
    witness BLOB NOT NULL,
    PRIMARY KEY (component, key, height)
);
CREATE TABLE IF NOT EXISTS history_roots (
    height INTEGER PRIMARY KEY,
    parts BLOB NOT NULL,
    governance BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS own_votes (
    height INTEGER NOT NULL,
    round INTEGER NOT NULL,
    kind TEXT NOT NULL,
    block_hash BLOB NOT NULL,
    PRIMARY KEY (height, round, kind)
);
"""


KEEP_SNAPSHOTS = 3
"""Snapshots a store keeps (the newest)."""


class StoreError(PeerError):
    """The database is unreadable or inconsistent; names the file and what is wrong."""


class ChainStore(Protocol):
    """Final blocks in height order, each written atomically with its receipts (and
    optionally a snapshot of the state after it); never half a block ahead."""

    @property
    def path(self) -> Path:
        """Where the store lives (named in errors)."""
        ...

    def close(self) -> None: ...

    def append(
        self,
        block: Block,
        *,
        receipts: Sequence[Receipt] = (),
        snapshot: bytes | None = None,
        state_root: bytes | None = None,
    ) -> None:
        """Persist a final block, its receipts (and optionally the state after it)
        atomically; ``StoreError`` when the height is already stored."""
        ...

    def receipts(self, tx_ids: Sequence[str]) -> list[Receipt]: ...

    def save_snapshot(self, height: int, state_root: bytes, snapshot: bytes) -> None: ...

    def save_snapshot_parts(
        self,
        height: int,
        state_root: bytes,
        parts: Iterable[bytes],
        between: Callable[[int], None] | None = None,
    ) -> None:
        """A snapshot written a part at a time; it exists once the last part is in."""
        ...

    def clear_partial_snapshots(self) -> int:
        """Drop the parts of a snapshot a crash left unfinished."""
        ...

    def height(self) -> int:
        """The highest stored block (0: none)."""
        ...

    def block(self, height: int) -> Block | None: ...

    def raw_block(self, height: int) -> bytes | None:
        """The block's bytes as stored (not decoded)."""
        ...

    def block_hash(self, height: int) -> bytes | None:
        """The hash stored with the block (what ``botc chain verify`` checks it against)."""
        ...

    def block_hashes(self) -> dict[int, bytes]:
        """Every stored block's hash by height (without decoding the blocks)."""
        ...

    def blocks(self, start: int, end: int | None = None) -> Iterator[Block]:
        """Blocks ``start`` .. ``end`` inclusive, in order."""
        ...

    def latest_snapshot(self, at_most: int | None = None) -> tuple[int, bytes, bytes] | None:
        """(height, state root, bytes) of the newest snapshot (at most ``at_most``)."""
        ...

    def snapshots(self) -> list[tuple[int, bytes, bytes]]: ...

    def save_history(
        self,
        height: int,
        parts: bytes,
        governance: bytes,
        witnesses: Sequence[tuple[str, str, bytes]],
    ) -> None:
        """Keep ``(component, key, witness)`` entries proven against ``height``'s state
        (its encoded root parts and governance); writing the same again changes nothing."""
        ...

    def history(self, component: str, keys: Sequence[str]) -> list[tuple[int, str, bytes]]:
        """(height, key, witness) of each key's newest history row."""
        ...

    def history_root(self, height: int) -> tuple[bytes, bytes] | None:
        """(root parts, governance) encoded, as ``save_history`` kept them for ``height``."""
        ...

    def record_vote(self, height: int, round: int, kind: str, block_hash: bytes) -> None:
        """Durably (before it is sent) what this authority signs: a proposal, prepare or
        commit for ``block_hash``; ``StoreError`` if it signed that step for another block."""
        ...

    def votes_at(self, height: int) -> dict[tuple[str, int], bytes]:
        """What this authority signed at ``height``, by (kind, round): after a restart it
        must not sign those again for another block."""
        ...


class SqliteChainStore:
    """``ChainStore`` in one SQLite file (WAL, ``synchronous=NORMAL``)."""

    def __init__(self, path: str | Path) -> None:
        self._path = Path(path)
        self._path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.db = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.executescript(SCHEMA)
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{self.path}: not a usable chain database ({exc})") from None

    @property
    def path(self) -> Path:
        return self._path

    def close(self) -> None:
        self.db.close()

    def append(
        self,
        block: Block,
        *,
        receipts: Sequence[Receipt] = (),
        snapshot: bytes | None = None,
        state_root: bytes | None = None,
    ) -> None:
        """Persist a final block, its receipts (and optionally the state after it) atomically."""
        data = _encoder.encode(block)
        try:
            self.db.execute("BEGIN IMMEDIATE")
            self.db.execute(
                "INSERT INTO blocks VALUES (?, ?, ?)", (block.height, block.hash(), data)
            )
            self.db.executemany(
                "INSERT OR REPLACE INTO receipts VALUES (?, ?, ?, ?)",
                [(r.tx_id, r.height, r.sender, _encoder.encode(r)) for r in receipts],
            )
            if snapshot is not None:
                self.db.execute(
                    "INSERT OR REPLACE INTO snapshots VALUES (?, ?, ?)",
                    (block.height, state_root or block.header.state_root, snapshot),
                )
                self._keep_newest(block.height)
            self.db.execute("COMMIT")
        except sqlite3.IntegrityError:
            self.db.execute("ROLLBACK")
            raise StoreError(f"{self.path}: block {block.height} is already stored") from None
        except BaseException:
            if self.db.in_transaction:
                self.db.execute("ROLLBACK")
            raise

    def receipts(self, tx_ids: Sequence[str]) -> list[Receipt]:
        out = []
        for tx_id in tx_ids:
            row = self.db.execute("SELECT data FROM receipts WHERE tx_id = ?", (tx_id,)).fetchone()
            if row is not None:
                out.append(_receipt_decoder.decode(row[0]))
        return out

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        """One write transaction: committed when the block ends, rolled back if it raises."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield
            self.db.execute("COMMIT")
        except BaseException:
            if self.db.in_transaction:
                self.db.execute("ROLLBACK")
            raise

    def save_snapshot(self, height: int, state_root: bytes, snapshot: bytes) -> None:
        with self._transaction():
            self.db.execute("DELETE FROM snapshot_parts WHERE height = ?", (height,))
            self.db.execute(
                "INSERT OR REPLACE INTO snapshots VALUES (?, ?, ?)", (height, state_root, snapshot)
            )
            self._keep_newest(height)

    def save_snapshot_parts(
        self,
        height: int,
        state_root: bytes,
        parts: Iterable[bytes],
        between: Callable[[int], None] | None = None,
    ) -> None:
        """A snapshot written a part at a time, each part in its own short transaction, so
        that a block being stored meanwhile waits at most for one part. The snapshot exists
        only once its last part is in: the row naming it is written last, in one
        transaction with the removal of older snapshots. Killed before that, the parts
        written are left over (``clear_partial_snapshots``) and the snapshots before stand.
        ``between(seq)`` runs after each part (tests interrupt it there)."""
        self.db.execute("DELETE FROM snapshot_parts WHERE height = ?", (height,))
        seq = 0
        for seq, part in enumerate(parts):
            self.db.execute("INSERT INTO snapshot_parts VALUES (?, ?, ?)", (height, seq, part))
            if between is not None:
                between(seq)
        with self._transaction():
            self.db.execute(
                "INSERT OR REPLACE INTO snapshots VALUES (?, ?, ?)", (height, state_root, b"")
            )
            self._keep_newest(height)

    def _keep_newest(self, height: int) -> None:
        """Within a transaction: keep the ``KEEP_SNAPSHOTS`` newest snapshots (and their
        parts), drop the rest."""
        self.db.execute(
            "DELETE FROM snapshots WHERE height < ? AND height NOT IN "
            "(SELECT height FROM snapshots ORDER BY height DESC LIMIT ?)",
            (height, KEEP_SNAPSHOTS),
        )
        self.db.execute(  # not the parts of one being written (higher than any kept)
            "DELETE FROM snapshot_parts WHERE height < (SELECT MIN(height) FROM snapshots)"
        )

    def clear_partial_snapshots(self) -> int:
        """Remove the parts of snapshots never finished (a crash while one was written);
        returns how many parts."""
        cursor = self.db.execute(
            "DELETE FROM snapshot_parts WHERE height NOT IN (SELECT height FROM snapshots)"
        )
        return cursor.rowcount

    def _snapshot_data(self, height: int, data: bytes) -> bytes:
        if data:
            return data
        rows = self.db.execute(
            "SELECT data FROM snapshot_parts WHERE height = ? ORDER BY seq", (height,)
        )
        return b"".join(bytes(r[0]) for r in rows)

    def height(self) -> int:
        row = self.db.execute("SELECT MAX(height) FROM blocks").fetchone()
        return int(row[0]) if row and row[0] is not None else 0

    def block(self, height: int) -> Block | None:
        row = self.db.execute("SELECT data FROM blocks WHERE height = ?", (height,)).fetchone()
        if row is None:
            return None
        try:
            return _block_decoder.decode(row[0])
        except DECODE_ERRORS as exc:
            raise StoreError(f"{self.path}: block {height} does not decode ({exc})") from None

    def raw_block(self, height: int) -> bytes | None:
        row = self.db.execute("SELECT data FROM blocks WHERE height = ?", (height,)).fetchone()
        return None if row is None else bytes(row[0])

    def block_hash(self, height: int) -> bytes | None:
        row = self.db.execute("SELECT hash FROM blocks WHERE height = ?", (height,)).fetchone()
        return None if row is None else bytes(row[0])

    def block_hashes(self) -> dict[int, bytes]:
        rows = self.db.execute("SELECT height, hash FROM blocks ORDER BY height")
        return {int(h): bytes(x) for h, x in rows}

    def blocks(self, start: int, end: int | None = None) -> Iterator[Block]:
        """Blocks ``start`` .. ``end`` inclusive, in order (decoded lazily)."""
        query = "SELECT height FROM blocks WHERE height >= ?" + (
            " AND height <= ?" if end is not None else ""
        )
        params = (start,) if end is None else (start, end)
        heights = [int(r[0]) for r in self.db.execute(query + " ORDER BY height", params)]
        for h in heights:
            block = self.block(h)
            if block is not None:
                yield block

    def latest_snapshot(self, at_most: int | None = None) -> tuple[int, bytes, bytes] | None:
        query = "SELECT height, state_root, data FROM snapshots"
        params: tuple[int, ...] = ()
        if at_most is not None:
            query += " WHERE height <= ?"
            params = (at_most,)
        row = self.db.execute(query + " ORDER BY height DESC LIMIT 1", params).fetchone()
        if row is None:
            return None
        height = int(row[0])
        return height, bytes(row[1]), self._snapshot_data(height, bytes(row[2]))

    def snapshots(self) -> list[tuple[int, bytes, bytes]]:
        rows = self.db.execute("SELECT height, state_root, data FROM snapshots ORDER BY height")
        return [(int(h), bytes(r), self._snapshot_data(int(h), bytes(d))) for h, r, d in rows]

    def save_history(
        self,
        height: int,
        parts: bytes,
        governance: bytes,
        witnesses: Sequence[tuple[str, str, bytes]],
    ) -> None:
        with self._transaction():
            self.db.execute(
                "INSERT OR REPLACE INTO history_roots VALUES (?, ?, ?)", (height, parts, governance)
            )
            self.db.executemany(
                "INSERT OR REPLACE INTO history VALUES (?, ?, ?, ?)",
                [(component, key, height, witness) for component, key, witness in witnesses],
            )

    def record_vote(self, height: int, round: int, kind: str, block_hash: bytes) -> None:
        row = self.db.execute(
            "SELECT block_hash FROM own_votes WHERE height = ? AND round = ? AND kind = ?",
            (height, round, kind),
        ).fetchone()
        if row is not None:
            if bytes(row[0]) != block_hash:
                raise StoreError(
                    f"{self.path}: already signed {kind} at height {height} round {round} "
                    "for another block"
                )
            return
        with self._transaction():
            self.db.execute("DELETE FROM own_votes WHERE height < ?", (height - 1,))
            self.db.execute(
                "INSERT INTO own_votes VALUES (?, ?, ?, ?)", (height, round, kind, block_hash)
            )

    def history(self, component: str, keys: Sequence[str]) -> list[tuple[int, str, bytes]]:
        out = []
        for key in keys:
            row = self.db.execute(
                "SELECT height, witness FROM history WHERE component = ? AND key = ? "
                "ORDER BY height DESC LIMIT 1",
                (component, key),
            ).fetchone()
            if row is not None:
                out.append((int(row[0]), key, bytes(row[1])))
        return out

    def history_root(self, height: int) -> tuple[bytes, bytes] | None:
        row = self.db.execute(
            "SELECT parts, governance FROM history_roots WHERE height = ?", (height,)
        ).fetchone()
        return None if row is None else (bytes(row[0]), bytes(row[1]))

    def votes_at(self, height: int) -> dict[tuple[str, int], bytes]:
        rows = self.db.execute(
            "SELECT kind, round, block_hash FROM own_votes WHERE height = ?", (height,)
        )
        return {(str(k), int(r)): bytes(h) for k, r, h in rows}
