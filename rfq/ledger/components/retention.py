"""Retention as a component: what has ended leaves the hot state, so that an authority's
memory, snapshot and per-block cost follow the live contracts, not every contract ever made.

**The rule** (run in ``begin_block``, so every node prunes the same entries at the same
height and their roots agree). A contract is *pruned at height h* when all of these hold in
the state after block ``h - 1``:

- it has ended (settled, closed out or defaulted: the book's status is terminal; a default's
  waterfall runs in the same event that ends it);
- every payment it issued (the book's instructions, its initial margin and its
  initial-margin return) is final: ``confirmed`` or ``lapsed``. A ``pending`` or
  ``failed`` payment keeps the contract (the bank still acts on it; a failed payment is
  retried or stays visible);
- ``h >= last + retain_blocks`` (``NetworkParams.retain_blocks``), ``last`` the height it
  ended or its last payment was confirmed, whichever is later: clients, the bank and the
  regulator have that window to read it from the hot state;
- the parent block's time is past ``Trade.replay_until_ms`` (its quote's validity plus the
  accept grace): no accept of that quote can commit any more.

Pruning removes the book's record and the seen keys that name the contract
(``ContractBook.prune``), its trade (``trades``, keyed by the RFQ id, which is the contract
id) and each of its payments (``payments``). Close-out requests and guarantee allocations
already went when it ended; committed transaction ids leave by expiry (admission).

A live contract's payments do not wait for its end: a **confirmed payment** other than the
initial margin (which the contract's end reads to return it) is pruned at
``confirmed_height + retain_blocks``. A netting set's margin call belongs to no one contract
(``rfq.ledger.components.payments``): confirmed, it is pruned so with its ``margin_posted:``
seen key; lapsed (its calls ended or moved to the next one), at ``lapsed_height +
retain_blocks``. So a contract that lives through many fixings holds its initial margin, not
one payment per fixing.

**Replays stay harmless.** A replayed accept is a duplicate while its id is in
``committed`` and expired after; any accept of the same quote is refused once the quote's
validity and grace have passed, which pruning waits for. A confirmation or failure notice of
a pruned payment is refused (no such instruction), a close-out request or margin posting of a
pruned contract is refused (no such contract), so nothing is re-opened or paid twice. Left in
the hot state on purpose: credit-event keys named by a credit-event transaction (one per
default, not per contract) and the fixing history. What the hot state no longer holds is an
RFQ id's past use: a *new* quote a dealer signs for the same RFQ id after its contract was
pruned is a new trade (clients draw fresh RFQ ids).

**History.** Each pruned entry is listed in ``BlockResult.pruned`` with its last value.
Because the rule reads only the state after ``h - 1`` and the parent header,
``prunable(state, h, parent_ms)`` names, right after block ``h - 1`` is final, the entries
block ``h`` will prune: an authority proves those entries against block ``h - 1``'s state root and
keeps the proofs in its store (``peers.authority.store`` history), so they stay readable and
provable (``HistoryQuery``, ``LightClient.verify_history``) after they leave the state.

**Cost.** Candidates wait in a heap by the height they may go (a cache, not committed:
rebuilt after a restore from the book's terminal records and the confirmed payments, each at
the first height the rule could hold, so a restored node prunes exactly when the others do).
A block pops what is due; a contract not final is dropped until a confirmation of one of its
payments re-schedules it, one whose window moved is pushed back: a block costs what it
prunes or re-schedules. At most ``MAX_PRUNED_PER_BLOCK`` contracts and payments go in one
block, the first in (kind, id) order of those ready; the rest wait one block (every part of
the rule stays true once true, so every node defers the same ones).
"""

from __future__ import annotations

import bisect
import heapq
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rfq.contracts.model import PaymentKind, PaymentStatus
from rfq.ledger.components.base import Component

if TYPE_CHECKING:
    from rfq.ledger.block import BlockHeader
    from rfq.ledger.components.payments import Payment
    from rfq.ledger.state import LedgerState

MAX_PRUNED_PER_BLOCK = 128
"""Contracts and payments one block prunes at most (the rest the next blocks, in order): a
wave of settlements costs a few blocks a little each, rather than one block (and the proofs
an authority keeps of it) a lot."""

CONTRACT, PAYMENT = "contract", "payment"
"""What a heap entry is due for."""
CONTRACTS, PAYMENTS, TRADES = "contracts", "payments", "trades"
"""The components entries are pruned from (as proofs and ``Pruned`` name them)."""

FINAL = frozenset({PaymentStatus.CONFIRMED, PaymentStatus.LAPSED})
"""Payment statuses nothing changes any more."""


