"""A snapshot restores the state exactly, whatever happened before it: random runs over every
transaction kind (trades, fixings, payments confirmed and failed, close-outs, credit events,
guarantees granted and revoked, external ratings, registrations, governance, evidence) and so
every contract event (margin calls met and missed, settlements, defaults), with missed rounds and
epoch re-elections; and a pinned run shows the state root and snapshot bytes do not change."""

from __future__ import annotations

import datetime as dt
import hashlib
import typing
from collections.abc import Callable

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rfq.genesis import public_identity
from rfq.identity import Role
from rfq.instruments import OptionTerms, Side
from rfq.ledger.consensus import Prepare
from rfq.ledger.state import LedgerState
from rfq.ledger.tx import (
    ByzantineEvidence,
    CloseOutRequest,
    CreditEventTx,
    Evict,
    ExternalRating,
    GuaranteeGrant,
    GuaranteeRevoke,
    Nominate,
    OffboardMember,
    PaymentConfirmed,
    PaymentFailed,
    PriceFixing,
    RegisterMember,
    ReinstateMember,
    SuspendMember,
    Veto,
)
from rfq.money import to_micros

from .harness import TODAY, Chain, Net, make_net, seeded_identity, swap_terms, trade_tx

PARAMS: dict[str, object] = {"margin_cure_days": 1, "epoch_blocks": 9, "liveness_missed_rounds": 3}
NET = make_net(**PARAMS)
ELIGIBLE = ["CCP", "D1", "D2", "D3", "G1", "G2"]

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
    st.tuples(st.just("revoke"), st.integers(min_value=0, max_value=5)),
    st.tuples(
        st.just("rate"), st.sampled_from(["C1", "C2", "D1", "G1"]), st.sampled_from(["AA", "BB"])
    ),
    st.tuples(st.just("register"), st.sampled_from(["BBB", "A", ""])),
    st.tuples(st.just("suspend"), st.sampled_from(["C1", "C2", "G1"])),
    st.tuples(st.just("reinstate"), st.sampled_from(["C1", "C2", "G1"])),
    st.tuples(st.just("offboard"), st.sampled_from(["C1", "C2", "G1"])),
    st.tuples(st.just("nominate"), st.sampled_from(ELIGIBLE)),
    st.tuples(st.just("veto"), st.sampled_from(ELIGIBLE)),
    st.tuples(st.just("evict"), st.sampled_from(ELIGIBLE)),
    st.tuples(st.just("evidence"), st.sampled_from(ELIGIBLE)),
    st.tuples(st.just("late"), st.integers(min_value=1, max_value=2)),
)


class Run:
    """A chain driven by ops; ``after_block`` sees the state after every block."""

    def __init__(self, net: Net = NET, after_block: Callable[[LedgerState], None] | None = None):
        self.net = net
        self.chain = Chain(net)
        self.after_block = after_block
        self.n = 0
        self.price = 3200.0
        self.day = TODAY

    def at(self) -> int:
        return self.chain.head.timestamp_ms + 1000

    def block(self, *txs: bytes, at_ms: int | None = None, round: int = 0) -> None:
        self.chain.block(*txs, at_ms=at_ms, round=round)
        if self.after_block is not None:
            self.after_block(self.chain.state)

    def step(self, op: tuple) -> None:  # type: ignore[type-arg]
        state, at, net = self.chain.state, self.at(), self.net
        kind = op[0]
        txs: list[bytes] = []
        round_ = 0
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
                    net,
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
            txs.append(net.tx("ORACLE", PriceFixing(self.day, (("RB2705", self.price),)), at_ms=at))
        elif kind == "confirm":
            pending = sorted(p.id for p in state.payments.values() if p.status == "pending")
            for pid in pending[: int(len(pending) * op[1]) + 1]:
                p = state.payments[pid]
                txs.append(
                    net.tx("BANK", PaymentConfirmed(p.id, p.amount, f"ref-{p.id}"), at_ms=at)
                )
        elif kind == "fail":
            pending = sorted(p.id for p in state.payments.values() if p.status == "pending")
            if pending:
                pid = pending[op[1] % len(pending)]
                txs.append(net.tx("BANK", PaymentFailed(pid, "insufficient funds"), at_ms=at))
        elif kind == "close":
            live = [c for c in state.book.ids() if not state.book.get(c).status.terminal]
            if live:
                view = state.book.get(live[op[1] % len(live)])
                for who in (view.contract.client, view.contract.dealer):
                    txs.append(net.tx(who, CloseOutRequest(view.contract.id), at_ms=at))
        elif kind == "credit":
            txs.append(net.tx("REG", CreditEventTx(op[1], "test"), at_ms=at))
        elif kind == "grant":
            self.n += 1
            asset = hashlib.sha256(f"asset-{self.n}".encode()).hexdigest()
            grant = GuaranteeGrant(
                f"g{self.n}", op[1], to_micros(op[2]), asset, to_micros(op[2] * 2)
            )
            txs.append(net.tx("G1", grant, at_ms=at))
        elif kind == "idle":
            for _ in range(op[1] - 1):
                self.block()
        elif kind == "revoke":
            live = sorted(g.id for g in state.guarantees.values() if g.status == "live")
            if live:
                txs.append(net.tx("G1", GuaranteeRevoke(live[op[1] % len(live)]), at_ms=at))
        elif kind == "rate":
            txs.append(net.tx("REG", ExternalRating(op[1], op[2]), at_ms=at))
        elif kind == "register":
            self.n += 1
            new = seeded_identity(f"N{self.n}", Role.CLIENT)
            member = new.member(f"N{self.n}", external_rating=op[1], capital=1e6)
            proof = public_identity(new, member.name).proof
            txs.append(net.tx("REG", RegisterMember(member, proof), at_ms=at))
        elif kind == "suspend":
            txs.append(net.tx("REG", SuspendMember(op[1], "test"), at_ms=at))
        elif kind == "reinstate":
            txs.append(net.tx("REG", ReinstateMember(op[1], "test"), at_ms=at))
        elif kind == "offboard":
            txs.append(net.tx("REG", OffboardMember(op[1], "test"), at_ms=at))
        elif kind == "nominate":
            txs.append(net.tx("REG", Nominate(op[1]), at_ms=at))
        elif kind == "veto":
            txs.append(net.tx("REG", Veto(op[1]), at_ms=at))
        elif kind == "evict":
            txs.append(net.tx("REG", Evict(op[1], "operator request"), at_ms=at))
        elif kind == "evidence":
            first, second = (
                net.sign(op[1], Prepare(state.height, 0, bytes([n]) * 32), at_ms=at) for n in (1, 2)
            )
            txs.append(net.tx("C2", ByzantineEvidence(first, second), at_ms=at))
        elif kind == "late":  # decided in a later round: the earlier proposers missed their turn
            round_ = op[1]
        self.block(*txs, at_ms=at, round=round_)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(st.lists(_op, min_size=5, max_size=40))
