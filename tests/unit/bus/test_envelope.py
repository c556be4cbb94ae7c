"""The envelope verifier, without a server: every drop reason, and garbage never raises."""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bus.envelope import Channel, Dropped, DropReason, Outbox, Received, Verifier
from bus.seal import Sealer
from rfq.identity import Directory, Identity, Role
from rfq.signing import SignedMessage

CHAIN = "botc-test"


class Ping(msgspec.Struct, frozen=True, tag="ping"):
    text: str


class Order(msgspec.Struct, frozen=True, tag="order"):
    size: int


class Stranger(msgspec.Struct, frozen=True, tag="stranger"):
    x: int


PINGS: Channel[Ping | Order] = Channel.of(
    "test", Ping | Order, {"ping": {Role.CLIENT, Role.DEALER}, "order": {Role.DEALER}}
)


class FakeClock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def alice() -> Identity:
    return Identity.generate("alice", Role.CLIENT)


@pytest.fixture
def dan() -> Identity:
    return Identity.generate("dan", Role.DEALER)


@pytest.fixture
def eve() -> Identity:
    return Identity.generate("eve", Role.CLIENT)


@pytest.fixture
def directory(alice: Identity, dan: Identity, eve: Identity) -> Directory:
    return Directory([alice.member("Alice"), dan.member("Dan"), eve.member("Eve")])


def outbox(who: Identity, directory: Directory, clock: FakeClock) -> Outbox:
    return Outbox(who, CHAIN, sealer=Sealer(who, directory), clock=clock)


def verifier(who: Identity, directory: Directory, clock: FakeClock, **kw: object) -> Verifier:
    return Verifier(directory, CHAIN, sealer=Sealer(who, directory), clock=clock, **kw)  # type: ignore[arg-type]


def test_a_signed_ping_from_alice_reaches_dan_intact(alice, dan, directory, clock):
    data = outbox(alice, directory, clock).encode(Ping("hello"))
    result = verifier(dan, directory, clock).open(data, PINGS)
    assert isinstance(result, Received)
    assert result.payload == Ping("hello")
    assert result.sender == "alice"
    assert not result.sealed


def test_a_sealed_order_opens_only_for_its_recipients(alice, dan, eve, directory, clock):
    data = outbox(dan, directory, clock).encode(Order(5), seal_to=["alice"])
    for_alice = verifier(alice, directory, clock).open(data, PINGS)
    assert isinstance(for_alice, Received) and for_alice.payload == Order(5) and for_alice.sealed
    eves = verifier(eve, directory, clock)
    for_eve = eves.open(data, PINGS)
    assert isinstance(for_eve, Dropped) and for_eve.reason == DropReason.NOT_FOR_ME
    assert eves.drops[DropReason.NOT_FOR_ME] == 1


def test_eve_cannot_open_a_box_by_pretending_to_be_a_recipient(alice, dan, eve, directory, clock):
    """Eve relabels herself as alice in the recipient list: her key cannot unwrap it."""
    data = outbox(dan, directory, clock).encode(Order(5), seal_to=["alice"])
    from bus.seal import Sealed

    box = msgspec.msgpack.decode(data, type=Sealed)
    forged = msgspec.structs.replace(box, recipients=(("eve", box.recipients[0][1]),))
    result = verifier(eve, directory, clock).open(msgspec.msgpack.encode(forged), PINGS)
    assert isinstance(result, Dropped) and result.reason == DropReason.UNDECRYPTABLE


def test_a_tampered_signature_is_dropped(alice, dan, directory, clock):
    signed = outbox(alice, directory, clock).sign(Ping("pay me"))
    bad = msgspec.structs.replace(signed, body=msgspec.msgpack.encode(Ping("pay eve")))
    v = verifier(dan, directory, clock)
    result = v.open(msgspec.msgpack.encode(bad), PINGS)
    assert isinstance(result, Dropped) and result.reason == DropReason.BAD_SIGNATURE
    assert v.drops == {DropReason.BAD_SIGNATURE: 1}


def test_an_unknown_sender_is_dropped(dan, directory, clock):
    mallory = Identity.generate("mallory", Role.DEALER)
    data = Outbox(mallory, CHAIN, clock=clock).encode(Ping("hi"))
    result = verifier(dan, directory, clock).open(data, PINGS)
    assert isinstance(result, Dropped) and result.reason == DropReason.UNKNOWN_SENDER


def test_a_replayed_nonce_is_dropped_and_the_original_is_kept(alice, dan, directory, clock):
    data = outbox(alice, directory, clock).encode(Ping("once"))
    v = verifier(dan, directory, clock)
    assert isinstance(v.open(data, PINGS), Received)
    again = v.open(data, PINGS)
    assert isinstance(again, Dropped) and again.reason == DropReason.REPLAY
    assert v.accepted == 1


def test_slightly_reordered_messages_from_one_sender_are_all_accepted(alice, dan, directory, clock):
    box = outbox(alice, directory, clock)
    first, second = box.encode(Ping("1")), box.encode(Ping("2"))
    v = verifier(dan, directory, clock)
    assert isinstance(v.open(second, PINGS), Received)
    assert isinstance(v.open(first, PINGS), Received)


