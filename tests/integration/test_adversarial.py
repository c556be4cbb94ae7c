"""Bad actors against a live marketplace: replays, forgeries, impersonation, floods, and
attacks on the bus itself (the CHAIN stream, snooping streams, rogue cluster routes)."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import time

import msgspec
import nats
import nats.js.errors
import pytest
from nats.js.api import StreamConfig

from bus import subjects
from bus.client import RequestError
from bus.envelope import DropReason, Received
from bus.server import NatsServer, reserve_port
from peers.authority.node import QUERY_CHANNEL, AuthorityNode
from peers.bank import BankBooks, BankConfig, BankService
from peers.ledger_client import LedgerClient, reply_channel
from peers.netdir import create_network
from rfq.contracts.model import PaymentKind
from rfq.identity import NetworkParams, Role
from rfq.instruments import Leg, Side, Template, Terms, listed_futures
from rfq.ledger.consensus import Prepare
from rfq.ledger.state import Payment, Receipt
from rfq.ledger.tx import Evict
from rfq.messages import Accept, Quote, Rfq
from rfq.money import to_micros as M
from rfq.queries import PaymentsQuery, PaymentsReply

from .chainkit import TxFactory, start_authorities, submit, wait_for

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
    async with LedgerClient(await bus_factory("REG"), network.genesis()) as reg:
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


# --------------------------------------------------------------------------------------------
# Forged answers and receipts: the bank and the client believe only what is proven final


MADE_UP = Payment("made-up/1", "no-contract", PaymentKind.SETTLEMENT, "D2", "CCP", M(1_000_000), 1)


async def bank_with_one_real_margin(network, bus_factory):
    """D1, D2 and D3 run (a quorum of four); CCP's node does not, so whoever holds its key
    answers on ``otc.query.CCP``. C1's trade r1 is final: one real instruction is pending."""
    nodes = await start_authorities(network, bus_factory, ("D1", "D2", "D3"))
    await submit(await bus_factory("C1"), [TxFactory(network).trade("r1", client="C1")])
    await wait_for(lambda: all("r1" in n.state.trades for n in nodes.values()), timeout=20)
    return nodes


@pytest.mark.adversarial
async def test_a_made_up_answer_to_the_bank_moves_no_money_and_another_authority_is_asked(
    network, nats_server, bus_factory
):
    """Whoever holds CCP's key hears the bank's queries and answers each with an instruction
    that makes D2 pay CCP 1,000,000. (A member without an authority's key cannot even do
    that: NATS refuses it the query subjects and the bank's reply inbox.)"""
    nodes = await bank_with_one_real_margin(network, bus_factory)
    liar = await bus_factory("CCP")

    async def made_up(msg):
        await liar.reply(msg, PaymentsReply((MADE_UP,), 1, "", 1))

    await liar.nc.subscribe(subjects.query("CCP"), cb=made_up)
    await liar.flush()
    genesis = network.genesis()
    books = BankBooks(network.data_dir("BANK") / "bank.db")
    bus = await bus_factory("BANK")
    ledger = LedgerClient(bus, genesis, authorities=["CCP", "D1", "D2", "D3"])
    async with (
        ledger,
        BankService(bus, genesis, books, config=BankConfig(poll_s=0.2), ledger=ledger) as bank,
    ):
        await wait_for(
            lambda: bank.counts()["confirmed"] == 1, timeout=30, what="the real margin confirmed"
        )
        assert ledger.dropped["no_proof"] >= 1
        assert ledger.authorities[-1] == "CCP"  # asked last from then on
        assert [e.instruction_id for e in books.journal()] == ["r1/initial_margin/1"]
        assert books.entry(MADE_UP.id) is None
        assert bank.balances()["D2"] == bank.balances()["CCP"] == M(5.0e9)
        assert books.balanced()
    books.close()
    for node in nodes.values():
        await node.stop()