def test_restore_of_a_snapshot_has_the_same_root_at_every_height_and_carries_on_the_same(ops):
    def same_after_restore(state: LedgerState) -> None:
        snapshot = state.snapshot()
        restored = LedgerState.restore(NET.genesis, snapshot)
        assert restored.state_root() == state.state_root(), f"at {state.height}"
        assert restored.snapshot() == snapshot, f"at {state.height}"

    run = Run(after_block=same_after_restore)
    for op in ops:
        run.step(op)
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


SEEDED = make_net(seeded=True, **PARAMS)

PINNED_OPS: list[tuple] = [  # type: ignore[type-arg]
    ("grant", "C1", 1e5),
    ("grant", "C2", 5e4),
    ("trade", "C1", "D1", Side.BUY, 1000, 30, False, 0.1, 1000),
    ("trade", "C2", "D2", Side.SELL, 250.5, 5, False, 0.1, 0),
    ("trade", "C1", "D3", Side.BUY, 100, 2, True, 0.1, 0),
    ("trade", "C2", "D1", Side.BUY, 100, 30, False, 0.0, 0),
    ("confirm", 1.0),
    ("fix", 0.05),
    ("confirm", 0.5),
    ("fix", -0.06),
    ("fail", 0),  # a margin call missed: past its due date, a default
    ("fix", 0.0),
    ("fix", 0.0),
    ("fix", 0.0),
    ("late", 1),
    ("close", 0),
    ("idle", 2),
    ("rate", "C1", "AA"),
    ("register", "BBB"),
    ("nominate", "G2"),
    ("veto", "G2"),
    ("nominate", "G2"),
    ("evict", "G1"),
    ("evidence", "D2"),
    ("late", 2),
    ("credit", "C2"),
    ("revoke", 0),
    ("suspend", "G1"),
    ("reinstate", "G1"),
    ("suspend", "G1"),
    ("offboard", "G1"),
    ("fix", 0.02),
    ("confirm", 1.0),
    ("idle", 3),
    ("fix", -0.01),
    ("trade", "C1", "D1", Side.SELL, 100, 2, False, 0.1, 0),
    ("confirm", 1.0),
    ("fix", 0.0),
    ("fix", 0.0),
    ("idle", 3),
]
"""Every transaction kind and every contract output, in one fixed run of a seeded network."""

PINNED_ROOTS = "5f801b254ea225833283bdf59616122b9f957dd76ca0289b112da4efb28070f2"
"""SHA-256 over every block's state root of the pinned run (v2 layout): a change means
stored chains no longer verify. Last changed when amounts of money became integer micros
(roadmap [2/5]), after the run took in suspend and offboard and a register carries its proof
of possession (no stored chain held a register_member: nothing submitted one before ``botc
regulator admit``); when the run took in reinstate (G1 suspended, reinstated and suspended
again before it is offboarded: the state is unchanged, the run is longer); then when ended
contracts began to leave the hot state (roadmap [4/5]: ``NetworkParams.retain_blocks`` in
the genesis, ``Trade.replay_until_ms``, close-out seen keys named by their contract); then when
margin calls began to be paid per netting set (the ``margin_sets`` map, one payment per pair
and block, no per-contract variation-margin record); then when a live contract's changing
fields moved from its record to a row of the book's live table (book version 2); then when a
netting set came to hold its calls as columns (``MarginSet``: contract ids, seqs, amounts)."""

