"""Money on the grid every part of the system agrees on: integer millionths of a currency unit.

The chain's amounts, the contracts' payment instructions and the bank's books all live on this
grid. An amount is rounded onto it once, where it is born (a margin call, a payment
instruction, an initial margin); comparisons of amounts on the grid are then exact, so a call
paid in full leaves nothing outstanding and a residue below one millionth cannot default a
payer. ``[2/5]`` of the roadmap moves the whole ledger to integer minor units; until then this
module is the one place the grid is defined.
"""

from __future__ import annotations

from typing import Final

MICROS: Final = 1_000_000
"""Millionths of a currency unit per unit."""


def to_micros(amount: float) -> int:
    """An amount as integer millionths (round half to even, as ``round`` does)."""
    return round(amount * MICROS)


def from_micros(micros: int) -> float:
    return micros / MICROS


def on_grid(amount: float) -> float:
    """``amount`` rounded onto the money grid (the same float every platform computes)."""
    return from_micros(to_micros(amount))


def is_payable(amount: float) -> bool:
    """Whether ``amount`` is at least one grid step: anything less is never an instruction."""
    return to_micros(amount) > 0
