"""The genesis ceremony: public identities with proof of possession, drafts, the regulator's seal.

Each institution makes its own key on its own machine and hands out only a public identity:
its id, role, name, both public keys and a signature by its signing key over the canonical
identity bytes, which proves whoever wrote the file holds the secret. The regulator collects
them into a draft (each proof checked as it goes in), fixes the authorities and parameters,
and seals the genesis: an Ed25519 signature by its own member key over the genesis hash. A
peer refuses a genesis whose seal does not verify, and members compare the hash out of band.

Pure: bytes and text in, typed objects out; a bad input is a ``ValidationError`` naming the
file, field or member, never another exception. Files and the ``botc genesis`` command live
in ``peers.genesis``.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Any

import msgspec

from rfq.errors import DECODE_ERRORS, ValidationError
from rfq.identity import (
    AUTHORITY_ELIGIBLE,
    AuthoritySetup,
    Genesis,
    Identity,
    Member,
    NetworkParams,
    Role,
    check_genesis,
    check_params,
    validate_member,
    verify_signature,
)
from rfq.rating import RatingWeights

IDENTITY_DOMAIN = b"botc-identity-v1\x00"
"""Prefixes the identity bytes a proof of possession signs (no other signature can be one)."""
SEAL_DOMAIN = b"botc-genesis-seal-v1\x00"
"""Prefixes the genesis hash the regulator's seal signs."""


