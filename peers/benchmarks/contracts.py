"""``botc bench contracts``: revaluing 100,000 live contracts on one fixing tick.

Builds a seeded book of contracts of every template across the catalog's underlyings (most
of them margined, so a tick also decides variation-margin calls), applies a first fixing of
every underlying (untimed), then times ``ContractBook.apply(Fixing(...))`` over several
daily ticks of a seeded random walk. Reports the median time per tick (target < 100 ms) and,
as the same-run baseline, a pure-Python loop doing the same revaluation one contract at a
time with the scalar payoff functions (``rfq.contracts.payoff``). Also reports what the
ledger will care about: the size of the book's canonical state bytes and their cost, the
first time (every record encoded) and after a tick (only the records it changed), and the
extra cost of the sha256 ``state_digest`` once the changed records are re-encoded.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import time
from typing import Any

import numpy as np

TARGET_MS = 100.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--contracts", type=int, default=100_000, help="book size (100000)")
    parser.add_argument("--ticks", type=int, default=9, help="timed fixing ticks (9)")
    parser.add_argument("--baseline-runs", type=int, default=3, help="scalar loop runs (3)")
    parser.add_argument("--seed", type=int, default=20201116, help="random seed")


def build_contracts(n: int, seed: int, trade_date: dt.date) -> list[Any]:
    """``n`` seeded contracts of every registered template over the catalog's underlyings
    (each template draws its own legs: ``ContractTemplate.bench_shape``)."""
    from rfq.contracts import Contract, MarginTerms
    from rfq.contracts.templates import templates as registered
    from rfq.contracts.templates.base import BenchPool
    from rfq.instruments import Side, Terms, listed_underlyings

    listed = listed_underlyings(trade_date)
    rng = np.random.default_rng(seed)
    futures = sorted(u.id for u in listed.values() if u.contract_month is not None)
    roots = sorted({listed[u].root for u in futures})
    months = sorted({listed[u].contract_month or "" for u in futures})
    price = {u.id: u.start_price for u in listed.values()}
    templates = registered()
    out: list[Any] = []
    for i in range(n):
        template = templates[int(rng.integers(len(templates)))]
        fut = futures[int(rng.integers(len(futures)))]
        maturity = trade_date + dt.timedelta(days=int(rng.integers(60, 366)))
        pool = BenchPool(trade_date, fut, futures, roots, months)
        shape = template.bench_shape(rng, pool, maturity)
        legs, multiplier = shape.legs, shape.multiplier
        level = sum(leg.weight * price[leg.underlying] for leg in legs)
        gross = sum(abs(leg.weight) * price[leg.underlying] for leg in legs)
        quantity = float(rng.integers(1, 5001)) if multiplier == 1.0 else float(rng.integers(1, 21))
        fixed: float | None = round(level + float(rng.normal(0.0, 0.01)) * gross, 1)
        fixed, option = template.bench_option(rng, level, fixed)
        exposure = gross * quantity * multiplier
        margin = (
            MarginTerms(
                threshold=round(0.03 * exposure, 2),
                minimum_transfer_amount=round(0.005 * exposure, 2),
                cure_days=1,
            )
            if rng.random() < 0.8
            else None
        )
        out.append(
            Contract(
                id=f"B{i:06d}",
                terms=Terms(
                    template=template.name,
                    legs=legs,
                    client_side=Side.BUY if rng.random() < 0.5 else Side.SELL,
                    quantity=quantity,
                    trade_date=trade_date,
                    maturity=shape.maturity,
                    multiplier=multiplier,
                    averaging=shape.averaging,
                    option=option,
                ),
                client=f"client{int(rng.integers(500)):03d}",
                dealer=f"dealer{int(rng.integers(12)):02d}",
                fixed_price=fixed,
                initial_margin_rate=0.1,
                margin=margin,
            )
        )
    return out


def _weekdays(start: dt.date, count: int) -> list[dt.date]:
    days: list[dt.date] = []
    day = start
    while len(days) < count:
        if day.weekday() < 5:
            days.append(day)
        day += dt.timedelta(days=1)
    return days


def scalar_tick(
    contracts: list[Any], state: dict[str, list[float]], prices: dict[str, float], day: dt.date
) -> int:
    """The baseline: the same tick, one contract at a time, in plain Python."""
    from rfq.contracts import payoff
    from rfq.contracts.templates import template_of

    calls = 0
    for contract in contracts:
        st = state[contract.id]
        averaging = contract.terms.averaging
        if averaging is not None and averaging.start <= day <= averaging.end:
            st[0] = st[0] + payoff.level(contract.terms.legs, prices)
            st[1] += 1
        mark = payoff.level(contract.terms.legs, prices)
        if template_of(contract.terms).averaging:
            mark = payoff.average_estimate(
                st[0], int(st[1]), mark, payoff.remaining_days(contract, day)
            )
        value = payoff.client_value(contract, mark)
        margin = contract.margin
        if margin is not None:
            delta = payoff.variation_target(value, margin.threshold) - st[2]
            if delta != 0 and abs(delta) >= margin.minimum_transfer_amount:
                calls += 1
    return calls


def measure(n: int, ticks: int, baseline_runs: int, seed: int) -> dict[str, Any]:
    from rfq.contracts import ContractBook, Fixing, MarginCalls, Price
    from rfq.instruments import listed_underlyings

    trade_date = dt.date(2025, 11, 3)
    catalog = listed_underlyings(trade_date)
    t0 = time.perf_counter()
    contracts = build_contracts(n, seed, trade_date)
    book = ContractBook()
    for contract in contracts:
        book.add(contract)
    build_s = time.perf_counter() - t0

    rng = np.random.default_rng(seed + 1)
    names = sorted(catalog)
    level = {u: catalog[u].start_price for u in names}
    days = _weekdays(trade_date, ticks + 1)

    def tick_prices() -> dict[str, float]:
        for u in names:
            shock = float(rng.normal(0.0, catalog[u].annual_vol / np.sqrt(252.0)))
            level[u] = round(level[u] * float(np.exp(shock)), 2)
        return dict(level)

    first = dict(level)
    book.apply(Fixing(days[0], tuple(Price(u, p) for u, p in first.items())))
    t = time.perf_counter()
    book.state_bytes()
    state_cold_ms = (time.perf_counter() - t) * 1000.0
    tick_ms: list[float] = []
    state_ms: list[float] = []
    digest_ms: list[float] = []
    blob = b""
    calls: list[int] = []
    last_prices = first
    for day in days[1:]:
        last_prices = tick_prices()
        event = Fixing(day, tuple(Price(u, p) for u, p in last_prices.items()))
        t = time.perf_counter()
        out = book.apply(event)
        tick_ms.append((time.perf_counter() - t) * 1000.0)
        calls.append(sum(len(o.contract_ids) for o in out if isinstance(o, MarginCalls)))
        t = time.perf_counter()
        blob = book.state_bytes()  # once per block, as the ledger will
        state_ms.append((time.perf_counter() - t) * 1000.0)
        t = time.perf_counter()
        book.state_digest()  # on top: the records are already re-encoded, only hashing
        digest_ms.append((time.perf_counter() - t) * 1000.0)

    state = {c.id: [0.0, 0.0, 0.0] for c in contracts}
    baseline_ms: list[float] = []
    for _ in range(max(baseline_runs, 1)):
        t = time.perf_counter()
        scalar_tick(contracts, state, last_prices, days[-1])
        baseline_ms.append((time.perf_counter() - t) * 1000.0)

    tick = statistics.median(tick_ms)
    baseline = statistics.median(baseline_ms)
    return {
        "benchmark": "contracts",
        "contracts": n,
        "underlyings": len(names),
        "ticks": len(tick_ms),
        "tick_ms": round(tick, 3),
        "tick_ms_max": round(max(tick_ms), 3),
        "tick_ms_all": [round(x, 3) for x in tick_ms],
        "baseline_tick_ms": round(baseline, 3),
        "ratio": round(baseline / tick, 1) if tick > 0 else None,
        "target_ms": TARGET_MS,
        "ok": tick < TARGET_MS,
        "margin_calls_per_tick": calls,
        "open_contracts": book.open_count,
        "build_s": round(build_s, 2),
        "state_bytes_ms": round(statistics.median(state_ms), 1),
        "state_bytes_cold_ms": round(state_cold_ms, 1),
        "state_bytes_mb": round(len(blob) / 1e6, 2),
        "state_digest_extra_ms": round(statistics.median(digest_ms), 1),
        "seed": seed,
    }


def run(args: argparse.Namespace) -> int:
    if args.contracts < 1 or args.ticks < 1:
        from peers.errors import CliError

        raise CliError("--contracts and --ticks must be at least 1")
    result = measure(args.contracts, args.ticks, args.baseline_runs, args.seed)
    if args.json:
        print(json.dumps(result))
    else:
        verdict = "OK" if result["ok"] else "OVER TARGET"
        print(
            f"contracts: {result['contracts']:,} live across {result['underlyings']} underlyings "
            f"(built and opened in {result['build_s']} s)\n"
            f"fixing tick: median {result['tick_ms']} ms over {result['ticks']} ticks "
            f"(max {result['tick_ms_max']} ms); target < {TARGET_MS:.0f} ms: {verdict}\n"
            f"baseline (pure-Python scalar loop, same contracts): {result['baseline_tick_ms']} ms "
            f"per tick, {result['ratio']}x slower\n"
            f"margin calls per tick: {result['margin_calls_per_tick']}\n"
            f"state bytes: {result['state_bytes_mb']} MB, median {result['state_bytes_ms']} ms "
            f"after a tick ({result['state_bytes_cold_ms']} ms the first time); "
            f"sha256 state digest on top: median {result['state_digest_extra_ms']} ms"
        )
    return 0
