"""Regulator mode: authorities and governance, the CCR monitor, contagion what-ifs, trades.

The chain is read through the authorities' query service (the regulator sees everything:
it is the trade repository); the CCR table and what-ifs come from the regulator's own risk
monitor on ``otc.query.REG`` (``peers/regulator.py``). When the monitor does not answer,
the CCR tab says so and the rest of the terminal carries on.

The trade repository shows the newest page of matching trades (``REPOSITORY_PAGE``) and says
how many there are in all ("showing the newest 200 of 1,234 trades", the reply's ``total``);
``m`` (or the More button) adds the next page.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from collections.abc import Callable
from typing import ClassVar

import structlog
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal
from textual.widgets import Button, Footer, Input, Label, Select, Static, TabbedContent, TabPane

from bus import subjects
from bus.client import Bus, RequestError
from bus.errors import BusError
from peers.errors import PeerError
from peers.ledger_client import LedgerClient, LedgerUnavailable, QueryDenied
from peers.regulator import regulator_reply_channel
from rfq.clock import utc_today
from rfq.contracts.model import ContractView
from rfq.errors import RfqError
from rfq.identity import AUTHORITY_ELIGIBLE, Genesis, Role
from rfq.instruments import listed_futures
from rfq.ledger.state import Trade
from rfq.queries import (
    ContractsQuery,
    ContractsReply,
    QueryRefused,
    RegulatorReply,
    RiskQuery,
    RiskReply,
    StatusQuery,
    StatusReply,
    TradesQuery,
    TradesReply,
    WhatIfQuery,
    WhatIfReply,
)
from tui import format as fmt
from tui.messages import (
    BusReady,
    ChainUnavailable,
    RiskLoaded,
    RiskUnavailable,
    StatusLoaded,
    TradesFound,
    WhatIfLoaded,
)
from tui.screen import RoleScreen
from tui.timing import sleep_or_wake
from tui.widgets import StatusBar, Table

log = structlog.get_logger(__name__)


CONTAGION_MODELS = ("cascade", "debtrank", "eisenberg-noe")
REPOSITORY_PAGE = 200
"""Trades the repository shows at first, and adds with each ``m`` (More)."""


class RiskMonitorUnavailable(PeerError):
    """The regulator's risk monitor did not answer (or refused)."""


class RegulatorDesk:
    """The regulator's reads: the chain through the authorities, risk from its monitor."""

    def __init__(self, bus: Bus, genesis: Genesis, *, timeout: float = 2.0) -> None:
        self.bus = bus
        self.genesis = genesis
        self.ledger = LedgerClient(bus, genesis)
        self.monitor = subjects.query(genesis.regulator.id)
        self.replies = regulator_reply_channel(genesis.params.consensus_max_bytes)
        self.timeout = timeout

    async def _ask_monitor(self, query: RiskQuery | WhatIfQuery) -> RegulatorReply:
        try:
            reply = await self.bus.request(self.monitor, query, self.replies, timeout=self.timeout)
        except RequestError as exc:
            raise RiskMonitorUnavailable(f"risk monitor: {exc}") from None
        if isinstance(reply.payload, QueryRefused):
            raise RiskMonitorUnavailable(f"risk monitor refused: {reply.payload.reason}")
        return reply.payload

    async def risk(self) -> RiskReply:
        reply = await self._ask_monitor(RiskQuery())
        if not isinstance(reply, RiskReply):
            raise RiskMonitorUnavailable(f"unexpected reply {type(reply).__name__}")
        return reply

    async def what_if(self, institutions: tuple[str, ...], model: str) -> WhatIfReply:
        reply = await self._ask_monitor(WhatIfQuery(institutions=institutions, model=model))
        if not isinstance(reply, WhatIfReply):
            raise RiskMonitorUnavailable(f"unexpected reply {type(reply).__name__}")
        return reply

    async def status(self) -> tuple[StatusReply, dict[str, StatusReply | str]]:
        status = await self.ledger.chain_status()
        answers = await self.ledger.ask_all(StatusQuery(), timeout=1.0)
        per_authority: dict[str, StatusReply | str] = {
            member: answer if isinstance(answer, StatusReply) else str(answer)
            for member, answer in answers.items()
        }
        return status, per_authority

    async def trades(
        self,
        party: str | None,
        underlying: str | None,
        *,
        page: int = REPOSITORY_PAGE,
        pages: int = 1,
    ) -> tuple[tuple[Trade, ...], dict[str, ContractView], int]:
        """The newest ``pages`` pages of ``page`` matching trades, the contracts they spawned
        and how many trades match in all."""
        trades: list[Trade] = []
        total = 0
        cursor = ""
        for _ in range(max(pages, 1)):
            reply = await self.ledger.query(
                TradesQuery(party=party, underlying=underlying, limit=page, cursor=cursor)
            )
            if not isinstance(reply, TradesReply):
                raise LedgerUnavailable(f"unexpected reply {type(reply).__name__}")
            trades.extend(reply.trades)
            total = reply.total
            cursor = reply.next_cursor
            if not cursor:
                break
        contracts: dict[str, ContractView] = {}
        if trades:
            ids = tuple(t.contract_id for t in trades)
            found = await self.ledger.query_all(ContractsQuery(ids=ids, limit=page), ContractsReply)
            contracts = {v.id: v for v in found.contracts}
        return tuple(trades), contracts, max(total, len(trades))


