"""Performance metrics of a run, from its per-period simple returns and its trades' PnL.

Sharpe, Sortino, annual return, Calmar and max drawdown follow empyrical's definitions so
tests can check them against it, with two deliberate differences: max drawdown is a positive
fraction (0.25 for a 25% fall), and annualisation is the caller's `periods_per_year`, which
for a 24/7 market is a 365-day year of bars (`periods_per_year_from_timestamps`).

* Sharpe: mean / std(ddof=1) * sqrt(ppy), risk-free 0.
* Sortino: mean(r - required) * ppy / (sqrt(mean(min(r - required, 0)^2)) * sqrt(ppy)); the
  downside deviation averages over ALL periods, not only the losing ones.
* Annual return: compounded, prod(1 + r) ** (ppy / n) - 1. Calmar: annual return / max DD.
* Drawdown duration of the deepest drawdown: points from its peak to recovery (first point
  back at the peak), or to the last point when never recovered; also peak-to-trough, and the
  longest underwater stretch of any drawdown (what some tools call "max DD duration").
* PSR / DSR: Bailey & López de Prado (2012, "The Sharpe Ratio Efficient Frontier"; 2014,
  "The Deflated Sharpe Ratio"), on the per-period (non-annualised) Sharpe ratio with
  population (biased) skewness and non-excess kurtosis.
* Trades: a win has PnL > 0, a loss PnL < 0; break-even trades count as trades only.
  Profit factor is None, not inf, when there is no losing trade; avg_loss is negative.

Undefined figures (Sharpe of a constant series, anything from fewer than 2 returns, trade
stats without trades) are None, never NaN or inf, so `compute_metrics` is strict JSON.
Non-finite inputs and returns below -100% raise DataError naming the position.
"""

from __future__ import annotations

import math
import numbers
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt
from scipy.stats import norm

from engine.errors import ConfigError, DataError
from engine.stats._arrays import (
    SECONDS_PER_YEAR,
    FloatArray,
    TimestampUnit,
    _finite_array,
    _is_constant,
    _or_none,
    _periods_per_year,
    _returns,
    _timestamps_seconds,
)
from engine.stats.trades import (
    TRADE_STAT_KEYS,
    exposure,
    in_market_from_trades,
    system_quality_number,
    trade_stats,
    wilson_interval,
)

__all__ = ["TRADE_STAT_KEYS", "Drawdown", "compute_metrics", "exposure",
           "in_market_from_trades", "system_quality_number", "trade_stats", "wilson_interval"]

class Drawdown(NamedTuple):
    """The deepest drawdown. Indices are wealth points: 0 is the start, i follows return i-1."""

    max_drawdown: float  # positive fraction of the peak; 0.0 when equity never falls
    peak_index: int
    trough_index: int
    recovery_index: int | None  # None when the peak is never regained
    duration_periods: int  # peak to recovery, or to the last point
    peak_to_trough_periods: int
    longest_underwater_periods: int  # of any drawdown, peak to recovery or to the end



def periods_per_year_from_timestamps(timestamps: npt.ArrayLike, *,
                                     unit: TimestampUnit = "auto") -> float:
    """Bars per 365-day year from the median spacing (robust to a few gaps) of epoch
    timestamps in seconds or milliseconds ("auto": values >= 1e11 are milliseconds)."""
    seconds = _timestamps_seconds(timestamps, unit)
    return SECONDS_PER_YEAR / float(np.median(np.diff(seconds)))


def returns_from_equity(equity: npt.ArrayLike) -> FloatArray:
    """Simple returns equity[i+1] / equity[i] - 1, one fewer than the points."""
    values = _finite_array(equity, "equity")
    if values.size < 2:
        raise DataError(f"equity needs at least two points to give a return, got {values.size}")
    # Each return divides by the point before it; only the last point may be 0 (a wipe-out).
    not_positive = np.flatnonzero(values[:-1] <= 0)
    if not_positive.size:
        raise DataError(f"equity must be positive before its last point; position "
                        f"{not_positive[0]} is {values[not_positive[0]]}")
    if values[-1] < 0:
        raise DataError(f"equity ends negative ({values[-1]}) at position {values.size - 1}")
    return values[1:] / values[:-1] - 1.0



