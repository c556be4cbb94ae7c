"""The client side of the RFQ (paper figure 3): ask, watch quotes arrive, accept or walk away.

```python
async with ClientSession(bus, genesis) as session:
    rfq = await session.send_rfq(terms, deadline_s=3)
    async for answer in rfq:            # Quote or Decline, as each dealer answers
        ...
    signed_accept = await session.accept(rfq.best())
```

An RFQ to all dealers goes on the public subject of its first leg; one to chosen dealers is
sealed to each of them (and the regulator) on their direct subjects. Quotes arrive sealed to
this client only. A quote is taken only if the dealer signed it in its own name, for this
client, for an RFQ this client sent, on the same terms, before the RFQ's deadline; late
quotes are counted and ignored. ``accept`` is refused locally once the quote's validity has
passed, for a second accept of one RFQ, for a quote of an RFQ the client cancelled (answers
that arrive after the cancel are ignored), and for a quote not addressed to this client.
The signed accept is the trade transaction: it is submitted to the authorities on
``otc.tx.<client>``.
"""

from __future__ import annotations

import asyncio
import math
import os
import statistics
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Self

import structlog
from nats.aio.msg import Msg

from bus import subjects
from bus.client import Bus
from bus.envelope import Channel, Received
from peers.errors import PeerError
from peers.ledger_client import LedgerClient, LedgerUnavailable, QueryDenied
from peers.market import MarketData
from peers.service import Service, ServiceStatus
from rfq.errors import ValidationError
from rfq.identity import Genesis, Role
from rfq.instruments import CATALOG, Side, Terms
from rfq.ledger.state import Receipt
from rfq.messages import (
    QUOTE_ROLES,
    Accept,
    Cancel,
    Decline,
    Quote,
    QuoteChannelMessage,
    Rfq,
    check_deadline_s,
    validate_rfq,
)
from rfq.queries import RatingsQuery, RatingsReply
from rfq.signing import SignedMessage

STANDING_MAX_AGE_S = 5.0
"""How old the session's copy of who may not trade may be when it accepts a quote."""

log = structlog.get_logger(__name__)

QUOTE_CHANNEL: Channel[QuoteChannelMessage] = Channel.of("quotes", QuoteChannelMessage, QUOTE_ROLES)

Answer = Quote | Decline


class AcceptRefused(PeerError):
    """An accept the session will not send; ``reason`` is machine-readable."""

    def __init__(self, reason: str, message: str) -> None:
        self.reason = reason
        super().__init__(message)


@dataclass
class DealerScore:
    asked: int = 0
    answered: int = 0
    quotes: int = 0
    declines: int = 0
    trades: int = 0
    latencies_ms: list[float] = field(default_factory=list)

    @property
    def response_rate(self) -> float:
        return self.answered / self.asked if self.asked else 0.0

    @property
    def median_latency_ms(self) -> float | None:
        return statistics.median(self.latencies_ms) if self.latencies_ms else None

    @property
    def quote_to_trade(self) -> float:
        return self.trades / self.quotes if self.quotes else 0.0


class Scoreboard:
    """Per-dealer response rate, median latency and quote-to-trade ratio, kept by a client."""

    def __init__(self) -> None:
        self.dealers: dict[str, DealerScore] = {}

    def _get(self, dealer: str) -> DealerScore:
        return self.dealers.setdefault(dealer, DealerScore())

    def asked(self, dealer: str) -> None:
        self._get(dealer).asked += 1

    def answered(self, dealer: str, latency_ms: float, answer: Answer) -> None:
        score = self._get(dealer)
        score.answered += 1
        score.latencies_ms.append(latency_ms)
        if isinstance(answer, Quote):
            score.quotes += 1
        else:
            score.declines += 1

    def traded(self, dealer: str) -> None:
        self._get(dealer).trades += 1

    def rows(self) -> list[dict[str, object]]:
        return [
            {
                "dealer": dealer,
                "asked": s.asked,
                "response_rate": round(s.response_rate, 4),
                "median_latency_ms": s.median_latency_ms,
                "quotes": s.quotes,
                "declines": s.declines,
                "trades": s.trades,
                "quote_to_trade": round(s.quote_to_trade, 4),
            }
            for dealer, s in sorted(self.dealers.items())
        ]


