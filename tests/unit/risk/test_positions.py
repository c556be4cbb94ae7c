"""The numpy columns value a netting pair as the scalar SA-CCR does, and fall back to it."""

from __future__ import annotations

import datetime as dt
import math

from hypothesis import given, settings
from hypothesis import strategies as st

from rfq.contracts.model import MarginTerms
from rfq.instruments import OptionTerms, Side, Template
from rfq.risk.monitor import netting_pair_exposures, pair_exposures
from rfq.risk.positions import PositionTable

from .test_monitor import AS_OF, view

UNDERLYINGS = ("RB2605", "HC2605", "SC2605", "CSI300", "XYZ")

contract = st.tuples(
    st.sampled_from(["swap", "spread", "call", "put", "swap"]),
    st.sampled_from(UNDERLYINGS),
    st.sampled_from(UNDERLYINGS),
    st.sampled_from([Side.BUY, Side.SELL]),
    st.sampled_from([None, 2900.0, 3200.0, 3500.0, -10.0]),  # mark
    st.sampled_from([None, 0.0, 25_000.0, -40_000.0]),  # client mtm
    st.sampled_from([0.0, 1_000.0, -3_000.0]),  # vm balance
    st.sampled_from([0.0, 0.0, 5_000.0]),  # cash margin held
    st.integers(0, 800),  # days to maturity
    st.sampled_from([2800.0, 3200.0, 3600.0]),  # strike
)


def build(index: int, spec: tuple, margined: bool):  # type: ignore[no-untyped-def]
    kind, first, second, side, mark, mtm, vm, _, days, strike = spec
    legs: tuple[tuple[str, float], ...] = ((first, 1.0),)
    template, option = Template.PRICE_SWAP, None
    if kind == "spread" and second != first:
        template, legs = Template.SPREAD_SWAP, ((first, 1.0), (second, -1.0))
    elif kind in ("call", "put"):
        template, option = Template.EUROPEAN_OPTION, OptionTerms(kind, strike)
    return view(
        f"K{index:02d}",
        template=template,
        legs=legs,
        side=side,
        option=option,
        mark=mark,
        client_mtm=mtm,
        vm=vm,
        maturity=AS_OF + dt.timedelta(days=days),
        margin=MarginTerms(threshold=1_000.0 * (index % 3)) if margined else None,
    )


def close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-6)


@settings(max_examples=80, deadline=None)
@given(
    st.lists(contract, min_size=1, max_size=10),
    st.booleans(),
    st.dictionaries(st.sampled_from(UNDERLYINGS), st.sampled_from([2500.0, 3300.0, 4100.0])),
    st.integers(0, 400),
)
def test_a_pair_valued_from_the_columns_has_the_scalar_figures(specs, margined, prices, on) -> None:
    views = [build(i, spec, margined) for i, spec in enumerate(specs)]
    cash = {v.contract.id: spec[7] for v, spec in zip(views, specs, strict=True)}
    as_of = AS_OF + dt.timedelta(days=on)
    table = PositionTable()
    assert all(table.add(v) for v in views)
    pair = ("C1", "D1")
    [got] = netting_pair_exposures(table, {pair: views}, (), cash, as_of, prices, 10.0).values()
    want = pair_exposures(*pair, views, cash, as_of, prices, 10.0)
    for g, w in zip(got, want, strict=True):
        assert (g.netting_set, g.creditor, g.debtor, g.contracts) == (
            w.netting_set,
            w.creditor,
            w.debtor,
            w.contracts,
        )
        a, b = g.result, w.result
        assert (a.id, a.margined, a.capped) == (b.id, b.margined, b.capped) or close(
            a.ead_unmargined or 0.0, a.ead
        )
        for name in ("v", "collateral", "rc", "pfe", "multiplier", "ead"):
            assert close(getattr(a, name), getattr(b, name)), name
        for name in ("equity", "commodity", "aggregate", "interest_rate", "fx", "credit"):
            assert close(getattr(a.addon, name), getattr(b.addon, name)), name


def test_a_contract_the_columns_cannot_hold_values_its_pair_the_scalar_way() -> None:
    table = PositionTable()
    two_legs = view(
        "A1",
        template=Template.EUROPEAN_OPTION,
        legs=(("RB2605", 1.0), ("HC2605", -1.0)),
        option=OptionTerms("call", 3200.0),
    )
    assert not table.add(two_legs)  # an option on two legs
    plain = view("A2")
    assert table.add(plain)
    pair = ("C1", "D1")
    found = netting_pair_exposures(
        table, {pair: [two_legs, plain]}, {pair}, {}, AS_OF, {"RB2605": 3300.0}, 10.0
    )
    assert found[pair] == pair_exposures(
        *pair, [two_legs, plain], {}, AS_OF, {"RB2605": 3300.0}, 10.0
    )


def test_valuing_one_pair_or_all_gives_the_pair_the_same_figures() -> None:
    table = PositionTable()
    pairs = {
        (client, "D1"): [view(f"{client}-{i}", client=client, mark=3000.0 + i) for i in range(5)]
        for client in ("C1", "C2", "C3")
    }
    for views in pairs.values():
        for v in views:
            table.add(v)
    prices = {"RB2605": 3300.0}
    together = netting_pair_exposures(table, pairs, (), {}, AS_OF, prices, 10.0)
    alone = netting_pair_exposures(
        table, {("C2", "D1"): pairs[("C2", "D1")]}, (), {}, AS_OF, prices, 10.0
    )
    assert alone[("C2", "D1")] == together[("C2", "D1")]
