"""Snapshots of each mode's screens, fed fixed data with the clock frozen (no network).

Regenerate after an intended change with ``pytest tests/tui --snapshot-update`` and look at
the SVGs under ``tests/tui/__snapshots__/``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import pytest

from tui.app import BotcApp

from . import scenes
from .conftest import terminal


def offline(network, member: str, **kwargs: object) -> BotcApp:
    """A terminal that never connects, its clock frozen: the snapshot's data is all fed."""
    return terminal(network, member, connect=False, clock=scenes.clock, **kwargs)


def feeding(messages: Callable[[], Iterable[object]], *, tab: str = "", after=None):
    """A ``run_before`` that posts fixed messages to the role screen, as the workers would."""

    async def run_before(pilot) -> None:
        app = pilot.app
        app.post_message(scenes.connected())
        app.chain_height = 48
        app.business_date = "2026-03-02"
        for message in messages():
            app.main_screen.post_message(message)
        await pilot.pause()
        if after is not None:
            after(app.main_screen)
        if tab:
            await pilot.press(tab)
        await pilot.pause()
        app.clear_notifications()
        await pilot.pause()

    return run_before


def show_market(screen) -> None:
    """The market watch with the scenes' prices (the client screens start without any)."""
    screen.show_market(scenes.market_rows())


def test_client_trade_screen_shows_market_ticket_and_quotes_with_the_best_marked(
    network, snap_compare
):
    assert snap_compare(
        offline(network, "C1"),
        terminal_size=scenes.SIZE,
        run_before=feeding(scenes.client_trade_messages, after=show_market),
    )


@pytest.mark.parametrize("size", [(100, 30), (160, 48)], ids=["100x30", "160x48"])
def test_client_trade_screen_fits_a_small_and_a_large_terminal(network, snap_compare, size):
    assert snap_compare(
        offline(network, "C1"),
        terminal_size=size,
        run_before=feeding(scenes.client_trade_messages, after=show_market),
    )


def test_dealer_screen_fits_a_small_terminal(network, snap_compare):
    assert snap_compare(
        offline(network, "D1", auto_quote=False),
        terminal_size=(100, 30),
        run_before=feeding(scenes.dealer_messages),
    )


def test_client_quotes_board_marks_a_defaulted_dealers_and_an_expired_quote_untradable(
    network, snap_compare
):
    assert snap_compare(
        offline(network, "C1"),
        terminal_size=scenes.SIZE,
        run_before=feeding(scenes.client_defaulted_dealer_messages, after=show_market),
    )


def test_client_option_ticket_labels_the_strike_and_speaks_of_the_premium(network, snap_compare):
    def option_ticket(screen) -> None:
        screen.show_market(scenes.market_rows())
        screen.ticket.set_field("template", "european_option")
        screen.ticket.set_field("strike", "3300")

    assert snap_compare(
        offline(network, "C1"),
        terminal_size=scenes.SIZE,
        run_before=feeding(lambda: [], after=option_ticket),
    )


def test_client_blotter_shows_contracts_margin_and_pnl(network, snap_compare):
    assert snap_compare(
        offline(network, "C1"),
        terminal_size=scenes.SIZE,
        run_before=feeding(scenes.client_ledger_messages, tab="f3"),
    )


def test_dealer_screen_shows_incoming_rfqs_and_the_manual_quote(network, snap_compare):
    assert snap_compare(
        offline(network, "D1", auto_quote=False),
        terminal_size=scenes.SIZE,
        run_before=feeding(scenes.dealer_messages),
    )


def test_dealer_positions_show_exposure_per_client(network, snap_compare):
    assert snap_compare(
        offline(network, "D1"),
        terminal_size=scenes.SIZE,
        run_before=feeding(lambda: [scenes.book_message()], tab="f3"),
    )


def test_regulator_screen_shows_authorities_and_governance(network, snap_compare):
    assert snap_compare(
        offline(network, "REG"),
        terminal_size=scenes.SIZE,
        run_before=feeding(lambda: [scenes.status_message()]),
    )


def test_regulator_ccr_table_flags_the_institution_over_its_threshold(network, snap_compare):
    assert snap_compare(
        offline(network, "REG"),
        terminal_size=scenes.SIZE,
        run_before=feeding(lambda: [scenes.status_message(), scenes.risk_message()], tab="f3"),
    )


def test_regulator_what_if_shows_the_cascade_and_only_the_institutions_that_lose(
    network, snap_compare
):
    assert snap_compare(
        offline(network, "REG"),
        terminal_size=scenes.SIZE,
        run_before=feeding(lambda: [scenes.status_message(), scenes.whatif_message()], tab="f4"),
    )


def test_regulator_trade_repository_says_how_many_trades_it_does_not_show(network, snap_compare):
    assert snap_compare(
        offline(network, "REG"),
        terminal_size=scenes.SIZE,
        run_before=feeding(lambda: [scenes.status_message(), scenes.trades_message()], tab="f5"),
    )
