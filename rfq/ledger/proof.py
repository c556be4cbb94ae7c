"""Proofs of single state entries against a block header's ``state_root``: pure functions.

The state root is ``SHA-256("botc-state/v2\\x00" + msgpack(RootParts))``: the height, the
timestamp and one 32-byte digest per named component, the governance struct, the contract
book and every ledger map (the components of ``rfq.ledger.components.registry``). A
``StateProof`` carries those parts, so the verifier needs no table of components: the names
are committed with the digests.

What a proof shows, by component:

- a ledger map (``members``, ``ratings``, ``payments``, ``guarantees``, ``standing``,
  ``committed``, ...): the value under ``key`` (its canonical msgpack, decodable with the
  map's value type), or that there is none, by the key's bucket and path
  (``rfq.ledger.digest.BucketPath``) to the map's digest;
- ``contracts``: a contract's canonical record (``rfq.contracts.book.ContractRecord``) by
  contract id, by its path to the contracts' digest and the hash of the book's other fields
  (``book_header``), which together give the ``book`` digest; a live contract's record there
  holds its changing fields blank, and its proof carries their row's chunk of the book's live
  table (``LiveWitness``), from which the verified value is its whole record;
- ``governance``: the whole governance struct's encoding (one value; ``key`` is ``""``).

``verify_state_proof`` recomputes everything from the proof's own bytes and either returns a
``ProofResult`` or raises ``ProofError`` with the reason; whatever the proof holds (another
height's parts, a truncated path, a tampered entry or sibling, fields of the wrong type) it
raises nothing else.
"""

from __future__ import annotations

import hashlib
from typing import Any, TypeGuard

import msgspec

from rfq.errors import DECODE_ERRORS, RfqError, ValidationError
from rfq.ledger.digest import (
    ARITY,
    ARITY_BITS,
    BUCKET_BYTES,
    DEPTH,
    EMPTY,
    BucketPath,
    book_digest,
    book_header,
    bucket_hash,
    map_digest,
    node_hash,
    value_hash,
)

STATE_PREFIX = b"botc-state/v2\x00"
GOVERNANCE_PREFIX = b"botc-governance\x00"

GOVERNANCE = "governance"
"""The component (and root part) of the governance struct."""
BOOK = "book"
"""The root part of the contract book."""
CONTRACTS = "contracts"
"""The component of the book's contracts, keyed by contract id (part of ``book``)."""
LIVE = "live"
"""The book's live table: live contracts' changing fields in chunks of rows (``book``)."""

_MAX_U63 = (1 << 63) - 1
_encoder = msgspec.msgpack.Encoder()


class ProofError(RfqError):
    """A state proof that does not verify (or cannot be made); ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class RootParts(msgspec.Struct, frozen=True, array_like=True, forbid_unknown_fields=True):
    """What the state root hashes: height, timestamp and (name, digest) per component."""

    height: int
    timestamp_ms: int
    components: tuple[tuple[str, bytes], ...]


class LiveWitness(msgspec.Struct, frozen=True, array_like=True, forbid_unknown_fields=True):
    """A live contract's chunk of the book's live table and its path: the fields that change
    while a contract lives (status, margin, averages, its margin call) are rows of the live
    table, not of its record (``rfq.contracts.book``). ``rest``: the hash of the book's small
    fields, which with the live table's digest gives the book header."""

    rest: bytes
    chunk_key: str
    chunk: bytes
    path: BucketPath


class StateProof(msgspec.Struct, frozen=True, array_like=True, forbid_unknown_fields=True):
    """An entry of one component (or the absence of ``key``) and what links it to a root.

    ``value``: the entry's canonical msgpack, ``None`` when ``key`` has no entry; ``path``:
    its bucket path (maps and contracts); ``book_header``: for contracts, the hash of the
    book's fields other than its contracts; ``parts``: the state root's parts; ``live``: for
    a live contract, its row's chunk of the live table (``LiveWitness``).
    """

    component: str
    key: str
    value: bytes | None
    path: BucketPath | None
    book_header: bytes | None
    parts: RootParts
    live: LiveWitness | None = None