def sharpe_per_period(returns: npt.ArrayLike) -> float | None:
    """mean / std(ddof=1), not annualised; None below 2 returns or for a constant series."""
    r = _returns(returns)
    if r.size < 2 or _is_constant(r):
        return None
    return _or_none(r.mean() / r.std(ddof=1))


def sharpe_ratio(returns: npt.ArrayLike, periods_per_year: float) -> float | None:
    ppy = _periods_per_year(periods_per_year)
    per_period = sharpe_per_period(returns)
    return None if per_period is None else _or_none(per_period * math.sqrt(ppy))


def sortino_ratio(returns: npt.ArrayLike, periods_per_year: float,
                  required_return: float = 0.0) -> float | None:
    """empyrical's Sortino; None below 2 returns or with no period under `required_return`."""
    ppy = _periods_per_year(periods_per_year)
    r = _returns(returns)
    if r.size < 2:
        return None
    excess = r - required_return
    downside = math.sqrt(float(np.mean(np.minimum(excess, 0.0) ** 2)))
    if downside == 0.0:
        return None
    return _or_none(excess.mean() * ppy / (downside * math.sqrt(ppy)))


def annual_return(returns: npt.ArrayLike, periods_per_year: float) -> float | None:
    """Compound annual growth; None if empty or if it overflows (a short, fast-bar run)."""
    ppy = _periods_per_year(periods_per_year)
    r = _returns(returns)
    if r.size == 0:
        return None
    ending = np.prod(1.0 + r)
    with np.errstate(over="ignore"):
        growth = ending ** (ppy / r.size)
    return _or_none(float(growth) - 1.0)


def drawdown(returns: npt.ArrayLike) -> Drawdown:
    r = _returns(returns)
    if r.size == 0:
        raise DataError("returns is empty: a drawdown needs at least one period")
    wealth = np.concatenate(([1.0], np.cumprod(1.0 + r)))
    peaks = np.maximum.accumulate(wealth)
    depth = (peaks - wealth) / peaks
    longest = _longest_underwater(wealth < peaks)
    trough = int(np.argmax(depth))  # 0 when equity never falls: every field is then 0
    peak_value = peaks[trough]
    # The drawdown starts at the LAST point at the peak: a flat top is not yet a loss.
    peak = int(np.flatnonzero(wealth[: trough + 1] == peak_value)[-1])
    regained = np.flatnonzero(wealth[trough:] >= peak_value)
    recovery = trough + int(regained[0]) if regained.size else None
    end = recovery if recovery is not None else wealth.size - 1
    return Drawdown(float(depth[trough]), peak, trough, recovery, end - peak, trough - peak,
                    longest)


def _longest_underwater(underwater: npt.NDArray[np.bool_]) -> int:
    edges = np.diff(np.concatenate(([0], underwater.astype(np.int8), [0])))
    starts = np.flatnonzero(edges == 1)  # first point below the peak; the peak is one before
    stops = np.flatnonzero(edges == -1)  # the recovery point, or one past the last point
    if starts.size == 0:
        return 0
    ends = np.minimum(stops, underwater.size - 1)
    return int((ends - (starts - 1)).max())


def max_drawdown(returns: npt.ArrayLike) -> float:
    return drawdown(returns).max_drawdown


def calmar_ratio(returns: npt.ArrayLike, periods_per_year: float) -> float | None:
    """Annual return / max drawdown; None when there is no drawdown (as empyrical's NaN)."""
    depth = max_drawdown(returns)
    growth = annual_return(returns, periods_per_year)
    if depth == 0.0 or growth is None:
        return None
    return _or_none(growth / depth)


