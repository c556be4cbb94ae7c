"""The headless dealer bot: prices RFQs asynchronously and answers with firm quotes or declines.

Strategy protocol (pass your own with ``botc dealer --strategy module:Class``)::

    class MyStrategy:
        def price(self, rfq: Rfq, context: DealerContext) -> Quote | Decline:
            fair = context.market.latest[rfq.terms.legs[0].underlying].price
            return context.quote(rfq, price=fair + 5, initial_margin_rate=0.1)

``context`` holds what the dealer knows: the market (latest prices, daily closes, GARCH vol
models), the client's current rating score (0-100), this dealer's exposure to the client and
its credit limit, its inventory per underlying, the time and the market date. Build answers
with ``context.quote(...)`` and ``context.decline(...)``; call ``context.reserve(amount)`` to
hold credit for a firm quote until it expires or trades (the default strategy reserves the
trade's uncollateralised potential exposure).

The default strategy is ``rfq.pricing.strategy.decide``: fair value from the oracle's prices
(forwards, the mean of forwards for average-price swaps, Black-76 with a GARCH(1,1) volatility
for options), a half-spread, inventory skew, a rating-adjusted CVA-style credit charge,
initial margin and a credit line by grade, per-client credit limits and per-trade notional
and tenor limits. ``botc dealer`` gives it each dealer's own parameters
(``rfq.pricing.strategy.dealer_profile``), so dealers compete on price.

Answers go only within the RFQ's deadline: an RFQ that arrives late, or whose pricing finishes
late, gets no answer. A signed RFQ that is malformed or invalid gets a Decline with the reason.

Fair admission: verified RFQs wait in one small queue per client and are priced round-robin,
one client at a time, so a client flooding RFQs (within the bus's per-sender rate, which the
RFQ channel tightens to ``RFQ_RATE_PER_S``) takes its turn like any other and cannot starve
the rest; what does not fit in its queue is dropped and counted (``stats["rate_limited"]``,
logged as ``message_dropped`` with reason ``rate_limited``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import heapq
import importlib
import time
from collections import Counter, deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol, Self, runtime_checkable

import msgspec
import structlog
from nats.aio.msg import Msg

from bus import subjects
from bus.client import Bus, BusStatus
from bus.envelope import Channel, Dropped, DropReason, Received
from peers.errors import CliError, PeerError
from peers.ledger_client import LedgerClient, LedgerUnavailable, QueryDenied, read_pages
from peers.market import MarketData
from peers.service import Service, ServiceStatus, cancel_and_wait
from rfq.contracts.model import contract_of
from rfq.contracts.payoff import initial_margin
from rfq.errors import DECODE_ERRORS, ValidationError
from rfq.identity import Genesis, Role
from rfq.instruments import Side, Terms
from rfq.messages import (
    RFQ_ROLES,
    Cancel,
    Decline,
    Quote,
    Rfq,
    RfqChannelMessage,
    validate_rfq,
)
from rfq.money import from_micros
from rfq.pricing.strategy import (
    DEFAULT_CREDIT_LIMIT,
    DeclineCode,
    DeclineDecision,
    PricingContext,
    QuoteParams,
    decide,
)
from rfq.queries import Query, RatingsQuery, RatingsReply, Reply, TradesQuery, TradesReply
from rfq.rating import score_of

log = structlog.get_logger(__name__)

RFQ_RATE_PER_S = 20.0
"""Per client: RFQs and cancels a dealer verifies (and may price) a second, by default; a
person or a client's algorithm asks far fewer, a flood beyond it is dropped before its
signature is checked. Pricing costs milliseconds, so this bounds what one client can make a
dealer spend (``DealerBot(rfq_rate_per_s=...)`` changes it, e.g. for a latency benchmark)."""
RFQ_BURST = 40
RFQ_QUEUE_PER_CLIENT = 16
"""Verified RFQs of one client waiting to be priced; a flood's excess is dropped."""
SEEN_RFQS_KEPT = 10_000
"""RFQs (and cancels) remembered, newest first out of mind last: bounded under a flood."""

