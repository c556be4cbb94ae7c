"""Authorities crashing, returning and having their databases tampered with."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

import msgspec
import pytest

from peers.authority.node import AuthorityNode
from peers.cli import main
from peers.netdir import NetDir, create_network
from rfq.identity import NetworkParams
from rfq.ledger.block import Block
from rfq.ledger.tx import Transaction
from rfq.messages import Accept
from rfq.signing import SignedMessage

from .chainkit import AUTHORITIES, TxFactory, committed, start_authorities, submit, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
def network(tmp_path: Path) -> NetDir:
    """The plugin's network with 1 s round timeouts: a halted chain's rounds (1, 2, 4 s...)
    time out, as the halt test waits for them to, in half the default's time."""
    return create_network(
        tmp_path / "net", dealers=3, clients=5, params=NetworkParams(round_timeout_ms=1000)
    )


async def restart(network, bus_factory, member: str) -> AuthorityNode:
    bus = await bus_factory(member)
    return await AuthorityNode(bus, network.genesis(), network.data_dir(member)).start()


def stuck_in_a_later_round(nodes: list[AuthorityNode], past: dict[str, int]) -> Callable[[], bool]:
    """Every node is on the height after one common head, in a round above ``past[node]``
    (default 0): each has seen that round of the height time out undecided."""

    def check() -> bool:
        heads = {n.head.height for n in nodes}
        if len(heads) > 1:
            return False
        return all(
            n.instance is not None
            and n.instance.height == n.head.height + 1
            and n.instance.round > past.get(n.me, 0)
            for n in nodes
        )

    return check


def final_rfq_ids(node: AuthorityNode) -> list[str]:
    """The RFQ ids of the accepts in the node's final blocks."""
    ids = []
    for block in node.store.blocks(1):
        for raw in block.txs:
            signed = msgspec.msgpack.decode(raw, type=SignedMessage)
            tx = msgspec.msgpack.decode(signed.body, type=Transaction)
            if isinstance(tx, Accept):
                ids.append(tx.rfq_id)
    return ids


def same_chain(nodes) -> None:
    tip = min(n.head.height for n in nodes)
    for h in range(1, tip + 1):
        assert len({n.store.block(h).hash() for n in nodes}) == 1, f"fork at height {h}"


async def test_one_authority_down_blocks_stay_final_two_down_halt_and_a_return_resumes(
    nats_server, network, bus_factory
):
    nodes = await start_authorities(network, bus_factory)
    factory = TxFactory(network)
    client = await bus_factory("C1")
    await submit(client, [factory.trade(f"a{i}") for i in range(20)])
    await wait_for(committed(nodes.values(), 20), what="warm-up")

    await nodes["D3"].crash()
    alive = [nodes[m] for m in ("CCP", "D1", "D2")]
    await submit(client, [factory.trade(f"b{i}") for i in range(20)])
    await wait_for(
        committed(alive, 40),
        timeout=60,
        what="three of four authorities commit",
    )
    same_chain(alive)

    await nodes["D2"].crash()
    two = [nodes["CCP"], nodes["D1"]]
    # Trades D2 never saw: no block holding one can carry D2's commit seal.
    admitted = {n.me: n.stats["tx_admitted"] for n in two}
    await submit(client, [factory.trade(f"c{i}") for i in range(10)])
    await wait_for(
        lambda: all(n.stats["tx_admitted"] >= admitted[n.me] + 10 for n in two),
        timeout=30,
        what="both survivors to hold the ten new trades",
    )
    # A block D2 committed to before crashing may still finalise: the height being decided is
    # over once both survivors sit on one head and have timed out the next height's round 0
    # (a later round cannot propose without a quorum of round changes).
    await wait_for(
        stuck_in_a_later_round(two, {}), timeout=60, what="the survivors to time out round 0"
    )
    halted_at = max(n.head.height for n in two)
    # The chance to finalise anyway: one more round, the new trades at hand, times out.
    rounds = {n.me: n.instance.round for n in two if n.instance is not None}
    await wait_for(
        lambda: (
            max(n.head.height for n in two) != halted_at or stuck_in_a_later_round(two, rounds)()
        ),
        timeout=90,
        what="the survivors to time out one more round",
    )
    assert max(n.head.height for n in two) == halted_at, "two of four must not finalise"
    assert not [t for n in two for t in final_rfq_ids(n) if t.startswith("c")], (
        "a trade D2 never saw is final with two of four"
    )
    same_chain(two)

    nodes["D2"] = await restart(network, bus_factory, "D2")
    three = [nodes["CCP"], nodes["D1"], nodes["D2"]]
    await wait_for(
        committed(three, 50),
        timeout=90,
        what="the chain resumes with three",
    )
    same_chain(three)

    nodes["D3"] = await restart(network, bus_factory, "D3")
    await wait_for(
        lambda: nodes["D3"].head.height >= min(n.head.height for n in three),
        timeout=30,
        what="D3 catches up",
    )
    same_chain(list(nodes.values()))
    for node in nodes.values():
        await node.stop()
    for member in AUTHORITIES:
        assert main(["chain", "verify", "--net", str(network.path), "--id", member]) == 0


