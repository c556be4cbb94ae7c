"""Admission as a component: what a transaction must be before any rules run (signed by a
member of this network whose role may submit its kind, not a replay, not expired) and the
committed ids that make a replay a duplicate, each remembered until its expiry."""

from __future__ import annotations

import heapq
from collections.abc import Container
from typing import TYPE_CHECKING

from rfq.errors import DECODE_ERRORS
from rfq.ledger.block import BlockHeader
from rfq.ledger.components import members
from rfq.ledger.components.base import CheckedTx, Component, LedgerError
from rfq.ledger.tx import signed_decoder, tx_decoder
from rfq.signing import kind_of, signature_valid, tx_id

if TYPE_CHECKING:
    from rfq.ledger.state import LedgerState

MAX_TX_TTL_MS = 3_600_000
"""A transaction valid for longer is refused: committed ids are remembered until expiry."""


def check(state: LedgerState, tx: bytes, now_ms: int, verified: Container[bytes]) -> CheckedTx:
    """Everything about a transaction that needs no execution: raises ``LedgerError``."""
    try:
        signed = signed_decoder.decode(tx)
    except DECODE_ERRORS:
        raise LedgerError("malformed: not a signed message") from None
    checked_id = tx_id(tx)
    if signed.chain_id != state.genesis.chain_id:
        raise LedgerError(f"wrong network {signed.chain_id[:40]!r}")
    member = state.members.get(signed.sender)
    if member is None:
        raise LedgerError(f"unknown sender {signed.sender!r}")
    gone = members.offboarded(state, signed.sender)
    if gone is not None:
        raise LedgerError(
            f"sender {signed.sender} was offboarded at height {gone.height} ({gone.reason})"
        )
    spec = state.layout.kinds.get(signed.kind)
    if spec is None:
        raise LedgerError(f"{signed.kind!r} is not a transaction")
    if member.role not in spec.roles:
        raise LedgerError(f"a {member.role} may not submit {signed.kind!r}")
    if checked_id not in verified and not signature_valid(signed, state.directory):
        raise LedgerError("bad signature")
    if checked_id.hex() in state.committed:
        raise LedgerError("duplicate: already committed")
    if now_ms > signed.expires_ms:
        raise LedgerError("expired before it was committed")
    if signed.expires_ms - signed.timestamp_ms > MAX_TX_TTL_MS:
        raise LedgerError("valid for more than an hour")
    try:
        payload = tx_decoder.decode(signed.body)
    except DECODE_ERRORS as exc:
        raise LedgerError(f"malformed payload: {exc}") from None
    if kind_of(payload) != signed.kind:
        raise LedgerError("payload kind differs from the envelope")
    return CheckedTx(checked_id, signed, payload)


def remember(state: LedgerState, tx: CheckedTx) -> None:
    """A committed transaction: a replay before its expiry is a duplicate."""
    tx_hex = tx.tx_id.hex()
    state.committed[tx_hex] = tx.signed.expires_ms
    if state.expiries is not None:
        heapq.heappush(state.expiries, (tx.signed.expires_ms, tx_hex))


def prune(state: LedgerState, parent: BlockHeader) -> None:
    """Forget committed ids past their expiry (a replay would be refused as expired).

    A heap by expiry, built from the map when first needed, keeps this to what expires
    rather than a pass over every id of the last hour at every block.
    """
    heap = state.expiries
    if heap is None:
        heap = state.expiries = [(expires, key) for key, expires in state.committed.items()]
        heapq.heapify(heap)
    while heap and heap[0][0] < state.timestamp_ms:
        expires, key = heapq.heappop(heap)
        if state.committed.get(key) == expires:
            del state.committed[key]


def _no_heap(state: LedgerState) -> None:
    state.expiries = None


COMPONENT = Component(
    "admission", maps={"committed": int}, setup=_no_heap, loaded=_no_heap, begin_block=prune
)
"""``committed``: transaction id (hex) -> its expiry (ms)."""
