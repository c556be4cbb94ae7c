"""Dealer mode: incoming RFQs answered by an embedded ``DealerBot``, automatically or by hand.

``DeskDealerBot`` is a ``DealerBot`` whose strategy is a desk wrapper around the default
model: with auto-quote on, every RFQ gets the model's answer (moved by the desk's skew in
basis points); with it off, RFQs wait in the table until the user types a quote (the model's
price pre-filled, overridable) or declines, within the RFQ's deadline. Either way the bot
signs, checks and sends the answer exactly as the headless ``botc dealer`` does.

The positions tab reads every page of the dealer's trades (``LedgerClient.query_all``), so
trade counts per client are complete; a client the chain says may not trade
(``DealerBot.standing``) reads DEFAULTED in place of its usage bar there, and "defaulted"
beside its name in the RFQ table.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import structlog
from nats.errors import Error as NatsError
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.widgets import (
    Button,
    DataTable,
    Footer,
    Input,
    Label,
    Static,
    Switch,
    TabbedContent,
    TabPane,
)

from bus.client import Bus
from bus.errors import BusError
from peers.deltas import DeltaView
from peers.desk import DeskDealerBot, ExposureRow, ManualAnswer
from peers.errors import PeerError
from peers.ledger_client import LedgerUnavailable, QueryDenied
from rfq.errors import RfqError
from rfq.instruments import CATALOG
from rfq.ledger.state import Trade
from rfq.messages import Decline, Quote, Rfq
from rfq.queries import PAGE_LIMIT, StatusQuery, StatusReply, TradesQuery, TradesReply
from rfq.rating import grade_of
from tui import format as fmt
from tui.messages import (
    BookLoaded,
    BusReady,
    ChainUnavailable,
    RfqAnswered,
    RfqArrived,
)
from tui.screen import RoleScreen
from tui.timing import sleep_or_wake
from tui.widgets import PickTable, StatusBar, Table

log = structlog.get_logger(__name__)


def _rfq_id(trade: Trade) -> str:
    return trade.rfq_id


MANUAL_FIELDS = ("manual-price", "manual-im", "manual-line", "manual-ttl")
TRADES_SHOWN = 500
"""The newest trades the positions tab lists (counts and exposure cover every trade)."""


@dataclass
class RfqLine:
    """One RFQ in the dealer's table and what became of it."""

    rfq: Rfq
    arrived_ms: int
    rating: float | None
    suggestion: Quote | Decline | None = None
    answer: Quote | Decline | None = None
    state: str = "pricing"  # pricing | waiting | quoted | declined | lapsed | cancelled
    manual: bool = False


