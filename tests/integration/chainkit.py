"""Helpers for chain tests: authorities in-process, signed transactions with real keys."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import sys
import time
from collections.abc import Callable, Iterable
from typing import Any

import msgspec

from bus import subjects
from bus.client import Bus
from peers.authority.node import AuthorityNode
from peers.netdir import NetDir
from rfq.instruments import Leg, Side, Template, Terms, listed_futures
from rfq.messages import Accept, Quote
from rfq.signing import sign_payload

AUTHORITIES = ("CCP", "D1", "D2", "D3")


def rebar(today: dt.date | None = None) -> str:
    """A rebar month that trades today (the far listed one)."""
    return listed_futures("RB", today or dt.datetime.now(dt.UTC).date())[-1].id


def rebar_swap(today: dt.date, side: Side = Side.BUY, quantity: float = 1000) -> Terms:
    """What a scripted client asks for: a 120-day swap on the far rebar month listed
    ``today`` (it trades past maturity)."""
    return Terms(
        template=Template.PRICE_SWAP,
        legs=(Leg(rebar(today)),),
        client_side=side,
        quantity=quantity,
        trade_date=today,
        maturity=today + dt.timedelta(days=120),
    )


def terms(today: dt.date | None = None, underlying: str | None = None) -> Terms:
    today = today or dt.datetime.now(dt.UTC).date()
    return Terms(
        template=Template.PRICE_SWAP,
        legs=(Leg(underlying or rebar(today)),),
        client_side=Side.BUY,
        quantity=100,
        trade_date=today,
        maturity=today + dt.timedelta(days=90),
    )


class TxFactory:
    """Signed transactions from members' real keys, with their own nonces."""

    def __init__(self, net: NetDir) -> None:
        self.net = net
        self.genesis = net.genesis()
        self.ids = {m.id: net.identity(m.id) for m in self.genesis.members}
        self.nonce = int(time.time() * 1_000_000)

    def sign(self, who: str, payload: msgspec.Struct, ttl_s: float = 120.0) -> bytes:
        self.nonce += 1
        now = int(time.time() * 1000)
        signed = sign_payload(
            self.ids[who],
            payload,
            chain_id=self.genesis.chain_id,
            nonce=self.nonce,
            timestamp_ms=now,
            expires_ms=now + int(ttl_s * 1000),
        )
        return msgspec.msgpack.encode(signed)

    def trade(
        self, rfq_id: str, *, client: str = "C1", dealer: str = "D1", price: float = 3200.0
    ) -> bytes:
        now = int(time.time() * 1000)
        quote = Quote(
            id=f"{rfq_id}-{dealer}",
            rfq_id=rfq_id,
            client=client,
            dealer=dealer,
            terms=terms(),
            price=price,
            valid_until_ms=now + 120_000,
            initial_margin_rate=0.1,
            credit_line=0.0,
        )
        self.nonce += 1
        signed_quote = sign_payload(
            self.ids[dealer],
            quote,
            chain_id=self.genesis.chain_id,
            nonce=self.nonce,
            timestamp_ms=now,
            expires_ms=now + 120_000,
        )
        return self.sign(client, Accept(rfq_id, quote.id, client, dealer, signed_quote))


async def start_authorities(
    network: NetDir, bus_factory: Callable[..., object], ids: tuple[str, ...] = AUTHORITIES
) -> dict[str, AuthorityNode]:
    genesis = network.genesis()
    nodes = {}
    for member in ids:
        bus: Bus = await bus_factory(member)  # type: ignore[misc]
        nodes[member] = await AuthorityNode(bus, genesis, network.data_dir(member)).start()
    return nodes


def committed(nodes: Iterable[AuthorityNode], trades: int) -> Callable[[], bool]:
    """Every node holds ``trades`` trades in final blocks, not in a proposal still in flight."""
    group = list(nodes)
    return lambda: all(not n.speculating and len(n.state.trades) == trades for n in group)


async def wait_for(predicate: Callable[[], bool], timeout: float = 30.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or predicate}")
        await asyncio.sleep(0.05)


async def submit(bus: Bus, txs: list[bytes]) -> None:
    for tx in txs:
        await bus.nc.publish(subjects.tx(bus.member_id), tx)
    await bus.flush()


async def botc_regulator(network: Any, *args: str) -> tuple[int, dict[str, Any] | None, str]:
    """``botc regulator --net NETDIR ARGS`` as its own process: (exit code, JSON, stderr)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "peers.cli",
        "regulator",
        "--net",
        str(network.path),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    out, err = await asyncio.wait_for(proc.communicate(), 90)
    text = out.decode().strip()
    return proc.returncode or 0, json.loads(text) if text else None, err.decode()
