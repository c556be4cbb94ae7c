"""An authority's history: what has left the hot state, kept provable in its store.

The ledger prunes ended contracts, their trades and final payments at the start of a block,
by a rule that reads only the state after the previous block
(``rfq.ledger.components.retention``). So right after block ``h`` is final, and before block
``h + 1`` executes, ``record_history`` proves every entry block ``h + 1`` will prune against
the state after ``h`` (whose root is in block ``h``'s header, sealed on chain) and keeps the
witnesses in the store. ``history_proofs`` turns them back into ``AnswerProof``s: block
``h``'s header and seals, its root parts and governance, and the witnesses, which a light
client checks like any answer, without the staleness bound
(``rfq.ledger.light.LightClient.verify_history``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import msgspec

from peers.authority.store import ChainStore
from rfq.contracts.book import ContractRecord
from rfq.errors import DECODE_ERRORS
from rfq.ledger.block import BlockHeader
from rfq.ledger.components import retention
from rfq.ledger.light import AnswerProof, Witness, witness_of
from rfq.ledger.proof import (
    CONTRACTS,
    GOVERNANCE,
    ProofError,
    RootParts,
    StateProof,
    verify_state_proof,
)
from rfq.ledger.state import LedgerState, Payment, Pruned, Trade

_encoder = msgspec.msgpack.Encoder()
_parts_decoder = msgspec.msgpack.Decoder(RootParts)
_witness_decoder = msgspec.msgpack.Decoder(Witness)


def record_history(store: ChainStore, state: LedgerState, head: BlockHeader) -> int:
    """Prove and keep what the block after ``head`` will prune (``state`` is the final
    state at ``head``); the number of entries kept. Safe to call twice for one head."""
    entries = retention.prunable(state, head.height + 1, head.timestamp_ms)
    if not entries:
        return 0
    governance = state.prove(GOVERNANCE)
    assert governance.value is not None
    proofs = state.prove_many(entries)
    store.save_history(
        head.height,
        _encoder.encode(governance.parts),
        governance.value,
        [(p.component, p.key, _encoder.encode(witness_of(p))) for p in proofs],
    )
    return len(proofs)


def parties_of(component: str, value: bytes | None) -> tuple[str, ...]:
    """Who an entry's value concerns (the rows a member of scope OWN may see)."""
    if value is None:
        return ()
    try:
        if component == CONTRACTS:
            record = msgspec.msgpack.decode(value, type=ContractRecord)
            return (record.contract.client, record.contract.dealer)
        if component == "trades":
            trade = msgspec.msgpack.decode(value, type=Trade)
            return (trade.client, trade.dealer)
        if component == "payments":
            payment = msgspec.msgpack.decode(value, type=Payment)
            return (payment.payer, payment.payee)
    except DECODE_ERRORS:
        return ()
    return ()


def history_proofs(
    store: ChainStore,
    component: str,
    keys: Sequence[str],
    visible: Callable[[Witness], bool] = lambda w: True,
) -> tuple[AnswerProof, ...]:
    """One ``AnswerProof`` per height at which the asked entries were last in the state,
    with the witnesses ``visible`` lets through; keys with no history are left out."""
    by_height: dict[int, list[Witness]] = {}
    for height, _key, raw in store.history(component, keys):
        witness = _witness_decoder.decode(raw)
        if visible(witness):
            by_height.setdefault(height, []).append(witness)
    out = []
    for height, witnesses in sorted(by_height.items()):
        block = store.block(height)
        root = store.history_root(height)
        if block is None or root is None:
            continue
        parts, governance = root
        out.append(
            AnswerProof(
                block.header,
                block.seals,
                _parts_decoder.decode(parts),
                governance,
                tuple(witnesses),
            )
        )
    return tuple(out)


def history_fault(store: ChainStore, parent: BlockHeader, pruned: Sequence[Pruned]) -> str:
    """Why the store's history does not prove what the block after ``parent`` pruned (its
    last value, under ``parent``'s state root), or "" when it does (``botc chain verify``)."""
    root = store.history_root(parent.height) if pruned else None
    if pruned and root is None:
        return f"history holds no proofs under block {parent.height}, though the next pruned"
    for gone in pruned:
        assert root is not None
        rows = [r for r in store.history(gone.component, [gone.key]) if r[0] == parent.height]
        what = f"{gone.component}[{gone.key!r}]"
        if not rows:
            return f"history lacks {what}, pruned after block {parent.height}"
        witness = _witness_decoder.decode(rows[0][2])
        proof = StateProof(
            gone.component,
            gone.key,
            witness.value,
            witness.path,
            witness.book_header,
            _parts_decoder.decode(root[0]),
            witness.live,
        )
        try:
            verify_state_proof(proof, parent.state_root, component=gone.component, key=gone.key)
        except ProofError as exc:
            return f"history's proof of {what} does not verify: {exc.reason}"
        value = gone.value if isinstance(gone.value, bytes) else _encoder.encode(gone.value)
        if witness.value != value:
            return f"history's {what} is not the value pruned"
    return ""
