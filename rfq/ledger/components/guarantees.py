"""Guarantees and credit as a component: guarantors grant lines against pledged off-chain
assets (one asset backs one live guarantee), lines cover clients' initial margin, and a
credit event runs the contracts' default waterfall, whose guarantee payments shrink the
lines."""

from __future__ import annotations

from typing import TYPE_CHECKING

import msgspec

from rfq.contracts.events import CreditEvent, CreditEventResolved, GuaranteeLine
from rfq.identity import Role
from rfq.ledger.components import governance, members
from rfq.ledger.components.base import Component, LedgerError, Refs, TxContext, tx_kind
from rfq.ledger.tx import CreditEventTx, GuaranteeGrant, GuaranteeRevoke
from rfq.money import Micros, from_micros, to_micros

if TYPE_CHECKING:
    from rfq.ledger.state import LedgerState


class Guarantee(msgspec.Struct, frozen=True):
    """A guarantor's line for a client. ``allocated`` covers initial margin of live trades;
    ``paid`` is what the guarantor has paid on the client's defaults (the line shrinks)."""

    id: str
    guarantor: str
    client: str
    line: Micros
    asset_id: str
    asset_value: Micros
    granted_height: int
    allocated: Micros = 0
    paid: Micros = 0
    status: str = "live"  # live | revoked

    @property
    def available(self) -> Micros:
        return max(self.line - self.allocated - self.paid, 0)


def money(micros: Micros) -> str:
    """An amount for a refusal's message, in currency units (as the messages always read)."""
    return f"{from_micros(micros)}"


def live_guarantees(state: LedgerState, client: str) -> list[Guarantee]:
    return [g for g in state.guarantees.values() if g.client == client and g.status == "live"]


def grant(state: LedgerState, tx: GuaranteeGrant, ctx: TxContext) -> Refs:
    guarantor = ctx.sender
    client = state.members.get(tx.client)
    if client is None or client.role != Role.CLIENT:
        raise LedgerError(f"{tx.client!r} is not a client")
    if tx.id in state.guarantees:
        raise LedgerError(f"guarantee {tx.id} exists")
    if not (len(tx.asset_id) == 64 and all(c in "0123456789abcdef" for c in tx.asset_id)):
        raise LedgerError("asset_id must be a SHA-256 hex digest")
    live = state.pledges.get(tx.asset_id)
    if live is not None:
        raise LedgerError(f"asset already pledged to guarantee {live}")
    if not (tx.line > 0 and tx.asset_value > 0):
        raise LedgerError("line and asset value must be positive")
    if tx.line > tx.asset_value:
        raise LedgerError(
            f"line {money(tx.line)} exceeds the pledged asset's value {money(tx.asset_value)}"
        )
    capacity = to_micros(state.members[guarantor].capital)
    outstanding = sum(
        g.line - g.paid
        for g in state.guarantees.values()
        if g.guarantor == guarantor and g.status == "live"
    )
    if outstanding + tx.line > capacity:
        free = capacity - outstanding
        raise LedgerError(
            f"line {money(tx.line)} exceeds {guarantor}'s free capacity {money(free)}"
        )
    state.guarantees[tx.id] = Guarantee(
        id=tx.id,
        guarantor=guarantor,
        client=tx.client,
        line=tx.line,
        asset_id=tx.asset_id,
        asset_value=tx.asset_value,
        granted_height=state.height,
    )
    state.pledges[tx.asset_id] = tx.id
    return (tx.id,)


def revoke(state: LedgerState, tx: GuaranteeRevoke, ctx: TxContext) -> Refs:
    guarantor = ctx.sender
    g = state.guarantees.get(tx.id)
    if g is None or g.guarantor != guarantor:
        raise LedgerError(f"{guarantor} granted no guarantee {tx.id!r}")
    if g.status != "live":
        raise LedgerError(f"guarantee {tx.id} is already {g.status}")
    if g.allocated > 0:
        raise LedgerError(f"guarantee {tx.id} covers margin of live trades ({money(g.allocated)})")
    state.guarantees[g.id] = msgspec.structs.replace(g, status="revoked")
    if state.pledges.get(g.asset_id) == g.id:
        del state.pledges[g.asset_id]
    return (g.id,)


def allocate(state: LedgerState, cover: list[tuple[Guarantee, Micros]]) -> None:
    """A trade's initial margin takes these amounts of these lines."""
    for g, take in cover:
        state.guarantees[g.id] = msgspec.structs.replace(g, allocated=g.allocated + take)


def free_cover(state: LedgerState, cover: tuple[tuple[str, Micros], ...]) -> None:
    """A contract ended: the lines that covered its initial margin free up."""
    for gid, amount in cover:
        g = state.guarantees.get(gid)
        if g is not None:
            state.guarantees[gid] = msgspec.structs.replace(
                g, allocated=max(g.allocated - amount, 0)
            )


def credit_event(state: LedgerState, party: str, event_id: str, reason: str) -> Refs:
    """The party defaults: it may no longer trade, its contracts run the default waterfall
    (its cash margin in custody, then its guarantors' lines) and it leaves the authorities."""
    members.record_default(state, party, reason)
    collateral = state.custody.get(party) or 0
    lines = tuple(
        GuaranteeLine(g.guarantor, g.line - g.paid)
        for g in sorted(live_guarantees(state, party), key=lambda g: g.id)
        if g.line - g.paid > 0
    )
    state.book_event(CreditEvent(id=event_id, party=party, collateral=collateral, guarantees=lines))
    if party in state.gov.authorities:
        governance.evict(state, party, f"credit event: {reason}", action="evict")
    return (party,)


def _credit_event_tx(state: LedgerState, tx: CreditEventTx, ctx: TxContext) -> Refs:
    if tx.party not in state.members:
        raise LedgerError(f"unknown member {tx.party!r}")
    return credit_event(state, tx.party, ctx.tx_hex, tx.reason)


def apply_waterfall(state: LedgerState, resolved: CreditEventResolved) -> None:
    """What each guarantor paid on the defaulter's contracts comes off its line."""
    for use in resolved.guarantees:
        for g in sorted(live_guarantees(state, resolved.party), key=lambda g: g.id):
            if g.guarantor == use.guarantor:
                paid = g.paid + use.amount  # exact: the sum of its payment instructions
                state.guarantees[g.id] = msgspec.structs.replace(g, paid=paid)
                break


COMPONENT = Component(
    "guarantees",
    maps={"guarantees": Guarantee, "pledges": str},
    kinds=(
        tx_kind(GuaranteeGrant, grant),
        tx_kind(GuaranteeRevoke, revoke),
        tx_kind(CreditEventTx, _credit_event_tx),
    ),
)
