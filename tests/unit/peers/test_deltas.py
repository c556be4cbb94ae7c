"""A peer's view kept by deltas: after the first read, a refresh reads only what changed since
the height the view has seen, and the view equals a full read of the chain."""

from __future__ import annotations

from typing import Any

from peers.authority.queries import QueryService
from peers.authority.store import SqliteChainStore
from peers.deltas import DeltaView
from rfq.identity import Role
from rfq.queries import ContractsQuery, ContractsReply, Query, TradesQuery, TradesReply
from tests.unit.ledger.harness import T0, Chain, make_net, trade_tx


class _Ledger:
    """Answers as an authority's query service does, counting the rows it sends."""

    def __init__(self, chain: Chain, service: QueryService, who: str) -> None:
        self.chain, self.service, self.who, self.sent = chain, service, who, 0

    async def query(self, query: Query, *, timeout: float = 2.0) -> Any:
        reply = self.service.answer(
            self.chain.state, self.chain.head, 0, self.who, Role.CLIENT, query
        )
        self.sent += len(getattr(reply, "contracts", getattr(reply, "trades", ())))
        return reply


def _block(chain: Chain, first: int, count: int, at_ms: int) -> None:
    txs = [
        trade_tx(chain.net, rfq_id=f"d{i:03d}", at_ms=at_ms - 500)
        for i in range(first, first + count)
    ]
    assert all(r.ok for r in chain.block(*txs, at_ms=at_ms).receipts)


async def test_a_refresh_reads_only_what_changed_and_the_view_equals_a_full_read(tmp_path):
    chain = Chain(make_net())
    _block(chain, 0, 20, T0)
    ledger = _Ledger(chain, QueryService("D1", SqliteChainStore(tmp_path / "c.db")), "C1")
    contracts = DeltaView(ContractsQuery(limit=6), ContractsReply, lambda v: v.contract.id)
    trades = DeltaView(TradesQuery(limit=6), TradesReply, lambda t: t.rfq_id)
    assert len(await contracts.refresh(ledger)) == 20 and len(await trades.refresh(ledger)) == 20
    assert contracts.height == trades.height == 1
    assert await contracts.refresh(ledger) == [] and await trades.refresh(ledger) == []
    _block(chain, 20, 3, T0 + 1000)
    ledger.sent = 0
    assert len(await contracts.refresh(ledger)) == 3 and len(await trades.refresh(ledger)) == 3
    assert ledger.sent == 6  # three contracts and three trades, not 46 rows
    full = await ledger.query(ContractsQuery(limit=1000))
    assert {cid: v for cid, v in contracts.rows.items()} == {
        v.contract.id: v for v in full.contracts
    }
    assert sorted(trades.rows) == sorted(chain.state.trades)