RFQ_CHANNEL: Channel[RfqChannelMessage] = Channel.of(
    "rfqs", RfqChannelMessage, RFQ_ROLES, rate_per_s=RFQ_RATE_PER_S, burst=RFQ_BURST
)


@dataclass
class DealerContext:
    """What a strategy may use to price one RFQ."""

    dealer: str
    now_ms: int
    today: dt.date
    market: MarketData
    client_rating: float
    exposure: float
    credit_limit: float
    inventory: Mapping[str, float]
    reserved: float = 0.0

    def quote(
        self,
        rfq: Rfq,
        *,
        price: float,
        initial_margin_rate: float = 0.0,
        credit_line: float = 0.0,
        ttl_s: float = 30.0,
    ) -> Quote:
        return Quote(
            id=f"{rfq.id}-{self.dealer}",
            rfq_id=rfq.id,
            client=rfq.client,
            dealer=self.dealer,
            terms=rfq.terms,
            price=price,
            valid_until_ms=self.now_ms + int(ttl_s * 1000),
            initial_margin_rate=initial_margin_rate,
            credit_line=credit_line,
        )

    def decline(self, rfq: Rfq, code: str, text: str) -> Decline:
        return Decline(rfq_id=rfq.id, client=rfq.client, dealer=self.dealer, code=code, text=text)

    def reserve(self, amount: float) -> None:
        """Hold ``amount`` of this client's credit limit for the quote being made."""
        self.reserved = max(amount, 0.0)


@runtime_checkable
class Strategy(Protocol):
    def price(self, rfq: Rfq, context: DealerContext) -> Quote | Decline: ...


class DefaultStrategy:
    """``rfq.pricing.strategy.decide`` over the dealer's context."""

    def __init__(self, params: QuoteParams | None = None) -> None:
        self.params = params or QuoteParams()

    def price(self, rfq: Rfq, context: DealerContext) -> Quote | Decline:
        decision = decide(
            rfq.terms,
            PricingContext(
                today=context.today,
                prices=context.market.prices(),
                client_rating=context.client_rating,
                credit_limit=context.credit_limit,
                exposure=context.exposure,
                fixings=context.market.closes,
                vol_models=context.market.vol_models(),
                inventory=context.inventory,
                collateral=rfq.collateral,
                guarantee=rfq.guarantee,
                params=self.params,
            ),
        )
        if isinstance(decision, DeclineDecision):
            return context.decline(rfq, decision.code.value, decision.text)
        context.reserve(decision.exposure)
        return context.quote(
            rfq,
            price=decision.price,
            initial_margin_rate=decision.initial_margin_rate,
            credit_line=decision.credit_line,
            ttl_s=decision.ttl_s,
        )


def load_strategy(spec: str) -> Strategy:
    """``module:Class`` -> an instance; errors are one line (exit 2)."""
    module_name, _, class_name = spec.partition(":")
    if not module_name or not class_name:
        raise CliError(f"--strategy {spec!r}: expected module:Class")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise CliError(f"--strategy {spec!r}: cannot import {module_name} ({exc})") from None
    cls = getattr(module, class_name, None)
    if cls is None:
        raise CliError(f"--strategy {spec!r}: {module_name} has no {class_name}")
    instance = cls()
    if not isinstance(instance, Strategy):
        raise CliError(f"--strategy {spec!r}: {class_name} has no price(rfq, context) method")
    return instance


@dataclass
class _Reservation:
    client: str
    amount: float
    until_ms: int


