"""Bad actors against a live marketplace: replays, forgeries, impersonation, floods."""

from __future__ import annotations

import datetime as dt
import hashlib
import time

import msgspec
import pytest

from bus import subjects
from bus.envelope import DropReason
from peers.ledger_client import LedgerClient
from peers.netdir import create_network
from rfq.identity import NetworkParams
from rfq.instruments import Leg, Side, Template, Terms, listed_futures
from rfq.ledger.consensus import Prepare
from rfq.ledger.tx import Evict
from rfq.messages import Accept, Quote, Rfq

from .chainkit import wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
def network(tmp_path):
    """A network whose per-sender rate limit a flood can exceed quickly (50/s, burst 100)."""
    return create_network(
        tmp_path / "net", params=NetworkParams(sender_rate_per_s=50.0, sender_burst=100)
    )


def swap(today: dt.date, quantity: float = 100) -> Terms:
    return Terms(
        Template.PRICE_SWAP,
        (Leg(listed_futures("RB", today)[-1].id),),
        Side.BUY,
        quantity,
        today,
        today + dt.timedelta(days=90),
    )


async def capture(bus, subject: str) -> list[bytes]:
    seen: list[bytes] = []

    async def on_msg(msg):
        seen.append(msg.data)

    await bus.nc.subscribe(subject, cb=on_msg)
    await bus.flush()
    return seen


async def test_replayed_rfqs_quotes_and_accepts_change_nothing(live_market, bus_factory):
    c1 = live_market.clients["C1"]
    reg = await bus_factory("REG")
    rfqs = await capture(reg, subjects.RFQ_ALL)
    quotes = await capture(reg, subjects.QUOTE_ALL)
    handle = await c1.send_rfq(swap(live_market.today), deadline_s=3)
    await handle.collect()
    signed_accept = await c1.accept(handle.best())
    assert (await c1.committed(signed_accept)).ok
    seen = {d: bot.stats["rfqs"] for d, bot in live_market.dealers.items()}
    for data in rfqs:
        await c1.bus.nc.publish(subjects.rfq_public("commodity", "RB2605"), data)
    for data in quotes:
        await live_market.dealers["D1"].bus.nc.publish(subjects.quote("C1", handle.id), data)
    tx = msgspec.msgpack.encode(signed_accept)
    await c1.bus.nc.publish(subjects.tx("C1"), tx)
    await wait_for(
        lambda: (
            all(
                bot.bus.verifier.drops[DropReason.REPLAY] >= 1
                for bot in live_market.dealers.values()
            )
            and c1.bus.verifier.drops[DropReason.REPLAY] >= 3
        ),
        what="every replay dropped as one",
    )
    assert {d: bot.stats["rfqs"] for d, bot in live_market.dealers.items()} == seen
    assert len(handle.answers) == 3
    receipt = await c1.ledger.wait(hashlib.sha256(tx).hexdigest(), timeout=5)
    assert receipt.ok  # the one committed trade, not a second
    assert all(len(n.state.trades) == 1 for n in live_market.authorities.values())


async def test_forged_signatures_never_reach_a_dealer_or_the_chain(live_market):
    c1 = live_market.clients["C1"]
    handle = await c1.send_rfq(swap(live_market.today), deadline_s=3)
    await handle.collect()
    signed_accept = c1.bus.outbox.sign(
        Accept(
            handle.id, handle.best().id, "C1", handle.best().dealer, c1.signed_quote(handle.best())
        )
    )
    forged = msgspec.structs.replace(signed_accept, signature=bytes(64))
    await c1.bus.nc.publish(subjects.tx("C1"), msgspec.msgpack.encode(forged))
    # A fresh nonce: one seen before (or older than the window) is a replay, dropped unverified.
    fresh = c1.bus.outbox.next_nonce()
    forged_rfq = msgspec.structs.replace(handle.signed, signature=bytes(64), nonce=fresh)
    await c1.bus.nc.publish(
        subjects.rfq_public("commodity", "RB2605"), msgspec.msgpack.encode(forged_rfq)
    )
    peers = [*live_market.authorities.values(), *live_market.dealers.values()]
    await wait_for(
        lambda: all(p.bus.verifier.drops[DropReason.BAD_SIGNATURE] >= 1 for p in peers),
        what="every authority and dealer drops the forgery",
    )
    assert all(handle.id not in node.state.trades for node in live_market.authorities.values())


async def test_client_c2_accepting_c1s_quote_is_refused_by_the_chain(live_market):
    c1, c2 = live_market.clients["C1"], live_market.clients["C2"]
    handle = await c1.send_rfq(swap(live_market.today), deadline_s=3)
    await handle.collect()
    stolen = c1.signed_quote(handle.best())  # C1 leaks its quote to C2
    quote = msgspec.msgpack.decode(stolen.body, type=Quote)
    accept = c2.bus.outbox.sign(Accept(quote.rfq_id, quote.id, "C2", quote.dealer, stolen))
    await c2.ledger.submit_signed(accept)
    tx_id = hashlib.sha256(msgspec.msgpack.encode(accept)).hexdigest()
    receipt = await c2.ledger.wait(tx_id, timeout=15)
    assert not receipt.ok
    assert "addressed to C1, not C2" in receipt.reason
    assert all(quote.rfq_id not in n.state.trades for n in live_market.authorities.values())


