"""The three terminals against a real local marketplace (nats-server, authorities, dealers).

Every terminal opens its own bus, as ``botc tui`` does; the tests drive them with Pilot and
read what the screens show.
"""

from __future__ import annotations

import pytest
from textual.widgets import Input, Select

from peers.counterparty import ClientSession
from peers.ledger_client import LedgerClient
from peers.regulator import RegulatorService
from rfq.ledger.tx import CreditEventTx
from rfq.messages import Decline, Quote
from tests.integration.chainkit import TxFactory, rebar, rebar_swap, start_authorities, submit
from tui.widgets import Table

from .conftest import record_notifications, terminal, type_into, wait_until

pytestmark = pytest.mark.integration


SIZE = (150, 46)


def cell_text(table: Table, row: str, column: str) -> str:
    value = table.get_cell(row, column)
    return getattr(value, "plain", str(value))


async def test_client_c1_trades_from_the_ticket_while_dealer_d1_and_the_regulator_watch(
    open_marketplace, network, bus_factory
):
    market = await open_marketplace(dealers=("D2", "D3"))
    monitor = await RegulatorService(
        await bus_factory("REG"), network.genesis(), poll_s=1.0, watch_consensus=False
    ).start()
    client_app = terminal(network, "C1", poll_s=1.0)
    dealer_app = terminal(network, "D1", poll_s=1.0)
    regulator_app = terminal(network, "REG", poll_s=1.0)
    async with (
        client_app.run_test(size=SIZE, notifications=True) as client,
        dealer_app.run_test(size=SIZE) as dealer,
        regulator_app.run_test(size=SIZE) as regulator,
    ):
        told = record_notifications(client_app)
        c1, d1, reg = client_app.main_screen, dealer_app.main_screen, regulator_app.main_screen
        await wait_until(client, lambda: c1.session is not None and d1.bot is not None)
        await market.tick()
        month = rebar(market.today)
        await wait_until(client, lambda: month in c1.session.market.latest, what="prices")
        assert c1.query_one("#market", Table).get_row(month)

        # C1 fills the ticket and sends it; the legs it opens with follow the maturity (the
        # nearest rebar month listed today that trades for six months).
        await type_into(client, "#quantity", "200")
        await type_into(client, "#maturity", "6m")
        await type_into(client, "#deadline", "4")
        legs = c1.ticket.draft().legs
        assert legs.startswith("RB") and legs in c1.session.market.listed()
        assert not c1.query_one("#send").disabled
        await client.press("ctrl+s")
        await wait_until(client, lambda: len(c1.quotes.quotes) >= 2, what="two quotes")
        rfq_id = c1.quotes.rfq.id
        assert {q.dealer for q in c1.quotes.quotes} <= {"D1", "D2", "D3"}
        best = c1.quotes.best()
        assert cell_text(c1.quotes.table, best.dealer, "status") == "★ best"
        assert cell_text(c1.quotes.table, best.dealer, "valid").endswith("s")

        # D1's terminal saw that RFQ and the model quoted it.
        await wait_until(dealer, lambda: rfq_id in d1.lines, what="D1 sees the RFQ")
        await wait_until(dealer, lambda: d1.lines[rfq_id].state == "quoted")
        assert "quoted" in cell_text(d1.query_one("#rfqs", Table), rfq_id, "answer")

        # C1 accepts the quote under the cursor (the best); final, it lands in the blotter.
        assert c1.quotes.selected_quote() == best
        await client.press("a")
        await wait_until(client, lambda: any("Trade final at height" in n for n in told))
        await client.press("f3")
        await wait_until(client, lambda: rfq_id in c1.contracts, what="contract in blotter")
        blotter = c1.query_one("#contracts", Table)
        assert cell_text(blotter, rfq_id, "status") == "live"
        assert cell_text(blotter, rfq_id, "dealer") == best.dealer
        await client.press("f4")
        card = c1.query_one("#rating-card")
        await wait_until(client, lambda: "score" in str(card.render()), what="C1's rating")
        assert c1.query_one("#dealer-lines", Table).row_count == 1
        await client.press("f5")
        await wait_until(
            client,
            lambda: any(
                "final at height" in cell_text(c1.query_one("#transactions", Table), k, "finality")
                for k in c1.transactions
            ),
            what="the accept's receipt in the chain panel",
        )

        # The regulator's trade repository shows the trade, and its monitor a CCR row.
        await regulator.press("f5")
        repository = reg.query_one("#repository", Table)
        await wait_until(regulator, lambda: rfq_id in repository.rows, what="trade repository")
        assert cell_text(repository, rfq_id, "client") == "C1"
        assert cell_text(repository, rfq_id, "product") == f"swap {legs}"
        await regulator.press("f3")
        ccr = reg.query_one("#ccr", Table)
        await wait_until(regulator, lambda: ccr.row_count > 0, what="a CCR row")
        assert {"C1", best.dealer} & {str(key.value) for key in ccr.rows}
        await regulator.press("f2")
        await wait_until(regulator, lambda: reg.query_one("#authorities", Table).row_count >= 4)
        assert cell_text(reg.query_one("#authorities", Table), "CCP", "status") == "authority"
    await monitor.close()


