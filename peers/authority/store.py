"""An authority's chain store: final blocks, their receipts and state snapshots.

``ChainStore`` is what the node, the query service and the verifier need of it;
``SqliteChainStore`` keeps it in the authority's own SQLite database (WAL).

Every final block is written in one transaction with its receipts; the database is never
half a block ahead. The state snapshot is kept as rows
(``rfq.ledger.snapshot``), written as one byte string in parts (``snapshot_parts``) and named
by a row of ``snapshot_index``: a whole snapshot, or the rows changed since the one before
(its ``base``), so that a snapshot costs what changed, not the size of the state. Every
``snapshot_every`` blocks the node's ``SnapshotWriter`` writes one, on its own thread and
connection, a part at a time (the block that follows never waits for the whole), and on
shutdown. A snapshot exists once its index row is in; a crash while one is written leaves
the previous ones. Reading one applies its chain of deltas to the whole one in order; every
``MAX_DELTAS`` (or sooner, when the deltas outweigh it) the next one is whole, and drops the
chain before it. On start the newest snapshot is loaded and the blocks after it re-executed.
(Stores of snapshot version 2, one blob a snapshot, drop those on open.)
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
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import msgspec

from peers.errors import PeerError
from rfq.errors import DECODE_ERRORS, RfqError, ValidationError
from rfq.identity import Genesis
from rfq.ledger.block import Block, BlockHeader
from rfq.ledger.snapshot import (
    SnapshotRows,
    apply_rows,
    assemble,
    decode_tables,
    encode_tables,
    sorted_entries,
)
from rfq.ledger.state import LedgerState, Receipt, genesis_header

_block_decoder = msgspec.msgpack.Decoder(Block)
_receipt_decoder = msgspec.msgpack.Decoder(Receipt)
_encoder = msgspec.msgpack.Encoder()

SCHEMA = """
CREATE TABLE IF NOT EXISTS blocks (
    height INTEGER PRIMARY KEY,
    hash BLOB NOT NULL,
    data BLOB NOT NULL
);
DROP TABLE IF EXISTS snapshots;
CREATE TABLE IF NOT EXISTS snapshot_index (
    height INTEGER PRIMARY KEY,
    state_root BLOB NOT NULL,
    frame BLOB NOT NULL,
    base INTEGER,
    size INTEGER NOT NULL
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


PART_BYTES = 1 << 20
"""Bytes of a snapshot's rows per part (each part its own short write transaction: a block
being stored meanwhile waits at most for one)."""
MAX_DELTAS = 8
"""Deltas a stored snapshot may apply onto its whole one through; past that, or when they
hold more bytes than it, the next snapshot is whole again (``delta_base``)."""


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
        state_root: bytes | None = None,
    ) -> None:
        """Persist a final block and its receipts atomically; ``StoreError`` when the
        height is already stored."""
        ...

    def receipts(self, tx_ids: Sequence[str]) -> list[Receipt]: ...

    def save_snapshot(
        self,
        state_root: bytes,
        rows: SnapshotRows,
        between: Callable[[int], None] | None = None,
    ) -> None:
        """A snapshot as rows (every row, or those changed since the stored one), written
        a batch at a time; it exists once its frame is in."""
        ...

    def snapshot_height(self) -> int | None:
        """The height of the stored snapshot (None: none)."""
        ...

    def clear_partial_snapshots(self) -> int:
        """Drop the parts of a snapshot a crash left unfinished; how many."""
        ...

    def delta_base(self) -> int | None:
        """The height the next snapshot's rows may be taken since: the stored snapshot's,
        unless a whole one is due (``MAX_DELTAS`` deltas since the last whole one, or more
        bytes in them than in it) or there is none."""
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

    def latest_snapshot(self) -> tuple[int, bytes, bytes] | None:
        """(height, state root, bytes) of the newest snapshot."""
        ...

    def snapshots(self) -> list[tuple[int, bytes, bytes]]:
        """Every stored snapshot frame, each with the rows at its height (one, normally)."""
        ...

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
        state_root: bytes | None = None,
    ) -> None:
        """Persist a final block and its receipts atomically."""
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

    def save_snapshot(
        self,
        state_root: bytes,
        rows: SnapshotRows,
        between: Callable[[int], None] | None = None,
    ) -> None:
        """Write a snapshot's rows (every row, or those changed since the stored snapshot)
        as one byte string, ``PART_BYTES`` to a transaction; then the row naming it, which
        makes it the stored snapshot, in one transaction. A crash before that leaves the
        snapshots before as they were (the next start clears the parts left over). A whole
        snapshot drops the ones before it; a delta keeps the chain it applies to.
        ``between(part)`` runs after each part (tests interrupt it there).

        Rows since a base (``rows.base``) apply only onto the stored snapshot at that
        height: ``StoreError`` otherwise (the node then writes every row)."""
        stored = self.snapshot_height()
        if rows.base is not None and rows.base != stored:
            raise StoreError(
                f"{self.path}: rows since height {rows.base} do not apply to the stored "
                f"snapshot (at {stored})"
            )
        height = rows.height
        if rows.base == height:
            return  # the stored snapshot is of this very state
        data = encode_tables(rows.tables)
        self.db.execute("DELETE FROM snapshot_parts WHERE height = ?", (height,))
        for seq, start in enumerate(range(0, max(len(data), 1), PART_BYTES)):
            part = data[start : start + PART_BYTES]
            self.db.execute("INSERT INTO snapshot_parts VALUES (?, ?, ?)", (height, seq, part))
            if between is not None:
                between(seq)
        with self._transaction():
            self.db.execute(
                "INSERT OR REPLACE INTO snapshot_index VALUES (?, ?, ?, ?, ?)",
                (height, state_root, rows.frame, rows.base, len(data)),
            )
            if rows.base is None:
                self.db.execute("DELETE FROM snapshot_index WHERE height < ?", (height,))
                self.db.execute("DELETE FROM snapshot_parts WHERE height < ?", (height,))

    def clear_partial_snapshots(self) -> int:
        """Remove the parts of snapshots never finished (a crash while one was written);
        returns how many parts."""
        cursor = self.db.execute(
            "DELETE FROM snapshot_parts WHERE height NOT IN (SELECT height FROM snapshot_index)"
        )
        return cursor.rowcount

    def snapshot_height(self) -> int | None:
        row = self.db.execute("SELECT MAX(height) FROM snapshot_index").fetchone()
        return None if row is None or row[0] is None else int(row[0])

    def delta_base(self) -> int | None:
        chain = self._chain(self.snapshot_height())
        if not chain:
            return None
        whole, deltas = chain[0], chain[1:]
        if len(deltas) >= MAX_DELTAS or sum(size for _, _, size in deltas) > whole[2]:
            return None
        return chain[-1][0]

    def _chain(self, height: int | None) -> list[tuple[int, int | None, int]]:
        """(height, base, bytes) of the snapshot at ``height`` and those it applies to, the
        whole one first; empty when there is none or the chain is broken."""
        chain: list[tuple[int, int | None, int]] = []
        while height is not None:
            row = self.db.execute(
                "SELECT base, size FROM snapshot_index WHERE height = ?", (height,)
            ).fetchone()
            if row is None:
                return []
            base = None if row[0] is None else int(row[0])
            chain.append((height, base, int(row[1])))
            if base is not None and base >= height:
                return []
            height = base
        return chain[::-1]

    def _assembled(self, height: int, frame: bytes) -> bytes:
        """The snapshot at ``height``: its frame and its tables, its chain's rows applied in
        order (b"" when any of it is unreadable: restoring it then says so)."""
        chain = self._chain(height)
        if not chain:
            return b""
        tables: dict[str, dict[str, bytes]] = {}
        try:
            for link, _, _ in chain:
                parts = self.db.execute(
                    "SELECT data FROM snapshot_parts WHERE height = ? ORDER BY seq", (link,)
                )
                data = b"".join(bytes(p[0]) for p in parts)
                tables = apply_rows(tables, decode_tables(data))
            return assemble(frame, {name: sorted_entries(rows) for name, rows in tables.items()})
        except ValidationError:
            return b""

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

    def latest_snapshot(self) -> tuple[int, bytes, bytes] | None:
        row = self.db.execute(
            "SELECT height, state_root, frame FROM snapshot_index ORDER BY height DESC LIMIT 1"
        ).fetchone()
        if row is None:
            return None
        height = int(row[0])
        return height, bytes(row[1]), self._assembled(height, bytes(row[2]))

    def snapshots(self) -> list[tuple[int, bytes, bytes]]:
        rows = self.db.execute(
            "SELECT height, state_root, frame FROM snapshot_index ORDER BY height"
        ).fetchall()
        return [(int(h), bytes(r), self._assembled(int(h), bytes(f))) for h, r, f in rows]

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


