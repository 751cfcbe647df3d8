"""Batch and streaming indicators against TA-Lib on every real candle file.

Tolerance: after a 300-bar warm-up, |ours - TA-Lib| <= 1e-9 * close at that bar for the
price-valued series (EMA, MACD) and <= 1e-9 * 100 for RSI. Seeding matches TA-Lib, so the
values also agree from the very first one; that is checked with the same tolerance.
Streaming and batch agree to rounding (same tolerances); test_properties.py holds them to
a tighter bound on arbitrary inputs. The long-series test covers the kernels' streaming-
store path, which only runs from kernels_nb.STREAM_MIN bars.
"""

from __future__ import annotations

import csv
import io
import json
import zipfile
from functools import cache
from pathlib import Path

import numpy as np
import pytest

talib = pytest.importorskip("talib")

from engine.indicators import EMA, MACD, RSI, ema, macd, rsi  # noqa: E402

FILES = ["ETH_USDT-1m.json", "ETH_USDT-5m.json", "ETH_USDT-1h.json", "BTC_USDT-1m.json",
         "ETHUSDT-1m-2022-08-14.zip", "ETHUSDT-1m-2022-08-15.zip"]
WARMUP = 300
PRICE_TOL = 1e-9
RSI_TOL = 1e-9 * 100

pytestmark = pytest.mark.realdata


@cache
def _closes(path: Path) -> np.ndarray:
    if path.suffix == ".zip":
        with zipfile.ZipFile(path) as zf:
            (name,) = zf.namelist()
            text = zf.read(name).decode()
        return np.array([float(row[4]) for row in csv.reader(io.StringIO(text))])
    return np.array([row[4] for row in json.loads(path.read_text())], dtype=np.float64)


@pytest.fixture(params=FILES)
def close(request: pytest.FixtureRequest, shared_data: Path) -> np.ndarray:
    c = _closes(shared_data / request.param)
    assert len(c) > WARMUP and np.isfinite(c).all() and (c > 0).all()
    return c


def _stream(indicator: EMA | RSI, close: np.ndarray) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in map(indicator.update, close.tolist())])


def _stream_macd(close: np.ndarray, *periods: int) -> tuple[np.ndarray, ...]:
    ind = MACD(*periods)
    rows = []
    for x in close.tolist():
        out = ind.update(x)
        line = np.nan if ind.macd is None else ind.macd
        rows.append((line, np.nan, np.nan) if out is None else out)
    return tuple(np.array(rows).T)


def _check(ours: np.ndarray, ref: np.ndarray, tol: np.ndarray | float, first: int) -> None:
    """Same warm-up as TA-Lib, then within tolerance everywhere and after WARMUP."""
    assert np.isnan(ref[:first]).all() and not np.isnan(ref[first:]).any()
    assert not np.isnan(ours[first:]).any()
    err = np.abs(ours - ref)
    limit = np.broadcast_to(tol, err.shape)
    bad = np.flatnonzero(err[first:] > limit[first:])
    assert bad.size == 0, f"first mismatch at bar {first + bad[0]}: {err[first + bad[0]]}"
    assert (err[WARMUP:] <= limit[WARMUP:]).all()


@pytest.mark.parametrize("period", [12, 26, 9, 50, 200])
def test_ema_matches_talib(close: np.ndarray, period: int) -> None:
    ref = talib.EMA(close, timeperiod=period)
    ours = ema(close, period)
    _check(ours, ref, PRICE_TOL * close, period - 1)
    assert np.isnan(ours[: period - 1]).all()


@pytest.mark.parametrize("period", [14, 7, 21])
def test_rsi_matches_talib(close: np.ndarray, period: int) -> None:
    ref = talib.RSI(close, timeperiod=period)
    ours = rsi(close, period)
    _check(ours, ref, RSI_TOL, period)
    assert np.isnan(ours[:period]).all()


@pytest.mark.parametrize("periods", [(12, 26, 9), (5, 35, 5), (3, 10, 16)])
def test_macd_matches_talib(close: np.ndarray, periods: tuple[int, int, int]) -> None:
    fast, slow, signal = periods
    ref = talib.MACD(close, fastperiod=fast, slowperiod=slow, signalperiod=signal)
    ours = macd(close, fast, slow, signal)
    first = slow + signal - 2  # TA-Lib's lookback for all three outputs
    for o, r in zip(ours, ref, strict=True):
        _check(o, r, PRICE_TOL * close, first)
    # Our MACD line starts earlier than TA-Lib shows it (documented): at bar slow - 1.
    assert np.isnan(ours.macd[: slow - 1]).all() and not np.isnan(ours.macd[slow - 1:]).any()
    assert np.isnan(ours.signal[:first]).all() and np.isnan(ours.hist[:first]).all()


def test_streaming_matches_talib_and_batch(close: np.ndarray) -> None:
    tol = PRICE_TOL * close
    for period in (12, 26):
        got = _stream(EMA(period), close)
        _check(got, talib.EMA(close, timeperiod=period), tol, period - 1)
        _check(got, ema(close, period), tol, period - 1)
    got = _stream(RSI(14), close)
    _check(got, talib.RSI(close, timeperiod=14), RSI_TOL, 14)
    _check(got, rsi(close, 14), RSI_TOL, 14)
    streamed = _stream_macd(close, 12, 26, 9)
    for s, r in zip(streamed, talib.MACD(close, 12, 26, 9), strict=True):
        _check(s, r, tol, 33)
    for s, b in zip(streamed, macd(close, 12, 26, 9), strict=True):
        _check(s[33:], b[33:], tol[33:], 0)


def test_long_series_matches_talib(shared_data: Path) -> None:
    """A 1m file extended (by cycling its log returns) past the streaming-store threshold."""
    from engine.indicators.kernels_nb import STREAM_MIN

    base = _closes(shared_data / "BTC_USDT-1m.json")
    steps = np.resize(np.diff(np.log(base)), STREAM_MIN + 2_005)
    close = base[0] * np.exp(np.concatenate(([0.0], np.cumsum(steps))))
    tol = PRICE_TOL * close
    for period in (12, 26, 200):
        _check(ema(close, period), talib.EMA(close, timeperiod=period), tol, period - 1)
    _check(rsi(close, 14), talib.RSI(close, timeperiod=14), RSI_TOL, 14)
    for o, r in zip(macd(close), talib.MACD(close), strict=True):
        _check(o, r, tol, 33)
