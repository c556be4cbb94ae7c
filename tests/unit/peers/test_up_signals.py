"""How ``botc up`` turns stop signals into one clean stop (the end-to-end proof, a real
``botc up`` and a closed terminal, is in ``tests/e2e/test_up.py``)."""

from __future__ import annotations

import asyncio
import io
import os
import signal
import threading
import time
from typing import ClassVar

import pytest

from peers.cli import main
from peers.cli.up import STOP_SIGNALS, Stopper, say
from peers.logging import configure_logging
from peers.netdir import create_network


@pytest.fixture
def stopper():
    stopper = Stopper(lambda: None)
    yield stopper
    stopper.restore()


def test_sighup_sigint_and_sigterm_all_stop_botc_up(stopper):
    before = {sig: signal.getsignal(sig) for sig in STOP_SIGNALS}
    stopper.install()
    assert signal.SIGHUP in STOP_SIGNALS
    for sig in STOP_SIGNALS:
        with pytest.raises(KeyboardInterrupt):
            signal.getsignal(sig)(sig, None)
    stopper.finish()
    assert all(signal.getsignal(sig) == signal.SIG_IGN for sig in STOP_SIGNALS)
    stopper.restore()
    assert {sig: signal.getsignal(sig) for sig in STOP_SIGNALS} == before


def test_a_hangup_ignored_by_nohup_stays_ignored(stopper):
    previous = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        stopper.install()
        assert signal.getsignal(signal.SIGHUP) == signal.SIG_IGN
    finally:
        stopper.restore()
        signal.signal(signal.SIGHUP, previous)


class GoneTerminal(io.StringIO):
    def write(self, text: str) -> int:
        raise OSError(5, "Input/output error")


def test_saying_something_to_a_closed_terminal_does_not_stop_the_stop():
    say("stopping ...", GoneTerminal())  # no exception: market.stop() still runs


class FakeMarket:
    """``botc up``'s marketplace without processes: records that it was stopped."""

    stopped: ClassVar[list[bool]] = []

    def __init__(self, net, **kwargs) -> None:
        self.supervisor = None

    def start(self, timeout: float) -> list[object]:
        return []

    def stop(self) -> None:
        FakeMarket.stopped.append(True)


class FakeTerminal:
    """The trading terminal, closed by a SIGHUP that arrives while its event loop runs."""

    opened: ClassVar[list[FakeTerminal]] = []

    def __init__(self, net, member) -> None:
        self.member, self.exited = member, False
        FakeTerminal.opened.append(self)

    def exit(self) -> None:
        self.exited = True
        self.done.set()

    def run(self) -> None:
        async def main() -> None:
            self.done = asyncio.Event()
            os.kill(os.getpid(), signal.SIGHUP)  # the window is closed
            await asyncio.wait_for(self.done.wait(), 5)

        asyncio.run(main())


@pytest.fixture
def fake_up(monkeypatch, tmp_path):
    import tui.app

    FakeMarket.stopped.clear()
    FakeTerminal.opened.clear()
    monkeypatch.setattr("peers.marketplace.Marketplace", FakeMarket)
    monkeypatch.setattr(tui.app, "BotcApp", FakeTerminal)
    yield create_network(tmp_path / "net")
    configure_logging("info")


def test_a_closed_window_asks_the_terminal_to_exit_then_stops_and_says_where_things_are(
    fake_up, capsys
):
    before = signal.getsignal(signal.SIGHUP)
    assert main(["up", "--net", str(fake_up.path)]) == 0
    [terminal] = FakeTerminal.opened
    assert terminal.exited and FakeMarket.stopped == [True]
    assert (fake_up.path / "logs" / "tui-C1.log").exists()  # the terminal's logs went there
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-2:] == [f"network: {fake_up.path}", f"logs:    {fake_up.path / 'logs'}"]
    assert signal.getsignal(signal.SIGHUP) == before


class StuckTerminal:
    """A terminal whose exit never finishes, as Textual's after a hang-up can."""

    def exit(self) -> None:
        pass


def test_a_terminal_stuck_on_exit_is_stopped_by_the_watchdog():
    stopped, ended = threading.Event(), []
    stopper = Stopper(stopped.set, grace_s=0.2, end_process=ended.append)
    stopper.app = StuckTerminal()

    async def terminal_running() -> None:
        stopper.handle(signal.SIGHUP, None)  # asks the app to exit; it never does

    asyncio.run(terminal_running())
    assert stopped.wait(5), "the watchdog did not stop the marketplace"
    deadline = time.monotonic() + 5
    while not ended and time.monotonic() < deadline:
        time.sleep(0.01)
    assert ended == [1]


def test_the_watchdog_stands_down_once_botc_up_stops_by_itself():
    stopped, ended = threading.Event(), []
    stopper = Stopper(stopped.set, grace_s=0.2, end_process=ended.append)
    stopper.app = StuckTerminal()

    async def terminal_running() -> None:
        stopper.handle(signal.SIGTERM, None)

    asyncio.run(terminal_running())
    stopper.finish()  # run's finally was reached in time
    stopper.restore()
    assert not stopped.wait(0.6) and ended == []
