"""The price oracle: signed prices of the underlyings, simulated or replayed.

Simulation: a seeded random walk in log price with each underlying's annual volatility from the
catalog, over what is listed each business day (``rfq.instruments.listed_underlyings``): the
next three delivery months of each future, the spot and the index. A month is published up to
its last trading day; the day after, the next delivery month is listed, its first price
continuing its root's curve. Months of one future share a common shock (correlation ~0.95),
rebar and hot-rolled coil share a steel factor (~0.8), so spreads and calendar spreads move
realistically. Time is
compressed: one business day passes every ``day_seconds`` of wall time, with ``ticks_per_day``
intraday prices; each day's last price is the close (the fixing contracts settle on). A year
of closes before the start date is generated too, so dealers can fit GARCH from the first RFQ.

Replay: a CSV ``date,underlying,price``; each date's prices are published as that day's closes,
except those of a futures month past its last trading day (skipped with a warning).

Every price is a signed ``Price`` on ``otc.px.<underlying>``; the daily history is served on
``otc.query.ORACLE`` to whoever asks (dealers, terminals).
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import datetime as dt
import math
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Self

import numpy as np
import structlog
from nats.aio.msg import Msg

from bus import subjects
from bus.client import Bus
from bus.envelope import Channel, Received
from peers.errors import CliError
from peers.ledger_client import LedgerClient
from peers.service import Service, ServiceStatus
from rfq.instruments import CATALOG, Underlying, is_expired, listed_underlyings
from rfq.ledger.tx import PriceFixing
from rfq.messages import (
    ORACLE_QUERY_ROLES,
    History,
    HistoryRequest,
    Price,
)

log = structlog.get_logger(__name__)

HISTORY_CHANNEL: Channel[HistoryRequest] = Channel.of(
    "oracle_query", HistoryRequest, ORACLE_QUERY_ROLES
)
TRADING_DAYS = 250


def next_business_day(day: dt.date) -> dt.date:
    day += dt.timedelta(days=1)
    while day.weekday() >= 5:
        day += dt.timedelta(days=1)
    return day


def previous_business_days(end: dt.date, count: int) -> list[dt.date]:
    """``count`` business days strictly before ``end``, oldest first."""
    days: list[dt.date] = []
    day = end
    while len(days) < count:
        day -= dt.timedelta(days=1)
        if day.weekday() < 5:
            days.append(day)
    return days[::-1]


CARRY_PER_MONTH = 0.01
"""Each listed month of a future is 1 % dearer than the one before it (a gentle carry curve);
a newly listed month starts 1 % above the month listed before it."""


def curve_start(underlying: Underlying, position: int) -> float:
    """Starting price of the ``position``-th listed month (0 = front) of a future."""
    return underlying.start_price * (1 + CARRY_PER_MONTH * position)


@dataclass
class Simulator:
    """Correlated log random walks over what is listed each day; deterministic for a seed.

    The underlyings are ``listed_underlyings(date)``: when a business day passes a futures
    month's last trading day, that month stops (its last close was its final fixing) and the
    next delivery month is listed, starting ``CARRY_PER_MONTH`` above the month listed before
    it, so the curve of its root continues.
    """

    start: dt.date
    seed: int = 0
    ticks_per_day: int = 20
    history_days: int = 260

    def __post_init__(self) -> None:
        self.rng = np.random.default_rng(self.seed)
        self.date = self.start
        live = list(listed_underlyings(self.start).values())
        self.ids = [u.id for u in live]
        self.vols = np.array([u.annual_vol for u in live])
        self._load = self._factor_loadings(live)
        self.history: dict[str, list[tuple[dt.date, float]]] = {i: [] for i in self.ids}
        position: Counter[str] = Counter()  # a root's months are listed front first
        starts = []
        for u in live:
            starts.append(curve_start(u, position[u.root]))
            position[u.root] += 1
        self.log_prices = np.log(starts)
        if self.history_days:
            self._backfill()
        self.tick = 0
        self.seq = 0

    @staticmethod
    def _factor_loadings(live: Sequence[Underlying]) -> np.ndarray:
        """Loadings on [steel, root_1..root_k, idiosyncratic]: month correlation ~0.95.

        Row ``i`` belongs to the ``i``-th listed underlying; a roll keeps each root's rows
        where they are, so the loadings never change."""
        roots = sorted({u.root for u in live})
        n, k = len(live), len(roots)
        load = np.zeros((n, 1 + k + n))
        for i, u in enumerate(live):
            r = roots.index(u.root)
            if u.commodity_type == "steel":
                load[i, 0] = math.sqrt(0.8)
                load[i, 1 + r] = math.sqrt(0.95 - 0.8)
            else:
                load[i, 1 + r] = math.sqrt(0.95)
            load[i, 1 + k + i] = math.sqrt(0.05)
        return load

    def _shock(self, dt_years: float) -> np.ndarray:
        z = self._load @ self.rng.standard_normal(self._load.shape[1])
        return self.vols * math.sqrt(dt_years) * z - 0.5 * self.vols**2 * dt_years

    def _backfill(self) -> None:
        """A year of closes ending the business day before ``start``, finishing at the
        starting prices of the months listed on ``start`` (walk backwards, then replay
        forwards)."""
        days = previous_business_days(self.start, self.history_days)
        steps = np.array([self._shock(1 / TRADING_DAYS) for _ in days])
        # closes[j] = start - sum of the shocks after day j
        tail = np.cumsum(steps[::-1], axis=0)[::-1]
        closes = self.log_prices - tail + steps
        for j, day in enumerate(days):
            for i, uid in enumerate(self.ids):
                self.history[uid].append((day, self._on_tick(uid, math.exp(closes[j, i]))))

    @staticmethod
    def _on_tick(underlying: str, value: float) -> float:
        tick = CATALOG[underlying].tick if underlying in CATALOG else 0.01
        return round(round(value / tick) * tick, 4)

    def _roll(self) -> list[str]:
        """List what trades on ``self.date``: expired months leave the front of their root's
        rows, new ones join at the back continuing the curve. Returns the new ids."""
        listed = list(listed_underlyings(self.date))
        if listed == self.ids:
            return []
        old = dict(zip(self.ids, self.log_prices.tolist(), strict=True))
        prices: list[float] = []
        added: list[str] = []
        for i, uid in enumerate(listed):
            if uid in old:
                prices.append(old[uid])
                continue
            u = CATALOG[uid]
            if i > 0 and CATALOG[listed[i - 1]].root == u.root:
                # The month listed just before it (the row before) plus the carry.
                prices.append(prices[i - 1] + math.log(1 + CARRY_PER_MONTH))
            else:
                prices.append(math.log(curve_start(u, 0)))
            self.history.setdefault(uid, [])
            added.append(uid)
        self.ids = listed
        self.log_prices = np.array(prices)
        return added

    def ticks(self) -> Iterator[Price]:
        """The next intraday step; the last tick of a day is its close, then the date rolls
        (and with it, on a month's last trading day, the listed months)."""
        self.log_prices = self.log_prices + self._shock(1 / (TRADING_DAYS * self.ticks_per_day))
        self.tick += 1
        close = self.tick >= self.ticks_per_day
        for i, uid in enumerate(self.ids):
            self.seq += 1
            price = self._on_tick(uid, math.exp(self.log_prices[i]))
            if close:
                self.history[uid].append((self.date, price))
            yield Price(underlying=uid, price=price, date=self.date, seq=self.seq, close=close)
        if close:
            self.tick = 0
            self.date = next_business_day(self.date)
            added = self._roll()
            if added:
                log.info("oracle_listed", date=str(self.date), listed=added)


def read_replay(path: Path) -> list[tuple[dt.date, list[tuple[str, float]]]]:
    """Prices by date from ``date,underlying,price``; errors name the row (exit 2)."""
    try:
        handle = path.open(newline="", encoding="utf-8")
    except OSError as exc:
        raise CliError(f"{path}: cannot read ({exc.strerror})") from None
    by_date: dict[dt.date, list[tuple[str, float]]] = {}
    with handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if header is None or [h.strip() for h in header] != ["date", "underlying", "price"]:
            raise CliError(f"{path}: row 1: the header must be date,underlying,price")
        for n, row in enumerate(reader, start=2):
            if not row or all(not c.strip() for c in row):
                continue
            if len(row) != 3:
                raise CliError(f"{path}: row {n}: expected 3 fields, got {len(row)}")
            raw_date, underlying, raw_price = (c.strip() for c in row)
            try:
                date = dt.date.fromisoformat(raw_date)
            except ValueError:
                raise CliError(f"{path}: row {n}: date {raw_date!r} is not YYYY-MM-DD") from None
            try:
                subjects.token(underlying)
            except subjects.SubjectError:
                raise CliError(f"{path}: row {n}: underlying {underlying!r} is not an id") from None
            try:
                price = float(raw_price)
            except ValueError:
                raise CliError(f"{path}: row {n}: price {raw_price!r} is not a number") from None
            if not math.isfinite(price):
                raise CliError(f"{path}: row {n}: price must be finite")
            by_date.setdefault(date, []).append((underlying, price))
    if not by_date:
        raise CliError(f"{path}: no prices")
    return sorted(by_date.items())


class OracleService(Service):
    """Publishes signed prices, serves the daily history and, when ``ledger`` is given, puts
    each day's closes on chain as one ``PriceFixing`` transaction (contracts mark, margin and
    settle on those)."""

    def __init__(self, bus: Bus, *, ledger: LedgerClient | None = None) -> None:
        self.bus = bus
        self.ledger = ledger
        self.history: dict[str, list[tuple[dt.date, float]]] = {}
        self.published = 0
        self.fixings_submitted: list[str] = []
        self._closes: dict[dt.date, list[tuple[str, float]]] = {}

    async def start(self) -> Self:
        if self.status == ServiceStatus.NEW:
            await self.bus.subscribe(
                subjects.query(self.bus.member_id), HISTORY_CHANNEL, self._on_history_request
            )
            self.status = ServiceStatus.RUNNING
        return self

    async def _on_history_request(self, received: Received[HistoryRequest], msg: Msg) -> None:
        wanted = received.payload.underlyings or tuple(self.history)
        series = {u: self.history[u] for u in wanted if u in self.history}
        await self.bus.reply(msg, History(series=series))

    async def publish(self, price: Price) -> None:
        await self.bus.publish(subjects.price(price.underlying), price)
        self.published += 1
        if price.close:
            self.history.setdefault(price.underlying, []).append((price.date, price.price))
            self._closes.setdefault(price.date, []).append((price.underlying, price.price))

    async def fix(self, date: dt.date) -> str | None:
        """Submit the closes of ``date`` as one on-chain fixing (returns the transaction id)."""
        prices = self._closes.pop(date, [])
        if self.ledger is None or not prices:
            return None
        tx_id = await self.ledger.submit(PriceFixing(date=date, prices=tuple(sorted(prices))))
        self.fixings_submitted.append(tx_id)
        log.info("fixing_submitted", date=str(date), prices=len(prices), tx=tx_id[:12])
        return tx_id

    async def run_simulation(
        self, sim: Simulator, *, day_seconds: float, stop: asyncio.Event
    ) -> None:
        self.history = {k: list(v) for k, v in sim.history.items()}
        interval = day_seconds / sim.ticks_per_day
        log.info("oracle_simulating", start=str(sim.start), seed=sim.seed, interval_s=interval)
        while not stop.is_set():
            closing = sim.date
            ticks = list(sim.ticks())
            for price in ticks:
                await self.publish(price)
            if ticks and ticks[0].close:
                await self.fix(closing)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval)

    async def run_replay(
        self,
        days: list[tuple[dt.date, list[tuple[str, float]]]],
        *,
        interval: float,
        stop: asyncio.Event,
    ) -> None:
        seq = 0
        for date, prices in days:
            stale = sorted(u for u, _ in prices if is_expired(u, date))
            if stale:
                log.warning("oracle_replay_expired_skipped", date=str(date), underlyings=stale)
            for underlying, value in prices:
                if is_expired(underlying, date):
                    continue
                seq += 1
                await self.publish(
                    Price(underlying=underlying, price=value, date=date, seq=seq, close=True)
                )
            await self.fix(date)
            log.info("oracle_replayed_day", date=str(date), prices=len(prices))
            try:
                await asyncio.wait_for(stop.wait(), interval)
                return
            except TimeoutError:
                pass
