"""The third-party guarantor (paper section II.3): credit lines against pledged assets.

A client short of credit pledges an asset with the guarantor off chain (a warehouse receipt,
a deposit certificate); the guarantor grants a credit line on chain. The chain sees only the
asset's id, the SHA-256 (hex) of its off-chain identifier, and refuses a second live
guarantee on the same asset (no double pledge), a line above the asset's value and a line
above the guarantor's free capacity (its capital less its outstanding lines). Lines cover
initial margin of the client's trades (``allocated``); on the client's default the
guarantor pays the shortfall up to the line (``paid``, through a ``guarantee`` payment
instruction the settlement bank executes).

```python
async with GuarantorService(bus, genesis) as g1:
    receipt = await g1.grant("C1", line=1e6, asset="warehouse receipt WR-2026-118",
                             asset_value=2e6, guarantee_id="g1")
    g1.lines["g1"].available
```

The service polls ``GuaranteesQuery`` and logs each change of its lines (granted,
allocated, paid, revoked), so the guarantor sees its exposure move.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
from collections import Counter
from dataclasses import dataclass
from typing import Self

import structlog

from bus.client import Bus
from peers.errors import PeerError
from peers.ledger_client import LedgerClient, LedgerUnavailable, QueryDenied
from peers.service import Service, ServiceStatus, cancel_and_wait
from rfq.identity import Genesis, Role
from rfq.ledger.state import Guarantee, Receipt
from rfq.ledger.tx import GuaranteeGrant, GuaranteeRevoke
from rfq.money import from_micros, to_micros
from rfq.queries import GuaranteesQuery, GuaranteesReply

log = structlog.get_logger(__name__)


class GuarantorError(PeerError):
    """Bad input for a grant or revoke (nothing was submitted)."""


def asset_id(identifier: str) -> str:
    """The on-chain id of an off-chain asset: SHA-256 (hex) of its identifier's UTF-8 bytes."""
    if not identifier.strip():
        raise GuarantorError("the asset identifier is empty")
    return hashlib.sha256(identifier.encode("utf-8")).hexdigest()


def default_guarantee_id(guarantor: str, client: str, asset: str) -> str:
    """A deterministic id, so granting the same pledge twice is refused rather than doubled."""
    return f"{guarantor}-{client}-{asset_id(asset)[:12]}"


def make_grant(
    guarantor: str,
    client: str,
    *,
    line: float,
    asset: str,
    asset_value: float,
    guarantee_id: str | None = None,
) -> GuaranteeGrant:
    """The grant transaction; raises ``GuarantorError`` for bad input. The chain checks the
    rest (a client, no double pledge, the asset's value, the guarantor's capacity)."""
    client = client.strip()
    if not client:
        raise GuarantorError("the client is empty")
    for name, value in (("line", line), ("asset value", asset_value)):
        if not (math.isfinite(value) and value > 0):
            raise GuarantorError(f"the {name} must be a positive number, not {value:g}")
    gid = (guarantee_id or default_guarantee_id(guarantor, client, asset)).strip()
    if not gid:
        raise GuarantorError("the guarantee id is empty")
    return GuaranteeGrant(
        id=gid,
        client=client,
        line=to_micros(line),
        asset_id=asset_id(asset),
        asset_value=to_micros(asset_value),
    )


@dataclass(frozen=True)
class Exposure:
    """The guarantor's book: capacity (its capital), what its live lines promise, what
    trades have drawn (``allocated``), what it has paid on defaults."""

    capacity: float
    outstanding: float
    allocated: float
    paid: float
    available: float
    free_capacity: float
    live_lines: int


