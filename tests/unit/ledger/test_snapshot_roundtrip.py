"""A snapshot restores the state exactly, whatever happened before it: random runs over trades,
fixings, margin calls met and missed, close-outs, credit events, guarantees and settlements."""

from __future__ import annotations

import datetime as dt
import hashlib

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rfq.instruments import OptionTerms, Side
from rfq.ledger.state import LedgerState
from rfq.ledger.tx import (
    CloseOutRequest,
    CreditEventTx,
    GuaranteeGrant,
    PaymentConfirmed,
    PaymentFailed,
    PriceFixing,
)

from .harness import TODAY, Chain, make_net, swap_terms, trade_tx

NET = make_net(margin_cure_days=1)

_op = st.one_of(
    st.tuples(
        st.just("trade"),
        st.sampled_from(["C1", "C2"]),
        st.sampled_from(["D1", "D2", "D3"]),
        st.sampled_from([Side.BUY, Side.SELL]),
        st.sampled_from([100, 250.5, 1000]),
        st.sampled_from([2, 5, 30]),
        st.booleans(),
        st.sampled_from([0.0, 0.1]),
        st.sampled_from([0, 1000, 10**9]),
    ),
    st.tuples(st.just("fix"), st.floats(min_value=-0.08, max_value=0.08)),
    st.tuples(st.just("confirm"), st.floats(min_value=0, max_value=1)),
    st.tuples(st.just("fail"), st.integers(min_value=0, max_value=5)),
    st.tuples(st.just("close"), st.integers(min_value=0, max_value=5)),
    st.tuples(st.just("credit"), st.sampled_from(["C1", "C2", "D3"])),
    st.tuples(st.just("grant"), st.sampled_from(["C1", "C2"]), st.sampled_from([5e4, 1e5])),
    st.tuples(st.just("idle"), st.integers(min_value=1, max_value=3)),
)


class Run:
    def __init__(self) -> None:
        self.chain = Chain(NET)
        self.n = 0
        self.price = 3200.0
        self.day = TODAY

    def at(self) -> int:
        return self.chain.head.timestamp_ms + 1000

    def step(self, op: tuple) -> None:  # type: ignore[type-arg]
        state, at = self.chain.state, self.at()
        kind = op[0]
        txs: list[bytes] = []
        if kind == "trade":
            _, client, dealer, side, qty, days, option, im, line = op
            self.n += 1
            terms = swap_terms(side=side, quantity=qty, days=days)
            if option:
                terms = swap_terms(side=side, quantity=qty, days=days)
                terms = type(terms)(
                    template="european_option",  # type: ignore[arg-type]
                    legs=terms.legs,
                    client_side=side,
                    quantity=qty,
                    trade_date=TODAY,
                    maturity=terms.maturity,
                    option=OptionTerms("call", 3200.0),
                )
            txs.append(
                trade_tx(
                    NET,
                    rfq_id=f"r{self.n}",
                    client=client,
                    dealer=dealer,
                    price=self.price if not option else 55.5,
                    terms=terms,
                    at_ms=at - 500,
                    im_rate=im,
                    credit_line=line,
                )
            )
        elif kind == "fix":
            self.price = round(self.price * (1 + op[1]), 1)
            self.day += dt.timedelta(days=1)
            txs.append(NET.tx("ORACLE", PriceFixing(self.day, (("RB2705", self.price),)), at_ms=at))
        elif kind == "confirm":
            pending = sorted(p.id for p in state.payments.values() if p.status == "pending")
            for pid in pending[: int(len(pending) * op[1]) + 1]:
                p = state.payments[pid]
                txs.append(
                    NET.tx("BANK", PaymentConfirmed(p.id, p.amount, f"ref-{p.id}"), at_ms=at)
                )
        elif kind == "fail":
            pending = sorted(p.id for p in state.payments.values() if p.status == "pending")
            if pending:
                pid = pending[op[1] % len(pending)]
                txs.append(NET.tx("BANK", PaymentFailed(pid, "insufficient funds"), at_ms=at))
        elif kind == "close":
            live = [c for c in state.book.ids() if not state.book.get(c).status.terminal]
            if live:
                view = state.book.get(live[op[1] % len(live)])
                for who in (view.contract.client, view.contract.dealer):
                    txs.append(NET.tx(who, CloseOutRequest(view.contract.id), at_ms=at))
        elif kind == "credit":
            txs.append(NET.tx("REG", CreditEventTx(op[1], "test"), at_ms=at))
        elif kind == "grant":
            self.n += 1
            asset = hashlib.sha256(f"asset-{self.n}".encode()).hexdigest()
            grant = GuaranteeGrant(f"g{self.n}", op[1], op[2], asset, op[2] * 2)
            txs.append(NET.tx("G1", grant, at_ms=at))
        elif kind == "idle":
            for _ in range(op[1] - 1):
                self.chain.block()
        self.chain.block(*txs, at_ms=at)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(st.lists(_op, min_size=5, max_size=40))
def test_restore_of_a_snapshot_has_the_same_root_at_every_height_and_carries_on_the_same(ops):
    run = Run()
    for op in ops:
        run.step(op)
        state = run.chain.state
        restored = LedgerState.restore(NET.genesis, state.snapshot())
        assert restored.state_root() == state.state_root(), f"after {op} at {state.height}"
        assert restored.snapshot() == state.snapshot()
    # The restored copy executes the next blocks to the same roots.
    twin = Chain(NET)
    twin.state = LedgerState.restore(NET.genesis, run.chain.state.snapshot())
    twin.head = run.chain.head
    at = run.at()
    fix = NET.tx(
        "ORACLE", PriceFixing(run.day + dt.timedelta(days=1), (("RB2705", 3000.0),)), at_ms=at
    )
    for c in (run.chain, twin):
        c.block(fix, at_ms=at)
        c.block(at_ms=at + 1000)
        c.block(at_ms=at + 2000)
    assert twin.state.state_root() == run.chain.state.state_root()


def test_a_settled_trade_without_guarantees_restores_with_the_same_ratings_digest():
    """The traced case: RatingTuple.guarantee was the integer 0 live and 0.0 after a restore."""
    run = Run()
    run.step(("trade", "C1", "D1", Side.BUY, 100, 2, False, 0.0, 0))
    for _ in range(3):
        run.step(("fix", 0.0))
    state = run.chain.state
    assert any(r.evidence for r in state.ratings.values()), "the trade should have settled"
    restored = LedgerState.restore(NET.genesis, state.snapshot())
    assert restored.ratings.digest() == state.ratings.digest()
    assert restored.state_root() == state.state_root()
