"""A light client's checks: is an answer final, and is each entry it shows in that state?

Members run no node, and no single authority is trusted: an authority may lie, and a member
holding an authority-eligible key may answer on a member's reply inbox. So an answer is
believed only with an ``AnswerProof``: a final header, the commit seals of a quorum of the
authority set that sealed it, the state root's parts and one ``Witness`` per entry shown
(``rfq.ledger.proof``: a map entry, or a key's absence, against the header's state root).

The authority set is followed, never told (the light-client pattern of CometBFT): from the
genesis, then from the governance struct proven in each verified header's state. A header
sealed by a set other than the one followed is accepted only if more than ``f`` of the
followed set sealed it too (at least one honest authority the client already trusts vouches
for it; CometBFT's skipping verification with trust level 1/3) and a quorum of its own set
sealed it; the set is then the one that header's state names for the next height.

``LightClient.verify`` is pure: it reads the proof's own bytes and the client's trust, and
either returns a ``Verified`` answer or raises ``LightError`` whose ``kind`` is a short,
countable reason (``not_final``, ``unlinked``, ``bad_witness``, ...).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import msgspec

from rfq.contracts.book import ContractRecord
from rfq.contracts.model import ContractView
from rfq.errors import DECODE_ERRORS, RfqError
from rfq.identity import Directory, Genesis
from rfq.ledger.block import (
    BlockHeader,
    CommitSeal,
    authority_set_hash,
    max_faulty,
    quorum,
    seal_valid,
    sorted_authorities,
)
from rfq.ledger.digest import BucketPath
from rfq.ledger.proof import (
    CONTRACTS,
    GOVERNANCE,
    LiveWitness,
    ProofError,
    ProofResult,
    RootParts,
    StateProof,
    governance_digest,
    state_root_of,
    verify_state_proof,
)
from rfq.ledger.state import Governance, RatingState, Standing, genesis_header
from rfq.money import from_micros
from rfq.rating import grade_of

T = TypeVar("T")

COMMITTED = "committed"
"""The map of transaction ids committed ok (value: the transaction's expiry, ms)."""
MEMBERS = "members"
RATINGS = "ratings"
STANDING = "standing"

STALE_MS = 60_000
"""An answer whose header is this much older than the newest verified one is refused: an
authority cannot hold a member to an old state (e.g. a payment long since confirmed)."""


FINAL_CACHE = 64
"""Headers remembered as final: answers at the same height skip the seal checks."""


class LightError(RfqError):
    """An answer the light client does not believe; ``kind`` is the reason's short name."""

    def __init__(self, kind: str, reason: str) -> None:
        self.kind = kind
        self.reason = reason
        super().__init__(f"{kind}: {reason}")


class Witness(msgspec.Struct, frozen=True, array_like=True, forbid_unknown_fields=True):
    """A ``StateProof`` without the root parts (an answer carries those once)."""

    component: str
    key: str
    value: bytes | None
    path: BucketPath | None
    book_header: bytes | None = None
    live: LiveWitness | None = None


class AnswerProof(msgspec.Struct, frozen=True, array_like=True, forbid_unknown_fields=True):
    """What makes an answer checkable: the final header it was read at, the header's commit
    seals, the state root's parts, the governance struct's canonical encoding (it names the
    set that sealed the header and the next one) and a witness per entry."""

    header: BlockHeader
    seals: tuple[CommitSeal, ...]
    parts: RootParts
    governance: bytes
    witnesses: tuple[Witness, ...] = ()


def witness_of(proof: StateProof) -> Witness:
    return Witness(
        proof.component, proof.key, proof.value, proof.path, proof.book_header, proof.live
    )


@dataclass(frozen=True)
class Verified:
    """A verified answer: the header's height, time and hash, the governance in its state and
    each witnessed entry by (component, key)."""

    height: int
    timestamp_ms: int
    header_hash: bytes
    governance: Governance
    entries: dict[tuple[str, str], ProofResult] = field(default_factory=dict)

    def entry(self, component: str, key: str) -> ProofResult:
        """The proven entry (or proven absence) of ``component[key]``; ``LightError`` when
        the answer carries no witness for it."""
        found = self.entries.get((component, key))
        if found is None:
            raise LightError("unproven", f"no witness of {component}[{key!r}]")
        return found

    def rows(
        self, component: str, rows: Iterable[T], key: Callable[[T], str], value_type: Any
    ) -> list[T]:
        """``rows`` if every one is exactly the entry proven under its key; ``LightError``
        naming the first that is not (missing witness, absent, or different)."""
        out = list(rows)
        for row in out:
            ident = key(row)
            proven = self.entry(component, ident)
            if proven.value is None:
                raise LightError("bad_row", f"{component}[{ident!r}] is proven absent")
            try:
                value = msgspec.msgpack.decode(proven.value, type=value_type)
            except DECODE_ERRORS:
                raise LightError("bad_row", f"{component}[{ident!r}] is not a row") from None
            if value != row:
                raise LightError("bad_row", f"{component}[{ident!r}] differs from the proof")
        return out

    def contracts(self, views: Iterable[ContractView]) -> list[ContractView]:
        """``views`` if each one's recorded part (terms, ordinal, status, variation margin,
        averaging, margin call, defaulting party, outcome) is the contract record proven
        under its id; ``LightError`` naming the first that is not. Marks and values are
        computed from prices, not recorded, and stay unproven."""
        out = list(views)
        for view in out:
            ident = view.contract.id
            proven = self.entry(CONTRACTS, ident)
            if proven.value is None:
                raise LightError("bad_row", f"contract {ident!r} is proven absent")
            try:
                record = msgspec.msgpack.decode(proven.value, type=ContractRecord)
            except DECODE_ERRORS:
                raise LightError("bad_row", f"contract {ident!r}: not a record") from None
            if (
                record.contract,
                record.ordinal,
                record.status,
                from_micros(record.vm_balance),  # micros on chain, units in the view
                record.avg_sum,
                record.avg_count,
                record.margin_call,
                record.defaulting_party,
                record.outcome,
            ) != (
                view.contract,
                view.ordinal,
                view.status,
                view.vm_balance,
                view.avg_sum,
                view.avg_count,
                view.margin_call,
                view.defaulting_party,
                view.outcome,
            ):
                raise LightError("bad_row", f"contract {ident!r} differs from its record")
        return out

    def ratings(
        self, scores: Mapping[str, float], grades: Mapping[str, str], standing: Mapping[str, str]
    ) -> None:
        """Each score is the proven rating's, each grade the score's and each standing the
        proven entry's; ``LightError`` naming the first that is not."""
        for member, score in scores.items():
            proven = self.entry(RATINGS, member)
            if proven.value is None or _decoded(proven, RatingState).score != score:
                raise LightError("bad_row", f"the rating of {member!r} is not the proven one")
            if grades.get(member) != str(grade_of(score)):
                raise LightError("bad_row", f"the grade of {member!r} is not its score's")
        for member, status in standing.items():
            proven = self.entry(STANDING, member)
            if proven.value is None or _decoded(proven, Standing).status != status:
                raise LightError("bad_row", f"the standing of {member!r} is not the proven one")

    def committed(self, tx_id: str) -> bool:
        """Whether the transaction is proven committed ok (``LightError``: no witness)."""
        return self.entry(COMMITTED, tx_id).present


def _decoded(proven: ProofResult, value_type: Any) -> Any:
    try:
        return proven.decode(value_type)
    except ProofError as exc:
        raise LightError("bad_row", exc.reason) from None


_governance = msgspec.msgpack.Decoder(Governance)


class LightClient:
    """Follows the authority set from the genesis and verifies answers against it."""

    def __init__(self, genesis: Genesis, keys: Directory | None = None) -> None:
        self.genesis = genesis
        self.keys = keys if keys is not None else Directory(genesis.members)
        self.genesis_hash = genesis_header(genesis).hash()
        self.height = 0
        self.timestamp_ms = 0
        self.authorities: tuple[str, ...] = sorted_authorities(genesis.authorities.initial)
        """The set that seals the height after ``height``, as last proven."""
        self._final: dict[bytes, None] = {}
        """Hashes of the latest headers found final (their seals need no second check)."""

    @property
    def max_faulty(self) -> int:
        return max_faulty(len(self.authorities))

    def verify(self, proof: object) -> Verified:
        """What ``proof`` establishes, or ``LightError``. Advances the followed set when the
        header is newer than any verified before."""
        return self._verify(proof, history=False)

    def verify_history(self, proof: object) -> Verified:
        """What a proof of history establishes (``HistoryReply``: entries under the last,
        possibly old, header whose state held them), or ``LightError``.

        As ``verify``, but an old header is no reason to refuse (history is old by nature)
        and it never moves the followed set. Its seals are checked against the set its own
        state names, which must be linked to the set followed now: more than ``f`` of the
        followed set sealed it too, else ``unlinked`` (after the set has changed wholly,
        an old header can no longer be vouched for: ask for it before, or follow the chain).
        """
        return self._verify(proof, history=True)

    def _verify(self, proof: object, *, history: bool) -> Verified:
        if not isinstance(proof, AnswerProof):
            raise LightError("no_proof", "the answer carries no proof")
        header = proof.header
        if header.chain_id != self.genesis.chain_id:
            raise LightError("wrong_chain", f"chain {header.chain_id[:40]!r}")
        if not history and header.timestamp_ms < self.timestamp_ms - STALE_MS:
            raise LightError(
                "stale", f"block {header.height} is older than block {self.height} by over a minute"
            )
        if state_root_of(proof.parts) != header.state_root:
            raise LightError("bad_root", "the root parts do not hash to the header's state root")
        if proof.parts.height != header.height:
            raise LightError("bad_root", "the root parts are another height's")
        components = dict(proof.parts.components)
        if governance_digest(proof.governance) != components.get(GOVERNANCE):
            raise LightError("bad_governance", "the governance is not the state's")
        try:
            gov = _governance.decode(proof.governance)
        except DECODE_ERRORS:
            raise LightError("bad_governance", "the governance does not decode") from None
        if header.height == 0:
            if header.hash() != self.genesis_hash:
                raise LightError("not_final", "block 0 is not this network's genesis block")
        elif header.hash() not in self._final:
            self._check_seals(header, proof.seals, sorted_authorities(gov.previous_set))
            self._final[header.hash()] = None
            while len(self._final) > FINAL_CACHE:
                del self._final[next(iter(self._final))]
        entries: dict[tuple[str, str], ProofResult] = {}
        for w in proof.witnesses:
            state_proof = StateProof(
                w.component, w.key, w.value, w.path, w.book_header, proof.parts, w.live
            )
            try:
                result = verify_state_proof(state_proof, header.state_root)
            except ProofError as exc:
                raise LightError("bad_witness", f"{w.component}[{w.key!r}]: {exc.reason}") from None
            entries[(result.component, result.key)] = result
        if not history and header.height > self.height:
            self.height, self.timestamp_ms = header.height, header.timestamp_ms
            self.authorities = sorted_authorities(gov.authorities)
        return Verified(header.height, header.timestamp_ms, header.hash(), gov, entries)

    def _check_seals(
        self, header: BlockHeader, seals: Sequence[CommitSeal], sealing: tuple[str, ...]
    ) -> None:
        """A quorum of ``sealing`` (the set the header commits to) sealed it, and, when that
        is not the followed set, more than ``f`` of the followed set among them."""
        if authority_set_hash(sealing) != header.authority_set_hash:
            raise LightError("bad_governance", "the header was sealed by another set")
        good: set[str] = set()
        digest = header.hash()
        for seal in seals:
            who = seal.authority
            if who in good or who not in sealing or who not in self.keys:
                continue
            if seal_valid(seal, digest, header.round, self.keys):
                good.add(who)
        need = quorum(len(sealing))
        if len(good) < need:
            raise LightError(
                "not_final", f"block {header.height}: {len(good)} good seals of {need} needed"
            )
        if sealing != self.authorities:
            vouching = good & set(self.authorities)
            if len(vouching) <= self.max_faulty:
                raise LightError(
                    "unlinked",
                    f"block {header.height} is sealed by a set of which only {len(vouching)} "
                    f"of the {len(self.authorities)} authorities followed are part",
                )
