"""An in-memory network of QBFT instances under a deterministic scheduler.

The other consensus tests import it. Each ``Node`` is the I/O shell an authority would run,
reduced to its essentials: it carries out the instance's actions, keeps its chain, buffers
deferred messages (in a bounded ``FutureBuffer``, as the node does), and (like a node reading
the JetStream ``CHAIN`` stream) syncs decided blocks it missed, checking them with
``check_block``. Messages travel through a ``Network``:

- ``TimedNetwork``: a virtual clock and a heap of events; per-message latency from a seeded
  RNG (or a ``route`` hook), so every run replays exactly; a sync takes ``sync_delay_ms``.
- ``ManualNetwork``: nothing moves unless the test (or hypothesis) says which message to
  deliver, drop or which timer to fire.

A node marked ``byzantine`` runs no instance: the test speaks for it with ``sign``/``inject``.
"""

from __future__ import annotations

import hashlib
import heapq
import random
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import msgspec

from rfq.identity import Directory, Identity, Role
from rfq.ledger.block import Block, BlockHeader, build_block, check_block, genesis_block
from rfq.ledger.consensus import (
    Action,
    Broadcast,
    ConsensusMessage,
    Decide,
    Defer,
    Evidence,
    FutureBuffer,
    QbftInstance,
    Reject,
    RejectReason,
    ScheduleTimeout,
    decode_consensus,
    vote_of,
)
from rfq.signing import SignedMessage, sign_payload

CHAIN = "botc-test"
NAMES = ("alice", "bob", "carol", "dave", "erin", "frank", "grace")
GENESIS_HASH = hashlib.sha256(b"botc-test genesis").digest()
GENESIS_STATE = hashlib.sha256(b"state 0").digest()


def identity(name: str, role: Role = Role.DEALER) -> Identity:
    """Deterministic keys: the same actor has the same key in every test run."""
    return Identity(name, role, hashlib.sha256(name.encode()).digest())


MALLORY = identity("mallory", Role.CLIENT)


def next_state_root(parent_state: bytes, block: Block) -> bytes:
    """The toy state transition: the state root folds in the block's transactions."""
    return hashlib.sha256(parent_state + block.computed_tx_root()).digest()


def signer(who: Identity, clock: Callable[[], int]) -> Callable[[ConsensusMessage], SignedMessage]:
    nonce = 0

    def sign(payload: ConsensusMessage) -> SignedMessage:
        nonlocal nonce
        nonce += 1
        now = clock()
        return sign_payload(
            who, payload, chain_id=CHAIN, nonce=nonce, timestamp_ms=now, expires_ms=now + 30_000
        )

    return sign


def height_of(message: SignedMessage) -> int:
    return decode_consensus(message).height


