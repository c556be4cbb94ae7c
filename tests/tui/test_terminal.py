"""The terminal's behaviour around the market: bad tickets, a lost bus, the palette, quitting."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest
from textual.widgets import Button, Input, Label, Select, Static, TabbedContent

from bus import subjects
from peers.dealer import DealerBot
from peers.desk import BookView
from peers.oracle import OracleService, Simulator
from rfq.instruments import Template
from tui.messages import BookLoaded, RfqAnswered, RfqArrived, StandingLoaded
from tui.model import default_legs
from tui.ticket import RfqTicket

from . import scenes
from .conftest import record_notifications, terminal, type_into, wait_until

SIZE = (120, 40)


def cell_text(table, row: str, column: str) -> str:
    value = table.get_cell(row, column)
    return getattr(value, "plain", str(value))


def error_shown(ticket: RfqTicket, field: str) -> str:
    label = ticket.query_one(f"#err-{field}", Static)
    return str(label.render()) if label.has_class("-shown") else ""


@pytest.mark.integration
async def test_bad_input_in_the_ticket_is_shown_beside_its_field_and_nothing_is_sent(
    network, nats_server, bus_factory
):
    regulator = await bus_factory("REG")  # the regulator reads every RFQ subject
    seen: list[bytes] = []

    async def spy(msg) -> None:
        seen.append(msg.data)

    await regulator.nc.subscribe("otc.rfq.>", cb=spy)
    await regulator.flush()
    app = terminal(network, "C1", poll_s=5.0)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        told = record_notifications(app)
        c1 = app.main_screen
        await wait_until(pilot, lambda: c1.session is not None, what="the client session")
        ticket, send = c1.ticket, c1.query_one("#send", Button)

        await type_into(pilot, "#quantity", "12x")
        assert "'12x' is not a number" in error_shown(ticket, "quantity")
        assert c1.query_one("#quantity").has_class("-bad")
        assert send.disabled
        await pilot.press("ctrl+s")
        await pilot.click("#send")
        assert any("RFQ not sent" in n and "quantity" in n for n in told)

        await type_into(pilot, "#quantity", "100")
        assert error_shown(ticket, "quantity") == ""
        rebar = default_legs(Template.PRICE_SWAP, c1.today())  # listed on the business date
        assert f"client buys 100 x swap {rebar}" in str(c1.query_one("#ticket-summary").render())
        assert not c1.query_one("#quantity").has_class("-bad")
        assert not send.disabled

        await pilot.click("#all-dealers")
        assert "pick at least one dealer" in error_shown(ticket, "dealers")
        assert send.disabled
        await pilot.press("ctrl+s")
        await pilot.pause()  # every message the key press queued has been handled
        assert c1.session.rfqs == {}
        assert seen == []
        await pilot.click("#dealer-D2")
        assert error_shown(ticket, "dealers") == ""
        assert ticket.request is not None and ticket.request.dealers == ("D2",)


@pytest.mark.integration
async def test_an_rfq_nobody_answers_waits_on_the_board_and_x_cancels_it(network, nats_server):
    app = terminal(network, "C1", poll_s=5.0)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        told = record_notifications(app)
        c1 = app.main_screen
        await wait_until(pilot, lambda: c1.session is not None, what="the client session")
        await type_into(pilot, "#deadline", "30")
        await pilot.press("ctrl+s")
        await wait_until(pilot, lambda: c1.quotes.rfq is not None, what="the RFQ on the board")
        board = c1.quotes
        assert [board.table.get_cell(d, "status").plain for d in ("D1", "D2", "D3")] == [
            "waiting…"
        ] * 3
        await pilot.press("x")
        await wait_until(pilot, lambda: board.closed == "cancelled", what="cancelled")
        assert c1.session.rfqs[board.rfq.id].cancelled
        assert any(n.startswith("RFQ cancelled") for n in told)
        assert "CANCELLED" in str(board.query_one("#quotes-header").render())


@pytest.fixture
async def quoting_dealers(network, nats_server, bus_factory):
    """Dealers D1-D3 quoting (no chain: nothing trades); ``await tick()`` publishes prices."""
    genesis = network.genesis()
    oracle = OracleService(await bus_factory("ORACLE"))
    sim = Simulator(start=dt.date.today(), seed=7, ticks_per_day=2)
    oracle.history = {k: list(v) for k, v in sim.history.items()}
    await oracle.start()
    for dealer in ("D1", "D2", "D3"):
        await DealerBot(await bus_factory(dealer), genesis).start()

    async def tick() -> None:
        for price in sim.ticks():
            await oracle.publish(price)
        await oracle.bus.flush()

    return tick


@pytest.mark.integration
async def test_after_x_the_quotes_read_cancelled_and_a_or_b_accept_nothing(
    network, quoting_dealers
):
    app = terminal(network, "C1", poll_s=5.0)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        told = record_notifications(app)
        c1 = app.main_screen
        await wait_until(pilot, lambda: c1.session is not None, what="the client session")
        await quoting_dealers()
        rebar = c1.ticket.draft().legs  # the month the ticket opens with, listed today
        await wait_until(pilot, lambda: rebar in c1.session.market.latest, what="prices")
        await type_into(pilot, "#deadline", "30")
        await pilot.press("ctrl+s")
        board = c1.quotes
        await wait_until(pilot, lambda: board.closed == "answered", what="three answers")
        assert cell_text(board.table, board.best().dealer, "status") == "★ best"

        await pilot.press("x")
        await wait_until(pilot, lambda: board.closed == "cancelled", what="cancelled")
        await pilot.pause()
        assert {cell_text(board.table, d, "status") for d in ("D1", "D2", "D3")} == {"cancelled"}
        assert "CANCELLED" in str(board.query_one("#quotes-header").render())

        await pilot.press("b")
        await pilot.press("a")
        await pilot.pause()
        refusals = [n for n in told if n.startswith("Not accepted")]
        assert len(refusals) == 2 and "cancelled" in refusals[0]
        assert c1.session.accepted == {}
        assert not any("Trade final" in n for n in told)


@pytest.mark.integration
async def test_a_lost_bus_turns_the_indicator_red_and_reconnection_clears_it(network, nats_server):
    app = terminal(network, "C1", poll_s=5.0)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        told = record_notifications(app)
        await wait_until(pilot, lambda: app.bus_status == "connected", what="connected")
        bar = app.main_screen.query_one("#status-bar", Static)
        assert "● connected" in str(bar.render())

        await asyncio.to_thread(nats_server.stop)
        await wait_until(pilot, lambda: app.bus_status == "disconnected", what="disconnect")
        await pilot.pause()
        assert "DISCONNECTED" in str(bar.render())
        assert any(n.startswith("Disconnected:") for n in told)

        await asyncio.to_thread(nats_server.start)
        await wait_until(pilot, lambda: app.bus_status == "connected", timeout=20)
        await pilot.pause()
        assert "● connected" in str(bar.render())
        assert any(n.startswith("Reconnected:") for n in told)
        assert not any(n.title == "Disconnected" for n in app._notifications)


async def test_an_unreachable_bus_is_a_notification_and_the_terminal_keeps_trying(network):
    app = terminal(network, "C1", servers=["nats://127.0.0.1:9"], retry_s=0.2)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        told = record_notifications(app)
        await wait_until(pilot, lambda: any("Cannot reach the bus" in n for n in told))
        assert app.bus_status in ("offline", "connecting")
        assert app.is_running
        bar = app.main_screen.query_one("#status-bar", Static)
        assert "offline" in str(bar.render()) or "connecting" in str(bar.render())


async def test_the_command_palette_switches_tabs_and_sets_the_ticket_template(network):
    app = terminal(network, "C1", connect=False, clock=scenes.clock)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("ctrl+p")
        await pilot.press(*"blotter")
        await pilot.pause(0.2)
        await pilot.press("enter")
        await pilot.pause()
        assert app.main_screen.query_one(TabbedContent).active == "blotter"
        await pilot.press("ctrl+p")
        await pilot.press(*"spread")
        await pilot.pause(0.2)
        await pilot.press("enter")
        await pilot.pause()
        ticket = app.main_screen.ticket
        assert app.main_screen.query_one(TabbedContent).active == "trade"
        assert ticket.draft().template == "spread_swap"
        assert ticket.draft().legs == f"HC{scenes.MONTH} - RB{scenes.MONTH}"


async def test_the_palettes_screenshot_lands_in_the_networks_logs_and_says_where(
    network, tmp_path, monkeypatch
):
    home = tmp_path / "home"  # a home without ~/Downloads, like a fresh server account
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    for variable in ("XDG_DOWNLOAD_DIR", "XDG_CONFIG_HOME"):
        monkeypatch.delenv(variable, raising=False)
    logs = network.path / "logs"
    assert not logs.exists()
    app = terminal(network, "C1", connect=False, clock=scenes.clock)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        told = record_notifications(app)
        await pilot.press("ctrl+p")
        await pilot.press(*"screenshot")
        await pilot.pause(0.2)
        await pilot.press("enter")
        await wait_until(pilot, lambda: any(n.startswith("Screenshot:") for n in told))
    [saved] = list(logs.glob("*.svg"))
    assert saved.read_text().startswith("<svg")
    [said] = [n for n in told if n.startswith("Screenshot:")]
    assert str(saved) in said
    assert "Failed" not in said


async def test_function_keys_and_clicks_move_between_tabs(network):
    app = terminal(network, "REG", connect=False, clock=scenes.clock)
    async with app.run_test(size=SIZE) as pilot:
        tabs = app.main_screen.query_one(TabbedContent)
        for key, pane in (("f3", "ccr-tab"), ("f4", "whatif-tab"), ("f5", "trades-tab")):
            await pilot.press(key)
            assert tabs.active == pane
        await pilot.click("Tab#--content-tab-authorities-tab")
        assert tabs.active == "authorities-tab"


@pytest.mark.integration
async def test_quitting_closes_the_members_bus(network, nats_server):
    app = terminal(network, "D1", poll_s=5.0)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: app.main_screen.bot is not None, what="the dealer bot")
        bus = app.bus
        await pilot.press("ctrl+q")
    assert bus is not None and bus.status.value == "closed"
    assert subjects.rfq_direct("D1") == "otc.rfq.to.D1"


async def test_an_unexpected_error_in_a_background_task_is_a_notification_not_a_crash(network):
    app = terminal(network, "C1", connect=False, clock=scenes.clock)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        told = record_notifications(app)

        async def broken() -> None:
            raise RuntimeError("the feed sent nonsense")

        app.main_screen.run_worker(broken(), name="poll_chain", exit_on_error=False)
        await wait_until(pilot, lambda: any("the feed sent nonsense" in n for n in told))
        assert app.is_running
        assert any(n.startswith("poll_chain failed") for n in told)


async def test_the_what_if_counts_and_lists_only_institutions_that_lose(network):
    app = terminal(network, "REG", connect=False, clock=scenes.clock)
    async with app.run_test(size=SIZE) as pilot:
        reg = app.main_screen
        await pilot.press("f4")
        cascade, losses = reg.query_one("#whatif-cascade"), reg.query_one("#whatif-losses")

        reg.post_message(scenes.whatif_message())  # C2 and D1 default, D2 loses 420k
        await pilot.pause()
        said = str(cascade.render())
        assert "2 defaults in total; 1 other institution loses but survives" in said
        assert "(s)" not in said
        assert [key.value for key in losses.rows] == ["D1", "D2"]
        assert losses.border_title == "Losses: 2 institutions would lose"

        reg.post_message(scenes.whatif_without_losses_message())
        await pilot.pause()
        said = str(cascade.render())
        assert "1 default in total; no other institution loses anything" in said
        assert losses.row_count == 0
        assert losses.border_title == "Losses: none"


def labels_in_row_of(ticket: RfqTicket, field: str) -> list[str]:
    row = ticket.query_one(f"#{field}").parent
    return [str(label.render()) for label in row.query(Label)]


def side_words(ticket: RfqTicket) -> list[str]:
    """The side's choices; the one shown first (what the closed select reads)."""
    side = ticket.query_one("#side", Select)
    shown = str(side.query_one("SelectCurrent #label").render())
    choices = [str(prompt) for prompt, _ in side._options]
    return [shown, *(c for c in choices if c != shown)]


