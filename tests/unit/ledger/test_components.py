"""The ledger is made of components: whatever a component declares (a map, a single-value
part, a block hook) is in the state root, the proofs, the snapshot and the restore without
being named anywhere else, and the registry gives every transaction kind one handler and the
roles of ``TX_ROLES``."""

from __future__ import annotations

import hashlib
import typing

import msgspec
import pytest

from rfq.errors import ValidationError
from rfq.identity import Genesis
from rfq.ledger.block import BlockHeader
from rfq.ledger.components.base import Component, Part, tx_kind
from rfq.ledger.components.registry import (
    COMPONENTS,
    LAYOUT,
    V2_MAP_ORDER,
    LayoutError,
    layout_of,
)
from rfq.ledger.proof import verify_state_proof
from rfq.ledger.snapshot import disassemble
from rfq.ledger.state import LedgerState
from rfq.ledger.tx import TX_ROLES, Nominate, Transaction

from .harness import Chain, make_net

NET = make_net()


def _note_each_block(state: LedgerState, parent: BlockHeader) -> None:
    notes = state.notes  # type: ignore[attr-defined]
    notes[f"h{state.height}"] = f"after {parent.height}"
    state.ticks += 1  # type: ignore[attr-defined]


def _ticks_digest(ticks: int) -> bytes:
    return hashlib.sha256(b"ticks\x00" + msgspec.msgpack.encode(ticks)).digest()


def _no_ticks(genesis: Genesis) -> int:
    return 0


NOTES = Component(
    "notes",
    maps={"notes": str},
    parts=(
        Part(
            "ticks",
            "ticks",
            int,
            initial=_no_ticks,
            digest=_ticks_digest,
            replaced=True,
        ),
    ),
    begin_block=_note_each_block,
)
"""A test-only component: a map of notes and a block counter, both written every block (a
single-value part is committed and snapshotted like a map; proving one needs a rule of its own
in ``rfq.ledger.proof``, as governance and contracts have)."""


class NotedState(LedgerState):
    layout = layout_of((*COMPONENTS, NOTES))


def noted_chain() -> Chain:
    chain = Chain(NET)
    chain.state = NotedState(NET.genesis)
    for _ in range(3):
        chain.block()
    return chain


def test_a_registered_component_is_committed_by_the_state_root_after_the_existing_parts():
    chain = noted_chain()
    names = [name for name, _ in chain.state.root_parts().components]
    assert names == ["governance", "book", "ticks", *V2_MAP_ORDER, "margin_sets", "notes"]
    before = chain.state.state_root()
    chain.state.notes["h3"] = "changed"  # type: ignore[attr-defined]
    assert chain.state.state_root() != before


def test_a_registered_components_map_can_be_proven_against_the_root():
    chain = noted_chain()
    root = chain.state.state_root()
    note = verify_state_proof(chain.state.prove("notes", "h2"), root, component="notes", key="h2")
    assert note.decode(str) == "after 1"
    absent = verify_state_proof(chain.state.prove("notes", "h9"), root, component="notes")
    assert not absent.present


def test_a_registered_component_is_in_the_snapshot_and_comes_back_on_restore():
    chain = noted_chain()
    snapshot = chain.state.snapshot()
    frame, tables = disassemble(snapshot)
    assert set(frame.parts) == {"gov", "book", "ticks"}
    assert set(tables) == {*V2_MAP_ORDER, "margin_sets", "notes", "book.contracts", "book.live"}
    restored = NotedState.restore(NET.genesis, snapshot)
    assert restored.ticks == 3  # type: ignore[attr-defined]
    assert dict(restored.notes.items()) == dict(chain.state.notes.items())  # type: ignore[attr-defined]
    assert restored.state_root() == chain.state.state_root()
    assert restored.snapshot() == snapshot


def test_a_snapshot_without_a_registered_map_does_not_restore():
    plain = Chain(NET)
    plain.block()
    with pytest.raises(ValidationError, match="not a ledger snapshot"):
        NotedState.restore(NET.genesis, plain.state.snapshot())


def test_the_registry_gives_every_transaction_kind_one_handler_and_the_roles_of_tx_roles():
    assert set(LAYOUT.kinds) == set(TX_ROLES)
    assert {k.payload for k in LAYOUT.kinds.values()} == set(typing.get_args(Transaction))
    for kind, spec in LAYOUT.kinds.items():
        assert spec.roles == TX_ROLES[kind]
        assert spec.payload.__struct_config__.tag == kind


def test_the_state_root_keeps_the_v2_order_of_the_maps_and_puts_later_ones_after_it():
    assert list(LAYOUT.maps) == [*V2_MAP_ORDER, "margin_sets"]
    assert [p.name for p in LAYOUT.parts] == ["governance", "book"]


@pytest.mark.parametrize(
    "clash",
    [
        Component("twice", maps={"members": str}),
        Component("reserved", maps={"maps": str}),
        Component("proof", maps={"contracts": str}),
        Component("kind", kinds=(tx_kind(Nominate, lambda state, tx, ctx: ()),)),
    ],
)
def test_components_that_declare_the_same_name_or_kind_are_refused(clash):
    with pytest.raises(LayoutError):
        layout_of((*COMPONENTS, clash))


def test_every_map_of_the_registry_is_typed_on_the_facade_with_its_value_type():
    from rfq.ledger.digest import DigestMap

    hints = typing.get_type_hints(LedgerState)
    for name, value_type in LAYOUT.maps.items():
        assert hints.get(name) == DigestMap[value_type], name  # type: ignore[valid-type]
