"""A full observer node: follows the final blocks and keeps its own copy of the ledger state.

The regulator is one (the paper's regulator node holds the trade repository): instead of
asking an authority for the whole market at every height, which stops working once a reply
passes the bus's payload limit, it receives each final block as the authorities publish it on
``otc.chain.<height>``, checks it as an authority checks a block it did not vote on
(``rfq.ledger.follow``: parent link, transactions root, a quorum of seals from the authority
set in force, the state root reached by executing it) and executes it on its own state. A
gap (it started late, missed a message) is filled by asking the authorities for the blocks
(``BlocksQuery``), checked the same way: no single authority is trusted for anything.

Listeners get every applied block with its result, in height order.

With a store of its own (``store_path``) it keeps what an authority keeps for a restart: each
followed block, and every ``snapshot_every`` blocks a snapshot written off the event loop
(``SnapshotWriter``). A restart then restores the newest snapshot and re-executes only the
stored blocks after it (``load_chain``), as an authority does, instead of executing every
block from the genesis again (55 s for a market of 100k contracts). Its own disk is all it
trusts for that; everything it receives is still checked.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Self

import msgspec
import structlog
from nats.aio.msg import Msg

from bus import subjects
from bus.client import Bus, RequestError
from peers.authority.snapshots import SnapshotWriter
from peers.authority.store import LoadedChain, SqliteChainStore, StoreError, load_chain
from peers.ledger_client import reply_channel
from peers.membership import sync_directory
from peers.runtime import keep_out_of_full_collections
from peers.service import Service, ServiceStatus, cancel_and_wait
from rfq.errors import DECODE_ERRORS
from rfq.identity import Genesis
from rfq.ledger.block import Block, BlockError, BlockHeader
from rfq.ledger.executor import BlockExecutor
from rfq.ledger.follow import follow_block
from rfq.ledger.state import BlockResult, LedgerState, genesis_header
from rfq.queries import MAX_BLOCKS_PER_REPLY, BlocksQuery, BlocksReply

log = structlog.get_logger(__name__)

_block_decoder = msgspec.msgpack.Decoder(Block)

BlockListener = Callable[[Block, BlockResult], None]


class ChainFollower(Service):
    """Follows the chain from the genesis: ``state`` and ``head`` are always a final block's.

    A block that fails any check (a sealed one that re-executed to another state root here
    included) is refused, counted and logged, and the state stays at its parent: the follower
    never shows figures of a state the chain did not have.
    """

    def __init__(
        self,
        bus: Bus,
        genesis: Genesis,
        *,
        query_timeout_s: float = 2.0,
        store_path: Path | None = None,
    ) -> None:
        self.bus = bus
        self.genesis = genesis
        self.executor = BlockExecutor(LedgerState(genesis), genesis_header(genesis))
        self.store_path = store_path
        self._store: SqliteChainStore | None = None
        self._writer: SnapshotWriter | None = None
        self.query_timeout_s = query_timeout_s
        self.listeners: list[BlockListener] = []
        self.stats: Counter[str] = Counter()
        self._announced: asyncio.Queue[Block] = asyncio.Queue(maxsize=256)
        self._task: asyncio.Task[None] | None = None
        self._sub: Any = None
        self._replies = reply_channel(genesis.params.consensus_max_bytes)
        self._members_synced = 0
        """How many chain members the bus directory was last synced with."""

    @property
    def state(self) -> LedgerState:
        """The state after the newest followed block (read it; never write it)."""
        return self.executor.state

    @property
    def head(self) -> BlockHeader:
        return self.executor.head

    @property
    def height(self) -> int:
        return self.head.height

    async def start(self) -> Self:
        if self.status != ServiceStatus.NEW:
            return self
        if self.store_path is not None:
            await asyncio.to_thread(self._load, self.store_path)
        self._sub = await self.bus.nc.subscribe(subjects.CHAIN_ALL, cb=self._on_block)
        await self.bus.flush()
        self.status = ServiceStatus.RUNNING
        self._task = asyncio.create_task(self._run(), name="chain-follower")
        return self

    def _load(self, path: Path) -> None:
        """Start from the store (on a thread: a restore at 100k contracts takes seconds).

        The store only saves time: one that is unreadable, or holds a block that does not
        re-execute to its root, is moved aside (``<name>.unusable``, kept for whoever looks
        into it) and a fresh one follows the chain from the genesis."""
        try:
            store, cleared, loaded = self._open_store(path)
        except StoreError as exc:
            aside = path.with_name(path.name + ".unusable")
            log.error(
                "follower_store_unusable", path=str(path), moved_to=str(aside), error=str(exc)
            )
            self.stats["store_unusable"] += 1
            for suffix in ("", "-wal", "-shm"):
                part = path.with_name(path.name + suffix)
                if part.exists():
                    part.replace(aside.with_name(aside.name + suffix))
            store, cleared, loaded = self._open_store(path)
        if loaded.snapshot_rejected is not None:
            self.stats["snapshot_rejected"] += 1
            log.error("follower_snapshot_rejected", reason=loaded.snapshot_rejected)
        self.executor = BlockExecutor(loaded.state, loaded.head)
        self._store = store
        self._writer = SnapshotWriter(path)
        self._writer.base = store.delta_base()
        self.stats["replayed_blocks"] += loaded.replayed
        keep_out_of_full_collections()
        log.info(
            "follower_loaded",
            height=loaded.head.height,
            replayed=loaded.replayed,
            partial_cleared=cleared,
        )

    def _open_store(self, path: Path) -> tuple[SqliteChainStore, int, LoadedChain]:
        store = SqliteChainStore(path)
        try:
            return store, store.clear_partial_snapshots(), load_chain(store, self.genesis)
        except BaseException:
            store.close()
            raise

    async def _shutdown(self) -> None:
        if self._sub is not None:
            try:
                await self._sub.unsubscribe()
            except Exception as exc:  # the connection may already be closed
                log.debug("follower_unsubscribe_failed", error=repr(exc))
        if self._task is not None:
            await cancel_and_wait(self._task)
        if self._store is not None and self._writer is not None:
            self._writer.close()
            rows = self.state.snapshot_rows(self._writer.base)()  # what changed since
            self._store.save_snapshot(self.state.state_root(), rows)
            self._store.close()
            self._store = None

    async def _on_block(self, msg: Msg) -> None:
        try:
            block = _block_decoder.decode(msg.data)
        except DECODE_ERRORS:
            self.stats["block_malformed"] += 1
            return
        if self._announced.full():
            # far behind: drop the announcement, the gap is fetched from the authorities
            self.stats["announcement_dropped"] += 1
            return
        self._announced.put_nowait(block)

    async def _run(self) -> None:
        await self.catch_up()
        while True:
            block = await self._announced.get()
            if block.height <= self.head.height:
                continue
            if block.height > self.head.height + 1:
                await self.catch_up()
                if block.height != self.head.height + 1:
                    continue
            self._apply([block])

    def _apply(self, blocks: Sequence[Block]) -> int:
        """Apply the blocks that extend the head, in order; stop at the first bad one."""
        applied = 0
        for block in blocks:
            if block.height != self.head.height + 1:
                self.stats["block_out_of_place"] += 1
                continue
            try:
                result = follow_block(self.executor, block)
            except BlockError as exc:
                self.stats["block_refused"] += 1
                log.warning("follower_block_refused", height=block.height, reason=exc.reason)
                break
            self.stats["blocks"] += 1
            if self._store is not None:
                self._persist(block)
            self._sync_members()
            applied += 1
            for listener in list(self.listeners):
                try:
                    listener(block, result)
                except Exception:
                    log.exception("follower_listener_failed", height=block.height)
        return applied

    def _persist(self, block: Block) -> None:
        """Store the followed block; the snapshot due at its height is captured now and
        written on the writer's thread (skipped while the last one is still being written)."""
        assert self._store is not None and self._writer is not None
        snapshot = None
        if block.height % self.genesis.params.snapshot_every == 0:
            if self._writer.busy:
                self.stats["snapshots_skipped"] += 1
            else:
                snapshot = self.state.snapshot_rows(self._writer.base)
                keep_out_of_full_collections()
        try:
            self._store.append(block, state_root=block.header.state_root)
        except StoreError as exc:
            # Its disk, not the chain: the state stays right. Storing stops here (a gap
            # would not replay); a restart loads what is stored and fetches the rest.
            self.stats["store_failed"] += 1
            log.warning("follower_store_stopped", height=block.height, error=str(exc))
            self._writer.close()
            self._store.close()
            self._store = None
            return
        if snapshot is not None and not self._writer.submit(
            block.height, block.header.state_root, snapshot
        ):
            self.stats["snapshots_skipped"] += 1

    def _sync_members(self) -> None:
        """Add the members a block registered to the bus directory (so their messages verify).
        A member is never removed, so only a block that registered one changes the count:
        the other blocks cost nothing here, however many members the chain has."""
        members = self.state.members
        if len(members) != self._members_synced:
            sync_directory(self.bus.directory, members.values())
            self._members_synced = len(members)

    async def catch_up(self) -> int:
        """Fetch the blocks after the head from the authorities until none moves it on."""
        applied = 0
        while True:
            blocks = await self._fetch(self.head.height + 1)
            moved = self._apply(blocks)
            if not moved:
                break
            applied += moved
            await asyncio.sleep(0)  # let the bus breathe between batches
        if applied:
            log.info("follower_caught_up", blocks=applied, height=self.head.height)
        return applied

    async def _fetch(self, start: int) -> list[Block]:
        for authority in self.state.authorities:
            try:
                reply = await self.bus.request(
                    subjects.query(authority),
                    BlocksQuery(start, start + MAX_BLOCKS_PER_REPLY - 1),
                    self._replies,
                    timeout=self.query_timeout_s,
                )
            except RequestError:
                self.stats["fetch_failed"] += 1
                continue
            if not isinstance(reply.payload, BlocksReply) or not reply.payload.blocks:
                continue
            try:
                return [_block_decoder.decode(b) for b in reply.payload.blocks]
            except DECODE_ERRORS:
                self.stats["block_malformed"] += 1
        return []