async def run_and_stop(network, bus_factory, trades: int = 30) -> dict[str, AuthorityNode]:
    nodes = await start_authorities(network, bus_factory)
    factory = TxFactory(network)
    client = await bus_factory("C1")
    await submit(client, [factory.trade(f"t{i}") for i in range(trades)])
    await wait_for(committed(nodes.values(), trades), what=f"{trades} trades final everywhere")
    for node in nodes.values():
        await node.stop()
    return nodes


async def test_an_edited_block_row_is_named_by_chain_verify(
    nats_server, network, bus_factory, capsys
):
    await run_and_stop(network, bus_factory)
    db = sqlite3.connect(network.path / "data" / "D1" / "chain.db")
    heights = [h for (h,) in db.execute("SELECT height FROM blocks WHERE height > 0 ORDER BY 1")]
    target = next(
        h
        for h in heights
        if msgspec.msgpack.decode(
            db.execute("SELECT data FROM blocks WHERE height=?", (h,)).fetchone()[0], type=Block
        ).txs
    )
    data = db.execute("SELECT data FROM blocks WHERE height=?", (target,)).fetchone()[0]
    block = msgspec.msgpack.decode(data, type=Block)
    last = block.txs[-1]
    flipped = last[:-1] + bytes([last[-1] ^ 0xFF])  # always a different byte
    forged = msgspec.structs.replace(block, txs=(*block.txs[:-1], flipped))
    db.execute("UPDATE blocks SET data=? WHERE height=?", (msgspec.msgpack.encode(forged), target))
    db.commit()
    db.close()
    capsys.readouterr()
    assert main(["chain", "verify", "--net", str(network.path), "--id", "D1"]) == 1
    out = capsys.readouterr().out
    assert f"first bad height {target}" in out
    assert main(["chain", "verify", "--net", str(network.path), "--id", "D2"]) == 0


async def test_an_edited_state_row_is_named_by_chain_verify(
    nats_server, network, bus_factory, capsys
):
    await run_and_stop(network, bus_factory)
    db = sqlite3.connect(network.path / "data" / "CCP" / "chain.db")
    (height,) = db.execute("SELECT MAX(height) FROM snapshot_index").fetchone()
    seq, data = db.execute(
        "SELECT seq, data FROM snapshot_parts WHERE height = ? ORDER BY seq LIMIT 1", (height,)
    ).fetchone()
    tampered = bytearray(data)
    index = bytes(tampered).rfind(b"C1")  # in a contract's record (the book's rows are last)
    tampered[index : index + 2] = b"C9"
    db.execute(
        "UPDATE snapshot_parts SET data=? WHERE height=? AND seq=?", (bytes(tampered), height, seq)
    )
    db.commit()
    db.close()
    capsys.readouterr()
    assert main(["chain", "verify", "--net", str(network.path), "--id", "CCP"]) == 1
    assert f"first bad height {height}: state snapshot" in capsys.readouterr().out


