"""QBFT / IBFT 2.0 consensus for one height, as a pure state machine driven by an I/O shell.

``QbftInstance`` (alias ``HeightState``) is the only mutable object of the ledger core and
does no I/O: the shell feeds it envelope-verified ``SignedMessage``s (``handle``), timer
expiries (``on_timeout``) and ``start()``, and carries out the actions it returns:
``Broadcast``, ``ScheduleTimeout``, ``Decide``, ``Evidence``, ``Reject`` and ``Defer``.

The protocol (Moniz, "The Istanbul BFT Consensus Algorithm", 2020; ConsenSys QBFT spec):

1. Round ``r``'s proposer (``proposer_for(height, r)``) broadcasts a ``Proposal``. In round 0
   it is a fresh block; in round ``r > 0`` it carries a justification: a quorum of
   ``RoundChange``s for ``r`` and, if any of them reports a prepared block, the prepare
   certificate of the highest one, and the proposal must then be that block (re-proposed with
   only ``header.round`` replaced, see ``block.with_round``, which keeps its hash).
2. A validator in round ``r`` that accepts the proposal (right proposer, parent link, tx root,
   authority set, justification, and the shell's ``validate_block``: the re-execution that
   catches a state-root mismatch) broadcasts ``Prepare``. A justified proposal for a higher
   round moves the validator to that round first; a valid one for a past round is kept
   without a prepare (its block may still be decided by commits of that round).
3. On a quorum of matching ``Prepare``s for the accepted proposal of its current round, a
   validator locks (prepared round, block and certificate) and broadcasts ``Commit`` with its
   commit seal.
4. On a quorum of ``Commit``s for one (round, block hash) with valid seals, in any round, and
   the block known from a proposal it accepted (in any round: the hash leaves the round out),
   it decides: ``Decide(block with that round and those seals)``. Two authorities may decide
   copies of one block from different rounds (a late round-0 commit quorum, a round-1 one);
   the copies share the hash, so the chain agrees. A decided instance ignores everything
   after (immediate finality).
5. On its round's timeout (``round_timeout_ms * 2**round``, capped), a validator moves to
   ``r + 1`` and broadcasts ``RoundChange`` with its prepared round, block and certificate.
   On ``f + 1`` valid round changes for rounds above its own it jumps to the lowest round at
   least ``f + 1`` of them reached (one of them is honest) and broadcasts its own.

Safety with ``f`` Byzantine: two quorums share an honest authority, an honest authority
prepares one block per round, and a round-change quorum always contains an honest authority
locked on any block that may have been decided, which forces its re-proposal. Liveness with
``f`` crashed: the remaining ``n - f >= quorum`` authorities make every quorum, and the
exponential timeouts eventually outlast the network delay.

Own messages are applied locally when they are signed; the shell need not loop them back
(if it does, they are recognised as duplicates). Messages for a later height come back as
``Defer`` for the shell to buffer (in a ``FutureBuffer``, which bounds what each authority
may have waiting and drops everyone else's); earlier heights are ignored. Nothing a peer sends makes
``handle`` raise: invalid input comes back as ``Reject`` with a reason.
"""

from __future__ import annotations

import enum
import itertools
from collections import Counter, deque
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated

import msgspec

from rfq.errors import DECODE_ERRORS, RfqError
from rfq.identity import Directory, Identity
from rfq.ledger.block import (
    Block,
    BlockHeader,
    CommitSeal,
    authority_set_hash,
    make_seal,
    max_faulty,
    proposer_for,
    quorum,
    seal_valid,
    sorted_authorities,
    verify_header_link,
    verify_tx_root,
    with_round,
    with_seals,
)
from rfq.signing import SignedMessage, kind_of, signature_valid

DEFAULT_ROUND_TIMEOUT_MS = 2000
"""Round 0's timeout; the genesis ``NetworkParams.round_timeout_ms`` has the same default."""
DEFAULT_MAX_TIMEOUT_MS = 10 * 60 * 1000
"""Cap on the exponential timeout: past it, rounds last ten minutes each."""
DEFAULT_MAX_ROUND = 10_000
"""Rounds above this are refused outright (no honest network ever gets there)."""
DEFAULT_LOOKAHEAD_ROUNDS = 10
"""How far above its round an instance stores votes; further ones only count for f + 1."""
DEFAULT_HEIGHTS_AHEAD = 4
"""How many heights above the one being decided a ``FutureBuffer`` holds messages for."""
DEFAULT_FUTURE_PER_SENDER = 64
"""Messages one authority may have waiting in a ``FutureBuffer`` (oldest evicted first)."""
DEFAULT_FUTURE_BYTES_PER_SENDER = 16 * 1024 * 1024
"""Body bytes one authority may have waiting in a ``FutureBuffer`` (two maximal proposals)."""
HASH_BYTES = 32

BlockHash = Annotated[bytes, msgspec.Meta(min_length=HASH_BYTES, max_length=HASH_BYTES)]
"""A SHA-256 block hash: a vote naming anything longer is malformed (and not kept)."""
SealBytes = Annotated[bytes, msgspec.Meta(max_length=128)]


class ConsensusError(RfqError):
    """The shell misused an instance (never raised for anything a peer sends)."""


# --------------------------------------------------------------------------------------------
# Messages: payloads of SignedMessage on ``otc.ibft.<height>``


