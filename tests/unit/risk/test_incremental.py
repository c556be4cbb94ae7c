"""The incremental monitor gives the whole-market assessment, re-computing only what changed."""

from __future__ import annotations

import dataclasses
import datetime as dt

import msgspec
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from rfq.contracts.model import MarginTerms, Outcome, Status
from rfq.instruments import Averaging, OptionTerms, Side, Template
from rfq.risk.contagion import ExposureNetwork
from rfq.risk.incremental import IncrementalMonitor
from rfq.risk.monitor import assess

from .test_monitor import AS_OF, market, view

CLIENTS = ("C1", "C2")
DEALERS = ("D1", "D2")

change = st.tuples(
    st.integers(0, 11),  # which contract
    st.sampled_from(CLIENTS),
    st.sampled_from(DEALERS),
    st.sampled_from([Side.BUY, Side.SELL]),
    st.sampled_from([Status.LIVE, Status.LIVE, Status.SETTLED, Status.DEFAULTED]),
    st.sampled_from([0.0, 0.0, 5_000.0]),  # cash initial margin held for it
    st.sampled_from([0, 0, 0, 2]),  # business days on
    st.sampled_from([0.0, 0.0, 2_000.0, -7_000.0]),  # variation margin moved to the client
)

KINDS = ("swap", "spread", "call", "swap", "put", "averaging")


def terms_of(index: int) -> dict[str, object]:
    """A contract's template, legs and margin terms follow from its index (they never change):
    swaps, spreads, options (held by the columns), an average-price swap (it never prices)
    and, for some, a CSA."""
    kind = KINDS[index % len(KINDS)]
    extra: dict[str, object] = {"margin": MarginTerms(threshold=500.0) if index % 3 else None}
    if kind == "spread":
        extra |= {"template": Template.SPREAD_SWAP, "legs": (("RB2605", 1.0), ("HC2605", -1.0))}
    elif kind in ("call", "put"):
        extra |= {"template": Template.EUROPEAN_OPTION, "option": OptionTerms(kind, 3250.0)}
    elif kind == "averaging":
        window = Averaging(AS_OF, AS_OF + dt.timedelta(days=30))
        extra |= {"template": Template.AVERAGE_PRICE_SWAP, "averaging": window}
    return extra


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from([None, None, 3150.0, 3200.0, 3300.0]),  # the block's fixing, if any
            st.lists(change, min_size=1, max_size=5),
        ),
        min_size=1,
        max_size=8,
    )
)
def test_block_after_block_the_incremental_assessment_is_the_whole_market_one(blocks) -> None:
    """As the regulator feeds it: a fixing marks every live contract at the fixing (each is
    put again); a contract that ends keeps the mark it ended with."""
    monitor = IncrementalMonitor()
    everything: dict[str, object] = {}
    cash: dict[str, float] = {}
    ended: set[str] = set()
    as_of = AS_OF
    mark: float | None = None
    for height, (fixing, block) in enumerate(blocks, start=1):
        if fixing is not None:
            mark = fixing
            for cid, live_view in list(everything.items()):
                if cid not in ended:
                    everything[cid] = msgspec.structs.replace(
                        live_view,
                        mark=mark + int(cid[1:]),  # marks differ: which contract prices matters
                        client_mtm=(mark - 3200.0) * 100,
                    )
                    monitor.remark(everything[cid])  # as feed does: the cash it holds
        for index, client, dealer, side, status, held, days, vm in block:
            cid = f"K{index}"
            if cid in ended:
                continue  # an ended contract never comes back
            previous = everything.get(cid)
            if previous is not None:  # a contract keeps its parties and side
                client, dealer = previous.contract.client, previous.contract.dealer
                side = previous.contract.terms.client_side
            outcome = (
                Outcome(Status.DEFAULTED, as_of, height, mark, 0.0, 0.0, 0.0, client, 0.4)
                if status == Status.DEFAULTED
                else None
            )
            v = view(
                cid,
                client=client,
                dealer=dealer,
                side=side,
                mark=None if mark is None else mark + index,
                status=status,
                outcome=outcome,
                client_mtm=None if mark is None else (mark - 3200.0) * 100 * (index % 2 or -1),
                vm=vm,
                **terms_of(index),  # type: ignore[arg-type]
            )
            everything[cid] = v
            cash[cid] = held
            if status.terminal:
                ended.add(cid)
            monitor.put(v, held)
            as_of = as_of + dt.timedelta(days=days)
        # what the regulator hands the whole-market monitor: live contracts, then defaulted
        live = [v for v in everything.values() if not v.status.terminal]
        defaulted = [v for v in everything.values() if v.status == Status.DEFAULTED]
        inp = market(*live, *defaulted, cash_margin=dict(cash))
        expected = assess(
            type(inp)(
                height=height,
                as_of=as_of,
                members=inp.members,
                contracts=inp.contracts,
                cash_margin=inp.cash_margin,
            )
        )
        got = monitor.assess(height, as_of, inp.members, {}, ())
        assert got.rows == expected.rows
        assert got.exposures == expected.exposures
        assert same_network(got.network, expected.network)


def same_network(a: ExposureNetwork, b: ExposureNetwork) -> bool:
    return a.ids == b.ids and all(
        np.array_equal(getattr(a, f.name), getattr(b, f.name), equal_nan=True)
        for f in dataclasses.fields(a)
        if f.name != "ids"
    )


def test_a_trade_recomputes_only_its_own_netting_set() -> None:
    monitor = IncrementalMonitor()
    members = market().members
    for i in range(6):
        monitor.put(view(f"a{i}", client="C1", dealer="D1"))
        monitor.put(view(f"b{i}", client="C2", dealer="D2"))
    monitor.assess(1, AS_OF, members, {}, ())
    assert monitor.recomputed == 2
    monitor.put(view("a-new", client="C1", dealer="D1"))
    after = monitor.assess(2, AS_OF, members, {}, ())
    assert monitor.recomputed == 1
    row = next(r for r in after.rows if r.institution == "C1")
    assert row.open_contracts == 7
    # a new business date moves every maturity: every pair again
    monitor.assess(3, AS_OF + dt.timedelta(days=1), members, {}, ())
    assert monitor.recomputed == 2
