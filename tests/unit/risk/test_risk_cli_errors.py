"""Bad input to ``botc risk``: exit code 2 and one stderr line naming what is at fault."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from peers.cli import main


def _trade(**overrides: Any) -> dict[str, Any]:
    trade: dict[str, Any] = {
        "id": "swap-7",
        "asset_class": "interest_rate",
        "hedging_set": "USD",
        "notional": 1000,
        "mtm": 5,
        "start": 0,
        "end": 5,
        "maturity": 5,
        "delta": 1,
    }
    trade.update(overrides)
    return {k: v for k, v in trade.items() if v is not None}


def _saccr_file(tmp_path: Path, *trades: dict[str, Any], **netting_set: Any) -> Path:
    path = tmp_path / "saccr.json"
    body = {"id": "alice-bank", "trades": list(trades), **netting_set}
    path.write_text(json.dumps({"netting_sets": [body]}))
    return path


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    code = main(list(argv))
    err = capsys.readouterr().err
    assert code == 2
    assert len(err.strip().splitlines()) == 1
    return err


# --- SA-CCR -----------------------------------------------------------------------------------


def test_an_unknown_asset_class_names_the_netting_set_and_trade(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _saccr_file(tmp_path, _trade(asset_class="rates"))
    err = _run(capsys, "risk", "saccr", str(path))
    assert "netting set 'alice-bank'" in err
    assert "trade 'swap-7'" in err
    assert "unknown asset class 'rates'" in err


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"end": None}, "end"),
        ({"notional": None}, "notional"),
        ({"mtm": None}, "mtm"),
        ({"hedging_set": None}, "hedging_set"),
        ({"delta": None}, "delta"),
        ({"asset_class": "credit", "reference": "Bob Corp"}, "rating"),
        ({"asset_class": "equity"}, "reference"),
        ({"asset_class": "commodity", "hedging_set": "energy"}, "reference"),
    ],
)
def test_a_missing_field_the_computation_needs_names_the_trade(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    overrides: dict[str, Any],
    field: str,
) -> None:
    path = _saccr_file(tmp_path, _trade(**overrides))
    err = _run(capsys, "risk", "saccr", str(path))
    assert "netting set 'alice-bank', trade 'swap-7'" in err
    assert field in err


@pytest.mark.parametrize("field", ["threshold", "mta", "nica", "mpor_days"])
def test_a_margined_set_missing_its_margin_terms_is_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], field: str
) -> None:
    terms = {"threshold": 0, "mta": 5, "nica": 0, "mpor_days": 10}
    del terms[field]
    path = _saccr_file(tmp_path, _trade(), margined=True, **terms)
    err = _run(capsys, "risk", "saccr", str(path))
    assert "netting set 'alice-bank'" in err
    assert field in err


def test_a_negative_notional_names_the_trade(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _saccr_file(tmp_path, _trade(notional=-1000))
    err = _run(capsys, "risk", "saccr", str(path))
    assert "trade 'swap-7'" in err
    assert "notional must not be negative" in err


def test_a_field_of_the_wrong_type_names_the_trade(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _saccr_file(tmp_path, _trade(notional="lots"))
    err = _run(capsys, "risk", "saccr", str(path))
    assert "netting set 'alice-bank', trade 'swap-7', field 'notional'" in err


def test_a_misspelt_field_is_refused_naming_the_trade(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _saccr_file(tmp_path, _trade(notionl=1000))
    err = _run(capsys, "risk", "saccr", str(path))
    assert "trade 'swap-7'" in err
    assert "notionl" in err


def test_an_invalid_credit_rating_names_the_trade(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _saccr_file(tmp_path, _trade(asset_class="credit", reference="Bob Corp", rating="IG"))
    err = _run(capsys, "risk", "saccr", str(path))
    assert "trade 'swap-7'" in err
    assert "rating 'IG'" in err


def test_an_option_missing_its_strike_names_the_trade(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    option = {"type": "call", "bought": True, "price": 1, "expiry": 1}
    path = _saccr_file(tmp_path, _trade(delta=None, option=option))
    err = _run(capsys, "risk", "saccr", str(path))
    assert "trade 'swap-7'" in err
    assert "strike" in err


def test_duplicate_trade_ids_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _saccr_file(tmp_path, _trade(), _trade())
    err = _run(capsys, "risk", "saccr", str(path))
    assert "trade 'swap-7'" in err
    assert "duplicate" in err


# --- files ------------------------------------------------------------------------------------


@pytest.mark.parametrize("command", [["saccr"], ["contagion", "--model", "cascade"]])
def test_an_unreadable_file_is_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: list[str]
) -> None:
    missing = tmp_path / "nowhere.json"
    err = _run(capsys, "risk", command[0], str(missing), *command[1:])
    assert str(missing) in err


@pytest.mark.parametrize("command", [["saccr"], ["contagion", "--model", "debtrank"]])
def test_invalid_json_is_named_with_its_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: list[str]
) -> None:
    path = tmp_path / "broken.json"
    path.write_text("{not json")
    err = _run(capsys, "risk", command[0], str(path), *command[1:])
    assert str(path) in err
    assert "invalid JSON" in err


# --- contagion --------------------------------------------------------------------------------


def _network_file(tmp_path: Path, document: dict[str, Any]) -> Path:
    path = tmp_path / "network.json"
    path.write_text(json.dumps(document))
    return path


BANKS = [
    {"id": "alice", "capital": 100, "external_assets": 10, "weight": 1},
    {"id": "bob", "capital": 100, "external_assets": 10, "weight": 1},
]


@pytest.mark.parametrize("model", ["cascade", "eisenberg-noe", "debtrank"])
def test_an_unknown_institution_in_an_exposure_is_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], model: str
) -> None:
    path = _network_file(
        tmp_path,
        {
            "institutions": BANKS,
            "exposures": [{"creditor": "alice", "debtor": "mallory", "amount": 5}],
            "shock": {"defaults": ["bob"]},
        },
    )
    err = _run(capsys, "risk", "contagion", str(path), "--model", model)
    assert "unknown institution 'mallory'" in err
    assert "exposure #1" in err


@pytest.mark.parametrize("model", ["cascade", "debtrank"])
def test_a_negative_capital_names_the_institution(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], model: str
) -> None:
    banks = [BANKS[0], {**BANKS[1], "capital": -5}]
    path = _network_file(
        tmp_path, {"institutions": banks, "exposures": [], "shock": {"defaults": ["alice"]}}
    )
    err = _run(capsys, "risk", "contagion", str(path), "--model", model)
    assert "institution 'bob'" in err
    assert "capital must not be negative" in err


@pytest.mark.parametrize(
    ("model", "field"),
    [("cascade", "capital"), ("debtrank", "weight"), ("eisenberg-noe", "external_assets")],
)
def test_a_missing_field_the_model_needs_names_the_institution(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], model: str, field: str
) -> None:
    bob = {k: v for k, v in BANKS[1].items() if k != field}
    path = _network_file(
        tmp_path,
        {"institutions": [BANKS[0], bob], "exposures": [], "shock": {"defaults": ["alice"]}},
    )
    err = _run(capsys, "risk", "contagion", str(path), "--model", model)
    assert "institution 'bob'" in err
    assert field in err


def test_a_negative_exposure_amount_names_the_exposure(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _network_file(
        tmp_path,
        {
            "institutions": BANKS,
            "exposures": [{"creditor": "alice", "debtor": "bob", "amount": -5}],
            "shock": {"defaults": ["bob"]},
        },
    )
    err = _run(capsys, "risk", "contagion", str(path), "--model", "cascade")
    assert "creditor 'alice', debtor 'bob'" in err
    assert "amount must not be negative" in err


def test_a_shock_naming_an_unknown_institution_is_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _network_file(
        tmp_path, {"institutions": BANKS, "exposures": [], "shock": {"defaults": ["trent"]}}
    )
    err = _run(capsys, "risk", "contagion", str(path), "--model", "debtrank")
    assert "unknown institution 'trent'" in err


def test_cascade_without_a_shock_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _network_file(tmp_path, {"institutions": BANKS, "exposures": []})
    err = _run(capsys, "risk", "contagion", str(path), "--model", "cascade")
    assert "shock" in err


def test_a_duplicate_institution_is_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _network_file(
        tmp_path, {"institutions": [BANKS[0], BANKS[0]], "shock": {"defaults": ["alice"]}}
    )
    err = _run(capsys, "risk", "contagion", str(path), "--model", "cascade")
    assert "institution 'alice'" in err
    assert "duplicate" in err


def test_a_wrongly_typed_institution_field_names_the_institution(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    banks = [BANKS[0], {**BANKS[1], "capital": "plenty"}]
    path = _network_file(tmp_path, {"institutions": banks, "shock": {"defaults": ["alice"]}})
    err = _run(capsys, "risk", "contagion", str(path), "--model", "cascade")
    assert "institution 'bob', field 'capital'" in err
