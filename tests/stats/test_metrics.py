"""engine.stats.metrics against empyrical, hand-written formulas and worked examples.

Skewness and kurtosis in the hand computations are POPULATION moments (divide by n, kurtosis
not excess), as Bailey & López de Prado use them; the Sharpe ratio in PSR/DSR is the
per-period one, mean / std(ddof=1).
"""

from __future__ import annotations

import json
import math

import empyrical
import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import norm

from engine.errors import ConfigError, DataError
from engine.stats import metrics as m

PERIODS_PER_YEAR = [525_600, 8_760, 365]  # 1-minute, hourly and daily bars, 24/7


def _series() -> dict[str, npt.NDArray[np.float64]]:
    rng = np.random.default_rng(20240611)
    drift = rng.normal(0.0004, 0.01, 2_000)
    crash = rng.normal(0.001, 0.004, 300)
    crash[120:124] = [-0.30, -0.15, 0.05, -0.20]
    short = np.array([0.01, -0.02, 0.015])
    zeros = np.where(rng.random(500) < 0.7, 0.0, rng.normal(0.0, 0.002, 500))
    return {"drift": drift, "crash": crash, "short": short, "zeros": zeros}


SERIES = _series()


def _none_if_nan(value: float) -> float | None:
    return None if not math.isfinite(value) else value


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")  # empyrical's
@pytest.mark.parametrize("ppy", PERIODS_PER_YEAR)
@pytest.mark.parametrize("name", sorted(SERIES))
def test_matches_empyrical(name: str, ppy: int) -> None:
    r = SERIES[name]
    assert m.sharpe_ratio(r, ppy) == pytest.approx(
        empyrical.sharpe_ratio(r, period="daily", annualization=ppy), rel=1e-9, abs=1e-9)
    assert m.sortino_ratio(r, ppy) == pytest.approx(
        empyrical.sortino_ratio(r, annualization=ppy), rel=1e-9, abs=1e-9)
    assert m.max_drawdown(r) == pytest.approx(-empyrical.max_drawdown(r), rel=1e-9, abs=1e-9)
    assert m.max_drawdown(r) > 0
    expected_calmar = _none_if_nan(empyrical.calmar_ratio(r, annualization=ppy))
    calmar = m.calmar_ratio(r, ppy)
    assert (calmar is None) == (expected_calmar is None)
    if expected_calmar is not None:
        assert calmar == pytest.approx(expected_calmar, rel=1e-9, abs=1e-9)
    metrics = m.compute_metrics(r, periods_per_year=ppy)
    assert metrics["volatility"] == pytest.approx(
        empyrical.annual_volatility(r, annualization=ppy), rel=1e-9, abs=1e-9)
    expected_annual = _none_if_nan(empyrical.annual_return(r, annualization=ppy))
    assert (metrics["annual_return"] is None) == (expected_annual is None)
    if expected_annual is not None:
        assert metrics["annual_return"] == pytest.approx(expected_annual, rel=1e-9, abs=1e-9)


def test_calmar_comparison_is_not_vacuous() -> None:
    # At daily annualisation no series overflows, so Calmar is compared as a number.
    for r in SERIES.values():
        assert m.calmar_ratio(r, 365) is not None


def test_constant_and_short_series_give_none_not_nan() -> None:
    flat = m.compute_metrics(np.full(50, 0.001), periods_per_year=365, trade_pnls=[])
    assert flat["sharpe"] is None and flat["psr"] is None and flat["dsr"] is None
    assert flat["sortino"] is None and flat["calmar"] is None and flat["skew"] is None
    assert flat["volatility"] == 0.0 and flat["max_drawdown"] == 0.0
    assert flat["trades"] == 0 and flat["win_rate"] is None and flat["profit_factor"] is None
    one = m.compute_metrics([-0.1], periods_per_year=365)
    assert one["sharpe"] is None and one["volatility"] is None
    assert one["max_drawdown"] == pytest.approx(0.1) and one["trades"] is None
    for result in (flat, one):
        json.dumps(result, allow_nan=False)  # raises on NaN or inf
    # A short, fast-bar run's compounded annual return overflows: None, never inf.
    assert m.annual_return([0.05, 0.04], 525_600) is None


