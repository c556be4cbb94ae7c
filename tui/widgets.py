"""Widgets the three modes share: status bar, tables that refill in place, charts, quotes."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from rich.cells import cell_len
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.reactive import reactive
from textual.widget import Widget
from textual.widgets import Button, DataTable, Static

from rfq.contracts.model import ContractView
from rfq.instruments import Side
from rfq.messages import Decline, Quote, Rfq
from tui import format as fmt
from tui.model import MarketRow, contract_pnl

Row = tuple[str, Sequence[Any]]


class Table(DataTable[Any]):
    """A row-cursor table refilled from scratch that keeps the cursor on the same row key.

    ``drop_order`` names columns the table may leave out, first to last, while the rest would
    not fit its width (a 100-column terminal): the columns that matter most stay in view.
    """

    SCROLLBAR = 2  # room the vertical scrollbar takes once the rows overflow

    def __init__(
        self,
        columns: Sequence[tuple[str, str]],
        *,
        drop_order: Sequence[str] = (),
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("cursor_type", "row")
        kwargs.setdefault("zebra_stripes", True)
        super().__init__(**kwargs)
        self._all_columns = list(columns)
        self._columns_spec = list(columns)
        self._drop_order = tuple(drop_order)
        self._given: list[tuple[str, list[Any]]] = []
        self._shown: list[tuple[str, list[Any]]] | None = None

    def on_mount(self) -> None:
        for label, key in self._columns_spec:
            self.add_column(label, key=key)

    def set_columns(self, columns: Sequence[tuple[str, str]]) -> None:
        """Show other columns (a narrower screen): the next ``refill`` redraws every row."""
        if list(columns) == list(self._columns_spec):
            return
        self._columns_spec = list(columns)
        self._shown = None
        self.clear(columns=True)
        for label, key in columns:
            self.add_column(label, key=key)

    def refill(self, rows: Iterable[Row]) -> None:
        """Show exactly ``rows`` (skipped when nothing changed, so polls cost no redraw)."""
        wanted = [(key, list(cells)) for key, cells in rows]
        if self._drop_order:
            self._given = wanted
            wanted = self._fit(wanted)
        if wanted == self._shown:
            return
        self._shown = wanted
        selected = self.selected_key
        self.clear()
        for key, cells in wanted:
            self.add_row(*cells, key=key)
        if selected is not None and selected in self.rows:
            self.move_cursor(row=self.get_row_index(selected), animate=False)

    def on_resize(self) -> None:
        if self._drop_order and self.is_mounted:
            self.refill(self._given)

    def _fit(self, rows: list[tuple[str, list[Any]]]) -> list[tuple[str, list[Any]]]:
        """Leave out columns in ``drop_order`` until the others fit; the rows' cells to show."""
        width = self.size.width
        if width <= 0:
            return rows
        if len(rows) + 1 > self.size.height:
            width -= self.SCROLLBAR
        widths = [
            max([cell_len(label), *(_cell_width(cells[i]) for _, cells in rows)]) + 2
            for i, (label, _) in enumerate(self._all_columns)
        ]
        keep = [key for _, key in self._all_columns]
        total = sum(widths)
        for key in self._drop_order:
            if total <= width:
                break
            keep.remove(key)
            total -= widths[[k for _, k in self._all_columns].index(key)]
        self.set_columns([column for column in self._all_columns if column[1] in keep])
        shown = [i for i, (_, key) in enumerate(self._all_columns) if key in keep]
        return [(key, [cells[i] for i in shown]) for key, cells in rows]

    async def _on_idle(self, event: Any) -> None:
        # DataTable measures new rows on idle but keeps lines it rendered before that with
        # the old column widths (seen after clear() + add_row() of the same keys): drop them.
        resized = self._require_update_dimensions
        await super()._on_idle(event)
        if resized:
            self._clear_caches()
            self.refresh()

    @property
    def selected_key(self) -> str | None:
        if not self.row_count or not self.is_valid_row_index(self.cursor_row):
            return None
        key = self.coordinate_to_cell_key(self.cursor_coordinate).row_key.value
        return key


