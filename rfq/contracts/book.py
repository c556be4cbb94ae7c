"""``ContractBook``: every smart derivative contract on the ledger, and the rules that run them.

The ledger's state machine embeds one book and feeds it ``BookEvent``s in block order
(``BlockPassed`` first in each block, then the block's transactions); the book answers with
``BookOutput``s (lifecycle records and payment instructions). Everything that decides is
here and deterministic: float64 in a fixed operation order, outputs in contract-open order,
no clock but the block's. Applying the same event twice changes nothing and emits nothing.

Live contracts sit in numpy columns (``rfq.contracts.columns``) so one fixing tick revalues
a hundred thousand of them in a few array operations; rarer events (margin posted, close-out,
credit event, settlement) go through scalar code, one contract at a time.

A block executed but not decided is undone by the book's journal (``checkpoint``, then
``rollback`` or ``release``; ``rfq.ledger.executor``): each contract record and column row is
kept as it was before its first change, so undoing costs what the block changed.
"""

from __future__ import annotations

import bisect
import datetime as dt
import hashlib
import itertools
import math
import re
from collections.abc import Iterable, Sequence
from typing import Any

import msgspec
import numpy as np
import numpy.typing as npt

from rfq.contracts import payoff
from rfq.contracts.columns import F64, I64, LIVE_ROW, NO_DATE, ROW_FIELDS, LiveColumns
from rfq.contracts.credit import waterfall
from rfq.contracts.events import (
    BlockPassed,
    BookEvent,
    BookOutput,
    CloseOut,
    ContractClosedOut,
    ContractDefaulted,
    ContractOpened,
    ContractSettled,
    CreditEvent,
    CreditEventResolved,
    DefaultTriggered,
    Fixing,
    MarginCallLapsed,
    MarginCalls,
    MarginCallsMet,
    MarginPosted,
    MarginShort,
    NettedMarginPosted,
    OpenContract,
    PaymentInstruction,
    RatingRecord,
)
from rfq.contracts.model import (
    Contract,
    ContractView,
    MarginCall,
    Outcome,
    PaymentKind,
    Status,
    validate_contract,
)
from rfq.contracts.party_index import EVERYONE, PartyIndex
from rfq.errors import ValidationError
from rfq.ledger.digest import (
    VALUE_PREFIX,
    BucketPath,
    BucketTree,
    book_digest,
    book_header,
    value_hash,
)
from rfq.ledger.proof import CONTRACTS, LIVE, LiveWitness
from rfq.ledger.snapshot import ARRAY, Table
from rfq.money import MICROS, Micros, from_micros, to_micros

SNAPSHOT_VERSION = 2
"""2: a live contract's changing fields are a row of the live table, not of its record."""
_SEEN_PREFIXES = ("close_out:", "credit_event:", "margin_posted:")
"""Seen keys that may name a contract first (``<prefix><contract>/...``): pruned with it."""
_UNDERLYING_ID = re.compile(r"^[A-Za-z0-9_-]{1,32}$")


class FixingSeries(msgspec.Struct, frozen=True):
    underlying: str
    dates: tuple[dt.date, ...]
    prices: tuple[float, ...]


class ContractRecord(msgspec.Struct, frozen=True, array_like=True):
    """One contract in the canonical state: its terms and whatever its life has changed.
    Encoded as an array (a hundred thousand of these make up most of the state bytes)."""

    contract: Contract
    ordinal: int
    status: Status
    vm_balance: Micros
    """The variation margin moved dealer -> client, in micros: an exact sum of postings."""
    avg_sum: float
    avg_count: int
    avg_last: dt.date | None
    margin_call: MarginCall | None
    defaulting_party: str | None
    sequences: tuple[tuple[str, int], ...]
    outcome: Outcome | None
    ratings: tuple[RatingRecord, ...]


class _WireRecord(msgspec.Struct, frozen=True, array_like=True):
    """``ContractRecord`` with the (immutable) contract pre-encoded: same bytes."""

    contract: msgspec.Raw
    ordinal: int
    status: Status
    vm_balance: Micros
    avg_sum: float
    avg_count: int
    avg_last: dt.date | None
    margin_call: MarginCall | None
    defaulting_party: str | None
    sequences: tuple[tuple[str, int], ...]
    outcome: Outcome | None
    ratings: tuple[RatingRecord, ...]


# --------------------------------------------------------------------------------------------
# The live table: what changes while a contract lives, as fixed-width rows in chunks.
#
# A fixing changes every live contract's margin call, status and averages. Were those in its
# record, a fixing would re-encode and re-hash a hundred thousand records and re-root every
# bucket of the contracts' tree. Instead a live contract's record in the tree holds them
# blank (``_leaf_fields``), and they are a row of the live table: rows in ordinal order, 16 to a
# chunk (``chunk_key``), each chunk an entry of a ``BucketTree`` of its own. A fixing re-packs
# rows and hashes a few thousand chunks; a contract's proof carries its record and its chunk
# (``LiveWitness``), and ``proven_record`` joins them again.

CHUNK_BITS = 4
"""A live contract's row is in chunk ``ordinal >> CHUNK_BITS`` of the live table: 16 rows,
so a contract's proof carries 1.7 kB of rows (a proven page of 250 contracts stays far
under a reply's size) while a fixing hashes 6,250 chunks for 100,000 contracts."""
LIVE_STATUSES = (Status.LIVE, Status.MARGIN_CALL, Status.IN_DEFAULT)
"""A live row's ``status``: its index here."""
_CALLS = PaymentKind.MARGIN_CALL.value
"""The sequence a contract numbers its margin calls by (a live field: a row's)."""


def chunk_key(ordinal: int) -> str:
    """The live table's key of the chunk holding the row of the contract ``ordinal``."""
    return str(ordinal >> CHUNK_BITS)


def chunk_rows(key: str, chunk: bytes) -> dict[int, tuple[Any, ...]]:
    """A chunk's rows by ordinal; ``ValidationError`` unless it is whole rows of its own
    ordinals, in strictly increasing order (so each contract has one row at most)."""
    if not chunk or len(chunk) % LIVE_ROW.itemsize:
        raise ValidationError(f"live chunk {key} is not whole rows", where=LIVE)
    rows: dict[int, tuple[Any, ...]] = {}
    last = -1
    for row in np.frombuffer(chunk, dtype=LIVE_ROW).tolist():
        if row[0] <= last or chunk_key(row[0]) != key:
            raise ValidationError(f"live chunk {key} holds rows not its own", where=LIVE)
        rows[row[0]] = row
        last = row[0]
    return rows


def _with_row(record: ContractRecord, row: tuple[Any, ...]) -> ContractRecord:
    """A live contract's whole record: its blank record with its row's fields."""
    (_, status, vm, avg_sum, avg_count, avg_last, calls, held, seq, dealer_pays) = row[:10]
    amount, outstanding, date, height, due, short = row[10:]
    if status >= len(LIVE_STATUSES) or max(held, dealer_pays, short) > 1:
        raise ValidationError(f"contract {record.contract.id}: a bad live row", where=LIVE)
    c = record.contract
    try:
        call = (
            _margin_call(c, seq, dealer_pays, amount, outstanding, date, height, due, short)
            if held
            else None
        )
        last = None if avg_last == NO_DATE else dt.date.fromordinal(avg_last)
    except ValueError:
        raise ValidationError(f"contract {c.id}: a live row's date", where=LIVE) from None
    sequences = record.sequences
    if calls:
        sequences = tuple(sorted([*sequences, (_CALLS, calls)]))
    return msgspec.structs.replace(
        record,
        status=LIVE_STATUSES[status],
        vm_balance=vm,
        avg_sum=avg_sum,
        avg_count=avg_count,
        avg_last=last,
        margin_call=call,
        sequences=sequences,
    )


def _margin_call(
    contract: Contract,
    seq: int,
    dealer_pays: int,
    amount: int,
    outstanding: int,
    date: int,
    height: int,
    due: int,
    short: int,
) -> MarginCall:
    """The margin call a live row's fields describe (``_call_row`` lays them out)."""
    c = contract
    payer, payee = (c.dealer, c.client) if dealer_pays else (c.client, c.dealer)
    return MarginCall(
        seq,
        payer,
        payee,
        amount,
        outstanding,
        dt.date.fromordinal(date),
        height,
        dt.date.fromordinal(due),
        bool(short),
    )


def _call_row(call: MarginCall | None, calls: int, contract: Contract) -> tuple[int, ...]:
    """The live row's columns from ``row_calls`` on (``ROW_FIELDS``) for this call."""
    if call is None:
        return (calls, 0, 0, 0, 0, 0, 0, 0, 0, 0)
    return (
        calls,
        1,
        call.seq,
        call.payer == contract.dealer,
        call.amount,
        call.outstanding,
        call.date.toordinal(),
        call.height,
        call.due.toordinal(),
        call.short,
    )


_leaf_decoder = msgspec.msgpack.Decoder(ContractRecord)


def proven_record(record: bytes, live_chunk: tuple[str, bytes] | None) -> ContractRecord:
    """A contract's whole record from its proven record in the contracts' tree and, for a
    live one, its proven chunk of the live table (a ``LiveWitness``'s key and chunk);
    ``ValidationError`` when they do not make one."""
    try:
        leaf = _leaf_decoder.decode(record)
    except msgspec.DecodeError as exc:
        raise ValidationError(f"not a contract record: {exc}", where=CONTRACTS) from None
    if leaf.status.terminal:
        if live_chunk is not None:
            raise ValidationError(f"ended contract {leaf.contract.id} has a live row", where=LIVE)
        return leaf
    if live_chunk is None:
        raise ValidationError(f"live contract {leaf.contract.id} comes without its row", where=LIVE)
    key, chunk = live_chunk
    if key != chunk_key(leaf.ordinal):
        raise ValidationError(f"chunk {key} cannot hold {leaf.contract.id}'s row", where=LIVE)
    row = chunk_rows(key, chunk).get(leaf.ordinal)
    if row is None:
        raise ValidationError(f"the live table has no row for {leaf.contract.id}", where=LIVE)
    return _with_row(leaf, row)


