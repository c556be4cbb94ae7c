"""The query service's indexes: each party's trades (and each underlying's), newest first,
and each party's payments by status, so a page costs its size, not a sort of every trade or
payment on chain.

Derived from the final state, never part of it: ``TradeIndex.refresh`` runs when the head
changes and reads only the trades added since (the trades map only grows, in commit order,
when blocks are final); anything else it does not recognise (a restore, a trade gone) makes
it rebuild from the map once. Each list is a ``SortedList`` (O(log n) inserts and removals,
indexed and sliced as a sorted sequence): a newest-first trade key goes to the front, where a
plain list moved every key after it.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Final

from sortedcontainers import SortedList

from rfq.contracts.book import ContractBook
from rfq.ledger.digest import DigestMap
from rfq.ledger.state import Payment, Trade
from rfq.queries import newest_first_key

ANY: Final = ""
"""Every party, or every underlying (no member id or underlying name is empty)."""

_NONE: Final[tuple[str, ...]] = ()


def trade_key(trade: Trade) -> str:
    """A trade's place in the newest-first order (a page cursor's position)."""
    return newest_first_key(trade.height, trade.rfq_id)


def since_key(height: int) -> str:
    """Keys below this one are of trades committed after ``height``."""
    return newest_first_key(height, "")


class TradeIndex:
    """Trade keys (``trade_key``) by (party, underlying), sorted, and each key's rfq id."""

    def __init__(self) -> None:
        self._lists: dict[tuple[str, str], SortedList] = {}
        self._ids: dict[str, str] = {}
        self._count = 0
        self._last = ""
        self._head = b""

    def keys(self, party: str | None, underlying: str | None) -> Sequence[str]:
        """Newest first, read-only."""
        keys: Sequence[str] = self._lists.get((party or ANY, underlying or ANY), _NONE)
        return keys

    def rfq_id(self, key: str) -> str:
        return self._ids[key]

    def refresh(self, head: bytes, trades: DigestMap[Trade], book: ContractBook) -> None:
        """Bring the index to the state at ``head`` (the trades added since the last one)."""
        if head == self._head:
            return
        self._head = head
        count = len(trades)
        if count < self._count:
            self._rebuild(trades, book)
            return
        rest = iter(trades)
        if self._count:
            last = next(itertools.islice(rest, self._count - 1, None), None)
            if last != self._last:
                self._rebuild(trades, book)
                return
        for rfq_id in rest:
            self._add(trades[rfq_id], book)
            self._last = rfq_id
        self._count = count

    def _rebuild(self, trades: DigestMap[Trade], book: ContractBook) -> None:
        self._lists, self._ids = {}, {}
        collected: dict[tuple[str, str], list[str]] = {}
        self._last = ""
        for rfq_id, trade in trades.items():
            self._last = rfq_id
            key = trade_key(trade)
            self._ids[key] = trade.rfq_id
            for slot in _slots(trade, book):
                collected.setdefault(slot, []).append(key)
        self._lists = {slot: SortedList(keys) for slot, keys in collected.items()}
        self._count = len(trades)

    def _add(self, trade: Trade, book: ContractBook) -> None:
        key = trade_key(trade)
        self._ids[key] = trade.rfq_id
        for slot in _slots(trade, book):
            keys = self._lists.get(slot)
            if keys is None:
                self._lists[slot] = SortedList((key,))
            elif key not in keys:
                keys.add(key)  # newest first: at the front, O(log n) (a list moved them all)


def _slots(trade: Trade, book: ContractBook) -> list[tuple[str, str]]:
    contract = book.terms_of(trade.contract_id)
    underlyings = contract.terms.underlyings if contract is not None else ()
    parties = (ANY, *dict.fromkeys((trade.client, trade.dealer)))
    return [(p, u) for p in parties for u in (ANY, *dict.fromkeys(underlyings))]


class PaymentIndex:
    """Payment ids by (party, status), sorted, following the payments map's change feed
    (``DigestMap.follow``): a block's payments cost what it wrote, a page of the bank's
    pending instructions what it holds, not a pass over every payment ever made."""

    def __init__(self) -> None:
        self._lists: dict[tuple[str, str], SortedList] = {}
        self._where: dict[str, tuple[tuple[str, str], ...]] = {}
        self._map: DigestMap[Payment] | None = None
        self._position = 0

    def ids(self, party: str | None, status: str | None) -> Sequence[str]:
        """Sorted, read-only."""
        ids: Sequence[str] = self._lists.get((party or ANY, status or ANY), _NONE)
        return ids

    def refresh(self, payments: DigestMap[Payment]) -> None:
        """Bring the index to the map as it is (the keys written since the last refresh)."""
        if payments is not self._map:
            self._rebuild(payments)
            return
        since = payments.written_since(self._position)
        if since is None:
            self._rebuild(payments)
            return
        keys, self._position = since
        if not keys:
            return
        gone: dict[tuple[str, str], set[str]] = {}
        new: dict[tuple[str, str], list[str]] = {}
        for pid in dict.fromkeys(keys):
            for slot in self._where.pop(pid, ()):
                gone.setdefault(slot, set()).add(pid)
            payment = payments.get(pid)
            if payment is not None:
                slots = _payment_slots(payment)
                self._where[pid] = slots
                for slot in slots:
                    new.setdefault(slot, []).append(pid)
        for slot in gone.keys() | new.keys():
            self._apply(slot, gone.get(slot, set()), new.get(slot, []))

    def _apply(self, slot: tuple[str, str], gone: set[str], new: list[str]) -> None:
        ids = self._lists.get(slot)
        if ids is None:
            ids = SortedList()
        both = gone & set(new)  # rewritten in place: stays
        for pid in gone - both:
            ids.discard(pid)
        ids.update(pid for pid in new if pid not in both)
        if ids:
            self._lists[slot] = ids
        else:
            self._lists.pop(slot, None)

    def _rebuild(self, payments: DigestMap[Payment]) -> None:
        self._map = payments
        self._position = payments.follow()
        collected: dict[tuple[str, str], list[str]] = {}
        self._where = {}
        for pid, payment in payments.items():
            slots = self._where[pid] = _payment_slots(payment)
            for slot in slots:
                collected.setdefault(slot, []).append(pid)
        self._lists = {slot: SortedList(ids) for slot, ids in collected.items()}


def _payment_slots(payment: Payment) -> tuple[tuple[str, str], ...]:
    parties = (ANY, *dict.fromkeys((payment.payer, payment.payee)))
    return tuple((p, s) for p in parties for s in (ANY, str(payment.status)))
