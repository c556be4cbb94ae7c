"""A real local marketplace for the terminal's Pilot tests, and helpers to wait on the screen.

``marketplace`` assembles, in this test's event loop and over a real nats-server: the oracle
(one simulated day of prices, its history served, closes put on chain), the four authorities
(CCP, D1-D3) and headless dealer bots following the chain. Terminals under test open their
own bus to the same server.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field

import pytest

from peers.authority.node import AuthorityNode
from peers.dealer import DealerBot
from peers.ledger_client import LedgerClient
from peers.netdir import NetDir
from peers.oracle import OracleService, Simulator
from tests.integration.chainkit import start_authorities
from tui.app import BotcApp

DAY_TICKS = 4


@dataclass
class Marketplace:
    """The running peers; ``dealers`` are the headless ones."""

    network: NetDir
    oracle: OracleService
    sim: Simulator
    authorities: dict[str, AuthorityNode]
    dealers: dict[str, DealerBot] = field(default_factory=dict)

    @property
    def today(self) -> dt.date:
        return self.sim.date

    async def tick(self) -> None:
        """One intraday step of every underlying (the day's last step is its close)."""
        for price in self.sim.ticks():
            await self.oracle.publish(price)
        await self.oracle.bus.flush()

    async def next_day(self) -> None:
        """Publish the rest of today's prices; its close goes on chain as a fixing."""
        closing = self.sim.date
        while self.sim.date == closing:
            for price in self.sim.ticks():
                await self.oracle.publish(price)
        await self.oracle.fix(closing)
        await self.oracle.bus.flush()

    @property
    def height(self) -> int:
        return min(node.head.height for node in self.authorities.values())


MarketplaceFactory = Callable[..., Awaitable[Marketplace]]


@pytest.fixture
async def open_marketplace(network, nats_server, bus_factory):
    """``await open_marketplace(dealers=("D2", "D3"))``: the market with those headless bots."""
    started: list[Marketplace] = []

    async def make(dealers: Iterable[str] = ("D1", "D2", "D3")) -> Marketplace:
        genesis = network.genesis()
        authorities = await start_authorities(network, bus_factory)
        oracle_bus = await bus_factory("ORACLE")
        oracle = OracleService(oracle_bus, ledger=await LedgerClient(oracle_bus, genesis).start())
        sim = Simulator(start=dt.datetime.now(dt.UTC).date(), seed=11, ticks_per_day=DAY_TICKS)
        oracle.history = {k: list(v) for k, v in sim.history.items()}
        await oracle.start()
        market = Marketplace(network, oracle, sim, authorities)
        for dealer in dealers:
            bot = DealerBot(await bus_factory(dealer), genesis)
            market.dealers[dealer] = await bot.start(follow_chain=True, every_s=1.0)
        for price in sim.ticks():  # the first intraday prices of the day
            await oracle.publish(price)
        await oracle_bus.flush()
        started.append(market)
        return market

    yield make
    for market in started:
        for node in market.authorities.values():
            await node.stop()


def terminal(network: NetDir, member: str, **kwargs) -> BotcApp:
    """``BotcApp`` as ``botc tui`` builds it, without animations (Pilot waits them out)."""
    app = BotcApp(network, member, **kwargs)
    app.animation_level = "none"
    return app


async def wait_until(
    pilot, predicate: Callable[[], bool], *, timeout: float = 15.0, what: str = ""
) -> None:
    """Let the app run until ``predicate()`` holds (fails the test after ``timeout``)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or predicate}")
        await pilot.pause(0.05)


async def type_into(pilot, selector: str, text: str) -> None:
    """Click at the end of a field, clear it and type ``text``, as a user would.

    The app first settles (``pilot.pause``): what was typed before may have shown an error
    row that moves the fields, and a click aimed at the old layout would land in another
    field (seen under load). The field must have the focus before anything is typed."""
    await pilot.pause()
    widget = pilot.app.screen.query_one(selector)
    await pilot.click(selector, offset=(widget.size.width - 1, 0))
    await pilot.pause()
    assert pilot.app.focused is widget, (
        f"the click meant for {selector} focused {pilot.app.focused}"
    )
    await pilot.press("ctrl+u", *text)


def record_notifications(app) -> list[str]:
    """Every notification the app shows from now on, as ``title: message`` (they expire on
    screen, so tests read this list instead)."""
    shown: list[str] = []
    notify = app.notify

    def recording(message: str, *, title: str = "", **kwargs) -> None:
        shown.append(f"{title}: {message}" if title else message)
        notify(message, title=title, **kwargs)

    app.notify = recording
    return shown
