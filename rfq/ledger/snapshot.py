"""A snapshot as rows, so that a node writes what changed since its last one, not the state.

A snapshot is a small ``Frame`` (height, timestamp, the small parts' encodings, and the
names of its tables) and tables of rows keyed by a string: each map of the ledger (a row an
entry) and the contract book's contracts (a row a record). ``LedgerState.snapshot_rows``
gives either every row (``base`` None) or only the rows changed since the snapshot at
``base`` (a deleted key as ``None``), and the store keeps the rows of its newest snapshot
(``peers.authority.store``): a snapshot costs what changed since the last one, whatever the
size of the state.

``assemble`` makes the one byte string ``LedgerState.restore`` reads from a frame and each
table's entries in key order: a table is stored as the concatenation of its entries under a
msgpack container header (a map's entry is its key's encoding then its value's; a book
table's is one array element), so assembling copies bytes and encodes nothing. Pure: the
same rows give the same bytes everywhere.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

import msgspec

from rfq.errors import DECODE_ERRORS, ValidationError

SNAPSHOT_VERSION = 3
"""3: a frame and tables of rows (2 was one msgpack struct of everything)."""

MAP: Literal["map"] = "map"
ARRAY: Literal["array"] = "array"
TableKind = Literal["map", "array"]


class Frame(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """What a snapshot holds besides its tables."""

    version: int
    height: int
    timestamp_ms: int
    parts: dict[str, msgspec.Raw]
    """Each small part's encoding, by the state's attribute (``gov``, the book's header)."""
    tables: dict[str, TableKind]
    """Each table's name and how its entries are framed."""


class Snapshot(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A whole snapshot in one value: the frame and each table assembled."""

    frame: msgspec.Raw
    tables: dict[str, bytes]


@dataclass
class Table:
    """A table's rows: all of them in key order (``full``), or those changed since the base
    snapshot, a deleted key's entry ``None``."""

    kind: TableKind
    full: bool
    rows: list[tuple[str, bytes | None]] = field(default_factory=list)


@dataclass
class SnapshotRows:
    """A snapshot at ``height`` as rows: every row when ``base`` is None, else the rows that
    change the snapshot at ``base`` into this one (each table then has ``full`` False)."""

    height: int
    base: int | None
    frame: bytes
    tables: dict[str, Table]

    @property
    def row_count(self) -> int:
        return sum(len(t.rows) for t in self.tables.values())


_frame_decoder = msgspec.msgpack.Decoder(Frame)
_snapshot_decoder = msgspec.msgpack.Decoder(Snapshot)
_encoder = msgspec.msgpack.Encoder()


def container(kind: TableKind, entries: list[bytes]) -> bytes:
    """The msgpack map (``MAP``) or array (``ARRAY``) of ``entries`` (already encoded)."""
    count = len(entries)
    if kind == MAP:
        small, head16, head32 = 0x80, b"\xde", b"\xdf"
    else:
        small, head16, head32 = 0x90, b"\xdc", b"\xdd"
    if count < 16:
        header = bytes([small | count])
    elif count < 1 << 16:
        header = head16 + count.to_bytes(2, "big")
    else:
        header = head32 + count.to_bytes(4, "big")
    return header + b"".join(entries)


def frame_of(data: bytes) -> Frame:
    """The frame's contents; ``ValidationError`` when the bytes are not one."""
    try:
        frame = _frame_decoder.decode(data)
    except DECODE_ERRORS as exc:
        raise ValidationError(f"not a snapshot frame: {exc}", where="snapshot") from None
    if frame.version != SNAPSHOT_VERSION:
        raise ValidationError(
            f"snapshot version {frame.version}, not {SNAPSHOT_VERSION}", where="snapshot"
        )
    return frame


def assemble(frame: bytes, entries: Mapping[str, list[bytes]]) -> bytes:
    """The snapshot's bytes from its frame and each of its tables' entries in key order."""
    kinds = frame_of(frame).tables
    missing = set(kinds) - set(entries)
    if missing:
        raise ValidationError(f"tables missing: {', '.join(sorted(missing))}", where="snapshot")
    return _encoder.encode(
        Snapshot(
            msgspec.Raw(frame),
            {name: container(kind, entries[name]) for name, kind in kinds.items()},
        )
    )


def assemble_full(rows: SnapshotRows) -> bytes:
    """The snapshot's bytes from every row of it (``base`` None)."""
    if rows.base is not None:
        raise ValidationError(f"rows since {rows.base} are not a whole snapshot", where="snapshot")
    tables = {name: [e for _, e in t.rows if e is not None] for name, t in rows.tables.items()}
    return assemble(rows.frame, tables)


def disassemble(data: bytes) -> tuple[Frame, dict[str, bytes]]:
    """A snapshot's frame and assembled tables; ``ValidationError`` when it is not one."""
    try:
        snap = _snapshot_decoder.decode(data)
    except DECODE_ERRORS as exc:
        raise ValidationError(f"not a ledger snapshot: {exc}", where="snapshot") from None
    frame = frame_of(bytes(snap.frame))
    if set(snap.tables) != set(frame.tables):
        raise ValidationError("the tables are not the frame's", where="snapshot")
    return frame, snap.tables


class _StoredTable(msgspec.Struct, frozen=True, array_like=True):
    kind: TableKind
    full: bool
    keys: list[str]
    entries: list[bytes | None]


_stored_decoder = msgspec.msgpack.Decoder(dict[str, _StoredTable])


def encode_tables(tables: Mapping[str, Table]) -> bytes:
    """A snapshot's tables as one byte string (``decode_tables`` reads it back)."""
    return _encoder.encode(
        {
            name: _StoredTable(
                t.kind,
                t.full,
                [key for key, _ in t.rows],
                [None if entry is None else bytes(entry) for _, entry in t.rows],
            )
            for name, t in tables.items()
        }
    )


def decode_tables(data: bytes) -> dict[str, Table]:
    """``ValidationError`` when the bytes are not ``encode_tables``'."""
    try:
        stored = _stored_decoder.decode(data)
    except DECODE_ERRORS as exc:
        raise ValidationError(f"not snapshot rows: {exc}", where="snapshot") from None
    out = {}
    for name, t in stored.items():
        if len(t.keys) != len(t.entries):
            raise ValidationError(f"table {name}: keys and entries differ", where="snapshot")
        out[name] = Table(t.kind, t.full, list(zip(t.keys, t.entries, strict=True)))
    return out


def apply_rows(
    current: dict[str, dict[str, bytes]], tables: Mapping[str, Table]
) -> dict[str, dict[str, bytes]]:
    """``current`` (table -> key -> entry, the base's rows) changed by a snapshot's
    ``tables``: the rows of that snapshot (tables it does not name are dropped)."""
    out: dict[str, dict[str, bytes]] = {}
    for name, table in tables.items():
        merged = {} if table.full else dict(current.get(name, {}))
        for key, entry in table.rows:
            if entry is None:
                merged.pop(key, None)
            else:
                merged[key] = entry
        out[name] = merged
    return out


def sorted_entries(rows: Mapping[str, bytes]) -> list[bytes]:
    """A table's entries in key order (code point order: what the store's ``ORDER BY``
    gives, since SQLite compares text as UTF-8 bytes)."""
    return [rows[key] for key in sorted(rows)]


def map_entries(items: Iterable[tuple[str, object]]) -> list[tuple[str, bytes]]:
    """A map's rows: each key with its key's encoding followed by its value's."""
    encode = _encoder.encode
    return [(key, encode(key) + encode(value)) for key, value in items]