PINNED_SNAPSHOTS = "b14423665f853bb3a0a1f7509ab16564af0851cbfa521f16cb35741ce3c9b0cd"
"""SHA-256 over the SHA-256 of every block's snapshot bytes in the same run: a change means
stored snapshots no longer restore (a node then replays its blocks instead). Last changed
when snapshots became rows (``rfq.ledger.snapshot``, version 3), with the roots unchanged; then
with the roots, for the netting sets' map; then with the roots, for the book's live table, and
for the netting sets' columns."""


def test_a_pinned_run_covers_every_kind_and_keeps_its_state_roots_and_snapshot_bytes():
    from rfq.contracts.events import BookOutput
    from rfq.ledger.tx import TX_ROLES

    roots, snapshots = hashlib.sha256(), hashlib.sha256()

    def record(state: LedgerState) -> None:
        roots.update(state.state_root())
        snapshots.update(hashlib.sha256(state.snapshot()).digest())

    run = Run(SEEDED, after_block=record)
    for op in PINNED_OPS:
        run.step(op)
    committed = {r.kind for result in run.chain.results for r in result.receipts if r.ok}
    refused = [r.reason for result in run.chain.results for r in result.receipts if not r.ok]
    assert committed == set(TX_ROLES), (set(TX_ROLES) - committed, refused)
    outputs = {type(o) for result in run.chain.results for o in result.outputs}
    assert outputs == set(typing.get_args(BookOutput))
    assert {e.action for result in run.chain.results for e in result.governance} >= {
        "nominate",
        "veto",
        "evict",
        "join",
        "reelect",
    }
    assert roots.hexdigest() == PINNED_ROOTS
    assert snapshots.hexdigest() == PINNED_SNAPSHOTS


MONEY_FIELDS: dict[str, tuple[str, ...]] = {
    "payments": ("amount",),
    "guarantees": ("line", "asset_value", "allocated", "paid"),
    "trades": ("initial_margin", "dealer_line", "cash_margin"),
}
"""Per map of structs: its amounts of money (``rfq.money.Micros``)."""

MONEY_MAPS = ("custody", "margin_in_use")
"""Maps whose values are amounts of money."""


def _amounts_hashed(state: LedgerState) -> list[tuple[str, object]]:
    """Every amount of money the state root hashes, as its canonical bytes decode untyped."""
    import msgspec

    out: list[tuple[str, object]] = []
    for name in MONEY_MAPS:
        for key, value in getattr(state, name).items():
            out.append((f"{name}[{key}]", msgspec.msgpack.decode(msgspec.msgpack.encode(value))))
    for name, fields in MONEY_FIELDS.items():
        for key, value in getattr(state, name).items():
            raw = msgspec.msgpack.decode(msgspec.msgpack.encode(value))
            out.extend((f"{name}[{key}].{f}", raw[f]) for f in fields)
            if name == "trades":
                out.extend((f"{name}[{key}].cover[{g}]", a) for g, a in raw["guarantee_cover"])
    book = msgspec.msgpack.decode(state.book.state_bytes())  # the bytes the root hashes
    for record in book["contracts"]:  # ContractRecord, array-like: contract, ordinal, ...
        cid, vm_balance, call = record[0]["id"], record[3], record[6]
        out.append((f"book[{cid}].vm_balance", vm_balance))
        if call is not None:
            out.extend((f"book[{cid}].margin_call.{f}", call[f]) for f in ("amount", "outstanding"))
    return out


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(st.lists(_op, min_size=5, max_size=40))
def test_every_amount_of_money_the_state_root_hashes_is_an_integer_of_micros(ops):
    """Whatever runs, no float's formatting or platform rounding reaches the root through an
    amount: each one is hashed as a msgpack integer."""
    seen: list[int] = []

    def only_integers(state: LedgerState) -> None:
        amounts = _amounts_hashed(state)
        floats = [(where, v) for where, v in amounts if type(v) is not int]
        assert floats == [], f"at {state.height}"
        seen.append(len(amounts))

    run = Run(after_block=only_integers)
    for op in ops:
        run.step(op)
    assert seen


def test_a_float_amount_cannot_enter_a_map_of_micros():
    import pytest

    state = Run().chain.state
    with pytest.raises(TypeError, match="custody"):
        state.custody["C1"] = 1.5  # type: ignore[assignment]
    with pytest.raises(TypeError):
        state.margin_in_use["C1"] = True
