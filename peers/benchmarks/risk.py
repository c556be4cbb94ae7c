"""``botc bench risk``: SA-CCR over 10,000 trades, cascade and DebtRank on 1,000 institutions.

Inputs come from a seeded RNG so runs are comparable; each calculation runs several times and
the median wall time is reported against its target:

- ``saccr_ms``: ``compute_netting_sets`` on 10,000 typed trades in 100 netting sets (half of
  them margined, a fifth of the trades options), target < 1 s;
- ``cascade_ms``: ``cascade`` on 1,000 institutions and 50,000 exposures, target < 100 ms;
- ``debtrank_ms``: ``debtrank`` on the same network (impact matrix built inside), < 500 ms.

Also reported, without targets: decoding the SA-CCR input from JSON, building the network from
typed objects, and Eisenberg-Noe clearing on the same network.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from typing import Any

TARGETS_MS = {"saccr_ms": 1000.0, "cascade_ms": 100.0, "debtrank_ms": 500.0}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--repeats", type=int, default=7, help="runs per measurement (default 7)")
    parser.add_argument("--seed", type=int, default=279, help="RNG seed (default 279)")
    parser.add_argument("--trades", type=int, default=10_000, help="SA-CCR trades (10,000)")
    parser.add_argument("--netting-sets", type=int, default=100, help="netting sets (100)")
    parser.add_argument("--institutions", type=int, default=1_000, help="network nodes (1,000)")
    parser.add_argument("--exposures", type=int, default=50_000, help="network edges (50,000)")


def _median_ms(function: Callable[[], object], repeats: int) -> float:
    samples = []
    for _ in range(max(repeats, 1)):
        started = time.perf_counter()
        function()
        samples.append((time.perf_counter() - started) * 1000.0)
    return statistics.median(samples)


def _netting_sets(seed: int, trades: int, netting_sets: int) -> list[Any]:
    import numpy as np

    from rfq.risk.saccr import NettingSet, OptionSpec, Trade

    rng = np.random.default_rng(seed)
    currencies = ["USD", "EUR", "CNY", "JPY", "GBP"]
    pairs = ["EUR/USD", "USD/CNY", "USD/JPY", "GBP/USD"]
    names = [f"name-{i}" for i in range(40)]
    ratings = ["AAA", "AA", "A", "BBB", "BB", "B", "CCC"]
    commodities = {
        "energy": ["crude_oil", "natural_gas", "electricity", "coal"],
        "metals": ["silver", "gold", "copper", "rebar"],
        "agricultural": ["corn", "soybeans", "wheat"],
        "other": ["freight"],
    }
    classes = ["interest_rate", "fx", "credit", "equity", "commodity"]
    per_set = max(trades // netting_sets, 1)
    result = []
    for s in range(netting_sets):
        rows = []
        for t in range(per_set):
            asset_class = classes[int(rng.integers(len(classes)))]
            start = float(rng.choice([0.0, 0.0, 0.5, 1.0]))
            end = start + float(rng.uniform(0.2, 15.0))
            option = None
            delta: float | None = float(rng.choice([1.0, -1.0]))
            if rng.random() < 0.2:
                option = OptionSpec(
                    type="call" if rng.random() < 0.5 else "put",
                    bought=bool(rng.random() < 0.5),
                    price=float(rng.uniform(50, 150)),
                    strike=float(rng.uniform(50, 150)),
                    expiry=float(rng.uniform(0.1, 3.0)),
                )
                delta = None
            fields: dict[str, Any] = {}
            if asset_class == "interest_rate":
                fields = {"hedging_set": str(rng.choice(currencies)), "start": start, "end": end}
            elif asset_class == "fx":
                fields = {"hedging_set": str(rng.choice(pairs))}
            elif asset_class == "credit":
                is_index = bool(rng.random() < 0.2)
                fields = {
                    "reference": str(rng.choice(names)),
                    "is_index": is_index,
                    "rating": str(rng.choice(["IG", "SG"] if is_index else ratings)),
                    "start": start,
                    "end": end,
                }
            elif asset_class == "equity":
                fields = {"reference": str(rng.choice(names)), "is_index": bool(rng.random() < 0.2)}
            else:
                hedging_set = str(rng.choice(list(commodities)))
                fields = {
                    "hedging_set": hedging_set,
                    "reference": str(rng.choice(commodities[hedging_set])),
                }
            rows.append(
                Trade(
                    id=f"t{s}-{t}",
                    asset_class=asset_class,
                    notional=float(rng.lognormal(9.0, 1.0)),
                    mtm=float(rng.normal(0.0, 500.0)),
                    maturity=end,
                    delta=delta,
                    option=option,
                    **fields,
                )
            )
        margined = s % 2 == 1
        result.append(
            NettingSet(
                id=f"ns{s}",
                trades=tuple(rows),
                margined=margined,
                collateral=float(rng.normal(0.0, 1000.0)),
                threshold=0.0 if margined else None,
                mta=5.0 if margined else None,
                nica=float(rng.uniform(0, 500)) if margined else None,
                mpor_days=10.0 if margined else None,
            )
        )
    return result


def _network(seed: int, institutions: int, exposures: int) -> tuple[Any, Any, list[str]]:
    """A random network whose capital just covers what each owes plus a thin, uneven buffer
    against losses, so a shock to the biggest debtors spreads over several rounds."""
    import numpy as np

    from rfq.risk.contagion import Exposure, Institution

    rng = np.random.default_rng(seed)
    n = institutions
    creditor = rng.integers(n, size=exposures)
    debtor = (creditor + rng.integers(1, n, size=exposures)) % n  # never self
    amount = rng.lognormal(3.0, 1.0, size=exposures)
    lgd = rng.uniform(0.4, 1.0, size=exposures)
    owed = np.bincount(debtor, weights=amount, minlength=n)
    at_risk = np.bincount(creditor, weights=amount * lgd, minlength=n)
    capital = owed + at_risk * rng.uniform(0.05, 0.6, size=n)
    external = rng.uniform(0.5, 1.2, size=n) * owed
    ids = [f"inst-{i:04d}" for i in range(n)]
    nodes = [
        Institution(
            id=ids[i],
            capital=float(capital[i]),
            external_assets=float(external[i]),
            weight=float(at_risk[i] + capital[i]),
        )
        for i in range(n)
    ]
    edges = [
        Exposure(
            creditor=ids[int(creditor[k])],
            debtor=ids[int(debtor[k])],
            amount=float(amount[k]),
            lgd=float(lgd[k]),
        )
        for k in range(exposures)
    ]
    shocked = [ids[int(i)] for i in np.argsort(-owed, kind="stable")[:10]]
    return nodes, edges, shocked


def _cascade_python(nodes: list[Any], edges: list[Any], shocked: list[str]) -> set[str]:
    """The same cascade in plain Python dicts: the same-run baseline (and a cross-check)."""
    capital = {n.id: n.capital for n in nodes}
    owes: dict[str, float] = dict.fromkeys(capital, 0.0)
    lenders: dict[str, list[tuple[str, float]]] = {i: [] for i in capital}
    for e in edges:
        owes[e.debtor] += e.amount
        lenders[e.debtor].append((e.creditor, e.amount * (1.0 if e.lgd is None else e.lgd)))
    losses: dict[str, float] = dict.fromkeys(capital, 0.0)
    defaulted, frontier = set(shocked), list(shocked)
    while frontier:
        for debtor in frontier:
            for creditor, loss in lenders[debtor]:
                losses[creditor] += loss
        frontier = [i for i in capital if i not in defaulted and capital[i] - losses[i] < owes[i]]
        defaulted.update(frontier)
    return defaulted


def _debtrank_python(nodes: list[Any], edges: list[Any], shocked: list[str]) -> float:
    """DebtRank (each node propagates once) in plain Python: the same-run baseline."""
    capital = {n.id: n.capital for n in nodes}
    total = sum(n.weight for n in nodes)
    value = {n.id: n.weight / total for n in nodes}
    exposure: dict[tuple[str, str], float] = {}  # (debtor, creditor): k's total loss on i
    for e in edges:
        key = (e.debtor, e.creditor)
        exposure[key] = exposure.get(key, 0.0) + e.amount * (1.0 if e.lgd is None else e.lgd)
    impacts: dict[str, list[tuple[str, float]]] = {i: [] for i in capital}
    for (debtor, creditor), loss in exposure.items():
        impacts[debtor].append((creditor, min(1.0, loss / capital[creditor])))
    h = dict.fromkeys(capital, 0.0)
    for i in shocked:
        h[i] = 1.0
    distressed, inactive = set(shocked), set()
    while distressed:
        new_h = dict(h)
        for j in distressed:
            for k, w in impacts[j]:
                new_h[k] += w * h[j]  # inactive nodes still take losses; they do not pass them on
        inactive |= distressed
        for k in new_h:
            new_h[k] = min(1.0, new_h[k])
        distressed = {k for k in capital if k not in inactive and new_h[k] > 0}
        h = new_h
    return float(sum(h[i] * value[i] for i in capital) - sum(value[i] for i in shocked))


def measure(args: argparse.Namespace) -> dict[str, Any]:
    import msgspec

    from rfq.risk.contagion import build_network, cascade, debtrank, eisenberg_noe
    from rfq.risk.saccr import SaccrInput, compute_netting_sets, decode_saccr_input

    repeats = args.repeats
    sets = _netting_sets(args.seed, args.trades, args.netting_sets)
    raw = msgspec.json.encode(SaccrInput(netting_sets=tuple(sets)))
    nodes, edges, shocked = _network(args.seed, args.institutions, args.exposures)
    network = build_network(nodes, edges)

    compute_netting_sets(sets)  # warm-up: imports and caches outside the timing
    cascade_result = cascade(network, shocked)
    debtrank_result = debtrank(network, shocked)
    clearing = eisenberg_noe(network)
    figures: dict[str, Any] = {
        "saccr_ms": _median_ms(lambda: compute_netting_sets(sets), repeats),
        "cascade_ms": _median_ms(lambda: cascade(network, shocked), repeats),
        "debtrank_ms": _median_ms(lambda: debtrank(network, shocked), repeats),
        "saccr_decode_and_compute_ms": _median_ms(
            lambda: compute_netting_sets(decode_saccr_input(raw).netting_sets), repeats
        ),
        "build_network_ms": _median_ms(lambda: build_network(nodes, edges), repeats),
        "eisenberg_noe_ms": _median_ms(lambda: eisenberg_noe(network), repeats),
        "baseline_saccr_decode_ms": _median_ms(lambda: decode_saccr_input(raw), repeats),
        "baseline_cascade_ms": _median_ms(lambda: _cascade_python(nodes, edges, shocked), 3),
        "baseline_debtrank_ms": _median_ms(lambda: _debtrank_python(nodes, edges, shocked), 3),
    }
    if _cascade_python(nodes, edges, shocked) != set(cascade_result.defaulted):
        raise RuntimeError("the cascade disagrees with its plain-Python reference")
    reference = _debtrank_python(nodes, edges, shocked)
    if abs(reference - debtrank_result.additional_stress) > 1e-9:
        raise RuntimeError(
            f"DebtRank {debtrank_result.additional_stress} differs from its plain-Python "
            f"reference {reference}"
        )
    figures["ratios"] = {
        "saccr_vs_decode": round(figures["saccr_ms"] / figures["baseline_saccr_decode_ms"], 2),
        "cascade_vs_python": round(figures["cascade_ms"] / figures["baseline_cascade_ms"], 4),
        "debtrank_vs_python": round(figures["debtrank_ms"] / figures["baseline_debtrank_ms"], 4),
    }
    figures["targets_ms"] = TARGETS_MS
    figures["met"] = {key: figures[key] < target for key, target in TARGETS_MS.items()}
    figures["inputs"] = {
        "trades": sum(len(ns.trades) for ns in sets),
        "netting_sets": len(sets),
        "institutions": network.size,
        "exposures": len(network.amount),
        "shocked": len(shocked),
        "seed": args.seed,
        "repeats": repeats,
    }
    figures["outcomes"] = {
        "cascade_defaults": len(cascade_result.defaulted),
        "cascade_rounds": len(cascade_result.rounds),
        "debtrank_additional_stress": debtrank_result.additional_stress,
        "debtrank_additional_defaults": debtrank_result.additional_defaults,
        "eisenberg_noe_defaults": len(clearing.defaulted),
    }
    return figures


def run(args: argparse.Namespace) -> int:
    figures = measure(args)
    if args.json:
        print(json.dumps(figures))
        return 0
    inputs, outcomes = figures["inputs"], figures["outcomes"]
    print(
        f"risk benchmark: {inputs['trades']:,} trades in {inputs['netting_sets']} netting sets; "
        f"{inputs['institutions']:,} institutions, {inputs['exposures']:,} exposures, "
        f"{inputs['shocked']} shocked; median of {inputs['repeats']} runs (seed {inputs['seed']})"
    )
    print(f"{'measurement':<30} {'median':>12} {'target':>12}  ")
    rows = [
        ("saccr_ms", "SA-CCR (typed trades)"),
        ("cascade_ms", "cascade"),
        ("debtrank_ms", "DebtRank"),
        ("saccr_decode_and_compute_ms", "SA-CCR incl. JSON decode"),
        ("build_network_ms", "build exposure network"),
        ("eisenberg_noe_ms", "Eisenberg-Noe clearing"),
        ("baseline_saccr_decode_ms", "baseline: decode the trades"),
        ("baseline_cascade_ms", "baseline: cascade, plain Python"),
        ("baseline_debtrank_ms", "baseline: DebtRank, plain Python"),
    ]
    for key, label in rows:
        target = TARGETS_MS.get(key)
        target_text = f"< {target:,.0f} ms" if target is not None else "-"
        verdict = "" if target is None else ("ok" if figures[key] < target else "MISSED")
        print(f"{label:<30} {figures[key]:>9.1f} ms {target_text:>12}  {verdict}")
    ratios = figures["ratios"]
    print(
        f"ratios: SA-CCR / decode {ratios['saccr_vs_decode']}, cascade / plain Python "
        f"{ratios['cascade_vs_python']}, DebtRank / plain Python {ratios['debtrank_vs_python']}"
    )
    print(
        f"cascade: {outcomes['cascade_defaults']} defaults in {outcomes['cascade_rounds']} rounds; "
        f"DebtRank: R = {outcomes['debtrank_additional_stress']:.4f}, "
        f"{outcomes['debtrank_additional_defaults']} additional defaults; "
        f"Eisenberg-Noe: {outcomes['eisenberg_noe_defaults']} defaults"
    )
    return 0
