"""Does a proposed block's timestamp agree with this validator's clock?

Pure: the shell passes its own clock reading (``now_ms``). Block timestamps date trades,
deadlines and fixings, so a validator refuses (prepares nothing for) a block dated further
from its clock than the genesis bound ``NetworkParams.max_clock_skew_ms``: a proposer whose
clock is far off cannot date the chain, and a validator whose own clock is far off refuses
the others' blocks (and says so) instead of signing them.
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_MAX_CLOCK_SKEW_MS = 5_000
"""The genesis default of ``NetworkParams.max_clock_skew_ms``."""


@dataclass(frozen=True)
class ClockSkew:
    """A block refused for its timestamp: ``skew_ms`` is the block's timestamp minus the
    validator's clock (positive: the block is dated in the validator's future)."""

    skew_ms: int
    bound_ms: int

    @property
    def ahead(self) -> bool:
        return self.skew_ms > 0

    def describe(self) -> str:
        where = "ahead of" if self.ahead else "behind"
        return (
            f"timestamp {abs(self.skew_ms) / 1000:.1f}s {where} this validator's clock "
            f"(bound {self.bound_ms / 1000:.1f}s)"
        )


def clock_skew(
    timestamp_ms: int, now_ms: int, *, bound_ms: int, fresh: bool = True
) -> ClockSkew | None:
    """``None`` if a block dated ``timestamp_ms`` is acceptable at ``now_ms``, else why not.

    A block dated more than ``bound_ms`` in the future is refused whatever its round. One
    dated more than ``bound_ms`` in the past is refused only when ``fresh`` (built by its
    round's proposer, just now): a locked block re-proposed in a later round keeps the
    timestamp it was first proposed with, and ages honestly while the rounds time out.
    """
    skew = timestamp_ms - now_ms
    if skew > bound_ms or (fresh and -skew > bound_ms):
        return ClockSkew(skew, bound_ms)
    return None
