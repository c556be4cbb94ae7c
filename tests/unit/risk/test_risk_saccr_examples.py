"""SA-CCR reproduces the Basel Committee's worked examples (BCBS 279, Annex 4a).

Published EADs (thousands): Example 1 (interest rate) 569, Example 2 (credit) 381, Example 3
(commodity) 5,406, Example 4 (the interest-rate and credit trades of Examples 1 and 2 in one
netting set) 936, Example 5 (the interest-rate and commodity trades of Examples 1 and 3 in one
margined netting set) 1,879. Trade data as printed in the Annex:

- Example 1: USD swap 10y pay fixed (long, MtM 30), USD swap 4y receive fixed (short, MtM -20),
  EUR 1-into-10y bought receiver swaption (a bought put on the rate, underlying 6%, strike 5%,
  MtM 50), notionals 10,000 / 10,000 / 5,000.
- Example 2: CDS on Firm A (AA, 3y, MtM 20), CDS on Firm B (BBB, 6y, MtM -40), CDX.IG 5y
  (index, IG, MtM 0), notional 10,000 each; A and the index are one side, B the other.
- Example 3: WTI forward 9 months long 10,000 (MtM -50), Brent forward 2y short 20,000
  (MtM -30), both the commodity type crude oil in the energy hedging set; silver forward 5y long
  10,000 (MtM 100) in metals.
- Example 5: threshold 0, MTA 5, independent amount (NICA) 150 held, variation margin 50 held
  (C = 200), remargined weekly so MPOR = 10 + 5 - 1 = 14 business days.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from peers.cli import main
from rfq.risk.saccr import NettingSetResult, compute_netting_set, decode_saccr_input

DATA = Path(__file__).parent / "data"

PUBLISHED_EAD = {
    "bcbs279_example1_interest_rate.json": 569.0,
    "bcbs279_example2_credit.json": 381.0,
    "bcbs279_example3_commodity.json": 5406.0,
    "bcbs279_example4_interest_rate_and_credit.json": 936.0,
    "bcbs279_example5_margined.json": 1879.0,
}


def _only_set(name: str) -> NettingSetResult:
    (netting_set,) = decode_saccr_input((DATA / name).read_bytes()).netting_sets
    return compute_netting_set(netting_set)


@pytest.mark.parametrize(("name", "published"), PUBLISHED_EAD.items())
def test_the_python_api_reproduces_each_published_ead_within_half_a_percent(
    name: str, published: float
) -> None:
    result = _only_set(name)
    assert result.ead == pytest.approx(published, rel=0.005)


@pytest.mark.parametrize(("name", "published"), PUBLISHED_EAD.items())
def test_botc_risk_saccr_prints_each_published_ead_within_half_a_percent(
    name: str, published: float, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["risk", "saccr", str(DATA / name)])
    out = json.loads(capsys.readouterr().out)
    assert code == 0
    (netting_set,) = out["netting_sets"]
    assert set(netting_set) == {"id", "rc", "pfe", "multiplier", "addon", "ead"}
    assert set(netting_set["addon"]) == {
        "interest_rate",
        "fx",
        "credit",
        "equity",
        "commodity",
        "aggregate",
    }
    assert netting_set["ead"] == pytest.approx(published, rel=0.005)


def test_example_1_interest_rate_steps_match_the_annex() -> None:
    result = _only_set("bcbs279_example1_interest_rate.json")
    # V = 30 - 20 + 50 = 60 and no collateral, so RC = 60 and the multiplier is 1.
    assert result.rc == pytest.approx(60.0)
    assert result.multiplier == 1.0
    # USD: d1 = 10,000 x SD(0, 10) = 78,694 in bucket 3, d2 = -10,000 x SD(0, 4) = -36,254 in
    # bucket 2: sqrt(78,694^2 + 36,254^2 - 1.4 x 78,694 x 36,254) = 59,270; x 0.5% = 296.35.
    # EUR: 5,000 x SD(1, 11) = 37,428 with delta -N(-d1) = -0.2694 (d1 = (ln(6/5) + 0.125)
    # / 0.5 = 0.6146): 10,083; x 0.5% = 50.41. AddOn_IR = 346.76; EAD = 1.4 x 406.76 = 569.47.
    assert result.addon.interest_rate == pytest.approx(346.76, abs=0.01)
    assert result.ead == pytest.approx(569.47, abs=0.01)


def test_example_2_credit_steps_match_the_annex() -> None:
    result = _only_set("bcbs279_example2_credit.json")
    # Entity add-ons: A 0.38% x 27,858 = 105.86, B 0.54% x 51,836 = -279.91, CDX.IG
    # 0.38% x 44,240 = 168.11. Systematic (0.5 x 105.86 - 0.5 x 279.91 + 0.8 x 168.11)^2 = 2,252;
    # idiosyncratic 0.75 x (105.86^2 + 279.91^2) + 0.36 x 168.11^2 = 77,341; AddOn = 282.13.
    assert result.addon.credit == pytest.approx(282.13, abs=0.01)
    # V = -20, so RC = 0 and the multiplier 0.05 + 0.95 exp(-20 / (1.9 x 282.13)) = 0.9652.
    assert result.rc == 0.0
    assert result.multiplier == pytest.approx(0.9652, abs=1e-4)
    assert result.ead == pytest.approx(381.24, abs=0.01)


def test_example_3_commodity_steps_match_the_annex() -> None:
    result = _only_set("bcbs279_example3_commodity.json")
    # Crude oil: 10,000 x sqrt(0.75) - 20,000 = -11,340; x 18% = -2,041.2 and alone in its
    # hedging set: sqrt((0.4 x 2,041.2)^2 + 0.84 x 2,041.2^2) = 2,041.2. Silver 18% x 10,000 =
    # 1,800. AddOn = 3,841.2; RC = max(-50 - 30 + 100, 0) = 20; EAD = 1.4 x 3,861.2 = 5,405.6.
    assert result.addon.commodity == pytest.approx(3841.15, abs=0.01)
    assert result.rc == pytest.approx(20.0)
    assert result.ead == pytest.approx(5405.62, abs=0.01)


def test_example_4_adds_the_interest_rate_and_credit_add_ons_in_one_set() -> None:
    result = _only_set("bcbs279_example4_interest_rate_and_credit.json")
    # V = 60 - 20 = 40 = RC; AddOn = 346.76 + 282.13 = 628.89; EAD = 1.4 x 668.89 = 936.45.
    assert result.addon.interest_rate == pytest.approx(346.76, abs=0.01)
    assert result.addon.credit == pytest.approx(282.13, abs=0.01)
    assert result.rc == pytest.approx(40.0)
    assert result.ead == pytest.approx(936.45, abs=0.01)


def test_example_5_margined_set_steps_match_the_annex() -> None:
    result = _only_set("bcbs279_example5_margined.json")
    mf = 1.5 * math.sqrt(14 / 250)  # 0.355 for every trade
    # RC = max(80 - 200, 0 + 5 - 150, 0) = 0.
    assert result.rc == 0.0
    # Every trade's MF is 0.355: IR 346.76 x 0.355 = 123.09 (all IR trades had MF 1 before);
    # crude oil (10,000 - 20,000) x 0.355 x 18% = -639 and silver 10,000 x 0.355 x 18% = 639.
    assert result.addon.interest_rate == pytest.approx(346.764 * mf, abs=0.01)
    assert result.addon.commodity == pytest.approx(2 * 0.18 * 10_000 * mf, abs=0.01)
    # Multiplier 0.05 + 0.95 exp(-120 / (1.9 x 1,400.96)) = 0.9581; EAD = 1.4 x 1,342.29.
    assert result.multiplier == pytest.approx(0.9581, abs=1e-4)
    assert result.ead == pytest.approx(1879.21, abs=0.01)
    # Unmargined, the same set would be at 5,780: the cap does not bind.
    assert result.ead_unmargined == pytest.approx(5779.7, abs=0.1)
    assert not result.capped


def test_one_file_can_hold_all_five_examples_as_separate_netting_sets(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sets = []
    for name in PUBLISHED_EAD:
        sets.extend(json.loads((DATA / name).read_text())["netting_sets"])
    combined = tmp_path / "annex4a.json"
    combined.write_text(json.dumps({"netting_sets": sets}))
    assert main(["risk", "saccr", str(combined)]) == 0
    out = json.loads(capsys.readouterr().out)
    eads = [ns["ead"] for ns in out["netting_sets"]]
    assert eads == pytest.approx(list(PUBLISHED_EAD.values()), rel=0.005)
