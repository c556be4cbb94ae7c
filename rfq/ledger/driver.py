"""Blocks made outside consensus, exactly as a proposer and its quorum make them: the state
executed, the header built on its parent with the proposer of its round and the state root,
and (given the authorities' keys) the commit seals of every authority of the set.

Tests drive a ledger with it, ``botc bench scale`` builds large states with it, and ``botc
chain prebuild`` writes a pre-built chain that authorities start from as from any other.
"""

from __future__ import annotations

from collections.abc import Container, Mapping, Sequence

from rfq.identity import Genesis, Identity
from rfq.ledger.block import Block, BlockHeader, build_block, make_seal, proposer_for, with_seals
from rfq.ledger.state import BlockResult, LedgerState, genesis_header


class ChainDriver:
    """A ``LedgerState`` and the header of its last block, moved on one block at a time."""

    def __init__(self, genesis: Genesis, head: BlockHeader | None = None) -> None:
        self.state = LedgerState(genesis)
        self.head = head if head is not None else genesis_header(genesis)
        """The last block's header (block 0's by default: the one every node derives)."""

    def execute(
        self,
        txs: Sequence[bytes],
        *,
        timestamp_ms: int,
        verified: Container[bytes] = frozenset(),
    ) -> BlockResult:
        """Execute the next block's transactions; ``seal`` then makes the block."""
        return self.state.execute(
            self.head.height + 1, timestamp_ms, self.head, txs, verified=verified
        )

    def seal(
        self,
        txs: Sequence[bytes],
        *,
        timestamp_ms: int,
        round: int = 0,
        keys: Mapping[str, Identity] | None = None,
    ) -> Block:
        """The block just executed, on top of ``head`` (which it becomes), proposed by the
        round's proposer of the set that decides this height; sealed by every authority of
        that set whose key is in ``keys`` (unsealed without keys)."""
        authorities = self.state.gov.previous_set
        block = build_block(
            self.head,
            proposer=proposer_for(self.head.height + 1, round, authorities),
            round=round,
            timestamp_ms=timestamp_ms,
            txs=txs,
            state_root=self.state.state_root(),
            authorities=authorities,
        )
        if keys:
            digest = block.header.hash()
            block = with_seals(
                block, (make_seal(keys[a], digest, round) for a in authorities if a in keys)
            )
        self.head = block.header
        return block

    def block(
        self,
        txs: Sequence[bytes],
        *,
        timestamp_ms: int,
        round: int = 0,
        verified: Container[bytes] = frozenset(),
        keys: Mapping[str, Identity] | None = None,
    ) -> tuple[Block, BlockResult]:
        """``execute`` then ``seal``."""
        result = self.execute(txs, timestamp_ms=timestamp_ms, verified=verified)
        return self.seal(txs, timestamp_ms=timestamp_ms, round=round, keys=keys), result
