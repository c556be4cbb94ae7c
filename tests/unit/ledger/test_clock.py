"""The clock rule: a validator refuses a block dated too far from its own clock."""

from __future__ import annotations

import pytest

from peers.clock import ClockError, WallClock, offset_from
from rfq.errors import ValidationError
from rfq.identity import NetworkParams, check_params
from rfq.ledger.clock import DEFAULT_MAX_CLOCK_SKEW_MS, clock_skew

NOW = 1_800_000_000_000
BOUND = 5_000


def test_a_block_within_the_bound_either_way_is_accepted():
    for skew in (-BOUND, -3_000, 0, 3_000, BOUND):
        assert clock_skew(NOW + skew, NOW, bound_ms=BOUND) is None


def test_a_block_dated_too_far_ahead_is_refused_with_its_skew_and_the_bound():
    refused = clock_skew(NOW + 10_000, NOW, bound_ms=BOUND)
    assert refused is not None
    assert (refused.skew_ms, refused.bound_ms, refused.ahead) == (10_000, BOUND, True)
    assert refused.describe() == "timestamp 10.0s ahead of this validator's clock (bound 5.0s)"


def test_a_fresh_block_dated_too_far_behind_is_refused():
    refused = clock_skew(NOW - 10_000, NOW, bound_ms=BOUND)
    assert refused is not None and refused.skew_ms == -10_000 and not refused.ahead
    assert "10.0s behind" in refused.describe()


def test_a_re_proposed_locked_block_may_be_old_but_never_from_the_future():
    assert clock_skew(NOW - 60_000, NOW, bound_ms=BOUND, fresh=False) is None
    assert clock_skew(NOW + 10_000, NOW, bound_ms=BOUND, fresh=False) is not None


def test_a_validator_ten_seconds_ahead_refuses_honest_blocks_and_three_seconds_does_not():
    honest_block = NOW
    assert clock_skew(honest_block, NOW + 10_000, bound_ms=BOUND) is not None
    assert clock_skew(honest_block, NOW + 3_000, bound_ms=BOUND) is None


def test_the_genesis_bound_defaults_to_five_seconds_and_must_be_positive():
    assert NetworkParams().max_clock_skew_ms == DEFAULT_MAX_CLOCK_SKEW_MS == 5_000
    with pytest.raises(ValidationError, match="max_clock_skew_ms"):
        check_params(NetworkParams(max_clock_skew_ms=0), "genesis")


def test_the_clock_offset_comes_from_the_environment_as_integer_milliseconds():
    assert offset_from({}) == 0
    assert offset_from({"BOTC_CLOCK_OFFSET_MS": " -3000 "}) == -3000
    with pytest.raises(ClockError, match="BOTC_CLOCK_OFFSET_MS='3s': not an integer"):
        offset_from({"BOTC_CLOCK_OFFSET_MS": "3s"})
    assert WallClock(10_000).now_ms() - WallClock().now_ms() in range(9_990, 10_010)
