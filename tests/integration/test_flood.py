"""Floods against a live marketplace: bounded buffers and fair admission.

Measured before: 500 far-future Prepares of 100 kB from a candidate that is no authority cost
each authority 100 MB for good; 50,000 signed RFQs from one client in 5 s left every other
client without a quote or a trade for about 20 s. Now the candidate's messages are dropped,
an authority's are bounded, and a client flooding 10,000 RFQs a second is rate-limited before
its signatures are checked and served in turn with everyone else.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time

import msgspec
import pytest

from bus import subjects
from bus.envelope import DropReason, Received
from peers.authority.node import AuthorityNode
from peers.benchmarks.flood import start_flooder
from peers.counterparty import ClientSession
from peers.dealer import DealerBot
from peers.oracle import OracleService, Simulator
from rfq.clock import utc_today
from rfq.instruments import Leg, Side, Template, Terms, listed_futures
from rfq.ledger.consensus import DEFAULT_FUTURE_PER_SENDER, FutureDrop, Prepare
from rfq.messages import Quote

from .chainkit import start_authorities, wait_for

pytestmark = pytest.mark.adversarial

FLOOD_PER_S = 10_000
FLOOD_S = 5.0
C2_PER_S = 5  # well within an honest client's rate (RFQ_RATE_PER_S)


def swap(today: dt.date, quantity: float = 100) -> Terms:
    return Terms(
        Template.PRICE_SWAP,
        (Leg(listed_futures("RB", today)[-1].id),),
        Side.BUY,
        quantity,
        today,
        today + dt.timedelta(days=90),
    )


@pytest.fixture
async def one_dealer_market(nats_server, network, bus_factory):
    """Four authorities, the oracle, dealer D1 and client C2's session, in this process (one
    dealer, so that this process's share of a 10,000/s flood is one dealer's intake)."""
    genesis = network.genesis()
    authorities = await start_authorities(network, bus_factory)
    oracle = OracleService(await bus_factory("ORACLE"))
    sim = Simulator(start=utc_today(), seed=3, ticks_per_day=2)
    oracle.history = {k: list(v) for k, v in sim.history.items()}
    await oracle.start()
    dealer = await DealerBot(await bus_factory("D1"), genesis).start()
    client = await ClientSession(await bus_factory("C2"), genesis).start()
    await client.market.attach(client.bus)
    for price in sim.ticks():
        await oracle.publish(price)
    underlying = listed_futures("RB", sim.start)[-1].id
    await wait_for(lambda: underlying in dealer.market.latest, what="D1 holding prices")
    yield dealer, client, sim.start
    await dealer.close()
    for node in authorities.values():
        await node.stop()


async def first_answer(handle):
    async for answer in handle:
        return answer
    raise AssertionError(f"no answer to {handle.id}")


async def test_a_client_flooding_10000_rfqs_a_second_leaves_another_clients_quotes_and_trades(
    one_dealer_market, network, nats_server
):
    """C1, in a process of its own, publishes validly signed RFQs with live deadlines (each
    would be priced) at 10,000/s for 5 s, on the public subject C2 asks on; meanwhile C2 asks
    again and again, gets D1's quote each time and trades."""
    dealer, c2, today = one_dealer_market
    proc, go, results = start_flooder(
        network.path, [nats_server.url], rate=FLOOD_PER_S, seconds=FLOOD_S
    )
    round_trips: list[float] = []
    accepts = []
    try:
        assert await asyncio.to_thread(results.get, True, 120) == "ready"
        go.set()
        await wait_for(
            lambda: dealer.bus.verifier.drops[DropReason.RATE_LIMITED] > 0,
            what="the flood reaching D1",
        )
        while results.empty():  # the flooder reports its rate when it is done
            started = time.perf_counter()
            handle = await c2.send_rfq(swap(today), deadline_s=10)
            answer = await first_answer(handle)
            assert isinstance(answer, Quote) and answer.dealer == "D1", answer
            if results.empty():
                round_trips.append(time.perf_counter() - started)
                if not accepts:
                    accepts.append(await c2.accept(answer))
            await asyncio.sleep(max(started + 1 / C2_PER_S - time.perf_counter(), 0))
        achieved = await asyncio.to_thread(results.get, True, 60)
    finally:
        proc.terminate()
        proc.join(10)
    assert achieved > 0.8 * FLOOD_PER_S, f"the flood only reached {achieved:.0f}/s"
    assert len(round_trips) >= 2, f"C2's round trips during the flood: {round_trips}"
    receipt = await c2.committed(accepts[0], timeout=30)
    assert receipt.ok, receipt.reason
    sent = int(FLOOD_PER_S * FLOOD_S)
    await wait_for(
        lambda: dealer.bus.verifier.drops[DropReason.RATE_LIMITED] > 0.9 * sent,
        what="the flood dropped by rate at D1",
    )
    assert dealer.stats["rfqs"] < 0.02 * sent  # its burst and rate, not the flood, priced


