"""Incrementally hashed maps for the state root.

A ``DigestMap`` keeps, besides its items, the sum modulo 2**256 of SHA-256(name, key, value)
over its entries (a multiset hash): setting or deleting an entry adjusts the sum, so the state
root costs what changed in a block, not the size of the state. Order-independent and
deterministic. The known weakness of additive multiset hashes (an adversary choosing many
entries can search for a collision, Wagner's generalised birthday attack) needs control over
entry contents at a scale the ledger's validation rules do not give; the block's transactions
are also committed by a Merkle root, and ``rfq.ledger.state`` keeps a full re-hash for audit.

Values are stored in their canonical form, as they decode from the wire: msgspec encodes a
Python ``int`` in a ``float`` field as an integer, so a value built with ``0`` and the same
value restored from a snapshot (``0.0``) would hash differently. ``__setitem__`` round-trips
every value through the map's typed decoder, so a live node and one restored from a snapshot
always hold, hash and later derive from the same values.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Any, Generic, TypeVar

import msgspec

V = TypeVar("V")

_MOD = 1 << 256
_encoder = msgspec.msgpack.Encoder()


def entry_hash(name: bytes, key: str, value: object) -> int:
    data = name + b"\x00" + key.encode() + b"\x00" + _encoder.encode(value)
    return int.from_bytes(hashlib.sha256(data).digest(), "big")


class DigestMap(Generic[V]):
    """A dict of msgspec-encodable values of one type with a running digest."""

    def __init__(self, name: str, value_type: Any) -> None:
        self.name = name.encode()
        self.value_type = value_type
        # str and int values are canonical as they are; anything else is round-tripped.
        self._decoder = None if value_type in (str, int) else msgspec.msgpack.Decoder(value_type)
        self._items: dict[str, V] = {}
        self._hashes: dict[str, int] = {}
        self._sum = 0
        self.journal: list[tuple[str, bool, V | None]] | None = None
        """While a transaction runs: (key, existed, old value) per write, for ``undo``."""

    def _record(self, key: str) -> None:
        if self.journal is not None:
            self.journal.append((key, key in self._items, self._items.get(key)))

    def undo(self) -> None:
        """Put back every entry the journal recorded (a refused transaction changes nothing)."""
        entries, self.journal = self.journal or [], None
        for key, existed, old in reversed(entries):
            if existed:
                self[key] = old  # type: ignore[assignment]
            elif key in self._items:
                del self[key]

    def __getitem__(self, key: str) -> V:
        return self._items[key]

    def get(self, key: str) -> V | None:
        return self._items.get(key)

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def items(self) -> Iterator[tuple[str, V]]:
        return iter(self._items.items())

    def values(self) -> Iterator[V]:
        return iter(self._items.values())

    def __setitem__(self, key: str, value: V) -> None:
        self._record(key)
        if self._decoder is not None:
            value = self._decoder.decode(_encoder.encode(value))
        new = entry_hash(self.name, key, value)
        old = self._hashes.get(key, 0)
        self._sum = (self._sum - old + new) % _MOD
        self._hashes[key] = new
        self._items[key] = value

    def __delitem__(self, key: str) -> None:
        self._record(key)
        old = self._hashes.pop(key)
        del self._items[key]
        self._sum = (self._sum - old) % _MOD

    def digest(self) -> bytes:
        return hashlib.sha256(self.name + self._sum.to_bytes(32, "big")).digest()

    def full_digest(self) -> bytes:
        """The same digest recomputed from every entry (audit: must equal ``digest()``)."""
        total = sum(entry_hash(self.name, k, v) for k, v in self._items.items()) % _MOD
        return hashlib.sha256(self.name + total.to_bytes(32, "big")).digest()

    def to_dict(self) -> dict[str, V]:
        return dict(self._items)

    def load(self, items: dict[str, V]) -> None:
        for key, value in items.items():
            self[key] = value

    def encode(self) -> bytes:
        """The entries as bytes, sorted by key (``decode_into`` reads them back)."""
        return _encoder.encode(dict(sorted(self._items.items())))

    def decode_into(self, data: bytes) -> None:
        """Load entries encoded by ``encode``; raises msgspec errors on bad bytes."""
        items = msgspec.msgpack.decode(data, type=dict[str, self.value_type])  # type: ignore[name-defined]
        self.load(items)
