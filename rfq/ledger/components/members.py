"""Members, their ratings and their standing as a component: the regulator admits members after
the genesis (their proof of possession checked here), records agencies' grades, suspends and
offboards; each settled trade folds into the parties' ratings (formula 3 of the rating model); a
member that defaulted, was suspended or offboarded may no longer trade, and an offboarded one
may send nothing at all (``admission.check``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import msgspec

from rfq.contracts.events import RatingRecord
from rfq.errors import ValidationError
from rfq.genesis import proof_problem
from rfq.identity import GRADES, Directory, Member, Role, validate_member
from rfq.ledger.components.base import Component, LedgerError, Refs, TxContext, tx_kind
from rfq.ledger.tx import (
    ExternalRating,
    OffboardMember,
    RegisterMember,
    ReinstateMember,
    SuspendMember,
)
from rfq.money import from_micros
from rfq.rating import RatingEvidence, RatingTuple, combined_score, fold, score_of

if TYPE_CHECKING:
    from rfq.ledger.state import LedgerState


class RatingState(msgspec.Struct, frozen=True):
    """A member's rating: its external grade, RT's running evidence over its settled trades
    (None before the first), and the combined score on the 6-decimal grid."""

    external: str
    evidence: RatingEvidence | None = None
    score: float = 0.0


class Standing(msgspec.Struct, frozen=True):
    """A member that may no longer trade: ``status`` is ``defaulted`` (a credit event),
    ``suspended`` or ``offboarded`` (the regulator); members in good standing have no entry."""

    status: str
    reason: str
    height: int


def _admit(state: LedgerState, member: Member, grade: str | None) -> None:
    """The member, rated ``grade`` by its agency (None: no rating yet)."""
    state.members[member.id] = member
    if grade:
        state.ratings[member.id] = RatingState(external=grade, score=score_of(grade))


def _from_genesis(state: LedgerState) -> None:
    for member in state.genesis.members:
        _admit(state, member, member.external_rating)
    state.directory = Directory(state.genesis.members)


def _index(state: LedgerState) -> None:
    state.directory = Directory(state.members.values())


SUSPENDED = "suspended"
OFFBOARDED = "offboarded"


def register(state: LedgerState, tx: RegisterMember, ctx: TxContext) -> Refs:
    member = tx.member
    if member.id in state.members:
        raise LedgerError(f"member {member.id} exists")
    try:
        validate_member(member, "member")
    except ValidationError as exc:
        raise LedgerError(str(exc)) from None
    if member.role == Role.REGULATOR:
        raise LedgerError("a network has one regulator")
    for other in state.members.values():
        if member.sign_key == other.sign_key or member.box_key == other.box_key:
            raise LedgerError(f"member {member.id}: its key is already {other.id}'s")
    problem = proof_problem(member, tx.proof)
    if problem is not None:
        raise LedgerError(f"member {member.id}: {problem}")
    grade = member.external_rating
    _admit(state, member, grade if grade in GRADES else None)
    state.directory.add(member)
    return (member.id,)


def external_rating(state: LedgerState, tx: ExternalRating, ctx: TxContext) -> Refs:
    if tx.member not in state.members:
        raise LedgerError(f"unknown member {tx.member!r}")
    if tx.grade not in GRADES:
        raise LedgerError(f"grade {tx.grade!r} is not one of {', '.join(GRADES)}")
    current = state.ratings.get(tx.member) or RatingState(external=tx.grade)
    score = combined_score(tx.grade, current.evidence, state.genesis.rating)
    state.ratings[tx.member] = RatingState(tx.grade, current.evidence, score)
    return (tx.member,)


def rate(state: LedgerState, record: RatingRecord) -> None:
    """Fold a settled trade into its party's rating."""
    current = state.ratings.get(record.party)
    if current is None:
        return
    trade = state.trades.get(record.contract_id)
    guarantee = from_micros(sum(a for _, a in trade.guarantee_cover)) if trade else 0.0
    settled = RatingTuple(  # formula 3; Rt_prev is formula 1 as the state held it
        rt_prev=current.score,
        size=record.size,
        length_days=record.length_days,
        collateral=record.collateral,
        margin=record.margin,
        guarantee=max(guarantee, record.guarantee),
        default=record.default,
        recovery_rate=(record.recovery_rate or 0.0) if record.default else 0.0,
    )
    try:
        evidence = fold(current.evidence, settled)
    except ValidationError as exc:
        raise LedgerError(f"the rating cannot take this trade: {exc}") from None
    score = combined_score(current.external, evidence, state.genesis.rating)
    state.ratings[record.party] = RatingState(current.external, evidence, score)


