"""The envelope on the wire: signing outgoing payloads, verifying incoming ones.

On the wire every message is a msgpack tagged union of a ``SignedMessage`` (``rfq.signing``)
or a ``Sealed`` box holding one. ``Outbox`` gives each outgoing payload the next nonce (per
sender, strictly increasing, microsecond-clock based so a restart never reuses one), a
timestamp and expiry, signs it and optionally seals it. ``Verifier`` opens what arrives and
drops, counting by reason and never raising: oversized or malformed bytes, boxes not for us,
unknown senders, bad signatures, other networks, unexpected kinds, the wrong role for a kind,
expired or future-dated messages, replays, floods, and payloads that do not decode.

Cheap checks come first, so that a flood costs little: size, the envelope's shape, the
sender's connection identity where the subject names it (``Channel.sender_token``), the
directory, replays and the sender's token bucket all run before any signature is verified or
any box opened. A sender over its rate is dropped unverified; a token is spent only once the
signature verifies, so a forger naming someone else cannot use up that member's rate. A
channel may set a stricter rate (``Channel.rate_per_s``, ``burst``), with buckets of its own.

Replays: a receiver subscribed to several subjects may see one sender's messages slightly out
of order (nats-py dispatches each subscription in its own task), so the verifier keeps, per
sender, the highest nonce seen and the exact nonces seen within a window below it. A nonce
seen before, or older than the window, is a replay. Nonces older than the window are also
older than any message's time-to-live, so nothing legitimate is refused.
"""

from __future__ import annotations

import enum
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Generic, NamedTuple, TypeVar

import msgspec
import structlog

from bus.seal import Sealed, Sealer, SealError
from rfq.errors import DECODE_ERRORS
from rfq.identity import Directory, Identity, Role
from rfq.signing import SignedMessage, kind_of, sign_payload, signature_valid

T = TypeVar("T")

log = structlog.get_logger(__name__)

Wire = SignedMessage | Sealed
_wire_decoder = msgspec.msgpack.Decoder(Wire)
_signed_decoder = msgspec.msgpack.Decoder(SignedMessage)
_encoder = msgspec.msgpack.Encoder()

Clock = Callable[[], float]
MAX_LOGGED_KEYS = 1024
"""(reason, sender) pairs whose first drop is logged as a warning; the claimed sender of a
message that fails early is anyone's guess, so the set must not grow without bound."""


class DropReason(enum.StrEnum):
    OVERSIZED = "oversized"
    MALFORMED = "malformed"
    NOT_FOR_ME = "not_for_me"
    UNDECRYPTABLE = "undecryptable"
    SENDER_MISMATCH = "sender_mismatch"
    WRONG_NETWORK = "wrong_network"
    UNKNOWN_SENDER = "unknown_sender"
    BAD_SIGNATURE = "bad_signature"
    UNEXPECTED_KIND = "unexpected_kind"
    WRONG_ROLE = "wrong_role"
    EXPIRED = "expired"
    FUTURE = "future"
    REPLAY = "replay"
    RATE_LIMITED = "rate_limited"
    BAD_PAYLOAD = "bad_payload"


@dataclass(frozen=True)
class Channel(Generic[T]):
    """What one subscription accepts: kinds, the roles allowed to send each, their decoder."""

    name: str
    decoder: msgspec.msgpack.Decoder[T]
    roles: Mapping[str, frozenset[Role]]
    max_bytes: int | None = None  # overrides the verifier's limit (blocks are big)
    rate_per_s: float | None = None  # a stricter per-sender rate of its own (with ``burst``)
    burst: int | None = None
    sender_token: int | None = None
    """Which dot-separated token of the subject names the publisher (the server's permissions
    let a member publish only under its own id there): a message claiming another sender is
    dropped before its signature is checked."""

    @classmethod
    def of(
        cls,
        name: str,
        union: object,
        roles: Mapping[str, Iterable[Role]],
        *,
        max_bytes: int | None = None,
        rate_per_s: float | None = None,
        burst: int | None = None,
        sender_token: int | None = None,
    ) -> Channel[T]:
        return cls(
            name=name,
            decoder=msgspec.msgpack.Decoder(union),
            roles={k: frozenset(v) for k, v in roles.items()},
            max_bytes=max_bytes,
            rate_per_s=rate_per_s,
            burst=burst,
            sender_token=sender_token,
        )


@dataclass(frozen=True)
class Received(Generic[T]):
    message: SignedMessage
    payload: T
    sealed: bool

    @property
    def sender(self) -> str:
        return self.message.sender


class Dropped(NamedTuple):
    """Why a message was refused; ``message`` is set when the signature was good. (A named
    tuple: a flood makes one per message, and it is several times cheaper than a dataclass.)"""

    reason: DropReason
    detail: str
    sender: str | None = None
    message: SignedMessage | None = None
    claimed: str | None = None
    """For an unknown sender, the id the message claims (unproven: nothing vouches for it)."""