def skew_and_kurtosis(returns: npt.ArrayLike) -> tuple[float | None, float | None]:
    """Population skewness and NON-excess kurtosis (3 for a normal), as the PSR uses."""
    r = _returns(returns)
    if r.size < 2 or _is_constant(r):
        return None, None
    centred = r - r.mean()
    variance = float(np.mean(centred**2))
    skew = float(np.mean(centred**3)) / variance**1.5
    kurtosis = float(np.mean(centred**4)) / variance**2
    return _or_none(skew), _or_none(kurtosis)



def sharpe_estimator_variance(sharpe: float, observations: int, skew: float,
                              kurtosis: float) -> float:
    """Variance of the per-period Sharpe estimate under non-normal returns (Mertens;
    Bailey & López de Prado 2012): (1 - skew*SR + (kurtosis-1)/4 * SR^2) / (n - 1)."""
    if observations < 2:
        raise ConfigError(f"the Sharpe variance needs at least 2 observations, got {observations}")
    return (1.0 - skew * sharpe + (kurtosis - 1.0) / 4.0 * sharpe**2) / (observations - 1)


def psr_from_moments(sharpe: float, observations: int, skew: float, kurtosis: float,
                     benchmark: float = 0.0) -> float | None:
    """P(true per-period Sharpe > benchmark). None if the variance term is not positive,
    which only a two-valued sample can give (kurtosis >= 1 + skew^2 always)."""
    for label, value in (("sharpe", sharpe), ("skew", skew), ("kurtosis", kurtosis),
                         ("benchmark", benchmark)):
        if not math.isfinite(value):
            raise ConfigError(f"{label} must be finite, got {value!r}")
    variance = sharpe_estimator_variance(sharpe, observations, skew, kurtosis)
    if variance <= 0.0:
        return None
    return float(norm.cdf((sharpe - benchmark) / math.sqrt(variance)))


def expected_max_sharpe(n_trials: int, sr_variance: float) -> float:
    """SR0 of the DSR: the expected maximum of `n_trials` Sharpe ratios with true value 0
    and variance `sr_variance` (per-period units); 0 for a single trial."""
    _check_trials(n_trials, sr_variance)
    if n_trials == 1:
        return 0.0
    gamma = float(np.euler_gamma)
    z = ((1.0 - gamma) * norm.ppf(1.0 - 1.0 / n_trials)
         + gamma * norm.ppf(1.0 - 1.0 / (n_trials * math.e)))
    return math.sqrt(sr_variance) * float(z)


def _check_trials(n_trials: int, sr_variance: float | None) -> None:
    if isinstance(n_trials, bool) or not isinstance(n_trials, numbers.Integral) or n_trials < 1:
        raise ConfigError(f"the number of trials must be an integer >= 1, got {n_trials!r}")
    if sr_variance is not None and (not math.isfinite(sr_variance) or sr_variance < 0):
        raise ConfigError(f"the variance of the trials' Sharpe ratios must be finite and "
                          f">= 0, got {sr_variance!r}")


def probabilistic_sharpe_ratio(returns: npt.ArrayLike, benchmark: float = 0.0) -> float | None:
    r = _returns(returns)
    sharpe = sharpe_per_period(r)
    skew, kurtosis = skew_and_kurtosis(r)
    if sharpe is None or skew is None or kurtosis is None:
        return None
    return psr_from_moments(sharpe, r.size, skew, kurtosis, benchmark)


def deflated_sharpe_ratio(returns: npt.ArrayLike, n_trials: int,
                          sr_trials_variance: float | None = None) -> float | None:
    """PSR against SR0 = expected_max_sharpe(n_trials, V). V is the variance of the trials'
    per-period Sharpe ratios; when not given, the estimator variance of this series' Sharpe
    stands in for it (what the trials' spread would be if all had true Sharpe 0 and this
    series' moments), so DSR = Phi(SR / sd(SR) - E[max of N standard normals])."""
    _check_trials(n_trials, sr_trials_variance)
    r = _returns(returns)
    sharpe = sharpe_per_period(r)
    skew, kurtosis = skew_and_kurtosis(r)
    if sharpe is None or skew is None or kurtosis is None:
        return None
    variance = sr_trials_variance
    if variance is None:
        variance = sharpe_estimator_variance(sharpe, r.size, skew, kurtosis)
        if variance <= 0.0:
            return None
    return psr_from_moments(sharpe, r.size, skew, kurtosis,
                            expected_max_sharpe(n_trials, variance))