@dataclass(frozen=True)
class Pruned:
    """An entry a block removed from the hot state: where it was and its last value
    (a ``Payment``, a ``Trade``, or for ``contracts`` the canonical record's bytes)."""

    component: str
    key: str
    value: Any


def _heap(state: LedgerState) -> list[tuple[int, str, str]]:
    """(height it may go, ``CONTRACT`` or ``PAYMENT``, id): built from the state when first
    needed (after a restore too: every candidate's first due height follows from the state)."""
    heap = state.retiring
    if heap is None:
        retain = state.params.retain_blocks
        heap = [(ended + retain, CONTRACT, cid) for cid, ended in state.book.ended()]
        heap += [
            (p.final_height + retain, PAYMENT, p.id)
            for p in state.payments.values()
            if _payment_prunable(p) and p.final_height is not None
        ]
        heapq.heapify(heap)
        state.retiring = heap
    return heap


def schedule(state: LedgerState, contract_id: str, height: int) -> None:
    """Look at ``contract_id`` again at ``height`` (it ended, or one of its payments became
    final)."""
    heapq.heappush(_heap(state), (height, CONTRACT, contract_id))


def payment_final(state: LedgerState, payment: Payment) -> None:
    """``payment`` was confirmed (or lapsed) at this height: it may go ``retain_blocks``
    later (and its contract, if that has ended, may go then too)."""
    due = state.height + state.params.retain_blocks
    if _payment_prunable(payment):
        heapq.heappush(_heap(state), (due, PAYMENT, payment.id))
    view = state.book.find(payment.contract_id)
    if view is not None and view.status.terminal:
        schedule(state, payment.contract_id, due)


def _payment_prunable(payment: Payment) -> bool:
    """A payment that may leave on its own: confirmed and not the initial margin (which the
    contract's end reads, to return it), or a netting set's margin call that lapsed."""
    if payment.status == PaymentStatus.LAPSED:
        return payment.kind == PaymentKind.MARGIN_CALL
    return payment.status == PaymentStatus.CONFIRMED and payment.kind != PaymentKind.INITIAL_MARGIN


def _payment_ids(state: LedgerState, contract_id: str) -> list[str]:
    return [
        *state.book.payment_ids(contract_id),
        f"{contract_id}/initial_margin/1",
        f"{contract_id}/im_return/1",
    ]


def _contract_verdict(
    state: LedgerState, contract_id: str, height: int, parent_ms: int
) -> int | None:
    """0: prune at ``height``; a later height: look again then; None: not ready until one
    of its payments is confirmed (``payment_final``), or already gone."""
    view = state.book.find(contract_id)
    if view is None or not view.status.terminal or view.outcome is None:
        return None
    last = view.outcome.height
    for pid in _payment_ids(state, contract_id):
        payment = state.payments.get(pid)
        if payment is None:
            continue
        if payment.status not in FINAL:
            return None
        if payment.confirmed_height is not None:
            last = max(last, payment.confirmed_height)
    due = last + state.params.retain_blocks
    if due > height:
        return due
    trade = state.trades.get(contract_id)
    if trade is not None and parent_ms <= trade.replay_until_ms:
        return height + 1
    return 0


def _payment_verdict(state: LedgerState, payment_id: str, height: int) -> bool:
    payment = state.payments.get(payment_id)
    return (
        payment is not None
        and _payment_prunable(payment)
        and payment.final_height is not None
        and payment.final_height + state.params.retain_blocks <= height
    )


def _due(heap: list[tuple[int, str, str]], height: int) -> list[tuple[str, str]]:
    """The heap's (kind, id) due at ``height`` or before, without popping them."""
    out: set[tuple[str, str]] = set()
    stack = [0] if heap else []
    while stack:
        i = stack.pop()
        if i < len(heap) and heap[i][0] <= height:
            out.add((heap[i][1], heap[i][2]))
            stack += (2 * i + 1, 2 * i + 2)
    return sorted(out)


def _entries(
    state: LedgerState, contracts: Iterable[str], payments: Iterable[str]
) -> list[tuple[str, str]]:
    """The (component, key) entries that pruning ``contracts`` and ``payments`` removes, in
    the order they are removed (contracts by id, each with its payments and trade, then the
    other payments by id)."""
    out: list[tuple[str, str]] = []
    gone: set[str] = set()
    for cid in sorted(contracts):
        out.append((CONTRACTS, cid))
        for pid in _payment_ids(state, cid):
            if pid in state.payments:
                out.append((PAYMENTS, pid))
                gone.add(pid)
        if cid in state.trades:
            out.append((TRADES, cid))
    out += [(PAYMENTS, pid) for pid in sorted(payments) if pid not in gone]
    return out


