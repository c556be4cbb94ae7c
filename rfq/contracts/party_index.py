"""Each party's contract ids, sorted, and which of them are still open: what a page of a
party's contracts reads, so that a page costs its size, not the party's whole book.

The book keeps one ``PartyIndex`` next to its entries (derived, not part of the state root):
``add`` when a contract opens, ``close`` when it ends, ``reopen`` / ``remove`` when a block is
rolled back (or a contract leaves the hot state). Every contract is also under ``EVERYONE``
(the regulator's view of all of them). Lists are kept sorted by id with ``bisect``: contract
ids mostly arrive in order, so an insert is an append or a short move.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence
from typing import Final

EVERYONE: Final = ""
"""The key under which every contract is indexed (no member id is empty)."""

_NONE: Final[tuple[str, ...]] = ()


def _insert(lists: dict[str, list[str]], key: str, cid: str) -> None:
    ids = lists.setdefault(key, [])
    if not ids or ids[-1] < cid:
        ids.append(cid)
        return
    k = bisect.bisect_left(ids, cid)
    if k == len(ids) or ids[k] != cid:
        ids.insert(k, cid)


def _delete(lists: dict[str, list[str]], key: str, cid: str) -> None:
    ids = lists.get(key)
    if ids is None:
        return
    k = bisect.bisect_left(ids, cid)
    if k < len(ids) and ids[k] == cid:
        del ids[k]
        if not ids:
            del lists[key]


class PartyIndex:
    """Contract ids by party (client or dealer), sorted: all of them, and the open ones."""

    __slots__ = ("_all", "_open")

    def __init__(self) -> None:
        self._all: dict[str, list[str]] = {}
        self._open: dict[str, list[str]] = {}

    @staticmethod
    def _keys(parties: Iterable[str]) -> tuple[str, ...]:
        return (EVERYONE, *dict.fromkeys(parties))

    def add(self, cid: str, parties: Iterable[str], *, open_: bool = True) -> None:
        """A contract joins the book (open unless ``open_`` is False: restored ended)."""
        for key in self._keys(parties):
            _insert(self._all, key, cid)
            if open_:
                _insert(self._open, key, cid)

    def load(self, contracts: Iterable[tuple[str, tuple[str, str], bool]]) -> None:
        """Add many at once (a restore): ``(id, parties, open)`` each, sorted once at the end
        rather than an insert each."""
        for cid, parties, open_ in contracts:
            for key in self._keys(parties):
                self._all.setdefault(key, []).append(cid)
                if open_:
                    self._open.setdefault(key, []).append(cid)
        for lists in (self._all, self._open):
            for key, ids in lists.items():
                lists[key] = sorted(set(ids))

    def remove(self, cid: str, parties: Iterable[str]) -> None:
        """A contract leaves the book (its opening rolled back, or it left the hot state)."""
        for key in self._keys(parties):
            _delete(self._all, key, cid)
            _delete(self._open, key, cid)

    def close(self, cid: str, parties: Iterable[str]) -> None:
        """A contract ended (settled, closed out, defaulted): no longer open."""
        for key in self._keys(parties):
            _delete(self._open, key, cid)

    def reopen(self, cid: str, parties: Iterable[str]) -> None:
        """An ending rolled back: the contract is open again."""
        for key in self._keys(parties):
            _insert(self._open, key, cid)

    def ids(self, party: str, *, open_only: bool = False) -> Sequence[str]:
        """The party's contract ids, sorted (``EVERYONE``: all); read-only."""
        return (self._open if open_only else self._all).get(party, _NONE)

    def count(self, party: str, *, open_only: bool = False) -> int:
        return len(self.ids(party, open_only=open_only))

    def parties(self) -> list[str]:
        """Every party with a contract (not ``EVERYONE``)."""
        return [p for p in self._all if p != EVERYONE]