def _drawdown_seconds(depth: Drawdown, timestamps: npt.ArrayLike, periods: int,
                      unit: TimestampUnit) -> tuple[float, float]:
    seconds = _timestamps_seconds(timestamps, unit)
    if seconds.size == periods:
        # One stamp per return (its period's end): the start point is one median step earlier.
        step = float(np.median(np.diff(seconds)))
        seconds = np.concatenate(([seconds[0] - step], seconds))
    elif seconds.size != periods + 1:
        raise DataError(f"{seconds.size} timestamps for {periods} returns: give one per "
                        "return or one per equity point (one more)")
    end = depth.peak_index + depth.duration_periods
    return (float(seconds[end] - seconds[depth.peak_index]),
            float(seconds[depth.trough_index] - seconds[depth.peak_index]))


def compute_metrics(returns: npt.ArrayLike, *, periods_per_year: float,
                    trade_pnls: npt.ArrayLike | None = None,
                    in_market: npt.ArrayLike | None = None,
                    timestamps: npt.ArrayLike | None = None, n_trials: int = 1,
                    sr_trials_variance: float | None = None,
                    timestamp_unit: TimestampUnit = "auto") -> dict[str, Any]:
    """Every metric as a flat, strict-JSON dict. `returns` needs at least one period;
    `in_market` has one flag per return (or per equity point), `timestamps` likewise."""
    r = _returns(returns)
    if r.size == 0:
        raise DataError("returns is empty: metrics need at least one period")
    ppy = _periods_per_year(periods_per_year)
    _check_trials(n_trials, sr_trials_variance)
    depth = drawdown(r)
    skew, kurtosis = skew_and_kurtosis(r)
    volatility = None
    if r.size >= 2:
        volatility = 0.0 if _is_constant(r) else _or_none(r.std(ddof=1) * math.sqrt(ppy))
    metrics: dict[str, Any] = {
        "periods": int(r.size), "periods_per_year": ppy,
        "total_return": _or_none(float(np.prod(1.0 + r)) - 1.0),
        "annual_return": annual_return(r, ppy), "volatility": volatility,
        "sharpe": sharpe_ratio(r, ppy), "sharpe_per_period": sharpe_per_period(r),
        "sortino": sortino_ratio(r, ppy), "calmar": calmar_ratio(r, ppy),
        "max_drawdown": depth.max_drawdown,
        "max_drawdown_duration_periods": depth.duration_periods,
        "max_drawdown_peak_to_trough_periods": depth.peak_to_trough_periods,
        "max_drawdown_recovered": depth.recovery_index is not None,
        "longest_drawdown_periods": depth.longest_underwater_periods,
        "max_drawdown_duration_s": None, "max_drawdown_peak_to_trough_s": None,
        "psr": probabilistic_sharpe_ratio(r), "n_trials": int(n_trials),
        "sr_trials_variance": sr_trials_variance,
        "dsr": deflated_sharpe_ratio(r, n_trials, sr_trials_variance),
        "skew": skew, "kurtosis": kurtosis, "exposure": None,
    }
    if timestamps is not None:
        duration_s, peak_to_trough_s = _drawdown_seconds(depth, timestamps, r.size,
                                                         timestamp_unit)
        metrics["max_drawdown_duration_s"] = duration_s
        metrics["max_drawdown_peak_to_trough_s"] = peak_to_trough_s
    if in_market is not None:
        flags_count = np.size(in_market)
        if flags_count not in (r.size, r.size + 1):
            raise DataError(f"{flags_count} in_market flags for {r.size} returns")
        metrics["exposure"] = exposure(in_market)
    if trade_pnls is None:
        metrics.update(dict.fromkeys(TRADE_STAT_KEYS))
    else:
        metrics.update(trade_stats(trade_pnls))
    return metrics
