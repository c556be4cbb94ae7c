"""One date per instant, whatever the local time zone says."""

from __future__ import annotations

import datetime as dt
import os
import time

from rfq.clock import utc_date, utc_today


def test_an_instant_just_after_utc_midnight_is_that_utc_day_in_any_local_zone(monkeypatch):
    instant = dt.datetime(2026, 12, 2, 0, 30, tzinfo=dt.UTC)
    for zone in ("Asia/Shanghai", "America/New_York", "UTC"):
        monkeypatch.setenv("TZ", zone)
        time.tzset()
        assert utc_date(int(instant.timestamp() * 1000)) == dt.date(2026, 12, 2)
        assert utc_today(lambda: instant.timestamp()) == dt.date(2026, 12, 2)
    monkeypatch.delenv("TZ")
    if hasattr(time, "tzset"):
        time.tzset()
    assert os.environ.get("TZ") is None
