"""Each party's contract ids, sorted, and which of them are still open: what a page of a
party's contracts reads, so that a page costs its size, not the party's whole book.

The book keeps one ``PartyIndex`` next to its entries (derived, not part of the state root):
``add`` when a contract opens, ``close`` when it ends, ``reopen`` / ``remove`` when a block is
rolled back (or a contract leaves the hot state). Every contract is also under ``EVERYONE``
(the regulator's view of all of them). Each list is a ``sortedcontainers.SortedList``: contract
ids are ``<client>-<random hex>``, so they arrive in no order, and an insert into a plain
sorted list moved half of it (at 100k live contracts 88 us of a trade's 106 us, the one cost
of a trade that grew with the book); a ``SortedList`` inserts and removes in O(log n) and
still indexes, slices and bisects as a sorted sequence.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Final

from sortedcontainers import SortedList

EVERYONE: Final = ""
"""The key under which every contract is indexed (no member id is empty)."""

_NONE: Final[tuple[str, ...]] = ()


def _insert(lists: dict[str, SortedList], key: str, cid: str) -> None:
    ids = lists.get(key)
    if ids is None:
        lists[key] = SortedList((cid,))
    elif cid not in ids:
        ids.add(cid)


def _delete(lists: dict[str, SortedList], key: str, cid: str) -> None:
    ids = lists.get(key)
    if ids is None:
        return
    ids.discard(cid)
    if not ids:
        del lists[key]


class PartyIndex:
    """Contract ids by party (client or dealer), sorted: all of them, and the open ones."""

    __slots__ = ("_all", "_open")

    def __init__(self) -> None:
        self._all: dict[str, SortedList] = {}
        self._open: dict[str, SortedList] = {}

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
        """Add many at once (a restore): ``(id, parties, open)`` each, ids unique (a book
        refuses a contract twice), each list sorted once at the end."""
        all_: dict[str, list[str]] = {}
        open_ids: dict[str, list[str]] = {}
        for cid, (client, dealer), open_ in contracts:
            keys = (EVERYONE, client) if client == dealer else (EVERYONE, client, dealer)
            for key in keys:
                all_.setdefault(key, []).append(cid)
                if open_:
                    open_ids.setdefault(key, []).append(cid)
        self._all = {key: SortedList(ids) for key, ids in all_.items()}
        self._open = {key: SortedList(ids) for key, ids in open_ids.items()}

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
        ids: Sequence[str] = (self._open if open_only else self._all).get(party, _NONE)
        return ids

    def count(self, party: str, *, open_only: bool = False) -> int:
        return len(self.ids(party, open_only=open_only))

    def parties(self) -> list[str]:
        """Every party with a contract (not ``EVERYONE``)."""
        return [p for p in self._all if p != EVERYONE]