@dataclass
class DealerBook:
    """Exposure per client (trades plus credit held for live quotes) and inventory.

    Reservations are summed per client and expired from a heap, so pricing an RFQ costs the
    same however many quotes are outstanding.
    """

    trades: dict[str, float] = field(default_factory=dict)
    inventory: dict[str, float] = field(default_factory=dict)
    reservations: dict[str, _Reservation] = field(default_factory=dict)
    held: dict[str, float] = field(default_factory=dict)
    _expiry: list[tuple[int, str]] = field(default_factory=list)

    def reserve(self, quote_id: str, client: str, amount: float, until_ms: int) -> None:
        self.release(quote_id)
        self.reservations[quote_id] = _Reservation(client, amount, until_ms)
        self.held[client] = self.held.get(client, 0.0) + amount
        heapq.heappush(self._expiry, (until_ms, quote_id))

    def release(self, quote_id: str) -> _Reservation | None:
        held = self.reservations.pop(quote_id, None)
        if held is not None:
            self.held[held.client] = max(self.held.get(held.client, 0.0) - held.amount, 0.0)
        return held

    def exposure(self, client: str, now_ms: int) -> float:
        self.expire(now_ms)
        return self.trades.get(client, 0.0) + self.held.get(client, 0.0)

    def expire(self, now_ms: int) -> None:
        while self._expiry and self._expiry[0][0] <= now_ms:
            until_ms, quote_id = heapq.heappop(self._expiry)
            current = self.reservations.get(quote_id)
            if current is not None and current.until_ms == until_ms:
                self.release(quote_id)

    def record_trade(self, quote_id: str, client: str, terms: Terms, dealer_sign: float) -> None:
        """A quote became a trade: its reservation becomes exposure; inventory moves."""
        held = self.release(quote_id)
        self.trades[client] = self.trades.get(client, 0.0) + (held.amount if held else 0.0)
        for leg in terms.legs:
            units = terms.quantity * terms.multiplier * leg.weight * dealer_sign
            self.inventory[leg.underlying] = self.inventory.get(leg.underlying, 0.0) + units