async def test_dealer_d1_quotes_declines_and_lets_lapse_rfqs_by_hand(
    open_marketplace, network, bus_factory
):
    market = await open_marketplace(dealers=("D2", "D3"))
    session = await ClientSession(await bus_factory("C1"), network.genesis()).start()
    await session.market.attach(session.bus)
    app = terminal(network, "D1", poll_s=1.0, auto_quote=False)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        desk = app.main_screen
        await wait_until(pilot, lambda: desk.bot is not None, what="the dealer bot")
        await market.tick()
        month = rebar(market.today)
        await wait_until(pilot, lambda: month in desk.bot.market.latest, what="prices")

        # An RFQ waits; the model's price is pre-filled; D1 overrides it.
        rfq = await session.send_rfq(rebar_swap(market.today), dealers=["D1"], deadline_s=10)
        await wait_until(
            pilot, lambda: rfq.id in desk.lines and desk.lines[rfq.id].state == "waiting"
        )
        model = desk.lines[rfq.id].suggestion
        assert isinstance(model, Quote)
        await wait_until(pilot, lambda: desk.query_one("#manual-price", Input).value != "")
        assert float(desk.query_one("#manual-price", Input).value) == model.price
        await type_into(pilot, "#manual-price", f"{model.price - 7:g}")
        await pilot.press("enter")
        [answer] = await rfq.collect()
        assert isinstance(answer, Quote)
        assert answer.price == model.price - 7
        await wait_until(pilot, lambda: desk.lines[rfq.id].state == "quoted")
        assert "(manual)" in cell_text(desk.query_one("#rfqs", Table), rfq.id, "answer")

        # The next one D1 declines with the mouse.
        second = await session.send_rfq(rebar_swap(market.today), dealers=["D1"], deadline_s=10)
        await wait_until(pilot, lambda: second.id in desk.lines)
        desk.query_one("#rfqs", Table).move_cursor(row=0)
        await pilot.click("#manual-decline")
        [declined] = await second.collect()
        assert isinstance(declined, Decline)
        assert declined.code == "dealer_declined"

        # A third lapses unanswered: nothing is sent after its deadline.
        third = await session.send_rfq(rebar_swap(market.today), dealers=["D1"], deadline_s=1)
        assert await third.collect() == []
        await wait_until(pilot, lambda: desk.lines.get(third.id) is not None)
        await wait_until(pilot, lambda: desk.lines[third.id].state == "lapsed")
        assert "lapsed" in cell_text(desk.query_one("#rfqs", Table), third.id, "answer")

        # Auto-quote back on: the model answers at once.
        await pilot.press("ctrl+t")
        assert desk.bot.auto_quote
        fourth = await session.send_rfq(rebar_swap(market.today), dealers=["D1"], deadline_s=5)
        [auto] = await fourth.collect()
        assert isinstance(auto, Quote)


async def test_the_regulator_runs_a_contagion_what_if_on_the_live_exposures(
    open_marketplace, network, bus_factory
):
    market = await open_marketplace()
    monitor = await RegulatorService(
        await bus_factory("REG"), network.genesis(), poll_s=1.0, watch_consensus=False
    ).start()
    session = await ClientSession(await bus_factory("C1"), network.genesis()).start()
    await session.market.attach(session.bus)
    await market.tick()
    rfq = await session.send_rfq(rebar_swap(market.today), deadline_s=3)
    await rfq.collect()
    receipt = await session.committed(await session.accept(rfq.best()))
    assert receipt.ok, receipt.reason
    app = terminal(network, "REG", poll_s=1.0)
    async with app.run_test(size=SIZE) as pilot:
        reg = app.main_screen
        await wait_until(pilot, lambda: reg.query_one("#ccr", Table).row_count > 0, what="CCR")
        await pilot.press("f4")
        reg.query_one("#whatif-institution", Select).value = rfq.best().dealer
        await pilot.click("#whatif-run")
        cascade = reg.query_one("#whatif-cascade")
        await wait_until(
            pilot, lambda: "Default of" in str(cascade.render()), what="the what-if's answer"
        )
        assert f"Default of {rfq.best().dealer}" in str(cascade.render())
        losses = reg.query_one("#whatif-losses", Table)
        assert all(not cell_text(losses, key.value, "loss").startswith("0") for key in losses.rows)

        # The trade repository searched by party and underlying.
        await pilot.press("f5")
        repository = reg.query_one("#repository", Table)
        await type_into(pilot, "#search-party", "C2")
        await pilot.press("enter")
        await wait_until(pilot, lambda: "0 trades · party C2" in repository.border_title)
        await type_into(pilot, "#search-party", "C1")
        month = rebar(market.today)
        await type_into(pilot, "#search-underlying", month.lower())
        await pilot.click("#search-run")
        await wait_until(pilot, lambda: rfq.id in repository.rows, what=f"C1's {month} trade")
        assert f"party C1 · underlying {month}" in repository.border_title
    await monitor.close()


