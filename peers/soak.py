"""``botc soak``: the whole marketplace for simulated business days, checked as it runs.

The soak starts every peer under ``botc up``'s supervisor (``peers.marketplace``), headless,
with a client population that behaves like a market: most clients pay on time, some pay late
(the bank holds their margin calls back, ``botc bank --late``), a few are designed to fail
(the bank opens their accounts with too little money, ``botc bank --balance``). The clients
also withdraw some RFQs and probe the chain with accepts of expired quotes (``botc load
--cancel-share --stale-share``) and log every RFQ's fate (``--events-file``).

While it runs, once a second, it asks every authority its height (``StatusQuery``) and reads
each peer's resident memory (``/proc/PID/status``); once the chain has passed a few state
snapshots (genesis ``snapshot_every``) it SIGKILLs one authority, which the supervisor
restarts. At the end it reads what members see (the query service's counts) while the market
still runs, stops everything, then reads the chain itself (each authority's SQLite database,
re-executed from the genesis), the bank's books and every peer's log.

Each invariant is a pure function of what was collected (``check_*`` below, unit tested on
hand-built inputs); a violation names the invariant, the height and the ids, and is collected,
never raised:

``chain_verifies``
    every authority's database re-verifies from the genesis, snapshots included
    (``peers.authority.verify``); all hold the same block at every common height; the killed
    authority came back, caught up and went on proposing or sealing blocks.
``no_solvent_default``
    every default (a missed margin call, an explicit credit event, an eviction) carries its
    cause; a margin-call default is a violation when the payer's bank balance at the deadline
    covered the call, and any default or eviction of a member not designed to fail is one.
``chain_progress``
    while a quorum of authorities answers, the tip never stands still longer than
    ``progress_bound_s`` (10 s, or ``idle_block_ms + 4 x round_timeout_ms`` if longer).
``bank_conserves``
    the bank's books conserve money; every payment confirmed on chain was executed once for its
    amount and every execution is confirmed on chain; no instruction stays pending (or failed
    while its payer holds the funds) longer than ``due_s`` after the block that made it.
``no_error_logs``
    no error-level line (nor a traceback) in any peer's log written during the run; warnings
    are counted by event in the report.
``no_bad_trades``
    no trade from an RFQ the client cancelled, from a quote accepted or committed after its
    validity, with a dealer credit line over the initial margin or over the dealer's credit
    limit for the client, or with a counterparty that had already defaulted.
``views_match_chain``
    what the query service reports (trades, contracts, open contracts, payments) equals the
    chain at that height; every trade the clients were told is final is on chain with that
    transaction, and every trade of a simulated client on chain is one it accepted.
``memory_bounded``
    no peer's RSS grows by more than ``warmup_mb + per_day_mb x days`` (48 MB + 16 MB per
    simulated day by default) between the market being ready and the end.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import datetime as dt
import enum
import json
import math
import random
import re
import shutil
import signal
import sqlite3
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence, Set
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final

import structlog

from peers.authority.store import ChainStore, SqliteChainStore
from peers.authority.verify import Verdict, verify_chain
from peers.bank import (
    DEFAULT_CLIENT_BALANCE,
    JOURNAL_COLUMNS,
    JournalEntry,
    JournalState,
    journal_entry,
)
from peers.errors import PeerError
from peers.load import percentile
from peers.netdir import NetDir, create_network
from rfq.contracts.events import (
    ContractClosedOut,
    ContractDefaulted,
    ContractSettled,
    DefaultTriggered,
    MarginCallLapsed,
)
from rfq.identity import AUTHORITY_ELIGIBLE, Genesis, NetworkParams, Role
from rfq.ledger.block import quorum
from rfq.ledger.components.payments import margin_payment_id, margin_set_key
from rfq.ledger.state import ACCEPT_GRACE_MS, LedgerState, Payment, genesis_header
from rfq.ledger.tx import CreditEventTx, PriceFixing, signed_decoder, tx_decoder
from rfq.messages import Accept, decode_quote
from rfq.money import from_micros

log = structlog.get_logger(__name__)

INVARIANTS: Final = (
    "chain_verifies",
    "no_solvent_default",
    "chain_progress",
    "regulator_current",
    "bank_conserves",
    "no_error_logs",
    "no_bad_trades",
    "views_match_chain",
    "memory_bounded",
)

SOAK_PARAMS: Final = NetworkParams(
    block_time_ms=100,
    idle_block_ms=500,
    round_timeout_ms=1000,
    margin_cure_days=0,
    snapshot_every=50,
    retain_blocks=60,
)
"""A fresh soak network: 2-10 blocks a second, a margin call due by the end of its own
business day (a cut-off; a short payer defaults with the next day's first block), a state
snapshot every 50 blocks so a short soak passes several before the kill, and ended contracts
and paid payments leaving the hot state 60 blocks on (so a short soak prunes too)."""

DEALER_CREDIT_LIMIT: Final = 5.0e7
"""The dealer bots' per-client credit limit (``peers.dealer.DEFAULT_CREDIT_LIMIT``)."""

EPSILON: Final = 1e-6
VIOLATIONS_LISTED: Final = 20
"""Violations of one invariant the report lists; the others are counted in one more entry
(a market of 100,000 contracts whose payments stall would otherwise list each: 20 MB of JSON)."""


class SoakError(PeerError):
    """The soak could not run (bad input is a ``CliError``)."""


@dataclass(frozen=True)
class Violation:
    """A broken invariant: which, at what height (None: not tied to one), who, and why."""

    invariant: str
    height: int | None
    ids: tuple[str, ...]
    detail: str

    def as_dict(self) -> dict[str, object]:
        return {
            "invariant": self.invariant,
            "height": self.height,
            "ids": list(self.ids),
            "detail": self.detail,
        }


def uneven_pages(uneven: Sequence[str], first: int, last: int | None) -> list[str]:
    """The paged reads whose rows and total disagreed, as errors when the chain stood still
    from ``first`` to ``last`` while they ran. Pages go in key order, so a row committed
    meanwhile may sort before the cursor: on a moving chain (a read of 100,000 contracts
    spans blocks) the counts are checked against the chain's instead."""
    return list(uneven) if last == first else []


def listed(invariant: str, found: Sequence[Violation]) -> list[Violation]:
    """What the report lists of one invariant's violations: the first ``VIOLATIONS_LISTED``
    and, when there were more, one entry that counts them."""
    shown = list(found[:VIOLATIONS_LISTED])
    if len(found) > VIOLATIONS_LISTED:
        more = len(found) - VIOLATIONS_LISTED
        shown.append(Violation(invariant, None, (), f"{more} more like these, not listed"))
    return shown


# --------------------------------------------------------------------------------------------
# The client population


class Conduct(enum.StrEnum):
    ON_TIME = "on_time"
    LATE = "late"
    FAILING = "failing"


@dataclass(frozen=True)
class ClientPlan:
    member: str
    conduct: Conduct
    balance: float | None = None
    """The bank opens the account with this much instead of the default (failing clients)."""
    late_s: float | None = None
    """Seconds the bank holds this client's margin calls back (late payers)."""


def plan_population(
    clients: Sequence[str], *, failing_balance: float = 1_000.0, late_s: float = 2.0
) -> tuple[ClientPlan, ...]:
    """Most clients pay on time; a fifth (at least one of two) pay late; a fifth (at least one
    of three) are designed to fail. The last clients are the failing ones, then the late."""
    n = len(clients)
    failing = max(round(n / 5), 1) if n >= 3 else 0
    late = max(round(n / 5), 1) if n >= 2 else 0
    plans = []
    for i, member in enumerate(clients):
        if i >= n - failing:
            plans.append(ClientPlan(member, Conduct.FAILING, balance=failing_balance))
        elif i >= n - failing - late:
            plans.append(ClientPlan(member, Conduct.LATE, late_s=late_s))
        else:
            plans.append(ClientPlan(member, Conduct.ON_TIME))
    return tuple(plans)


def designed_to_fail(plans: Iterable[ClientPlan]) -> frozenset[str]:
    return frozenset(p.member for p in plans if p.conduct == Conduct.FAILING)


# --------------------------------------------------------------------------------------------
# What the chain holds (re-executed from an authority's database)


@dataclass(frozen=True)
class BlockInfo:
    height: int
    hash: str
    timestamp_ms: int
    proposer: str
    tx_count: int
    sealers: tuple[str, ...] = ()


@dataclass(frozen=True)
class TradeFact:
    """A committed trade with what it was made of."""

    rfq_id: str
    client: str
    dealer: str
    height: int
    block_ms: int
    accept_ms: int
    valid_until_ms: int
    tx_id: str
    initial_margin: float
    dealer_line: float
    ended_height: int | None = None


@dataclass(frozen=True)
class DefaultFact:
    """A member's default as the chain records it.

    ``kind``: ``margin_call`` (a missed call: ``payment_id``, ``amount`` and
    ``deadline_height`` say which), ``credit_event`` (an explicit one) or ``eviction``.
    """

    member: str
    kind: str
    height: int
    reason: str
    contract: str | None = None
    payment_id: str | None = None
    amount: float | None = None
    deadline_height: int | None = None
    failure: str | None = None
    confirmed_height: int | None = None
    """The margin call's payment was confirmed on chain at this height (and still defaulted)."""


@dataclass(frozen=True)
class Counts:
    """What the query service would report at one height."""

    trades: int
    contracts: int
    open_contracts: int
    payments: int


@dataclass
class ChainFacts:
    tip: int = 0
    blocks: dict[int, BlockInfo] = field(default_factory=dict)
    trades: list[TradeFact] = field(default_factory=list)
    defaults: list[DefaultFact] = field(default_factory=list)
    payments: dict[str, Payment] = field(default_factory=dict)
    counts: dict[int, Counts] = field(default_factory=dict)
    fixing_dates: set[dt.date] = field(default_factory=set)
    authorities: tuple[str, ...] = ()

    def block_ms(self, height: int) -> int | None:
        block = self.blocks.get(height)
        return None if block is None else block.timestamp_ms


_FACT_KINDS: Final = frozenset(
    str(kind.__struct_config__.tag) for kind in (CreditEventTx, PriceFixing)
)


def read_chain(
    genesis: Genesis, store: ChainStore, *, count_at: Set[int] = frozenset()
) -> ChainFacts:
    """Re-execute ``store``'s blocks from the genesis and collect the facts the checks need;
    ``count_at``: heights whose query-service counts to keep."""
    state = LedgerState(genesis)
    head = genesis_header(genesis)
    facts = ChainFacts()
    ended: dict[str, int] = {}
    pruned: dict[str, Payment] = {}
    """Payments that left the hot state (retention), with their last values: the checks
    read every payment the chain ever made."""
    if 0 in count_at:
        facts.counts[0] = _counts(state)
    for block in store.blocks(1):
        h = block.header
        result = state.execute(h.height, h.timestamp_ms, head, block.txs)
        head = h
        facts.blocks[h.height] = BlockInfo(
            h.height,
            h.hash().hex(),
            h.timestamp_ms,
            h.proposer,
            h.tx_count,
            tuple(s.authority for s in block.seals),
        )
        for receipt, tx in zip(result.receipts, block.txs, strict=True):
            if not receipt.ok:
                continue
            signed = signed_decoder.decode(tx)
            if signed.kind == "accept":
                accept = _accept_of(signed.body)
                quote = decode_quote(accept.quote)
                trade = state.trades[quote.rfq_id]
                facts.trades.append(
                    TradeFact(
                        rfq_id=quote.rfq_id,
                        client=trade.client,
                        dealer=trade.dealer,
                        height=h.height,
                        block_ms=h.timestamp_ms,
                        accept_ms=signed.timestamp_ms,
                        valid_until_ms=quote.valid_until_ms,
                        tx_id=receipt.tx_id,
                        initial_margin=from_micros(trade.initial_margin),
                        dealer_line=from_micros(trade.dealer_line),
                    )
                )
            elif signed.kind in _FACT_KINDS:
                payload = tx_decoder.decode(signed.body)
                if isinstance(payload, CreditEventTx):
                    facts.defaults.append(
                        DefaultFact(payload.party, "credit_event", h.height, payload.reason)
                    )
                elif isinstance(payload, PriceFixing):
                    facts.fixing_dates.add(payload.date)
        lapsed = {o.contract_id: o for o in result.outputs if isinstance(o, MarginCallLapsed)}
        for out in result.outputs:
            if isinstance(out, DefaultTriggered):
                call = _missed_call(state, lapsed.get(out.contract_id))
                facts.defaults.append(
                    DefaultFact(
                        out.party,
                        "margin_call",
                        out.height,
                        out.reason,
                        contract=out.contract_id,
                        payment_id=call.id if call else None,
                        amount=from_micros(call.amount) if call else None,
                        deadline_height=out.height,  # due date passed, payer reported short
                        failure=call.failure if call else None,
                        confirmed_height=call.confirmed_height
                        if call and call.status == "confirmed"
                        else None,
                    )
                )
            elif isinstance(out, ContractSettled | ContractClosedOut | ContractDefaulted):
                ended.setdefault(out.contract_id, h.height)
        for gone in result.pruned:
            if gone.component == "payments":
                pruned[gone.key] = gone.value
        for event in result.governance:
            if event.action == "evict":
                facts.defaults.append(DefaultFact(event.member, "eviction", h.height, event.reason))
        if h.height in count_at:
            facts.counts[h.height] = _counts(state)
    facts.tip = head.height
    facts.payments = {**pruned, **dict(state.payments.items())}
    facts.authorities = state.authorities
    facts.trades = [
        TradeFact(**{**asdict(t), "ended_height": ended.get(t.rfq_id)}) for t in facts.trades
    ]
    return facts


def _accept_of(body: bytes) -> Accept:
    payload = tx_decoder.decode(body)
    if not isinstance(payload, Accept):
        raise SoakError(f"an accept transaction holds a {type(payload).__name__}")
    return payload


def _missed_call(state: LedgerState, lapsed: MarginCallLapsed | None) -> Payment | None:
    """The netted payment whose deadline passed for a contract that defaulted on its call
    (``lapsed``: the call, which lapsed as the default ended the contract): the newest of its
    set made before this block (the one this block made holds the set's other calls)."""
    if lapsed is None:
        return None
    key = margin_set_key(lapsed.payer, lapsed.payee, lapsed.height, lapsed.due)
    missed = None
    n = 1
    while (payment := state.payments.get(margin_payment_id(key, n))) is not None:
        if payment.created_height < state.height:
            missed = payment
        n += 1
    return missed


def _counts(state: LedgerState) -> Counts:
    return Counts(
        trades=len(state.trades),
        contracts=len(state.book),
        open_contracts=state.book.open_count,
        payments=len(state.payments),
    )


def punctuality(payments: Iterable[Payment], since_height: int = 0) -> dict[str, dict[str, float]]:
    """Per payer: margin-call payments (one per netting set; a revision that lapsed as a
    contract left its set is not counted), how many were paid, and the blocks each took to be
    confirmed (mean and max): the late payers should show it."""
    out: dict[str, dict[str, float]] = {}
    delays: dict[str, list[int]] = {}
    for p in payments:
        if p.kind != "margin_call" or p.created_height <= since_height or p.status == "lapsed":
            continue
        row = out.setdefault(p.payer, {"calls": 0, "paid": 0})
        row["calls"] += 1
        if p.status == "confirmed" and p.confirmed_height is not None:
            row["paid"] += 1
            delays.setdefault(p.payer, []).append(p.confirmed_height - p.created_height)
    for payer, waits in delays.items():
        out[payer]["mean_blocks_to_pay"] = round(sum(waits) / len(waits), 1)
        out[payer]["max_blocks_to_pay"] = max(waits)
    return dict(sorted(out.items()))


def block_hashes(store: ChainStore) -> dict[int, str]:
    """Every stored block's hash by height (without decoding the blocks)."""
    return {h: x.hex() for h, x in store.block_hashes().items()}


# --------------------------------------------------------------------------------------------
# chain_verifies


@dataclass
class RestartRecord:
    """The deliberate SIGKILL of one authority and what became of it."""

    authority: str
    killed_height: int
    killed_ms: int
    snapshot_before: int
    """The height of the snapshot its store held when it was killed (0: none)."""
    ready_ms: int | None = None
    caught_up_ms: int | None = None
    tip: int | None = None


def check_chain_verifies(
    verdicts: Mapping[str, Verdict],
    hashes: Mapping[str, Mapping[int, str]],
    *,
    restart: RestartRecord | None = None,
    blocks: Mapping[int, BlockInfo] | None = None,
    tips: Mapping[str, int] | None = None,
    lag_blocks: int = 20,
) -> list[Violation]:
    """Each database re-verifies; all agree at every common height; the killed authority
    came back, caught up (within ``lag_blocks`` of the highest tip) and took part after."""
    out = []
    for authority, verdict in sorted(verdicts.items()):
        if not verdict.ok:
            out.append(
                Violation(
                    "chain_verifies",
                    verdict.height,
                    (authority,),
                    f"{authority}'s database does not re-verify: {verdict.reason}",
                )
            )
    if len(hashes) > 1:
        common = set.intersection(*(set(h) for h in hashes.values()))
        for height in sorted(common):
            seen: dict[str, list[str]] = {}
            for authority, by_height in sorted(hashes.items()):
                seen.setdefault(by_height[height], []).append(authority)
            if len(seen) > 1:
                groups = "; ".join(f"{', '.join(a)}: {x[:16]}" for x, a in seen.items())
                out.append(
                    Violation(
                        "chain_verifies",
                        height,
                        tuple(sorted(hashes)),
                        f"authorities hold different blocks at height {height} ({groups})",
                    )
                )
                break  # the first fork says it; every later height differs too
    if restart is not None:
        who = restart.authority
        if restart.ready_ms is None:
            out.append(
                Violation(
                    "chain_verifies",
                    restart.killed_height,
                    (who,),
                    f"{who} was SIGKILLed at height {restart.killed_height} and never came back",
                )
            )
        else:
            top = max(tips.values()) if tips else None
            tip = (tips or {}).get(who, restart.tip)
            if top is not None and (tip is None or tip < top - lag_blocks):
                out.append(
                    Violation(
                        "chain_verifies",
                        tip,
                        (who,),
                        f"{who} came back after its SIGKILL but ended at height {tip}, "
                        f"behind the tip {top}",
                    )
                )
            took_part = [
                b.height
                for b in (blocks or {}).values()
                if b.timestamp_ms > restart.ready_ms and (b.proposer == who or who in b.sealers)
            ]
            if blocks is not None and not took_part:
                out.append(
                    Violation(
                        "chain_verifies",
                        restart.killed_height,
                        (who,),
                        f"{who} came back after its SIGKILL but proposed or sealed no block "
                        "after that",
                    )
                )
    return out


# --------------------------------------------------------------------------------------------
# The bank's books (read only)


@dataclass
class BankView:
    journal: list[JournalEntry]
    funding: list[tuple[str, int, int]]
    """(member, micros, at_ms): money paid in from outside (openings, adjustments)."""
    balances: dict[str, int]
    """Micros per account now."""

    @property
    def total_micros(self) -> int:
        return sum(self.balances.values())

    @property
    def funded_micros(self) -> int:
        return sum(m for _, m, _ in self.funding)

    def opened_with(self, member: str) -> float | None:
        """The balance ``member``'s account was opened with (None: it has none)."""
        first = next((m for who, m, _ in self.funding if who == member), None)
        return None if first is None else from_micros(first)

    def balance_at(self, member: str, at_ms: int) -> float | None:
        """``member``'s balance at ``at_ms``, rebuilt from the funding and the journal (None:
        it had no account then)."""
        opened = [m for who, m, t in self.funding if who == member and t <= at_ms]
        if not opened:
            return None
        micros = sum(opened)
        for e in self.journal:
            if e.executed_ms > at_ms or e.state == JournalState.REFUSED:  # refused: reversed
                continue
            if e.payer == member:
                micros -= e.amount
            if e.payee == member:
                micros += e.amount
        return from_micros(micros)


def read_bank(path: Path) -> BankView | None:
    """The bank's books, opened read only (None: there is no bank database)."""
    if not path.exists():
        return None
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        journal = [
            journal_entry(row)
            for row in db.execute(f"SELECT {JOURNAL_COLUMNS} FROM journal ORDER BY seq")
        ]
        funding = [
            (str(m), int(a), int(t))
            for m, a, t in db.execute("SELECT member, amount, at_ms FROM funding ORDER BY seq")
        ]
        balances = {str(m): int(b) for m, b in db.execute("SELECT member, balance FROM accounts")}
    finally:
        db.close()
    return BankView(journal, funding, balances)


# --------------------------------------------------------------------------------------------
# no_solvent_default


def underfunded_clients(genesis: Genesis, bank: BankView | None) -> frozenset[str]:
    """Clients whose bank account was opened with less than the default: designed to fail by
    an earlier soak of the same network (``--balance`` applies when an account is opened)."""
    if bank is None:
        return frozenset()
    out = set()
    for member in genesis.by_role(Role.CLIENT):
        opened = bank.opened_with(member.id)
        if opened is not None and opened < DEFAULT_CLIENT_BALANCE:
            out.add(member.id)
    return frozenset(out)


@dataclass(frozen=True)
class DefaultReport:
    member: str
    kind: str
    height: int
    cause: str
    contract: str | None
    expected: bool
    solvent: bool | None
    """At the deadline the payer held enough to pay (None: not a margin-call default)."""

    def as_dict(self) -> dict[str, object]:
        return {
            "member": self.member,
            "kind": self.kind,
            "height": self.height,
            "contract": self.contract,
            "cause": self.cause,
            "expected": self.expected,
        }


def explain_defaults(
    defaults: Iterable[DefaultFact],
    *,
    failing: Set[str],
    balance_at: Callable[[str, int], float | None],
    block_ms: Callable[[int], int | None],
) -> list[DefaultReport]:
    """Each default with its cause: short at the deadline (the payer's bank balance then) or
    an explicit credit event or eviction."""
    reports = []
    for d in defaults:
        solvent: bool | None = None
        if d.kind == "margin_call":
            at = block_ms(d.deadline_height or d.height) or block_ms(d.height)
            held = balance_at(d.member, at) if at is not None else None
            owed = d.amount
            bank = f"; the bank said: {d.failure}" if d.failure else ""
            if owed is None:
                cause = f"{d.reason} (no margin call found)"
            elif d.confirmed_height is not None:
                cause = (
                    f"paid, yet defaulted: {d.payment_id} ({owed:.2f}) was confirmed at height "
                    f"{d.confirmed_height}, then {d.reason}"
                )
                solvent = True
            elif held is None:
                cause = f"short at the deadline: no bank account, owed {owed:.2f}{bank}"
                solvent = False
            elif held + EPSILON < owed:
                cause = f"short at the deadline: held {held:.2f}, owed {owed:.2f}{bank}"
                solvent = False
            else:
                cause = (
                    f"not short: held {held:.2f} at the deadline (block "
                    f"{d.deadline_height}), owed {owed:.2f} on {d.payment_id}{bank}"
                )
                solvent = True
        elif d.kind == "credit_event":
            cause = f"credit event: {d.reason}"
        else:
            cause = f"evicted: {d.reason}"
        reports.append(
            DefaultReport(
                d.member, d.kind, d.height, cause, d.contract, d.member in failing, solvent
            )
        )
    return reports


def check_no_solvent_default(reports: Iterable[DefaultReport]) -> list[Violation]:
    """A default is wrong when the payer could pay, or when the member was not designed to
    fail (the soak expects the failing clients' defaults only)."""
    out = []
    for r in reports:
        ids = tuple(x for x in (r.member, r.contract) if x)
        if r.solvent:
            out.append(
                Violation("no_solvent_default", r.height, ids, f"{r.member} defaulted: {r.cause}")
            )
        elif not r.expected:
            out.append(
                Violation(
                    "no_solvent_default",
                    r.height,
                    ids,
                    f"{r.member} is not designed to fail but has a {r.kind} default: {r.cause}",
                )
            )
    return out


# --------------------------------------------------------------------------------------------
# chain_progress


@dataclass(frozen=True)
class ProgressSample:
    t_s: float
    """Seconds since the run started."""
    heights: Mapping[str, int | None]
    """Each node's answer (None: it did not answer)."""
    authorities: tuple[str, ...] = ()
    """The authority set in force as the nodes report it (empty: all of ``heights``)."""

    @property
    def top(self) -> int | None:
        """The highest height a node told (None: none answered)."""
        return max((h for h in self.heights.values() if h is not None), default=None)


def progress_bound_s(params: NetworkParams) -> float:
    """How long the chain may stand still: 10 s, or an idle block plus four round timeouts
    (the worst rotation past crashed proposers) if that is longer."""
    return max(10.0, (params.idle_block_ms + 4 * params.round_timeout_ms) / 1000)


def check_chain_progress(
    samples: Sequence[ProgressSample], *, bound_s: float
) -> tuple[list[Violation], float]:
    """Stalls longer than ``bound_s`` while a quorum of the authority set in force answered;
    also returns the longest such stall."""
    out = []
    longest = 0.0
    best = -1
    since: float | None = None
    reported = False
    for sample in samples:
        members = sample.authorities or tuple(sample.heights)
        up = [a for a in members if sample.heights.get(a) is not None]
        top = sample.top
        if len(up) < quorum(len(members)) or top is None:
            since, reported = None, False  # the clock runs only while a quorum is up
            continue
        if top > best or since is None:
            if top > best:
                best = top
                reported = False
            since = sample.t_s
            continue
        stalled = sample.t_s - since
        longest = max(longest, stalled)
        if stalled > bound_s and not reported:
            reported = True
            out.append(
                Violation(
                    "chain_progress",
                    best,
                    tuple(sorted(up)),
                    f"the chain stood still at height {best} for more than {bound_s:.0f}s "
                    f"(from {since:.1f}s into the run) while {len(up)} authorities answered",
                )
            )
    return out, round(longest, 1)


# --------------------------------------------------------------------------------------------
# regulator_current


@dataclass(frozen=True)
class RegulatorSample:
    t_s: float
    height: int | None
    """The height of the regulator's assessment (its CCR table and alerts); None: no answer."""


def check_regulator_current(
    progress: Sequence[ProgressSample], regulator: Sequence[RegulatorSample], *, bound_s: float
) -> tuple[list[Violation], float]:
    """The regulator's assessment never lags a block the chain made more than ``bound_s``
    ago, and it answers; also returns its longest lag. A lag is timed from the first sample
    that saw the chain pass the assessment's height."""
    tips: list[int] = []  # increasing, each with the time it was first seen
    seen_at: list[float] = []
    for polled in progress:
        top = polled.top
        if top is not None and (not tips or top > tips[-1]):
            tips.append(top)
            seen_at.append(polled.t_s)
    out = []
    longest = 0.0
    silent_since: float | None = None
    reported_lag = reported_silence = False
    for sample in regulator:
        if sample.height is None:
            silent_since = sample.t_s if silent_since is None else silent_since
            if sample.t_s - silent_since > bound_s and not reported_silence:
                reported_silence = True
                out.append(
                    Violation(
                        "regulator_current",
                        None,
                        ("REG",),
                        f"the regulator did not answer for more than {bound_s:.0f}s "
                        f"(from {silent_since:.1f}s into the run)",
                    )
                )
            continue
        silent_since, reported_silence = None, False
        first_past = bisect.bisect_right(tips, sample.height)
        passed = seen_at[first_past] if first_past < len(tips) else None
        lag = 0.0 if passed is None or passed > sample.t_s else sample.t_s - passed
        longest = max(longest, lag)
        if lag > bound_s and not reported_lag:
            reported_lag = True
            out.append(
                Violation(
                    "regulator_current",
                    sample.height,
                    ("REG",),
                    f"the regulator's assessment stood at height {sample.height} "
                    f"{lag:.1f}s after the chain passed it (bound {bound_s:.0f}s)",
                )
            )
        elif lag <= bound_s:
            reported_lag = False
    return out, round(longest, 1)


# --------------------------------------------------------------------------------------------
# bank_conserves


def check_bank_conserves(
    bank: BankView | None,
    payments: Mapping[str, Payment],
    *,
    block_ms: Callable[[int], int | None],
    end_ms: int,
    due_s: float,
) -> list[Violation]:
    """Money is conserved, the books match the chain's confirmations one for one, and nothing
    waits past its due time without a final outcome."""
    if bank is None:
        return [Violation("bank_conserves", None, ("BANK",), "the bank has no books")]
    out = []
    if bank.total_micros != bank.funded_micros:
        out.append(
            Violation(
                "bank_conserves",
                None,
                ("BANK",),
                f"the books hold {from_micros(bank.total_micros):.6f} but "
                f"{from_micros(bank.funded_micros):.6f} was paid in",
            )
        )
    journal = {e.instruction_id: e for e in bank.journal}
    due_ms = end_ms - due_s * 1000
    for p in sorted(payments.values(), key=lambda p: (p.created_height, p.id)):
        entry = journal.get(p.id)
        if p.status == "confirmed":
            if p.kind == "variation_margin" and p.bank_ref in payments:
                continue  # moved by its margin call's payment, not executed on its own
            if entry is None:
                out.append(
                    Violation(
                        "bank_conserves",
                        p.confirmed_height,
                        (p.id,),
                        f"{p.id} is confirmed on chain but the bank never executed it",
                    )
                )
            elif entry.amount != p.amount:
                out.append(
                    Violation(
                        "bank_conserves",
                        p.confirmed_height,
                        (p.id,),
                        f"{p.id}: the chain confirmed {from_micros(p.amount)}, the bank moved "
                        f"{from_micros(entry.amount)}",
                    )
                )
            elif entry.bank_ref and p.bank_ref and entry.bank_ref != p.bank_ref:
                out.append(
                    Violation(
                        "bank_conserves",
                        p.confirmed_height,
                        (p.id, entry.bank_ref, p.bank_ref),
                        f"{p.id}: confirmed on chain with reference {p.bank_ref}, "
                        f"executed as {entry.bank_ref}",
                    )
                )
            continue
        created_ms = block_ms(p.created_height) or 0
        if p.status == "pending" and entry is None and created_ms < due_ms:
            out.append(
                Violation(
                    "bank_conserves",
                    p.created_height,
                    (p.id,),
                    f"{p.id} ({p.kind}, {p.payer} -> {p.payee}, {from_micros(p.amount):.2f}) has "
                    "been "
                    f"pending since block {p.created_height} without an outcome on chain",
                )
            )
        if p.status == "failed" and entry is None and p.kind != "margin_call":
            held = bank.balance_at(p.payer, int(due_ms))
            owed = from_micros(p.amount)
            if held is not None and held + EPSILON >= owed and created_ms < due_ms:
                out.append(
                    Violation(
                        "bank_conserves",
                        p.created_height,
                        (p.id, p.payer),
                        f"{p.id} stays failed ({p.failure}) though {p.payer} has held "
                        f"{held:.2f} >= {owed:.2f} for {due_s:.0f}s",
                    )
                )
    for e in bank.journal:
        payment = payments.get(e.instruction_id)
        if payment is None:
            out.append(
                Violation(
                    "bank_conserves",
                    e.height,
                    (e.instruction_id,),
                    f"the bank executed {e.instruction_id}, which is no instruction on chain",
                )
            )
        elif e.state == JournalState.REFUSED:
            if payment.status == "lapsed" and payment.kind == "margin_call":
                continue  # paid as its contract ended: refused, and reversed in the books
            out.append(
                Violation(
                    "bank_conserves",
                    e.height,
                    (e.instruction_id,),
                    f"the chain refused the bank's confirmation of {e.instruction_id}: {e.reason}",
                )
            )
        elif payment.status != "confirmed" and (
            e.state == JournalState.CONFIRMED or e.executed_ms < due_ms
        ):
            out.append(
                Violation(
                    "bank_conserves",
                    e.height or payment.created_height,
                    (e.instruction_id,),
                    f"the bank moved {from_micros(e.amount):.2f} for {e.instruction_id} "
                    f"({e.state}) but the "
                    f"chain has it {payment.status}",
                )
            )
    return out


# --------------------------------------------------------------------------------------------
# no_error_logs


@dataclass(frozen=True)
class LogRecord:
    service: str
    level: str
    event: str
    line: str
    at_ms: int | None = None


@dataclass(frozen=True)
class Allowance:
    """An error line tolerated as a consequence of a deliberate fault: this service, this
    event, within this window (wall-clock ms)."""

    service: str
    event: str
    from_ms: int
    until_ms: int

    def covers(self, record: LogRecord) -> bool:
        at = record.at_ms
        return (
            record.service == self.service
            and record.event == self.event
            and at is not None
            and self.from_ms <= at <= self.until_ms
        )


_LEVEL_WORD = re.compile(r"\b(CRITICAL|ERROR|WARNING)\b")


def parse_log_line(service: str, line: str) -> LogRecord | None:
    """A JSON log line (structlog), or a plain one (stdlib logging, a traceback)."""
    text = line.strip()
    if not text:
        return None
    if text.startswith("{"):
        try:
            data = json.loads(text)
        except ValueError:
            data = None
        if isinstance(data, dict):
            return LogRecord(
                service,
                str(data.get("level", "info")).lower(),
                str(data.get("event", "")),
                text,
                _iso_ms(data.get("timestamp")),
            )
    if text.startswith("Traceback (most recent call last)"):
        return LogRecord(service, "error", "traceback", text)
    found = _LEVEL_WORD.search(text[:80])
    if found:
        return LogRecord(service, found.group(1).lower(), f"log: {text[:60]}", text)
    return None


def _iso_ms(value: object) -> int | None:
    if not isinstance(value, str):
        return None
    try:
        return int(dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() * 1000)
    except ValueError:
        return None


def check_no_error_logs(
    records: Iterable[LogRecord], *, allowances: Sequence[Allowance] = ()
) -> tuple[list[Violation], dict[str, int], dict[str, int]]:
    """Error lines are violations (one per service and event, with the count and the first
    line); returns them, the warnings counted by event and the errors allowed."""
    errors: dict[tuple[str, str], list[LogRecord]] = {}
    warnings: Counter[str] = Counter()
    allowed: Counter[str] = Counter()
    for r in records:
        if r.level in ("error", "critical", "exception"):
            if any(a.covers(r) for a in allowances):
                allowed[f"{r.service}: {r.event}"] += 1
                continue
            errors.setdefault((r.service, r.event), []).append(r)
        elif r.level in ("warning", "warn"):
            warnings[r.event] += 1
    out = []
    for (service, event), found in sorted(errors.items()):
        first = found[0]
        out.append(
            Violation(
                "no_error_logs",
                _height_of(first.line),
                (service, event),
                f"{len(found)} error line(s) {event!r} in {service}'s log; first: "
                f"{first.line[:300]}",
            )
        )
    return out, dict(warnings.most_common()), dict(allowed)


def _height_of(line: str) -> int | None:
    found = re.search(r'"height": ?(\d+)', line)
    return int(found.group(1)) if found else None


def read_logs(log_dir: Path, offsets: Mapping[str, int]) -> list[LogRecord]:
    """Every line written to ``log_dir``'s ``*.log`` and ``*.out`` since ``offsets`` (bytes
    per file name) by a peer (the soak's own and ``botc up``'s logs are left out)."""
    records = []
    for path in sorted(log_dir.glob("*.log")) + sorted(log_dir.glob("*.out")):
        if path.stem in ("soak", "up", "tui"):
            continue
        with path.open("rb") as f:
            f.seek(offsets.get(path.name, 0))
            data = f.read().decode("utf-8", errors="replace")
        for line in data.splitlines():
            record = parse_log_line(path.stem, line)
            if record is not None:
                records.append(record)
    return records


def log_offsets(log_dir: Path) -> dict[str, int]:
    if not log_dir.is_dir():
        return {}
    return {p.name: p.stat().st_size for p in log_dir.iterdir() if p.suffix in (".log", ".out")}


# --------------------------------------------------------------------------------------------
# no_bad_trades


def check_no_bad_trades(
    trades: Sequence[TradeFact],
    *,
    cancelled: Set[str] = frozenset(),
    stale: Set[str] = frozenset(),
    defaults: Iterable[DefaultFact] = (),
    credit_limit: float = DEALER_CREDIT_LIMIT,
) -> list[Violation]:
    """No trade from a cancelled RFQ, an expired quote, a credit line over the margin or the
    dealer's limit, or with a counterparty that had defaulted before it."""
    out = []
    defaulted: dict[str, int] = {}
    after: dict[str, list[TradeFact]] = {}
    for d in defaults:
        if d.kind in ("margin_call", "credit_event"):
            defaulted[d.member] = min(defaulted.get(d.member, d.height), d.height)
    for t in sorted(trades, key=lambda t: (t.height, t.rfq_id)):
        ids = (t.rfq_id, t.client, t.dealer)

        def bad(detail: str, t: TradeFact = t, ids: tuple[str, ...] = ids) -> None:
            out.append(Violation("no_bad_trades", t.height, ids, detail))

        if t.rfq_id in cancelled:
            bad(f"{t.client} cancelled RFQ {t.rfq_id}, yet it traded with {t.dealer}")
        if t.rfq_id in stale:
            bad(f"an accept of an expired quote for RFQ {t.rfq_id} committed")
        if t.accept_ms > t.valid_until_ms:
            bad(
                f"accepted {(t.accept_ms - t.valid_until_ms) / 1000:.1f}s after the quote's "
                "validity"
            )
        if t.block_ms > t.valid_until_ms + ACCEPT_GRACE_MS:
            bad(f"committed {(t.block_ms - t.valid_until_ms) / 1000:.1f}s after the quote expired")
        if t.dealer_line > t.initial_margin + EPSILON:
            bad(
                f"credit line {t.dealer_line:.2f} exceeds the initial margin {t.initial_margin:.2f}"
            )
        for party in (t.client, t.dealer):
            at = defaulted.get(party)
            if at is not None and at < t.height:
                after.setdefault(party, []).append(t)
    for party, traded in sorted(after.items()):  # one violation per defaulted party
        first = traded[0]
        more = f" and {len(traded) - 1} more" if len(traded) > 1 else ""
        out.append(
            Violation(
                "no_bad_trades",
                first.height,
                (party, *(t.rfq_id for t in traded[:5])),
                f"{party} had defaulted at height {defaulted[party]}, yet traded {len(traded)} "
                f"time(s) after it: {first.rfq_id} ({first.client} with {first.dealer}) at "
                f"height {first.height}{more}",
            )
        )
    lines: dict[tuple[str, str], list[TradeFact]] = {}
    for t in trades:
        lines.setdefault((t.dealer, t.client), []).append(t)
    for (dealer, client), group in sorted(lines.items()):
        for t in sorted(group, key=lambda t: t.height):
            live = sum(
                g.dealer_line
                for g in group
                if g.height <= t.height and (g.ended_height is None or g.ended_height > t.height)
            )
            if live > credit_limit + EPSILON:
                out.append(
                    Violation(
                        "no_bad_trades",
                        t.height,
                        (t.rfq_id, client, dealer),
                        f"{dealer}'s live credit lines to {client} reach {live:.2f}, over its "
                        f"limit {credit_limit:.2f}",
                    )
                )
                break
    return out


# --------------------------------------------------------------------------------------------
# views_match_chain


@dataclass(frozen=True)
class ViewSnapshot:
    """What one authority's query service said at the end, between two status heights."""

    authority: str
    status_heights: tuple[int, int]
    open_contracts: int | None = None
    trades: int | None = None
    contracts: int | None = None
    contracts_height: int | None = None
    payments: int | None = None
    errors: tuple[str, ...] = ()


@dataclass(frozen=True)
class LoadView:
    """What the simulated clients say they did (their stats and their events file)."""

    committed_count: int
    committed: Mapping[str, str]
    """RFQ id -> accept transaction id, for each trade a client was told is final."""
    accepted: Set[str]
    clients: Set[str]


def check_views_match_chain(
    view: ViewSnapshot | None,
    counts: Mapping[int, Counts],
    trades: Sequence[TradeFact],
    load: LoadView | None,
) -> list[Violation]:
    out = []

    def wrong(height: int | None, ids: tuple[str, ...], detail: str) -> None:
        out.append(Violation("views_match_chain", height, ids, detail))

    if view is not None:
        who = (view.authority,)

        def mismatch(height: int, what: str, shown: int, on_chain: int) -> None:
            if shown != on_chain:
                wrong(
                    height,
                    who,
                    f"the {what} {shown} contracts, the chain holds {on_chain} at height {height}",
                )

        for error in view.errors:
            wrong(view.status_heights[1], who, f"{view.authority}'s query service: {error}")
        low, high = view.status_heights
        for name in ("trades", "payments"):
            shown = getattr(view, name)
            if shown is None or low not in counts or high not in counts:
                continue
            span = [getattr(counts[h], name) for h in range(low, high + 1) if h in counts]
            lo, hi = min(span), max(span)  # ended entries leave the state: not monotone
            if not lo <= shown <= hi:
                wrong(
                    high,
                    who,
                    f"the {name} query listed {shown} but the chain holds "
                    f"{lo if lo == hi else f'{lo}-{hi}'} at heights {low}-{high}",
                )
        at = view.contracts_height
        shown_contracts = view.contracts
        if shown_contracts is not None and at is not None and at in counts:
            mismatch(at, "contracts query listed", shown_contracts, counts[at].contracts)
        if view.open_contracts is not None and high in counts:
            mismatch(high, "status said open", view.open_contracts, counts[high].open_contracts)
    if load is not None:
        if load.committed_count != len(load.committed):
            wrong(
                None,
                ("clients",),
                f"botc load counted {load.committed_count} committed trades but logged "
                f"{len(load.committed)}",
            )
        by_rfq = {t.rfq_id: t for t in trades}
        for rfq_id, tx_id in sorted(load.committed.items()):
            trade = by_rfq.get(rfq_id)
            if trade is None:
                wrong(
                    None, (rfq_id,), f"a client was told RFQ {rfq_id} is final; no trade holds it"
                )
            elif tx_id and trade.tx_id != tx_id:
                wrong(
                    trade.height,
                    (rfq_id, tx_id, trade.tx_id),
                    f"RFQ {rfq_id} was told final with transaction {tx_id[:12]}, the chain "
                    f"holds {trade.tx_id[:12]}",
                )
        for t in trades:
            if t.client in load.clients and t.rfq_id not in load.accepted:
                wrong(t.height, (t.rfq_id, t.client), f"{t.client} never accepted RFQ {t.rfq_id}")
    return out


def read_events(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    events = []
    for line in path.read_text(errors="replace").splitlines():
        with contextlib.suppress(ValueError):
            event = json.loads(line)
            if isinstance(event, dict):
                events.append(event)
    return events


def load_view(events: Sequence[Mapping[str, Any]], stats: Mapping[str, Any]) -> LoadView:
    committed = {str(e["rfq"]): str(e.get("tx", "")) for e in events if e["event"] == "committed"}
    accepted = {str(e["rfq"]) for e in events if e["event"] in ("accepted", "stale_attempt")}
    clients = {str(e["client"]) for e in events if "client" in e}
    return LoadView(int(stats.get("committed", len(committed))), committed, accepted, clients)


# --------------------------------------------------------------------------------------------
# memory_bounded


@dataclass(frozen=True)
class MemoryBound:
    warmup_mb: float = 48.0
    per_day_mb: float = 16.0

    def limit(self, days: float) -> float:
        return self.warmup_mb + self.per_day_mb * days


@dataclass(frozen=True)
class RssSample:
    t_s: float
    pid: int
    rss_mb: float


def check_memory_bounded(
    samples: Mapping[str, Sequence[RssSample]],
    *,
    days: float,
    bound: MemoryBound,
    day_seconds: float,
) -> tuple[list[Violation], dict[str, dict[str, Any]]]:
    """Growth of each peer's RSS over its last process's life against the bound; also the
    start and end per peer, and its last process's RSS at the end of each simulated day
    (None before it served): a step on the first day and flat after is what a peer builds
    once; a slope is a leak."""
    out = []
    table: dict[str, dict[str, Any]] = {}
    limit = bound.limit(days)
    for peer, series in sorted(samples.items()):
        if not series:
            continue
        last_pid = series[-1].pid
        life = [s for s in series if s.pid == last_pid]
        start, end = life[0].rss_mb, life[-1].rss_mb
        by_day: list[float | None] = []
        for day in range(1, math.ceil(days) + 1):
            ended = [s.rss_mb for s in life if s.t_s <= day * day_seconds]
            by_day.append(round(ended[-1], 1) if ended else None)
        table[peer] = {
            "start": round(series[0].rss_mb, 1),
            "end": round(end, 1),
            "by_day": by_day,
        }
        if end - start > limit:
            out.append(
                Violation(
                    "memory_bounded",
                    None,
                    (peer, str(last_pid)),
                    f"{peer}'s RSS grew {end - start:.1f} MB ({start:.1f} -> {end:.1f}) over "
                    f"{days:g} simulated days; the bound is {limit:.0f} MB",
                )
            )
    return out, table


def rss_mb(pid: int) -> float | None:
    """A process's resident set size (``VmRSS``), None when it is gone."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    found = re.search(r"^VmRSS:\s+(\d+)\s+kB", text, re.MULTILINE)
    return int(found.group(1)) / 1024 if found else None


# --------------------------------------------------------------------------------------------
# The run


@dataclass(frozen=True)
class SoakConfig:
    days: int = 3
    day_seconds: float = 20.0
    clients: int = 3
    seed: int = 0
    rate: float = 2.0
    kill: bool = True
    kill_after_snapshots: int = 2
    failing_balance: float = 1_000.0
    late_s: float = 2.0
    cancel_share: float = 0.1
    stale_share: float = 0.03
    due_s: float = 10.0
    settle_s: float = 5.0
    memory: MemoryBound = MemoryBound()

    @property
    def run_s(self) -> float:
        return self.days * self.day_seconds


@dataclass
class Collected:
    """What the run gathered for the checks."""

    started_ms: int = 0
    ended_ms: int = 0
    start_height: int = 0
    progress: list[ProgressSample] = field(default_factory=list)
    regulator: list[RegulatorSample] = field(default_factory=list)
    rss: dict[str, list[RssSample]] = field(default_factory=dict)
    restart: RestartRecord | None = None
    view: ViewSnapshot | None = None
    interrupted: bool = False
    not_ready: list[str] = field(default_factory=list)


def check_bad_input(config: SoakConfig) -> str | None:
    """Why the configuration cannot run (one line), or None."""
    if config.days < 1:
        return "--days must be at least 1"
    if not (math.isfinite(config.day_seconds) and config.day_seconds > 0):
        return "--day-seconds must be a positive number of seconds"
    if config.clients < 1:
        return "--clients must be at least 1"
    if not (math.isfinite(config.rate) and config.rate > 0):
        return "--rate must be positive"
    return None


class Soak:
    """One soak of a network: ``run()`` returns the report (a JSON-ready dict).

    ``stop`` ends the run early (a signal): every process started is stopped and the report
    covers what ran, with ``interrupted``.
    """

    def __init__(
        self,
        net: NetDir,
        config: SoakConfig,
        *,
        stop: threading.Event | None = None,
        progress: Callable[[str], None] | None = None,
    ) -> None:
        self.net = net
        self.config = config
        self.genesis = net.genesis()
        self.stop = stop or threading.Event()
        self.say = progress or (lambda text: None)
        clients = [m.id for m in self.genesis.by_role(Role.CLIENT)]
        if config.clients > len(clients):
            raise SoakError(
                f"{net.path} has {len(clients)} clients, --clients asks {config.clients}"
            )
        self.plans = plan_population(
            clients[: config.clients],
            failing_balance=config.failing_balance,
            late_s=config.late_s,
        )
        self.collected = Collected()
        self.market: Any = None

    # -- starting ------------------------------------------------------------------------

    def _extra_args(self) -> dict[str, tuple[str, ...]]:
        from peers.marketplace import CLIENTS

        bank: list[str] = []
        for plan in self.plans:
            if plan.balance is not None:
                bank += ["--balance", f"{plan.member}={plan.balance}"]
            if plan.late_s is not None:
                bank += ["--late", f"{plan.member}={plan.late_s}"]
        c = self.config
        load = (
            "--seed",
            str(c.seed),
            "--cancel-share",
            str(c.cancel_share),
            "--stale-share",
            str(c.stale_share),
            "--events-file",
            str(self.events_path),
        )
        return {"bank": tuple(bank), CLIENTS: load}

    @property
    def events_path(self) -> Path:
        return self.net.path / "run" / "soak-events.jsonl"

    def _start(self) -> None:
        """``Marketplace.start``, but a signal ends the wait for readiness."""
        from bus.server import NatsServer
        from peers.marketplace import CLIENTS, Marketplace

        self.events_path.parent.mkdir(parents=True, exist_ok=True)
        self.events_path.unlink(missing_ok=True)
        market = Marketplace(
            self.net,
            clients=self.config.clients,
            rate=self.config.rate,
            duration=self.config.run_s,
            human=None,
            day_seconds=self.config.day_seconds,
            extra_args=self._extra_args(),
        )
        self.market = market
        (self.net.path / "run" / "load.json").unlink(missing_ok=True)
        market.server = NatsServer(
            self.net.data_dir("nats"), port=0, auth=self.net.auth_conf(), tls=self.net.tls()
        ).start()
        self.net.write_run_file([market.server.url])
        market.start_callouts([market.server.url])
        names = [s.name for s in market.supervisor.services]
        peers = [n for n in names if n != CLIENTS]
        market.supervisor.start(peers)
        self._wait_ready(peers)
        if not self.stop.is_set():
            market.supervisor.start([CLIENTS])
            self._wait_ready([CLIENTS])

    def _wait_ready(self, names: Sequence[str], timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        while not self.stop.is_set():
            missing = self.market.supervisor.wait_ready(0.5, names)
            if not missing:
                return
            if time.monotonic() > deadline:
                self.collected.not_ready += [s.name for s in missing]
                self.say(f"not ready after {timeout:.0f}s: {', '.join(s.name for s in missing)}")
                return

    # -- running -------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        started = time.monotonic()
        self.offsets = log_offsets(self.net.path / "logs")
        try:
            self.say(f"starting the marketplace of {self.net.path} ...")
            self._start()
            if not self.stop.is_set():
                self.say(f"marketplace ready in {time.monotonic() - started:.1f}s")
                asyncio.run(self._watch())
        finally:
            self.collected.interrupted = self.stop.is_set()
            self.say("stopping ...")
            if self.market is not None:
                self.market.stop()
        self.say("checking the chain, the books and the logs ...")
        return self.report(time.monotonic() - started)

    async def _watch(self) -> None:
        from peers.ledger_client import LedgerClient
        from peers.runtime import open_bus

        c = self.config
        col = self.collected
        bus = await open_bus(self.net, self.genesis.regulator.id)
        eligible = [m.id for m in self.genesis.members if m.role in AUTHORITY_ELIGIBLE]
        ledger = LedgerClient(bus, self.genesis, authorities=eligible)  # observers too
        t0 = time.monotonic()
        col.started_ms = _now_ms()
        authorities = sorted(self.genesis.authorities.initial)
        victim = random.Random(c.seed).choice(authorities) if c.kill else None
        kill_height = self.genesis.params.snapshot_every * c.kill_after_snapshots + (
            self.genesis.params.snapshot_every // 2
        )
        first = True
        last_day = 0
        try:
            while not self.stop.is_set():
                t = time.monotonic() - t0
                polled = await self._sample(ledger, t)
                heights, told = polled.heights, polled.top
                top = told or 0
                if first:
                    col.start_height = top
                    first = False
                day = min(int(t // c.day_seconds) + 1, c.days)
                if day != last_day:
                    last_day = day
                    self.say(
                        f"day {day}/{c.days}: height {top}"
                        if told is not None
                        else f"day {day}/{c.days}: no authority told its height within the poll"
                    )
                due = top >= kill_height or t >= c.run_s / 2
                if victim is not None and col.restart is None and due:
                    self._kill(victim, top)
                if col.restart is not None:
                    self._follow_restart(heights, top)
                if t >= c.run_s and self._clients_done():
                    break
                if t >= c.run_s + 30:  # the clients should have stopped by now
                    break
                await asyncio.sleep(max(1.0 - (time.monotonic() - t0 - t), 0.05))
            if not self.stop.is_set():
                await self._settle(ledger, t0)
                col.view = await self._views(ledger, [a for a in authorities if a != victim])
        finally:
            col.ended_ms = _now_ms()
            await bus.close()

    async def _sample(self, ledger: Any, t: float) -> ProgressSample:
        """One poll, ``t`` seconds into the run: every node's height, the regulator's
        assessment's and each peer's RSS; the nodes' sample."""
        heights, in_force = await self._heights(ledger)
        polled = ProgressSample(round(t, 2), heights, in_force)
        self.collected.progress.append(polled)
        self.collected.regulator.append(
            RegulatorSample(round(t, 2), await self._regulator_height(ledger))
        )
        self._sample_rss(t)
        return polled

    async def _regulator_height(self, ledger: Any) -> int | None:
        """The height of the regulator's assessment (None: no answer within a second)."""
        from bus import subjects
        from bus.client import RequestError
        from peers.regulator import regulator_reply_channel
        from rfq.queries import RiskQuery, RiskReply

        replies = regulator_reply_channel(self.genesis.params.consensus_max_bytes)
        try:
            reply = await ledger.bus.request(
                subjects.query(self.genesis.regulator.id), RiskQuery(), replies, timeout=1.0
            )
        except RequestError:
            return None
        return reply.payload.height if isinstance(reply.payload, RiskReply) else None

    async def _heights(self, ledger: Any) -> tuple[dict[str, int | None], tuple[str, ...]]:
        """Every node's height (None: no answer) and the authority set in force, as the
        highest node reports it."""
        from rfq.queries import StatusQuery, StatusReply

        answers = await ledger.ask_all(StatusQuery(), timeout=1.0)
        replies = {a: r for a, r in answers.items() if isinstance(r, StatusReply)}
        heights = {a: (replies[a].height if a in replies else None) for a in answers}
        newest = max(replies.values(), key=lambda r: r.height, default=None)
        return heights, tuple(newest.authorities) if newest is not None else ()

    def _processes(self) -> dict[str, int]:
        pids = {
            s.name: s.process.pid
            for s in self.market.supervisor.services
            if s.process is not None and s.process.poll() is None
        }
        server = self.market.server
        if server is not None and server.process is not None:
            pids["nats-server"] = server.process.pid
        return pids

    def _sample_rss(self, t: float) -> None:
        """Each peer's RSS once it serves: a restarted one's life is measured from the state
        it loaded, not from the empty process that was loading it."""
        loading = {s.name for s in self.market.supervisor.services if not s.ready.is_set()}
        for name, pid in self._processes().items():
            if name == "clients" or name in loading:
                continue  # the simulated clients are the test, not the market
            mb = rss_mb(pid)
            if mb is not None:
                self.collected.rss.setdefault(name, []).append(RssSample(round(t, 2), pid, mb))

    def _kill(self, victim: str, height: int) -> None:
        name = f"authority-{victim}"
        snapshot = 0
        db = self.net.path / "data" / victim / "chain.db"
        with contextlib.suppress(sqlite3.Error, TypeError):
            conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
            try:
                query = "SELECT MAX(height) FROM snapshot_index"
                snapshot = int(conn.execute(query).fetchone()[0])
            finally:
                conn.close()
        service = next(s for s in self.market.supervisor.services if s.name == name)
        self._restarts_before = service.restarts
        self.market.supervisor.kill(name, signal.SIGKILL)
        self.collected.restart = RestartRecord(victim, height, _now_ms(), snapshot)
        self.say(f"SIGKILL {name} at height {height} (its snapshot at {snapshot})")

    def _follow_restart(self, heights: Mapping[str, int | None], top: int) -> None:
        record = self.collected.restart
        assert record is not None
        service = next(
            s for s in self.market.supervisor.services if s.name == f"authority-{record.authority}"
        )
        now = _now_ms()
        back = service.restarts > self._restarts_before and service.ready.is_set()
        if record.ready_ms is None and back:
            record.ready_ms = now
            self.say(f"{service.name} is back after {(now - record.killed_ms) / 1000:.1f}s")
        mine = heights.get(record.authority)
        if mine is not None:
            record.tip = mine
            if record.ready_ms is not None and record.caught_up_ms is None and mine >= top - 2:
                record.caught_up_ms = now

    def _clients_done(self) -> bool:
        from peers.marketplace import CLIENTS

        service = next(s for s in self.market.supervisor.services if s.name == CLIENTS)
        return service.process is None or service.process.poll() is not None

    async def _settle(self, ledger: Any, t0: float) -> None:
        """Let the last trades and payments become final (sampling on)."""
        until = time.monotonic() + self.config.settle_s
        while time.monotonic() < until and not self.stop.is_set():
            t = time.monotonic() - t0
            await self._sample(ledger, t)
            await asyncio.sleep(1.0)

    async def _views(self, ledger: Any, authorities: Sequence[str]) -> ViewSnapshot | None:
        """One authority's counts (trades, contracts, open contracts, payments) as the
        regulator sees them, between two status heights."""

        from bus import subjects
        from bus.client import RequestError
        from peers.ledger_client import PAGE_ROWS, LedgerUnavailable, PagedQuery, read_pages
        from rfq.queries import (
            ContractsQuery,
            ContractsReply,
            PaymentsQuery,
            PaymentsReply,
            Query,
            StatusQuery,
            StatusReply,
            TradesQuery,
            TradesReply,
        )

        for authority in authorities:
            errors: list[str] = []

            async def ask(query: Query, authority: str = authority) -> Any:
                reply = await ledger.bus.request(
                    subjects.query(authority), query, ledger.replies, timeout=10.0
                )
                return reply.payload

            uneven: list[str] = []

            async def ask_all(
                query: PagedQuery, kind: type[Any], uneven: list[str] = uneven
            ) -> Any:
                """Every page from this one authority, as one reply; a last page whose
                ``total`` disagrees with the rows read is noted in ``uneven``."""
                reply = await read_pages(ask, query, kind, max_rows=10**9)
                rows = len(getattr(reply, PAGE_ROWS[kind]))
                if reply.total != rows:
                    uneven.append(f"{type(query).__name__}: total {reply.total}, {rows} rows")
                return reply

            try:
                first = await ask(StatusQuery())
            except RequestError:
                continue
            if not isinstance(first, StatusReply):
                continue
            results: dict[str, Any] = {}
            paged: tuple[tuple[str, PagedQuery, type[Any]], ...] = (
                ("trades", TradesQuery(), TradesReply),
                ("contracts", ContractsQuery(), ContractsReply),
                ("payments", PaymentsQuery(), PaymentsReply),
            )
            for name, query, kind in paged:
                try:
                    results[name] = await ask_all(query, kind)
                except (RequestError, LedgerUnavailable) as exc:
                    errors.append(f"{type(query).__name__} failed: {exc}")
            try:
                last = await ask(StatusQuery())
            except RequestError as exc:
                errors.append(f"StatusQuery failed: {exc}")
                last = first
            last_height = last.height if isinstance(last, StatusReply) else None
            errors.extend(uneven_pages(uneven, first.height, last_height))
            trades = results.get("trades")
            contracts = results.get("contracts")
            payments = results.get("payments")
            return ViewSnapshot(
                authority=authority,
                status_heights=(first.height, last.height),
                open_contracts=last.open_contracts if isinstance(last, StatusReply) else None,
                trades=len(trades.trades) if isinstance(trades, TradesReply) else None,
                contracts=len(contracts.contracts)
                if isinstance(contracts, ContractsReply)
                else None,
                contracts_height=contracts.height
                if isinstance(contracts, ContractsReply)
                else None,
                payments=len(payments.payments) if isinstance(payments, PaymentsReply) else None,
                errors=tuple(errors),
            )
        return ViewSnapshot(
            authority="-", status_heights=(0, 0), errors=("no authority answered a status query",)
        )

    # -- the report ----------------------------------------------------------------------

    def report(self, seconds: float) -> dict[str, Any]:
        col = self.collected
        genesis = self.genesis
        violations: list[Violation] = []
        counted = 0
        checks: dict[str, str] = {}

        def record(name: str, found: Sequence[Violation], skipped: str | None = None) -> None:
            nonlocal counted
            counted += len(found)
            violations.extend(listed(name, found))
            checks[name] = f"skipped: {skipped}" if skipped else ("violated" if found else "ok")

        # the chain databases
        eligible = [m.id for m in genesis.members if m.role in AUTHORITY_ELIGIBLE]
        stores = {}
        for member in eligible:
            path = self.net.path / "data" / member / "chain.db"
            if path.exists():
                stores[member] = SqliteChainStore(path)
        try:
            verdicts = {m: verify_chain(genesis, s) for m, s in stores.items()}
            hashes = {m: block_hashes(s) for m, s in stores.items()}
            tips = {m: s.height() for m, s in stores.items()}
            reference = max(stores, key=lambda m: tips[m]) if stores else None
            view = col.view
            # Every height the queries spanned: with pruning, counts also go down.
            count_at = (
                set(range(view.status_heights[0], view.status_heights[1] + 1)) if view else set()
            )
            if view and view.contracts_height is not None:
                count_at.add(view.contracts_height)
            facts = (
                read_chain(genesis, stores[reference], count_at=count_at)
                if reference
                else ChainFacts()
            )
        finally:
            for store in stores.values():
                store.close()
        never_ran = "the market never became ready" if not col.started_ms else None
        record(
            "chain_verifies",
            check_chain_verifies(
                verdicts, hashes, restart=col.restart, blocks=facts.blocks, tips=tips
            )
            if stores
            else []
            if never_ran
            else [Violation("chain_verifies", None, (), "no authority database")],
            None if stores else never_ran,
        )

        # defaults
        bank = read_bank(self.net.path / "data" / "BANK" / "bank.db")
        failing = designed_to_fail(self.plans) | underfunded_clients(genesis, bank)
        run_defaults = [d for d in facts.defaults if d.height > col.start_height]
        reports = explain_defaults(
            run_defaults,
            failing=failing,
            balance_at=bank.balance_at if bank else (lambda member, at: None),
            block_ms=facts.block_ms,
        )
        record("no_solvent_default", check_no_solvent_default(reports))

        # progress
        bound = progress_bound_s(genesis.params)
        stalls, longest = check_chain_progress(col.progress, bound_s=bound)
        record("chain_progress", stalls)
        behind, regulator_lag = check_regulator_current(col.progress, col.regulator, bound_s=bound)
        record("regulator_current", behind, None if col.regulator else never_ran)

        # the bank
        end_ms = col.ended_ms or _now_ms()
        record(
            "bank_conserves",
            check_bank_conserves(
                bank,
                facts.payments,
                block_ms=facts.block_ms,
                end_ms=end_ms,
                due_s=self.config.due_s,
            )
            if bank is not None or not never_ran
            else [],
            None if bank is not None else never_ran,
        )

        # the logs
        allowances = self._allowances()
        log_violations, warnings, allowed = check_no_error_logs(
            read_logs(self.net.path / "logs", self.offsets), allowances=allowances
        )
        record("no_error_logs", log_violations)

        # trades
        events = read_events(self.events_path)
        cancelled = {str(e["rfq"]) for e in events if e.get("event") == "cancelled"}
        stale = {str(e["rfq"]) for e in events if e.get("event") == "stale_attempt"}
        run_trades = [t for t in facts.trades if t.height > col.start_height]
        record(
            "no_bad_trades",
            check_no_bad_trades(
                run_trades, cancelled=cancelled, stale=stale, defaults=facts.defaults
            ),
        )

        # views
        stats = self._load_stats()
        record(
            "views_match_chain",
            check_views_match_chain(col.view, facts.counts, run_trades, load_view(events, stats)),
            None if col.view is not None else "the run was interrupted before the views were read",
        )

        # memory
        ran_s = (end_ms - col.started_ms) / 1000 if col.started_ms else 0.0
        days_run = max(min(ran_s / self.config.day_seconds, self.config.days), 0)
        memory, rss_table = check_memory_bounded(
            col.rss, days=days_run, bound=self.config.memory, day_seconds=self.config.day_seconds
        )
        record("memory_bounded", memory)

        finality_p50 = stats.get("finality_p50_ms")
        finality_p99 = stats.get("finality_p99_ms")
        if finality_p50 is None and run_trades:
            lat = [float(t.block_ms - t.accept_ms) for t in run_trades]
            finality_p50, finality_p99 = percentile(lat, 50), percentile(lat, 99)
        window = [b for b in facts.blocks.values() if col.started_ms <= b.timestamp_ms <= end_ms]
        span_s = max((end_ms - col.started_ms) / 1000, 1e-9) if col.started_ms else 0.0
        services = self.market.supervisor.services if self.market is not None else []
        restart = col.restart
        trades_by_client = Counter(t.client for t in run_trades)
        return {
            "ok": not violations,
            "interrupted": col.interrupted,
            "violations": [v.as_dict() for v in violations],
            "violation_count": counted,
            "checks": checks,
            "net": str(self.net.path),
            "seed": self.config.seed,
            "days": self.config.days,
            "days_run": round(days_run, 2),
            "day_seconds": self.config.day_seconds,
            "seconds": round(seconds, 1),
            "clients": [
                {
                    "member": p.member,
                    "conduct": p.conduct.value,
                    "balance": p.balance,
                    "late_s": p.late_s,
                }
                for p in self.plans
            ],
            "height": facts.tip,
            "start_height": col.start_height,
            "business_days_on_chain": len(facts.fixing_dates),
            "trades": len(run_trades),
            "trades_by_client": dict(sorted(trades_by_client.items())),
            "defaults": [r.as_dict() for r in reports],
            "designed_to_fail": sorted(failing),
            "margin_calls": punctuality(facts.payments.values(), col.start_height),
            "restarts": sum(s.restarts for s in services),
            "restarts_by_service": {s.name: s.restarts for s in services if s.restarts},
            "kill": None
            if restart is None
            else {
                "authority": restart.authority,
                "height": restart.killed_height,
                "snapshot_before": restart.snapshot_before,
                "back_after_s": None
                if restart.ready_ms is None
                else round((restart.ready_ms - restart.killed_ms) / 1000, 1),
                "caught_up_after_s": None
                if restart.caught_up_ms is None
                else round((restart.caught_up_ms - restart.killed_ms) / 1000, 1),
            },
            "tx_per_s": round(sum(b.tx_count for b in window) / span_s, 2) if span_s else None,
            "finality_p50_ms": finality_p50,
            "finality_p99_ms": finality_p99,
            "longest_stall_s": longest,
            "regulator_lag_s": regulator_lag,
            "regulator_height": next(
                (r.height for r in reversed(col.regulator) if r.height is not None), None
            ),
            "progress_bound_s": bound,
            "rss_mb": rss_table,
            "memory_bound_mb": self.config.memory.limit(days_run),
            "warnings": warnings,
            "errors_allowed": allowed,
            "load": stats,
            "bank": None
            if bank is None
            else {
                "balanced": bank.total_micros == bank.funded_micros,
                "executed": len(bank.journal),
                "confirmed": sum(e.state == JournalState.CONFIRMED for e in bank.journal),
            },
            "not_ready": col.not_ready,
        }

    def _allowances(self) -> list[Allowance]:
        """The deliberate SIGKILL's own consequences: none are allowed yet (each would be
        named here, for one service and event, within seconds of the kill)."""
        return []

    def _load_stats(self) -> dict[str, Any]:
        try:
            data: dict[str, Any] = json.loads((self.net.path / "run" / "load.json").read_text())
            return data
        except (OSError, ValueError):
            return {}


def _now_ms() -> int:
    return int(time.time() * 1000)


# --------------------------------------------------------------------------------------------
# Entry point for the command


def fresh_network(clients: int) -> tuple[NetDir, Path]:
    """A new network in a temporary directory (and that directory, to remove afterwards)."""
    root = Path(tempfile.mkdtemp(prefix="botc-soak-"))
    net = create_network(root / "net", dealers=3, clients=max(clients, 5), params=SOAK_PARAMS)
    return net, root


def remove_network(root: Path) -> None:
    shutil.rmtree(root, ignore_errors=True)


def human_report(report: Mapping[str, Any]) -> str:
    """The report as a few readable lines."""
    lines = []
    verdict = "OK" if report["ok"] else f"{report['violation_count']} violation(s)"
    if report.get("interrupted"):
        verdict += " (interrupted)"
    lines.append(
        f"soak of {report['net']}: {verdict} after {report['seconds']}s, "
        f"{report['days_run']}/{report['days']} simulated days"
    )
    lines.append(
        f"  height {report['height']}  trades {report['trades']}  tx/s {report['tx_per_s']}  "
        f"finality p50 {report['finality_p50_ms']} ms p99 {report['finality_p99_ms']} ms  "
        f"longest stall {report['longest_stall_s']}s (bound {report['progress_bound_s']:.0f}s)  "
        f"regulator lag {report['regulator_lag_s']}s"
    )
    kill = report.get("kill")
    if kill:
        lines.append(
            f"  killed {kill['authority']} at height {kill['height']} "
            f"(snapshot at {kill['snapshot_before']}); back after {kill['back_after_s']}s, "
            f"caught up after {kill['caught_up_after_s']}s; restarts {report['restarts']}"
        )
    clients = ", ".join(f"{c['member']} {c['conduct']}" for c in report["clients"])
    lines.append(f"  clients: {clients}")
    calls = report.get("margin_calls") or {}
    if calls:
        text = ", ".join(
            f"{payer} {row['paid']:.0f}/{row['calls']:.0f} paid"
            + (
                f" (max {row['max_blocks_to_pay']:.0f} blocks)"
                if "max_blocks_to_pay" in row
                else ""
            )
            for payer, row in calls.items()
        )
        lines.append(f"  margin calls: {text}")
    for d in report["defaults"]:
        tag = "expected" if d["expected"] else "UNEXPECTED"
        lines.append(f"  default {tag}: {d['member']} at {d['height']} ({d['kind']}): {d['cause']}")
    for name, status in report["checks"].items():
        lines.append(f"  {name:20} {status}")
    for v in report["violations"]:
        ids = ", ".join(v["ids"])
        lines.append(f"  VIOLATION {v['invariant']} at height {v['height']} [{ids}]: {v['detail']}")
    if report["warnings"]:
        top = ", ".join(f"{k} {n}" for k, n in list(report["warnings"].items())[:8])
        lines.append(f"  warnings: {top}")
    rss = report["rss_mb"]
    if rss:
        grown = sorted(rss.items(), key=lambda kv: kv[1]["end"] - kv[1]["start"], reverse=True)
        top = ", ".join(f"{k} {v['start']:.0f}->{v['end']:.0f}" for k, v in grown[:5])
        lines.append(f"  RSS MB (start->end, most grown first): {top}")
    return "\n".join(lines)
