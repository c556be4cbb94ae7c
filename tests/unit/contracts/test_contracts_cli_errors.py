"""``botc contract run`` refuses bad input with one line naming the file, row or field, exit 2."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from .contracts_factory import DATA, fixings_csv, run_cli, write

SPREAD = json.loads((DATA / "spread_swap_hc_rb.json").read_text())
ROWS = [
    ("2020-09-15", "HC2010", 3750),
    ("2020-09-15", "RB2010", 3809),
]


def fails(capsys: Any, tmp_path: Path, terms: Any, fixings: str, *extra: str) -> str:
    t = write(tmp_path, "terms.json", terms)
    f = write(tmp_path, "fixings.csv", fixings)
    code, out, err = run_cli(capsys, ["contract", "run", t, "--fixings", f, *extra])
    assert code == 2
    assert out is None
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


def test_a_missing_maturity_fixing_names_the_leg_and_the_date(capsys, tmp_path):
    err = fails(capsys, tmp_path, SPREAD, fixings_csv(ROWS[:1]))
    assert "legs[1]" in err
    assert "RB2010" in err
    assert "2020-09-15" in err


def test_a_missing_close_out_fixing_names_the_leg_and_the_date(capsys, tmp_path):
    err = fails(capsys, tmp_path, SPREAD, fixings_csv(ROWS), "--close-out", "2020-08-01")
    assert "legs[0]" in err
    assert "2020-08-01" in err


def test_an_average_swap_with_no_fixing_in_its_window_names_the_window(capsys, tmp_path):
    terms = {
        "template": "average_price_swap",
        "legs": [{"underlying": "C2601", "weight": 1}],
        "client_side": "buy",
        "fixed_price": 2250,
        "quantity": 1,
        "trade_date": "2025-10-01",
        "maturity": "2025-11-10",
        "averaging": {"start": "2025-11-03", "end": "2025-11-07"},
    }
    err = fails(capsys, tmp_path, terms, fixings_csv([("2025-11-10", "C2601", 1)]))
    assert "averaging" in err


def test_an_unknown_template_names_the_field(capsys, tmp_path):
    err = fails(capsys, tmp_path, {**SPREAD, "template": "variance_swap"}, fixings_csv(ROWS))
    assert "template" in err
    assert "variance_swap" in err


def test_an_unknown_template_inside_a_book_names_the_contract(capsys, tmp_path):
    book = {"credit_line": 0, "contracts": [SPREAD, {**SPREAD, "id": "x", "template": "swaption"}]}
    err = fails(capsys, tmp_path, book, fixings_csv(ROWS))
    assert "contracts[1].template" in err


@pytest.mark.parametrize("field", ["trade_date", "maturity"])
def test_a_bad_date_in_the_terms_names_the_field(capsys, tmp_path, field):
    err = fails(capsys, tmp_path, {**SPREAD, field: "2020-02-30"}, fixings_csv(ROWS))
    assert field in err


def test_a_bad_date_in_the_averaging_window_names_the_nested_field(capsys, tmp_path):
    terms = {
        **SPREAD,
        "template": "average_price_swap",
        "legs": [{"underlying": "HC2010", "weight": 1}],
        "averaging": {"start": "sometime", "end": "2020-09-15"},
    }
    err = fails(capsys, tmp_path, terms, fixings_csv(ROWS))
    assert "averaging.start" in err


def test_a_maturity_before_the_trade_date_names_maturity(capsys, tmp_path):
    err = fails(capsys, tmp_path, {**SPREAD, "maturity": "2020-01-01"}, fixings_csv(ROWS))
    assert "maturity" in err


def test_a_missing_fixed_price_names_the_field(capsys, tmp_path):
    terms = {k: v for k, v in SPREAD.items() if k != "fixed_price"}
    err = fails(capsys, tmp_path, terms, fixings_csv(ROWS))
    assert "fixed_price" in err


def test_a_missing_required_field_names_it(capsys, tmp_path):
    terms = {k: v for k, v in SPREAD.items() if k != "quantity"}
    err = fails(capsys, tmp_path, terms, fixings_csv(ROWS))
    assert "quantity" in err


def test_a_bad_close_out_date_names_the_option(capsys, tmp_path):
    err = fails(capsys, tmp_path, SPREAD, fixings_csv(ROWS), "--close-out", "19-06-2020")
    assert "--close-out" in err


def test_a_close_out_before_the_trade_date_names_the_option(capsys, tmp_path):
    err = fails(capsys, tmp_path, SPREAD, fixings_csv(ROWS), "--close-out", "2019-01-02")
    assert "--close-out" in err


def test_a_csv_without_the_header_is_refused(capsys, tmp_path):
    err = fails(capsys, tmp_path, SPREAD, "2020-09-15,HC2010,3750\n2020-09-15,RB2010,3809\n")
    assert "header" in err
    assert "line 1" in err


def test_a_bad_date_in_the_csv_names_the_line(capsys, tmp_path):
    csv = fixings_csv(ROWS) + "2020-13-01,HC2010,3750\n"
    err = fails(capsys, tmp_path, SPREAD, csv)
    assert "line 4" in err
    assert "date" in err


def test_a_bad_price_in_the_csv_names_the_line(capsys, tmp_path):
    csv = fixings_csv(ROWS) + "2020-09-16,HC2010,cheap\n"
    err = fails(capsys, tmp_path, SPREAD, csv)
    assert "line 4" in err
    assert "price" in err


def test_a_short_row_in_the_csv_names_the_line(capsys, tmp_path):
    err = fails(capsys, tmp_path, SPREAD, "date,underlying,price\n2020-09-15,HC2010\n")
    assert "line 2" in err


def test_two_different_prices_for_one_day_name_both_lines(capsys, tmp_path):
    csv = fixings_csv(ROWS) + "2020-09-15,HC2010,3751\n"
    err = fails(capsys, tmp_path, SPREAD, csv)
    assert "line 4" in err
    assert "line 2" in err


def test_invalid_json_names_the_terms_file(capsys, tmp_path):
    err = fails(capsys, tmp_path, '{"template": "spread_swap",', fixings_csv(ROWS))
    assert "terms.json" in err


def test_an_unreadable_terms_file_is_named(capsys, tmp_path):
    f = write(tmp_path, "fixings.csv", fixings_csv(ROWS))
    missing = str(tmp_path / "nope.json")
    code, _, err = run_cli(capsys, ["contract", "run", missing, "--fixings", f])
    assert code == 2
    assert "nope.json" in err
    assert len(err.strip().splitlines()) == 1


def test_an_unreadable_fixings_file_is_named(capsys, tmp_path):
    t = write(tmp_path, "terms.json", SPREAD)
    missing = str(tmp_path / "nope.csv")
    code, _, err = run_cli(capsys, ["contract", "run", t, "--fixings", missing])
    assert code == 2
    assert "nope.csv" in err


def test_a_fixings_file_that_is_not_text_is_named(capsys, tmp_path):
    t = write(tmp_path, "terms.json", SPREAD)
    f = tmp_path / "binary.csv"
    f.write_bytes(b"\xff\xfe\x00\x81garbage")
    code, _, err = run_cli(capsys, ["contract", "run", t, "--fixings", str(f)])
    assert code == 2
    assert "binary.csv" in err
