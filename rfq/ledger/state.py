"""The ledger's deterministic state machine: every authority runs it and gets the same root.

A block is executed in three steps:

1. ``begin_block``: liveness accounting from the *parent* header (the proposers of the rounds
   before the one that decided it missed their turn; the state never depends on a block's
   own round, so a locked block re-proposed in a later round keeps its state root), then the
   chain's clock for the contracts (``BlockPassed`` at the block's business date: margin-call
   deadlines, maturities) and the credit events that missed margin calls trigger.
2. Each transaction in order: checked (signature, sender, role, replay, expiry), then applied,
   producing a receipt. A transaction the rules refuse is rejected with a reason; the rest of
   the block commits.
3. ``end_block``: epoch re-election and authority-set changes, effective from the next height.

The business date is the later of the block timestamp's UTC date and the newest fixing date
on chain: in live operation they agree; a simulated oracle that compresses time moves the
market date ahead and contracts follow it. Node clocks never enter.

Money: contracts emit payment instructions (``rfq.contracts``); the ledger adds initial
margin (cash the credit line and guarantees do not cover, paid into the bank's custody
account, returned when the contract ends) and the payment for each margin call (on the bank's
confirmation the call is met). Every instruction waits for the bank's ``payment_confirmed``,
applied exactly once per instruction.

The state root hashes each component's digest under its name (``rfq.ledger.proof``): each
map is a bucketed Merkle tree hashed lazily for what changed (``rfq.ledger.digest``), the
contract book keeps its contracts in one too, so any entry can be proven against a header's
``state_root`` (``LedgerState.prove``).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import heapq
from collections.abc import Container, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec

from rfq.clock import utc_date
from rfq.contracts.book import ContractBook, canonical_contract
from rfq.contracts.events import (
    BlockPassed,
    BookEvent,
    BookOutput,
    CloseOut,
    ContractClosedOut,
    ContractDefaulted,
    ContractSettled,
    CreditEvent,
    CreditEventResolved,
    DefaultTriggered,
    Fixing,
    GuaranteeLine,
    MarginCalled,
    MarginPosted,
    MarginShort,
    OpenContract,
    PaymentInstruction,
    RatingRecord,
)
from rfq.contracts.events import Price as FixingPrice
from rfq.contracts.model import (
    MarginTerms,
    PaymentKind,
    PaymentStatus,
    contract_of,
    validate_contract,
)
from rfq.contracts.payoff import initial_margin
from rfq.errors import DECODE_ERRORS, RfqError, ValidationError
from rfq.identity import (
    AUTHORITY_ELIGIBLE,
    GRADES,
    Directory,
    Genesis,
    Member,
    Role,
    validate_member,
)
from rfq.instruments import check_listed
from rfq.ledger.block import (
    BlockHeader,
    first_round_of,
    genesis_block,
    proposer_for,
    sorted_authorities,
)
from rfq.ledger.consensus import verify_evidence
from rfq.ledger.digest import DigestMap
from rfq.ledger.proof import (
    BOOK,
    CONTRACTS,
    GOVERNANCE,
    ProofError,
    RootParts,
    StateProof,
    governance_digest,
    state_root_of,
)
from rfq.ledger.tx import (
    TX_ROLES,
    ByzantineEvidence,
    CloseOutRequest,
    CreditEventTx,
    Evict,
    ExternalRating,
    GuaranteeGrant,
    GuaranteeRevoke,
    Nominate,
    PaymentConfirmed,
    PaymentFailed,
    PriceFixing,
    RegisterMember,
    Transaction,
    Veto,
    signed_decoder,
    tx_decoder,
)
from rfq.messages import Accept, Quote, decode_quote
from rfq.money import is_payable, on_grid, to_micros
from rfq.rating import RatingEvidence, RatingTuple, combined_score, fold, score_of
from rfq.signing import SignedMessage, kind_of, signature_valid, tx_id

CUSTODY = "CUSTODY"
"""The bank's custody account: where cash initial margin is held while a contract lives."""

ACCEPT_GRACE_MS = 5_000
"""How long after a quote's valid-until its accept may still be committed (transit time)."""

MAX_TX_TTL_MS = 3_600_000
"""A transaction valid for longer is refused: committed ids are remembered until expiry."""

_encoder = msgspec.msgpack.Encoder()


class LedgerError(RfqError):
    """A transaction the rules refuse; ``reason`` is what the submitter is told."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


# --------------------------------------------------------------------------------------------
# Records


class Payment(msgspec.Struct, frozen=True):
    id: str
    contract_id: str
    kind: PaymentKind
    payer: str
    payee: str
    amount: float
    created_height: int
    date: dt.date | None = None
    status: PaymentStatus = PaymentStatus.PENDING
    confirmed_height: int | None = None
    bank_ref: str | None = None
    failure: str | None = None
    due: dt.date | None = None
    """The business date by whose end the payment is due (margin calls); None: at once."""


class Guarantee(msgspec.Struct, frozen=True):
    """A guarantor's line for a client. ``allocated`` covers initial margin of live trades;
    ``paid`` is what the guarantor has paid on the client's defaults (the line shrinks)."""

    id: str
    guarantor: str
    client: str
    line: float
    asset_id: str
    asset_value: float
    granted_height: int
    allocated: float = 0.0
    paid: float = 0.0
    status: str = "live"  # live | revoked

    @property
    def available(self) -> float:
        return max(self.line - self.allocated - self.paid, 0.0)


class Trade(msgspec.Struct, frozen=True):
    rfq_id: str
    contract_id: str
    client: str
    dealer: str
    quote_id: str
    price: float
    tx_id: str
    height: int
    initial_margin: float
    dealer_line: float
    guarantee_cover: tuple[tuple[str, float], ...]
    cash_margin: float


class RatingState(msgspec.Struct, frozen=True):
    """A member's rating: its external grade, RT's running evidence over its settled trades
    (None before the first), and the combined score on the 6-decimal grid."""

    external: str
    evidence: RatingEvidence | None = None
    score: float = 0.0


