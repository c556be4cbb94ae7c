"""Who may do what, by role: the one table every permission in B-OTC is derived from.

For each ``Role`` the table says which subject families (``Topic``) it may publish and
subscribe, which message kinds it may sign on each bus channel, which transaction kinds it may
submit, which queries it may ask and how much of their answers it may see (``Scope``), and
which JetStream API calls it may make. Everything else is read from here:

- the nats-server users ``botc init`` writes (``peers.netdir.permissions``; ``bus.subjects``
  maps a topic to its subjects, this core knows no subject strings),
- the roles each bus channel accepts per kind (``channel_roles``: ``RFQ_ROLES``,
  ``QUOTE_ROLES``, ``QUERY_ROLES``, ``REPLY_ROLES``... are derived from it),
- ``rfq.ledger.tx.TX_ROLES`` (``transaction_roles``),
- the query refusals and answer scopes (``query_scope``; ``rfq.queries.refusal`` and
  ``peers.authority.queries``).

The design is the paper's: authority-eligible institutions (dealers, the CCP, guarantors)
validate every block, so they read every transaction, every trade and every accepted quote;
a client reads only what concerns it; the regulator reads the whole market but never
validates. The table makes that exact and nothing wider.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

from rfq.identity import AUTHORITY_ELIGIBLE, Role


class Topic(enum.StrEnum):
    """A family of bus subjects; ``bus.subjects.patterns`` turns one into NATS subjects."""

    RFQ_PUBLIC = "rfq_public"  # an RFQ to every dealer, by asset class
    RFQ_DIRECT = "rfq_direct"  # an RFQ to one chosen dealer
    QUOTE = "quote"  # a dealer's quote or decline, to one client
    NOTE = "note"  # receipts and notices to one member
    TX = "tx"  # transactions, by sender
    CONSENSUS = "consensus"  # IBFT messages
    PRICE = "price"  # the oracle's fixings
    QUERY = "query"  # request/reply to one service (an authority, the oracle, the regulator)
    CHAIN = "chain"  # final blocks, kept by the JetStream stream CHAIN
    RISK_ALERT = "risk_alert"  # the regulator's alerts
    INBOX = "inbox"  # a member's reply inbox
    MARKET = "market"  # every B-OTC subject (the regulator's trade-repository view)


class Reach(enum.StrEnum):
    """``OWN``: only the member's own subject of the family; ``ANY``: all of them."""

    OWN = "own"
    ANY = "any"


Grant = tuple[Topic, Reach]


class Scope(enum.StrEnum):
    """How much of a query's answer a role sees.

    ``OWN``: only its own records (asking for someone else's is refused); ``NAMED``: the
    records of any member it names, its own when it names none; ``ALL``: everything, also
    when it names no one. A query missing from a role's table is refused outright.
    """

    OWN = "own"
    NAMED = "named"
    ALL = "all"


class JsCall(enum.StrEnum):
    """A JetStream API call on the ``CHAIN`` stream (``bus.subjects.js_api`` names it)."""

    STREAM_INFO = "stream_info"  # does CHAIN exist (AuthorityNode._ensure_stream)
    STREAM_CREATE = "stream_create"  # create CHAIN once (idempotent; no update, no delete)
    MSG_GET = "msg_get"  # read one block by subject (catch-up)


class BusChannel(enum.StrEnum):
    """The bus channels (the names of ``bus.envelope.Channel``s): what a subscription accepts."""

    RFQS = "rfqs"
    QUOTES = "quotes"
    PRICES = "prices"
    ORACLE_QUERY = "oracle_query"
    ORACLE_REPLY = "oracle_reply"
    QUERY = "query"
    QUERY_REPLY = "query_reply"
    REGULATOR_QUERY = "regulator_query"
    REGULATOR_REPLY = "regulator_reply"
    ALERTS = "alerts"
    NOTES = "notes"
    TX = "tx"
    CONSENSUS = "ibft"


