"""Is a candidate's edge over a baseline real? Tests, block resampling, Holm correction.

Inputs are per-period simple returns of candidate and baseline. Paired (the default):
two series of equal length on the same timestamps, so period t of one belongs with
period t of the other. Unpaired: two independent samples of any lengths, such as
per-trade PnLs.

Tests (each returns a SignificanceResult; all are two-sided):

* Welch's t (scipy.stats.ttest_ind, equal_var=False) and Mann-Whitney U
  (scipy.stats.mannwhitneyu). Both treat every value as an independent draw, which
  autocorrelated or paired returns are not: conventional references, not the verdict.
* Block bootstrap of the difference in mean return and in annualised Sharpe ratio
  (candidate - baseline). Returns are autocorrelated, so whole blocks are resampled
  (engine.stats.bootstrap): circular blocks of a fixed length by default, or the
  stationary bootstrap's geometric lengths. Paired series are resampled with the SAME
  blocks, which keeps both their own dependence and the one between them; unpaired
  samples are resampled independently. CI: the percentile interval of the replicates.
  p-value, with theta-hat the estimate and theta*_r the R replicates:
      p = (1 + #{r : |theta*_r - theta-hat| >= |theta-hat|}) / (R + 1).
  The centred replicates theta* - theta-hat stand in for the law of theta-hat - theta,
  so under H0 (theta = 0) they are the law of theta-hat itself; p is the share of that
  law at least as far from 0 as the estimate (equivalently, 0 lies outside the symmetric
  basic interval theta-hat +- a quantile of |theta* - theta-hat| at levels below 1 - p).
  The +1s count the observed sample as one draw, so p is never 0.
* Permutation test of the difference in mean return. Paired: block sign flip. The
  per-period differences d = candidate - baseline are cut into consecutive blocks of
  the block length (the last one shorter); each resample swaps candidate and baseline
  in each block with probability 1/2 (negates that block's sum), and
  p = (1 + #{|mean d*| >= |mean d|}) / (R + 1). Whole blocks flip together so the
  dependence within a block is kept. H0: the two are exchangeable within blocks, which
  makes d symmetric around 0. Unpaired:
  label permutation (pool both samples, redraw which values are the candidate's), which
  assumes independent values.

Block length, when not given: twice the Politis & White (2004) automatic choice (with
Patton, Politis & White's 2009 correction) for the circular or stationary bootstrap,
computed on each series the statistics depend on (paired: the differences and both
series) and the largest used, rounded, from 1 to n / 20 (engine.stats.bootstrap).

`compare` runs them all, adjusts the p-values with Holm's step-down method, and names one
pre-declared verdict (`primary`): the permutation test, whose false-positive rate on
zero-edge data came closer to alpha than the bootstrap's (benchmarks/bench_stats.py
--calibrate).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import numpy.typing as npt

from engine.errors import ConfigError, DataError

if TYPE_CHECKING:
    from engine.stats.bootstrap import BlockMethod

Returns = npt.ArrayLike
F64 = npt.NDArray[np.float64]

MIN_RESAMPLES = 100
MIN_OBSERVATIONS = 3
_TIE = 1e-9  # relative slack so a replicate equal to the estimate but for rounding counts
_ZERO_VARIANCE = 1e-12  # relative to the largest square: below it a series is constant

NULLS = {
    "welch_t": "the mean returns of candidate and baseline are equal (values independent, "
               "variances may differ)",
    "mann_whitney_u": "a candidate return is as likely to exceed a baseline return as the "
                      "reverse (values independent)",
    "bootstrap_mean_difference": "the mean per-period return of candidate and baseline are "
                                 "equal",
    "bootstrap_sharpe_difference": "the annualised Sharpe ratios of candidate and baseline "
                                   "are equal",
    "block_sign_flip": "candidate and baseline are exchangeable within each block, so the "
                       "mean per-period return difference is zero",
    "label_permutation": "candidate and baseline values come from the same distribution",
}


@dataclass(frozen=True)
class SignificanceResult:
    """One test of candidate against baseline. estimate is candidate - baseline."""

    test: str
    null: str
    statistic: float
    p_value: float
    estimate: float
    n: int  # periods (paired) or candidate values (unpaired)
    n_baseline: int | None = None  # unpaired only
    ci: tuple[float, float] | None = None
    confidence: float | None = None
    resamples: int | None = None
    block_length: int | None = None
    seed: int | None = None
    method: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["ci"] = None if self.ci is None else list(self.ci)
        return out


class BootstrapResults(NamedTuple):
    mean_difference: SignificanceResult
    sharpe_difference: SignificanceResult


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm-Bonferroni step-down adjusted p-values, in the order given.

    With p sorted ascending, adjusted p_(i) = max over j <= i of min(1, (m - j + 1) p_(j)):
    non-decreasing in the sorted order, capped at 1. Rejecting where adjusted p <= alpha
    keeps the chance of any false rejection at most alpha, for any dependence.
    """
    p = np.asarray(pvalues, dtype=np.float64)
    if p.ndim != 1 or not np.all((p >= 0.0) & (p <= 1.0)):
        raise ConfigError("holm needs a flat list of p-values in [0, 1]")
    order = np.argsort(p, kind="stable")
    m = len(p)
    scaled = np.minimum(1.0, (m - np.arange(m)) * p[order])
    adjusted = np.empty(m)
    adjusted[order] = np.maximum.accumulate(scaled)
    return [float(x) for x in adjusted]


