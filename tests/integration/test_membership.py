"""Membership after the genesis over a real nats-server: bus access follows the chain's
member registry through the server's auth callout, without restarting anything.

A member made with ``botc keygen`` and admitted with ``botc regulator admit`` connects within
seconds of its block; a member offboarded is disconnected and refused; a key the chain does
not know is refused; bad admissions are refused with one line and exit 2, the chain unchanged.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import msgspec
import pytest

from bus import subjects
from bus.client import Bus, BusStatus, ConnectError
from bus.envelope import DropReason, Outbox
from peers.counterparty import ClientSession
from peers.dealer import DealerBot
from peers.genesis import keygen
from peers.oracle import Simulator
from peers.runtime import open_bus
from rfq.identity import Directory, Identity, Role
from rfq.instruments import listed_futures
from rfq.messages import Decline, Quote
from rfq.signing import tx_id

from .chainkit import TxFactory, botc_regulator, rebar_swap, wait_for

pytestmark = pytest.mark.integration


async def stranger_bus(network: Any, identity: Identity) -> Bus:
    genesis = network.genesis()
    bus = Bus(
        identity,
        Directory(genesis.members),
        genesis.chain_id,
        network.server_urls(),
        params=genesis.params,
        initial_attempts=1,
    )
    await bus.connect()
    return bus


async def test_a_key_the_chain_does_not_know_is_refused(live_market, network, auth_callout):
    callout = auth_callout
    with pytest.raises(ConnectError):
        await stranger_bus(network, Identity.generate("X1", Role.CLIENT))
    assert any("no member holds this key on chain" in r for r in callout.refusals)


async def test_a_dealer_admitted_at_runtime_connects_and_quotes_within_seconds(
    live_market, network, auth_callout
):
    keys = network.path / "keys"
    _, identity_path = keygen(keys, "D4", Role.DEALER, "Dealer D4")
    with pytest.raises((ConnectError, Exception)):
        await open_bus(network, "D4")  # not a member yet: refused at the door
    code, receipt, err = await botc_regulator(
        network, "admit", str(identity_path), "--rating", "A", "--capital", "1e8"
    )
    assert code == 0, err
    assert receipt is not None and receipt["ok"] and receipt["member"] == "D4"
    admitted_at = time.monotonic()
    bus: Bus | None = None
    while bus is None:
        try:
            bus = await open_bus(network, "D4")
        except ConnectError:
            assert time.monotonic() - admitted_at < 10, "D4 still refused 10 s after its block"
            await asyncio.sleep(0.2)
    try:
        dealer = await DealerBot(bus, network.genesis()).start()
        for price in Simulator(start=live_market.today, seed=3, ticks_per_day=2).ticks():
            await live_market.oracle.publish(price)  # the closes D4 prices from
        future = listed_futures("RB", live_market.today)[-1].id
        await wait_for(lambda: future in dealer.market.latest, 10, "D4 has prices")
        client = live_market.clients["C1"]
        await client.send_rfq(rebar_swap(live_market.today), deadline_s=5)
        await wait_for(lambda: dealer.stats["quotes"] >= 1, 10, "D4 quotes the RFQ")
        assert time.monotonic() - admitted_at < 15
        await dealer.close()
    finally:
        await bus.close()
    # governance knows it too: a dealer admitted after the genesis can become a candidate
    code, receipt, err = await botc_regulator(network, "nominate", "D4")
    assert code == 0 and receipt is not None and receipt["ok"], err
    code, receipt, err = await botc_regulator(network, "nominate", "D5")
    assert (code, receipt) == (2, None) and "no member 'D5' on chain" in err


async def test_an_offboarded_client_is_disconnected_and_refused_within_seconds(
    live_market, network, auth_callout
):
    callout = auth_callout
    victim = live_market.clients["C2"].bus
    assert victim.status == BusStatus.CONNECTED
    statuses: list[BusStatus] = []
    victim.listeners.append(lambda status, why: statuses.append(status))
    code, receipt, err = await botc_regulator(
        network, "offboard", "C2", "--reason", "left the market"
    )
    assert code == 0, err
    assert receipt is not None and receipt["ok"]
    final_at = time.monotonic()
    await wait_for(lambda: BusStatus.DISCONNECTED in statuses, 10, "C2 disconnected")
    assert time.monotonic() - final_at < 10
    await wait_for(
        lambda: any(r == "C2 is offboarded on chain" for r in callout.refusals),
        10,
        "C2's reconnection refused",
    )
    refused = callout.stats["refused"]
    with pytest.raises(ConnectError):
        await open_bus(network, "C2")
    assert callout.stats["refused"] > refused  # every later attempt is refused and counted
    assert callout.stats["kicked"] >= 1


async def test_bad_admissions_are_refused_with_one_line_and_exit_2_and_change_nothing(
    live_market, network, auth_callout, tmp_path: Path
):
    out = tmp_path / "keys"
    _, good = keygen(out, "C9", Role.CLIENT, "Client C9")
    original = json.loads(good.read_text())

    def variant(label: str, **fields: str) -> Path:
        path = tmp_path / f"{label}.identity.json"
        path.write_text(json.dumps({**original, **fields}))
        return path

    tampered = variant("tampered", name="Someone Else")
    bad_proof = variant("bad-proof", proof="bm90IGEgc2lnbmF0dXJl")
    _, collision = keygen(tmp_path / "other", "C1", Role.CLIENT, "Client C1")
    for path, needle in (
        (tampered, f"{tampered}: proof: proof of possession does not verify"),
        (bad_proof, f"{bad_proof}: proof: proof is not a base64 Ed25519 signature"),
        (collision, f"{collision}: id: C1 is already a member (another key holds the id)"),
    ):
        code, receipt, err = await botc_regulator(network, "admit", str(path))
        lines = [line for line in err.splitlines() if not line.startswith("{")]  # logs
        assert (code, receipt, len(lines)) == (2, None, 1), err
        assert lines[0].startswith("botc regulator: error: ") and needle in lines[0]
    code, receipt, err = await botc_regulator(network, "admit", str(good))
    assert code == 0 and receipt is not None and receipt["ok"], err
    code, receipt, err = await botc_regulator(network, "admit", str(good))
    assert (code, receipt) == (2, None), err
    assert f"{good}: id: C9 is already a member (this identity was admitted before)" in err
    node = next(iter(live_market.authorities.values()))
    registered = [m for m in node.state.members.values() if m.id in ("C9", "C1")]
    assert sorted(m.id for m in registered) == ["C1", "C9"]
    assert node.state.members["C1"].sign_key == network.genesis().member("C1").sign_key


async def test_a_client_admitted_at_runtime_trades_and_every_authority_verifies_it(
    live_market, network, auth_callout
):
    _, identity_path = keygen(network.path / "keys", "C9", Role.CLIENT, "Client C9")
    code, receipt, err = await botc_regulator(
        network, "admit", str(identity_path), "--rating", "BBB", "--capital", "2e7"
    )
    assert code == 0 and receipt is not None and receipt["ok"], err
    nodes = live_market.authorities.values()
    await wait_for(lambda: all("C9" in n.bus.directory for n in nodes), 10, "authorities learn C9")
    bus = await open_bus(network, "C9")
    try:
        factory = TxFactory(network)
        factory.ids["C9"] = network.identity("C9")
        await bus.nc.publish("otc.tx.C9", factory.trade("r-c9", client="C9", dealer="D1"))
        await bus.flush()

        def final() -> bool:
            return all(any(t.client == "C9" for t in n.state.trades.values()) for n in nodes)

        await wait_for(final, 15, "C9's trade final on every authority")
    finally:
        await bus.close()


async def connect_once_admitted(network: Any, member_id: str, *, within_s: float = 10) -> Bus:
    admitted_at = time.monotonic()
    while True:
        try:
            return await open_bus(network, member_id)
        except ConnectError:
            assert time.monotonic() - admitted_at < within_s, f"{member_id} still refused"
            await asyncio.sleep(0.2)


async def test_a_dealer_admitted_at_runtime_trades_with_a_client_that_started_before_it(
    live_market, network, auth_callout
):
    client = live_market.clients["C1"]  # its bus knows the genesis's members only
    assert "D4" not in client.bus.directory
    _, identity_path = keygen(network.path / "keys", "D4", Role.DEALER, "Dealer D4")
    code, receipt, err = await botc_regulator(
        network, "admit", str(identity_path), "--rating", "A", "--capital", "1e8"
    )
    assert code == 0 and receipt is not None and receipt["ok"], err
    bus = await connect_once_admitted(network, "D4")
    try:
        dealer = await DealerBot(bus, network.genesis()).start()
        for price in Simulator(start=live_market.today, seed=3, ticks_per_day=2).ticks():
            await live_market.oracle.publish(price)
        future = listed_futures("RB", live_market.today)[-1].id
        await wait_for(lambda: future in dealer.market.latest, 10, "D4 has prices")
        handle = await client.send_rfq(rebar_swap(live_market.today), deadline_s=8)
        await wait_for(lambda: "D4" in handle.answers, 10, "C1 takes D4's quote")
        quote = handle.answers["D4"]
        assert isinstance(quote, Quote)
        learned = client.ledger.member_keys.stats
        assert learned["learned"] == 1 and learned["asked"] == 1
        assert client.bus.directory.get("D4") is not None
        signed = await client.accept(quote)
        final = await client.ledger.wait(tx_id(msgspec.msgpack.encode(signed)).hex(), timeout=15)
        assert final.ok, final.reason
        nodes = live_market.authorities.values()
        await wait_for(
            lambda: all(
                any(t.dealer == "D4" and t.client == "C1" for t in n.state.trades.values())
                for n in nodes
            ),
            10,
            "the trade with D4 final on every authority",
        )
        await dealer.close()
    finally:
        await bus.close()


async def test_messages_from_keys_the_chain_never_admitted_are_refused_counted_and_bounded(
    live_market, network
):
    client = live_market.clients["C1"]
    learner = client.ledger.member_keys
    relay = live_market.dealers["D1"].bus  # a member may publish what a stranger signed
    chain_id = network.genesis().chain_id
    before = client.bus.verifier.drops[DropReason.UNKNOWN_SENDER]

    async def forged(member_id: str) -> None:
        outbox = Outbox(Identity.generate(member_id, Role.DEALER), chain_id)
        decline = Decline(rfq_id="r-x", client="C1", dealer=member_id, code="x", text="forged")
        await relay.nc.publish(subjects.quote("C1", "r-x"), outbox.encode(decline))

    await forged("X9")
    await relay.flush()
    await wait_for(lambda: learner.stats["unknown"] == 1, 10, "X9 proven absent")
    assert "X9" not in client.bus.directory and "X9" not in client.bus.held
    await forged("X9")  # the proven absence is remembered: no second lookup
    await relay.flush()
    await wait_for(lambda: learner.stats["known_absent"] == 1, 5, "X9 answered from memory")
    flood_started = time.monotonic()
    for n in range(300):  # made-up senders, each new
        await forged(f"X{100 + n}")
    await relay.flush()
    await wait_for(
        lambda: client.bus.verifier.drops[DropReason.UNKNOWN_SENDER] >= before + 302,
        10,
        "every forged message dropped and counted",
    )
    await wait_for(lambda: not learner._inflight, 15, "the lookups done")
    elapsed = time.monotonic() - flood_started
    asked = learner.stats["asked"]
    assert asked <= 1 + learner.burst + learner.rate_per_s * elapsed + 1, (asked, elapsed)
    assert learner.stats["rate_limited"] >= 300 - asked
    assert learner.stats["learned"] == 0
    assert len(client.bus.held) <= client.bus.held.max_senders * client.bus.held.per_sender
    assert client.bus.verifier.accepted  # the client still takes its real dealers' answers


async def test_a_suspended_client_reinstated_connects_again_without_a_server_restart(
    live_market, network, auth_callout
):
    victim = live_market.clients["C2"].bus
    statuses: list[BusStatus] = []
    victim.listeners.append(lambda status, why: statuses.append(status))
    code, receipt, err = await botc_regulator(network, "suspend", "C2", "--reason", "review")
    assert code == 0 and receipt is not None and receipt["ok"], err
    await wait_for(lambda: BusStatus.DISCONNECTED in statuses, 10, "C2 disconnected")
    with pytest.raises(ConnectError):
        await open_bus(network, "C2")
    code, receipt, err = await botc_regulator(network, "reinstate", "C2", "--reason", "cleared")
    assert code == 0 and receipt is not None and receipt["ok"], err
    bus = await connect_once_admitted(network, "C2")
    await bus.close()
    code, receipt, err = await botc_regulator(network, "reinstate", "C2", "--reason", "twice")
    assert code == 1 and receipt is not None and not receipt["ok"], err
    assert receipt["reason"] == "C2 is not suspended"


async def test_a_client_admitted_at_runtime_gets_quotes_from_dealers_that_started_before_it(
    live_market, network, auth_callout
):
    _, identity_path = keygen(network.path / "keys", "C9", Role.CLIENT, "Client C9")
    code, receipt, err = await botc_regulator(
        network, "admit", str(identity_path), "--rating", "BBB", "--capital", "2e7"
    )
    assert code == 0 and receipt is not None and receipt["ok"], err
    bus = await connect_once_admitted(network, "C9")
    try:
        session = await ClientSession(bus, network.genesis()).start()
        await session.market.attach(bus)
        handle = await session.send_rfq(rebar_swap(live_market.today), deadline_s=8)
        await wait_for(lambda: handle.quotes, 10, "a dealer quotes C9")
        learned = [d.ledger.member_keys.stats["learned"] for d in live_market.dealers.values()]
        assert learned == [1, 1, 1]
        quote = handle.best()
        assert quote is not None
        signed = await session.accept(quote)
        final = await session.ledger.wait(tx_id(msgspec.msgpack.encode(signed)).hex(), timeout=15)
        assert final.ok, final.reason
        await session.close()
    finally:
        await bus.close()
