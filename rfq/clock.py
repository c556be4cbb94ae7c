"""Dates from clocks, in one place: every date the system derives from a time is the UTC date.

The ledger's business date comes from block timestamps (``rfq.ledger.state.business_date``,
which also follows the newest fixing); peers that need "today" before the chain tells them
(the oracle's first simulated day, a terminal before its first status) use ``utc_today`` with
an injectable clock. Local time never enters: two institutions in different time zones must
agree on the date of the same instant.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable


def utc_date(timestamp_ms: int) -> dt.date:
    """The UTC date of a millisecond timestamp (a block's, a message's)."""
    return dt.datetime.fromtimestamp(timestamp_ms / 1000, dt.UTC).date()


def utc_today(clock: Callable[[], float] = time.time) -> dt.date:
    """Today's UTC date by ``clock`` (seconds since the epoch; injectable for tests)."""
    return utc_date(int(clock() * 1000))