def welch_t_test(candidate: Returns, baseline: Returns) -> SignificanceResult:
    from scipy import stats

    c, b = _returns(candidate, "candidate"), _returns(baseline, "baseline")
    estimate = float(c.mean() - b.mean())
    if np.ptp(c) == 0.0 and np.ptp(b) == 0.0:  # scipy gives NaN: no spread to scale by
        t, p = (0.0, 1.0) if estimate == 0.0 else (math.copysign(math.inf, estimate), 0.0)
    else:
        res = stats.ttest_ind(c, b, equal_var=False)
        t, p = float(res.statistic), float(res.pvalue)
    return SignificanceResult("welch_t", NULLS["welch_t"], t, p, estimate, len(c), len(b))


def mann_whitney_u_test(candidate: Returns, baseline: Returns) -> SignificanceResult:
    from scipy import stats

    c, b = _returns(candidate, "candidate"), _returns(baseline, "baseline")
    res = stats.mannwhitneyu(c, b, alternative="two-sided")
    # The estimate is the probability of superiority minus 1/2: U / (n_c n_b) - 1/2.
    u = float(res.statistic)
    p = float(res.pvalue) if np.isfinite(res.pvalue) else 1.0  # all values tied
    return SignificanceResult("mann_whitney_u", NULLS["mann_whitney_u"], u, p,
                              u / (len(c) * len(b)) - 0.5, len(c), len(b))


def block_bootstrap(candidate: Returns, baseline: Returns, *, periods_per_year: float,
                    paired: bool = True, resamples: int = 10_000,
                    block_length: int | None = None, method: BlockMethod = "circular",
                    confidence: float = 0.95, seed: int = 0) -> BootstrapResults:
    """Bootstrap CIs and p-values of the differences in mean return and annualised Sharpe."""
    from engine.stats.bootstrap import (
        block_bootstrap_sums_nb,
        block_length_for,
        chunks,
        draw_keys,
        prefix_table,
        run_in_chunks,
    )

    c, b = _returns(candidate, "candidate"), _returns(baseline, "baseline")
    _check_resampling(resamples, seed)
    _check_fraction(confidence, "confidence")
    scale = _check_periods(periods_per_year)
    stationary = method == "stationary"
    calls = chunks(resamples)
    if paired:
        _check_paired(c, b)
        length = block_length_for([c - b, c, b], block_length, method)
        prefix = prefix_table(c, b)
        sums = np.empty((resamples, 4))
        run_in_chunks(partial(block_bootstrap_sums_nb, prefix, length, stationary), sums,
                      draw_keys(seed, calls))
        sums_c, sums_b = sums[:, :2], sums[:, 2:]
    else:
        length = block_length_for([c, b], block_length, method)
        keys = draw_keys(seed, 2 * calls)
        sums_c, sums_b = np.empty((resamples, 4)), np.empty((resamples, 4))
        for series, sums, own_keys in ((c, sums_c, keys[:calls]), (b, sums_b, keys[calls:])):
            run_in_chunks(partial(block_bootstrap_sums_nb, prefix_table(series), length,
                                  stationary), sums, own_keys)
    mean_c, sharpe_c = _moments(sums_c[:, 0], sums_c[:, 1], c, scale)
    mean_b, sharpe_b = _moments(sums_b[:, 0], sums_b[:, 1], b, scale)
    common = {"n": len(c), "n_baseline": None if paired else len(b), "confidence": confidence,
              "resamples": resamples, "block_length": length, "seed": seed,
              "method": f"{method} block bootstrap{', paired' if paired else ''}; "
                        "percentile CI; centred two-sided p"}
    mean_est = float(c.mean() - b.mean())
    sharpe_est = _sharpe(c, scale) - _sharpe(b, scale)
    return BootstrapResults(
        _bootstrap_result("bootstrap_mean_difference", mean_est, mean_c - mean_b, common),
        _bootstrap_result("bootstrap_sharpe_difference", sharpe_est, sharpe_c - sharpe_b,
                          common))