class RfqHandle:
    """One RFQ in flight: iterate to receive answers until all dealers answered or the deadline."""

    def __init__(self, rfq: Rfq, signed: SignedMessage, addressed: Sequence[str], sent_at: float):
        self.rfq = rfq
        self.signed = signed
        self.addressed = frozenset(addressed)
        self.sent_at = sent_at
        self.answers: dict[str, Answer] = {}
        self.signed_quotes: dict[str, SignedMessage] = {}
        self.late = 0
        self.cancelled = False
        self._queue: asyncio.Queue[Answer | None] = asyncio.Queue()  # None: cancelled

    @property
    def id(self) -> str:
        return self.rfq.id

    @property
    def quotes(self) -> list[Quote]:
        return [a for a in self.answers.values() if isinstance(a, Quote)]

    @property
    def complete(self) -> bool:
        return self.addressed <= set(self.answers)

    def best(self) -> Quote | None:
        """The best price for the client: lowest when it buys, highest when it sells."""
        quotes = self.quotes
        if not quotes:
            return None
        if self.rfq.terms.client_side == Side.BUY:
            return min(quotes, key=lambda q: (q.price, q.dealer))
        return max(quotes, key=lambda q: (q.price, q.dealer))

    def _deliver(self, answer: Answer, signed: SignedMessage) -> None:
        self.answers[answer.dealer] = answer
        if isinstance(answer, Quote):
            self.signed_quotes[answer.id] = signed
        self._queue.put_nowait(answer)

    def __aiter__(self) -> AsyncIterator[Answer]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Answer]:
        yielded = 0
        try:
            while True:
                if yielded == len(self.addressed) or self.cancelled:
                    return
                remaining = self.rfq.deadline_ms / 1000 - time.time()
                if remaining <= 0 and self._queue.empty():
                    return
                try:
                    answer = await asyncio.wait_for(self._queue.get(), max(remaining, 0.001))
                except TimeoutError:
                    return
                if answer is None:
                    return
                yielded += 1
                yield answer
        finally:
            missing = sorted(self.addressed - set(self.answers))
            if missing and not self.cancelled:
                log.warning("rfq_unanswered", rfq=self.rfq.id, missing=missing)

    async def collect(self) -> list[Answer]:
        return [answer async for answer in self]


