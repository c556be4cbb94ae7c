"""Live contracts as numpy columns, so that one fixing tick revalues them all in a handful of
array operations.

One row per live contract, in the order contracts were opened (the book's ordinal), so any
records the vectorised pass produces come out in a deterministic order. Legs are a padded
(width x rows) matrix of underlying indexes and weights; index 0 is a sentinel priced 0.0
with weight 0.0, so a padded leg adds exactly +0.0. Terminated rows are flagged inactive and
dropped by ``compact`` (order-preserving) once they are half the table.

The arithmetic mirrors ``rfq.contracts.payoff`` operation for operation (elementwise float64
multiply/add/divide/max, no reductions), so a row's mark and value equal the scalar ones bit
for bit. Each row's payoff is its template's ``vector_payoff`` over the row's ``PayoffRow``
(fixed, strike, flag); templates sharing one function (every linear one) share one pass, and a
tick runs one pass per function in the table.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any

import numpy as np
import numpy.typing as npt

from rfq.contracts import payoff
from rfq.contracts.model import Contract
from rfq.contracts.templates import template_of
from rfq.contracts.templates.base import VectorPayoff
from rfq.money import MICROS

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
BOOL = npt.NDArray[np.bool_]
Rows = slice | npt.NDArray[np.intp]

NO_DATE = -1
# date(1970, 1, 1).toordinal(): ordinal -> datetime64[D] offset.
_EPOCH = 719163

_FLOATS = ("fixed", "strike", "sqm", "avg_sum", "avg_count", "vm", "threshold", "mta")
_FLOATS_NAN = ("mark", "mtm")
_INTS = (
    *("kind", "flag", "avg_start", "avg_end", "avg_last", "maturity", "deadline", "cure_days"),
    *("changed", "client", "dealer"),
)
_BOOLS = ("is_avg", "margined", "call_open", "call_short", "in_default", "active", "dirty")
ROW_FIELDS = (
    "ordinal",
    "row_status",
    *("row_calls", "row_call_held", "row_call_seq", "row_call_dealer_pays", "row_call_amount"),
    *("row_call_outstanding", "row_call_date", "row_call_height", "row_call_due"),
    "row_call_short",
)
"""The live row's fields that are columns of their own (``LIVE_ROW``), in ``push_many``'s
order: the book writes them where it changes the contract's status, margin call or count of
calls (``ContractBook._put_call``)."""
_ROW_BOOLS = ("row_call_held", "row_call_dealer_pays", "row_call_short")
_ROW_INTS = tuple(name for name in ROW_FIELDS if name not in _ROW_BOOLS)

LIVE_ROW = np.dtype(
    [
        ("ordinal", "<i8"),
        ("status", "u1"),
        ("vm", "<i8"),
        ("avg_sum", "<f8"),
        ("avg_count", "<i8"),
        ("avg_last", "<i8"),
        ("calls", "<i8"),
        ("held", "u1"),
        ("seq", "<i8"),
        ("dealer_pays", "u1"),
        ("amount", "<i8"),
        ("outstanding", "<i8"),
        ("date", "<i8"),
        ("height", "<i8"),
        ("due", "<i8"),
        ("short", "u1"),
    ]
)
"""A live contract's row of the book's live table, little-endian and packed (108 bytes):
what changes while it lives. ``status`` indexes ``rfq.contracts.book.LIVE_STATUSES``;
``vm`` is micros; ``avg_last`` and the call's dates are day ordinals (-1: none); the call's
fields (``held`` onwards) are 0 when it holds none; ``dealer_pays``: the call's payer is the
dealer (else the client)."""
_CALL_FIELDS = (
    ("seq", "row_call_seq"),
    ("dealer_pays", "row_call_dealer_pays"),
    ("amount", "row_call_amount"),
    ("outstanding", "row_call_outstanding"),
    ("date", "row_call_date"),
    ("height", "row_call_height"),
    ("due", "row_call_due"),
    ("short", "row_call_short"),
)


_COLUMNS = _FLOATS + _FLOATS_NAN + _INTS + _BOOLS + _ROW_INTS + _ROW_BOOLS
_PUSHED = (
    *("fixed", "strike", "flag", "kind", "sqm", "is_avg", "avg_start", "avg_end", "avg_sum"),
    *("avg_count", "avg_last", "maturity", "vm", "margined", "threshold", "mta", "cure_days"),
    *("call_open", "call_short", "deadline", "in_default"),
    *ROW_FIELDS,
    *("client", "dealer"),
)
"""The columns ``LiveColumns.push_many`` gathers per row, in its order (the rest are set
alike for every row)."""


class _ColumnsJournal:
    """The table's size as it was, and rows (or, once a pass writes every row, all of them)
    before their first write since ``LiveColumns.checkpoint``."""

    def __init__(self, cols: LiveColumns) -> None:
        self.n, self.inactive, self.width = cols.n, cols.inactive, cols.width
        self.kinds = cols.kinds  # replaced, never changed in place
        self.rows: dict[int, tuple[tuple[Any, ...], I64, F64]] = {}
        self.batches: list[tuple[npt.NDArray[np.intp], dict[str, Any], I64, F64]] = []
        """Rows kept together (``save_rows``): their slots, each column's values, legs."""
        self.saved = np.zeros(self.n, dtype=np.bool_)
        """The rows kept, one way or the other (each is kept once)."""
        self.full: tuple[dict[str, Any], I64, F64, list[str]] | None = None