async def test_the_ticket_labels_the_averaging_window_and_the_strike_and_words_option_sides(
    network,
):
    app = terminal(network, "C1", connect=False, clock=scenes.clock)
    async with app.run_test(size=SIZE) as pilot:
        ticket = app.main_screen.ticket
        assert side_words(ticket) == ["Client buys (pays fixed)", "Client sells (receives fixed)"]

        ticket.set_field("template", "average_price_swap")
        await pilot.pause()
        assert labels_in_row_of(ticket, "avg_start") == ["Averaging", "from", "to"]

        ticket.set_field("template", "european_option")
        await pilot.pause()
        assert labels_in_row_of(ticket, "strike") == ["Option", "strike"]
        assert side_words(ticket) == [
            "Client buys option (pays premium)",
            "Client sells option (gets premium)",
        ]
        ticket.set_field("side", "sell")
        await pilot.pause()
        assert side_words(ticket)[0] == "Client sells option (gets premium)"

        ticket.set_field("template", "price_swap")
        await pilot.pause()
        assert side_words(ticket)[0] == "Client sells (receives fixed)"
        assert ticket.draft().side == "sell"  # rewording keeps the side chosen


def waiting_rfq(
    rfq_id: str, quantity: float, model_price: float, arrived_ms: int | None = None
) -> RfqArrived:
    """An RFQ that waits for D1's manual quote, the model's price beside it."""
    rfq = scenes.dealer_rfq(rfq_id, "C1", scenes.rebar_terms(quantity), 60)
    return RfqArrived(
        rfq,
        rating=74.2,
        arrived_ms=arrived_ms or scenes.NOW_MS - 60_000 + int(quantity),
        suggestion=scenes.dealer_quote(rfq, model_price),
        waits=True,
    )


