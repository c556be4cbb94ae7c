"""A peer's view of the market: latest signed prices and daily closes from the oracle."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable, Iterator, Mapping

import structlog
from nats.aio.msg import Msg

from bus import subjects
from bus.client import Bus, BusStatus, RequestError
from bus.envelope import Channel, Received
from peers.service import cancel_and_wait
from rfq.clock import utc_today
from rfq.instruments import CATALOG, Leg, Underlying, listed_underlyings
from rfq.messages import (
    ORACLE_REPLY_ROLES,
    PRICE_ROLES,
    History,
    HistoryRequest,
    Price,
)
from rfq.pricing.fair_value import compute_basket_history
from rfq.pricing.garch import VolModel, vol_model

log = structlog.get_logger(__name__)

PRICE_CHANNEL: Channel[Price] = Channel.of("prices", Price, PRICE_ROLES)
HISTORY_REPLY: Channel[History] = Channel.of("oracle_reply", History, ORACLE_REPLY_ROLES)


class Closes(dict[str, dict[dt.date, float]]):
    """Daily closes by underlying, memoising basket histories until one of their legs closes."""

    def __init__(self) -> None:
        super().__init__()
        self._baskets: dict[tuple[Leg, ...], dict[dt.date, float]] = {}

    def basket_history(self, legs: tuple[Leg, ...]) -> dict[dt.date, float]:
        cached = self._baskets.get(legs)
        if cached is None:
            cached = self._baskets[legs] = compute_basket_history(legs, self)
        return cached

    def add(self, underlying: str, date: dt.date, price: float, *, replace: bool = True) -> None:
        series = self.setdefault(underlying, {})
        if replace or date not in series:
            series[date] = price
        for legs in [k for k in self._baskets if any(leg.underlying == underlying for leg in k)]:
            del self._baskets[legs]


class _LazyVolModels(Mapping[str, VolModel]):
    """GARCH models fitted on first use (a fit costs tens of milliseconds): an RFQ pays only
    for its own underlyings. Iteration lists the models fitted so far."""

    def __init__(self, market: MarketData) -> None:
        self.market = market
        self.fitted: dict[str, VolModel] = {}

    def __getitem__(self, underlying: str) -> VolModel:
        model = self.fitted.get(underlying)
        if model is None:
            closes = self.market.closes.get(underlying)
            if not closes or len(closes) < 3:
                raise KeyError(underlying)
            fallback = CATALOG[underlying].annual_vol if underlying in CATALOG else 0.25
            model = vol_model([closes[d] for d in sorted(closes)], fallback_vol=fallback)
            self.fitted[underlying] = model
        return model

    def __contains__(self, underlying: object) -> bool:
        return isinstance(underlying, str) and len(self.market.closes.get(underlying, ())) >= 3

    def __iter__(self) -> Iterator[str]:
        return iter(list(self.fitted))

    def __len__(self) -> int:
        return len(self.fitted)


class MarketData:
    """Latest price per underlying, daily closes, and GARCH models refitted on a new close."""

    def __init__(self, *, clock_today: Callable[[], dt.date] | None = None) -> None:
        self.latest: dict[str, Price] = {}
        self.closes = Closes()
        self._models = _LazyVolModels(self)
        self._clock_today = clock_today or utc_today
        self.listeners: list[Callable[[Price], None]] = []
        self._history_task: asyncio.Task[None] | None = None

    @property
    def today(self) -> dt.date:
        """The market's business date: the newest price's date, else the calendar date."""
        if self.latest:
            return max(p.date for p in self.latest.values())
        return self._clock_today()

    def prices(self) -> dict[str, float]:
        return {u: p.price for u, p in self.latest.items()}

    def listed(self) -> dict[str, Underlying]:
        """What trades on the market's business date (``listed_underlyings(today)``): the
        market watch's rows. An expired month's last price stays in ``latest`` and its closes
        in ``closes`` (contracts on it settle on them), but it is not listed."""
        return listed_underlyings(self.today)

    def previous_close(self, underlying: str) -> float | None:
        """The last close before the latest price's date (for the day's change)."""
        latest = self.latest.get(underlying)
        closes = self.closes.get(underlying)
        if not closes:
            return None
        before = [d for d in closes if latest is None or d < latest.date]
        return closes[max(before)] if before else None

    def vol_models(self) -> Mapping[str, VolModel]:
        return self._models

    def on_price(self, price: Price) -> None:
        current = self.latest.get(price.underlying)
        if current is None or (price.date, price.seq) >= (current.date, current.seq):
            self.latest[price.underlying] = price
        if price.close:
            self.closes.add(price.underlying, price.date, price.price)
            self._models.fitted.pop(price.underlying, None)
        for listener in list(self.listeners):
            listener(price)

    def load_history(self, history: History) -> None:
        for underlying, series in history.series.items():
            for date, value in series:
                self.closes.add(underlying, date, value, replace=False)
            self._models.fitted.pop(underlying, None)

    async def attach(
        self, bus: Bus, *, oracle: str = "ORACLE", timeout: float = 3.0, retry_s: float = 1.0
    ) -> None:
        """Follow the oracle's prices and load its history.

        An oracle that is not up yet is not fatal: the history is fetched in the background,
        retrying every ``retry_s`` seconds, and pricing uses catalog volatilities meanwhile.
        """

        async def on_price(received: Received[Price], msg: Msg) -> None:
            self.on_price(received.payload)

        await bus.subscribe(subjects.PRICE_ALL, PRICE_CHANNEL, on_price)
        if not await self._fetch_history(bus, oracle, timeout):
            log.warning("price_history_unavailable", oracle=oracle, retry_s=retry_s)
            self._history_task = asyncio.create_task(
                self._retry_history(bus, oracle, timeout, retry_s)
            )

    async def close(self) -> None:
        """Stop retrying the oracle's history (prices keep arriving while the bus is open)."""
        if self._history_task is not None:
            await cancel_and_wait(self._history_task)
            self._history_task = None

    async def _fetch_history(self, bus: Bus, oracle: str, timeout: float) -> bool:
        try:
            reply = await bus.request(
                subjects.query(oracle), HistoryRequest(), HISTORY_REPLY, timeout=timeout
            )
        except RequestError:
            return False
        self.load_history(reply.payload)
        return True

    async def _retry_history(self, bus: Bus, oracle: str, timeout: float, retry_s: float) -> None:
        while bus.status != BusStatus.CLOSED:
            await asyncio.sleep(retry_s)
            if await self._fetch_history(bus, oracle, timeout):
                log.info("price_history_loaded", oracle=oracle)
                return