@pytest.mark.adversarial
async def test_a_real_authoritys_answer_with_a_tampered_entry_is_dropped_and_counted(
    network, nats_server, bus_factory
):
    nodes = await bank_with_one_real_margin(network, bus_factory)
    genesis = network.genesis()
    liar = await bus_factory("CCP")
    tampered = 0

    async def relay_and_tamper(msg):
        """Answer the bank, as CCP, with the proven answer an honest authority (D1) gives it
        (a relayed one is sealed to the bank: CCP could not read it), the first pending
        instruction's amount made 1,000,000."""
        nonlocal tampered
        asked = liar.verifier.open(msg.data, QUERY_CHANNEL)
        assert isinstance(asked, Received)
        payload = nodes["D1"].answer("BANK", Role.BANK, asked.payload)
        if isinstance(payload, PaymentsReply) and payload.payments:
            first = msgspec.structs.replace(payload.payments[0], amount=M(1_000_000))
            payload = msgspec.structs.replace(payload, payments=(first, *payload.payments[1:]))
            tampered += 1
        await liar.reply(msg, payload)

    await liar.nc.subscribe(subjects.query("CCP"), cb=relay_and_tamper)
    await liar.flush()
    books = BankBooks(network.data_dir("BANK") / "bank.db")
    bus = await bus_factory("BANK")
    ledger = LedgerClient(bus, genesis, authorities=["CCP", "D1", "D2", "D3"])
    async with (
        ledger,
        BankService(bus, genesis, books, config=BankConfig(poll_s=0.2), ledger=ledger) as bank,
    ):
        await wait_for(
            lambda: bank.counts()["confirmed"] == 1, timeout=30, what="the real margin confirmed"
        )
        assert tampered >= 1 and ledger.dropped["bad_row"] >= 1
        assert ledger.authorities[-1] == "CCP"
        [entry] = books.journal()
        on_chain = nodes["D1"].state.payments[entry.instruction_id]
        assert entry.amount == on_chain.amount != M(1_000_000)
        assert books.balanced()
        async with LedgerClient(await bus_factory("REG"), genesis) as reg:
            [paid] = (await reg.query(PaymentsQuery(status="confirmed"))).payments
        assert paid.bank_ref == entry.bank_ref
    books.close()
    for node in nodes.values():
        await node.stop()


@pytest.mark.adversarial
async def test_forged_refusals_from_guarantor_g1_and_dealer_d3_do_not_fail_client_c1s_trade(
    live_market, bus_factory
):
    """G1 is no authority; D3 is one, but one authority is not f+1. Their refusals arrive
    before C1 has even submitted its accept: nothing they say makes it final."""
    c1 = live_market.clients["C1"]
    handle = await c1.send_rfq(swap(live_market.today), deadline_s=3)
    await handle.collect()
    best = handle.best()
    signed = c1.bus.outbox.sign(
        Accept(handle.id, best.id, "C1", best.dealer, c1.signed_quote(best))
    )
    tx_id = hashlib.sha256(msgspec.msgpack.encode(signed)).hexdigest()
    in_block = Receipt(tx_id, "C1", "accept", False, 1, 0, "insufficient margin")
    at_admission = Receipt(tx_id, "C1", "accept", False, 1, -1, "insufficient margin")
    for liar in (live_market.authorities["D3"].bus, await bus_factory("G1")):
        for forged in (in_block, at_admission):
            await liar.publish(subjects.notify("C1"), forged)
        await liar.flush()
    await wait_for(
        lambda: c1.ledger.dropped["note_not_from_authority"] >= 2,
        what="G1's two notices dropped",
    )
    assert c1.ledger.final(tx_id) is None
    await c1.ledger.submit_signed(signed)
    receipt = await c1.ledger.wait(tx_id, timeout=15)
    assert receipt.ok
    assert all(handle.id in n.state.trades for n in live_market.authorities.values())


# --------------------------------------------------------------------------------------------
# The bus locked to the roles: JetStream and cluster routes


def refused_publish(bus, subject: str):
    """The server refused ``bus``'s publish on ``subject`` (nats-py lower-cases its -ERR)."""
    needle = f'permissions violation for publish to "{subject}"'.lower()
    return lambda: any(needle in e.lower() for e in bus.errors)


