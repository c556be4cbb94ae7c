"""A peer's wall clock: the system clock, shifted by an offset an operator or a test sets.

``BOTC_CLOCK_OFFSET_MS`` (an integer, may be negative) is read once, when a peer first asks
for its clock, and logged then; every wall-clock reading of the authority node goes through
here, so a test can run one authority with its clock off and watch the chain's clock rule
(``rfq.ledger.clock``) refuse it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import dataclass

import structlog

from peers.errors import PeerError

log = structlog.get_logger(__name__)

CLOCK_OFFSET_ENV = "BOTC_CLOCK_OFFSET_MS"


class ClockError(PeerError):
    """A clock offset that is not an integer number of milliseconds."""


@dataclass(frozen=True)
class WallClock:
    """The system clock plus ``offset_ms``."""

    offset_ms: int = 0

    def now_ms(self) -> int:
        return int(time.time() * 1000) + self.offset_ms


def offset_from(environ: Mapping[str, str]) -> int:
    """The offset in ``environ`` (0 when unset or empty); one line naming a bad value."""
    text = environ.get(CLOCK_OFFSET_ENV, "").strip()
    if not text:
        return 0
    try:
        return int(text)
    except ValueError:
        raise ClockError(
            f"{CLOCK_OFFSET_ENV}={text!r}: not an integer number of milliseconds"
        ) from None


_clock: WallClock | None = None


def wall_clock() -> WallClock:
    """This process's clock, its offset read from the environment once (and logged)."""
    global _clock
    if _clock is None:
        _clock = WallClock(offset_from(os.environ))
        if _clock.offset_ms:
            log.warning("clock_offset", offset_ms=_clock.offset_ms, env=CLOCK_OFFSET_ENV)
        else:
            log.info("clock_offset", offset_ms=0)
    return _clock
