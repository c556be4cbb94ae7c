"""Retention: ended contracts, their trades and final payments leave the hot state after the
window, the same way on every node, undone by a rollback, and never to be re-opened or
re-paid by a replay."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from rfq.contracts.model import Status
from rfq.errors import ValidationError
from rfq.instruments import Side
from rfq.ledger.block import build_block, proposer_for
from rfq.ledger.components import retention
from rfq.ledger.executor import BlockExecutor
from rfq.ledger.state import LedgerState
from rfq.ledger.tx import CloseOutRequest, PaymentConfirmed, PriceFixing

from .harness import TODAY, Chain, Net, make_net, swap_terms, trade_tx
from .test_snapshot_roundtrip import PARAMS, Run, _op

RETAIN = 3
PRUNING_NET = make_net(**{**PARAMS, "retain_blocks": 2})


@pytest.fixture
def net() -> Net:
    return make_net(retain_blocks=RETAIN)


@pytest.fixture
def chain(net: Net) -> Chain:
    return Chain(net)


def confirm_pending(chain: Chain) -> None:
    at = chain.head.timestamp_ms + 1000
    txs = [
        chain.net.tx("BANK", PaymentConfirmed(p.id, p.amount, f"ref-{p.id}"), at_ms=at)
        for p in sorted(chain.state.payments.values(), key=lambda p: p.id)
        if p.status == "pending"
    ]
    chain.block(*txs, at_ms=at)


def fixing(chain: Chain, date: dt.date, price: float) -> None:
    at = chain.head.timestamp_ms + 1000
    tx = chain.net.tx("ORACLE", PriceFixing(date, (("RB2705", price),)), at_ms=at)
    chain.block(tx, at_ms=at)


def open_and_settle(chain: Chain, rfq_ids: list[str], *, day: int = 1) -> None:
    """Open the contracts (maturing ``day`` days after TODAY), pay their margin, fix the
    maturity date (they settle) and pay the settlements and margin returns."""
    at = chain.head.timestamp_ms + 1000
    terms = swap_terms(days=day)
    chain.block(
        *(
            trade_tx(chain.net, rfq_id=r, terms=terms, at_ms=at, valid_ms=500, im_rate=0.001)
            for r in rfq_ids
        ),
        at_ms=at + 200,
    )
    confirm_pending(chain)
    fixing(chain, TODAY + dt.timedelta(days=day), 3300.0)
    confirm_pending(chain)
    chain.block(at_ms=chain.head.timestamp_ms + 10_000)  # past the quotes' validity and grace


def hot_entries(state: LedgerState, cid: str) -> list[str]:
    where = [name for name in ("trades",) if cid in state.trades]
    where += [pid for pid in state.payments if pid.startswith(f"{cid}/")]
    if cid in state.book:
        where.append("book")
    return where


def test_a_settled_contract_leaves_the_hot_state_after_the_window_with_its_trade_and_payments(
    chain: Chain,
) -> None:
    open_and_settle(chain, ["r1"])
    state = chain.state
    assert state.book.get("r1").status == Status.SETTLED
    paid = sorted(pid for pid in state.payments if pid.startswith("r1/"))
    assert paid == ["r1/im_return/1", "r1/initial_margin/1", "r1/settlement/1"]
    last_final = max(state.payments[p].confirmed_height or 0 for p in paid)
    while chain.head.height < last_final + RETAIN - 1:
        assert hot_entries(state, "r1"), f"gone too early at {chain.head.height}"
        chain.block()
    assert hot_entries(state, "r1")
    result = chain.block()
    assert result.height == last_final + RETAIN
    assert hot_entries(state, "r1") == []
    assert {(p.component, p.key) for p in result.pruned} == {
        ("contracts", "r1"),
        ("trades", "r1"),
        *(("payments", pid) for pid in paid),
    }
    assert state.book.open_count == 0 and len(state.book) == 0


def test_a_contract_with_a_payment_still_pending_stays_until_the_bank_confirms_it(
    chain: Chain,
) -> None:
    at = chain.head.timestamp_ms + 1000
    chain.block(trade_tx(chain.net, rfq_id="r1", terms=swap_terms(days=1), at_ms=at, valid_ms=500))
    confirm_pending(chain)
    fixing(chain, TODAY + dt.timedelta(days=1), 3300.0)  # settles: two payments pending
    for _ in range(3 * RETAIN):
        chain.block()
    assert "r1" in chain.state.book and "r1" in chain.state.trades
    confirm_pending(chain)
    confirmed_at = chain.head.height
    while chain.head.height < confirmed_at + RETAIN:
        assert "r1" in chain.state.book
        chain.block()
    assert hot_entries(chain.state, "r1") == []


def test_a_replay_gives_the_same_roots_and_a_restore_mid_window_prunes_at_the_same_height(
    net: Net, chain: Chain
) -> None:
    open_and_settle(chain, ["r1", "r2"])
    mid = chain.head.height
    snapshot = chain.state.snapshot()
    for _ in range(2 * RETAIN + 2):
        chain.block()
    assert len(chain.state.book) == 0

    replay = LedgerState(net.genesis)
    for height, timestamp, parent, txs, root in chain.blocks:
        replay.execute(height, timestamp, parent, txs)
        assert replay.state_root() == root, f"replay differs at {height}"

    restored = LedgerState.restore(net.genesis, snapshot)
    for height, timestamp, parent, txs, root in chain.blocks[mid:]:
        restored.execute(height, timestamp, parent, txs)
        assert restored.state_root() == root, f"restored state differs at {height}"


def test_a_rolled_back_block_puts_back_what_it_pruned(chain: Chain) -> None:
    open_and_settle(chain, ["r1"])
    state = chain.state
    while retention.prunable(state, chain.head.height + 1, chain.head.timestamp_ms) == []:
        chain.block()
    before_root, before_book = state.state_root(), state.book.state_bytes()
    executor = BlockExecutor(state, chain.head)
    height, at = chain.head.height + 1, chain.head.timestamp_ms + 1000
    pending = executor.execute(height, at, ())
    assert [p.key for p in pending.result.pruned if p.component == "contracts"] == ["r1"]
    assert "r1" not in state.book  # the shared book holds the proposal's changes
    pending.discard()
    assert state.state_root() == before_root
    assert state.book.state_bytes() == before_book
    assert hot_entries(state, "r1") != []
    pending = executor.execute(height, at, ())  # executed again: pruned again
    block = build_block(
        chain.head,
        proposer=proposer_for(height, 0, state.gov.previous_set),
        round=0,
        timestamp_ms=at,
        txs=(),
        state_root=pending.root,
        authorities=state.gov.previous_set,
    )
    pending.commit(block.header)
    assert hot_entries(state, "r1") == []


def test_replayed_events_of_a_pruned_contract_are_refused_and_change_nothing(
    chain: Chain,
) -> None:
    net = chain.net
    at = chain.head.timestamp_ms + 1000
    accept = trade_tx(net, rfq_id="r1", terms=swap_terms(days=1), at_ms=at, valid_ms=500)
    chain.block(accept, at_ms=at + 200)
    confirm_pending(chain)
    at = chain.head.timestamp_ms + 1000
    chain.block(net.tx("C1", CloseOutRequest("r1", 3250.0), at_ms=at), at_ms=at)
    close = net.tx("D1", CloseOutRequest("r1", 3250.0), at_ms=at + 1)
    chain.block(close, at_ms=at + 2)
    assert chain.state.book.get("r1").status == Status.CLOSED_OUT
    assert any(k.startswith("close_out:r1/") for k in chain.state.book._seen)
    confirm_pending(chain)
    paid = {pid: chain.state.payments[pid] for pid in chain.state.payments}
    for _ in range(RETAIN + 1):
        chain.block()
    assert hot_entries(chain.state, "r1") == []
    assert not any("r1/" in k for k in chain.state.book._seen)

    at = chain.head.timestamp_ms + 1000
    fresh_accept = trade_tx(
        net, rfq_id="r1", terms=swap_terms(days=30), at_ms=at - 60_000, valid_ms=500
    )
    replays = [
        accept,  # the same accept transaction
        fresh_accept,  # another accept of an old quote for the same RFQ
        close,  # the close-out request
        *(
            net.tx("BANK", PaymentConfirmed(p.id, p.amount, "again"), at_ms=at)
            for p in paid.values()
        ),
        net.tx("C1", CloseOutRequest("r1", 3300.0), at_ms=at),
    ]
    root_parts = [
        (name, digest)
        for name, digest in chain.state.root_parts().components
        if name in ("book", "trades", "payments")
    ]
    result = chain.block(*replays, at_ms=at)
    assert [r.ok for r in result.receipts] == [False] * len(replays)
    assert hot_entries(chain.state, "r1") == []
    assert [
        (name, digest)
        for name, digest in chain.state.root_parts().components
        if name in ("trades", "payments")
    ] == [p for p in root_parts if p[0] != "book"]
    assert chain.state.book.ids() == []


def test_the_hot_state_stays_proportional_to_live_contracts_as_waves_of_trades_settle(
    chain: Chain,
) -> None:
    """Waves of 20 contracts open and settle; 5 stay live throughout. The maps, the book
    and its seen keys stay bounded by what is live plus one window's worth of endings."""
    state = chain.state
    at = chain.head.timestamp_ms + 1000
    keep = swap_terms(days=150)
    chain.block(*(trade_tx(chain.net, rfq_id=f"live{i}", terms=keep, at_ms=at) for i in range(5)))
    confirm_pending(chain)
    sizes = []
    for wave in range(8):
        open_and_settle(chain, [f"w{wave}-{i}" for i in range(20)], day=wave + 1)
        for _ in range(RETAIN + 1):
            chain.block()
        sizes.append(
            (len(state.payments), len(state.book), len(state.trades), len(state.book._seen))
        )
    assert state.book.open_count == 5
    assert all(book == 5 and trades == 5 for _, book, trades, _ in sizes), sizes
    assert max(payments for payments, *_ in sizes) <= 5 * 4, sizes
    assert sizes[-1] == sizes[1], sizes  # flat, not growing with the settled ones