def test_a_nonce_older_than_the_window_is_a_replay(alice, dan, directory, clock):
    box = outbox(alice, directory, clock)
    old = box.sign(Ping("old"), ttl_s=3600)
    clock.now += 120
    v = verifier(dan, directory, clock, replay_window_s=60)
    assert isinstance(v.open(box.encode(Ping("new")), PINGS), Received)
    result = v.open(msgspec.msgpack.encode(old), PINGS)
    assert isinstance(result, Dropped) and result.reason == DropReason.REPLAY


def test_an_expired_message_is_dropped(alice, dan, directory, clock):
    data = outbox(alice, directory, clock).encode(Ping("late"), ttl_s=1)
    clock.now += 2
    result = verifier(dan, directory, clock).open(data, PINGS)
    assert isinstance(result, Dropped) and result.reason == DropReason.EXPIRED


def test_a_client_sending_a_dealer_only_kind_is_dropped_for_its_role(alice, dan, directory, clock):
    data = outbox(alice, directory, clock).encode(Order(1))
    result = verifier(dan, directory, clock).open(data, PINGS)
    assert isinstance(result, Dropped) and result.reason == DropReason.WRONG_ROLE
    assert result.message is not None and result.sender == "alice"


def test_a_kind_the_channel_does_not_carry_is_dropped(alice, dan, directory, clock):
    data = outbox(alice, directory, clock).encode(Stranger(1))
    result = verifier(dan, directory, clock).open(data, PINGS)
    assert isinstance(result, Dropped) and result.reason == DropReason.UNEXPECTED_KIND


def test_a_message_for_another_network_is_dropped(alice, dan, directory, clock):
    data = Outbox(alice, "botc-other", clock=clock).encode(Ping("hi"))
    result = verifier(dan, directory, clock).open(data, PINGS)
    assert isinstance(result, Dropped) and result.reason == DropReason.WRONG_NETWORK


def test_a_signed_body_that_does_not_decode_is_a_bad_payload(alice, dan, directory, clock):
    signed = outbox(alice, directory, clock).sign(Ping("x"))
    broken = SignedMessage(
        chain_id=signed.chain_id,
        sender=signed.sender,
        nonce=signed.nonce,
        timestamp_ms=signed.timestamp_ms,
        expires_ms=signed.expires_ms,
        kind="ping",
        body=b"\xc1garbage",
    )
    broken = msgspec.structs.replace(broken, signature=alice.sign(broken.signing_bytes()))
    result = verifier(dan, directory, clock).open(msgspec.msgpack.encode(broken), PINGS)
    assert isinstance(result, Dropped) and result.reason == DropReason.BAD_PAYLOAD
    assert result.message is not None


def test_oversized_messages_are_dropped_before_decoding(alice, dan, directory, clock):
    data = outbox(alice, directory, clock).encode(Ping("x" * 5000))
    result = verifier(dan, directory, clock, max_bytes=1024).open(data, PINGS)
    assert isinstance(result, Dropped) and result.reason == DropReason.OVERSIZED


def test_a_flooding_sender_is_limited_while_others_get_through(alice, dan, eve, directory, clock):
    v = verifier(dan, directory, clock, rate_per_s=10, burst=5)
    flood = outbox(eve, directory, clock)
    results = [v.open(flood.encode(Ping(str(i))), PINGS) for i in range(20)]
    assert sum(isinstance(r, Received) for r in results) == 5
    assert v.drops[DropReason.RATE_LIMITED] == 15
    assert isinstance(v.open(outbox(alice, directory, clock).encode(Ping("hi")), PINGS), Received)


def test_truncated_messages_are_malformed(alice, dan, directory, clock):
    data = outbox(alice, directory, clock).encode(Ping("hello"))
    v = verifier(dan, directory, clock)
    for cut in range(len(data)):
        result = v.open(data[:cut], PINGS)
        assert isinstance(result, Dropped)
    assert v.accepted == 0


@settings(max_examples=300, deadline=None)
@given(garbage=st.binary(max_size=2048))
def test_random_bytes_are_always_dropped_never_raised(garbage):
    alice = Identity.generate("alice", Role.CLIENT)
    v = Verifier(Directory([alice.member("A")]), CHAIN, sealer=Sealer(alice, Directory([])))
    result = v.open(garbage, PINGS)
    assert isinstance(result, Dropped)
    assert sum(v.drops.values()) == 1


@settings(max_examples=200, deadline=None)
@given(
    fields=st.tuples(
        st.sampled_from(["s", "x", "?"]),
        st.one_of(
            st.text(max_size=8), st.integers(-(2**63), 2**63 - 1), st.binary(max_size=8), st.none()
        ),
        st.lists(
            st.one_of(st.integers(0, 2**63), st.binary(max_size=40), st.text(max_size=10)),
            max_size=8,
        ),
    )
)
def test_well_formed_msgpack_of_the_wrong_shape_is_dropped(fields):
    alice = Identity.generate("alice", Role.CLIENT)
    v = Verifier(Directory([alice.member("A")]), CHAIN, sealer=Sealer(alice, Directory([])))
    tag, head, rest = fields
    result = v.open(msgspec.msgpack.encode([tag, head, *rest]), PINGS)
    assert isinstance(result, Dropped)


