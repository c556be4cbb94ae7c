"""RT folded into running evidence: the same ratings as the reference formula, in O(1) per
trade, with the same digits on every machine (decimal arithmetic, correctly rounded)."""

from __future__ import annotations

import decimal
import subprocess
import sys

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from rfq.rating import (
    RatingEvidence,
    RatingTuple,
    RatingWeights,
    combined_rating,
    combined_score,
    evidence_score,
    fold,
    internal_rating,
)

from .test_rating_model import histories

WEIGHTS = RatingWeights(alpha=0.4, beta=0.6)


def folded(history: list[RatingTuple]) -> RatingEvidence | None:
    evidence = None
    for trade in history:
        evidence = fold(evidence, trade)
    return evidence


@settings(max_examples=300)
@given(history=histories, external=st.sampled_from(["AAA", "A", "BBB", "B", "CCC"]))
def test_the_running_evidence_rates_as_the_whole_history_does(history, external):
    evidence = folded(history)
    if not history:
        assert evidence is None
        assert combined_score(external, None, WEIGHTS) == combined_rating(external, [], WEIGHTS)
        return
    assert evidence is not None and evidence.trades == len(history)
    assert evidence.defaults == sum(t.default for t in history)
    assert float(evidence_score(evidence)) == pytest_approx(internal_rating(history))
    reference = combined_rating(external, history, WEIGHTS)
    assert abs(combined_score(external, evidence, WEIGHTS) - reference) <= 5e-7 + 1e-9


def pytest_approx(value: float) -> object:
    import pytest

    return pytest.approx(value, rel=1e-12, abs=1e-9)


@given(history=histories)
def test_the_evidence_survives_the_wire_digit_for_digit(history):
    evidence = folded(history)
    data = msgspec.msgpack.encode(evidence)
    assert msgspec.msgpack.decode(data, type=RatingEvidence | None) == evidence


def test_the_digits_do_not_depend_on_the_process_that_computes_them():
    """Another interpreter, with the decimal module's C implementation swapped for the pure
    Python one (a different code path, as another machine's would be), folds to the same
    bytes."""
    script = (
        "import sys; sys.modules['_decimal'] = None\n"
        "import decimal, msgspec\n"
        "import types; assert isinstance(decimal.Decimal.ln, types.FunctionType)\n"
        "from rfq.rating import RatingTuple, fold\n"
        "e = None\n"
        "for i in range(50):\n"
        "    e = fold(e, RatingTuple(65.0, 1e6 * (i % 7 + 1), 30 + i, 1e5, i % 2 == 0, 0.0,"
        " i % 9 == 0, 0.4 if i % 9 == 0 else 0.0))\n"
        "sys.stdout.write(msgspec.msgpack.encode(e).hex())\n"
    )
    pure = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    ).stdout
    evidence = None
    for i in range(50):
        trade = RatingTuple(
            65.0, 1e6 * (i % 7 + 1), 30 + i, 1e5, i % 2 == 0, 0.0, i % 9 == 0,
            0.4 if i % 9 == 0 else 0.0,
        )  # fmt: skip
        evidence = fold(evidence, trade)
    assert msgspec.msgpack.encode(evidence).hex() == pure
    assert isinstance(evidence.good, decimal.Decimal)
