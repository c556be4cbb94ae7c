"""``botc bench`` on its embedded networks: ``rfq|chain --paired`` (without TLS and with it,
one run), ``flood``; and argument refusals."""

from __future__ import annotations

import json

import pytest

from peers.benchmarks.chain import AT_WINDOW
from peers.cli import main

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def run_json(capsys, *argv: str) -> dict:
    assert main(list(argv)) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_the_rfq_benchmark_paired_reports_plaintext_and_tls_and_their_ratio(capsys):
    report = run_json(
        capsys, "--log-level", "error", "bench", "rfq", "--embedded", "--paired",
        "--dealers", "3", "--rounds", "5", "--warmup", "1", "--workers", "1", "--json",
    )  # fmt: skip
    assert report["plain"]["tls"] is False and report["tls"]["tls"] is True
    assert report["plain"]["rounds"] == report["tls"]["rounds"] == 5
    assert report["tls_over_plain_p50"] == pytest.approx(
        report["tls"]["p50_ms"] / report["plain"]["p50_ms"], rel=0.01
    )


def test_the_chain_benchmark_paired_commits_every_transaction_both_ways(capsys):
    report = run_json(
        capsys, "--log-level", "error", "bench", "chain", "--paired",
        "--tx", "40", "--window", "20", "--json",
    )  # fmt: skip
    for side, tls in (("plain", False), ("tls", True)):
        assert report[side]["tls"] is tls
        assert report[side]["runs"] == 2  # plain, TLS, TLS, plain: half of --tx each
        assert report[side]["committed"] == report[side]["tx"] == 40, report[side]
    assert report["tls_over_plain_tps"] > 0


def test_tls_and_paired_need_the_embedded_network(tmp_path, capsys):
    assert main(["bench", "rfq", "--net", str(tmp_path), "--paired"]) == 2
    assert "--tls and --paired need --embedded" in capsys.readouterr().err


def test_the_flood_benchmark_runs_on_its_embedded_network_through_the_auth_callout(capsys):
    report = run_json(
        capsys, "--log-level", "error", "bench", "flood", "--embedded",
        "--seconds", "1", "--rate", "200", "--json",
    )  # fmt: skip
    assert report["baseline_rounds"] > 0 and report["flood_rounds"] > 0, report
    assert report["flood_priced"] > 0, report


def test_the_chain_benchmark_refuses_a_rate_point_beyond_its_transactions(capsys):
    assert main(["bench", "chain", "--tx", "100", "--at", "500"]) == 2
    refusal = f"--at N needs one run (not --paired) and N + {AT_WINDOW} <= --tx"
    assert refusal in capsys.readouterr().err