@pytest.mark.adversarial
async def test_no_dealer_guarantor_or_ccp_can_purge_delete_or_reconfigure_the_chain(
    live_market, bus_factory
):
    node = live_market.authorities["D1"]
    info = await node.js.stream_info(subjects.CHAIN_STREAM)
    assert info.config.deny_delete and info.config.deny_purge
    assert not info.config.allow_rollup_hdrs
    for member in ("D1", "G1", "CCP"):
        attacker = await bus_factory(member)
        js = attacker.nc.jetstream(timeout=1)
        for attack, api in (
            (js.purge_stream(subjects.CHAIN_STREAM), "STREAM.PURGE"),
            (js.delete_stream(subjects.CHAIN_STREAM), "STREAM.DELETE"),
            (js.delete_msg(subjects.CHAIN_STREAM, 1), "STREAM.MSG.DELETE"),
            (
                js.update_stream(StreamConfig(name=subjects.CHAIN_STREAM, subjects=[">"])),
                "STREAM.UPDATE",
            ),
        ):
            with pytest.raises(TimeoutError):  # the server never passes it on: no reply
                await asyncio.wait_for(attack, 0.5)
            subject = f"$JS.API.{api}.{subjects.CHAIN_STREAM}"
            await wait_for(refused_publish(attacker, subject), 5, f"{member}'s {api} refused")
        # Create is allowed on CHAIN alone, and only creates: another config is refused.
        with pytest.raises(nats.js.errors.BadRequestError, match="different configuration"):
            await js.add_stream(
                StreamConfig(name=subjects.CHAIN_STREAM, subjects=[subjects.CHAIN_ALL])
            )
        # A rollup would purge the block before it: refused by the stream.
        with pytest.raises(nats.js.errors.APIError):
            await js.publish(subjects.chain_block(10**9), b"x", headers={"Nats-Rollup": "all"})
    after = await node.js.stream_info(subjects.CHAIN_STREAM)
    assert after.config.deny_delete and after.config.deny_purge
    assert after.state.messages >= info.state.messages
    first = await node.js.get_last_msg(subjects.CHAIN_STREAM, subjects.chain_block(1))
    assert first.data  # block 1 is still there
    # And the chain goes on: a trade is final and its block lands on the stream.
    c1 = live_market.clients["C1"]
    handle = await c1.send_rfq(swap(live_market.today), deadline_s=3)
    await handle.collect()
    assert (await c1.committed(await c1.accept(handle.best()))).ok
    height = node.head.height

    async def stored() -> bool:
        try:
            await node.js.get_last_msg(subjects.CHAIN_STREAM, subjects.chain_block(height))
        except nats.js.errors.NotFoundError:
            return False
        return True

    deadline = time.monotonic() + 10
    while not await stored():
        assert time.monotonic() < deadline, f"block {height} never reached the CHAIN stream"
        await asyncio.sleep(0.05)


@pytest.mark.adversarial
@pytest.mark.parametrize("capture", ["otc.query.>", "_INBOX_C1.>", "otc.note.*"])
async def test_no_member_can_create_a_stream_that_captures_queries_inboxes_or_notes(
    live_market, nats_server, bus_factory, capture
):
    for member in ("D1", "G1", "CCP", "REG", "C1", "BANK", "ORACLE"):
        attacker = await bus_factory(member)
        js = attacker.nc.jetstream(timeout=1)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(
                js.add_stream(StreamConfig(name="SNOOP", subjects=[capture])), 0.5
            )
        await wait_for(
            refused_publish(attacker, "$JS.API.STREAM.CREATE.SNOOP"),
            5,
            f"{member}'s stream on {capture} refused",
        )
    # The server's JetStream store holds the one stream the authorities created.
    streams = nats_server.store_dir / "js" / "jetstream" / "$G" / "streams"
    assert sorted(p.name for p in streams.iterdir()) == [subjects.CHAIN_STREAM]


