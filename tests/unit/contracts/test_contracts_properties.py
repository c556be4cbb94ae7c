"""Properties of the contract engine, over random books and random event streams.

Alice, Bob and Carol trade random contracts on four underlyings; an oracle fixes random
subsets of them day by day; the parties sometimes meet their margin calls, sometimes not;
sometimes a contract is closed out or a party suffers a credit event.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import math
from typing import Any

import msgspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rfq.contracts import (
    BlockPassed,
    BookEvent,
    CloseOut,
    Contract,
    ContractBook,
    CreditEvent,
    Fixing,
    GuaranteeLine,
    MarginCalls,
    MarginPosted,
    MarginTerms,
    OpenContract,
    Price,
    decode_event,
    encode,
    waterfall,
)
from rfq.contracts.payoff import client_pnl, reference_revalue, weekdays
from rfq.errors import ValidationError
from rfq.instruments import Averaging, Leg, OptionTerms, Side, Template, Terms

UNDERLYINGS = ("U1", "U2", "U3", "U4")
BASE = dt.date(2025, 1, 6)  # a Monday
PARTIES = (("alice", "bob"), ("alice", "carol"), ("dave", "bob"))
WEIGHTS = (0.3, 0.5, 0.2, 1.0, 1 / 3, 2.0, 0.7)

prices = st.integers(100, 900_000).map(lambda k: k / 100)


@st.composite
def contracts(draw: Any, cid: str) -> Contract:
    template = draw(st.sampled_from(list(Template)))
    trade = BASE + dt.timedelta(days=draw(st.integers(0, 5)))
    maturity = trade + dt.timedelta(days=draw(st.integers(1, 30)))
    us = draw(st.permutations(UNDERLYINGS))
    legs: tuple[Leg, ...]
    if template in (Template.SPREAD_SWAP, Template.CALENDAR_SPREAD):
        legs = (
            Leg(us[0], draw(st.sampled_from(WEIGHTS))),
            Leg(us[1], -draw(st.sampled_from(WEIGHTS))),
        )
    elif template == Template.INDEX_SWAP:
        n = draw(st.integers(1, 3))
        legs = tuple(Leg(u, draw(st.sampled_from(WEIGHTS))) for u in us[:n])
    else:
        legs = (Leg(us[0], 1.0),)
    averaging = None
    if template == Template.AVERAGE_PRICE_SWAP:
        start = trade + dt.timedelta(days=draw(st.integers(-3, (maturity - trade).days)))
        end = start + dt.timedelta(days=draw(st.integers(0, max((maturity - start).days, 0))))
        averaging = Averaging(start, end)
    option = None
    fixed: float | None = draw(st.integers(-50_000, 900_000).map(lambda k: k / 100))
    if template == Template.EUROPEAN_OPTION:
        option = OptionTerms(
            draw(st.sampled_from(["call", "put"])), draw(prices), draw(st.integers(0, 500)) / 10
        )
        fixed = draw(st.none() | prices)
    client, dealer = draw(st.sampled_from(PARTIES))
    margin = draw(
        st.none()
        | st.builds(
            MarginTerms,
            threshold=st.sampled_from([0.0, 1000.0, 50_000.0]),
            minimum_transfer_amount=st.sampled_from([0.0, 100.0, 5000.0]),
            cure_days=st.integers(0, 3),
        )
    )
    return Contract(
        id=cid,
        terms=Terms(
            template=template,
            legs=legs,
            client_side=draw(st.sampled_from([Side.BUY, Side.SELL])),
            quantity=draw(st.integers(1, 5000)) / draw(st.sampled_from([1, 3, 10])),
            trade_date=trade,
            maturity=maturity,
            multiplier=draw(st.sampled_from([1.0, 10.0, 300.0, 0.5])),
            averaging=averaging,
            option=option,
        ),
        client=client,
        dealer=dealer,
        fixed_price=fixed,
        initial_margin_rate=draw(st.sampled_from([0.0, 0.05, 0.1])),
        margin=margin,
    )


def scenario(data: Any, n_contracts: int, n_days: int) -> list[BookEvent]:
    """Draw a stream of events, deciding margin postings from what a driver book outputs."""
    book = ContractBook()
    events: list[BookEvent] = []

    def do(event: BookEvent) -> list[Any]:
        try:
            out = book.apply(event)
        except ValidationError:
            return []  # refused events are not part of the stream
        events.append(event)
        return out

    pending: list[tuple[str, int, str, int]] = []  # contract, seq, payer, amount
    for k in range(n_contracts):
        do(OpenContract(data.draw(contracts(f"K{k:03d}"))))
    day = BASE - dt.timedelta(days=4)
    for height in range(1, n_days + 1):
        day = day + dt.timedelta(days=data.draw(st.integers(1, 3)))
        do(BlockPassed(height, day))
        if data.draw(st.booleans()):
            do(OpenContract(data.draw(contracts(f"L{height:03d}"))))
        subset = data.draw(st.lists(st.sampled_from(UNDERLYINGS), min_size=1, unique=True))
        tick = Fixing(day, tuple(Price(u, data.draw(prices)) for u in subset))
        for o in do(tick):
            if isinstance(o, MarginCalls):
                pending += [
                    (cid, seq, o.payer, amount)
                    for cid, seq, amount in zip(o.contract_ids, o.seqs, o.amounts, strict=True)
                ]
        still: list[tuple[str, int, str, int]] = []
        for call in pending:
            if data.draw(st.booleans()):
                cid, seq, payer, amount = call
                do(MarginPosted(f"post-{cid}-{seq}", cid, payer, amount))
            else:
                still.append(call)
        pending = still
        roll = data.draw(st.integers(0, 9))
        if roll == 0 and book.open_count:
            target = data.draw(st.sampled_from(sorted(book.ids())))
            price = data.draw(st.none() | prices)
            do(CloseOut(f"co-{height}", target, day, price))
        elif roll == 1:
            party = data.draw(st.sampled_from(["alice", "bob", "carol", "dave"]))
            do(
                CreditEvent(
                    f"ce-{height}",
                    party,
                    collateral=data.draw(st.sampled_from([0, 10**10, 10**13])),
                    guarantees=(
                        GuaranteeLine("gina", data.draw(st.sampled_from([0, 5 * 10**10, 10**15]))),
                    ),
                )
            )
    return events


def history_of(events: list[BookEvent]) -> dict[str, dict[dt.date, float]]:
    history: dict[str, dict[dt.date, float]] = {}
    for event in events:
        if isinstance(event, Fixing):
            for px in event.prices:
                history.setdefault(px.underlying, {})[event.date] = px.price
    return history


SETTINGS = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@SETTINGS
@given(st.data())
def test_vectorised_revaluation_equals_the_scalar_reference_for_random_books(data):
    events = scenario(
        data, n_contracts=data.draw(st.integers(1, 25)), n_days=data.draw(st.integers(1, 12))
    )
    book = ContractBook()
    for k, event in enumerate(events):
        book.apply(event)
        if not isinstance(event, Fixing):
            continue
        history = history_of(events[: k + 1])
        as_of = book.mark_date
        assert as_of is not None
        for cid in book.ids():
            view = book.get(cid)
            if view.status.terminal:
                continue
            ref = reference_revalue(view.contract, history, as_of)
            if ref is None:
                assert view.mark is None
                continue
            assert (view.mark, view.client_mtm) == ref, cid


@SETTINGS
@given(st.data())
def test_client_and_dealer_pnl_always_sum_to_zero_and_cached_state_bytes_stay_exact(data):
    events = scenario(
        data, n_contracts=data.draw(st.integers(1, 15)), n_days=data.draw(st.integers(1, 15))
    )
    book = ContractBook()
    outputs = []
    for event in events:
        outputs.extend(book.apply(event))
        # The cached state bytes always equal the canonical snapshot encoded afresh.
        assert book.state_bytes() == msgspec.msgpack.encode(book.snapshot())
    for output in outputs:
        if hasattr(output, "client_pnl"):
            assert output.client_pnl + output.dealer_pnl == 0.0
    for cid in book.ids():
        outcome = book.get(cid).outcome
        if outcome is not None:
            assert outcome.client_pnl + outcome.dealer_pnl == 0.0


@given(contract=contracts("P"), level=prices)
def test_the_pnl_of_any_contract_at_any_level_is_zero_sum(contract, level):
    pnl = client_pnl(contract, level)
    assert math.isfinite(pnl)
    assert pnl + -pnl == 0.0


@SETTINGS
@given(st.data())
def test_two_books_fed_the_same_events_hold_identical_state_bytes(data):
    events = scenario(
        data, n_contracts=data.draw(st.integers(1, 15)), n_days=data.draw(st.integers(1, 12))
    )
    cut = data.draw(st.integers(0, len(events)))
    a, b = ContractBook(), ContractBook()
    out_a = [a.apply(e) for e in events[:cut]]
    out_b = [b.apply(e) for e in events[:cut]]
    assert out_a == out_b
    assert a.state_bytes() == b.state_bytes()
    # A node that restarts from the snapshot carries on exactly like the others.
    c = ContractBook.from_state_bytes(a.state_bytes())
    assert c.state_bytes() == a.state_bytes()
    for event in events[cut:]:
        assert a.apply(event) == c.apply(event) == b.apply(event)
    assert a.state_bytes() == b.state_bytes() == c.state_bytes()
    assert a.state_digest() == b.state_digest() == c.state_digest()
    # And every event replayed once more changes nothing.
    final = a.state_bytes()
    for event in events:
        assert a.apply(event) == [], event
    assert a.state_bytes() == final
    fresh = ContractBook.from_state_bytes(final)
    assert fresh.state_digest() == a.state_digest()


@given(
    claims=st.lists(st.integers(0, 10**13), max_size=6),
    collateral=st.integers(0, 10**13),
    lines=st.lists(st.integers(0, 10**13), max_size=3),
)
def test_the_waterfall_never_applies_more_than_it_holds_or_is_owed(claims, collateral, lines):
    result = waterfall(claims, collateral, [GuaranteeLine(f"g{k}", x) for k, x in enumerate(lines)])
    assert result.collateral_applied <= collateral
    assert result.collateral_applied + result.guarantee_applied <= result.exposure
    for use in result.guarantees:
        assert use.amount <= lines[int(use.guarantor[1:])]
    assert 0.0 <= result.recovery_rate <= 1.0
    for rec in result.claims:
        assert rec.collateral + rec.guaranteed + rec.unrecovered == rec.claim  # exact micros
    assert sum(use.amount for use in result.guarantees) == result.guarantee_applied


@given(st.binary(max_size=200))
def test_the_event_decoder_rejects_garbage_cleanly(blob):
    with contextlib.suppress(msgspec.DecodeError):
        decode_event(blob)


@given(st.data())
def test_events_round_trip_through_their_typed_decoder(data):
    events = scenario(data, n_contracts=2, n_days=3)
    for event in events:
        assert decode_event(encode(event)) == event


@given(st.integers(700_000, 760_000), st.integers(0, 60))
def test_weekday_counting_agrees_with_numpy(start, span):
    import numpy as np

    a = np.array([start - 719163], dtype="int64").astype("datetime64[D]")
    b = np.array([start + span - 719163], dtype="int64").astype("datetime64[D]")
    assert weekdays(start, start + span) == int(np.busday_count(a, b)[0])
