"""Transactions waiting for a block: deduplicated by id, bounded, first come first served."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass


@dataclass(frozen=True)
class Pending:
    tx_id: bytes
    data: bytes
    sender: str
    received_ms: int
    expires_ms: int


class Mempool:
    def __init__(self, max_size: int) -> None:
        self.max_size = max_size
        self._txs: OrderedDict[bytes, Pending] = OrderedDict()
        self.refused_full = 0

    def __len__(self) -> int:
        return len(self._txs)

    def __contains__(self, tx_id: object) -> bool:
        return tx_id in self._txs

    def add(self, pending: Pending) -> bool:
        """False when already present or the pool is full (the caller tells the sender)."""
        if pending.tx_id in self._txs:
            return False
        if len(self._txs) >= self.max_size:
            self.refused_full += 1
            return False
        self._txs[pending.tx_id] = pending
        return True

    def take(self, limit: int) -> list[Pending]:
        """The oldest ``limit`` transactions (they stay until ``remove``)."""
        out: list[Pending] = []
        for pending in self._txs.values():
            if len(out) >= limit:
                break
            out.append(pending)
        return out

    def remove(self, tx_ids: object) -> None:
        for tx_id in tx_ids:  # type: ignore[attr-defined]
            self._txs.pop(tx_id, None)

    def drop_expired(self, now_ms: int) -> list[Pending]:
        """Remove transactions whose signed expiry has passed (a block would refuse them)."""
        expired = [p for p in self._txs.values() if p.expires_ms < now_ms]
        for pending in expired:
            del self._txs[pending.tx_id]
        return expired
