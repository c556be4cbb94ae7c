"""Cascade, Eisenberg-Noe and DebtRank on small networks worked by hand."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from peers.cli import main
from rfq.errors import ValidationError
from rfq.risk.contagion import (
    Exposure,
    Institution,
    build_network,
    cascade,
    debtrank,
    eisenberg_noe,
    impact_matrix,
)

DATA = Path(__file__).parent / "data"


def _banks(**capital: float) -> list[Institution]:
    return [Institution(id=name, capital=value, weight=1.0) for name, value in capital.items()]


# --- cascade (paper formulas 10-11) -----------------------------------------------------------


def test_a_default_spreads_round_by_round_as_in_the_papers_figure_6() -> None:
    # A defaults. C lost 60 on A: 100 - 60 = 40 < 70 it owes (B 30 + F 40): round 1.
    # F lost 40 on C: 60 - 40 = 20 < 30 it owes D: round 2. B lost 30 on C: 100 - 30 = 70, owes
    # nothing: stands. D lost 30 on F: 50 - 30 = 20 < 40 it owes E: round 3. E lost 40 on D:
    # 100 - 40 = 60 >= 10 it owes B: stands.
    document = json.loads((DATA / "cascade_paper_figure6.json").read_text())
    network = build_network(
        [Institution(**i) for i in document["institutions"]],
        [Exposure(**x) for x in document["exposures"]],
    )
    result = cascade(network, ["A"])
    assert result.rounds == (("A",), ("C",), ("F",), ("D",))
    assert result.defaulted == ("A", "C", "D", "F")
    assert result.losses["E"] == 40
    assert result.losses["B"] == 30


def test_botc_risk_contagion_prints_the_cascade_rounds(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = main(
        ["risk", "contagion", str(DATA / "cascade_paper_figure6.json"), "--model", "cascade"]
    )
    out = json.loads(capsys.readouterr().out)
    assert code == 0
    assert out == {"defaulted": ["A", "C", "D", "F"], "rounds": [["A"], ["C"], ["F"], ["D"]]}


def test_capital_left_exactly_equal_to_what_is_owed_does_not_default() -> None:
    # The rule is strict: default when capital - losses < owed. Bob lost 50 on Alice and has
    # 100 - 50 = 50 left, exactly the 50 he owes Carol: he stands.
    banks = _banks(alice=0, bob=100, carol=100)
    exposures = [Exposure("bob", "alice", 50), Exposure("carol", "bob", 50)]
    result = cascade(build_network(banks, exposures), ["alice"])
    assert result.defaulted == ("alice",)
    assert result.rounds == (("alice",),)


def test_capital_left_a_little_below_what_is_owed_defaults() -> None:
    # Same, but Bob owes Carol 50.5: 50 < 50.5, so he defaults in round 1.
    banks = _banks(alice=0, bob=100, carol=100)
    exposures = [Exposure("bob", "alice", 50), Exposure("carol", "bob", 50.5)]
    result = cascade(build_network(banks, exposures), ["alice"])
    assert result.rounds == (("alice",), ("bob",))


def test_a_tie_broken_only_by_rounding_still_counts_as_a_tie() -> None:
    # Losses 0.1 + 0.2 from two defaulters (0.30000000000000004 in floating point) against
    # capital 1.3 and 1.0 owed: exactly equal on paper, so no default.
    banks = _banks(alice=0, bob=0, carol=1.3, dave=10)
    exposures = [
        Exposure("carol", "alice", 0.1),
        Exposure("carol", "bob", 0.2),
        Exposure("dave", "carol", 1.0),
    ]
    result = cascade(build_network(banks, exposures), ["alice", "bob"])
    assert "carol" not in result.defaulted


def test_lgd_scales_the_loss_and_defaults_to_one() -> None:
    # With lgd 0.4 Bob loses 0.4 x 100 = 40: 100 - 40 = 60 >= 55 owed, he stands. Without an
    # lgd he loses all 100: 0 < 55, he defaults.
    banks = _banks(alice=0, bob=100, carol=100)
    partial = [Exposure("bob", "alice", 100, lgd=0.4), Exposure("carol", "bob", 55)]
    full = [Exposure("bob", "alice", 100), Exposure("carol", "bob", 55)]
    assert cascade(build_network(banks, partial), ["alice"]).defaulted == ("alice",)
    assert cascade(build_network(banks, full), ["alice"]).defaulted == ("alice", "bob")


def test_losses_accumulate_across_rounds() -> None:
    # Erin is exposed 30 to Alice and 30 to Carol, has 80 and owes Frank 25. Round 0: Alice
    # defaults, Erin has 80 - 30 = 50 >= 25. Carol (capital 10, lost 30 on Alice, owes Erin 30)
    # defaults in round 1. Round 2: Erin has 80 - 60 = 20 < 25 and defaults.
    banks = _banks(alice=0, carol=40, erin=80, frank=100)
    exposures = [
        Exposure("carol", "alice", 30),
        Exposure("erin", "alice", 30),
        Exposure("erin", "carol", 30),
        Exposure("frank", "erin", 25),
    ]
    result = cascade(build_network(banks, exposures), ["alice"])
    assert result.rounds == (("alice",), ("carol",), ("erin",))
    assert result.losses["erin"] == 60


def test_an_institution_already_short_before_any_loss_defaults_in_the_first_round() -> None:
    # The rule applies to every standing institution: Grace owes 50 with capital 40 and fails
    # it although the shock does not touch her.
    banks = _banks(alice=0, bob=100, grace=40)
    exposures = [Exposure("bob", "alice", 10), Exposure("bob", "grace", 50)]
    result = cascade(build_network(banks, exposures), ["alice"])
    assert result.rounds == (("alice",), ("grace",))


# --- Eisenberg-Noe ----------------------------------------------------------------------------


def test_eisenberg_noe_clears_the_three_bank_example() -> None:
    # A owes B 10 and C 10 (p_bar 20), B owes C 10, C owes A 10; e = (5, 2, 3).
    # Full payment: A has 5 + 10 = 15 < 20 -> A defaults (round 1).
    # A pays all it has, p_A = 5 + p_C = 15, half to each: B has 2 + 7.5 = 9.5 < 10 -> B
    # defaults (round 2); C has 3 + 7.5 + 10 = 20.5 >= 10.
    # Then p_B = 2 + 7.5 = 9.5, p_A = 5 + 10 = 15; C has 3 + 7.5 + 9.5 = 20 >= 10: stable.
    # Clearing vector (15, 9.5, 10). Equity = e + received - p_bar:
    # A 5 + 10 - 20 = -5, B 2 + 7.5 - 10 = -0.5, C 3 + 7.5 + 9.5 - 10 = 10.
    document = json.loads((DATA / "eisenberg_noe_three_banks.json").read_text())
    network = build_network(
        [Institution(**i) for i in document["institutions"]],
        [Exposure(**x) for x in document["exposures"]],
    )
    result = eisenberg_noe(network)
    assert result.payments == pytest.approx({"A": 15.0, "B": 9.5, "C": 10.0})
    assert result.equity == pytest.approx({"A": -5.0, "B": -0.5, "C": 10.0})
    assert result.defaulted == ("A", "B")
    assert result.rounds == (("A",), ("B",))


def test_botc_risk_contagion_prints_the_clearing_vector_and_equity(
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = DATA / "eisenberg_noe_three_banks.json"
    assert main(["risk", "contagion", str(path), "--model", "eisenberg-noe"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["defaulted"] == ["A", "B"]
    assert out["rounds"] == [["A"], ["B"]]
    assert out["payments"] == pytest.approx({"A": 15.0, "B": 9.5, "C": 10.0})
    assert out["equity"] == pytest.approx({"A": -5.0, "B": -0.5, "C": 10.0})


def test_eisenberg_noe_pays_in_full_when_everyone_can() -> None:
    banks = [Institution("alice", external_assets=10), Institution("bob", external_assets=0)]
    result = eisenberg_noe(build_network(banks, [Exposure("bob", "alice", 8)]))
    assert result.payments == {"alice": 8.0, "bob": 0.0}
    assert result.equity == {"alice": 2.0, "bob": 8.0}
    assert result.defaulted == ()
    assert result.rounds == ()


def test_a_closed_ring_of_defaulters_clears_at_what_flows_in() -> None:
    # A and B owe each other 10 and C owes A 4; e = (0, 0, 1). C has only its 1: it pays 1
    # and defaults. The ring clears in full: A has 1 + 10 = 11 >= 10 and B has 10 >= 10, so
    # p = (10, 10, 1) is the greatest fixed point of p = min(p_bar, e + Pi^T p).
    banks = [
        Institution("A", external_assets=0),
        Institution("B", external_assets=0),
        Institution("C", external_assets=1),
    ]
    exposures = [Exposure("B", "A", 10), Exposure("A", "B", 10), Exposure("A", "C", 4)]
    result = eisenberg_noe(build_network(banks, exposures))
    assert result.payments == pytest.approx({"A": 10.0, "B": 10.0, "C": 1.0})
    assert result.defaulted == ("C",)


def test_the_clearing_vector_is_a_fixed_point_on_a_random_network() -> None:
    rng = np.random.default_rng(7)
    n = 40
    banks = [Institution(f"b{i}", external_assets=float(rng.uniform(0, 30))) for i in range(n)]
    exposures = []
    for _ in range(300):
        creditor, debtor = rng.choice(n, size=2, replace=False)
        exposures.append(Exposure(f"b{creditor}", f"b{debtor}", float(rng.uniform(0, 20))))
    network = build_network(banks, exposures)
    result = eisenberg_noe(network)
    p = np.array([result.payments[name] for name in network.ids])
    owed = network.owed()
    share = np.divide(network.amount, owed[network.debtor])
    received = np.bincount(network.creditor, weights=share * p[network.debtor], minlength=n)
    assert p == pytest.approx(np.minimum(owed, network.external_assets + received), abs=1e-8)
    assert result.defaulted  # the draw is tight enough that someone defaults


# --- DebtRank ---------------------------------------------------------------------------------


def test_debtrank_on_a_three_node_chain_worked_by_hand() -> None:
    # B is exposed 50 to A, C is exposed 100 x lgd 0.8 = 80 to B; capital 100 each.
    # Impacts: W(A -> B) = 50/100 = 0.5, W(B -> C) = 80/100 = 0.8. Weights 1, 1, 2 give values
    # v = (0.25, 0.25, 0.5). A starts at 1.
    # Step 1: h_B = 0.5 x 1 = 0.5. Step 2: h_C = 0.8 x 0.5 = 0.4. Step 3: C has no creditors.
    # R = (1 x 0.25 + 0.5 x 0.25 + 0.4 x 0.5) - 1 x 0.25 = 0.325; no one else reaches 1.
    document = json.loads((DATA / "debtrank_chain.json").read_text())
    network = build_network(
        [Institution(**i) for i in document["institutions"]],
        [Exposure(**x) for x in document["exposures"]],
    )
    result = debtrank(network, ["A"])
    assert result.stress == pytest.approx({"A": 1.0, "B": 0.5, "C": 0.4})
    assert result.additional_stress == pytest.approx(0.325)
    assert result.additional_defaults == 0
    assert result.defaulted == ("A",)
    assert result.rounds == (("A",),)


def test_botc_risk_contagion_prints_debtrank(capsys: pytest.CaptureFixture[str]) -> None:
    path = DATA / "debtrank_chain.json"
    assert main(["risk", "contagion", str(path), "--model", "debtrank"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["additional_stress"] == pytest.approx(0.325)
    assert out["stress"] == pytest.approx({"A": 1.0, "B": 0.5, "C": 0.4})
    assert out["additional_defaults"] == 0
    assert out["defaulted"] == ["A"]
    assert out["rounds"] == [["A"]]


def test_an_exposure_as_large_as_capital_makes_the_creditor_default_in_debtrank() -> None:
    # W(A -> B) = min(1, 150 / 100) = 1, so B reaches stress 1; W(B -> C) = 0.2 -> h_C = 0.2.
    banks = _banks(A=100, B=100, C=100)
    exposures = [Exposure("B", "A", 150), Exposure("C", "B", 20)]
    result = debtrank(build_network(banks, exposures), ["A"])
    assert result.stress == pytest.approx({"A": 1.0, "B": 1.0, "C": 0.2})
    assert result.additional_defaults == 1
    assert result.rounds == (("A",), ("B",))
    # Equal weights: R = (1 + 1 + 0.2) / 3 - 1 / 3 = 0.4.
    assert result.additional_stress == pytest.approx(0.4)


def test_each_node_propagates_its_stress_only_once() -> None:
    # A shocked. W(A -> B) = 0.5, W(A -> C) = 0.2, W(B -> C) = 0.5, W(C -> D) = 1.
    # Step 1: h_B = 0.5, h_C = 0.2; both distressed. Step 2: C gains 0.5 x 0.5 = 0.25 from B
    # (h_C = 0.45) while passing on only its step-1 stress to D: h_D = 1 x 0.2 = 0.2. Step 3:
    # C is inactive, so its later 0.25 never reaches D.
    banks = _banks(A=100, B=100, C=100, D=100)
    exposures = [
        Exposure("B", "A", 50),
        Exposure("C", "A", 20),
        Exposure("C", "B", 50),
        Exposure("D", "C", 100),
    ]
    result = debtrank(build_network(banks, exposures), ["A"])
    assert result.stress == pytest.approx({"A": 1.0, "B": 0.5, "C": 0.45, "D": 0.2})


def test_the_impact_matrix_caps_at_one_and_sums_parallel_exposures() -> None:
    banks = _banks(A=100, B=40, C=0)
    exposures = [Exposure("B", "A", 10), Exposure("B", "A", 10, lgd=0.5), Exposure("C", "A", 1)]
    impact = impact_matrix(build_network(banks, exposures)).toarray()
    assert impact[1, 0] == pytest.approx(15 / 40)  # (10 + 5) / 40
    assert impact[2, 0] == 1.0  # no capital: any loss wipes it out


def test_a_network_is_built_once_and_reused_for_several_shocks() -> None:
    # Alice (200) owes Bob 100, Bob (100) owes Carol 1. Alice's default costs Bob 100 and
    # 0 < 1 fells him; Carol's costs no one anything.
    banks = _banks(alice=200, bob=100, carol=100)
    network = build_network(banks, [Exposure("bob", "alice", 100), Exposure("carol", "bob", 1)])
    assert cascade(network, ["alice"]).defaulted == ("alice", "bob")
    assert cascade(network, ["carol"]).defaulted == ("carol",)
    assert cascade(network, []).defaulted == ()


def test_a_shock_naming_an_unknown_institution_is_refused() -> None:
    network = build_network(_banks(alice=1), [])
    with pytest.raises(ValidationError, match="unknown institution 'mallory'"):
        cascade(network, ["mallory"])


def test_a_singular_defaulter_system_falls_back_to_the_fixed_point_iteration() -> None:
    # A ring A <-> B of 10 each with no external assets, both forced into the defaulter set:
    # (I - Pi^T_DD) = [[1, -1], [-1, 1]] is singular, so the solver cannot give p_D. The
    # monotone iteration p = min(p_bar, e + Pi^T p) from (10, 10) stays there: the ring clears.
    import scipy.sparse as sp

    from rfq.risk.contagion import _clear_defaulters

    relative = sp.csr_matrix(np.array([[0.0, 1.0], [1.0, 0.0]]))
    p_bar = np.array([10.0, 10.0])
    p = _clear_defaulters(
        relative, np.zeros(2), p_bar, p_bar.copy(), np.array([True, True]), max_iterations=100
    )
    assert p == pytest.approx([10.0, 10.0])
