"""A member's access to the chain: submit transactions, hear their receipts, query authorities.

Members never run nodes (paper section II.1): they submit signed transactions on
``otc.tx.<me>`` and read through the authorities' query services. ``submit`` returns at once
with the transaction id; ``wait`` resolves when the receipt arrives on ``otc.note.<me>`` (sent
by the block's proposer, or at admission when an authority refuses it) or, if that
notification was lost, when a receipts query finds it. ``query`` asks the authorities in
turn until one answers, so one authority being down is invisible to the member.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import msgspec
import structlog
from nats.aio.msg import Msg

from bus import subjects
from bus.client import Bus, RequestError
from bus.envelope import Channel, Received
from peers.errors import PeerError
from rfq.identity import AUTHORITY_ELIGIBLE, Genesis
from rfq.ledger.block import max_faulty
from rfq.ledger.state import Receipt, Receipts
from rfq.policy import BusChannel, channel_roles
from rfq.queries import (
    REPLY_ROLES,
    ContractsQuery,
    ContractsReply,
    GuaranteesQuery,
    GuaranteesReply,
    PaymentsQuery,
    PaymentsReply,
    Query,
    QueryRefused,
    ReceiptsQuery,
    ReceiptsReply,
    Reply,
    StatusQuery,
    StatusReply,
    TradesQuery,
    TradesReply,
)
from rfq.signing import SignedMessage, tx_id

log = structlog.get_logger(__name__)

NOTE_CHANNEL: Channel[Receipt | Receipts] = Channel.of(
    "notes", Receipt | Receipts, channel_roles(BusChannel.NOTES)
)


def reply_channel(max_bytes: int) -> Channel[Reply]:
    """Replies can be large (the regulator reads the whole market): up to ``max_bytes``."""
    return Channel.of("query_reply", Reply, REPLY_ROLES, max_bytes=max_bytes)


_encoder = msgspec.msgpack.Encoder()


class LedgerUnavailable(PeerError):
    """No authority answered."""


class QueryDenied(PeerError):
    """The authority refused the query (e.g. someone else's records)."""


PagedQuery = ContractsQuery | TradesQuery | PaymentsQuery | GuaranteesQuery
PagedReply = ContractsReply | TradesReply | PaymentsReply | GuaranteesReply
R = TypeVar("R", ContractsReply, TradesReply, PaymentsReply, GuaranteesReply)
PAGE_ROWS: dict[type[Any], str] = {
    ContractsReply: "contracts",
    TradesReply: "trades",
    PaymentsReply: "payments",
    GuaranteesReply: "guarantees",
}


async def read_pages(
    ask: Callable[[Query], Awaitable[Reply]], query: PagedQuery, kind: type[R], *, max_rows: int
) -> R:
    """Every row of a paged query, page after page, through ``ask``: one reply of ``kind``
    holding all rows (``total`` from the last page; at least ``max_rows`` rows end it early).
    Pages are read by cursor, so a row committed between two pages is either in a later page
    or counted in the next read. Raises ``LedgerUnavailable`` for a reply of another kind."""
    rows: list[Any] = []
    cursor = ""
    while True:
        reply = await ask(msgspec.structs.replace(query, cursor=cursor))
        if not isinstance(reply, kind):
            raise LedgerUnavailable(f"expected {kind.__name__}, got {type(reply).__name__}")
        rows.extend(getattr(reply, PAGE_ROWS[kind]))
        if not reply.next_cursor or len(rows) >= max_rows:
            return msgspec.structs.replace(reply, **{PAGE_ROWS[kind]: tuple(rows)}, next_cursor="")
        cursor = reply.next_cursor


class LedgerClient:
    """Submit and query on behalf of one member."""

    def __init__(self, bus: Bus, genesis: Genesis, *, authorities: Sequence[str] | None = None):
        self.bus = bus
        self.genesis = genesis
        self.authorities = list(authorities or genesis.authorities.initial)
        self._receipts: dict[str, Receipt] = {}
        self._waiters: dict[str, list[asyncio.Future[Receipt]]] = {}
        self._refusals: dict[str, set[str]] = {}
        self.remember = 50_000
        self.authorities_in_force = tuple(genesis.authorities.initial)
        self.listeners: list[Callable[[Receipt], None]] = []
        self._started = False
        self.replies = reply_channel(genesis.params.consensus_max_bytes)
        self.eligible = [m.id for m in genesis.members if m.role in AUTHORITY_ELIGIBLE]

    async def start(self) -> LedgerClient:
        if not self._started:
            await self.bus.subscribe(
                subjects.notify(self.bus.member_id), NOTE_CHANNEL, self._on_note
            )
            await self.bus.flush()
            self._started = True
        return self

    async def _on_note(self, received: Received[Receipt | Receipts], msg: Msg) -> None:
        note = received.payload
        for receipt in note.receipts if isinstance(note, Receipts) else (note,):
            if receipt.sender and receipt.sender != self.bus.member_id:
                continue
            if receipt.index < 0:
                self._refused_by(receipt, received.sender)
            else:
                self._record(receipt)

    def _refused_by(self, receipt: Receipt, authority: str) -> None:
        """An authority refused the transaction at admission. One authority may lie; f+1
        distinct ones include an honest one, so their refusal is final."""
        refusers = self._refusals.setdefault(receipt.tx_id, set())
        refusers.add(authority)
        if len(refusers) > max_faulty(len(self.authorities_in_force)):
            self._record(receipt)

    def _record(self, receipt: Receipt) -> None:
        # A block's receipt is the final word; an admission refusal never replaces it.
        current = self._receipts.get(receipt.tx_id)
        if current is not None and current.index >= 0 and receipt.index < 0:
            return
        self._receipts[receipt.tx_id] = receipt
        self._refusals.pop(receipt.tx_id, None)
        while len(self._receipts) > self.remember:  # a long-running peer keeps the newest
            self._receipts.pop(next(iter(self._receipts)))
        while len(self._refusals) > self.remember:
            self._refusals.pop(next(iter(self._refusals)))
        for listener in list(self.listeners):
            listener(receipt)
        for future in self._waiters.pop(receipt.tx_id, []):
            if not future.done():
                future.set_result(receipt)

    # -- transactions ----------------------------------------------------------------------

    async def submit(self, payload: msgspec.Struct, *, ttl_s: float | None = None) -> str:
        """Sign and submit a transaction; returns its id (hex)."""
        signed = self.bus.outbox.sign(payload, ttl_s=ttl_s)
        return await self.submit_signed(signed)

    async def submit_signed(self, signed: SignedMessage) -> str:
        """Submit an already signed transaction (e.g. a client's accept, or a resubmission:
        the same bytes are the same id, so it can never commit twice)."""
        data = _encoder.encode(signed)
        await self.bus.nc.publish(subjects.tx(self.bus.member_id), data)
        return tx_id(data).hex()

    async def wait(self, tx_id: str, *, timeout: float = 10.0, poll_s: float = 1.0) -> Receipt:
        """The transaction's receipt: committed (``ok``) or refused with a reason.

        A block's receipt is final; so is a refusal at admission by f+1 authorities. Anything
        less keeps waiting (and polling the receipts) until the deadline.
        """
        deadline = time.monotonic() + timeout
        while True:
            found = self._receipts.get(tx_id)
            if found is not None:
                return found
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise LedgerUnavailable(f"no receipt for {tx_id[:12]} within {timeout:.0f}s")
            future: asyncio.Future[Receipt] = asyncio.get_running_loop().create_future()
            self._waiters.setdefault(tx_id, []).append(future)
            try:
                await asyncio.wait_for(asyncio.shield(future), min(poll_s, remaining))
            except TimeoutError:
                await self._poll(tx_id)

    async def _poll(self, tx_id: str) -> None:
        try:
            reply = await self.query(ReceiptsQuery((tx_id,)), timeout=1.0)
        except (LedgerUnavailable, QueryDenied):
            return
        if isinstance(reply, ReceiptsReply):
            for receipt in reply.receipts:
                self._record(receipt)

    async def submit_and_wait(self, payload: msgspec.Struct, *, timeout: float = 10.0) -> Receipt:
        return await self.wait(await self.submit(payload), timeout=timeout)

    # -- queries ---------------------------------------------------------------------------

    async def query(self, query: Query, *, timeout: float = 2.0) -> Reply:
        """Ask the authorities in turn; the first answer wins (refusals raise)."""
        errors = []
        for authority in list(self.authorities):
            try:
                reply = await self.bus.request(
                    subjects.query(authority), query, self.replies, timeout=timeout
                )
            except RequestError as exc:
                errors.append(f"{authority}: {exc}")
                continue
            # Prefer the authority that answered next time.
            self.authorities.remove(authority)
            self.authorities.insert(0, authority)
            if isinstance(reply.payload, QueryRefused):
                raise QueryDenied(reply.payload.reason)
            if isinstance(reply.payload, StatusReply):
                self._follow_set(reply.payload.authorities)
            return reply.payload
        raise LedgerUnavailable("no authority answered: " + "; ".join(errors))

    def _follow_set(self, authorities: Sequence[str]) -> None:
        """Ask the current authorities first (a by-elected one included), then the others."""
        self.authorities_in_force = tuple(authorities)
        current = [a for a in authorities if a in self.eligible]
        self.authorities = current + [a for a in self.authorities if a not in current]

    async def query_all(
        self, query: PagedQuery, kind: type[R], *, timeout: float = 2.0, max_rows: int = 10**7
    ) -> R:
        """Every row of a paged query, asking the authorities in turn (``read_pages``)."""

        async def ask(page: Query) -> Reply:
            return await self.query(page, timeout=timeout)

        return await read_pages(ask, query, kind, max_rows=max_rows)

    async def status(self) -> StatusReply:
        reply = await self.query(StatusQuery())
        if not isinstance(reply, StatusReply):
            raise LedgerUnavailable(f"unexpected reply {type(reply).__name__}")
        return reply

    async def ask_all(self, query: Query, *, timeout: float = 2.0) -> dict[str, Any]:
        """Every authority's own answer (``botc status`` shows each); errors as strings."""

        async def one(authority: str) -> tuple[str, Any]:
            try:
                reply = await self.bus.request(
                    subjects.query(authority), query, self.replies, timeout=timeout
                )
                return authority, reply.payload
            except RequestError as exc:
                return authority, str(exc)

        results = await asyncio.gather(*(one(a) for a in self.authorities))
        return dict(results)