class PublicIdentity(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """What ``botc keygen`` publishes: a member's public keys and its proof of possession.

    ``sign_key`` and ``box_key`` are encoded as in ``Member``; ``proof`` is the base64
    Ed25519 signature by ``sign_key`` over ``identity_bytes``.
    """

    id: str
    role: Role
    name: str
    sign_key: str
    box_key: str
    proof: str

    def member(self, **extra: Any) -> Member:
        """The genesis record for this identity (``extra``: rating, capital, ccr_threshold)."""
        return Member(
            id=self.id,
            role=self.role,
            name=self.name,
            sign_key=self.sign_key,
            box_key=self.box_key,
            **extra,
        )


def identity_bytes(member: Member | PublicIdentity) -> bytes:
    """The canonical bytes a proof of possession signs: the identity's own fields, in order."""
    claim = (member.id, str(member.role), member.name, member.sign_key, member.box_key)
    return IDENTITY_DOMAIN + msgspec.msgpack.encode(claim)


def public_identity(identity: Identity, name: str) -> PublicIdentity:
    """Publish ``identity`` under ``name``, signed by its own key."""
    member = identity.member(name)
    proof = base64.b64encode(identity.sign(identity_bytes(member))).decode()
    return PublicIdentity(
        id=member.id,
        role=member.role,
        name=member.name,
        sign_key=member.sign_key,
        box_key=member.box_key,
        proof=proof,
    )


def identity_json(identity: PublicIdentity) -> str:
    """The identity file's text: indented JSON, one field a line."""
    text: str = msgspec.json.format(msgspec.json.encode(identity).decode(), indent=2)
    return text + "\n"


def _signature(text: str) -> bytes | None:
    """The signature's 64 bytes, in their one canonical base64 text only (a text with other
    trailing bits decodes to the same bytes: it would let a file change unseen)."""
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None
    return raw if len(raw) == 64 and base64.b64encode(raw).decode() == text else None


def proof_problem(member: Member | PublicIdentity, proof: str) -> str | None:
    """Why ``proof`` does not prove ``member``'s key holder wrote it, or None if it does."""
    try:
        validate_member(_as_member(member), "identity")
    except ValidationError as exc:
        return str(exc)
    signature = _signature(proof)
    if signature is None:
        return "proof is not a base64 Ed25519 signature"
    if not verify_signature(_as_member(member).verify_key, signature, identity_bytes(member)):
        return "proof of possession does not verify against sign_key"
    return None


def _as_member(member: Member | PublicIdentity) -> Member:
    return member if isinstance(member, Member) else member.member()


def parse_identity(data: bytes | str, *, source: str) -> PublicIdentity:
    """A public identity file, its fields checked and its proof verified; errors name
    ``source`` and the field."""
    try:
        identity = msgspec.json.decode(data, type=PublicIdentity, strict=True)
    except msgspec.ValidationError as exc:
        raise ValidationError(f"not a B-OTC identity ({exc})", where=source) from None
    except DECODE_ERRORS:
        raise ValidationError("not a B-OTC identity (not valid JSON)", where=source) from None
    try:
        validate_member(identity.member(), source)
    except ValidationError as exc:
        raise ValidationError(exc.message, where=exc.where) from None
    problem = proof_problem(identity, identity.proof)
    if problem is not None:
        raise ValidationError(problem, where=f"{source}: proof")
    return identity


# --------------------------------------------------------------------------------------------
# Drafts


class GenesisDraft(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A genesis being assembled by the regulator: members with the proofs they came with.

    ``proofs`` maps each member id to the proof from its identity file, so sealing can check
    every member again: a draft edited by hand cannot smuggle in a key nobody holds.
    """

    name: str
    chain_id: str
    created: str
    members: tuple[Member, ...] = ()
    proofs: dict[str, str] = msgspec.field(default_factory=dict)
    authorities: AuthoritySetup = AuthoritySetup(initial=())
    rating: RatingWeights = RatingWeights(alpha=0.4, beta=0.6)
    params: NetworkParams = NetworkParams()

    def genesis(self, seal: str | None = None) -> Genesis:
        return Genesis(
            name=self.name,
            chain_id=self.chain_id,
            created=self.created,
            members=self.members,
            authorities=self.authorities,
            rating=self.rating,
            params=self.params,
            seal=seal,
        )


def new_draft(name: str, chain_id: str, created: str) -> GenesisDraft:
    if not name.strip():
        raise ValidationError("a network needs a name", where="name")
    if not chain_id.strip():
        raise ValidationError("a network needs a chain id", where="chain_id")
    return GenesisDraft(name=name, chain_id=chain_id, created=created)


def add_identity(
    draft: GenesisDraft, identity: PublicIdentity, *, source: str, **extra: Any
) -> GenesisDraft:
    """The draft with ``identity`` as a new member; refuses a bad proof, an identity added
    twice, an id or key another member has, and a second regulator."""
    problem = proof_problem(identity, identity.proof)
    if problem is not None:
        raise ValidationError(problem, where=f"{source}: proof")
    same_id = next((m for m in draft.members if m.id == identity.id), None)
    if same_id is not None and same_id.sign_key == identity.sign_key:
        raise ValidationError(f"{identity.id} is already in the draft", where=source)
    if same_id is not None:
        raise ValidationError(
            f"id {identity.id!r} is already taken by another member's key", where=source
        )
    same_key = next((m for m in draft.members if m.sign_key == identity.sign_key), None)
    if same_key is not None:
        raise ValidationError(
            f"{identity.id}'s sign_key is already {same_key.id}'s", where=f"{source}: sign_key"
        )
    if identity.role == Role.REGULATOR:
        regulator = next((m for m in draft.members if m.role == Role.REGULATOR), None)
        if regulator is not None:
            raise ValidationError(
                f"a network has one regulator and {regulator.id} is it", where=f"{source}: role"
            )
    try:
        member = identity.member(**extra)
        validate_member(member, source)
    except (TypeError, ValidationError) as exc:
        raise ValidationError(str(exc), where=source) from None
    return msgspec.structs.replace(
        draft,
        members=(*draft.members, member),
        proofs={**draft.proofs, identity.id: identity.proof},
    )


def set_authorities(
    draft: GenesisDraft, initial: tuple[str, ...], candidates: tuple[str, ...] = ()
) -> GenesisDraft:
    """The draft with this authority set; each id a member that may run a node."""
    by_id = {m.id: m for m in draft.members}
    for key, ids in (("initial", initial), ("candidates", candidates)):
        for aid in ids:
            if aid not in by_id:
                raise ValidationError(f"{aid!r} is not a member of the draft", where=f"--{key}")
            if by_id[aid].role not in AUTHORITY_ELIGIBLE:
                raise ValidationError(
                    f"{aid} is a {by_id[aid].role}; authorities are dealers, CCPs or guarantors",
                    where=f"--{key}",
                )
    both = set(initial) & set(candidates)
    if both:
        raise ValidationError(
            f"{', '.join(sorted(both))} cannot be both initial and candidate", where="--candidates"
        )
    if len(set(initial)) < 4:
        raise ValidationError(
            "BFT needs at least 4 distinct initial authorities", where="--initial"
        )
    return msgspec.structs.replace(
        draft, authorities=AuthoritySetup(initial=initial, candidates=candidates)
    )


def set_params(
    draft: GenesisDraft,
    values: Mapping[str, str],
    rating: tuple[float, float] | None = None,
) -> GenesisDraft:
    """The draft with these network parameters (text values, as typed on a command line)
    and, if given, formula 1's rating weights (alpha, beta)."""
    current = msgspec.to_builtins(draft.params)
    for name, text in values.items():
        if name not in current:
            raise ValidationError(
                f"no parameter {name!r} (one of {', '.join(current)})", where=f"params.{name}"
            )
        current[name] = text
    try:
        params = msgspec.convert(current, NetworkParams, strict=False)
    except msgspec.ValidationError as exc:
        raise ValidationError(str(exc).replace("$.", "params."), where="--set") from None
    check_params(params, "--set")
    weights = draft.rating if rating is None else RatingWeights(alpha=rating[0], beta=rating[1])
    return msgspec.structs.replace(draft, params=params, rating=weights)


def draft_problem(draft: GenesisDraft, *, source: str) -> None:
    """Refuse a draft that is not yet a genesis, or whose members' proofs do not all verify."""
    for i, member in enumerate(draft.members):
        proof = draft.proofs.get(member.id)
        if proof is None:
            raise ValidationError(
                f"{member.id} has no proof of possession", where=f"{source}: members[{i}]"
            )
        problem = proof_problem(member, proof)
        if problem is not None:
            raise ValidationError(f"{member.id}: {problem}", where=f"{source}: members[{i}]")
    check_genesis(draft.genesis(), source)


def seal_bytes(genesis: Genesis) -> bytes:
    """What the regulator signs: the genesis hash, under its own domain."""
    return SEAL_DOMAIN + genesis.hash()


def seal_draft(draft: GenesisDraft, regulator: Identity, *, source: str) -> Genesis:
    """The finished genesis, sealed by the regulator whose key is ``regulator``."""
    draft_problem(draft, source=source)
    return seal_as_regulator(draft.genesis(), regulator)


def seal_as_regulator(genesis: Genesis, regulator: Identity) -> Genesis:
    """``genesis`` sealed, if ``regulator`` is the key of the regulator it names."""
    if regulator.public_nkey != genesis.regulator.sign_key:
        raise ValidationError(
            f"the key is {regulator.member_id}'s, not the regulator {genesis.regulator.id}'s",
            where="--key",
        )
    return seal_genesis(genesis, regulator)


def seal_genesis(genesis: Genesis, regulator: Identity) -> Genesis:
    """``genesis`` sealed with ``regulator``'s key (any previous seal replaced)."""
    signature = regulator.sign(seal_bytes(genesis))
    return msgspec.structs.replace(genesis, seal=base64.b64encode(signature).decode())


def seal_problem(genesis: Genesis) -> str | None:
    """Why the genesis is not sealed by the regulator it names, or None if it is (that the
    regulator is the real one, members learn by comparing the genesis hash out of band)."""
    if genesis.seal is None:
        return (
            "not sealed by the regulator (seal it: botc genesis seal GENESIS --key REG.key "
            "GENESIS --force)"
        )
    signature = _signature(genesis.seal)
    if signature is None:
        return "seal is not a base64 Ed25519 signature"
    regulators = genesis.by_role(Role.REGULATOR)
    if len(regulators) != 1:
        return f"a network has exactly one regulator, found {len(regulators)}"
    try:
        key = regulators[0].verify_key
    except (ValidationError, ValueError):
        return "the regulator's sign_key is not a valid key"
    if not verify_signature(key, signature, seal_bytes(genesis)):
        return f"the regulator {regulators[0].id}'s seal does not verify (the genesis was altered)"
    return None
