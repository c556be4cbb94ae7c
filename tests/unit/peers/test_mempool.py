"""The mempool: deduplicated, bounded, first come first served, expired transactions dropped."""

from __future__ import annotations

from peers.authority.mempool import Mempool, Pending


def pending(n: int, *, expires_ms: int = 10_000) -> Pending:
    return Pending(bytes([n]) * 32, b"tx%d" % n, "C1", n, expires_ms)


def test_the_same_transaction_is_held_once_and_a_full_pool_refuses_more():
    pool = Mempool(max_size=2)
    assert pool.add(pending(1))
    assert not pool.add(pending(1))
    assert pool.add(pending(2))
    assert not pool.add(pending(3))
    assert pool.refused_full == 1
    assert [p.data for p in pool.take(10)] == [b"tx1", b"tx2"]


def test_expired_transactions_are_dropped_and_the_rest_keep_their_order():
    pool = Mempool(max_size=10)
    for n, expires in ((1, 500), (2, 5_000), (3, 400), (4, 9_000)):
        pool.add(pending(n, expires_ms=expires))
    dropped = pool.drop_expired(now_ms=1_000)
    assert sorted(p.data for p in dropped) == [b"tx1", b"tx3"]
    assert [p.data for p in pool.take(10)] == [b"tx2", b"tx4"]
    pool.remove([pending(2).tx_id])
    assert len(pool) == 1
