"""Queries members send an authority (``otc.query.<authority>``), replies, and who may ask what.

Members never run nodes: they read the chain through an authority's query service. A member
sees its own trades, contracts, payments and transaction receipts; the regulator sees
everything (it is the trade repository); the bank sees every payment instruction; dealers and
the regulator see every rating (dealers price with them); authorities fetch blocks from each
other to catch up. Chain headers and the authority set are public.
"""

from __future__ import annotations

import base64
import bisect
import hashlib
from collections.abc import Callable, Sequence
from typing import Final, TypeVar

import msgspec

from rfq.contracts.model import ContractView
from rfq.errors import RfqError
from rfq.identity import Member
from rfq.ledger.light import AnswerProof
from rfq.ledger.state import GovernanceEvent, Guarantee, Payment, Receipt, Trade
from rfq.money import Micros
from rfq.policy import BusChannel, Scope, channel_roles, query_scope


class StatusQuery(msgspec.Struct, frozen=True, tag="q_status"):
    proven: bool = False
    """Attach an ``AnswerProof`` (the header, its seals and the governance it names)."""


class HeadersQuery(msgspec.Struct, frozen=True, tag="q_headers"):
    """The newest ``limit`` headers up to ``before`` (exclusive; 0 = the tip)."""

    limit: int = 20
    before: int = 0


PAGE_LIMIT: Final = 1000
"""Rows per page at most (a page of contracts stays near 0.5 MB, far under max payload)."""
PROVEN_PAGE_LIMIT: Final = 250
"""Rows per page at most when each row carries its proof (about 2.3 KB a row in a large map:
a page stays near 0.6 MB)."""
PROVABLE: Final = frozenset({"members", "committed", "standing", "governance"})
"""What any member may ask to have proven (``ProveQuery``): the registry, committed
transaction ids (knowing an id means having the transaction), who may not trade, the
authority set."""
MAX_RECEIPTS: Final = 500
"""Receipts per page of a ``ReceiptsQuery`` (more ids: a page and a cursor for the rest)."""
REPLY_BUDGET: Final = 4 * 1024 * 1024
"""The encoded bytes a reply may carry: half the bus's max payload (8 MB), the rest for the
envelope, the seal and headroom. A page over it is refused with a reason (ask fewer rows)."""
CURSOR_TTL_BLOCKS: Final = 2_000
"""A page cursor made more than this many blocks ago is expired (about 3 to 15 minutes at 2
to 10 blocks a second): pages are read one after the other, never held for long."""


class ContractsQuery(msgspec.Struct, frozen=True, tag="q_contracts"):
    """Contracts by id, one page: ``cursor`` is the previous reply's ``next_cursor``."""

    party: str | None = None
    open_only: bool = False
    ids: tuple[str, ...] = ()
    cursor: str = ""
    limit: int = PAGE_LIMIT
    proven: bool = False
    """With a witness of each contract's record: what the chain holds (terms, status, margin,
    outcome) is proven; the marks and values computed from prices are not."""
    since_height: int = 0
    """Only contracts whose record changed after this height (opened, margin, marks, status):
    a peer that saw its contracts at a height reads what changed since, not all again."""


class TradesQuery(msgspec.Struct, frozen=True, tag="q_trades"):
    """Trades, newest first, one page; ``since_height``: only those committed after it (a
    peer that saw the chain up to a height reads what is new, not every trade again)."""

    party: str | None = None
    underlying: str | None = None
    limit: int = PAGE_LIMIT
    cursor: str = ""
    proven: bool = False
    since_height: int = 0


class ReceiptsQuery(msgspec.Struct, frozen=True, tag="q_receipts"):
    """Receipts by transaction id; ``proven``: with a witness of each id in ``committed``
    (present: committed ok; absent: not committed at that height)."""

    tx_ids: tuple[str, ...]
    proven: bool = False
    cursor: str = ""
    """More ids than ``MAX_RECEIPTS``: the previous reply's ``next_cursor`` asks the next."""


