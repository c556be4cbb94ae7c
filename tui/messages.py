"""Messages between the terminal's workers, screens and widgets.

Network workers never touch widgets: they post one of these to their screen, whose handler
updates the widgets. Snapshot tests post the same messages with fixed data.
"""

from __future__ import annotations

from dataclasses import dataclass

from textual.message import Message

from bus.client import Bus, BusStatus
from peers.desk import BookView
from rfq.contracts.model import ContractView
from rfq.ledger.state import Guarantee, Receipt, Trade
from rfq.messages import Decline, Quote, Rfq
from rfq.queries import HeaderInfo, RiskReply, StatusReply, WhatIfReply

# -- connection ------------------------------------------------------------------------------


class BusStatusChanged(Message):
    """The bus connected, dropped or came back (from ``Bus.listeners``)."""

    def __init__(self, status: BusStatus, detail: str = "") -> None:
        self.status = status
        self.detail = detail
        super().__init__()


class BusReady(Message):
    """The app opened the member's bus: the screen may start its services on it."""

    def __init__(self, bus: Bus) -> None:
        self.bus = bus
        super().__init__()


# -- client ----------------------------------------------------------------------------------


class MarketChanged(Message):
    """New prices arrived; the market watch should redraw (coalesced by the screen)."""


class RfqOpened(Message):
    def __init__(self, rfq: Rfq, addressed: tuple[str, ...]) -> None:
        self.rfq = rfq
        self.addressed = addressed
        super().__init__()


class AnswerArrived(Message):
    def __init__(self, answer: Quote | Decline) -> None:
        self.answer = answer
        super().__init__()


class RfqClosed(Message):
    """The RFQ stopped collecting answers: ``reason`` is answered, deadline or cancelled."""

    def __init__(self, rfq_id: str, reason: str) -> None:
        self.rfq_id = rfq_id
        self.reason = reason
        super().__init__()


class QuoteAccepted(Message):
    def __init__(self, quote: Quote, tx_id: str) -> None:
        self.quote = quote
        self.tx_id = tx_id
        super().__init__()


class ContractsLoaded(Message):
    def __init__(self, height: int, contracts: tuple[ContractView, ...]) -> None:
        self.height = height
        self.contracts = contracts
        super().__init__()


@dataclass(frozen=True)
class CreditView:
    """A client's credit picture: its rating, the lines behind its trades and guarantees."""

    member: str
    external: str
    score: float | None
    grade: str | None
    guarantees: tuple[Guarantee, ...] = ()
    trades: tuple[Trade, ...] = ()


class StandingLoaded(Message):
    """Who the chain says may not trade (e.g. ``{"D3": "defaulted"}``), as just read."""

    def __init__(self, standing: dict[str, str]) -> None:
        self.standing = standing
        super().__init__()


class CreditLoaded(Message):
    def __init__(self, credit: CreditView, height: int) -> None:
        self.credit = credit
        self.height = height
        super().__init__()


class HeadersLoaded(Message):
    def __init__(self, headers: tuple[HeaderInfo, ...]) -> None:
        self.headers = headers
        super().__init__()


class TxSubmitted(Message):
    """A transaction of this member went to the authorities (pending until its receipt)."""

    def __init__(self, tx_id: str, kind: str, label: str) -> None:
        self.tx_id = tx_id
        self.kind = kind
        self.label = label
        super().__init__()


class ReceiptArrived(Message):
    def __init__(self, receipt: Receipt) -> None:
        self.receipt = receipt
        super().__init__()


class ChainUnavailable(Message):
    """No authority answered a poll (shown once until the chain answers again)."""

    def __init__(self, error: str) -> None:
        self.error = error
        super().__init__()


# -- dealer ----------------------------------------------------------------------------------


class RfqArrived(Message):
    """An RFQ reached the dealer; ``waits`` when it waits for a manual answer, for which
    ``suggestion`` is the model's."""

    def __init__(
        self,
        rfq: Rfq,
        *,
        rating: float | None,
        arrived_ms: int,
        suggestion: Quote | Decline | None = None,
        waits: bool = False,
    ) -> None:
        self.rfq = rfq
        self.waits = waits
        self.rating = rating
        self.arrived_ms = arrived_ms
        self.suggestion = suggestion
        super().__init__()


class RfqAnswered(Message):
    """What the dealer sent for an RFQ (None: nothing, e.g. the deadline passed)."""

    def __init__(self, rfq_id: str, answer: Quote | Decline | None, *, manual: bool) -> None:
        self.rfq_id = rfq_id
        self.answer = answer
        self.manual = manual
        super().__init__()


class BookLoaded(Message):
    def __init__(self, book: BookView, trades: tuple[Trade, ...]) -> None:
        self.book = book
        self.trades = trades
        super().__init__()


# -- regulator -------------------------------------------------------------------------------


class StatusLoaded(Message):
    """The chain status and each authority's own view (a string when it did not answer)."""

    def __init__(self, status: StatusReply, per_authority: dict[str, StatusReply | str]) -> None:
        self.status = status
        self.per_authority = per_authority
        super().__init__()


class RiskLoaded(Message):
    def __init__(self, risk: RiskReply) -> None:
        self.risk = risk
        super().__init__()


class RiskUnavailable(Message):
    def __init__(self, error: str) -> None:
        self.error = error
        super().__init__()


class WhatIfLoaded(Message):
    def __init__(self, result: WhatIfReply) -> None:
        self.result = result
        super().__init__()


class TradesFound(Message):
    """Trade repository search results, with the contracts they spawned (for their terms):
    the newest ``trades`` of ``total`` matching (None: all of them are here)."""

    def __init__(
        self,
        trades: tuple[Trade, ...],
        contracts: dict[str, ContractView],
        party: str | None,
        underlying: str | None,
        total: int | None = None,
    ) -> None:
        self.trades = trades
        self.contracts = contracts
        self.party = party
        self.underlying = underlying
        self.total = len(trades) if total is None else total
        super().__init__()