@dataclass
class Node:
    name: str
    identity: Identity
    net: Network
    chain: list[Block]
    byzantine: bool = False
    up: bool = True
    instance: QbftInstance | None = None
    deferred: FutureBuffer = field(default_factory=FutureBuffer)
    decided: dict[int, Block] = field(default_factory=dict)
    synced: dict[int, Block] = field(default_factory=dict)
    evidence: list[Evidence] = field(default_factory=list)
    rejects: list[Reject] = field(default_factory=list)
    sent: list[SignedMessage] = field(default_factory=list)
    made: list[tuple[int, int]] = field(default_factory=list)
    validate_hook: Callable[[Block], str | None] | None = None
    txs_per_block: int = 3
    durable_votes: bool = True
    """Record what it signs where a crash does not erase it, as the node's store does."""
    votes: dict[int, dict[tuple[str, int], bytes]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        sign = signer(self.identity, lambda: self.net.now)

        def record_then_sign(payload: ConsensusMessage) -> SignedMessage:
            vote = vote_of(payload)
            if vote is not None and self.durable_votes:
                kind, height, round, block_hash = vote
                self.votes.setdefault(height, {})[(kind, round)] = block_hash
            return sign(payload)

        self.sign = record_then_sign

    @property
    def height(self) -> int:
        """The height this node is deciding (its chain tip + 1)."""
        return self.chain[-1].header.height + 1

    # -- the shell's callbacks

    def make_block(self, round: int) -> Block:
        parent = self.chain[-1]
        height = parent.header.height + 1
        self.made.append((height, round))
        txs = [f"{self.name}/{height}/{round}/{i}".encode() for i in range(self.txs_per_block)]
        return self.build(txs, round=round)

    def build(self, txs: Iterable[bytes], *, round: int, state_root: bytes | None = None) -> Block:
        parent = self.chain[-1]
        draft = build_block(
            parent.header,
            proposer=self.name,
            round=round,
            timestamp_ms=max(parent.header.timestamp_ms, self.net.now),
            txs=list(txs),
            state_root=b"",
            authorities=self.net.names,
        )
        root = state_root if state_root is not None else self.state_after(draft)
        # Executing the block gives the state root; the header is completed, not rebuilt.
        return Block(msgspec.structs.replace(draft.header, state_root=root), draft.txs)

    def state_after(self, block: Block) -> bytes:
        return next_state_root(self.chain[-1].header.state_root, block)

    def validate(self, block: Block) -> str | None:
        if self.validate_hook is not None:
            reason = self.validate_hook(block)
            if reason is not None:
                return reason
        if block.header.state_root != self.state_after(block):
            return "state root mismatch"
        return None

    # -- running instances

    def begin(self) -> None:
        """Start consensus on the next height (the shell does this after each decision)."""
        if self.byzantine or not self.up or self.height > self.net.max_height:
            self.instance = None
            return
        parent: BlockHeader = self.chain[-1].header
        self.instance = QbftInstance(
            height=parent.height + 1,
            authorities=self.net.names,
            directory=self.net.directory,
            identity=self.identity,
            parent=parent,
            validate_block=self.validate,
            make_block=self.make_block,
            sign=self.sign,
            round_timeout_ms=self.net.round_timeout_ms,
            signed_before=self.votes.get(parent.height + 1) if self.durable_votes else None,
        )
        instance = self.instance
        self.apply(instance.start())
        for message, payload in self.deferred.take(instance.height):
            if self.instance is not instance:
                break
            self.apply(instance.handle(message, payload))

    def apply(self, actions: list[Action]) -> None:
        for action in actions:
            if isinstance(action, Broadcast):
                self.sent.append(action.message)
                self.net.broadcast(self.name, action.message)
            elif isinstance(action, ScheduleTimeout):
                self.net.arm(self.name, action.height, action.round, action.delay_ms)
            elif isinstance(action, Decide):
                self.decide(action.block)
            elif isinstance(action, Evidence):
                self.evidence.append(action)
            elif isinstance(action, Reject):
                self.rejects.append(action)
            elif isinstance(action, Defer):
                held = self.deferred.add(
                    action.message,
                    decode_consensus(action.message),
                    current=self.height,
                    authorities=self.net.names,
                )
                if held is None:
                    self.net.request_sync(self.name)

    def decide(self, block: Block) -> None:
        height = block.header.height
        assert height == self.height, f"{self.name} decided {height} at {self.height}"
        self.decided[height] = block
        self.chain.append(block)
        self.net.publish(self.name, block)
        self.begin()

    def sync(self) -> None:
        """Catch up from the published chain, verifying each block's link, txs and seals."""
        while self.height in self.net.published and self.up and not self.byzantine:
            block = self.net.published[self.height]
            check_block(self.chain[-1].header, block, self.net.names, self.net.directory)
            self.synced[block.header.height] = block
            self.chain.append(block)
            self.begin()

    def receive(self, message: SignedMessage) -> None:
        if self.up and self.instance is not None:
            self.apply(self.instance.handle(message))

    def timeout(self, height: int, round: int) -> None:
        if self.up and self.instance is not None and self.instance.height == height:
            self.apply(self.instance.on_timeout(round))

    # -- crash and restart

    def crash(self) -> None:
        self.up = False
        self.instance = None

    def restart(self) -> None:
        """Come back with the chain (from disk) but no in-memory consensus state."""
        self.up = True
        self.sync()
        if self.instance is None:
            self.begin()

    # -- facts for assertions

    def all_blocks(self) -> dict[int, Block]:
        return {b.header.height: b for b in self.chain[1:]}

    def internal_errors(self) -> list[Reject]:
        return [r for r in self.rejects if r.reason == RejectReason.INTERNAL]


class Network:
    """What every scheduler shares: nodes, the directory, the published chain, the log."""

    def __init__(
        self,
        n: int = 4,
        *,
        byzantine: Iterable[str] = (),
        down: Iterable[str] = (),
        max_height: int = 3,
        round_timeout_ms: int = 1000,
        txs_per_block: int = 3,
    ) -> None:
        self.names: tuple[str, ...] = NAMES[:n]
        self.now = 0
        self.max_height = max_height
        self.round_timeout_ms = round_timeout_ms
        identities = {name: identity(name) for name in self.names}
        self.directory = Directory(
            [i.member(name.title()) for name, i in identities.items()] + [MALLORY.member("Mallory")]
        )
        self.genesis = genesis_block(CHAIN, GENESIS_HASH, self.names, GENESIS_STATE, 0)
        bad, off = set(byzantine), set(down)
        self.nodes = {
            name: Node(
                name,
                identities[name],
                self,
                [self.genesis],
                byzantine=name in bad,
                up=name not in off,
                txs_per_block=txs_per_block,
            )
            for name in self.names
        }
        self.published: dict[int, Block] = {}
        self.log: list[tuple[str, SignedMessage]] = []
        self.drop: Callable[[str, str, SignedMessage], bool] = lambda src, dst, m: False

    def __getitem__(self, name: str) -> Node:
        return self.nodes[name]

    def start(self) -> None:
        for node in self.nodes.values():
            node.begin()

    def honest(self) -> list[Node]:
        return [n for n in self.nodes.values() if not n.byzantine]

    def sign(self, name: str, payload: ConsensusMessage) -> SignedMessage:
        return self.nodes[name].sign(payload)

    def publish(self, name: str, block: Block) -> None:
        """A decided block reaches the CHAIN stream (first writer wins; later ones must match,
        or the test has found a fork)."""
        height = block.header.height
        earlier = self.published.setdefault(height, block)
        assert earlier.hash() == block.hash(), f"fork at height {height} ({name})"

    def broadcast(self, src: str, message: SignedMessage) -> None:
        self.log.append((src, message))
        for dst in self.names:
            if dst != src:
                self.send(src, dst, message)

    def send(self, src: str, dst: str, message: SignedMessage, delay: int | None = None) -> None:
        raise NotImplementedError

    def arm(self, name: str, height: int, round: int, delay_ms: int) -> None:
        raise NotImplementedError

    def request_sync(self, name: str) -> None:
        """A node saw a later height: it reads the CHAIN stream (at once, unless timed)."""
        self.nodes[name].sync()

    def deliver(self, src: str, dst: str, message: SignedMessage) -> None:
        if not self.drop(src, dst, message):
            self.nodes[dst].receive(message)

    # -- assertions every test can make

    def decisions(self) -> dict[int, set[bytes]]:
        """Per height, the hashes of every block any honest node holds (decided or synced)."""
        seen: dict[int, set[bytes]] = defaultdict(set)
        for node in self.honest():
            for height, block in node.all_blocks().items():
                seen[height].add(block.hash())
        return dict(seen)

    def assert_safe(self) -> None:
        for height, hashes in self.decisions().items():
            assert len(hashes) == 1, f"two different blocks decided at height {height}"
        for node in self.honest():
            assert not node.internal_errors(), node.internal_errors()[0].detail


class TimedNetwork(Network):
    """Events on a virtual clock; latency ``[min_latency, max_latency]`` ms from a seeded RNG,
    unless ``route(src, dst, message)`` returns a delay (or ``None`` to drop)."""

    def __init__(
        self,
        n: int = 4,
        *,
        seed: int = 0,
        min_latency: int = 1,
        max_latency: int = 20,
        sync_delay_ms: int = 100,
        **kw: object,
    ) -> None:
        super().__init__(n, **kw)  # type: ignore[arg-type]
        self.sync_delay_ms = sync_delay_ms
        self.rng = random.Random(seed)
        self.min_latency = min_latency
        self.max_latency = max_latency
        self._queue: list[tuple[int, int, Callable[[], None]]] = []
        self._seq = 0
        self.route: Callable[[str, str, SignedMessage], int | None] | None = None

    def at(self, when: int, event: Callable[[], None]) -> None:
        self._seq += 1
        heapq.heappush(self._queue, (max(when, self.now), self._seq, event))

    def send(self, src: str, dst: str, message: SignedMessage, delay: int | None = None) -> None:
        if delay is None and self.route is not None:
            routed = self.route(src, dst, message)
            if routed is None:
                return
            delay = routed
        if delay is None:
            delay = self.rng.randint(self.min_latency, self.max_latency)
        self.at(self.now + delay, lambda: self.deliver(src, dst, message))

    def inject(self, src: str, dst: str, message: SignedMessage, delay: int = 0) -> None:
        """A message only ``dst`` gets (what a Byzantine sender does)."""
        self.log.append((src, message))
        self.at(self.now + delay, lambda: self.deliver(src, dst, message))

    def arm(self, name: str, height: int, round: int, delay_ms: int) -> None:
        node = self.nodes[name]
        self.at(self.now + delay_ms, lambda: node.timeout(height, round))

    def request_sync(self, name: str) -> None:
        """Reading the CHAIN stream takes ``sync_delay_ms``: slower than a commit in flight."""
        self.at(self.now + self.sync_delay_ms, self.nodes[name].sync)

    def run(self, until: int, *, stop: Callable[[], bool] | None = None) -> None:
        """Process events in time order up to virtual time ``until`` (or until ``stop()``)."""
        while self._queue and self._queue[0][0] <= until:
            when, _, event = heapq.heappop(self._queue)
            self.now = when
            event()
            if stop is not None and stop():
                return
        self.now = max(self.now, until)

    def run_until_height(self, height: int, *, within: int = 120_000) -> None:
        live = [n for n in self.honest() if n.up]
        self.run(within, stop=lambda: all(n.height > height for n in live))


class ManualNetwork(Network):
    """Messages wait in ``pending`` and timers in ``timers`` until the test picks one."""

    def __init__(self, n: int = 4, **kw: object) -> None:
        super().__init__(n, **kw)  # type: ignore[arg-type]
        self.pending: list[tuple[str, str, SignedMessage]] = []
        self.timers: dict[str, tuple[int, int]] = {}

    def send(self, src: str, dst: str, message: SignedMessage, delay: int | None = None) -> None:
        self.pending.append((src, dst, message))

    def arm(self, name: str, height: int, round: int, delay_ms: int) -> None:
        self.timers[name] = (height, round)

    def deliver_at(self, index: int) -> None:
        src, dst, message = self.pending.pop(index % len(self.pending))
        self.now += 1
        self.deliver(src, dst, message)

    def drop_at(self, index: int) -> None:
        self.pending.pop(index % len(self.pending))

    def fire(self, name: str) -> None:
        armed = self.timers.pop(name, None)
        if armed is not None:
            self.now += 1
            self.nodes[name].timeout(*armed)

    def deliver_all(self, *, limit: int = 100_000) -> None:
        while self.pending and limit:
            limit -= 1
            self.deliver_at(0)


# --------------------------------------------------------------------------------------------
# The harness's own guarantees


def test_two_runs_with_the_same_seed_decide_byte_identical_chains() -> None:
    chains = []
    for _ in range(2):
        net = TimedNetwork(4, seed=7, max_height=2)
        net.start()
        net.run_until_height(2)
        chains.append([b.hash() for b in net["alice"].chain])
    assert chains[0] == chains[1]
    assert len(chains[0]) == 3


def test_a_manual_network_moves_nothing_until_told() -> None:
    net = ManualNetwork(4, max_height=1)
    net.start()
    assert net.pending, "bob, round 0's proposer at height 1, has broadcast his proposal"
    assert all(node.height == 1 for node in net.nodes.values())
    net.deliver_all()
    assert {node.height for node in net.nodes.values()} == {2}
    net.assert_safe()
