"""Return series from runs and CSV files, and the baselines built on the same data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from engine.errors import DataError
from engine.pipeline import Run, RunSpec
from engine.stats.baselines import align, buy_and_hold, random_entries
from engine.stats.series import (
    ReturnSeries,
    from_returns_csv,
    from_run,
    market_closes,
    periods_per_year,
)
from engine.store import open_store


def _csv(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "r.csv"
    path.write_text(text)
    return path


def test_returns_csv_periods_per_year_from_the_median_spacing(tmp_path: Path) -> None:
    rows = ["timestamp,return", "2024-01-01T00:00:00Z,0.01", "2024-01-01T00:01:00Z,-0.02",
            "2024-01-01T00:02:00+00:00,0.005", "2024-01-01T00:05:00Z,0.0"]
    series = from_returns_csv(_csv(tmp_path, "\n".join(rows)))
    assert series.periods_per_year == pytest.approx(365 * 24 * 60)  # median 60 s, not mean
    assert list(series.returns) == [0.01, -0.02, 0.005, 0.0]


@pytest.mark.parametrize(("text", "message"), [
    ("ts,ret\n2024-01-01T00:00:00Z,0.1\n", "header"),
    ("timestamp,return\n2024-01-01T00:00:00+02:00,0.1\n2024-01-02T00:00:00Z,0.1\n"
     "2024-01-03T00:00:00Z,0.1\n", "UTC"),
    ("timestamp,return\n2024-01-02T00:00:00Z,0.1\n2024-01-01T00:00:00Z,0.1\n", "increase"),
    ("timestamp,return\n2024-01-01T00:00:00Z,nan\n", "finite"),
    ("timestamp,return\n2024-01-01T00:00:00Z,-1.5\n", "finite and > -1"),
    ("timestamp,return\nyesterday,0.1\n", "ISO-8601"),
    ("timestamp,return\n2024-01-01T00:00:00Z,0.1\n", "at least 3"),
])
def test_bad_returns_csv_names_the_problem(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(DataError, match=message):
        from_returns_csv(_csv(tmp_path, text))


def test_periods_per_year_refuses_a_single_timestamp() -> None:
    with pytest.raises(DataError):
        periods_per_year(np.array([1], dtype=np.int64))


@pytest.fixture
def sim_run(tmp_path: Path) -> tuple[Path, str]:
    run = Run(RunSpec(symbol="ETH-USDT", feed="sim", bars=3000, seed=5, data_dir=tmp_path))
    run.execute()
    return tmp_path, run.run_id


@pytest.fixture
def series(sim_run: tuple[Path, str]) -> ReturnSeries:
    folder, run_id = sim_run
    store = open_store(None, folder)
    try:
        return from_run(store, run_id)
    finally:
        store.close()


def test_a_runs_series_matches_its_equity_and_the_market(sim_run: tuple[Path, str]) -> None:
    folder, run_id = sim_run
    store = open_store(None, folder)
    try:
        series = from_run(store, run_id)
        equity = [e.equity for e in store.equity_for_run(run_id)]
    finally:
        store.close()
    assert len(series) == 2999
    assert np.allclose(np.cumprod(1 + series.returns) * equity[0], equity[1:])
    assert series.periods_per_year == pytest.approx(525_600)
    closes = market_closes(series.run_config or {}, series.timestamps_ms)
    assert len(closes) == len(series) + 1
    # flat periods earn nothing; held periods move with the market
    market = closes[1:] / closes[:-1] - 1
    assert series.in_market is not None
    flat = ~series.in_market
    assert np.all(series.returns[flat] == 0.0)
    held = series.in_market & (series.returns != 0)
    assert np.corrcoef(series.returns[held], market[held])[0, 1] > 0.9


def test_buy_and_hold_pays_costs_once_each_way(series: ReturnSeries) -> None:
    bh = buy_and_hold(series)
    closes = market_closes(series.run_config or {}, series.timestamps_ms)
    gross = closes[-1] / closes[0]
    assert np.prod(1 + bh.returns) == pytest.approx(gross * (1 - 11e-4) ** 2, rel=1e-9)


def test_random_entries_match_exposure_and_trade_count(series: ReturnSeries) -> None:
    a, b = random_entries(series, seed=1), random_entries(series, seed=1)
    c = random_entries(series, seed=2)
    assert np.array_equal(a.returns, b.returns)
    assert not np.array_equal(a.returns, c.returns)
    assert series.in_market is not None and a.in_market is not None
    assert a.in_market.sum() == series.in_market.sum()

    def stretches(mask: np.ndarray) -> list[int]:
        edges = np.diff(np.concatenate(([0], mask.astype(int), [0])))
        return sorted((np.flatnonzero(edges == -1) - np.flatnonzero(edges == 1)).tolist())

    assert stretches(a.in_market) == stretches(series.in_market)


def test_align_keeps_only_shared_periods(series: ReturnSeries) -> None:
    shorter = buy_and_hold(series)
    shorter.timestamps_ms = shorter.timestamps_ms[100:]
    shorter.returns = shorter.returns[100:]
    a, b = align(series, shorter)
    assert len(a) == len(b) == len(series) - 100
    assert np.array_equal(a.timestamps_ms, b.timestamps_ms)
