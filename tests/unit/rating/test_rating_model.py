"""The client rating: formula 1 exactly, RT's bounds and monotonicity, the grade scale."""

from __future__ import annotations

import math

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rfq.errors import ValidationError
from rfq.rating import (
    SCALE,
    Grade,
    RatingTuple,
    RatingWeights,
    append_settled,
    combined_rating,
    grade_of,
    internal_rating,
    pd_of,
    score_of,
)

EPS = 1e-9
WEIGHTS = RatingWeights(alpha=0.4, beta=0.6)

scores = st.floats(min_value=0.0, max_value=100.0, allow_nan=False)
amounts = st.floats(min_value=0.0, max_value=1e9, allow_nan=False)
rates = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)


@st.composite
def trades(draw: st.DrawFn, *, default: bool | None = None) -> RatingTuple:
    is_default = draw(st.booleans()) if default is None else default
    return RatingTuple(
        rt_prev=draw(scores),
        size=draw(amounts),
        length_days=draw(st.integers(min_value=0, max_value=2000)),
        collateral=draw(amounts),
        margin=draw(st.booleans()),
        guarantee=draw(amounts),
        default=is_default,
        recovery_rate=draw(rates) if is_default else 0.0,
    )


histories = st.lists(trades(), min_size=1, max_size=30)


def clean(size: float = 3e6, days: int = 180, **kw: float | bool) -> RatingTuple:
    fields: dict[str, float | bool | int] = {
        "rt_prev": 65.0,
        "size": size,
        "length_days": days,
        "collateral": 0.0,
        "margin": False,
        "guarantee": 0.0,
        "default": False,
        "recovery_rate": 0.0,
    }
    fields.update(kw)
    return msgspec.convert(fields, RatingTuple)


def defaulted(rr: float, size: float = 3e6, days: int = 180) -> RatingTuple:
    return RatingTuple(65.0, size, days, 0.0, False, 0.0, True, rr)


# --- formula 1 ---------------------------------------------------------------------------------


def test_alice_with_no_settled_trade_is_rated_exactly_by_her_external_rating() -> None:
    assert combined_rating(72.5, (), WEIGHTS) == 72.5
    assert combined_rating(Grade.BBB, (), WEIGHTS) == score_of(Grade.BBB) == 65.0


@given(ext=scores, history=histories, alpha=rates)
def test_bob_with_settled_trades_is_alpha_external_plus_beta_internal(
    ext: float, history: list[RatingTuple], alpha: float
) -> None:
    weights = RatingWeights(alpha=alpha, beta=1.0 - alpha)
    expected = alpha * ext + (1.0 - alpha) * internal_rating(history)
    assert combined_rating(ext, history, weights) == pytest.approx(expected, abs=1e-12)


def test_carol_s_combined_rating_matches_a_hand_computation() -> None:
    # One clean 3 M / 180-day trade, no cover; prior 65 with weight 4.
    trade = clean()
    w = math.log1p(3.0) * math.sqrt(180 / 365)
    internal = 100 * (4 * 0.65 + w) / (4 + w)
    assert internal_rating([trade]) == pytest.approx(internal, abs=1e-12)
    assert combined_rating(65.0, [trade], WEIGHTS) == pytest.approx(
        0.4 * 65.0 + 0.6 * internal, abs=1e-12
    )


def test_dave_s_default_matches_a_hand_computation() -> None:
    # A 3 M / 180-day default with 40 % recovery: b = 4 * (0.25 + 0.75 * 0.6) * (1 + w).
    w = math.log1p(3.0) * math.sqrt(180 / 365)
    b = 4 * (0.25 + 0.75 * 0.6) * (1 + w)
    assert internal_rating([defaulted(0.4)]) == pytest.approx(100 * 2.6 / (4 + b), abs=1e-12)


@pytest.mark.parametrize(("alpha", "beta"), [(0.5, 0.6), (-0.1, 1.1), (1.2, -0.2), (math.nan, 1.0)])
def test_the_genesis_cannot_set_weights_that_do_not_sum_to_one(alpha: float, beta: float) -> None:
    with pytest.raises(ValidationError):
        RatingWeights(alpha=alpha, beta=beta)


def test_weights_decoded_from_a_genesis_are_validated_too() -> None:
    assert msgspec.json.decode(b'{"alpha": 0.3, "beta": 0.7}', type=RatingWeights).beta == 0.7
    with pytest.raises(ValidationError):
        msgspec.json.decode(b'{"alpha": 0.3, "beta": 0.3}', type=RatingWeights)


# --- RT properties -----------------------------------------------------------------------------


@given(history=histories)
def test_erin_s_internal_rating_is_always_between_0_and_100(history: list[RatingTuple]) -> None:
    assert 0.0 <= internal_rating(history) <= 100.0


@given(history=histories, bad=trades(default=True))
def test_appending_a_default_never_raises_frank_s_internal_rating(
    history: list[RatingTuple], bad: RatingTuple
) -> None:
    assert internal_rating([*history, bad]) <= internal_rating(history) + EPS


@given(history=histories, good=trades(default=False))
def test_appending_a_clean_settled_trade_never_lowers_grace_s_internal_rating(
    history: list[RatingTuple], good: RatingTuple
) -> None:
    assert internal_rating([*history, good]) >= internal_rating(history) - EPS


