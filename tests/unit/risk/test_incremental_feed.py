"""Fed from a ledger block by block, the monitor keeps the whole-market assessment."""

from __future__ import annotations

from peers.benchmarks.scale import _next_weekday
from peers.prebuild import MarketBuilder, bench_market
from rfq.contracts.model import Status
from rfq.ledger.state import BlockResult, business_date
from rfq.risk.incremental import IncrementalMonitor, cash_margin_held, feed
from rfq.risk.incremental import named_contracts as named_by
from rfq.risk.monitor import Assessment, MonitorInput, assess


def whole_market(market: MarketBuilder) -> Assessment:
    state = market.state
    views = [state.book.get(cid) for cid in state.book.ids()]
    live = [v for v in views if not v.status.terminal]
    defaulted = [v for v in views if v.status == Status.DEFAULTED]
    return assess(
        MonitorInput(
            height=state.height,
            as_of=business_date(state.timestamp_ms, state.book),
            members=tuple(state.members.values()),
            contracts=(*live, *defaulted),
            cash_margin={v.contract.id: cash_margin_held(state, v.contract.id) for v in live},
            ratings={m: r.score for m, r in state.ratings.items()},
            guarantees=tuple(state.guarantees.values()),
        )
    )


def incremental(market: MarketBuilder, monitor: IncrementalMonitor) -> Assessment:
    state = market.state
    return monitor.assess(
        state.height,
        business_date(state.timestamp_ms, state.book),
        tuple(state.members.values()),
        {m: r.score for m, r in state.ratings.items()},
        tuple(state.guarantees.values()),
    )


def test_fed_block_by_block_from_a_ledger_the_monitor_keeps_the_whole_market_assessment() -> None:
    market = bench_market(4)
    market.fill(30, days=30)
    monitor = IncrementalMonitor()
    feed(monitor, market.state, None)  # a monitor starting on a state reads it all
    assert incremental(market, monitor).rows == whole_market(market).rows

    def step(result: BlockResult) -> None:
        put = feed(monitor, market.state, named_by(market.state, result), result.fixed)
        got, want = incremental(market, monitor), whole_market(market)
        assert got.rows == want.rows
        assert got.exposures == want.exposures
        steps.append(put)

    steps: list[int] = []
    date = market.business_date()
    for n in range(4):
        txs, verified = market.trades(5, days=60 if n % 2 else 20)
        step(market.block(txs, verified)[0])
        date = _next_weekday(date)
        step(market.block([market.fixing(date, 3200.0 + 25 * n)], set())[0])
    open_before = market.state.book.open_count
    maturity = market.state.book.get(market.state.book.ids()[0]).contract.terms.maturity
    step(market.block([market.fixing(_next_weekday(maturity), 3150.0)], set())[0])
    assert market.state.book.open_count < open_before  # the short contracts settled
    txs, verified = market.trades(5, days=60)
    step(market.block(txs, verified)[0])
    assert steps[0] == 5  # a block of trades: only the contracts it opened
    assert len(monitor.live) == market.state.book.open_count


def test_a_contract_gone_from_the_book_leaves_the_monitor(monkeypatch) -> None:
    """Retention takes an ended contract out of the hot state; a block names it (pruned) and
    feed finds no view of it: the monitor drops it from its netting set."""
    market = bench_market(2)
    market.fill(6, days=60)
    monitor = IncrementalMonitor()
    feed(monitor, market.state, None)
    gone = sorted(monitor.live)[0]
    book = market.state.book
    find = book.find
    monkeypatch.setattr(
        book, "find", lambda cid, **view: None if cid == gone else find(cid, **view)
    )
    assert feed(monitor, market.state, {gone}) == 0
    assert gone not in monitor.live
    row = next(r for r in incremental(market, monitor).rows if r.institution == "C1")
    assert row.open_contracts == sum(1 for v in monitor.live.values() if v.contract.client == "C1")
