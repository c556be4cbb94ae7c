"""chain_progress: the tip never stands still too long while a quorum answers."""

from __future__ import annotations

from peers.soak import ProgressSample, check_chain_progress, progress_bound_s
from rfq.identity import NetworkParams

UP = ("D1", "D2", "D3", "CCP")


def samples(heights: list[int | None], down: tuple[str, ...] = ()) -> list[ProgressSample]:
    return [
        ProgressSample(float(t), {a: (None if a in down or h is None else h) for a in UP})
        for t, h in enumerate(heights)
    ]


def test_a_chain_that_grows_every_second_is_clean():
    found, longest = check_chain_progress(samples(list(range(30))), bound_s=10)
    assert found == [] and longest == 0.0


def test_a_chain_stuck_longer_than_the_bound_is_reported_once_with_its_height():
    heights = [1, 2, 3] + [4] * 15 + [5, 6]
    found, longest = check_chain_progress(samples(heights), bound_s=10)
    [v] = found
    assert (v.invariant, v.height, v.ids) == ("chain_progress", 4, tuple(sorted(UP)))
    assert longest == 14.0


def test_a_stall_while_no_quorum_answers_is_not_counted():
    heights = [1, 2] + [2] * 15
    found, _ = check_chain_progress(samples(heights, down=("D1", "D2")), bound_s=10)
    assert found == []


def test_the_quorum_is_of_the_authority_set_in_force():
    # D1 and D3 were evicted and G1 joined: three in force, two of them (a quorum) answer.
    heights = {"D1": None, "D3": None, "D2": 4, "G1": 4, "CCP": None}
    stuck = [ProgressSample(float(t), heights, ("CCP", "D2", "G1")) for t in range(15)]
    [v] = check_chain_progress(stuck, bound_s=10)[0]
    assert v.ids == ("D2", "G1")


def test_the_bound_is_ten_seconds_or_an_idle_block_plus_four_round_timeouts():
    assert progress_bound_s(NetworkParams()) == 10.0
    slow = NetworkParams(idle_block_ms=4000, round_timeout_ms=3000)
    assert progress_bound_s(slow) == 16.0
