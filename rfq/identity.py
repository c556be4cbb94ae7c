"""Members, roles, keys and the genesis of a B-OTC network.

One Ed25519 key per member: it signs messages, seals blocks and is the member's NATS nkey
(nkeys are Ed25519). Signing and verifying use libsodium (PyNaCl): on this hardware it verifies
twice as fast as OpenSSL, and signature checks are the cost of every message and transaction.
The member's X25519 key, used to seal confidential payloads to it, is derived from the same
seed with HKDF, so a key file holds one secret.

Parsing is pure (text in, typed objects out, ``ValidationError`` naming the file and field);
reading files, their permissions and writing them lives in ``peers.netdir`` and
``peers.genesis``. How a genesis comes to be (each member's own key, proofs of possession,
the regulator's seal) is ``rfq.genesis``.
"""

from __future__ import annotations

import base64
import datetime as dt
import enum
import hashlib
import os
import re
import tomllib
from collections.abc import Iterable
from typing import Any, TypeVar

import msgspec
import nacl.exceptions
import nacl.signing
import nkeys
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from rfq.errors import ValidationError
from rfq.rating import RatingWeights

VerifyKey = nacl.signing.VerifyKey
T = TypeVar("T")


class Role(enum.StrEnum):
    CLIENT = "client"
    DEALER = "dealer"
    CCP = "ccp"
    GUARANTOR = "guarantor"
    REGULATOR = "regulator"
    ORACLE = "oracle"
    BANK = "bank"


# Institutions that may run an authority node (paper section II.1); the regulator never does.
AUTHORITY_ELIGIBLE = frozenset({Role.DEALER, Role.CCP, Role.GUARANTOR})

GRADES = ("AAA", "AA", "A", "BBB", "BB", "B", "CCC")

_MEMBER_ID = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,31}$")