def test_a_light_client_believes_history_under_an_old_header_that_it_would_call_stale(
    chain: Chain,
) -> None:
    from rfq.ledger.light import LightError

    from .test_light import answer, light

    open_and_settle(chain, ["r1"])
    old = answer(chain, ("CCP", "D1", "D2"), (("contracts", "r1"),))
    chain.block(at_ms=chain.head.timestamp_ms + 120_000)
    client = light(chain.net)
    client.verify(answer(chain, ("CCP", "D1", "D2")))
    followed = client.height
    with pytest.raises(LightError) as stale:
        client.verify(old)
    assert stale.value.kind == "stale"
    verified = client.verify_history(old)
    assert verified.entry("contracts", "r1").present
    assert client.height == followed  # history never moves what the client follows


def test_a_long_lived_contract_keeps_its_margin_and_open_call_not_a_payment_per_fixing(
    chain: Chain,
) -> None:
    net = chain.net
    at = chain.head.timestamp_ms + 1000
    chain.block(trade_tx(net, rfq_id="r1", terms=swap_terms(days=150), at_ms=at, valid_ms=500))
    confirm_pending(chain)
    sizes = []
    for day in range(1, 13):
        fixing(chain, TODAY + dt.timedelta(days=day), 3100.0 if day % 2 else 3300.0)
        confirm_pending(chain)  # the margin call is met
        for _ in range(RETAIN + 1):
            chain.block()
        seen = [k for k in chain.state.book._seen if k.startswith("margin_posted:")]
        sizes.append((len(chain.state.payments), len(seen)))
    state = chain.state
    assert state.payments["r1/initial_margin/1"].status == "confirmed"  # kept while it lives
    assert state.book.get("r1").status == Status.LIVE
    assert all(payments == 1 and seen == 0 for payments, seen in sizes), sizes
    # A call left open when the contract ends still lapses, its predecessors long gone.
    fixing(chain, TODAY + dt.timedelta(days=13), 3000.0)
    [call] = [p for p in state.payments.values() if p.kind == "margin_call"]
    assert call.status == "pending" and call == state.call_payment("r1")
    at = chain.head.timestamp_ms + 1000
    chain.block(
        net.tx("C1", CloseOutRequest("r1", 3000.0), at_ms=at),
        net.tx("D1", CloseOutRequest("r1", 3000.0), at_ms=at + 1),
        at_ms=at + 2,
    )
    assert state.book.get("r1").status == Status.CLOSED_OUT
    assert state.payments[call.id].status == "lapsed"


