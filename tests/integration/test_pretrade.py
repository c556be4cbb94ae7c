"""Pre-trade over a real nats-server: one client, three dealers, a simulated oracle."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import Callable
from dataclasses import dataclass

import msgspec
import pytest

from bus import subjects
from bus.envelope import DropReason, Verifier
from bus.seal import Sealer
from peers.counterparty import QUOTE_CHANNEL, AcceptRefused, ClientSession
from peers.dealer import RFQ_CHANNEL, DealerBot
from peers.oracle import OracleService, Simulator
from rfq.errors import ValidationError
from rfq.identity import Directory
from rfq.instruments import Leg, Side, Terms, listed_futures
from rfq.messages import Decline, Quote, Rfq

from .chainkit import rebar_swap

pytestmark = pytest.mark.integration


@dataclass
class Market:
    oracle: OracleService
    dealers: dict[str, DealerBot]
    client: ClientSession
    today: dt.date


@pytest.fixture
async def market(nats_server, bus_factory, network) -> Market:
    """ORACLE publishing one simulated day, dealers D1-D3 quoting, client C1's session."""
    genesis = network.genesis()
    oracle = OracleService(await bus_factory("ORACLE"))
    sim = Simulator(start=dt.date.today(), seed=7, ticks_per_day=2)
    oracle.history = {k: list(v) for k, v in sim.history.items()}
    await oracle.start()
    dealers = {}
    for dealer_id in ("D1", "D2", "D3"):
        dealers[dealer_id] = await DealerBot(await bus_factory(dealer_id), genesis).start()
    client = await ClientSession(await bus_factory("C1"), genesis).start()
    await client.market.attach(client.bus)
    for price in sim.ticks():
        await oracle.publish(price)
    await oracle.bus.flush()
    rebar = listed_futures("RB", sim.start)[-1].id
    await until(
        lambda: all(rebar in d.market.latest for d in dealers.values()),
        f"every dealer to have the oracle's {rebar} price",
    )
    return Market(oracle, dealers, client, sim.start)