class PickTable(Table):
    """A table that tells the user's cursor moves (keys, clicks) from a refill's: the
    ``picks`` counter goes up only for the user's."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.picks = 0

    def _picked(self) -> None:
        self.picks += 1

    def action_cursor_up(self) -> None:
        self._picked()
        super().action_cursor_up()

    def action_cursor_down(self) -> None:
        self._picked()
        super().action_cursor_down()

    def action_page_up(self) -> None:
        self._picked()
        super().action_page_up()

    def action_page_down(self) -> None:
        self._picked()
        super().action_page_down()

    def action_scroll_top(self) -> None:
        self._picked()
        super().action_scroll_top()

    def action_scroll_bottom(self) -> None:
        self._picked()
        super().action_scroll_bottom()

    async def _on_click(self, event: Any) -> None:
        self._picked()
        await super()._on_click(event)


class StatusBar(Static):
    """Who I am, whether the bus is up, and the chain's height (watches the app's state)."""

    DEFAULT_CSS = """
    StatusBar { height: 1; background: $panel; color: $text; padding: 0 1; }
    """

    def __init__(self, member: str, label: str, mode: str) -> None:
        super().__init__("", id="status-bar")
        self.member = member
        self.label = label
        self.mode = mode
        self._shown: Text | None = None

    def on_mount(self) -> None:
        for attribute in ("bus_status", "bus_detail", "chain_height", "business_date", "chain_ok"):
            self.watch(self.app, attribute, self._redraw, init=False)
        self._redraw()

    def on_resize(self) -> None:
        self._redraw()

    def _redraw(self, _: object = None) -> None:
        """The fullest line that fits: the server's address, then the member's name and
        mode, then words go before the connection, the height and the business date do."""
        width = self.size.width - 2  # padding
        for detail, who, short in ((True, True, False), (False, True, False), (False, False, True)):
            text = self._line(detail=detail, who=who, short=short)
            if width <= 0 or text.cell_len <= width:
                break
        if text != self._shown:
            self._shown = text
            self.update(text, layout=False)

    def _line(self, *, detail: bool, who: bool, short: bool) -> Text:
        app: Any = self.app
        status = str(app.bus_status)
        text = Text()
        text.append(" B-OTC ", style="bold reverse")
        text.append(f"  {self.member} ", style="bold")
        if who:
            text.append(f"{self.label} · {self.mode} mode", style="dim")
        else:
            text.append(self.mode, style="dim")
        bar = " │ " if short else "  │  "
        text.append(bar)
        if status == "connected":
            text.append("● connected", style="bold green")
            if app.bus_detail and detail:
                text.append(f" {app.bus_detail}", style="dim")
        elif status == "disconnected":
            text.append("✕ DISCONNECTED — reconnecting", style="bold white on red")
        elif status == "connecting":
            text.append("◌ connecting…", style="yellow")
        else:
            text.append("○ offline", style="dim")
        text.append(bar)
        if app.chain_height:
            height = "height" if short else "chain height"
            text.append(f"{height} {app.chain_height}", style="bold")
        else:
            text.append("chain —", style="dim")
        if not app.chain_ok:
            text.append(" (no authority answering)", style="yellow")
        if app.business_date:
            text.append(f"{bar}business date {app.business_date}")
        return text


# -- market ------------------------------------------------------------------------------------


class MarketWatch(Table):
    """Underlyings, last price, change against the previous close and recent closes."""

    class Picked(Message):
        """The user chose an underlying (Enter or click): the ticket takes it."""

        def __init__(self, underlying: str) -> None:
            self.underlying = underlying
            super().__init__()

    ESSENTIAL = (("Underlying", "id"), ("Last", "last"), ("Chg", "chg"), ("Chg %", "pct"))
    NAME = ("Name", "name")
    SPARK_WIDTH = 16  # closes shown in the spark column when there is room
    SPARK_MIN = 8  # narrower than this, the column goes (the chart below shows the closes)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(
            [self.ESSENTIAL[0], self.NAME, *self.ESSENTIAL[1:], ("Closes (20d)", "spark")],
            **kwargs,
        )
        self.market: dict[str, MarketRow] = {}
        self.spark_width = self.SPARK_WIDTH

    def show(self, rows: Sequence[MarketRow]) -> None:
        self.market = {row.underlying: row for row in rows}
        self._redraw()

    def on_resize(self) -> None:
        self._redraw()

    def _redraw(self) -> None:
        cells = {row.underlying: self._cells(row) for row in self.market.values()}
        self._fit_market(list(cells.values()))
        keys = [key for _, key in self._columns_spec]
        self.refill(
            (
                underlying,
                [
                    fmt.spark(self.market[underlying].closes, self.spark_width)
                    if key == "spark"
                    else by_key[key]
                    for key in keys
                ],
            )
            for underlying, by_key in cells.items()
        )

    @staticmethod
    def _cells(row: MarketRow) -> dict[str, Text]:
        """Every cell but the closes, whose width depends on the room left."""
        return {
            "id": Text(row.underlying, style="bold"),
            "name": Text(row.name),
            "last": Text(fmt.price(row.last), justify="right"),
            "chg": _right(fmt.signed(row.change, fmt.price(row.change)))
            if row.change is not None
            else Text(fmt.DASH, style="dim"),
            "pct": _right(fmt.signed(row.change_pct, fmt.percent(row.change_pct))),
        }

    def _fit_market(self, rows: Sequence[dict[str, Text]]) -> None:
        """Keep Underlying, Last, Chg and Chg % always in view; then the closes (narrowed
        down to ``SPARK_MIN``), then the name, as the width allows."""
        width = self.size.width - self.SCROLLBAR
        if width <= self.SCROLLBAR or not rows:  # not laid out yet: everything
            return

        def need(label: str, key: str) -> int:
            return max(len(label), *(row[key].cell_len for row in rows)) + 2  # cell padding

        left = width - sum(need(label, key) for label, key in self.ESSENTIAL)
        columns = list(self.ESSENTIAL)
        spark = min(self.SPARK_WIDTH, left - 2)
        if spark >= self.SPARK_MIN:
            columns.append(("Closes (20d)" if spark >= 12 else "Closes", "spark"))
            left -= spark + 2
        self.spark_width = spark
        if left >= need(*self.NAME):
            columns.insert(1, self.NAME)
        self.set_columns(columns)

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        if event.row_key.value:
            self.post_message(self.Picked(event.row_key.value))


def _cell_width(cell: Any) -> int:
    if isinstance(cell, Text):
        return max((cell_len(line) for line in cell.plain.splitlines()), default=0)
    return cell_len(str(cell))


def _right(text: Text) -> Text:
    text.justify = "right"
    return text


# -- quotes ------------------------------------------------------------------------------------


def best_quote(rfq: Rfq, quotes: Iterable[Quote], now_ms: int) -> Quote | None:
    """The best live price for the client: lowest when it buys, highest when it sells."""
    live = [q for q in quotes if q.valid_until_ms > now_ms]
    if not live:
        return None
    if rfq.terms.client_side == Side.BUY:
        return min(live, key=lambda q: (q.price, q.dealer))
    return max(live, key=lambda q: (q.price, q.dealer))


class QuotesTable(Table):
    """The quotes: the cursor follows the best quote until the user moves it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.pinned = False

    def action_cursor_up(self) -> None:
        self.pinned = True
        super().action_cursor_up()

    def action_cursor_down(self) -> None:
        self.pinned = True
        super().action_cursor_down()

    async def _on_click(self, event: Any) -> None:
        self.pinned = True
        await super()._on_click(event)


