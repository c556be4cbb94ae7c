"""One member's connection to the bus: signed publish, verified subscribe, request/reply.

``Bus`` wraps a nats-py client that authenticates with the member's nkey, reconnects for
ever (with jitter) and keeps its reply inbox under the member's own prefix so that subject
permissions keep replies private. Subscriptions hand the application only what the shared
``Verifier`` accepted; a handler that raises is logged and counted, never propagated into
nats-py's dispatch loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import ssl
import time
from collections import Counter, OrderedDict, deque
from collections.abc import Awaitable, Callable, Iterable, Sequence
from types import TracebackType
from typing import Any, TypeVar

import msgspec
import nats
import structlog
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.aio.transport import TcpTransport

from bus import subjects
from bus.envelope import Channel, Dropped, DropReason, Outbox, Received, Verifier
from bus.errors import BusError
from bus.seal import Sealer
from bus.tls import TlsSettings, connect_options
from rfq.identity import Directory, Identity, NetworkParams
from rfq.signing import SignedMessage

T = TypeVar("T")

log = structlog.get_logger(__name__)

Handler = Callable[[Received[T], Msg], Awaitable[None]]
DropHandler = Callable[[Dropped, Msg], Awaitable[None]]


CLOSE_WAIT_S = 1.0
"""How long closing a connection may wait for its socket to report closed."""


async def _bounded_wait_closed(self: TcpTransport) -> None:
    """nats-py waits for the stream to report closed after a failed connection attempt; when a
    TLS handshake failed (a certificate for another host, another CA) it never does (asyncio's
    start_tls took the socket from the plain stream, which is never told), and the client
    hangs instead of trying the next server or giving up. Bounded here."""
    writer = self._io_writer
    if writer is not None:
        with contextlib.suppress(TimeoutError, OSError):
            await asyncio.wait_for(writer.wait_closed(), CLOSE_WAIT_S)


TcpTransport.wait_closed = _bounded_wait_closed  # type: ignore[method-assign]


class _QuietTlsEof(logging.Filter):
    """asyncio warns, on every TLS connection the server closes, that nats-py's protocol asked
    to keep the half-closed socket; harmless, and noise in every service's log."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "eof_received() has no effect when using ssl" not in record.getMessage()


logging.getLogger("asyncio").addFilter(_QuietTlsEof())


class HeldMail:
    """Messages from senders the directory does not know yet, held while the member's ledger
    client asks the chain for their keys (``Bus.stranger_hook``). Bounded in senders, messages
    per sender and bytes, the sender held longest evicted first: a flood of made-up senders
    costs a fixed amount of memory, and evicts only other strangers' messages."""

    def __init__(
        self, *, max_senders: int = 32, per_sender: int = 16, max_bytes: int = 4 * 1024 * 1024
    ) -> None:
        self.max_senders = max_senders
        self.per_sender = per_sender
        self.max_bytes = max_bytes
        self.bytes = 0
        self.evicted = 0
        self._held: OrderedDict[str, deque[tuple[int, Any]]] = OrderedDict()

    def __contains__(self, sender: object) -> bool:
        return sender in self._held

    def __len__(self) -> int:
        return sum(len(q) for q in self._held.values())

    def hold(self, sender: str, item: Any, size: int) -> bool:
        """Keep ``item`` (``size`` bytes) for ``sender``; False when it is larger than the
        whole allowance."""
        if size > self.max_bytes:
            self.evicted += 1
            return False
        queue = self._held.get(sender)
        if queue is None:
            queue = self._held[sender] = deque()
        self._held.move_to_end(sender)  # the sender just heard from is evicted last
        queue.append((size, item))
        self.bytes += size
        while len(queue) > self.per_sender or (
            self.bytes > self.max_bytes and len(self._held) == 1
        ):
            self.bytes -= queue.popleft()[0]
            self.evicted += 1
        while len(self._held) > self.max_senders or self.bytes > self.max_bytes:
            self.evicted += self.discard(next(iter(self._held)))
        return True

    def take(self, sender: str) -> list[Any]:
        """``sender``'s held items, oldest first, no longer held."""
        queue = self._held.pop(sender, None) or deque()
        self.bytes -= sum(size for size, _ in queue)
        return [item for _, item in queue]

    def discard(self, sender: str) -> int:
        """Drop ``sender``'s held items; how many there were."""
        return len(self.take(sender))


class BusStatus(enum.StrEnum):
    NEW = "new"
    CONNECTED = "connected"
    DISCONNECTED = "disconnected"
    CLOSED = "closed"


class ConnectError(BusError):
    """The servers could not be reached or refused our credentials."""


class RequestError(BusError):
    """A request got no valid reply in time."""


class PublishError(BusError):
    """A message could not be handed to the server: the connection is closed, or it is
    failing over to another server with its outbound buffer full."""