class Member(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A member's public record in the genesis.

    ``sign_key`` is the nkey-encoded Ed25519 public key (``U...``), ``box_key`` the base64
    X25519 public key. ``external_rating`` is the grade an outside agency gives (clients);
    ``capital`` and ``ccr_threshold`` feed the regulator's risk monitor.
    """

    id: str
    role: Role
    name: str
    sign_key: str
    box_key: str
    external_rating: str | None = None
    capital: float = 0.0
    ccr_threshold: float = 0.0

    @property
    def verify_key(self) -> VerifyKey:
        return nacl.signing.VerifyKey(decode_public_nkey(self.sign_key))

    @property
    def box_public(self) -> X25519PublicKey:
        return X25519PublicKey.from_public_bytes(base64.b64decode(self.box_key))


class NetworkParams(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Tunables every node must agree on, fixed at genesis."""

    block_time_ms: int = 200
    max_block_txs: int = 2000
    mempool_max: int = 100_000
    round_timeout_ms: int = 2000
    epoch_blocks: int = 10_000
    liveness_missed_rounds: int = 5
    margin_cure_days: int = 1
    """A margin call made on business day D is due by the end of day D + this (>= 0)."""
    message_ttl_s: float = 30.0
    max_message_bytes: int = 256 * 1024
    sender_rate_per_s: float = 2000.0
    sender_burst: int = 4000
    default_threshold: float = 0.0
    default_mta: float = 0.0
    idle_block_ms: int = 2000
    snapshot_every: int = 100
    retain_blocks: int = 300
    """An ended contract, its trade and payments stay in the hot state this many blocks after
    it ended and its last payment became final, then leave it (``rfq.ledger.components.
    retention``; an authority keeps them provable in its store's history)."""
    max_block_bytes: int = 1_000_000
    consensus_max_bytes: int = 8 * 1024 * 1024
    max_clock_skew_ms: int = 5_000
    """A validator refuses a proposal dated further than this from its own clock
    (``rfq.ledger.clock``)."""


class AuthoritySetup(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    initial: tuple[str, ...]
    candidates: tuple[str, ...] = ()


class Genesis(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Everything a node needs to agree on block 0.

    ``seal`` is the regulator's signature over the genesis hash (``rfq.genesis``): it is not
    part of the content it signs, so the hash, block 0 and the chain are the same whether or
    not a genesis is sealed.
    """

    name: str
    chain_id: str
    created: str
    members: tuple[Member, ...]
    authorities: AuthoritySetup
    rating: RatingWeights = RatingWeights(alpha=0.4, beta=0.6)
    params: NetworkParams = NetworkParams()
    seal: str | None = None

    def member(self, member_id: str) -> Member:
        for m in self.members:
            if m.id == member_id:
                return m
        raise ValidationError(f"no member {member_id!r} in the genesis", where="members")

    def by_role(self, role: Role) -> list[Member]:
        return [m for m in self.members if m.role == role]

    @property
    def regulator(self) -> Member:
        regulators = self.by_role(Role.REGULATOR)
        return regulators[0]

    def content_bytes(self) -> bytes:
        """The canonical encoding of everything but the seal (a map of the fields in order,
        the bytes an unsealed genesis has always encoded to)."""
        content = {f: getattr(self, f) for f in self.__struct_fields__ if f != "seal"}
        return msgspec.msgpack.encode(content)

    def hash(self) -> bytes:
        """Hash of the canonical content: what block 0 commits to and the regulator seals.
        The one definition: ``botc genesis show`` prints it for members to compare."""
        return hashlib.sha256(self.content_bytes()).digest()


def validate_member(m: Member, where: str) -> None:
    """A member record's id, keys and rating are well formed (``where`` prefixes errors)."""
    if not _MEMBER_ID.match(m.id):
        raise ValidationError(f"member id {m.id!r} is not a valid id", where=f"{where}.id")
    try:
        decode_public_nkey(m.sign_key)
    except ValidationError as exc:
        raise ValidationError(exc.message, where=f"{where}.sign_key") from None
    try:
        raw = base64.b64decode(m.box_key, validate=True)
    except ValueError:
        raw = b""
    if len(raw) != 32:
        raise ValidationError("not a base64 X25519 public key", where=f"{where}.box_key")
    if m.external_rating is not None and m.external_rating not in GRADES:
        raise ValidationError(
            f"rating {m.external_rating!r} is not one of {', '.join(GRADES)}",
            where=f"{where}.external_rating",
        )
    if m.capital < 0:
        raise ValidationError("capital cannot be negative", where=f"{where}.capital")


def check_genesis(genesis: Genesis, where: str) -> None:
    """A whole genesis is consistent: members, one regulator, authorities, weights, params."""
    try:
        created = dt.datetime.fromisoformat(genesis.created)
    except ValueError:
        raise ValidationError("not an ISO date and time", where=f"{where}: created") from None
    if created.tzinfo is None:
        raise ValidationError("needs a time zone (e.g. +00:00)", where=f"{where}: created")
    seen: set[str] = set()
    for i, m in enumerate(genesis.members):
        field = f"{where}: members[{i}]"
        validate_member(m, field)
        if m.id in seen:
            raise ValidationError(f"duplicate member id {m.id!r}", where=f"{field}.id")
        seen.add(m.id)
    regulators = [m for m in genesis.members if m.role == Role.REGULATOR]
    if len(regulators) != 1:
        raise ValidationError(
            f"a network has exactly one regulator, found {len(regulators)}",
            where=f"{where}: members",
        )
    by_id = {m.id: m for m in genesis.members}
    for key, ids in (
        ("initial", genesis.authorities.initial),
        ("candidates", genesis.authorities.candidates),
    ):
        for aid in ids:
            if aid not in by_id:
                raise ValidationError(
                    f"unknown member {aid!r}", where=f"{where}: authorities.{key}"
                )
            if by_id[aid].role not in AUTHORITY_ELIGIBLE:
                raise ValidationError(
                    f"{aid} is a {by_id[aid].role}; authorities are dealers, CCPs or guarantors",
                    where=f"{where}: authorities.{key}",
                )
    if len(set(genesis.authorities.initial)) < 4:
        raise ValidationError(
            "BFT needs at least 4 distinct initial authorities",
            where=f"{where}: authorities.initial",
        )
    w = genesis.rating
    if not (0 <= w.alpha <= 1 and 0 <= w.beta <= 1 and abs(w.alpha + w.beta - 1) < 1e-9):
        raise ValidationError(
            f"alpha ({w.alpha}) and beta ({w.beta}) must be in [0, 1] and sum to 1",
            where=f"{where}: rating",
        )
    check_params(genesis.params, where)


def check_params(p: NetworkParams, where: str) -> None:
    """Network parameters a chain can run with (``where`` prefixes errors)."""
    for name in (
        "block_time_ms",
        "max_block_txs",
        "mempool_max",
        "round_timeout_ms",
        "epoch_blocks",
        "liveness_missed_rounds",
        "max_message_bytes",
        "sender_burst",
        "max_clock_skew_ms",
    ):
        if getattr(p, name) <= 0:
            raise ValidationError("must be positive", where=f"{where}: params.{name}")
    if not 0 <= p.margin_cure_days <= 30:
        raise ValidationError("must be 0 to 30 days", where=f"{where}: params.margin_cure_days")
    if p.message_ttl_s <= 0 or p.sender_rate_per_s <= 0:
        raise ValidationError("ttl and rate must be positive", where=f"{where}: params")


def _toml_as(text: str, cls: type[T], *, source: str, what: str) -> T:
    """TOML text as a typed struct; errors name ``source`` (and the field where known)."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ValidationError(f"not {what} ({exc})", where=source) from None
    try:
        return msgspec.convert(raw, cls, strict=True)
    except msgspec.ValidationError as exc:
        raise ValidationError(str(exc), where=source) from None
    except ValidationError as exc:
        raise ValidationError(exc.message, where=f"{source}: {exc.where}") from None


def parse_genesis(text: str, *, source: str = "genesis.toml") -> Genesis:
    """Parse and check a genesis; errors name ``source`` and the field."""
    genesis = _toml_as(text, Genesis, source=source, what="valid TOML")
    check_genesis(genesis, source)
    return genesis


def genesis_to_dict(genesis: Genesis) -> dict[str, Any]:
    """A TOML-friendly dict (no None values: TOML has no null)."""

    def strip(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items() if v is not None}
        if isinstance(value, list | tuple):
            return [strip(v) for v in value]
        return value

    result: dict[str, Any] = strip(msgspec.to_builtins(genesis))
    return result


# --------------------------------------------------------------------------------------------
# Keys


def encode_public_nkey(raw: bytes) -> str:
    """The nkey ``U...`` text of a raw Ed25519 public key (what nats-server's config wants)."""
    prefix = bytearray([nkeys.PREFIX_BYTE_USER])
    payload = prefix + bytearray(raw)
    checksum = nkeys.crc16_checksum(payload)
    return base64.b32encode(bytes(payload) + bytes(checksum)).rstrip(b"=").decode()


def decode_public_nkey(text: str) -> bytes:
    try:
        padded = text + "=" * (-len(text) % 8)
        raw = base64.b32decode(padded)
    except (ValueError, TypeError):
        raise ValidationError(f"{text[:12]!r}... is not an nkey") from None
    if len(raw) != 35 or raw[0] != nkeys.PREFIX_BYTE_USER:
        raise ValidationError("not a user nkey (expected 'U...')")
    body, checksum = raw[:33], raw[33:]
    if bytes(nkeys.crc16_checksum(bytearray(body))) != checksum:
        raise ValidationError("nkey checksum does not match")
    return raw[1:33]


def _derive_box_key(seed: bytes) -> X25519PrivateKey:
    okm = HKDF(algorithm=hashes.SHA256(), length=32, salt=b"botc", info=b"x25519-box").derive(seed)
    return X25519PrivateKey.from_private_bytes(okm)


class Identity:
    """A member's private keys: sign with Ed25519, open sealed payloads with X25519.

    Never printed or logged: ``repr`` shows the member id only.
    """

    __slots__ = ("_seed", "box_key", "member_id", "role", "sign_key")

    def __init__(self, member_id: str, role: Role, seed: bytes) -> None:
        if len(seed) != 32:
            raise ValidationError("an Ed25519 seed is 32 bytes")
        self.member_id = member_id
        self.role = role
        self._seed = seed
        self.sign_key = nacl.signing.SigningKey(seed)
        self.box_key = _derive_box_key(seed)

    @classmethod
    def generate(cls, member_id: str, role: Role) -> Identity:
        return cls(member_id, role, os.urandom(32))

    def __repr__(self) -> str:
        return f"Identity({self.member_id!r}, {self.role})"

    @property
    def nkey_seed(self) -> str:
        """The ``SU...`` seed nats-py signs the server's nonce with."""
        encoded: bytes = nkeys.encode_seed(self._seed, nkeys.PREFIX_BYTE_USER)
        return encoded.decode()

    @property
    def public_nkey(self) -> str:
        return encode_public_nkey(bytes(self.sign_key.verify_key))

    @property
    def box_public_b64(self) -> str:
        raw = self.box_key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        return base64.b64encode(raw).decode()

    def sign(self, data: bytes) -> bytes:
        return self.sign_key.sign(data).signature

    def member(self, name: str, **extra: Any) -> Member:
        return Member(
            id=self.member_id,
            role=self.role,
            name=name,
            sign_key=self.public_nkey,
            box_key=self.box_public_b64,
            **extra,
        )

    def key_file_text(self) -> str:
        return (
            "# B-OTC member key. Secret: keep this file mode 0600 and never share it.\n"
            f'id = "{self.member_id}"\n'
            f'role = "{self.role}"\n'
            f'seed = "{self.nkey_seed}"\n'
        )


class _KeyFile(msgspec.Struct, forbid_unknown_fields=True):
    id: str
    role: Role
    seed: str


def parse_key_file(text: str, *, source: str) -> Identity:
    """Parse a key file written by ``botc init``; errors name ``source`` and the field."""
    parsed = _toml_as(text, _KeyFile, source=source, what="a key file")
    try:
        prefix, seed = nkeys.decode_seed(bytearray(parsed.seed.encode()))
    except Exception:
        raise ValidationError("seed is not a valid nkey seed", where=f"{source}: seed") from None
    if prefix != nkeys.PREFIX_BYTE_USER:
        raise ValidationError("seed is not a user nkey seed ('SU...')", where=f"{source}: seed")
    return Identity(parsed.id, parsed.role, bytes(seed))


def verify_signature(key: VerifyKey, signature: bytes, data: bytes) -> bool:
    try:
        key.verify(data, signature)
    except (nacl.exceptions.BadSignatureError, ValueError, TypeError):
        return False
    return True


class Directory:
    """Who is who: member records by id, with their decoded public keys cached.

    The ledger can register members after genesis; the directory grows with it.
    """

    def __init__(self, members: Iterable[Member]) -> None:
        self._members: dict[str, Member] = {}
        self._verify: dict[str, VerifyKey] = {}
        self._box: dict[str, X25519PublicKey] = {}
        for m in members:
            self.add(m)

    def add(self, member: Member) -> None:
        self._members[member.id] = member
        self._verify[member.id] = member.verify_key
        self._box[member.id] = member.box_public

    def copy(self) -> Directory:
        """An independent directory with the same members (keys not decoded again)."""
        twin = Directory(())
        twin._members, twin._verify, twin._box = (
            dict(self._members),
            dict(self._verify),
            dict(self._box),
        )
        return twin

    def __contains__(self, member_id: object) -> bool:
        return member_id in self._members

    def __iter__(self) -> Any:
        return iter(self._members.values())

    def get(self, member_id: str) -> Member | None:
        return self._members.get(member_id)

    def verify_key(self, member_id: str) -> VerifyKey:
        return self._verify[member_id]

    def box_key(self, member_id: str) -> X25519PublicKey:
        return self._box[member_id]

    def ids(self, role: Role | None = None) -> list[str]:
        return [m.id for m in self._members.values() if role is None or m.role == role]
