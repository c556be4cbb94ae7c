"""views_match_chain: the query service's counts and the clients' outcomes against the chain."""

from __future__ import annotations

from peers.soak import (
    Counts,
    LoadView,
    TradeFact,
    ViewSnapshot,
    check_views_match_chain,
    load_view,
    uneven_pages,
)

COUNTS = {10: Counts(5, 5, 4, 9), 12: Counts(6, 6, 5, 11)}


def trade(rfq: str, client: str = "C1", tx: str = "") -> TradeFact:
    return TradeFact(rfq, client, "D1", 5, 0, 0, 1, tx or f"tx-{rfq}", 0.0, 0.0)


def view(**kw) -> ViewSnapshot:
    fields = {
        "open_contracts": 5, "trades": 6, "contracts": 6, "contracts_height": 12, "payments": 10,
        **kw,
    }  # fmt: skip
    return ViewSnapshot("D1", (10, 12), **fields)  # type: ignore[arg-type]


def test_counts_within_the_heights_the_query_ran_between_are_clean():
    assert check_views_match_chain(view(), COUNTS, [], None) == []


def test_a_query_that_lists_fewer_trades_than_the_chain_holds_is_named():
    [v] = check_views_match_chain(view(trades=4), COUNTS, [], None)
    assert (v.invariant, v.height, v.ids) == ("views_match_chain", 12, ("D1",))
    assert "listed 4 but the chain holds 5-6" in v.detail


def test_contract_and_open_contract_counts_must_be_exact_at_their_height():
    found = check_views_match_chain(view(contracts=5, open_contracts=4), COUNTS, [], None)
    assert len(found) == 2


def test_a_query_that_failed_is_a_violation():
    [v] = check_views_match_chain(view(errors=("TradesQuery failed: timeout",)), COUNTS, [], None)
    assert "TradesQuery failed" in v.detail


def test_what_a_client_was_told_is_final_must_be_on_chain_with_its_transaction():
    events = [
        {"event": "accepted", "rfq": "C1-a", "client": "C1"},
        {"event": "committed", "rfq": "C1-a", "client": "C1", "tx": "tx-C1-a"},
        {"event": "accepted", "rfq": "C1-b", "client": "C1"},
        {"event": "committed", "rfq": "C1-b", "client": "C1", "tx": "tx-C1-b"},
    ]
    load = load_view(events, {"committed": 2})
    assert check_views_match_chain(None, {}, [trade("C1-a"), trade("C1-b")], load) == []
    missing = check_views_match_chain(None, {}, [trade("C1-a")], load)
    assert [v.ids for v in missing] == [("C1-b",)]
    other_tx = check_views_match_chain(None, {}, [trade("C1-a"), trade("C1-b", tx="zz")], load)
    assert [v.ids[0] for v in other_tx] == ["C1-b"]


def test_a_trade_of_a_simulated_client_it_never_accepted_is_named():
    load = LoadView(0, {}, accepted=set(), clients={"C1"})
    [v] = check_views_match_chain(None, {}, [trade("C1-z"), trade("C9-y", client="C9")], load)
    assert v.ids == ("C1-z", "C1")


def test_the_load_counting_other_than_it_logged_is_named():
    [v] = check_views_match_chain(None, {}, [], LoadView(3, {}, set(), set()))
    assert "counted 3" in v.detail


def test_pages_whose_rows_and_total_disagree_are_errors_only_on_a_chain_that_stood_still():
    uneven = ["ContractsQuery: total 100005, 100003 rows"]
    assert uneven_pages(uneven, 110, 110) == uneven
    assert uneven_pages(uneven, 108, 110) == []
    assert uneven_pages(uneven, 110, None) == []
    assert uneven_pages([], 110, 110) == []
