"""Catch-up: fetch the final blocks a node lacks, from the ``CHAIN`` stream first and from
the other authorities when the stream does not move the node forward.

Every fetched block goes through the node's ``apply`` (link, transactions root, a quorum of
valid commit seals of that height's authority set, re-executed to its state root, stored).
A block out of place is counted and skipped; an invalid one ends its batch and the next
source is asked. A pass in which no source moves the node forward ends the catch-up, so
nothing a member puts on the stream keeps it spinning.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import msgspec
import structlog

from bus import subjects
from bus.client import Bus, RequestError
from peers.errors import PeerError
from peers.ledger_client import reply_channel
from rfq.errors import DECODE_ERRORS
from rfq.ledger.block import Block
from rfq.queries import MAX_BLOCKS_PER_REPLY, BlocksQuery, BlocksReply

log = structlog.get_logger(__name__)

_block_decoder = msgspec.msgpack.Decoder(Block)


class BlockRefused(PeerError):
    """A fetched block the node does not take (fails its checks, or another state root)."""


class CatchUp:
    """One node's catch-up; ``run`` is re-entrant safe (a second call while one runs is a
    no-op returning 0)."""

    def __init__(
        self,
        *,
        bus: Bus,
        js: Any,
        height: Callable[[], int],
        authorities: Callable[[], Sequence[str]],
        apply: Callable[[Block], None],
        stats: Counter[str],
        max_reply_bytes: int,
    ) -> None:
        """``height``: the node's final height; ``apply``: check, execute and store one block
        that extends it, raising ``BlockRefused`` when it does not take it."""
        self.bus = bus
        self.js = js
        self.height = height
        self.authorities = authorities
        self.apply = apply
        self.stats = stats
        self.max_reply_bytes = max_reply_bytes
        self.running = False

    async def run(self) -> int:
        """Fetch, check and apply blocks the network has and we do not; returns how many."""
        if self.running:
            return 0
        self.running = True
        applied = 0
        try:
            while True:
                start = self.height() + 1
                moved = 0
                for fetch in (self.fetch_stream, self.fetch_peers):
                    moved = self.apply_in_order(await fetch(start))
                    if moved:
                        break
                if not moved:
                    break
                applied += moved
        finally:
            self.running = False
        return applied

    def apply_in_order(self, blocks: Sequence[Block]) -> int:
        """Apply the fetched blocks that extend the chain, in order; returns how many. A block
        out of place is skipped, an invalid one ends the batch (the next source is asked)."""
        applied = 0
        for block in blocks:
            if block.height != self.height() + 1:
                self.stats["sync_out_of_place"] += 1
                continue
            try:
                self.apply(block)
            except BlockRefused as exc:
                log.warning("sync_block_refused", height=block.height, reason=str(exc))
                break
            applied += 1
        return applied

    async def fetch_stream(self, start: int) -> list[Block]:
        """Up to a reply's worth of blocks from the stream, from ``start`` on."""
        out: list[Block] = []
        for height in range(start, start + MAX_BLOCKS_PER_REPLY):
            try:
                msg = await self.js.get_last_msg(
                    subjects.CHAIN_STREAM, subjects.chain_block(height)
                )
            except Exception:
                break
            try:
                out.append(_block_decoder.decode(msg.data or b""))
            except DECODE_ERRORS:
                break
        return out

    async def fetch_peers(self, start: int) -> list[Block]:
        """The first non-empty reply of another authority's query service."""
        replies = reply_channel(self.max_reply_bytes)
        me = self.bus.member_id
        for peer in self.authorities():
            if peer == me:
                continue
            try:
                reply = await self.bus.request(
                    subjects.query(peer),
                    BlocksQuery(start, start + MAX_BLOCKS_PER_REPLY - 1),
                    replies,
                    timeout=2.0,
                )
            except RequestError:
                continue
            if isinstance(reply.payload, BlocksReply) and reply.payload.blocks:
                try:
                    return [_block_decoder.decode(b) for b in reply.payload.blocks]
                except DECODE_ERRORS:
                    continue
        return []
