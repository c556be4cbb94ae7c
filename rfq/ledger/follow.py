"""Following a chain one decided block at a time: what every node that did not vote does.

An authority catching up, ``botc chain verify`` and the regulator's observer node all take a
block someone else decided and must not trust its sender: the header must extend the head,
the transactions must be the header's, a quorum of the authority set in force must have
sealed it, and executing it must reach the header's state root. The block runs on the
executor's overlay, so one that fails leaves the state as it was.
"""

from __future__ import annotations

from rfq.errors import RfqError
from rfq.ledger.block import Block, BlockError, check_block
from rfq.ledger.executor import BlockExecutor, ExecutorError
from rfq.ledger.state import BlockResult


def follow_block(executor: BlockExecutor, block: Block) -> BlockResult:
    """Check ``block`` against the executor's head and authority set, execute and commit it.

    Raises ``BlockError`` naming the first problem; the final state is then unchanged.
    """
    state = executor.state
    check_block(executor.head, block, state.authorities, state.directory)
    height = block.header.height
    try:
        return executor.apply(block)
    except ExecutorError:
        raise BlockError(height, "state root differs from the header's") from None
    except RfqError as exc:
        raise BlockError(height, f"does not execute: {exc}") from None