class Outbox:
    """Signs (and seals) one member's outgoing payloads."""

    def __init__(
        self,
        identity: Identity,
        chain_id: str,
        *,
        sealer: Sealer | None = None,
        ttl_s: float = 30.0,
        clock: Clock = time.time,
    ) -> None:
        self.identity = identity
        self.chain_id = chain_id
        self.sealer = sealer
        self.ttl_s = ttl_s
        self.clock = clock
        self._last_nonce = 0

    def next_nonce(self) -> int:
        self._last_nonce = max(self._last_nonce + 1, int(self.clock() * 1_000_000))
        return self._last_nonce

    @property
    def last_nonce(self) -> int:
        """The nonce of the last message signed (0: none yet): it tells whether anything was."""
        return self._last_nonce

    def sign(self, payload: msgspec.Struct, *, ttl_s: float | None = None) -> SignedMessage:
        now_ms = int(self.clock() * 1000)
        return sign_payload(
            self.identity,
            payload,
            chain_id=self.chain_id,
            nonce=self.next_nonce(),
            timestamp_ms=now_ms,
            expires_ms=now_ms + int((ttl_s if ttl_s is not None else self.ttl_s) * 1000),
        )

    def wire(self, signed: SignedMessage, *, seal_to: Iterable[str] | None = None) -> bytes:
        if seal_to is None:
            return _encoder.encode(signed)
        if self.sealer is None:
            raise SealError("this outbox has no sealer")
        return _encoder.encode(self.sealer.seal(_encoder.encode(signed), seal_to))

    def encode(
        self,
        payload: msgspec.Struct,
        *,
        seal_to: Iterable[str] | None = None,
        ttl_s: float | None = None,
    ) -> bytes:
        return self.wire(self.sign(payload, ttl_s=ttl_s), seal_to=seal_to)


@dataclass
class _Bucket:
    """A token bucket: ``rate`` tokens a second, at most ``burst`` saved up."""

    rate: float
    burst: float
    tokens: float
    refilled: float

    def has_token(self, now: float) -> bool:
        self.tokens = min(self.burst, self.tokens + max(now - self.refilled, 0.0) * self.rate)
        self.refilled = now
        return self.tokens >= 1.0


@dataclass
class _SenderState:
    high: int = 0
    seen: set[int] = field(default_factory=set)
    order: deque[int] = field(default_factory=deque)
    buckets: dict[str, _Bucket] = field(default_factory=dict)


