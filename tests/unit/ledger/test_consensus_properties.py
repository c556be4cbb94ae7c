"""Properties under hypothesis: garbage never raises, and no schedule, crash pattern or
Byzantine authority ever gets two different blocks decided at one height."""

from __future__ import annotations

import hashlib

import msgspec
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from rfq.identity import Identity
from rfq.ledger.block import Block, BlockHeader, build_block, make_seal, verify_seals
from rfq.ledger.consensus import (
    CONSENSUS_KINDS,
    Commit,
    ConsensusMessage,
    Decide,
    Justification,
    Prepare,
    Proposal,
    Reject,
    RejectReason,
    RoundChange,
    decode_consensus,
    verify_evidence,
)
from rfq.signing import SignedMessage, sign_payload

from .test_consensus_harness import (
    CHAIN,
    MALLORY,
    ManualNetwork,
    TimedNetwork,
    next_state_root,
)

# --------------------------------------------------------------------------------------------
# Garbage fed straight into one instance

NET = ManualNetwork(4, max_height=1)
KEYS: dict[str, Identity] = {name: NET[name].identity for name in NET.names} | {"mallory": MALLORY}
BOBS = NET["bob"].build([b"bob's honest trade"], round=0)
OTHER = NET["bob"].build([b"bob's other trade"], round=0)
HASHES = [BOBS.hash(), OTHER.hash(), b"\x00" * 32, b""]

heights = st.integers(-1, 3)
rounds = st.one_of(st.integers(-1, 4), st.sampled_from([10_001, 2**63 - 1]))
hashes = st.one_of(st.sampled_from(HASHES), st.binary(max_size=40))
headers = st.builds(
    BlockHeader,
    chain_id=st.sampled_from([CHAIN, "x"]),
    height=heights,
    prev_hash=st.sampled_from([NET.genesis.hash(), b"\x00" * 32]),
    timestamp_ms=st.integers(-1, 5),
    proposer=st.sampled_from([*NET.names, "mallory", ""]),
    round=rounds,
    tx_root=hashes,
    state_root=hashes,
    authority_set_hash=st.sampled_from([BOBS.header.authority_set_hash, b""]),
    tx_count=st.integers(-1, 3),
)
blocks = st.one_of(
    st.sampled_from([BOBS, OTHER]),
    st.builds(Block, headers, st.lists(st.binary(max_size=8), max_size=3).map(tuple)),
)


@st.composite
def signed_messages(draw: st.DrawFn, depth: int = 0) -> SignedMessage:
    sender = draw(st.sampled_from(sorted(KEYS)))
    payload: ConsensusMessage
    inner = (
        st.lists(signed_messages(depth + 1), max_size=4).map(tuple) if depth < 1 else st.just(())
    )
    choice = draw(st.integers(0, 3))
    if choice == 0:
        justification = draw(st.one_of(st.none(), st.builds(Justification, inner, inner)))
        payload = Proposal(draw(heights), draw(rounds), draw(blocks), justification)
    elif choice == 1:
        payload = Prepare(draw(heights), draw(rounds), draw(hashes))
    elif choice == 2:
        h, r, b = draw(heights), draw(st.integers(0, 3)), draw(hashes)
        good = draw(st.booleans())
        seal = make_seal(KEYS[sender], b, r).signature if good else draw(st.binary(max_size=64))
        payload = Commit(h, r, b, seal)
    else:
        payload = RoundChange(
            draw(heights),
            draw(rounds),
            draw(st.one_of(st.none(), st.integers(-1, 3))),
            draw(st.one_of(st.none(), blocks)),
            draw(inner),
        )
    message = sign_payload(
        KEYS[sender], payload, chain_id=CHAIN, nonce=1, timestamp_ms=0, expires_ms=1
    )
    mangle = draw(st.integers(0, 5))
    if mangle == 1:
        message = msgspec.structs.replace(message, body=draw(st.binary(max_size=64)))
    elif mangle == 2:
        message = msgspec.structs.replace(
            message, kind=draw(st.sampled_from([*sorted(CONSENSUS_KINDS), "rfq"]))
        )
    elif mangle == 3:
        message = msgspec.structs.replace(message, chain_id="elsewhere")
    return message


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.one_of(signed_messages(), st.integers(0, 3)),  # an int: that round's timer fires
        min_size=1,
        max_size=25,
    )
)
def test_random_message_sequences_never_raise_and_never_decide_twice(
    inputs: list[SignedMessage | int],
) -> None:
    net = ManualNetwork(4, max_height=1)
    net.start()
    alice = net["alice"].instance
    assert alice is not None
    decisions: list[Block] = []
    for item in inputs:
        actions = alice.on_timeout(item) if isinstance(item, int) else alice.handle(item)
        for action in actions:
            assert not (isinstance(action, Reject) and action.reason == RejectReason.INTERNAL), (
                action.detail
            )
            if isinstance(action, Decide):
                decisions.append(action.block)
    assert len(decisions) <= 1
    for block in decisions:
        assert verify_seals(block, net.names, net.directory) == []


