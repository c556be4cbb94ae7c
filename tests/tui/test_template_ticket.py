"""The ticket renders what a template declares: a template registered after the terminal's code
was written gets its label, its rows and its terms without any change under tui/."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pytest
from textual.widgets import Select

from rfq.contracts.templates import ContractTemplate, registered
from rfq.contracts.templates.base import TicketSpec
from rfq.contracts.templates.european_option import EuropeanOption
from rfq.contracts.templates.spread_swap import SpreadSwap
from rfq.instruments import OptionTerms
from tui import format as fmt
from tui.model import TicketError, build_request, default_legs, default_ticket

from . import scenes
from .conftest import terminal

TODAY = dt.date(2026, 3, 2)
NOW_MS = int(dt.datetime(2026, 3, 2, 9, 30, tzinfo=dt.UTC).timestamp() * 1000)


class Barrier(EuropeanOption):
    """Priced and settled as an option; only its name is new (enough for the ticket)."""

    name = "barrier_test"
    label = "Barrier (test)"
    short = "barrier"


class Butterfly(SpreadSwap):
    name = "butterfly_test"
    label = "Butterfly (test)"
    short = "fly"
    ticket = TicketSpec(market_pick=False)


@pytest.fixture(autouse=True)
def extra_templates() -> Iterator[tuple[ContractTemplate, ContractTemplate]]:
    with registered(Barrier) as barrier, registered(Butterfly) as fly:
        yield barrier, fly


def send(**fields: str):
    return build_request(
        default_ticket(TODAY, **fields),
        client="C1",
        today=TODAY,
        now_ms=NOW_MS,
        dealers=frozenset({"D1"}),
    )


def test_a_registered_templates_ticket_reads_its_own_rows_into_its_terms():
    legs = default_legs("barrier_test", TODAY)
    sent = send(template="barrier_test", legs=legs, option_type="put", strike="3100")
    assert sent.terms.template == "barrier_test"
    assert sent.terms.option == OptionTerms("put", 3100.0)
    assert sent.summary.endswith("paying the premium")


def test_a_registered_templates_row_errors_name_the_field_at_fault():
    legs = default_legs("barrier_test", TODAY)
    with pytest.raises(TicketError) as caught:
        send(template="barrier_test", legs=legs, option_type="straddle", strike="3100")
    assert (caught.value.field, caught.value.message) == ("option_type", "choose call or put")
    with pytest.raises(TicketError) as caught:
        send(template="barrier_test", legs=legs, strike="")
    assert caught.value.field == "strike"


def test_a_registered_templates_label_short_name_and_default_legs_come_from_the_registry():
    assert fmt.template_label("butterfly_test") == "Butterfly (test)"
    assert fmt.template_short("butterfly_test") == "fly"
    legs = default_legs("butterfly_test", TODAY)
    assert " - " in legs
    sent = send(template="butterfly_test", legs=legs)
    assert fmt.product(sent.terms) == f"fly {legs}"


def test_an_unregistered_template_is_refused_on_the_template_field():
    with pytest.raises(TicketError) as caught:
        send(template="no_such_template")
    assert caught.value.field == "template"


async def test_the_terminals_ticket_offers_a_registered_template_and_shows_the_rows_it_declares(
    network,
):
    app = terminal(network, "C1", connect=False, clock=scenes.clock)
    async with app.run_test(size=(120, 40)) as pilot:
        ticket = app.main_screen.ticket
        options = ticket.query_one("#template", Select)._options
        choices = [(str(prompt), value) for prompt, value in options]
        assert ("Barrier (test)", "barrier_test") in choices
        assert ("Butterfly (test)", "butterfly_test") in choices
        ticket.set_field("template", "barrier_test")
        await pilot.pause()
        assert [w.display for w in ticket.query(".ticket-row.option")] == [True]
        assert [w.display for w in ticket.query(".ticket-row.averaging")] == [False]
        side = ticket.query_one("#side", Select)
        words = [str(prompt) for prompt, _ in side._options]
        assert words == ["Client buys option (pays premium)", "Client sells option (gets premium)"]
        ticket.set_field("template", "butterfly_test")
        await pilot.pause()
        assert [w.display for w in ticket.query(".ticket-row.option")] == [False]
        assert " - " in ticket.draft().legs
