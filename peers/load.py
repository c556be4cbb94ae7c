"""Simulated clients: real client sessions asking for quotes and taking the best one.

Each client loops: pick terms (a swap, spread, calendar spread, average-price swap, forward or
option on what is listed that day, either side), send an RFQ to every dealer, take the best
quote (usually; sometimes it walks away), then wait for the trade to be final. Counts go to a
``LoadStats``; failures are counted by reason, never raised.

A ``Behaviour`` makes the population behave more like a market (``botc soak`` uses it): some
RFQs are withdrawn (a ``Cancel`` after the first answer, never accepted) and some best quotes
are held past their validity and accepted anyway, bypassing the session's local check, to
probe that the chain refuses them. With an ``events`` file every RFQ's fate is one JSON line
(``accepted``, ``committed`` with its accept-to-receipt latency, ``refused``, ``no_receipt``,
``cancelled``, ``stale_attempt``, ``stale_refused``, ``stale_committed``), so what the clients
did can be checked against the chain afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import math
import random
import re
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import structlog

from bus.client import PublishError
from peers.counterparty import AcceptRefused, ClientSession
from peers.ledger_client import LedgerUnavailable
from peers.market import MarketData
from peers.netdir import NetDir
from peers.runtime import open_bus
from rfq.contracts.templates import templates
from rfq.contracts.templates.base import LoadDraw
from rfq.errors import RfqError
from rfq.instruments import CATALOG, FUTURES_ROOTS, Side, Terms, listed_futures
from rfq.messages import Accept, Quote

log = structlog.get_logger(__name__)


@dataclass
class LoadStats:
    rfqs: int = 0
    quotes: int = 0
    declines: int = 0
    accepts: int = 0
    committed: int = 0
    walked_away: int = 0
    unconfirmed_at_stop: int = 0  # accepted, but stopped before the receipt arrived
    cancelled: int = 0
    stale_attempts: int = 0
    stale_refused: int = 0
    started: float = field(default_factory=time.time)
    failures: Counter[str] = field(default_factory=Counter)
    finality_ms: list[float] = field(default_factory=list)
    """Accept-to-receipt latency of each committed trade (what a client waits for finality)."""

    def summary(self) -> dict[str, object]:
        elapsed = max(time.time() - self.started, 1e-9)
        return {
            "rfqs": self.rfqs,
            "quotes": self.quotes,
            "declines": self.declines,
            "accepts": self.accepts,
            "committed": self.committed,
            "walked_away": self.walked_away,
            "unconfirmed_at_stop": self.unconfirmed_at_stop,
            "cancelled": self.cancelled,
            "stale_attempts": self.stale_attempts,
            "stale_refused": self.stale_refused,
            "failures": dict(self.failures),
            "seconds": round(elapsed, 1),
            "trades_per_s": round(self.committed / elapsed, 2),
            "finality_p50_ms": percentile(self.finality_ms, 50),
            "finality_p99_ms": percentile(self.finality_ms, 99),
        }


def percentile(values: Sequence[float], pct: float) -> float | None:
    """Nearest-rank percentile (None for no values), rounded to 0.1."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(math.ceil(pct / 100 * len(ordered)), 1)
    return round(ordered[min(rank, len(ordered)) - 1], 1)


@dataclass(frozen=True)
class Behaviour:
    """How a simulated client acts beyond asking and taking the best quote.

    ``take``: the share of RFQs with a quote whose best quote it accepts (else it walks away);
    ``cancel_share``: RFQs it withdraws after the first answer (never accepted);
    ``stale_share``: best quotes it holds past their validity and then accepts anyway,
    bypassing the session's local check (the chain must refuse each).
    """

    take: float = 0.85
    cancel_share: float = 0.0
    stale_share: float = 0.0


EventSink = Callable[[dict[str, object]], None]


class EventLog:
    """Appends one JSON line per event to ``path`` (``botc load --events-file``)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file: TextIO = path.open("a", encoding="utf-8", buffering=1)

    def __call__(self, event: dict[str, object]) -> None:
        self._file.write(json.dumps({"t_ms": int(time.time() * 1000), **event}) + "\n")

    def close(self) -> None:
        self._file.close()


_FIGURES = re.compile(r"[-+]?\d[\d,.]*")
_NAMES = re.compile(r"\b[A-Z]+\d*(?:-[0-9a-f]+)?\b")


def refusal_kind(reason: str) -> str:
    """A refusal's reason without its figures and member names, so counts group by kind:
    "initial margin 818,160.00 exceeds C3's credit lines (163,632.00) ..." reads "initial
    margin # exceeds X's credit lines (#) ..." for every trade it refuses."""
    return _FIGURES.sub("#", _NAMES.sub("X", reason))[:80]


