"""The RFQ ticket: a form checked as you type, whose Send button stays off while it is invalid.

Until the user types legs, the ticket's legs follow the business date and the maturity: the
nearest futures month listed that day that still trades at maturity (``default_legs``), so
the opening ticket is always one a dealer can quote. A deadline outside the RFQ range (1 to
300 s, ``rfq.messages``) is clamped to it: the summary says so, and leaving the field shows
the value that will be sent.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.widgets import Button, Checkbox, Input, Label, Select, Static

from rfq.contracts.templates import REGISTRY, templates
from rfq.contracts.templates.base import TicketSpec
from tui.model import (
    TICKET_FIELDS,
    RfqRequest,
    TicketDraft,
    TicketError,
    build_request,
    default_legs,
    default_ticket,
    example_legs,
    parse_date,
    parse_legs,
)

SIDE_WORDS = [("Client buys (pays fixed)", "buy"), ("Client sells (receives fixed)", "sell")]
ROWS = ("averaging", "option")
"""The ticket's optional rows (``TicketSpec.rows``): each shows for the templates declaring it."""
OPTION_SIDE_WORDS = [
    ("Client buys option (pays premium)", "buy"),
    ("Client sells option (gets premium)", "sell"),
]


class RfqTicket(Vertical):
    """Template, legs, side, quantity, maturity, averaging or option terms, dealers, deadline."""

    class Submitted(Message):
        """A valid ticket the user sent: the screen sends the RFQ."""

        def __init__(self, request: RfqRequest) -> None:
            self.request = request
            super().__init__()

    def __init__(
        self,
        *,
        client: str,
        dealers: Sequence[str],
        clock: Callable[[], float],
        today: Callable[[], dt.date],
        spot: Callable[[str], float | None] = lambda _: None,
        prices: Callable[[], Mapping[str, float]] = dict,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.client = client
        self.dealers = tuple(dealers)
        self.clock = clock
        self.today = today
        self.spot = spot
        self.prices = prices
        self._auto_legs = ""  # the legs the ticket filled in itself (they follow the date)
        self.error: TicketError | None = None
        self.request: RfqRequest | None = None
        self._shown_error: tuple[str, str] | bool | None = False  # False: nothing drawn yet
        self._shown_summary: str | None = None
        self._option_side = False  # the side select speaks of the option and its premium

    # -- layout ----------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        today = self.today()
        draft = default_ticket(today)
        self._auto_legs = draft.legs
        single, spread = example_legs(today)
        yield self._row(
            "Template",
            Select(
                [(template.label, template.name) for template in templates()],
                value=draft.template,
                allow_blank=False,
                compact=True,
                id="template",
            ),
        )
        yield self._error("template")
        yield self._row(
            "Legs",
            Input(draft.legs, placeholder=f"{single}, {spread}", compact=True, id="legs"),
        )
        yield self._error("legs")
        yield self._row(
            "Side",
            Select(
                SIDE_WORDS,
                value=draft.side,
                allow_blank=False,
                compact=True,
                id="side",
            ),
        )
        yield self._error("side")
        yield self._row("Quantity", Input(draft.quantity, compact=True, id="quantity"))
        yield self._error("quantity")
        yield self._row("Multiplier", Input(draft.multiplier, compact=True, id="multiplier"))
        yield self._error("multiplier")
        yield self._row(
            "Maturity",
            Input(draft.maturity, placeholder="2026-06-30 or 3m", compact=True, id="maturity"),
        )
        yield self._error("maturity")
        yield self._row(
            "Averaging",
            Label("from", classes="inline-label"),
            Input("", placeholder="1m", compact=True, id="avg_start"),
            Label("to", classes="inline-label"),
            Input("", placeholder="3m", compact=True, id="avg_end"),
            classes="ticket-row averaging",
        )
        yield self._error("avg_start", classes="averaging")
        yield self._error("avg_end", classes="averaging")
        yield self._row(
            "Option",
            Select(
                [("Call", "call"), ("Put", "put")],
                value="call",
                allow_blank=False,
                compact=True,
                id="option_type",
            ),
            Label("strike", classes="inline-label"),
            Input("", placeholder="e.g. 3200", compact=True, id="strike"),
            classes="ticket-row option",
        )
        yield self._error("option_type", classes="option")
        yield self._error("strike", classes="option")
        yield self._row(
            "Dealers",
            Checkbox("All", True, compact=True, id="all-dealers"),
            *(
                Checkbox(dealer, False, compact=True, id=f"dealer-{dealer}", disabled=True)
                for dealer in self.dealers
            ),
            classes="ticket-row dealers",
        )
        yield self._error("dealers")
        yield self._row("Deadline s", Input(draft.deadline, compact=True, id="deadline"))
        yield self._error("deadline")
        yield self._error("ticket")
        yield Static("", id="ticket-summary")
        yield Button("Send RFQ  ^S", variant="success", id="send", disabled=True)

    @staticmethod
    def _row(label: str, *fields: Any, classes: str = "ticket-row") -> Horizontal:
        return Horizontal(Label(label, classes="ticket-label"), *fields, classes=classes)

    @staticmethod
    def _error(name: str, classes: str = "") -> Static:
        return Static("", id=f"err-{name}", classes=f"field-error {classes}".strip())

    def on_mount(self) -> None:
        self._show_template_rows(self._value("template"))
        self.validate()

    # -- reading the form ------------------------------------------------------------------

    def _value(self, field: str) -> str:
        widget = self.query_one(f"#{field}")
        if isinstance(widget, Select):
            value = widget.value
            return "" if value is Select.BLANK else str(value)
        assert isinstance(widget, Input)
        return widget.value

    def draft(self) -> TicketDraft:
        chosen = tuple(
            dealer for dealer in self.dealers if self.query_one(f"#dealer-{dealer}", Checkbox).value
        )
        return default_ticket(
            self.today(),
            template=self._value("template"),
            legs=self._value("legs"),
            side=self._value("side"),
            quantity=self._value("quantity"),
            multiplier=self._value("multiplier"),
            maturity=self._value("maturity"),
            avg_start=self._value("avg_start"),
            avg_end=self._value("avg_end"),
            option_type=self._value("option_type"),
            strike=self._value("strike"),
            all_dealers=self.query_one("#all-dealers", Checkbox).value,
            dealers=chosen,
            deadline=self._value("deadline"),
        )

    def set_field(self, field: str, value: str) -> None:
        """Fill one field (the palette and the market watch use this)."""
        widget = self.query_one(f"#{field}")
        if isinstance(widget, Select | Input):
            widget.value = value
        self.validate()

    # -- checking as you type --------------------------------------------------------------

    def validate(self) -> RfqRequest | None:
        """Check the ticket; show the first error beside its field; Send only when valid."""
        today = self.today()
        self._follow_default_legs(today)
        try:
            request = build_request(
                self.draft(),
                client=self.client,
                today=today,
                now_ms=int(self.clock() * 1000),
                dealers=frozenset(self.dealers),
                prices=self.prices(),
            )
        except TicketError as exc:
            self.error, self.request = exc, None
        else:
            self.error, self.request = None, request
        self._show_errors()
        return self.request

    def _follow_default_legs(self, today: dt.date) -> None:
        """Legs the user has not typed follow the business date and the maturity."""
        legs = self.query_one("#legs", Input)
        if legs.value != self._auto_legs:
            return  # the user's own legs (or a market watch pick) stay as they are
        template = REGISTRY.get(self._value("template"))
        if template is None:
            return
        try:
            maturity: dt.date | None = parse_date(self._value("maturity"), today, field="maturity")
        except TicketError:
            maturity = None
        wanted = default_legs(template.name, today, maturity)
        if wanted != legs.value:
            self._auto_legs = wanted
            with legs.prevent(Input.Changed):
                legs.value = wanted

    def _show_errors(self) -> None:
        """Mark the field at fault and show its message; touch only what changed."""
        shown = (self.error.field, self.error.message) if self.error else None
        if shown != self._shown_error:
            previous = self._shown_error if isinstance(self._shown_error, tuple) else None
            for state, visible in ((previous, False), (shown, True)):
                if state is None:
                    continue
                name, message = state
                label = self.query_one(f"#err-{name}", Static)
                label.update(f"↳ {message}" if visible else "")
                label.set_class(visible, "-shown")
                if name in TICKET_FIELDS and name != "dealers":
                    self.query_one(f"#{name}").set_class(visible, "-bad")
            self._shown_error = shown
        self.query_one("#send", Button).disabled = self.request is None
        summary = self.request.summary if self.request else ""
        if summary != self._shown_summary:
            self._shown_summary = summary
            self.query_one("#ticket-summary", Static).update(summary, layout=False)

    @staticmethod
    def _spec(template: str) -> TicketSpec:
        known = REGISTRY.get(template)
        return TicketSpec() if known is None else known.ticket

    def _show_template_rows(self, template: str) -> None:
        """Show the optional rows the template declares, and word the side its way."""
        spec = self._spec(template)
        for name in ROWS:
            for widget in self.query(f".ticket-row.{name}"):
                widget.display = name in spec.rows  # its errors show only while -shown (CSS)
        self._word_the_side(spec.premium_side)

    def _word_the_side(self, option: bool) -> None:
        """An option's buyer pays the premium, its seller receives it: say so, not "fixed"."""
        if option == self._option_side:
            return
        self._option_side = option
        side = self.query_one("#side", Select)
        value = side.value
        with side.prevent(Select.Changed):
            side.set_options(OPTION_SIDE_WORDS if option else SIDE_WORDS)
            side.value = value
            # redraw the words even when the value is unchanged (Select is generic: mypy balks)
            side.mutate_reactive(Select.value)  # type: ignore[misc]

    @on(Select.Changed, "#template")
    def _template_changed(self, event: Select.Changed) -> None:
        template = str(event.value)
        self._show_template_rows(template)
        if self.query_one("#legs", Input).value == "":
            self._auto_legs = ""  # an empty field takes the template's default legs
        self._follow_default_legs(self.today())
        rows = self._spec(template).rows
        if "averaging" in rows:
            start, end = self.query_one("#avg_start", Input), self.query_one("#avg_end", Input)
            if not start.value and not end.value:
                maturity = self._value("maturity").strip()
                start.value, end.value = ("1m", maturity) if maturity else ("1m", "3m")
        if "option" in rows:
            strike = self.query_one("#strike", Input)
            if not strike.value:
                strike.value = self._atm_strike()
        self.validate()

    def _atm_strike(self) -> str:
        try:
            legs = parse_legs(self._value("legs"))
        except TicketError:
            return ""
        total = 0.0
        for leg in legs:
            level = self.spot(leg.underlying)
            if level is None:
                return ""
            total += leg.weight * level
        return f"{round(total):g}" if total > 0 else ""

    @on(Input.Changed)
    @on(Select.Changed)
    def _field_changed(self, event: Message) -> None:
        if isinstance(event, Select.Changed) and event.select.id == "template":
            return
        self.validate()

    @on(Checkbox.Changed)
    def _dealers_changed(self, event: Checkbox.Changed) -> None:
        if event.checkbox.id == "all-dealers":
            for dealer in self.dealers:
                self.query_one(f"#dealer-{dealer}", Checkbox).disabled = event.value
        self.validate()

    # -- sending ---------------------------------------------------------------------------

    @on(Input.Blurred, "#deadline")
    def _show_clamped_deadline(self) -> None:
        """Leaving the deadline field shows the deadline that will be sent."""
        request = self.request
        if request is not None and request.clamped_from is not None:
            self.query_one("#deadline", Input).value = f"{request.deadline_s:g}"

    @on(Input.Submitted)
    @on(Button.Pressed, "#send")
    def submit(self) -> None:
        """Send when valid; otherwise point at the field at fault and send nothing."""
        request = self.validate()
        if request is None:
            assert self.error is not None
            self.app.bell()
            self.notify(
                f"{self.error.field}: {self.error.message}",
                title="RFQ not sent",
                severity="warning",
            )
            return
        self.post_message(self.Submitted(request))
