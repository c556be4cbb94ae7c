"""A member's access to the chain: submit transactions, hear their receipts, query authorities.

Members never run nodes (paper section II.1): they submit signed transactions on
``otc.tx.<me>`` and read through the authorities' query services. ``submit`` returns at once
with the transaction id; ``wait`` resolves when the transaction's receipt is final. ``query``
asks the authorities in turn until one answers, so one authority being down is invisible to
the member.

No authority is believed alone (``rfq.ledger.light``): queries that can be proven (status,
ratings, contracts, trades, payments, guarantees, receipts, ``prove``) are asked ``proven``
and an answer is taken only with a final header sealed by a quorum of the authority set the
client follows and a witness of every entry shown against that header's state root. An
answer that fails is dropped, counted in ``dropped`` by reason, and the next authority is
asked. Computed figures are not proven (a contract's marks and values, a client's margin
headroom); headers and blocks are taken as answered (the chain's own checks cover them).

Receipts: a notice on ``otc.note.<me>`` is only a hint. A receipt is final when a proven
receipts query shows the transaction id in the state's ``committed`` map under a final header
(it committed ok), or when more than ``f`` authorities of the followed set sent the same
refusal (a notice or a receipts answer each). A notice from a member that is not an authority
is dropped, so neither a dealer nor a guarantor can tell a client that its trade failed.

```python
async with LedgerClient(bus, genesis) as ledger:
    receipt = await ledger.submit_and_wait(payload)
    ledger.dropped  # Counter of answers and notices refused, by reason
```
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections import Counter, OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, NoReturn, Self, TypeVar

import msgspec
import structlog
from nats.aio.msg import Msg

from bus import subjects
from bus.client import Bus, RequestError
from bus.envelope import Channel, Received
from peers.errors import PeerError
from peers.service import Service, ServiceStatus, cancel_and_wait
from rfq.errors import RfqError
from rfq.identity import AUTHORITY_ELIGIBLE, Genesis, Member
from rfq.ledger.light import MEMBERS, LightClient, LightError, Verified
from rfq.ledger.proof import ProofResult
from rfq.ledger.state import Guarantee, Payment, Receipt, Receipts, Trade
from rfq.policy import BusChannel, channel_roles
from rfq.queries import (
    MAX_RECEIPTS,
    REPLY_ROLES,
    ContractsQuery,
    ContractsReply,
    GuaranteesQuery,
    GuaranteesReply,
    HistoryQuery,
    HistoryReply,
    PaymentsQuery,
    PaymentsReply,
    ProveQuery,
    ProveReply,
    Query,
    QueryRefused,
    RatingsQuery,
    RatingsReply,
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


PROVABLE_QUERIES = (
    StatusQuery,
    RatingsQuery,
    ContractsQuery,
    TradesQuery,
    PaymentsQuery,
    GuaranteesQuery,
    ReceiptsQuery,
)


def _vote(receipt: Receipt) -> tuple[object, ...]:
    """What authorities must agree on for a refusal to be final: the outcome and reason, and
    for a block's receipt its place (an admission refusal is made at each one's own height)."""
    if receipt.index < 0:
        return (receipt.ok, -1, receipt.reason)
    return (receipt.ok, receipt.height, receipt.index, receipt.reason)


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
            # One page's proof does not cover the others' rows: the whole carries none.
            return msgspec.structs.replace(
                reply, **{PAGE_ROWS[kind]: tuple(rows)}, next_cursor="", proof=None
            )
        cursor = reply.next_cursor


MEMBER_ID = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,31}$")
"""What a member id can be (``rfq.identity``): other claims are never looked up."""


class MemberKeys:
    """Learns the keys of members admitted after the genesis, so a peer that does not follow
    the chain (a client, a dealer, the bank) verifies their messages: a message from a sender
    its bus's directory does not know is held (``Bus.held``) and ``want`` asks the authorities
    for a proof of ``members[sender]`` under a final header (``LedgerClient.prove``). A proven
    entry joins the directory and the held messages are checked again; a proven absence is
    remembered for ``negative_ttl_s`` and the messages dropped. Lookups are bounded: at most
    ``rate_per_s`` (burst ``burst``) and ``max_inflight`` at once, claims that cannot be a
    member id never asked, so a flood of made-up senders cannot make the peer query without
    end; a message over the rate is dropped (a later one from the sender asks again)."""

    def __init__(
        self,
        ledger: LedgerClient,
        *,
        rate_per_s: float = 2.0,
        burst: int = 5,
        max_inflight: int = 2,
        negative_ttl_s: float = 10.0,
        max_negative: int = 4096,
        timeout_s: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ledger = ledger
        self.rate_per_s = rate_per_s
        self.burst = float(burst)
        self.max_inflight = max_inflight
        self.negative_ttl_s = negative_ttl_s
        self.max_negative = max_negative
        self.timeout_s = timeout_s
        self.clock = clock
        self.stats: Counter[str] = Counter()
        """``asked`` lookups, ``learned`` members, ``unknown`` proven absent, ``failed``
        (no proof), ``known_absent`` claims answered from the remembered absences,
        ``rate_limited`` claims not looked up for the rate, ``not_an_id``."""
        self._tokens = self.burst
        self._refilled = clock()
        self._absent: OrderedDict[str, float] = OrderedDict()
        self._inflight: dict[str, asyncio.Task[None]] = {}

    @property
    def bus(self) -> Any:
        return self.ledger.bus

    def want(self, sender: str) -> bool:
        """A message claims ``sender``, whom the directory does not know: look it up, within
        the bounds. True when a lookup (or a redelivery) is under way, so the bus holds the
        message; False when it is dropped: a proven absence remembered, a claim that cannot
        be an id, or no token left (a later message from the sender asks again)."""
        if sender in self._inflight:
            return True
        if sender in self.bus.directory:  # learned since the message was checked
            self._spawn(sender, self.bus.redeliver(sender))
            return True
        now = self.clock()
        until = self._absent.get(sender)
        if until is not None and until > now:
            self.stats["known_absent"] += 1
            return False
        if not MEMBER_ID.match(sender):
            self.stats["not_an_id"] += 1
            self._remember_absent(sender, now)
            return False
        self._tokens = min(self.burst, self._tokens + (now - self._refilled) * self.rate_per_s)
        self._refilled = now
        if self._tokens < 1.0 or len(self._inflight) >= self.max_inflight:
            self.stats["rate_limited"] += 1
            return False
        self._tokens -= 1.0
        self.stats["asked"] += 1
        self._spawn(sender, self._learn(sender))
        return True

    def _spawn(self, sender: str, work: Awaitable[Any]) -> None:
        async def run() -> None:
            await work

        task = asyncio.get_running_loop().create_task(run(), name=f"learn-{sender}")
        self._inflight[sender] = task
        task.add_done_callback(lambda _: self._inflight.pop(sender, None))

    async def _learn(self, sender: str) -> None:
        try:
            verified = await self.ledger.prove(MEMBERS, (sender,), timeout=self.timeout_s)
            proven = verified.entry(MEMBERS, sender)
            member = proven.decode(Member) if proven.present else None
        except (PeerError, RfqError) as exc:  # no authority proved it, or the proof is bad
            self.stats["failed"] += 1
            log.info("member_lookup_failed", peer=self.bus.member_id, sender=sender, error=str(exc))
            self.bus.discard_held(sender)
            return
        if member is None or member.id != sender:
            self.stats["unknown"] += 1
            self._remember_absent(sender, self.clock())
            dropped = self.bus.discard_held(sender)
            log.info("member_unknown", peer=self.bus.member_id, sender=sender, dropped=dropped)
            return
        self.bus.directory.add(member)
        self._absent.pop(sender, None)
        self.stats["learned"] += 1
        log.info(
            "member_learned",
            peer=self.bus.member_id,
            member=sender,
            role=member.role.value,
            height=verified.height,
        )
        await self.bus.redeliver(sender)

    def _remember_absent(self, sender: str, now: float) -> None:
        self._absent[sender] = now + self.negative_ttl_s
        self._absent.move_to_end(sender)
        while len(self._absent) > self.max_negative:
            self._absent.popitem(last=False)

    async def close(self) -> None:
        for task in list(self._inflight.values()):
            await cancel_and_wait(task)
        self._inflight.clear()


class LedgerClient(Service):
    """Submit, hear receipts and query on behalf of one member; a ``Service``: ``start``
    subscribes to the member's notices, ``close`` unsubscribes and stops the receipt checks
    it started. ``verify=False`` takes answers as given (a view of each authority's own
    word, e.g. ``botc status``)."""

    def __init__(
        self,
        bus: Bus,
        genesis: Genesis,
        *,
        authorities: Sequence[str] | None = None,
        verify: bool = True,
    ):
        self.bus = bus
        self.genesis = genesis
        self.verify = verify
        self.authorities = list(authorities or genesis.authorities.initial)
        # The keys the bus verifies members with (a stand-in bus without: the genesis').
        self.light = LightClient(genesis, getattr(bus, "directory", None))
        self.dropped: Counter[str] = Counter()
        """Answers and notices refused, by reason (``rfq.ledger.light.LightError.kind``, or
        ``wrong_sender``, ``note_not_from_authority``, ``bad_receipt``)."""
        self.stats: Counter[str] = Counter()
        """``verified``: answers taken with their proofs; ``proven_ok``: receipts proven
        committed; ``agreed_refusal``: refusals final by f+1 authorities."""
        self._receipts: dict[str, Receipt] = {}
        self._waiters: dict[str, list[asyncio.Future[Receipt]]] = {}
        self._votes: dict[str, dict[str, Receipt]] = {}
        self._checking: dict[str, asyncio.Task[None]] = {}
        self._subscription: Any = None
        self.remember = 50_000
        self.listeners: list[Callable[[Receipt], None]] = []
        self.replies = reply_channel(genesis.params.consensus_max_bytes)
        self.eligible = [m.id for m in genesis.members if m.role in AUTHORITY_ELIGIBLE]
        self.member_keys = MemberKeys(self)
        """Learns members admitted after the genesis, for the bus (the first ledger client
        of a bus that has none installs it)."""
        if verify and getattr(bus, "stranger_hook", False) is None:
            bus.stranger_hook = self.member_keys.want

    @property
    def authorities_in_force(self) -> tuple[str, ...]:
        """The authority set the light client follows (sealing the next height)."""
        return self.light.authorities

    async def start(self) -> Self:
        if self.status != ServiceStatus.NEW:
            return self
        self._subscription = await self.bus.subscribe(
            subjects.notify(self.bus.member_id), NOTE_CHANNEL, self._on_note
        )
        await self.bus.flush()
        self.status = ServiceStatus.RUNNING
        return self

    async def _shutdown(self) -> None:
        if getattr(self.bus, "stranger_hook", None) == self.member_keys.want:
            self.bus.stranger_hook = None
        await self.member_keys.close()
        if self._subscription is not None:
            try:
                await self._subscription.unsubscribe()
            except Exception as exc:  # the bus may be closed already
                log.debug("note_unsubscribe_failed", error=repr(exc))
            self._subscription = None
        for task in set(self._checking.values()):
            await cancel_and_wait(task)
        self._checking.clear()
        for futures in self._waiters.values():
            for future in futures:
                if not future.done():
                    future.set_exception(LedgerUnavailable("the ledger client closed"))
        self._waiters.clear()

    # -- receipts ----------------------------------------------------------------------------

    async def _on_note(self, received: Received[Receipt | Receipts], msg: Msg) -> None:
        note, authority = received.payload, received.sender
        if self.verify and authority not in self.light.authorities:
            self.dropped["note_not_from_authority"] += 1
            log.warning("note_dropped", peer=self.bus.member_id, sender=authority)
            return
        heard: list[str] = []
        for receipt in note.receipts if isinstance(note, Receipts) else (note,):
            if receipt.sender and receipt.sender != self.bus.member_id:
                continue
            if not self.verify and receipt.index >= 0:
                self._record(receipt)
            elif not self._voted(receipt, authority) and receipt.index >= 0:
                heard.append(receipt.tx_id)
        if heard:
            self._check_soon(heard, authority)

    def _voted(self, receipt: Receipt, authority: str) -> bool:
        """Count ``authority``'s word on a transaction; True once the receipt is final. A
        refusal is final when more than ``f`` authorities of the followed set agree on it
        (one of them is honest); an ok is final only with a proof (``_check``)."""
        if receipt.tx_id in self._receipts:
            return True
        if self.verify and authority not in self.light.authorities:
            return False
        votes = self._votes.setdefault(receipt.tx_id, {})
        votes[authority] = receipt
        while len(self._votes) > self.remember:
            self._votes.pop(next(iter(self._votes)))
        if receipt.ok:
            return False
        key = _vote(receipt)
        agree = [a for a, r in votes.items() if _vote(r) == key and a in self.light.authorities]
        if len(agree) > self.light.max_faulty or not self.verify:
            self.stats["agreed_refusal"] += 1
            self._record(receipt)
            return True
        return False

    def _check_soon(self, tx_ids: Sequence[str], first: str) -> None:
        """Ask for the proof (or the agreeing authorities) of receipts heard of: one query
        for a block's worth, first of the authority that sent them (it has the block)."""
        fresh = [t for t in tx_ids if t not in self._checking and t not in self._receipts]
        if not fresh or self.status != ServiceStatus.RUNNING:
            return
        task = asyncio.create_task(self._check(fresh, first), name=f"{self.bus.member_id}-receipts")
        for t in fresh:
            self._checking[t] = task

        def forget(_: object) -> None:
            for t in fresh:
                if self._checking.get(t) is task:
                    del self._checking[t]

        task.add_done_callback(forget)

    async def _check(self, tx_ids: list[str], first: str, *, rounds: int = 4) -> None:
        delay = 0.05
        for _ in range(rounds):
            await self.final_receipts(tx_ids, timeout=1.0, first=first)
            tx_ids = [t for t in tx_ids if t not in self._receipts]
            if not tx_ids:
                return
            await asyncio.sleep(delay)
            delay *= 3

    def _record(self, receipt: Receipt) -> None:
        if receipt.tx_id in self._receipts:
            return
        self._receipts[receipt.tx_id] = receipt
        self._votes.pop(receipt.tx_id, None)
        while len(self._receipts) > self.remember:  # a long-running peer keeps the newest
            self._receipts.pop(next(iter(self._receipts)))
        for listener in list(self.listeners):
            listener(receipt)
        for future in self._waiters.pop(receipt.tx_id, []):
            if not future.done():
                future.set_result(receipt)

    def final(self, tx_id: str) -> Receipt | None:
        """The transaction's final receipt, if one is known."""
        return self._receipts.get(tx_id)

    async def final_receipts(
        self, tx_ids: Sequence[str], *, timeout: float = 2.0, first: str | None = None
    ) -> dict[str, Receipt]:
        """The final receipts of ``tx_ids`` that can be established now: proven committed,
        or refused alike by more than ``f`` authorities (asked in turn, ``first`` first,
        until they agree)."""
        order = list(self.authorities)
        if first in order:
            order.remove(first)
            order.insert(0, first)
        pending = [t for t in dict.fromkeys(tx_ids) if t not in self._receipts]
        for start in range(0, len(pending), MAX_RECEIPTS):
            await self._gather(pending[start : start + MAX_RECEIPTS], order, timeout)
        return {t: r for t in tx_ids if (r := self._receipts.get(t)) is not None}

    async def _gather(self, wanted: list[str], order: list[str], timeout: float) -> None:
        for authority in order:
            try:
                reply, sender, _ = await self._ask(authority, ReceiptsQuery(tuple(wanted)), timeout)
            except (RequestError, QueryDenied):
                continue
            if not isinstance(reply, ReceiptsReply):
                continue
            for receipt in reply.receipts:
                if receipt.ok or not self.verify:
                    if self.verify and receipt.tx_id not in self._receipts:
                        self.stats["proven_ok"] += 1
                    self._record(receipt)  # ``_ask`` checked its proof
                else:
                    self._voted(receipt, sender)
            wanted = [t for t in wanted if t not in self._receipts]
            if not any(self._votes.get(t) for t in wanted):
                return  # nothing more to gather: no one has refused what remains

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
        """The transaction's final receipt: committed (``ok``) or refused with a reason.

        Final is proven committed, or a refusal more than ``f`` authorities agree on;
        anything less keeps waiting (and asking for the receipt) until the deadline.
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
                await self.final_receipts((tx_id,), timeout=1.0)

    async def submit_and_wait(self, payload: msgspec.Struct, *, timeout: float = 10.0) -> Receipt:
        return await self.wait(await self.submit(payload), timeout=timeout)

    # -- queries ---------------------------------------------------------------------------

    async def _ask(
        self, authority: str, query: Query, timeout: float
    ) -> tuple[Reply, str, Verified | None]:
        """``authority``'s answer to ``query``, who signed it and, when the query can be
        proven, what its proof established. Raises ``RequestError`` for no answer or one
        that fails its checks (counted in ``dropped``), ``QueryDenied`` for a refusal."""
        proven = self.verify and isinstance(query, (*PROVABLE_QUERIES, ProveQuery))
        if proven and isinstance(query, PROVABLE_QUERIES):
            query = msgspec.structs.replace(query, proven=True)
        received = await self.bus.request(
            subjects.query(authority), query, self.replies, timeout=timeout
        )
        reply = received.payload
        if received.sender != authority and self.verify:
            self._drop("wrong_sender", authority, f"answered by {received.sender}")
        if isinstance(reply, QueryRefused):
            raise QueryDenied(reply.reason)
        verified = None
        if proven:
            try:
                verified = self._check_answer(reply)
            except LightError as exc:
                self._drop(exc.kind, authority, exc.reason)
        elif isinstance(reply, StatusReply):
            self._follow_set(reply.authorities)
        return reply, received.sender, verified

    def _drop(self, kind: str, authority: str, reason: str) -> NoReturn:
        """Count a refused answer and ask ``authority`` last from now on."""
        self.dropped[kind] += 1
        if authority in self.authorities:
            self.authorities.remove(authority)
            self.authorities.append(authority)
        log.warning(
            "answer_dropped", peer=self.bus.member_id, authority=authority, kind=kind, reason=reason
        )
        raise RequestError(f"answer dropped ({kind}: {reason})")

    def _check_answer(self, reply: Reply) -> Verified:
        """The answer's proof, verified, and every row it shows proven; ``LightError``."""
        verified = self.light.verify(getattr(reply, "proof", None))
        match reply:
            case StatusReply():
                gov = verified.governance
                if (
                    reply.height != verified.height
                    or reply.last_hash != verified.header_hash.hex()
                    or tuple(reply.authorities) != gov.authorities
                    or tuple(reply.candidates) != gov.candidates
                ):
                    raise LightError("bad_row", "the status is not the proven header's")
            case ContractsReply():
                verified.contracts(reply.contracts)
            case RatingsReply():
                verified.ratings(reply.ratings, reply.grades, reply.standing)
            case PaymentsReply():
                verified.rows("payments", reply.payments, lambda p: p.id, Payment)
            case TradesReply():
                verified.rows("trades", reply.trades, lambda t: t.rfq_id, Trade)
            case GuaranteesReply():
                verified.rows("guarantees", reply.guarantees, lambda g: g.id, Guarantee)
            case ReceiptsReply():
                for receipt in reply.receipts:
                    if receipt.ok != verified.committed(receipt.tx_id):
                        raise LightError(
                            "bad_receipt",
                            f"{receipt.tx_id[:12]} is {'ok' if receipt.ok else 'refused'} "
                            "but the state says otherwise",
                        )
            case _:
                pass
        self._follow_set(verified.governance.authorities)
        self.stats["verified"] += 1
        return verified

    async def query(self, query: Query, *, timeout: float = 2.0) -> Reply:
        """Ask the authorities in turn; the first answer that passes its checks wins
        (refusals raise ``QueryDenied``)."""
        errors = []
        for authority in list(self.authorities):
            try:
                reply, _, _ = await self._ask(authority, query, timeout)
            except RequestError as exc:
                errors.append(f"{authority}: {exc}")
                continue
            # Prefer the authority that answered next time.
            self.authorities.remove(authority)
            self.authorities.insert(0, authority)
            return reply
        raise LedgerUnavailable("no authority answered: " + "; ".join(errors))

    async def prove(self, component: str, keys: Sequence[str], *, timeout: float = 2.0) -> Verified:
        """Proofs of ``component[key]`` for each key (present or absent) under a final
        header, asking the authorities in turn (``rfq.queries.PROVABLE``)."""
        errors = []
        for authority in list(self.authorities):
            try:
                reply, _, verified = await self._ask(
                    authority, ProveQuery(component, tuple(keys)), timeout
                )
            except RequestError as exc:
                errors.append(f"{authority}: {exc}")
                continue
            if isinstance(reply, ProveReply) and verified is not None:
                return verified
            errors.append(f"{authority}: answered {type(reply).__name__}")
        raise LedgerUnavailable("no authority proved it: " + "; ".join(errors))

    async def history(
        self, component: str, keys: Sequence[str], *, timeout: float = 2.0
    ) -> dict[str, ProofResult]:
        """Entries that left the hot state (``rfq.queries.HistoryQuery``), each proven
        under the last header whose state held it (``LightClient.verify_history``), by key;
        keys no authority has history of are left out. Asks the authorities in turn; an
        answer whose proof fails is dropped and the next one asked."""
        wanted = set(keys)
        errors = []
        for authority in list(self.authorities):
            try:
                reply, _, _ = await self._ask(
                    authority, HistoryQuery(component, tuple(keys)), timeout
                )
            except RequestError as exc:
                errors.append(f"{authority}: {exc}")
                continue
            if not isinstance(reply, HistoryReply):
                errors.append(f"{authority}: answered {type(reply).__name__}")
                continue
            found: dict[str, ProofResult] = {}
            try:
                for proof in reply.proofs:
                    verified = self.light.verify_history(proof)
                    for (proven_component, key), result in verified.entries.items():
                        if proven_component == component and key in wanted and result.present:
                            found[key] = result
            except LightError as exc:
                with contextlib.suppress(RequestError):
                    self._drop(exc.kind, authority, exc.reason)
                errors.append(f"{authority}: {exc}")
                continue
            self.stats["verified"] += 1
            return found
        raise LedgerUnavailable("no authority answered: " + "; ".join(errors))

    def _follow_set(self, authorities: Sequence[str]) -> None:
        """Ask the current authorities first (a by-elected one included), then the others;
        among them, keep the order of preference (the last to answer well first)."""
        current = {a for a in authorities if a in self.eligible}
        known = [a for a in self.authorities if a in current]
        joined = [a for a in authorities if a in current and a not in known]
        self.authorities = known + joined + [a for a in self.authorities if a not in current]

    async def query_all(
        self, query: PagedQuery, kind: type[R], *, timeout: float = 2.0, max_rows: int = 10**7
    ) -> R:
        """Every row of a paged query, asking the authorities in turn (``read_pages``)."""

        async def ask(page: Query) -> Reply:
            return await self.query(page, timeout=timeout)

        return await read_pages(ask, query, kind, max_rows=max_rows)

    async def chain_status(self) -> StatusReply:
        """The chain's tip and authority set, as an authority answers ``StatusQuery``."""
        reply = await self.query(StatusQuery())
        if not isinstance(reply, StatusReply):
            raise LedgerUnavailable(f"unexpected reply {type(reply).__name__}")
        return reply

    async def ask_all(self, query: Query, *, timeout: float = 2.0) -> dict[str, Any]:
        """Every authority's own answer, as given (``botc status`` shows each); errors as
        strings."""

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