class Standing(msgspec.Struct, frozen=True):
    """A member that may no longer trade: ``status`` is ``defaulted`` (a credit event) or
    ``suspended``; members in good standing have no entry."""

    status: str
    reason: str
    height: int


class GovernanceEvent(msgspec.Struct, frozen=True):
    height: int
    action: str  # nominate | veto | evict | join | reelect
    member: str
    reason: str
    effective_height: int


class Governance(msgspec.Struct, frozen=True):
    authorities: tuple[str, ...]
    candidates: tuple[str, ...] = ()
    vetoed: tuple[str, ...] = ()
    banned: tuple[str, ...] = ()
    missed_streak: tuple[tuple[str, int], ...] = ()
    epoch_missed: tuple[tuple[str, int], ...] = ()
    previous_set: tuple[str, ...] = ()
    log: tuple[GovernanceEvent, ...] = ()


MAP_TYPES: dict[str, Any] = {
    "members": Member,
    "trades": Trade,
    "payments": Payment,
    "guarantees": Guarantee,
    "pledges": str,
    "custody": float,
    "close_requests": tuple[tuple[str, float | None], ...],
    "ratings": RatingState,
    "committed": int,
    "standing": Standing,
    "margin_in_use": float,
}
"""The ledger's maps and their value types: the state root, the snapshot and the restore are
all derived from this one table, so a new map cannot be left out of any of them."""


class Snapshot(msgspec.Struct, frozen=True):
    """Everything in a ``LedgerState`` as bytes: each map encoded by ``DigestMap.encode``,
    the book as its own state bytes."""

    height: int
    timestamp_ms: int
    gov: Governance
    book: bytes
    maps: dict[str, bytes]


_snapshot_decoder = msgspec.msgpack.Decoder(Snapshot)


class Receipt(msgspec.Struct, frozen=True, tag="receipt"):
    """What happened to one transaction; the submitter is notified with it."""

    tx_id: str
    sender: str
    kind: str
    ok: bool
    height: int
    index: int
    reason: str = ""
    refs: tuple[str, ...] = ()


class Receipts(msgspec.Struct, frozen=True, tag="receipts"):
    """One block's receipts for one submitter: a single notification instead of one each."""

    height: int
    receipts: tuple[Receipt, ...]


@dataclass
class BlockResult:
    height: int
    receipts: list[Receipt] = field(default_factory=list)
    outputs: list[BookOutput] = field(default_factory=list)
    governance: list[GovernanceEvent] = field(default_factory=list)
    payments: list[Payment] = field(default_factory=list)


@dataclass(frozen=True)
class CheckedTx:
    tx_id: bytes
    signed: SignedMessage
    payload: Transaction


def genesis_header(genesis: Genesis) -> BlockHeader:
    """Block 0 of a network: every node derives the same one from the genesis (its hash, the
    initial authority set, the initial state's root, the creation time)."""
    state = LedgerState(genesis)
    created_ms = int(dt.datetime.fromisoformat(genesis.created).timestamp() * 1000)
    return genesis_block(
        genesis.chain_id, genesis.hash(), state.authorities, state.state_root(), created_ms
    ).header


def business_date(timestamp_ms: int, book: ContractBook) -> dt.date:
    clock = utc_date(timestamp_ms)
    marks = [d for d in (book.mark_date, book.date) if d is not None]
    return max([clock, *marks])


# --------------------------------------------------------------------------------------------
# The state


