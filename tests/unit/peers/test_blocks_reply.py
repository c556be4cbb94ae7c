"""A blocks reply stays within its byte budget, however many blocks were asked for: full blocks
times ``MAX_BLOCKS_PER_REPLY`` would pass nats' max payload, and an observer catching up on a
chain of full blocks got no reply at all."""

from __future__ import annotations

from peers.authority.queries import QueryService
from peers.authority.store import SqliteChainStore
from rfq.identity import Role
from rfq.ledger.driver import ChainDriver
from rfq.queries import BLOCKS_REPLY_BYTES, MAX_BLOCKS_PER_REPLY, BlocksQuery, BlocksReply

from ..ledger.harness import make_net

BIG_TX = 1_500_000


def test_a_blocks_reply_stops_before_its_byte_budget_and_the_next_ask_goes_on(tmp_path):
    net = make_net()
    driver = ChainDriver(net.genesis)
    store = SqliteChainStore(tmp_path / "chain.db")
    for n in range(8):  # each block one oversized (refused) transaction: its bytes count
        txs = [bytes([n]) * BIG_TX]
        result = driver.execute(txs, timestamp_ms=driver.head.timestamp_ms + 1000)
        store.append(driver.seal(txs, timestamp_ms=driver.head.timestamp_ms + 1000),
                     receipts=result.receipts)  # fmt: skip
    service = QueryService("D1", store)

    def ask(start: int) -> list[bytes]:
        reply = service.answer(
            driver.state, driver.head, 0, "REG", Role.REGULATOR,
            BlocksQuery(start, start + MAX_BLOCKS_PER_REPLY - 1),
        )  # fmt: skip
        assert isinstance(reply, BlocksReply)
        return list(reply.blocks)

    first = ask(1)
    assert 1 <= len(first) < 8
    assert sum(map(len, first)) <= BLOCKS_REPLY_BYTES
    rest = ask(1 + len(first))
    assert rest and store.raw_block(1 + len(first)) == rest[0]
    assert ask(9) == []