class _Msg(msgspec.Struct, frozen=True, array_like=True, forbid_unknown_fields=True):
    pass


class Justification(_Msg, frozen=True):
    """Why a proposal for round ``r > 0`` is allowed: a quorum of signed round changes for
    ``r``, plus the prepare certificate of the highest prepared block among them (if any)."""

    round_changes: tuple[SignedMessage, ...]
    prepares: tuple[SignedMessage, ...] = ()


class Proposal(_Msg, frozen=True, tag="ibft_proposal"):
    """The round's proposer offers ``block`` (unsealed; ``block.header.round == round``)."""

    height: int
    round: int
    block: Block
    justification: Justification | None = None


class Prepare(_Msg, frozen=True, tag="ibft_prepare"):
    height: int
    round: int
    block_hash: BlockHash


class Commit(_Msg, frozen=True, tag="ibft_commit"):
    """``seal`` is the sender's commit-seal signature over ``commit_digest(block_hash, round)``."""

    height: int
    round: int
    block_hash: BlockHash
    seal: SealBytes


class RoundChange(_Msg, frozen=True, tag="ibft_round_change"):
    """The sender moved to ``round``; it carries its lock so the next proposer must honour it.

    ``prepared`` is the quorum of signed ``Prepare``s for ``prepared_block`` in
    ``prepared_round`` (all three are empty/None when the sender never prepared).
    """

    height: int
    round: int
    prepared_round: int | None = None
    prepared_block: Block | None = None
    prepared: tuple[SignedMessage, ...] = ()


ConsensusMessage = Proposal | Prepare | Commit | RoundChange
PROPOSAL_KIND = "ibft_proposal"
PREPARE_KIND = "ibft_prepare"
COMMIT_KIND = "ibft_commit"
ROUND_CHANGE_KIND = "ibft_round_change"
CONSENSUS_KINDS = frozenset({PROPOSAL_KIND, PREPARE_KIND, COMMIT_KIND, ROUND_CHANGE_KIND})
EQUIVOCATION_KINDS = frozenset({PROPOSAL_KIND, PREPARE_KIND, COMMIT_KIND})

consensus_decoder: msgspec.msgpack.Decoder[ConsensusMessage] = msgspec.msgpack.Decoder(
    ConsensusMessage
)

Signer = Callable[[ConsensusMessage], SignedMessage]


def decode_consensus(message: SignedMessage) -> ConsensusMessage:
    """The payload of ``message``; ``msgspec`` errors on bad bytes, ``ValueError`` on a kind
    that differs from the envelope's."""
    payload = consensus_decoder.decode(message.body)
    if kind_of(payload) != message.kind:
        raise ValueError(f"payload is {kind_of(payload)!r}, envelope says {message.kind!r}")
    return payload


def _voted_hash(payload: ConsensusMessage) -> bytes | None:
    if isinstance(payload, Proposal):
        return payload.block.hash()
    if isinstance(payload, Prepare | Commit):
        return payload.block_hash
    return None


def vote_of(payload: ConsensusMessage) -> tuple[str, int, int, bytes] | None:
    """(kind, height, round, block hash) of a proposal, prepare or commit: what an authority
    must never sign twice with two different hashes (``verify_evidence``); None otherwise.
    A node records it durably before signing, and hands what it signed at a height back to
    that height's instance after a restart (``signed_before``)."""
    voted = _voted_hash(payload)
    if voted is None:
        return None
    kind = str(type(payload).__struct_config__.tag)
    return kind, payload.height, payload.round, voted


def round_timeout_ms(
    round: int,
    base_ms: int = DEFAULT_ROUND_TIMEOUT_MS,
    max_ms: int = DEFAULT_MAX_TIMEOUT_MS,
) -> int:
    """``base_ms * 2**round``, capped at ``max_ms``."""
    return min(base_ms << min(max(round, 0), 62), max_ms)


# --------------------------------------------------------------------------------------------
# Actions: what the shell must do


class RejectReason(enum.StrEnum):
    UNEXPECTED_KIND = "unexpected_kind"
    WRONG_CHAIN = "wrong_chain"
    MALFORMED = "malformed"
    NOT_AUTHORITY = "not_authority"
    BAD_ROUND = "bad_round"
    WRONG_PROPOSER = "wrong_proposer"
    INVALID_BLOCK = "invalid_block"
    BLOCK_REJECTED = "block_rejected"
    BAD_JUSTIFICATION = "bad_justification"
    BAD_CERTIFICATE = "bad_certificate"
    BAD_SEAL = "bad_seal"
    INTERNAL = "internal"


class Broadcast(msgspec.Struct, frozen=True):
    """Publish ``message`` to every authority of this height (and the observers)."""

    message: SignedMessage


class ScheduleTimeout(msgspec.Struct, frozen=True):
    """Call ``on_timeout(round)`` after ``delay_ms``; timers of other rounds may be dropped."""

    height: int
    round: int
    delay_ms: int


class Decide(msgspec.Struct, frozen=True):
    """``block`` is final, with a quorum of commit seals; persist, publish, start ``height+1``."""

    block: Block

    @property
    def height(self) -> int:
        return self.block.header.height