CHANNEL_KINDS: Final[Mapping[BusChannel, frozenset[str]]] = MappingProxyType(
    {
        BusChannel.RFQS: frozenset({"rfq", "rfq_cancel"}),
        BusChannel.QUOTES: frozenset({"quote", "decline"}),
        BusChannel.PRICES: frozenset({"px"}),
        BusChannel.ORACLE_QUERY: frozenset({"px_history_req"}),
        BusChannel.ORACLE_REPLY: frozenset({"px_history"}),
        BusChannel.QUERY: frozenset(
            {
                "q_status",
                "q_headers",
                "q_contracts",
                "q_trades",
                "q_receipts",
                "q_payments",
                "q_ratings",
                "q_guarantees",
                "q_blocks",
                "q_prove",
                "q_history",
            }
        ),
        BusChannel.QUERY_REPLY: frozenset(
            {
                "r_status",
                "r_headers",
                "r_contracts",
                "r_trades",
                "r_receipts",
                "r_payments",
                "r_ratings",
                "r_guarantees",
                "r_blocks",
                "r_prove",
                "r_history",
                "r_refused",
            }
        ),
        BusChannel.REGULATOR_QUERY: frozenset({"q_risk", "q_whatif"}),
        BusChannel.REGULATOR_REPLY: frozenset({"r_risk", "r_whatif", "r_refused"}),
        BusChannel.ALERTS: frozenset({"risk_alert"}),
        BusChannel.NOTES: frozenset({"receipt", "receipts"}),
        BusChannel.CONSENSUS: frozenset(
            {"ibft_proposal", "ibft_prepare", "ibft_commit", "ibft_round_change"}
        ),
    }
)
"""The message kinds each channel carries (the tx channel's are ``TRANSACTION_KINDS``)."""

TRANSACTION_KINDS: Final = frozenset(
    {
        "accept",
        "fixing_tx",
        "close_out",
        "credit_event",
        "payment_confirmed",
        "payment_failed",
        "guarantee_grant",
        "guarantee_revoke",
        "rating_update",
        "register_member",
        "suspend_member",
        "offboard_member",
        "reinstate_member",
        "gov_nominate",
        "gov_veto",
        "gov_evict",
        "evidence",
    }
)


@dataclass(frozen=True)
class RolePolicy:
    """What one role may do on the bus, on the chain and in queries."""

    role: Role
    summary: str
    publish: tuple[Grant, ...]
    subscribe: tuple[Grant, ...]
    sends: Mapping[BusChannel, frozenset[str]]
    transactions: frozenset[str]
    queries: Mapping[str, Scope]
    jetstream: frozenset[JsCall] = frozenset()
    serves_requests: bool = False
    """Answers requests on its own query subject (so it may publish to askers' inboxes)."""


def _kinds(channel: BusChannel) -> frozenset[str]:
    return CHANNEL_KINDS[channel]


EVERY_MEMBER_QUERIES: Final = {
    "q_status": Scope.ALL,
    "q_headers": Scope.ALL,
    "q_contracts": Scope.OWN,
    "q_trades": Scope.OWN,
    "q_receipts": Scope.OWN,
    "q_payments": Scope.OWN,
    "q_ratings": Scope.OWN,
    "q_guarantees": Scope.OWN,
    "q_prove": Scope.OWN,
    "q_history": Scope.OWN,
    "px_history_req": Scope.ALL,
    "q_risk": Scope.OWN,
}
"""What any member may ask: the chain's status and headers, its own records, price history,
its own line of the regulator's CCR table, proofs of public entries (``rfq.queries.PROVABLE``:
the registry, committed transaction ids, standing, governance)."""

_EVERY_MEMBER_SENDS: Final = {
    BusChannel.QUERY: _kinds(BusChannel.QUERY),
    BusChannel.ORACLE_QUERY: _kinds(BusChannel.ORACLE_QUERY),
    BusChannel.REGULATOR_QUERY: _kinds(BusChannel.REGULATOR_QUERY),
}
"""Any member may ask any query: a service answers what ``queries`` allows and refuses the
rest with a reason, rather than leaving the asker to time out."""
_EVERY_MEMBER_PUBLISH: Final[tuple[Grant, ...]] = (
    (Topic.TX, Reach.OWN),
    (Topic.QUERY, Reach.ANY),
)
_EVERY_MEMBER_SUBSCRIBE: Final[tuple[Grant, ...]] = (
    (Topic.INBOX, Reach.OWN),
    (Topic.NOTE, Reach.OWN),
    (Topic.PRICE, Reach.ANY),
)