def test_compute_metrics_keys_and_consistency() -> None:
    r = SERIES["crash"]
    result = m.compute_metrics(r, periods_per_year=8_760, trade_pnls=[1.0, -2.0, 3.0],
                               in_market=np.arange(r.size) % 4 == 0, n_trials=20)
    required = {"periods", "periods_per_year", "total_return", "annual_return", "volatility",
                "sharpe", "sortino", "calmar", "max_drawdown", "max_drawdown_duration_periods",
                "max_drawdown_duration_s", "psr", "dsr", "n_trials", "skew", "kurtosis",
                "exposure", "trades", "wins", "win_rate", "win_rate_ci", "profit_factor",
                "expectancy", "avg_win", "avg_loss", "sqn"}
    assert required <= set(result)
    assert set(m.trade_stats([1.0])) == set(m.TRADE_STAT_KEYS)
    assert result["periods"] == r.size
    assert result["total_return"] == pytest.approx(np.prod(1 + r) - 1, rel=1e-12)
    assert result["exposure"] == pytest.approx(0.25)
    assert result["psr"] == m.probabilistic_sharpe_ratio(r)
    assert result["dsr"] == m.deflated_sharpe_ratio(r, 20)
    assert result["dsr"] < result["psr"]
    json.dumps(result, allow_nan=False)


# ------------------------------------------------------------------------- drawdown


def test_drawdown_durations_by_hand() -> None:
    # Points 0..7. First fall: peak 1 (110) -> 99, recovered at 4 (111): 3 periods
    # underwater. Deepest: peak 5 (121) -> 96.8 = -20% at 6, never recovered by point 7.
    equity = [100, 110, 99, 105, 111, 121, 96.8, 115]
    r = m.returns_from_equity(equity)
    dd = m.drawdown(r)
    assert dd.max_drawdown == pytest.approx(0.2, abs=1e-12)
    assert (dd.peak_index, dd.trough_index, dd.recovery_index) == (5, 6, None)
    assert dd.duration_periods == 2 and dd.peak_to_trough_periods == 1
    assert dd.longest_underwater_periods == 3
    # Irregular equity-point timestamps: the durations use the real clock, not a bar size.
    stamps = [0, 60, 120, 180, 240, 300, 900, 960]
    result = m.compute_metrics(r, periods_per_year=525_600, timestamps=stamps)
    assert result["max_drawdown_duration_s"] == 660.0
    assert result["max_drawdown_peak_to_trough_s"] == 600.0
    assert result["max_drawdown_recovered"] is False
    # One stamp per return, in ms: the start point sits one median step before the first.
    per_return_ms = [1_700_000_000_000 + 60_000 * i for i in range(1, 8)]
    result = m.compute_metrics(r, periods_per_year=525_600, timestamps=per_return_ms)
    assert result["max_drawdown_duration_s"] == 120.0
    # Peak at the start point (before the first stamped return): 3 periods of 60 s.
    falls_first = m.returns_from_equity([100, 90, 95, 101])
    result = m.compute_metrics(falls_first, periods_per_year=525_600, timestamps=[60, 120, 180])
    assert result["max_drawdown_duration_s"] == 180.0
    assert result["max_drawdown_peak_to_trough_s"] == 60.0
    assert result["max_drawdown_recovered"] is True


def test_recovered_drawdown_and_flat_top() -> None:
    dd = m.drawdown(m.returns_from_equity([100, 100, 90, 95, 101, 102]))
    # The flat top at points 0-1 is not a loss: the drawdown starts at point 1.
    assert (dd.peak_index, dd.trough_index, dd.recovery_index) == (1, 2, 4)
    assert dd.duration_periods == 3 and dd.peak_to_trough_periods == 1
    assert dd.max_drawdown == pytest.approx(0.1)
    assert m.drawdown([0.01, 0.02]) == m.Drawdown(0.0, 0, 0, 0, 0, 0, 0)


# ------------------------------------------------------------------------ PSR / DSR


def _hand_moments(r: npt.NDArray[np.float64]) -> tuple[float, float, float]:
    n = r.size
    mean = r.sum() / n
    sample_sd = math.sqrt(((r - mean) ** 2).sum() / (n - 1))
    pop_var = ((r - mean) ** 2).sum() / n
    skew = ((r - mean) ** 3).sum() / n / pop_var**1.5
    kurt = ((r - mean) ** 4).sum() / n / pop_var**2
    return mean / sample_sd, skew, kurt