def random_terms(rng: random.Random, today: dt.date, market: MarketData) -> Terms:
    """Plausible terms on what is listed ``today``, maturities 1-6 months: a futures month is
    picked among those still trading at maturity (the far month always is); the template is
    drawn by its ``load_weight`` and makes its own terms (``ContractTemplate.load_terms``)."""
    maturity = today + dt.timedelta(days=rng.choice((30, 60, 90, 120, 180)))
    root = rng.choice(FUTURES_ROOTS)
    listed = listed_futures(root, today)
    future = rng.choice([u for u in listed if (u.last_trading_day or maturity) >= maturity])
    underlying = future.id
    month = future.contract_month
    side = rng.choice((Side.BUY, Side.SELL))
    quantity = rng.choice((100, 200, 500, 1000, 2000))
    known = [t for t in templates() if t.load_weight > 0]
    template = rng.choices(known, weights=[t.load_weight for t in known], k=1)[0]

    def spot(name: str) -> float:
        latest = market.latest.get(name)
        return latest.price if latest else CATALOG[name].start_price

    draw = LoadDraw(
        today=today,
        maturity=maturity,
        underlying=underlying,
        month=month or "",
        listed=listed,
        side=side,
        quantity=quantity,
        spot=spot,
    )
    return template.load_terms(rng, draw)


class SimulatedClient:
    def __init__(
        self,
        session: ClientSession,
        stats: LoadStats,
        rng: random.Random,
        *,
        behaviour: Behaviour | None = None,
        events: EventSink | None = None,
    ) -> None:
        self.session = session
        self.stats = stats
        self.rng = rng
        self.behaviour = behaviour or Behaviour()
        self.events: EventSink = events or (lambda event: None)
        self.probes: set[asyncio.Task[None]] = set()

    def _event(self, event: str, rfq: str, **fields: object) -> None:
        self.events({"event": event, "rfq": rfq, "client": self.session.me, **fields})

    async def one_round(self, *, deadline_s: float = 3.0, take: float | None = None) -> None:
        market = self.session.market
        behaviour = self.behaviour
        take = behaviour.take if take is None else take
        try:
            terms = random_terms(self.rng, market.today, market)
            handle = await self.session.send_rfq(terms, deadline_s=deadline_s)
        except RfqError as exc:
            self.stats.failures[f"rfq refused: {type(exc).__name__}"] += 1
            return
        except PublishError as exc:  # the bus is failing over: this round is lost, not the load
            self.stats.failures["rfq not sent"] += 1
            log.warning("load_rfq_not_sent", error=str(exc))
            return
        self.stats.rfqs += 1
        if behaviour.cancel_share and self.rng.random() < behaviour.cancel_share:
            async for _ in handle:  # withdraw it once the first dealer has answered
                break
            await self.session.cancel(handle)
            self.stats.cancelled += 1
            self._event("cancelled", handle.id)
            return
        answers = await handle.collect()
        self.stats.quotes += sum(isinstance(a, Quote) for a in answers)
        self.stats.declines += sum(not isinstance(a, Quote) for a in answers)
        best = handle.best()
        if best is None:
            self.stats.failures["no quote"] += 1
            return
        if behaviour.stale_share and self.rng.random() < behaviour.stale_share:
            probe = asyncio.create_task(self._accept_stale(best))
            self.probes.add(probe)
            probe.add_done_callback(self.probes.discard)
            return
        if self.rng.random() > take:
            self.stats.walked_away += 1
            return
        try:
            signed = await self.session.accept(best)
        except AcceptRefused as exc:
            self.stats.failures[f"accept refused: {exc.reason}"] += 1
            return
        except PublishError as exc:
            self.stats.failures["accept not sent"] += 1
            log.warning("load_accept_not_sent", error=str(exc))
            return
        self.stats.accepts += 1
        accepted_at = time.monotonic()
        self._event("accepted", best.rfq_id, dealer=best.dealer, tx=signed.digest.hex())
        try:
            receipt = await self.session.committed(signed, timeout=30)
        except LedgerUnavailable:
            self.stats.failures["no receipt"] += 1
            self._event("no_receipt", best.rfq_id)
            return
        except asyncio.CancelledError:
            self.stats.unconfirmed_at_stop += 1
            raise
        if receipt.ok:
            latency_ms = (time.monotonic() - accepted_at) * 1000
            self.stats.committed += 1
            self.stats.finality_ms.append(latency_ms)
            self._event(
                "committed",
                best.rfq_id,
                tx=receipt.tx_id,
                height=receipt.height,
                latency_ms=round(latency_ms, 1),
            )
        else:
            self.stats.failures[f"trade refused: {refusal_kind(receipt.reason)}"] += 1
            self._event("refused", best.rfq_id, reason=receipt.reason[:200])

    async def _accept_stale(self, quote: Quote) -> None:
        """Accept ``quote`` after its validity, signing the accept directly (the session would
        refuse it locally): a probe the chain must refuse."""
        await asyncio.sleep(max(quote.valid_until_ms / 1000 - time.time(), 0) + 1.0)
        session = self.session
        accept = Accept(
            rfq_id=quote.rfq_id,
            quote_id=quote.id,
            client=session.me,
            dealer=quote.dealer,
            quote=session.signed_quote(quote),
        )
        signed = session.bus.outbox.sign(accept, ttl_s=session.bus.params.message_ttl_s)
        self.stats.stale_attempts += 1
        self._event("stale_attempt", quote.rfq_id, dealer=quote.dealer, tx=signed.digest.hex())
        await session.ledger.submit_signed(signed)
        try:
            receipt = await session.committed(signed, timeout=30)
        except LedgerUnavailable:
            self._event("no_receipt", quote.rfq_id)
            return
        if receipt.ok:
            self._event("stale_committed", quote.rfq_id, tx=receipt.tx_id, height=receipt.height)
        else:
            self.stats.stale_refused += 1
            self._event("stale_refused", quote.rfq_id, reason=receipt.reason[:200])