def test_the_book_prunes_a_terminal_contract_and_its_seen_keys_and_a_rollback_restores_both() -> (
    None
):
    from rfq.contracts import ContractBook
    from rfq.contracts.events import BlockPassed, CloseOut, Fixing

    from ..contracts.test_book_journal import base, events

    def ended_book() -> ContractBook:
        book = base()
        book.apply(CloseOut("close-0", "C1", dt.date(2025, 11, 4), 3150.0))
        book.state_digest()
        return book

    book = ended_book()
    assert "close_out:C1/close-0" in book._seen
    with pytest.raises(ValidationError):
        book.prune("C0")  # live: never pruned
    before, digest = book.state_bytes(), book.state_digest()
    book.checkpoint()
    book.prune("C1")
    assert "C1" not in book and "close_out:C1/close-0" not in book._seen
    pruned_bytes = book.state_bytes()
    assert ContractBook.from_state_bytes(pruned_bytes).state_digest() == book.state_digest()
    for item in events():  # the block goes on: the clock and a fixing tick over the rest
        if isinstance(item, BlockPassed | Fixing):
            book.apply(item)
    book.rollback()
    assert book.state_bytes() == before and book.state_digest() == digest
    assert book.get("C1").status == Status.CLOSED_OUT
    # Pruned without a journal, it is the book the journaled prune made.
    twin = ended_book()
    twin.prune("C1")
    assert twin.state_bytes() == pruned_bytes
    with pytest.raises(ValidationError):
        twin.apply(CloseOut("close-1", "C1", dt.date(2025, 11, 5), 3150.0))


