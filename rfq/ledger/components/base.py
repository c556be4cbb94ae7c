"""What a ledger component declares: its maps, its single-value parts, its transaction kinds
with their handlers, and its block hooks. The registry (``rfq.ledger.components``) lists the
components; ``LedgerState`` derives its state root, proofs, snapshot and restore from that list,
so nothing a component declares can be left out of any of them."""

from __future__ import annotations

from collections.abc import Callable, Container, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import msgspec

from rfq.errors import RfqError
from rfq.identity import Genesis, Role
from rfq.ledger.digest import BucketPath
from rfq.ledger.proof import LiveWitness
from rfq.ledger.snapshot import Table
from rfq.ledger.tx import TX_ROLES, Transaction
from rfq.signing import SignedMessage

if TYPE_CHECKING:
    from rfq.ledger.block import BlockHeader
    from rfq.ledger.state import LedgerState

Refs = tuple[str, ...]
"""What a receipt names: the ids a transaction created or touched."""


class LedgerError(RfqError):
    """A transaction the rules refuse; ``reason`` is what the submitter is told."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


@dataclass(frozen=True)
class CheckedTx:
    """A transaction admission accepted: its id, its envelope and its decoded payload."""

    tx_id: bytes
    signed: SignedMessage
    payload: Transaction


@dataclass(frozen=True)
class TxContext:
    """The envelope around the payload a handler applies."""

    tx_id: bytes
    signed: SignedMessage
    verified: Container[bytes]
    """Ids whose signatures this node already checked (an embedded quote's, for instance)."""

    @property
    def sender(self) -> str:
        return self.signed.sender

    @property
    def tx_hex(self) -> str:
        return self.tx_id.hex()


P = TypeVar("P", bound=msgspec.Struct)

Handler = Callable[["LedgerState", P, TxContext], Refs]
"""Applies one payload to the state: raises ``LedgerError`` to refuse it (every write it made
to the maps and to replaced parts is then undone)."""


@dataclass(frozen=True)
class TxKind(Generic[P]):
    """One transaction kind: the envelope's ``kind``, its payload type, who may submit it and
    the handler that applies it."""

    kind: str
    payload: type[P]
    roles: frozenset[Role]
    handler: Handler[P]

    def apply(self, state: LedgerState, payload: msgspec.Struct, ctx: TxContext) -> Refs:
        if not isinstance(payload, self.payload):
            raise LedgerError(f"unhandled transaction {type(payload).__name__}")
        return self.handler(state, payload, ctx)


def tx_kind(payload: type[P], handler: Handler[P]) -> TxKind[P]:
    """The kind of ``payload`` (its struct tag), with the roles ``rfq.ledger.tx.TX_ROLES``
    allows to submit it."""
    kind = payload.__struct_config__.tag
    if not isinstance(kind, str):
        raise TypeError(f"{payload.__name__} has no string tag")
    if kind not in TX_ROLES:
        raise RfqError(f"transaction kind {kind!r} has no roles in rfq.ledger.tx.TX_ROLES")
    return TxKind(kind, payload, TX_ROLES[kind], handler)


Prover = Callable[
    [Any, str], tuple[bytes | None, BucketPath | None, bytes | None, LiveWitness | None]
]
"""For a part's value and a key: the proven value's bytes, its bucket path and, for the
book's contracts, the book header and a live contract's chunk (``rfq.ledger.proof.StateProof``)."""


def _same(value: Any) -> Any:
    return value


@dataclass(frozen=True)
class Part:
    """State a component holds as one value rather than a map (the governance struct, the
    contract book): held in the state's attribute ``attr``, committed under ``name`` and
    stored in the snapshot's field ``attr``."""

    name: str
    attr: str
    snapshot_type: Any
    """The snapshot field's type (``dump``'s result, ``load``'s argument)."""
    initial: Callable[[Genesis], Any]
    digest: Callable[[Any], bytes]
    dump: Callable[[Any], Any] = _same
    load: Callable[[Any], Any] = _same
    proofs: Mapping[str, Prover] = field(default_factory=dict)
    """The proof components this part answers (``prove(name, key)``)."""
    replaced: bool = False
    """The value is immutable and handlers replace it: a refused transaction puts the old
    value back. Otherwise the value must refuse atomically (the contract book does)."""
    rows: PartRows | None = None
    """For a part too big to write whole at each snapshot: its header and tables of rows
    (then ``dump`` and ``load`` are not used). Without it a ``replaced`` value is kept as it
    is at a snapshot and dumped later, on the writer's thread; any other is dumped at once."""


@dataclass(frozen=True)
class PartRows:
    """A part a snapshot holds as a small header beside tables of rows, each row written
    when it changes (``rfq.ledger.snapshot``): the contract book and its records."""

    names: tuple[str, ...]
    """The part's tables (a snapshot's ``<attr>.<name>``)."""
    header: Callable[[Any], bytes]
    """The part's header (a msgpack value), as of now."""
    tables: Callable[[Any, bool, bool], dict[str, Table]]
    """The part's tables as of now, given ``changed_only`` and ``advance`` (as
    ``DigestMap.rows_later``)."""
    track: Callable[[Any], None]
    """Keep track of what changes from now (after a restore)."""
    load: Callable[[bytes, Mapping[str, bytes]], Any]
    """The part from its header and each table assembled (``rfq.ledger.snapshot``);
    raises ``ValidationError`` or msgspec errors on bad bytes."""


StateHook = Callable[["LedgerState"], None]
BlockHook = Callable[["LedgerState", "BlockHeader"], None]


@dataclass(frozen=True)
class Component:
    """A part of the ledger: the maps it owns (name -> value type), its single-value parts,
    its transaction kinds and its hooks, each run in registry order."""

    name: str
    maps: Mapping[str, Any] = field(default_factory=dict)
    parts: tuple[Part, ...] = ()
    kinds: tuple[TxKind[Any], ...] = ()
    setup: StateHook | None = None
    """Fill a new state from ``state.genesis`` (the maps and parts exist, empty/initial)."""
    loaded: StateHook | None = None
    """After a restore: rebuild what is derived from the maps (caches, indexes)."""
    begin_block: BlockHook | None = None
    """At the start of a block, with the parent header."""
    end_block: StateHook | None = None
    """At the end of a block."""