class PaymentsQuery(msgspec.Struct, frozen=True, tag="q_payments"):
    """Payment instructions by id, one page."""

    status: str | None = None
    party: str | None = None
    cursor: str = ""
    limit: int = PAGE_LIMIT
    proven: bool = False


class RatingsQuery(msgspec.Struct, frozen=True, tag="q_ratings"):
    members: tuple[str, ...] = ()
    proven: bool = False
    """With a witness of each score and of each standing entry shown (the headroom, computed
    from the book, is not proven)."""


class GuaranteesQuery(msgspec.Struct, frozen=True, tag="q_guarantees"):
    client: str | None = None
    cursor: str = ""
    limit: int = PAGE_LIMIT
    proven: bool = False


class BlocksQuery(msgspec.Struct, frozen=True, tag="q_blocks"):
    """Encoded final blocks ``start`` .. ``end`` inclusive: at most ``MAX_BLOCKS_PER_REPLY``
    and ``BLOCKS_REPLY_BYTES``, so a reply may stop early (ask again from after its last)."""

    start: int
    end: int


class ProveQuery(msgspec.Struct, frozen=True, tag="q_prove"):
    """Proofs of ``component[key]`` for each key (present or absent), under the final head;
    ``component`` one of ``PROVABLE`` (the regulator may ask for any)."""

    component: str
    keys: tuple[str, ...]


class HistoryQuery(msgspec.Struct, frozen=True, tag="q_history"):
    """Entries that have left the hot state (``rfq.ledger.components.retention``): for each
    key of ``component`` (``contracts``, ``trades`` or ``payments``), its last value with its
    proof under the last header whose state held it. Seen as the component's own query
    scopes it (a member: its own contracts, trades and payments)."""

    component: str
    keys: tuple[str, ...]


HISTORY_KEYS_LIMIT: Final = 100
"""Keys one ``HistoryQuery`` may name: each may come under its own header (a header, its
seals, root parts and governance, some 3 KB, besides the 2-3 KB witness), so a reply stays
far under the payload limit."""
HISTORY_COMPONENTS: Final = {
    "contracts": "q_contracts",
    "trades": "q_trades",
    "payments": "q_payments",
}
"""What history holds, and the query kind whose scope decides who sees it."""


Query = (
    StatusQuery
    | HeadersQuery
    | ContractsQuery
    | TradesQuery
    | ReceiptsQuery
    | PaymentsQuery
    | RatingsQuery
    | GuaranteesQuery
    | BlocksQuery
    | ProveQuery
    | HistoryQuery
)

MAX_BLOCKS_PER_REPLY: Final = 64
BLOCKS_REPLY_BYTES: Final = 4 * 1024 * 1024
"""A blocks reply stops before this many bytes of blocks (always holding one): 64 full
blocks (``max_block_bytes``, 1 MB) would be eight times nats' 8 MB max payload."""


class HeaderInfo(msgspec.Struct, frozen=True):
    height: int
    hash: str
    timestamp_ms: int
    proposer: str
    round: int
    tx_count: int
    state_root: str


class StatusReply(msgspec.Struct, frozen=True, tag="r_status"):
    authority: str
    height: int
    last_hash: str
    last_block_ms: int
    authorities: tuple[str, ...]
    candidates: tuple[str, ...]
    governance: tuple[GovernanceEvent, ...]
    mempool: int
    is_authority: bool
    business_date: str = ""
    open_contracts: int = 0
    proof: AnswerProof | None = None


class HeadersReply(msgspec.Struct, frozen=True, tag="r_headers"):
    headers: tuple[HeaderInfo, ...]


class ContractsReply(msgspec.Struct, frozen=True, tag="r_contracts"):
    """One page; ``total`` counts every match, ``next_cursor`` is empty on the last page."""

    height: int
    contracts: tuple[ContractView, ...]
    total: int = 0
    next_cursor: str = ""
    proof: AnswerProof | None = None


