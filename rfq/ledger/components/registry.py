"""The one list of the ledger's components, and the layout derived from it: which maps and
parts the state root commits (in which order), what a snapshot holds, what can be proven, and
which handler applies each transaction kind.

The state root hashes each part's digest under its name (``rfq.ledger.proof``): first the
components' single-value parts (the governance struct, the contract book) in registry order,
then the maps. Each map is a bucketed Merkle tree hashed lazily for what changed
(``rfq.ledger.digest``); the contract book keeps its contracts in one too; so any entry can be
proven against a header's ``state_root`` (``LedgerState.prove``).
"""

from __future__ import annotations

import typing
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from rfq.errors import RfqError
from rfq.ledger.components import (
    admission,
    contracts,
    governance,
    guarantees,
    members,
    payments,
    retention,
)
from rfq.ledger.components.base import Component, Part, Prover, TxKind
from rfq.ledger.tx import TX_ROLES, Transaction

COMPONENTS: tuple[Component, ...] = (
    governance.COMPONENT,
    members.COMPONENT,
    admission.COMPONENT,
    retention.COMPONENT,
    contracts.COMPONENT,
    payments.COMPONENT,
    guarantees.COMPONENT,
)
"""Every component, in the order their hooks run (begin_block: liveness, forgetting expired
ids, pruning what has ended (from the state after the parent block alone), the contracts'
clock) and their parts are committed."""

V2_MAP_ORDER = (
    "members",
    "trades",
    "payments",
    "guarantees",
    "pledges",
    "custody",
    "close_requests",
    "ratings",
    "committed",
    "standing",
    "margin_in_use",
)
"""The order the v2 state root and snapshot have committed the maps in since before there
were components: frozen, so stored chains and snapshots keep verifying. Maps not named here
follow it, in registry order."""

RESERVED = ("height", "timestamp_ms", "maps")
"""Snapshot fields of the state itself: no part may take them."""


class LayoutError(RfqError):
    """Components whose declarations clash (a name twice, a kind twice, a reserved name)."""


@dataclass(frozen=True)
class Layout:
    """What ``LedgerState`` derives from a list of components."""

    components: tuple[Component, ...]
    maps: dict[str, Any]
    """Map name -> value type, in the state root's order."""
    parts: tuple[Part, ...]
    kinds: dict[str, TxKind[Any]]
    proofs: dict[str, tuple[Part, Prover]]
    """Proof components answered by parts (``governance``, ``contracts``), besides the maps."""

    @property
    def provable(self) -> list[str]:
        return [*self.proofs, *self.maps]


def layout_of(components: Sequence[Component]) -> Layout:
    """The layout of ``components``; ``LayoutError`` when two declare the same name."""
    declared: dict[str, Any] = {}
    parts: list[Part] = []
    kinds: dict[str, TxKind[Any]] = {}
    proofs: dict[str, tuple[Part, Prover]] = {}
    names: set[str] = set(RESERVED)

    def claim(name: str, what: str) -> None:
        if name in names:
            raise LayoutError(f"{what} {name!r} is declared twice or is reserved")
        names.add(name)

    for component in components:
        for name, value_type in component.maps.items():
            claim(name, "map")
            declared[name] = value_type
        for part in component.parts:
            claim(part.name, "part")
            if part.attr != part.name:
                claim(part.attr, "part attribute")
            parts.append(part)
            for proof_name, prover in part.proofs.items():
                if proof_name != part.name:
                    claim(proof_name, "proof component")
                proofs[proof_name] = (part, prover)
        for kind in component.kinds:
            if kind.kind in kinds:
                raise LayoutError(f"transaction kind {kind.kind!r} has two handlers")
            kinds[kind.kind] = kind
    ordered = [n for n in V2_MAP_ORDER if n in declared]
    ordered += [n for n in declared if n not in V2_MAP_ORDER]
    return Layout(
        components=tuple(components),
        maps={n: declared[n] for n in ordered},
        parts=tuple(parts),
        kinds=kinds,
        proofs=proofs,
    )


LAYOUT = layout_of(COMPONENTS)

TX_KINDS: dict[str, TxKind[Any]] = LAYOUT.kinds
"""The transaction-kind registry: kind -> payload type, the roles that may submit it, and the
handler that applies it."""


def _check_transactions(layout: Layout) -> None:
    """Every transaction the decoder knows has a handler and roles, and nothing more."""
    payloads = {kind.payload for kind in layout.kinds.values()}
    decodable = set(typing.get_args(Transaction))
    if payloads != decodable:
        missing = sorted(t.__name__ for t in decodable - payloads)
        extra = sorted(t.__name__ for t in payloads - decodable)
        raise LayoutError(
            f"rfq.ledger.tx.Transaction and the handlers differ: no handler for {missing}, "
            f"not in Transaction: {extra}"
        )
    if set(layout.kinds) != set(TX_ROLES):
        unhandled = sorted(set(TX_ROLES) - set(layout.kinds))
        raise LayoutError(f"rfq.ledger.tx.TX_ROLES names kinds without a handler: {unhandled}")


_check_transactions(LAYOUT)