class BookSnapshot(msgspec.Struct, frozen=True):
    """The whole book, canonically ordered: contracts by id, fixings by underlying, seen
    event keys sorted. Marks and values are not stored: they follow from these."""

    version: int
    height: int
    date: dt.date | None
    mark_date: dt.date | None
    next_ordinal: int
    fixings: tuple[FixingSeries, ...]
    contracts: tuple[ContractRecord, ...]
    seen: tuple[str, ...]


class _WireSnapshot(msgspec.Struct, frozen=True):
    """``BookSnapshot`` with its records pre-encoded: encodes to the same bytes."""

    version: int
    height: int
    date: dt.date | None
    mark_date: dt.date | None
    next_ordinal: int
    fixings: tuple[msgspec.Raw, ...]
    contracts: tuple[msgspec.Raw, ...]
    seen: tuple[str, ...]


class _DigestWire(msgspec.Struct, frozen=True):
    """The book's fields other than its contracts, as ``state_digest`` hashes them: the
    header, the fixings, and the digest of the seen keys."""

    version: int
    height: int
    date: dt.date | None
    mark_date: dt.date | None
    next_ordinal: int
    fixings: tuple[msgspec.Raw, ...]
    seen: bytes


class _RecordHead(msgspec.Struct, frozen=True, array_like=True):
    """A ``ContractRecord``'s contract as bytes (the other fields skipped)."""

    contract: msgspec.Raw


class _HeadBook(msgspec.Struct, frozen=True):
    contracts: tuple[_RecordHead, ...]


_snapshot_encoder = msgspec.msgpack.Encoder()
_snapshot_decoder = msgspec.msgpack.Decoder(BookSnapshot)
_head_book_decoder = msgspec.msgpack.Decoder(_HeadBook)
_contract_decoder = msgspec.msgpack.Decoder(Contract)
_records_decoder = msgspec.msgpack.Decoder(tuple[ContractRecord, ...])
_raw_records_decoder = msgspec.msgpack.Decoder(tuple[msgspec.Raw, ...])
_chunks_decoder = msgspec.msgpack.Decoder(tuple[bytes, ...])
_record_heads_decoder = msgspec.msgpack.Decoder(tuple[_RecordHead, ...])


def canonical_contract(contract: Contract) -> Contract:
    """The contract as it decodes from the wire (ints in float fields become floats), so that
    it encodes to the same state bytes whichever way it was built."""
    try:
        return _contract_decoder.decode(_snapshot_encoder.encode(contract))
    except msgspec.ValidationError as exc:
        raise ValidationError(str(exc), where=getattr(contract, "id", None)) from None


class _Entry:
    """The book's mutable record of one contract (its hot numbers live in the columns while
    it is live, and are copied here when it ends).

    ``blob`` caches the encoded ``ContractRecord`` and ``digest`` its value hash (the hash it
    enters the contracts' ``BucketTree`` with); whatever
    changes the record calls ``ContractBook._touch`` (or, in the vectorised pass, flags the
    row dirty in the columns). The property tests check that the cached ``state_bytes``
    always equal the snapshot encoded afresh.
    """

    __slots__ = (
        "_initial_margin",
        "_notional",
        "avg_count",
        "avg_last",
        "avg_sum",
        "blob",
        "changed",
        "contract",
        "contract_raw",
        "defaulting_party",
        "digest",
        "mark",
        "mtm",
        "ordinal",
        "outcome",
        "ratings",
        "seqs",
        "status",
        "vm",
    )

    def __init__(
        self, contract: Contract, ordinal: int, contract_raw: msgspec.Raw | None = None
    ) -> None:
        self.contract = contract
        if contract_raw is None:
            contract_raw = msgspec.Raw(_snapshot_encoder.encode(contract))
        self.contract_raw = contract_raw
        self.ordinal = ordinal
        self.status = Status.LIVE
        """A live contract's is ``LIVE``: its own status (live, margin call, in default) is
        its row's, in the columns, as are its margin call and the count of its calls."""
        self.defaulting_party: str | None = None
        self.seqs: dict[str, int] = {}
        self.outcome: Outcome | None = None
        self.ratings: tuple[RatingRecord, ...] = ()
        self._initial_margin: float | None = None
        self._notional: float | None = None
        # Final values once terminated (live values are in the columns).
        self.vm = 0.0
        self.avg_sum = 0.0
        self.avg_count = 0
        self.avg_last = NO_DATE
        self.mark = math.nan
        self.mtm = math.nan
        self.blob: msgspec.Raw | None = None
        self.digest: bytes | None = None
        self.changed = 0
        """The height its record last changed at (derived, not state: ``changed_since``)."""

    @property
    def initial_margin(self) -> float:
        """Computed when first read (a restore opens every contract, few are read)."""
        if self._initial_margin is None:
            self._initial_margin = payoff.initial_margin(self.contract)
        return self._initial_margin

    @property
    def notional(self) -> float:
        if self._notional is None:
            self._notional = payoff.notional(self.contract)
        return self._notional

    def next_seq(self, kind: str) -> int:
        n = self.seqs.get(kind, 0) + 1
        self.seqs[kind] = n
        return n


def _nan_to_none(x: float) -> float | None:
    return None if math.isnan(x) else x


class _BookJournal:
    """What ``ContractBook.rollback`` needs: the book's small fields as they were and, as
    the block goes, each touched contract's record before its first change."""

    def __init__(self, book: ContractBook) -> None:
        self.scalars = (book._height, book._date, book._mark_ord, book._next_ordinal)
        self.px, self.last = book._px.copy(), book._last.copy()
        self.underlyings = len(book._uidx)
        self.hist = {name: len(dates) for name, (dates, _) in book._hist.items()}
        self.series_blob = dict(book._series_blob)
        self.seen_digest = book._seen_digest
        self.seen: list[str] = []
        self.opened: list[str] = []
        self.entries: dict[str, tuple[Any, ...]] = {}
        self.pruned: list[_Entry] = []
        self.unseen: list[str] = []
        self.chunks: set[int] = set()
        """The live table's chunks hashed again since (``rollback`` hashes them back)."""

    def save(self, entry: _Entry) -> None:
        cid = entry.contract.id
        if cid in self.entries or entry.ordinal >= self.scalars[3]:  # opened since: no record
            return
        saved = tuple(getattr(entry, name) for name in _Entry.__slots__)
        seqs = _Entry.__slots__.index("seqs")
        self.entries[cid] = (*saved[:seqs], dict(entry.seqs), *saved[seqs + 1 :])


