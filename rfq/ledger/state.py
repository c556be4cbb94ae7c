"""The ledger's deterministic state machine: every authority runs it and gets the same root.

``LedgerState`` is the facade over the components (``rfq.ledger.components``): it holds their
maps and parts, runs their hooks and dispatches each transaction to its kind's handler; its
state root, proofs, snapshot and restore follow from the registry's layout.
"""

from __future__ import annotations

import datetime as dt
import functools
import gc
from collections.abc import Callable, Container, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

import msgspec

from rfq.contracts.book import ContractBook
from rfq.contracts.events import BookEvent, BookOutput
from rfq.errors import DECODE_ERRORS, ValidationError
from rfq.identity import Directory, Genesis, Member
from rfq.ledger.block import BlockHeader, genesis_block
from rfq.ledger.components import admission, payments
from rfq.ledger.components.admission import MAX_TX_TTL_MS
from rfq.ledger.components.base import CheckedTx, LedgerError, TxContext
from rfq.ledger.components.contracts import ACCEPT_GRACE_MS, Trade, book_event, business_date
from rfq.ledger.components.governance import Governance, GovernanceEvent
from rfq.ledger.components.guarantees import Guarantee
from rfq.ledger.components.members import RatingState, Standing
from rfq.ledger.components.payments import CUSTODY, MarginSet, Payment
from rfq.ledger.components.registry import LAYOUT, Layout
from rfq.ledger.components.retention import Pruned
from rfq.ledger.digest import DigestMap
from rfq.ledger.proof import ProofError, RootParts, StateProof, state_root_of
from rfq.ledger.snapshot import (
    SNAPSHOT_VERSION,
    Frame,
    SnapshotRows,
    Table,
    assemble_full,
    disassemble,
)
from rfq.ledger.tx import PriceFixing
from rfq.money import Micros
from rfq.signing import tx_id

__all__ = [
    "ACCEPT_GRACE_MS",
    "CUSTODY",
    "MAP_TYPES",
    "MAX_TX_TTL_MS",
    "BlockResult",
    "CheckedTx",
    "Governance",
    "GovernanceEvent",
    "Guarantee",
    "LedgerError",
    "LedgerState",
    "Payment",
    "Pruned",
    "RatingState",
    "Receipt",
    "Receipts",
    "Standing",
    "Trade",
    "business_date",
    "genesis_header",
]

MAP_TYPES: dict[str, Any] = LAYOUT.maps
"""The ledger's maps and their value types, in the state root's order (from the registry)."""

_encoder = msgspec.msgpack.Encoder()
_T = TypeVar("_T")


def _same(value: Any) -> Any:
    return value


def _dumped(dump: Callable[[Any], Any], value: Any) -> bytes:
    return _encoder.encode(dump(value))


def _under(named: Mapping[str, _T], attr: str) -> dict[str, _T]:
    """The entries of ``named`` under ``attr.`` (a part's tables), by their own names."""
    prefix = attr + "."
    return {k[len(prefix) :]: v for k, v in named.items() if k.startswith(prefix)}


def _part_tables(layout: Layout) -> list[str]:
    """The snapshot tables of the layout's parts held as rows (``book.contracts``)."""
    return [f"{p.attr}.{t}" for p in layout.parts if p.rows is not None for t in p.rows.names]


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


FIXING_KIND = str(PriceFixing.__struct_config__.tag)


@dataclass
class BlockResult:
    height: int
    receipts: list[Receipt] = field(default_factory=list)
    outputs: list[BookOutput] = field(default_factory=list)
    governance: list[GovernanceEvent] = field(default_factory=list)
    payments: list[Payment] = field(default_factory=list)
    pruned: list[Pruned] = field(default_factory=list)
    """Entries the block removed from the hot state, with their last values
    (``rfq.ledger.components.retention``)."""

    @property
    def fixed(self) -> bool:
        """A price fixing committed in it: every live contract was revalued."""
        return any(r.ok and r.kind == FIXING_KIND for r in self.receipts)


def genesis_header(genesis: Genesis) -> BlockHeader:
    """Block 0 of a network: every node derives the same one from the genesis (its hash, the
    initial authority set, the initial state's root, the creation time)."""
    state = LedgerState(genesis)
    created_ms = int(dt.datetime.fromisoformat(genesis.created).timestamp() * 1000)
    return genesis_block(
        genesis.chain_id, genesis.hash(), state.authorities, state.state_root(), created_ms
    ).header