class RegulatorScreen(RoleScreen):
    """The regulator's console."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("f2", "show_tab('authorities')", "Authorities"),
        Binding("f3", "show_tab('ccr')", "CCR"),
        Binding("f4", "show_tab('whatif')", "What-if"),
        Binding("f5", "show_tab('trades')", "Trades"),
        Binding("m", "more_trades", "More trades"),
        Binding("r", "refresh", "Refresh"),
    ]

    def __init__(self) -> None:
        super().__init__(id="regulator")
        self.desk: RegulatorDesk | None = None
        self.search: tuple[str | None, str | None] = (None, None)
        self.pages = 1
        """Pages of the trade repository shown (``m`` adds one; a new search starts at 1)."""
        self.shown_trades = 0
        self.total_trades = 0
        self.monitor_ok = True
        self._wake = asyncio.Event()

    def compose(self) -> ComposeResult:
        app = self.terminal
        genesis: Genesis = app.genesis
        institutions = [
            m.id for m in genesis.members if m.role in AUTHORITY_ELIGIBLE or m.role == Role.CLIENT
        ]
        yield StatusBar(app.member_id, app.member.name, "regulator")
        with TabbedContent(initial="authorities-tab", id="tabs"):
            with TabPane("Authorities", id="authorities-tab"):
                summary = Static("Waiting for the chain…", id="chain-summary", classes="panel")
                summary.border_title = "Chain"
                yield summary
                authorities = Table(
                    [
                        ("Member", "member"),
                        ("Role", "role"),
                        ("Name", "name"),
                        ("Status", "status"),
                        ("Height", "height"),
                        ("Mempool", "mempool"),
                        ("Answering", "answering"),
                    ],
                    drop_order=("name", "mempool"),
                    id="authorities",
                    classes="panel",
                )
                authorities.border_title = "Authority set and candidates"
                yield authorities
                governance = Table(
                    [
                        ("Height", "height"),
                        ("Action", "action"),
                        ("Member", "member"),
                        ("Reason", "reason"),
                        ("Effective", "effective"),
                    ],
                    id="governance",
                    classes="panel",
                )
                governance.border_title = "Governance events"
                yield governance
            with TabPane("CCR", id="ccr-tab"):
                ccr = Table(
                    [
                        ("Institution", "institution"),
                        ("Role", "role"),
                        ("Grade", "grade"),
                        ("PD", "pd"),
                        ("LGD", "lgd"),
                        ("EAD", "ead"),
                        ("EL", "el"),
                        ("Threshold", "threshold"),
                        ("EAD / threshold", "usage"),
                        ("Netting sets", "sets"),
                        ("Open", "open"),
                        ("Alert", "alert"),
                    ],
                    drop_order=("sets", "lgd", "pd", "el", "role"),
                    id="ccr",
                    classes="panel",
                )
                ccr.border_title = "Counterparty credit risk per institution"
                yield ccr
                alerts = Table(
                    [
                        ("Height", "height"),
                        ("Institution", "institution"),
                        ("EAD", "ead"),
                        ("Threshold", "threshold"),
                        ("Cascade", "cascade"),
                    ],
                    id="alerts",
                    classes="panel",
                )
                alerts.border_title = "Alerts and the cascades they triggered"
                yield alerts
            with TabPane("What-if", id="whatif-tab"):
                with Horizontal(id="whatif-controls"):
                    yield Label("Institution")
                    yield Select(
                        [(member, member) for member in institutions],
                        prompt="default of…",
                        id="whatif-institution",
                    )
                    yield Label("Model")
                    yield Select(
                        [(model, model) for model in CONTAGION_MODELS],
                        value="cascade",
                        allow_blank=False,
                        id="whatif-model",
                    )
                    yield Button("Run", variant="primary", id="whatif-run")
                cascade = Static(
                    "Pick an institution and run: the cascade its default would start.",
                    id="whatif-cascade",
                    classes="panel",
                )
                cascade.border_title = "Contagion"
                yield cascade
                losses = Table(
                    [("Institution", "institution"), ("Loss", "loss"), ("Defaults", "defaults")],
                    id="whatif-losses",
                    classes="panel",
                )
                losses.border_title = "Losses"
                yield losses
            with TabPane("Trades", id="trades-tab"):
                with Horizontal(id="search-controls"):
                    yield Label("Party")
                    yield Input("", placeholder="any (e.g. C1)", id="search-party")
                    yield Label("Underlying")
                    yield Input("", placeholder=self._underlying_hint(), id="search-underlying")
                    yield Button("Search", variant="primary", id="search-run")
                    yield Button("More", id="search-more")
                repository = Table(
                    [
                        ("Height", "height"),
                        ("Contract", "contract"),
                        ("Client", "client"),
                        ("Dealer", "dealer"),
                        ("Product", "product"),
                        ("Side", "side"),
                        ("Qty", "qty"),
                        ("Price", "price"),
                        ("Init. margin", "im"),
                        ("Dealer line", "line"),
                        ("Guarantee", "guarantee"),
                        ("Status", "status"),
                    ],
                    drop_order=("guarantee", "line", "im", "height"),
                    id="repository",
                    classes="panel",
                )
                repository.border_title = "Trade repository"
                yield repository
        yield Footer()

    def _underlying_hint(self) -> str:
        """``any (e.g. RB2701)``: a rebar month listed on the business date."""
        today = business_day(self.terminal.business_date, self.terminal.clock())
        return f"any (e.g. {listed_futures('RB', today)[0].id})"

    @property
    def page_size(self) -> int:
        return int(getattr(self.terminal, "page_size", None) or REPOSITORY_PAGE)

    # -- polling ---------------------------------------------------------------------------

    def on_bus_ready(self, event: BusReady) -> None:
        self.desk = RegulatorDesk(event.bus, self.terminal.genesis)
        self.poll()

    @work(group="poll", exclusive=True, exit_on_error=False)
    async def poll(self) -> None:
        app = self.terminal
        while self.desk is not None:
            desk = self.desk
            try:
                status, per_authority = await desk.status()
                self.post_message(StatusLoaded(status, per_authority))
                party, underlying = self.search
                trades, contracts, total = await desk.trades(
                    party, underlying, page=self.page_size, pages=self.pages
                )
                self.post_message(TradesFound(trades, contracts, party, underlying, total))
            except (LedgerUnavailable, QueryDenied, BusError) as exc:
                self.post_message(ChainUnavailable(str(exc)))
            except Exception as exc:
                log.exception("regulator_poll_failed")
                self.post_message(ChainUnavailable(repr(exc)))
            try:
                self.post_message(RiskLoaded(await desk.risk()))
            except (RiskMonitorUnavailable, BusError) as exc:
                self.post_message(RiskUnavailable(str(exc)))
            await sleep_or_wake(self._wake, app.poll_s)

    def action_refresh(self) -> None:
        self._wake.set()

    # -- authorities -----------------------------------------------------------------------

    def on_status_loaded(self, event: StatusLoaded) -> None:
        status = event.status
        app = self.terminal
        app.chain_height = max(app.chain_height, status.height)
        app.business_date = status.business_date
        app.chain_ok = True
        self.query_one("#search-underlying", Input).placeholder = self._underlying_hint()
        summary = Text()
        summary.append(f"height {status.height}", style="bold")
        summary.append(f"  last block {fmt.timestamp(status.last_block_ms)} UTC")
        summary.append(f"  hash {fmt.short_hash(status.last_hash, 16)}", style="dim")
        summary.append(f"\nbusiness date {status.business_date or '—'}")
        summary.append(f"  open contracts {status.open_contracts}")
        summary.append(f"  mempool {status.mempool}")
        summary.append(f"  authorities {len(status.authorities)}")
        n = len(status.authorities)
        summary.append(f" (tolerates {(n - 1) // 3} faulty)", style="dim")
        self.query_one("#chain-summary", Static).update(summary, layout=False)
        genesis: Genesis = app.genesis
        members = [m for m in genesis.members if m.role in AUTHORITY_ELIGIBLE]
        rows = []
        for member in members:
            answer = event.per_authority.get(member.id)
            if member.id in status.authorities:
                role_state = Text("authority", style="bold green")
            elif member.id in status.candidates:
                role_state = Text("candidate", style="cyan")
            else:
                role_state = Text("—", style="dim")
            if isinstance(answer, StatusReply):
                height = Text(str(answer.height), justify="right")
                mempool = Text(str(answer.mempool), justify="right")
                answering = Text("yes", style="green")
            elif answer is None:
                height, mempool, answering = Text(""), Text(""), Text("not asked", style="dim")
            else:
                height, mempool = Text(""), Text("")
                answering = Text("no answer", style="bold red")
            rows.append(
                (
                    member.id,
                    [
                        Text(member.id, style="bold"),
                        str(member.role),
                        member.name,
                        role_state,
                        height,
                        mempool,
                        answering,
                    ],
                )
            )
        self.query_one("#authorities", Table).refill(rows)
        self.query_one("#governance", Table).refill(
            (
                f"{event.height}-{i}",
                [
                    Text(str(event.height), justify="right"),
                    Text(fmt.words(event.action), style="bold"),
                    event.member,
                    event.reason,
                    Text(str(event.effective_height), justify="right"),
                ],
            )
            for i, event in enumerate(reversed(status.governance))
        )

    # -- CCR -------------------------------------------------------------------------------

    def on_risk_loaded(self, event: RiskLoaded) -> None:
        self.monitor_ok = True
        risk = event.risk
        table = self.query_one("#ccr", Table)
        table.border_title = f"Counterparty credit risk per institution (height {risk.height})"
        rows = []
        for row in sorted(risk.rows, key=lambda r: (-r.alert, -r.ead, r.institution)):
            usage = row.ead / row.threshold if row.threshold else 0.0
            rows.append(
                (
                    row.institution,
                    [
                        Text(row.institution, style="bold"),
                        row.role,
                        row.grade,
                        Text(f"{row.pd:.2%}", justify="right"),
                        Text(f"{row.lgd:.0%}", justify="right"),
                        Text(fmt.money(row.ead), justify="right"),
                        Text(fmt.money(row.el), justify="right"),
                        Text(fmt.money(row.threshold), justify="right"),
                        fmt.bar(usage),
                        Text(str(row.netting_sets), justify="right"),
                        Text(str(row.open_contracts), justify="right"),
                        Text("ALERT", style="bold white on red") if row.alert else Text(""),
                    ],
                )
            )
        table.refill(rows)
        self.query_one("#alerts", Table).refill(
            (
                f"{alert.height}-{alert.institution}-{i}",
                [
                    Text(str(alert.height), justify="right"),
                    Text(alert.institution, style="bold red"),
                    Text(fmt.money(alert.ead), justify="right"),
                    Text(fmt.money(alert.threshold), justify="right"),
                    cascade_text(alert.cascade_rounds, alert.cascade_defaulted),
                ],
            )
            for i, alert in enumerate(reversed(risk.alerts))
        )

    def on_risk_unavailable(self, event: RiskUnavailable) -> None:
        table = self.query_one("#ccr", Table)
        table.border_title = "Counterparty credit risk per institution (monitor not answering)"
        if self.monitor_ok:
            self.monitor_ok = False
            self.notify(event.error, title="Risk monitor unavailable", severity="warning")

    # -- what-if ---------------------------------------------------------------------------

    @on(Button.Pressed, "#whatif-run")
    def action_what_if(self) -> None:
        institution = self.query_one("#whatif-institution", Select).value
        if institution is Select.BLANK:
            self.notify("Pick the institution whose default to simulate.", severity="warning")
            return
        model = str(self.query_one("#whatif-model", Select).value)
        self.run_what_if((str(institution),), model)

    @work(group="whatif", exclusive=True, exit_on_error=False)
    async def run_what_if(self, institutions: tuple[str, ...], model: str) -> None:
        if self.desk is None:
            self.notify("Not connected yet.", severity="warning")
            return
        try:
            result = await self.desk.what_if(institutions, model)
        except (RiskMonitorUnavailable, BusError) as exc:
            self.notify(str(exc), title="What-if failed", severity="error")
            return
        self.post_message(WhatIfLoaded(result))

    def on_what_if_loaded(self, event: WhatIfLoaded) -> None:
        """The cascade, then only the institutions that would lose something (a zero loss
        is no news: listing it, or counting it as "loses but survives", misleads)."""
        result = event.result
        defaulted = set(result.defaulted)
        losers = sorted(
            ((member, loss) for member, loss in result.losses.items() if loss > 0),
            key=lambda kv: (-kv[1], kv[0]),
        )
        survivors = sum(1 for member, _ in losers if member not in defaulted)
        text = Text()
        text.append(f"Default of {', '.join(result.shocked)}", style="bold")
        text.append(f"  ({result.model})\n", style="dim")
        text.append_text(cascade_text(result.rounds, result.defaulted))
        if survivors:
            losing = "loses but survives" if survivors == 1 else "lose but survive"
            after = f"{fmt.count(survivors, 'other institution')} {losing}"
        else:
            after = "no other institution loses anything"
        text.append(
            f"\n{fmt.count(len(result.defaulted), 'default')} in total; {after}", style="dim"
        )
        self.query_one("#whatif-cascade", Static).update(text)
        table = self.query_one("#whatif-losses", Table)
        table.border_title = (
            f"Losses: {fmt.count(len(losers), 'institution')} would lose"
            if losers
            else "Losses: none"
        )
        table.refill(
            (
                member,
                [
                    Text(member, style="bold"),
                    Text(fmt.money(loss), justify="right"),
                    Text("defaults", style="bold red") if member in defaulted else Text(""),
                ],
            )
            for member, loss in losers
        )

    # -- trade repository ------------------------------------------------------------------

    @on(Button.Pressed, "#search-run")
    @on(Input.Submitted, "#search-party, #search-underlying")
    def action_search(self) -> None:
        party = self.query_one("#search-party", Input).value.strip() or None
        underlying = self.query_one("#search-underlying", Input).value.strip().upper() or None
        self.search = (party, underlying)
        self.pages = 1
        self.search_trades(party, underlying, 1)

    @on(Button.Pressed, "#search-more")
    def action_more_trades(self) -> None:
        """The next page of the repository, when there is one."""
        if self.shown_trades >= self.total_trades:
            self.notify("Every matching trade is shown.", title="No more trades", timeout=3)
            return
        self.pages += 1
        self.search_trades(*self.search, self.pages)

    @work(group="search", exclusive=True, exit_on_error=False)
    async def search_trades(self, party: str | None, underlying: str | None, pages: int) -> None:
        if self.desk is None:
            self.notify("Not connected yet.", severity="warning")
            return
        try:
            trades, contracts, total = await self.desk.trades(
                party, underlying, page=self.page_size, pages=pages
            )
        except (LedgerUnavailable, QueryDenied, BusError, RfqError) as exc:
            self.notify(str(exc), title="Search failed", severity="error")
            return
        self.post_message(TradesFound(trades, contracts, party, underlying, total))

    def on_trades_found(self, event: TradesFound) -> None:
        if (event.party, event.underlying) != self.search:
            return
        self.shown_trades, self.total_trades = len(event.trades), event.total
        rows = []
        for trade in event.trades:
            view = event.contracts.get(trade.contract_id)
            terms = view.contract.terms if view else None
            rows.append(
                (
                    trade.rfq_id,
                    [
                        Text(str(trade.height), justify="right"),
                        Text(trade.contract_id, style="bold"),
                        trade.client,
                        trade.dealer,
                        fmt.product(terms) if terms else fmt.DASH,
                        fmt.side_text(terms) if terms else "",
                        Text(f"{terms.quantity:g}" if terms else "", justify="right"),
                        Text(fmt.price(trade.price), justify="right"),
                        Text(fmt.micros(trade.initial_margin), justify="right"),
                        Text(fmt.micros(trade.dealer_line), justify="right"),
                        Text(fmt.micros(sum(a for _, a in trade.guarantee_cover)), justify="right"),
                        fmt.words(view.status) if view else "",
                    ],
                )
            )
        table = self.query_one("#repository", Table)
        table.refill(rows)
        scope = " · ".join(
            part
            for part in (
                f"party {event.party}" if event.party else "",
                f"underlying {event.underlying}" if event.underlying else "",
            )
            if part
        )
        if len(rows) < event.total:
            found = f"showing the newest {len(rows):,} of {event.total:,} trades (More: next page)"
        else:
            found = fmt.count(len(rows), "trade")
        table.border_title = f"Trade repository: {found}{' · ' + scope if scope else ''}"

    # -- navigation ------------------------------------------------------------------------

    def action_show_tab(self, tab: str) -> None:
        self.show_pane(f"{tab}-tab")

    def palette_commands(self) -> list[tuple[str, str, Callable[[], object]]]:
        return [
            (
                "Show authorities",
                "authority set and governance",
                lambda: self.action_show_tab("authorities"),
            ),
            ("Show CCR", "CCR per institution and alerts", lambda: self.action_show_tab("ccr")),
            ("Show what-if", "contagion of one default", lambda: self.action_show_tab("whatif")),
            ("Show trades", "trade repository search", lambda: self.action_show_tab("trades")),
            ("Refresh", "poll the chain and the risk monitor now", self.action_refresh),
        ]


def business_day(business_date: str, now: float) -> dt.date:
    """The chain's business date when known, else the clock's UTC date."""
    with contextlib.suppress(ValueError):
        return dt.date.fromisoformat(business_date)
    return utc_today(lambda: now)


def cascade_text(rounds: tuple[tuple[str, ...], ...], defaulted: tuple[str, ...]) -> Text:
    """``round 1: C2 → round 2: D1, C3`` with the defaulted institutions in red."""
    if not rounds:
        return Text("no further defaults", style="green")
    text = Text()
    for i, names in enumerate(rounds, start=1):
        if i > 1:
            text.append(" → ", style="dim")
        text.append(f"round {i}: ", style="dim")
        text.append(", ".join(names) or "—", style="bold red")
    if defaulted:
        text.append(f"  ({len(defaulted)} down)", style="red")
    return text