class ContractBook:
    """All contracts; apply ``BookEvent``s, query contracts, produce canonical state bytes."""

    def __init__(self) -> None:
        self._cols = LiveColumns()
        self._entries: dict[str, _Entry] = {}
        self._parties = PartyIndex()
        """Contract ids by party, sorted, all and open (paged queries read it)."""
        self._seen: set[str] = set()
        self._height = 0
        self._date: dt.date | None = None
        self._mark_ord = NO_DATE
        self._next_ordinal = 0
        # Underlyings: index 0 is the padding sentinel (price 0.0, fixed every day).
        self._uidx: dict[str, int] = {"": 0}
        self._px: F64 = np.zeros(64, dtype=np.float64)
        self._last: I64 = np.full(64, NO_DATE, dtype=np.int64)
        self._hist: dict[str, tuple[list[int], list[float]]] = {}
        # Caches for the digest and snapshots (dropped on change): the sorted seen keys,
        # each underlying's encoded fixing series (each contract's encoded record is on its
        # entry).
        self._new_ids: list[str] = []
        self._unsaved: set[str] | None = None
        """Contract ids whose record changed since the last snapshot's rows were taken
        (None: not kept track of, so the next snapshot takes every record)."""
        self._tree = BucketTree(CONTRACTS.encode())
        """Contract id -> record digest, authenticated: the contracts part of the digest."""
        self._dirty: set[str] = set()
        """Contracts whose record (in the tree) must be encoded again."""
        self._hot: set[str] = set()
        """Contracts whose live row must be packed again (whatever touches a record)."""
        self._chunk_dirty: set[int] = set()
        """Chunks of the live table (``chunk_key``) to hash again: their rows are packed
        from the columns (``LiveColumns.live_chunks``)."""
        self._live = BucketTree(LIVE.encode())
        """Chunk key -> chunk digest, authenticated: the live table's part of the digest."""
        self._live_unsaved: set[int] | None = None
        """Chunks changed since the last snapshot's rows were taken (as ``_unsaved``)."""
        self._seen_sorted: list[str] = []
        self._seen_digest: bytes | None = None
        self._series_blob: dict[str, msgspec.Raw] = {}
        self._journal: _BookJournal | None = None

    # ----------------------------------------------------------------------------------------
    # queries

    @property
    def height(self) -> int:
        """Height of the last ``BlockPassed`` (0 before any)."""
        return self._height

    @property
    def date(self) -> dt.date | None:
        """Date of the last ``BlockPassed``."""
        return self._date

    @property
    def mark_date(self) -> dt.date | None:
        """Date of the latest fixing: the date live contracts are marked at."""
        return None if self._mark_ord == NO_DATE else dt.date.fromordinal(self._mark_ord)

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, contract_id: object) -> bool:
        return contract_id in self._entries

    @property
    def open_count(self) -> int:
        """Contracts not yet settled, closed out or defaulted."""
        return self._cols.n - self._cols.inactive

    def get(self, contract_id: str) -> ContractView:
        return self._view(self._entry(contract_id))

    def find(self, contract_id: str, *, with_call: bool = True) -> ContractView | None:
        """Its view; ``with_call`` False leaves its open margin call out (a reader of figures
        only, like the risk monitor, need not hold 100k of them)."""
        entry = self._entries.get(contract_id)
        return None if entry is None else self._view(entry, with_call=with_call)

    def terms_of(self, contract_id: str) -> Contract | None:
        """A contract's terms as opened (no view built: what an index needs)."""
        entry = self._entries.get(contract_id)
        return None if entry is None else entry.contract

    def by_party(self, party: str, *, open_only: bool = False) -> list[ContractView]:
        """A party's contracts (as client or dealer), by contract id."""
        return [self._view(self._entries[cid]) for cid in self.party_ids(party, open_only)]

    def party_ids(self, party: str | None, open_only: bool = False) -> Sequence[str]:
        """A party's contract ids (None: everyone's), sorted, read-only: a page reads a
        slice of it (``rfq.contracts.party_index``)."""
        return self._parties.ids(EVERYONE if party is None else party, open_only=open_only)

    def changed_since(self, contract_ids: Iterable[str], height: int) -> list[str]:
        """Those of ``contract_ids`` whose record changed after ``height`` (opened, margin,
        marks, status): what a peer that saw the book at ``height`` must read again. A
        restored book counts every contract changed at the restore's height (a superset)."""
        entries, slots, changed = self._entries, self._cols.slot, self._cols.changed
        return [
            cid
            for cid in contract_ids
            if (e := entries.get(cid))
            and (e.changed > height or ((k := slots.get(cid)) is not None and changed[k] > height))
        ]

    def views(self, contract_ids: Iterable[str]) -> list[ContractView]:
        """The views of contracts in the book (ids not in it are skipped)."""
        entries = self._entries
        return [self._view(entries[cid]) for cid in contract_ids if cid in entries]

    def ids(self) -> list[str]:
        return sorted(self._entries)

    def ended(self) -> list[tuple[str, int]]:
        """(contract id, height it ended at) of every terminal contract still in the book."""
        return [
            (cid, e.outcome.height)
            for cid, e in self._entries.items()
            if e.status.terminal and e.outcome is not None
        ]

    def payment_ids(self, contract_id: str) -> list[str]:
        """The ids of every payment instruction the contract has issued (``<contract>/<kind>/
        <n>``, n = 1 .. its sequence for that kind); its margin calls are numbered by the same
        sequences but paid per netting set (the ledger's), so they are not listed."""
        entry = self._entry(contract_id)
        return [
            f"{contract_id}/{kind}/{n}"
            for kind, count in sorted(entry.seqs.items())
            if kind != PaymentKind.MARGIN_CALL.value
            for n in range(1, count + 1)
        ]

    def prune(self, contract_id: str) -> None:
        """Drop a terminal contract from the book, with the seen keys that name it
        (``margin_posted:``, ``close_out:`` and ``credit_event:`` keys under
        ``<contract>/``), for ``rfq.ledger.components.retention``. Journaled: ``rollback``
        puts it back. Events for it afterwards are refused as for an unknown contract (the
        ledger refuses their transactions first: no payment, no contract)."""
        entry = self._entry(contract_id)
        if not entry.status.terminal:
            raise ValidationError(f"contract {contract_id} is live: not pruned", where=contract_id)
        self._record_blob(entry)  # its bytes and digest, to put back on rollback
        journal = self._journal
        slot = self._cols.slot.get(contract_id)
        if slot is not None and self._cols.dirty[slot]:  # an inactive row awaiting compaction
            self._cols.save_row(slot)
            self._cols.dirty[slot] = False
        del self._entries[contract_id]
        self._dirty.discard(contract_id)
        self._parties.remove(contract_id, (entry.contract.client, entry.contract.dealer))
        self._tree_update([(contract_id, None)])
        removed: list[str] = []
        for prefix in _SEEN_PREFIXES:
            lo = bisect.bisect_left(self._seen_sorted, f"{prefix}{contract_id}/")
            hi = bisect.bisect_left(self._seen_sorted, f"{prefix}{contract_id}0")  # "/" + 1
            removed += self._seen_sorted[lo:hi]
            del self._seen_sorted[lo:hi]
        if removed:
            self._seen.difference_update(removed)
            self._seen_digest = None
        if journal is not None:
            journal.pruned.append(entry)
            journal.unseen += removed

    def forget_seen(self, keys: Iterable[str]) -> None:
        """Drop seen keys whose events can no longer arrive (the ledger refuses them first:
        ``margin_posted:<call>`` once the call's payment has left the hot state). Journaled."""
        removed = []
        for key in keys:
            if key in self._seen:
                self._seen.discard(key)
                del self._seen_sorted[bisect.bisect_left(self._seen_sorted, key)]
                removed.append(key)
        if removed:
            self._seen_digest = None
            if self._journal is not None:
                self._journal.unseen += removed

    def prices(self) -> dict[str, float]:
        """Latest fixing of each underlying."""
        return {u: prices[-1] for u, (_, prices) in sorted(self._hist.items())}

    def fixing(self, underlying: str, date: dt.date) -> float | None:
        hist = self._hist.get(underlying)
        if hist is None:
            return None
        day = date.toordinal()
        k = bisect.bisect_left(hist[0], day)
        return hist[1][k] if k < len(hist[0]) and hist[0][k] == day else None

    def _entry(self, contract_id: str) -> _Entry:
        entry = self._entries.get(contract_id)
        if entry is None:
            raise ValidationError(f"no contract {contract_id!r}", where="contract_id")
        return entry

    def _touch(self, entry: _Entry) -> None:
        """The entry's record changes: drop its cached bytes (called before the change, so
        that a journal keeps the record as it was)."""
        self._touch_live(entry)
        entry.blob = None
        entry.digest = None
        self._dirty.add(entry.contract.id)

    def _touch_live(self, entry: _Entry) -> None:
        """Only the entry's live fields change (its row, not its record): as ``_touch``."""
        journal = self._journal
        if journal is not None:
            journal.save(entry)
        entry.changed = self._height
        self._hot.add(entry.contract.id)

    def _rows_changed(self, rows: npt.NDArray[np.intp]) -> None:
        """Rows a vectorised pass wrote: changed at this height, their chunks to hash."""
        cols = self._cols
        cols.changed[rows] = self._height
        self._chunk_dirty.update(np.unique(cols.ordinal[rows] >> CHUNK_BITS).tolist())

    def _put_call(self, entry: _Entry, slot: int, call: MarginCall | None) -> None:
        """Set a live contract's margin call (its row's columns; the caller touched it)."""
        cols = self._cols
        cols.save_row(slot)
        fields = _call_row(call, int(cols.row_calls[slot]), entry.contract)
        for name, value in zip(ROW_FIELDS[2:], fields, strict=True):
            getattr(cols, name)[slot] = value

    def _put_status(self, slot: int, status: Status) -> None:
        """Set a live contract's status (its row's; the caller touched it)."""
        self._cols.save_row(slot)
        self._cols.row_status[slot] = LIVE_STATUSES.index(status)

    def _status(self, entry: _Entry, slot: int | None) -> Status:
        """The contract's status: an ended one's own, a live one's row's."""
        if entry.status.terminal or slot is None:
            return entry.status
        return LIVE_STATUSES[int(self._cols.row_status[slot])]

    def _call_of(self, entry: _Entry, slot: int | None) -> MarginCall | None:
        """A live contract's margin call, from its row (an ended contract holds none)."""
        cols = self._cols
        if entry.status.terminal or slot is None or not cols.row_call_held[slot]:
            return None
        fields = (int(getattr(cols, name)[slot]) for name in ROW_FIELDS[4:])
        return _margin_call(entry.contract, *fields)

    def _view(self, entry: _Entry, *, with_call: bool = True) -> ContractView:
        slot = self._cols.slot.get(entry.contract.id)
        live = slot is not None and not entry.status.terminal
        cols = self._cols
        if live:
            assert slot is not None
            mark, mtm = float(cols.mark[slot]), float(cols.mtm[slot])
            vm, avg_sum, avg_count = (
                float(cols.vm[slot]),
                float(cols.avg_sum[slot]),
                int(cols.avg_count[slot]),
            )
        else:
            mark, mtm, vm = entry.mark, entry.mtm, entry.vm
            avg_sum, avg_count = entry.avg_sum, entry.avg_count
        return ContractView(
            contract=entry.contract,
            status=self._status(entry, slot),
            ordinal=entry.ordinal,
            initial_margin=entry.initial_margin,
            notional=entry.notional,
            mark=_nan_to_none(mark),
            client_mtm=_nan_to_none(mtm),
            vm_balance=vm,
            margin_call=self._call_of(entry, slot) if with_call else None,
            avg_sum=avg_sum,
            avg_count=avg_count,
            defaulting_party=entry.defaulting_party,
            outcome=entry.outcome,
        )

    # ----------------------------------------------------------------------------------------
    # events

    def add(self, contract: Contract) -> list[BookOutput]:
        """Open a contract (``OpenContract``); the same contract again is a no-op."""
        return self.apply(OpenContract(contract))

    def apply_all(self, events: Iterable[BookEvent]) -> list[BookOutput]:
        out: list[BookOutput] = []
        for event in events:
            out.extend(self.apply(event))
        return out

    def apply(self, event: BookEvent) -> list[BookOutput]:
        """Apply one event; raises ``ValidationError`` (changing nothing) if it is refused."""
        if isinstance(event, Fixing):
            return self._fixing(event)
        if isinstance(event, BlockPassed):
            return self._block(event)
        if isinstance(event, OpenContract):
            return self._open(event.contract)
        if isinstance(event, MarginPosted):
            return self._margin_posted(event)
        if isinstance(event, NettedMarginPosted):
            return self._netted_margin_posted(event)
        if isinstance(event, MarginShort):
            return self._margin_short(event)
        if isinstance(event, CloseOut):
            return self._close_out(event)
        if isinstance(event, CreditEvent):
            return self._credit_event(event)
        raise ValidationError(f"unknown event {type(event).__name__}", where="type")

    # --- underlyings and fixings -------------------------------------------------------------

    def _underlying(self, name: str) -> int:
        idx = self._uidx.get(name)
        if idx is None:
            idx = len(self._uidx)
            self._uidx[name] = idx
            if idx >= self._px.size:
                grow = self._px.size
                self._px = np.concatenate([self._px, np.zeros(grow)])
                self._last = np.concatenate([self._last, np.full(grow, NO_DATE, dtype=np.int64)])
            self._px[idx] = np.nan
            self._last[idx] = NO_DATE
        return idx

    def _first_on_or_after(self, underlying: str, day: int) -> tuple[int, float] | None:
        hist = self._hist.get(underlying)
        if hist is None:
            return None
        k = bisect.bisect_left(hist[0], day)
        return (hist[0][k], hist[1][k]) if k < len(hist[0]) else None

    def _last_on_or_before(self, underlying: str, day: int) -> tuple[int, float] | None:
        hist = self._hist.get(underlying)
        if hist is None:
            return None
        k = bisect.bisect_right(hist[0], day) - 1
        return (hist[0][k], hist[1][k]) if k >= 0 else None

    def _last_fixing_day(self, underlying: str) -> int:
        hist = self._hist.get(underlying)
        return hist[0][-1] if hist else NO_DATE

    def _fixing(self, event: Fixing) -> list[BookOutput]:
        day = event.date.toordinal()
        fresh: dict[str, float] = {}
        for k, px in enumerate(event.prices):
            where = f"prices[{k}]"
            if not _UNDERLYING_ID.match(px.underlying):
                raise ValidationError(f"bad underlying id {px.underlying!r}", where=where)
            if not math.isfinite(px.price):
                raise ValidationError(f"{px.underlying}: price must be finite", where=where)
            if px.underlying in fresh:
                if fresh[px.underlying] != px.price:
                    raise ValidationError(
                        f"{px.underlying} has two prices for {event.date}", where=where
                    )
                continue
            hist = self._hist.get(px.underlying)
            if hist is not None and hist[0][-1] >= day:
                k = bisect.bisect_left(hist[0], day)
                if hist[0][k] == day:
                    if hist[1][k] != px.price:
                        raise ValidationError(
                            f"{px.underlying} already fixed at {hist[1][k]} on {event.date}",
                            where=where,
                        )
                    continue  # the same fixing again: nothing to do
                raise ValidationError(
                    f"{px.underlying} fixing for {event.date} arrives after the one for "
                    f"{dt.date.fromordinal(hist[0][-1])} (fixings go in date order)",
                    where=where,
                )
            fresh[px.underlying] = float(px.price)
        if not fresh:
            return []
        for name, price in fresh.items():
            idx = self._underlying(name)
            self._px[idx] = price
            self._last[idx] = day
            dates, prices = self._hist.setdefault(name, ([], []))
            dates.append(day)
            self._series_blob.pop(name, None)
            prices.append(price)
        self._mark_ord = max(self._mark_ord, day)
        return self._tick(day, event.date)

    def _tick(self, day: int, date: dt.date) -> list[BookOutput]:
        """The vectorised pass of one fixing: average sums, marks and values, maturities,
        variation-margin calls."""
        cols = self._cols
        if cols.n == 0:
            return []
        cols.save_all()  # the tick writes every row
        px = self._px
        levels = cols.levels(px)
        fixed_today = self._last[: len(self._uidx)] == day
        fixed_today[0] = True  # the padding leg never holds an average back
        cols.accumulate(levels, fixed_today, day)  # flags the rows it changes as dirty
        mark = cols.marks(levels, self._mark_ord)
        cols.mark[: cols.n] = mark
        cols.mtm[: cols.n] = cols.values(mark)  # same as cols.revalue, reusing the levels
        out: list[BookOutput] = []
        for slot in cols.due(day).tolist():
            self._try_settle(slot, day, date, by_block=False, out=out)
        rows, deltas = cols.margin_deltas()
        if rows.size:
            dues = day + cols.cure_days[rows]
            cols.call_open[rows] = True
            cols.call_short[rows] = False
            cols.deadline[rows] = dues
            # the calls' rows, laid out as ``_call_row`` does one
            calls = cols.row_calls[rows] + 1
            amounts = np.rint(np.abs(deltas) * MICROS)  # = money.to_micros
            cols.row_status[rows] = LIVE_STATUSES.index(Status.MARGIN_CALL)
            cols.row_calls[rows] = calls
            cols.row_call_held[rows] = True
            cols.row_call_seq[rows] = calls
            cols.row_call_dealer_pays[rows] = deltas > 0
            cols.row_call_amount[rows] = amounts
            cols.row_call_outstanding[rows] = amounts
            cols.row_call_date[rows] = day
            cols.row_call_height[rows] = self._height
            cols.row_call_due[rows] = dues
            cols.row_call_short[rows] = False
            self._rows_changed(rows)
            out.extend(self._margin_calls(rows, deltas > 0, amounts, calls, dues, date))
        cols.compact()
        return out

    # --- opening -----------------------------------------------------------------------------

    def _open(self, contract: Contract) -> list[BookOutput]:
        contract = canonical_contract(contract)
        existing = self._entries.get(contract.id)
        if existing is not None:
            if existing.contract == contract:
                return []
            raise ValidationError("another contract already has this id", where=contract.id)
        validate_contract(contract)
        entry = _Entry(contract, self._next_ordinal)
        entry.changed = self._height
        self._next_ordinal += 1
        legs = contract.terms.legs
        leg_index = [self._underlying(leg.underlying) for leg in legs]
        avg_sum, avg_count, avg_last = self._average_from_history(contract)
        slot = self._cols.push(
            contract,
            leg_index,
            ordinal=entry.ordinal,
            avg_sum=avg_sum,
            avg_count=avg_count,
            avg_last=avg_last,
        )
        if self._mark_ord != NO_DATE:
            self._cols.revalue(self._px, self._mark_ord, np.array([slot], dtype=np.intp))
        self._entries[contract.id] = entry
        if self._journal is not None:
            self._journal.opened.append(contract.id)
        self._new_ids.append(contract.id)
        self._parties.add(contract.id, (contract.client, contract.dealer))
        out: list[BookOutput] = [
            ContractOpened(
                contract_id=contract.id,
                client=contract.client,
                dealer=contract.dealer,
                notional=entry.notional,
                initial_margin=entry.initial_margin,
            )
        ]
        option = contract.terms.option
        premium = payoff.premium_amount(contract)
        if option is not None and premium > 0:
            buyer, seller = self._long_short(contract)
            self._pay(
                entry, PaymentKind.PREMIUM, buyer, seller, premium, contract.terms.trade_date, out
            )
        return out

    def _average_from_history(self, contract: Contract) -> tuple[float, int, int]:
        """Fixings already published in a new average-price swap's window."""
        averaging = contract.terms.averaging
        if averaging is None:
            return 0.0, 0, NO_DATE
        start, end = averaging.start.toordinal(), averaging.end.toordinal()
        legs = contract.terms.legs
        per_leg: list[dict[int, float]] = []
        for leg in legs:
            dates, prices = self._hist.get(leg.underlying, ([], []))
            per_leg.append({d: p for d, p in zip(dates, prices, strict=True) if start <= d <= end})
        days = sorted(set.intersection(*(set(m) for m in per_leg)))
        total, count, last = 0.0, 0, NO_DATE
        for day in days:
            fix = {leg.underlying: m[day] for leg, m in zip(legs, per_leg, strict=True)}
            total = total + payoff.level(legs, fix)
            count += 1
            last = day
        return total, count, last

    # --- money -------------------------------------------------------------------------------

    @staticmethod
    def _long_short(contract: Contract) -> tuple[str, str]:
        """(buyer, seller) of the contract: the client when it buys."""
        if contract.terms.client_side == "buy":
            return contract.client, contract.dealer
        return contract.dealer, contract.client

    def _pay(
        self,
        entry: _Entry,
        kind: PaymentKind,
        payer: str,
        payee: str,
        amount: float,
        date: dt.date | None,
        out: list[BookOutput],
    ) -> None:
        micros = to_micros(amount)  # the engine's float leaves it here, onto the grid
        self._pay_micros(entry, kind, payer, payee, micros, date, out)

    def _pay_micros(
        self,
        entry: _Entry,
        kind: PaymentKind,
        payer: str,
        payee: str,
        micros: Micros,
        date: dt.date | None,
        out: list[BookOutput],
    ) -> None:
        if micros <= 0:  # less than the money grid's step is never an instruction
            return
        self._touch(entry)
        seq = entry.next_seq(kind.value)
        out.append(
            PaymentInstruction(
                id=f"{entry.contract.id}/{kind.value}/{seq}",
                contract_id=entry.contract.id,
                kind=kind,
                payer=payer,
                payee=payee,
                amount=micros,
                date=date,
            )
        )

    def _pay_net(
        self,
        entry: _Entry,
        kind: PaymentKind,
        net: float,
        date: dt.date | None,
        out: list[BookOutput],
    ) -> None:
        """Pay ``net`` from dealer to client (negative: client to dealer)."""
        c = entry.contract
        if net > 0:
            self._pay(entry, kind, c.dealer, c.client, net, date, out)
        elif net < 0:
            self._pay(entry, kind, c.client, c.dealer, -net, date, out)

    # --- variation margin --------------------------------------------------------------------

    def _margin_calls(
        self,
        rows: npt.NDArray[np.intp],
        dealer_pays: npt.NDArray[np.bool_],
        amounts: F64,
        seqs: I64,
        dues: I64,
        date: dt.date,
    ) -> list[BookOutput]:
        """The tick's calls as ``MarginCalls``, one per payer, payee and due date: groups in
        the order of their first contract, contracts in the order they were opened (the rows'
        order). The amounts are on the money grid, so paying exactly one leaves nothing
        outstanding."""
        cols = self._cols
        client, dealer = cols.client[rows], cols.dealer[rows]
        payer = np.where(dealer_pays, dealer, client)
        payee = np.where(dealer_pays, client, dealer)
        key = (payer * len(cols.parties) + payee) * (1 << 23) + dues  # a day ordinal < 2**23
        _, first, group = np.unique(key, return_index=True, return_inverse=True)
        rank = np.empty_like(first)
        rank[np.argsort(first, kind="stable")] = np.arange(first.size)
        order = np.argsort(rank[group], kind="stable")
        bounds = np.searchsorted(rank[group][order], np.arange(first.size + 1)).tolist()
        ids, parties = cols.ids, cols.parties
        slots = rows[order].tolist()
        seq, amount = seqs[order].tolist(), amounts[order].astype(np.int64).tolist()
        mtm = cols.mtm[rows][order].tolist()
        payers, payees, due = payer[order].tolist(), payee[order].tolist(), dues[order].tolist()
        return [
            MarginCalls(
                payer=parties[payers[a]],
                payee=parties[payees[a]],
                date=date,
                due=dt.date.fromordinal(due[a]),
                contract_ids=tuple([ids[k] for k in slots[a:b]]),
                seqs=tuple(seq[a:b]),
                amounts=tuple(amount[a:b]),
                client_mtms=tuple(mtm[a:b]),
            )
            for a, b in itertools.pairwise(bounds)
        ]

    def _open_entry(self, contract_id: str, what: str) -> tuple[_Entry, int]:
        entry = self._entry(contract_id)
        slot = self._cols.slot.get(contract_id)
        status = self._status(entry, slot)
        if status.terminal or status == Status.IN_DEFAULT:
            raise ValidationError(
                f"contract {contract_id} is {status.value}: {what} refused", where="contract_id"
            )
        assert slot is not None
        return entry, slot

    def _margin_posted(self, event: MarginPosted) -> list[BookOutput]:
        key = f"margin_posted:{event.id}"
        if key in self._seen:
            return []
        entry, slot = self._open_entry(event.contract_id, "margin")
        c = entry.contract
        if event.payer not in (c.client, c.dealer):
            raise ValidationError(f"{event.payer!r} is not a party to {c.id}", where="payer")
        if not (type(event.amount) is int and event.amount > 0):
            raise ValidationError("amount must be a positive number of micros", where="amount")
        self._touch(entry)
        self._post_vm(entry, slot, event.payer, event.amount)
        out: list[BookOutput] = []
        payee = c.client if event.payer == c.dealer else c.dealer
        self._pay_micros(
            entry, PaymentKind.VARIATION_MARGIN, event.payer, payee, event.amount, None, out
        )
        call = self._call_of(entry, slot)
        if call is not None and call.payer == event.payer:
            outstanding = call.outstanding - event.amount
            if outstanding <= 0:
                self._call_met(entry, slot, call, out)
            else:
                self._put_call(entry, slot, msgspec.structs.replace(call, outstanding=outstanding))
        self._touch(entry)
        self._mark_seen(key)
        return out

    def _post_vm(self, entry: _Entry, slot: int, payer: str, amount: Micros) -> None:
        """``payer`` posted ``amount`` of variation margin (the caller touched the entry).
        The balance is an exact sum of micros; the column holds it in units for the float
        marks (always ``from_micros`` of an integer, so it restores bit for bit)."""
        cols = self._cols
        signed = amount if payer == entry.contract.dealer else -amount
        cols.save_row(slot)
        cols.vm[slot] = from_micros(to_micros(float(cols.vm[slot])) + signed)

    def _call_met(self, entry: _Entry, slot: int, call: MarginCall, out: list[BookOutput]) -> None:
        """The open call is met: the contract is live again and its row holds no call (as a
        restored book holds it: no deadline either)."""
        cols = self._cols
        self._put_call(entry, slot, None)
        self._put_status(slot, Status.LIVE)
        cols.call_open[slot] = False
        cols.call_short[slot] = False
        cols.deadline[slot] = NO_DATE
        out.append(MarginCallsMet(contract_ids=(entry.contract.id,), seqs=(call.seq,)))

    def _netted_margin_posted(self, event: NettedMarginPosted) -> list[BookOutput]:
        """Meet every call of a netting set from one payment: all are checked before any
        moves (a call not open as named refuses the posting), and no per-contract payment is
        instructed (the netted payment is the money that moved). What ``_post_vm`` and
        ``_call_met`` do to one contract is done to the set's rows in a few array
        operations: a set may hold a fixing's hundred thousand calls."""
        key = f"margin_posted:{event.id}"
        if key in self._seen:
            return []
        cols, entries, payer = self._cols, self._entries, event.payer
        ids, seq, paid = event.contract_ids, event.seqs, event.amounts
        if not len(ids) == len(seq) == len(paid):
            raise ValidationError("the calls' columns differ in length", where="calls")
        if len(set(ids)) != len(ids):
            raise ValidationError("a contract appears twice in the netting set", where="calls")
        slots_of = cols.slot
        slots: list[int] = []
        as_dealer: list[bool] = []
        as_client: list[bool] = []
        for cid in ids:
            entry = entries.get(cid)
            if entry is None:
                raise ValidationError(f"no contract {cid!r}", where="contract_id")
            if entry.status.terminal:
                raise ValidationError(
                    f"contract {cid} is {entry.status.value}: margin refused", where="contract_id"
                )
            slots.append(slots_of[cid])
            as_dealer.append(entry.contract.dealer == payer)
            as_client.append(entry.contract.client == payer)
        rows = np.array(slots, dtype=np.intp)
        dealer = np.array(as_dealer, dtype=np.bool_)
        pays = np.where(cols.row_call_dealer_pays[rows], dealer, np.array(as_client))
        amounts = np.array(paid, dtype=np.int64)
        bad = (
            cols.in_default[rows]
            | ~cols.row_call_held[rows]
            | (cols.row_call_seq[rows] != np.array(seq, dtype=np.int64))
            | ~pays
            | (cols.row_call_outstanding[rows] != amounts)
        )
        if bad.any():
            k = int(np.flatnonzero(bad)[0])
            if cols.in_default[rows[k]]:
                raise ValidationError(
                    f"contract {ids[k]} is {Status.IN_DEFAULT.value}: margin refused",
                    where="contract_id",
                )
            raise ValidationError(
                f"contract {ids[k]} has no open margin call {seq[k]} of {paid[k]} micros "
                f"from {payer}",
                where="calls",
            )
        cols.save_rows(rows)
        signed = np.where(dealer, amounts, -amounts)
        cols.vm[rows] = (np.rint(cols.vm[rows] * MICROS) + signed) / MICROS  # = _post_vm
        cols.call_open[rows] = False
        cols.call_short[rows] = False
        cols.deadline[rows] = NO_DATE
        cols.row_status[rows] = LIVE_STATUSES.index(Status.LIVE)
        for name in ROW_FIELDS[3:]:  # no call held (``_call_row``)
            getattr(cols, name)[rows] = 0
        self._rows_changed(rows)
        self._mark_seen(key)
        return [MarginCallsMet(contract_ids=ids, seqs=seq)]

    # --- the block clock ---------------------------------------------------------------------

    def _block(self, event: BlockPassed) -> list[BookOutput]:
        if event.height <= self._height:
            return []
        if self._date is not None and event.date < self._date:
            raise ValidationError(
                f"block {event.height} is dated {event.date}, before {self._date}", where="date"
            )
        self._height = event.height
        self._date = event.date
        cols = self._cols
        out: list[BookOutput] = []
        day = event.date.toordinal()
        for slot in cols.overdue(day).tolist():
            entry = self._entries[cols.ids[slot]]
            call = self._call_of(entry, slot)
            assert call is not None and call.short  # the others wait (``overdue``)
            self._default_on_call(slot, entry, call, out)
        for slot in cols.due(day).tolist():
            self._try_settle(slot, day, event.date, by_block=True, out=out)
        cols.compact()
        return out

    def _margin_short(self, event: MarginShort) -> list[BookOutput]:
        """The bank reported the payer of call ``seq`` short: past the due date that is a
        default now; before it, the payer may still pay until the call is due."""
        entry, slot = self._open_entry(event.contract_id, "margin short notice")
        call = self._call_of(entry, slot)
        if call is None or call.seq != event.seq:
            raise ValidationError(
                f"contract {event.contract_id} has no open margin call {event.seq}", where="seq"
            )
        out: list[BookOutput] = []
        if not call.short:
            self._touch_live(entry)
            call = msgspec.structs.replace(call, short=True)
            self._put_call(entry, slot, call)
            self._cols.call_short[slot] = True
        if self._date is not None and self._date > call.due:
            self._default_on_call(slot, entry, call, out)
        return out

    def _default_on_call(
        self, slot: int, entry: _Entry, call: MarginCall, out: list[BookOutput]
    ) -> None:
        self._touch(entry)
        self._put_status(slot, Status.IN_DEFAULT)
        entry.defaulting_party = call.payer
        self._cols.call_open[slot] = False
        self._cols.call_short[slot] = False
        self._cols.deadline[slot] = NO_DATE
        self._cols.in_default[slot] = True
        out.append(
            DefaultTriggered(
                contract_id=entry.contract.id,
                party=call.payer,
                reason=(
                    f"short at the deadline: margin call {call.seq} of "
                    f"{from_micros(call.amount):,.2f} "
                    f"due {call.due} unpaid"
                ),
                height=self._height,
            )
        )

    # --- endings -----------------------------------------------------------------------------

    def _try_settle(
        self, slot: int, day: int, date: dt.date, *, by_block: bool, out: list[BookOutput]
    ) -> None:
        """Settle a contract whose maturity has come if its fixings are in.

        Each leg settles on its first fixing dated on or after maturity (the maturity-date
        fixing when published; a day without one, such as a holiday, follows to the next).
        A leg that will never fix again -- a futures month past its last trading day -- settles
        on its **last fixing on or before maturity** once a block dated after maturity passes
        while the book already holds a fixing dated after maturity (the market moved on
        without this leg). The rule reads only the block's date and the fixings on chain, so
        every node settles the same way; with no fixing on or before maturity either, the leg
        keeps the contract open.

        An average-price swap settles on the mean of its window once every leg has fixed on
        or after the window's end, or once a block dated after maturity passes with at least
        one fixing in the window.
        """
        cols = self._cols
        entry = self._entries[cols.ids[slot]]
        c = entry.contract
        terms = c.terms
        maturity = terms.maturity.toordinal()
        level: float | None = None
        if terms.averaging is not None:
            count = int(cols.avg_count[slot])
            window_done = all(
                self._last_fixing_day(leg.underlying) >= terms.averaging.end.toordinal()
                for leg in terms.legs
            )
            if count > 0 and (window_done or (by_block and day > maturity)):
                level = float(cols.avg_sum[slot]) / count
        if level is None:
            market_moved_on = by_block and day > maturity and self._mark_ord > maturity
            prices: dict[str, float] = {}
            for leg in terms.legs:
                found = self._first_on_or_after(leg.underlying, maturity)
                if found is None and market_moved_on:
                    found = self._last_on_or_before(leg.underlying, maturity)
                if found is None:
                    return
                prices[leg.underlying] = found[1]
            level = payoff.level(terms.legs, prices)
        value = payoff.client_value(c, level)
        pnl = payoff.client_pnl(c, level)
        net = value - float(cols.vm[slot])
        out.append(
            ContractSettled(
                contract_id=c.id,
                date=terms.maturity,
                settlement_price=level,
                client_pnl=pnl,
                dealer_pnl=-pnl,
            )
        )
        self._pay_net(entry, PaymentKind.SETTLEMENT, net, date, out)
        outcome = Outcome(
            status=Status.SETTLED,
            date=terms.maturity,
            height=self._height,
            settlement_price=level,
            client_value=value,
            client_pnl=pnl,
            dealer_pnl=-pnl,
        )
        self._terminate(slot, entry, outcome, level, value, out)
        self._rate(entry, out)

    def _terminate(
        self,
        slot: int,
        entry: _Entry,
        outcome: Outcome,
        mark: float | None,
        value: float,
        out: list[BookOutput],
    ) -> None:
        """End the contract; an open margin call lapses with it (``MarginCallLapsed``)."""
        cols = self._cols
        self._touch(entry)
        call = self._call_of(entry, slot)
        calls = int(cols.row_calls[slot])
        if calls:
            entry.seqs[_CALLS] = calls  # its record's, now it has no row
        entry.status = outcome.status
        entry.outcome = outcome
        self._parties.close(entry.contract.id, (entry.contract.client, entry.contract.dealer))
        if call is not None:
            out.append(
                MarginCallLapsed(
                    contract_id=entry.contract.id,
                    seq=call.seq,
                    payer=call.payer,
                    payee=call.payee,
                    outstanding=call.outstanding,
                    height=call.height,
                    due=call.due,
                )
            )
        entry.vm = float(cols.vm[slot])
        entry.avg_sum = float(cols.avg_sum[slot])
        entry.avg_count = int(cols.avg_count[slot])
        entry.avg_last = int(cols.avg_last[slot])
        entry.mark = math.nan if mark is None else mark
        entry.mtm = value
        cols.deactivate(slot)

    def _rate(
        self,
        entry: _Entry,
        out: list[BookOutput],
        *,
        guarantee: float = 0.0,
        recovery_rate: float | None = None,
    ) -> None:
        """Formula 3 for the client, and for the dealer too when the dealer defaulted."""
        c = entry.contract
        outcome = entry.outcome
        assert outcome is not None
        parties = [c.client]
        if outcome.defaulting_party == c.dealer:
            parties.append(c.dealer)
        records = []
        for party in parties:
            is_client = party == c.client
            defaulted = outcome.defaulting_party == party
            posted = max(-entry.vm, 0.0) if is_client else max(entry.vm, 0.0)
            records.append(
                RatingRecord(
                    party=party,
                    counterparty=c.dealer if is_client else c.client,
                    contract_id=c.id,
                    outcome=outcome.status,
                    end_date=outcome.date,
                    size=entry.notional,
                    length_days=max((outcome.date - c.terms.trade_date).days, 0),
                    collateral=(entry.initial_margin if is_client else 0.0) + posted,
                    margin=c.margin is not None,
                    guarantee=guarantee if defaulted else 0.0,
                    default=defaulted,
                    recovery_rate=recovery_rate if defaulted else None,
                )
            )
        self._touch(entry)
        entry.ratings = tuple(records)
        out.extend(records)

    def _close_out(self, event: CloseOut) -> list[BookOutput]:
        key = f"close_out:{event.contract_id}/{event.id}"
        if key in self._seen:
            return []
        entry, slot = self._open_entry(event.contract_id, "close-out")
        c = entry.contract
        terms = c.terms
        if event.date < terms.trade_date:
            raise ValidationError(
                f"close-out date {event.date} is before the trade date {terms.trade_date}",
                where="date",
            )
        cols = self._cols
        if event.price is not None:
            if not math.isfinite(event.price):
                raise ValidationError("price must be finite", where="price")
            level = float(event.price)
        else:
            prices: dict[str, float] = {}
            for i, leg in enumerate(terms.legs):
                px = self.fixing(leg.underlying, event.date)
                if px is None:
                    raise ValidationError(
                        f"no fixing of {leg.underlying} on {event.date}", where=f"legs[{i}]"
                    )
                prices[leg.underlying] = px
            level = payoff.level(terms.legs, prices)
            if terms.averaging is not None:
                if int(cols.avg_last[slot]) > event.date.toordinal():
                    raise ValidationError(
                        "the average already holds fixings after the close-out date",
                        where="date",
                    )
                level = payoff.average_estimate(
                    float(cols.avg_sum[slot]),
                    int(cols.avg_count[slot]),
                    level,
                    payoff.remaining_days(c, event.date),
                )
        value = payoff.client_value(c, level)
        pnl = payoff.client_pnl(c, level)
        net = value - float(cols.vm[slot])
        out: list[BookOutput] = [
            ContractClosedOut(
                contract_id=c.id,
                date=event.date,
                price=level,
                agreed=event.price is not None,
                client_pnl=pnl,
                dealer_pnl=-pnl,
            )
        ]
        self._pay_net(entry, PaymentKind.CLOSE_OUT, net, event.date, out)
        outcome = Outcome(
            status=Status.CLOSED_OUT,
            date=event.date,
            height=self._height,
            settlement_price=level,
            client_value=value,
            client_pnl=pnl,
            dealer_pnl=-pnl,
        )
        self._terminate(slot, entry, outcome, level, value, out)
        self._rate(entry, out)
        self._mark_seen(key)
        self._cols.compact()
        return out

    def _today(self, contract: Contract) -> dt.date:
        days = [d for d in (self._date, self.mark_date) if d is not None]
        return max(days) if days else contract.terms.trade_date

    def _credit_event(self, event: CreditEvent) -> list[BookOutput]:
        key = f"credit_event:{event.id}"
        if key in self._seen:
            return []
        party = event.party
        cols = self._cols
        ids = list(self._parties.ids(party, open_only=True))
        claims: list[Micros] = []
        owed_to: list[float] = []
        for cid in ids:
            slot = cols.slot[cid]
            mtm = float(cols.mtm[slot])
            value = 0.0 if math.isnan(mtm) else mtm
            net = value - float(cols.vm[slot])  # dealer -> client
            if party == self._entries[cid].contract.client:  # the claim onto the grid
                claims.append(to_micros(max(-net, 0.0)))
                owed_to.append(max(net, 0.0))
            else:
                claims.append(to_micros(max(net, 0.0)))
                owed_to.append(max(-net, 0.0))
        result = waterfall(claims, event.collateral, event.guarantees)  # validates inputs
        out: list[BookOutput] = []
        for cid, rec, due in zip(ids, result.claims, owed_to, strict=True):
            entry = self._entries[cid]
            c = entry.contract
            slot = cols.slot[cid]
            other = c.dealer if party == c.client else c.client
            today = self._today(c)
            mark = _nan_to_none(float(cols.mark[slot]))
            value = 0.0 if mark is None else float(cols.mtm[slot])
            if mark is None:
                option = c.terms.option
                premium = 0.0 if option is None else option.premium
                pnl = (0.0 - premium) * payoff.signed_size(c)
            else:
                pnl = payoff.client_pnl(c, mark)
            guaranteed = rec.guaranteed
            out.append(
                ContractDefaulted(
                    contract_id=cid,
                    party=party,
                    date=today,
                    mark=mark,
                    owed_by_defaulter=rec.claim,
                    collateral_applied=rec.collateral,
                    guarantee_applied=guaranteed,
                    unrecovered=rec.unrecovered,
                    client_pnl=pnl,
                    dealer_pnl=-pnl,
                )
            )
            self._pay_micros(
                entry, PaymentKind.COLLATERAL, party, other, rec.collateral, today, out
            )
            for use in rec.guarantees:
                self._pay_micros(
                    entry, PaymentKind.GUARANTEE, use.guarantor, other, use.amount, today, out
                )
            self._pay(entry, PaymentKind.CLOSE_OUT, other, party, due, today, out)
            self._touch(entry)
            entry.defaulting_party = party
            outcome = Outcome(
                status=Status.DEFAULTED,
                date=today,
                height=self._height,
                settlement_price=mark,
                client_value=value,
                client_pnl=pnl,
                dealer_pnl=-pnl,
                defaulting_party=party,
                recovery_rate=result.recovery_rate,
            )
            self._terminate(slot, entry, outcome, mark, value, out)
            self._rate(
                entry, out, guarantee=from_micros(guaranteed), recovery_rate=result.recovery_rate
            )
        out.append(
            CreditEventResolved(
                event_id=event.id,
                party=party,
                contract_ids=tuple(ids),
                exposure=result.exposure,
                collateral_applied=result.collateral_applied,
                guarantee_applied=result.guarantee_applied,
                guarantees=result.guarantees,
                shortfall=result.shortfall,
                unrecovered=result.unrecovered,
                recovery_rate=result.recovery_rate,
            )
        )
        self._mark_seen(key)
        cols.compact()
        return out

    def _mark_seen(self, key: str) -> None:
        self._seen.add(key)
        bisect.insort(self._seen_sorted, key)
        self._seen_digest = None
        if self._journal is not None:
            self._journal.seen.append(key)

    # ----------------------------------------------------------------------------------------
    # journal: undo a block that was executed but not decided

    @property
    def journaling(self) -> bool:
        return self._journal is not None

    def checkpoint(self) -> None:
        """Start recording what the events change, for ``rollback`` (or ``release``).

        The journal keeps the record of each contract an event touches (before it changes),
        the columns' rows it writes (or all of them, for a fixing's tick or a compaction,
        which touch every row anyway), the ids opened and seen keys added, and the few small
        fields as they were: undoing costs what the block changed, not the book's size.
        """
        if self._journal is not None:
            raise ValidationError("the book is already journaling", where="journal")
        self._refresh()
        self._tree.digest()
        self._journal = _BookJournal(self)
        self._cols.checkpoint()

    def release(self) -> None:
        """Keep every change since ``checkpoint`` and stop journaling."""
        self._journal = None
        self._cols.release()

    def rollback(self) -> None:
        """Put the book back exactly as it was at ``checkpoint`` (state and caches)."""
        journal = self._journal
        if journal is None:
            raise ValidationError("the book is not journaling", where="journal")
        self._journal = None
        self._cols.rollback()
        (self._height, self._date, self._mark_ord, self._next_ordinal) = journal.scalars
        self._px, self._last, self._series_blob = journal.px, journal.last, journal.series_blob
        for name in list(self._uidx)[journal.underlyings :]:
            del self._uidx[name]
        for name in [n for n in self._hist if n not in journal.hist]:
            del self._hist[name]
        for name, size in journal.hist.items():
            dates, prices = self._hist[name]
            del dates[size:], prices[size:]
        for key in journal.seen:
            if key in self._seen:
                self._seen.discard(key)
                k = bisect.bisect_left(self._seen_sorted, key)
                del self._seen_sorted[k]
        for key in journal.unseen:
            self._seen.add(key)
            bisect.insort(self._seen_sorted, key)
        self._seen_digest = journal.seen_digest
        tree_changes: list[tuple[str, bytes | None]] = []
        for cid in journal.opened:
            entry = self._entries.pop(cid)
            self._parties.remove(cid, (entry.contract.client, entry.contract.dealer))
            tree_changes.append((cid, None))
            self._hot.discard(cid)
        for entry in journal.pruned:
            cid = entry.contract.id
            self._entries[cid] = entry
            self._parties.add(cid, (entry.contract.client, entry.contract.dealer), open_=False)
            assert entry.blob is not None and entry.digest is not None  # made by prune
            tree_changes.append((cid, entry.digest))
        for cid, saved in journal.entries.items():
            entry = self._entries[cid]
            ended = entry.status.terminal
            for name, value in zip(_Entry.__slots__, saved, strict=True):
                setattr(entry, name, value)
            if ended and not entry.status.terminal:
                self._parties.reopen(cid, (entry.contract.client, entry.contract.dealer))
            assert entry.blob is not None and entry.digest is not None
            tree_changes.append((cid, entry.digest))
            self._hot.add(cid)  # its row as it was: its chunk is hashed again
        self._tree_update(tree_changes)
        self._chunk_dirty |= journal.chunks  # rows as they were, in the columns put back
        self._new_ids.clear()
        self._dirty.clear()

    # ----------------------------------------------------------------------------------------
    # canonical state

    def _record_fields(self, entry: _Entry) -> tuple[Any, ...]:
        """A record's fields after ``contract``, in ``ContractRecord`` order."""
        slot = self._cols.slot.get(entry.contract.id)
        seqs = entry.seqs
        if slot is not None and not entry.status.terminal:
            cols = self._cols
            vm = float(cols.vm[slot])
            avg_sum, avg_count = float(cols.avg_sum[slot]), int(cols.avg_count[slot])
            avg_last = int(cols.avg_last[slot])
            calls = int(cols.row_calls[slot])
            if calls:
                seqs = {**seqs, _CALLS: calls}
        else:
            vm, avg_sum, avg_count, avg_last = (
                entry.vm,
                entry.avg_sum,
                entry.avg_count,
                entry.avg_last,
            )
        return (
            entry.ordinal,
            self._status(entry, slot),
            to_micros(vm),
            avg_sum,
            avg_count,
            None if avg_last == NO_DATE else dt.date.fromordinal(avg_last),
            self._call_of(entry, slot),
            entry.defaulting_party,
            tuple(sorted(seqs.items())),
            entry.outcome,
            entry.ratings,
        )

    def _leaf_fields(self, entry: _Entry) -> tuple[Any, ...]:
        """A record's fields as the contracts' tree holds them: an ended contract's whole, a
        live one's with its live fields blank (they are its row, in the columns)."""
        if entry.status.terminal:
            return self._record_fields(entry)
        sequences = tuple(sorted(entry.seqs.items()))  # the calls' count is the row's
        return (
            entry.ordinal,
            Status.LIVE,
            0,
            0.0,
            0,
            None,
            None,
            entry.defaulting_party,
            sequences,
            entry.outcome,
            entry.ratings,
        )

    def _record(self, entry: _Entry) -> ContractRecord:
        return ContractRecord(entry.contract, *self._record_fields(entry))

    def _series(self, name: str) -> FixingSeries:
        dates, prices = self._hist[name]
        return FixingSeries(
            underlying=name,
            dates=tuple(dt.date.fromordinal(d) for d in dates),
            prices=tuple(prices),
        )

    def snapshot(self) -> BookSnapshot:
        """The whole canonical state, built afresh (no caches)."""
        return BookSnapshot(
            version=SNAPSHOT_VERSION,
            height=self._height,
            date=self._date,
            mark_date=self.mark_date,
            next_ordinal=self._next_ordinal,
            fixings=tuple(self._series(name) for name in sorted(self._hist)),
            contracts=tuple(self._record(self._entries[cid]) for cid in sorted(self._entries)),
            seen=tuple(sorted(self._seen)),
        )

    def record_bytes(self, contract_id: str) -> bytes:
        """One contract's whole canonical record, as it sits inside ``state_bytes``."""
        return bytes(self._whole_blob(self._entry(contract_id)))

    def _whole_blob(self, entry: _Entry) -> msgspec.Raw:
        if entry.status.terminal:
            return self._record_blob(entry)
        wire = _WireRecord(entry.contract_raw, *self._record_fields(entry))
        return msgspec.Raw(_snapshot_encoder.encode(wire))

    def _record_blob(self, entry: _Entry) -> msgspec.Raw:
        """The record as the contracts' tree holds it (``_leaf_fields``), cached."""
        blob = entry.blob
        if blob is None:
            wire = _WireRecord(entry.contract_raw, *self._leaf_fields(entry))
            blob = msgspec.Raw(_snapshot_encoder.encode(wire))
            entry.blob = blob
            entry.digest = value_hash(blob)
        return blob

    def _refresh(self) -> None:
        """Bring the cached, id-ordered record bytes and digests up to date."""
        cols = self._cols
        rows = np.flatnonzero(cols.dirty[: cols.n])
        if rows.size:
            self._rows_changed(rows)
            for slot in rows.tolist():
                self._touch_live(self._entries[cols.ids[slot]])
                cols.save_row(slot)
            cols.dirty[rows] = False
        # A block costs what it opened or changed, not a pass over every contract.
        entries, record_blob = self._entries, self._record_blob
        changed = [*self._new_ids, *self._dirty]
        for cid in changed:
            record_blob(entries[cid])
        self._tree_update([(cid, entries[cid].digest) for cid in changed])
        self._hot.update(self._new_ids)
        self._new_ids.clear()
        self._dirty.clear()
        self._refresh_live()
        for name in self._hist:
            if name not in self._series_blob:
                self._series_blob[name] = msgspec.Raw(_snapshot_encoder.encode(self._series(name)))

    def _refresh_live(self) -> None:
        """Hash again the chunks of the live table whose rows changed."""
        entries, dirty = self._entries, self._chunk_dirty
        for cid in self._hot:
            entry = entries.get(cid)
            if entry is not None:  # else pruned (ended first) or undone (``rollback``)
                dirty.add(entry.ordinal >> CHUNK_BITS)
        self._hot.clear()
        if not dirty:
            return
        if self._journal is not None:
            self._journal.chunks.update(dirty)
        chunks = self._cols.live_chunks(dirty, CHUNK_BITS)
        self._live.update((str(k), value_hash(chunks[k]) if k in chunks else None) for k in dirty)
        if self._live_unsaved is not None:
            self._live_unsaved.update(dirty)
        self._chunk_dirty = set()

    def _tree_update(self, changes: list[tuple[str, bytes | None]]) -> None:
        """Records' digests into the tree (``None``: the contract left the book), and their
        ids into the change feed: every change of a record passes here."""
        self._tree.update(changes)
        if self._unsaved is not None:
            self._unsaved.update(cid for cid, _ in changes)

    def state_bytes(self) -> bytes:
        """Canonical msgpack of the whole book (``BookSnapshot``: contracts by id, fixings by
        underlying, seen keys sorted): what ``state_digest`` commits to, and what tests and
        tools compare. Equal to encoding ``snapshot()`` (an ended contract's record is the
        one cached for the tree; a live one's is encoded afresh)."""
        self._refresh()
        entries = self._entries
        records = tuple(self._whole_blob(entries[cid]) for cid in sorted(entries))
        return _snapshot_encoder.encode(self._wire(records))

    def header_bytes(self) -> bytes:
        """The state bytes with no contracts: a snapshot's book part, beside its table of
        records (``rows_later``; ``from_rows`` puts them back)."""
        self._refresh()
        return _snapshot_encoder.encode(self._wire(()))

    def _wire(self, contracts: tuple[msgspec.Raw, ...]) -> _WireSnapshot:
        """The book's fields as the state bytes hold them, with these records (call after
        ``_refresh``)."""
        return _WireSnapshot(
            version=SNAPSHOT_VERSION,
            height=self._height,
            date=self._date,
            mark_date=self.mark_date,
            next_ordinal=self._next_ordinal,
            fixings=tuple(self._series_blob[name] for name in sorted(self._hist)),
            contracts=contracts,
            seen=tuple(self._seen_sorted),
        )

    def rows_later(self, *, changed_only: bool, advance: bool = True) -> dict[str, Table]:
        """The book's snapshot tables: ``contracts`` (each row an array element, a record's
        bytes as the tree holds it, keyed by contract id) and ``live`` (each row a chunk of
        the live table, keyed by its chunk key). With ``changed_only``, the rows changed
        since the last snapshot that advanced (when the book kept track since: else all of
        them); all of them otherwise. ``advance``: the next snapshot's changes count from
        now. Records are cached and immutable, so this costs what changed (or one sort)."""
        self._refresh()
        unsaved, live_unsaved = self._unsaved, self._live_unsaved
        if advance:
            self._unsaved, self._live_unsaved = set(), set()
        entries, blob, encode = self._entries, self._record_blob, _snapshot_encoder.encode
        if not changed_only or unsaved is None or live_unsaved is None:
            rows: list[tuple[str, bytes | None]] = [
                (cid, blob(entries[cid])) for cid in sorted(entries)
            ]
            chunks = self._cols.live_chunks(None, CHUNK_BITS)
            live: list[tuple[str, bytes | None]] = [
                (str(k), encode(chunks[k])) for k in sorted(chunks)
            ]
            return {CONTRACTS: Table(ARRAY, True, rows), LIVE: Table(ARRAY, True, live)}
        rows = [(cid, None if (e := entries.get(cid)) is None else blob(e)) for cid in unsaved]
        chunks = self._cols.live_chunks(live_unsaved, CHUNK_BITS)
        live = [(str(k), encode(chunks[k]) if k in chunks else None) for k in sorted(live_unsaved)]
        return {CONTRACTS: Table(ARRAY, False, rows), LIVE: Table(ARRAY, False, live)}

    def track_rows(self) -> None:
        """Keep track of the records changed from now (a snapshot's rows were taken now)."""
        self._refresh()
        self._unsaved, self._live_unsaved = set(), set()

    def state_digest(self) -> bytes:
        """A 32-byte sha256 commitment to the same state as ``state_bytes``, far cheaper per
        block: each record is hashed once when it changes, into a bucketed Merkle tree keyed
        by contract id (``rfq.ledger.digest.BucketTree``), so any contract can be proven
        (``contract_proof``). Two books have equal digests exactly when their state bytes
        are equal (barring sha256 collisions).
        """
        return book_digest(self._tree_digest(), self._header_digest())

    def _tree_digest(self) -> bytes:
        self._refresh()
        return self._tree.digest()

    def _header_digest(self) -> bytes:
        """The hash of everything but the contracts' tree: the small fields and the live
        table (call after ``_refresh``)."""
        return book_header(self._rest_digest(), self._live.digest())

    def _rest_digest(self) -> bytes:
        """The hash of the book's small fields (call after ``_refresh``)."""
        if self._seen_digest is None:
            self._seen_digest = hashlib.sha256("\n".join(self._seen_sorted).encode()).digest()
        header = _DigestWire(
            version=SNAPSHOT_VERSION,
            height=self._height,
            date=self._date,
            mark_date=self.mark_date,
            next_ordinal=self._next_ordinal,
            fixings=tuple(self._series_blob[name] for name in sorted(self._hist)),
            seen=self._seen_digest,
        )
        return hashlib.sha256(_snapshot_encoder.encode(header)).digest()

    def contract_proof(
        self, contract_id: str
    ) -> tuple[bytes | None, BucketPath, bytes, LiveWitness | None]:
        """A contract's record as the tree holds it (None: no such contract), its path to
        the contracts' digest, the book header's hash (``state_digest`` follows from them)
        and, for a live contract, its chunk of the live table (``proven_record``)."""
        self._tree_digest()
        entry = self._entries.get(contract_id)
        record = None if entry is None else bytes(self._record_blob(entry))
        live = None
        if entry is not None and not entry.status.terminal:
            k = entry.ordinal >> CHUNK_BITS
            chunk = self._cols.live_chunks((k,), CHUNK_BITS)[k]
            live = LiveWitness(self._rest_digest(), str(k), chunk, self._live.path(str(k)))
        return record, self._tree.path(contract_id), self._header_digest(), live

    @classmethod
    def from_snapshot(
        cls,
        snap: BookSnapshot,
        records: tuple[msgspec.Raw, ...] | None = None,
        contracts: tuple[msgspec.Raw, ...] | None = None,
    ) -> ContractBook:
        """Rebuild a book that behaves exactly as the one the snapshot was taken from.

        ``records`` (and ``contracts``): each contract's record as the contracts' tree holds
        it (and its contract), as the snapshot's bytes hold them, in the snapshot's order
        (``from_rows``). They become the cached record bytes and digests as they are,
        instead of every record encoded and hashed again: equal to them exactly when the
        book's digest is the one they were taken with, which whoever restores checks against
        the stored state root. The live rows are packed from the records (``snap`` holds
        whole records).
        """
        if snap.version != SNAPSHOT_VERSION:
            raise ValidationError(f"unknown snapshot version {snap.version}", where="version")
        book = cls()
        book._height = snap.height
        book._date = snap.date
        book._next_ordinal = snap.next_ordinal
        book._seen = set(snap.seen)
        book._seen_sorted = sorted(snap.seen)
        for series in snap.fixings:
            idx = book._underlying(series.underlying)
            days = [d.toordinal() for d in series.dates]
            book._hist[series.underlying] = (days, list(series.prices))
            if days:
                book._px[idx] = series.prices[-1]
                book._last[idx] = days[-1]
        book._mark_ord = NO_DATE if snap.mark_date is None else snap.mark_date.toordinal()
        book._parties.load(
            (rec.contract.id, (rec.contract.client, rec.contract.dealer), not rec.status.terminal)
            for rec in snap.contracts
        )
        entries, underlying = book._entries, book._underlying
        live: list[
            tuple[Contract, list[int], float, float, int, int, int, bool, bool, tuple[int, ...]]
        ] = []
        order = sorted(range(len(snap.contracts)), key=lambda k: snap.contracts[k].ordinal)
        for k in order:
            rec = snap.contracts[k]
            c = rec.contract
            entry = _Entry(c, rec.ordinal, None if contracts is None else contracts[k])
            entry.changed = book._height
            entry.status = rec.status if rec.status.terminal else Status.LIVE
            entry.defaulting_party = rec.defaulting_party
            entry.seqs = dict(rec.sequences)
            entry.outcome = rec.outcome
            entry.ratings = rec.ratings
            avg_last = NO_DATE if rec.avg_last is None else rec.avg_last.toordinal()
            if c.id in entries:
                raise ValidationError(f"contract {c.id} appears twice", where="contracts")
            entries[c.id] = entry
            if rec.status.terminal:
                entry.vm, entry.avg_sum, entry.avg_count = (
                    from_micros(rec.vm_balance),
                    rec.avg_sum,
                    rec.avg_count,
                )
                entry.avg_last = avg_last
                if rec.outcome is not None:
                    price = rec.outcome.settlement_price
                    entry.mark = math.nan if price is None else price
                    entry.mtm = rec.outcome.client_value
                continue
            book._hot.add(c.id)
            calls = entry.seqs.pop(_CALLS, 0)  # a live contract's is its row's
            row = (
                rec.ordinal,
                LIVE_STATUSES.index(rec.status),
                *_call_row(rec.margin_call, calls, c),
            )
            call = rec.margin_call if rec.status == Status.MARGIN_CALL else None
            live.append(
                (
                    c,
                    [underlying(leg.underlying) for leg in c.terms.legs],
                    from_micros(rec.vm_balance),
                    rec.avg_sum,
                    rec.avg_count,
                    avg_last,
                    call.due.toordinal() if call is not None else NO_DATE,
                    call is not None and call.short,
                    rec.status == Status.IN_DEFAULT,
                    row,
                )
            )
        book._cols.push_many(live)
        if book._mark_ord != NO_DATE:
            book._cols.revalue(book._px, book._mark_ord)
        ids = [rec.contract.id for rec in snap.contracts]
        if ids != sorted(ids):
            raise ValidationError("contracts are not in id order", where="contracts")
        if records is not None:
            sha256, prefix = hashlib.sha256, VALUE_PREFIX
            digests = [sha256(prefix + raw).digest() for raw in records]
            for cid, raw, digest in zip(ids, records, digests, strict=True):
                entry = entries[cid]
                entry.blob, entry.digest = raw, digest
            book._tree.update(zip(ids, digests, strict=True))
        else:
            book._new_ids = list(entries)
        return book

    @classmethod
    def from_rows(cls, header: bytes, contracts: bytes, live: bytes) -> ContractBook:
        """The book from a snapshot's book part (``header_bytes``), its table of records (a
        msgpack array of them as the tree holds them, in id order) and its live table (a
        msgpack array of chunks); raises msgspec errors or ``ValidationError`` on bad bytes,
        a live record without its row or a row of no live record among them."""
        rows: dict[int, tuple[Any, ...]] = {}
        for chunk in _chunks_decoder.decode(live):
            if len(chunk) < LIVE_ROW.itemsize:
                raise ValidationError("an empty live chunk", where=LIVE)
            first = int(np.frombuffer(chunk, dtype=LIVE_ROW, count=1)["ordinal"][0])
            rows.update(chunk_rows(chunk_key(first), chunk))
        records = list(_records_decoder.decode(contracts))
        for k, rec in enumerate(records):
            if not rec.status.terminal:
                row = rows.pop(rec.ordinal, None)
                if row is None:
                    raise ValidationError(f"live contract {rec.contract.id} has no row", where=LIVE)
                records[k] = _with_row(rec, row)
        if rows:
            raise ValidationError(f"{len(rows)} live rows of no live contract", where=LIVE)
        snap = msgspec.structs.replace(_snapshot_decoder.decode(header), contracts=tuple(records))
        raws = _raw_records_decoder.decode(contracts)
        heads = tuple(h.contract for h in _record_heads_decoder.decode(contracts))
        return cls.from_snapshot(snap, raws, heads)

    @classmethod
    def from_state_bytes(cls, data: bytes) -> ContractBook:
        """The book from its ``state_bytes`` (whole records: each is encoded again for the
        tree)."""
        snap = _snapshot_decoder.decode(data)
        heads = _head_book_decoder.decode(data).contracts
        return cls.from_snapshot(snap, None, tuple(head.contract for head in heads))