class LedgerState:
    """Everything the chain knows after some height. Mutated only by executing blocks."""

    # The maps of ``MAP_TYPES`` (built from it; declared here for the type checker).
    members: DigestMap[Member]
    trades: DigestMap[Trade]
    payments: DigestMap[Payment]
    guarantees: DigestMap[Guarantee]
    pledges: DigestMap[str]
    custody: DigestMap[float]
    close_requests: DigestMap[tuple[tuple[str, float | None], ...]]
    ratings: DigestMap[RatingState]
    committed: DigestMap[int]
    standing: DigestMap[Standing]
    margin_in_use: DigestMap[float]
    """Per client: the cash initial margin its live contracts require."""

    def __init__(self, genesis: Genesis) -> None:
        self.genesis = genesis
        self.params = genesis.params
        self.height = 0
        self.timestamp_ms = 0
        for name, value_type in MAP_TYPES.items():
            setattr(self, name, DigestMap(name, value_type))
        for m in genesis.members:
            self.members[m.id] = m
            if m.external_rating:
                self.ratings[m.id] = RatingState(
                    external=m.external_rating, score=score_of(m.external_rating)
                )
        self.directory = Directory(genesis.members)
        self.gov = Governance(
            authorities=sorted_authorities(genesis.authorities.initial),
            candidates=tuple(genesis.authorities.candidates),
            previous_set=sorted_authorities(genesis.authorities.initial),
        )
        self.book = ContractBook()
        self._expiries: list[tuple[int, str]] | None = None
        self._result: BlockResult | None = None
        self._date = business_date(0, self.book)

    # -- queries ---------------------------------------------------------------------------

    @property
    def authorities(self) -> tuple[str, ...]:
        """The set that decides the next height."""
        return self.gov.authorities

    def rating(self, member: str) -> float | None:
        state = self.ratings.get(member)
        return state.score if state else None

    def payments_of(self, member: str | None = None, status: str | None = None) -> list[Payment]:
        return [
            p
            for p in self.payments.values()
            if (member is None or member in (p.payer, p.payee))
            and (status is None or p.status == status)
        ]

    def maps(self) -> list[DigestMap[Any]]:
        """The ledger's maps, in ``MAP_TYPES`` order."""
        return [getattr(self, name) for name in MAP_TYPES]

    def root_parts(self) -> RootParts:
        """What the state root hashes: height, timestamp, the governance struct's digest, the
        book's, and each map's in ``MAP_TYPES`` order, each under its name."""
        return RootParts(
            self.height,
            self.timestamp_ms,
            (
                (GOVERNANCE, governance_digest(_encoder.encode(self.gov))),
                (BOOK, self.book.state_digest()),
                *((name, getattr(self, name).digest()) for name in MAP_TYPES),
            ),
        )

    def state_root(self) -> bytes:
        return state_root_of(self.root_parts())

    def prove(self, component: str, key: str = "") -> StateProof:
        """A proof of ``component[key]`` (or that there is no such entry) against
        ``state_root()``, checked by ``rfq.ledger.proof.verify_state_proof``.

        ``component``: a map of ``MAP_TYPES``, ``"contracts"`` (by contract id) or
        ``"governance"`` (the whole struct, ``key`` ``""``); ``ProofError`` for anything else.
        """
        parts = self.root_parts()
        if component == GOVERNANCE:
            if key:
                raise ProofError("governance is one value: prove it with key ''")
            return StateProof(GOVERNANCE, "", _encoder.encode(self.gov), None, None, parts)
        if component == CONTRACTS:
            record, path, header = self.book.contract_proof(key)
            return StateProof(CONTRACTS, key, record, path, header, parts)
        if component in MAP_TYPES:
            value, path = getattr(self, component).prove(key)
            return StateProof(component, key, value, path, None, parts)
        known = ", ".join([GOVERNANCE, CONTRACTS, *MAP_TYPES])
        raise ProofError(f"no component {component!r} (one of {known})")

    def fork(self) -> LedgerState:
        """An overlay of this state to execute a block on (``rfq.ledger.executor``): each
        map a copy-on-write ``DigestOverlay``, the other fields copied (immutable values, or
        small: the directory, the expiry heap). The contract book is shared: the executor
        journals it. This state must not change while the overlay lives."""
        child = object.__new__(type(self))
        child.__dict__.update(self.__dict__)
        for m in self.maps():
            setattr(child, m.name.decode(), m.fork())
        child.directory = self.directory.copy()
        child._expiries = None if self._expiries is None else list(self._expiries)
        child._result = None
        return child

    # -- persistence -----------------------------------------------------------------------

    def snapshot(self) -> bytes:
        """The whole state as bytes; ``restore`` rebuilds an identical state (same root)."""
        snap = Snapshot(
            height=self.height,
            timestamp_ms=self.timestamp_ms,
            gov=self.gov,
            book=self.book.state_bytes(),
            maps={name: getattr(self, name).encode() for name in MAP_TYPES},
        )
        return _encoder.encode(snap)

    @classmethod
    def restore(cls, genesis: Genesis, data: bytes) -> LedgerState:
        """Raises ``ValidationError`` when the bytes are not a snapshot of this network."""
        state = cls(genesis)
        try:
            snap = _snapshot_decoder.decode(data)
            book = ContractBook.from_state_bytes(snap.book)
            missing = set(MAP_TYPES) - set(snap.maps)
            if missing:
                raise ValidationError(f"maps missing: {', '.join(sorted(missing))}", where="maps")
            for name, value_type in MAP_TYPES.items():
                target: DigestMap[Any] = DigestMap(name, value_type)
                target.decode_into(snap.maps[name])
                setattr(state, name, target)
        except DECODE_ERRORS as exc:
            raise ValidationError(f"not a ledger snapshot: {exc}", where="snapshot") from None
        except ValidationError as exc:
            raise ValidationError(f"not a ledger snapshot: {exc}", where="snapshot") from None
        state.height, state.timestamp_ms, state.gov, state.book = (
            snap.height,
            snap.timestamp_ms,
            snap.gov,
            book,
        )
        state.directory = Directory(state.members.values())
        return state

    # -- admission -------------------------------------------------------------------------

    def check_tx(
        self, tx: bytes, now_ms: int, *, verified: Container[bytes] = frozenset()
    ) -> CheckedTx:
        """Everything about a transaction that needs no execution: raises ``LedgerError``.

        ``verified`` holds ids whose signatures this node already checked (a pure function,
        so skipping it again never changes a result).
        """
        try:
            signed = signed_decoder.decode(tx)
        except DECODE_ERRORS:
            raise LedgerError("malformed: not a signed message") from None
        checked_id = tx_id(tx)
        if signed.chain_id != self.genesis.chain_id:
            raise LedgerError(f"wrong network {signed.chain_id[:40]!r}")
        member = self.members.get(signed.sender)
        if member is None:
            raise LedgerError(f"unknown sender {signed.sender!r}")
        roles = TX_ROLES.get(signed.kind)
        if roles is None:
            raise LedgerError(f"{signed.kind!r} is not a transaction")
        if member.role not in roles:
            raise LedgerError(f"a {member.role} may not submit {signed.kind!r}")
        if checked_id not in verified and not signature_valid(signed, self.directory):
            raise LedgerError("bad signature")
        if checked_id.hex() in self.committed:
            raise LedgerError("duplicate: already committed")
        if now_ms > signed.expires_ms:
            raise LedgerError("expired before it was committed")
        if signed.expires_ms - signed.timestamp_ms > MAX_TX_TTL_MS:
            raise LedgerError("valid for more than an hour")
        try:
            payload = tx_decoder.decode(signed.body)
        except DECODE_ERRORS as exc:
            raise LedgerError(f"malformed payload: {exc}") from None
        if kind_of(payload) != signed.kind:
            raise LedgerError("payload kind differs from the envelope")
        return CheckedTx(checked_id, signed, payload)

    # -- execution -------------------------------------------------------------------------

    def execute(
        self,
        height: int,
        timestamp_ms: int,
        parent: BlockHeader,
        txs: Sequence[bytes],
        *,
        verified: Container[bytes] = frozenset(),
    ) -> BlockResult:
        """Apply a whole block: only its height, timestamp and parent enter the state."""
        self.begin_block(height, timestamp_ms, parent)
        for index, tx in enumerate(txs):
            self.apply_tx(tx, index, verified=verified)
        return self.end_block()

    def begin_block(self, height: int, timestamp_ms: int, parent: BlockHeader) -> None:
        if height != self.height + 1:
            raise ValidationError(f"block {height} does not follow {self.height}", where="height")
        self._result = BlockResult(height)
        self.height = height
        self.timestamp_ms = max(timestamp_ms, self.timestamp_ms)
        self._account_liveness(parent)
        # The set deciding this block: the parent's check at the next height needs it.
        self.gov = msgspec.structs.replace(self.gov, previous_set=self.gov.authorities)
        self._prune_committed()
        self._date = business_date(self.timestamp_ms, self.book)
        outputs = self.book.apply(BlockPassed(height=height, date=self._date))
        self._absorb(outputs)

    def apply_tx(
        self, tx: bytes, index: int, *, verified: Container[bytes] = frozenset()
    ) -> Receipt:
        """Apply one transaction, all or nothing: a refusal undoes every write it made to the
        ledger's maps and governance (the contract book refuses atomically, and each handler
        applies its contract event as its last step that can fail)."""
        result = self._current()
        sender, kind, tx_hex = "", "", tx_id(tx).hex()
        maps = self.maps()
        for m in maps:
            m.journal = []
        gov, lengths = self.gov, (len(result.outputs), len(result.governance), len(result.payments))
        try:
            checked = self.check_tx(tx, self.timestamp_ms, verified=verified)
            sender, kind = checked.signed.sender, checked.signed.kind
            refs = self._apply(checked, verified)
        except (LedgerError, ValidationError) as exc:
            for m in maps:
                m.undo()
            self.gov = gov
            del result.outputs[lengths[0] :]
            del result.governance[lengths[1] :]
            del result.payments[lengths[2] :]
            reason = exc.reason if isinstance(exc, LedgerError) else str(exc)
            receipt = Receipt(tx_hex, sender, kind, False, self.height, index, reason)
        else:
            for m in maps:
                m.journal = None
            self.committed[tx_hex] = checked.signed.expires_ms
            if self._expiries is not None:
                heapq.heappush(self._expiries, (checked.signed.expires_ms, tx_hex))
            receipt = Receipt(tx_hex, sender, kind, True, self.height, index, "", refs)
        result.receipts.append(receipt)
        return receipt

    def end_block(self) -> BlockResult:
        result = self._current()
        if self.height % self.params.epoch_blocks == 0:
            self._reelect()
        self._result = None
        return result

    def _current(self) -> BlockResult:
        if self._result is None:
            raise ValidationError("no block is being executed", where="block")
        return self._result

    def _prune_committed(self) -> None:
        """Forget committed ids past their expiry (a replay would be refused as expired).

        A heap by expiry, built from the map when first needed, keeps this to what expires
        rather than a pass over every id of the last hour at every block.
        """
        heap = self._expiries
        if heap is None:
            heap = self._expiries = [(expires, key) for key, expires in self.committed.items()]
            heapq.heapify(heap)
        while heap and heap[0][0] < self.timestamp_ms:
            expires, key = heapq.heappop(heap)
            if self.committed.get(key) == expires:
                del self.committed[key]

    # -- transactions ----------------------------------------------------------------------

    def _apply(self, tx: CheckedTx, verified: Container[bytes]) -> tuple[str, ...]:
        payload, sender = tx.payload, tx.signed.sender
        tx_hex = tx.tx_id.hex()
        match payload:
            case Accept():
                return self._trade(tx, payload, verified)
            case PriceFixing():
                prices = tuple(FixingPrice(u, p) for u, p in payload.prices)
                self._book(Fixing(date=payload.date, prices=prices), tx_hex)
                return ()
            case CloseOutRequest():
                return self._close_out(sender, payload, tx_hex)
            case CreditEventTx():
                if payload.party not in self.members:
                    raise LedgerError(f"unknown member {payload.party!r}")
                refs = self._credit_event(payload.party, tx_hex, payload.reason)
                return refs
            case PaymentConfirmed():
                return self._confirm(payload, tx_hex)
            case PaymentFailed():
                return self._fail(payload)
            case GuaranteeGrant():
                return self._grant(sender, payload)
            case GuaranteeRevoke():
                return self._revoke(sender, payload)
            case ExternalRating():
                return self._external_rating(payload)
            case RegisterMember():
                return self._register(payload.member)
            case Nominate():
                return self._nominate(payload.member)
            case Veto():
                return self._veto(payload.member)
            case Evict():
                self._evict(payload.member, payload.reason, action="evict")
                return (payload.member,)
            case ByzantineEvidence():
                return self._evidence(payload)
        raise LedgerError(f"unhandled transaction {type(payload).__name__}")

    def _book(
        self, event: BookEvent, tx_hex: str, *, settled_by: str | None = None
    ) -> list[BookOutput]:
        try:
            outputs = self.book.apply(event)
        except ValidationError as exc:
            raise LedgerError(f"refused by the contract: {exc}") from None
        self._absorb(outputs, settled_by=settled_by)
        return outputs

    def _trade(self, tx: CheckedTx, accept: Accept, verified: Container[bytes]) -> tuple[str, ...]:
        signed_quote = accept.quote
        quote_id = tx_id(_encoder.encode(signed_quote))
        if accept.client != tx.signed.sender:
            raise LedgerError(f"accept names client {accept.client}, signed by {tx.signed.sender}")
        dealer = self.members.get(signed_quote.sender)
        if dealer is None or dealer.role != Role.DEALER:
            raise LedgerError(f"the quote is not signed by a dealer ({signed_quote.sender!r})")
        if signed_quote.chain_id != self.genesis.chain_id:
            raise LedgerError("the quote belongs to another network")
        if quote_id not in verified and not signature_valid(signed_quote, self.directory):
            raise LedgerError("the quote's signature does not verify")
        try:
            quote: Quote = decode_quote(signed_quote)
        except ValidationError as exc:
            raise LedgerError(str(exc)) from None
        if quote.dealer != signed_quote.sender:
            raise LedgerError(
                f"quote in the name of {quote.dealer}, signed by {signed_quote.sender}"
            )
        if quote.client != accept.client:
            raise LedgerError(f"the quote is addressed to {quote.client}, not {accept.client}")
        for role, party in (("client", quote.client), ("dealer", quote.dealer)):
            standing = self.standing.get(party)
            if standing is not None:
                raise LedgerError(
                    f"{role} {party} is {standing.status} (height {standing.height}: "
                    f"{standing.reason}) and cannot trade"
                )
        if (quote.id, quote.rfq_id, quote.dealer) != (
            accept.quote_id,
            accept.rfq_id,
            accept.dealer,
        ):
            raise LedgerError("the accept does not match the quote it carries")
        if tx.signed.timestamp_ms > quote.valid_until_ms:
            raise LedgerError("accepted after the quote's validity")
        if self.timestamp_ms > quote.valid_until_ms + ACCEPT_GRACE_MS:
            raise LedgerError("the quote expired before the accept was committed")
        if quote.rfq_id in self.trades:
            raise LedgerError(f"RFQ {quote.rfq_id} is already traded")
        contract = contract_of(
            quote,
            MarginTerms(
                threshold=self.params.default_threshold,
                minimum_transfer_amount=self.params.default_mta,
                cure_days=self.params.margin_cure_days,
            ),
        )
        terms = contract.terms
        if terms.maturity <= self._date:
            raise LedgerError(f"maturity {terms.maturity} has passed")
        try:  # what trades on the business date: no expired month, no maturity past one
            check_listed(terms, self._date)
        except ValidationError as exc:
            raise LedgerError(f"not tradable on {self._date}: {exc}") from None
        try:
            contract = canonical_contract(contract)
            validate_contract(contract)
        except ValidationError as exc:
            raise LedgerError(f"refused by the contract: {exc}") from None
        # Initial margin: the dealer's line, then the guarantors' lines, then cash. A trade
        # whose cash part the client's capital cannot carry never becomes a live contract.
        margin = initial_margin(contract)
        dealer_line = min(max(quote.credit_line, 0.0), margin)
        rest = margin - dealer_line
        cover: list[tuple[Guarantee, float]] = []
        for g in sorted(self._live_guarantees(quote.client), key=lambda g: g.id):
            if rest <= 0:
                break
            take = min(g.available, rest)
            if take > 0:
                cover.append((g, take))
                rest -= take
        cash = on_grid(max(rest, 0.0))
        in_use = self.margin_in_use.get(quote.client) or 0.0
        capital = self.members[quote.client].capital
        if cash > 0 and in_use + cash > capital:  # margin_headroom says the same, before cover
            raise LedgerError(
                f"initial margin {margin:,.2f} exceeds {quote.client}'s credit lines "
                f"({margin - cash:,.2f}) and the capital the chain knows of "
                f"({capital - in_use:,.2f} free of {capital:,.2f})"
            )
        self._book(OpenContract(contract), tx.tx_id.hex())
        for g, take in cover:
            self.guarantees[g.id] = msgspec.structs.replace(g, allocated=g.allocated + take)
        if cash > 0:
            self.margin_in_use[quote.client] = on_grid(in_use + cash)
        refs = [contract.id]
        margin_id = self._instruct(
            f"{contract.id}/initial_margin/1",
            contract.id,
            PaymentKind.INITIAL_MARGIN,
            quote.client,
            CUSTODY,
            cash,
            None,
        )
        if margin_id is not None:
            refs.append(margin_id)
        self.trades[quote.rfq_id] = Trade(
            rfq_id=quote.rfq_id,
            contract_id=contract.id,
            client=quote.client,
            dealer=quote.dealer,
            quote_id=quote.id,
            price=quote.price,
            tx_id=tx.tx_id.hex(),
            height=self.height,
            initial_margin=margin,
            dealer_line=dealer_line,
            guarantee_cover=tuple((g.id, take) for g, take in cover),
            cash_margin=cash,
        )
        return tuple(refs)

    def _close_out(self, sender: str, req: CloseOutRequest, tx_hex: str) -> tuple[str, ...]:
        view = self.book.find(req.contract_id)
        if view is None:
            raise LedgerError(f"no contract {req.contract_id!r}")
        if sender not in (view.contract.client, view.contract.dealer):
            raise LedgerError(f"{sender} is not a party to {req.contract_id}")
        if view.status.terminal:
            raise LedgerError(f"contract {req.contract_id} has ended ({view.status})")
        pending = dict(self.close_requests.get(req.contract_id) or ())
        pending[sender] = req.price
        other = view.contract.dealer if sender == view.contract.client else view.contract.client
        if other not in pending or pending[other] != req.price:
            self.close_requests[req.contract_id] = tuple(sorted(pending.items()))
            return (req.contract_id, "pending")
        date = self.book.mark_date or business_date(self.timestamp_ms, self.book)
        self._book(
            CloseOut(id=tx_hex, contract_id=req.contract_id, date=date, price=req.price), tx_hex
        )
        if req.contract_id in self.close_requests:
            del self.close_requests[req.contract_id]
        return (req.contract_id, "closed_out")

    def _credit_event(self, party: str, event_id: str, reason: str) -> tuple[str, ...]:
        if party not in self.standing:
            self.standing[party] = Standing("defaulted", reason[:200], self.height)
        collateral = self.custody.get(party) or 0.0
        lines = tuple(
            GuaranteeLine(g.guarantor, g.line - g.paid)
            for g in sorted(self._live_guarantees(party), key=lambda g: g.id)
            if g.line - g.paid > 0
        )
        self._book(
            CreditEvent(id=event_id, party=party, collateral=collateral, guarantees=lines),
            event_id,
        )
        if party in self.gov.authorities:
            self._evict(party, f"credit event: {reason}", action="evict")
        return (party,)

    def _confirm(self, conf: PaymentConfirmed, tx_hex: str) -> tuple[str, ...]:
        payment = self.payments.get(conf.instruction_id)
        if payment is None:
            raise LedgerError(f"no payment instruction {conf.instruction_id!r}")
        if payment.status == PaymentStatus.CONFIRMED:
            raise LedgerError(f"payment {conf.instruction_id} is already confirmed")
        if payment.status == PaymentStatus.LAPSED:
            raise LedgerError(f"payment {conf.instruction_id} lapsed: its contract has ended")
        if to_micros(conf.amount) != to_micros(payment.amount):
            raise LedgerError(f"confirmed {conf.amount}, instructed {payment.amount}")
        if payment.kind == PaymentKind.MARGIN_CALL:  # the contract's event first: it may refuse
            posted = MarginPosted(
                id=payment.id,
                contract_id=payment.contract_id,
                payer=payment.payer,
                amount=payment.amount,
            )
            self._book(posted, tx_hex, settled_by=payment.id)
        self.payments[payment.id] = msgspec.structs.replace(
            payment,
            status=PaymentStatus.CONFIRMED,
            confirmed_height=self.height,
            bank_ref=conf.bank_ref,
            failure=None,
        )
        if payment.kind == PaymentKind.INITIAL_MARGIN:
            held = self.custody.get(payment.payer) or 0.0
            self.custody[payment.payer] = on_grid(held + payment.amount)
        return (payment.id,)

    def _fail(self, failed: PaymentFailed) -> tuple[str, ...]:
        payment = self.payments.get(failed.instruction_id)
        if payment is None:
            raise LedgerError(f"no payment instruction {failed.instruction_id!r}")
        if payment.status == PaymentStatus.CONFIRMED:
            raise LedgerError(f"payment {failed.instruction_id} is already confirmed")
        if payment.status == PaymentStatus.LAPSED:
            raise LedgerError(f"payment {failed.instruction_id} lapsed: its contract has ended")
        self.payments[payment.id] = msgspec.structs.replace(
            payment, status=PaymentStatus.FAILED, failure=failed.reason[:200]
        )
        if payment.kind == PaymentKind.MARGIN_CALL:  # the payer is short: past its due, a default
            seq = int(payment.id.rsplit("/", 1)[1])
            view = self.book.find(payment.contract_id)
            call = view.margin_call if view is not None else None
            if call is not None and call.seq == seq and not call.short:
                self._book(MarginShort(payment.contract_id, seq, failed.reason[:200]), payment.id)
        return (payment.id,)

    def margin_headroom(self, client: str) -> float:
        """The initial margin, beyond a dealer's credit line, that the client can still take
        on: its capital less the cash margin of its live contracts, plus its guarantors'
        available lines (an accept needing more is refused)."""
        member = self.members.get(client)
        if member is None:
            return 0.0
        lines = sum(g.available for g in self._live_guarantees(client))
        return member.capital - (self.margin_in_use.get(client) or 0.0) + lines

    def _live_guarantees(self, client: str) -> list[Guarantee]:
        return [g for g in self.guarantees.values() if g.client == client and g.status == "live"]

    def _grant(self, guarantor: str, grant: GuaranteeGrant) -> tuple[str, ...]:
        client = self.members.get(grant.client)
        if client is None or client.role != Role.CLIENT:
            raise LedgerError(f"{grant.client!r} is not a client")
        if grant.id in self.guarantees:
            raise LedgerError(f"guarantee {grant.id} exists")
        if not (len(grant.asset_id) == 64 and all(c in "0123456789abcdef" for c in grant.asset_id)):
            raise LedgerError("asset_id must be a SHA-256 hex digest")
        live = self.pledges.get(grant.asset_id)
        if live is not None:
            raise LedgerError(f"asset already pledged to guarantee {live}")
        if not (grant.line > 0 and grant.asset_value > 0):
            raise LedgerError("line and asset value must be positive")
        if grant.line > grant.asset_value:
            raise LedgerError(
                f"line {grant.line} exceeds the pledged asset's value {grant.asset_value}"
            )
        capacity = self.members[guarantor].capital
        outstanding = sum(
            g.line - g.paid
            for g in self.guarantees.values()
            if g.guarantor == guarantor and g.status == "live"
        )
        if outstanding + grant.line > capacity:
            free = capacity - outstanding
            raise LedgerError(f"line {grant.line} exceeds {guarantor}'s free capacity {free}")
        self.guarantees[grant.id] = Guarantee(
            id=grant.id,
            guarantor=guarantor,
            client=grant.client,
            line=grant.line,
            asset_id=grant.asset_id,
            asset_value=grant.asset_value,
            granted_height=self.height,
        )
        self.pledges[grant.asset_id] = grant.id
        return (grant.id,)

    def _revoke(self, guarantor: str, revoke: GuaranteeRevoke) -> tuple[str, ...]:
        g = self.guarantees.get(revoke.id)
        if g is None or g.guarantor != guarantor:
            raise LedgerError(f"{guarantor} granted no guarantee {revoke.id!r}")
        if g.status != "live":
            raise LedgerError(f"guarantee {revoke.id} is already {g.status}")
        if g.allocated > 1e-9:
            raise LedgerError(f"guarantee {revoke.id} covers margin of live trades ({g.allocated})")
        self.guarantees[g.id] = msgspec.structs.replace(g, status="revoked")
        if self.pledges.get(g.asset_id) == g.id:
            del self.pledges[g.asset_id]
        return (g.id,)

    def _external_rating(self, update: ExternalRating) -> tuple[str, ...]:
        if update.member not in self.members:
            raise LedgerError(f"unknown member {update.member!r}")
        if update.grade not in GRADES:
            raise LedgerError(f"grade {update.grade!r} is not one of {', '.join(GRADES)}")
        current = self.ratings.get(update.member) or RatingState(external=update.grade)
        score = combined_score(update.grade, current.evidence, self.genesis.rating)
        self.ratings[update.member] = RatingState(update.grade, current.evidence, score)
        return (update.member,)

    def _register(self, member: Member) -> tuple[str, ...]:
        if member.id in self.members:
            raise LedgerError(f"member {member.id} exists")
        try:
            validate_member(member, "member")
        except ValidationError as exc:
            raise LedgerError(str(exc)) from None
        if member.role == Role.REGULATOR:
            raise LedgerError("a network has one regulator")
        self.members[member.id] = member
        self.directory.add(member)
        if member.external_rating in GRADES:
            self.ratings[member.id] = RatingState(
                external=member.external_rating, score=score_of(member.external_rating)
            )
        return (member.id,)

    # -- governance ------------------------------------------------------------------------

    def _log(self, action: str, member: str, reason: str) -> GovernanceEvent:
        event = GovernanceEvent(self.height, action, member, reason, self.height + 1)
        self.gov = msgspec.structs.replace(self.gov, log=(*self.gov.log, event)[-100:])
        self._current().governance.append(event)
        return event

    def _nominate(self, member_id: str) -> tuple[str, ...]:
        member = self.members.get(member_id)
        if member is None or member.role not in AUTHORITY_ELIGIBLE:
            raise LedgerError(f"{member_id!r} cannot be an authority (dealers, CCPs, guarantors)")
        if member_id in self.gov.banned:
            raise LedgerError(f"{member_id} was evicted and cannot return")
        if member_id in self.gov.authorities or member_id in self.gov.candidates:
            raise LedgerError(f"{member_id} is already an authority or candidate")
        vetoed = tuple(v for v in self.gov.vetoed if v != member_id)
        self.gov = msgspec.structs.replace(
            self.gov, candidates=(*self.gov.candidates, member_id), vetoed=vetoed
        )
        self._log("nominate", member_id, "")
        return (member_id,)

    def _veto(self, member_id: str) -> tuple[str, ...]:
        if member_id in self.gov.authorities:
            raise LedgerError(f"{member_id} is an authority: evict it instead")
        if member_id not in self.gov.candidates:
            raise LedgerError(f"{member_id} is not a candidate")
        self.gov = msgspec.structs.replace(
            self.gov,
            candidates=tuple(c for c in self.gov.candidates if c != member_id),
            vetoed=(*self.gov.vetoed, member_id),
        )
        self._log("veto", member_id, "")
        return (member_id,)

    def _evict(self, member_id: str, reason: str, *, action: str) -> None:
        """Remove an authority, fill the place from the candidates; effective next height."""
        if member_id not in self.gov.authorities:
            raise LedgerError(f"{member_id} is not an authority")
        if len(self.gov.authorities) <= 1:
            raise LedgerError("the last authority cannot be evicted")
        remaining = [a for a in self.gov.authorities if a != member_id]
        candidates = list(self.gov.candidates)
        joined = None
        while candidates:
            candidate = candidates.pop(0)
            if candidate not in self.gov.banned and candidate not in remaining:
                joined = candidate
                remaining.append(candidate)
                break
        self.gov = msgspec.structs.replace(
            self.gov,
            authorities=sorted_authorities(remaining),
            candidates=tuple(candidates),
            banned=(*self.gov.banned, member_id),
            missed_streak=tuple((a, n) for a, n in self.gov.missed_streak if a != member_id),
        )
        self._log(action, member_id, reason)
        if joined is not None:
            self._log("join", joined, f"replaces {member_id}")

    def _evidence(self, evidence: ByzantineEvidence) -> tuple[str, ...]:
        offender = evidence.first.sender
        known = set(self.gov.authorities) | set(self.gov.previous_set) | set(self.gov.banned)
        problem = verify_evidence(evidence.first, evidence.second, self.directory, known)
        if problem is not None:
            raise LedgerError(f"not evidence of equivocation: {problem}")
        if offender in self.gov.banned:
            raise LedgerError(f"{offender} is already evicted")
        self._evict(
            offender, "equivocation (two conflicting signed consensus messages)", action="evict"
        )
        return (offender,)

    def _account_liveness(self, parent: BlockHeader) -> None:
        """The proposers of the rounds before the parent was first proposed missed their turn.

        Derived from ``parent.proposer``, which the block hash covers: copies of one block
        decided in different rounds on different nodes carry different ``round`` fields.
        """
        if parent.height == 0 or not self.gov.previous_set:
            return
        first = first_round_of(parent.height, parent.proposer, self.gov.previous_set)
        if first is None:
            return
        streak = dict(self.gov.missed_streak)
        epoch = dict(self.gov.epoch_missed)
        for r in range(first):
            missed = proposer_for(parent.height, r, self.gov.previous_set)
            streak[missed] = streak.get(missed, 0) + 1
            epoch[missed] = epoch.get(missed, 0) + 1
        streak[parent.proposer] = 0
        self.gov = msgspec.structs.replace(
            self.gov,
            missed_streak=tuple(sorted((a, n) for a, n in streak.items() if n)),
            epoch_missed=tuple(sorted(epoch.items())),
        )
        limit = self.params.liveness_missed_rounds
        for authority, count in sorted(streak.items()):
            if count >= limit and authority in self.gov.authorities:
                with contextlib.suppress(LedgerError):  # the last authority stays
                    self._evict(authority, f"missed {count} proposals in a row", action="evict")

    def _reelect(self) -> None:
        """Every epoch: rank incumbents and candidates by missed proposals this epoch
        (incumbents first on ties, then candidates in nomination order); keep the set size."""
        epoch = dict(self.gov.epoch_missed)
        pool = [
            m
            for m in (*self.gov.authorities, *self.gov.candidates)
            if m not in self.gov.banned and m not in self.gov.vetoed
        ]
        ranked = sorted(enumerate(pool), key=lambda item: (epoch.get(item[1], 0), item[0]))
        size = len(self.gov.authorities)
        chosen = [m for _, m in ranked[:size]]
        rest = tuple(m for _, m in ranked[size:])
        new_set = sorted_authorities(chosen)
        changed = new_set != self.gov.authorities
        self.gov = msgspec.structs.replace(
            self.gov, authorities=new_set, candidates=rest, epoch_missed=()
        )
        self._log("reelect", ",".join(new_set), "changed" if changed else "unchanged")

    # -- book outputs ----------------------------------------------------------------------

    def _instruct(
        self,
        payment_id: str,
        contract_id: str,
        kind: PaymentKind,
        payer: str,
        payee: str,
        amount: float,
        date: dt.date | None,
        *,
        status: PaymentStatus = PaymentStatus.PENDING,
        bank_ref: str | None = None,
        due: dt.date | None = None,
    ) -> str | None:
        """Record a payment instruction (its id), or nothing for less than one money grid
        step: a zero or negative movement is never an instruction."""
        if payment_id in self.payments:
            return payment_id
        if not is_payable(amount):
            return None
        payment = Payment(
            id=payment_id,
            contract_id=contract_id,
            kind=kind,
            payer=payer,
            payee=payee,
            amount=on_grid(amount),
            created_height=self.height,
            date=date,
            status=status,
            confirmed_height=self.height if status == PaymentStatus.CONFIRMED else None,
            bank_ref=bank_ref,
            due=due,
        )
        self.payments[payment_id] = payment
        self._current().payments.append(payment)
        return payment_id

    def _absorb(self, outputs: Iterable[BookOutput], *, settled_by: str | None = None) -> None:
        """Turn the book's outputs into ledger state, in a fixed order: the waterfall's totals,
        then money (so collateral leaves custody before leftovers return), then contract ends,
        credit events and ratings.

        ``settled_by``: the confirmed margin-call payment whose ``MarginPosted`` produced these
        outputs; the variation-margin instruction it yields has already moved.
        """
        result = self._current()
        outputs = list(outputs)
        result.outputs.extend(outputs)
        for out in outputs:
            if isinstance(out, CreditEventResolved):
                self._apply_waterfall(out)
        for out in outputs:
            if isinstance(out, PaymentInstruction):
                self._book_payment(out, settled_by)
            elif isinstance(out, MarginCalled):
                self._instruct(
                    f"{out.contract_id}/margin_call/{out.seq}",
                    out.contract_id,
                    PaymentKind.MARGIN_CALL,
                    out.payer,
                    out.payee,
                    out.amount,
                    out.date,
                    due=out.due,
                )
        for out in outputs:
            match out:
                case DefaultTriggered():
                    view = self.book.find(out.contract_id)
                    if view is not None and not view.status.terminal:
                        self._credit_event(
                            out.party, f"{out.contract_id}/default/{out.height}", out.reason
                        )
                case ContractSettled() | ContractClosedOut() | ContractDefaulted():
                    self._release(out.contract_id, out.date)
                case RatingRecord():
                    self._rate(out)
                case _:
                    pass

    def _book_payment(self, out: PaymentInstruction, settled_by: str | None) -> None:
        payer = out.payer
        if out.kind == PaymentKind.COLLATERAL:
            # The defaulter's collateral is cash margin held in custody: earmark it now.
            payer = CUSTODY
            held = self.custody.get(out.payer) or 0.0
            self.custody[out.payer] = max(on_grid(held - out.amount), 0.0)
        settled = out.kind == PaymentKind.VARIATION_MARGIN and settled_by is not None
        self._instruct(
            out.id,
            out.contract_id,
            out.kind,
            payer,
            out.payee,
            out.amount,
            out.date,
            status=PaymentStatus.CONFIRMED if settled else PaymentStatus.PENDING,
            bank_ref=settled_by if settled else None,
        )

    def _apply_waterfall(self, resolved: CreditEventResolved) -> None:
        for use in resolved.guarantees:
            for g in sorted(self._live_guarantees(resolved.party), key=lambda g: g.id):
                if g.guarantor == use.guarantor:
                    self.guarantees[g.id] = msgspec.structs.replace(g, paid=g.paid + use.amount)
                    break

    def _release(self, contract_id: str, date: dt.date | None) -> None:
        """A contract ended: guarantee allocations free up and the client's cash margin for it
        goes back from custody (whatever a default's waterfall left of it)."""
        trade = self.trades.get(contract_id)
        if contract_id in self.close_requests:
            del self.close_requests[contract_id]
        seq = 1  # margin-call ids are <contract>/margin_call/<n>, n = 1, 2, ...
        while (call := self.payments.get(f"{contract_id}/margin_call/{seq}")) is not None:
            if call.status in (PaymentStatus.PENDING, PaymentStatus.FAILED):
                self.payments[call.id] = msgspec.structs.replace(call, status=PaymentStatus.LAPSED)
            seq += 1
        if trade is None:
            return
        in_use = self.margin_in_use.get(trade.client)
        if in_use is not None and trade.cash_margin > 0:
            left = on_grid(in_use - trade.cash_margin)
            if left > 0:
                self.margin_in_use[trade.client] = left
            else:
                del self.margin_in_use[trade.client]
        for gid, amount in trade.guarantee_cover:
            g = self.guarantees.get(gid)
            if g is not None:
                self.guarantees[gid] = msgspec.structs.replace(
                    g, allocated=max(g.allocated - amount, 0.0)
                )
        margin = self.payments.get(f"{contract_id}/initial_margin/1")
        if margin is None or margin.status != PaymentStatus.CONFIRMED:
            return
        held = self.custody.get(trade.client) or 0.0
        refund = min(margin.amount, held)
        if is_payable(refund):
            self.custody[trade.client] = on_grid(held - refund)
            self._instruct(
                f"{contract_id}/im_return/1",
                contract_id,
                PaymentKind.IM_RETURN,
                CUSTODY,
                trade.client,
                refund,
                date,
            )

    def _rate(self, record: RatingRecord) -> None:
        state = self.ratings.get(record.party)
        if state is None:
            return
        trade = self.trades.get(record.contract_id)
        guarantee = sum(a for _, a in trade.guarantee_cover) if trade else 0.0
        settled = RatingTuple(  # formula 3; Rt_prev is formula 1 as the state held it
            rt_prev=state.score,
            size=record.size,
            length_days=record.length_days,
            collateral=record.collateral,
            margin=record.margin,
            guarantee=max(guarantee, record.guarantee),
            default=record.default,
            recovery_rate=(record.recovery_rate or 0.0) if record.default else 0.0,
        )
        try:
            evidence = fold(state.evidence, settled)
        except ValidationError as exc:
            raise LedgerError(f"the rating cannot take this trade: {exc}") from None
        score = combined_score(state.external, evidence, self.genesis.rating)
        self.ratings[record.party] = RatingState(state.external, evidence, score)