async def test_manual_quoting_stays_on_the_dealers_rfq_while_new_ones_stream_in(network):
    app = terminal(network, "D1", connect=False, clock=scenes.clock, auto_quote=False)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        told = record_notifications(app)
        desk = app.main_screen
        sent: list[tuple[str, object]] = []
        desk.send_answer = lambda rfq_id, answer: sent.append((rfq_id, answer))
        price, im = desk.query_one("#manual-price", Input), desk.query_one("#manual-im", Input)
        table = desk.query_one("#rfqs")

        def summary() -> str:
            return str(desk.query_one("#manual-summary").render())

        desk.post_message(waiting_rfq("C1-aaaa01", 100, 3101))
        desk.post_message(waiting_rfq("C1-bbbb02", 200, 3102))
        await pilot.pause()
        assert summary().startswith("C1-aaaa01")  # the first waiting RFQ, picked for D1
        assert price.value == "3101"

        table.focus()
        await pilot.press("up")  # D1 moves to the newer RFQ
        assert summary().startswith("C1-bbbb02")
        assert price.value == "3102"
        await pilot.press("q")  # from the table, q goes to the price field, typing nothing
        assert price.has_focus and price.value == "3102"
        await pilot.press("ctrl+u", *"3111", "tab", "ctrl+u", *"0.2")
        assert im.has_focus

        for n, quantity in enumerate((300, 400, 500, 600)):  # the simulated flow goes on
            desk.post_message(waiting_rfq(f"C1-cccc0{n}", quantity, 3200 + n))
            await pilot.pause()
        assert table.selected_key == "C1-bbbb02"
        assert summary().startswith("C1-bbbb02")
        assert (price.value, im.value) == ("3111", "0.2")

        await pilot.press("q")  # in a field, letters type...
        assert im.value == "0.2q"
        await pilot.press("backspace", "f6")  # ...and F6 quotes from the field
        [(rfq_id, answer)] = sent
        assert rfq_id == "C1-bbbb02"
        assert (answer.price, answer.initial_margin_rate) == (3111, 0.2)

        await pilot.press("escape")  # Escape leaves the field for the table
        assert table.has_focus
        await pilot.press("d")
        assert sent[-1][0] == "C1-bbbb02" and sent[-1][1].decline

        # No toast per RFQ over the table: one status line says what came last.
        assert not any("waits for your quote" in n for n in told)
        assert len(app._notifications) <= 1
        news = str(desk.query_one("#desk-news").render())
        assert "C1-cccc03 waits for your quote" in news