def _hand_psr(sr: float, n: int, skew: float, kurt: float, sr_star: float) -> float:
    z = (sr - sr_star) * math.sqrt(n - 1) / math.sqrt(1 - skew * sr + (kurt - 1) / 4 * sr**2)
    return float(norm.cdf(z))


def _hand_sr0(variance: float, n_trials: int) -> float:
    g = 0.5772156649015329  # Euler–Mascheroni
    return math.sqrt(variance) * ((1 - g) * norm.ppf(1 - 1 / n_trials)
                                  + g * norm.ppf(1 - 1 / (n_trials * math.e)))


@pytest.mark.parametrize("name", ["drift", "crash", "zeros"])
def test_psr_and_dsr_match_the_papers_formulas(name: str) -> None:
    r = SERIES[name]
    sr, skew, kurt = _hand_moments(r)
    assert m.skew_and_kurtosis(r) == pytest.approx((skew, kurt), rel=1e-9)
    assert m.probabilistic_sharpe_ratio(r) == pytest.approx(_hand_psr(sr, r.size, skew, kurt, 0),
                                                            abs=1e-12)
    assert m.probabilistic_sharpe_ratio(r, 0.02) == pytest.approx(
        _hand_psr(sr, r.size, skew, kurt, 0.02), abs=1e-12)
    # Given variance of the trials' Sharpe ratios.
    expected = _hand_psr(sr, r.size, skew, kurt, _hand_sr0(0.0004, 50))
    assert m.deflated_sharpe_ratio(r, 50, 0.0004) == pytest.approx(expected, abs=1e-12)
    # Fallback: the estimator variance of this series' Sharpe ratio.
    fallback = (1 - skew * sr + (kurt - 1) / 4 * sr**2) / (r.size - 1)
    expected = _hand_psr(sr, r.size, skew, kurt, _hand_sr0(fallback, 7))
    assert m.deflated_sharpe_ratio(r, 7) == pytest.approx(expected, abs=1e-12)
    # A single trial deflates nothing.
    assert m.deflated_sharpe_ratio(r, 1) == m.probabilistic_sharpe_ratio(r)


def test_psr_worked_example() -> None:
    # SR = 0.1 per period, n = 101, skew -0.5, kurtosis 4:
    # variance term 1 + 0.05 + 0.75 * 0.01 = 1.0575; z = 0.1 * 10 / sqrt(1.0575) = 0.97243;
    # PSR = Phi(0.97243) = 0.83458.
    assert m.sharpe_estimator_variance(0.1, 101, -0.5, 4.0) == pytest.approx(1.0575 / 100)
    assert m.psr_from_moments(0.1, 101, -0.5, 4.0) == pytest.approx(0.83458, abs=1e-5)


def test_dsr_worked_example_from_the_2014_paper() -> None:
    # Bailey & López de Prado (2014), section 5: annualised SR 2.5 over T = 1250 daily
    # observations (250 a year), N = 100 trials with annualised V[SR] = 1/2, skew -3,
    # kurtosis 10. Per period: SR = 2.5 / sqrt(250) = 0.1581, V = 0.5 / 250 = 0.002.
    # E[max Z] = 0.4228 * 2.3263 + 0.5772 * 2.6802 = 2.5306, SR0 = sqrt(0.002) * 2.5306
    # = 0.1132; z = (0.1581 - 0.1132) * sqrt(1249) / sqrt(1.5306) = 1.2838; DSR = 0.9004.
    sr = 2.5 / math.sqrt(250)
    sr0 = m.expected_max_sharpe(100, 0.5 / 250)
    assert sr0 == pytest.approx(0.1132, abs=1e-4)
    assert m.psr_from_moments(sr, 1250, -3.0, 10.0, sr0) == pytest.approx(0.9004, abs=1e-4)
    assert m.expected_max_sharpe(1, 0.5) == 0.0


# ---------------------------------------------------------------------------- trades