# --------------------------------------------------------------------------------------------
# A Byzantine bob among three honest authorities, every delivery chosen by hypothesis


class Adversary:
    """bob signs whatever helps most: rival blocks, votes for any hash, replays, round
    changes copied from honest ones, and garbage; each goes to one chosen victim."""

    def __init__(self, net: ManualNetwork, name: str = "bob") -> None:
        self.net = net
        self.name = name

    def parent(self, height: int) -> BlockHeader:
        if height == 1:
            return self.net.genesis.header
        return self.net.published[height - 1].header

    def block(self, height: int, round: int, variant: int) -> Block:
        parent = self.parent(height)
        draft = build_block(
            parent,
            proposer=self.name,
            round=round,
            timestamp_ms=parent.timestamp_ms,
            txs=[f"evil {variant}".encode()],
            state_root=b"",
            authorities=self.net.names,
        )
        root = next_state_root(parent.state_root, draft)
        return Block(msgspec.structs.replace(draft.header, state_root=root), draft.txs)

    def seen(self, height: int) -> list[ConsensusMessage]:
        out = []
        for _, m in self.net.log:
            try:
                p = decode_consensus(m)
            except Exception:
                continue
            if p.height == height:
                out.append(p)
        return out

    def message(self, height: int, round: int, kind: int, variant: int) -> SignedMessage:
        sign = self.net[self.name].sign
        seen = self.seen(height)
        pool = [self.block(height, round, v).hash() for v in range(2)]
        pool += [p.block.hash() for p in seen if isinstance(p, Proposal)]
        target = pool[variant % len(pool)]
        if kind == 0:
            justification = None
            if round > 0:
                changes = tuple(
                    m
                    for _, m in self.net.log
                    if m.kind == "ibft_round_change"
                    and (lambda p: p.height == height and p.round == round)(decode_consensus(m))
                )[: len(self.net.names)]
                locks = [
                    p
                    for p in seen
                    if isinstance(p, RoundChange) and p.round == round and p.prepared
                ]
                cert = max(locks, key=lambda p: p.prepared_round or 0).prepared if locks else ()
                justification = Justification(changes, cert if variant % 2 else ())
            return sign(Proposal(height, round, self.block(height, round, variant), justification))
        if kind == 1:
            return sign(Prepare(height, round, target))
        if kind == 2:
            seal = make_seal(self.net[self.name].identity, target, round).signature
            return sign(Commit(height, round, target, seal))
        if kind == 3:
            locks = [p for p in seen if isinstance(p, RoundChange) and p.prepared]
            if locks and variant % 2:
                lock = locks[variant % len(locks)]
                return sign(
                    RoundChange(
                        height,
                        max(round, (lock.prepared_round or 0) + 1),
                        lock.prepared_round,
                        lock.prepared_block,
                        lock.prepared,
                    )
                )
            return sign(RoundChange(height, max(round, 1)))
        if kind == 4 and self.net.log:
            return self.net.log[variant * 7919 % len(self.net.log)][1]
        garbage = sign(Prepare(height, round, target))
        return msgspec.structs.replace(garbage, body=hashlib.sha256(bytes(variant)).digest())


