"""What every service process shares: opening a member's bus, running until a signal."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Callable, Sequence

import structlog

from bus.client import Bus
from peers.netdir import NetDir
from rfq.identity import Directory, Role

log = structlog.get_logger(__name__)


async def open_bus(
    net: NetDir,
    member_id: str,
    *,
    servers: Sequence[str] | None = None,
    roles: set[Role] | None = None,
) -> Bus:
    """Connect as ``member_id``; with ``roles``, refuse a member of another role (exit 2)."""
    from peers.errors import CliError

    genesis = net.genesis()
    identity = net.identity(member_id)
    if roles is not None and identity.role not in roles:
        wanted = " or ".join(sorted(r.value for r in roles))
        raise CliError(f"{member_id} is a {identity.role}, this service runs as a {wanted}")
    bus = Bus(
        identity,
        Directory(genesis.members),
        genesis.chain_id,
        list(servers) if servers else net.server_urls(),
        params=genesis.params,
    )
    await bus.connect()
    return bus


def run_until_signal(main: Callable[[asyncio.Event], Awaitable[int]]) -> int:
    """Run ``main(stop)`` in a fresh event loop; SIGINT/SIGTERM set ``stop``."""

    async def runner() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        return await main(stop)

    return asyncio.run(runner())