class QuotesBoard(Vertical):
    """The RFQ in flight: one row per dealer asked, quotes with countdowns, the best marked.

    A quote that cannot be accepted (expired, its RFQ cancelled, its dealer or this client
    defaulted on chain: ``standing``) says why in its status and is never the best.
    """

    def __init__(
        self,
        clock: Callable[[], float],
        *,
        me: str = "",
        standing: Callable[[], Mapping[str, str]] = dict,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.clock = clock
        self.me = me
        self.standing = standing
        self.rfq: Rfq | None = None
        self.addressed: tuple[str, ...] = ()
        self.answers: dict[str, Quote | Decline] = {}
        self.closed: str | None = None
        self.accepted: str | None = None
        self._header_len = 0

    def compose(self) -> ComposeResult:
        with Horizontal(id="quotes-bar"):
            yield Static("No RFQ yet: fill the ticket and press Ctrl+S.", id="quotes-header")
            yield Button("Accept", id="quote-accept", compact=True, action="screen.accept")
            yield Button("Accept best", id="quote-best", compact=True, action="screen.accept_best")
            yield Button("Cancel RFQ", id="quote-cancel", compact=True, action="screen.cancel")
        yield QuotesTable(
            [
                ("Dealer", "dealer"),
                ("Price", "price"),
                ("vs best", "diff"),
                ("IM rate", "im"),
                ("Credit line", "line"),
                ("Valid for", "valid"),
                ("Status", "status"),
            ],
            id="quotes-table",
        )

    @property
    def table(self) -> QuotesTable:
        return self.query_one("#quotes-table", QuotesTable)

    @property
    def quotes(self) -> list[Quote]:
        return [a for a in self.answers.values() if isinstance(a, Quote)]

    @property
    def cancelled(self) -> bool:
        return self.closed == "cancelled"

    def why_not(self, quote: Quote, now_ms: int | None = None) -> str | None:
        """Why ``quote`` cannot be accepted now, in the status column's words (None: it can)."""
        if self.accepted is not None:
            return "accepted" if self.accepted == quote.id else "not taken"
        if self.cancelled:
            return "cancelled"
        if quote.valid_until_ms <= (int(self.clock() * 1000) if now_ms is None else now_ms):
            return "expired"
        standing = self.standing()
        if quote.dealer in standing:
            return f"dealer {standing[quote.dealer]}"
        if self.me in standing:
            return f"you are {standing[self.me]}"
        return None

    def best(self) -> Quote | None:
        """The best quote that can still be accepted; none once the RFQ is cancelled."""
        if self.rfq is None or self.cancelled:
            return None
        now_ms = int(self.clock() * 1000)
        tradable = [q for q in self.quotes if self.why_not(q, now_ms) in (None, "accepted")]
        return best_quote(self.rfq, tradable, now_ms)

    def selected_quote(self) -> Quote | None:
        """The quote under the cursor, else the best one."""
        key = self.table.selected_key
        chosen = self.answers.get(key) if key else None
        return chosen if isinstance(chosen, Quote) else self.best()

    def open(self, rfq: Rfq, addressed: Sequence[str]) -> None:
        self.rfq = rfq
        self.addressed = tuple(addressed)
        self.answers = {}
        self.closed = None
        self.accepted = None
        self.table.pinned = False
        self.redraw()

    def add(self, answer: Quote | Decline) -> None:
        if self.rfq is None or answer.rfq_id != self.rfq.id:
            return
        self.answers[answer.dealer] = answer
        self.redraw()

    def close(self, rfq_id: str, reason: str) -> None:
        """The RFQ stopped collecting answers; a cancel overrides an earlier reason (an RFQ
        every dealer answered can still be cancelled, and then none of its quotes trades)."""
        if self.rfq is not None and rfq_id == self.rfq.id:
            if self.closed != "cancelled":
                self.closed = reason
            self.redraw()

    def mark_accepted(self, quote: Quote) -> None:
        if self.rfq is not None and quote.rfq_id == self.rfq.id:
            self.accepted = quote.id
            self.redraw()

    def redraw(self) -> None:
        if self.rfq is None:
            return
        now_ms = int(self.clock() * 1000)
        best = self.best()
        rows: list[Row] = []
        for dealer in self.addressed:
            rows.append((dealer, self._cells(dealer, best, now_ms)))
        self.table.refill(rows)
        focus = next(
            (q.dealer for q in self.quotes if q.id == self.accepted),
            best.dealer if best is not None else None,
        )
        selected = self.answers.get(self.table.selected_key or "")
        follow = self.accepted or not self.table.pinned or not isinstance(selected, Quote)
        if focus is not None and follow:
            self.table.move_cursor(row=self.table.get_row_index(focus), animate=False)
        header = self._header(now_ms)
        # a new length may need another line (the header wraps on a narrow screen)
        grew = header.cell_len != self._header_len
        self._header_len = header.cell_len
        self.query_one("#quotes-header", Static).update(header, layout=grew)

    def _header(self, now_ms: int) -> Text:
        assert self.rfq is not None
        rfq = self.rfq
        text = Text()
        text.append(f"RFQ {rfq.id}  ", style="bold")
        text.append_text(fmt.side_text(rfq.terms))
        text.append(f" {rfq.terms.quantity:g} × {fmt.product(rfq.terms)} to {rfq.terms.maturity}")
        answered = len(self.answers)
        text.append(f"   {answered}/{len(self.addressed)} answered   ")
        if self.accepted:
            text.append("ACCEPTED", style="bold green")
        elif self.closed == "cancelled":
            text.append("CANCELLED", style="bold red")
        elif self.closed is not None or now_ms >= rfq.deadline_ms:
            text.append("closed", style="dim")
        else:
            text.append(
                f"closes in {fmt.countdown((rfq.deadline_ms - now_ms) / 1000)}", style="yellow"
            )
        return text

    def _cells(self, dealer: str, best: Quote | None, now_ms: int) -> list[Any]:
        answer = self.answers.get(dealer)
        if answer is None:
            waiting = "no answer" if self.closed else "waiting…"
            return [dealer, "", "", "", "", "", Text(waiting, style="dim italic")]
        if isinstance(answer, Decline):
            return [
                dealer,
                Text(fmt.DASH, style="dim"),
                "",
                "",
                "",
                "",
                Text(f"declined: {fmt.words(answer.code)}", style="red"),
            ]
        is_best = best is not None and answer.id == best.id and self.accepted is None
        remaining = (answer.valid_until_ms - now_ms) / 1000
        why_not = self.why_not(answer, now_ms)
        style = "bold black on green" if is_best else ""
        if self.accepted == answer.id:
            style = "bold green"
        elif why_not is not None:
            style = "dim"
        diff = ""
        if best is not None and not is_best and why_not is None:
            gap = answer.price - best.price
            diff = "=" if gap == 0 else fmt.price(gap) if gap < 0 else f"+{fmt.price(gap)}"
        if self.accepted == answer.id:
            status = Text("✔ accepted", style="bold green")
        elif why_not is not None:
            defaulted = why_not.startswith(("dealer ", "you are "))
            status = Text(why_not, style="bold red" if defaulted else "dim")
        elif is_best:
            status = Text("★ best", style="bold green")
        else:
            status = Text("firm", style="")
        return [
            Text(dealer, style=style),
            Text(fmt.price(answer.price), style=style, justify="right"),
            Text(diff, justify="right"),
            f"{answer.initial_margin_rate:.1%}",
            Text(fmt.money(answer.credit_line), justify="right"),
            Text(
                fmt.countdown(remaining) if why_not in (None, "expired") else "",
                style="yellow" if 0 < remaining < 5 else "",
            ),
            status,
        ]


# -- contracts -------------------------------------------------------------------------------


def contract_cells(view: ContractView) -> list[Any]:
    contract = view.contract
    terms = contract.terms
    fixed = (
        terms.option.premium
        if terms.option is not None and contract.fixed_price is None
        else contract.fixed_price
    )
    call = view.margin_call
    status_style = {
        "live": "green",
        "margin_call": "bold yellow",
        "in_default": "bold red",
        "defaulted": "red",
        "settled": "cyan",
        "closed_out": "cyan",
    }.get(str(view.status), "")
    margin = fmt.money(view.initial_margin)
    if call is not None:
        margin += f" call {fmt.micros(call.outstanding)}"
    return [
        Text(contract.id, style="bold"),
        contract.dealer,
        fmt.product(terms),
        fmt.side_text(terms),
        Text(f"{terms.quantity:g}", justify="right"),
        Text(fmt.price(fixed), justify="right"),
        Text(fmt.price(view.mark), justify="right"),
        _right(fmt.signed(view.client_mtm)),
        Text(margin, justify="right"),
        _right(fmt.signed(view.vm_balance)),
        _right(fmt.signed(contract_pnl(view))),
        Text(fmt.words(view.status), style=status_style),
    ]


CONTRACT_COLUMNS = [
    ("Contract", "id"),
    ("Dealer", "dealer"),
    ("Product", "product"),
    ("Side", "side"),
    ("Qty", "qty"),
    ("Fixed", "fixed"),
    ("Mark", "mark"),
    ("MTM", "mtm"),
    ("Margin (IM)", "im"),
    ("VM recv", "vm"),
    ("P&L", "pnl"),
    ("Status", "status"),
]


class PnlBars(Widget):
    """A horizontal bar per contract, centred on zero: green gains, red losses."""

    DEFAULT_CSS = "PnlBars { height: auto; min-height: 3; }"

    items: reactive[tuple[tuple[str, float | None], ...]] = reactive((), layout=True)

    def render(self) -> Text:
        if not self.items:
            return Text("No contracts yet.", style="dim")
        width = max(self.size.width, 40)
        label_width = min(max(len(name) for name, _ in self.items), 18)
        value_width = 10
        half = max((width - label_width - value_width - 4) // 2, 4)
        scale = max((abs(v) for _, v in self.items if v is not None), default=0.0)
        lines = Text()
        for i, (name, value) in enumerate(self.items):
            if i:
                lines.append("\n")
            lines.append(name[:label_width].ljust(label_width) + " ", style="bold")
            if value is None or not math.isfinite(value):
                lines.append(" " * half + "│" + " " * half, style="dim")
                lines.append(" unpriced".rjust(value_width), style="dim")
                continue
            cells = 0 if scale == 0 else max(round(abs(value) / scale * half), 1 if value else 0)
            if value < 0:
                lines.append(" " * (half - cells))
                lines.append("█" * cells, style="red")
                lines.append("│" + " " * half, style="dim")
            else:
                lines.append(" " * half + "│", style="dim")
                lines.append("█" * cells, style="green")
                lines.append(" " * (half - cells))
            shown = fmt.money(value) if value <= 0 else "+" + fmt.money(value)
            colour = "green" if value > 0 else "red" if value < 0 else ""
            lines.append(" " + shown.rjust(value_width - 1), style=colour)
        return lines

    def get_content_height(self, container: Any, viewport: Any, width: int) -> int:
        return max(len(self.items), 1)
