"""A market of real signed trades executed block by block outside consensus.

``MarketBuilder`` signs RFQ accepts of dealers' quotes (two real signatures each) and the
oracle's fixings, and executes them in blocks (of ``BLOCK_TXS``, or fewer within a byte
bound) through ``rfq.ledger.driver.ChainDriver``, as an authority would. ``botc bench
scale`` builds its large states with it on a genesis of its own;
``prebuild_chain`` (``botc chain prebuild``) runs it on a network made by ``botc init``, seals
every block with the authorities' keys that network holds, and writes the chain and a snapshot
of its final state into every authority's store and the regulator's followers' stores, as
if each had followed the chain from the genesis, so ``botc up`` starts a market that already
holds N live contracts through its normal start-up (snapshot, then the blocks after it).
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import msgspec

from peers.errors import CliError
from rfq.contracts.model import PaymentKind, PaymentStatus
from rfq.identity import AuthoritySetup, Genesis, Identity, NetworkParams, Role
from rfq.instruments import Leg, Side, Template, Terms, listed_futures
from rfq.ledger.block import Block, BlockHeader
from rfq.ledger.driver import ChainDriver
from rfq.ledger.state import BlockResult, LedgerState, business_date
from rfq.ledger.tx import PaymentConfirmed, PriceFixing
from rfq.messages import Accept, Quote
from rfq.rating import RatingWeights
from rfq.signing import sign_payload, tx_id

if TYPE_CHECKING:
    from peers.netdir import NetDir

BLOCK_TXS = 1_000
QUOTE_TTL_MS = 3_000_000
UNDERLYING = "RB"


class MarketBuilder:
    """Trades between ``clients`` and ``dealers`` (round robin), fixings by ``oracle``, each
    block executed, rooted and (with ``seal``) sealed by the authorities whose keys it holds."""

    def __init__(
        self,
        genesis: Genesis,
        keys: Mapping[str, Identity],
        *,
        clients: Sequence[str],
        dealers: Sequence[str],
        oracle: str = "ORACLE",
        now_ms: int | None = None,
        step_ms: int = 1_000,
        seal: bool = False,
        initial_margin_rate: float = 0.1,
    ) -> None:
        self.genesis = genesis
        self.ids = dict(keys)
        self.clients, self.dealers, self.oracle = list(clients), list(dealers), oracle
        self.driver = ChainDriver(genesis)
        self.now_ms = now_ms if now_ms is not None else int(time.time() * 1000)
        self.step_ms = step_ms
        self.seal_keys = self.ids if seal else None
        self.initial_margin_rate = initial_margin_rate
        self.nonce = 0
        self.made = 0

    @property
    def state(self) -> LedgerState:
        return self.driver.state

    @property
    def head(self) -> BlockHeader:
        return self.driver.head

    def sign(self, who: str, payload: Any) -> Any:
        self.nonce += 1
        return sign_payload(
            self.ids[who],
            payload,
            chain_id=self.genesis.chain_id,
            nonce=self.nonce,
            timestamp_ms=self.now_ms,
            expires_ms=self.now_ms + QUOTE_TTL_MS,
        )

    def trades(self, count: int, days: int) -> tuple[list[bytes], set[bytes]]:
        """Signed accepts and the ids an admitting node would already have verified."""
        today = self.business_date()
        future = listed_futures(UNDERLYING, today)[-1]
        month, last = future.id, future.last_trading_day or today + dt.timedelta(days=days)
        txs, verified = [], set()
        for _ in range(count):
            i = self.made
            self.made += 1
            client = self.clients[i % len(self.clients)]
            dealer = self.dealers[i % len(self.dealers)]
            terms = Terms(
                Template.PRICE_SWAP,
                (Leg(month),),
                Side.BUY if i % 2 else Side.SELL,
                10 + i % 90,
                today,
                min(today + dt.timedelta(days=days), last),
            )
            rfq_id = f"s{i}"
            quote = Quote(
                f"{rfq_id}-{dealer}",
                rfq_id,
                client,
                dealer,
                terms,
                3200.0 + i % 50,
                self.now_ms + QUOTE_TTL_MS,
                self.initial_margin_rate,
                0.0,
            )
            signed_quote = self.sign(dealer, quote)
            tx = msgspec.msgpack.encode(
                self.sign(client, Accept(rfq_id, quote.id, client, dealer, signed_quote))
            )
            verified.add(tx_id(msgspec.msgpack.encode(signed_quote)))
            verified.add(tx_id(tx))
            txs.append(tx)
        return txs, verified

    def business_date(self) -> dt.date:
        return business_date(self.state.timestamp_ms or self.now_ms, self.state.book)

    def fixing(self, date: dt.date, price: float) -> bytes:
        months = [f.id for f in listed_futures(UNDERLYING, date)]
        payload = PriceFixing(date=date, prices=tuple((m, price) for m in months))
        return msgspec.msgpack.encode(self.sign(self.oracle, payload))

    def confirmations(
        self, kinds: Collection[PaymentKind], bank: str = "BANK"
    ) -> tuple[list[bytes], set[bytes]]:
        """The bank's signed confirmations of every pending payment of ``kinds``, and the ids
        an admitting node would already have verified."""
        txs = [
            msgspec.msgpack.encode(
                self.sign(bank, PaymentConfirmed(p.id, p.amount, f"bench-{p.id}"))
            )
            for p in self.state.payments.values()
            if p.kind in kinds and p.status == PaymentStatus.PENDING
        ]
        return txs, {tx_id(tx) for tx in txs}

    def pay_margin_calls(self) -> list[bytes]:
        """Confirmations of every pending margin-call payment (a day's calls paid before the
        next fixing, as a solvent market pays them)."""
        return self.confirmations((PaymentKind.MARGIN_CALL,))[0]

    def pay(self, kinds: Collection[PaymentKind]) -> int:
        """Execute the bank's confirmations of every pending payment of ``kinds``,
        ``BLOCK_TXS`` a block, as a bank that pays what it is told does; how many."""
        txs, verified = self.confirmations(kinds)
        for start in range(0, len(txs), BLOCK_TXS):
            self.block(txs[start : start + BLOCK_TXS], verified)
        return len(txs)

    def pass_retention(self) -> int:
        """Past every quote's validity, ``retain_blocks`` blocks and as many more as it takes
        (``MAX_PRUNED_PER_BLOCK`` entries leave a block): what has ended and been paid leaves
        the hot state (``rfq.ledger.components.retention``). The blocks it made."""
        self.now_ms += QUOTE_TTL_MS
        book, made = self.state.book, 0
        limit = self.genesis.params.retain_blocks + 1 + len(book)  # a ready one goes a block
        while made <= self.genesis.params.retain_blocks or len(book) > book.open_count:
            if made > limit:
                ended = len(book) - book.open_count
                raise CliError(f"{ended} ended contracts stay in the hot state after {made} blocks")
            self.block([], set())
            made += 1
        return made

    def block(self, txs: list[bytes], verified: set[bytes]) -> tuple[BlockResult, float, float]:
        """Execute one block; (result, execution seconds, state-root seconds). Its block is
        ``last_block``; a refused transaction is an error (the builder makes none)."""
        self.now_ms += self.step_ms
        started = time.perf_counter()
        result = self.driver.execute(txs, timestamp_ms=self.now_ms, verified=verified)
        executed = time.perf_counter()
        self.last_block = self.driver.seal(txs, timestamp_ms=self.now_ms, keys=self.seal_keys)
        rooted = time.perf_counter()
        refused = [r.reason for r in result.receipts if not r.ok]
        if refused:
            raise CliError(f"block {result.height}: {len(refused)} refused, e.g. {refused[0]}")
        return result, executed - started, rooted - executed

    def fill(
        self,
        count: int,
        days: int,
        on_block: Callable[[Block, BlockResult], None] | None = None,
        *,
        max_block_bytes: int | None = None,
    ) -> None:
        """``count`` trades of ``days`` to maturity, ``BLOCK_TXS`` a block, or fewer where
        they would pass ``max_block_bytes`` (as a proposer cuts its blocks)."""
        while count > 0:
            txs, verified = self.trades(min(count, BLOCK_TXS), days)
            for chunk in _blocks_of(txs, max_block_bytes):
                result, _, _ = self.block(chunk, verified)
                if on_block is not None:
                    on_block(self.last_block, result)
            count -= len(txs)


def _blocks_of(txs: list[bytes], max_bytes: int | None) -> list[list[bytes]]:
    """``txs`` in order, cut where a block would pass ``max_bytes`` (one tx at least)."""
    if max_bytes is None:
        return [txs]
    out: list[list[bytes]] = [[]]
    size = 0
    for tx in txs:
        if out[-1] and size + len(tx) > max_bytes:
            out.append([])
            size = 0
        out[-1].append(tx)
        size += len(tx)
    return out


def bench_market(clients: int) -> MarketBuilder:
    """A market of its own: three dealers, a CCP, ``clients`` clients with ample capital."""
    members: list[tuple[str, Role, dict[str, Any]]] = [
        *((f"D{i}", Role.DEALER, {"external_rating": "A", "capital": 1e12}) for i in (1, 2, 3)),
        ("CCP", Role.CCP, {"external_rating": "AA", "capital": 1e12}),
        ("REG", Role.REGULATOR, {}),
        ("ORACLE", Role.ORACLE, {}),
        ("BANK", Role.BANK, {}),
        *(
            (f"C{i}", Role.CLIENT, {"external_rating": "A", "capital": 1e12})
            for i in range(1, clients + 1)
        ),
    ]
    ids = {mid: Identity.generate(mid, role) for mid, role, _ in members}
    genesis = Genesis(
        name="bench-scale",
        chain_id="bench-scale",
        created=dt.datetime.now(dt.UTC).isoformat(),
        members=tuple(ids[mid].member(mid, **extra) for mid, _, extra in members),
        authorities=AuthoritySetup(initial=("CCP", "D1", "D2", "D3")),
        rating=RatingWeights(alpha=0.4, beta=0.6),
        params=NetworkParams(),
    )
    return MarketBuilder(
        genesis,
        ids,
        clients=[f"C{i}" for i in range(1, clients + 1)],
        dealers=["D1", "D2", "D3"],
    )


@dataclass(frozen=True)
class Prebuilt:
    """What ``prebuild_chain`` wrote."""

    height: int
    live_contracts: int
    stores: tuple[str, ...]
    seconds: float


def prebuild_chain(
    net: NetDir, contracts: int, *, days: int = 240, progress: Callable[[int], None] | None = None
) -> Prebuilt:
    """``contracts`` live trades between the network's clients and dealers, with no initial
    margin asked (so no payment waits on the bank at start), in sealed blocks written with
    a snapshot of the final state into every initial and candidate authority's store, and the
    regulator's followers' (its monitor's, the auth callout's). Refuses a network
    whose chain has started, or one that does not hold every initial authority's key."""
    from peers.authority.history import record_history
    from peers.authority.store import SqliteChainStore

    genesis = net.genesis()
    roles = {m.id: m.role for m in genesis.members}
    authorities = genesis.authorities.initial
    # the candidates run an authority node too, standing by: the same chain in their stores
    nodes = (*authorities, *genesis.authorities.candidates)
    stores = {a: net.data_dir(a) / "chain.db" for a in nodes}
    keeps_history = set(stores.values())  # the nodes' (followers keep none)
    regulator = genesis.regulator.id
    for role in ("regulator", "callout"):  # as if they had followed the blocks from the start
        stores[f"{regulator} ({role})"] = net.follower_store(regulator, role)
    for member, path in stores.items():
        if path.exists():
            store = SqliteChainStore(path)
            try:
                if store.height() > 0:
                    raise CliError(f"{path}: {member}'s chain already has blocks")
            finally:
                store.close()
    needed = {*authorities, "ORACLE", *(m for m, r in roles.items() if r in ("client", "dealer"))}
    keys = {m: net.identity(m) for m in sorted(needed)}
    clients = [m for m, r in roles.items() if r == Role.CLIENT]
    dealers = [m for m, r in roles.items() if r == Role.DEALER]
    if not clients or not dealers:
        raise CliError(f"{net.path}: the genesis needs clients and dealers to trade")
    started = time.perf_counter()
    # a millisecond apart after the genesis, ending before now (there are fewer blocks than
    # trades), so the live chain goes on from them
    after_genesis = ChainDriver(genesis).head.timestamp_ms + 1
    market = MarketBuilder(
        genesis,
        keys,
        clients=clients,
        dealers=dealers,
        now_ms=max(after_genesis, int(time.time() * 1000) - contracts - 1),
        step_ms=1,
        seal=True,
        initial_margin_rate=0.0,
    )
    opened: list[SqliteChainStore] = [SqliteChainStore(p) for p in stores.values()]
    try:
        made = [0]

        def write(block: Block, result: BlockResult) -> None:
            for store in opened:
                store.append(block, receipts=result.receipts, state_root=block.header.state_root)
                if store.path in keeps_history:
                    record_history(store, market.state, block.header)  # as a node does
            made[0] += len(block.txs)
            if progress is not None:
                progress(made[0])

        market.fill(contracts, days, on_block=write, max_block_bytes=genesis.params.max_block_bytes)
        rows = market.state.snapshot_rows()()
        for store in opened:
            store.save_snapshot(market.head.state_root, rows)
    finally:
        for store in opened:
            store.close()
    return Prebuilt(
        market.head.height,
        market.state.book.open_count,
        tuple(str(p) for p in stores.values()),
        time.perf_counter() - started,
    )