async def test_a_snapshot_of_genesis_or_beyond_the_tip_is_checked_too(
    nats_server, network, bus_factory, capsys
):
    await run_and_stop(network, bus_factory, trades=5)
    path = network.path / "data" / "D2" / "chain.db"
    db = sqlite3.connect(path)
    tip = db.execute("SELECT MAX(height) FROM blocks").fetchone()[0]
    height, root, frame, _, size = db.execute(
        "SELECT * FROM snapshot_index ORDER BY height DESC LIMIT 1"
    ).fetchone()
    args = ["chain", "verify", "--net", str(network.path), "--id", "D2"]

    def stored_as(at: int) -> None:  # the same snapshot, named as one of another height
        db.execute("INSERT OR REPLACE INTO snapshot_index VALUES (?, ?, ?, ?, ?)",
                   (at, root, frame, height, 0))  # fmt: skip

    stored_as(tip + 5)
    db.commit()
    capsys.readouterr()
    assert main(args) == 1
    assert f"first bad height {tip + 5}: state snapshot of a block" in capsys.readouterr().out

    db.execute("DELETE FROM snapshot_index WHERE height > ?", (tip,))
    db.execute(
        "INSERT OR REPLACE INTO snapshot_index VALUES (0, ?, ?, NULL, ?)", (root, frame, size)
    )
    db.execute("INSERT INTO snapshot_parts SELECT 0, seq, data FROM snapshot_parts "
               "WHERE height = ?", (height,))  # fmt: skip
    db.commit()
    db.close()
    assert main(args) == 1
    assert "first bad height 0: state snapshot differs" in capsys.readouterr().out


async def test_a_restarted_authority_catches_up_from_its_peers_past_a_poisoned_stream(
    nats_server, network, bus_factory
):
    """The CHAIN stream holds, under the next heights' subjects, a block out of place and
    bytes that are no block: the returning node counts and skips them, asks its peers, and
    reaches the tip instead of re-reading the stream for ever."""
    from bus import subjects

    nodes = await start_authorities(network, bus_factory)
    factory = TxFactory(network)
    c1 = await bus_factory("C1")
    await submit(c1, [factory.trade(f"p{i}", client="C1") for i in range(3)])
    await wait_for(committed(nodes.values(), 3), what="three trades final")
    await nodes["D3"].crash()
    survivors = [nodes[a] for a in ("CCP", "D1", "D2")]
    await submit(c1, [factory.trade(f"q{i}", client="C1") for i in range(3)])
    await wait_for(committed(survivors, 6), what="three more trades final without D3")
    gone = nodes["D3"].head.height  # what D3's database holds
    poisoner = survivors[1]
    old = poisoner.store.raw_block(1)
    assert old is not None
    js = poisoner.bus.nc.jetstream()
    await js.publish(subjects.chain_block(gone + 1), old)  # block 1 where gone + 1 belongs
    await js.publish(subjects.chain_block(gone + 2), b"not a block")
    back = await restart(network, bus_factory, "D3")
    tip = max(n.head.height for n in survivors)
    await wait_for(lambda: back.head.height >= tip, what="D3 back at the tip", timeout=30)
    assert back.stats["sync_out_of_place"] >= 1
    assert back.state.state_root() == survivors[0].store.block(back.head.height).header.state_root
    for node in (*survivors, back):
        await node.stop()


async def test_a_stopped_authority_ignores_what_its_still_open_bus_delivers(
    nats_server, network, bus_factory
):
    """botc authority closes the bus after stopping the node: consensus messages, a
    transaction and a query arriving in between must not reach the closed database (the
    soak saw "handler_failed: Cannot operate on a closed database")."""
    from bus import subjects
    from bus.client import RequestError
    from peers.ledger_client import reply_channel
    from rfq.queries import StatusQuery

    nodes = await start_authorities(network, bus_factory)
    d3 = nodes["D3"]
    accepted_before = d3.bus.stats()["accepted"]
    await d3.stop()  # its bus stays open until the fixture closes it
    factory = TxFactory(network)
    c1 = await bus_factory("C1")
    await submit(c1, [factory.trade("after-stop", client="C1")])
    survivors = [nodes[a] for a in ("CCP", "D1", "D2")]
    await wait_for(committed(survivors, 1), what="the trade final without D3")
    reg = await bus_factory("REG")
    replies = reply_channel(network.genesis().params.consensus_max_bytes)
    with pytest.raises(RequestError):  # a stopped node answers nothing
        await reg.request(subjects.query("D3"), StatusQuery(), replies, timeout=0.5)
    assert d3.bus.stats()["accepted"] > accepted_before  # the messages reached its handlers
    assert d3.bus.handler_errors == {}
    for node in survivors:
        await node.stop()
