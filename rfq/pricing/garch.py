"""GARCH(1,1) volatility from a fixing history, with honest fallbacks.

The model, on daily log returns ``r_t`` less their sample mean, ``e_t = sigma_t z_t``:

    sigma_t^2 = omega + alpha e_{t-1}^2 + beta sigma_{t-1}^2,   omega > 0, alpha, beta >= 0,
                                                                  alpha + beta < 1

is fitted by Gaussian maximum likelihood (scipy SLSQP, the constraints above, a few starting
points, the recursion started at the sample variance). The returns are scaled to unit variance
while fitting so the optimiser sees numbers near 1; ``omega`` is scaled back.

The forecast for a horizon of ``h`` periods is the mean of the expected variances
``E[sigma_{t+k}^2] = vbar + phi^(k-1) (sigma_{t+1}^2 - vbar)``, ``phi = alpha + beta``,
``vbar = omega / (1 - phi)``, annualised with 252 periods a year.

A history too short to fit (fewer than ``MIN_GARCH_RETURNS`` returns), a fit that fails or a
forecast outside sane bounds falls back to the sample volatility (at least
``MIN_SAMPLE_RETURNS`` returns), else to the caller's fallback, usually the underlying's catalog
vol. ``VolEstimate.source`` and ``reason`` say which, so a quote can show where its vol came from.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Sequence

import msgspec
import numpy as np
import numpy.typing as npt
from scipy.optimize import minimize
from scipy.signal import lfilter

from rfq.errors import ValidationError
from rfq.pricing.errors import GarchFitError

FloatArray = npt.NDArray[np.float64]

PERIODS_PER_YEAR = 252
MIN_GARCH_RETURNS = 250
MIN_SAMPLE_RETURNS = 20
# A forecast outside these annualised bounds is treated as a failed fit.
SANE_VOL = (0.005, 5.0)
_MAX_PERSISTENCE = 1.0 - 1e-6
_STARTS = ((0.05, 0.90), (0.10, 0.80), (0.20, 0.50), (0.02, 0.97))


class GarchParams(msgspec.Struct, frozen=True):
    """Per-period parameters in the units of the log returns (omega is a daily variance)."""

    omega: float
    alpha: float
    beta: float

    @property
    def persistence(self) -> float:
        return self.alpha + self.beta

    @property
    def long_run_variance(self) -> float:
        return self.omega / (1.0 - self.persistence)


class GarchFit(msgspec.Struct, frozen=True):
    """A fitted model and where the series left it: ``next_variance`` is sigma^2 for the next
    period, the start of every forecast."""

    params: GarchParams
    next_variance: float
    n_returns: int
    log_likelihood: float

    def forecast_variance(self, horizon: int) -> float:
        """Expected total variance of the next ``horizon`` periods' returns."""
        if horizon < 1:
            raise ValidationError("horizon must be at least one period", where="horizon")
        phi = self.params.persistence
        vbar = self.params.long_run_variance
        return horizon * vbar + (self.next_variance - vbar) * (1.0 - phi**horizon) / (1.0 - phi)

    def forecast_vol(self, horizon: int, periods_per_year: int = PERIODS_PER_YEAR) -> float:
        """Annualised volatility over the next ``horizon`` periods."""
        return math.sqrt(self.forecast_variance(horizon) / horizon * periods_per_year)


def log_returns(prices: Sequence[float] | FloatArray) -> FloatArray:
    """Log returns of a positive price series."""
    arr = np.asarray(prices, dtype=np.float64)
    if arr.size and not (np.all(np.isfinite(arr)) and np.all(arr > 0)):
        raise ValidationError("log returns need positive finite prices", where="prices")
    return np.diff(np.log(arr))


def _variances(theta: FloatArray, e2: FloatArray, v0: float) -> FloatArray:
    omega, alpha, beta = float(theta[0]), float(theta[1]), float(theta[2])
    out = np.empty_like(e2)
    out[0] = v0
    if e2.size > 1:
        x = omega + alpha * e2[:-1]
        out[1:] = lfilter([1.0], [1.0, -beta], x, zi=[beta * v0])[0]
    return out


