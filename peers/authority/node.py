"""An authority node: the I/O shell around the pure ledger and consensus rules.

- Transactions arrive on ``otc.tx.*``, pass the envelope verifier (signature, role, rate) and
  the ledger's admission checks, and wait in the mempool; refusals are sent to the submitter
  at once on ``otc.note.<sender>``.
- Heights: every authority starts height h+1 under the same conditions (a consensus message
  for it arrives; the mempool holds transactions and ``block_time_ms`` has passed since the
  last decision; ``idle_block_ms`` has passed), so idle validators do not time out on an idle
  proposer. The QBFT instance (``rfq.ledger.consensus``) does the rest; its actions are
  carried out here: broadcasts on ``otc.ibft.<height>``, timers, decisions, evidence.
- Blocks are executed by the ``BlockExecutor`` (``rfq.ledger.executor``) on an overlay of
  the final state: a proposal that is not the block finally decided (a round change) is
  discarded at the cost of what it touched, never by reloading or replaying.
- A decided block is committed into the final state, written with its receipts in one
  transaction of the ``ChainStore``, published to the JetStream stream ``CHAIN``, and its
  receipts are sent to the submitters by the block's proposer. Every ``snapshot_every``
  blocks a snapshot of the state is captured and written apart, on the ``SnapshotWriter``'s
  thread (``peers.authority.snapshots``): the block never waits for it.
- Catch-up (``peers.authority.catchup``): on start, and whenever consensus messages show the
  network is ahead, blocks are fetched from the ``CHAIN`` stream or from other authorities'
  query services, each checked (link, transactions root, a quorum of valid commit seals of
  that height's authority set) and re-executed (its state root must match) before it is
  stored.
- Queries: ``otc.query.<id>`` answers members about their own records, the regulator about
  everything (``rfq.queries``, ``QueryService``). Answers only ever show final blocks: the
  contract book holds a pending proposal's changes (the executor journals it), so a query
  that reads the state while a proposal is pending is held, and answered as soon as a block
  is final (or the proposal discarded). If no block has been final for ``QUERY_SETTLE_S`` (a
  stuck round), the proposal is discarded so that the final state can answer.

The node itself only sequences: mempool -> consensus -> executor -> store -> publish.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any

import msgspec
import structlog
from nats.aio.msg import Msg
from nats.js.api import StorageType, StreamConfig
from nats.js.errors import NotFoundError

from bus import subjects
from bus.client import Bus
from bus.envelope import Channel, Received
from peers.authority.catchup import BlockRefused, CatchUp
from peers.authority.history import record_history
from peers.authority.mempool import Mempool, Pending
from peers.authority.queries import QueryService
from peers.authority.snapshots import SnapshotWriter
from peers.authority.store import ChainStore, SqliteChainStore, StoreError, load_chain
from peers.clock import WallClock, wall_clock
from peers.errors import PeerError
from peers.membership import sync_directory
from peers.runtime import keep_out_of_full_collections, release_free_memory
from peers.service import cancel_and_wait
from rfq.errors import RfqError
from rfq.identity import AUTHORITY_ELIGIBLE, Genesis, Member, Role
from rfq.ledger.block import (
    Block,
    BlockError,
    BlockHeader,
    build_block,
    proposer_for,
)
from rfq.ledger.clock import clock_skew
from rfq.ledger.consensus import (
    Broadcast,
    ConsensusMessage,
    Decide,
    Defer,
    Evidence,
    FutureBuffer,
    FutureDrop,
    QbftInstance,
    Reject,
    RejectReason,
    ScheduleTimeout,
    decode_consensus,
    vote_of,
)
from rfq.ledger.executor import BlockExecutor
from rfq.ledger.executor import Pending as PendingBlock
from rfq.ledger.follow import follow_block
from rfq.ledger.state import (
    BlockResult,
    LedgerError,
    LedgerState,
    Receipt,
    Receipts,
    genesis_header,
)
from rfq.ledger.tx import TX_ROLES, ByzantineEvidence, Transaction
from rfq.messages import Accept
from rfq.policy import BusChannel, channel_roles
from rfq.queries import (
    QUERY_ROLES,
    BlocksQuery,
    HeadersQuery,
    Query,
    QueryRefused,
    ReceiptsQuery,
    Reply,
    refusal,
)
from rfq.signing import SignedMessage, signature_valid
from rfq.signing import tx_id as tx_id_of

log = structlog.get_logger(__name__)


def tx_channel(max_block_bytes: int) -> Channel[Transaction]:
    """Transactions: evidence of equivocation carries two proposals, so two blocks' worth."""
    return Channel.of("tx", Transaction, TX_ROLES, max_bytes=2 * max_block_bytes + 65_536)