class Bus:
    """A member's authenticated, verifying connection. Use ``async with Bus(...) as bus``."""

    def __init__(
        self,
        identity: Identity,
        directory: Directory,
        chain_id: str,
        servers: Sequence[str],
        *,
        params: NetworkParams | None = None,
        clock: Callable[[], float] = time.time,
        connect_timeout: float = 3.0,
        initial_attempts: int = 3,
        tls: TlsSettings | None = None,
    ) -> None:
        self.tls = tls
        self.params = params or NetworkParams()
        self.identity = identity
        self.directory = directory
        self.chain_id = chain_id
        self.servers = list(servers)
        self.connect_timeout = connect_timeout
        self.initial_attempts = initial_attempts
        self.sealer = Sealer(identity, directory)
        self.outbox = Outbox(
            identity, chain_id, sealer=self.sealer, ttl_s=self.params.message_ttl_s, clock=clock
        )
        self.verifier = Verifier(
            directory,
            chain_id,
            sealer=self.sealer,
            clock=clock,
            max_bytes=self.params.max_message_bytes,
            rate_per_s=self.params.sender_rate_per_s,
            burst=self.params.sender_burst,
            peer=identity.member_id,
        )
        self.nc: NatsClient = NatsClient()
        self.status = BusStatus.NEW
        self.errors: list[str] = []
        self._tls_errors: list[str] = []
        self.handler_errors: Counter[str] = Counter()
        self.listeners: list[Callable[[BusStatus, str], None]] = []
        self._subs: list[Subscription] = []
        self._closing = False
        self.stranger_hook: Callable[[str], bool] | None = None
        """Told the id a message claims when its sender is not in the directory (a member
        admitted after the genesis, or a forgery); True when it is looking the key up (the
        member's ledger client asks the chain, then calls ``redeliver`` or ``discard_held``),
        and the message is held meanwhile. Otherwise, or without a hook, it is dropped; it is
        counted ``unknown_sender`` either way."""
        self.held = HeldMail()

    @property
    def member_id(self) -> str:
        return self.identity.member_id

    # -- lifecycle -------------------------------------------------------------------------

    async def connect(self) -> Bus:
        """Connect (over TLS when ``tls`` is set: the server's certificate must be the CA's
        and name the host connected to)."""
        tls_options = connect_options(self.tls)
        try:
            await self.nc.connect(
                **tls_options,  # type: ignore[arg-type]
                servers=self.servers,
                name=self.member_id,
                nkeys_seed_str=self.identity.nkey_seed,
                inbox_prefix=subjects.inbox_prefix(self.member_id),
                allow_reconnect=True,
                # Bounded while first connecting, so bad credentials or a wrong URL fail fast;
                # unlimited once connected (below), so a server restart is ridden out.
                max_reconnect_attempts=self.initial_attempts,
                reconnect_time_wait=0.25,  # type: ignore[arg-type]  # nats-py hints int
                connect_timeout=self.connect_timeout,  # type: ignore[arg-type]
                ping_interval=5,
                max_outstanding_pings=3,
                error_cb=self._on_error,
                disconnected_cb=self._on_disconnected,
                reconnected_cb=self._on_reconnected,
                closed_cb=self._on_closed,
            )
        except (TimeoutError, nats.errors.Error, OSError) as exc:
            detail = str(exc) or type(exc).__name__
            last = self.errors[-1] if self.errors else detail
            if self.tls is not None and self._tls_errors:
                last = f"TLS: {self._tls_errors[-1]} (trusting the CA in {self.tls.ca_file})"
            raise ConnectError(
                f"{self.member_id} cannot connect to {', '.join(self.servers)}: {last}"
            ) from None
        self.nc.options["max_reconnect_attempts"] = -1
        url = self.nc.connected_url.netloc if self.nc.connected_url else ""
        self._set_status(BusStatus.CONNECTED, url)
        return self

    async def close(self) -> None:
        if self.status == BusStatus.CLOSED:
            return
        self._closing = True
        try:
            if self.nc.is_connected:
                await self.nc.drain()
            else:
                await self.nc.close()
        except (TimeoutError, nats.errors.Error, OSError):
            await self.nc.close()
        self._set_status(BusStatus.CLOSED, "")

    async def __aenter__(self) -> Bus:
        return await self.connect()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def _set_status(self, status: BusStatus, detail: str) -> None:
        self.status = status
        for listener in list(self.listeners):
            try:
                listener(status, detail)
            except Exception:
                log.exception("bus_listener_failed", peer=self.member_id)

    async def _on_error(self, exc: Exception) -> None:
        text = str(exc) or type(exc).__name__
        self.errors.append(text)
        if isinstance(exc, ssl.SSLError):
            self._tls_errors.append(_tls_reason(exc))
        # While first connecting, ConnectError reports the failure once, in one line.
        report = log.debug if self.status == BusStatus.NEW else log.warning
        report("nats_error", peer=self.member_id, error=text)

    async def _on_disconnected(self) -> None:
        if not self._closing and self.status != BusStatus.CLOSED:
            log.warning("nats_disconnected", peer=self.member_id)
            self._set_status(BusStatus.DISCONNECTED, "")

    async def _on_reconnected(self) -> None:
        url = self.nc.connected_url.netloc if self.nc.connected_url else ""
        log.info("nats_reconnected", peer=self.member_id, server=url)
        self._set_status(BusStatus.CONNECTED, url)

    async def _on_closed(self) -> None:
        self.status = BusStatus.CLOSED

    # -- messaging -------------------------------------------------------------------------

    async def publish(
        self,
        subject: str,
        payload: msgspec.Struct,
        *,
        seal_to: Iterable[str] | None = None,
        ttl_s: float | None = None,
    ) -> SignedMessage:
        signed = self.outbox.sign(payload, ttl_s=ttl_s)
        await self._publish(subject, self.outbox.wire(signed, seal_to=seal_to))
        return signed

    async def publish_signed(
        self, subject: str, signed: SignedMessage, *, seal_to: Iterable[str] | None = None
    ) -> None:
        """Publish a statement already signed (e.g. a transaction resubmitted after a fault)."""
        await self._publish(subject, self.outbox.wire(signed, seal_to=seal_to))

    async def _publish(self, subject: str, data: bytes) -> None:
        try:
            await self.nc.publish(subject, data)
        except nats.errors.Error as exc:
            raise PublishError(f"could not publish on {subject}: {type(exc).__name__}") from None

    async def subscribe(
        self,
        subject: str,
        channel: Channel[T],
        handler: Handler[T],
        *,
        queue: str = "",
        on_drop: DropHandler | None = None,
        pending_msgs_limit: int = 512 * 1024,
    ) -> Subscription:
        """Deliver verified messages on ``subject`` to ``handler``; drops go to ``on_drop``."""

        async def dispatch(msg: Msg) -> None:
            await self._deliver(msg, channel, handler, on_drop, hold=True)

        sub = await self.nc.subscribe(
            subject,
            queue=queue,
            cb=dispatch,
            pending_msgs_limit=pending_msgs_limit,
            pending_bytes_limit=256 * 1024 * 1024,
        )
        self._subs.append(sub)
        return sub

    async def _deliver(
        self,
        msg: Msg,
        channel: Channel[T],
        handler: Handler[T],
        on_drop: DropHandler | None,
        *,
        hold: bool,
    ) -> None:
        result = self.verifier.open(msg.data, channel, subject=msg.subject)
        try:
            if isinstance(result, Received):
                await handler(result, msg)
                return
            hook = self.stranger_hook
            if (
                hold
                and hook is not None
                and result.reason == DropReason.UNKNOWN_SENDER
                and result.claimed is not None
                and hook(result.claimed)  # a lookup is under way: worth holding
            ):
                self.held.hold(result.claimed, (msg, channel, handler, on_drop), len(msg.data))
            if on_drop is not None:
                await on_drop(result, msg)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.handler_errors[channel.name] += 1
            log.exception(
                "handler_failed", peer=self.member_id, channel=channel.name, error=repr(exc)
            )

    async def redeliver(self, sender: str) -> int:
        """Check again the messages held for ``sender`` (its key now in the directory) and
        deliver those that verify; returns how many were held."""
        held = self.held.take(sender)
        for msg, channel, handler, on_drop in held:
            await self._deliver(msg, channel, handler, on_drop, hold=False)
        return len(held)

    def discard_held(self, sender: str) -> int:
        """Forget the messages held for ``sender`` (the chain does not know it)."""
        return self.held.discard(sender)

    async def request(
        self,
        subject: str,
        payload: msgspec.Struct,
        reply_channel: Channel[T],
        *,
        timeout: float = 2.0,
        seal_to: Iterable[str] | None = None,
    ) -> Received[T]:
        """A signed request whose reply must itself verify on ``reply_channel``."""
        signed = self.outbox.sign(payload)
        try:
            msg = await self.nc.request(
                subject, self.outbox.wire(signed, seal_to=seal_to), timeout=timeout
            )
        except nats.errors.NoRespondersError:
            raise RequestError(f"no responder on {subject}") from None
        except (TimeoutError, nats.errors.TimeoutError):
            raise RequestError(f"no reply on {subject} within {timeout:.1f}s") from None
        result = self.verifier.open(msg.data, reply_channel)
        if isinstance(result, Dropped):
            raise RequestError(f"reply on {subject} refused: {result.reason} ({result.detail})")
        return result

    async def reply(
        self, msg: Msg, payload: msgspec.Struct, *, seal_to: Iterable[str] | None = None
    ) -> None:
        if msg.reply:
            await self.nc.publish(msg.reply, self.outbox.encode(payload, seal_to=seal_to))

    async def flush(self, timeout: float = 2.0) -> None:
        await self.nc.flush(timeout=timeout)  # type: ignore[arg-type]

    def stats(self) -> dict[str, Any]:
        return {
            "status": self.status.value,
            "accepted": self.verifier.accepted,
            "drops": dict(self.verifier.drops),
            "handler_errors": dict(self.handler_errors),
            "nats_errors": len(self.errors),
        }


def _tls_reason(exc: ssl.SSLError) -> str:
    """One line for a failed handshake: the verification message (``IP address mismatch,
    certificate is not valid for '127.0.0.1'``) rather than OpenSSL's whole tuple."""
    if isinstance(exc, ssl.SSLCertVerificationError) and exc.verify_message:
        return f"certificate verify failed: {exc.verify_message}"
    return exc.reason or str(exc)