class Verifier:
    """Opens and checks incoming envelopes for one member; shared by all its subscriptions."""

    def __init__(
        self,
        directory: Directory,
        chain_id: str,
        *,
        sealer: Sealer | None = None,
        clock: Clock = time.time,
        max_bytes: int = 256 * 1024,
        replay_window_s: float = 60.0,
        max_future_s: float = 5.0,
        rate_per_s: float = 2000.0,
        burst: int = 4000,
        peer: str = "",
    ) -> None:
        self.directory = directory
        self.chain_id = chain_id
        self.sealer = sealer
        self.clock = clock
        self.max_bytes = max_bytes
        self.window = int(replay_window_s * 1_000_000)
        self.max_future_ms = int(max_future_s * 1000)
        self.rate_per_s = rate_per_s
        self.burst = burst
        self.peer = peer
        self.drops: Counter[str] = Counter()
        self.accepted = 0
        self._senders: dict[str, _SenderState] = {}
        self._logged: set[tuple[str, str | None]] = set()

    def _drop(
        self,
        reason: DropReason,
        detail: str,
        channel: str,
        sender: str | None = None,
        message: SignedMessage | None = None,
        claimed: str | None = None,
    ) -> Dropped:
        self.drops[reason] += 1
        count = self.drops[reason]
        key = (reason.value, sender)
        if key not in self._logged and len(self._logged) < MAX_LOGGED_KEYS:
            self._logged.add(key)
            level = log.warning
        elif count & (count - 1) == 0:  # powers of two: a flood shows in the log, not floods it
            level = log.info
        else:
            return Dropped(reason, detail, sender, message, claimed)
        level(
            "message_dropped",
            reason=reason.value,
            detail=detail,
            sender=sender,
            channel=channel,
            peer=self.peer,
            count=self.drops[reason],
        )
        return Dropped(reason, detail, sender, message, claimed)

    def open(
        self, data: bytes, channel: Channel[T], *, subject: str | None = None
    ) -> Received[T] | Dropped:
        """Check one message against every rule; never raises on any input. ``subject`` is
        where it was published (checked against ``channel.sender_token``)."""
        try:
            return self._open(data, channel, subject)
        except Exception as exc:  # a bug must not take the subscriber loop down
            return self._drop(
                DropReason.MALFORMED, f"unexpected {type(exc).__name__}", channel.name
            )

    def _bucket(self, state: _SenderState, channel: Channel[T], now: float) -> _Bucket:
        key = channel.name if channel.rate_per_s is not None else ""
        bucket = state.buckets.get(key)
        if bucket is None:
            rate = min(channel.rate_per_s or self.rate_per_s, self.rate_per_s)
            burst = float(min(channel.burst or self.burst, self.burst))
            bucket = state.buckets[key] = _Bucket(rate, burst, burst, now)
        return bucket

    def _cheap(
        self, claimed: str, nonce: int | None, channel: Channel[T], subject: str | None
    ) -> Dropped | tuple[_SenderState, _Bucket]:
        """The checks that cost no cryptography, by the sender the message claims: its
        connection identity, the directory, replays and its rate."""
        name = channel.name
        if channel.sender_token is not None and subject is not None:
            parts = subject.split(".")
            publisher = parts[channel.sender_token] if channel.sender_token < len(parts) else ""
            if publisher != claimed:
                return self._drop(
                    DropReason.SENDER_MISMATCH,
                    f"published as {publisher!r}, claims {claimed!r}",
                    name,
                    publisher or None,
                )
        state = self._senders.get(claimed)
        if state is None:
            if claimed not in self.directory:
                return self._drop(
                    DropReason.UNKNOWN_SENDER, "not in the directory", name, claimed=claimed
                )
            state = self._senders[claimed] = _SenderState()
        if nonce is not None and (nonce in state.seen or nonce <= state.high - self.window):
            return self._drop(DropReason.REPLAY, "nonce seen before", name, claimed)
        now = self.clock()
        bucket = state.buckets.get(channel.name if channel.rate_per_s is not None else "")
        if bucket is None:
            bucket = self._bucket(state, channel, now)
        if not bucket.has_token(now):
            return self._drop(DropReason.RATE_LIMITED, "sender over its rate", name, claimed)
        return state, bucket

    def _open(self, data: bytes, channel: Channel[T], subject: str | None) -> Received[T] | Dropped:
        name = channel.name
        if len(data) > (channel.max_bytes or self.max_bytes):
            return self._drop(DropReason.OVERSIZED, f"{len(data)} bytes", name)
        try:
            outer = _wire_decoder.decode(data)
        except DECODE_ERRORS as exc:
            return self._drop(DropReason.MALFORMED, str(exc)[:120], name)
        sealed = isinstance(outer, Sealed)
        if isinstance(outer, Sealed):
            if self.sealer is None or not self.sealer.is_recipient(outer):
                return self._drop(DropReason.NOT_FOR_ME, "sealed to others", name, outer.sender)
            if outer.sender not in self.directory:
                return self._drop(
                    DropReason.UNKNOWN_SENDER, "sealed by a stranger", name, claimed=outer.sender
                )
            cheap = self._cheap(outer.sender, None, channel, subject)
            if isinstance(cheap, Dropped):
                return cheap
            try:
                inner = _signed_decoder.decode(self.sealer.open(outer))
            except SealError as exc:
                return self._drop(DropReason.UNDECRYPTABLE, str(exc), name, outer.sender)
            except DECODE_ERRORS as exc:
                return self._drop(DropReason.MALFORMED, str(exc)[:120], name, outer.sender)
            if inner.sender != outer.sender:
                return self._drop(
                    DropReason.SENDER_MISMATCH,
                    f"sealed by {outer.sender}, signed by {inner.sender}",
                    name,
                    outer.sender,
                )
            message = inner
        else:
            message = outer
        sender = message.sender
        if message.chain_id != self.chain_id:
            return self._drop(DropReason.WRONG_NETWORK, message.chain_id[:40], name, sender)
        cheap = self._cheap(sender, message.nonce, channel, subject)
        if isinstance(cheap, Dropped):
            return cheap
        state, bucket = cheap
        member = self.directory.get(sender)
        if member is None:
            return self._drop(
                DropReason.UNKNOWN_SENDER, "not in the directory", name, claimed=sender
            )
        if not signature_valid(message, self.directory):
            return self._drop(DropReason.BAD_SIGNATURE, "signature does not verify", name, sender)
        bucket.tokens -= 1.0  # only a verified message spends the sender's rate
        allowed = channel.roles.get(message.kind)
        if allowed is None:
            return self._drop(
                DropReason.UNEXPECTED_KIND, f"{message.kind!r} on {name}", name, sender, message
            )
        if member.role not in allowed:
            return self._drop(
                DropReason.WRONG_ROLE,
                f"a {member.role} may not send {message.kind!r}",
                name,
                sender,
                message,
            )
        now_ms = int(self.clock() * 1000)
        if now_ms > message.expires_ms:
            return self._drop(DropReason.EXPIRED, "past its expiry", name, sender, message)
        if message.timestamp_ms > now_ms + self.max_future_ms:
            return self._drop(DropReason.FUTURE, "timestamp ahead of our clock", name, sender)
        try:
            payload = channel.decoder.decode(message.body)
        except DECODE_ERRORS as exc:
            return self._drop(DropReason.BAD_PAYLOAD, str(exc)[:160], name, sender, message)
        if not isinstance(payload, msgspec.Struct) or kind_of(payload) != message.kind:
            return self._drop(
                DropReason.BAD_PAYLOAD, "payload kind differs from envelope", name, sender, message
            )
        self._remember(state, message.nonce)
        self.accepted += 1
        return Received(message, payload, sealed)

    def _remember(self, state: _SenderState, nonce: int) -> None:
        state.seen.add(nonce)
        state.order.append(nonce)
        state.high = max(state.high, nonce)
        floor = state.high - self.window
        while state.order and state.order[0] <= floor:
            state.seen.discard(state.order.popleft())