@dataclass(frozen=True)
class LoadedChain:
    """What a node starts from: the state and head its store holds."""

    state: LedgerState
    head: BlockHeader
    replayed: int
    """Stored blocks re-executed after the snapshot (all of them without one)."""
    snapshot_rejected: str | None = None
    """Why the newest snapshot was not used (None: it was, or there was none)."""


def load_chain(store: ChainStore, genesis: Genesis) -> LoadedChain:
    """The newest snapshot, restored and checked against its block's state root, then the
    stored blocks after it re-executed, each to its header's root. A snapshot that does not
    restore to its block's root is set aside (slower, never wrong: every block is replayed);
    a stored block that does not re-execute to its root is a ``StoreError``."""
    snapshot = store.latest_snapshot()
    state = LedgerState(genesis)
    head = genesis_header(genesis)
    why: str | None = None
    if snapshot is not None:
        height, root, data = snapshot
        stored = store.block(height)
        why = "no stored block at its height"
        if stored is not None:
            try:
                restored = LedgerState.restore(genesis, data)
            except RfqError as exc:
                why = str(exc)
            else:
                if restored.state_root() == root == stored.header.state_root:
                    state, head, why = restored, stored.header, None
                else:
                    why = "it does not restore to its block's state root"
    replayed = 0
    for block in store.blocks(head.height + 1):
        replayed += 1
        state.execute(block.height, block.header.timestamp_ms, head, block.txs)
        if state.state_root() != block.header.state_root:
            raise StoreError(
                f"{store.path}: block {block.height} does not re-execute to its state root "
                "(run botc chain verify)"
            )
        head = block.header
    return LoadedChain(state, head, replayed, why)
