"""Re-verify an authority's database from the genesis: ``botc chain verify``.

Every stored block is decoded, its stored hash compared, then checked like a block from the
network (link to its parent, transactions root, a quorum of valid commit seals from the
authority set of its height) and re-executed: the state root must be the header's. Every
stored state snapshot (the genesis state's at height 0) must restore to the state root of its
height, and none may be of a height beyond the stored blocks. What a block pruned from the hot
state must be in the store's history, proven under the parent block's state root with the
value it had (``peers.authority.history``). The first height where anything fails is
reported.
"""

from __future__ import annotations

from dataclasses import dataclass

import msgspec

from peers.authority.history import history_fault
from peers.authority.store import ChainStore
from rfq.errors import DECODE_ERRORS, RfqError
from rfq.identity import Genesis
from rfq.ledger.block import Block, BlockError
from rfq.ledger.executor import BlockExecutor
from rfq.ledger.follow import follow_block
from rfq.ledger.state import LedgerState, genesis_header

_block_decoder = msgspec.msgpack.Decoder(Block)


@dataclass(frozen=True)
class Verdict:
    ok: bool
    height: int
    reason: str = ""
    state_root: str = ""


def verify_chain(genesis: Genesis, store: ChainStore) -> Verdict:
    """``ok`` with the verified height, or the first bad height and why."""
    executor = BlockExecutor(LedgerState(genesis), genesis_header(genesis))
    head = executor.head
    snapshots = {h: (root, data) for h, root, data in store.snapshots()}
    tip = store.height()
    if 0 in snapshots and (fault := _snapshot_fault(genesis, snapshots[0], head.state_root)):
        return Verdict(False, 0, fault)
    for height in range(1, tip + 1):
        stored_hash, data = store.block_hash(height), store.raw_block(height)
        if stored_hash is None or data is None:
            return Verdict(False, height, "block missing")
        try:
            block = _block_decoder.decode(data)
        except DECODE_ERRORS as exc:
            return Verdict(False, height, f"block does not decode ({exc})")
        if block.height != height:
            return Verdict(False, height, f"row holds block {block.height}")
        if block.hash() != stored_hash:
            return Verdict(False, height, "stored hash differs from the block's hash")
        try:
            result = follow_block(executor, block)
        except BlockError as exc:
            return Verdict(False, height, exc.reason)
        if fault := history_fault(store, head, result.pruned):
            return Verdict(False, height, fault)
        if height in snapshots and (
            fault := _snapshot_fault(genesis, snapshots[height], block.header.state_root)
        ):
            return Verdict(False, height, fault)
        head = block.header
    beyond = [h for h in snapshots if h > tip]
    if beyond:
        return Verdict(False, min(beyond), "state snapshot of a block that is not stored")
    return Verdict(True, tip, state_root=head.state_root.hex())


def _snapshot_fault(genesis: Genesis, snapshot: tuple[bytes, bytes], state_root: bytes) -> str:
    """Why a stored snapshot is not the state with ``state_root``, or "" when it is."""
    root, data = snapshot
    try:
        restored = LedgerState.restore(genesis, data)
    except RfqError as exc:
        return f"state snapshot does not decode: {exc}"
    if root != state_root or restored.state_root() != root:
        return "state snapshot differs from the chain's state"
    return ""