class TradesReply(msgspec.Struct, frozen=True, tag="r_trades"):
    trades: tuple[Trade, ...]
    total: int = 0
    next_cursor: str = ""
    height: int = 0
    proof: AnswerProof | None = None


class ReceiptsReply(msgspec.Struct, frozen=True, tag="r_receipts"):
    receipts: tuple[Receipt, ...]
    proof: AnswerProof | None = None
    next_cursor: str = ""
    """Non-empty: ids past ``MAX_RECEIPTS`` are still to ask (the query again with it)."""


class PaymentsReply(msgspec.Struct, frozen=True, tag="r_payments"):
    payments: tuple[Payment, ...]
    total: int = 0
    next_cursor: str = ""
    height: int = 0
    proof: AnswerProof | None = None


class RatingsReply(msgspec.Struct, frozen=True, tag="r_ratings"):
    """Scores and grades of the members asked about (one whose ratings scope is its own:
    itself only), and the standing of every member that may no longer trade (public: everyone
    must know whom not to trade with), e.g. ``{"D3": "defaulted"}``."""

    ratings: dict[str, float]
    grades: dict[str, str]
    standing: dict[str, str] = {}
    headroom: dict[str, Micros] = {}
    """Per client asked about: the initial margin beyond a dealer's line it can still take on
    (micros; ``LedgerState.margin_headroom``); dealers size their quotes by it."""
    proof: AnswerProof | None = None


class GuaranteesReply(msgspec.Struct, frozen=True, tag="r_guarantees"):
    guarantees: tuple[Guarantee, ...]
    total: int = 0
    next_cursor: str = ""
    proof: AnswerProof | None = None


class BlocksReply(msgspec.Struct, frozen=True, tag="r_blocks"):
    blocks: tuple[bytes, ...]


class ProveReply(msgspec.Struct, frozen=True, tag="r_prove"):
    """The witnesses of a ``ProveQuery``, in its ``proof``."""

    proof: AnswerProof


class HistoryReply(msgspec.Struct, frozen=True, tag="r_history"):
    """One proof per height at which asked entries were last in the state (each proof's
    witnesses are those entries; a key not in this authority's history is left out)."""

    proofs: tuple[AnswerProof, ...]


class QueryRefused(msgspec.Struct, frozen=True, tag="r_refused"):
    reason: str


# --------------------------------------------------------------------------------------------
# The regulator's risk monitor (served on ``otc.query.REG``; only the regulator answers)


class RiskQuery(msgspec.Struct, frozen=True, tag="q_risk"):
    """The CCR table per institution, recent alerts and the cascades they triggered."""


class WhatIfQuery(msgspec.Struct, frozen=True, tag="q_whatif"):
    """How far the default of ``institutions`` would spread through today's exposures."""

    institutions: tuple[str, ...]
    model: str = "cascade"  # cascade | debtrank | eisenberg-noe


class CcrRow(msgspec.Struct, frozen=True):
    """One institution's counterparty credit risk as the monitor computes it from the chain.

    ``ead`` is SA-CCR (BCBS 279) summed over the bilateral netting sets in which the
    institution is the debtor (what its counterparties would lose), ``el = pd x ead x lgd``.
    """

    institution: str
    role: str
    grade: str
    pd: float
    lgd: float
    ead: float
    el: float
    threshold: float
    netting_sets: int
    open_contracts: int
    alert: bool


class RiskAlert(msgspec.Struct, frozen=True, tag="risk_alert"):
    """Published on ``otc.risk.alert`` when an institution's CCR crosses its threshold."""

    height: int
    institution: str
    ead: float
    threshold: float
    cascade_rounds: tuple[tuple[str, ...], ...]
    cascade_defaulted: tuple[str, ...]


class RiskReply(msgspec.Struct, frozen=True, tag="r_risk"):
    height: int
    rows: tuple[CcrRow, ...]
    alerts: tuple[RiskAlert, ...]


class WhatIfReply(msgspec.Struct, frozen=True, tag="r_whatif"):
    model: str
    shocked: tuple[str, ...]
    rounds: tuple[tuple[str, ...], ...]
    defaulted: tuple[str, ...]
    losses: dict[str, float]