class ProofResult(msgspec.Struct, frozen=True):
    """What a verified proof established: at ``height``, ``component[key]`` is ``value``
    (canonical msgpack) or, when ``value`` is None, there is no such entry (a contract's
    value is its whole record: for a live one, joined from its proven row)."""

    component: str
    key: str
    value: bytes | None
    height: int
    timestamp_ms: int

    @property
    def present(self) -> bool:
        return self.value is not None

    def decode(self, value_type: Any) -> Any:
        """The proven value as ``value_type``; ``ProofError`` if absent or not of that type."""
        if self.value is None:
            raise ProofError(f"{self.component} has no entry {self.key!r}")
        try:
            return msgspec.msgpack.decode(self.value, type=value_type)
        except DECODE_ERRORS as exc:
            raise ProofError(f"the proven value is not a {value_type!r}: {exc}") from None


_proof_decoder = msgspec.msgpack.Decoder(StateProof)


def encode_state_proof(proof: StateProof) -> bytes:
    return _encoder.encode(proof)


def decode_state_proof(data: bytes) -> StateProof:
    """A proof from the wire; ``ProofError`` on bytes that are not one."""
    try:
        return _proof_decoder.decode(data)
    except DECODE_ERRORS as exc:
        raise ProofError(f"not a state proof: {exc}") from None


def governance_digest(encoded: bytes) -> bytes:
    """The governance struct's root part, from its canonical msgpack."""
    return hashlib.sha256(GOVERNANCE_PREFIX + encoded).digest()


def state_root_of(parts: RootParts) -> bytes:
    return hashlib.sha256(STATE_PREFIX + _encoder.encode(parts)).digest()


# --------------------------------------------------------------------------------------------
# Verification


def _is_int(x: object, low: int, high: int) -> bool:
    return isinstance(x, int) and not isinstance(x, bool) and low <= x <= high


def _is_digest(x: object) -> TypeGuard[bytes]:
    return isinstance(x, bytes) and len(x) == 32


def _utf8(text: object, what: str) -> bytes:
    if not isinstance(text, str):
        raise ProofError(f"{what} is not a string")
    try:
        return text.encode()
    except UnicodeEncodeError:
        raise ProofError(f"{what} is not valid UTF-8") from None


def _check_parts(parts: object) -> RootParts:
    if not isinstance(parts, RootParts):
        raise ProofError("the proof carries no root parts")
    if not _is_int(parts.height, 0, _MAX_U63) or not _is_int(parts.timestamp_ms, 0, _MAX_U63):
        raise ProofError("height and timestamp must be integers from 0 to 2**63 - 1")
    components = parts.components
    if not isinstance(components, tuple):
        raise ProofError("the root parts' components are not a sequence")
    names: set[str] = set()
    for item in components:
        if not (isinstance(item, tuple) and len(item) == 2):
            raise ProofError("a root component is not a (name, digest) pair")
        name, digest = item
        _utf8(name, "a component name")
        if not _is_digest(digest):
            raise ProofError(f"the digest of component {name!r} is not 32 bytes")
        if name in names:
            raise ProofError(f"component {name!r} appears twice in the root parts")
        names.add(name)
    return parts


def _bucket_of(raw: bytes) -> int:
    return int.from_bytes(hashlib.sha256(raw).digest()[:BUCKET_BYTES], "big")


def path_digest(name: bytes, key: str, value: bytes | None, path: object) -> bytes:
    """The digest of map ``name`` if ``key`` holds ``value`` (None: no entry) and ``path`` is
    its bucket path; ``ProofError`` when the path is malformed or contradicts the claim."""
    if not isinstance(path, BucketPath):
        raise ProofError("the proof carries no bucket path")
    bucket = _bucket_of(_utf8(key, "the key"))
    entries, siblings = path.entries, path.siblings
    if not isinstance(entries, tuple) or not isinstance(siblings, tuple):
        raise ProofError("the bucket path's entries and siblings must be sequences")
    items: list[tuple[str, bytes]] = []
    previous: str | None = None
    for entry in entries:
        if not (isinstance(entry, tuple) and len(entry) == 2):
            raise ProofError("a bucket entry is not a (key, value hash) pair")
        other, vh = entry
        raw = _utf8(other, "a bucket entry's key")
        if not _is_digest(vh):
            raise ProofError(f"the value hash of bucket entry {other!r} is not 32 bytes")
        if previous is not None and other <= previous:
            raise ProofError("the bucket's entries are not in strictly increasing key order")
        if other == key:
            raise ProofError(f"the bucket's other entries include the key {key!r} itself")
        if _bucket_of(raw) != bucket:
            raise ProofError(f"bucket entry {other!r} does not belong in the key's bucket")
        previous = other
        items.append((other, vh))
    if value is not None:
        if not isinstance(value, bytes):
            raise ProofError("the value is not bytes")
        items.append((key, value_hash(value)))
        items.sort(key=lambda kv: kv[0])
    if len(siblings) != DEPTH:
        raise ProofError(f"the path has {len(siblings)} levels, a map's tree has {DEPTH}")
    h = bucket_hash(items)
    index = bucket
    for depth, group in zip(range(DEPTH, 0, -1), siblings, strict=True):
        if not isinstance(group, tuple) or len(group) != ARITY - 1:
            raise ProofError(f"level {DEPTH - depth} of the path does not hold {ARITY - 1} hashes")
        children: list[bytes] = []
        for sibling in group:
            if sibling == b"":
                children.append(EMPTY[depth])
            elif _is_digest(sibling):
                children.append(sibling)
            else:
                raise ProofError(f"a sibling at level {DEPTH - depth} is not 32 bytes or empty")
        children.insert(index & (ARITY - 1), h)
        h = node_hash(children)
        index >>= ARITY_BITS
    return map_digest(name, h)