def test_wilson_interval() -> None:
    low, high = m.wilson_interval(8, 10)
    assert low == pytest.approx(0.4902, abs=1e-4) and high == pytest.approx(0.9433, abs=1e-4)
    for wins, n, conf in [(3, 17, 0.95), (50, 100, 0.9), (1, 2, 0.99)]:
        z = norm.ppf(1 - (1 - conf) / 2)
        p = wins / n
        centre = (p + z**2 / (2 * n)) / (1 + z**2 / n)
        half = z * math.sqrt(p * (1 - p) / n + z**2 / (4 * n**2)) / (1 + z**2 / n)
        assert m.wilson_interval(wins, n, conf) == pytest.approx((centre - half, centre + half))
    assert m.wilson_interval(0, 10)[0] == 0.0 and m.wilson_interval(10, 10)[1] == 1.0
    with pytest.raises(ConfigError):
        m.wilson_interval(3, 2)


def test_trade_stats_by_hand() -> None:
    stats = m.trade_stats([10.0, -5.0, 20.0, -5.0, 0.0])
    assert (stats["trades"], stats["wins"], stats["losses"]) == (5, 2, 2)
    assert stats["win_rate"] == 0.4
    assert stats["profit_factor"] == pytest.approx(3.0)
    assert stats["expectancy"] == pytest.approx(4.0)
    assert (stats["avg_win"], stats["avg_loss"]) == (15.0, -5.0)
    assert stats["payoff_ratio"] == pytest.approx(3.0)
    # deviations 6, -9, 16, -9, -4: sum of squares 470, std = sqrt(470 / 4)
    assert stats["sqn"] == pytest.approx(math.sqrt(5) * 4.0 / math.sqrt(117.5))
    assert stats["win_rate_ci"] == pytest.approx(list(m.wilson_interval(2, 5)))
    no_losses = m.trade_stats([1.0, 2.0])
    assert no_losses["profit_factor"] is None and no_losses["avg_loss"] is None


def test_exposure_from_trades() -> None:
    stamps = np.arange(10) * 60
    held = m.in_market_from_trades(stamps, [60, 300], [180, 310])
    assert held.tolist() == [False, True, True, False, False, True] + [False] * 4
    assert m.exposure(held) == pytest.approx(0.3)
    assert m.exposure([0, 1, 1, 1]) == 0.75
    with pytest.raises(DataError, match="position 1"):
        m.exposure([0, 2])


# ------------------------------------------------------------------ inputs and errors


def test_periods_per_year_and_returns_from_equity() -> None:
    assert m.periods_per_year_from_timestamps(np.arange(100) * 60) == 525_600
    ms = 1_700_000_000_000 + np.arange(100) * 3_600_000
    assert m.periods_per_year_from_timestamps(ms) == 8_760
    gappy = np.concatenate([np.arange(50), np.arange(60, 110)]) * 86_400
    assert m.periods_per_year_from_timestamps(gappy) == 365  # the median ignores the gap
    assert m.returns_from_equity([100, 110, 99]) == pytest.approx([0.1, -0.1])
    with pytest.raises(DataError, match="position 1"):
        m.returns_from_equity([100, 0, 10])
    with pytest.raises(DataError, match="strictly increase"):
        m.periods_per_year_from_timestamps([0, 60, 60])


def test_bad_inputs_are_named() -> None:
    with pytest.raises(DataError, match="position 2"):
        m.compute_metrics([0.01, 0.0, math.nan], periods_per_year=365)
    with pytest.raises(DataError, match="position 0"):
        m.sharpe_ratio([math.inf, 0.0], 365)
    with pytest.raises(DataError, match="position 1"):
        m.max_drawdown([0.1, -1.5])
    with pytest.raises(DataError, match="empty"):
        m.compute_metrics([], periods_per_year=365)
    with pytest.raises(ConfigError):
        m.compute_metrics([0.01, 0.02], periods_per_year=0)
    with pytest.raises(ConfigError):
        m.compute_metrics([0.01, 0.02], periods_per_year=365, n_trials=0)
    with pytest.raises(DataError, match="timestamps"):
        m.compute_metrics([0.01, 0.02], periods_per_year=365, timestamps=[0, 60, 120, 180])


# ------------------------------------------------------------------------- properties

returns_lists = st.lists(st.floats(-0.99, 1.0, allow_nan=False), min_size=2, max_size=60)
varied = returns_lists.filter(lambda xs: max(xs) - min(xs) > 1e-6)


@settings(max_examples=150, deadline=None)
@given(returns_lists)
def test_max_drawdown_is_a_fraction(xs: list[float]) -> None:
    assert 0.0 <= m.max_drawdown(xs) <= 1.0