Reply = (
    StatusReply
    | HeadersReply
    | ContractsReply
    | TradesReply
    | ReceiptsReply
    | PaymentsReply
    | RatingsReply
    | GuaranteesReply
    | BlocksReply
    | ProveReply
    | HistoryReply
    | QueryRefused
)

# Who may send each kind on each channel: derived from the role-policy table.
QUERY_ROLES: Final = channel_roles(BusChannel.QUERY)
REPLY_ROLES: Final = channel_roles(BusChannel.QUERY_REPLY)


def refusal(member: Member, query: Query) -> str | None:
    """Why ``member`` may not ask ``query`` (None: it may). Scoping to the member's own
    records happens when answering; this refuses asking for someone else's outright."""
    limit = getattr(query, "limit", 1)
    if not isinstance(limit, int) or limit < 1:
        return f"limit must be a positive number of rows (at most {PAGE_LIMIT} a page)"
    if getattr(query, "since_height", 0) < 0:
        return "since_height must be a height (0: from the genesis)"
    if isinstance(query, ProveQuery) and len(query.keys) > PROVEN_PAGE_LIMIT:
        return f"at most {PROVEN_PAGE_LIMIT} keys per proof ({len(query.keys)} asked)"
    if isinstance(query, HistoryQuery) and len(query.keys) > HISTORY_KEYS_LIMIT:
        return f"at most {HISTORY_KEYS_LIMIT} keys per history query ({len(query.keys)} asked)"
    if isinstance(query, HistoryQuery) and query.component not in HISTORY_COMPONENTS:
        return f"no history of {query.component!r} (one of {', '.join(HISTORY_COMPONENTS)})"
    kind = str(query.__struct_config__.tag)
    scope = query_scope(member.role, kind)
    if scope is None:
        return _NOT_SERVED.get(kind, f"{member.role}s may not ask {kind}")
    if scope != Scope.OWN:
        return None
    match query:
        case ContractsQuery(party=party) | TradesQuery(party=party):
            if party not in (None, member.id):
                return f"{member.id} may only see its own trades and contracts"
        case PaymentsQuery(party=party):
            if party not in (None, member.id):
                return f"{member.id} may only see its own payments"
        case RatingsQuery(members=members):
            if any(m != member.id for m in members):
                return f"{member.id} may only see its own rating"
        case GuaranteesQuery(client=client):
            if client not in (None, member.id):
                return f"{member.id} may only see its own guarantees"
        case ProveQuery(component=component):
            if component not in PROVABLE:
                return f"{component!r} is not public (one of {', '.join(sorted(PROVABLE))})"
        case _:
            pass
    return None


_NOT_SERVED: Final = {"q_blocks": "blocks are served to authorities and the regulator"}


RegulatorQuery = RiskQuery | WhatIfQuery
RegulatorReply = RiskReply | WhatIfReply | QueryRefused
REGULATOR_QUERY_ROLES: Final = channel_roles(BusChannel.REGULATOR_QUERY)
REGULATOR_REPLY_ROLES: Final = channel_roles(BusChannel.REGULATOR_REPLY)
ALERT_ROLES: Final = channel_roles(BusChannel.ALERTS)


# --------------------------------------------------------------------------------------------
# Pages

T = TypeVar("T")


def page(
    rows: Sequence[T], key: Callable[[T], str], cursor: str, limit: int
) -> tuple[list[T], str, int]:
    """One page of ``rows`` (sorted ascending by ``key``, keys unique): the rows after
    ``cursor``, at most ``min(limit, PAGE_LIMIT)``; the cursor of the next page ("" after the
    last one); the total number of rows. A cursor is the key of the last row of the previous
    page, so pages stay consistent while rows are added (keyset paging, no server state)."""
    keys = [key(r) for r in rows]
    start = bisect.bisect_right(keys, cursor) if cursor else 0
    size = max(1, min(limit, PAGE_LIMIT))
    chunk = list(rows[start : start + size])
    more = start + size < len(rows)
    return chunk, (keys[start + size - 1] if more else ""), len(rows)


