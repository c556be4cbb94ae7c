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
from rfq.ledger.proof import CONTRACTS, GOVERNANCE, RootParts
from rfq.ledger.state import LedgerState, Payment, Trade

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
