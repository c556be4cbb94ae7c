"""``botc risk saccr|contagion``: the counterparty- and systemic-risk calculators on a JSON file.

The calculators are the pure ones in ``rfq.risk`` (the regulator's monitor calls the same
functions); this module only reads the file, decodes it into typed objects and prints JSON.
Bad input (unreadable file, invalid JSON, an unknown asset class, a missing or negative field,
an unknown institution) is one line on stderr naming the file and the netting set, trade or
institution at fault, and exit code 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from peers.errors import CliError
from rfq.errors import ValidationError

MODELS = ("cascade", "eisenberg-noe", "debtrank")

SACCR_HELP = """\
Print the SA-CCR (BCBS 279) exposure at default of each netting set in FILE.json:

  {"netting_sets": [{"id", "rc", "pfe", "multiplier",
     "addon": {"interest_rate", "fx", "credit", "equity", "commodity", "aggregate"}, "ead"}]}

FILE.json: {"netting_sets": [{"id", "margined" (bool), "collateral" (C: net collateral held
after haircuts, negative if posted), "threshold", "mta", "nica", "mpor_days" (margined sets),
"trades": [{"id", "asset_class" (interest_rate|fx|credit|equity|commodity), "hedging_set"
(interest rate: currency; fx: pair such as "EUR/USD"; commodity: energy|metals|agricultural|
other), "reference" (credit, equity: entity or index; commodity: type, e.g. crude_oil,
electricity), "rating" (credit single names AAA..CCC; indices IG or SG), "is_index", "notional",
"mtm", "start", "end", "maturity" (years), and either "delta" (+1 or -1) or "option":
{"type": "call"|"put", "bought", "price", "strike", "expiry" (years)}}]}]}

For a margined set rc, pfe, multiplier and addon are the margined figures and ead is capped at
the EAD of the same set computed unmargined.
"""

CONTAGION_HELP = """\
Run a default-contagion model on the exposure network in FILE.json and print
{"defaulted": [...], "rounds": [[...], ...]} plus, for eisenberg-noe, "payments" and "equity",
and for debtrank, "additional_stress", "stress" and "additional_defaults".

FILE.json: {"institutions": [{"id", "capital", "external_assets", "weight"}],
"exposures": [{"creditor", "debtor", "amount", "lgd"}], "shock": {"defaults": [ids]}}

cascade (paper formulas 10-11): a defaulted debtor costs each creditor amount x lgd (lgd 1 when
absent); an institution defaults when capital minus losses is strictly below what it owes
others in the network (equal survives). rounds[0] is the shock.
eisenberg-noe: exposures are the debtor's liabilities to the creditor, external_assets is e;
no shock is needed. rounds are the fictitious-default-algorithm steps; equity is external
assets + payments received - total nominal liabilities (negative: a defaulter's shortfall).
debtrank (Battiston et al. 2012): shocked nodes start at stress 1, each node propagates once;
weight gives each node's relative economic value.
"""


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "risk",
        help="SA-CCR exposure and default contagion from a JSON file",
        description=(
            "Counterparty- and systemic-risk calculators on a JSON file: 'saccr' prints the "
            "SA-CCR EAD of each netting set, 'contagion' runs a default-contagion model on an "
            "exposure network. Bad input exits 2 with one line naming the file and the netting "
            "set, trade or institution at fault."
        ),
    )
    inner = parser.add_subparsers(dest="risk_command", metavar="SUBCOMMAND", required=True)
    saccr = inner.add_parser(
        "saccr",
        help="SA-CCR EAD per netting set",
        description=SACCR_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    saccr.add_argument("file", metavar="FILE.json", help="netting sets and their trades")
    saccr.set_defaults(handler=run_saccr)
    contagion = inner.add_parser(
        "contagion",
        help="cascade, Eisenberg-Noe clearing or DebtRank on an exposure network",
        description=CONTAGION_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    contagion.add_argument("file", metavar="FILE.json", help="institutions, exposures, shock")
    contagion.add_argument("--model", choices=MODELS, default="cascade", help="default: cascade")
    contagion.set_defaults(handler=run_contagion)


def _read(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise CliError(f"{path}: cannot read file: {exc.strerror or exc}") from None


def _in_file(path: str, exc: ValidationError) -> ValidationError:
    """The same error, with the file named first."""
    where = f"{path}: {exc.where}" if exc.where else path
    return ValidationError(exc.message, where=where)


def _print(document: dict[str, Any]) -> None:
    import msgspec

    sys.stdout.write(msgspec.json.format(msgspec.json.encode(document), indent=2).decode())
    sys.stdout.write("\n")


def run_saccr(args: argparse.Namespace) -> int:
    from rfq.risk.saccr import compute_netting_sets, decode_saccr_input

    raw = _read(args.file)
    try:
        results = compute_netting_sets(decode_saccr_input(raw).netting_sets)
    except ValidationError as exc:
        raise _in_file(args.file, exc) from None
    _print(
        {
            "netting_sets": [
                {
                    "id": r.id,
                    "rc": r.rc,
                    "pfe": r.pfe,
                    "multiplier": r.multiplier,
                    "addon": {
                        "interest_rate": r.addon.interest_rate,
                        "fx": r.addon.fx,
                        "credit": r.addon.credit,
                        "equity": r.addon.equity,
                        "commodity": r.addon.commodity,
                        "aggregate": r.addon.aggregate,
                    },
                    "ead": r.ead,
                }
                for r in results
            ]
        }
    )
    return 0


def run_contagion(args: argparse.Namespace) -> int:
    from rfq.risk.contagion import (
        build_network,
        cascade,
        debtrank,
        decode_contagion_input,
        eisenberg_noe,
    )

    raw = _read(args.file)
    try:
        document = decode_contagion_input(raw)
        network = build_network(document.institutions, document.exposures)
        if args.model == "eisenberg-noe":
            clearing = eisenberg_noe(network)
            _print(
                {
                    "defaulted": list(clearing.defaulted),
                    "rounds": [list(r) for r in clearing.rounds],
                    "payments": clearing.payments,
                    "equity": clearing.equity,
                }
            )
            return 0
        if document.shock is None:
            raise ValidationError(
                f'the {args.model} model needs a shock: {{"shock": {{"defaults": [ids]}}}}',
                where="shock",
            )
        if args.model == "cascade":
            result = cascade(network, document.shock.defaults)
            _print(
                {"defaulted": list(result.defaulted), "rounds": [list(r) for r in result.rounds]}
            )
            return 0
        ranked = debtrank(network, document.shock.defaults)
    except ValidationError as exc:
        raise _in_file(args.file, exc) from None
    _print(
        {
            "defaulted": list(ranked.defaulted),
            "rounds": [list(r) for r in ranked.rounds],
            "additional_stress": ranked.additional_stress,
            "stress": ranked.stress,
            "additional_defaults": ranked.additional_defaults,
        }
    )
    return 0