def newest_first_key(height: int, ident: str) -> str:
    """A key that sorts newer heights first (for trades, newest first)."""
    return f"{10**12 - height:013d}:{ident}"


# --------------------------------------------------------------------------------------------
# Cursors

CURSOR_PREFIX: Final = "pc1."


class PageCursor(msgspec.Struct, frozen=True, array_like=True):
    """What a page cursor says: whose it is, which query it continues (its kind and filters,
    hashed), the key of the last row given and the height the page was read at.

    It carries no authority's secret, so any authority continues another's pagination (the
    ledger client moves to the next one when one stops answering); a forged cursor only
    moves the start of a page, since every page is scoped to the asker again."""

    asker: str
    query: str
    key: str
    height: int


PagedQuery = ContractsQuery | TradesQuery | PaymentsQuery | GuaranteesQuery | ReceiptsQuery

_cursor_encoder = msgspec.msgpack.Encoder()
_cursor_decoder = msgspec.msgpack.Decoder(PageCursor)


def query_fingerprint(query: PagedQuery) -> str:
    """The query's kind and filters, hashed: what a cursor must be for (its page size, its
    cursor and whether proven may change from page to page)."""
    fields = {"cursor": ""} | ({} if isinstance(query, ReceiptsQuery) else {"limit": 0})
    bare = msgspec.structs.replace(query, proven=False, **fields)
    return hashlib.sha256(_cursor_encoder.encode(bare)).hexdigest()[:16]


def make_cursor(asker: str, query: PagedQuery, key: str, height: int) -> str:
    """The opaque cursor of the page after the row with ``key`` ("" for no next page)."""
    if not key:
        return ""
    raw = _cursor_encoder.encode(PageCursor(asker, query_fingerprint(query), key, height))
    return CURSOR_PREFIX + base64.urlsafe_b64encode(raw).decode().rstrip("=")


class CursorRefused(RfqError):
    """A page cursor this asker may not continue with (the reason says why)."""


def read_cursor(asker: str, query: PagedQuery, height: int) -> str:
    """The key after which ``query``'s page starts ("" without a cursor), or raises
    ``CursorRefused``: a cursor that does not decode, is another member's, continues another
    query, or was made more than ``CURSOR_TTL_BLOCKS`` before ``height``."""
    text = query.cursor
    if not text:
        return ""
    try:
        if not text.startswith(CURSOR_PREFIX):
            raise ValueError(text)
        body = text[len(CURSOR_PREFIX) :]
        cursor = _cursor_decoder.decode(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    except (ValueError, msgspec.DecodeError):
        raise CursorRefused("unknown cursor (not one an authority made)") from None
    if cursor.asker != asker:
        raise CursorRefused(f"cursor is {cursor.asker}'s, not {asker}'s")
    if cursor.query != query_fingerprint(query):
        raise CursorRefused("cursor is for another query (other kind or filters)")
    if height - cursor.height > CURSOR_TTL_BLOCKS:
        raise CursorRefused(
            f"cursor expired: made at height {cursor.height}, {height - cursor.height} blocks "
            f"ago (a cursor lasts {CURSOR_TTL_BLOCKS} blocks); start again without one"
        )
    if not cursor.key:
        raise CursorRefused("unknown cursor (no position)")
    return cursor.key


def page_of(keys: Sequence[str], after: str, limit: int) -> tuple[int, int, bool]:
    """Where one page of sorted, unique ``keys`` lies: ``start``, ``stop`` (at most
    ``min(limit, PAGE_LIMIT)`` keys after ``after``) and whether more follow. A page costs a
    bisect and its size, whatever the number of keys."""
    start = bisect.bisect_right(keys, after) if after else 0
    stop = min(start + max(1, min(limit, PAGE_LIMIT)), len(keys))
    return start, stop, stop < len(keys)