class Evidence(msgspec.Struct, frozen=True):
    """``msg_a`` and ``msg_b``: one authority signed two conflicting statements (same kind,
    height and round; different block hashes). Both are signed: anyone can re-check them with
    ``verify_evidence`` (what governance does before evicting ``offender``)."""

    msg_a: SignedMessage
    msg_b: SignedMessage

    @property
    def offender(self) -> str:
        return self.msg_a.sender


class Reject(msgspec.Struct, frozen=True):
    """``message`` was refused; ``reason`` is a stable code for counting, ``detail`` prose."""

    reason: RejectReason
    message: SignedMessage
    detail: str = ""


class Defer(msgspec.Struct, frozen=True):
    """``message`` is for a later ``height``: buffer it for that height's instance (and it
    hints that this node is behind and should sync)."""

    message: SignedMessage
    height: int


Action = Broadcast | ScheduleTimeout | Decide | Evidence | Reject | Defer


class _Invalid(Exception):
    """Internal: a check failed; turned into ``Reject`` at the boundary."""

    def __init__(self, reason: RejectReason, detail: str) -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(detail)


def verify_evidence(
    msg_a: SignedMessage,
    msg_b: SignedMessage,
    directory: Directory,
    authorities: Iterable[str] | None = None,
) -> str | None:
    """``None`` when the two messages prove equivocation, else what is wrong with the claim.

    Pure, for governance: both signatures valid, same sender (an authority when
    ``authorities`` is given), same chain, same kind among proposal/prepare/commit, same
    height and round, different block hashes.
    """
    if msg_a.sender != msg_b.sender:
        return "signed by different members"
    if authorities is not None and msg_a.sender not in set(authorities):
        return f"{msg_a.sender!r} is not an authority"
    if msg_a.chain_id != msg_b.chain_id:
        return "different chains"
    if msg_a.kind != msg_b.kind or msg_a.kind not in EQUIVOCATION_KINDS:
        return f"kinds {msg_a.kind!r} and {msg_b.kind!r} cannot conflict"
    for m in (msg_a, msg_b):
        if not signature_valid(m, directory):
            return "a signature does not verify"
    try:
        a, b = decode_consensus(msg_a), decode_consensus(msg_b)
    except (*DECODE_ERRORS, ValueError) as exc:
        return f"a payload does not decode ({exc})"
    if not isinstance(a, type(b)):
        return "different payload types"
    if (a.height, a.round) != (b.height, b.round):
        return "different height or round"
    if _voted_hash(a) == _voted_hash(b):
        return "both name the same block"
    return None


# --------------------------------------------------------------------------------------------
# The per-height state machine


class _Candidate(msgspec.Struct):
    """An accepted proposal of one round."""

    block: Block
    block_hash: bytes
    message: SignedMessage


