"""The simulator: determinism, candle invariants, and realism against the real ETH 1m data."""

from __future__ import annotations

import math
import subprocess
import sys
import time
from itertools import islice
from pathlib import Path

import pytest

from engine.errors import ConfigError
from engine.feeds import Feed
from engine.feeds.calibrate import summary_stats
from engine.feeds.replay import load_series
from engine.feeds.sim import SimFeed, SimParams, truncated_t_var

N_REAL = 66_087  # bars in ETH_USDT-1m.json


@pytest.fixture(scope="module")
def real_stats(shared_data: Path) -> dict[str, float]:
    return summary_stats(load_series(shared_data / "ETH_USDT-1m.json"))


@pytest.fixture(scope="module")
def sim_stats() -> dict[str, float]:
    return summary_stats(SimFeed(seed=0).take(N_REAL))


def test_same_seed_same_bars_and_every_iteration_restarts() -> None:
    a, b = SimFeed(seed=7), SimFeed(seed=7)
    first = a.take(2_000)
    assert first == b.take(2_000) == list(islice(a, 2_000)) == list(islice(iter(a), 2_000))


def test_different_seeds_differ() -> None:
    closes = {tuple(bar.close for bar in SimFeed(seed=s).take(100)) for s in range(5)}
    assert len(closes) == 5


def test_candle_invariants_over_50k_bars() -> None:
    feed = SimFeed(seed=3, start_price=1_000.0)  # crosses the 999.99 / 1000.0 digit step
    bars = feed.take(50_000)
    prev = bars[0].open
    assert prev == 1_000.0 and bars[0].ts == feed.start_ts_ms
    for i, b in enumerate(bars):
        assert 0.0 < b.low <= min(b.open, b.close) <= max(b.open, b.close) <= b.high, b
        assert b.volume >= 0.0 and math.isfinite(b.volume) and math.isfinite(b.high)
        assert b.open == prev  # no overnight gaps in a 24/7 market
        assert b.ts == feed.start_ts_ms + i * 60_000
        prev = b.close


def test_prices_keep_exchange_like_precision() -> None:
    for b in SimFeed(seed=1).take(1_000):
        for price in (b.open, b.high, b.low, b.close):
            assert round(price, 2) == price  # ETH near 1800 -> cents, like Binance's tick


def test_tiny_prices_stay_positive() -> None:
    bars = SimFeed(seed=2, start_price=0.0001234).take(5_000)
    assert all(0.0 < b.low <= b.high for b in bars)


def test_feed_protocol_and_metadata() -> None:
    feed = SimFeed(symbol="BTC-USDT", interval_ms=300_000)
    assert isinstance(feed, Feed)
    assert (feed.kind, feed.symbol, feed.interval_ms) == ("sim", "BTC-USDT", 300_000)


def test_longer_interval_scales_volatility_and_volume() -> None:
    one = summary_stats(SimFeed(seed=4).take(20_000))
    five = summary_stats(SimFeed(seed=4, interval_ms=300_000).take(20_000))
    assert 0.8 * math.sqrt(5) < five["std"] / one["std"] < 1.2 * math.sqrt(5)
    assert 4.0 < five["volume_median"] / one["volume_median"] < 6.0


@pytest.mark.parametrize("kwargs", [
    {"start_price": 0.0}, {"start_price": math.nan}, {"interval_ms": 0},
    {"start_ts_ms": -1}, {"seed": "x"}, {"symbol": ""},
])
def test_bad_feed_arguments(kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        SimFeed(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("kwargs", [
    {"sigma": 0.0}, {"t_dof": 2.0}, {"garch_alpha": 0.2, "garch_beta": 0.85},
    {"jump_prob": 1.0}, {"var_cap": 0.5}, {"wick": -1.0},
])
def test_bad_params(kwargs: dict[str, float]) -> None:
    with pytest.raises(ConfigError):
        SimParams(**kwargs)  # type: ignore[arg-type]


def test_truncated_t_variance() -> None:
    assert truncated_t_var(30.0, 8.0) == pytest.approx(1.0, abs=1e-5)
    assert 0.9 < truncated_t_var(4.05, 8.0) < 0.99  # the tail beyond 8 sigma matters at dof 4


def test_long_run_std_matches_sigma() -> None:
    # Over many runs the std of returns is sigma; single runs scatter (fat tails).
    stds = [summary_stats(SimFeed(seed=s).take(20_000))["std"] for s in range(6)]
    assert sorted(stds)[3] == pytest.approx(SimParams().sigma, rel=0.1)


def test_run_path_needs_no_numpy() -> None:
    code = ("import sys, engine.feeds.sim as s; next(iter(s.SimFeed())); "
            "assert 'numpy' not in sys.modules, 'numpy imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_per_bar_cost_is_small() -> None:
    it = iter(SimFeed(seed=5))
    best = math.inf
    for _ in range(3):
        start = time.perf_counter()
        for _ in islice(it, 20_000):
            pass
        best = min(best, time.perf_counter() - start)
    assert best / 20_000 < 50e-6  # ~5 us on a laptop; generous for loaded CI runners


@pytest.mark.realdata
def test_simulated_statistics_match_the_real_data(real_stats: dict[str, float],
                                                  sim_stats: dict[str, float]) -> None:
    real, sim = real_stats, sim_stats
    assert sim["std"] == pytest.approx(real["std"], rel=0.15)
    assert sim["excess_kurtosis"] > 10  # fat tails (real: ~76; noisy by nature)
    assert 0.2 < sim["acf_abs_1"] < 0.45  # volatility clustering (real: 0.34)
    for lag in (5, 10):
        assert sim[f"acf_abs_{lag}"] == pytest.approx(real[f"acf_abs_{lag}"], abs=0.07)
    assert sim["mean_range_over_close"] == pytest.approx(real["mean_range_over_close"], rel=0.1)
    assert sim["range_over_abs_return"] == pytest.approx(real["range_over_abs_return"],
                                                         rel=0.1)
    assert sim["tail_rate_6sd"] == pytest.approx(real["tail_rate_6sd"], rel=0.5)
    assert 10 < sim["max_abs_sd"] < 80  # real: 40
    assert sim["volume_median"] == pytest.approx(real["volume_median"], rel=0.15)
    assert sim["log_volume_std"] == pytest.approx(real["log_volume_std"], rel=0.15)
    assert sim["corr_logvol_absret"] == pytest.approx(real["corr_logvol_absret"], abs=0.1)
    assert abs(sim["acf_ret_1"]) < 0.06  # no exploitable autocorrelation in returns


def test_other_seeds_keep_the_stylised_facts() -> None:
    for seed in (1, 2):
        st = summary_stats(SimFeed(seed=seed).take(30_000))
        assert st["excess_kurtosis"] > 5 and st["acf_abs_1"] > 0.15 and st["acf_abs_10"] > 0.08