steps = st.lists(
    st.one_of(
        st.tuples(st.just("deliver"), st.integers(0, 1000)),
        st.tuples(st.just("deliver"), st.integers(0, 1000)),
        st.tuples(st.just("deliver"), st.integers(0, 1000)),
        st.tuples(st.just("drop"), st.integers(0, 1000)),
        st.tuples(st.just("fire"), st.sampled_from(["alice", "carol", "dave"])),
        st.tuples(
            st.just("bob"),
            st.sampled_from(["alice", "carol", "dave"]),
            st.integers(0, 5),
            st.integers(0, 3),
            st.integers(-1, 2),
        ),
    ),
    max_size=120,
)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps)
def test_a_byzantine_bob_under_any_schedule_never_forks_and_cannot_stop_the_others(
    schedule: list[tuple[object, ...]],
) -> None:
    net = ManualNetwork(4, byzantine={"bob"}, max_height=2)
    bob = Adversary(net)
    net.start()
    for step in schedule:
        if step[0] == "deliver" and net.pending:
            net.deliver_at(int(step[1]))  # type: ignore[call-overload]
        elif step[0] == "drop" and net.pending:
            net.drop_at(int(step[1]))  # type: ignore[call-overload]
        elif step[0] == "fire":
            net.fire(str(step[1]))
        elif step[0] == "bob":
            _, name, kind, variant, offset = step
            victim = net[str(name)]
            if victim.instance is None:
                continue
            round = max(0, victim.instance.round + int(offset))  # type: ignore[call-overload]
            victim.receive(bob.message(victim.height, round, int(kind), int(variant)))  # type: ignore[call-overload]
        net.assert_safe()
    # The network heals: every message is delivered, and timers fire in the order real ones
    # would, those of the lowest round first (a node ahead runs a longer, doubled timer).
    honest = [net[n] for n in ("alice", "carol", "dave")]
    for _ in range(60):
        net.deliver_all()
        if all(n.height > 2 for n in honest):
            break
        armed = {name: timer for name, timer in net.timers.items() if name != "bob"}
        if armed:
            lowest = min(armed.values())
            for name, timer in armed.items():
                if timer == lowest:
                    net.fire(name)
    net.assert_safe()
    assert all(n.height > 2 for n in honest), [
        (n.name, n.height, n.instance and n.instance.round) for n in honest
    ]


# --------------------------------------------------------------------------------------------
# Random latencies and crashes of up to f authorities: safe and live


@settings(max_examples=25, deadline=None)
@given(
    n=st.sampled_from([4, 5, 7]),
    seed=st.integers(0, 2**32),
    max_latency=st.integers(1, 3000),
    data=st.data(),
)
def test_any_latency_and_up_to_f_crashes_decide_the_same_chain(
    n: int, seed: int, max_latency: int, data: st.DataObject
) -> None:
    f = (n - 1) // 3
    names = ["alice", "bob", "carol", "dave", "erin", "frank", "grace"][:n]
    down = data.draw(st.sets(st.sampled_from(names), max_size=f))
    net = TimedNetwork(n, seed=seed, max_latency=max_latency, down=down, max_height=3)
    net.start()
    net.run_until_height(3, within=10_000_000)
    net.assert_safe()
    for node in net.honest():
        if node.up:
            assert node.height == 4, (node.name, node.height)


@settings(max_examples=60, deadline=None)
@example(  # alice decides A in round 0 on bob's late commit; carol decides it in round 1
    seed=1,
    split=[False, False, False],
    delays=[0, 0, 0, 1704, 0, 1704, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0],
)
@given(
    seed=st.integers(0, 2**32),
    split=st.lists(st.booleans(), min_size=3, max_size=3),
    delays=st.lists(st.integers(0, 3000), min_size=18, max_size=18),
)
def test_bob_splitting_the_validators_between_two_blocks_never_forks_them(
    seed: int, split: list[bool], delays: list[int]
) -> None:
    """bob proposes block A to some, B to others, and prepares and commits both to everyone,
    each message arriving whenever hypothesis says: one block at most, and the honest three
    still finish both heights."""
    net = TimedNetwork(4, seed=seed, byzantine={"bob"}, max_height=2, max_latency=500)
    bob = Adversary(net)  # type: ignore[arg-type]
    blocks = [bob.block(1, 0, 0), bob.block(1, 0, 1)]
    sign = net["bob"].sign
    identity = net["bob"].identity
    net.start()
    wait = iter(delays)
    for victim, side in zip(("alice", "carol", "dave"), split, strict=True):
        mine, other = blocks[side], blocks[not side]
        net.inject("bob", victim, sign(Proposal(1, 0, mine)), delay=next(wait))
        net.inject("bob", victim, sign(Proposal(1, 0, other)), delay=next(wait))
        for block in (mine, other):
            h = block.hash()
            net.inject("bob", victim, sign(Prepare(1, 0, h)), delay=next(wait))
            seal = make_seal(identity, h, 0).signature
            net.inject("bob", victim, sign(Commit(1, 0, h, seal)), delay=next(wait))
    net.run_until_height(2, within=10_000_000)
    net.assert_safe()
    for name in ("alice", "carol", "dave"):
        assert net[name].height == 3
        for e in net[name].evidence:  # only who heard both sides before deciding has any
            assert e.offender == "bob"
            assert verify_evidence(e.msg_a, e.msg_b, net.directory, net.names) is None