class DealerScreen(RoleScreen):
    """A dealer's desk: incoming RFQs, auto/manual quoting, positions and exposure."""

    # Letters act only while no field has focus (in a field they type); F6/F7 and Enter act
    # from the fields too, and Escape leaves a field for the RFQ table.
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("f2", "show_tab('rfqs')", "RFQs"),
        Binding("f3", "show_tab('positions')", "Positions"),
        Binding("ctrl+t", "toggle_auto", "Auto-quote on/off", priority=True),
        Binding("q", "quote", "Quote", show=False),
        Binding("d", "decline", "Decline", show=False),
        Binding("f6", "quote", "Quote"),
        Binding("f7", "decline", "Decline"),
        Binding("escape", "leave_field", "Leave field", show=False),
        Binding("r", "refresh", "Refresh"),
    ]

    def __init__(self, *, auto_quote: bool = True) -> None:
        super().__init__(id="dealer")
        self.auto_quote = auto_quote
        self.bot: DeskDealerBot | None = None
        self.lines: dict[str, RfqLine] = {}
        # The RFQ the manual panel is for. Once the dealer picks one (cursor or click) it
        # stays there until the dealer moves; the newest waiting RFQ is picked only while
        # the dealer has not picked (or the automatic pick stopped waiting).
        self.manual_rfq: str | None = None
        self.manual_picked = False
        self._picks_seen = 0
        self.standing: dict[str, str] = {}
        """Who the chain says may not trade, as the bot last read it."""
        self._wake = asyncio.Event()

    # -- layout ----------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        app = self.terminal
        yield StatusBar(app.member_id, app.member.name, "dealer")
        with TabbedContent(initial="rfqs-tab", id="tabs"):
            with TabPane("RFQs", id="rfqs-tab"):
                with Horizontal(id="dealer-controls"):
                    yield Label("Auto-quote")
                    yield Switch(self.auto_quote, id="auto")
                    yield Label("Skew bps")
                    yield Input("0", id="skew", compact=True)
                    yield Static("", id="dealer-stats")
                rfqs = PickTable(
                    [
                        ("Arrived", "time"),
                        ("RFQ", "rfq"),
                        ("Client", "client"),
                        ("Grade", "grade"),
                        ("Product", "product"),
                        ("Side", "side"),
                        ("Qty", "qty"),
                        ("Maturity", "maturity"),
                        ("Deadline", "deadline"),
                        ("Model", "model"),
                        ("Answer", "answer"),
                    ],
                    drop_order=("time", "maturity", "grade", "model", "product"),
                    id="rfqs",
                    classes="panel",
                )
                rfqs.border_title = "Incoming RFQs"
                yield rfqs
                yield Static("", id="desk-news")
                with Vertical(id="manual", classes="panel") as manual:
                    manual.border_title = "Manual quote"
                    manual.border_subtitle = (
                        "q/F6 quote · d/F7 decline · Enter sends · Esc leaves a field"
                    )
                    yield Static("", id="manual-summary")
                    with Horizontal(classes="manual-row"):
                        yield Label("Price")
                        yield Input("", id="manual-price", compact=True)
                        yield Label("IM rate")
                        yield Input("", id="manual-im", compact=True)
                    with Horizontal(classes="manual-row"):
                        yield Label("Credit line")
                        yield Input("", id="manual-line", compact=True)
                        yield Label("Valid for s")
                        yield Input("30", id="manual-ttl", compact=True)
                        yield Button("Quote", variant="success", id="manual-quote", compact=True)
                        yield Button("Decline", variant="error", id="manual-decline", compact=True)
            with TabPane("Positions", id="positions"):
                with Horizontal(id="positions-top"):
                    exposures = Table(
                        [
                            ("Client", "client"),
                            ("Grade", "grade"),
                            ("Trades", "trades"),
                            ("Exposure", "exposure"),
                            ("Held for quotes", "held"),
                            ("Limit", "limit"),
                            ("Usage", "usage"),
                        ],
                        drop_order=("grade", "held", "trades"),
                        id="exposures",
                        classes="panel",
                    )
                    exposures.border_title = "Exposure per client"
                    yield exposures
                    inventory = Table(
                        [("Underlying", "id"), ("Units", "units"), ("Last", "last")],
                        id="inventory",
                        classes="panel",
                    )
                    inventory.border_title = "Inventory"
                    yield inventory
                trades = Table(
                    [
                        ("Height", "height"),
                        ("RFQ / contract", "rfq"),
                        ("Client", "client"),
                        ("Price", "price"),
                        ("Initial margin", "im"),
                        ("Dealer line", "line"),
                        ("Guarantee", "guarantee"),
                        ("Cash margin", "cash"),
                    ],
                    id="dealer-trades",
                    classes="panel",
                )
                trades.border_title = "My trades on chain"
                yield trades
        yield Footer()

    def on_mount(self) -> None:
        self.set_interval(0.5, self._tick)
        self._show_stats()
        self._show_manual()

    # -- the bot ---------------------------------------------------------------------------

    def on_bus_ready(self, event: BusReady) -> None:
        self.start_bot(event.bus)

    @work(group="bot", exclusive=True, exit_on_error=False)
    async def start_bot(self, bus: Bus) -> None:
        app = self.terminal
        bot = DeskDealerBot(
            bus,
            app.genesis,
            auto_quote=self.auto_quote,
            on_arrival=self._on_arrival,
            on_answer=self._on_answer,
        )
        bot.desk.skew_bps = self._skew()
        try:
            await bot.start(follow_chain=True, every_s=app.poll_s)
        except (BusError, PeerError, RfqError, NatsError) as exc:
            if self.terminal.bus is bus:  # not the app closing under the worker
                what = str(exc) or type(exc).__name__
                self.notify(what, title="Dealer bot failed", severity="error")
            return
        self.bot = bot
        self.notify(
            f"Quoting as {bot.me} ({'auto' if self.auto_quote else 'manual'}).", title="Ready"
        )
        self.poll_book()

    def _on_arrival(
        self, rfq: Rfq, arrived_ms: int, suggestion: Quote | Decline | None, waits: bool
    ) -> None:
        rating = self.bot.ratings.get(rfq.client) if self.bot else None
        self.post_message(
            RfqArrived(
                rfq, rating=rating, arrived_ms=arrived_ms, suggestion=suggestion, waits=waits
            )
        )

    def _on_answer(self, rfq_id: str, answer: Quote | Decline | None, manual: bool) -> None:
        self.post_message(RfqAnswered(rfq_id, answer, manual=manual))

    @work(group="book", exclusive=True, exit_on_error=False)
    async def poll_book(self) -> None:
        app = self.terminal
        warned = False
        trades: tuple[DeskDealerBot, DeltaView[Trade]] | None = None
        while self.bot is not None:
            bot = self.bot
            try:
                status = await bot.ledger.query(StatusQuery())
                if isinstance(status, StatusReply):
                    self.terminal.business_date = status.business_date
                    self.terminal.chain_height = max(self.terminal.chain_height, status.height)
                page = int(getattr(app, "page_size", None) or PAGE_LIMIT)
                if trades is None or trades[0] is not bot:
                    # The dealer's trades kept by deltas: a poll reads only the new ones.
                    query = TradesQuery(party=bot.me, limit=page)
                    trades = (bot, DeltaView(query, TradesReply, _rfq_id))
                view = trades[1]
                await view.refresh(bot.ledger)
                newest = sorted(view.rows.values(), key=lambda t: (-t.height, t.rfq_id))
                self.post_message(BookLoaded(bot.book_view(), tuple(newest)))
                warned = False
            except (LedgerUnavailable, QueryDenied, BusError) as exc:
                if not warned:
                    self.post_message(ChainUnavailable(str(exc)))
                    warned = True
            except Exception as exc:
                log.exception("dealer_poll_failed")
                self.post_message(ChainUnavailable(repr(exc)))
            await sleep_or_wake(self._wake, app.poll_s)

    # -- RFQ table -------------------------------------------------------------------------

    def on_rfq_arrived(self, event: RfqArrived) -> None:
        rfq = event.rfq
        line = self.lines.get(rfq.id)
        if line is None:
            line = self.lines[rfq.id] = RfqLine(rfq, event.arrived_ms, event.rating)
        line.suggestion = event.suggestion
        if line.state == "pricing" and event.waits:
            line.state = "waiting"
        self._redraw()
        if line.state == "waiting":
            self._news(
                f"RFQ {rfq.id} waits for your quote: {rfq.client} "
                f"{rfq.terms.quantity:g} × {fmt.product(rfq.terms)}"
            )
        self._auto_pick()
        self._show_manual()

    def on_rfq_answered(self, event: RfqAnswered) -> None:
        line = self.lines.get(event.rfq_id)
        if line is None:
            return
        line.answer = event.answer
        line.manual = event.manual
        if event.answer is None:
            line.state = "cancelled" if event.rfq_id in self._cancelled() else "lapsed"
        else:
            line.state = "quoted" if isinstance(event.answer, Quote) else "declined"
        self._redraw()
        if event.manual:
            what = (
                f"quoted {fmt.price(event.answer.price)}"
                if isinstance(event.answer, Quote)
                else "declined"
                if event.answer is not None
                else "not sent: too late"
            )
            self._news(f"{event.rfq_id}: {what}")
            if event.rfq_id == self.manual_rfq and self._typing():
                self.query_one("#rfqs", Table).focus()  # done: back to the table to pick
        self._auto_pick()
        self._show_manual()

    def _cancelled(self) -> set[str]:
        return self.bot.cancelled if self.bot else set()

    def _tick(self) -> None:
        now_ms = int(self.terminal.clock() * 1000)
        changed = False
        cancelled = self._cancelled()
        for line in self.lines.values():
            if line.state == "waiting":
                if line.rfq.id in cancelled:
                    line.state = "cancelled"
                    changed = True
                elif now_ms >= line.rfq.deadline_ms:
                    line.state = "lapsed"
                    if self.bot is not None:
                        self.bot.waiting.pop(line.rfq.id, None)
                    changed = True
        if changed or any(line.state in ("waiting", "pricing") for line in self.lines.values()):
            self._redraw()
        if changed:
            self._auto_pick()
            self._show_manual()

    def _redraw(self) -> None:
        now_ms = int(self.terminal.clock() * 1000)
        lines = sorted(self.lines.values(), key=lambda x: (x.arrived_ms, x.rfq.id), reverse=True)
        self.query_one("#rfqs", Table).refill(
            (line.rfq.id, self._cells(line, now_ms)) for line in lines[:500]
        )
        self._show_stats()

    def _cells(self, line: RfqLine, now_ms: int) -> list[Any]:
        rfq = line.rfq
        terms = rfq.terms
        grade = str(grade_of(line.rating)) if line.rating is not None else "—"
        remaining = (rfq.deadline_ms - now_ms) / 1000
        open_ = line.state in ("waiting", "pricing")
        deadline = (
            Text(fmt.countdown(remaining), style="bold yellow" if remaining < 3 else "yellow")
            if open_
            else Text("closed", style="dim")
        )
        barred = self.standing.get(rfq.client)
        return [
            fmt.timestamp(line.arrived_ms),
            Text(rfq.id, style="bold"),
            Text(f"{rfq.client} {barred}", style="bold red") if barred else rfq.client,
            grade,
            fmt.product(terms),
            fmt.side_text(terms),
            Text(f"{terms.quantity:g}", justify="right"),
            str(terms.maturity),
            deadline,
            self._model_text(line.suggestion),
            self._answer_text(line),
        ]

    @staticmethod
    def _model_text(suggestion: Quote | Decline | None) -> Text:
        if isinstance(suggestion, Quote):
            return Text(fmt.price(suggestion.price), justify="right")
        if isinstance(suggestion, Decline):
            return Text(f"decline: {fmt.words(suggestion.code)}", style="dim")
        return Text("")

    @staticmethod
    def _answer_text(line: RfqLine) -> Text:
        by = " (manual)" if line.manual else ""
        if line.state == "quoted" and isinstance(line.answer, Quote):
            return Text(f"quoted {fmt.price(line.answer.price)}{by}", style="green")
        if line.state == "declined" and isinstance(line.answer, Decline):
            return Text(f"declined: {fmt.words(line.answer.code)}{by}", style="red")
        if line.state == "waiting":
            return Text("● waiting for you", style="bold yellow")
        if line.state == "pricing":
            return Text("pricing…", style="dim")
        if line.state == "cancelled":
            return Text("cancelled by client", style="dim")
        return Text("lapsed (no answer)", style="dim")

    def _show_stats(self) -> None:
        states = [line.state for line in self.lines.values()]
        text = Text()
        text.append(fmt.count(len(states), "RFQ"), style="bold")
        text.append(f" · {states.count('quoted')} quoted · {states.count('declined')} declined")
        waiting = states.count("waiting")
        text.append(f" · {waiting} waiting", style="bold yellow" if waiting else "")
        text.append(f" · {states.count('lapsed')} lapsed")
        me = self.terminal.member_id
        if me in self.standing:
            text.append(
                f" · {me} is {self.standing[me]} on chain: it declines every RFQ",
                style="bold red",
            )
        self.query_one("#dealer-stats", Static).update(text, layout=False)

    # -- manual quoting --------------------------------------------------------------------

    def _news(self, text: str) -> None:
        """One status line for what happened last (toasts per RFQ would pile up over the
        table when RFQs stream in)."""
        now_ms = int(self.terminal.clock() * 1000)
        news = Text.assemble((fmt.timestamp(now_ms), "dim"), "  ", text)
        self.query_one("#desk-news", Static).update(news, layout=False)

    def _selected_line(self) -> RfqLine | None:
        """The manual panel's RFQ, while it waits for an answer."""
        line = self.lines.get(self.manual_rfq) if self.manual_rfq else None
        return line if line is not None and line.state == "waiting" else None

    def _typing(self) -> bool:
        focused = self.focused
        return isinstance(focused, Input) and focused.id in MANUAL_FIELDS

    def _may_pick_for_the_dealer(self) -> bool:
        """Pick the newest waiting RFQ only if the dealer has not picked one and is not
        typing, and the panel's RFQ (if any) no longer waits."""
        return not self.manual_picked and not self._typing() and self._selected_line() is None

    def _auto_pick(self) -> None:
        """While the dealer has not picked one: the newest RFQ that waits, cursor on it."""
        if not self._may_pick_for_the_dealer():
            return
        waiting = [line for line in self.lines.values() if line.state == "waiting"]
        if not waiting:
            return
        newest = max(waiting, key=lambda line: (line.arrived_ms, line.rfq.id))
        self._pick(newest.rfq.id, by_dealer=False)
        table = self.query_one("#rfqs", Table)
        if newest.rfq.id in table.rows:
            table.move_cursor(row=table.get_row_index(newest.rfq.id), animate=False)

    def _pick(self, rfq_id: str, *, by_dealer: bool) -> None:
        """Show ``rfq_id`` in the manual panel, its fields pre-filled with the model's answer."""
        self.manual_picked = by_dealer
        if rfq_id == self.manual_rfq:
            return
        self.manual_rfq = rfq_id
        line = self.lines.get(rfq_id)
        if line is None:
            return
        suggestion = line.suggestion
        if isinstance(suggestion, Quote):
            self._set_manual(
                suggestion.price, suggestion.initial_margin_rate, suggestion.credit_line
            )
        elif isinstance(suggestion, Decline):
            self._set_manual(None, 0.1, 0.0)

    @on(DataTable.RowHighlighted, "#rfqs")
    def _rfq_highlighted(self, event: DataTable.RowHighlighted) -> None:
        """The dealer moved the cursor (a key or a click): the panel follows. Highlights a
        refill or our own pick made, or left behind (the cursor moved on since), do not."""
        table = self.query_one("#rfqs", PickTable)
        key = event.row_key.value
        if key is None or key != table.selected_key or key not in self.lines:
            return  # left behind: the cursor has moved on
        if table.picks == self._picks_seen:
            return  # a refill or our own pick moved it
        self._picks_seen = table.picks
        self._pick(key, by_dealer=True)
        self._show_manual()

    def _show_manual(self) -> None:
        """The panel's summary: its RFQ and the model's answer, or what became of it."""
        summary = self.query_one("#manual-summary", Static)
        line = self.lines.get(self.manual_rfq) if self.manual_rfq else None
        waiting = sum(1 for x in self.lines.values() if x.state == "waiting")
        if line is None:
            if waiting:
                hint = f"{fmt.count(waiting, 'RFQ')} waiting: select one to quote or decline."
            elif self.auto_quote:
                hint = "Auto-quote is on: the model answers every RFQ (^T to quote by hand)."
            else:
                hint = "No RFQ waiting. New RFQs wait here for your quote until their deadline."
            summary.update(Text(hint, style="dim"), layout=False)
            return
        rfq, suggestion = line.rfq, line.suggestion
        text = Text.assemble(
            (f"{rfq.id} ", "bold"),
            f"{rfq.client} ",
            fmt.side_text(rfq.terms),
            f" {rfq.terms.quantity:g} × {fmt.product(rfq.terms)} to {rfq.terms.maturity}\n",
        )
        if line.state != "waiting":
            others = f"{fmt.count(waiting, 'other RFQ')} waiting" if waiting else "none waiting"
            text.append_text(self._answer_text(line))
            text.append(f" · select another RFQ ({others})", style="dim")
        elif isinstance(suggestion, Quote):
            text.append(
                f"model {fmt.price(suggestion.price)}, IM {suggestion.initial_margin_rate:.1%}, "
                f"line {fmt.money(suggestion.credit_line)}",
                style="dim",
            )
        elif isinstance(suggestion, Decline):
            text.append(f"model declines: {suggestion.text}", style="red")
        summary.update(text, layout=False)

    def _set_manual(self, price: float | None, im_rate: float, line: float) -> None:
        values = {
            "#manual-price": "" if price is None else f"{price:g}",
            "#manual-im": f"{im_rate:g}",
            "#manual-line": f"{line:g}",
        }
        for selector, value in values.items():
            self.query_one(selector, Input).value = value

    def _manual_answer(self) -> ManualAnswer:
        def number(selector: str, label: str) -> float:
            raw = self.query_one(selector, Input).value.strip().replace(",", "")
            try:
                return float(raw)
            except ValueError:
                raise ValueError(f"{label} {raw!r} is not a number") from None

        price = number("#manual-price", "price")
        im_rate = number("#manual-im", "IM rate")
        line = number("#manual-line", "credit line")
        ttl = number("#manual-ttl", "validity")
        if im_rate < 0 or line < 0 or ttl <= 0:
            raise ValueError("IM rate and credit line must be >= 0, validity > 0")
        return ManualAnswer(price=price, initial_margin_rate=im_rate, credit_line=line, ttl_s=ttl)

    def action_quote(self) -> None:
        """From the table: go to the price field; from a manual field: send the quote."""
        line = self._selected_line()
        if line is None:
            self.notify("Select an RFQ that waits for an answer.", severity="warning")
            return
        if not self._typing():
            self.query_one("#manual-price", Input).focus()
            return
        self._send_manual()

    def action_leave_field(self) -> None:
        if isinstance(self.focused, Input):
            self.query_one("#rfqs", Table).focus()

    @on(Button.Pressed, "#manual-quote")
    @on(Input.Submitted, "#manual-price, #manual-im, #manual-line, #manual-ttl")
    def _send_manual(self) -> None:
        line = self._selected_line()
        if line is None:
            self.notify("Select an RFQ that waits for an answer.", severity="warning")
            return
        try:
            answer = self._manual_answer()
        except ValueError as exc:
            self.notify(str(exc), title="Quote not sent", severity="warning")
            return
        self.send_answer(line.rfq.id, answer)

    @on(Button.Pressed, "#manual-decline")
    def action_decline(self) -> None:
        line = self._selected_line()
        if line is None:
            self.notify("Select an RFQ that waits for an answer.", severity="warning")
            return
        self.send_answer(line.rfq.id, ManualAnswer(decline="declined by the desk"))

    @work(group="answer", exit_on_error=False)
    async def send_answer(self, rfq_id: str, answer: ManualAnswer) -> None:
        if self.bot is None:
            self.notify("The dealer bot is not running yet.", severity="warning")
            return
        try:
            await self.bot.answer(rfq_id, answer)
        except (PeerError, BusError, RfqError) as exc:
            self.notify(str(exc), title="Answer not sent", severity="error")
            self._tick()

    # -- controls --------------------------------------------------------------------------

    def _skew(self) -> float:
        try:
            value = float(self.query_one("#skew", Input).value or 0)
        except ValueError:
            return 0.0
        return value if abs(value) <= 1000 else 0.0

    @on(Input.Changed, "#skew")
    def _skew_changed(self) -> None:
        if self.bot is not None:
            self.bot.desk.skew_bps = self._skew()

    def action_toggle_auto(self) -> None:
        switch = self.query_one("#auto", Switch)
        switch.value = not switch.value

    @on(Switch.Changed, "#auto")
    def _auto_changed(self, event: Switch.Changed) -> None:
        self.auto_quote = event.value
        if self.bot is not None:
            self.bot.auto_quote = event.value
            if event.value and self.bot.waiting:
                self.answer_waiting()
        self.notify(
            "The model answers every RFQ." if event.value else "RFQs wait for your quote.",
            title=f"Auto-quote {'on' if event.value else 'off'}",
            timeout=3,
        )
        self._show_manual()

    @work(group="answer", exit_on_error=False)
    async def answer_waiting(self) -> None:
        if self.bot is not None:
            try:
                await self.bot.answer_waiting_with_model()
            except (PeerError, BusError, RfqError) as exc:
                self.notify(str(exc), title="Auto-quote failed", severity="error")

    def action_refresh(self) -> None:
        self._wake.set()

    def action_show_tab(self, tab: str) -> None:
        self.show_pane("rfqs-tab" if tab == "rfqs" else tab)

    # -- positions -------------------------------------------------------------------------

    def on_book_loaded(self, event: BookLoaded) -> None:
        if event.book.standing != self.standing:
            self.standing = dict(event.book.standing)
            self._redraw()
        counts: dict[str, int] = {}
        for trade in event.trades:
            counts[trade.client] = counts.get(trade.client, 0) + 1
        rows = []
        clients = {row.client: row for row in event.book.exposures}
        for client in sorted(set(clients) | set(counts)):
            row = clients.get(client) or ExposureRow(client, None, 0.0, 0.0, 0.0)
            grade = str(grade_of(row.rating)) if row.rating is not None else "—"
            used = row.exposure + row.held
            standing = row.standing or self.standing.get(client)
            rows.append(
                (
                    client,
                    [
                        Text(client, style="bold red" if standing else "bold"),
                        grade,
                        Text(str(counts.get(client, 0)), justify="right"),
                        Text(fmt.money(row.exposure), justify="right"),
                        Text(fmt.money(row.held), justify="right"),
                        Text(fmt.money(row.limit) if row.limit else "—", justify="right"),
                        Text(standing.upper().center(10), style="bold white on red")
                        if standing
                        else fmt.bar(used / row.limit if row.limit else 0.0),
                    ],
                )
            )
        self.query_one("#exposures", Table).refill(rows)
        market = self.bot.market if self.bot else None
        self.query_one("#inventory", Table).refill(
            (
                underlying,
                [
                    Text(underlying, style="bold"),
                    fmt.signed(units, fmt.number(units, 0)),
                    Text(
                        fmt.price(market.latest[underlying].price)
                        if market and underlying in market.latest
                        else fmt.DASH,
                        justify="right",
                    ),
                ],
            )
            for underlying, units in event.book.inventory
            if underlying in CATALOG or units
        )
        trades = self.query_one("#dealer-trades", Table)
        shown = event.trades[:TRADES_SHOWN]  # newest first
        trades.border_title = (
            f"My trades on chain: showing the newest {len(shown)} of {len(event.trades):,}"
            if len(shown) < len(event.trades)
            else f"My trades on chain: {fmt.count(len(event.trades), 'trade')}"
        )
        trades.refill(
            (
                trade.rfq_id,
                [
                    Text(str(trade.height), justify="right"),
                    trade.contract_id,
                    trade.client,
                    Text(fmt.price(trade.price), justify="right"),
                    Text(fmt.micros(trade.initial_margin), justify="right"),
                    Text(fmt.micros(trade.dealer_line), justify="right"),
                    Text(
                        fmt.micros(sum(a for _, a in trade.guarantee_cover)),
                        justify="right",
                    ),
                    Text(fmt.micros(trade.cash_margin), justify="right"),
                ],
            )
            for trade in shown
        )
        if event.trades:
            top = max(t.height for t in event.trades)
            if top > self.terminal.chain_height:
                self.terminal.chain_height = top
        self.terminal.chain_ok = True

    def palette_commands(self) -> list[tuple[str, str, Callable[[], object]]]:
        return [
            ("Toggle auto-quote", "quote with the model, or by hand", self.action_toggle_auto),
            ("Quote selected RFQ", "send the manual quote", self.action_quote),
            ("Decline selected RFQ", "decline the selected RFQ", self.action_decline),
            ("Show RFQs", "incoming RFQs", lambda: self.action_show_tab("rfqs")),
            ("Show positions", "exposure and inventory", lambda: self.action_show_tab("positions")),
            ("Refresh positions", "poll the chain now", self.action_refresh),
        ]