@pytest.mark.adversarial
async def test_a_rogue_server_without_the_route_password_cannot_join_the_cluster(
    nats_cluster, bus_factory, tmp_path
):
    nodes = nats_cluster.nodes
    rogue = NatsServer(
        tmp_path / "rogue",
        name="rogue",
        cluster_name="botc",
        cluster_port=reserve_port(),
        routes=[n.cluster_port for n in nodes],
    ).start()
    try:
        spy = nats.NATS()
        await spy.connect(servers=[rogue.url], allow_reconnect=False)
        stolen: list[str] = []

        async def on_msg(msg):
            stolen.append(msg.subject)

        await spy.subscribe(">", cb=on_msg)
        await spy.flush()

        def route_refused() -> bool:
            text = " ".join(n.log_path.read_text(errors="replace") for n in nodes)
            return "Router connection closed: Authentication Failure" in text

        await wait_for(route_refused, 10, "the cluster refusing the rogue's route")
        c1 = await bus_factory("C1", servers=[nodes[0].url])
        d1 = await bus_factory("D1", servers=[nodes[2].url])
        heard: list[str] = []

        async def on_rfq(msg):
            heard.append(msg.subject)

        await d1.nc.subscribe("otc.rfq.commodity.*", cb=on_rfq)
        await d1.flush()
        # The cluster carries C1's RFQs from node 1 to node 3 ...
        deadline = time.monotonic() + 10
        while not heard:
            assert time.monotonic() < deadline, "the cluster never carried C1's RFQ"
            await c1.nc.publish("otc.rfq.commodity.RB2605", b"rfq")
            await asyncio.sleep(0.05)
        # ... and none of them, nor anything else, to the rogue, whose own traffic flows.
        await spy.publish("rogue.ping", b"")
        await spy.flush()
        await wait_for(lambda: "rogue.ping" in stolen, 5, "the rogue's own message")
        assert stolen == ["rogue.ping"]
        await spy.close()
    finally:
        rogue.stop()


@pytest.mark.adversarial
async def test_a_chain_stream_created_unlocked_by_a_faulty_authority_is_reported(
    nats_server, network, bus_factory
):
    faulty = await bus_factory("D1")
    await faulty.nc.jetstream().add_stream(
        StreamConfig(name=subjects.CHAIN_STREAM, subjects=[subjects.CHAIN_ALL])
    )
    node = AuthorityNode(await bus_factory("D2"), network.genesis(), network.data_dir("D2"))
    await node._ensure_stream()
    assert node.stats["chain_stream_misconfigured"] == 1
    node.store.close()


async def test_an_authoritys_answer_is_sealed_to_the_member_that_asked(
    network, nats_server, bus_factory
):
    """CCP (its node not running) takes the bank's signed query, replays it to D1 and gets
    the answer: sealed to the bank, unreadable by CCP."""
    nodes = await start_authorities(network, bus_factory, ids=("D1", "D2", "D3"))
    genesis = network.genesis()
    bank, liar = await bus_factory("BANK"), await bus_factory("CCP")
    asked: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    async def capture(msg):
        if not asked.done():
            asked.set_result(msg.data)

    await liar.nc.subscribe(subjects.query("CCP"), cb=capture)
    await liar.flush()
    replies = reply_channel(genesis.params.consensus_max_bytes)
    for _ in range(10):  # asked again, as a client would, until the liar has it
        with pytest.raises(RequestError):  # nobody answers as CCP: the request only delivers it
            await bank.request(subjects.query("CCP"), PaymentsQuery(), replies, timeout=0.5)
        if asked.done():
            break
    # bounded: once this waited on ``asked`` unbounded, and the CI run hung until its timeout
    captured = await asyncio.wait_for(asked, timeout=5)
    answer = await liar.nc.request(subjects.query("D1"), captured, timeout=5)
    opened = liar.verifier.open(answer.data, replies)
    assert not isinstance(opened, Received)
    assert opened.reason == DropReason.NOT_FOR_ME
    for node in nodes.values():
        await node.stop()