def record_default(state: LedgerState, party: str, reason: str) -> None:
    """The party may no longer trade (its first credit event's reason is kept)."""
    if party not in state.standing:
        state.standing[party] = Standing("defaulted", reason[:200], state.height)


def _bar(state: LedgerState, member_id: str, status: str, reason: str) -> Refs:
    """Set ``member_id``'s standing to ``status`` (offboarding also ends a suspension)."""
    member = state.members.get(member_id)
    if member is None:
        raise LedgerError(f"unknown member {member_id!r}")
    if member.role == Role.REGULATOR:
        raise LedgerError("the regulator cannot be suspended or offboarded")
    if member_id in state.gov.authorities:
        raise LedgerError(f"{member_id} is an authority: evict it first")
    current = state.standing.get(member_id)
    if current is not None and (current.status != SUSPENDED or status == SUSPENDED):
        raise LedgerError(f"{member_id} is already {current.status} (height {current.height})")
    if not reason.strip():
        raise LedgerError(f"{status} needs a reason")
    state.standing[member_id] = Standing(status, reason.strip()[:200], state.height)
    return (member_id,)


def suspend(state: LedgerState, tx: SuspendMember, ctx: TxContext) -> Refs:
    return _bar(state, tx.member, SUSPENDED, tx.reason)


def offboard(state: LedgerState, tx: OffboardMember, ctx: TxContext) -> Refs:
    return _bar(state, tx.member, OFFBOARDED, tx.reason)


def reinstate(state: LedgerState, tx: ReinstateMember, ctx: TxContext) -> Refs:
    """A suspended member back to good standing; offboarded and defaulted stay as they are."""
    if tx.member not in state.members:
        raise LedgerError(f"unknown member {tx.member!r}")
    current = state.standing.get(tx.member)
    if current is None:
        raise LedgerError(f"{tx.member} is not suspended")
    if current.status != SUSPENDED:
        raise LedgerError(
            f"{tx.member} is {current.status} (height {current.height}): only a suspension "
            "can be lifted"
        )
    if not tx.reason.strip():
        raise LedgerError("reinstate needs a reason")
    del state.standing[tx.member]
    return (tx.member,)


def offboarded(state: LedgerState, member_id: str) -> Standing | None:
    """The member's standing when it was offboarded (it may send nothing), else None."""
    standing = state.standing.get(member_id)
    return standing if standing is not None and standing.status == OFFBOARDED else None


def refuse_if_barred(state: LedgerState, role: str, party: str) -> None:
    standing = state.standing.get(party)
    if standing is not None:
        raise LedgerError(
            f"{role} {party} is {standing.status} (height {standing.height}: "
            f"{standing.reason}) and cannot trade"
        )


COMPONENT = Component(
    "members",
    maps={"members": Member, "ratings": RatingState, "standing": Standing},
    kinds=(
        tx_kind(RegisterMember, register),
        tx_kind(ExternalRating, external_rating),
        tx_kind(SuspendMember, suspend),
        tx_kind(OffboardMember, offboard),
        tx_kind(ReinstateMember, reinstate),
    ),
    setup=_from_genesis,
    loaded=_index,
)
