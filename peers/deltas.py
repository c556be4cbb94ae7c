"""A peer's view of its rows of one paged query, kept by deltas: the first refresh reads every
page, each later one only the rows changed since the height the view has seen
(``since_height``), folded in by key. Terminals and dealers keep their contracts and trades
this way instead of re-reading everything on every poll."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar

import msgspec

from peers.ledger_client import PAGE_ROWS, LedgerClient, read_pages
from rfq.queries import ContractsQuery, ContractsReply, Query, Reply, TradesQuery, TradesReply

T = TypeVar("T")

DeltaQuery = ContractsQuery | TradesQuery
DeltaReply = ContractsReply | TradesReply


class DeltaView(Generic[T]):
    """The rows of ``query`` (of reply ``kind``), by ``key``, as of ``height``."""

    def __init__(self, query: DeltaQuery, kind: type[DeltaReply], key: Callable[[T], str]) -> None:
        self.query = query
        self.kind = kind
        self.key = key
        self.rows: dict[str, T] = {}
        self.height = 0
        """Every change up to this height is folded in (the next refresh asks after it)."""
        self.reads = 0
        """Rows read over all refreshes (a delta reads what changed, not the whole)."""

    async def refresh(self, ledger: LedgerClient, *, timeout: float = 2.0) -> list[T]:
        """Read what changed since ``height`` and fold it in; the changed rows."""
        heights: list[int] = []

        async def ask(page: Query) -> Reply:
            reply = await ledger.query(page, timeout=timeout)
            heights.append(getattr(reply, "height", 0))
            return reply

        query = msgspec.structs.replace(self.query, since_height=self.height)
        reply: Any = await read_pages(ask, query, self.kind, max_rows=10**7)
        changed: list[T] = list(getattr(reply, PAGE_ROWS[self.kind]))
        for row in changed:
            self.rows[self.key(row)] = row
        self.reads += len(changed)
        # Pages may come from authorities at different heights: everything up to the lowest
        # was read, so the next delta starts there (a row read twice is folded twice).
        self.height = max(self.height, min(heights, default=0))
        return changed