def _as_dt64(ordinals: I64) -> npt.NDArray[np.datetime64]:
    return (ordinals - _EPOCH).astype("datetime64[D]")


_PAYOFFS: list[VectorPayoff] = []
"""Every distinct vectorised payoff seen, by ``kind`` code (process-wide, append-only)."""


def _payoff_kind(function: VectorPayoff) -> int:
    for code, known in enumerate(_PAYOFFS):
        if known is function:
            return code
    _PAYOFFS.append(function)
    return len(_PAYOFFS) - 1


class LiveColumns:
    """Column store of the live contracts; the book owns it and keeps it in step."""

    fixed: F64
    strike: F64
    sqm: F64
    avg_sum: F64
    avg_count: F64
    vm: F64
    threshold: F64
    mta: F64
    mark: F64
    mtm: F64
    kind: I64  # the row's vectorised payoff (``_PAYOFFS``)
    flag: I64  # the template's own flag (call or put...)
    avg_start: I64
    avg_end: I64
    avg_last: I64
    maturity: I64
    deadline: I64  # an open margin call's due date (ordinal)
    cure_days: I64
    changed: I64  # the height the tick last changed the row at (-1: never; ``changed_since``)
    client: I64  # the parties, as indexes of ``parties`` (to group calls by pair)
    dealer: I64
    is_avg: BOOL
    margined: BOOL
    call_open: BOOL
    call_short: BOOL  # the open call's payer was reported short (``MarginCall.short``)
    in_default: BOOL
    active: BOOL
    dirty: BOOL
    ordinal: I64  # the contract's ordinal: ascending with the slot
    row_status: I64
    row_calls: I64
    row_call_seq: I64
    row_call_amount: I64
    row_call_outstanding: I64
    row_call_date: I64
    row_call_height: I64
    row_call_due: I64
    row_call_held: BOOL
    row_call_dealer_pays: BOOL
    row_call_short: BOOL
    leg_u: I64
    leg_w: F64

    def __init__(self, capacity: int = 1024) -> None:
        self.n = 0
        self.width = 1
        self.ids: list[str] = []
        self.slot: dict[str, int] = {}
        self.inactive = 0
        self.kinds: list[int] = []  # payoff kinds pushed so far, ascending
        self.parties: list[str] = []
        """Every party of a row pushed so far (derived: a restored table numbers its own)."""
        self._party: dict[str, int] = {}
        self._journal: _ColumnsJournal | None = None
        self._alloc(max(capacity, 16))

    # ----------------------------------------------------------------------------------------
    # journal (``ContractBook.checkpoint``): rows as they were before their first write

    def checkpoint(self) -> None:
        self._journal = _ColumnsJournal(self)

    def release(self) -> None:
        self._journal = None

    def save_row(self, slot: int) -> None:
        """Keep row ``slot`` as it is now, before it is written (once per journal)."""
        journal = self._journal
        if journal is None or journal.full is not None or slot >= journal.n:
            return
        if not journal.saved[slot]:
            journal.saved[slot] = True
            journal.rows[slot] = (
                tuple(getattr(self, name)[slot].item() for name in _COLUMNS),
                self.leg_u[:, slot].copy(),
                self.leg_w[:, slot].copy(),
            )

    def save_rows(self, slots: npt.NDArray[np.intp]) -> None:
        """``save_row`` of each of ``slots``, in a few array operations."""
        journal = self._journal
        if journal is None or journal.full is not None:
            return
        slots = slots[slots < journal.n]
        new = np.unique(slots[~journal.saved[slots]])
        if new.size == 0:
            return
        journal.saved[new] = True
        journal.batches.append(
            (
                new,
                {name: getattr(self, name)[new].copy() for name in _COLUMNS},
                self.leg_u[:, new].copy(),
                self.leg_w[:, new].copy(),
            )
        )

    def save_all(self) -> None:
        """Keep every row as it is now (before a pass that writes them all)."""
        journal = self._journal
        if journal is None or journal.full is not None:
            return
        n = journal.n
        journal.full = (
            {name: getattr(self, name)[:n].copy() for name in _COLUMNS},
            self.leg_u[:, :n].copy(),
            self.leg_w[:, :n].copy(),
            self.ids[:n],
        )

    def rollback(self) -> None:
        journal = self._journal
        if journal is None:
            return
        self._journal = None
        n = journal.n
        if journal.full is not None:
            arrays, leg_u, leg_w, ids = journal.full
            for name, array in arrays.items():
                getattr(self, name)[:n] = array
            self.leg_u[: leg_u.shape[0], :n] = leg_u
            self.leg_w[: leg_w.shape[0], :n] = leg_w
            self.ids = ids
            self.slot = {cid: k for k, cid in enumerate(ids)}
        else:
            for cid in self.ids[n:]:
                del self.slot[cid]
            del self.ids[n:]
        for slots, arrays, leg_u_rows, leg_w_rows in journal.batches:
            for name, values in arrays.items():
                getattr(self, name)[slots] = values
            self.leg_u[: leg_u_rows.shape[0], slots] = leg_u_rows
            self.leg_w[: leg_w_rows.shape[0], slots] = leg_w_rows
        for slot, (values, leg_u_row, leg_w_row) in journal.rows.items():
            for name, value in zip(_COLUMNS, values, strict=True):
                getattr(self, name)[slot] = value
            self.leg_u[: leg_u_row.shape[0], slot] = leg_u_row
            self.leg_w[: leg_w_row.shape[0], slot] = leg_w_row
        if self.width != journal.width:
            self.leg_u, self.leg_w = (
                self.leg_u[: journal.width].copy(),
                self.leg_w[: journal.width].copy(),
            )
            self.width = journal.width
        self.n, self.inactive, self.kinds = n, journal.inactive, journal.kinds

    # ----------------------------------------------------------------------------------------
    # storage

    def _alloc(self, cap: int) -> None:
        for name in _FLOATS:
            setattr(self, name, np.zeros(cap, dtype=np.float64))
        for name in _FLOATS_NAN:
            setattr(self, name, np.full(cap, np.nan, dtype=np.float64))
        for name in _INTS:
            setattr(self, name, np.full(cap, NO_DATE, dtype=np.int64))
        for name in _ROW_INTS:
            setattr(self, name, np.zeros(cap, dtype=np.int64))
        for name in _BOOLS + _ROW_BOOLS:
            setattr(self, name, np.zeros(cap, dtype=np.bool_))
        self.leg_u = np.zeros((self.width, cap), dtype=np.int64)
        self.leg_w = np.zeros((self.width, cap), dtype=np.float64)
        self.cap = cap

    def _resize(self, cap: int, width: int) -> None:
        n = self.n
        old: dict[str, Any] = {name: getattr(self, name) for name in _COLUMNS}
        old_u, old_w, old_width = self.leg_u, self.leg_w, self.width
        self.width = width
        self._alloc(cap)
        for name, array in old.items():
            getattr(self, name)[:n] = array[:n]
        self.leg_u[:old_width, :n] = old_u[:, :n]
        self.leg_w[:old_width, :n] = old_w[:, :n]

    def party(self, name: str) -> int:
        """``name``'s index in ``parties``."""
        code = self._party.get(name)
        if code is None:
            code = self._party[name] = len(self.parties)
            self.parties.append(name)
        return code

    def push(
        self,
        contract: Contract,
        leg_index: list[int],
        *,
        ordinal: int,
        vm: float = 0.0,
        avg_sum: float = 0.0,
        avg_count: int = 0,
        avg_last: int = NO_DATE,
        call_open: bool = False,
        call_short: bool = False,
        deadline: int = NO_DATE,
        in_default: bool = False,
    ) -> int:
        """Append a row for a live contract and return its slot."""
        width = max(self.width, len(leg_index))
        if self.n == self.cap or width != self.width:
            self._resize(self.cap * 2 if self.n == self.cap else self.cap, width)
        i = self.n
        terms = contract.terms
        template = template_of(terms)
        row = template.payoff_row(contract)
        self.fixed[i] = row.fixed
        self.strike[i] = row.strike
        self.flag[i] = row.flag
        kind = _payoff_kind(template.vector_payoff)
        if kind not in self.kinds:
            self.kinds = sorted([*self.kinds, kind])
        self.kind[i] = kind
        self.sqm[i] = payoff.signed_size(contract)
        self.is_avg[i] = template.averaging
        if terms.averaging is not None:
            self.avg_start[i] = terms.averaging.start.toordinal()
            self.avg_end[i] = terms.averaging.end.toordinal()
        else:
            self.avg_start[i] = NO_DATE
            self.avg_end[i] = NO_DATE
        self.avg_sum[i] = avg_sum
        self.avg_count[i] = avg_count
        self.avg_last[i] = avg_last
        self.maturity[i] = terms.maturity.toordinal()
        self.vm[i] = vm
        margin = contract.margin
        self.margined[i] = margin is not None
        self.threshold[i] = margin.threshold if margin is not None else 0.0
        self.mta[i] = margin.minimum_transfer_amount if margin is not None else 0.0
        self.cure_days[i] = margin.cure_days if margin is not None else 0
        self.call_open[i] = call_open
        self.call_short[i] = call_short
        self.deadline[i] = deadline
        self.in_default[i] = in_default
        for name in ROW_FIELDS:
            getattr(self, name)[i] = 0  # live, no call made yet
        self.ordinal[i] = ordinal
        self.changed[i] = NO_DATE
        self.client[i] = self.party(contract.client)
        self.dealer[i] = self.party(contract.dealer)
        self.active[i] = True
        self.dirty[i] = False
        self.mark[i] = np.nan
        self.mtm[i] = np.nan
        self.leg_u[:, i] = 0
        self.leg_w[:, i] = 0.0
        for k, (u, leg) in enumerate(zip(leg_index, terms.legs, strict=True)):
            self.leg_u[k, i] = u
            self.leg_w[k, i] = leg.weight
        self.ids.append(contract.id)
        self.slot[contract.id] = i
        self.n += 1
        return i

    def push_many(
        self,
        rows: list[
            tuple[Contract, list[int], float, float, int, int, int, bool, bool, tuple[int, ...]]
        ],
    ) -> None:
        """Append rows as ``push`` would one at a time (a restore's live contracts, in
        ordinal order), each ``(contract, leg_index, vm, avg_sum, avg_count, avg_last,
        deadline, call_short, in_default, row)``, a call open where ``deadline`` is a date
        and ``row`` the values of ``ROW_FIELDS``: the Python values are gathered first and
        each column written once."""
        if not rows:
            return
        start, count = self.n, len(rows)
        width = max(self.width, max(len(r[1]) for r in rows))
        cap = self.cap
        while cap < start + count:
            cap *= 2
        if cap != self.cap or width != self.width:
            self._resize(cap, width)
        gathered: list[tuple[Any, ...]] = []
        legs_u = np.zeros((self.width, count), dtype=np.int64)
        legs_w = np.zeros((self.width, count), dtype=np.float64)
        kinds = set(self.kinds)
        ids, slots = self.ids, self.slot
        for i, (
            contract,
            leg_index,
            vm,
            avg_sum,
            avg_count,
            avg_last,
            deadline,
            short,
            in_default,
            live_row,
        ) in enumerate(rows):
            terms = contract.terms
            template = template_of(terms)
            row = template.payoff_row(contract)
            kind = _payoff_kind(template.vector_payoff)
            kinds.add(kind)
            averaging, margin = terms.averaging, contract.margin
            gathered.append(
                (
                    row.fixed,
                    row.strike,
                    row.flag,
                    kind,
                    payoff.signed_size(contract),
                    template.averaging,
                    NO_DATE if averaging is None else averaging.start.toordinal(),
                    NO_DATE if averaging is None else averaging.end.toordinal(),
                    avg_sum,
                    avg_count,
                    avg_last,
                    terms.maturity.toordinal(),
                    vm,
                    margin is not None,
                    0.0 if margin is None else margin.threshold,
                    0.0 if margin is None else margin.minimum_transfer_amount,
                    0 if margin is None else margin.cure_days,
                    deadline != NO_DATE,
                    short,
                    deadline,
                    in_default,
                    *live_row,
                    self.party(contract.client),
                    self.party(contract.dealer),
                )
            )
            for k, (u, leg) in enumerate(zip(leg_index, terms.legs, strict=True)):
                legs_u[k, i] = u
                legs_w[k, i] = leg.weight
            ids.append(contract.id)
            slots[contract.id] = start + i
        stop = start + count
        for name, values in zip(_PUSHED, zip(*gathered, strict=True), strict=True):
            column = getattr(self, name)
            column[start:stop] = np.array(values, dtype=column.dtype)
        self.active[start:stop] = True
        self.changed[start:stop] = NO_DATE
        self.dirty[start:stop] = False
        self.mark[start:stop] = np.nan
        self.mtm[start:stop] = np.nan
        self.leg_u[:, start:stop] = legs_u
        self.leg_w[:, start:stop] = legs_w
        self.kinds = sorted(kinds)
        self.n = stop

    def live_chunks(self, chunks: Iterable[int] | None, bits: int) -> dict[int, bytes]:
        """The live table's chunks (all of them for None): chunk ``k`` holds the ``LIVE_ROW``
        of every active row whose ordinal is ``k << bits`` or more and under ``k + 1 <<
        bits``, in ordinal order; a chunk with none is left out. Rows are packed with a few
        array operations whatever their number, and a chunk is a slice of the packed bytes."""
        n = self.n
        ordinals = self.ordinal[:n]
        if chunks is None:
            slots = np.flatnonzero(self.active[:n])
        else:
            wanted = np.array(sorted(set(chunks)), dtype=np.int64)
            bounds = np.searchsorted(ordinals, np.stack([wanted << bits, (wanted + 1) << bits]))
            parts = [np.arange(lo, hi) for lo, hi in bounds.T.tolist() if hi > lo]
            slots = np.concatenate(parts) if parts else np.zeros(0, dtype=np.intp)
            slots = slots[self.active[slots]]
        if slots.size == 0:
            return {}
        rows = np.zeros(slots.size, dtype=LIVE_ROW)
        rows["ordinal"] = ordinals[slots]
        rows["status"] = self.row_status[slots]
        rows["vm"] = np.rint(self.vm[slots] * MICROS)  # = money.to_micros, half to even
        rows["avg_sum"] = self.avg_sum[slots]
        rows["avg_count"] = self.avg_count[slots]
        rows["avg_last"] = self.avg_last[slots]
        rows["calls"] = self.row_calls[slots]
        held = self.row_call_held[slots]
        rows["held"] = held
        for field, name in _CALL_FIELDS:
            rows[field] = np.where(held, getattr(self, name)[slots], 0)
        packed = rows.tobytes()
        keys = rows["ordinal"] >> bits
        starts = np.flatnonzero(np.diff(keys, prepend=-1)).tolist()
        size = LIVE_ROW.itemsize
        ends = [*starts[1:], slots.size]
        return {
            int(keys[a]): packed[a * size : b * size] for a, b in zip(starts, ends, strict=True)
        }

    def deactivate(self, slot: int) -> None:
        self.save_row(slot)
        self.active[slot] = False
        self.call_open[slot] = False
        self.call_short[slot] = False
        self.inactive += 1

    def compact(self) -> bool:
        """Drop inactive rows (keeping order) once they are at least half the table."""
        if self.inactive == 0 or self.inactive * 2 < self.n:
            return False
        self.save_all()
        n = self.n
        keep = np.flatnonzero(self.active[:n])
        for name in _COLUMNS:
            array = getattr(self, name)
            array[: keep.size] = array[keep]
        self.leg_u[:, : keep.size] = self.leg_u[:, keep]
        self.leg_w[:, : keep.size] = self.leg_w[:, keep]
        self.ids = [self.ids[k] for k in keep.tolist()]
        self.slot = {cid: k for k, cid in enumerate(self.ids)}
        self.n = int(keep.size)
        self.inactive = 0
        return True

    # ----------------------------------------------------------------------------------------
    # vectorised revaluation (mirrors rfq.contracts.payoff)

    def _sel(self, rows: Rows | None) -> Rows:
        return slice(0, self.n) if rows is None else rows

    def levels(self, px: F64, rows: Rows | None = None) -> F64:
        """Weighted sum of leg prices for every row (or the given rows), in leg order."""
        sel = self._sel(rows)
        acc: F64 = self.leg_w[0, sel] * px[self.leg_u[0, sel]]
        for k in range(1, self.width):
            acc = acc + self.leg_w[k, sel] * px[self.leg_u[k, sel]]
        return acc

    def accumulate(self, levels: F64, fixed_on: BOOL, day: int) -> npt.NDArray[np.intp]:
        """Add ``day``'s level to the running sums of the active average-price swaps whose
        window holds ``day`` and whose legs all fixed on it (at most once per day); flag and
        return the rows that changed."""
        n = self.n
        rows = np.flatnonzero(
            self.is_avg[:n]
            & self.active[:n]
            & (self.avg_start[:n] <= day)
            & (self.avg_end[:n] >= day)
            & (self.avg_last[:n] < day)
        )
        if rows.size == 0:
            return rows
        legs_fixed = np.ones(rows.size, dtype=np.bool_)
        for k in range(self.width):
            legs_fixed &= fixed_on[self.leg_u[k, rows]]
        rows = rows[legs_fixed]
        self.avg_sum[rows] = self.avg_sum[rows] + levels[rows]
        self.avg_count[rows] = self.avg_count[rows] + 1.0
        self.avg_last[rows] = day
        self.dirty[rows] = True
        return rows

    def marks(self, levels: F64, as_of: int, rows: Rows | None = None) -> F64:
        """Settlement-price estimates: the level, or for average-price swaps the mean so far
        with the level standing in for the window's remaining weekdays."""
        sel = self._sel(rows)
        mark = levels.copy()
        local = np.flatnonzero(self.is_avg[sel])
        if local.size:
            glob = local if isinstance(sel, slice) else sel[local]
            begin = np.maximum(as_of + 1, self.avg_start[glob])
            stop = self.avg_end[glob] + 1
            remaining = np.maximum(np.busday_count(_as_dt64(begin), _as_dt64(stop)), 0).astype(
                np.float64
            )
            lv = levels[local]
            den = self.avg_count[glob] + remaining
            with np.errstate(divide="ignore", invalid="ignore"):
                est = (self.avg_sum[glob] + lv * remaining) / den
            mark[local] = np.where(den == 0.0, lv, est)
        return mark

    def values(self, mark: F64, rows: Rows | None = None) -> F64:
        """Value to the client of every row (or the given rows) at these marks."""
        sel = self._sel(rows)
        fixed, strike, flag = self.fixed[sel], self.strike[sel], self.flag[sel]
        unit: F64 | None = None
        for code in self.kinds:
            part = _PAYOFFS[code](mark, fixed, strike, flag)
            unit = part if unit is None else np.where(self.kind[sel] == code, part, unit)
        if unit is None:
            unit = np.zeros_like(mark)
        out: F64 = unit * self.sqm[sel]
        return out

    def revalue(self, px: F64, as_of: int, rows: Rows | None = None) -> None:
        """Recompute marks and values of every row (or the given rows); nothing else."""
        if self.n == 0:
            return
        sel = self._sel(rows)
        mark = self.marks(self.levels(px, rows), as_of, rows)
        self.mark[sel] = mark
        self.mtm[sel] = self.values(mark, rows)

    def margin_deltas(self) -> tuple[npt.NDArray[np.intp], F64]:
        """Rows that need a variation-margin call now, and the signed transfer (positive:
        dealer to client), per ``payoff.variation_target`` and the minimum transfer amount."""
        n = self.n
        mtm = self.mtm[:n]
        excess = np.maximum(np.abs(mtm) - self.threshold[:n], 0.0)
        target = np.where(mtm > 0, excess, -excess)
        delta = target - self.vm[:n]
        with np.errstate(invalid="ignore"):
            need = (
                self.active[:n]
                & self.margined[:n]
                & ~self.call_open[:n]
                & ~self.in_default[:n]
                & np.isfinite(delta)
                & (np.abs(delta) >= np.maximum(self.mta[:n], 1.0 / MICROS))
            )
        rows = np.flatnonzero(need)
        return rows, delta[rows]

    def due(self, day: int) -> npt.NDArray[np.intp]:
        """Active rows, not in default, whose maturity is on or before ``day``."""
        n = self.n
        return np.flatnonzero(self.active[:n] & ~self.in_default[:n] & (self.maturity[:n] <= day))

    def overdue(self, day: int) -> npt.NDArray[np.intp]:
        """Active rows whose open margin call was due before ``day`` (a date ordinal) and
        whose payer was reported short (the others wait: no pass over them per block)."""
        n = self.n
        return np.flatnonzero(
            self.active[:n] & self.call_open[:n] & self.call_short[:n] & (self.deadline[:n] < day)
        )


def ordinal(day: dt.date | None) -> int:
    return NO_DATE if day is None else day.toordinal()
