"""Properties of the indicators on arbitrary inputs, and argument validation.

The streaming classes and the numba kernels are designed to agree bit for bit (same
seeds, same operation order, same block re-anchoring), so equality here is exact rather
than to a tolerance: any drift would mean live trading and backtests disagree.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.errors import ConfigError
from engine.indicators import EMA, MACD, RSI, ema, incremental, macd, rsi

PROPS = settings(max_examples=100, deadline=None)

prices = st.lists(st.floats(min_value=1e-3, max_value=1e6), max_size=300)
wide_prices = st.lists(st.floats(min_value=1e-6, max_value=1e9), max_size=200)
periods = st.integers(min_value=1, max_value=40)


def _stream(ind: EMA | RSI, xs: list[float]) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in map(ind.update, xs)], dtype=float)


@PROPS
@given(st.one_of(prices, wide_prices), periods)
def test_ema_stream_equals_batch(xs: list[float], period: int) -> None:
    batch = ema(xs, period)
    assert batch.shape == (len(xs),) and batch.dtype == np.float64
    np.testing.assert_array_equal(_stream(EMA(period), xs), batch)
    warm = min(period - 1, len(xs))
    assert np.isnan(batch[:warm]).all() and not np.isnan(batch[warm:]).any()


@PROPS
@given(st.one_of(prices, wide_prices), periods)
def test_rsi_stream_equals_batch_and_is_bounded(xs: list[float], period: int) -> None:
    batch = rsi(xs, period)
    assert batch.shape == (len(xs),) and batch.dtype == np.float64
    np.testing.assert_array_equal(_stream(RSI(period), xs), batch)
    warm = min(period, len(xs))
    assert np.isnan(batch[:warm]).all()
    values = batch[warm:]
    assert not np.isnan(values).any()
    assert ((values >= 0.0) & (values <= 100.0)).all()


@PROPS
@given(st.one_of(prices, wide_prices), st.integers(1, 20), st.integers(1, 20),
       st.integers(1, 20))
def test_macd_stream_equals_batch(xs: list[float], fast: int, extra: int, signal: int) -> None:
    slow = fast + extra
    result = macd(xs, fast, slow, signal)
    ind = MACD(fast, slow, signal)
    lines, sigs, hists = [], [], []
    for i, x in enumerate(xs):
        out = ind.update(x)
        assert (out is None) == (i < slow + signal - 2)
        assert (ind.macd is None) == (i < slow - 1)
        lines.append(np.nan if ind.macd is None else ind.macd)
        sigs.append(np.nan if out is None else out[1])
        hists.append(np.nan if out is None else out[2])
    for got, want in zip((lines, sigs, hists), result, strict=True):
        assert want.shape == (len(xs),) and want.dtype == np.float64
        np.testing.assert_array_equal(np.array(got, dtype=float), want)


@PROPS
@given(st.floats(min_value=1e-3, max_value=1e6), st.integers(0, 300), periods)
def test_constant_series(c: float, n: int, period: int) -> None:
    xs = [c] * n
    e = ema(xs, period)[period - 1:]
    np.testing.assert_allclose(e, c, rtol=1e-12)
    assert (rsi(xs, period)[period:] == 50.0).all()
    m = macd(xs, 3, 3 + period, 2)
    np.testing.assert_allclose(m.macd[period + 2:], 0.0, atol=1e-12 * c)


def test_block_sizes_agree() -> None:
    from engine.indicators import kernels_nb

    assert kernels_nb.BLOCK == incremental.BLOCK


def test_inputs_of_any_float_sequence() -> None:
    base = np.linspace(100.0, 200.0, 500)
    want = ema(base, 10)
    readonly = base.copy()
    readonly.setflags(write=False)
    strided = np.repeat(base, 2)[::2]
    for x in (base.tolist(), tuple(base), readonly, strided):
        np.testing.assert_array_equal(ema(x, 10), want)
    assert ema(base.astype(np.float32), 10).dtype == np.float64
    assert ema([], 3).shape == (0,)
    assert np.isnan(rsi([1.0, 2.0, 3.0], 14)).all()
    assert all(np.isnan(a).all() for a in macd([1.0] * 10))


BAD_PERIODS = [0, -1, 1.5, "3", True, None, 2**40]


@pytest.mark.parametrize("bad", BAD_PERIODS)
def test_bad_periods_raise_config_error(bad: object) -> None:
    with pytest.raises(ConfigError):
        ema([1.0, 2.0], bad)  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        rsi([1.0, 2.0], bad)  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        macd([1.0, 2.0], 2, 5, bad)  # type: ignore[arg-type]
    for cls in (EMA, RSI):
        with pytest.raises(ConfigError):
            cls(bad)  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        MACD(bad, 30, 9)  # type: ignore[arg-type]


@pytest.mark.parametrize(("fast", "slow"), [(26, 12), (12, 12)])
def test_macd_needs_fast_below_slow(fast: int, slow: int) -> None:
    with pytest.raises(ConfigError):
        macd([1.0] * 50, fast, slow)
    with pytest.raises(ConfigError):
        MACD(fast, slow)


def test_two_dimensional_input_raises_config_error() -> None:
    with pytest.raises(ConfigError):
        ema(np.ones((3, 40)), 5)


def test_numpy_integer_periods_are_accepted() -> None:
    two = np.int64(2)
    np.testing.assert_array_equal(ema([1.0, 2.0, 3.0], two), ema([1.0, 2.0, 3.0], 2))  # type: ignore[arg-type]


def test_import_pulls_in_neither_numpy_nor_numba() -> None:
    code = ("import sys, engine.indicators as m; m.EMA(3); m.RSI(); m.MACD();"
            "bad = [k for k in sys.modules if k.split('.')[0] in ('numpy', 'numba')];"
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)
