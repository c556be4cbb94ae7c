"""Client credit rating: the paper's formula 1 blend and our internal model RT (formulas 2-3).

Ratings are scores on a fixed 0..100 scale (higher is better), mapped to grades AAA..CCC and to
one-year probabilities of default. Formula 1: while a client has no settled trade (j = 0) its
rating is its external rating; afterwards it is ``alpha * external + beta * RT(history)`` with
``alpha + beta = 1`` (the weights come from the network genesis).

**The internal model RT.** RT reads the client's settled trades in order, each a tuple
``(Rt_prev, Sz, Len, Coll, Margin, Guar, Def, RR)``, as evidence for or against the client,
and blends that evidence with a prior:

    RT = 100 * (W0 * p0 + G) / (W0 + G + B)

* The prior ``p0`` is the first tuple's ``Rt_prev`` / 100 -- by formula 1 the client's rating
  before its first trade here is its external rating -- and counts as ``W0 = 4`` units of
  evidence (about four typical trades). Later tuples' ``Rt_prev`` are kept for the audit trail
  (each is reproducible from the history before it) and are not re-read, so one mis-recorded
  value cannot move a rating.
* A trade's weight is ``w = ln(1 + Sz / 1,000,000) * sqrt(min(Len, 730) / 365)``: bigger and
  longer trades say more about a client, with diminishing returns in size and a two-year cap on
  length. A 3 M CNY trade held six months has ``w`` close to 1.
* A clean settled trade (``Def = 0``) adds good evidence ``g = w * (1 + 0.25 * min(Coll / Sz, 1)
  + 0.25 * Margin + 0.25 * min(Guar / Sz, 1))``: collateral, marked-to-market margin and a
  third-party guarantee each add confidence. It also *rehabilitates*: it shrinks the bad
  evidence accumulated so far by the factor ``exp(-g / 10)`` (about seven typical clean trades
  halve the weight of a past default). Being bounded by the trade's own weight, rehabilitation
  cannot be bought with a stream of tiny trades.
* A default (``Def = 1``) adds bad evidence ``b = 4 * (0.25 + 0.75 * (1 - RR)) * (1 + w)``: a
  default counts at least as much as four typical trades, more when it is big or long, and a
  higher recovery rate softens it -- but even a full recovery keeps a quarter of the penalty,
  because the client still failed to pay on time.

Properties (tested with hypothesis): RT lies in [0, 100]; appending a default never raises it
(B grows, nothing else moves); appending a clean trade never lowers it (G grows, B shrinks, and
``(a + g) / (n + g - d) >= a / n`` whenever ``a <= n``); a higher recovery rate on the same
default never gives a lower score (the final B is increasing in each ``b``). Because the first
``Rt_prev`` is the external rating, a first default cannot lift the combined rating above the
external one either. Recency is expressed through rehabilitation only: decaying old *good*
evidence would let a small clean trade lower a score.

**The scale.** Grades have 10-point bands (AAA 90-100, AA 80-90, A 70-80, BBB 60-70, BB 50-60,
B 40-50, CCC below 40); ``score_of(grade)`` is the band's midpoint (CCC: 20). One-year PDs per
grade are rounded figures in line with S&P Global's long-run (1981 onwards) average one-year
global corporate default rates: AAA 0.01 % (observed ~0, floored at 1 bp), AA 0.02 %, A 0.06 %,
BBB 0.2 %, BB 0.8 %, B 4 %, CCC 25 %. They are an assumption of this model, not a calibration
to our market. ``pd_of(grade)`` is the table; ``pd_of(score)`` interpolates log-linearly between
the grades' midpoints (flat beyond the ends), so PD falls smoothly as a score improves and
``pd_of(score_of(g)) == pd_of(g)``.
"""

from __future__ import annotations

import decimal
import enum
import itertools
import math
from collections.abc import Sequence

import msgspec

from rfq.errors import ValidationError

SCORE_MIN = 0.0
SCORE_MAX = 100.0


class Grade(enum.StrEnum):
    """Letter grades, best first."""

    AAA = "AAA"
    AA = "AA"
    A = "A"
    BBB = "BBB"
    BB = "BB"
    B = "B"
    CCC = "CCC"