class LedgerState:
    """Everything the chain knows after some height. Mutated only by executing blocks.

    A block is executed in three steps:

    1. ``begin_block``: each component's hook in registry order: liveness accounting from the
       parent header (governance), forgetting expired committed ids (admission), then the
       chain's clock for the contracts (``BlockPassed`` at the block's business date) and the
       credit events that missed margin calls trigger.
    2. Each transaction in order: checked (signature, sender, role, replay, expiry), then
       applied by its kind's handler, producing a receipt. A transaction the rules refuse is
       rejected with a reason and changes nothing; the rest of the block commits.
    3. ``end_block``: epoch re-election (governance), effective from the next height.
    """

    layout: ClassVar[Layout] = LAYOUT
    """The components this state is made of (a test may extend it)."""

    # The components' maps and parts (made from ``layout``; declared for the type checker).
    members: DigestMap[Member]
    trades: DigestMap[Trade]
    payments: DigestMap[Payment]
    margin_sets: DigestMap[MarginSet]
    guarantees: DigestMap[Guarantee]
    pledges: DigestMap[str]
    custody: DigestMap[Micros]
    close_requests: DigestMap[tuple[tuple[str, float | None], ...]]
    ratings: DigestMap[RatingState]
    committed: DigestMap[int]
    standing: DigestMap[Standing]
    margin_in_use: DigestMap[Micros]
    """Per client: the cash initial margin its live contracts require."""
    gov: Governance
    book: ContractBook

    # What components derive and cache (not committed).
    directory: Directory
    """The members' keys (members)."""
    block_date: dt.date
    """The business date of the block being executed (contracts)."""
    expiries: list[tuple[int, str]] | None
    """Committed ids by expiry, built when first needed (admission)."""
    retiring: list[tuple[int, str, str]] | None
    """Ended contracts and paid payments by the height they may leave the hot state, built
    when first needed (retention)."""
    retiring_ready: list[tuple[str, str]] | None
    """Those found ready that wait for a block with room, in order (retention)."""

    def __init__(self, genesis: Genesis) -> None:
        self.genesis = genesis
        self.params = genesis.params
        self.height = 0
        self.timestamp_ms = 0
        self._result: BlockResult | None = None
        self._snapshot_base: int | None = None
        """The height of the last ``snapshot_rows`` taken of this state (or of its restore):
        what changed since is kept track of."""
        for name, value_type in self.layout.maps.items():
            setattr(self, name, DigestMap(name, value_type))
        for part in self.layout.parts:
            setattr(self, part.attr, part.initial(genesis))
        for component in self.layout.components:
            if component.setup is not None:
                component.setup(self)

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

    def call_payment(self, contract_id: str) -> Payment | None:
        """The netted payment that meets the contract's open margin call (None: no call)."""
        return payments.call_payment(self, contract_id)

    def margin_headroom(self, client: str) -> Micros:
        """The initial margin, beyond a dealer's credit line, the client can still take on
        (micros)."""
        return payments.margin_headroom(self, client)

    def maps(self) -> list[DigestMap[Any]]:
        """The ledger's maps, in the state root's order."""
        return [getattr(self, name) for name in self.layout.maps]

    def root_parts(self) -> RootParts:
        """What the state root hashes: height, timestamp, each part's digest (the governance
        struct's, the book's) and each map's, each under its name, in the layout's order."""
        return RootParts(
            self.height,
            self.timestamp_ms,
            (
                *((p.name, p.digest(getattr(self, p.attr))) for p in self.layout.parts),
                *((name, getattr(self, name).digest()) for name in self.layout.maps),
            ),
        )

    def state_root(self) -> bytes:
        return state_root_of(self.root_parts())

    def prove(self, component: str, key: str = "") -> StateProof:
        """A proof of ``component[key]`` (or that there is no such entry) against
        ``state_root()``, checked by ``rfq.ledger.proof.verify_state_proof``.

        ``component``: a map, ``"contracts"`` (by contract id) or ``"governance"`` (the whole
        struct, ``key`` ``""``); ``ProofError`` for anything else.
        """
        parts = self.root_parts()
        if component in self.layout.proofs:
            part, prover = self.layout.proofs[component]
            value, path, header, live = prover(getattr(self, part.attr), key)
            return StateProof(component, key, value, path, header, parts, live)
        if component in self.layout.maps:
            value, path = getattr(self, component).prove(key)
            return StateProof(component, key, value, path, None, parts)
        known = ", ".join(self.layout.provable)
        raise ProofError(f"no component {component!r} (one of {known})")

    def prove_many(self, entries: Sequence[tuple[str, str]]) -> list[StateProof]:
        """``prove`` of each ``(component, key)``, the root parts computed once (what a
        block is about to prune, for the store's history)."""
        parts = self.root_parts()
        out: list[StateProof] = []
        for component, key in entries:
            if component in self.layout.proofs:
                part, prover = self.layout.proofs[component]
                value, path, header, live = prover(getattr(self, part.attr), key)
                out.append(StateProof(component, key, value, path, header, parts, live))
            elif component in self.layout.maps:
                value, path = getattr(self, component).prove(key)
                out.append(StateProof(component, key, value, path, None, parts))
            else:
                known = ", ".join(self.layout.provable)
                raise ProofError(f"no component {component!r} (one of {known})")
        return out

    def fork(self) -> LedgerState:
        """An overlay of this state to execute a block on (``rfq.ledger.executor``): each
        map a copy-on-write ``DigestOverlay``, the other fields copied: immutable values, and
        the caches components mutate (the members' directory, the expiry and retiring heaps), which
        are small beside the maps. The contract book is shared: the executor journals it.
        This state must not change while the overlay lives."""
        child = object.__new__(type(self))
        child.__dict__.update(self.__dict__)
        for name in self.layout.maps:
            setattr(child, name, getattr(self, name).fork())
        child.directory = self.directory.copy()
        child.expiries = None if self.expiries is None else list(self.expiries)
        child.retiring = None if self.retiring is None else list(self.retiring)
        child.retiring_ready = None if self.retiring_ready is None else list(self.retiring_ready)
        child._result = None
        # What snapshots have taken is the final state's alone: a commit copies the
        # overlay's other fields into it (``Pending.commit``) and must not bring this back.
        del child.__dict__["_snapshot_base"]
        return child

    # -- persistence -----------------------------------------------------------------------

    def snapshot(self) -> bytes:
        """The whole state as bytes (``rfq.ledger.snapshot``: the frame and every table
        assembled); ``restore`` rebuilds an identical state. It leaves ``snapshot_rows``'
        record of what changed as it was."""
        return assemble_full(self._capture(changed_only=False, advance=False)())

    def snapshot_rows(self, since: int | None = None) -> Callable[[], SnapshotRows]:
        """The snapshot at this height as rows (``rfq.ledger.snapshot``), encoded when
        called, so that a node can encode and write it on another thread while it goes on
        executing blocks: what it encodes is captured now, cheaply (the changed entries
        referenced, or each map's dict copied; the book's cached record bytes referenced).

        With ``since`` the height of the last ``snapshot_rows`` taken of this state (or of
        its restore), only the rows changed after it (``base`` = ``since``); every row
        otherwise (``since`` None, or any other height: a node whose store holds another
        snapshot than its state last took). What changed is counted from now on."""
        changed_only = since is not None and since == self._snapshot_base
        rows = self._capture(changed_only=changed_only, advance=True)
        self._snapshot_base = self.height
        return rows

    def _capture(self, *, changed_only: bool, advance: bool) -> Callable[[], SnapshotRows]:
        layout = self.layout
        tables: dict[str, Callable[[], Table]] = {
            name: getattr(self, name).rows_later(changed_only=changed_only, advance=advance)
            for name in layout.maps
        }
        parts: dict[str, Callable[[], bytes]] = {}
        for p in layout.parts:
            value = getattr(self, p.attr)
            if p.rows is not None:
                parts[p.attr] = functools.partial(_same, p.rows.header(value))
                for name, table in p.rows.tables(value, changed_only, advance).items():
                    tables[f"{p.attr}.{name}"] = functools.partial(_same, table)
            elif p.replaced:
                parts[p.attr] = functools.partial(_dumped, p.dump, value)
            else:
                parts[p.attr] = functools.partial(_same, _encoder.encode(p.dump(value)))
        height, timestamp_ms = self.height, self.timestamp_ms
        base = self._snapshot_base if changed_only else None

        def encode() -> SnapshotRows:
            built = {name: later() for name, later in tables.items()}
            frame = Frame(
                version=SNAPSHOT_VERSION,
                height=height,
                timestamp_ms=timestamp_ms,
                parts={attr: msgspec.Raw(dump()) for attr, dump in parts.items()},
                tables={name: t.kind for name, t in built.items()},
            )
            return SnapshotRows(height, base, _encoder.encode(frame), built)

        return encode

    @classmethod
    def restore(cls, genesis: Genesis, data: bytes) -> LedgerState:
        """Raises ``ValidationError`` when the bytes are not a snapshot of this network.

        The cyclic garbage collector is paused meanwhile: decoding allocates millions of
        objects, none of them garbage, and its passes over them cost as much as the rest.
        The restored state knows its snapshot's height: a snapshot of it taken later can
        hold only the rows changed since (``snapshot_rows``).
        """
        enabled = gc.isenabled()
        gc.disable()
        try:
            return cls._restore(genesis, data)
        finally:
            if enabled:
                gc.enable()

    @classmethod
    def _restore(cls, genesis: Genesis, data: bytes) -> LedgerState:
        state = cls(genesis)
        layout = cls.layout
        frame, tables = disassemble(data)
        expected = {*layout.maps, *_part_tables(layout)}
        if set(tables) != expected:
            missing, extra = sorted(expected - set(tables)), sorted(set(tables) - expected)
            raise ValidationError(
                f"not a ledger snapshot: tables missing {missing}, unknown {extra}",
                where="snapshot",
            )
        missing_parts = sorted({p.attr for p in layout.parts} - set(frame.parts))
        if missing_parts:
            raise ValidationError(
                f"not a ledger snapshot: parts missing {missing_parts}", where="snapshot"
            )
        try:
            values: dict[str, Any] = {}
            for p in layout.parts:
                raw = bytes(frame.parts[p.attr])
                if p.rows is not None:
                    values[p.attr] = p.rows.load(raw, _under(tables, p.attr))
                else:
                    values[p.attr] = p.load(msgspec.msgpack.decode(raw, type=p.snapshot_type))
            for name, value_type in layout.maps.items():
                target: DigestMap[Any] = DigestMap(name, value_type)
                target.decode_into(tables[name])
                setattr(state, name, target)
        except DECODE_ERRORS as exc:
            raise ValidationError(f"not a ledger snapshot: {exc}", where="snapshot") from None
        except ValidationError as exc:
            raise ValidationError(f"not a ledger snapshot: {exc}", where="snapshot") from None
        state.height, state.timestamp_ms = frame.height, frame.timestamp_ms
        for attr, value in values.items():
            setattr(state, attr, value)
        for component in layout.components:
            if component.loaded is not None:
                component.loaded(state)
        for name in layout.maps:  # a snapshot of it taken later holds what changed since
            getattr(state, name).track_rows()
        for p in layout.parts:
            if p.rows is not None:
                p.rows.track(getattr(state, p.attr))
        state._snapshot_base = state.height
        return state

    # -- admission -------------------------------------------------------------------------

    def check_tx(
        self, tx: bytes, now_ms: int, *, verified: Container[bytes] = frozenset()
    ) -> CheckedTx:
        """Everything about a transaction that needs no execution: raises ``LedgerError``.

        ``verified`` holds ids whose signatures this node already checked (a pure function,
        so skipping it again never changes a result).
        """
        return admission.check(self, tx, now_ms, verified)

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
        for component in self.layout.components:
            if component.begin_block is not None:
                component.begin_block(self, parent)

    def apply_tx(
        self, tx: bytes, index: int, *, verified: Container[bytes] = frozenset()
    ) -> Receipt:
        """Apply one transaction, all or nothing: a refusal undoes every write it made to the
        ledger's maps and replaced parts (the contract book refuses atomically, and each
        handler applies its contract event as its last step that can fail)."""
        result = self.block_result()
        sender, kind, tx_hex = "", "", tx_id(tx).hex()
        maps = self.maps()
        for m in maps:
            m.journal = []
        kept = {p.attr: getattr(self, p.attr) for p in self.layout.parts if p.replaced}
        lengths = (len(result.outputs), len(result.governance), len(result.payments))
        try:
            checked = self.check_tx(tx, self.timestamp_ms, verified=verified)
            sender, kind = checked.signed.sender, checked.signed.kind
            context = TxContext(checked.tx_id, checked.signed, verified)
            refs = self.layout.kinds[kind].apply(self, checked.payload, context)
        except (LedgerError, ValidationError) as exc:
            for m in maps:
                m.undo()
            for attr, value in kept.items():
                setattr(self, attr, value)
            del result.outputs[lengths[0] :]
            del result.governance[lengths[1] :]
            del result.payments[lengths[2] :]
            reason = exc.reason if isinstance(exc, LedgerError) else str(exc)
            receipt = Receipt(tx_hex, sender, kind, False, self.height, index, reason)
        else:
            for m in maps:
                m.journal = None
            admission.remember(self, checked)
            receipt = Receipt(tx_hex, sender, kind, True, self.height, index, "", refs)
        result.receipts.append(receipt)
        return receipt

    def end_block(self) -> BlockResult:
        result = self.block_result()
        for component in self.layout.components:
            if component.end_block is not None:
                component.end_block(self)
        self._result = None
        return result

    def block_result(self) -> BlockResult:
        """What the block being executed has produced so far (components append to it)."""
        if self._result is None:
            raise ValidationError("no block is being executed", where="block")
        return self._result

    def book_event(self, event: BookEvent) -> list[BookOutput]:
        """The components' door to the contract book: apply ``event`` and absorb its outputs
        (``rfq.ledger.components.contracts.book_event``); refusals raise ``LedgerError``."""
        return book_event(self, event)
