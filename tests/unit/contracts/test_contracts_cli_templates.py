"""``botc contract run``: the paper's two worked cases and every template, hand-computed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from .contracts_factory import DATA, fixings_csv, run_cli, write


def run_one(capsys: Any, tmp_path: Path, terms: Any, rows: list[Any], *extra: str) -> Any:
    t = write(tmp_path, "terms.json", terms)
    f = write(tmp_path, "fixings.csv", fixings_csv(rows))
    code, out, err = run_cli(capsys, ["contract", "run", t, "--fixings", f, *extra])
    assert code == 0, err
    return out


def test_the_hot_rolled_coil_minus_rebar_spread_swap_pays_the_buying_client_92000(capsys):
    code, out, err = run_cli(
        capsys,
        [
            "contract",
            "run",
            str(DATA / "spread_swap_hc_rb.json"),
            "--fixings",
            str(DATA / "spread_swap_hc_rb.csv"),
        ],
    )
    assert code == 0, err
    (c,) = out["contracts"]
    assert c["status"] == "settled"
    assert c["settlement_price"] == -59.0
    assert c["client_pnl"] == 92000.0
    assert c["dealer_pnl"] == -92000.0
    types = [e["type"] for e in c["events"]]
    assert types[0] == "contract_opened"
    assert types.count("fixing") == 3
    assert types[-3:] == ["settlement", "payment_instruction", "rating_record"]
    payment = c["events"][-2]
    assert (payment["payer"], payment["payee"], payment["amount"]) == ("dealer", "client", 92000.0)


def test_the_tangshan_billet_swap_sold_by_the_client_closes_out_early_for_174000(capsys):
    code, out, err = run_cli(
        capsys,
        [
            "contract",
            "run",
            str(DATA / "spot_swap_billet.json"),
            "--fixings",
            str(DATA / "spot_swap_billet.csv"),
            "--close-out",
            "2020-06-19",
        ],
    )
    assert code == 0, err
    (c,) = out["contracts"]
    assert c["status"] == "closed_out"
    assert c["settlement_price"] == 3341.0
    assert c["client_pnl"] == 174000.0
    assert c["dealer_pnl"] == -174000.0
    # Fixings after the close-out date are not seen.
    assert [e["date"] for e in c["events"] if e["type"] == "fixing"] == [
        "2020-05-06",
        "2020-05-29",
        "2020-06-19",
    ]


def test_the_billet_swap_left_to_maturity_settles_on_the_maturity_fixing(capsys):
    code, out, err = run_cli(
        capsys,
        [
            "contract",
            "run",
            str(DATA / "spot_swap_billet.json"),
            "--fixings",
            str(DATA / "spot_swap_billet.csv"),
        ],
    )
    assert code == 0, err
    (c,) = out["contracts"]
    # Client sold at 3399, settles at 3420: (3420 - 3399) x 3000 x -1.
    assert (c["status"], c["settlement_price"], c["client_pnl"]) == ("settled", 3420.0, -63000.0)


def swap(
    template: str, legs: list[tuple[str, float]], side: str, fixed: float, qty: float, **kw: Any
) -> dict[str, Any]:
    return {
        "template": template,
        "legs": [{"underlying": u, "weight": w} for u, w in legs],
        "client_side": side,
        "fixed_price": fixed,
        "quantity": qty,
        "trade_date": "2025-11-03",
        "maturity": "2025-12-15",
        **kw,
    }


@pytest.mark.parametrize(
    ("name", "terms", "rows", "settlement", "client_pnl"),
    [
        (
            # (3200 - 3150) x 100 t x 10 = 50,000
            "price swap on a future, client buys",
            swap("price_swap", [("RB2601", 1)], "buy", 3150, 100, multiplier=10),
            [("2025-12-15", "RB2601", 3200)],
            3200.0,
            50000.0,
        ),
        (
            # (3000 - 3050) x 200 t = -10,000
            "spot swap, client buys",
            swap("spot_swap", [("TSBILLET", 1)], "buy", 3050, 200),
            [("2025-12-15", "TSBILLET", 3000)],
            3000.0,
            -10000.0,
        ),
        (
            # calendar: (45 - 30) x 1000 x -1 = -15,000
            "calendar spread, client sells",
            swap("calendar_spread", [("RB2605", 1), ("RB2601", -1)], "sell", 30, 1000),
            [("2025-12-15", "RB2605", 3245), ("2025-12-15", "RB2601", 3200)],
            45.0,
            -15000.0,
        ),
        (
            # points x multiplier: (4700 - 4600) x 2 x 300 = 60,000
            "index swap on points, client buys",
            swap("index_swap", [("CSI300", 1)], "buy", 4600, 2, multiplier=300),
            [("2025-12-15", "CSI300", 4700)],
            4700.0,
            60000.0,
        ),
        (
            # basket 0.5 x 3200 + 0.3 x 3300 + 0.2 x 2250 = 3040; (3040 - 3000) x 100 = 4,000
            "index swap on a weighted basket, client buys",
            swap(
                "index_swap",
                [("RB2601", 0.5), ("HC2601", 0.3), ("C2601", 0.2)],
                "buy",
                3000,
                100,
            ),
            [
                ("2025-12-15", "RB2601", 3200),
                ("2025-12-15", "HC2601", 3300),
                ("2025-12-15", "C2601", 2250),
            ],
            3040.0,
            4000.0,
        ),
        (
            # (500 - 520) x 1000 bbl = -20,000
            "forward on crude, client buys",
            swap("forward", [("SC2601", 1)], "buy", 520, 1000),
            [("2025-12-15", "SC2601", 500)],
            500.0,
            -20000.0,
        ),
        (
            # HC - RB: (3750 - 3809) = -59; (-59 - -151) x 1000 = 92,000
            "spread swap, client buys",
            swap("spread_swap", [("HC2601", 1), ("RB2601", -1)], "buy", -151, 1000),
            [("2025-12-15", "HC2601", 3750), ("2025-12-15", "RB2601", 3809)],
            -59.0,
            92000.0,
        ),
    ],
)
def test_each_linear_template_settles_to_the_hand_computed_figure(
    capsys, tmp_path, name, terms, rows, settlement, client_pnl
):
    out = run_one(capsys, tmp_path, terms, [("2025-11-03", u, p) for _, u, p in rows] + rows)
    (c,) = out["contracts"]
    assert c["status"] == "settled", name
    assert c["settlement_price"] == settlement, name
    assert c["client_pnl"] == client_pnl, name
    assert c["dealer_pnl"] == -client_pnl, name


def test_an_average_price_swap_settles_on_the_mean_of_the_fixings_in_its_window(capsys, tmp_path):
    terms = swap(
        "average_price_swap",
        [("C2601", 1)],
        "sell",
        2250,
        500,
        averaging={"start": "2025-11-03", "end": "2025-11-07"},
        maturity="2025-11-07",
    )
    rows = [
        ("2025-10-31", "C2601", 2000),  # before the window: not averaged
        ("2025-11-03", "C2601", 2240),
        ("2025-11-04", "C2601", 2250),
        ("2025-11-05", "C2601", 2260),
        ("2025-11-06", "C2601", 2270),
        ("2025-11-07", "C2601", 2280),
        ("2025-11-10", "C2601", 9999),  # after: not averaged, not seen
    ]
    terms["trade_date"] = "2025-10-30"
    out = run_one(capsys, tmp_path, terms, rows)
    (c,) = out["contracts"]
    # mean 2260; client sold at 2250: (2260 - 2250) x 500 x -1 = -5,000
    assert (c["status"], c["settlement_price"], c["client_pnl"]) == ("settled", 2260.0, -5000.0)
    marks = [e["mark"] for e in c["events"] if e["type"] == "fixing"]
    # Before the window the mark is the day's price; on Tuesday the two fixings so far plus
    # Tuesday's price for the three weekdays to come: (2240 + 2250 + 2250 x 3) / 5 = 2248.
    assert marks[0] == 2000.0
    assert marks[2] == 2248.0


def test_an_average_that_is_not_a_round_number_prints_without_float_noise(capsys, tmp_path):
    terms = swap(
        "average_price_swap",
        [("C2601", 1)],
        "sell",
        2250,
        500,
        averaging={"start": "2025-11-03", "end": "2025-11-05"},
        maturity="2025-11-05",
    )
    rows = [
        ("2025-11-03", "C2601", 2251),
        ("2025-11-04", "C2601", 2252),
        ("2025-11-05", "C2601", 2254),
    ]
    out = run_one(capsys, tmp_path, terms, rows)
    (c,) = out["contracts"]
    # mean 6757 / 3 = 2252.333..; (7 / 3) x 500 x -1 = -1166.666..
    assert c["settlement_price"] == 2252.33333333
    assert c["client_pnl"] == -1166.66666667


def option(kind: str, side: str, strike: float, premium: float, **kw: Any) -> dict[str, Any]:
    terms = swap("european_option", [("RB2605", 1)], side, 0, 100, **kw)
    del terms["fixed_price"]
    terms["option"] = {"type": kind, "strike": strike, "premium": premium}
    return terms


@pytest.mark.parametrize(
    ("kind", "side", "strike", "premium", "fixing", "client_pnl"),
    [
        ("call", "buy", 3200, 50, 3300, 5000.0),  # (100 - 50) x 100
        ("call", "buy", 3200, 50, 3150, -5000.0),  # out of the money: the premium is lost
        ("put", "buy", 3200, 40, 3100, 6000.0),  # (100 - 40) x 100
        ("call", "sell", 3200, 50, 3300, -5000.0),  # the buyer's gain, negated
        ("call", "sell", 3200, 50, 3100, 5000.0),  # the seller keeps the premium
        ("put", "sell", 3200, 40, 3300, 4000.0),
    ],
)
def test_a_european_option_pays_its_intrinsic_value_less_the_premium(
    capsys, tmp_path, kind, side, strike, premium, fixing, client_pnl
):
    out = run_one(
        capsys, tmp_path, option(kind, side, strike, premium), [("2025-12-15", "RB2605", fixing)]
    )
    (c,) = out["contracts"]
    assert (c["status"], c["settlement_price"]) == ("settled", float(fixing))
    assert c["client_pnl"] == client_pnl
    assert c["dealer_pnl"] == -client_pnl
    premium_paid = [
        e for e in c["events"] if e["type"] == "payment_instruction" and e["kind"] == "premium"
    ]
    buyer = "client" if side == "buy" else "dealer"
    assert [(p["payer"], p["amount"]) for p in premium_paid] == [(buyer, premium * 100.0)]


def test_initial_margin_uses_notional_and_the_credit_line_covers_part_of_it(capsys, tmp_path):
    book = {
        "credit_line": 300000,
        "contracts": [
            # 0.1 x 3150 x (100 x 10) = 315,000
            swap(
                "price_swap",
                [("RB2601", 1)],
                "buy",
                3150,
                100,
                multiplier=10,
                initial_margin_rate=0.1,
            ),
            # no fixed price: the strike is the notional price; 0.1 x 3200 x 100 = 32,000
            option("call", "buy", 3200, 50, initial_margin_rate=0.1),
        ],
    }
    rows = [("2025-12-15", "RB2601", 3200), ("2025-12-15", "RB2605", 3300)]
    out = run_one(capsys, tmp_path, book, rows)
    assert [c["initial_margin"] for c in out["contracts"]] == [315000.0, 32000.0]
    assert out["initial_margin_total"] == 347000.0
    assert out["cash_margin_due"] == 47000.0
    assert [c["id"] for c in out["contracts"]] == ["C1", "C2"]


def test_a_credit_line_larger_than_the_margin_leaves_no_cash_due(capsys, tmp_path):
    book = {
        "credit_line": 1e9,
        "contracts": [
            swap("spot_swap", [("TSBILLET", 1)], "sell", 3399, 3000, initial_margin_rate=0.08)
        ],
    }
    out = run_one(capsys, tmp_path, book, [("2025-12-15", "TSBILLET", 3341)])
    # 0.08 x 3399 x 3000 = 815,760
    assert out["initial_margin_total"] == 815760.0
    assert out["cash_margin_due"] == 0.0


def test_close_out_uses_each_contracts_weighted_fixing_of_that_day(capsys, tmp_path):
    book = {
        "contracts": [
            swap("spread_swap", [("HC2601", 1), ("RB2601", -1)], "buy", -151, 1000),
            swap("price_swap", [("RB2601", 1)], "sell", 3150, 10),
        ]
    }
    rows = [
        ("2025-11-20", "HC2601", 3300),
        ("2025-11-20", "RB2601", 3400),
        ("2025-12-15", "HC2601", 1),
        ("2025-12-15", "RB2601", 1),
    ]
    out = run_one(capsys, tmp_path, book, rows, "--close-out", "2025-11-20")
    spread, price = out["contracts"]
    assert (spread["status"], spread["settlement_price"], spread["client_pnl"]) == (
        "closed_out",
        -100.0,
        51000.0,
    )
    assert (price["status"], price["client_pnl"]) == ("closed_out", -2500.0)


def test_a_margined_contract_shows_its_calls_and_postings_in_the_events(capsys, tmp_path):
    terms = swap(
        "price_swap",
        [("RB2601", 1)],
        "buy",
        3000,
        100,
        margin={"threshold": 5000, "minimum_transfer_amount": 1000, "cure_days": 1},
    )
    rows = [
        ("2025-11-03", "RB2601", 3000),
        ("2025-11-04", "RB2601", 3070),
        ("2025-12-15", "RB2601", 3100),
    ]
    out = run_one(capsys, tmp_path, terms, rows)
    (c,) = out["contracts"]
    types = [e["type"] for e in c["events"]]
    assert "margin_call" in types
    assert "margin_call_met" in types
    call = next(e for e in c["events"] if e["type"] == "margin_call")
    # MTM 7,000 above a 5,000 threshold: the dealer transfers 2,000.
    assert (call["payer"], call["amount"]) == ("dealer", 2000.0)
    settle_pay = [
        e for e in c["events"] if e["type"] == "payment_instruction" and e["kind"] == "settlement"
    ]
    # 10,000 at maturity less the 2,000 already transferred.
    assert [(p["payer"], p["amount"]) for p in settle_pay] == [("dealer", 8000.0)]
    assert c["client_pnl"] == 10000.0