class GradeBand(msgspec.Struct, frozen=True):
    """A grade's score band ``[low, high)`` (AAA includes 100) and its one-year PD."""

    grade: Grade
    low: float
    high: float
    pd: float

    @property
    def anchor(self) -> float:
        """The score that stands for the grade (the band's midpoint)."""
        return (self.low + self.high) / 2.0


SCALE: tuple[GradeBand, ...] = (
    GradeBand(Grade.AAA, 90.0, 100.0, 0.0001),
    GradeBand(Grade.AA, 80.0, 90.0, 0.0002),
    GradeBand(Grade.A, 70.0, 80.0, 0.0006),
    GradeBand(Grade.BBB, 60.0, 70.0, 0.002),
    GradeBand(Grade.BB, 50.0, 60.0, 0.008),
    GradeBand(Grade.B, 40.0, 50.0, 0.04),
    GradeBand(Grade.CCC, 0.0, 40.0, 0.25),
)
"""The rating scale, best grade first."""

_BAND: dict[Grade, GradeBand] = {band.grade: band for band in SCALE}
# Interpolation knots for pd_of(score): ascending scores and their PDs.
_KNOTS: tuple[tuple[float, float], ...] = tuple((band.anchor, band.pd) for band in reversed(SCALE))

# RT's constants (see the module docstring).
PRIOR_WEIGHT = 4.0
SIZE_REF = 1_000_000.0
LENGTH_REF_DAYS = 365.0
LENGTH_CAP_DAYS = 730
COVER_BONUS = 0.25
DEFAULT_WEIGHT = 4.0
DEFAULT_FLOOR = 0.25
REHABILITATION_SCALE = 10.0


def _check_score(score: float, where: str) -> float:
    if not (math.isfinite(score) and SCORE_MIN <= score <= SCORE_MAX):
        raise ValidationError(f"score {score!r} is not in [0, 100]", where=where)
    return float(score)


def score_of(grade: Grade | str) -> float:
    """The score that stands for a grade, e.g. an external rating given as a letter."""
    return _BAND[_as_grade(grade)].anchor


def grade_of(score: float) -> Grade:
    """The grade whose band holds ``score``."""
    value = _check_score(score, "score")
    for band in SCALE:
        if value >= band.low:
            return band.grade
    return Grade.CCC  # unreachable: CCC starts at 0


def band_of(grade: Grade | str) -> GradeBand:
    """A grade's band and PD."""
    return _BAND[_as_grade(grade)]


def _as_grade(grade: Grade | str) -> Grade:
    try:
        return Grade(grade)
    except ValueError:
        raise ValidationError(f"unknown grade {grade!r}", where="grade") from None


def pd_of(rating: Grade | str | float) -> float:
    """One-year probability of default: the table for a grade, log-linear in score otherwise."""
    if isinstance(rating, str):
        return _BAND[_as_grade(rating)].pd
    score = _check_score(rating, "score")
    if score <= _KNOTS[0][0]:
        return _KNOTS[0][1]
    for (x0, p0), (x1, p1) in itertools.pairwise(_KNOTS):
        if score == x1:
            return p1
        if score < x1:
            return p0 * math.exp(math.log(p1 / p0) * (score - x0) / (x1 - x0))
    return _KNOTS[-1][1]


def as_score(rating: Grade | str | float) -> float:
    """A rating given either as a grade or as a score, as a score."""
    if isinstance(rating, str):
        return score_of(rating)
    return _check_score(rating, "score")


# --------------------------------------------------------------------------------------------
# Formula 3: the per-trade tuple