def block_sign_flip_test(candidate: Returns, baseline: Returns, *, resamples: int = 10_000,
                         block_length: int | None = None, seed: int = 0) -> SignificanceResult:
    """Paired permutation test of the mean difference, flipping whole blocks."""
    from engine.stats.bootstrap import (
        block_length_for,
        chunks,
        draw_keys,
        run_in_chunks,
        sign_flip_sums_nb,
    )

    c, b = _returns(candidate, "candidate"), _returns(baseline, "baseline")
    _check_paired(c, b)
    _check_resampling(resamples, seed)
    d = c - b
    length = block_length_for([d, c, b], block_length, "circular")
    block_sums = np.add.reduceat(d, np.arange(0, len(d), length))
    flipped = np.empty(resamples)
    run_in_chunks(partial(sign_flip_sums_nb, block_sums), flipped,
                  draw_keys(seed, chunks(resamples)))
    total = float(block_sums.sum())
    mean = total / len(d)
    return SignificanceResult("block_sign_flip", NULLS["block_sign_flip"], mean,
                              _p_value(np.abs(flipped), abs(total)), mean, len(d),
                              resamples=resamples, block_length=length, seed=seed,
                              method="sign flip of consecutive blocks of differences")


def label_permutation_test(candidate: Returns, baseline: Returns, *,
                           resamples: int = 10_000, seed: int = 0) -> SignificanceResult:
    """Unpaired permutation test of the difference in means (independent values)."""
    from engine.stats.bootstrap import (
        chunks,
        draw_keys,
        label_permutation_sums_nb,
        run_in_chunks,
    )

    c, b = _returns(candidate, "candidate"), _returns(baseline, "baseline")
    _check_resampling(resamples, seed)
    pooled = np.concatenate([c, b])
    total = float(pooled.sum())
    members = min(len(c), len(b))  # draw the smaller group: fewer shuffle steps
    sums = np.empty(resamples)
    # every call shuffles its own copy of the pool in place
    run_in_chunks(lambda key, rows: label_permutation_sums_nb(pooled.copy(), members, key,
                                                              rows),
                  sums, draw_keys(seed, chunks(resamples)))
    other = len(pooled) - members
    smaller, larger = sums / members, (total - sums) / other
    diffs = smaller - larger if len(c) <= len(b) else larger - smaller
    estimate = float(c.mean() - b.mean())
    return SignificanceResult("label_permutation", NULLS["label_permutation"], estimate,
                              _p_value(np.abs(diffs), abs(estimate)), estimate, len(c), len(b),
                              resamples=resamples, seed=seed,
                              method="label permutation of the pooled values")


def compare(candidate: Returns, baseline: Returns, *, periods_per_year: float,
            paired: bool = True, resamples: int = 10_000, seed: int = 0,
            alpha: float = 0.05, block_length: int | None = None,
            method: BlockMethod = "circular") -> dict[str, Any]:
    """Every test of candidate against baseline, Holm-adjusted, and the primary verdict.

    Each resampling test uses `seed` itself, so any one can be rerun alone with it.
    `primary` is the permutation test (block sign flip, or label permutation when
    unpaired), declared before the data are seen; its own p-value (not Holm's) decides,
    since it is the one test the verdict rests on. Rejection means p <= alpha.
    """
    _check_fraction(alpha, "alpha")
    boot = block_bootstrap(candidate, baseline, periods_per_year=periods_per_year,
                           paired=paired, resamples=resamples, block_length=block_length,
                           method=method, confidence=1.0 - alpha, seed=seed)
    if paired:
        permutation = block_sign_flip_test(candidate, baseline, resamples=resamples,
                                           block_length=block_length, seed=seed)
    else:
        permutation = label_permutation_test(candidate, baseline, resamples=resamples,
                                             seed=seed)
    tests = [welch_t_test(candidate, baseline), mann_whitney_u_test(candidate, baseline),
             boot.mean_difference, boot.sharpe_difference, permutation]
    adjusted = dict(zip([t.test for t in tests], holm([t.p_value for t in tests]),
                        strict=True))
    primary = permutation.to_dict()
    # A permutation test gives no interval; the bootstrap's, of the same estimate with the
    # same blocks, is shown beside it and labelled as such.
    primary.update(ci=list(boot.mean_difference.ci or ()), confidence=1.0 - alpha,
                   ci_from=boot.mean_difference.test, rejected=permutation.p_value <= alpha)
    return {
        "tests": [t.to_dict() for t in tests],
        "holm": {"adjusted": adjusted,
                 "rejected": {name: p <= alpha for name, p in adjusted.items()}},
        "alpha": alpha,
        "primary": primary,
    }