@settings(max_examples=200)
@given(
    ext=scores,
    history=st.lists(trades(), max_size=20),
    size=amounts,
    days=st.integers(0, 2000),
    rr=rates,
)
def test_a_default_never_raises_heidi_s_combined_rating_even_her_first_trade(
    ext: float, history: list[RatingTuple], size: float, days: int, rr: float
) -> None:
    # The ledger builds tuples with append_settled, so the first Rt_prev is the external rating.
    built: tuple[RatingTuple, ...] = ()
    for t in history:
        built = append_settled(
            built,
            external=ext,
            weights=WEIGHTS,
            size=t.size,
            length_days=t.length_days,
            collateral=t.collateral,
            margin=t.margin,
            guarantee=t.guarantee,
            default=t.default,
            recovery_rate=t.recovery_rate,
        )
    before = combined_rating(ext, built, WEIGHTS)
    after = combined_rating(
        ext,
        append_settled(
            built,
            external=ext,
            weights=WEIGHTS,
            size=size,
            length_days=days,
            default=True,
            recovery_rate=rr,
        ),
        WEIGHTS,
    )
    assert after <= before + EPS


@given(history=st.lists(trades(), max_size=20), position=st.data(), rr=st.tuples(rates, rates))
def test_a_higher_recovery_never_gives_ivan_a_worse_score_for_the_same_default(
    history: list[RatingTuple], position: st.DataObject, rr: tuple[float, float]
) -> None:
    low, high = sorted(rr)
    at = position.draw(st.integers(0, len(history)))
    base = defaulted(0.0, size=5e6, days=90)
    with_low = [*history[:at], msgspec.structs.replace(base, recovery_rate=low), *history[at:]]
    with_high = [*history[:at], msgspec.structs.replace(base, recovery_rate=high), *history[at:]]
    assert internal_rating(with_high) >= internal_rating(with_low) - EPS


def test_bigger_and_longer_clean_trades_count_more_for_judy() -> None:
    small, big = internal_rating([clean(size=1e6)]), internal_rating([clean(size=50e6)])
    short, long = internal_rating([clean(days=30)]), internal_rating([clean(days=365)])
    assert big > small
    assert long > short


def test_collateral_margin_and_a_guarantee_add_confidence_to_kim_s_clean_trade() -> None:
    bare = internal_rating([clean()])
    assert internal_rating([clean(collateral=3e6)]) > bare
    assert internal_rating([clean(margin=True)]) > bare
    assert internal_rating([clean(guarantee=1.5e6)]) > bare


def test_leo_s_default_weighs_less_as_he_builds_a_clean_record() -> None:
    after_default = internal_rating([defaulted(0.0)])
    history = [defaulted(0.0), *([clean()] * 20)]
    without_default = internal_rating([clean()] * 20)
    assert internal_rating(history) > after_default
    assert internal_rating(history) < without_default


def test_a_bbb_client_who_defaults_without_recovery_falls_to_ccc() -> None:
    assert grade_of(internal_rating([defaulted(0.0)])) == Grade.CCC


def test_the_internal_rating_of_an_empty_history_is_refused() -> None:
    with pytest.raises(ValidationError):
        internal_rating([])


@pytest.mark.parametrize(
    "field", [{"size": -1.0}, {"recovery_rate": 1.5}, {"rt_prev": 101.0}, {"length_days": -3}]
)
def test_a_malformed_tuple_is_refused_naming_its_field(field: dict[str, float]) -> None:
    bad = msgspec.structs.replace(clean(), **field)
    with pytest.raises(ValidationError) as info:
        internal_rating([clean(), bad])
    assert info.value.where == f"history[1].{next(iter(field))}"


# --- the scale ---------------------------------------------------------------------------------


def test_every_grade_round_trips_through_its_score() -> None:
    for band in SCALE:
        assert grade_of(score_of(band.grade)) == band.grade
        assert pd_of(score_of(band.grade)) == pytest.approx(band.pd, rel=1e-12)
        assert pd_of(band.grade) == band.pd


@pytest.mark.parametrize(
    ("score", "grade"),
    [(100, "AAA"), (90, "AAA"), (89.99, "AA"), (70, "A"), (60, "BBB"), (59.9, "BB"),
     (40, "B"), (39.9, "CCC"), (0, "CCC")],
)  # fmt: skip
def test_band_edges_belong_to_the_better_grade(score: float, grade: str) -> None:
    assert grade_of(score) == Grade(grade)


def test_the_pd_table_is_the_stated_one() -> None:
    assert {b.grade.value: b.pd for b in SCALE} == {
        "AAA": 0.0001,
        "AA": 0.0002,
        "A": 0.0006,
        "BBB": 0.002,
        "BB": 0.008,
        "B": 0.04,
        "CCC": 0.25,
    }


@given(a=scores, b=scores)
def test_a_better_score_never_has_a_higher_pd_or_a_worse_grade(a: float, b: float) -> None:
    lo, hi = sorted((a, b))
    assert pd_of(hi) <= pd_of(lo)
    ranks = [band.grade for band in SCALE]
    assert ranks.index(grade_of(hi)) <= ranks.index(grade_of(lo))


@pytest.mark.parametrize("score", [-0.1, 100.1, math.nan, math.inf])
def test_a_score_off_the_scale_is_refused(score: float) -> None:
    with pytest.raises(ValidationError):
        grade_of(score)
    with pytest.raises(ValidationError):
        pd_of(score)