class RatingTuple(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One settled or terminated trade, ``Trade_ij = (Rt_prev, Sz, Len, Coll, Margin, Guar, Def,
    RR)``; amounts in the settlement currency, ``recovery_rate`` read only when ``default``."""

    rt_prev: float
    size: float
    length_days: int
    collateral: float
    margin: bool
    guarantee: float
    default: bool
    recovery_rate: float = 0.0


def validate_tuple(trade: RatingTuple, *, where: str = "trade") -> None:
    """Refuse a tuple RT cannot read, naming the field."""
    _check_score(trade.rt_prev, f"{where}.rt_prev")
    for name in ("size", "collateral", "guarantee"):
        value = getattr(trade, name)
        if not (math.isfinite(value) and value >= 0):
            raise ValidationError(f"{name} must be a finite amount >= 0", where=f"{where}.{name}")
    if trade.length_days < 0:
        raise ValidationError("length cannot be negative", where=f"{where}.length_days")
    if not (math.isfinite(trade.recovery_rate) and 0.0 <= trade.recovery_rate <= 1.0):
        raise ValidationError("recovery rate must be in [0, 1]", where=f"{where}.recovery_rate")


def trade_weight(trade: RatingTuple) -> float:
    """How much a trade says about a client: grows with size (log) and length (sqrt, capped)."""
    length = min(trade.length_days, LENGTH_CAP_DAYS) / LENGTH_REF_DAYS
    return math.log1p(trade.size / SIZE_REF) * math.sqrt(length)


def _cover(amount: float, size: float) -> float:
    return min(amount / size, 1.0) if size > 0 else 0.0


def good_evidence(trade: RatingTuple) -> float:
    """Evidence a clean trade adds; collateral, margin and a guarantee add confidence."""
    confidence = 1.0 + COVER_BONUS * (
        _cover(trade.collateral, trade.size)
        + (1.0 if trade.margin else 0.0)
        + _cover(trade.guarantee, trade.size)
    )
    return trade_weight(trade) * confidence


def bad_evidence(trade: RatingTuple) -> float:
    """Evidence a default adds; a higher recovery rate softens it, never below a floor."""
    severity = DEFAULT_FLOOR + (1.0 - DEFAULT_FLOOR) * (1.0 - trade.recovery_rate)
    return DEFAULT_WEIGHT * severity * (1.0 + trade_weight(trade))


# --------------------------------------------------------------------------------------------
# Formula 2: RT over the history, and formula 1


def internal_rating(history: Sequence[RatingTuple]) -> float:
    """``Rt_td = RT(history)``: the internal score, 0..100, of a client with settled trades."""
    if not history:
        raise ValidationError(
            "the internal rating needs at least one settled trade", where="history"
        )
    for i, trade in enumerate(history):
        validate_tuple(trade, where=f"history[{i}]")
    prior = history[0].rt_prev / SCORE_MAX
    good = 0.0
    bad = 0.0
    for trade in history:
        if trade.default:
            bad += bad_evidence(trade)
        else:
            g = good_evidence(trade)
            good += g
            bad *= math.exp(-g / REHABILITATION_SCALE)
    score = SCORE_MAX * (PRIOR_WEIGHT * prior + good) / (PRIOR_WEIGHT + good + bad)
    return min(max(score, SCORE_MIN), SCORE_MAX)


class RatingWeights(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Formula 1's weights from the genesis: ``alpha`` on the external rating, ``beta`` on the
    internal one; both in [0, 1] and summing to 1 (checked on construction and decoding)."""

    alpha: float
    beta: float

    def __post_init__(self) -> None:
        for name in ("alpha", "beta"):
            value = getattr(self, name)
            if not (math.isfinite(value) and 0.0 <= value <= 1.0):
                raise ValidationError(f"{name} must be in [0, 1]", where=f"rating.{name}")
        if abs(self.alpha + self.beta - 1.0) > 1e-9:
            raise ValidationError(
                f"alpha + beta must be 1, got {self.alpha + self.beta!r}", where="rating"
            )


def combined_rating(
    external: Grade | str | float, history: Sequence[RatingTuple], weights: RatingWeights
) -> float:
    """Formula 1: the external rating while ``j = 0``, else ``alpha * ext + beta * RT``."""
    ext = as_score(external)
    if not history:
        return ext
    score = weights.alpha * ext + weights.beta * internal_rating(history)
    return min(max(score, SCORE_MIN), SCORE_MAX)


def append_settled(
    history: Sequence[RatingTuple],
    *,
    external: Grade | str | float,
    weights: RatingWeights,
    size: float,
    length_days: int,
    collateral: float = 0.0,
    margin: bool = False,
    guarantee: float = 0.0,
    default: bool = False,
    recovery_rate: float = 0.0,
) -> tuple[RatingTuple, ...]:
    """The history with one more settled trade, its ``Rt_prev`` filled from formula 1 -- the
    way the ledger should build tuples, so the first one carries the external rating."""
    trade = RatingTuple(
        rt_prev=combined_rating(external, history, weights),
        size=size,
        length_days=length_days,
        collateral=collateral,
        margin=margin,
        guarantee=guarantee,
        default=default,
        recovery_rate=recovery_rate if default else 0.0,
    )
    validate_tuple(trade, where=f"history[{len(history)}]")
    return (*history, trade)


# --------------------------------------------------------------------------------------------
# RT as running evidence: O(1) per settled trade, and the same digits on every machine
#
# The ledger does not keep a client's whole history: it folds each settled trade into three
# running sums (the prior, the good and the bad evidence), exactly the quantities RT is made
# of. They are ``decimal.Decimal`` with 34 significant digits, whose ``ln``, ``exp`` and
# ``sqrt`` are correctly rounded, so every machine (whatever its CPU or libm) computes the
# same sums; the score that enters the state root is then rounded to 6 decimals. The float
# ``internal_rating`` above stays the reference formula: a property test checks the two agree.

_DEC = decimal.Context(prec=34, rounding=decimal.ROUND_HALF_EVEN)
_D = _DEC.create_decimal
SCORE_DECIMALS = 6
"""Scores enter the state rounded to this many decimals (a documented grid)."""


class RatingEvidence(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """RT's state after a client's settled trades: ``RT = 100 (W0 p0 + G) / (W0 + G + B)``.

    ``prior`` is the first trade's ``Rt_prev`` / 100, ``good`` and ``bad`` the evidence so far
    (bad decayed by each clean trade's rehabilitation); ``last`` is the newest tuple, kept for
    the audit trail and the terminal.
    """

    prior: decimal.Decimal
    good: decimal.Decimal
    bad: decimal.Decimal
    trades: int
    defaults: int
    last: RatingTuple


def _weight(trade: RatingTuple) -> decimal.Decimal:
    size = _D(trade.size) / _D(SIZE_REF)
    length = _D(min(trade.length_days, LENGTH_CAP_DAYS)) / _D(LENGTH_REF_DAYS)
    return (_D(1) + size).ln(_DEC) * length.sqrt(_DEC)


def _dcover(amount: float, size: float) -> decimal.Decimal:
    return min(_D(amount) / _D(size), _D(1)) if size > 0 else _D(0)


def fold(evidence: RatingEvidence | None, trade: RatingTuple) -> RatingEvidence:
    """The evidence with one more settled trade (formula 2, one step); validates the tuple."""
    validate_tuple(trade, where="trade")
    if evidence is None:
        evidence = RatingEvidence(_D(trade.rt_prev) / _D(SCORE_MAX), _D(0), _D(0), 0, 0, trade)
    weight = _weight(trade)
    good, bad = evidence.good, evidence.bad
    if trade.default:
        severity = _D(DEFAULT_FLOOR) + (_D(1) - _D(DEFAULT_FLOOR)) * (
            _D(1) - _D(trade.recovery_rate)
        )
        bad = _DEC.plus(bad + _D(DEFAULT_WEIGHT) * severity * (_D(1) + weight))
    else:
        confidence = _D(1) + _D(COVER_BONUS) * (
            _dcover(trade.collateral, trade.size)
            + (_D(1) if trade.margin else _D(0))
            + _dcover(trade.guarantee, trade.size)
        )
        g = weight * confidence
        good = _DEC.plus(good + g)
        bad = _DEC.plus(bad * (-g / _D(REHABILITATION_SCALE)).exp(_DEC))
    return RatingEvidence(
        evidence.prior,
        good,
        bad,
        evidence.trades + 1,
        evidence.defaults + int(trade.default),
        trade,
    )


def evidence_score(evidence: RatingEvidence) -> decimal.Decimal:
    """RT of the evidence, 0..100."""
    w0 = _D(PRIOR_WEIGHT)
    score = _D(SCORE_MAX) * (w0 * evidence.prior + evidence.good)
    score = score / (w0 + evidence.good + evidence.bad)
    return min(max(score, _D(SCORE_MIN)), _D(SCORE_MAX))


def combined_score(
    external: Grade | str | float, evidence: RatingEvidence | None, weights: RatingWeights
) -> float:
    """Formula 1 on the running evidence, rounded onto the score grid: what the state holds."""
    ext = _D(as_score(external))
    if evidence is None:
        score = ext
    else:
        score = _D(weights.alpha) * ext + _D(weights.beta) * evidence_score(evidence)
        score = min(max(score, _D(SCORE_MIN)), _D(SCORE_MAX))
    return float(score.quantize(decimal.Decimal(1).scaleb(-SCORE_DECIMALS), context=_DEC))
