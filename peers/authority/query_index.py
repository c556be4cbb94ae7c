"""The query service's index of trades: each party's trades (and each underlying's), newest
first, so a page of trades costs its size, not a sort of every trade on chain.

Derived from the final state, never part of it: ``TradeIndex.refresh`` runs when the head
changes and reads only the trades added since (the trades map only grows, in commit order,
when blocks are final); anything else it does not recognise (a restore, a trade gone) makes
it rebuild from the map once.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Sequence
from typing import Final

from rfq.contracts.book import ContractBook
from rfq.ledger.digest import DigestMap
from rfq.ledger.state import Trade
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
        self._lists: dict[tuple[str, str], list[str]] = {}
        self._ids: dict[str, str] = {}
        self._count = 0
        self._last = ""
        self._head = b""

    def keys(self, party: str | None, underlying: str | None) -> Sequence[str]:
        """Newest first, read-only."""
        return self._lists.get((party or ANY, underlying or ANY), _NONE)

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
        self._lists = {slot: sorted(keys) for slot, keys in collected.items()}
        self._count = len(trades)

    def _add(self, trade: Trade, book: ContractBook) -> None:
        key = trade_key(trade)
        self._ids[key] = trade.rfq_id
        for slot in _slots(trade, book):
            keys = self._lists.setdefault(slot, [])
            k = bisect.bisect_left(keys, key)
            if k == len(keys) or keys[k] != key:
                keys.insert(k, key)


def _slots(trade: Trade, book: ContractBook) -> list[tuple[str, str]]:
    view = book.find(trade.contract_id)
    underlyings = view.contract.terms.underlyings if view is not None else ()
    parties = (ANY, *dict.fromkeys((trade.client, trade.dealer)))
    return [(p, u) for p in parties for u in (ANY, *dict.fromkeys(underlyings))]