small_returns = st.lists(st.floats(-0.45, 0.45), min_size=2, max_size=60).filter(
    lambda xs: max(xs) - min(xs) > 1e-6)


@settings(max_examples=100, deadline=None)
@given(small_returns, st.floats(0.01, 2.0))
def test_sharpe_is_scale_free_and_odd(xs: list[float], scale: float) -> None:
    # Returns stay above -100% after scaling or negation, so every series is valid.
    r = np.array(xs)
    sharpe = m.sharpe_ratio(r, 365)
    assert sharpe is not None
    assert m.sharpe_ratio(r * scale, 365) == pytest.approx(sharpe, rel=1e-7, abs=1e-9)
    assert m.sharpe_ratio(-r, 365) == pytest.approx(-sharpe, rel=1e-9, abs=1e-12)


@settings(max_examples=150, deadline=None)
@given(st.floats(-1.0, 1.0), st.floats(-1.0, 1.0), st.integers(2, 5_000),
       st.floats(-1.0, 1.0), st.floats(0.0, 10.0), st.floats(0.001, 1.0))
def test_psr_is_a_probability_monotone_in_sr(sr: float, other: float, n: int, skew: float,
                                            extra_kurtosis: float, raise_by: float) -> None:
    # Moments that a sample can have: kurtosis >= 1 + skew^2. With |skew * SR| < 2, SR / sd(SR)
    # increases with SR, so PSR must too.
    kurtosis = 1.0 + skew**2 + extra_kurtosis
    low, high = sorted((sr, other))
    psr_low = m.psr_from_moments(low, n, skew, kurtosis)
    psr_high = m.psr_from_moments(high, n, skew, kurtosis)
    assert psr_low is not None and psr_high is not None
    assert 0.0 <= psr_low <= psr_high <= 1.0
    # A higher benchmark is harder to beat.
    harder = m.psr_from_moments(high, n, skew, kurtosis, benchmark=raise_by)
    assert harder is not None and harder <= psr_high


def _brute_force_drawdown(xs: list[float]) -> tuple[float, int, int]:
    """Deepest drawdown, its peak-to-recovery-or-end length, and the longest underwater
    stretch, by walking the wealth points one by one."""
    wealth = [1.0]
    for x in xs:
        wealth.append(wealth[-1] * (1 + x))
    deepest, deepest_length, longest = 0.0, 0, 0
    peak_index, peak = 0, wealth[0]
    for i, w in enumerate(wealth):
        if w >= peak:
            peak_index, peak = i, w
            continue
        depth = (peak - w) / peak
        later = [j for j in range(i, len(wealth)) if wealth[j] >= peak]
        length = (later[0] if later else len(wealth) - 1) - peak_index
        longest = max(longest, length)
        if depth > deepest:
            deepest, deepest_length = depth, length
    return deepest, deepest_length, longest


@settings(max_examples=150, deadline=None)
@given(st.lists(st.sampled_from([-0.5, -0.1, 0.0, 0.05, 0.1, 0.25]), min_size=1, max_size=30))
def test_drawdown_matches_a_brute_force_walk(xs: list[float]) -> None:
    dd = m.drawdown(xs)
    deepest, length, longest = _brute_force_drawdown(xs)
    assert dd.max_drawdown == pytest.approx(deepest, abs=1e-12)
    assert dd.longest_underwater_periods == longest
    if deepest > 1e-9:  # ties in depth are resolved to the first trough by both
        assert dd.duration_periods == length


@settings(max_examples=100, deadline=None)
@given(varied, st.integers(2, 10_000), st.one_of(st.none(), st.floats(0.0, 1.0)))
def test_dsr_never_exceeds_psr(xs: list[float], n_trials: int, variance: float | None) -> None:
    psr = m.probabilistic_sharpe_ratio(xs)
    dsr = m.deflated_sharpe_ratio(xs, n_trials, variance)
    assert psr is not None and dsr is not None
    assert dsr <= psr


@settings(max_examples=50, deadline=None)
@given(st.integers(0, 2_000_000_000), st.integers(2, 500), st.sampled_from([1, 1000]))
def test_regular_minute_spacing_is_525600_a_year(start: int, count: int, unit: int) -> None:
    stamps = (start + np.arange(count) * 60) * unit
    assert m.periods_per_year_from_timestamps(stamps, unit="ms" if unit == 1000 else "s") \
        == 525_600