class CountingChecks:
    """Counts the signature checks the verifier makes (the expensive step)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        import bus.envelope

        self.calls = 0
        real = bus.envelope.signature_valid

        def counted(message: SignedMessage, directory: Directory) -> bool:
            self.calls += 1
            return real(message, directory)

        monkeypatch.setattr(bus.envelope, "signature_valid", counted)


def test_a_flood_over_the_rate_is_dropped_before_any_signature_is_checked(
    alice, dan, eve, directory, clock, monkeypatch
):
    checks = CountingChecks(monkeypatch)
    v = verifier(dan, directory, clock, rate_per_s=10, burst=5)
    flood = outbox(eve, directory, clock)
    results = [v.open(flood.encode(Ping(str(i))), PINGS) for i in range(1_000)]
    assert sum(isinstance(r, Received) for r in results) == 5
    assert v.drops[DropReason.RATE_LIMITED] == 995
    assert checks.calls == 5
    assert isinstance(v.open(outbox(alice, directory, clock).encode(Ping("hi")), PINGS), Received)


def test_copies_of_one_message_are_replays_dropped_before_their_signature_is_checked(
    alice, dan, directory, clock, monkeypatch
):
    checks = CountingChecks(monkeypatch)
    v = verifier(dan, directory, clock)
    data = outbox(alice, directory, clock).encode(Ping("once"))
    results = [v.open(data, PINGS) for _ in range(500)]
    assert isinstance(results[0], Received)
    assert v.drops == {DropReason.REPLAY: 499}
    assert checks.calls == 1


def test_a_forger_naming_alice_cannot_use_up_alices_rate(alice, dan, eve, directory, clock):
    v = verifier(dan, directory, clock, rate_per_s=10, burst=5)
    forged_by = outbox(eve, directory, clock)
    for i in range(50):
        signed = forged_by.sign(Ping(str(i)))
        forged = msgspec.structs.replace(signed, sender="alice")
        v.open(msgspec.msgpack.encode(forged), PINGS)
    assert v.drops == {DropReason.BAD_SIGNATURE: 50}
    honest = outbox(alice, directory, clock)
    assert all(isinstance(v.open(honest.encode(Ping("hi")), PINGS), Received) for _ in range(5))


def test_a_sealed_flood_over_the_rate_is_dropped_before_any_box_is_opened(
    alice, dan, directory, clock, monkeypatch
):
    v = verifier(dan, directory, clock, rate_per_s=10, burst=3)
    opened = 0
    real_open = v.sealer.open  # type: ignore[union-attr]

    def counted(box: object) -> bytes:
        nonlocal opened
        opened += 1
        return real_open(box)  # type: ignore[arg-type]

    monkeypatch.setattr(v.sealer, "open", counted)
    sender = outbox(alice, directory, clock)
    results = [v.open(sender.encode(Ping(str(i)), seal_to=["dan"]), PINGS) for i in range(100)]
    assert sum(isinstance(r, Received) for r in results) == 3
    assert v.drops[DropReason.RATE_LIMITED] == 97 and opened == 3


def test_a_channel_with_its_own_rate_has_buckets_of_its_own(alice, dan, directory, clock):
    slow: Channel[Ping | Order] = Channel.of(
        "slow", Ping | Order, {"ping": {Role.CLIENT}}, rate_per_s=1, burst=2
    )
    v = verifier(dan, directory, clock, rate_per_s=10, burst=5)
    sender = outbox(alice, directory, clock)
    on_slow = [v.open(sender.encode(Ping(str(i))), slow) for i in range(10)]
    assert sum(isinstance(r, Received) for r in on_slow) == 2
    on_default = [v.open(sender.encode(Ping(str(i))), PINGS) for i in range(10)]
    assert sum(isinstance(r, Received) for r in on_default) == 5
    clock.now += 1.0
    assert isinstance(v.open(sender.encode(Ping("later")), slow), Received)


def test_a_message_claiming_another_sender_than_its_subject_names_is_dropped_unverified(
    alice, dan, eve, directory, clock, monkeypatch
):
    checks = CountingChecks(monkeypatch)
    own: Channel[Ping | Order] = Channel.of(
        "own", Ping | Order, {"ping": {Role.CLIENT}}, sender_token=2
    )
    v = verifier(dan, directory, clock)
    data = outbox(alice, directory, clock).encode(Ping("hi"))
    result = v.open(data, own, subject="otc.tx.eve")
    assert isinstance(result, Dropped) and result.reason == DropReason.SENDER_MISMATCH
    assert checks.calls == 0
    assert isinstance(v.open(data, own, subject="otc.tx.alice"), Received)
