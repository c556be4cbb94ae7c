"""``botc contract run TERMS.json --fixings FIXINGS.csv [--close-out DATE]``.

Runs the same contract engine the authorities run on chain (``rfq.contracts``), offline,
and prints one JSON object. This module only reads the files; parsing, checking and running
are in ``rfq.contracts.offline``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from peers.errors import CliError

RUN_HELP = """\
TERMS.json is one contract object, a list of them, or {"credit_line": X, "contracts": [...]}.
A contract object: template (price_swap, spot_swap, average_price_swap, spread_swap,
calendar_spread, index_swap, forward, european_option); legs [{"underlying", "weight"}]
(or "underlying" for one leg of weight 1); client_side (buy|sell); fixed_price; quantity;
multiplier (default 1); trade_date and maturity (YYYY-MM-DD); averaging {"start", "end"}
(average_price_swap); option {"type": "call"|"put", "strike", "premium"} (european_option,
premium per unit paid by the buyer); initial_margin_rate (default 0). Optional: id, client,
dealer, margin {"threshold", "minimum_transfer_amount", "cure_days"} (without it
the contract is not margined; margin calls are met at once offline).

FIXINGS.csv has the header date,underlying,price. A contract that settles needs each leg's
fixing on its maturity date (average_price_swap: at least one fixing in its window); with
--close-out DATE every contract still open on DATE is closed out at DATE's weighted fixing.

Output: {"contracts": [{"id", "template", "client_side", "settlement_price", "client_pnl",
"dealer_pnl", "initial_margin", "status", "events": [...]}], "initial_margin_total",
"credit_line", "cash_margin_due"}; initial_margin = initial_margin_rate x |fixed_price| x
quantity x multiplier (an option without a fixed_price uses its strike), cash_margin_due =
max(0, initial_margin_total - credit_line). Events are the engine's records in order, each
with a "type": contract_opened, fixing (date, prices, mark, client_mtm), margin_call,
margin_call_met, settlement, close_out, payment_instruction, rating_record. Figures are
rounded to 8 decimals.
Errors (unreadable file, bad JSON or CSV, unknown template, bad date, missing fixing) print
one line naming the file, line or field, and exit with code 2.
"""


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "contract",
        help="run smart derivative contracts offline",
        description="Smart derivative contracts: the on-chain engine, offline.",
    )
    inner = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    run = inner.add_parser(
        "run",
        help="run contracts over a fixings file and print JSON",
        description="Run contracts over price fixings with the chain's engine; print JSON.",
        epilog=RUN_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument("terms", metavar="TERMS.json", help="the contract(s)")
    run.add_argument("--fixings", required=True, metavar="FIXINGS.csv", help="price fixings")
    run.add_argument(
        "--close-out", default=None, metavar="YYYY-MM-DD", help="close every contract out"
    )
    run.set_defaults(handler=_run)


def _read(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise CliError(f"cannot read {path}: {exc.strerror or exc}") from None


def _run(args: argparse.Namespace) -> int:
    from rfq.contracts.offline import run_files

    terms = _read(args.terms)
    raw = _read(args.fixings)
    try:
        fixings = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CliError(f"cannot read {args.fixings}: not UTF-8 text ({exc.reason})") from None
    report = run_files(
        terms,
        fixings,
        terms_name=args.terms,
        fixings_name=args.fixings,
        close_out=args.close_out,
    )
    print(json.dumps(report, indent=2, ensure_ascii=False))
    return 0
