"""Client mode: market watch, RFQ ticket, live quotes, blotter, credit and chain panels.

Workers own every network call (``ClientSession`` for RFQs and accepts, its ``LedgerClient``
for queries) and report through messages; the handlers only redraw widgets. The blotter and
the credit tab read every page of the client's contracts, trades and guarantees
(``LedgerClient.query_all``), so their rows and totals are complete however many there are.
Who may not trade (``ClientSession.standing``) is re-read with each poll: a defaulted
dealer's quotes read "dealer defaulted" on the board and ``a``/``b`` refuse them.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any, ClassVar

import structlog
from nats.errors import Error as NatsError
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.widgets import DataTable, Footer, Sparkline, Static, TabbedContent, TabPane

from bus.errors import BusError
from peers.counterparty import AcceptRefused, ClientSession, RfqHandle
from peers.deltas import DeltaView
from peers.errors import PeerError
from peers.ledger_client import LedgerUnavailable, QueryDenied
from rfq.clock import utc_today
from rfq.contracts.templates import REGISTRY, templates
from rfq.errors import RfqError
from rfq.identity import Role
from rfq.ledger.state import Receipt
from rfq.messages import Price, Quote
from rfq.queries import (
    PAGE_LIMIT,
    ContractsQuery,
    ContractsReply,
    GuaranteesQuery,
    GuaranteesReply,
    HeadersQuery,
    HeadersReply,
    RatingsQuery,
    RatingsReply,
    StatusQuery,
    StatusReply,
    TradesQuery,
    TradesReply,
)
from tui import format as fmt
from tui.messages import (
    AnswerArrived,
    BusReady,
    ChainUnavailable,
    ContractsLoaded,
    CreditLoaded,
    CreditView,
    HeadersLoaded,
    MarketChanged,
    QuoteAccepted,
    ReceiptArrived,
    RfqClosed,
    RfqOpened,
    StandingLoaded,
    StatusLoaded,
    TxSubmitted,
)
from tui.model import MarketRow, contract_pnl, market_rows
from tui.screen import RoleScreen
from tui.ticket import RfqTicket
from tui.timing import sleep_or_wake
from tui.widgets import (
    CONTRACT_COLUMNS,
    MarketWatch,
    PnlBars,
    QuotesBoard,
    StatusBar,
    Table,
    contract_cells,
)

log = structlog.get_logger(__name__)


def _contract_id(view: Any) -> str:
    return str(view.contract.id)


def _rfq_id(trade: Any) -> str:
    return str(trade.rfq_id)


TABS = ("trade", "blotter", "credit", "chain")


def refusal_words(quote: Quote, why_not: str) -> str:
    """Why the board will not send an accept for ``quote``, as a sentence."""
    if why_not in ("accepted", "not taken"):
        return f"{quote.rfq_id} already has an accepted quote: the trade stands."
    if why_not == "expired":
        return f"{quote.dealer}'s quote on {quote.rfq_id} expired."
    if why_not.startswith("dealer "):
        status = why_not.removeprefix("dealer ")
        return f"{quote.dealer} is {status} on chain: its quote cannot be accepted."
    if why_not.startswith("you are "):
        return f"You are {why_not.removeprefix('you are ')} on chain: you cannot trade."
    return f"{quote.dealer}'s quote on {quote.rfq_id} is {why_not}."


class ClientScreen(RoleScreen):
    """A client's trading terminal."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("f2", "show_tab('trade')", "Trade"),
        Binding("f3", "show_tab('blotter')", "Blotter"),
        Binding("f4", "show_tab('credit')", "Credit"),
        Binding("f5", "show_tab('chain')", "Chain"),
        Binding("ctrl+s", "send", "Send RFQ", priority=True),
        Binding("a", "accept", "Accept quote"),
        Binding("b", "accept_best", "Accept best"),
        Binding("x", "cancel", "Cancel RFQ"),
        Binding("r", "refresh", "Refresh"),
    ]

    def __init__(self) -> None:
        super().__init__(id="client")
        self.session: ClientSession | None = None
        self._delta_views: tuple[ClientSession, DeltaView[Any], DeltaView[Any]] | None = None
        self.handle: RfqHandle | None = None
        self.contracts: dict[str, Any] = {}
        self.mtm_history: list[float] = []
        self.rating_history: list[float] = []
        self.transactions: dict[str, tuple[str, str, Receipt | None]] = {}
        self.standing: dict[str, str] = {}
        """Members the chain says may not trade, as last read (``StandingLoaded``)."""
        self._market_pending = False
        self._wake = asyncio.Event()

    # -- layout ----------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        app = self.terminal
        genesis = app.genesis
        dealers = [m.id for m in genesis.members if m.role == Role.DEALER]
        yield StatusBar(app.member_id, app.member.name, "client")
        with TabbedContent(initial="trade", id="tabs"):
            with TabPane("Trade", id="trade"):
                with Horizontal(id="trade-top"):
                    with Vertical(id="market-panel", classes="panel") as market:
                        market.border_title = "Market watch"
                        yield MarketWatch(id="market")
                        yield Static("", id="chart-caption")
                        yield Sparkline([], id="chart")
                    ticket = RfqTicket(
                        client=app.member_id,
                        dealers=dealers,
                        clock=app.clock,
                        today=self.today,
                        spot=self.spot,
                        prices=self.prices,
                        id="ticket",
                        classes="panel",
                    )
                    ticket.border_title = "RFQ ticket"
                    yield ticket
                quotes = QuotesBoard(
                    app.clock,
                    me=app.member_id,
                    standing=lambda: self.standing,
                    id="quotes",
                    classes="panel",
                )
                quotes.border_title = "Quotes"
                quotes.border_subtitle = "a accept · b accept best · x cancel"
                yield quotes
            with TabPane("Blotter", id="blotter"):
                contracts = Table(
                    CONTRACT_COLUMNS,
                    drop_order=("vm", "mark", "fixed", "dealer", "qty"),
                    id="contracts",
                    classes="panel",
                )
                contracts.border_title = "My contracts"
                yield contracts
                yield Static("", id="blotter-summary")
                with Horizontal(id="pnl-row"):
                    bars = PnlBars(id="pnl-bars", classes="panel")
                    bars.border_title = "P&L by contract"
                    yield bars
                    with Vertical(id="mtm-panel", classes="panel") as mtm:
                        mtm.border_title = "Portfolio MTM"
                        yield Static("", id="mtm-caption")
                        yield Sparkline([], id="mtm-chart")
            with TabPane("Credit", id="credit"):
                with Horizontal(id="credit-top"):
                    card = Static("", id="rating-card", classes="panel")
                    card.border_title = "Rating"
                    yield card
                    with Vertical(id="rating-panel", classes="panel") as history:
                        history.border_title = "Rating history (score)"
                        yield Static("", id="rating-caption")
                        yield Sparkline([], id="rating-chart")
                guarantees = Table(
                    [
                        ("Guarantee", "id"),
                        ("Guarantor", "guarantor"),
                        ("Line", "line"),
                        ("Allocated", "allocated"),
                        ("Available", "available"),
                        ("Paid", "paid"),
                        ("Pledged asset", "asset"),
                        ("Status", "status"),
                    ],
                    drop_order=("asset", "paid", "allocated"),
                    id="guarantees",
                    classes="panel",
                )
                guarantees.border_title = "Guarantor credit lines"
                yield guarantees
                lines = Table(
                    [
                        ("Dealer", "dealer"),
                        ("Trades", "trades"),
                        ("Dealer credit line", "line"),
                        ("Guarantee cover", "cover"),
                        ("Cash margin", "cash"),
                        ("Initial margin", "im"),
                    ],
                    id="dealer-lines",
                    classes="panel",
                )
                lines.border_title = "Credit used per dealer"
                yield lines
            with TabPane("Chain", id="chain"):
                headers = Table(
                    [
                        ("Height", "height"),
                        ("Hash", "hash"),
                        ("Time (UTC)", "time"),
                        ("Proposer", "proposer"),
                        ("Round", "round"),
                        ("Txs", "txs"),
                        ("State root", "root"),
                    ],
                    drop_order=("root", "round"),
                    id="headers",
                    classes="panel",
                )
                headers.border_title = "Latest final blocks"
                yield headers
                txs = Table(
                    [
                        ("Transaction", "tx"),
                        ("Kind", "kind"),
                        ("What", "what"),
                        ("Finality", "finality"),
                    ],
                    id="transactions",
                    classes="panel",
                )
                txs.border_title = "My transactions"
                yield txs
        yield Footer()

    def on_mount(self) -> None:
        self.set_interval(0.5, self._tick)

    # -- helpers the widgets use -----------------------------------------------------------

    def today(self) -> dt.date:
        """The business date: the later of the market's (newest price) and the chain's
        (a maturity on or before the chain's date would be refused at commit)."""
        if self.session is not None and self.session.market.latest:
            today = self.session.market.today
        else:
            today = utc_today(self.terminal.clock)
        chain = self.terminal.business_date
        if chain:
            with contextlib.suppress(ValueError):
                today = max(today, dt.date.fromisoformat(chain))
        return today

    def spot(self, underlying: str) -> float | None:
        if self.session is None:
            return None
        latest = self.session.market.latest.get(underlying)
        return latest.price if latest else None

    def prices(self) -> Mapping[str, float]:
        """The latest price per underlying (the ticket checks notional limits at them)."""
        return self.session.market.prices() if self.session is not None else {}

    @property
    def page_size(self) -> int:
        return int(getattr(self.terminal, "page_size", None) or PAGE_LIMIT)

    @property
    def ticket(self) -> RfqTicket:
        return self.query_one(RfqTicket)

    @property
    def quotes(self) -> QuotesBoard:
        return self.query_one(QuotesBoard)

    def _tick(self) -> None:
        board = self.quotes
        if board.rfq is not None and (board.quotes or board.closed is None):
            board.redraw()

    # -- starting up -----------------------------------------------------------------------

    def on_bus_ready(self, event: BusReady) -> None:
        self.start_session(event.bus)

    @work(group="session", exclusive=True, exit_on_error=False)
    async def start_session(self, bus: Any) -> None:
        app = self.terminal
        session = ClientSession(bus, app.genesis)
        try:
            await session.start()
            session.market.listeners.append(self._on_price)
            session.ledger.listeners.append(self._on_receipt)
            await session.market.attach(bus)
        except (BusError, PeerError, RfqError, NatsError) as exc:
            if self.terminal.bus is bus:  # not the app closing under the worker
                what = str(exc) or type(exc).__name__
                self.notify(what, title="Client session failed", severity="error")
            return
        self.session = session
        self.post_message(MarketChanged())
        self.poll_chain()

    def _on_price(self, price: Price) -> None:
        if not self._market_pending:
            self._market_pending = True
            self.post_message(MarketChanged())

    def _on_receipt(self, receipt: Receipt) -> None:
        self.post_message(ReceiptArrived(receipt))

    # -- polling the chain -----------------------------------------------------------------

    @work(group="poll", exclusive=True, exit_on_error=False)
    async def poll_chain(self) -> None:
        app = self.terminal
        while self.session is not None:
            try:
                await self._poll_once(self.session)
            except (LedgerUnavailable, QueryDenied, BusError) as exc:
                self.post_message(ChainUnavailable(str(exc)))
            except Exception as exc:  # a poll must never take the terminal down
                log.exception("client_poll_failed")
                self.post_message(ChainUnavailable(repr(exc)))
            await sleep_or_wake(self._wake, app.poll_s)

    async def _poll_once(self, session: ClientSession) -> None:
        me = session.me
        ledger = session.ledger
        status = await ledger.query(StatusQuery())
        if isinstance(status, StatusReply):
            self.post_message(StatusLoaded(status, {}))
        headers = await ledger.query(HeadersQuery(limit=15))
        if isinstance(headers, HeadersReply):
            self.post_message(HeadersLoaded(headers.headers))
        page = self.page_size
        views = self._delta_views
        if views is None or views[0] is not session:
            # The session's contracts and trades, kept by deltas: each poll reads only what
            # changed since the height the view has seen.
            views = self._delta_views = (
                session,
                DeltaView(ContractsQuery(party=me, limit=page), ContractsReply, _contract_id),
                DeltaView(TradesQuery(party=me, limit=page), TradesReply, _rfq_id),
            )
        _, contract_view, trade_view = views
        await contract_view.refresh(ledger)
        contracts = tuple(contract_view.rows[cid] for cid in sorted(contract_view.rows))
        self.post_message(ContractsLoaded(contract_view.height, contracts))
        ratings = await ledger.query(RatingsQuery(members=(me,)))
        guarantees = await ledger.query_all(GuaranteesQuery(client=me, limit=page), GuaranteesReply)
        await trade_view.refresh(ledger)
        trades = sorted(trade_view.rows.values(), key=lambda t: (-t.height, t.rfq_id))
        credit = CreditView(
            member=me,
            external=self.terminal.member.external_rating or "",
            score=ratings.ratings.get(me) if isinstance(ratings, RatingsReply) else None,
            grade=ratings.grades.get(me) if isinstance(ratings, RatingsReply) else None,
            guarantees=guarantees.guarantees,
            trades=tuple(trades),
        )
        self.post_message(CreditLoaded(credit, contract_view.height))
        await session.refresh_standing()
        self.post_message(StandingLoaded(dict(session.standing)))

    def action_refresh(self) -> None:
        self._wake.set()

    # -- market ----------------------------------------------------------------------------

    def on_market_changed(self, _: MarketChanged) -> None:
        self._market_pending = False
        if self.session is not None:
            self.show_market(market_rows(self.session.market, today=self.today()))

    def show_market(self, rows: list[MarketRow]) -> None:
        watch = self.query_one(MarketWatch)
        watch.show(rows)
        self._show_chart(watch.selected_key or (rows[0].underlying if rows else None))

    def _show_chart(self, underlying: str | None) -> None:
        row = self.query_one(MarketWatch).market.get(underlying or "")
        caption = self.query_one("#chart-caption", Static)
        chart = self.query_one("#chart", Sparkline)
        if row is None or not row.closes:
            caption.update(Text("No closes yet.", style="dim"), layout=False)
            chart.data = []
            return
        caption.update(
            Text.assemble(
                (f"{row.underlying} ", "bold"),
                f"{row.name}, last {len(row.closes)} closes  ",
                (f"low {fmt.price(min(row.closes))}  high {fmt.price(max(row.closes))}", "dim"),
            ),
            layout=False,
        )
        chart.data = list(row.closes)

    @on(DataTable.RowHighlighted, "#market")
    def _market_row(self, event: DataTable.RowHighlighted) -> None:
        self._show_chart(event.row_key.value)

    @on(MarketWatch.Picked)
    def _market_picked(self, event: MarketWatch.Picked) -> None:
        template = REGISTRY.get(self.ticket.draft().template)
        if template is not None and not template.ticket.market_pick:
            return  # a spread's legs are two months: one pick cannot fill them
        self.ticket.set_field("legs", event.underlying)
        self.ticket.query_one("#quantity").focus()

    # -- RFQs ------------------------------------------------------------------------------

    def action_send(self) -> None:
        self.ticket.submit()

    def on_rfq_ticket_submitted(self, event: RfqTicket.Submitted) -> None:
        if self.session is None:
            self.notify("Not connected yet: nothing was sent.", severity="warning")
            return
        self.send_rfq(event.request)

    @work(group="rfq", exit_on_error=False)
    async def send_rfq(self, request: Any) -> None:
        session = self.session
        if session is None:
            return
        try:
            handle = await session.send_rfq(
                request.terms, dealers=request.dealers, deadline_s=request.deadline_s
            )
        except (RfqError, BusError, PeerError) as exc:
            self.notify(str(exc), title="RFQ not sent", severity="error")
            return
        self.handle = handle
        self.post_message(RfqOpened(handle.rfq, tuple(sorted(handle.addressed))))
        async for answer in handle:
            self.post_message(AnswerArrived(answer))
        reason = "cancelled" if handle.cancelled else "answered" if handle.complete else "deadline"
        self.post_message(RfqClosed(handle.id, reason))

    def on_rfq_opened(self, event: RfqOpened) -> None:
        self.quotes.open(event.rfq, event.addressed)
        self.quotes.table.focus()
        self.notify(f"{event.rfq.id} to {', '.join(event.addressed)}", title="RFQ sent", timeout=3)

    def on_answer_arrived(self, event: AnswerArrived) -> None:
        self.quotes.add(event.answer)

    def on_rfq_closed(self, event: RfqClosed) -> None:
        self.quotes.close(event.rfq_id, event.reason)
        if event.reason == "deadline" and not self.quotes.quotes:
            self.notify("No quote arrived before the deadline.", severity="warning")

    def action_accept(self) -> None:
        self._accept(self.quotes.selected_quote())

    def action_accept_best(self) -> None:
        self._accept(self.quotes.best())

    def _accept(self, quote: Quote | None) -> None:
        """Accept ``quote`` unless the board or the session knows it cannot trade."""
        board = self.quotes
        if board.cancelled and board.rfq is not None:
            self.notify(
                f"{board.rfq.id} was cancelled: its quotes can no longer be accepted.",
                title="Not accepted",
                severity="warning",
            )
            return
        if quote is None:
            self.notify("No tradable quote to accept.", title="Not accepted", severity="warning")
            return
        why_not = board.why_not(quote)
        if why_not is None and self.session is not None and not self.session.tradable(quote):
            why_not = "not tradable"
        if why_not is not None:
            self.notify(refusal_words(quote, why_not), title="Not accepted", severity="warning")
            return
        self.accept_quote(quote)

    @work(group="accept", exclusive=True, exit_on_error=False)
    async def accept_quote(self, quote: Quote) -> None:
        session = self.session
        if session is None:
            return
        try:
            signed = await session.accept(quote)
        except AcceptRefused as exc:
            self.notify(str(exc), title=f"Accept refused: {exc.reason}", severity="error")
            return
        except (RfqError, BusError, PeerError) as exc:
            self.notify(str(exc), title="Accept failed", severity="error")
            return
        tx_id = signed.digest.hex()
        self.post_message(QuoteAccepted(quote, tx_id))
        self.post_message(TxSubmitted(tx_id, "accept", f"{quote.rfq_id} @ {quote.price:g}"))
        try:
            receipt = await session.committed(signed)
        except (LedgerUnavailable, BusError) as exc:
            self.notify(str(exc), title="No receipt yet", severity="warning")
            return
        if receipt.ok:
            self.notify(
                f"{quote.dealer} {fmt.price(quote.price)} on {quote.rfq_id}",
                title=f"Trade final at height {receipt.height}",
            )
        else:
            self.notify(receipt.reason, title="Trade refused", severity="error")
        self._wake.set()

    def on_quote_accepted(self, event: QuoteAccepted) -> None:
        self.quotes.mark_accepted(event.quote)

    def action_cancel(self) -> None:
        if self.handle is None or self.handle.cancelled:
            self.notify("No RFQ to cancel.", severity="warning")
            return
        if self.session is not None and self.handle.id in self.session.accepted:
            self.notify(
                f"{self.handle.id} already has an accepted quote: the trade stands.",
                title="Not cancelled",
                severity="warning",
            )
            return
        self.cancel_rfq(self.handle)

    @work(group="rfq-cancel", exit_on_error=False)
    async def cancel_rfq(self, handle: RfqHandle) -> None:
        if self.session is None:
            return
        try:
            await self.session.cancel(handle)
        except (RfqError, BusError, PeerError) as exc:
            self.notify(str(exc), title="Cancel failed", severity="error")
            return
        self.post_message(RfqClosed(handle.id, "cancelled"))
        self.notify(
            f"{handle.id} withdrawn: its quotes can no longer be accepted.", title="RFQ cancelled"
        )

    # -- standing --------------------------------------------------------------------------

    def on_standing_loaded(self, event: StandingLoaded) -> None:
        """Say once who the chain newly says may not trade; the board redraws their quotes."""
        for member, status in sorted(event.standing.items()):
            if self.standing.get(member) != status:
                if member == self.terminal.member_id:
                    said = f"You are {status} on chain: you cannot trade."
                else:
                    said = f"{member} is {status} on chain: its quotes cannot be accepted."
                self.notify(said, title="Standing", severity="warning")
        self.standing = dict(event.standing)
        self.quotes.redraw()

    # -- blotter ---------------------------------------------------------------------------

    def on_contracts_loaded(self, event: ContractsLoaded) -> None:
        views = sorted(event.contracts, key=lambda v: v.ordinal, reverse=True)
        self.contracts = {v.id: v for v in views}
        self.query_one("#contracts", Table).refill((v.id, contract_cells(v)) for v in views)
        self.query_one(PnlBars).items = tuple((v.id, contract_pnl(v)) for v in views[:12])
        live = [v for v in views if not v.status.terminal]
        mtm = sum(v.client_mtm or 0.0 for v in live)
        pnl = sum(contract_pnl(v) or 0.0 for v in views)
        margin = sum(v.initial_margin for v in live)
        vm = sum(v.vm_balance for v in live)
        calls = sum(1 for v in live if v.margin_call is not None)
        summary = Text.assemble(
            (f" {fmt.count(len(views), 'contract')}", "bold"),
            f" · {len(live)} open · MTM ",
            fmt.signed(mtm),
            f" · IM {fmt.money(margin)} · VM received ",
            fmt.signed(vm),
            " · P&L ",
            fmt.signed(pnl),
            (f" · {fmt.count(calls, 'margin call')}" if calls else "", "bold yellow"),
            (f"   as of height {event.height}", "dim"),
        )
        self.query_one("#blotter-summary", Static).update(summary, layout=False)
        if views and (not self.mtm_history or self.mtm_history[-1] != pnl):
            self.mtm_history = [*self.mtm_history, pnl][-120:]
        self.query_one("#mtm-chart", Sparkline).data = self.mtm_history
        caption = Text.assemble("P&L now ", fmt.signed(pnl))
        if self.mtm_history:
            caption.append(
                f"  ({fmt.count(len(self.mtm_history), 'mark')},"
                f" low {fmt.money(min(self.mtm_history))},"
                f" high {fmt.money(max(self.mtm_history))})",
                style="dim",
            )
        self.query_one("#mtm-caption", Static).update(caption, layout=False)
        self.note_height(event.height)

    # -- credit ----------------------------------------------------------------------------

    def on_credit_loaded(self, event: CreditLoaded) -> None:
        credit = event.credit
        if credit.score is not None and (
            not self.rating_history or self.rating_history[-1] != credit.score
        ):
            self.rating_history = [*self.rating_history, credit.score][-120:]
        card = Text()
        card.append(f"{credit.grade or '—'}\n", style="bold cyan")
        card.append("score ", style="dim")
        card.append(f"{fmt.number(credit.score, 1)}\n", style="bold")
        card.append("external ", style="dim")
        card.append(f"{credit.external or '—'}\n")
        card.append("settled/terminated trades count toward it (formula 1)", style="dim")
        self.query_one("#rating-card", Static).update(card, layout=False)
        self.query_one("#rating-chart", Sparkline).data = self.rating_history
        self.query_one("#rating-caption", Static).update(
            Text(
                f"{fmt.count(len(self.rating_history), 'change')} seen this session"
                if self.rating_history
                else "No rating on chain yet.",
                style="dim",
            ),
            layout=False,
        )
        self.query_one("#guarantees", Table).refill(
            (
                g.id,
                [
                    g.id,
                    g.guarantor,
                    Text(fmt.micros(g.line), justify="right"),
                    Text(fmt.micros(g.allocated), justify="right"),
                    Text(fmt.micros(g.line - g.allocated - g.paid), justify="right"),
                    Text(fmt.micros(g.paid), justify="right"),
                    f"{g.asset_id} ({fmt.micros(g.asset_value)})",
                    Text(fmt.words(g.status), style="green" if g.status == "live" else "dim"),
                ],
            )
            for g in credit.guarantees
        )
        per_dealer: dict[str, list[int]] = {}
        for trade in credit.trades:
            row = per_dealer.setdefault(trade.dealer, [0, 0, 0, 0, 0])
            row[0] += 1
            row[1] += trade.dealer_line
            row[2] += sum(amount for _, amount in trade.guarantee_cover)
            row[3] += trade.cash_margin
            row[4] += trade.initial_margin
        self.query_one("#dealer-lines", Table).refill(
            (
                dealer,
                [
                    dealer,
                    Text(f"{int(row[0])}", justify="right"),
                    Text(fmt.micros(row[1]), justify="right"),
                    Text(fmt.micros(row[2]), justify="right"),
                    Text(fmt.micros(row[3]), justify="right"),
                    Text(fmt.micros(row[4]), justify="right"),
                ],
            )
            for dealer, row in sorted(per_dealer.items())
        )

    # -- chain -----------------------------------------------------------------------------

    def on_status_loaded(self, event: StatusLoaded) -> None:
        self.terminal.business_date = event.status.business_date
        self.note_height(event.status.height)
        self.ticket.validate()

    def on_headers_loaded(self, event: HeadersLoaded) -> None:
        self.query_one("#headers", Table).refill(
            (
                str(h.height),
                [
                    Text(str(h.height), style="bold", justify="right"),
                    fmt.short_hash(h.hash, 16),
                    fmt.timestamp(h.timestamp_ms),
                    h.proposer,
                    Text(str(h.round), justify="right"),
                    Text(str(h.tx_count), justify="right", style="bold" if h.tx_count else "dim"),
                    fmt.short_hash(h.state_root, 16),
                ],
            )
            for h in event.headers
        )
        if event.headers:
            self.note_height(max(h.height for h in event.headers))
        self.terminal.chain_ok = True

    def on_tx_submitted(self, event: TxSubmitted) -> None:
        current = self.transactions.get(event.tx_id)
        receipt = current[2] if current else None
        self.transactions[event.tx_id] = (event.kind, event.label, receipt)
        self._show_transactions()

    def on_receipt_arrived(self, event: ReceiptArrived) -> None:
        receipt = event.receipt
        kind, label, _ = self.transactions.get(receipt.tx_id, (receipt.kind, "", None))
        if not label and receipt.refs:
            label = receipt.refs[0]
        self.transactions[receipt.tx_id] = (kind, label, receipt)
        self._show_transactions()
        if receipt.ok and receipt.height:
            self.note_height(receipt.height)
            self._wake.set()  # something of ours changed on chain: read the delta now

    def _show_transactions(self) -> None:
        rows = []
        for tx_id, (kind, label, receipt) in reversed(self.transactions.items()):
            if receipt is None:
                finality = Text("pending…", style="yellow")
            elif receipt.ok:
                finality = Text(f"final at height {receipt.height}", style="green")
            elif receipt.index < 0:
                finality = Text(f"refused at admission: {receipt.reason}", style="red")
            else:
                finality = Text(f"refused in block {receipt.height}: {receipt.reason}", style="red")
            rows.append((tx_id, [fmt.short_hash(tx_id, 16), fmt.words(kind), label, finality]))
        self.query_one("#transactions", Table).refill(rows)

    # -- navigation and palette ------------------------------------------------------------

    def action_show_tab(self, tab: str) -> None:
        self.show_pane(tab)

    def palette_commands(self) -> list[tuple[str, str, Callable[[], object]]]:
        commands: list[tuple[str, str, Callable[[], object]]] = [
            ("Send RFQ", "send the ticket to the dealers", self.action_send),
            ("Accept best quote", "take the best live quote", self.action_accept_best),
            ("Cancel RFQ", "withdraw the RFQ in flight", self.action_cancel),
            ("Refresh chain", "poll the authorities now", self.action_refresh),
        ]
        for tab in TABS:
            commands.append(
                (f"Show {tab}", f"switch to the {tab} tab", partial(self.action_show_tab, tab))
            )
        for template in templates():
            commands.append(
                (
                    f"Ticket: {template.label}",
                    "set the ticket's template",
                    partial(self._set_template, template.name),
                )
            )
        return commands

    def _set_template(self, template: str) -> None:
        self.action_show_tab("trade")
        self.ticket.set_field("template", template)
