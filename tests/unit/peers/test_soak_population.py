"""The soak's client population: most pay on time, some late, a few designed to fail."""

from __future__ import annotations

from peers.soak import (
    INVARIANTS,
    VIOLATIONS_LISTED,
    Conduct,
    SoakConfig,
    Violation,
    check_bad_input,
    designed_to_fail,
    listed,
    plan_population,
)


def test_three_clients_are_one_on_time_one_late_and_one_designed_to_fail():
    plans = plan_population(["C1", "C2", "C3"], failing_balance=500.0, late_s=3.0)
    assert [p.conduct for p in plans] == [Conduct.ON_TIME, Conduct.LATE, Conduct.FAILING]
    assert plans[1].late_s == 3.0 and plans[1].balance is None
    assert plans[2].balance == 500.0 and plans[2].late_s is None
    assert designed_to_fail(plans) == {"C3"}


def test_most_of_ten_clients_pay_on_time():
    plans = plan_population([f"C{i}" for i in range(1, 11)])
    conducts = [p.conduct for p in plans]
    assert conducts.count(Conduct.ON_TIME) == 6
    assert conducts.count(Conduct.LATE) == 2
    assert conducts.count(Conduct.FAILING) == 2


def test_a_lone_client_pays_on_time_and_two_clients_fail_nobody():
    assert [p.conduct for p in plan_population(["C1"])] == [Conduct.ON_TIME]
    assert designed_to_fail(plan_population(["C1", "C2"])) == frozenset()


def test_bad_configurations_are_named_in_one_line():
    assert check_bad_input(SoakConfig()) is None
    assert check_bad_input(SoakConfig(days=0)) == "--days must be at least 1"
    assert check_bad_input(SoakConfig(clients=0)) == "--clients must be at least 1"
    for seconds in (0.0, -5.0, float("nan"), float("inf")):
        assert "--day-seconds" in (check_bad_input(SoakConfig(day_seconds=seconds)) or "")


def test_a_violation_prints_as_the_report_names_it():
    v = Violation("no_bad_trades", 12, ("C1-x", "C1"), "why")
    assert v.as_dict() == {
        "invariant": "no_bad_trades",
        "height": 12,
        "ids": ["C1-x", "C1"],
        "detail": "why",
    }
    assert len(INVARIANTS) == 9


def test_a_report_lists_the_first_violations_of_an_invariant_and_counts_the_rest():
    found = [
        Violation("bank_conserves", 103, (f"C1-{i}/initial_margin/1",), "pending")
        for i in range(VIOLATIONS_LISTED + 7)
    ]
    shown = listed("bank_conserves", found)
    assert shown[:VIOLATIONS_LISTED] == found[:VIOLATIONS_LISTED]
    assert len(shown) == VIOLATIONS_LISTED + 1
    assert shown[-1].invariant == "bank_conserves" and shown[-1].ids == ()
    assert shown[-1].detail.startswith("7 more")
    few = found[:3]
    assert listed("bank_conserves", few) == few
