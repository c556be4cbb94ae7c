"""A NATS node run by an institution other than the regulator: its auth callout follows the
chain as that institution (``botc callout --id D1``, docker-compose's ``d1-callout``), with
no key but D1's, and still lets a member admitted at runtime in within seconds."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bus.server import NatsServer
from peers.callout import CalloutThread
from peers.genesis import keygen
from peers.netdir import NetDir
from rfq.identity import Role

from .chainkit import botc_regulator, wait_for
from .test_membership import connect_once_admitted

pytestmark = pytest.mark.integration


@pytest.fixture
def operator_callout() -> list[CalloutThread]:
    return []


@pytest.fixture
def nats_server(
    network: NetDir, tmp_path: Path, operator_callout: list[CalloutThread]
) -> Iterator[NatsServer]:
    """The server with D1's callout beside it, and no other."""
    server = NatsServer(tmp_path / "nats", auth=network.auth_conf(), tls=network.tls()).start()
    network.write_run_file([server.url])
    callout = CalloutThread(network, [server.url], member="D1").start()
    operator_callout.append(callout)
    try:
        yield server
    finally:
        callout.stop()
        server.stop()


async def test_a_callout_run_by_a_dealer_follows_the_chain_and_admits_a_new_member(
    live_market, network, operator_callout
):
    (thread,) = operator_callout
    assert thread.callout is not None and thread.follower is not None
    assert thread.follower.bus.member_id == "D1"
    follower = thread.follower
    await wait_for(lambda: follower.height >= 1, 10, "D1's callout follows the blocks")
    _, identity_path = keygen(network.path / "keys", "D4", Role.DEALER, "Dealer D4")
    code, receipt, err = await botc_regulator(network, "admit", str(identity_path))
    assert code == 0 and receipt is not None and receipt["ok"], err
    bus = await connect_once_admitted(network, "D4")
    await bus.close()
    assert thread.callout.stats["admitted"] >= 1
