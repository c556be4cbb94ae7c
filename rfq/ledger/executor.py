"""Executing a block apart from the final state: a proposal runs on an overlay and is then
committed (the block is final) or discarded (it was not decided), never undone by reloading.

``BlockExecutor`` holds the final state and its head. ``execute`` (a block being built) and
``propose`` (a block received) run the transactions on ``LedgerState.fork()``: every map a
copy-on-write ``DigestOverlay`` (writes stay in the overlay, reads fall through, the digest
and proofs are the merged map's), the immutable fields copied; the contract book, whose
numpy columns a fork could not share cheaply, is shared and journaled
(``ContractBook.checkpoint``). ``Pending.commit`` folds the overlay into the final state and
keeps the book's changes; ``Pending.discard`` drops the overlay and rolls the book back.
Both cost what the block touched, whatever the state's size: no snapshot is reloaded, no
block replayed.

One proposal is pending at a time; while it is, the final state's maps are as final (they
may be read: admission checks, queries of the maps), its book holds the proposal's changes
(queries of the contracts wait until it is committed or discarded).
"""

from __future__ import annotations

from collections.abc import Container, Sequence
from typing import Any

import msgspec

from rfq.errors import RfqError
from rfq.ledger.block import Block, BlockHeader
from rfq.ledger.digest import DigestOverlay
from rfq.ledger.state import BlockResult, LedgerState


class ExecutorError(RfqError):
    """A pending proposal used after it was committed or discarded."""


def unrounded_key(header: BlockHeader) -> bytes:
    """A block's identity apart from its round (a locked block is re-proposed with another
    round, and executes to the same state: the state never depends on the round)."""
    return msgspec.structs.replace(header, round=0).hash()


class Pending:
    """A block executed on an overlay of the final state, not yet final."""

    def __init__(
        self,
        executor: BlockExecutor,
        overlay: LedgerState,
        result: BlockResult,
        key: bytes | None,
    ) -> None:
        self.executor = executor
        self.state = overlay
        """The state as it would be after the block (read it; do not write it)."""
        self.result = result
        self.root = overlay.state_root()
        self.key = key
        """The block's ``unrounded_key`` (None: a block being built, see ``bind``)."""
        self.height = overlay.height

    @property
    def live(self) -> bool:
        return self.executor.pending is self

    def bind(self, block: Block) -> None:
        """Name the block built from this execution (``BlockExecutor.execute``)."""
        self._check()
        self.key = unrounded_key(block.header)

    def commit(self, header: BlockHeader) -> None:
        """The block ``header`` is final: fold the overlay into the final state."""
        self._check()
        if header.height != self.height or header.state_root != self.root:
            raise ExecutorError(
                f"block {header.height} is not the one executed (height {self.height}, "
                "or another state root)"
            )
        final = self.executor.state
        for m in self.state.maps():
            assert isinstance(m, DigestOverlay)
            m.commit()
        maps = {id(m) for m in final.maps()}
        for name, value in self.state.__dict__.items():
            if id(getattr(final, name, None)) not in maps:
                setattr(final, name, value)
        final.book.release()
        self.executor.head = header
        self.executor.pending = None
        self.executor.committed += 1

    def discard(self) -> None:
        """The block was not decided: the final state stays as it was."""
        if not self.live:
            return
        self.executor.state.book.rollback()
        self.executor.pending = None
        self.executor.discarded += 1

    def _check(self) -> None:
        if not self.live:
            raise ExecutorError(f"the proposal for height {self.height} is no longer pending")


class BlockExecutor:
    """The final state and head, and at most one proposal executed beyond them."""

    def __init__(self, state: LedgerState, head: BlockHeader) -> None:
        self.state = state
        self.head = head
        self.pending: Pending | None = None
        self.committed = 0
        self.discarded = 0

    def execute(
        self,
        height: int,
        timestamp_ms: int,
        txs: Sequence[bytes],
        *,
        verified: Container[bytes] = frozenset(),
        key: bytes | None = None,
    ) -> Pending:
        """Run a block on an overlay of the final state (discarding any other pending
        proposal first). On an error the state is as before and the error propagates."""
        self.discard()
        book = self.state.book
        book.checkpoint()
        try:
            overlay = self.state.fork()
            result = overlay.execute(height, timestamp_ms, self.head, txs, verified=verified)
            pending = Pending(self, overlay, result, key)
        except BaseException:
            book.rollback()
            raise
        self.pending = pending
        return pending

    def propose(self, block: Block, *, verified: Container[bytes] = frozenset()) -> Pending:
        """``block`` executed on an overlay: the pending one when it is the same block
        (in any round), else a fresh execution. Compare ``Pending.root`` with the header."""
        key = unrounded_key(block.header)
        if self.pending is not None and self.pending.key == key:
            return self.pending
        return self.execute(
            block.height, block.header.timestamp_ms, block.txs, verified=verified, key=key
        )

    def discard(self) -> None:
        if self.pending is not None:
            self.pending.discard()

    def apply(self, block: Block, *, verified: Container[bytes] = frozenset()) -> BlockResult:
        """Execute and commit ``block`` (a block known to be final); ``ExecutorError`` when
        it does not execute to its header's state root (the state is then unchanged)."""
        pending = self.propose(block, verified=verified)
        if pending.root != block.header.state_root:
            pending.discard()
            raise ExecutorError(f"block {block.height} executes to another state root")
        pending.commit(block.header)
        return pending.result

    def stats(self) -> dict[str, Any]:
        return {"committed": self.committed, "discarded": self.discarded}
