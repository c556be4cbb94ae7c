"""Fault tests with real processes: the marketplace under ``botc up``'s supervisor.

``trader`` is client C1 in this process, trading steadily (RFQ, best quote, accept, wait for
finality) and remembering every accept it was told is final. After each fault,
``check_invariants`` proves what a market infrastructure promises: each of those accepts is
exactly one trade and one contract, nothing is duplicated, every authority holds the same
chain (and it re-verifies from the genesis), and payments are unique.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import sqlite3
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from peers.authority.store import SqliteChainStore
from peers.authority.verify import verify_chain
from peers.counterparty import ClientSession
from peers.ledger_client import LedgerClient, LedgerUnavailable
from peers.marketplace import Marketplace
from peers.netdir import NetDir, create_network
from peers.runtime import open_bus
from rfq.identity import NetworkParams
from rfq.instruments import Leg, Side, Template, Terms, listed_futures
from rfq.queries import ContractsQuery, ContractsReply, PaymentsQuery, PaymentsReply, TradesQuery

FAST = NetworkParams(block_time_ms=50, idle_block_ms=500, round_timeout_ms=1000)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/reliability" in str(item.fspath):
            item.add_marker(pytest.mark.reliability)
            item.add_marker(pytest.mark.integration)


def start_market(tmp_path: Path, *, cluster: int = 1, params: NetworkParams = FAST) -> Marketplace:
    net = create_network(tmp_path / "net", dealers=3, clients=5, params=params)
    market = Marketplace(net, clients=0, human="C1", cluster=cluster, day_seconds=20)
    missing = market.start(timeout=90)
    assert not missing, f"not ready: {[s.name for s in missing]}"
    return market


@pytest.fixture
def market(tmp_path):
    market = start_market(tmp_path)
    yield market
    market.stop()


@dataclass
class Trader:
    """Client C1 trading in a loop; ``final`` holds the accepts it was told are final."""

    session: ClientSession
    final: dict[str, str] = field(default_factory=dict)  # rfq id -> tx id
    outcomes: Counter[str] = field(default_factory=Counter)
    running: bool = True

    async def one(self) -> None:
        today = self.session.market.today
        terms = Terms(
            Template.PRICE_SWAP,
            (Leg(listed_futures("RB", today)[-1].id),),
            Side.BUY,
            100,
            today,
            today + dt.timedelta(days=90),
        )
        try:
            handle = await self.session.send_rfq(terms, deadline_s=2.0)
            await handle.collect()
        except Exception as exc:
            self.outcomes[f"rfq: {type(exc).__name__}"] += 1
            return
        best = handle.best()
        if best is None:
            self.outcomes["no quote"] += 1
            return
        try:
            signed = await self.session.accept(best)
            receipt = await self.session.committed(signed, timeout=45)
        except LedgerUnavailable:
            self.outcomes["no receipt"] += 1
            return
        except Exception as exc:
            self.outcomes[f"accept: {type(exc).__name__}"] += 1
            return
        if receipt.ok:
            self.final[handle.id] = receipt.tx_id
            self.outcomes["final"] += 1
        else:
            self.outcomes[f"refused: {receipt.reason[:40]}"] += 1

    async def run(self, pause: float = 0.2) -> None:
        while self.running:
            await self.one()
            await asyncio.sleep(pause)


async def open_trader(net: NetDir) -> Trader:
    bus = await open_bus(net, "C1")
    session = await ClientSession(bus, net.genesis()).start()
    await session.market.attach(bus)
    deadline = time.monotonic() + 20
    rebar = listed_futures("RB", dt.datetime.now(dt.UTC).date())[-1].id
    while rebar not in session.market.latest and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    return Trader(session)


async def trade_for(trader: Trader, seconds: float) -> None:
    """Let the trader run for ``seconds`` more (it keeps running in its task)."""
    await asyncio.sleep(seconds)


async def check_invariants(market: Marketplace, trader: Trader) -> dict[str, object]:
    net = market.net
    reg = await LedgerClient(await open_bus(net, "REG"), net.genesis()).start()
    try:
        contracts = await reg.query(ContractsQuery(), timeout=5)
        trades = await reg.query(TradesQuery(limit=1_000_000), timeout=5)
        payments = await reg.query(PaymentsQuery(), timeout=5)
    finally:
        await reg.bus.close()
    assert isinstance(contracts, ContractsReply)
    assert isinstance(payments, PaymentsReply)
    contract_ids = Counter(v.contract.id for v in contracts.contracts)
    trade_ids = Counter(t.rfq_id for t in trades.trades)
    assert not [c for c, n in contract_ids.items() if n > 1], "a contract is duplicated"
    assert not [t for t, n in trade_ids.items() if n > 1], "a trade is duplicated"
    for rfq_id, tx_id in trader.final.items():
        assert trade_ids[rfq_id] == 1, f"accept {rfq_id} told final is not exactly one trade"
        assert contract_ids[rfq_id] == 1, f"accept {rfq_id} told final has no contract"
        [trade] = [t for t in trades.trades if t.rfq_id == rfq_id]
        assert trade.tx_id == tx_id
    payment_ids = Counter(p.id for p in payments.payments)
    assert not [p for p, n in payment_ids.items() if n > 1], "a payment is duplicated"
    bank_db = net.path / "data" / "BANK" / "bank.db"
    if bank_db.exists():
        check_bank(bank_db, [p for p in payments.payments if p.status == "confirmed"])
    same_chains(net)
    return {"final": len(trader.final), "contracts": len(contract_ids), "outcomes": trader.outcomes}


def check_bank(bank_db: Path, confirmed: list) -> None:
    """Money is conserved in the bank's books and each payment confirmed on chain moved once,
    for the amount instructed."""
    db = sqlite3.connect(f"file:{bank_db}?mode=ro", uri=True)
    try:
        balances = db.execute("SELECT COALESCE(SUM(balance), 0) FROM accounts").fetchone()[0]
        funded = db.execute("SELECT COALESCE(SUM(amount), 0) FROM funding").fetchone()[0]
        assert balances == funded, "the bank's books created or destroyed money"
        journal = {
            row[0]: row[1] for row in db.execute("SELECT instruction_id, amount FROM journal")
        }
    finally:
        db.close()
    for payment in confirmed:
        assert payment.id in journal, f"{payment.id} confirmed on chain, never executed"
        assert journal[payment.id] == payment.amount, payment.id  # both integer micros


def same_chains(net: NetDir) -> None:
    """Every authority that ran holds the same blocks, and each re-verifies from the genesis."""
    genesis = net.genesis()
    stores = {}
    for member in genesis.authorities.initial:
        path = net.path / "data" / member / "chain.db"
        if path.exists():
            stores[member] = SqliteChainStore(path)
    try:
        tip = min(s.height() for s in stores.values())
        assert tip > 0
        for height in range(1, tip + 1):
            hashes = {s.block(height).hash() for s in stores.values()}
            assert len(hashes) == 1, f"authorities disagree at height {height}"
        for member, store in stores.items():
            verdict = verify_chain(genesis, store)
            assert verdict.ok, f"{member}: height {verdict.height}: {verdict.reason}"
    finally:
        for store in stores.values():
            store.close()


def log_text(market: Marketplace, name: str) -> str:
    text = ""
    for suffix in (".log", ".out"):
        path = market.net.path / "logs" / f"{name}{suffix}"
        if path.exists():
            text += path.read_text(errors="replace")
    return text
