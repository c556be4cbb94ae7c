"""What the long-running peer services share: a status, one way to stop their tasks, and
``async with`` around ``start``/``close``."""

from __future__ import annotations

import asyncio
import enum
from types import TracebackType
from typing import Any, Self

import structlog

log = structlog.get_logger(__name__)


class ServiceStatus(enum.StrEnum):
    NEW = "new"
    RUNNING = "running"
    STOPPING = "stopping"
    CLOSED = "closed"


async def cancel_and_wait(task: asyncio.Future[Any]) -> None:
    """Cancel ``task`` until it has ended. Python 3.11's ``asyncio.wait_for`` (used by
    libraries under the loop) can swallow a cancellation that races its inner future, so
    one ``cancel()`` is not always enough."""
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=1.0)
    if not task.cancelled() and task.exception() is not None:
        name = task.get_name() if isinstance(task, asyncio.Task) else repr(task)
        log.error("task_failed", task=name, error=repr(task.exception()))


class Service:
    """Started once, closed once (a second call of either does nothing); ``async with``
    does both. Subclasses start their tasks in ``start`` and stop them in ``_shutdown``."""

    status: ServiceStatus = ServiceStatus.NEW

    async def start(self) -> Self:
        raise NotImplementedError

    async def _shutdown(self) -> None:
        """Stop the service's tasks (``status`` is ``STOPPING`` meanwhile)."""

    async def close(self) -> None:
        if self.status in (ServiceStatus.STOPPING, ServiceStatus.CLOSED):
            return
        self.status = ServiceStatus.STOPPING
        await self._shutdown()
        self.status = ServiceStatus.CLOSED

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
