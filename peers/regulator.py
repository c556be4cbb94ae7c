"""The regulator peer: the live CCR / systemic-risk monitor and the authority-management actions.

The regulator runs no node and never trades (paper section II.1). ``RegulatorService``:

- **follows the chain** as a full observer node (``peers.observer.ChainFollower``): it checks
  and executes every final block on its own copy of the state, as an authority would, and is
  the trade repository. What each block changed (every live contract on a fixing) is fed to
  the incremental monitor (``rfq.risk.incremental``; its valuation runs off the event loop),
  which re-values only the netting sets, institutions and prices it touched: nothing is read
  from a single authority, and nothing grows a reply past the bus's payload limit;
- **alerts**: when an institution's EAD crosses its genesis ``ccr_threshold`` it publishes a
  ``RiskAlert`` with the cascade its default would start on ``otc.risk.alert`` and keeps it;
  once per crossing (the EAD must fall back to the threshold before it can alert again);
- **answers** ``RiskQuery`` and ``WhatIfQuery`` on ``otc.query.<regulator>``. The market-wide
  table and what-if runs are for the regulator and the authority-eligible institutions (who
  carry the market's credit risk and sit in the exposure network); any other member sees its
  own row and the alerts about itself;
- **watches consensus** on ``otc.ibft.*``: an authority that signs two proposals, prepares or
  commits naming different blocks for one height and round is reported with
  ``ByzantineEvidence`` (once per offender); the ledger evicts it and a candidate joins.

Governance actions (nominate, veto, evict, credit event, external rating) are one-shot
transactions: ``governance_payload`` builds them and ``LedgerClient.submit_and_wait`` sends them
(``botc regulator --net NETDIR nominate G2``).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter, deque
from collections.abc import Callable, Container
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

import msgspec
import structlog
from nats.aio.msg import Msg

from bus import subjects
from bus.client import Bus
from bus.envelope import Channel, Received
from peers.authority.node import consensus_channel
from peers.errors import CliError
from peers.ledger_client import (
    LedgerClient,
    LedgerUnavailable,
)
from peers.observer import ChainFollower
from peers.runtime import keep_out_of_full_collections, release_free_memory
from peers.service import Service, ServiceStatus, cancel_and_wait
from rfq.errors import RfqError, ValidationError
from rfq.identity import GRADES, Genesis, Role
from rfq.ledger.block import Block
from rfq.ledger.consensus import (
    EQUIVOCATION_KINDS,
    Commit,
    ConsensusMessage,
    Prepare,
    Proposal,
    verify_evidence,
)
from rfq.ledger.state import BlockResult, Receipt, business_date
from rfq.ledger.tx import (
    ByzantineEvidence,
    CreditEventTx,
    Evict,
    ExternalRating,
    Nominate,
    Veto,
)
from rfq.policy import Scope, query_scope
from rfq.queries import (
    REGULATOR_QUERY_ROLES,
    REGULATOR_REPLY_ROLES,
    QueryRefused,
    RegulatorQuery,
    RegulatorReply,
    RiskAlert,
    RiskQuery,
    RiskReply,
)
from rfq.risk.incremental import IncrementalMonitor, feed, named_contracts
from rfq.risk.monitor import (
    DEFAULT_RECOVERY_RATE,
    Assessment,
    alert_for,
    crossings,
    what_if,
)
from rfq.signing import SignedMessage

log = structlog.get_logger(__name__)

REGULATOR_QUERY_CHANNEL: Channel[RegulatorQuery] = Channel.of(
    "regulator_query", RegulatorQuery, REGULATOR_QUERY_ROLES
)


def regulator_reply_channel(max_bytes: int) -> Channel[RegulatorReply]:
    """What askers of ``otc.query.REG`` accept back (the CCR table grows with the market)."""
    return Channel.of("regulator_reply", RegulatorReply, REGULATOR_REPLY_ROLES, max_bytes=max_bytes)


FULL_VIEW_ROLES = frozenset(r for r in Role if query_scope(r, "q_risk") == Scope.ALL)
"""Who sees the whole CCR table (the role-policy table's scope of ``q_risk``)."""

MAX_ALERTS_KEPT = 200
VOTE_WINDOW_HEIGHTS = 512
"""Consensus votes are remembered this many heights below the newest seen."""


@dataclass(frozen=True)
class EvidenceReport:
    """Equivocation the regulator reported: the offender, the transaction and its receipt."""

    offender: str
    height: int
    round: int
    kind: str
    tx_id: str
    receipt: Receipt | None


# --------------------------------------------------------------------------------------------
# Governance transactions


GOVERNANCE_ACTIONS = ("nominate", "veto", "evict", "credit-event", "rating")


def governance_payload(
    genesis: Genesis,
    action: str,
    member: str,
    *,
    reason: str = "",
    grade: str = "",
    members: Container[str] | None = None,
) -> msgspec.Struct:
    """The transaction for one governance action; ``CliError`` (exit 2) on bad input.

    The member must be in the genesis, or in ``members`` (the chain's registry, for members
    admitted since); an eviction and a credit event need a reason, a rating a grade of the
    scale. Whether the ledger accepts it (a candidate that is already one, an authority that
    is not) is the chain's answer, in the receipt.
    """
    if action not in GOVERNANCE_ACTIONS:
        raise CliError(f"unknown action {action!r} (expected {', '.join(GOVERNANCE_ACTIONS)})")
    if members is not None:
        if member not in members:
            raise CliError(f"no member {member!r} on chain")
    else:
        try:
            genesis.member(member)
        except ValidationError:
            raise CliError(f"no member {member!r} in the network's genesis") from None
    if action == "nominate":
        return Nominate(member)
    if action == "veto":
        return Veto(member)
    if action == "rating":
        if grade not in GRADES:
            raise CliError(f"grade {grade!r} is not one of {', '.join(GRADES)}")
        return ExternalRating(member, grade)
    if not reason.strip():
        raise CliError(f"{action} needs --reason")
    if action == "evict":
        return Evict(member, reason.strip())
    return CreditEventTx(member, reason.strip())


# --------------------------------------------------------------------------------------------
# The service


class RegulatorService(Service):
    """The regulator's monitor and consensus watch. ``async with RegulatorService(...)``."""

    def __init__(
        self,
        bus: Bus,
        genesis: Genesis,
        *,
        ledger: LedgerClient | None = None,
        poll_s: float = 0.5,
        query_timeout_s: float = 2.0,
        recovery_rate: float = DEFAULT_RECOVERY_RATE,
        watch_consensus: bool = True,
        store_path: Path | None = None,
    ) -> None:
        """``store_path``: where its follower keeps the blocks it followed and snapshots of
        its state (a restart then restores instead of replaying from the genesis)."""
        if bus.identity.role != Role.REGULATOR:
            raise CliError(f"{bus.member_id} is a {bus.identity.role}, not the regulator")
        self.bus = bus
        self.genesis = genesis
        self._owns_ledger = ledger is None
        self.ledger = ledger or LedgerClient(bus, genesis)
        self.poll_s = poll_s
        self.query_timeout_s = query_timeout_s
        self.recovery_rate = recovery_rate
        self.watch_consensus = watch_consensus
        self.stats: Counter[str] = Counter()
        self.height = 0
        self.assessment: Assessment | None = None
        self.assessed = asyncio.Event()
        """Set by the first assessment: the monitor holds the whole market from then on."""
        self.above: frozenset[str] = frozenset()
        self.alerts: deque[RiskAlert] = deque(maxlen=MAX_ALERTS_KEPT)
        self.alert_listeners: list[Callable[[RiskAlert], None]] = []
        self.evidence: list[EvidenceReport] = []
        self.follower = ChainFollower(
            bus, genesis, query_timeout_s=query_timeout_s, store_path=store_path
        )
        self.follower.listeners.append(self._on_block)
        self.monitor = IncrementalMonitor(recovery_rate=recovery_rate)
        self._changed: set[str] = set()
        self._fixing = False
        self._everything_changed = True
        self._new_block = asyncio.Event()
        self._votes: dict[tuple[str, int, int, str], tuple[bytes, SignedMessage]] = {}
        self._newest_vote_height = 0
        self._accused: set[str] = set()
        self._task: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[Any]] = set()
        self._refreshing = asyncio.Lock()

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> Self:
        if self.status != ServiceStatus.NEW:
            return self
        await self.ledger.start()
        await self.follower.start()
        await self.bus.subscribe(
            subjects.query(self.bus.member_id), REGULATOR_QUERY_CHANNEL, self._on_query
        )
        if self.watch_consensus:
            await self.bus.subscribe(
                subjects.CONSENSUS_ALL,
                consensus_channel(self.genesis.params.consensus_max_bytes),
                self._on_consensus,
            )
        await self.bus.flush()
        self.status = ServiceStatus.RUNNING
        self._task = asyncio.create_task(self._follow(), name="regulator-follow")
        log.info("regulator_started", member=self.bus.member_id)
        return self

    async def _shutdown(self) -> None:
        for task in [t for t in (self._task, *self._background) if t is not None]:
            await cancel_and_wait(task)
        await self.follower.close()
        if self._owns_ledger:
            await self.ledger.close()
        log.info("regulator_closed", height=self.height, alerts=len(self.alerts))

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # -- following the chain ---------------------------------------------------------------

    async def _follow(self) -> None:
        while self.status == ServiceStatus.RUNNING:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._new_block.wait(), self.poll_s)
            self._new_block.clear()
            try:
                await self.refresh()
            except RfqError as exc:
                self.stats["refresh_failed"] += 1
                log.warning("regulator_refresh_failed", error=str(exc))
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # never let one bad refresh stop the monitor
                self.stats["refresh_crashed"] += 1
                log.exception("regulator_refresh_crashed", error=repr(exc))

    def _on_block(self, block: Block, result: BlockResult) -> None:
        # read now: the payments a block refers to may leave the hot state later
        if not self._everything_changed:
            self._changed |= named_contracts(self.follower.state, result)
            self._fixing = self._fixing or result.fixed
        self._new_block.set()

    async def refresh(self) -> bool:
        """Recompute if the follower has applied a new final height; True if it recomputed.

        The changed contracts are read from the follower's state here, on the event loop;
        the monitor then runs off it while the follower goes on."""
        async with self._refreshing:
            if self.follower.height <= self.height and self.assessment is not None:
                return False
            started = time.perf_counter()
            state = self.follower.state
            changed = None if self._everything_changed else self._changed
            fixing = self._fixing
            put = feed(self.monitor, state, changed, fixing)
            self._everything_changed, self._changed, self._fixing = False, set(), False
            if changed is None:  # the state and the monitor it fed are long-lived
                keep_out_of_full_collections()
            assessment = await asyncio.to_thread(
                self.monitor.assess,
                self.follower.height,
                business_date(state.timestamp_ms, state.book),
                tuple(state.members.values()),
                {m: r.score for m, r in state.ratings.items()},
                tuple(state.guarantees.values()),
            )
            self.assessment = assessment
            self.height = assessment.height
            self.assessed.set()
            if fixing:  # every live contract was re-read and re-assessed
                release_free_memory()
            self.stats["refreshes"] += 1
            await self._raise_alerts(assessment)
            log.debug(
                "regulator_assessed",
                height=assessment.height,
                changed=put,
                netting_pairs=self.monitor.recomputed,
                ms=round((time.perf_counter() - started) * 1000, 1),
            )
            return True

    async def _raise_alerts(self, assessment: Assessment) -> None:
        self.above, crossed = crossings(self.above, assessment.rows)
        for institution in crossed:
            alert = alert_for(assessment, institution)
            self.alerts.append(alert)
            self.stats["alerts"] += 1
            log.warning(
                "risk_alert",
                institution=institution,
                height=alert.height,
                ead=round(alert.ead, 2),
                threshold=alert.threshold,
                cascade=alert.cascade_defaulted,
            )
            await self.bus.publish(subjects.RISK_ALERTS, alert)
            for listener in list(self.alert_listeners):
                try:
                    listener(alert)
                except Exception:
                    log.exception("alert_listener_failed")

    # -- queries ---------------------------------------------------------------------------

    async def _on_query(self, received: Received[RegulatorQuery], msg: Msg) -> None:
        self.stats["queries"] += 1
        reply = self.answer(received.sender, received.payload)
        await self.bus.reply(msg, reply, seal_to=(received.sender,))

    def answer(self, who: str, query: RegulatorQuery) -> RegulatorReply:
        """The reply to ``who``'s query (pure over the last assessment)."""
        member = self.follower.state.members.get(who)
        full = member is not None and member.role in FULL_VIEW_ROLES
        assessment = self.assessment
        if isinstance(query, RiskQuery):
            alerts = tuple(self.alerts)
            if assessment is None:
                return RiskReply(self.height, (), alerts if full else ())
            rows = assessment.rows
            if not full:
                rows = tuple(r for r in rows if r.institution == who)
                alerts = tuple(a for a in alerts if a.institution == who)
            return RiskReply(assessment.height, rows, alerts)
        if member is None or query_scope(member.role, "q_whatif") is None:
            return QueryRefused("what-if runs are for the regulator and the authorities")
        if assessment is None:
            return QueryRefused("the monitor has not read the chain yet")
        try:
            return what_if(assessment.network, query.institutions, query.model)
        except ValidationError as exc:
            return QueryRefused(str(exc))

    # -- consensus watch -------------------------------------------------------------------

    async def _on_consensus(self, received: Received[ConsensusMessage], msg: Msg) -> None:
        message = received.message
        if message.kind not in EQUIVOCATION_KINDS:
            return
        payload = received.payload
        if isinstance(payload, Proposal):
            voted = payload.block.hash()
        elif isinstance(payload, Prepare | Commit):
            voted = payload.block_hash
        else:
            return
        key = (message.sender, payload.height, payload.round, message.kind)
        seen = self._votes.get(key)
        if seen is None:
            self._votes[key] = (voted, message)
            self._prune_votes(payload.height)
            return
        if seen[0] == voted or message.sender in self._accused:
            return
        problem = verify_evidence(seen[1], message, self.bus.directory)
        if problem is not None:
            self.stats["evidence_not_valid"] += 1
            log.warning("evidence_not_valid", sender=message.sender, problem=problem)
            return
        self._accused.add(message.sender)
        self.stats["equivocations"] += 1
        log.warning(
            "equivocation_seen",
            offender=message.sender,
            height=payload.height,
            round=payload.round,
            kind=message.kind,
        )
        self._spawn(self._report(seen[1], message, payload.height, payload.round))

    def _prune_votes(self, height: int) -> None:
        if height <= self._newest_vote_height:
            return
        self._newest_vote_height = height
        if height % 64:
            return
        cutoff = height - VOTE_WINDOW_HEIGHTS
        for key in [k for k in self._votes if k[1] < cutoff]:
            del self._votes[key]

    async def _report(
        self, first: SignedMessage, second: SignedMessage, height: int, round_: int
    ) -> None:
        offender = first.sender
        receipt: Receipt | None = None
        tx_id = ""
        try:
            tx_id = await self.ledger.submit(ByzantineEvidence(first, second))
            self.stats["evidence_submitted"] += 1
            receipt = await self.ledger.wait(tx_id, timeout=30.0)
        except (LedgerUnavailable, RfqError) as exc:
            log.error("evidence_not_committed", offender=offender, error=str(exc))
        if receipt is not None and not receipt.ok:
            # Another observer's evidence may have evicted it first: the outcome is the same.
            log.info("evidence_refused", offender=offender, reason=receipt.reason)
        elif receipt is not None:
            log.warning("authority_evicted", offender=offender, height=receipt.height)
        self.evidence.append(EvidenceReport(offender, height, round_, first.kind, tx_id, receipt))