def _exists(state: LedgerState, item: tuple[str, str]) -> bool:
    kind, key = item
    return key in state.book if kind == CONTRACT else key in state.payments


def _select(
    state: LedgerState, ready: list[tuple[str, str]], fresh: Iterable[tuple[str, str]]
) -> tuple[list[str], list[str], int]:
    """The first ``MAX_PRUNED_PER_BLOCK`` still there of the known-ready (sorted) and the
    freshly verified, in (kind, id) order: contracts and payments to prune now, and how many
    of ``ready`` were looked at (taken, or gone already)."""
    new = sorted(set(fresh))
    taken: list[tuple[str, str]] = []
    i = j = 0
    last: tuple[str, str] | None = None
    while len(taken) < MAX_PRUNED_PER_BLOCK and (i < len(ready) or j < len(new)):
        if j >= len(new) or (i < len(ready) and ready[i] <= new[j]):
            item = ready[i]
            i += 1
        else:
            item = new[j]
            j += 1
        if item == last or not _exists(state, item):
            continue
        last = item
        taken.append(item)
    contracts = [key for kind, key in taken if kind == CONTRACT]
    payments = [key for kind, key in taken if kind == PAYMENT]
    return contracts, payments, i


def _verified(
    state: LedgerState, height: int, parent_ms: int, due: Iterable[tuple[str, str]]
) -> tuple[list[tuple[str, str]], dict[str, int]]:
    """Of the due (kind, id): those the rule holds for at ``height``, and the contracts to
    look at again later (id -> height)."""
    ready, later = [], {}
    for kind, key in due:
        if kind == PAYMENT:
            if _payment_verdict(state, key, height):
                ready.append((kind, key))
            continue
        verdict = _contract_verdict(state, key, height, parent_ms)
        if verdict == 0:
            ready.append((kind, key))
        elif verdict is not None:
            later[key] = verdict
    return ready, later


def _ready(state: LedgerState) -> list[tuple[str, str]]:
    if state.retiring_ready is None:
        state.retiring_ready = []
    return state.retiring_ready


def prunable(state: LedgerState, height: int, parent_ms: int) -> list[tuple[str, str]]:
    """The (component, key) entries block ``height`` will prune, read from the state after
    ``height - 1`` (``parent_ms``: that block's time). Changes nothing."""
    fresh, _ = _verified(state, height, parent_ms, _due(_heap(state), height))
    contracts, payments, _ = _select(state, _ready(state), fresh)
    return _entries(state, contracts, payments)


def prune(state: LedgerState, parent: BlockHeader) -> None:
    """Prune what is due at this height (the rule above)."""
    heap, ready = _heap(state), _ready(state)
    height = state.height
    due: set[tuple[str, str]] = set()
    while heap and heap[0][0] <= height:
        _, kind, key = heapq.heappop(heap)
        due.add((kind, key))
    fresh, later = _verified(state, height, parent.timestamp_ms, sorted(due))
    for cid, at in later.items():
        heapq.heappush(heap, (at, CONTRACT, cid))
    contracts, payments, looked = _select(state, ready, fresh)
    del ready[:looked]
    taken = {(CONTRACT, c) for c in contracts} | {(PAYMENT, p) for p in payments}
    for item in fresh:  # ready from now on (the rule stays true): wait in order
        if item not in taken:
            k = bisect.bisect_left(ready, item)
            if k == len(ready) or ready[k] != item:
                ready.insert(k, item)
    pruned = state.block_result().pruned
    forget: list[str] = []
    for component, key in _entries(state, contracts, payments):
        if component == CONTRACTS:
            pruned.append(Pruned(CONTRACTS, key, state.book.record_bytes(key)))
        elif component == PAYMENTS:
            payment = state.payments[key]
            pruned.append(Pruned(PAYMENTS, key, payment))
            del state.payments[key]
            if payment.kind == PaymentKind.MARGIN_CALL:
                forget.append(f"margin_posted:{key}")
        else:
            pruned.append(Pruned(TRADES, key, state.trades[key]))
            del state.trades[key]
    for cid in sorted(contracts):
        state.book.prune(cid)
    state.book.forget_seen(forget)


def _no_heap(state: LedgerState) -> None:
    state.retiring = None
    state.retiring_ready = None


COMPONENT = Component("retention", setup=_no_heap, loaded=_no_heap, begin_block=prune)
"""No maps of its own: it removes entries of the contracts' and payments' maps and book."""
