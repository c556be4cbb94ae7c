"""Membership after the genesis: the regulator's admit, suspend, reinstate and offboard
transactions.

``botc keygen`` writes a new institution's identity file on its own machine; the regulator
admits it with ``botc regulator admit ID.identity.json``. The file is read and its proof of
possession checked here, and the member checked against the chain's state as the regulator's
own follower verified it (``peers.observer.ChainFollower``: no single authority is trusted),
so a tampered file, a proof that does not verify, an identity admitted twice or an id already
taken is refused with one line before anything is sent (exit 2). The ledger checks all of it
again (``rfq.ledger.components.members``).

Suspending and offboarding set the member's ``standing``: a suspended member may no longer
trade; an offboarded one may send no transaction at all. Either way its bus access ends: the
auth callout (``peers.callout``) refuses it and disconnects it. Reinstating lifts a suspension
(the member trades and connects again); offboarding is final. An offboarded member's live
contracts stay on the book and run to maturity on the oracle's fixings and the bank's
payments; a bilateral close-out needs both parties, so they are not closed out early.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from peers.errors import CliError
from peers.genesis import CeremonyError, read_identity
from rfq.errors import ValidationError
from rfq.identity import GRADES, Directory, Member, Role, validate_member
from rfq.ledger.state import LedgerState
from rfq.ledger.tx import OffboardMember, RegisterMember, ReinstateMember, SuspendMember

STANDING_ACTIONS = ("suspend", "reinstate", "offboard")


def admission_payload(
    path: Path,
    state: LedgerState,
    *,
    rating: str | None = None,
    capital: float = 0.0,
    ccr_threshold: float = 0.0,
) -> RegisterMember:
    """The ``RegisterMember`` for the identity file at ``path``; ``CliError`` (exit 2) naming
    the file and field when the file, its proof, the limits or the chain's state refuse it."""
    try:
        identity = read_identity(path)
    except CeremonyError as exc:
        raise CliError(str(exc)) from None
    if identity.role == Role.REGULATOR:
        raise CliError(f"{path}: role: a network has one regulator")
    if rating is not None and rating not in GRADES:
        raise CliError(f"--rating {rating!r} is not one of {', '.join(GRADES)}")
    if capital < 0 or ccr_threshold < 0:
        raise CliError("--capital and --ccr-threshold cannot be negative")
    member = identity.member(
        external_rating=rating, capital=float(capital), ccr_threshold=float(ccr_threshold)
    )
    try:
        validate_member(member, str(path))
    except ValidationError as exc:
        raise CliError(str(exc)) from None
    existing = state.members.get(member.id)
    if existing is not None:
        same = existing.sign_key == member.sign_key
        raise CliError(
            f"{path}: id: {member.id} is already a member"
            + (" (this identity was admitted before)" if same else " (another key holds the id)")
        )
    holder = _key_holder(state, member)
    if holder is not None:
        raise CliError(f"{path}: sign_key: already the key of member {holder}")
    return RegisterMember(member, identity.proof)


def _key_holder(state: LedgerState, member: Member) -> str | None:
    for other in state.members.values():
        if other.sign_key == member.sign_key or other.box_key == member.box_key:
            return other.id
    return None


def standing_payload(
    state: LedgerState, action: str, member_id: str, reason: str
) -> SuspendMember | ReinstateMember | OffboardMember:
    """The suspend, reinstate or offboard transaction; ``CliError`` for an unknown member or
    no reason. Whether the chain accepts it (an authority, a member already offboarded, one
    not suspended) is its answer."""
    if action not in STANDING_ACTIONS:
        raise CliError(f"unknown action {action!r} (expected {', '.join(STANDING_ACTIONS)})")
    if member_id not in state.members:
        raise CliError(f"no member {member_id!r} on chain (height {state.height})")
    if not reason.strip():
        raise CliError(f"{action} needs --reason")
    kinds: dict[str, type[SuspendMember | ReinstateMember | OffboardMember]] = {
        "suspend": SuspendMember,
        "reinstate": ReinstateMember,
        "offboard": OffboardMember,
    }
    return kinds[action](member_id, reason.strip())


def sync_directory(directory: Directory, members: Iterable[Member]) -> int:
    """Add to a bus's ``directory`` the members the chain registered since (a member is
    never removed: an offboarded one's old messages still verify, and admission refuses its
    new transactions); returns how many were added. Peers with a chain view (authorities,
    followers) call it at every final block, so they verify a new member's messages."""
    added = 0
    for member in members:
        if member.id not in directory:
            directory.add(member)
            added += 1
    return added