class ClientSession(Service):
    """A client's RFQ session over its bus connection."""

    def __init__(
        self,
        bus: Bus,
        genesis: Genesis,
        *,
        market: MarketData | None = None,
        submit_accepts: bool = True,
    ) -> None:
        if bus.identity.role != Role.CLIENT:
            raise PeerError(f"{bus.member_id} is a {bus.identity.role}, not a client")
        self.bus = bus
        self.genesis = genesis
        self.market = market or MarketData()
        self.submit_accepts = submit_accepts
        self.ledger = LedgerClient(bus, genesis)
        self.me = bus.member_id
        self._genesis_dealers = frozenset(m.id for m in genesis.members if m.role == Role.DEALER)
        self.rfqs: dict[str, RfqHandle] = {}
        self.accepted: dict[str, SignedMessage] = {}
        self.scoreboard = Scoreboard()
        self.dropped_quotes = 0
        self.standing: dict[str, str] = {}
        """Members the chain says may not trade (e.g. ``{"D3": "defaulted"}``)."""
        self._standing_read = -math.inf

    @property
    def dealers(self) -> frozenset[str]:
        """The dealers this client asks: the genesis's and those admitted since whose keys its
        bus has learned (``LedgerClient.member_keys``)."""
        directory = getattr(self.bus, "directory", ())
        later = {m.id for m in directory if m.role == Role.DEALER}
        return self._genesis_dealers | later

    async def start(self) -> Self:
        """Subscribe to this client's quotes (once; the bus stays the caller's to close)."""
        if self.status != ServiceStatus.NEW:
            return self
        await self.bus.subscribe(subjects.quotes_for(self.me), QUOTE_CHANNEL, self._on_answer)
        if self.submit_accepts:
            await self.ledger.start()
        await self.bus.flush()
        self.status = ServiceStatus.RUNNING
        return self

    async def _shutdown(self) -> None:
        """Stop the ledger client's receipt checks (the bus stays the caller's)."""
        await self.ledger.close()

    # -- asking ----------------------------------------------------------------------------

    async def send_rfq(
        self,
        terms: Terms,
        *,
        dealers: Sequence[str] | None = None,
        deadline_s: float = 5.0,
        collateral: float = 0.0,
        guarantee: float = 0.0,
        rfq_id: str | None = None,
    ) -> RfqHandle:
        """Validate and send an RFQ; ``dealers=None`` asks every dealer.

        Raises ``ValidationError`` (nothing is sent) for an unknown underlying, a non-positive
        quantity, a maturity in the past, an expired or unlisted futures month, a deadline
        outside 1 to 300 seconds (refused, not clamped), an empty or unknown dealer list.
        """
        if dealers is not None and len(dealers) == 0:
            raise ValidationError(
                "an empty dealer list reaches nobody (pass no list to ask every dealer)",
                where="dealers",
            )
        check_deadline_s(deadline_s)
        now = time.time()
        now_ms = int(now * 1000)
        rfq = Rfq(
            id=rfq_id or f"{self.me}-{os.urandom(6).hex()}",
            client=self.me,
            terms=terms,
            deadline_ms=now_ms + round(deadline_s * 1000),
            dealers=tuple(dealers or ()),
            collateral=collateral,
            guarantee=guarantee,
        )
        validate_rfq(
            rfq,
            today=self.market.today,
            now_ms=now_ms,
            dealers=self.dealers,
            catalog=CATALOG,
            sent_ms=now_ms,
        )
        if rfq.id in self.rfqs:
            raise ValidationError(f"RFQ id {rfq.id} was already used", where="id")
        ttl = deadline_s + 1.0
        addressed = sorted(rfq.dealers or self.dealers)
        if rfq.is_direct:
            signed = self.bus.outbox.sign(rfq, ttl_s=ttl)
            handle = RfqHandle(rfq, signed, addressed, now)
            self.rfqs[rfq.id] = handle
            regulator = self.genesis.regulator.id
            for dealer in rfq.dealers:
                await self.bus.publish_signed(
                    subjects.rfq_direct(dealer), signed, seal_to=[dealer, regulator]
                )
        else:
            signed = self.bus.outbox.sign(rfq, ttl_s=ttl)
            handle = RfqHandle(rfq, signed, addressed, now)
            self.rfqs[rfq.id] = handle
            first = CATALOG[terms.legs[0].underlying]
            await self.bus.publish_signed(subjects.rfq_public(first.asset_class, first.id), signed)
        for dealer in addressed:
            self.scoreboard.asked(dealer)
        log.info("rfq_sent", rfq=rfq.id, dealers=len(addressed), direct=rfq.is_direct)
        return handle

    async def _on_answer(self, received: Received[QuoteChannelMessage], msg: Msg) -> None:
        answer = received.payload
        handle = self.rfqs.get(answer.rfq_id)
        problem = None
        if answer.dealer != received.sender:
            problem = f"signed by {received.sender} in the name of {answer.dealer}"
        elif answer.client != self.me:
            problem = f"addressed to {answer.client}"
        elif handle is None:
            problem = "for an RFQ this client did not send"
        elif answer.dealer not in handle.addressed and (
            handle.rfq.is_direct or answer.dealer not in self.dealers
        ):
            problem = "from a dealer that was not asked"
        elif answer.dealer in handle.answers:
            problem = "a second answer from the same dealer"
        elif isinstance(answer, Quote) and answer.terms != handle.rfq.terms:
            problem = "on terms other than those asked"
        if problem is not None or handle is None:
            self.dropped_quotes += 1
            log.warning("answer_ignored", rfq=answer.rfq_id, dealer=received.sender, why=problem)
            return
        if handle.cancelled:  # a dealer that answered before it saw the cancel
            log.info("answer_after_cancel", rfq=answer.rfq_id, dealer=answer.dealer)
            return
        if received.message.timestamp_ms > handle.rfq.deadline_ms or time.time() * 1000 > (
            handle.rfq.deadline_ms
        ):
            handle.late += 1
            log.info("answer_late", rfq=answer.rfq_id, dealer=answer.dealer)
            return
        if answer.dealer not in handle.addressed:  # a public RFQ reached a dealer admitted lately
            handle.addressed = handle.addressed | {answer.dealer}
        latency_ms = (time.time() - handle.sent_at) * 1000
        self.scoreboard.answered(answer.dealer, latency_ms, answer)
        handle._deliver(answer, received.message)

    # -- deciding --------------------------------------------------------------------------

    def signed_quote(self, quote: Quote) -> SignedMessage:
        handle = self.rfqs.get(quote.rfq_id)
        signed = handle.signed_quotes.get(quote.id) if handle else None
        if handle is None or signed is None or handle.answers.get(quote.dealer) != quote:
            raise AcceptRefused("unknown_quote", f"quote {quote.id} was not received by {self.me}")
        return signed

    async def accept(self, quote: Quote) -> SignedMessage:
        """Take ``quote``: sign the accept and submit it; returns the signed accept."""
        if quote.client != self.me:
            raise AcceptRefused(
                "not_yours", f"quote {quote.id} is addressed to {quote.client}, not {self.me}"
            )
        if quote.rfq_id in self.accepted:
            raise AcceptRefused(
                "already_accepted", f"RFQ {quote.rfq_id} already has an accepted quote"
            )
        handle = self.rfqs.get(quote.rfq_id)
        if handle is not None and handle.cancelled:
            raise AcceptRefused(
                "cancelled",
                f"RFQ {quote.rfq_id} was cancelled: its quotes can no longer be accepted",
            )
        now_ms = int(time.time() * 1000)
        if now_ms > quote.valid_until_ms:
            raise AcceptRefused(
                "expired",
                f"quote {quote.id} expired {(now_ms - quote.valid_until_ms) / 1000:.1f}s ago",
            )
        await self.refresh_standing()
        for who in (quote.dealer, self.me):
            if who in self.standing:
                raise AcceptRefused(
                    "defaulted", f"{who} is {self.standing[who]} on chain and cannot trade"
                )
        signed_quote = self.signed_quote(quote)
        accept = Accept(
            rfq_id=quote.rfq_id,
            quote_id=quote.id,
            client=self.me,
            dealer=quote.dealer,
            quote=signed_quote,
        )
        signed = self.bus.outbox.sign(accept, ttl_s=self.bus.params.message_ttl_s)
        self.accepted[quote.rfq_id] = signed
        self.scoreboard.traded(quote.dealer)
        if self.submit_accepts:
            await self.ledger.submit_signed(signed)
        log.info("quote_accepted", rfq=quote.rfq_id, dealer=quote.dealer, price=quote.price)
        return signed

    def tradable(self, quote: Quote) -> bool:
        """Whether ``quote`` can still be accepted as far as the session knows (the terminal
        shows the rest as not tradable): not expired, its RFQ not cancelled, its dealer and
        this client in good standing on chain."""
        handle = self.rfqs.get(quote.rfq_id)
        return not (
            (handle is not None and handle.cancelled)
            or quote.rfq_id in self.accepted
            or time.time() * 1000 > quote.valid_until_ms
            or quote.dealer in self.standing
            or self.me in self.standing
        )

    async def refresh_standing(self, *, max_age_s: float = STANDING_MAX_AGE_S) -> None:
        """Re-read who may not trade when the last read is older than ``max_age_s``; a chain
        that does not answer leaves the last known standing (the chain refuses anyway)."""
        if time.monotonic() - self._standing_read < max_age_s:
            return
        try:
            reply = await self.ledger.query(RatingsQuery(members=(self.me,)), timeout=1.0)
        except (LedgerUnavailable, QueryDenied):
            return
        if isinstance(reply, RatingsReply):
            self.standing = dict(reply.standing)
            self._standing_read = time.monotonic()

    async def committed(self, signed_accept: SignedMessage, *, timeout: float = 15.0) -> Receipt:
        """The authorities' verdict on an accept: ``ok`` when the trade is final on chain."""
        tx_id = signed_accept.digest.hex()
        return await self.ledger.wait(tx_id, timeout=timeout)

    async def cancel(self, rfq: RfqHandle | str) -> None:
        """Withdraw an RFQ: dealers drop it, the iterator ends, and its quotes can no longer
        be accepted (``accept`` refuses them with reason ``cancelled``)."""
        handle = self.rfqs.get(rfq if isinstance(rfq, str) else rfq.id)
        if handle is None:
            raise ValidationError("no such RFQ", where="rfq")
        handle.cancelled = True
        cancel = Cancel(rfq_id=handle.id, client=self.me)
        if handle.rfq.is_direct:
            regulator = self.genesis.regulator.id
            for dealer in handle.rfq.dealers:
                await self.bus.publish(
                    subjects.rfq_direct(dealer), cancel, seal_to=[dealer, regulator]
                )
        else:
            first = CATALOG[handle.rfq.terms.legs[0].underlying]
            await self.bus.publish(subjects.rfq_public(first.asset_class, first.id), cancel)
        handle._queue.put_nowait(None)
