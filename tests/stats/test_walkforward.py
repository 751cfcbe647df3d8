"""Walk-forward splits (rolling and anchored), degradation arithmetic, and validation."""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from engine.errors import ConfigError, DataError
from engine.stats.walkforward import walk_forward, walk_forward_splits


def mean_and_sharpe(returns: npt.NDArray[np.float64], periods_per_year: float) -> dict[str, Any]:
    std = float(np.std(returns, ddof=1))
    sharpe = float(np.mean(returns)) / std * math.sqrt(periods_per_year) if std > 0 else None
    return {"mean": float(np.mean(returns)), "sharpe": sharpe, "label": "x"}


def test_rolling_windows_are_contiguous_and_do_not_overlap() -> None:
    splits = walk_forward_splits(1003, windows=4, in_sample_fraction=0.75)
    assert len(splits) == 4
    assert splits[0].window_start == 3  # the leftover 1003 - 4 * 250 is dropped first
    for s in splits:
        assert s.is_start == s.window_start
        assert s.is_end == s.oos_start  # OOS follows IS directly
        assert (s.is_end - s.is_start, s.oos_end - s.oos_start) == (188, 62)  # round(187.5)
    for before, after in itertools.pairwise(splits):
        assert before.oos_end == after.is_start
    assert splits[-1].oos_end == 1003


def test_anchored_in_sample_grows_and_oos_matches_rolling() -> None:
    rolling = walk_forward_splits(1000, windows=5, in_sample_fraction=0.6)
    anchored = walk_forward_splits(1000, windows=5, in_sample_fraction=0.6, anchored=True)
    assert all(s.is_start == 0 for s in anchored)
    lengths = [s.is_end - s.is_start for s in anchored]
    assert lengths == [120, 320, 520, 720, 920]
    assert [(s.oos_start, s.oos_end) for s in anchored] == \
        [(s.oos_start, s.oos_end) for s in rolling]


def test_window_length_mode() -> None:
    splits = walk_forward_splits(1050, window_length=200, in_sample_fraction=0.5)
    assert len(splits) == 5 and splits[0].window_start == 50
    assert all(s.oos_end - s.window_start == 200 for s in splits)


def test_degradation_arithmetic() -> None:
    # Two windows of 4 returns, IS = first 2: means are easy to check by hand.
    returns = [0.01, 0.03, 0.01, -0.01, 0.02, 0.04, 0.0, 0.06]
    out = walk_forward(returns, metric_fn=mean_and_sharpe, periods_per_year=4.0, windows=2,
                       in_sample_fraction=0.5)
    first, second = out["windows"]
    assert first["in_sample"]["metrics"]["mean"] == pytest.approx(0.02)
    assert first["out_of_sample"]["metrics"]["mean"] == pytest.approx(0.0)
    assert first["degradation"]["mean"]["difference"] == pytest.approx(-0.02)
    assert first["degradation"]["mean"]["ratio"] == pytest.approx(0.0)
    assert second["degradation"]["mean"]["difference"] == pytest.approx(0.0)
    assert second["degradation"]["mean"]["ratio"] == pytest.approx(1.0)
    is_sharpe = 0.02 / np.std([0.01, 0.03], ddof=1) * 2.0
    assert first["in_sample"]["metrics"]["sharpe"] == pytest.approx(is_sharpe)
    assert "label" not in first["degradation"]  # not a number
    summary = out["degradation"]["mean"]
    assert summary["in_sample_mean"] == pytest.approx(0.025)
    assert summary["out_of_sample_mean"] == pytest.approx(0.015)
    assert summary["difference_mean"] == pytest.approx(-0.01)
    assert summary["ratio_mean"] == pytest.approx(0.5)
    assert (summary["windows"], summary["ratio_windows"]) == (2, 2)
    assert out["config"] == {"periods": 8, "windows": 2, "window_length": 4,
                             "in_sample_fraction": 0.5, "anchored": False,
                             "dropped_at_start": 0}


def test_undefined_metrics_and_zero_in_sample_are_skipped() -> None:
    # window 1: IS constant (Sharpe None), IS mean 0 (ratio None); window 2 defined
    returns = [0.0, 0.0, 0.01, 0.02, 0.01, 0.03, 0.02, 0.04]
    out = walk_forward(returns, metric_fn=mean_and_sharpe, periods_per_year=1.0, windows=2,
                       in_sample_fraction=0.5)
    first = out["windows"][0]["degradation"]
    assert "sharpe" not in first and first["mean"]["ratio"] is None
    assert out["degradation"]["sharpe"]["windows"] == 1
    assert out["degradation"]["mean"]["ratio_windows"] == 1


def test_timestamps_label_the_parts() -> None:
    stamps = np.arange(20, dtype=np.int64) * 60_000
    out = walk_forward(np.linspace(-0.01, 0.01, 20), stamps, metric_fn=mean_and_sharpe,
                       periods_per_year=525_600.0, windows=2, in_sample_fraction=0.5)
    oos = out["windows"][1]["out_of_sample"]
    assert (oos["start"], oos["end"], oos["n"]) == (15, 20, 5)
    assert (oos["first_timestamp"], oos["last_timestamp"]) == (900_000, 1_140_000)


def test_metric_fn_cannot_change_the_series() -> None:
    def mutating(returns: npt.NDArray[np.float64], ppy: float) -> dict[str, Any]:
        returns[0] = 1.0
        return {}

    with pytest.raises(ValueError, match="read-only"):
        walk_forward(np.zeros(20), metric_fn=mutating, periods_per_year=1.0, windows=2)


@pytest.mark.parametrize(("n", "kwargs"), [
    (10, {"windows": 5}),  # windows of 2: cannot hold 2 IS and 2 OOS returns
    (30, {"windows": 5, "in_sample_fraction": 0.9}),  # OOS of 1
    (100, {"window_length": 101}),
    (0, {}),
])
def test_too_short_series_raise_data_error(n: int, kwargs: dict[str, Any]) -> None:
    with pytest.raises(DataError):
        walk_forward(np.zeros(n), metric_fn=mean_and_sharpe, periods_per_year=1.0, **kwargs)


@pytest.mark.parametrize("kwargs", [
    {"windows": 0}, {"windows": 2.5}, {"window_length": 3}, {"windows": 2, "window_length": 50},
    {"in_sample_fraction": 0.0}, {"in_sample_fraction": 1.0}, {"periods_per_year": 0.0},
    {"metric_fn": "sharpe"}, {"min_part": 0},
])
def test_invalid_parameters_raise_config_error(kwargs: dict[str, Any]) -> None:
    args: dict[str, Any] = {"metric_fn": mean_and_sharpe, "periods_per_year": 1.0, **kwargs}
    with pytest.raises(ConfigError):
        walk_forward(np.zeros(200), **args)


@pytest.mark.parametrize(("returns", "stamps"), [
    ([0.1, float("nan")] * 10, None),
    (np.zeros((10, 2)), None),
    (np.zeros(20), np.arange(19)),
    (np.zeros(20), np.r_[np.arange(10), np.arange(10)]),
])
def test_invalid_input_raises_data_error(returns: Any, stamps: Any) -> None:
    with pytest.raises(DataError):
        walk_forward(returns, stamps, metric_fn=mean_and_sharpe, periods_per_year=1.0,
                     windows=2)
