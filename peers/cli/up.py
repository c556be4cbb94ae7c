"""``botc up``: the whole marketplace, then the trading terminal (or a headless summary)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
import threading
from collections.abc import Callable
from typing import Any, TextIO

import structlog

log = structlog.get_logger(__name__)


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "up",
        help="run the whole marketplace and open the trading terminal",
        description=(
            "Start the embedded NATS server (JetStream), the authorities (three dealers and a "
            "CCP; other eligible members follow as observers), the guarantors, the regulator, "
            "the simulated oracle, the settlement bank, the dealer bots and simulated clients, "
            "each as its own process, restarted if it dies. Then open the trading terminal as "
            "client C1 (or --as), or with --headless print a live summary line and a final "
            "JSON summary. Ctrl-C, SIGTERM or closing the terminal window stops everything, the "
            "NATS server last. Without --net the network lives in the user's data directory "
            "(on Linux ~/.local/share/botc/network) and is created on first use; --net DIR "
            "creates one in DIR if DIR is new or empty. Logs: NETDIR/logs (the terminal's in "
            "NETDIR/logs/tui-ID.log); both paths are printed again when the terminal closes."
        ),
    )
    parser.add_argument(
        "--net",
        default=None,
        metavar="NETDIR",
        help="network directory (default: the user data directory)",
    )
    parser.add_argument(
        "--authorities",
        type=int,
        default=4,
        metavar="N",
        help="initial authorities (4 to 10) of a network created now (default 4)",
    )
    parser.add_argument("--headless", action="store_true", help="no terminal: a summary line")
    parser.add_argument("--clients", type=int, default=2, help="simulated clients (default 2)")
    parser.add_argument("--rate", type=float, default=2.0, help="their RFQs per second (default 2)")
    parser.add_argument(
        "--duration", type=float, default=None, metavar="S", help="stop after S seconds"
    )
    parser.add_argument(
        "--as", dest="member", default="C1", help="the terminal's member (default C1)"
    )
    parser.add_argument(
        "--port", type=int, default=0, help="NATS client port (default 0: any free port)"
    )
    parser.add_argument(
        "--day-seconds",
        type=float,
        default=30.0,
        metavar="S",
        help="wall seconds per simulated business day (default 30)",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import json
    import time
    from pathlib import Path

    from peers.errors import CliError
    from peers.logging import configure_logging
    from peers.marketplace import (
        Marketplace,
        chain_numbers,
        chain_view,
        ensure_network,
        print_progress,
        summary_line,
    )

    if args.clients < 0 or (args.rate is not None and args.rate <= 0):
        raise CliError("--clients must be >= 0 and --rate > 0")
    if args.duration is not None and args.duration <= 0:
        raise CliError("--duration must be positive")
    net, created = ensure_network(
        Path(args.net) if args.net else None, authorities=args.authorities
    )
    if created:
        say(f"created a network in {net.path}")
    if args.log_file is None:  # logs go to a file, never over the progress or the terminal
        configure_logging(args.log_level, net.path / "logs" / "up.log")
    if args.member not in {m.id for m in net.genesis().members}:
        raise CliError(f"--as {args.member}: no such member in {net.path}")
    started = time.monotonic()
    say(f"starting the marketplace of {net.path} ...")
    market = Marketplace(
        net,
        clients=args.clients,
        rate=args.rate,
        duration=args.duration,
        human=None if args.headless else args.member,
        port=args.port,
        day_seconds=args.day_seconds,
        on_event=print_progress,
    )
    stop_lock, stopped = threading.Lock(), threading.Event()

    def stop_market() -> None:
        """Every peer, then the nats-server(s); once, whichever thread gets here first."""
        with stop_lock:
            if not stopped.is_set():
                market.stop()
                stopped.set()

    stopper = Stopper(stop_market)
    stopper.install()
    try:
        missing = market.start(timeout=90)
        if missing:
            names = ", ".join(s.name for s in missing)
            say(f"not ready after 90s: {names} (see {net.path / 'logs'})", sys.stderr)
        say(f"marketplace ready in {time.monotonic() - started:.1f}s; logs in {net.path / 'logs'}")
        if not args.headless:
            from peers.cli import plugin_command

            configure_logging(args.log_level, net.terminal_log(args.member))
            stopper.app = plugin_command("tui").terminal(net, args.member)
            stopper.app.run()
            return 0

        async def headless() -> dict[str, object]:
            ledger = await chain_view(net)
            deadline = None if args.duration is None else time.monotonic() + args.duration
            chain: dict[str, object] = {}
            try:
                while deadline is None or time.monotonic() < deadline:
                    chain = await chain_numbers(ledger)
                    line = summary_line(market.load_stats(), chain, time.monotonic() - started)
                    say(line, end="\r" if sys.stdout.isatty() else "\n")
                    await asyncio.sleep(1.0)
                await asyncio.sleep(3.0)  # let the last trades become final
                chain = await chain_numbers(ledger)
            finally:
                await ledger.bus.close()
            return chain

        try:
            chain = asyncio.run(headless())
        except KeyboardInterrupt:
            chain = {}
        stats = market.load_stats()
        summary = {
            "seconds": round(time.monotonic() - started, 1),
            "rfqs": stats.get("rfqs", 0),
            "quotes": stats.get("quotes", 0),
            "accepts": stats.get("accepts", 0),
            "trades": stats.get("committed", 0),
            "failures": stats.get("failures", {}),
            "height": chain.get("height"),
            "tx_per_s": chain.get("tx_per_s"),
            "restarts": {s.name: s.restarts for s in market.supervisor.services if s.restarts},
        }
        say("")
        say(json.dumps(summary))
        return 0 if (args.clients == 0 or summary["trades"]) else 1
    except KeyboardInterrupt:
        return 130
    finally:
        stopper.finish()  # a second signal must not cut the stop short
        say("stopping ...", sys.stderr)
        try:
            stop_market()
        finally:
            stopper.restore()
        if not args.headless:  # the terminal covered where everything is
            say(f"network: {net.path}")
            say(f"logs:    {net.path / 'logs'}")


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Stopper:
    """Ctrl-C, SIGTERM and SIGHUP (a closed terminal window, ``tmux kill-session``) all stop
    ``botc up`` the same way: every peer, then the nats-server(s), in ``run``'s ``finally``.

    Without a terminal open, a signal raises ``KeyboardInterrupt``. With one, it asks the app to
    exit (so the screen is restored); a second signal raises at once. If the app has not let
    ``run`` reach its ``finally`` within ``grace_s`` (after a hang-up Textual can block for
    ever writing to the vanished terminal), a watchdog thread calls ``stop`` itself and ends
    the process. A SIGHUP already ignored (``nohup botc up``) stays ignored.
    """

    def __init__(
        self,
        stop: Callable[[], None],
        grace_s: float = 5.0,
        end_process: Callable[[int], object] = os._exit,
    ) -> None:
        self.app: Any = None
        self.stop = stop
        self.grace_s = grace_s
        self.end_process = end_process
        self._asked = False
        self._finishing = threading.Event()
        self._previous: dict[int, Any] = {}

    def install(self) -> None:
        for sig in STOP_SIGNALS:
            if sig == signal.SIGHUP and signal.getsignal(sig) == signal.SIG_IGN:
                continue
            self._previous[sig] = signal.signal(sig, self.handle)

    def handle(self, signum: int, frame: object) -> None:
        if self.app is None or self._asked:
            raise KeyboardInterrupt
        self._asked = True
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            raise KeyboardInterrupt from None
        loop.call_soon_threadsafe(self.app.exit)
        threading.Thread(target=self._watchdog, daemon=True, name="stop-watchdog").start()

    def _watchdog(self) -> None:
        if self._finishing.wait(self.grace_s):
            return  # ``run`` is stopping everything itself
        log.warning("terminal_stuck_on_exit", grace_s=self.grace_s)
        try:
            self.stop()
        finally:
            self.end_process(1)

    def finish(self) -> None:
        """Ignore further stop signals while stopping; the watchdog stands down."""
        self._finishing.set()
        for sig in self._previous:
            signal.signal(sig, signal.SIG_IGN)

    def restore(self) -> None:
        """Put back the handlers ``install`` replaced (``botc up`` may run in-process)."""
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()


def say(text: str, stream: TextIO | None = None, end: str = "\n") -> None:
    """Print, unless the terminal is gone (after SIGHUP a write fails): stopping the
    marketplace must never be skipped for want of somewhere to say so."""
    with contextlib.suppress(OSError, ValueError):
        out = stream or sys.stdout
        out.write(text + end)  # one write: the supervisor's threads print progress meanwhile
        out.flush()
