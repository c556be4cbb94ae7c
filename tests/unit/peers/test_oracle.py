"""The oracle's simulation and replay files, without a server."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from peers.cli import main
from peers.errors import CliError
from peers.oracle import Simulator, next_business_day, read_replay

START = dt.date(2026, 11, 23)  # a Monday


def test_the_same_seed_gives_the_same_prices_and_another_seed_does_not():
    a, b, c = (Simulator(start=START, seed=s, ticks_per_day=5) for s in (1, 1, 2))
    ticks_a = [list(a.ticks()) for _ in range(10)]
    assert ticks_a == [list(b.ticks()) for _ in range(10)]
    assert ticks_a != [list(c.ticks()) for _ in range(10)]


def test_a_year_of_history_ends_the_business_day_before_the_start_at_the_start_price():
    sim = Simulator(start=START, seed=3)
    history = sim.history["RB2705"]  # the second listed month
    assert len(history) == 260
    assert history[-1][0] == dt.date(2026, 11, 20)  # Friday before
    assert all(d.weekday() < 5 for d, _ in history)
    assert history[-1][1] == pytest.approx(3150.0 * 1.01, abs=1.0)


def test_a_day_rolls_after_its_ticks_with_a_close_and_skips_the_weekend():
    sim = Simulator(start=dt.date(2026, 11, 27), seed=0, ticks_per_day=3, history_days=0)
    ticks = [list(sim.ticks()) for _ in range(3)]
    assert not any(p.close for p in ticks[0] + ticks[1])
    assert all(p.close and p.date == dt.date(2026, 11, 27) for p in ticks[2])
    assert sim.date == dt.date(2026, 11, 30)
    assert next_business_day(dt.date(2026, 11, 28)) == dt.date(2026, 11, 30)


def test_simulated_volatility_and_correlations_are_realistic():
    sim = Simulator(start=START, seed=11, history_days=1000)

    def returns(uid: str) -> np.ndarray:
        return np.diff(np.log([p for _, p in sim.history[uid]]))

    rb1, rb5, hc5, corn = (returns(u) for u in ("RB2701", "RB2705", "HC2705", "C2705"))
    annual = float(np.std(rb5) * np.sqrt(250))
    assert 0.17 < annual < 0.27  # catalog vol 0.22
    assert np.corrcoef(rb1, rb5)[0, 1] > 0.9  # months of one future
    assert 0.65 < np.corrcoef(rb5, hc5)[0, 1] < 0.9  # steel factor
    assert abs(np.corrcoef(rb5, corn)[0, 1]) < 0.15


def test_a_replay_file_is_read_by_date(tmp_path):
    path = tmp_path / "px.csv"
    path.write_text("date,underlying,price\n2026-01-05,RB2605,3100\n2026-01-02,RB2605,3090\n")
    days = read_replay(path)
    assert [d for d, _ in days] == [dt.date(2026, 1, 2), dt.date(2026, 1, 5)]


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("day,underlying,price\n", "row 1: the header"),
        ("date,underlying,price\n2026-13-01,RB2605,1\n", "row 2: date"),
        ("date,underlying,price\n2026-01-02,RB.2605,1\n", "row 2: underlying"),
        ("date,underlying,price\n2026-01-02,RB2605,cheap\n", "row 2: price"),
        ("date,underlying,price\n2026-01-02,RB2605\n", "row 2: expected 3 fields"),
        ("date,underlying,price\n", "no prices"),
    ],
)
def test_a_bad_replay_file_names_the_row_and_exits_2(tmp_path, capsys, content, problem):
    path = tmp_path / "px.csv"
    path.write_text(content)
    with pytest.raises(CliError, match=problem):
        read_replay(path)
    net = tmp_path / "net"
    assert main(["init", str(net)]) == 0
    capsys.readouterr()
    assert main(["oracle", "--net", str(net), "--replay", str(path)]) == 2
    assert problem in capsys.readouterr().err
