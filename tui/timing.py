"""Small helpers the screens' polling workers share."""

from __future__ import annotations

import asyncio
import contextlib


async def sleep_or_wake(wake: asyncio.Event, seconds: float) -> None:
    """Sleep ``seconds``, or less if ``wake`` is set (a refresh key, a trade); then re-arm."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(wake.wait(), seconds)
    wake.clear()