def fully_visible(app, selector: str) -> bool:
    """The widget is on screen and not covered or clipped: the screen finds it at the
    corners of its own region."""
    widget = app.screen.query_one(selector)
    region = widget.region
    if not region.area:
        return False
    for x, y in ((region.x, region.y), (region.right - 1, region.bottom - 1)):
        found, _ = app.screen.get_widget_at(x, y)
        if found is not widget and widget not in found.ancestors:
            return False
    return True


@pytest.mark.parametrize("size", [(100, 30), (160, 48)])
async def test_the_client_trade_screen_keeps_prices_the_ticket_and_the_date_in_view(network, size):
    app = terminal(network, "C1", connect=False, clock=scenes.clock)
    async with app.run_test(size=size) as pilot:
        screen = app.main_screen
        await pilot.pause()  # laid out before the RFQ arrives, as in use
        app.chain_height, app.business_date = 48, "2026-03-02"
        screen.show_market(scenes.market_rows())
        for message in scenes.client_trade_messages():
            screen.post_message(message)
        await pilot.pause()
        await pilot.pause()

        market = screen.query_one("#market")
        assert {"id", "last", "chg", "pct"} <= {key.value for key in market.columns}
        assert market.max_scroll_x == 0  # nothing hides to the right
        for field in ("#template", "#legs", "#side", "#quantity", "#maturity", "#deadline"):
            assert fully_visible(app, field), field
        assert fully_visible(app, "#send")
        assert fully_visible(app, "#quotes-table")
        bar = str(screen.query_one("#status-bar").render())
        assert "business date 2026-03-02" in bar
        assert "connected" in bar or "offline" in bar
        header = screen.query_one("#quotes-header")
        assert "3/3 answered" in str(header.render())
        wrapped = header.render().wrap(header.size.width)
        assert header.size.height >= len(wrapped)  # every line of it in view


