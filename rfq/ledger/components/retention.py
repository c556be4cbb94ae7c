"""Retention as a component: what has ended leaves the hot state, so that an authority's
memory, snapshot and per-block cost follow the live contracts, not every contract ever made.

**The rule** (run in ``begin_block``, so every node prunes the same entries at the same
height and their roots agree). A contract is *pruned at height h* when all of these hold in
the state after block ``h - 1``:

- it has ended (settled, closed out or defaulted: the book's status is terminal; a default's
  waterfall runs in the same event that ends it);
- every payment it issued (the book's instructions and margin calls, its initial margin and
  its initial-margin return) is final: ``confirmed`` or ``lapsed``. A ``pending`` or
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
``prunable(state, h, parent_ms)`` names, right after block ``h - 1`` is final, what block
``h`` will prune: an authority proves those entries against block ``h - 1``'s state root and
keeps the proofs in its store (``peers.authority.store`` history), so they stay readable and
provable (``HistoryQuery``, ``LightClient.verify_history``) after they leave the state.

**Cost.** Candidates wait in a heap by the height they may go (a cache: rebuilt from the
book's terminal records after a restore, not committed). A block pops what is due; one not
final is dropped until a confirmation of one of its payments re-schedules it, one whose
window moved is pushed back: a block costs what it prunes or re-schedules.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rfq.contracts.model import PaymentStatus
from rfq.ledger.components.base import Component

if TYPE_CHECKING:
    from rfq.ledger.block import BlockHeader
    from rfq.ledger.state import LedgerState

FINAL = frozenset({PaymentStatus.CONFIRMED, PaymentStatus.LAPSED})
"""Payment statuses nothing changes any more."""


@dataclass(frozen=True)
class Pruned:
    """An entry a block removed from the hot state: where it was and its last value
    (a ``Payment``, a ``Trade``, or for ``contracts`` the canonical record's bytes)."""

    component: str
    key: str
    value: Any


def _heap(state: LedgerState) -> list[tuple[int, str]]:
    heap = state.retiring
    if heap is None:
        retain = state.params.retain_blocks
        heap = state.retiring = [(ended + retain, cid) for cid, ended in state.book.ended()]
        heapq.heapify(heap)
    return heap


def schedule(state: LedgerState, contract_id: str, height: int) -> None:
    """Look at ``contract_id`` again at ``height`` (it ended, or one of its payments became
    final)."""
    heapq.heappush(_heap(state), (height, contract_id))


def _payment_ids(state: LedgerState, contract_id: str) -> list[str]:
    return [
        *state.book.payment_ids(contract_id),
        f"{contract_id}/initial_margin/1",
        f"{contract_id}/im_return/1",
    ]


def _verdict(state: LedgerState, contract_id: str, height: int, parent_ms: int) -> int | None:
    """0: prune at ``height``; a later height: look again then; None: not ready until one
    of its payments is confirmed (``schedule``), or already gone."""
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


def _due(heap: list[tuple[int, str]], height: int) -> list[str]:
    """The heap's contract ids due at ``height`` or before, without popping them."""
    out: list[str] = []
    stack = [0] if heap else []
    while stack:
        i = stack.pop()
        if i < len(heap) and heap[i][0] <= height:
            out.append(heap[i][1])
            stack += (2 * i + 1, 2 * i + 2)
    return sorted(set(out))


def prunable(state: LedgerState, height: int, parent_ms: int) -> list[str]:
    """The contracts block ``height`` will prune, read from the state after ``height - 1``
    (``parent_ms``: that block's time). Changes nothing."""
    return [
        cid for cid in _due(_heap(state), height) if _verdict(state, cid, height, parent_ms) == 0
    ]


def entries_of(state: LedgerState, contract_id: str) -> list[tuple[str, str]]:
    """The (component, key) entries pruning ``contract_id`` removes, as they are now."""
    out = [("contracts", contract_id)]
    if contract_id in state.trades:
        out.append(("trades", contract_id))
    out += [("payments", pid) for pid in _payment_ids(state, contract_id) if pid in state.payments]
    return out


def prune(state: LedgerState, parent: BlockHeader) -> None:
    """Prune what is due at this height (the rule above), in contract-id order."""
    heap = _heap(state)
    height = state.height
    ready: set[str] = set()
    later: dict[str, int] = {}
    while heap and heap[0][0] <= height:
        _, cid = heapq.heappop(heap)
        verdict = _verdict(state, cid, height, parent.timestamp_ms)
        if verdict == 0:
            ready.add(cid)
        elif verdict is not None:
            later[cid] = verdict
    for cid, due in later.items():
        if cid not in ready:
            heapq.heappush(heap, (due, cid))
    pruned = state.block_result().pruned
    for cid in sorted(ready):
        if cid not in state.book:
            continue
        pruned.append(Pruned("contracts", cid, state.book.record_bytes(cid)))
        for pid in _payment_ids(state, cid):
            payment = state.payments.get(pid)
            if payment is not None:
                pruned.append(Pruned("payments", pid, payment))
                del state.payments[pid]
        trade = state.trades.get(cid)
        if trade is not None:
            pruned.append(Pruned("trades", cid, trade))
            del state.trades[cid]
        state.book.prune(cid)


def _no_heap(state: LedgerState) -> None:
    state.retiring = None


COMPONENT = Component("retention", setup=_no_heap, loaded=_no_heap, begin_block=prune)
"""No maps of its own: it removes entries of the contracts' and payments' maps and book."""
