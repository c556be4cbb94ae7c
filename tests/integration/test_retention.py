"""A settled contract leaves every authority's hot state and stays readable with a proof:
the client's ledger client reads it from the authorities' history and believes it only under
a header sealed on chain."""

from __future__ import annotations

import datetime as dt
import time

import msgspec
import pytest

from peers.authority.store import SqliteChainStore
from peers.authority.verify import verify_chain
from peers.ledger_client import LedgerClient
from peers.netdir import NetDir, create_network
from rfq.contracts.book import ContractRecord
from rfq.contracts.model import Status
from rfq.identity import NetworkParams
from rfq.ledger.state import Payment, Trade
from rfq.ledger.tx import PaymentConfirmed, PriceFixing
from rfq.messages import Accept, Quote
from rfq.signing import sign_payload

from .chainkit import TxFactory, rebar, start_authorities, submit, terms, wait_for

pytestmark = pytest.mark.integration

RETAIN = 4


@pytest.fixture
def network(tmp_path) -> NetDir:
    params = NetworkParams(block_time_ms=50, idle_block_ms=100, retain_blocks=RETAIN)
    return create_network(tmp_path / "net", dealers=3, clients=5, params=params)


def short_lived_trade(factory: TxFactory, rfq_id: str, valid_ms: int = 1500) -> bytes:
    """C1 accepts D1's quote valid for ``valid_ms`` (pruning waits past it)."""
    now = int(time.time() * 1000)
    quote = Quote(
        id=f"{rfq_id}-D1",
        rfq_id=rfq_id,
        client="C1",
        dealer="D1",
        terms=terms(),
        price=3200.0,
        valid_until_ms=now + valid_ms,
        initial_margin_rate=0.1,
        credit_line=0.0,
    )
    factory.nonce += 1
    signed_quote = sign_payload(
        factory.ids["D1"],
        quote,
        chain_id=factory.genesis.chain_id,
        nonce=factory.nonce,
        timestamp_ms=now,
        expires_ms=now + valid_ms,
    )
    return factory.sign("C1", Accept(rfq_id, quote.id, "C1", "D1", signed_quote))


async def test_a_pruned_contract_is_read_from_history_with_a_proof_by_its_client_only(
    nats_server, network, bus_factory
):
    nodes = await start_authorities(network, bus_factory)
    factory = TxFactory(network)
    oracle, bank = await bus_factory("ORACLE"), await bus_factory("BANK")
    node = nodes["CCP"]

    def settled_everywhere() -> bool:
        return all(
            not n.speculating and (v := n.state.book.find("r1")) is not None and v.status.terminal
            for n in nodes.values()
        )

    async with (
        LedgerClient(await bus_factory("C1"), network.genesis()) as c1,
        LedgerClient(await bus_factory("C2"), network.genesis()) as c2,
    ):
        await submit(c1.bus, [short_lived_trade(factory, "r1")])
        await wait_for(lambda: "r1" in node.state.trades, what="the trade final")
        maturity = node.state.book.get("r1").contract.terms.maturity
        await submit(
            oracle,
            [
                factory.sign(
                    "ORACLE", PriceFixing(maturity + dt.timedelta(days=1), ((rebar(), 3300.0),))
                )
            ],
        )
        await wait_for(settled_everywhere, what="the contract settled")
        for _ in range(3):  # initial margin, then the settlement and the margin's return
            pending = [p for p in node.state.payments.values() if p.status == "pending"]
            await submit(
                bank,
                [
                    factory.sign("BANK", PaymentConfirmed(p.id, p.amount, f"ref-{p.id}"))
                    for p in pending
                ],
            )
            await wait_for(
                lambda: all(p.status != "pending" for p in node.state.payments.values()),
                what="the payments confirmed",
            )
        paid = {pid: p for pid, p in node.state.payments.items() if pid.startswith("r1/")}
        record = node.state.book.record_bytes("r1")
        trade = node.state.trades["r1"]
        await wait_for(
            lambda: all("r1" not in n.state.book and not n.state.payments for n in nodes.values()),
            timeout=30,
            what="the contract pruned everywhere",
        )
        assert "r1" not in node.state.trades

        contracts = await c1.history("contracts", ["r1"])
        assert contracts["r1"].value == record
        proven = msgspec.msgpack.decode(contracts["r1"].value, type=ContractRecord)
        assert proven.status == Status.SETTLED and proven.outcome is not None
        assert contracts["r1"].height < node.head.height
        trades = await c1.history("trades", ["r1"])
        assert trades["r1"].decode(Trade) == trade
        payments = await c1.history("payments", sorted(paid))
        assert {pid: r.decode(Payment) for pid, r in payments.items()} == paid
        assert not c1.dropped

        assert await c2.history("contracts", ["r1"]) == {}  # not C2's contract
        assert await c2.history("payments", sorted(paid)) == {}
    paths = [n.store.path for n in nodes.values()]
    for n in nodes.values():
        await n.stop()
    # botc chain verify checks the history too: every pruned entry proven, with its value.
    store = SqliteChainStore(paths[0])
    try:
        assert verify_chain(network.genesis(), store).ok
        store.db.execute(
            "UPDATE history SET witness = (SELECT witness FROM history WHERE key = 'r1' "
            "AND component = 'trades') WHERE component = 'contracts' AND key = 'r1'"
        )
        verdict = verify_chain(network.genesis(), store)
        assert not verdict.ok and "history's proof of contracts['r1']" in verdict.reason
    finally:
        store.close()
