"""The authority set as a component: the regulator nominates, vetoes and evicts, any member
proves equivocation, proposers that keep missing their turn are evicted, and every epoch the
set is re-elected. Every change takes effect from the next height."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

import msgspec

from rfq.identity import AUTHORITY_ELIGIBLE, Genesis
from rfq.ledger.block import BlockHeader, first_round_of, proposer_for, sorted_authorities
from rfq.ledger.components.base import Component, LedgerError, Part, Refs, TxContext, tx_kind
from rfq.ledger.consensus import verify_evidence
from rfq.ledger.proof import GOVERNANCE, ProofError, governance_digest
from rfq.ledger.tx import ByzantineEvidence, Evict, Nominate, Veto

if TYPE_CHECKING:
    from rfq.ledger.state import LedgerState

_encoder = msgspec.msgpack.Encoder()


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


def _initial(genesis: Genesis) -> Governance:
    return Governance(
        authorities=sorted_authorities(genesis.authorities.initial),
        candidates=tuple(genesis.authorities.candidates),
        previous_set=sorted_authorities(genesis.authorities.initial),
    )


def _digest(gov: Governance) -> bytes:
    return governance_digest(_encoder.encode(gov))


def _prove(gov: Governance, key: str) -> tuple[bytes, None, None, None]:
    if key:
        raise ProofError("governance is one value: prove it with key ''")
    return _encoder.encode(gov), None, None, None


def log(state: LedgerState, action: str, member: str, reason: str) -> GovernanceEvent:
    event = GovernanceEvent(state.height, action, member, reason, state.height + 1)
    state.gov = msgspec.structs.replace(state.gov, log=(*state.gov.log, event)[-100:])
    state.block_result().governance.append(event)
    return event


def nominate(state: LedgerState, tx: Nominate, ctx: TxContext) -> Refs:
    member_id, gov = tx.member, state.gov
    member = state.members.get(member_id)
    if member is None or member.role not in AUTHORITY_ELIGIBLE:
        raise LedgerError(f"{member_id!r} cannot be an authority (dealers, CCPs, guarantors)")
    if member_id in gov.banned:
        raise LedgerError(f"{member_id} was evicted and cannot return")
    if member_id in gov.authorities or member_id in gov.candidates:
        raise LedgerError(f"{member_id} is already an authority or candidate")
    vetoed = tuple(v for v in gov.vetoed if v != member_id)
    state.gov = msgspec.structs.replace(gov, candidates=(*gov.candidates, member_id), vetoed=vetoed)
    log(state, "nominate", member_id, "")
    return (member_id,)


def veto(state: LedgerState, tx: Veto, ctx: TxContext) -> Refs:
    member_id, gov = tx.member, state.gov
    if member_id in gov.authorities:
        raise LedgerError(f"{member_id} is an authority: evict it instead")
    if member_id not in gov.candidates:
        raise LedgerError(f"{member_id} is not a candidate")
    state.gov = msgspec.structs.replace(
        gov,
        candidates=tuple(c for c in gov.candidates if c != member_id),
        vetoed=(*gov.vetoed, member_id),
    )
    log(state, "veto", member_id, "")
    return (member_id,)


def evict(state: LedgerState, member_id: str, reason: str, *, action: str) -> None:
    """Remove an authority, fill the place from the candidates; effective next height."""
    gov = state.gov
    if member_id not in gov.authorities:
        raise LedgerError(f"{member_id} is not an authority")
    if len(gov.authorities) <= 1:
        raise LedgerError("the last authority cannot be evicted")
    remaining = [a for a in gov.authorities if a != member_id]
    candidates = list(gov.candidates)
    joined = None
    while candidates:
        candidate = candidates.pop(0)
        if candidate not in gov.banned and candidate not in remaining:
            joined = candidate
            remaining.append(candidate)
            break
    state.gov = msgspec.structs.replace(
        gov,
        authorities=sorted_authorities(remaining),
        candidates=tuple(candidates),
        banned=(*gov.banned, member_id),
        missed_streak=tuple((a, n) for a, n in gov.missed_streak if a != member_id),
    )
    log(state, action, member_id, reason)
    if joined is not None:
        log(state, "join", joined, f"replaces {member_id}")


def _evict_tx(state: LedgerState, tx: Evict, ctx: TxContext) -> Refs:
    evict(state, tx.member, tx.reason, action="evict")
    return (tx.member,)


def evidence(state: LedgerState, tx: ByzantineEvidence, ctx: TxContext) -> Refs:
    offender, gov = tx.first.sender, state.gov
    known = set(gov.authorities) | set(gov.previous_set) | set(gov.banned)
    problem = verify_evidence(tx.first, tx.second, state.directory, known)
    if problem is not None:
        raise LedgerError(f"not evidence of equivocation: {problem}")
    if offender in gov.banned:
        raise LedgerError(f"{offender} is already evicted")
    evict(
        state, offender, "equivocation (two conflicting signed consensus messages)", action="evict"
    )
    return (offender,)


def account_liveness(state: LedgerState, parent: BlockHeader) -> None:
    """The proposers of the rounds before the parent was first proposed missed their turn;
    the set deciding this block (the one in force after the parent, taken before a miss
    evicts anyone) becomes ``previous_set``: the block's header names it and its validators
    check for it, and the next block's accounting needs it. An eviction for missed turns
    takes effect at the next height, like any other.

    Derived from ``parent.proposer``, which the block hash covers: copies of one block
    decided in different rounds on different nodes carry different ``round`` fields, and the
    state never depends on a block's own round (a locked block re-proposed in a later round
    keeps its state root).
    """
    deciding = state.gov.authorities
    _count_misses(state, parent)
    state.gov = msgspec.structs.replace(state.gov, previous_set=deciding)


def _count_misses(state: LedgerState, parent: BlockHeader) -> None:
    gov = state.gov
    if parent.height == 0 or not gov.previous_set:
        return
    first = first_round_of(parent.height, parent.proposer, gov.previous_set)
    if first is None:
        return
    streak = dict(gov.missed_streak)
    epoch = dict(gov.epoch_missed)
    for r in range(first):
        missed = proposer_for(parent.height, r, gov.previous_set)
        streak[missed] = streak.get(missed, 0) + 1
        epoch[missed] = epoch.get(missed, 0) + 1
    streak[parent.proposer] = 0
    state.gov = msgspec.structs.replace(
        gov,
        missed_streak=tuple(sorted((a, n) for a, n in streak.items() if n)),
        epoch_missed=tuple(sorted(epoch.items())),
    )
    limit = state.params.liveness_missed_rounds
    for authority, count in sorted(streak.items()):
        if count >= limit and authority in state.gov.authorities:
            with contextlib.suppress(LedgerError):  # the last authority stays
                evict(state, authority, f"missed {count} proposals in a row", action="evict")


def reelect(state: LedgerState) -> None:
    """Every epoch: rank incumbents and candidates by missed proposals this epoch
    (incumbents first on ties, then candidates in nomination order); keep the set size."""
    if state.height % state.params.epoch_blocks != 0:
        return
    gov = state.gov
    epoch = dict(gov.epoch_missed)
    pool = [
        m
        for m in (*gov.authorities, *gov.candidates)
        if m not in gov.banned and m not in gov.vetoed
    ]
    ranked = sorted(enumerate(pool), key=lambda item: (epoch.get(item[1], 0), item[0]))
    size = len(gov.authorities)
    chosen = [m for _, m in ranked[:size]]
    rest = tuple(m for _, m in ranked[size:])
    new_set = sorted_authorities(chosen)
    changed = new_set != gov.authorities
    state.gov = msgspec.structs.replace(gov, authorities=new_set, candidates=rest, epoch_missed=())
    log(state, "reelect", ",".join(new_set), "changed" if changed else "unchanged")


COMPONENT = Component(
    "governance",
    parts=(
        Part(
            GOVERNANCE,
            "gov",
            Governance,
            initial=_initial,
            digest=_digest,
            proofs={GOVERNANCE: _prove},
            replaced=True,
        ),
    ),
    kinds=(
        tx_kind(Nominate, nominate),
        tx_kind(Veto, veto),
        tx_kind(Evict, _evict_tx),
        tx_kind(ByzantineEvidence, evidence),
    ),
    begin_block=account_liveness,
    end_block=reelect,
)
