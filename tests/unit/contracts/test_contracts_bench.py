"""``botc bench contracts`` runs end to end on a small book and reports its figures."""

from __future__ import annotations

import json

from peers.cli import main


def test_the_contract_benchmark_reports_tick_time_against_a_scalar_baseline(capsys):
    code = main(["bench", "contracts", "--json", "--contracts", "400", "--ticks", "2"])
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    assert result["contracts"] == 400
    assert result["ticks"] == 2
    for key in ("tick_ms", "baseline_tick_ms", "ratio", "state_bytes_ms"):
        assert result[key] > 0
    assert result["target_ms"] == 100.0


def test_the_contract_benchmark_prints_a_readable_summary_with_the_target(capsys):
    assert main(["bench", "contracts", "--contracts", "200", "--ticks", "1"]) == 0
    out = capsys.readouterr().out
    assert "median" in out
    assert "target < 100 ms" in out
    assert "baseline" in out
