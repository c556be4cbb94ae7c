"""What the three role screens share: the app's state, worker failures, chain outages."""

from __future__ import annotations

from typing import Any

import structlog
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import TabbedContent
from textual.worker import Worker, WorkerState

from tui.messages import ChainUnavailable

log = structlog.get_logger(__name__)


class RoleScreen(Screen[None]):
    """Base of the client, dealer and regulator screens.

    The screen carries ``-narrow``/``-wide`` and ``-short``/``-tall`` classes by its size, for
    the style sheet: a 100x30 terminal gets a narrower ticket and tighter rows.
    """

    # Textual types these as instance variables, so no ClassVar (mypy refuses one).
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (130, "-wide")]  # noqa: RUF012
    VERTICAL_BREAKPOINTS = [(0, "-short"), (40, "-tall")]  # noqa: RUF012

    @property
    def terminal(self) -> Any:
        """The ``BotcApp`` (typed loosely: screens read its genesis, clock and state)."""
        return self.app

    def show_pane(self, pane_id: str) -> None:
        """Switch tabs and move the focus into the new pane (a focused widget left behind
        in a hidden pane would pull the tabs back to it)."""
        tabs = self.query_one(TabbedContent)
        self.set_focus(None)
        tabs.active = pane_id
        pane = tabs.get_pane(pane_id)
        self.call_after_refresh(self._focus_first, pane)

    def _focus_first(self, pane: Widget) -> None:
        target = next((w for w in pane.query("*") if w.focusable), None)
        if target is not None:
            target.focus(scroll_visible=False)

    def note_height(self, height: int) -> None:
        if height > self.terminal.chain_height:
            self.terminal.chain_height = height

    def on_chain_unavailable(self, event: ChainUnavailable) -> None:
        """Say it once; the status bar keeps showing it until an authority answers again."""
        if self.terminal.chain_ok:
            self.terminal.chain_ok = False
            self.notify(event.error, title="Chain unavailable", severity="warning")

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """A worker that died of an unexpected error: log it, tell the user, keep running."""
        if event.state == WorkerState.ERROR:
            error = event.worker.error
            log.error("tui_worker_failed", worker=event.worker.name, error=repr(error))
            self.notify(
                f"{type(error).__name__}: {error}",
                title=f"{event.worker.name or 'A background task'} failed",
                severity="error",
            )