async def test_rfqs_the_model_answered_do_not_hold_the_manual_panel_once_d1_quotes_by_hand(
    network,
):
    app = terminal(network, "D1", connect=False, clock=scenes.clock)
    async with app.run_test(size=(100, 30)) as pilot:
        desk = app.main_screen
        for n in range(30):  # auto-quote on: the model answers each as it comes
            rfq = scenes.dealer_rfq(f"C2-auto{n:02d}", "C2", scenes.rebar_terms(100 + n), -1)
            desk.post_message(RfqArrived(rfq, rating=64.0, arrived_ms=scenes.NOW_MS - 9_000 + n))
            desk.post_message(RfqAnswered(rfq.id, scenes.dealer_quote(rfq, 3100 + n), manual=False))
        await pilot.pause()
        await pilot.press("ctrl+t")  # now by hand
        desk.post_message(waiting_rfq("C1-hand01", 700, 3150, arrived_ms=scenes.NOW_MS))
        await pilot.pause()
        table = desk.query_one("#rfqs")
        assert table.selected_key == "C1-hand01"
        assert str(desk.query_one("#manual-summary").render()).startswith("C1-hand01")
        assert desk.query_one("#manual-price", Input).value == "3150"
        assert table.get_row_index("C1-hand01") == 0 and table.scroll_y == 0  # newest in view

        # A newer one waits behind it; once the first lapses the panel moves on by itself
        # (D1 never picked one), but not before.
        desk.post_message(waiting_rfq("C1-hand02", 800, 3160, arrived_ms=scenes.NOW_MS + 1))
        await pilot.pause()
        assert str(desk.query_one("#manual-summary").render()).startswith("C1-hand01")
        desk.post_message(RfqAnswered("C1-hand01", None, manual=False))
        await pilot.pause()
        assert table.selected_key == "C1-hand02"
        assert desk.query_one("#manual-price", Input).value == "3160"


async def test_legs_left_as_the_ticket_opened_follow_the_maturity_and_typed_legs_stay(network):
    app = terminal(network, "C1", connect=False, clock=scenes.clock)  # 2 March 2026
    async with app.run_test(size=SIZE) as pilot:
        ticket = app.main_screen.ticket
        assert ticket.draft().legs == "RB2609"  # RB2605 stops trading before three months
        await type_into(pilot, "#maturity", "2026-12-31")
        assert ticket.draft().legs == "RB2701"  # the nearest month trading to that date
        assert ticket.request is not None
        await type_into(pilot, "#legs", "RB2605")
        assert "after RB2605's last trading day" in error_shown(ticket, "maturity")
        await type_into(pilot, "#maturity", "1m")
        assert ticket.draft().legs == "RB2605"  # the user's legs stay
        assert ticket.request is not None
        await type_into(pilot, "#legs", "")
        assert "e.g. RB2609 (or HC2609 - RB2609)" in error_shown(ticket, "legs")