class GuarantorService(Service):
    """One guarantor's grants, revocations and the monitor of its lines."""

    def __init__(
        self,
        bus: Bus,
        genesis: Genesis,
        *,
        ledger: LedgerClient | None = None,
        poll_s: float = 2.0,
    ) -> None:
        if bus.identity.role != Role.GUARANTOR:
            raise PeerError(f"{bus.member_id} is a {bus.identity.role}, not a guarantor")
        self.bus = bus
        self.genesis = genesis
        self.me = bus.member_id
        self._owns_ledger = ledger is None
        self.ledger = ledger or LedgerClient(bus, genesis)
        self.poll_s = poll_s
        self.capacity = genesis.member(self.me).capital
        self.lines: dict[str, Guarantee] = {}
        self.stats: Counter[str] = Counter()
        self.log = log.bind(peer=self.me)
        self._task: asyncio.Task[None] | None = None

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self, *, monitor: bool = True) -> Self:
        """Connect to the ledger; with ``monitor``, poll the lines every ``poll_s``."""
        if self.status != ServiceStatus.NEW:
            return self
        await self.ledger.start()
        if monitor:
            self._task = asyncio.create_task(self._monitor(), name=f"{self.me}-lines")
        self.status = ServiceStatus.RUNNING
        return self

    async def _shutdown(self) -> None:
        if self._task is not None:
            await cancel_and_wait(self._task)
        if self._owns_ledger:
            await self.ledger.close()

    # -- grants ----------------------------------------------------------------------------

    async def grant(
        self,
        client: str,
        *,
        line: float,
        asset: str,
        asset_value: float,
        guarantee_id: str | None = None,
        timeout: float = 15.0,
    ) -> Receipt:
        """Grant ``client`` a line against the pledged ``asset`` (its off-chain identifier);
        returns the receipt: ``ok``, or refused with the chain's reason. Raises
        ``GuarantorError`` on bad input (nothing is submitted)."""
        grant = make_grant(
            self.me,
            client,
            line=line,
            asset=asset,
            asset_value=asset_value,
            guarantee_id=guarantee_id,
        )
        return await self.submit_grant(grant, timeout=timeout)

    async def submit_grant(self, grant: GuaranteeGrant, *, timeout: float = 15.0) -> Receipt:
        glog = self.log.bind(guarantee=grant.id, client=grant.client)
        receipt = await self.ledger.submit_and_wait(grant, timeout=timeout)
        if receipt.ok:
            self.stats["granted"] += 1
            glog.info(
                "guarantee_granted",
                line=from_micros(grant.line),
                asset_id=grant.asset_id,
                height=receipt.height,
            )
        else:
            self.stats["refused"] += 1
            glog.warning("guarantee_refused", reason=receipt.reason)
        return receipt

    async def revoke(self, guarantee_id: str, *, timeout: float = 15.0) -> Receipt:
        if not guarantee_id.strip():
            raise GuarantorError("the guarantee id is empty")
        receipt = await self.ledger.submit_and_wait(GuaranteeRevoke(guarantee_id), timeout=timeout)
        glog = self.log.bind(guarantee=guarantee_id)
        if receipt.ok:
            self.stats["revoked"] += 1
            glog.info("guarantee_revoked", height=receipt.height)
        else:
            glog.warning("revoke_refused", reason=receipt.reason)
        return receipt

    # -- the monitor -----------------------------------------------------------------------

    async def refresh(self) -> dict[str, Guarantee]:
        """This guarantor's lines from the chain; logs what changed since the last look."""
        reply = await self.ledger.query_all(GuaranteesQuery(), GuaranteesReply)
        fresh = {g.id: g for g in reply.guarantees if g.guarantor == self.me}
        for gid, g in sorted(fresh.items()):
            before = self.lines.get(gid)
            glog = self.log.bind(guarantee=gid, client=g.client)
            if before is None:
                glog.info(
                    "line_seen",
                    line=from_micros(g.line),
                    status=g.status,
                    available=from_micros(g.available),
                    allocated=from_micros(g.allocated),
                    paid=from_micros(g.paid),
                )
                continue
            if g.allocated != before.allocated:
                glog.info(
                    "line_allocated",
                    allocated=from_micros(g.allocated),
                    was=from_micros(before.allocated),
                    available=from_micros(g.available),
                )
            if g.paid != before.paid:
                self.stats["payouts"] += 1
                glog.warning(
                    "guarantee_paid",
                    paid=from_micros(g.paid),
                    was=from_micros(before.paid),
                    available=from_micros(g.available),
                )
            if g.status != before.status:
                glog.info("line_status", status=g.status, was=before.status)
        self.lines = fresh
        return fresh

    def exposure(self) -> Exposure:
        live = [g for g in self.lines.values() if g.status == "live"]
        outstanding = from_micros(sum(g.line - g.paid for g in live))
        return Exposure(
            capacity=self.capacity,
            outstanding=outstanding,
            allocated=from_micros(sum(g.allocated for g in live)),
            paid=from_micros(sum(g.paid for g in self.lines.values())),
            available=from_micros(sum(g.available for g in live)),
            free_capacity=self.capacity - outstanding,
            live_lines=len(live),
        )

    async def _monitor(self) -> None:
        while self.status != ServiceStatus.STOPPING:
            try:
                await self.refresh()
            except (LedgerUnavailable, QueryDenied) as exc:
                self.log.warning("lines_unavailable", error=str(exc))
            await asyncio.sleep(self.poll_s)
