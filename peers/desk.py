"""A dealer's desk: the dealer bot with a person behind it (the terminal's dealer mode).

``DeskDealerBot`` is a ``DealerBot`` whose strategy is a desk wrapper around the default
model: with auto-quote on, every RFQ gets the model's answer (moved by the desk's skew in
basis points); with it off, RFQs wait until the person types a quote (the model's price
pre-filled, overridable) or declines, within the RFQ's deadline. Either way the bot signs,
checks and sends the answer exactly as the headless ``botc dealer`` does. ``book_view`` is what
the positions screen shows: exposure per client, inventory, and who may not trade.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec
import structlog

from bus.client import Bus
from peers.dealer import DealerBot, DealerContext, DefaultStrategy, Strategy
from peers.errors import PeerError
from rfq.identity import Genesis, Role
from rfq.instruments import Side
from rfq.messages import Decline, Quote, Rfq

log = structlog.get_logger(__name__)

ArrivalCallback = Callable[[Rfq, int, Quote | Decline | None, bool], None]
AnswerCallback = Callable[[str, Quote | Decline | None, bool], None]


@dataclass(frozen=True)
class ManualAnswer:
    """What the dealer typed: a quote (price, margin rate, credit line, validity) or a decline."""

    price: float | None = None
    initial_margin_rate: float = 0.0
    credit_line: float = 0.0
    ttl_s: float = 30.0
    decline: str | None = None


class DeskStrategy:
    """The model's answer, skewed by the desk; a manual answer for an RFQ replaces it."""

    def __init__(self, model: Strategy | None = None, *, skew_bps: float = 0.0) -> None:
        self.model = model or DefaultStrategy()
        self.skew_bps = skew_bps
        self.manual: dict[str, ManualAnswer] = {}

    def price(self, rfq: Rfq, context: DealerContext) -> Quote | Decline:
        model = self.model.price(rfq, context)
        manual = self.manual.pop(rfq.id, None)
        if manual is None:
            return self.skewed(rfq, model)
        if manual.decline is not None or manual.price is None:
            context.reserved = 0.0
            return context.decline(rfq, "dealer_declined", manual.decline or "declined by the desk")
        return context.quote(
            rfq,
            price=manual.price,
            initial_margin_rate=manual.initial_margin_rate,
            credit_line=manual.credit_line,
            ttl_s=manual.ttl_s,
        )

    def skewed(self, rfq: Rfq, answer: Quote | Decline) -> Quote | Decline:
        """Widen (positive skew) or tighten the model's price for the client's side."""
        if not isinstance(answer, Quote) or not self.skew_bps:
            return answer
        sign = 1.0 if rfq.terms.client_side == Side.BUY else -1.0
        moved = answer.price + sign * abs(answer.price) * self.skew_bps / 1e4
        return msgspec.structs.replace(answer, price=round(moved, 4))


class DeskDealerBot(DealerBot):
    """A ``DealerBot`` that reports each RFQ to its desk and can hold RFQs for a person."""

    def __init__(
        self,
        bus: Bus,
        genesis: Genesis,
        *,
        auto_quote: bool = True,
        on_arrival: ArrivalCallback | None = None,
        on_answer: AnswerCallback | None = None,
        model: Strategy | None = None,
        **kwargs: Any,
    ) -> None:
        self.desk = DeskStrategy(model)
        super().__init__(bus, genesis, strategy=self.desk, **kwargs)
        self.auto_quote = auto_quote
        self.waiting: dict[str, Rfq] = {}
        self.on_arrival = on_arrival or (lambda rfq, arrived_ms, suggestion, waits: None)
        self.on_answer = on_answer or (lambda rfq_id, answer, manual: None)

    def suggest(self, rfq: Rfq) -> Quote | Decline | None:
        """The model's answer (for the manual ticket); None if the model fails."""
        try:
            return self.desk.skewed(rfq, self.desk.model.price(rfq, self.context_for(rfq)))
        except Exception:
            log.exception("suggestion_failed", rfq=rfq.id)
            return None

    async def handle_rfq(self, rfq: Rfq) -> Quote | Decline | None:
        if rfq.is_direct and self.me not in rfq.dealers:
            return None
        arrived_ms = self._now_ms()
        if self.auto_quote:
            self.on_arrival(rfq, arrived_ms, None, False)
            answer = await super().handle_rfq(rfq)
            self.on_answer(rfq.id, answer, False)
            return answer
        self.waiting[rfq.id] = rfq
        self.stats["waiting"] += 1
        self.on_arrival(rfq, arrived_ms, self.suggest(rfq), True)
        return None

    async def answer(self, rfq_id: str, manual: ManualAnswer) -> Quote | Decline | None:
        """Send the user's answer to a waiting RFQ (None: too late, nothing was sent)."""
        rfq = self.waiting.pop(rfq_id, None)
        if rfq is None:
            raise PeerError(f"{rfq_id} is not waiting for an answer")
        if rfq.id in self.cancelled:
            raise PeerError(f"{rfq_id} was cancelled by {rfq.client}")
        if self._now_ms() >= rfq.deadline_ms:
            raise PeerError(f"{rfq_id}: the RFQ's deadline has passed")
        self.desk.manual[rfq.id] = manual
        try:
            answer = await super().handle_rfq(rfq)
        finally:
            self.desk.manual.pop(rfq.id, None)
        self.on_answer(rfq.id, answer, True)
        return answer

    async def answer_waiting_with_model(self) -> int:
        """Auto-quote switched on: the model answers every RFQ still within its deadline."""
        answered = 0
        for rfq_id in list(self.waiting):
            rfq = self.waiting.pop(rfq_id)
            if rfq.id in self.cancelled or self._now_ms() >= rfq.deadline_ms:
                continue
            answer = await super().handle_rfq(rfq)
            self.on_answer(rfq.id, answer, False)
            answered += 1
        return answered

    def book_view(self) -> BookView:
        """Exposure per client (and every client the chain says may not trade), inventory."""
        now_ms = self._now_ms()
        client_ids = {m.id for m in self.genesis.members if m.role == Role.CLIENT}
        barred = {who for who in self.standing if who in client_ids}
        clients = sorted(set(self.book.trades) | set(self.book.held) | barred)
        rows = tuple(
            ExposureRow(
                client=client,
                rating=self.ratings.get(client),
                exposure=self.book.trades.get(client, 0.0),
                held=self.book.held.get(client, 0.0),
                limit=self.credit_limits.get(client, self.credit_limit),
                standing=self.standing.get(client),
            )
            for client in clients
            if self.book.exposure(client, now_ms) or client in self.book.trades or client in barred
        )
        inventory = tuple(sorted((u, v) for u, v in self.book.inventory.items() if v))
        return BookView(exposures=rows, inventory=inventory, standing=dict(self.standing))


@dataclass(frozen=True)
class ExposureRow:
    client: str
    rating: float | None
    exposure: float
    held: float
    limit: float
    standing: str | None = None
    """What the chain says of the client when it may not trade (``defaulted``)."""


@dataclass(frozen=True)
class BookView:
    """The dealer's book: exposure per client and inventory per underlying, and who the
    chain says may not trade (``DealerBot.standing``)."""

    exposures: tuple[ExposureRow, ...]
    inventory: tuple[tuple[str, float], ...]
    standing: dict[str, str] = field(default_factory=dict)