def _neg_log_likelihood(theta: FloatArray, e2: FloatArray, v0: float) -> float:
    var = _variances(theta, e2, v0)
    if not np.all(var > 0) or not np.all(np.isfinite(var)):
        return 1e300
    return float(0.5 * np.sum(np.log(var) + e2 / var + math.log(2.0 * math.pi)))


def fit_garch(returns: Sequence[float] | FloatArray) -> GarchFit:
    """Maximum-likelihood GARCH(1,1) on ``returns``; raises ``GarchFitError`` if it can't."""
    r = np.asarray(returns, dtype=np.float64)
    n = int(r.size)
    if n < 3 or not np.all(np.isfinite(r)):
        raise GarchFitError("too few or non-finite returns", n_returns=n)
    e = r - r.mean()
    scale2 = float(np.mean(e * e))
    if not scale2 > 0:
        raise GarchFitError("the series does not move", n_returns=n)
    e2 = e * e / scale2
    v0 = 1.0
    constraints = [{"type": "ineq", "fun": lambda t: _MAX_PERSISTENCE - t[1] - t[2]}]
    bounds = [(1e-8, 10.0), (0.0, 1.0), (0.0, 1.0)]
    best: tuple[float, FloatArray] | None = None
    for a0, b0 in _STARTS:
        x0 = np.array([1.0 - a0 - b0, a0, b0])
        res = minimize(
            _neg_log_likelihood,
            x0,
            args=(e2, v0),
            method="SLSQP",
            bounds=bounds,
            constraints=constraints,
            options={"maxiter": 500, "ftol": 1e-10},
        )
        theta = np.asarray(res.x, dtype=np.float64)
        nll = float(res.fun)
        feasible = (
            bool(res.success)
            and np.all(np.isfinite(theta))
            and theta[0] > 0
            and theta[1] >= 0
            and theta[2] >= 0
            and theta[1] + theta[2] < 1.0
        )
        if feasible and math.isfinite(nll) and (best is None or nll < best[0]):
            best = (nll, theta)
    if best is None:
        raise GarchFitError("the optimiser did not converge to a feasible point", n_returns=n)
    nll, theta = best
    var = _variances(theta, e2, v0)
    next_var = float(theta[0] + theta[1] * e2[-1] + theta[2] * var[-1])
    params = GarchParams(
        omega=float(theta[0]) * scale2, alpha=float(theta[1]), beta=float(theta[2])
    )
    # The likelihood of the unscaled series differs by the Jacobian of the scaling.
    log_likelihood = -nll - 0.5 * n * math.log(scale2)
    return GarchFit(params, next_var * scale2, n, log_likelihood)


def simulate_garch(params: GarchParams, n: int, *, seed: int, burn_in: int = 500) -> FloatArray:
    """``n`` returns of a Gaussian GARCH(1,1), reproducible from ``seed`` (for tests)."""
    if params.persistence >= 1.0 or params.omega <= 0:
        raise ValidationError("a simulated GARCH must be stationary", where="params")
    rng = np.random.default_rng(seed)
    z = rng.standard_normal(n + burn_in)
    out = np.empty(n + burn_in)
    var = params.long_run_variance
    for t in range(n + burn_in):
        out[t] = math.sqrt(var) * z[t]
        var = params.omega + params.alpha * out[t] * out[t] + params.beta * var
    return out[burn_in:]


def simulate_prices(params: GarchParams, n: int, *, start: float, seed: int) -> list[float]:
    """A price path of ``n + 1`` fixings whose log returns follow the GARCH(1,1)."""
    r = simulate_garch(params, n, seed=seed)
    return [float(p) for p in start * np.exp(np.concatenate(([0.0], np.cumsum(r))))]


