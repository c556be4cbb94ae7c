"""``BotcApp``: the trading terminal; its main screen follows the member's role.

```python
app = BotcApp(NetDir("./net"), "C1")          # a client: market, ticket, quotes, blotter...
app.run()                                      # or, in tests: async with app.run_test() as pilot
```

The app owns the member's bus connection: it opens it in a worker (retrying while the
servers cannot be reached), tells the role screen with ``BusReady``, and turns the bus's
status changes into a status-bar indicator and notifications. Everything else (sessions,
queries, the embedded dealer bot) belongs to the role screens.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar

import structlog
from textual import work
from textual.app import App
from textual.binding import Binding, BindingType
from textual.reactive import reactive
from textual.screen import Screen

from bus.client import Bus, BusStatus
from bus.errors import BusError
from peers.errors import CliError, PeerError
from peers.netdir import NetDir
from peers.runtime import open_bus
from rfq.identity import Role
from tui.messages import BusReady, BusStatusChanged
from tui.palette import TerminalCommands

log = structlog.get_logger(__name__)

MODES = {Role.CLIENT: "client", Role.DEALER: "dealer", Role.REGULATOR: "regulator"}


class BotcApp(App[int]):
    """The B-OTC terminal for one member (client, dealer or regulator)."""

    CSS_PATH = "botc.tcss"
    TITLE = "B-OTC"
    COMMANDS = App.COMMANDS | {TerminalCommands}
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+q", "quit", "Quit", priority=True),
    ]

    bus_status: reactive[str] = reactive("offline")
    bus_detail: reactive[str] = reactive("")
    chain_height: reactive[int] = reactive(0)
    business_date: reactive[str] = reactive("")
    chain_ok: reactive[bool] = reactive(True)

    def __init__(
        self,
        net: NetDir,
        member_id: str,
        servers: Sequence[str] | None = None,
        *,
        connect: bool = True,
        clock: Callable[[], float] = time.time,
        poll_s: float = 2.0,
        retry_s: float = 2.0,
        auto_quote: bool = True,
        page_size: int | None = None,
    ) -> None:
        """Check the member before anything runs: an unknown id or a bad NETDIR raises
        ``NetDirError``, a member whose role has no terminal mode ``CliError``.

        ``page_size``: rows per query page (None: each screen's own, ``PAGE_LIMIT`` for the
        lists read in full, 200 for the regulator's trade repository); tests pass a small one
        to see screens read past the first page.

        Logging is the entry point's (``botc tui``, ``botc up``): it sends the logs to a file,
        never over the screen.
        """
        self.net = net
        self.genesis = net.genesis()
        self.identity = net.identity(member_id)
        self.member = self.genesis.member(member_id)
        if self.member.role not in MODES:
            raise CliError(
                f"{member_id} is a {self.member.role}: the terminal runs as a client, "
                "a dealer or the regulator"
            )
        super().__init__()
        self.member_id = member_id
        self.mode = MODES[self.member.role]
        self.servers = list(servers) if servers else None
        self.connect_on_mount = connect
        self.clock = clock
        self.poll_s = poll_s
        self.retry_s = retry_s
        self.auto_quote = auto_quote
        self.page_size = page_size
        self.bus: Bus | None = None
        self.sub_title = f"{member_id} · {self.member.name} · {self.mode}"

    # -- screens ---------------------------------------------------------------------------

    def make_main_screen(self) -> Screen[Any]:
        if self.mode == "client":
            from tui.client import ClientScreen

            return ClientScreen()
        if self.mode == "dealer":
            from tui.dealer import DealerScreen

            return DealerScreen(auto_quote=self.auto_quote)
        from tui.regulator import RegulatorScreen

        return RegulatorScreen()

    @property
    def main_screen(self) -> Screen[Any]:
        return self.screen_stack[1] if len(self.screen_stack) > 1 else self.screen

    def on_mount(self) -> None:
        self.push_screen(self.make_main_screen())
        if self.connect_on_mount:
            self.connect_bus()

    # -- screenshots (the command palette's "Screenshot") -----------------------------------

    def screenshot_dir(self) -> Path:
        """Where screenshots go: the network's logs directory (created if needed), else the
        current directory. Textual's default, ~/Downloads, often does not exist on a server
        and the save fails."""
        for candidate in (self.net.path / "logs", Path.cwd()):
            try:
                candidate.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                log.warning("tui_screenshot_dir_unusable", path=str(candidate), error=str(exc))
                continue
            if os.access(candidate, os.W_OK):
                return candidate
        return Path.cwd()

    def deliver_screenshot(
        self,
        filename: str | None = None,
        path: str | None = None,
        time_format: str | None = None,
    ) -> str | None:
        """Save the screen as SVG into ``screenshot_dir()``; Textual notifies the path."""
        where = path or str(self.screenshot_dir())
        return super().deliver_screenshot(filename, where, time_format)

    # -- the bus ---------------------------------------------------------------------------

    @work(group="connect", exclusive=True, exit_on_error=False)
    async def connect_bus(self) -> None:
        """Open the member's bus, retrying every ``retry_s`` while it cannot be reached."""
        self.bus_status = "connecting"
        warned = False
        while True:
            try:
                bus = await open_bus(self.net, self.member_id, servers=self.servers)
                break
            except (BusError, PeerError) as exc:
                log.warning("tui_connect_failed", error=str(exc))
                self.bus_status = "offline"
                if not warned:
                    self.notify(
                        f"{exc}. Retrying every {self.retry_s:g}s.",
                        title="Cannot reach the bus",
                        severity="error",
                    )
                    warned = True
                await asyncio.sleep(self.retry_s)
        self.bus = bus
        bus.listeners.append(self._on_bus_status)
        self.bus_detail = bus.nc.connected_url.netloc if bus.nc.connected_url else ""
        self.bus_status = "connected"
        if warned:
            self.notify("Connected to the bus.", title="Connected")
        log.info("tui_connected", member=self.member_id, mode=self.mode)
        self.main_screen.post_message(BusReady(bus))

    def _on_bus_status(self, status: BusStatus, detail: str) -> None:
        self.post_message(BusStatusChanged(status, detail))

    def on_bus_status_changed(self, event: BusStatusChanged) -> None:
        previous = self.bus_status
        if event.status == BusStatus.DISCONNECTED:
            self.bus_status = "disconnected"
            self.notify(
                "Lost the connection to the bus; reconnecting. Quotes and trades pause.",
                title="Disconnected",
                severity="error",
                timeout=3600,
            )
        elif event.status == BusStatus.CONNECTED:
            self.bus_status = "connected"
            self.bus_detail = event.detail
            if previous == "disconnected":
                self.clear_notifications()
                self.notify(f"Back on the bus ({event.detail}).", title="Reconnected")
        elif event.status == BusStatus.CLOSED:
            self.bus_status = "offline"

    async def close_bus(self) -> None:
        bus, self.bus = self.bus, None
        if bus is not None:
            bus.listeners.clear()
            try:
                await asyncio.wait_for(bus.close(), 3.0)
            except (TimeoutError, BusError, OSError) as exc:
                log.warning("tui_close_failed", error=str(exc))

    async def action_quit(self) -> None:
        await self.close_bus()
        self.exit(0)

    async def on_unmount(self) -> None:
        await self.close_bus()
