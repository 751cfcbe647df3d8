"""EMA, RSI and MACD: batch functions over arrays and streaming classes for live ticks.

Importing this package is cheap: numpy and the numba kernels load on the first batch
call, so the live path (which only needs the streaming classes) never pays for them.

Batch outputs are float64 arrays as long as the input, NaN during warm-up:

=====================================  ======================================
call                                   first non-NaN index
=====================================  ======================================
ema(close, period)                     period - 1
rsi(close, period)                     period
macd(...).macd                         slow - 1
macd(...).signal / .hist               slow + signal - 2
=====================================  ======================================

These match TA-Lib, except that TA-Lib also hides the MACD line until slow + signal - 2.

Seeding follows TA-Lib (see incremental.py), and the batch numbers equal what the
streaming classes return for the same inputs, bit for bit. Inputs should be finite: a NaN
poisons EMA and MACD from that bar on, and RSI counts it as no change.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

from engine.errors import ConfigError
from engine.indicators.incremental import EMA, MACD, RSI, check_macd, check_period

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import ArrayLike, NDArray

__all__ = ["EMA", "MACD", "RSI", "MACDResult", "ema", "macd", "rsi"]


class MACDResult(NamedTuple):
    macd: NDArray[np.float64]
    signal: NDArray[np.float64]
    hist: NDArray[np.float64]


def _as_input(close: ArrayLike) -> NDArray[np.float64]:
    import numpy as np

    x = np.ascontiguousarray(close, dtype=np.float64)
    if x.ndim != 1:
        raise ConfigError(f"indicator input must be one-dimensional, got shape {x.shape}")
    return x


def _outputs(n: int, rows: int) -> list[NDArray[np.float64]]:
    """`rows` uninitialised float64 arrays of length n, from one allocation.

    From kernels_nb.STREAM_MIN bars on, the kernels write with non-temporal stores, which
    need each output to start on a 64-byte boundary: the rows are then cut from one
    padded buffer at aligned offsets (so they are views, as MACD's rows always are).
    """
    import numpy as np

    from engine.indicators.kernels_nb import STREAM_MIN

    if n < STREAM_MIN:
        return [np.empty(n)] if rows == 1 else list(np.empty((rows, n)))
    stride = -(-n // 8) * 8
    raw = np.empty(rows * stride + 8)
    start = (-raw.__array_interface__["data"][0] % 64) // 8
    return [raw[start + r * stride: start + r * stride + n] for r in range(rows)]


def ema(close: ArrayLike, period: int) -> NDArray[np.float64]:
    """EMA with alpha 2 / (period + 1), seeded with the mean of the first `period` values."""
    from engine.indicators.kernels_nb import ema_nb

    p = check_period("period", period)
    x = _as_input(close)
    (out,) = _outputs(x.shape[0], 1)
    ema_nb(x, p, out)
    return out


def rsi(close: ArrayLike, period: int = 14) -> NDArray[np.float64]:
    """Wilder's RSI in [0, 100] (50 for a flat stretch), seeded with mean gain and loss."""
    from engine.indicators.kernels_nb import rsi_nb

    p = check_period("period", period)
    x = _as_input(close)
    (out,) = _outputs(x.shape[0], 1)
    rsi_nb(x, p, out)
    return out


def macd(close: ArrayLike, fast: int = 12, slow: int = 26, signal: int = 9) -> MACDResult:
    """MACD line, signal line and histogram, with TA-Lib's EMA alignment (fast < slow)."""
    from engine.indicators.kernels_nb import macd_nb

    f, s, g = check_macd(fast, slow, signal)
    x = _as_input(close)
    result = MACDResult(*_outputs(x.shape[0], 3))
    macd_nb(x, f, s, g, *result)
    return result