def _authority(
    role: Role,
    summary: str,
    *,
    publish: tuple[Grant, ...] = (),
    subscribe: tuple[Grant, ...] = (),
    sends: Mapping[BusChannel, frozenset[str]] | None = None,
    transactions: frozenset[str] = frozenset(),
    queries: Mapping[str, Scope] | None = None,
) -> RolePolicy:
    """An authority-eligible institution: it validates, so it reads every transaction."""
    channels: dict[BusChannel, frozenset[str]] = {
        **_EVERY_MEMBER_SENDS,
        BusChannel.QUERY_REPLY: _kinds(BusChannel.QUERY_REPLY),
        BusChannel.NOTES: _kinds(BusChannel.NOTES),
        BusChannel.CONSENSUS: _kinds(BusChannel.CONSENSUS),
    }
    for channel, kinds in (sends or {}).items():
        channels[channel] = channels.get(channel, frozenset()) | kinds
    return RolePolicy(
        role=role,
        summary=summary,
        publish=(
            *_EVERY_MEMBER_PUBLISH,
            (Topic.CONSENSUS, Reach.ANY),
            (Topic.CHAIN, Reach.ANY),
            (Topic.NOTE, Reach.ANY),
            *publish,
        ),
        subscribe=(
            *_EVERY_MEMBER_SUBSCRIBE,
            (Topic.TX, Reach.ANY),
            (Topic.CONSENSUS, Reach.ANY),
            # The final blocks as they are announced, which its JetStream consumer of CHAIN
            # holds anyway: what a callout run by a NATS node operator follows the chain by.
            (Topic.CHAIN, Reach.ANY),
            (Topic.QUERY, Reach.OWN),
            (Topic.RISK_ALERT, Reach.ANY),
            *subscribe,
        ),
        sends=MappingProxyType(channels),
        transactions=frozenset({"evidence"}) | transactions,
        queries=MappingProxyType(
            {
                **EVERY_MEMBER_QUERIES,
                "q_ratings": Scope.ALL,
                "q_guarantees": Scope.NAMED,
                "q_blocks": Scope.ALL,
                "q_risk": Scope.ALL,
                "q_whatif": Scope.ALL,
                **(queries or {}),
            }
        ),
        jetstream=frozenset(JsCall),
        serves_requests=True,
    )


