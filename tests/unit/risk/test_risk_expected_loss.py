"""EL = PD x EAD x LGD per counterparty (paper formulas 4, 8, 9)."""

from __future__ import annotations

import pytest

from rfq.errors import ValidationError
from rfq.risk.loss import (
    CounterpartyExposure,
    default_frequency,
    expected_loss,
    expected_loss_of,
    expected_losses,
    loss_given_default,
    probability_of_default,
)

# A grade -> PD table as the rating scale would supply it; these numbers are only for the tests.
PD_BY_GRADE = {"AAA": 0.0001, "BBB": 0.004, "CCC": 0.25}


def test_expected_loss_is_pd_times_ead_times_lgd() -> None:
    assert expected_loss(0.02, 1_000_000, 0.6) == pytest.approx(12_000)


def test_lgd_is_one_minus_the_recovery_rate() -> None:
    assert loss_given_default(0.4) == pytest.approx(0.6)
    assert loss_given_default(1.0) == 0.0


def test_the_default_frequency_is_defaulted_over_all_obligors() -> None:
    assert default_frequency(3, 200) == pytest.approx(0.015)
    assert default_frequency(0, 10) == 0.0


def test_pd_comes_from_the_grade_table_the_caller_passes() -> None:
    assert probability_of_default("BBB", PD_BY_GRADE) == 0.004


def test_an_observed_pd_takes_precedence_over_the_grade() -> None:
    exposure = CounterpartyExposure("ivan", ead=1000, recovery_rate=0.4, grade="AAA", pd=0.1)
    result = expected_loss_of(exposure, PD_BY_GRADE)
    assert result.pd == 0.1
    assert result.el == pytest.approx(0.1 * 1000 * 0.6)


def test_expected_losses_sum_a_counterpartys_netting_sets() -> None:
    # Judy: two netting sets, BBB, RR 0.25: 0.004 x (1,000 + 500) x 0.75 = 4.5.
    # Mallory: observed DF 2 of 8 = 0.25, RR 0: 0.25 x 100 x 1 = 25.
    exposures = [
        CounterpartyExposure("judy", ead=1000, recovery_rate=0.25, grade="BBB"),
        CounterpartyExposure("judy", ead=500, recovery_rate=0.25, grade="BBB"),
        CounterpartyExposure("mallory", ead=100, recovery_rate=0.0, pd=default_frequency(2, 8)),
    ]
    assert expected_losses(exposures, PD_BY_GRADE) == pytest.approx({"judy": 4.5, "mallory": 25})


def test_an_unknown_grade_is_refused_naming_the_counterparty() -> None:
    exposure = CounterpartyExposure("niaj", ead=1, recovery_rate=0.5, grade="ZZZ")
    with pytest.raises(ValidationError, match="niaj") as caught:
        expected_loss_of(exposure, PD_BY_GRADE)
    assert "ZZZ" in str(caught.value)


def test_an_exposure_with_neither_pd_nor_grade_is_refused() -> None:
    with pytest.raises(ValidationError, match="olivia"):
        expected_loss_of(CounterpartyExposure("olivia", ead=1, recovery_rate=0.5))


@pytest.mark.parametrize(
    ("pd", "ead", "lgd"), [(-0.1, 1, 0.5), (1.1, 1, 0.5), (0.1, -1, 0.5), (0.1, 1, 1.5)]
)
def test_out_of_range_inputs_are_refused(pd: float, ead: float, lgd: float) -> None:
    with pytest.raises(ValidationError):
        expected_loss(pd, ead, lgd)


def test_a_default_frequency_needs_obligors() -> None:
    with pytest.raises(ValidationError):
        default_frequency(1, 0)
    with pytest.raises(ValidationError):
        default_frequency(5, 4)