_market = st.one_of(  # trades, fixings that call margin and mature them, the bank paying
    st.tuples(
        st.just("trade"),
        st.sampled_from(["C1", "C2"]),
        st.sampled_from(["D1", "D2"]),
        st.sampled_from([Side.BUY, Side.SELL]),
        st.sampled_from([100, 1000]),
        st.sampled_from([1, 2, 5]),
        st.booleans(),
        st.just(0.1),
        st.just(0),
    ),
    st.tuples(st.just("fix"), st.sampled_from([-0.05, 0.05])),
    st.just(("confirm", 1.0)),
)


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(st.lists(st.integers(0, 2).flatmap(lambda k: _op if k == 0 else _market), max_size=40))
def test_any_run_prunes_the_same_after_a_restore_at_any_height(ops: list[tuple]) -> None:  # type: ignore[type-arg]
    """Random runs of every transaction kind with a window of 2 blocks: the state restored
    from the snapshot before each block executes that block to the same root (the retiring
    heap a restore rebuilds prunes exactly what the running node's prunes)."""
    net = PRUNING_NET
    previous: list[bytes] = [LedgerState(net.genesis).snapshot()]
    pruned: list[int] = []

    def restored_executes_the_same(state: LedgerState) -> None:
        height, timestamp, parent, txs, root = run.chain.blocks[-1]
        restored = LedgerState.restore(net.genesis, previous[0])
        restored.execute(height, timestamp, parent, txs)
        assert restored.state_root() == root, f"at {height}"
        pruned.append(len(run.chain.results[-1].pruned))
        previous[0] = state.snapshot()

    run = Run(net, after_block=restored_executes_the_same)
    for op in ops:
        run.step(op)
        run.block(at_ms=run.chain.head.timestamp_ms + 20_000)  # windows and quotes pass
    event(f"pruned entries: {'some' if sum(pruned) else 'none'}")


def test_a_wave_larger_than_a_block_prunes_is_spread_over_blocks_the_same_after_a_restore(
    net: Net, chain: Chain
) -> None:
    open_and_settle(chain, [f"r{i:03d}" for i in range(300)])
    start = len(chain.blocks)
    snapshots = {}
    per_block = []
    while len(chain.state.book):
        snapshots[len(chain.blocks)] = chain.state.snapshot()
        result = chain.block()
        items = {(p.component, p.key) for p in result.pruned}
        contracts = {key for component, key in items if component == "contracts"}
        loose = {k for c, k in items if c == "payments" and k.split("/")[0] not in contracts}
        per_block.append(len(contracts) + len(loose))
        assert len(chain.blocks) - start < 60, "the wave never drains"
    assert max(per_block) <= retention.MAX_PRUNED_PER_BLOCK
    assert sum(1 for n in per_block if n) >= 3  # 300 contracts and their payments
    middle = start + next(k for k, n in enumerate(per_block) if n) + 1
    restored = LedgerState.restore(net.genesis, snapshots[middle])
    for height, timestamp, parent, txs, root in chain.blocks[middle:]:
        restored.execute(height, timestamp, parent, txs)
        assert restored.state_root() == root, f"restored state differs at {height}"


def test_a_history_query_for_too_many_keys_or_an_unknown_component_is_refused(net: Net) -> None:
    from rfq.queries import HISTORY_KEYS_LIMIT, HistoryQuery, refusal

    c1 = net.genesis.member("C1")
    assert refusal(c1, HistoryQuery("payments", ("r1/settlement/1",))) is None
    too_many = HistoryQuery("payments", tuple(f"k{i}" for i in range(HISTORY_KEYS_LIMIT + 1)))
    assert refusal(c1, too_many) == (
        f"at most {HISTORY_KEYS_LIMIT} keys per history query ({HISTORY_KEYS_LIMIT + 1} asked)"
    )
    assert "no history of 'members'" in (refusal(c1, HistoryQuery("members", ("C1",))) or "")