async def run_load(
    net: NetDir,
    clients: list[str],
    *,
    rfqs: int | None = None,
    rate: float | None = None,
    duration: float | None = None,
    servers: list[str] | None = None,
    seed: int = 0,
    stats_file: Path | None = None,
    stop: asyncio.Event | None = None,
    behaviour: Behaviour | None = None,
    events_file: Path | None = None,
) -> LoadStats:
    """Run ``clients`` until ``rfqs`` RFQs in total were sent, or ``duration`` seconds passed,
    or ``stop`` is set. ``rate`` caps RFQs per second over all clients."""
    genesis = net.genesis()
    stats = LoadStats()
    stop = stop or asyncio.Event()
    sims = []
    market = MarketData()
    events = EventLog(events_file) if events_file is not None else None
    for i, client in enumerate(clients):
        bus = await open_bus(net, client, servers=servers)
        session = ClientSession(bus, genesis, market=market)
        await session.start()
        if i == 0:
            await market.attach(bus)
        rng = random.Random(seed * 1000 + i)
        sims.append(SimulatedClient(session, stats, rng, behaviour=behaviour, events=events))
    print(f"simulating {len(clients)} clients: {', '.join(clients)}", flush=True)
    interval = len(clients) / rate if rate else 0.0
    end = time.monotonic() + duration if duration else None
    budget = [rfqs if rfqs is not None else 10**12]

    async def writer() -> None:
        while not stop.is_set():
            if stats_file is not None:
                await asyncio.to_thread(write_stats, stats_file, stats)
            await asyncio.sleep(1.0)

    async def worker(sim: SimulatedClient) -> None:
        while not stop.is_set() and budget[0] > 0 and (end is None or time.monotonic() < end):
            budget[0] -= 1
            started = time.monotonic()
            try:
                await sim.one_round()
            except Exception as exc:  # a bug in one round must not stop the load
                stats.failures[f"error: {type(exc).__name__}"] += 1
                log.exception("load_round_failed")
            if interval:
                await asyncio.sleep(max(interval - (time.monotonic() - started), 0))

    writer_task = asyncio.create_task(writer())
    workers = [asyncio.create_task(worker(s)) for s in sims]
    finished = asyncio.gather(*workers, return_exceptions=True)
    stopped = asyncio.create_task(stop.wait())
    either: list[asyncio.Future[Any]] = [stopped, finished]
    await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
    # Stopped from outside: abandon rounds in flight (an accepted trade still commits on chain;
    # the summary counts it as unconfirmed) instead of waiting up to a receipt timeout.
    for task in workers:
        task.cancel()
    await finished
    probes = [probe for sim in sims for probe in sim.probes]
    for probe in probes:
        probe.cancel()
    await asyncio.gather(*probes, return_exceptions=True)
    stop.set()
    stopped.cancel()
    await writer_task
    if stats_file is not None:
        await asyncio.to_thread(write_stats, stats_file, stats)
    for sim in sims:
        await sim.session.bus.close()
    if events is not None:
        with contextlib.suppress(OSError):
            events.close()
    return stats


def write_stats(path: Path, stats: LoadStats) -> None:
    """Atomically replace ``path`` with the current summary (``botc up`` reads it)."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(stats.summary()))
    tmp.replace(path)