class DealerBot(Service):
    """One dealer's RFQ responder."""

    def __init__(
        self,
        bus: Bus,
        genesis: Genesis,
        *,
        strategy: Strategy | None = None,
        market: MarketData | None = None,
        credit_limit: float = DEFAULT_CREDIT_LIMIT,
        credit_limits: Mapping[str, float] | None = None,
        attach_market: bool = True,
        rfq_rate_per_s: float = RFQ_RATE_PER_S,
        rfq_burst: int = RFQ_BURST,
    ) -> None:
        if bus.identity.role != Role.DEALER:
            raise PeerError(f"{bus.member_id} is a {bus.identity.role}, not a dealer")
        self.bus = bus
        self.genesis = genesis
        self.me = bus.member_id
        self.strategy = strategy or DefaultStrategy()
        self.market = market or MarketData()
        self.attach_market = attach_market
        self.credit_limit = credit_limit
        self.credit_limits = dict(credit_limits or {})
        self.book = DealerBook()
        self.ratings: dict[str, float] = {
            m.id: score_of(m.external_rating)
            for m in genesis.members
            if m.role == Role.CLIENT and m.external_rating
        }
        self.standing: dict[str, str] = {}
        """Members the chain says may not trade (defaulted, suspended)."""
        self.headroom: dict[str, float] = {}
        """Per client: the initial margin beyond this dealer's line it can still carry."""
        self.cancelled: set[str] = set()
        self._cancel_order: deque[str] = deque()  # bounds ``cancelled`` to SEEN_RFQS_KEPT
        self.booked: set[str] = set()
        self.synced_height = 0
        """The chain height this dealer's book has folded every trade up to (a sync reads
        only the trades committed after it)."""
        self.ledger = LedgerClient(bus, genesis)
        self._follower: asyncio.Task[None] | None = None
        self.stats: Counter[str] = Counter()
        self.seen_rfqs: deque[Rfq] = deque(maxlen=SEEN_RFQS_KEPT)
        self.queue_per_client = RFQ_QUEUE_PER_CLIENT
        self.rfq_channel = dataclasses.replace(
            RFQ_CHANNEL, rate_per_s=rfq_rate_per_s, burst=rfq_burst
        )
        self._queues: dict[str, deque[Rfq]] = {}
        self._turns: deque[str] = deque()  # clients with RFQs waiting, in round-robin order
        self._work = asyncio.Event()
        self._pricer: asyncio.Task[None] | None = None
        self._flooding: set[str] = set()

    async def start(self, *, follow_chain: bool = False, every_s: float = 2.0) -> Self:
        """Subscribe to RFQs; with ``follow_chain`` also track this dealer's trades and the
        clients' ratings from the authorities (exposure, inventory, rating-adjusted prices)."""
        if self.status != ServiceStatus.NEW:
            return self
        self.status = ServiceStatus.RUNNING
        if self.attach_market:
            await self.market.attach(self.bus)
        if follow_chain:
            self._follower = asyncio.create_task(self._follow_chain(every_s))
        self._pricer = asyncio.create_task(self._price_in_turn(), name=f"{self.me}-pricer")
        for asset in subjects.RFQ_ASSET_CLASSES:
            await self.bus.subscribe(
                subjects.rfq_public_all(asset),
                self.rfq_channel,
                self._on_rfq,
                on_drop=self._on_drop,
            )
        await self.bus.subscribe(
            subjects.rfq_direct(self.me), self.rfq_channel, self._on_rfq, on_drop=self._on_drop
        )
        await self.bus.flush()
        log.info("dealer_ready", dealer=self.me, strategy=type(self.strategy).__name__)
        return self

    async def _shutdown(self) -> None:
        """Stop following the chain (the bus, and its subscriptions, belong to the caller)."""
        if self._follower is not None:
            await cancel_and_wait(self._follower)
        if self._pricer is not None:
            await cancel_and_wait(self._pricer)
        await self.ledger.close()

    async def sync_from_chain(self) -> int:
        """Fold the trades of this dealer committed since the last sync into its book (a
        delta: not every trade again) and refresh client ratings."""
        heights: list[int] = []

        async def ask(page: Query) -> Reply:
            reply = await self.ledger.query(page)
            heights.append(getattr(reply, "height", 0))
            return reply

        trades = await read_pages(
            ask,
            TradesQuery(party=self.me, since_height=self.synced_height),
            TradesReply,
            max_rows=10**7,
        )
        added = 0
        if isinstance(trades, TradesReply):
            # Pages may come from authorities at different heights: everything up to the
            # lowest was read, so the next delta starts there (``booked`` drops repeats).
            self.synced_height = max(self.synced_height, min(heights))
            for trade in trades.trades:
                if trade.rfq_id in self.booked or trade.dealer != self.me:
                    continue
                self.booked.add(trade.rfq_id)
                terms = next((r.terms for r in self.seen_rfqs if r.id == trade.rfq_id), None)
                if terms is not None:
                    dealer_sign = -1.0 if terms.client_side == Side.BUY else 1.0
                    self.book.record_trade(
                        f"{trade.rfq_id}-{self.me}", trade.client, terms, dealer_sign
                    )
                added += 1
        ratings = await self.ledger.query(RatingsQuery())
        if isinstance(ratings, RatingsReply):
            self.ratings.update(ratings.ratings)
            self.standing = dict(ratings.standing)
            self.headroom.update({c: from_micros(m) for c, m in ratings.headroom.items()})
        return added

    async def _follow_chain(self, every_s: float) -> None:
        while self.bus.status != BusStatus.CLOSED and self.status == ServiceStatus.RUNNING:
            try:
                await self.sync_from_chain()
            except (LedgerUnavailable, QueryDenied) as exc:
                log.debug("chain_unavailable", error=str(exc))
            await asyncio.sleep(every_s)

    def _now_ms(self) -> int:
        return int(time.time() * 1000)

    async def _on_rfq(self, received: Received[RfqChannelMessage], msg: Msg) -> None:
        payload = received.payload
        if payload.client != received.sender:
            self.stats["impersonation"] += 1
            log.warning("rfq_impersonation", sender=received.sender, claims=payload.client)
            return
        if isinstance(payload, Cancel):
            if payload.rfq_id not in self.cancelled:
                self.cancelled.add(payload.rfq_id)
                self._cancel_order.append(payload.rfq_id)
                if len(self._cancel_order) > SEEN_RFQS_KEPT:
                    self.cancelled.discard(self._cancel_order.popleft())
            self.book.release(f"{payload.rfq_id}-{self.me}")
            self.stats["cancelled"] += 1
            return
        if payload.is_direct and self.me not in payload.dealers:
            return
        self._enqueue(payload)

    def _enqueue(self, rfq: Rfq) -> None:
        """Queue a verified RFQ for its client's turn (dropped, counted, when its queue is
        full: the client is sending faster than it is served)."""
        queue = self._queues.setdefault(rfq.client, deque())
        if len(queue) >= self.queue_per_client:
            self.stats["rate_limited"] += 1
            count = self.stats["rate_limited"]
            if rfq.client not in self._flooding:
                self._flooding.add(rfq.client)  # clients: genesis members, a bounded set
                report = log.warning
            elif count & (count - 1) == 0:
                report = log.info
            else:
                return
            report(
                "message_dropped",
                reason=DropReason.RATE_LIMITED.value,
                detail="client's RFQ queue is full",
                sender=rfq.client,
                channel=RFQ_CHANNEL.name,
                peer=self.me,
                count=self.stats["rate_limited"],
            )
            return
        if not queue:
            self._turns.append(rfq.client)
        queue.append(rfq)
        self._work.set()

    @property
    def queued(self) -> int:
        """RFQs verified and waiting to be priced."""
        return sum(len(q) for q in self._queues.values())

    async def _price_in_turn(self) -> None:
        """Price queued RFQs one client at a time, round-robin."""
        while True:
            if not self._turns:
                self._work.clear()
                await self._work.wait()
                continue
            client = self._turns.popleft()
            queue = self._queues[client]
            rfq = queue.popleft()
            if queue:
                self._turns.append(client)
            else:
                del self._queues[client]
            try:
                await self.handle_rfq(rfq)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.stats["handler_errors"] += 1
                log.exception("rfq_failed", rfq=rfq.id, error=repr(exc))
            await asyncio.sleep(0)  # let the bus hand over what arrived meanwhile

    def context_for(self, rfq: Rfq) -> DealerContext:
        """What this dealer knows right now for pricing ``rfq``."""
        now_ms = self._now_ms()
        return DealerContext(
            dealer=self.me,
            now_ms=now_ms,
            today=self.market.today,
            market=self.market,
            client_rating=self.ratings.get(rfq.client, score_of("BBB")),
            exposure=self.book.exposure(rfq.client, now_ms),
            credit_limit=self.credit_limits.get(rfq.client, self.credit_limit),
            inventory=self.book.inventory,
        )

    async def handle_rfq(self, rfq: Rfq) -> Quote | Decline | None:
        """Price one RFQ and answer it within its deadline; returns what was sent."""
        if rfq.is_direct and self.me not in rfq.dealers:
            return None
        self.stats["rfqs"] += 1
        self.seen_rfqs.append(rfq)
        context = self.context_for(rfq)
        now_ms = context.now_ms
        if now_ms >= rfq.deadline_ms:
            self.stats["too_late"] += 1
            return None
        answer: Quote | Decline
        unable = self._not_in_standing(rfq)
        try:
            validate_rfq(rfq, today=context.today, now_ms=now_ms)
        except ValidationError as exc:
            answer = context.decline(rfq, DeclineCode.BAD_TERMS, str(exc))
        else:
            if unable is not None:
                answer = context.decline(rfq, DeclineCode.DEFAULTED, unable)
            else:
                answer = self._priced(rfq, context)
        if rfq.id in self.cancelled:
            return None
        if self._now_ms() >= rfq.deadline_ms:
            self.stats["too_late"] += 1
            log.info("rfq_deadline_missed", rfq=rfq.id)
            return None
        if isinstance(answer, Quote) and context.reserved:
            self.book.reserve(answer.id, rfq.client, context.reserved, answer.valid_until_ms)
        await self.bus.publish(
            subjects.quote(rfq.client, rfq.id),
            answer,
            seal_to=[rfq.client],
            ttl_s=max((rfq.deadline_ms - now_ms) / 1000 + 5, 5),
        )
        self.stats["quotes" if isinstance(answer, Quote) else "declines"] += 1
        return answer

    def _not_in_standing(self, rfq: Rfq) -> str | None:
        """Why this dealer must not trade with the client now (None: it may): the chain says
        the client, or this dealer itself, is defaulted or suspended."""
        for who, what in ((rfq.client, "the client"), (self.me, "this dealer")):
            status = self.standing.get(who)
            if status is not None:
                return f"{what} ({who}) is {status} on chain"
        return None

    def _priced(self, rfq: Rfq, context: DealerContext) -> Quote | Decline:
        try:
            answer = self.strategy.price(rfq, context)
        except Exception as exc:
            log.exception("strategy_failed", rfq=rfq.id)
            answer = context.decline(rfq, "internal", f"pricing failed: {type(exc).__name__}")
        answer = self._checked(rfq, answer, context)
        room = self.headroom.get(rfq.client)
        if isinstance(answer, Quote) and room is not None:
            needed = initial_margin(contract_of(answer, None)) - answer.credit_line
            if needed > room:  # the chain would refuse the accept: say so now
                context.reserved = 0.0
                return context.decline(
                    rfq,
                    DeclineCode.MARGIN_CAPACITY,
                    f"initial margin {needed:,.2f} beyond our line exceeds what the client "
                    f"can carry ({room:,.2f})",
                )
        return answer

    def _checked(
        self, rfq: Rfq, answer: Quote | Decline, context: DealerContext
    ) -> Quote | Decline:
        """A strategy cannot quote for another RFQ, client, dealer or other terms."""
        same = (answer.rfq_id, answer.client, answer.dealer) == (rfq.id, rfq.client, self.me)
        if isinstance(answer, Quote) and not (same and answer.terms == rfq.terms):
            log.error("strategy_answer_inconsistent", rfq=rfq.id)
            return context.decline(rfq, "internal", "strategy produced an inconsistent quote")
        if isinstance(answer, Decline) and not same:
            return context.decline(rfq, answer.code, answer.text)
        return answer

    async def _on_drop(self, dropped: Dropped, msg: Msg) -> None:
        """A signed RFQ that does not decode still deserves an answer: a Decline."""
        message = dropped.message
        if dropped.reason != DropReason.BAD_PAYLOAD or message is None or message.kind != "rfq":
            return
        member = self.bus.directory.get(message.sender)  # a client admitted later too
        if member is None or member.role != Role.CLIENT:
            return
        rfq_id = _lenient_id(message.body) or f"nonce-{message.nonce}"
        decline = Decline(
            rfq_id=rfq_id,
            client=message.sender,
            dealer=self.me,
            code="malformed",
            text=f"RFQ does not decode: {dropped.detail}",
        )
        self.stats["malformed"] += 1
        await self.bus.publish(
            subjects.quote(message.sender, rfq_id), decline, seal_to=[message.sender]
        )


def _lenient_id(body: bytes) -> str | None:
    try:
        raw = msgspec.msgpack.decode(body)
    except DECODE_ERRORS:
        return None
    candidate = raw.get("id") if isinstance(raw, dict) else None
    if isinstance(candidate, str):
        try:
            return subjects.token(candidate)
        except subjects.SubjectError:
            return None
    return None
