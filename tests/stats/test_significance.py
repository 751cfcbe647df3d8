"""Significance tests of candidate against baseline: agreement with scipy, Holm by hand,
the resampling kernels against exact enumeration, CIs and p-values on data with a known
shift, determinism, pairing, the automatic block length, and input validation.

Resample counts are small (a few thousand at most) to keep the file fast; every test is
seeded, so each outcome below is fixed, not a matter of luck.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import numpy.typing as npt
import pytest
from scipy import stats

from engine.errors import ConfigError, DataError
from engine.stats import significance as sig
from engine.stats.bootstrap import BlockMethod, block_length_for, politis_white

PPY = 525_600.0  # minute bars in a 365-day year
R = 2_000


def ar1(phi: float, n: int, seed: int, scale: float = 1e-3) -> npt.NDArray[np.float64]:
    rng = np.random.default_rng(seed)
    shocks = rng.normal(scale=scale, size=n)
    x = np.empty(n)
    x[0] = shocks[0] / math.sqrt(1.0 - phi * phi)
    for t in range(1, n):
        x[t] = phi * x[t - 1] + shocks[t]
    return x


def test_welch_and_mann_whitney_agree_with_scipy() -> None:
    rng = np.random.default_rng(1)
    c, b = rng.normal(0.1, 1.0, 300), rng.normal(0.0, 2.0, 250)
    welch = sig.welch_t_test(c, b)
    want = stats.ttest_ind(c, b, equal_var=False)
    assert welch.statistic == pytest.approx(want.statistic, rel=1e-12)
    assert welch.p_value == pytest.approx(want.pvalue, rel=1e-12)
    assert welch.estimate == pytest.approx(c.mean() - b.mean())
    mwu = sig.mann_whitney_u_test(c, b)
    want = stats.mannwhitneyu(c, b, alternative="two-sided")
    assert mwu.statistic == pytest.approx(want.statistic)
    assert mwu.p_value == pytest.approx(want.pvalue, rel=1e-12)
    assert (welch.n, welch.n_baseline) == (300, 250)


def test_constant_samples_give_defined_results() -> None:
    zeros = np.zeros(50)
    assert sig.welch_t_test(zeros, zeros).p_value == 1.0
    assert sig.welch_t_test(zeros + 1.0, zeros).p_value == 0.0
    assert sig.mann_whitney_u_test(zeros, zeros).p_value == 1.0
    boot = sig.block_bootstrap(zeros, zeros, periods_per_year=PPY, resamples=200)
    assert boot.mean_difference.p_value == 1.0
    assert boot.sharpe_difference.estimate == 0.0  # no variation: Sharpe defined as 0


def test_holm_hand_example() -> None:
    # sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1 = 0.02, 0.03, 0.06, 0.04; the last is
    # raised to 0.06 to keep the adjusted values monotone; back in the given order:
    assert sig.holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    # capped at 1: 0.3 * 3 = 0.9, 0.6 * 2 = 1.2 -> 1, 0.9 * 1 -> max(1, 0.9) = 1
    assert sig.holm([0.3, 0.9, 0.6]) == pytest.approx([0.9, 1.0, 1.0])
    assert sig.holm([0.2]) == [0.2]
    assert sig.holm([]) == []


@pytest.mark.parametrize("bad", [[0.1, 1.5], [-0.1], [float("nan")], [[0.1, 0.2]]])
def test_holm_rejects_invalid_p_values(bad: list[float]) -> None:
    with pytest.raises(ConfigError):
        sig.holm(bad)


def test_sign_flip_matches_exact_enumeration() -> None:
    d = np.array([0.5, 0.3, -0.2, 0.4, 0.1, 0.6, -0.3, 0.2, 0.7, 0.1, 0.05, 0.3])
    block_sums = d.reshape(6, 2).sum(axis=1)
    signs = np.array(list(itertools.product([-1.0, 1.0], repeat=6)))
    exact = np.mean(np.abs(signs @ block_sums) >= abs(block_sums.sum()) - 1e-12)
    got = sig.block_sign_flip_test(d, np.zeros(12), resamples=20_000, block_length=2, seed=3)
    assert got.p_value == pytest.approx(exact, abs=0.01)


def test_label_permutation_matches_exact_enumeration() -> None:
    c, b = np.array([1.0, 2.5, 3.0, 4.2]), np.array([0.1, 0.4, 1.1, 2.0, 0.3])
    pooled = np.concatenate([c, b])
    observed = abs(c.mean() - b.mean())
    diffs = [pooled[list(s)].mean() - np.delete(pooled, list(s)).mean()
             for s in itertools.combinations(range(9), 4)]
    exact = np.mean(np.abs(diffs) >= observed - 1e-12)
    got = sig.label_permutation_test(c, b, resamples=20_000, seed=5)
    assert got.p_value == pytest.approx(exact, abs=0.01)


@pytest.mark.parametrize("method", ["circular", "stationary"])
def test_bootstrap_spread_matches_theory_for_iid_data(method: BlockMethod) -> None:
    # With blocks of one the resampled mean has variance var_pop / n.
    x = np.random.default_rng(2).normal(size=400)
    boot = sig.block_bootstrap(x, np.zeros(400), periods_per_year=1.0, resamples=4_000,
                               block_length=1, method=method)
    low, high = boot.mean_difference.ci or (0.0, 0.0)
    width = 2 * stats.norm.ppf(0.975) * x.std() / math.sqrt(400)
    assert high - low == pytest.approx(width, rel=0.08)


def test_bootstrap_ci_covers_a_known_shift_and_excludes_zero_when_large() -> None:
    base = ar1(0.3, 3000, seed=11)
    noise = ar1(0.3, 3000, seed=12)
    small, large = 2e-5, 5e-4
    for shift in (small, large):
        boot = sig.block_bootstrap(base + noise + shift, base, periods_per_year=PPY,
                                   resamples=R, seed=4)
        low, high = boot.mean_difference.ci or (0.0, 0.0)
        assert low <= shift <= high
    assert low > 0.0  # the large shift
    assert boot.mean_difference.p_value == 1.0 / (R + 1)
    assert boot.sharpe_difference.ci is not None and boot.sharpe_difference.ci[0] > 0.0
    flip = sig.block_sign_flip_test(base + noise + large, base, resamples=R, seed=4)
    assert flip.p_value == 1.0 / (R + 1)


def test_p_values_are_not_small_without_a_shift() -> None:
    # Under the null p is uniform: over ten zero-edge pairs, few small p-values and a
    # median near 1/2 (the exact counts are fixed by the seeds).
    boot_p, flip_p = [], []
    for data_seed in range(10):
        c, b = ar1(0.3, 2000, seed=data_seed), ar1(0.3, 2000, seed=data_seed + 100)
        boot = sig.block_bootstrap(c, b, periods_per_year=PPY, resamples=999, seed=1)
        boot_p.append(boot.mean_difference.p_value)
        flip_p.append(sig.block_sign_flip_test(c, b, resamples=999, seed=1).p_value)
    for ps in (boot_p, flip_p):
        assert sum(p < 0.05 for p in ps) <= 2
        assert np.median(ps) > 0.2


def test_results_are_deterministic_for_a_seed() -> None:
    c, b = ar1(0.2, 1500, seed=31), ar1(0.2, 1500, seed=32)
    one = sig.compare(c, b, periods_per_year=PPY, resamples=500, seed=7)
    two = sig.compare(c, b, periods_per_year=PPY, resamples=500, seed=7)
    other = sig.compare(c, b, periods_per_year=PPY, resamples=500, seed=8)
    assert one == two
    assert one["tests"][2]["ci"] != other["tests"][2]["ci"]
    assert all(t["seed"] == 7 for t in one["tests"][2:])


def test_results_do_not_depend_on_the_thread_count(monkeypatch: pytest.MonkeyPatch) -> None:
    c, b = ar1(0.2, 800, seed=33), ar1(0.2, 800, seed=34)
    resamples = 2_500  # three chunks, the last one partial

    def run() -> list[object]:
        boot = sig.block_bootstrap(c, b, periods_per_year=PPY, resamples=resamples, seed=2)
        return [boot, sig.block_sign_flip_test(c, b, resamples=resamples, seed=2),
                sig.label_permutation_test(c, b, resamples=resamples, seed=2)]

    threaded = run()
    monkeypatch.setattr("os.cpu_count", lambda: 1)
    assert run() == threaded


def test_paired_resampling_keeps_pairs() -> None:
    # candidate = baseline + k: every resample of the differences is k exactly (same blocks
    # for both), while resampling them independently would spread the difference out.
    baseline = ar1(0.4, 2000, seed=41)
    k = 3e-4
    paired = sig.block_bootstrap(baseline + k, baseline, periods_per_year=PPY, resamples=R)
    low, high = paired.mean_difference.ci or (0.0, 0.0)
    assert low == pytest.approx(k, abs=1e-15) and high == pytest.approx(k, abs=1e-15)
    assert paired.sharpe_difference.ci is not None
    assert paired.sharpe_difference.ci[1] - paired.sharpe_difference.ci[0] > 0.0
    unpaired = sig.block_bootstrap(baseline + k, baseline, periods_per_year=PPY,
                                   resamples=R, paired=False)
    low, high = unpaired.mean_difference.ci or (0.0, 0.0)
    assert high - low > 1e-5


def test_automatic_block_length_is_sane() -> None:
    iid = np.random.default_rng(51).normal(size=5000)
    weak, strong = ar1(0.3, 5000, seed=52), ar1(0.8, 5000, seed=53)
    lengths = [block_length_for([x], None, "circular") for x in (iid, weak, strong)]
    assert 1 <= lengths[0] <= 6
    assert lengths[0] < lengths[1] < lengths[2] <= 5000 // 20
    assert politis_white(np.full(100, 0.01)) == (1.0, 1.0)
    # the paired length is the largest over the differences and both series
    boot = sig.block_bootstrap(strong, strong + iid * 1e-3, periods_per_year=PPY,
                               resamples=200)
    assert boot.mean_difference.block_length == lengths[2]
    assert block_length_for([iid], 17, "stationary") == 17


def test_compare_structure_and_holm() -> None:
    c, b = ar1(0.2, 1000, seed=61) + 1e-4, ar1(0.2, 1000, seed=62)
    out = sig.compare(c, b, periods_per_year=PPY, resamples=500, alpha=0.1)
    names = [t["test"] for t in out["tests"]]
    assert names == ["welch_t", "mann_whitney_u", "bootstrap_mean_difference",
                     "bootstrap_sharpe_difference", "block_sign_flip"]
    assert list(out["holm"]["adjusted"].values()) == sig.holm(
        [t["p_value"] for t in out["tests"]])
    assert out["alpha"] == 0.1
    for t in out["tests"]:
        assert t["null"] and 0.0 < t["p_value"] <= 1.0 and t["n"] == 1000
    primary = out["primary"]
    assert primary["test"] == "block_sign_flip"
    assert primary["ci"] == out["tests"][2]["ci"] and primary["confidence"] == pytest.approx(0.9)
    assert primary["rejected"] == (primary["p_value"] <= 0.1)
    assert out["tests"][0]["p_value"] == pytest.approx(
        stats.ttest_ind(c, b, equal_var=False).pvalue)


def test_compare_unpaired_samples_of_different_lengths() -> None:
    rng = np.random.default_rng(71)
    trades_c, trades_b = rng.normal(1.0, 3.0, 120), rng.normal(0.0, 3.0, 80)
    out = sig.compare(trades_c, trades_b, periods_per_year=1.0, paired=False, resamples=1_000)
    assert out["primary"]["test"] == "label_permutation"
    assert out["primary"]["p_value"] < 0.05 and out["primary"]["rejected"]
    boot = out["tests"][2]
    assert (boot["n"], boot["n_baseline"]) == (120, 80)
    assert boot["ci"][0] < 1.0 < boot["ci"][1]


@pytest.mark.parametrize(("candidate", "baseline"), [
    ([0.1, float("nan"), 0.2, 0.3], [0.0, 0.1, 0.2, 0.3]),
    ([0.1, 0.2], [0.0, 0.1]),  # too short
    (np.zeros((4, 2)), np.zeros((4, 2))),
    (["a", "b", "c"], [0.0, 0.1, 0.2]),
    (np.zeros(10), np.zeros(11)),  # paired series of different lengths
])
def test_invalid_data_raises_data_error(candidate: object, baseline: object) -> None:
    with pytest.raises(DataError):
        sig.compare(candidate, baseline, periods_per_year=PPY, resamples=100)  # type: ignore[arg-type]


@pytest.mark.parametrize("kwargs", [
    {"resamples": 10}, {"resamples": 500.0}, {"seed": -1}, {"alpha": 0.0}, {"alpha": 1.5},
    {"periods_per_year": 0.0}, {"periods_per_year": float("inf")}, {"block_length": 0},
    {"block_length": 101}, {"block_length": True}, {"method": "moving"},
])
def test_invalid_parameters_raise_config_error(kwargs: dict[str, object]) -> None:
    x = np.random.default_rng(81).normal(size=100)
    args: dict[str, object] = {"periods_per_year": PPY, "resamples": 100, **kwargs}
    with pytest.raises(ConfigError):
        sig.compare(x, x[::-1].copy(), **args)  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        sig.block_bootstrap(x, x, periods_per_year=PPY, confidence=1.0)