async def test_dealer_d2_quoting_in_d1s_name_is_ignored_by_the_client_and_refused_by_the_chain(
    live_market,
):
    c1, d2 = live_market.clients["C1"], live_market.dealers["D2"]
    handle = await c1.send_rfq(swap(live_market.today), dealers=["D1"], deadline_s=3)
    fake = Quote(
        f"{handle.id}-D1",
        handle.id,
        "C1",
        "D1",
        handle.rfq.terms,
        1.0,
        int(time.time() * 1000) + 30_000,
        0.0,
        0.0,
    )
    await d2.bus.publish(subjects.quote("C1", handle.id), fake, seal_to=["C1"])
    answers = await handle.collect()
    assert [a.price for a in answers if a.dealer == "D1"] != [1.0]
    assert c1.dropped_quotes >= 1
    forged_quote = d2.bus.outbox.sign(fake)
    accept = c1.bus.outbox.sign(Accept(handle.id, fake.id, "C1", "D1", forged_quote))
    await c1.ledger.submit_signed(accept)
    receipt = await c1.ledger.wait(hashlib.sha256(msgspec.msgpack.encode(accept)).hexdigest())
    assert not receipt.ok
    assert "in the name of D1, signed by D2" in receipt.reason


async def test_consensus_messages_from_an_evicted_authority_are_refused(
    live_market, bus_factory, network
):
    reg = await LedgerClient(await bus_factory("REG"), network.genesis()).start()
    receipt = await reg.submit_and_wait(Evict("D3", "test"), timeout=20)
    assert receipt.ok
    nodes = [n for m, n in live_market.authorities.items() if m != "D3"]
    await wait_for(lambda: all("D3" not in n.state.authorities for n in nodes))
    d3 = live_market.authorities["D3"].bus
    height = max(n.head.height for n in nodes) + 1
    rejected_before = sum(n.stats["reject_not_authority"] for n in nodes)
    for i in range(5):
        await d3.publish(subjects.consensus(height), Prepare(height, 0, bytes([i]) * 32))
    await d3.flush()
    await wait_for(
        lambda: sum(n.stats["reject_not_authority"] for n in nodes) - rejected_before >= 5,
        what="the evicted authority's five prepares refused",
    )
    start = max(n.head.height for n in nodes)
    await wait_for(
        lambda: all(n.head.height > start for n in nodes),
        timeout=20,
        what="blocks keep being final without D3",
    )


async def test_oversized_messages_are_dropped_and_the_dealers_keep_quoting(live_market):
    c1 = live_market.clients["C1"]
    huge = b"\x92" + b"\xc6" + (300_000).to_bytes(4, "big") + b"x" * 300_000
    await c1.bus.nc.publish(subjects.rfq_public("commodity", "RB2605"), huge)
    await wait_for(
        lambda: all(
            bot.bus.verifier.drops[DropReason.OVERSIZED] >= 1
            for bot in live_market.dealers.values()
        ),
        what="every dealer drops the oversized message",
    )
    assert all(
        bot.bus.verifier.drops[DropReason.OVERSIZED] == 1 for bot in live_market.dealers.values()
    )
    handle = await c1.send_rfq(swap(live_market.today), deadline_s=3)
    assert len(await handle.collect()) == 3


async def test_a_flooding_client_is_rate_limited_and_another_client_is_unaffected(
    live_market, network
):
    c1, c2 = live_market.clients["C1"], live_market.clients["C2"]
    params = network.genesis().params
    flood = [c2.bus.outbox.encode(flood_rfq(live_market.today, i)) for i in range(600)]
    for data in flood:
        await c2.bus.nc.publish(subjects.rfq_public("commodity", "RB2605"), data)
    handle = await c1.send_rfq(swap(live_market.today), deadline_s=10)
    answers = await handle.collect()
    assert sorted(a.dealer for a in answers) == ["D1", "D2", "D3"]
    least = 600 - params.sender_burst - 2 * params.sender_rate_per_s * 5
    await wait_for(
        lambda: all(
            bot.bus.verifier.drops[DropReason.RATE_LIMITED] >= least
            for bot in live_market.dealers.values()
        ),
        what=f"at least {least} of the flood rate-limited at every dealer",
    )


def flood_rfq(today: dt.date, i: int) -> Rfq:
    return Rfq(
        id=f"C2-flood-{i}",
        client="C2",
        terms=swap(today),
        deadline_ms=int(time.time() * 1000) + 1,
    )
