"""What every service process shares: opening a member's bus, running until a signal."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import functools
import gc
import os
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
    """Connect as ``member_id`` (over TLS when the network has NETDIR/nats/tls/tls.toml); with
    ``roles``, refuse a member of another role (exit 2)."""
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
        tls=net.tls(),
    )
    await bus.connect()
    return bus


SUPERVISOR_PID_ENV = "BOTC_SUPERVISOR_PID"
"""Set by ``botc up``'s supervisor for its children: the process whose death stops them."""


def keep_out_of_full_collections() -> None:
    """Move what is alive now out of the cyclic collector's full passes: a peer's state is
    long-lived, mostly acyclic and only grows between prunes, so a full pass finds nothing in
    it yet stalls the event loop (at 50k live contracts 100-450 ms in an authority every few
    seconds; ~0.8 s at 100k in the regulator). The young generations are collected first, so
    only a cycle that already reached the oldest one is kept for good (in a 62k-trade bench
    every full pass collected nothing until shutdown)."""
    gc.collect(1)
    gc.freeze()


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    try:
        trim: Callable[[int], int] = ctypes.CDLL(None).malloc_trim
    except (AttributeError, OSError):
        return None
    return trim


def release_free_memory() -> None:
    """Hand the C heap's free pages back to the system (glibc's ``malloc_trim``). A fixing
    frees tens of MB of transients among long-lived objects, which glibc otherwise keeps
    resident: at 100k live contracts about 20 MB of the regulator's, in about 1 ms. A no-op
    where the C library has no such call."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


def run_until_signal(main: Callable[[asyncio.Event], Awaitable[int]]) -> int:
    """Run ``main(stop)`` in a fresh event loop; SIGINT/SIGTERM set ``stop``, and so does the
    death of the supervisor named in ``BOTC_SUPERVISOR_PID`` (a ``botc up`` killed with
    SIGKILL would otherwise leave its peers trading on without anyone to stop them)."""

    async def runner() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        supervisor = _supervisor_pid()
        watch = None
        if supervisor is not None:
            watch = asyncio.create_task(_stop_when_orphaned(supervisor, stop))
        try:
            return await main(stop)
        finally:
            if watch is not None:
                watch.cancel()

    return asyncio.run(runner())


def _supervisor_pid() -> int | None:
    text = os.environ.get(SUPERVISOR_PID_ENV, "")
    if not text:
        return None
    try:
        return int(text)
    except ValueError:
        log.warning("bad_supervisor_pid", variable=SUPERVISOR_PID_ENV, value=text[:40])
        return None


ORPHAN_CHECK_S = 1.0
"""How often a watched service checks that its supervisor is still its parent."""


async def _stop_when_orphaned(
    supervisor: int, stop: asyncio.Event, every_s: float = ORPHAN_CHECK_S
) -> None:
    """Set ``stop`` once this process is no longer the supervisor's child."""
    while not stop.is_set():
        if os.getppid() != supervisor:
            log.warning("supervisor_gone", supervisor=supervisor)
            stop.set()
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), every_s)
