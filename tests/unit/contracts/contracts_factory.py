"""Builders for contract tests: Alice is the client, Bob the dealer, unless a test says so."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

from rfq.contracts import Contract, MarginTerms
from rfq.instruments import Averaging, Leg, OptionTerms, Side, Template, Terms

DATA = Path(__file__).parent / "data"
D = dt.date
TRADE_DATE = D(2025, 11, 3)
MATURITY = D(2025, 12, 31)


def contract(
    cid: str = "C1",
    *,
    template: str = Template.PRICE_SWAP,
    legs: tuple[tuple[str, float], ...] = (("RB2601", 1.0),),
    side: Side = Side.BUY,
    fixed: float | None = 3000.0,
    quantity: float = 100.0,
    multiplier: float = 1.0,
    trade_date: dt.date = TRADE_DATE,
    maturity: dt.date = MATURITY,
    averaging: tuple[dt.date, dt.date] | None = None,
    option: tuple[str, float, float] | None = None,
    rate: float = 0.0,
    margin: MarginTerms | None = None,
    client: str = "alice",
    dealer: str = "bob",
) -> Contract:
    return Contract(
        id=cid,
        terms=Terms(
            template=template,
            legs=tuple(Leg(u, w) for u, w in legs),
            client_side=side,
            quantity=quantity,
            trade_date=trade_date,
            maturity=maturity,
            multiplier=multiplier,
            averaging=None if averaging is None else Averaging(*averaging),
            option=None if option is None else OptionTerms(option[0], option[1], option[2]),  # type: ignore[arg-type]
        ),
        client=client,
        dealer=dealer,
        fixed_price=fixed,
        initial_margin_rate=rate,
        margin=margin,
    )


def run_cli(capsys: Any, argv: list[str]) -> tuple[int, dict[str, Any] | None, str]:
    """Run ``botc`` in-process: (exit code, parsed stdout JSON or None, stderr)."""
    from peers.cli import main

    code = main(argv)
    captured = capsys.readouterr()
    out = json.loads(captured.out) if code == 0 and captured.out.strip() else None
    return code, out, captured.err


def write(tmp: Path, name: str, content: Any) -> str:
    path = tmp / name
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return str(path)


def fixings_csv(rows: list[tuple[str, str, float]]) -> str:
    return "date,underlying,price\n" + "".join(f"{d},{u},{p}\n" for d, u, p in rows)