async def test_a_deadline_beyond_the_rfq_range_is_clamped_and_the_field_shows_it(network):
    app = terminal(network, "C1", connect=False, clock=scenes.clock)
    async with app.run_test(size=SIZE) as pilot:
        ticket = app.main_screen.ticket
        await type_into(pilot, "#deadline", "600")
        assert ticket.request is not None and ticket.request.deadline_s == 300
        assert "deadline 300 s (clamped from 600)" in str(
            ticket.query_one("#ticket-summary").render()
        )
        await pilot.press("tab")  # leaving the field shows what will be sent
        assert ticket.query_one("#deadline", Input).value == "300"
        await type_into(pilot, "#deadline", "0")
        assert "1 to 300 seconds" in error_shown(ticket, "deadline")
        assert ticket.query_one("#send", Button).disabled


async def test_a_defaulted_dealers_quote_is_never_best_and_a_refuses_it(network):
    app = terminal(network, "C1", connect=False, clock=scenes.clock)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        told = record_notifications(app)
        c1 = app.main_screen
        taken: list[str] = []
        c1.accept_quote = lambda quote: taken.append(quote.dealer)  # no session offline
        for message in scenes.client_trade_messages():
            c1.post_message(message)
        await pilot.pause()
        board = c1.quotes
        assert board.best().dealer == "D1"

        c1.post_message(StandingLoaded({"D1": "defaulted"}))  # the chain says so
        await pilot.pause()
        assert any("D1 is defaulted on chain" in n for n in told)
        assert cell_text(board.table, "D1", "status") == "dealer defaulted"
        assert board.best().dealer == "D2"
        assert cell_text(board.table, "D2", "status") == "★ best"
        board.table.focus()
        await pilot.press("up")  # onto D1's (cheaper) quote
        assert board.selected_quote().dealer == "D1"
        await pilot.press("a")
        assert taken == []
        assert any(
            n.startswith("Not accepted") and "D1 is defaulted on chain: its quote" in n
            for n in told
        )
        await pilot.press("b")
        assert taken == ["D2"]

        c1.post_message(StandingLoaded({"D1": "defaulted", "C1": "defaulted"}))
        await pilot.pause()
        assert cell_text(board.table, "D2", "status") == "you are defaulted"
        assert any("You are defaulted on chain" in n for n in told)
        await pilot.press("b")
        assert taken == ["D2"]
        assert any("No tradable quote" in n for n in told)


async def test_the_dealer_sees_a_defaulted_client_beside_its_rfqs_and_its_own_default(network):
    app = terminal(network, "D1", connect=False, clock=scenes.clock, auto_quote=False)
    async with app.run_test(size=SIZE) as pilot:
        desk = app.main_screen
        desk.post_message(BookLoaded(BookView((), (), {"C2": "defaulted"}), ()))
        desk.post_message(waiting_rfq("C1-good01", 100, 3100))
        rfq = scenes.dealer_rfq("C2-bad001", "C2", scenes.rebar_terms(100), 30)
        desk.post_message(RfqArrived(rfq, rating=64.0, arrived_ms=scenes.NOW_MS))
        await pilot.pause()
        table = desk.query_one("#rfqs")
        assert cell_text(table, "C2-bad001", "client") == "C2 defaulted"
        assert cell_text(table, "C1-good01", "client") == "C1"
        stats = desk.query_one("#dealer-stats")
        assert "on chain" not in str(stats.render())
        desk.post_message(BookLoaded(BookView((), (), {"C2": "defaulted", "D1": "defaulted"}), ()))
        await pilot.pause()
        assert "D1 is defaulted on chain: it declines every RFQ" in str(stats.render())


async def test_the_trade_repository_says_how_many_it_does_not_show_and_more_asks_for_them(
    network,
):
    app = terminal(network, "REG", connect=False, clock=scenes.clock)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        told = record_notifications(app)
        reg = app.main_screen
        await pilot.press("f5")
        repository = reg.query_one("#repository")
        reg.post_message(scenes.trades_message())  # 2 of 1,234
        await pilot.pause()
        title = repository.border_title
        assert title == "Trade repository: showing the newest 2 of 1,234 trades (More: next page)"
        asked: list[int] = []
        reg.search_trades = lambda party, underlying, pages: asked.append(pages)
        await pilot.click("#search-more")
        repository.focus()
        await pilot.press("m")
        assert asked == [2, 3] and reg.pages == 3

        everything = scenes.trades_message()
        reg.post_message(type(everything)(everything.trades, everything.contracts, None, None))
        await pilot.pause()
        assert repository.border_title == "Trade repository: 2 trades"
        await pilot.press("m")
        assert asked == [2, 3]
        assert any(n.startswith("No more trades") for n in told)
