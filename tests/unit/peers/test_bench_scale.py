"""``botc bench scale`` builds a market through the pure core and reports every figure."""

from __future__ import annotations

import json

from peers.cli import main

FIGURES = (
    "trade_exec_us",
    "fixing_block_ms",
    "regulator_update_p99_ms",
    "client_query_p99_ms",
    "restart_s",
    "snapshot_ms",
    "authority_rss_mb",
    "restored_rss_mb",
)


def test_the_scale_benchmark_reports_each_figure_for_a_market_of_live_and_settled_contracts(
    capsys,
):
    assert main(["bench", "scale", "--json", "--contracts", "1000", "--settled", "0.5"]) == 0
    result = json.loads(capsys.readouterr().out)
    [size] = result["sizes"]
    assert size["contracts"] == 1000
    assert size["settled"] == 500
    # the short ones matured and settled on a fixing, the bank paid what they owed, and they
    # left the hot state with their payments once the retention window passed
    assert size["ended_contracts"] == 0
    for figure in FIGURES:
        assert size[figure] > 0, figure
    # every fixing timed margins every live contract afresh (the calls before it were paid)
    assert size["fixing_margin_calls"] == size["fixing_live_contracts"] >= 1000
    assert result["targets"]["fixing_block_ms"] == 200.0


def test_a_size_outside_the_range_is_refused_with_its_flag(capsys):
    assert main(["bench", "scale", "--contracts", "10"]) == 2
    assert "--contracts 10 is outside 1000..1000000" in capsys.readouterr().out
