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

from collections.abc import Iterable

from peers.authority.history import history_proofs, parties_of
from peers.authority.store import ChainStore
from rfq.contracts.model import ContractView
from rfq.identity import Role
from rfq.ledger.block import BlockHeader, CommitSeal
from rfq.ledger.light import COMMITTED, AnswerProof, Witness, witness_of
from rfq.ledger.proof import CONTRACTS, GOVERNANCE, ProofError
from rfq.ledger.state import LedgerState, Trade, business_date
from rfq.policy import sees_all
from rfq.queries import (
    BLOCKS_REPLY_BYTES,
    HISTORY_COMPONENTS,
    HISTORY_KEYS_LIMIT,
    MAX_BLOCKS_PER_REPLY,
    MAX_RECEIPTS,
    PROVEN_PAGE_LIMIT,
    BlocksQuery,
    BlocksReply,
    ContractsQuery,
    ContractsReply,
    GuaranteesQuery,
    GuaranteesReply,
    HeaderInfo,
    HeadersQuery,
    HeadersReply,
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
    newest_first_key,
    page,
)
from rfq.rating import grade_of


def _trade_key(trade: Trade) -> str:
    return newest_first_key(trade.height, trade.rfq_id)


def _limit(limit: int, proven: bool) -> int:
    return min(limit, PROVEN_PAGE_LIMIT) if proven else limit


class QueryService:
    """What authority ``me`` answers, from a final state and its own chain store."""

    def __init__(self, me: str, store: ChainStore) -> None:
        self.me = me
        self.store = store
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
        """``who`` (of ``role``) asks ``query`` of ``state`` at final ``head``."""

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
                cursor=cursor,
                limit=limit,
                proven=proven,
            ):
                target = party or (None if sees_all(role, "q_contracts") else who)
                views: list[ContractView]
                if target is None:
                    views = [state.book.get(cid) for cid in state.book.ids()]
                    if open_only:
                        views = [v for v in views if not v.status.terminal]
                else:
                    views = state.book.by_party(target, open_only=open_only)
                if ids:
                    views = [v for v in views if v.contract.id in ids]
                rows, next_cursor, total = page(
                    views, lambda v: v.contract.id, cursor, _limit(limit, proven)
                )
                proof = (
                    self.proof(state, head, ((CONTRACTS, v.contract.id) for v in rows))
                    if proven
                    else None
                )
                return ContractsReply(head.height, tuple(rows), total, next_cursor, proof)
            case TradesQuery(
                party=party, underlying=underlying, limit=limit, cursor=cursor, proven=proven
            ):
                target = party or (None if sees_all(role, "q_trades") else who)
                trades = [
                    t
                    for t in state.trades.values()
                    if target is None or target in (t.client, t.dealer)
                ]
                if underlying:
                    trades = [
                        t
                        for t in trades
                        if underlying in state.book.get(t.contract_id).contract.terms.underlyings
                    ]
                trades.sort(key=_trade_key)
                rows_t, next_cursor, total = page(trades, _trade_key, cursor, _limit(limit, proven))
                proof = (
                    self.proof(state, head, (("trades", t.rfq_id) for t in rows_t))
                    if proven
                    else None
                )
                return TradesReply(tuple(rows_t), total, next_cursor, head.height, proof)
            case ReceiptsQuery(tx_ids=tx_ids, proven=proven):
                receipts = self.store.receipts(tx_ids[:MAX_RECEIPTS])
                if not sees_all(role, "q_receipts"):
                    receipts = [r for r in receipts if r.sender == who]
                proof = (
                    self.proof(state, head, ((COMMITTED, r.tx_id) for r in receipts))
                    if proven
                    else None
                )
                return ReceiptsReply(tuple(receipts), proof)
            case PaymentsQuery(
                status=status, party=party, cursor=cursor, limit=limit, proven=proven
            ):
                scope = party if sees_all(role, "q_payments") else who
                payments = sorted(state.payments_of(scope, status), key=lambda p: p.id)
                rows_p, next_cursor, total = page(
                    payments, lambda p: p.id, cursor, _limit(limit, proven)
                )
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
            case GuaranteesQuery(client=client, cursor=cursor, limit=limit, proven=proven):
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
                rows_g, next_cursor, total = page(
                    guarantees, lambda g: g.id, cursor, _limit(limit, proven)
                )
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
