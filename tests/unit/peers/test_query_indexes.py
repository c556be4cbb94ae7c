"""The query service's indexes stay equal to the maps they follow (the payments map's change
feed, written in place or through committed overlays), and the book's party index equals the
book after rollbacks and restores."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from peers.authority.query_index import PaymentIndex, TradeIndex
from rfq.contracts.book import ContractBook
from rfq.contracts.model import PaymentKind, PaymentStatus
from rfq.ledger.digest import DigestMap
from rfq.ledger.state import Payment, Trade
from tests.unit.ledger.harness import T0, Chain, make_net, trade_tx

PARTIES = ("C1", "C2", "D1")
STATUSES = tuple(PaymentStatus)


def _payment(pid: str, payer: str, payee: str, status: PaymentStatus) -> Payment:
    return Payment(pid, "k1", PaymentKind.PREMIUM, payer, payee, 1_000_000, 1, status=status)


def _brute(payments: DigestMap[Payment], party: str | None, status: str | None) -> list[str]:
    return sorted(
        p.id
        for p in payments.values()
        if (party is None or party in (p.payer, p.payee)) and (status is None or p.status == status)
    )


op = st.tuples(
    st.sampled_from(["set", "del", "commit"]),
    st.integers(0, 60),
    st.sampled_from(PARTIES),
    st.sampled_from(PARTIES),
    st.sampled_from(STATUSES),
)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(op, max_size=80), min_size=1, max_size=6))
def test_the_payment_index_equals_a_scan_of_the_map_after_any_writes(batches):
    payments: DigestMap[Payment] = DigestMap("payments", Payment)
    index = PaymentIndex()
    index.refresh(payments)
    for batch in batches:
        overlay = payments.fork() if any(kind == "commit" for kind, *_ in batch) else None
        target = overlay if overlay is not None else payments
        for kind, n, payer, payee, status in batch:
            pid = f"p{n:02d}"
            if kind == "del":
                if pid in target:
                    del target[pid]
            elif kind == "set":
                target[pid] = _payment(pid, payer, payee, status)
        if overlay is not None:
            overlay.commit()
        index.refresh(payments)
        for party in (None, *PARTIES):
            for status in (None, *STATUSES):
                assert list(index.ids(party, status)) == _brute(payments, party, status)


def test_the_feed_stays_bounded_and_a_reader_left_behind_rebuilds_and_is_right(monkeypatch):
    import rfq.ledger.digest as digest

    monkeypatch.setattr(digest, "FEED_CAP", 8)
    payments: DigestMap[Payment] = DigestMap("payments", Payment)
    behind, ahead = PaymentIndex(), PaymentIndex()
    behind.refresh(payments)
    ahead.refresh(payments)
    for i in range(40):
        payments[f"p{i:02d}"] = _payment(f"p{i:02d}", "C1", "D1", PaymentStatus.PENDING)
        ahead.refresh(payments)  # keeps up, and trims the feed as it goes
    assert payments.written_since(0) is None
    assert len(payments._feed or ()) <= 8  # bounded whether or not anyone reads it
    behind.refresh(payments)
    assert list(behind.ids("C1", "pending")) == list(ahead.ids("C1", "pending"))
    assert len(behind.ids(None, None)) == 40


def test_the_trade_index_rebuilds_when_the_map_is_not_the_one_it_followed():
    net = make_net()
    chain = Chain(net)
    chain.block(*(trade_tx(net, rfq_id=f"t{i}", im_rate=0.0) for i in range(5)), at_ms=T0)
    index = TradeIndex()
    index.refresh(b"h1", chain.state.trades, chain.state.book)
    assert len(index.keys(None, None)) == 5
    other: DigestMap[Trade] = DigestMap("trades", Trade)
    for rfq_id in ("t1", "t3"):
        other[rfq_id] = chain.state.trades[rfq_id]
    index.refresh(b"h2", other, chain.state.book)
    assert sorted(index.rfq_id(k) for k in index.keys(None, None)) == ["t1", "t3"]
    assert [index.rfq_id(k) for k in index.keys("D1", "RB2705")] == ["t1", "t3"]


def _party_ids(book: ContractBook) -> dict[tuple[str | None, bool], list[str]]:
    return {
        (party, open_only): list(book.party_ids(party, open_only))
        for party in (None, "C1", "C2", "D1", "D2")
        for open_only in (False, True)
    }


def _expected(book: ContractBook) -> dict[tuple[str | None, bool], list[str]]:
    views = [book.get(cid) for cid in book.ids()]
    return {
        (party, open_only): [
            v.contract.id
            for v in views
            if (party is None or party in (v.contract.client, v.contract.dealer))
            and not (open_only and v.status.terminal)
        ]
        for party in (None, "C1", "C2", "D1", "D2")
        for open_only in (False, True)
    }


def test_the_books_party_index_follows_endings_rollbacks_and_restores():
    net = make_net()
    chain = Chain(net)
    txs = [
        trade_tx(net, rfq_id=f"b{i}", client=("C1", "C2")[i % 2], dealer=("D1", "D2")[i % 2])
        for i in range(6)
    ]
    chain.block(*txs, at_ms=T0)
    book = chain.state.book
    assert _party_ids(book) == _expected(book) and len(book.party_ids(None)) == 6
    before = _party_ids(book)
    book.checkpoint()
    from rfq.contracts.events import CreditEvent

    book.apply(CreditEvent(id="x", party="C1"))
    assert _party_ids(book) == _expected(book) and not book.party_ids("C1", True)
    book.rollback()
    assert _party_ids(book) == before == _expected(book)
    restored = ContractBook.from_snapshot(book.snapshot())
    assert _party_ids(restored) == before