def _bootstrap_result(test: str, estimate: float, replicates: F64,
                      common: dict[str, Any]) -> SignificanceResult:
    tail = (1.0 - common["confidence"]) / 2.0
    low, high = np.quantile(replicates, [tail, 1.0 - tail])
    return SignificanceResult(test, NULLS[test], estimate,
                              _p_value(np.abs(replicates - estimate), abs(estimate)), estimate,
                              ci=(float(low), float(high)), **common)


def _p_value(distances: F64, observed: float) -> float:
    """(1 + #{distances >= observed}) / (R + 1), `distances` being |null replicate|.

    The slack lets a replicate equal to the observed value up to rounding count (the
    identity flip, say), as exact arithmetic would.
    """
    exceed = int(np.count_nonzero(distances >= observed * (1.0 - _TIE)))
    return (1.0 + exceed) / (len(distances) + 1.0)


def _moments(sums: F64, squares: F64, series: F64, scale: float) -> tuple[F64, F64]:
    """(mean, annualised Sharpe) of each resample from its sums of centred values."""
    n = len(series)
    mean = series.mean() + sums / n
    var = np.maximum(squares - sums * sums / n, 0.0) / (n - 1)
    return mean, _sharpe_of(mean, var, series) * scale


def _sharpe(series: F64, scale: float) -> float:
    """The annualised Sharpe ratio of the series itself: _moments of the identity resample."""
    centred = series - series.mean()
    return float(_moments(np.zeros(1), np.array([centred @ centred]), series, scale)[1][0])


def _sharpe_of(mean: F64, var: F64, series: F64) -> F64:
    """mean / std, and 0 where the variance is 0 up to rounding: a series that never
    varies has no risk to scale by and no edge the ratio could show."""
    floor = _ZERO_VARIANCE * float(np.max(series * series))
    out = np.zeros_like(mean)
    varies = var > floor
    out[varies] = mean[varies] / np.sqrt(var[varies])
    return out


def _returns(values: Returns, name: str) -> F64:
    try:
        x = np.ascontiguousarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise DataError(f"{name} returns are not numbers: {exc}") from None
    if x.ndim != 1:
        raise DataError(f"{name} returns must be one-dimensional, got shape {x.shape}")
    if len(x) < MIN_OBSERVATIONS:
        raise DataError(f"{name} has {len(x)} returns; the tests need at least "
                        f"{MIN_OBSERVATIONS}")
    if not np.all(np.isfinite(x)):
        raise DataError(f"{name} returns contain NaN or infinite values")
    return x


def _check_paired(c: F64, b: F64) -> None:
    if len(c) != len(b):
        raise DataError(f"paired series must have equal lengths (same timestamps), got "
                        f"{len(c)} and {len(b)}")


def _check_resampling(resamples: int, seed: int) -> None:
    if isinstance(resamples, bool) or not isinstance(resamples, int) \
            or resamples < MIN_RESAMPLES:
        raise ConfigError(f"resamples must be an integer >= {MIN_RESAMPLES}, got {resamples!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"seed must be a non-negative integer, got {seed!r}")


def _check_fraction(value: float, name: str) -> None:
    if not 0.0 < value < 1.0:
        raise ConfigError(f"{name} must be strictly between 0 and 1, got {value!r}")


def _check_periods(periods_per_year: float) -> float:
    if not (math.isfinite(periods_per_year) and periods_per_year > 0):
        raise ConfigError(f"periods_per_year must be positive, got {periods_per_year!r}")
    return math.sqrt(periods_per_year)