def verify_state_proof(
    proof: object,
    state_root: bytes,
    *,
    component: str | None = None,
    key: str | None = None,
) -> ProofResult:
    """What ``proof`` proves under ``state_root``, or ``ProofError`` with the reason.

    Pass ``component`` and ``key`` to insist the proof is about them (a valid proof of some
    other entry is then refused); otherwise check the result's own ``component`` and ``key``.
    """
    if not isinstance(proof, StateProof):
        raise ProofError("not a state proof")
    if not _is_digest(state_root):
        raise ProofError("the state root must be 32 bytes")
    parts = _check_parts(proof.parts)
    name, entry_key, value = proof.component, proof.key, proof.value
    _utf8(name, "the component")
    _utf8(entry_key, "the key")
    if component is not None and name != component:
        raise ProofError(f"the proof is about {name!r}, not {component!r}")
    if key is not None and entry_key != key:
        raise ProofError(f"the proof is about key {entry_key!r}, not {key!r}")
    if value is not None and not isinstance(value, bytes):
        raise ProofError("the value is not bytes")
    if state_root_of(parts) != state_root:
        raise ProofError("the proof's root parts do not hash to this state root")
    if name == GOVERNANCE:
        if value is None or entry_key != "" or proof.path is not None:
            raise ProofError("a governance proof is the governance encoding alone, key ''")
        if proof.book_header is not None or proof.live is not None:
            raise ProofError("only a contract's proof carries a book header")
        slot, digest = GOVERNANCE, governance_digest(value)
    elif name == CONTRACTS:
        header = proof.book_header
        if not _is_digest(header):
            raise ProofError("a contract's proof needs the book header's 32-byte hash")
        contracts = path_digest(CONTRACTS.encode(), entry_key, value, proof.path)
        slot, digest = BOOK, book_digest(contracts, header)
        live = proof.live
        if live is not None:
            if value is None:
                raise ProofError("an absent contract's proof carries no live row")
            if not isinstance(live, LiveWitness) or not _is_digest(live.rest):
                raise ProofError("the live witness needs the book's 32-byte rest hash")
            if not isinstance(live.chunk, bytes):
                raise ProofError("the live chunk is not bytes")
            table = path_digest(LIVE.encode(), live.chunk_key, live.chunk, live.path)
            if book_header(live.rest, table) != header:
                raise ProofError("the live chunk and its path do not hash to the book header")
        if value is not None:
            value = _whole_record(value, None if live is None else (live.chunk_key, live.chunk))
    elif name == BOOK:
        raise ProofError("the book is proven contract by contract (component 'contracts')")
    else:
        if proof.book_header is not None or proof.live is not None:
            raise ProofError("only a contract's proof carries a book header")
        slot, digest = name, path_digest(name.encode(), entry_key, value, proof.path)
    committed = dict(parts.components).get(slot)
    if committed is None:
        raise ProofError(f"the state root has no component {slot!r}")
    if committed != digest:
        raise ProofError(f"the entry and its path do not hash to the {slot!r} digest of the root")
    return ProofResult(name, entry_key, value, parts.height, parts.timestamp_ms)


def _whole_record(record: bytes, live_chunk: tuple[str, bytes] | None) -> bytes:
    """A contract's whole record from its record in the tree and its live row's chunk."""
    from rfq.contracts.book import proven_record  # the book imports this module

    try:
        return _encoder.encode(proven_record(record, live_chunk))
    except ValidationError as exc:
        raise ProofError(str(exc)) from None