def consensus_channel(max_bytes: int) -> Channel[ConsensusMessage]:
    return Channel.of(
        "ibft", ConsensusMessage, channel_roles(BusChannel.CONSENSUS), max_bytes=max_bytes
    )


QUERY_CHANNEL: Channel[Query] = Channel.of("query", Query, QUERY_ROLES)

_encoder = msgspec.msgpack.Encoder()
QUERY_SETTLE_S = 1.0
MAX_HELD_QUERIES = 1_000
# Queries answered from the database alone, which only ever holds final blocks.
_STORE_QUERIES = (HeadersQuery, ReceiptsQuery, BlocksQuery)


class NodeError(PeerError):
    """The node cannot continue (its database disagrees with the chain)."""


class AuthorityNode:
    """One authority (or, when not in the set, an observer that follows the chain)."""

    def __init__(
        self,
        bus: Bus,
        genesis: Genesis,
        data_dir: Path,
        *,
        clock: WallClock | None = None,
    ) -> None:
        if bus.identity.role not in AUTHORITY_ELIGIBLE:
            raise PeerError(
                f"{bus.member_id} is a {bus.identity.role}; authorities are "
                "dealers, CCPs or guarantors"
            )
        self.bus = bus
        self.genesis = genesis
        self.params = genesis.params
        self.me = bus.member_id
        self.clock = clock or wall_clock()
        """Every wall-clock reading of this node (``BOTC_CLOCK_OFFSET_MS`` shifts it)."""
        self.store: ChainStore = SqliteChainStore(Path(data_dir) / "chain.db")
        self.snapshot_writer = SnapshotWriter(self.store.path)
        """Writes the snapshot due every ``snapshot_every`` blocks, on its own thread."""
        self.queries = QueryService(bus.member_id, self.store)
        self.mempool = Mempool(self.params.mempool_max)
        self.verified: set[bytes] = set()
        self.stats: Counter[str] = Counter()
        self.genesis_header = genesis_header(genesis)
        self.executor = BlockExecutor(LedgerState(genesis), self.genesis_header)
        self.instance: QbftInstance | None = None
        self.deferred = FutureBuffer()
        """Consensus messages for later heights: bounded per authority, others dropped."""
        self.timers: dict[tuple[int, int], asyncio.TimerHandle] = {}
        self._held: list[tuple[Member, Query, Msg]] = []  # queries awaiting a final state
        self._held_timer: asyncio.TimerHandle | None = None
        self._last_decided = time.monotonic()
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[Any]] = []
        self._background: set[asyncio.Future[Any]] = set()
        self._stopped = False
        self.js = bus.nc.jetstream()
        self.catchup = CatchUp(
            bus=bus,
            js=self.js,
            height=lambda: self.head.height,
            authorities=lambda: self.state.authorities,
            apply=self._apply_synced,
            stats=self.stats,
            max_reply_bytes=self.params.consensus_max_bytes,
        )
        self.decided_listeners: list[Callable[[Block, BlockResult | None], None]] = []

    @property
    def state(self) -> LedgerState:
        """The final state, the last final block's: its maps are apart from a pending
        proposal, its contract book holds the proposal's changes (journaled) until it is
        committed or discarded, which is why queries wait while one is pending."""
        return self.executor.state

    @property
    def head(self) -> BlockHeader:
        """The last final block's header."""
        return self.executor.head

    @property
    def speculating(self) -> bool:
        """A proposal is executed beyond the final head (not yet final)."""
        return self.executor.pending is not None

    # -- lifecycle -------------------------------------------------------------------------

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        """Run ``coro`` in the background, keeping a reference until it finishes."""
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background_done)

    def _background_done(self, task: asyncio.Future[Any]) -> None:
        self._background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self.stats["background_failed"] += 1
            log.error("background_task_failed", error=repr(task.exception()))

    def _learn_members(self) -> None:
        sync_directory(self.bus.directory, self.state.members.values())

    async def start(self) -> AuthorityNode:
        self._load()
        # The bus verifies members the chain registered after the genesis (peers.membership).
        self._learn_members()
        self.decided_listeners.append(lambda block, result: self._learn_members())
        await self._ensure_stream()
        await self.bus.subscribe(
            subjects.TX_ALL, tx_channel(self.params.max_block_bytes), self._on_tx
        )
        await self.bus.subscribe(
            subjects.CONSENSUS_ALL,
            consensus_channel(self.params.consensus_max_bytes),
            self._on_consensus,
        )
        await self.bus.subscribe(subjects.query(self.me), QUERY_CHANNEL, self._on_query)
        await self.bus.flush()
        await self.catch_up()
        keep_out_of_full_collections()
        self._tasks.append(asyncio.create_task(self._heights(), name=f"{self.me}-heights"))
        log.info(
            "authority_started",
            height=self.head.height,
            authorities=self.state.authorities,
            clock_offset_ms=self.clock.offset_ms,
        )
        return self

    async def stop(self) -> None:
        self._stopped = True
        for handle in self.timers.values():
            handle.cancel()
        if self._held_timer is not None:
            self._held_timer.cancel()
        self._held.clear()  # their askers time out and ask another authority
        for task in self._tasks:
            await cancel_and_wait(task)
        for pending in list(self._background):  # a block being published, a note being sent
            await cancel_and_wait(pending)
        self.executor.discard()
        self.snapshot_writer.close()
        rows = self.state.snapshot_rows(self.snapshot_writer.base)()  # what changed since
        self.store.save_snapshot(self.state.state_root(), rows)
        self.store.close()

    async def crash(self) -> None:
        """Stop as a crash would: no goodbye, no final snapshot.

        The connection is cut without draining, whatever was in flight (a proposal, held
        queries, unsent messages) is dropped, and the database is left as the last decided
        block wrote it: what a killed process leaves behind, for a restart to recover from."""
        self._stopped = True
        for handle in self.timers.values():
            handle.cancel()
        if self._held_timer is not None:
            self._held_timer.cancel()
        tasks = [*self._tasks, *self._background]
        for task in tasks:  # before the connection closes: nothing more is sent
            task.cancel()
        await self.bus.nc.close()
        for task in tasks:
            await cancel_and_wait(task)
        self.snapshot_writer.abandon()
        self.store.close()

    def _load(self) -> None:
        """The newest snapshot, then re-execute the stored blocks after it (first the parts
        of a snapshot a crash left unfinished are cleared: no writer runs yet). The writer's
        snapshots are rows since the stored one (every row if the state could not start
        from it, or a whole one is due)."""
        cleared = self.store.clear_partial_snapshots()
        if cleared:
            log.info("partial_snapshot_cleared", parts=cleared)
        self.executor = BlockExecutor(*self.rebuild_from_store())
        self.snapshot_writer.base = self.store.delta_base()
        record_history(self.store, self.state, self.head)  # in case it stopped in between
        log.info("chain_loaded", height=self.head.height)

    def rebuild_from_store(self) -> tuple[LedgerState, BlockHeader]:
        try:
            loaded = load_chain(self.store, self.genesis)
        except StoreError as exc:
            raise NodeError(str(exc)) from None
        if loaded.snapshot_rejected is not None:
            self.stats["snapshot_rejected"] += 1
            log.error(
                "snapshot_rejected",
                height=self.store.snapshot_height(),
                reason=loaded.snapshot_rejected,
            )
        self.stats["replayed_blocks"] += loaded.replayed
        return loaded.state, loaded.head

    def _discard(self) -> None:
        """Drop the pending proposal (if any): the final state is as it was."""
        if self.executor.pending is not None:
            self.executor.discard()
            self.stats["proposals_discarded"] += 1
            self._answer_held()

    async def _ensure_stream(self) -> None:
        """Create the ``CHAIN`` stream once, locked: no purge, no delete, no rollup.

        Authorities may create ``CHAIN`` (and no other stream) but no member may update,
        purge or delete it, so it keeps every block it was given. A ``CHAIN`` that exists
        with another configuration (created by a faulty authority before us) is reported:
        its blocks are checked like any others, and catch-up falls back to the peers."""
        try:
            info = await self.js.stream_info(subjects.CHAIN_STREAM)
        except NotFoundError:
            info = None
        except Exception as exc:  # no JetStream: catch-up falls back to peers
            log.warning("jetstream_unavailable", error=str(exc))
            return
        if info is not None:
            config = info.config
            if (
                list(config.subjects or ()) != [subjects.CHAIN_ALL]
                or not config.deny_delete
                or not config.deny_purge
                or config.allow_rollup_hdrs
            ):
                self.stats["chain_stream_misconfigured"] += 1
                log.error(
                    "chain_stream_misconfigured",
                    subjects=config.subjects,
                    deny_delete=config.deny_delete,
                    deny_purge=config.deny_purge,
                    allow_rollup_hdrs=config.allow_rollup_hdrs,
                )
            return
        for replicas in (3, 1):
            try:
                await self.js.add_stream(
                    StreamConfig(
                        name=subjects.CHAIN_STREAM,
                        subjects=[subjects.CHAIN_ALL],
                        storage=StorageType.FILE,
                        num_replicas=replicas,
                        max_msgs_per_subject=1,
                        duplicate_window=120.0,
                        deny_delete=True,
                        deny_purge=True,
                        allow_rollup_hdrs=False,
                    )
                )
                return
            except Exception as exc:
                last = exc
        log.warning("chain_stream_not_created", error=str(last))

    # -- transactions ----------------------------------------------------------------------

    async def _on_tx(self, received: Received[Transaction], msg: Msg) -> None:
        if self._stopped:  # the bus outlives the node: its store may be closed already
            return
        tx = msg.data
        tx_id = tx_id_of(tx)
        self.verified.add(tx_id)  # the envelope verifier checked the signature
        if tx_id in self.mempool:
            return
        try:
            self.state.check_tx(tx, self.clock.now_ms(), verified=self.verified)
            if isinstance(received.payload, Accept):
                # Verify the dealer's quote now, off the block's critical path; execution then
                # finds it cached (a pure check: caching never changes a result).
                quote = received.payload.quote
                if not signature_valid(quote, self.state.directory):
                    raise LedgerError("the quote's signature does not verify")
                self.verified.add(quote.digest)
        except LedgerError as exc:
            self.stats["tx_refused"] += 1
            await self._refuse(received, tx_id, exc.reason)
            return
        pending = Pending(
            tx_id, tx, received.sender, self.clock.now_ms(), received.message.expires_ms
        )
        if not self.mempool.add(pending):
            if len(self.mempool) >= self.mempool.max_size:
                await self._refuse(received, tx_id, "mempool full, resubmit later")
            return
        self.stats["tx_admitted"] += 1
        self._wake.set()

    async def _refuse(self, received: Received[Transaction], tx_id: bytes, reason: str) -> None:
        """Tell the submitter at once why its transaction was not admitted."""
        await self._notify(
            Receipt(
                tx_id.hex(),
                received.sender,
                received.message.kind,
                False,
                self.head.height,
                -1,
                reason,
            )
        )

    async def _notify(self, receipt: Receipt) -> None:
        """Tell the submitter at once, as an authority in force only: a candidate standing by
        admits and expires transactions it never proposes, and its word is not the chain's
        (a verifying client drops it; one that trusted any node would count it)."""
        if self.me not in self.state.authorities:
            return
        if receipt.sender and receipt.sender in self.state.members:
            await self.bus.publish(subjects.notify(receipt.sender), receipt)

    # -- heights ---------------------------------------------------------------------------

    async def _heights(self) -> None:
        """Start each height when its start conditions hold."""
        while not self._stopped:
            if self.instance is None:
                self._new_instance()
            assert self.instance is not None
            if not self.instance.started:
                waited = (time.monotonic() - self._last_decided) * 1000
                ready = (len(self.mempool) > 0 and waited >= self.params.block_time_ms) or (
                    waited >= self.params.idle_block_ms
                )
                if ready:
                    self._run(self.instance.start())
                    continue
                delay = (
                    self.params.block_time_ms if len(self.mempool) else self.params.idle_block_ms
                )
                timeout = max(delay - waited, 1) / 1000
            else:
                timeout = 1.0
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)

    def _new_instance(self) -> None:
        height = self.head.height + 1
        for stale in self.mempool.drop_expired(self.clock.now_ms()):
            self.stats["tx_expired"] += 1
            self.verified.discard(stale.tx_id)
            receipt = Receipt(
                stale.tx_id.hex(),
                stale.sender,
                "",
                False,
                self.head.height,
                -1,
                "expired before it was committed",
            )
            self._spawn(self._notify(receipt))
        identity = self.bus.identity if self.me in self.state.authorities else None
        self.instance = QbftInstance(
            height=height,
            authorities=self.state.authorities,
            directory=self.state.directory,
            identity=identity,
            parent=self.head,
            validate_block=self._validate,
            make_block=self._make_block,
            sign=self._sign_consensus,
            round_timeout_ms=self.params.round_timeout_ms,
            signed_before=self.store.votes_at(height) if identity is not None else None,
        )
        for message, payload in self.deferred.take(height):
            self._run(self.instance.handle(message, payload))

    def _sign_consensus(self, payload: ConsensusMessage) -> SignedMessage:
        """Sign; a proposal, prepare or commit only once it is recorded in the store: after a
        crash the node knows what it signed at the height it comes back to, and never signs
        that step again for another block (an honest restart is not equivocation)."""
        vote = vote_of(payload)
        if vote is not None:
            kind, height, round, block_hash = vote
            self.store.record_vote(height, round, kind, block_hash)
        return self.bus.outbox.sign(payload)

    def _ensure_started(self) -> None:
        if self.instance is not None and not self.instance.started:
            self._run(self.instance.start())

    async def _on_consensus(self, received: Received[ConsensusMessage], msg: Msg) -> None:
        if self._stopped:
            return
        payload = received.payload
        height = payload.height
        if height <= self.head.height:
            return
        if self.instance is None:
            self._new_instance()
        assert self.instance is not None
        if height > self.instance.height:
            dropped = self._defer(received.message, payload)
            if dropped == FutureDrop.TOO_FAR or (
                dropped is None
                and (height > self.instance.height + 1 or self.deferred.count_at(height) > 2)
            ):
                self._spawn_sync()  # an authority is ahead of us: we may be behind
            return
        if received.sender not in self.state.authorities:
            # Refused before it may start the height: a candidate cannot pace our blocks.
            self.stats[f"reject_{RejectReason.NOT_AUTHORITY}"] += 1
            return
        self._ensure_started()
        self._run(self.instance.handle(received.message, payload))

    def _defer(self, message: SignedMessage, payload: ConsensusMessage) -> FutureDrop | None:
        """Hold a message for a later height, unless its sender is no authority of ours or
        over its share (counted in ``stats`` as ``future_dropped_<reason>``)."""
        current = self.instance.height if self.instance else self.head.height + 1
        dropped = self.deferred.add(
            message, payload, current=current, authorities=self.state.authorities
        )
        if dropped is not None:
            self.stats[f"future_dropped_{dropped}"] += 1
            log.debug("consensus_future_dropped", reason=str(dropped), sender=message.sender)
        return dropped

    def _run(self, actions: Sequence[object]) -> None:
        for action in actions:
            match action:
                case Broadcast(message=message):
                    height = self.instance.height if self.instance else self.head.height + 1
                    self._spawn(self.bus.publish_signed(subjects.consensus(height), message))
                case ScheduleTimeout(height=height, round=round_, delay_ms=delay):
                    self._schedule(height, round_, delay)
                case Decide(block=block):
                    self._decide(block)
                case Evidence(msg_a=a, msg_b=b):
                    self.stats["evidence"] += 1
                    log.warning("equivocation_seen", offender=a.sender)
                    self._spawn(self.bus.publish(subjects.tx(self.me), ByzantineEvidence(a, b)))
                case Reject(reason=reason, message=message, detail=detail):
                    self.stats[f"reject_{reason}"] += 1
                    log.debug(
                        "consensus_reject", reason=str(reason), sender=message.sender, detail=detail
                    )
                case Defer(message=message):
                    self._defer(message, decode_consensus(message))
                case _:
                    pass

    def _schedule(self, height: int, round_: int, delay_ms: int) -> None:
        key = (height, round_)
        old = self.timers.pop(key, None)
        if old is not None:
            old.cancel()
        loop = asyncio.get_running_loop()

        def fire() -> None:
            self.timers.pop(key, None)
            if self.instance is not None and self.instance.height == height:
                self.stats["round_timeouts"] += 1
                log.info("round_timeout", height=height, round=round_)
                self._run(self.instance.on_timeout(round_))

        self.timers[key] = loop.call_later(delay_ms / 1000, fire)

    # -- blocks ----------------------------------------------------------------------------

    def _execute(self, block: Block) -> PendingBlock:
        """``block`` on an overlay of the final state (the pending one if it is the same
        block in another round; any other pending proposal is discarded)."""
        before = self.executor.pending
        try:
            return self.executor.propose(block, verified=self.verified)
        finally:
            if before is not None and self.executor.pending is not before:
                self.stats["proposals_discarded"] += 1

    def _validate(self, block: Block) -> str | None:
        header = block.header
        skew = clock_skew(
            header.timestamp_ms,
            self.clock.now_ms(),
            bound_ms=self.params.max_clock_skew_ms,
            # a block its round's proposer built (a re-proposed locked block names another)
            fresh=header.proposer
            == proposer_for(header.height, header.round, self.state.authorities),
        )
        if skew is not None:
            self.stats["clock_skew_refused"] += 1
            log.warning(
                "proposal_clock_skew_refused",
                proposer=header.proposer,
                height=header.height,
                round=header.round,
                skew_ms=skew.skew_ms,
                bound_ms=skew.bound_ms,
                clock_offset_ms=self.clock.offset_ms,
            )
            return skew.describe()
        try:
            proposal = self._execute(block)
        except RfqError as exc:
            self._answer_held()
            return f"does not execute: {exc}"
        if proposal.root != block.header.state_root:
            self.stats["state_root_mismatch"] += 1
            log.warning("state_root_mismatch", height=block.height, proposer=block.header.proposer)
            self._discard()
            return "state root differs from ours"
        return None

    def _make_block(self, round_: int) -> Block:
        self._discard()
        txs: list[bytes] = []
        size = 0
        for pending in self.mempool.take(self.params.max_block_txs):
            if size + len(pending.data) > self.params.max_block_bytes and txs:
                break
            txs.append(pending.data)
            size += len(pending.data)
        timestamp = max(self.clock.now_ms(), self.head.timestamp_ms + 1)
        height = self.head.height + 1
        proposal = self.executor.execute(height, timestamp, txs, verified=self.verified)
        block = build_block(
            self.head,
            proposer=self.me,
            round=round_,
            timestamp_ms=timestamp,
            txs=txs,
            state_root=proposal.root,
            authorities=proposal.state.gov.previous_set,
        )
        proposal.bind(block)
        return block

    def _decide(self, block: Block) -> None:
        result = self._commit_state(block)
        self._persist(block, result)
        for handle in [h for k, h in self.timers.items() if k[0] <= block.height]:
            handle.cancel()
        self.timers = {k: h for k, h in self.timers.items() if k[0] > block.height}
        self.instance = None
        self._last_decided = time.monotonic()
        self.stats["blocks"] += 1
        if block.header.proposer == self.me:
            by_sender: dict[str, list[Receipt]] = {}
            for receipt in result.receipts:
                by_sender.setdefault(receipt.sender, []).append(receipt)
            for sender, receipts in by_sender.items():
                if sender in self.state.members:
                    note = Receipts(block.height, tuple(receipts))
                    self._spawn(self.bus.publish(subjects.notify(sender), note))
        self._spawn(self._publish_block(block))
        if result.fixed:  # the transients of revaluing every live contract are freed
            release_free_memory()
        self._wake.set()

    def _commit_state(self, block: Block) -> BlockResult:
        """Bring the final state to exactly ``block`` (the pending proposal when it is the
        one decided) and check its root."""
        proposal = self._execute(block)
        if proposal.root != block.header.state_root:
            raise NodeError(f"decided block {block.height} does not match our state root")
        proposal.commit(block.header)
        return proposal.result

    def _persist(self, block: Block, result: BlockResult | None) -> None:
        """Store the block; the snapshot due at its height is captured now and written by
        the ``SnapshotWriter`` on its own thread (the block never waits for it)."""
        snapshot = None
        if block.height % self.params.snapshot_every == 0:
            if self.snapshot_writer.busy:
                self.stats["snapshots_skipped"] += 1
            else:
                snapshot = self.state.snapshot_rows(self.snapshot_writer.base)
                keep_out_of_full_collections()
        self.store.append(
            block,
            receipts=result.receipts if result else (),
            state_root=block.header.state_root,
        )
        record_history(self.store, self.state, block.header)  # what the next block prunes
        root = block.header.state_root
        if snapshot is not None and not self.snapshot_writer.submit(block.height, root, snapshot):
            self.stats["snapshots_skipped"] += 1
        ids = [tx_id_of(tx) for tx in block.txs]
        self.mempool.remove(ids)
        self.verified.difference_update(ids)
        log.info(
            "block_final",
            height=block.height,
            txs=len(block.txs),
            round=block.header.round,
            proposer=block.header.proposer,
        )
        for listener in list(self.decided_listeners):
            listener(block, result)
        self._answer_held()

    async def _publish_block(self, block: Block) -> None:
        try:
            await self.js.publish(
                subjects.chain_block(block.height),
                _encoder.encode(block),
                headers={"Nats-Msg-Id": block.hash().hex()},
                timeout=2,
            )
        except Exception as exc:
            self.stats["publish_failed"] += 1
            log.debug("chain_publish_failed", height=block.height, error=str(exc))

    # -- catch-up --------------------------------------------------------------------------

    def _spawn_sync(self) -> None:
        if not self.catchup.running:
            self._tasks.append(asyncio.create_task(self.catch_up()))

    async def catch_up(self) -> int:
        """Fetch, check and apply blocks the network has and we do not; returns how many
        (``CatchUp``: the stream first, then the other authorities)."""
        applied = await self.catchup.run()
        if applied:
            log.info("caught_up", blocks=applied, height=self.head.height)
            self.instance = None
            self._wake.set()
        return applied

    def _apply_synced(self, block: Block) -> None:
        """Check, execute, commit and store one fetched block (``BlockRefused``: not taken)."""
        self._discard()
        try:
            follow_block(self.executor, block)
        except BlockError as exc:
            self.stats["sync_rejected"] += 1
            raise BlockRefused(f"block {block.height} from the network: {exc.reason}") from None
        self._persist(block, None)
        self.instance = None

    # -- queries ---------------------------------------------------------------------------

    async def _on_query(self, received: Received[Query], msg: Msg) -> None:
        if self._stopped:
            return
        member = self.state.members.get(received.sender)
        if member is None:
            return
        query = received.payload
        why = refusal(member, query)
        if why:
            await self.bus.reply(msg, QueryRefused(why), seal_to=(member.id,))
        elif self.speculating and not (
            isinstance(query, _STORE_QUERIES) and not getattr(query, "proven", False)
        ):  # a proven answer needs the final state (its proofs are of the state)
            self._hold(member, query, msg)
        else:
            reply = self.answer(member.id, member.role, query)
            await self.bus.reply(msg, reply, seal_to=(member.id,))

    def _hold(self, member: Member, query: Query, msg: Msg) -> None:
        """Keep a query until the state is final again (the asker retries elsewhere if full)."""
        if len(self._held) >= MAX_HELD_QUERIES:
            self.stats["queries_dropped_held_full"] += 1
            return
        self._held.append((member, query, msg))
        self.stats["queries_held"] += 1
        self._arm_held_timer()

    def _arm_held_timer(self) -> None:
        if self._held_timer is None:
            loop = asyncio.get_running_loop()
            self._held_timer = loop.call_later(QUERY_SETTLE_S, self._held_overdue)

    def _answer_held(self) -> None:
        """Answer the held queries: called where the state is the final head's."""
        if self._held_timer is not None:
            self._held_timer.cancel()
            self._held_timer = None
        held, self._held = self._held, []
        for member, query, msg in held:
            try:
                reply = self.answer(member.id, member.role, query)
            except Exception as exc:  # this runs inside a decision: a query must not stop it
                self.stats["query_failed"] += 1
                log.error("query_failed", query=type(query).__name__, error=repr(exc))
                continue
            self._spawn(self.bus.reply(msg, reply, seal_to=(member.id,)))

    def _held_overdue(self) -> None:
        """No block final for ``QUERY_SETTLE_S``: undo the stuck proposal so the final state
        can answer. While blocks are still being decided, the next one answers instead."""
        self._held_timer = None
        if not self.speculating:
            self._answer_held()
        elif time.monotonic() - self._last_decided >= QUERY_SETTLE_S:
            self.stats["stuck_proposal_undone"] += 1
            self._discard()
        else:
            self._arm_held_timer()

    def answer(self, who: str, role: Role, query: Query) -> Reply:
        """The query service's answer from the state as it is now (callers make sure it is
        a final block's: see ``_on_query`` and ``_answer_held``)."""
        return self.queries.answer(self.state, self.head, len(self.mempool), who, role, query)
