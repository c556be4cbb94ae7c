"""regulator_current: the regulator's assessment follows the chain and it answers."""

from __future__ import annotations

from peers.soak import ProgressSample, RegulatorSample, check_regulator_current

UP = ("D1", "D2", "D3", "CCP")


def chain(tips: list[int]) -> list[ProgressSample]:
    return [ProgressSample(float(t), dict.fromkeys(UP, h)) for t, h in enumerate(tips)]


def regulator(heights: list[int | None]) -> list[RegulatorSample]:
    return [RegulatorSample(float(t), h) for t, h in enumerate(heights)]


def test_a_regulator_a_second_behind_the_tip_is_current():
    tips = list(range(1, 31))  # a block a second
    found, lag = check_regulator_current(chain(tips), regulator([0, 0, *tips[:-2]]), bound_s=10)
    assert found == [] and lag == 1.0


def test_a_regulator_stuck_while_the_chain_grows_is_reported_once_with_its_height():
    tips = list(range(1, 31))
    stuck = [*tips[:5], *[5] * 20, *tips[25:]]  # stays at 5 from t=5 while the tip passes it
    found, lag = check_regulator_current(chain(tips), regulator(stuck), bound_s=10)
    [v] = found
    assert (v.invariant, v.height, v.ids) == ("regulator_current", 5, ("REG",))
    assert "stood at height 5" in v.detail
    assert lag == 19.0  # at t=24, the chain passed 5 at t=5


def test_a_regulator_level_with_a_chain_that_stands_still_is_current():
    tips = [3] * 30
    found, lag = check_regulator_current(chain(tips), regulator([3] * 30), bound_s=10)
    assert found == [] and lag == 0.0


def test_a_regulator_that_stops_answering_is_reported():
    tips = list(range(1, 31))
    found, _ = check_regulator_current(
        chain(tips), regulator([*tips[:5], *[None] * 25]), bound_s=10
    )
    assert [v.detail for v in found] == [
        "the regulator did not answer for more than 10s (from 5.0s into the run)"
    ]
