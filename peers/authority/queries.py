"""An authority's query service: answers from the final state and the chain store.

Members never run nodes: they read the chain here. How much of each answer a member sees is
its role's query scope in the role-policy table (``rfq.policy``); ``rfq.queries.refusal``
refuses asking for more.
The node decides *when* a query may be answered (only where its state is a final block's);
this class decides *what* the answer is, and reads nothing but what it is given.

A query marked ``proven`` (and every ``ProveQuery``) is answered with an ``AnswerProof``: the
head's header and commit seals, the state root's parts, the governance struct and a witness
per row (``rfq.ledger.light``), so the member believes the answer without believing this
authority. A proven page holds at most ``PROVEN_PAGE_LIMIT`` rows, so it stays far under the
payload limit with its proofs.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence
from typing import cast

import msgspec

from peers.authority.history import history_proofs, parties_of
from peers.authority.query_index import PaymentIndex, TradeIndex, since_key
from peers.authority.store import ChainStore
from rfq.identity import Role
from rfq.ledger.block import BlockHeader, CommitSeal
from rfq.ledger.light import COMMITTED, AnswerProof, Witness, witness_of
from rfq.ledger.proof import CONTRACTS, GOVERNANCE, ProofError
from rfq.ledger.state import LedgerState, business_date
from rfq.policy import sees_all
from rfq.queries import (
    BLOCKS_REPLY_BYTES,
    HISTORY_COMPONENTS,
    HISTORY_KEYS_LIMIT,
    MAX_BLOCKS_PER_REPLY,
    MAX_RECEIPTS,
    PROVEN_PAGE_LIMIT,
    REPLY_BUDGET,
    BlocksQuery,
    BlocksReply,
    ContractsQuery,
    ContractsReply,
    CursorRefused,
    GuaranteesQuery,
    GuaranteesReply,
    HeaderInfo,
    HeadersQuery,
    HeadersReply,
    HistoryQuery,
    HistoryReply,
    PagedQuery,
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
    make_cursor,
    page,
    page_of,
    read_cursor,
)
from rfq.rating import grade_of

_encoder = msgspec.msgpack.Encoder()


def rows_of(reply: Reply) -> Sequence[object]:
    """The rows of a page reply (none for other replies)."""
    for name in ("contracts", "trades", "payments", "guarantees", "receipts"):
        rows = getattr(reply, name, None)
        if rows is not None:
            return cast("Sequence[object]", rows)
    return ()


def _has(keys: Sequence[str], key: str) -> bool:
    k = bisect.bisect_left(keys, key)
    return k < len(keys) and keys[k] == key


def _limit(limit: int, proven: bool) -> int:
    return min(limit, PROVEN_PAGE_LIMIT) if proven else limit


class QueryService:
    """What authority ``me`` answers, from a final state and its own chain store."""

    def __init__(self, me: str, store: ChainStore, *, reply_budget: int = REPLY_BUDGET) -> None:
        self.me = me
        self.store = store
        self.reply_budget = reply_budget
        self._trades = TradeIndex()
        self._payments = PaymentIndex()
        self._sealed: tuple[bytes, BlockHeader, tuple[CommitSeal, ...]] | None = None

    def _seals(self, head: BlockHeader) -> tuple[BlockHeader, tuple[CommitSeal, ...]]:
        """The head as stored, with its commit seals (read once per head)."""
        cached = self._sealed
        if cached is not None and cached[0] == head.hash():
            return cached[1], cached[2]
        block = self.store.block(head.height) if head.height > 0 else None
        header = head
        seals: tuple[CommitSeal, ...] = ()
        if block is not None and block.hash() == head.hash():
            header, seals = block.header, block.seals
        self._sealed = (head.hash(), header, seals)
        return header, seals

    def proof(
        self, state: LedgerState, head: BlockHeader, witnesses: Iterable[tuple[str, str]]
    ) -> AnswerProof:
        """The proof of ``(component, key)`` entries of ``state`` at final ``head``."""
        header, seals = self._seals(head)
        governance = state.prove(GOVERNANCE)
        assert governance.value is not None
        out: list[Witness] = []
        for component, key in witnesses:
            try:
                out.append(witness_of(state.prove(component, key)))
            except ProofError:
                continue  # not a component: the member finds the witness missing
        return AnswerProof(header, seals, governance.parts, governance.value, tuple(out))

    def answer(
        self,
        state: LedgerState,
        head: BlockHeader,
        mempool: int,
        who: str,
        role: Role,
        query: Query,
    ) -> Reply:
        """``who`` (of ``role``) asks ``query`` of ``state`` at final ``head``: the reply, or
        a refusal that says why (a cursor it may not continue with, a page over the reply
        budget)."""
        try:
            reply = self._answer(state, head, mempool, who, role, query)
        except CursorRefused as exc:
            return QueryRefused(str(exc))
        if isinstance(query, PagedQuery) and (rows := len(rows_of(reply))):
            size = len(_encoder.encode(reply))
            if size > self.reply_budget:
                fix = "ask for fewer rows (a lower limit)" if rows > 1 else "one row is too big"
                return QueryRefused(
                    f"the reply would be {size:,} bytes, over the {self.reply_budget:,} a reply "
                    f"may carry ({rows} rows): {fix}"
                )
        return reply

    def _answer(
        self,
        state: LedgerState,
        head: BlockHeader,
        mempool: int,
        who: str,
        role: Role,
        query: Query,
    ) -> Reply:

        match query:
            case StatusQuery(proven=proven):
                return StatusReply(
                    authority=self.me,
                    height=head.height,
                    last_hash=head.hash().hex(),
                    last_block_ms=head.timestamp_ms,
                    authorities=state.authorities,
                    candidates=state.gov.candidates,
                    governance=state.gov.log[-20:],
                    mempool=mempool,
                    is_authority=self.me in state.authorities,
                    business_date=str(business_date(head.timestamp_ms, state.book)),
                    open_contracts=state.book.open_count,
                    proof=self.proof(state, head, ()) if proven else None,
                )
            case HeadersQuery(limit=limit, before=before):
                top = head.height if before <= 0 else min(before - 1, head.height)
                infos = []
                for height in range(top, max(top - min(limit, 200), 0), -1):
                    block = self.store.block(height)
                    if block is not None:
                        h = block.header
                        infos.append(
                            HeaderInfo(
                                h.height,
                                h.hash().hex(),
                                h.timestamp_ms,
                                h.proposer,
                                h.round,
                                h.tx_count,
                                h.state_root.hex(),
                            )
                        )
                return HeadersReply(tuple(infos))
            case ContractsQuery(
                party=party,
                open_only=open_only,
                ids=ids,
                limit=limit,
                proven=proven,
            ):
                after = read_cursor(who, query, head.height)
                target = party or (None if sees_all(role, "q_contracts") else who)
                book = state.book
                size = _limit(limit, proven)
                keys: Sequence[str] = book.party_ids(target, open_only)
                if ids:
                    # Named contracts: those of them the asker may see, by id.
                    held = set(keys) if len(ids) * 8 > len(keys) else None
                    keys = sorted(
                        {
                            cid
                            for cid in ids
                            if (cid in held if held is not None else _has(keys, cid))
                        }
                    )
                if query.since_height:
                    keys = book.changed_since(keys, query.since_height)
                begin, stop, more = page_of(keys, after, size)
                rows = book.views(keys[begin:stop])
                next_cursor = make_cursor(who, query, keys[stop - 1], head.height) if more else ""
                proof = (
                    self.proof(state, head, ((CONTRACTS, v.contract.id) for v in rows))
                    if proven
                    else None
                )
                return ContractsReply(head.height, tuple(rows), len(keys), next_cursor, proof)
            case TradesQuery(
                party=party,
                underlying=underlying,
                limit=limit,
                proven=proven,
                since_height=since_height,
            ):
                after = read_cursor(who, query, head.height)
                target = party or (None if sees_all(role, "q_trades") else who)
                index = self._trades
                index.refresh(head.hash(), state.trades, state.book)
                tkeys = index.keys(target, underlying)
                if since_height:
                    tkeys = tkeys[: bisect.bisect_left(tkeys, since_key(since_height))]
                begin, stop, more = page_of(tkeys, after, _limit(limit, proven))
                rows_t = [state.trades[index.rfq_id(k)] for k in tkeys[begin:stop]]
                next_cursor = make_cursor(who, query, tkeys[stop - 1], head.height) if more else ""
                proof = (
                    self.proof(state, head, (("trades", t.rfq_id) for t in rows_t))
                    if proven
                    else None
                )
                return TradesReply(tuple(rows_t), len(tkeys), next_cursor, head.height, proof)
            case ReceiptsQuery(tx_ids=tx_ids, proven=proven):
                after = read_cursor(who, query, head.height)
                first = int(after) if after.isdigit() else 0
                last = min(first + MAX_RECEIPTS, len(tx_ids))
                receipts = self.store.receipts(tx_ids[first:last])
                if not sees_all(role, "q_receipts"):
                    receipts = [r for r in receipts if r.sender == who]
                proof = (
                    self.proof(state, head, ((COMMITTED, r.tx_id) for r in receipts))
                    if proven
                    else None
                )
                next_cursor = (
                    make_cursor(who, query, f"{last:09d}", head.height)
                    if last < len(tx_ids)
                    else ""
                )
                return ReceiptsReply(tuple(receipts), proof, next_cursor)
            case PaymentsQuery(status=status, party=party, limit=limit, proven=proven):
                after = read_cursor(who, query, head.height)
                scope = party if sees_all(role, "q_payments") else who
                self._payments.refresh(state.payments)
                pkeys = self._payments.ids(scope, status)
                begin, stop, more = page_of(pkeys, after, _limit(limit, proven))
                rows_p = [state.payments[pid] for pid in pkeys[begin:stop]]
                total = len(pkeys)
                next_cursor = make_cursor(who, query, pkeys[stop - 1], head.height) if more else ""
                proof = (
                    self.proof(state, head, (("payments", p.id) for p in rows_p))
                    if proven
                    else None
                )
                return PaymentsReply(tuple(rows_p), total, next_cursor, head.height, proof)
            case RatingsQuery(members=members, proven=proven):
                wanted = members or tuple(state.ratings)
                if not sees_all(role, "q_ratings"):
                    wanted = (who,)
                scores = {m: state.rating(m) for m in wanted}
                known = {m: s for m, s in scores.items() if s is not None}
                standing = {m: s.status for m, s in state.standing.items()}
                proof = (
                    self.proof(
                        state,
                        head,
                        [*(("ratings", m) for m in known), *(("standing", m) for m in standing)],
                    )
                    if proven
                    else None
                )
                return RatingsReply(
                    known,
                    {m: str(grade_of(s)) for m, s in known.items()},
                    standing,
                    {
                        m: state.margin_headroom(m)
                        for m in known
                        if (member := state.members.get(m)) and member.role == Role.CLIENT
                    },
                    proof,
                )
            case GuaranteesQuery(client=client, limit=limit, proven=proven):
                cursor = read_cursor(who, query, head.height)
                # Named: that client's guarantees; unnamed: all, or those the asker is party
                # to (as the client or as the guarantor that granted them).
                everyone = not client and sees_all(role, "q_guarantees")
                guarantees = [
                    g
                    for g in state.guarantees.values()
                    if everyone
                    or (g.client == client if client else who in (g.client, g.guarantor))
                ]
                guarantees.sort(key=lambda g: g.id)
                rows_g, last_key, total = page(
                    guarantees, lambda g: g.id, cursor, _limit(limit, proven)
                )
                next_cursor = make_cursor(who, query, last_key, head.height)
                proof = (
                    self.proof(state, head, (("guarantees", g.id) for g in rows_g))
                    if proven
                    else None
                )
                return GuaranteesReply(tuple(rows_g), total, next_cursor, proof)
            case BlocksQuery(start=start, end=end):
                end = min(end, start + MAX_BLOCKS_PER_REPLY - 1, head.height)
                raw: list[bytes] = []
                size = 0
                for height in range(max(start, 1), end + 1):
                    data = self.store.raw_block(height)
                    if data is None or (raw and size + len(data) > BLOCKS_REPLY_BYTES):
                        break
                    raw.append(data)
                    size += len(data)
                return BlocksReply(tuple(raw))
            case HistoryQuery(component=component, keys=keys):
                kind = HISTORY_COMPONENTS.get(component)
                if kind is None:
                    return QueryRefused(f"no history of {component!r}")
                everyone = sees_all(role, kind)
                return HistoryReply(
                    history_proofs(
                        self.store,
                        component,
                        keys[:HISTORY_KEYS_LIMIT],
                        lambda w: everyone or who in parties_of(component, w.value),
                    )
                )
            case ProveQuery(component=component, keys=keys):
                if component == GOVERNANCE:
                    return ProveReply(self.proof(state, head, ()))
                wanted = keys[:PROVEN_PAGE_LIMIT]
                return ProveReply(self.proof(state, head, ((component, k) for k in wanted)))
        return QueryRefused("unknown query")