async def test_far_future_prepares_from_a_candidate_are_dropped_and_an_authoritys_are_bounded(
    live_market, bus_factory
):
    """G1 (eligible, but no authority) and D3 (an authority) each send 1,000 Prepares for the
    next few heights, and G1 500 more naming a 100 kB block hash: none of G1's is held, at
    most 64 of D3's, and blocks keep being final."""
    nodes = list(live_market.authorities.values())
    g1 = await bus_factory("G1")
    d3 = live_market.authorities["D3"].bus
    height = max(n.head.height for n in nodes)
    block_hash = b"\x07" * 32
    for i in range(1_000):
        far = height + 2 + i % 3
        # Rounds 5-9: far above any round honest D3 reaches here, so no equivocation.
        await g1.publish(subjects.consensus(far), Prepare(far, 5 + i % 5, block_hash))
        await d3.publish(subjects.consensus(far), Prepare(far, 5 + i % 5, block_hash))
    huge = msgspec.msgpack.encode(["ibft_prepare", height + 2, 0, b"x" * 100_000])
    for _ in range(500):
        padded = msgspec.structs.replace(
            g1.outbox.sign(Prepare(height + 2, 0, block_hash)), body=huge
        )
        signed = msgspec.structs.replace(padded, signature=g1.identity.sign(padded.signing_bytes()))
        await g1.publish_signed(subjects.consensus(height + 2), signed)
        await g1.flush(timeout=10)
    await g1.flush()
    await d3.flush()
    await wait_for(
        lambda: all(n.stats[f"future_dropped_{FutureDrop.NOT_AUTHORITY}"] >= 1_000 for n in nodes),
        what="every authority dropping the candidate's prepares",
    )
    for node in nodes:
        assert node.deferred.held_by("G1") == 0
        assert node.deferred.held_by("D3") <= DEFAULT_FUTURE_PER_SENDER
        assert node.bus.verifier.drops[DropReason.BAD_PAYLOAD] >= 500
    others = [n for n in nodes if n.me != "D3"]
    assert all(n.deferred.drops[FutureDrop.EVICTED] > 0 for n in others)
    start = max(n.head.height for n in nodes)
    await wait_for(
        lambda: all(n.head.height > start + 1 for n in nodes),
        timeout=30,
        what="blocks keep being final",
    )
    assert all(len(n.deferred) <= 4 * DEFAULT_FUTURE_PER_SENDER for n in nodes)


async def test_a_candidates_message_for_the_next_height_is_refused_before_it_starts_the_height(
    nats_server, network, bus_factory
):
    """Any consensus message for the next height starts it; one from G1 (no authority) must
    not, or a candidate could make the authorities produce blocks as fast as it likes."""
    node = AuthorityNode(await bus_factory("D1"), network.genesis(), network.data_dir("D1"))
    node._load()
    g1 = await bus_factory("G1")
    prepare = Prepare(1, 0, b"\x07" * 32)
    await node._on_consensus(Received(g1.outbox.sign(prepare), prepare, False), None)
    assert node.instance is not None and not node.instance.started
    assert node.stats["reject_not_authority"] == 1
