"""Properties of the indicators on arbitrary inputs, and argument validation.

The streaming classes and the numba kernels compute the same recurrences in different
operation orders (the kernels regroup eight bars at a time and fuse multiply-adds), so
they agree to rounding: here within REL_TOL of the price scale (the largest |input| so
far) for EMA and MACD and of 100 for RSI, with identical warm-up (NaN) patterns. The
observed difference is about 1e-14; REL_TOL leaves room without hiding a wrong formula.
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.errors import ConfigError
from engine.indicators import EMA, MACD, RSI, ema, macd, rsi

PROPS = settings(max_examples=100, deadline=None)
REL_TOL = 1e-10

prices = st.lists(st.floats(min_value=1e-3, max_value=1e6), max_size=300)
wide_prices = st.lists(st.floats(min_value=1e-6, max_value=1e9), max_size=200)
periods = st.integers(min_value=1, max_value=40)


def _stream(ind: EMA | RSI, xs: list[float]) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in map(ind.update, xs)], dtype=float)


def _price_scale(xs: list[float]) -> np.ndarray:
    return np.maximum.accumulate(np.abs(np.asarray(xs, dtype=float))) if xs else np.zeros(0)


def _assert_close(got: np.ndarray, want: np.ndarray, scale: np.ndarray | float) -> None:
    """Same NaN pattern, and |got - want| <= REL_TOL * scale elsewhere."""
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    ok = ~np.isnan(want)
    limit = REL_TOL * np.broadcast_to(scale, want.shape)
    err = np.abs(got - want)
    assert (err[ok] <= limit[ok]).all(), f"max error {err[ok].max()} above {limit[ok].min()}"


@PROPS
@given(st.one_of(prices, wide_prices), periods)
def test_ema_stream_equals_batch(xs: list[float], period: int) -> None:
    batch = ema(xs, period)
    assert batch.shape == (len(xs),) and batch.dtype == np.float64
    _assert_close(_stream(EMA(period), xs), batch, _price_scale(xs))
    warm = min(period - 1, len(xs))
    assert np.isnan(batch[:warm]).all() and not np.isnan(batch[warm:]).any()


@PROPS
@given(st.one_of(prices, wide_prices), periods)
def test_rsi_stream_equals_batch_and_is_bounded(xs: list[float], period: int) -> None:
    batch = rsi(xs, period)
    assert batch.shape == (len(xs),) and batch.dtype == np.float64
    _assert_close(_stream(RSI(period), xs), batch, 100.0)
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
        _assert_close(np.array(got, dtype=float), want, _price_scale(xs))


@PROPS
@given(st.floats(min_value=1e-3, max_value=1e6), st.integers(0, 300), periods)
def test_constant_series(c: float, n: int, period: int) -> None:
    xs = [c] * n
    e = ema(xs, period)[period - 1:]
    np.testing.assert_allclose(e, c, rtol=1e-12)
    assert (rsi(xs, period)[period:] == 50.0).all()
    m = macd(xs, 3, 3 + period, 2)
    np.testing.assert_allclose(m.macd[period + 2:], 0.0, atol=1e-12 * c)


def test_results_do_not_depend_on_memory_layout() -> None:
    """Same values whatever the addresses: each kernel's streaming-store path (long,
    aligned outputs) and plain path (unaligned outputs) write identical bits, and the
    public functions give identical bits for the input at any offset."""
    from engine.indicators import _outputs, kernels_nb

    n = kernels_nb.STREAM_MIN + 1003
    rng = np.random.default_rng(3)
    x = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 1e-3, n)))

    def unaligned(rows: int) -> list[np.ndarray]:
        raw = np.empty(rows * (n + 8) + 8)
        start = (-(raw.__array_interface__["data"][0] // 8) % 8) + 1  # 8 bytes past a line
        return [raw[start + r * (n + 8): start + r * (n + 8) + n] for r in range(rows)]

    for kernel, args, rows in ((kernels_nb.ema_nb, (12,), 1), (kernels_nb.rsi_nb, (14,), 1),
                               (kernels_nb.macd_nb, (12, 26, 9), 3)):
        streamed, plain = _outputs(x, rows), unaligned(rows)
        assert all(o.__array_interface__["data"][0] % 64 == 0 for o in streamed)
        kernel(x, *args, *streamed)
        kernel(x, *args, *plain)
        for a, b in zip(streamed, plain, strict=True):
            np.testing.assert_array_equal(a, b)
    for offset in (1, 3):
        shifted = np.empty(n + offset)[offset:]
        shifted[:] = x
        np.testing.assert_array_equal(ema(shifted, 12), ema(x, 12))
        np.testing.assert_array_equal(rsi(shifted[:5000], 14), rsi(x[:5000], 14))
        for a, b in zip(macd(shifted[:5000]), macd(x[:5000]), strict=True):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("at", [20, 40, 41, 47, 48, 299])
def test_nan_input_poisons_ema_and_macd_and_is_no_change_for_rsi(at: int) -> None:
    xs = list(np.linspace(100.0, 130.0, 300))
    xs[at] = float("nan")
    e = ema(xs, 10)
    assert not np.isnan(e[9:at]).any() and np.isnan(e[at:]).all()
    m = macd(xs, 5, 12, 4)
    assert not np.isnan(m.macd[11:at]).any() and np.isnan(m.macd[at:]).all()
    r = rsi(xs, 14)
    assert not np.isnan(r[14:]).any()
    _assert_close(_stream(EMA(10), xs), e, 130.0)
    _assert_close(_stream(RSI(14), xs), r, 100.0)


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


def test_long_series_reuse_memory_without_page_faults() -> None:
    """After warm-up, batch calls on 2M bars take their outputs from memory that is
    already mapped (each fresh page costs a fault; see engine.indicators._tune_malloc)."""
    code = (
        "import resource, numpy as np, engine.indicators as m\n"
        "x = 100.0 + np.cumsum(np.random.default_rng(0).normal(size=2_000_000))\n"
        "def loop():\n"
        "    m.ema(x, 12); m.ema(x, 26); m.macd(x); m.rsi(x, 14)\n"
        "loop(); loop()\n"
        "f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt\n"
        "loop(); loop(); loop()\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0)\n")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                         text=True, env={**os.environ, "SUPREME_KEEP_MALLOC": "0"})
    assert int(out.stdout) < 300  # without the tuning: over 3,000


def test_import_pulls_in_neither_numpy_nor_numba() -> None:
    code = ("import sys, engine.indicators as m; m.EMA(3); m.RSI(); m.MACD();"
            "bad = [k for k in sys.modules if k.split('.')[0] in ('numpy', 'numba')];"
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)
