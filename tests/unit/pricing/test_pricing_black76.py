"""Black-76 against published examples and against independent computations.

References:
* Hull, *Options, Futures, and Other Derivatives* (Black's model, the crude-oil futures put):
  F = K = 20, r = 9 %, T = 4 months, sigma = 25 % -> put 1.12 (printed to two decimals).
* Haug, *The Complete Guide to Option Pricing Formulas*, 2nd ed., sec. 1.1.4 (options on
  futures): F = K = 19, T = 0.75, r = 10 %, sigma = 28 % -> call = put = 1.7011 (four decimals).
* To 1e-6: the expectation of the discounted payoff under the lognormal forward, integrated
  numerically with ``scipy.integrate.quad`` (no normal CDF involved), and the closed form
  evaluated with ``scipy.stats.norm`` (an independent CDF implementation).
"""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy import integrate, stats

from rfq.errors import ValidationError
from rfq.pricing.black76 import OptionKind, black76, black76_price, black76_quantile_payoff

TOL = 1e-6


def quad_price(kind: OptionKind, f: float, k: float, t: float, s: float, r: float) -> float:
    """E[e^{-rT} payoff(F_T)], F_T = F exp(s sqrt(T) Z - s^2 T / 2), integrated over Z."""
    sd = s * math.sqrt(t)

    def integrand(z: float) -> float:
        ft = f * math.exp(sd * z - 0.5 * sd * sd)
        payoff = max(ft - k, 0.0) if kind == "call" else max(k - ft, 0.0)
        return payoff * math.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)

    # Split at the kink so quad sees two smooth pieces.
    kink = (math.log(k / f) + 0.5 * sd * sd) / sd
    lo, _ = integrate.quad(integrand, -12.0, kink, epsabs=1e-12, epsrel=1e-12, limit=200)
    hi, _ = integrate.quad(integrand, kink, 12.0, epsabs=1e-12, epsrel=1e-12, limit=200)
    return math.exp(-r * t) * float(lo + hi)


def scipy_closed_form(
    kind: OptionKind, f: float, k: float, t: float, s: float, r: float
) -> tuple[float, float, float]:
    n = stats.norm
    sd = s * math.sqrt(t)
    d1 = (math.log(f / k) + 0.5 * sd * sd) / sd
    d2 = d1 - sd
    df = math.exp(-r * t)
    vega = df * f * n.pdf(d1) * math.sqrt(t)
    if kind == "call":
        return df * (f * n.cdf(d1) - k * n.cdf(d2)), df * n.cdf(d1), vega
    return df * (k * n.cdf(-d2) - f * n.cdf(-d1)), -df * n.cdf(-d1), vega


def test_hull_s_crude_oil_futures_put_is_1_12() -> None:
    assert black76_price("put", 20.0, 20.0, 4 / 12, 0.25, 0.09) == pytest.approx(1.12, abs=5e-3)


@pytest.mark.parametrize("kind", ["call", "put"])
def test_haug_s_options_on_futures_example_is_1_7011(kind: OptionKind) -> None:
    assert black76_price(kind, 19.0, 19.0, 0.75, 0.28, 0.10) == pytest.approx(1.7011, abs=5e-5)


CASES = [
    # kind, F, K, T, sigma, r
    ("call", 3150.0, 3150.0, 0.5, 0.22, 0.0),
    ("put", 3150.0, 3000.0, 0.25, 0.22, 0.02),
    ("call", 520.0, 600.0, 1.0, 0.32, 0.03),
    ("put", 7900.0, 8500.0, 2.0, 0.20, 0.0),
    ("call", 100.0, 60.0, 0.1, 0.5, 0.05),
    ("put", 4600.0, 4000.0, 0.05, 0.15, 0.01),
]


@pytest.mark.parametrize(("kind", "f", "k", "t", "s", "r"), CASES)
def test_black76_price_is_within_1e6_of_the_integrated_expectation(
    kind: OptionKind, f: float, k: float, t: float, s: float, r: float
) -> None:
    assert black76_price(kind, f, k, t, s, r) == pytest.approx(
        quad_price(kind, f, k, t, s, r), abs=TOL
    )


@pytest.mark.parametrize(("kind", "f", "k", "t", "s", "r"), CASES)
def test_black76_price_delta_and_vega_are_within_1e6_of_scipy(
    kind: OptionKind, f: float, k: float, t: float, s: float, r: float
) -> None:
    price, delta, vega = scipy_closed_form(kind, f, k, t, s, r)
    got = black76(kind, f, k, t, s, r)
    assert got.price == pytest.approx(price, abs=TOL)
    assert got.delta == pytest.approx(delta, abs=TOL)
    assert got.vega == pytest.approx(vega, abs=TOL)


@pytest.mark.parametrize(("kind", "f", "k", "t", "s", "r"), CASES)
def test_delta_and_vega_are_the_slopes_of_the_integrated_price(
    kind: OptionKind, f: float, k: float, t: float, s: float, r: float
) -> None:
    got = black76(kind, f, k, t, s, r)
    hf, hs = 1e-3 * f, 1e-4
    fd_delta = (quad_price(kind, f + hf, k, t, s, r) - quad_price(kind, f - hf, k, t, s, r)) / (
        2 * hf
    )
    fd_vega = (quad_price(kind, f, k, t, s + hs, r) - quad_price(kind, f, k, t, s - hs, r)) / (
        2 * hs
    )
    assert got.delta == pytest.approx(fd_delta, abs=1e-5)
    assert got.vega == pytest.approx(fd_vega, rel=1e-5, abs=1e-5)


@given(
    f=st.floats(1.0, 1e4),
    k=st.floats(1.0, 1e4),
    t=st.floats(0.01, 5.0),
    s=st.floats(0.01, 1.5),
    r=st.floats(-0.02, 0.1),
)
def test_calls_and_puts_keep_put_call_parity(
    f: float, k: float, t: float, s: float, r: float
) -> None:
    call = black76_price("call", f, k, t, s, r)
    put = black76_price("put", f, k, t, s, r)
    assert call - put == pytest.approx(math.exp(-r * t) * (f - k), abs=1e-9 * max(f, k))


def test_at_expiry_an_option_is_worth_its_discounted_intrinsic_value() -> None:
    assert black76("call", 110.0, 100.0, 0.0, 0.3).price == 10.0
    assert black76("put", 110.0, 100.0, 0.0, 0.3).price == 0.0
    assert black76("put", 90.0, 100.0, 1.0, 0.0, 0.05).price == pytest.approx(10 * math.exp(-0.05))


def test_the_writer_s_95pct_exposure_is_the_payoff_at_the_95pct_forward() -> None:
    z = stats.norm.ppf(0.95)
    sd = 0.2 * math.sqrt(0.5)
    f95 = 3000.0 * math.exp(z * sd - 0.5 * sd * sd)
    assert black76_quantile_payoff("call", 3000.0, 3100.0, 0.5, 0.2, z) == pytest.approx(
        f95 - 3100.0
    )


@pytest.mark.parametrize(
    "args", [(0.0, 100.0, 1.0, 0.2), (100.0, -1.0, 1.0, 0.2), (100.0, 100.0, -1.0, 0.2)]
)
def test_nonsense_inputs_are_refused(args: tuple[float, float, float, float]) -> None:
    with pytest.raises(ValidationError):
        black76("call", *args)
