"""Following a chain one decided block at a time: what every node that did not vote does.

An authority catching up, ``botc chain verify`` and the regulator's observer node all take a
block someone else decided and must not trust its sender: the header must extend the head,
the transactions must be the header's, a quorum of the authority set in force must have
sealed it, and executing it must reach the header's state root.
"""

from __future__ import annotations

from rfq.errors import RfqError
from rfq.ledger.block import Block, BlockError, BlockHeader, check_block
from rfq.ledger.state import BlockResult, LedgerState


def follow_block(state: LedgerState, head: BlockHeader, block: Block) -> BlockResult:
    """Check ``block`` against ``head`` and the authorities of ``state``, then execute it.

    Raises ``BlockError`` naming the first problem. A block that fails its checks leaves
    ``state`` untouched; one that executes to another state root (or not at all) has been
    applied and the state must be rebuilt by the caller.
    """
    check_block(head, block, state.authorities, state.directory)
    height = block.header.height
    try:
        result = state.execute(height, block.header.timestamp_ms, head, block.txs)
    except RfqError as exc:
        raise BlockError(height, f"does not execute: {exc}") from None
    if state.state_root() != block.header.state_root:
        raise BlockError(height, "state root differs from the header's")
    return result