async def test_screens_read_past_the_first_page_and_show_whom_the_chain_says_defaulted(
    network, nats_server, bus_factory
):
    """Five C1-D1 trades on chain, read two rows a page: every screen that lists or counts
    them has all five; the regulator's repository says how many it does not show yet."""
    nodes = await start_authorities(network, bus_factory)
    trades = [TxFactory(network).trade(f"C1-page{i}", client="C1", dealer="D1") for i in range(5)]
    await submit(await bus_factory("C1"), trades)
    reg = await LedgerClient(await bus_factory("REG"), network.genesis()).start()
    for party in ("C2", "D3"):
        receipt = await reg.submit_and_wait(CreditEventTx(party, "insolvency"), timeout=15)
        assert receipt.ok, receipt.reason
    assert all(len(node.state.trades) == 5 for node in nodes.values())
    client_app = terminal(network, "C1", poll_s=1.0, page_size=2)
    dealer_app = terminal(network, "D1", poll_s=1.0, page_size=2)
    regulator_app = terminal(network, "REG", poll_s=1.0, page_size=2)
    async with (
        client_app.run_test(size=SIZE, notifications=True) as client,
        dealer_app.run_test(size=SIZE) as dealer,
        regulator_app.run_test(size=SIZE, notifications=True) as regulator,
    ):
        told = record_notifications(client_app)
        c1, d1, rep = client_app.main_screen, dealer_app.main_screen, regulator_app.main_screen

        await client.press("f3")
        blotter = c1.query_one("#contracts", Table)
        await wait_until(client, lambda: blotter.row_count == 5, what="C1's five contracts")
        assert "5 contracts" in str(c1.query_one("#blotter-summary").render())
        await client.press("f4")
        lines = c1.query_one("#dealer-lines", Table)
        await wait_until(client, lambda: lines.row_count == 1, what="credit used per dealer")
        assert cell_text(lines, "D1", "trades") == "5"
        await wait_until(client, lambda: "D3" in c1.standing, what="C1 reads the standing")
        assert c1.standing == {"C2": "defaulted", "D3": "defaulted"}
        assert any("D3 is defaulted on chain" in n for n in told)

        await dealer.press("f3")
        mine = d1.query_one("#dealer-trades", Table)
        await wait_until(dealer, lambda: mine.row_count == 5, what="D1's five trades")
        assert mine.border_title == "My trades on chain: 5 trades"
        exposures = d1.query_one("#exposures", Table)
        await wait_until(dealer, lambda: "C2" in exposures.rows, what="C2 on D1's screen")
        assert cell_text(exposures, "C1", "trades") == "5"
        assert cell_text(exposures, "C2", "usage").strip() == "DEFAULTED"

        await regulator.press("f5")
        repository = rep.query_one("#repository", Table)
        await wait_until(regulator, lambda: repository.row_count == 2, what="the newest page")
        assert "showing the newest 2 of 5 trades" in repository.border_title
        await regulator.click("#search-more")
        await wait_until(regulator, lambda: repository.row_count == 4, what="a second page")
        assert "showing the newest 4 of 5 trades" in repository.border_title
        repository.focus()
        await regulator.press("m")  # the key does what the button does
        await wait_until(regulator, lambda: repository.row_count == 5, what="the last page")
        assert repository.border_title == "Trade repository: 5 trades"
        heights = [int(cell_text(repository, key.value, "height")) for key in repository.rows]
        assert heights == sorted(heights, reverse=True)  # newest first
    for node in nodes.values():
        await node.stop()