async def until(predicate: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        await asyncio.sleep(0.02)


ANSWER_S = 10.0
"""The deadline of an RFQ whose every addressed dealer is expected to answer: its answers end
the wait as they arrive, so a long deadline costs nothing, and a loaded machine cannot turn a
slow answer into a missing one."""


async def test_client_c1_gets_three_answers_as_they_arrive_and_accepts_the_best(market):
    rfq = await market.client.send_rfq(rebar_swap(market.today), deadline_s=ANSWER_S)
    arrivals = []
    async for answer in rfq:
        arrivals.append((time.time(), answer))
    assert {a.dealer for _, a in arrivals} == {"D1", "D2", "D3"}
    assert all(isinstance(a, Quote) for _, a in arrivals)
    assert all(t * 1000 <= rfq.rfq.deadline_ms for t, _ in arrivals)
    best = rfq.best()
    assert best is not None
    assert best.price == min(q.price for q in rfq.quotes)
    signed = await market.client.accept(best)
    assert signed.sender == "C1"
    assert signed.kind == "accept"
    with pytest.raises(AcceptRefused) as refused:
        await market.client.accept(next(q for q in rfq.quotes if q is not best))
    assert refused.value.reason == "already_accepted"
    rows = {r["dealer"]: r for r in market.client.scoreboard.rows()}
    assert rows["D1"]["response_rate"] == 1.0
    assert sum(r["trades"] for r in rows.values()) == 1


async def test_a_selling_client_is_offered_less_than_a_buying_one(market):
    buy = await market.client.send_rfq(rebar_swap(market.today, Side.BUY), deadline_s=ANSWER_S)
    await buy.collect()
    sell = await market.client.send_rfq(rebar_swap(market.today, Side.SELL), deadline_s=ANSWER_S)
    await sell.collect()
    for dealer in ("D1", "D2", "D3"):
        bid = next(q.price for q in sell.quotes if q.dealer == dealer)
        ask = next(q.price for q in buy.quotes if q.dealer == dealer)
        assert bid < ask


async def test_a_quote_arriving_after_the_deadline_is_ignored(market, bus_factory):
    await market.dealers["D2"].bus.close()  # D2 goes quiet...
    rfq = await market.client.send_rfq(  # D1 must answer in time: 3 s, not a tight 1 s
        rebar_swap(market.today), dealers=["D1", "D2"], deadline_s=3.0
    )
    answers = await rfq.collect()  # returns at the deadline: D2 never answers
    assert [a.dealer for a in answers] == ["D1"]
    late = Quote(  # ...and answers once the deadline has passed
        id=f"{rfq.id}-D2",
        rfq_id=rfq.id,
        client="C1",
        dealer="D2",
        terms=rfq.rfq.terms,
        price=1.0,
        valid_until_ms=int(time.time() * 1000) + 30_000,
        initial_margin_rate=0.0,
        credit_line=0.0,
    )
    d2 = await bus_factory("D2")
    await d2.publish(subjects.quote("C1", rfq.id), late, seal_to=["C1"])
    await d2.flush()
    await until(lambda: rfq.late > 0, "the client to count D2's late quote")
    assert rfq.late == 1
    assert "D2" not in rfq.answers


async def test_an_honest_dealer_never_answers_after_the_deadline(market):
    d1 = market.dealers["D1"]
    expired = Rfq(
        id="C1-expired",
        client="C1",
        terms=rebar_swap(market.today),
        deadline_ms=int(time.time() * 1000) - 1,
    )
    assert await d1.handle_rfq(expired) is None
    assert d1.stats["too_late"] == 1


async def test_bad_rfqs_are_refused_before_anything_is_sent(market):
    today = market.today
    before = market.client.bus.outbox.last_nonce
    bad = [
        rebar_swap(today).__class__(**{**_fields(rebar_swap(today)), "legs": (Leg("XX9999"),)}),
        rebar_swap(today, quantity=0),
        rebar_swap(today).__class__(
            **{**_fields(rebar_swap(today)), "maturity": today - dt.timedelta(days=1)}
        ),
    ]
    for terms in bad:
        with pytest.raises(ValidationError):
            await market.client.send_rfq(terms)
    with pytest.raises(ValidationError, match="empty dealer list"):
        await market.client.send_rfq(rebar_swap(today), dealers=[])
    with pytest.raises(ValidationError, match="not dealers"):
        await market.client.send_rfq(rebar_swap(today), dealers=["C2"])
    assert market.client.bus.outbox.last_nonce == before


def _fields(terms: Terms) -> dict[str, object]:
    return {f: getattr(terms, f) for f in terms.__struct_fields__}


@pytest.mark.parametrize(
    ("body", "rfq_id"),
    [
        pytest.param(
            {"type": "rfq", "id": "C1-bad", "client": "C1", "terms": {"template": "price_swap"}},
            "C1-bad",
            id="schema-violation",
        ),
        pytest.param(b"\xc1\xc1\xc1", None, id="not-msgpack"),
        # 50,000 levels deep: every dealer logged a RecursionError traceback
        pytest.param(b"\x91" * 50_000 + b"\xc0", None, id="nested-50000-deep"),
    ],
)
async def test_a_signed_but_malformed_rfq_gets_a_decline_with_the_reason(
    market, bus_factory, body, rfq_id
):
    c1 = market.client
    signed = c1.bus.outbox.sign(
        Rfq(id="C1-x", client="C1", terms=rebar_swap(market.today), deadline_ms=1)
    )
    raw = body if isinstance(body, bytes) else msgspec.msgpack.encode(body)
    broken = msgspec.structs.replace(signed, body=raw)
    broken = msgspec.structs.replace(broken, signature=c1.bus.identity.sign(broken.signing_bytes()))
    answers: list[Decline] = []

    async def on_answer(received, msg):
        answers.append(received.payload)

    spy = await bus_factory("C1")
    await spy.subscribe(subjects.quotes_for("C1"), QUOTE_CHANNEL, on_answer)
    await spy.flush()
    await c1.bus.publish_signed("otc.rfq.commodity.RB2605", broken)
    await until(lambda: len(answers) >= 3, "a decline from each of the three dealers")
    assert sorted(a.dealer for a in answers) == ["D1", "D2", "D3"]
    assert all(a.code == "malformed" and "does not decode" in a.text for a in answers)
    expected = rfq_id or f"nonce-{broken.nonce}"
    assert all(a.rfq_id == expected for a in answers)
    assert all(d.stats["malformed"] == 1 for d in market.dealers.values())


async def test_an_rfq_with_terms_no_dealer_can_quote_gets_a_reasoned_decline(market):
    rfq = await market.client.send_rfq(
        rebar_swap(market.today, quantity=2e5), dealers=["D1"], deadline_s=ANSWER_S
    )
    [answer] = await rfq.collect()
    assert isinstance(answer, Decline)
    assert answer.code == "credit_limit"


async def test_an_outsized_rfq_is_declined_for_the_notional_limit_naming_it(market):
    rfq = await market.client.send_rfq(
        rebar_swap(market.today, quantity=5e9), dealers=["D1"], deadline_s=ANSWER_S
    )
    [answer] = await rfq.collect()
    assert isinstance(answer, Decline)
    assert answer.code == "notional_limit"
    assert "exceeds the limit of 1,000,000,000" in answer.text


async def test_dealer_d3_cannot_read_a_direct_rfq_to_d1(market, bus_factory, network):
    reg = await bus_factory("REG")
    captured: list[bytes] = []

    async def capture(msg):
        captured.append(msg.data)

    await reg.nc.subscribe(subjects.RFQ_DIRECT_ALL, cb=capture)
    await reg.flush()
    d3 = market.dealers["D3"]
    snoop = await bus_factory("D3")
    await snoop.subscribe(subjects.rfq_direct("D1"), RFQ_CHANNEL, _never)
    await snoop.flush()
    rfq = await market.client.send_rfq(
        rebar_swap(market.today), dealers=["D1"], deadline_s=ANSWER_S
    )
    await rfq.collect()
    await until(
        lambda: any("permissions violation" in e.lower() for e in snoop.errors),
        "the server to refuse D3's subscription to D1's RFQs",
    )
    assert [a.dealer for a in rfq.answers.values()] == ["D1"]
    assert all(r.id != rfq.id for r in d3.seen_rfqs)
    await until(lambda: len(captured) > 0, "the regulator's copy of the direct RFQ")
    genesis = network.genesis()
    wrong_key = Verifier(
        Directory(genesis.members),
        genesis.chain_id,
        sealer=Sealer(network.identity("D3"), Directory(genesis.members)),
    )
    result = wrong_key.open(captured[0], RFQ_CHANNEL)
    assert result.reason == DropReason.NOT_FOR_ME


async def test_quotes_are_readable_only_by_the_client_that_asked(market, bus_factory, network):
    reg = await bus_factory("REG")
    captured: list[bytes] = []

    async def capture(msg):
        captured.append(msg.data)

    await reg.nc.subscribe(subjects.QUOTE_ALL, cb=capture)
    await reg.flush()
    d2_snoop = await bus_factory("D2")
    await d2_snoop.subscribe(subjects.quotes_for("C1"), QUOTE_CHANNEL, _never)
    c2_snoop = await bus_factory("C2")
    await c2_snoop.subscribe(subjects.quotes_for("C1"), QUOTE_CHANNEL, _never)
    await d2_snoop.flush()
    await c2_snoop.flush()
    rfq = await market.client.send_rfq(rebar_swap(market.today), deadline_s=ANSWER_S)
    await rfq.collect()
    assert len(rfq.quotes) == 3
    for snoop in (d2_snoop, c2_snoop):
        await until(
            lambda errors=snoop.errors: any("permissions violation" in e.lower() for e in errors),
            f"the server to refuse {snoop.member_id}'s subscription to C1's quotes",
        )
    await until(lambda: len(captured) >= 3, "the regulator's copies of the three quotes")
    genesis = network.genesis()
    directory = Directory(genesis.members)
    d1_quotes = list(captured)
    for intruder in ("D2", "C2"):
        verifier = Verifier(
            directory, genesis.chain_id, sealer=Sealer(network.identity(intruder), directory)
        )
        outcomes = {verifier.open(data, QUOTE_CHANNEL).reason for data in d1_quotes}
        assert outcomes == {DropReason.NOT_FOR_ME}


async def _never(received, msg):
    raise AssertionError(f"an intruder received {received.payload!r}")


async def test_accepts_are_refused_locally_when_expired_or_not_addressed_to_the_client(market):
    rfq = await market.client.send_rfq(
        rebar_swap(market.today), dealers=["D1"], deadline_s=ANSWER_S
    )
    [quote] = await rfq.collect()
    assert isinstance(quote, Quote)
    expired = msgspec.structs.replace(quote, valid_until_ms=int(time.time() * 1000) - 1)
    with pytest.raises(AcceptRefused) as refused:
        await market.client.accept(expired)
    assert refused.value.reason == "expired"
    for_c2 = msgspec.structs.replace(quote, client="C2")
    with pytest.raises(AcceptRefused) as refused:
        await market.client.accept(for_c2)
    assert refused.value.reason == "not_yours"
    tampered = msgspec.structs.replace(quote, price=quote.price - 100)
    with pytest.raises(AcceptRefused) as refused:
        await market.client.accept(tampered)
    assert refused.value.reason == "unknown_quote"
    assert market.client.accepted == {}