class QbftInstance:
    """Consensus on the block at one height. Mutable, but deterministic and I/O free.

    ``identity`` is this node's key (``None``, or a non-authority, makes an observer that
    follows and decides but never signs or times out). ``signed_before`` holds what this
    node signed at this height before it restarted, by (kind, round): the block hash of each
    proposal, prepare and commit (``vote_of``); it never signs one of those again for
    another block, which would be equivocation (it may still move on to later rounds).
    ``validate_block`` re-executes a proposed block and returns a rejection reason or
    ``None``; ``make_block(round)`` builds this node's proposal (unsealed, ``header.round ==
    round``, on ``parent``); ``sign`` turns a payload into this node's ``SignedMessage``
    (e.g. ``bus.envelope.Outbox.sign``).

    The state transition behind ``validate_block`` must not depend on ``header.round``: a
    locked block is re-proposed in a later round with only its round replaced.
    """

    def __init__(
        self,
        *,
        height: int,
        authorities: Sequence[str],
        directory: Directory,
        identity: Identity | None,
        parent: BlockHeader,
        validate_block: Callable[[Block], str | None],
        make_block: Callable[[int], Block],
        sign: Signer,
        round_timeout_ms: int = DEFAULT_ROUND_TIMEOUT_MS,
        max_timeout_ms: int = DEFAULT_MAX_TIMEOUT_MS,
        max_round: int = DEFAULT_MAX_ROUND,
        lookahead_rounds: int = DEFAULT_LOOKAHEAD_ROUNDS,
        signed_before: Mapping[tuple[str, int], bytes] | None = None,
    ) -> None:
        if height != parent.height + 1:
            raise ConsensusError(f"height {height} does not follow parent {parent.height}")
        self.authorities = sorted_authorities(authorities)
        if not self.authorities:
            raise ConsensusError("an empty authority set cannot reach consensus")
        self.height = height
        self.parent = parent
        self.chain_id = parent.chain_id
        self.directory = directory
        self.identity = identity
        self.me: str | None = (
            identity.member_id
            if identity is not None and identity.member_id in self.authorities
            else None
        )
        self.n = len(self.authorities)
        self.f = max_faulty(self.n)
        self.quorum = quorum(self.n)
        self.set_hash = authority_set_hash(self.authorities)
        self._members = frozenset(self.authorities)
        self._validate_block = validate_block
        self._make_block = make_block
        self._sign = sign
        self.round_timeout_ms = round_timeout_ms
        self.max_timeout_ms = max_timeout_ms
        self.max_round = max_round
        self.lookahead_rounds = lookahead_rounds

        self.round = 0
        self.started = False
        self.decided: Block | None = None
        self.prepared_round: int | None = None
        self.prepared_block: Block | None = None
        self.prepared_cert: tuple[SignedMessage, ...] = ()

        # First signed statement per (kind, round, sender), for equivocation evidence.
        self._statements: dict[tuple[str, int, str], tuple[bytes, SignedMessage]] = {}
        self._evidenced: set[tuple[str, int, str]] = set()
        self._evidence: list[Action] = []
        self._accepted: dict[int, _Candidate] = {}
        self._prepares: dict[int, dict[str, tuple[bytes, SignedMessage]]] = {}
        self._commits: dict[int, dict[str, tuple[bytes, bytes]]] = {}
        self._round_changes: dict[int, dict[str, tuple[SignedMessage, RoundChange]]] = {}
        self._rc_high: dict[str, int] = {}
        self._proposed: set[int] = set()
        self._prepared_sent: set[int] = set()
        self._committed: set[int] = set()
        self._rc_sent: set[int] = set()
        self._verified: dict[SignedMessage, ConsensusMessage] = {}
        self._signed_before = dict(signed_before or {})

    # ---------------------------------------------------------------- public

    @property
    def is_validator(self) -> bool:
        return self.me is not None

    def proposer(self, round: int) -> str:
        return proposer_for(self.height, round, self.authorities)

    def timeout_for(self, round: int) -> int:
        return round_timeout_ms(round, self.round_timeout_ms, self.max_timeout_ms)

    def start(self) -> list[Action]:
        """Arm round 0's timer and, if this node is round 0's proposer, propose."""
        if self.started or self.decided is not None:
            return []
        self.started = True
        if self.me is None:
            return self._drain(self._progress())
        actions: list[Action] = [
            ScheduleTimeout(self.height, self.round, self.timeout_for(self.round))
        ]
        if self.round == 0 and self.proposer(0) == self.me and 0 not in self._proposed:
            actions += self._propose(0, self._fresh_block(0), None)
        actions += self._progress()
        return self._drain(actions)

    def on_timeout(self, round: int) -> list[Action]:
        """The timer of ``round`` fired: if still in it, move to ``round + 1``."""
        if self.decided is not None or self.me is None or round != self.round:
            return []
        if round + 1 > self.max_round:
            return []
        actions = self._enter_round(round + 1, announce=True)
        actions += self._progress()
        return self._drain(actions)

    def handle(
        self, message: SignedMessage, payload: ConsensusMessage | None = None
    ) -> list[Action]:
        """Consume one envelope-verified message (``payload`` if the shell decoded it)."""
        try:
            return self._drain(self._handle(message, payload))
        except _Invalid as exc:
            return self._drain([Reject(exc.reason, message, exc.detail)])
        except Exception as exc:  # a bug must not take the node down; the shell logs it
            self._evidence.clear()
            return [Reject(RejectReason.INTERNAL, message, f"{type(exc).__name__}: {exc}")]

    # ---------------------------------------------------------------- dispatch

    def _drain(self, actions: list[Action]) -> list[Action]:
        if self._evidence:
            actions = self._evidence + actions
            self._evidence = []
        return actions

    def _handle(self, message: SignedMessage, payload: ConsensusMessage | None) -> list[Action]:
        if message.kind not in CONSENSUS_KINDS:
            raise _Invalid(RejectReason.UNEXPECTED_KIND, f"kind {message.kind!r}")
        if message.chain_id != self.chain_id:
            raise _Invalid(RejectReason.WRONG_CHAIN, f"chain {message.chain_id!r}")
        if payload is None:
            try:
                payload = decode_consensus(message)
            except (*DECODE_ERRORS, ValueError) as exc:
                raise _Invalid(RejectReason.MALFORMED, str(exc)[:160]) from None
        elif not isinstance(payload, Proposal | Prepare | Commit | RoundChange) or (
            kind_of(payload) != message.kind
        ):
            raise _Invalid(RejectReason.MALFORMED, "payload does not match the envelope kind")
        if payload.height > self.height:
            return [Defer(message, payload.height)]
        if payload.height < self.height:
            return []
        if message.sender not in self._members:
            raise _Invalid(RejectReason.NOT_AUTHORITY, f"{message.sender!r} is not an authority")
        if not 0 <= payload.round <= self.max_round:
            raise _Invalid(RejectReason.BAD_ROUND, f"round {payload.round}")
        if self.decided is not None:
            return []
        if isinstance(payload, Proposal):
            return self._on_proposal(message, payload)
        if isinstance(payload, Prepare):
            return self._on_prepare(message, payload)
        if isinstance(payload, Commit):
            return self._on_commit(message, payload)
        return self._on_round_change(message, payload)

    # ---------------------------------------------------------------- evidence

    def _note(self, kind: str, round: int, sender: str, voted: bytes, msg: SignedMessage) -> str:
        """Record a signed statement: ``"new"``, ``"same"`` or ``"conflict"`` (with evidence
        queued once per offence)."""
        key = (kind, round, sender)
        first = self._statements.get(key)
        if first is None:
            self._statements[key] = (voted, msg)
            return "new"
        if first[0] == voted:
            return "same"
        if key not in self._evidenced:
            self._evidenced.add(key)
            self._evidence.append(Evidence(first[1], msg))
        return "conflict"

    # ---------------------------------------------------------------- proposals

    def _on_proposal(self, msg: SignedMessage, p: Proposal) -> list[Action]:
        r = p.round
        if msg.sender != self.proposer(r):
            raise _Invalid(
                RejectReason.WRONG_PROPOSER,
                f"{msg.sender!r} is not round {r}'s proposer ({self.proposer(r)!r})",
            )
        block_hash = p.block.hash()
        far = self._too_far(r)  # beyond the lookahead: judged, but not kept as evidence
        if not far and self._note(PROPOSAL_KIND, r, msg.sender, block_hash, msg) != "new":
            return []
        if r in self._accepted:
            return []
        self._check_proposal(msg.sender, p)
        actions: list[Action] = []
        if r > self.round:
            actions += self._enter_round(r, announce=False)
        # A late proposal of a past round is kept, unprepared: a quorum may have committed it.
        self._accepted[r] = _Candidate(p.block, block_hash, msg)
        if r == self.round:
            actions += self._send_prepare(r, block_hash)
        actions += self._progress()
        return actions

    def _check_proposal(self, sender: str, p: Proposal) -> None:
        block, header = p.block, p.block.header
        if block.seals:
            raise _Invalid(RejectReason.INVALID_BLOCK, "a proposed block carries no seals")
        if header.height != self.height or header.round != p.round:
            raise _Invalid(
                RejectReason.INVALID_BLOCK,
                f"header is for height {header.height} round {header.round}",
            )
        problems = verify_header_link(self.parent, header)
        if header.authority_set_hash != self.set_hash:
            problems.append("authority_set_hash is not this height's authority set")
        if problems:
            raise _Invalid(RejectReason.INVALID_BLOCK, "; ".join(problems))
        if p.round == 0:
            if p.justification is not None:
                raise _Invalid(RejectReason.BAD_JUSTIFICATION, "round 0 needs no justification")
            fresh = True
        else:
            if p.justification is None:
                raise _Invalid(RejectReason.BAD_JUSTIFICATION, f"round {p.round} unjustified")
            fresh = self._check_justification(p.round, p.justification, block)
        if fresh and header.proposer != sender:
            raise _Invalid(
                RejectReason.INVALID_BLOCK, f"header names {header.proposer!r} as proposer"
            )
        problems = verify_tx_root(block)
        if problems:
            raise _Invalid(RejectReason.INVALID_BLOCK, "; ".join(problems))
        try:
            reason = self._validate_block(block)
        except Exception as exc:
            reason = f"validation raised {type(exc).__name__}: {exc}"
        if reason is not None:
            raise _Invalid(RejectReason.BLOCK_REJECTED, reason)

    def _check_justification(self, round: int, j: Justification, block: Block) -> bool:
        """Raise unless ``j`` justifies ``block`` in ``round``; True when any block may be
        proposed (no round change reported a prepared block)."""
        if len(j.round_changes) > self.n:
            raise _Invalid(RejectReason.BAD_JUSTIFICATION, "more round changes than authorities")
        senders: set[str] = set()
        best = -1
        best_hashes: set[bytes] = set()
        for m in j.round_changes:
            try:
                rc = self._verify_embedded(m, ROUND_CHANGE_KIND)
            except _Invalid as exc:
                raise _Invalid(RejectReason.BAD_JUSTIFICATION, exc.detail) from None
            if not isinstance(rc, RoundChange):
                raise _Invalid(RejectReason.BAD_JUSTIFICATION, "not a round change")
            if rc.height != self.height or rc.round != round:
                raise _Invalid(
                    RejectReason.BAD_JUSTIFICATION,
                    f"round change for height {rc.height} round {rc.round}",
                )
            if m.sender in senders:
                raise _Invalid(RejectReason.BAD_JUSTIFICATION, f"two round changes by {m.sender}")
            senders.add(m.sender)
            if rc.prepared_round is not None:
                if rc.prepared_block is None or not 0 <= rc.prepared_round < round:
                    raise _Invalid(RejectReason.BAD_JUSTIFICATION, "malformed prepared claim")
                h = rc.prepared_block.hash()
                if rc.prepared_round > best:
                    best, best_hashes = rc.prepared_round, {h}
                elif rc.prepared_round == best:
                    best_hashes.add(h)
        if len(senders) < self.quorum:
            raise _Invalid(
                RejectReason.BAD_JUSTIFICATION,
                f"{len(senders)} round changes, a quorum is {self.quorum}",
            )
        if best < 0:
            if j.prepares:
                raise _Invalid(RejectReason.BAD_JUSTIFICATION, "prepares but nothing prepared")
            return True
        try:
            cert_hash = self._verify_prepare_cert(j.prepares, best)
        except _Invalid as exc:
            raise _Invalid(RejectReason.BAD_JUSTIFICATION, exc.detail) from None
        if cert_hash not in best_hashes:
            raise _Invalid(
                RejectReason.BAD_JUSTIFICATION, "certificate is not for the highest prepared block"
            )
        if block.hash() != cert_hash:
            raise _Invalid(
                RejectReason.BAD_JUSTIFICATION,
                f"round {round} must re-propose the block prepared in round {best}",
            )
        return False

    def _verify_embedded(self, m: SignedMessage, kind: str) -> ConsensusMessage:
        """A message inside a certificate: same checks as the envelope's, cached."""
        if m.kind != kind:
            raise _Invalid(RejectReason.BAD_CERTIFICATE, f"{m.kind!r} where {kind!r} belongs")
        cached = self._verified.get(m)
        if cached is not None:
            return cached
        if m.chain_id != self.chain_id:
            raise _Invalid(RejectReason.BAD_CERTIFICATE, "certificate message from another chain")
        if m.sender not in self._members:
            raise _Invalid(RejectReason.BAD_CERTIFICATE, f"{m.sender!r} is not an authority")
        try:
            payload = decode_consensus(m)
        except (*DECODE_ERRORS, ValueError) as exc:
            raise _Invalid(RejectReason.BAD_CERTIFICATE, str(exc)[:160]) from None
        if not signature_valid(m, self.directory):
            raise _Invalid(RejectReason.BAD_CERTIFICATE, f"bad signature by {m.sender!r}")
        if len(self._verified) < 4096 and len(m.body) <= 4096:  # bounded: small ones only
            self._verified[m] = payload
        return payload

    def _verify_prepare_cert(self, msgs: Sequence[SignedMessage], round: int) -> bytes:
        """The block hash a quorum of distinct authorities prepared in ``round``; else raise."""
        if len(msgs) > self.n:
            raise _Invalid(RejectReason.BAD_CERTIFICATE, "more prepares than authorities")
        senders: set[str] = set()
        voted: bytes | None = None
        for m in msgs:
            p = self._verify_embedded(m, PREPARE_KIND)
            if not isinstance(p, Prepare):
                raise _Invalid(RejectReason.BAD_CERTIFICATE, "not a prepare")
            if p.height != self.height or p.round != round:
                raise _Invalid(
                    RejectReason.BAD_CERTIFICATE, f"prepare for height {p.height} round {p.round}"
                )
            if voted is None:
                voted = p.block_hash
            elif p.block_hash != voted:
                raise _Invalid(RejectReason.BAD_CERTIFICATE, "prepares for different blocks")
            if m.sender in senders:
                raise _Invalid(RejectReason.BAD_CERTIFICATE, f"two prepares by {m.sender!r}")
            senders.add(m.sender)
            if not self._too_far(round):  # as for far proposals: judged, not kept as evidence
                self._note(PREPARE_KIND, round, m.sender, p.block_hash, m)
        if voted is None or len(senders) < self.quorum:
            raise _Invalid(
                RejectReason.BAD_CERTIFICATE,
                f"{len(senders)} prepares, a quorum is {self.quorum}",
            )
        return voted

    # ---------------------------------------------------------------- votes

    def _too_far(self, round: int) -> bool:
        return round > self.round + self.lookahead_rounds

    def _on_prepare(self, msg: SignedMessage, p: Prepare) -> list[Action]:
        if self._too_far(p.round):
            return []
        if self._note(PREPARE_KIND, p.round, msg.sender, p.block_hash, msg) == "conflict":
            return []
        if p.round < self.round:
            return []
        votes = self._prepares.setdefault(p.round, {})
        if msg.sender in votes:
            return []
        votes[msg.sender] = (p.block_hash, msg)
        return self._progress()

    def _on_commit(self, msg: SignedMessage, c: Commit) -> list[Action]:
        if self._too_far(c.round):
            return []
        if self._note(COMMIT_KIND, c.round, msg.sender, c.block_hash, msg) == "conflict":
            return []
        votes = self._commits.setdefault(c.round, {})
        if msg.sender in votes:
            return []
        if not seal_valid(CommitSeal(msg.sender, c.seal), c.block_hash, c.round, self.directory):
            raise _Invalid(RejectReason.BAD_SEAL, f"commit seal by {msg.sender!r} does not verify")
        votes[msg.sender] = (c.block_hash, c.seal)
        return self._progress()

    def _on_round_change(self, msg: SignedMessage, rc: RoundChange) -> list[Action]:
        r = rc.round
        if r == 0:
            raise _Invalid(RejectReason.BAD_ROUND, "no round change into round 0")
        if r < self.round:
            return []
        far = self._too_far(r)  # beyond the lookahead only the round counts (f + 1 rule)
        if far and self._rc_high.get(msg.sender, -1) >= r:
            return []
        if not far and msg.sender in self._round_changes.get(r, {}):
            return []
        self._check_round_change(rc)
        self._rc_high[msg.sender] = max(self._rc_high.get(msg.sender, -1), r)
        if not far:
            self._round_changes.setdefault(r, {})[msg.sender] = (msg, rc)
        return self._progress()

    def _check_round_change(self, rc: RoundChange) -> None:
        if rc.prepared_round is None:
            if rc.prepared_block is not None or rc.prepared:
                raise _Invalid(RejectReason.BAD_CERTIFICATE, "prepared data without a round")
            return
        block = rc.prepared_block
        if block is None or not 0 <= rc.prepared_round < rc.round:
            raise _Invalid(RejectReason.BAD_CERTIFICATE, "malformed prepared claim")
        if block.header.height != self.height or block.header.round != rc.prepared_round:
            raise _Invalid(RejectReason.BAD_CERTIFICATE, "prepared block is for another round")
        if self._verify_prepare_cert(rc.prepared, rc.prepared_round) != block.hash():
            raise _Invalid(RejectReason.BAD_CERTIFICATE, "certificate is for another block")
        # The txs ride outside the header hash: check them, unless they are (byte for byte)
        # those of the proposal this node accepted in that round, whose root it already knows.
        known = self._accepted.get(rc.prepared_round)
        same = (
            known is not None and known.block_hash == block.hash() and known.block.txs == block.txs
        )
        if not same and verify_tx_root(block):
            raise _Invalid(RejectReason.BAD_CERTIFICATE, "prepared block's txs do not match")

    # ---------------------------------------------------------------- progress

    def _progress(self) -> list[Action]:
        """Apply every rule whose condition now holds, until none does."""
        actions: list[Action] = []
        while self.decided is None:
            decided = self._try_decide()
            if decided is not None:
                actions.append(decided)
                break
            target = self._f_plus_one_round()
            if target is not None:
                actions += self._enter_round(target, announce=True)
                continue
            step = self._try_propose() or self._try_commit()
            if not step:
                break
            actions += step
        return actions

    def _try_decide(self) -> Decide | None:
        for r, votes in self._commits.items():
            counts = Counter(h for h, _ in votes.values())
            for voted, count in counts.items():
                if count < self.quorum:
                    continue
                block = self._known_block(voted)
                if block is None:
                    continue
                seals = [CommitSeal(who, s) for who, (h, s) in votes.items() if h == voted]
                self.decided = with_seals(with_round(block, r), seals)
                return Decide(self.decided)
        return None

    def _known_block(self, block_hash: bytes) -> Block | None:
        """A block with this hash that this node accepted, in any round (the hash leaves the
        round out, so the round-0 proposal of a block decided in round 1 will do)."""
        for cand in self._accepted.values():
            if cand.block_hash == block_hash:
                return cand.block
        return None

    def _f_plus_one_round(self) -> int | None:
        higher = sorted((r for r in self._rc_high.values() if r > self.round), reverse=True)
        if len(higher) <= self.f:
            return None
        return higher[self.f]

    def _try_propose(self) -> list[Action]:
        r = self.round
        if self.me is None or r == 0 or r in self._proposed or self.proposer(r) != self.me:
            return []
        rcs = self._round_changes.get(r, {})
        if len(rcs) < self.quorum:
            return []
        ordered = [rcs[s] for s in sorted(rcs)]
        round_changes = tuple(m for m, _ in ordered)
        locks = [
            (rc.prepared_round, rc.prepared_block, rc.prepared)
            for _, rc in ordered
            if rc.prepared_round is not None and rc.prepared_block is not None
        ]
        if not locks:
            return self._propose(r, self._fresh_block(r), Justification(round_changes))
        _, block, cert = max(locks, key=lambda lock: lock[0])  # the highest prepared round
        return self._propose(r, with_round(block, r), Justification(round_changes, cert))

    def _try_commit(self) -> list[Action]:
        r = self.round
        cand = self._accepted.get(r)
        if self.me is None or cand is None or r in self._committed:
            return []
        votes = self._prepares.get(r, {})
        cert = tuple(m for h, m in votes.values() if h == cand.block_hash)
        if len(cert) < self.quorum:
            return []
        self._committed.add(r)
        self.prepared_round, self.prepared_block, self.prepared_cert = r, cand.block, cert
        if self.identity is None or not self._may_sign(COMMIT_KIND, r, cand.block_hash):
            return []
        seal = make_seal(self.identity, cand.block_hash, r)
        commit = Commit(self.height, r, cand.block_hash, seal.signature)
        signed = self._sign(commit)
        self._note(COMMIT_KIND, r, self.me, cand.block_hash, signed)
        self._commits.setdefault(r, {})[self.me] = (cand.block_hash, seal.signature)
        return [Broadcast(signed)]

    # ---------------------------------------------------------------- own messages

    def _fresh_block(self, round: int) -> Block:
        block = self._make_block(round)
        h = block.header
        if h.height != self.height or h.round != round or h.proposer != self.me or block.seals:
            raise ConsensusError(
                f"make_block({round}) built height {h.height} round {h.round} by {h.proposer!r}"
            )
        return block

    def _may_sign(self, kind: str, round: int, block_hash: bytes) -> bool:
        """False when this node signed ``kind`` at ``round`` for another block before it
        restarted (signing this one would be equivocation)."""
        before = self._signed_before.get((kind, round))
        return before is None or before == block_hash

    def _propose(self, round: int, block: Block, j: Justification | None) -> list[Action]:
        if self.me is None:
            return []
        self._proposed.add(round)
        if not self._may_sign(PROPOSAL_KIND, round, block.hash()):
            return []  # proposed another block at this round before a restart
        signed = self._sign(Proposal(self.height, round, block, j))
        block_hash = block.hash()
        self._note(PROPOSAL_KIND, round, self.me, block_hash, signed)
        self._accepted[round] = _Candidate(block, block_hash, signed)
        return [Broadcast(signed), *self._send_prepare(round, block_hash)]

    def _send_prepare(self, round: int, block_hash: bytes) -> list[Action]:
        if self.me is None or round in self._prepared_sent:
            return []
        self._prepared_sent.add(round)
        if not self._may_sign(PREPARE_KIND, round, block_hash):
            return []
        signed = self._sign(Prepare(self.height, round, block_hash))
        self._note(PREPARE_KIND, round, self.me, block_hash, signed)
        self._prepares.setdefault(round, {})[self.me] = (block_hash, signed)
        return [Broadcast(signed)]

    def _enter_round(self, round: int, *, announce: bool) -> list[Action]:
        """Move to ``round`` (higher than the current one); validators arm its timer and,
        when ``announce``, broadcast a round change carrying their lock."""
        self.round = round
        for table in (self._prepares, self._round_changes):
            for old in [r for r in table if r < round]:
                del table[old]
        if self.me is None:
            return []
        actions: list[Action] = [ScheduleTimeout(self.height, round, self.timeout_for(round))]
        if announce and round not in self._rc_sent:
            self._rc_sent.add(round)
            rc = RoundChange(
                self.height, round, self.prepared_round, self.prepared_block, self.prepared_cert
            )
            signed = self._sign(rc)
            self._round_changes.setdefault(round, {})[self.me] = (signed, rc)
            self._rc_high[self.me] = max(self._rc_high.get(self.me, -1), round)
            actions.append(Broadcast(signed))
        return actions


