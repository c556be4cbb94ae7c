"""Money on the grid every part of the system agrees on: integer millionths of a currency unit.

The chain's amounts, the contracts' payment instructions and the bank's books all live on this
grid. An amount is rounded onto it once, where it is born (a margin call, a payment
instruction, an initial margin); comparisons of amounts on the grid are then exact, so a call
paid in full leaves nothing outstanding and a residue below one millionth cannot default a
payer.

Every amount of money the ledger state holds, a transaction carries or the bank books is a
``Micros``: a Python ``int`` of millionths, encoded by msgpack as an integer, so no float's
formatting or platform rounding can reach a state root. Float arithmetic (a contract's marks
and payoffs, a pricing model) may compute an amount; it enters the state only through
``to_micros``, the one rounding onto the grid: the float ``amount * 1e6`` rounded to the
nearest integer, ties to even (Python's ``round``, IEEE 754 roundTiesToEven, the same on
every platform). ``from_micros`` turns an amount back into currency units for display and
for the float computations that take money as an input.
"""

from __future__ import annotations

from typing import Final, TypeAlias

Micros: TypeAlias = int
"""An amount of money in integer millionths of a currency unit."""

MICROS: Final = 1_000_000
"""Millionths of a currency unit per unit."""


def to_micros(amount: float) -> Micros:
    """An amount as integer millionths: the one rounding onto the grid (half to even)."""
    return round(amount * MICROS)


def from_micros(micros: Micros) -> float:
    """An amount in currency units (display, float models): exact for any real balance."""
    return micros / MICROS
