"""no_bad_trades: cancelled RFQs, expired quotes, credit over limits, defaulted parties."""

from __future__ import annotations

from peers.soak import DefaultFact, TradeFact, check_no_bad_trades


def trade(rfq: str = "C1-a", *, height: int = 10, **kw) -> TradeFact:
    fields = {
        "client": "C1", "dealer": "D1", "block_ms": 10_000, "accept_ms": 9_000,
        "valid_until_ms": 20_000, "tx_id": "t" + rfq, "initial_margin": 1_000.0,
        "dealer_line": 400.0, **kw,
    }  # fmt: skip
    return TradeFact(rfq_id=rfq, height=height, **fields)  # type: ignore[arg-type]


def test_a_trade_from_a_live_quote_with_fair_credit_is_clean():
    assert check_no_bad_trades([trade(), trade("C1-b", height=11)]) == []


def test_a_trade_from_a_cancelled_rfq_is_named():
    [v] = check_no_bad_trades([trade()], cancelled={"C1-a"})
    assert (v.invariant, v.height, v.ids) == ("no_bad_trades", 10, ("C1-a", "C1", "D1"))
    assert "cancelled" in v.detail


def test_accepting_or_committing_after_the_quote_expired_is_named():
    late_accept = trade(accept_ms=21_000)
    late_block = trade("C1-b", block_ms=26_000)
    details = [v.detail for v in check_no_bad_trades([late_accept, late_block])]
    assert any("after the quote's validity" in d for d in details)
    assert any("after the quote expired" in d for d in details)


def test_a_stale_probe_that_committed_is_named():
    [v] = check_no_bad_trades([trade()], stale={"C1-a"})
    assert "expired quote" in v.detail


def test_a_credit_line_over_the_margin_or_over_the_limit_is_named():
    [over_margin] = check_no_bad_trades([trade(dealer_line=1_500.0)])
    assert "exceeds the initial margin" in over_margin.detail
    trades = [trade(f"C1-{i}", height=i, dealer_line=400.0, initial_margin=500.0) for i in range(3)]
    [over_limit] = check_no_bad_trades(trades, credit_limit=1_000.0)
    assert over_limit.height == 2 and "over its limit" in over_limit.detail


def test_lines_of_ended_contracts_no_longer_count_against_the_limit():
    trades = [
        trade(f"C1-{i}", height=i, dealer_line=400.0, initial_margin=500.0, ended_height=i + 1)
        for i in range(5)
    ]
    assert check_no_bad_trades(trades, credit_limit=1_000.0) == []


def test_trades_after_a_party_defaulted_are_one_violation_and_one_before_is_none():
    default = DefaultFact("C1", "margin_call", 12, "margin call 1 unmet by block 11")
    trades = [trade(height=12), trade("C1-b", height=13), trade("C1-c", height=15)]
    [v] = check_no_bad_trades(trades, defaults=[default])
    assert (v.height, v.ids) == (13, ("C1", "C1-b", "C1-c"))
    assert v.detail.startswith("C1 had defaulted at height 12, yet traded 2 time(s) after it")
