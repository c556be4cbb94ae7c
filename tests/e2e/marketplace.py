"""The whole marketplace in one process, each peer the real service on a real nats-server.

Assertions read the chain the way members do (the regulator's ``LedgerClient`` sees
everything) and the bank's own books; nothing here reaches into a service's internals.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import msgspec

from peers.authority.node import AuthorityNode
from peers.bank import AfterExecute, BankBooks, BankConfig, BankService
from peers.counterparty import ClientSession
from peers.dealer import DealerBot, DefaultStrategy
from peers.guarantor import GuarantorService
from peers.ledger_client import LedgerClient
from peers.netdir import NetDir
from peers.oracle import OracleService, Simulator, next_business_day
from rfq.contracts.model import ContractView
from rfq.identity import Genesis
from rfq.instruments import Leg, Side, Template, Terms, listed_futures
from rfq.ledger.components.payments import margin_set_key
from rfq.ledger.state import Guarantee, Payment, Receipt, Trade
from rfq.ledger.tx import CloseOutRequest, PaymentConfirmed, signed_decoder, tx_decoder
from rfq.messages import Price, Quote
from rfq.pricing.strategy import QuoteParams
from rfq.queries import (
    ContractsQuery,
    ContractsReply,
    GuaranteesQuery,
    GuaranteesReply,
    PaymentsQuery,
    PaymentsReply,
    RatingsQuery,
    RatingsReply,
    TradesQuery,
    TradesReply,
)

from ..integration.chainkit import start_authorities

UNDERLYING = listed_futures("RB", dt.datetime.now(dt.UTC).date())[-1].id  # trades 8+ months
DEALERS = ("D1", "D2", "D3")
CLIENTS = ("C1", "C2")


@dataclass
class Traded:
    quote: Quote
    receipt: Receipt
    trade: Trade

    @property
    def id(self) -> str:
        return self.trade.contract_id


@dataclass
class Marketplace:
    network: NetDir
    genesis: Genesis
    bus_factory: Callable[..., Awaitable[object]]
    nodes: dict[str, AuthorityNode]
    oracle: OracleService
    oracle_ledger: LedgerClient
    dealers: dict[str, DealerBot]
    clients: dict[str, ClientSession]
    reg: LedgerClient
    guarantor: GuarantorService
    today: dt.date
    bank: BankService | None = None
    books: BankBooks | None = None
    seq: int = 0
    started: float = field(default_factory=time.monotonic)

    # -- lifecycle -------------------------------------------------------------------------

    @classmethod
    async def open(cls, network: NetDir, bus_factory: Callable[..., Awaitable[object]]):
        genesis = network.genesis()
        nodes = await start_authorities(network, bus_factory)
        today = dt.datetime.now(dt.UTC).date()
        sim = Simulator(start=today, seed=11, ticks_per_day=2)
        oracle_bus = await bus_factory("ORACLE")
        oracle_ledger = await LedgerClient(oracle_bus, genesis).start()
        oracle = OracleService(oracle_bus, ledger=oracle_ledger)
        oracle.history = {k: list(v) for k, v in sim.history.items()}
        await oracle.start()
        strategy = DefaultStrategy(QuoteParams(max_credit_line=0.0))  # all margin is cash
        dealers = {}
        for dealer_id in DEALERS:
            bot = DealerBot(await bus_factory(dealer_id), genesis, strategy=strategy)
            await bot.start()
            await bot.ledger.start()
            dealers[dealer_id] = bot
        clients = {}
        for client_id in CLIENTS:
            session = await ClientSession(await bus_factory(client_id), genesis).start()
            await session.market.attach(session.bus)
            clients[client_id] = session
        reg = await LedgerClient(await bus_factory("REG"), genesis).start()
        guarantor = await GuarantorService(await bus_factory("G1"), genesis, poll_s=0.2).start()
        market = cls(
            network=network,
            genesis=genesis,
            bus_factory=bus_factory,
            nodes=nodes,
            oracle=oracle,
            oracle_ledger=oracle_ledger,
            dealers=dealers,
            clients=clients,
            reg=reg,
            guarantor=guarantor,
            today=today,
        )
        for _ in range(sim.ticks_per_day):  # day 0: the simulated close of every underlying
            for price in sim.ticks():
                await oracle.publish(price)
        await oracle.bus.flush()
        tx = await oracle.fix(today)
        assert tx is not None
        receipt = await oracle_ledger.wait(tx, timeout=15)
        assert receipt.ok, receipt.reason
        await market.until(
            lambda: (
                all(UNDERLYING in d.market.latest for d in dealers.values())
                and all(UNDERLYING in c.market.latest for c in clients.values())
            ),
            what="dealers and clients see the oracle's prices",
        )
        return market

    async def start_bank(
        self, *, config: BankConfig | None = None, after_execute: AfterExecute | None = None
    ) -> BankService:
        """The settlement bank on its own connection and its books in NETDIR/data/BANK."""
        self.books = BankBooks(self.network.data_dir("BANK") / "bank.db")
        bank = BankService(
            await self.bus_factory("BANK"),  # type: ignore[arg-type]
            self.genesis,
            self.books,
            config=config or BankConfig(poll_s=0.1, resubmit_s=0.5),
            after_execute=after_execute,
        )
        self.bank = await bank.start()
        return bank

    async def stop_bank(self) -> None:
        if self.bank is not None:
            await self.bank.close()
            self.bank = None
        if self.books is not None:
            self.books.close()
            self.books = None

    async def close(self) -> None:
        await self.stop_bank()
        await self.guarantor.close()
        for node in self.nodes.values():
            await node.stop()

    # -- driving ---------------------------------------------------------------------------

    async def until(
        self,
        predicate: Callable[[], bool | Awaitable[bool]],
        *,
        timeout: float = 20.0,
        what: str = "",
    ) -> None:
        deadline = time.monotonic() + timeout
        while True:
            result = predicate()
            if not isinstance(result, bool):
                result = await result
            if result:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
            await asyncio.sleep(0.05)

    def terms(self, quantity: float = 1000, side: Side = Side.BUY) -> Terms:
        return Terms(
            template=Template.PRICE_SWAP,
            legs=(Leg(UNDERLYING),),
            client_side=side,
            quantity=quantity,
            trade_date=self.clients["C1"].market.today,
            maturity=self.today + dt.timedelta(days=120),
        )

    async def trade(
        self,
        client: str = "C1",
        *,
        quantity: float = 1000,
        before_accept: Callable[[Quote], Awaitable[None]] | None = None,
    ) -> Traded:
        """RFQ to every dealer, accept the best quote, wait until the trade is final."""
        session = self.clients[client]
        rfq = await session.send_rfq(self.terms(quantity), deadline_s=3)
        answers = await rfq.collect()
        best = rfq.best()
        assert best is not None, f"no quote for {client}: {answers}"
        if before_accept is not None:
            await before_accept(best)
        signed = await session.accept(best)
        receipt = await session.committed(signed)
        assert receipt.ok, receipt.reason
        trade = next(t for t in await self.trades() if t.rfq_id == rfq.id)
        return Traded(best, receipt, trade)

    async def fix(self, date: dt.date, price: float) -> Receipt:
        """The oracle publishes ``price`` as ``date``'s close and puts it on chain."""
        self.seq += 1
        await self.oracle.publish(
            Price(underlying=UNDERLYING, price=price, date=date, seq=10**9 + self.seq, close=True)
        )
        tx = await self.oracle.fix(date)
        assert tx is not None
        receipt = await self.oracle_ledger.wait(tx, timeout=15)
        assert receipt.ok, receipt.reason
        return receipt

    def next_day(self, after: dt.date | None = None) -> dt.date:
        return next_business_day(after or self.today)

    async def close_out(self, contract_id: str, client: str, dealer: str, price: float):
        request = CloseOutRequest(contract_id, price)
        asked = await self.clients[client].ledger.submit_and_wait(request, timeout=15)
        agreed = await self.dealers[dealer].ledger.submit_and_wait(request, timeout=15)
        return asked, agreed

    # -- reading the chain -----------------------------------------------------------------

    async def payments(self, contract_id: str | None = None) -> dict[str, Payment]:
        reply = await self.reg.query(PaymentsQuery())
        assert isinstance(reply, PaymentsReply)
        return {
            p.id: p for p in reply.payments if contract_id is None or p.contract_id == contract_id
        }

    async def payment(self, instruction_id: str) -> Payment | None:
        return (await self.payments()).get(instruction_id)

    async def contract(self, contract_id: str) -> ContractView:
        reply = await self.reg.query(ContractsQuery(ids=(contract_id,)))
        assert isinstance(reply, ContractsReply)
        [view] = reply.contracts
        return view

    async def trades(self) -> list[Trade]:
        reply = await self.reg.query(TradesQuery())
        assert isinstance(reply, TradesReply)
        return list(reply.trades)

    async def guarantees(self) -> dict[str, Guarantee]:
        reply = await self.reg.query(GuaranteesQuery())
        assert isinstance(reply, GuaranteesReply)
        return {g.id: g for g in reply.guarantees}

    async def ratings(self, *members: str) -> dict[str, float]:
        reply = await self.reg.query(RatingsQuery(members))
        assert isinstance(reply, RatingsReply)
        return reply.ratings

    async def settled(self, contract_id: str) -> bool:
        """No instruction of the contract is waiting for the bank any more, nor a margin
        call (paid per netting set, under the set's id)."""
        payments = await self.payments(contract_id)
        if not payments or any(p.status != "confirmed" for p in payments.values()):
            return False
        return (await self.contract(contract_id)).margin_call is None

    async def call_payment(self, contract_id: str) -> Payment | None:
        """The newest payment of the netting set the contract's open margin call is in."""
        call = (await self.contract(contract_id)).margin_call
        if call is None:
            return None
        key = margin_set_key(call.payer, call.payee, call.height, call.due)
        made = [p for p in (await self.payments(key)).values()]
        return max(made, key=lambda p: int(p.id.rsplit("/", 1)[1]), default=None)

    def confirmations_on_chain(self, instruction_id: str) -> list[tuple[int, str, bool]]:
        """Every ``payment_confirmed`` for ``instruction_id`` in the chain's blocks:
        (height, transaction id, committed ok)."""
        # The node furthest ahead: a receipt comes from the block's proposer, which may have
        # committed the block before the others.
        node = max(self.nodes.values(), key=lambda n: n.head.height)
        found = []
        for block in node.store.blocks(1):
            for tx in block.txs:
                signed = signed_decoder.decode(tx)
                if signed.kind != "payment_confirmed":
                    continue
                payload = tx_decoder.decode(signed.body)
                assert isinstance(payload, PaymentConfirmed)
                if payload.instruction_id != instruction_id:
                    continue
                tx_id = hashlib.sha256(tx).hexdigest()
                receipts = [r for n in self.nodes.values() for r in n.store.receipts([tx_id])]
                assert receipts, f"no node kept the receipt of {tx_id[:12]}"
                found.append((block.height, tx_id, receipts[0].ok))
        return found


def encoded(signed: object) -> bytes:
    return msgspec.msgpack.encode(signed)