HeightState = QbftInstance


# --------------------------------------------------------------------------------------------
# Messages for heights not reached yet


class FutureDrop(enum.StrEnum):
    """Why a ``FutureBuffer`` refused (or later evicted) a message."""

    NOT_AUTHORITY = "not_authority"
    PASSED = "passed"
    TOO_FAR = "too_far"
    OVERSIZED = "oversized"
    EVICTED = "evicted"


@dataclass(frozen=True)
class _Held:
    seq: int
    height: int
    message: SignedMessage
    payload: ConsensusMessage

    @property
    def size(self) -> int:
        return len(self.message.body)


class FutureBuffer:
    """Consensus messages for heights above the one being decided, held until it is reached.

    Bounded, so that nothing a peer sends grows it without limit: only members of the current
    authority set are held (a member that becomes an authority later may lose its first few
    messages; the others' quorum, its round changes and catch-up cover for that), only for at
    most ``heights_ahead`` heights above ``current``, and at most ``per_sender`` messages and
    ``bytes_per_sender`` body bytes per sender, its oldest evicted first. Memory is therefore
    at most ``authorities * bytes_per_sender`` (times two: the decoded payload is kept too).
    Refusals are counted by reason in ``drops``. Pure: the shell passes the heights in.
    """

    def __init__(
        self,
        *,
        heights_ahead: int = DEFAULT_HEIGHTS_AHEAD,
        per_sender: int = DEFAULT_FUTURE_PER_SENDER,
        bytes_per_sender: int = DEFAULT_FUTURE_BYTES_PER_SENDER,
    ) -> None:
        if heights_ahead < 1 or per_sender < 1 or bytes_per_sender < 1:
            raise ConsensusError("a future buffer needs room for at least one message")
        self.heights_ahead = heights_ahead
        self.per_sender = per_sender
        self.bytes_per_sender = bytes_per_sender
        self.drops: Counter[str] = Counter()
        self._held: dict[str, deque[_Held]] = {}
        self._bytes: dict[str, int] = {}
        self._seq = itertools.count()

    def __len__(self) -> int:
        return sum(len(q) for q in self._held.values())

    @property
    def bytes_held(self) -> int:
        return sum(self._bytes.values())

    def held_by(self, sender: str) -> int:
        return len(self._held.get(sender, ()))

    def count_at(self, height: int) -> int:
        return sum(1 for q in self._held.values() for h in q if h.height == height)

    def heights(self) -> set[int]:
        return {h.height for q in self._held.values() for h in q}

    def add(
        self,
        message: SignedMessage,
        payload: ConsensusMessage,
        *,
        current: int,
        authorities: Collection[str],
    ) -> FutureDrop | None:
        """Hold ``message`` (for ``payload.height``) while ``current`` is being decided;
        ``None`` when held, else why not. Holding it may evict the sender's oldest."""
        sender, height = message.sender, payload.height
        reason: FutureDrop | None = None
        if sender not in authorities:
            reason = FutureDrop.NOT_AUTHORITY
        elif height <= current:
            reason = FutureDrop.PASSED
        elif height > current + self.heights_ahead:
            reason = FutureDrop.TOO_FAR
        elif len(message.body) > self.bytes_per_sender:
            reason = FutureDrop.OVERSIZED
        if reason is not None:
            self.drops[reason] += 1
            return reason
        queue = self._held.setdefault(sender, deque())
        held = _Held(next(self._seq), height, message, payload)
        queue.append(held)
        self._bytes[sender] = self._bytes.get(sender, 0) + held.size
        while len(queue) > self.per_sender or self._bytes[sender] > self.bytes_per_sender:
            self._forget(sender, queue.popleft())
            self.drops[FutureDrop.EVICTED] += 1
        return None

    def take(self, height: int) -> list[tuple[SignedMessage, ConsensusMessage]]:
        """The messages held for ``height``, in arrival order, and forget everything at or
        below it (those heights are decided)."""
        taken: list[_Held] = []
        for sender, queue in list(self._held.items()):
            keep: deque[_Held] = deque()
            for held in queue:
                if held.height == height:
                    taken.append(held)
                elif held.height > height:
                    keep.append(held)
                    continue
                self._bytes[sender] -= held.size
            self._held[sender] = keep
            if not keep:
                del self._held[sender], self._bytes[sender]
        taken.sort(key=lambda held: held.seq)
        return [(held.message, held.payload) for held in taken]

    def discard_through(self, height: int) -> None:
        """Forget every message for ``height`` or below."""
        self.take(height)

    def _forget(self, sender: str, held: _Held) -> None:
        self._bytes[sender] -= held.size