class VolSource(enum.StrEnum):
    """Where a volatility came from."""

    GARCH = "garch"
    SAMPLE = "sample"
    FALLBACK = "fallback"


class VolEstimate(msgspec.Struct, frozen=True):
    """An annualised volatility for a horizon and its provenance."""

    vol: float
    source: VolSource
    horizon_days: int
    n_returns: int
    reason: str = ""
    params: GarchParams | None = None


class VolModel(msgspec.Struct, frozen=True):
    """What a history supports: a GARCH fit, or a flat vol (sample or fallback) and why.

    Fitting is the expensive part; a dealer can fit once per underlying and fixing and reuse
    the model for every horizon.
    """

    source: VolSource
    n_returns: int
    reason: str = ""
    fit: GarchFit | None = None
    flat_vol: float = 0.0
    periods_per_year: int = PERIODS_PER_YEAR

    def forecast(self, horizon_days: int) -> VolEstimate:
        """Annualised vol over ``horizon_days`` trading days (at least one)."""
        horizon = max(int(horizon_days), 1)
        if self.fit is not None:
            vol = self.fit.forecast_vol(horizon, self.periods_per_year)
            return VolEstimate(
                vol, self.source, horizon, self.n_returns, self.reason, self.fit.params
            )
        return VolEstimate(self.flat_vol, self.source, horizon, self.n_returns, self.reason)


def sample_vol(returns: FloatArray, periods_per_year: int = PERIODS_PER_YEAR) -> float:
    """Annualised sample standard deviation of returns."""
    return float(np.std(returns, ddof=1)) * math.sqrt(periods_per_year)


def vol_model(
    prices: Sequence[float],
    *,
    fallback_vol: float,
    min_garch: int = MIN_GARCH_RETURNS,
    min_sample: int = MIN_SAMPLE_RETURNS,
    periods_per_year: int = PERIODS_PER_YEAR,
) -> VolModel:
    """The best vol model ``prices`` (oldest first) supports: GARCH, else sample, else fallback."""
    if not (math.isfinite(fallback_vol) and fallback_vol > 0):
        raise ValidationError("fallback vol must be positive", where="fallback_vol")
    try:
        r = log_returns(prices)
    except ValidationError:
        return VolModel(
            VolSource.FALLBACK, 0, "history has non-positive prices", None, fallback_vol
        )
    n = int(r.size)
    reason = ""
    if n >= min_garch:
        try:
            fit = fit_garch(r)
        except GarchFitError as exc:
            reason = exc.reason
        else:
            lo, hi = SANE_VOL
            one_day = fit.forecast_vol(1, periods_per_year)
            long_run = math.sqrt(fit.params.long_run_variance * periods_per_year)
            if lo <= one_day <= hi and lo <= long_run <= hi:
                return VolModel(VolSource.GARCH, n, "", fit, 0.0, periods_per_year)
            reason = f"GARCH forecast out of bounds ({one_day:.4f}, long run {long_run:.4f})"
    else:
        reason = f"{n} returns, fewer than {min_garch} needed for GARCH"
    if n >= min_sample:
        vol = sample_vol(r, periods_per_year)
        if math.isfinite(vol) and vol > 0:
            return VolModel(VolSource.SAMPLE, n, reason, None, vol, periods_per_year)
        reason += "; the history does not move"
    else:
        reason += f"; fewer than {min_sample} returns for a sample vol"
    return VolModel(VolSource.FALLBACK, n, reason, None, fallback_vol, periods_per_year)


def estimate_vol(
    prices: Sequence[float],
    horizon_days: int,
    *,
    fallback_vol: float,
    min_garch: int = MIN_GARCH_RETURNS,
    min_sample: int = MIN_SAMPLE_RETURNS,
) -> VolEstimate:
    """Annualised vol for ``horizon_days`` from ``prices`` (oldest first), with fallbacks."""
    model = vol_model(prices, fallback_vol=fallback_vol, min_garch=min_garch, min_sample=min_sample)
    return model.forecast(horizon_days)