POLICY: Final[Mapping[Role, RolePolicy]] = MappingProxyType(
    {
        Role.CLIENT: RolePolicy(
            role=Role.CLIENT,
            summary="asks for quotes, accepts one, closes out its contracts",
            publish=(
                *_EVERY_MEMBER_PUBLISH,
                (Topic.RFQ_PUBLIC, Reach.ANY),
                (Topic.RFQ_DIRECT, Reach.ANY),
            ),
            subscribe=(*_EVERY_MEMBER_SUBSCRIBE, (Topic.QUOTE, Reach.OWN)),
            sends=MappingProxyType(
                {**_EVERY_MEMBER_SENDS, BusChannel.RFQS: _kinds(BusChannel.RFQS)}
            ),
            transactions=frozenset({"accept", "close_out", "evidence"}),
            queries=MappingProxyType(dict(EVERY_MEMBER_QUERIES)),
        ),
        Role.DEALER: _authority(
            Role.DEALER,
            "quotes RFQs; an authority or a candidate",
            publish=((Topic.QUOTE, Reach.ANY),),
            subscribe=((Topic.RFQ_PUBLIC, Reach.ANY), (Topic.RFQ_DIRECT, Reach.OWN)),
            sends={BusChannel.QUOTES: _kinds(BusChannel.QUOTES)},
            transactions=frozenset({"close_out"}),
        ),
        Role.CCP: _authority(Role.CCP, "clears; an authority", queries={"q_guarantees": Scope.OWN}),
        Role.GUARANTOR: _authority(
            Role.GUARANTOR,
            "grants credit lines against pledged assets; an authority or a candidate",
            transactions=frozenset({"guarantee_grant", "guarantee_revoke"}),
        ),
        Role.REGULATOR: RolePolicy(
            role=Role.REGULATOR,
            summary="runs governance and the risk monitor; never trades, never validates",
            publish=(*_EVERY_MEMBER_PUBLISH, (Topic.RISK_ALERT, Reach.ANY)),
            subscribe=((Topic.INBOX, Reach.OWN), (Topic.MARKET, Reach.ANY)),
            sends=MappingProxyType(
                {
                    **_EVERY_MEMBER_SENDS,
                    BusChannel.REGULATOR_REPLY: _kinds(BusChannel.REGULATOR_REPLY),
                    BusChannel.ALERTS: _kinds(BusChannel.ALERTS),
                }
            ),
            transactions=frozenset(
                {
                    "credit_event",
                    "rating_update",
                    "register_member",
                    "suspend_member",
                    "offboard_member",
                    "reinstate_member",
                    "gov_nominate",
                    "gov_veto",
                    "gov_evict",
                    "evidence",
                }
            ),
            queries=MappingProxyType(
                {q: Scope.ALL for q in (*EVERY_MEMBER_QUERIES, "q_blocks", "q_whatif")}
            ),
            serves_requests=True,
        ),
        Role.ORACLE: RolePolicy(
            role=Role.ORACLE,
            summary="publishes signed price fixings and serves their history",
            publish=(*_EVERY_MEMBER_PUBLISH, (Topic.PRICE, Reach.ANY)),
            subscribe=(*_EVERY_MEMBER_SUBSCRIBE, (Topic.QUERY, Reach.OWN)),
            sends=MappingProxyType(
                {
                    **_EVERY_MEMBER_SENDS,
                    BusChannel.PRICES: _kinds(BusChannel.PRICES),
                    BusChannel.ORACLE_REPLY: _kinds(BusChannel.ORACLE_REPLY),
                }
            ),
            transactions=frozenset({"fixing_tx", "evidence"}),
            queries=MappingProxyType(dict(EVERY_MEMBER_QUERIES)),
            serves_requests=True,
        ),
        Role.BANK: RolePolicy(
            role=Role.BANK,
            summary="executes payment instructions and confirms them on chain",
            publish=_EVERY_MEMBER_PUBLISH,
            subscribe=_EVERY_MEMBER_SUBSCRIBE,
            sends=MappingProxyType(dict(_EVERY_MEMBER_SENDS)),
            transactions=frozenset({"payment_confirmed", "payment_failed", "evidence"}),
            queries=MappingProxyType({**EVERY_MEMBER_QUERIES, "q_payments": Scope.ALL}),
        ),
    }
)


def policy(role: Role) -> RolePolicy:
    return POLICY[role]


def channel_roles(channel: BusChannel) -> dict[str, frozenset[Role]]:
    """For ``bus.envelope.Channel.of``: each kind of ``channel``, the roles that may send it."""
    if channel == BusChannel.TX:
        return transaction_roles()
    return {
        kind: frozenset(p.role for p in POLICY.values() if kind in p.sends.get(channel, ()))
        for kind in sorted(CHANNEL_KINDS[channel])
    }


def transaction_roles() -> dict[str, frozenset[Role]]:
    """Each transaction kind and the roles that may submit it (``TX_ROLES``)."""
    return {
        kind: frozenset(p.role for p in POLICY.values() if kind in p.transactions)
        for kind in sorted(TRANSACTION_KINDS)
    }


def query_scope(role: Role, query_kind: str) -> Scope | None:
    """How much of ``query_kind``'s answer ``role`` sees; None: it may not ask."""
    return POLICY[role].queries.get(query_kind)


def sees_all(role: Role, query_kind: str) -> bool:
    return query_scope(role, query_kind) == Scope.ALL


def _check() -> None:
    """The table is whole: every role, kinds that exist, authority roles as the identity says."""
    assert set(POLICY) == set(Role)
    for role, entry in POLICY.items():
        assert entry.role == role
        assert entry.transactions <= TRANSACTION_KINDS, entry.transactions - TRANSACTION_KINDS
        for channel, kinds in entry.sends.items():
            assert kinds <= CHANNEL_KINDS[channel], (role, channel, kinds)
        asked = (BusChannel.QUERY, BusChannel.REGULATOR_QUERY, BusChannel.ORACLE_QUERY)
        assert set(entry.queries) <= {k for c in asked for k in CHANNEL_KINDS[c]}, role
    validators = {r for r, p in POLICY.items() if (Topic.CONSENSUS, Reach.ANY) in p.publish}
    assert validators == AUTHORITY_ELIGIBLE


_check()
