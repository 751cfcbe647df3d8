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
streaming classes return for the same inputs up to rounding (a few ulp of the price
scale; the kernels regroup the arithmetic to run eight bars at a time). Batch results
depend on the input values only, never on memory layout. Inputs should be finite: a NaN
poisons EMA and MACD from that bar on, and RSI counts it as no change.

Batch outputs are views into a buffer aligned for the kernels (see _outputs); for long
series they are written with streaming stores and start out of the CPU cache.
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


def _outputs(x: NDArray[np.float64], rows: int) -> list[NDArray[np.float64]]:
    """`rows` uninitialised float64 arrays as long as x, cut from one allocation.

    Each row starts on a 64-byte boundary, which the kernels' full-line (and, for long
    series, non-temporal) stores need, at an address 1 KiB * (row + 1) past x's modulo
    4 KiB: rows that shared x's page offset would make the CPU see false dependencies
    between loads of x and stores to the row (4K aliasing; about 10% on MACD).
    """
    import numpy as np

    n = x.shape[0]
    if n < _MIN_ALIGNED:
        return [np.empty(n)] if rows == 1 else list(np.empty((rows, n)))
    page, gap = 512, 128  # in float64s: 4 KiB and 1 KiB
    stride = -(-n // 8) * 8
    stride += (gap - stride) % page
    raw = np.empty(rows * stride + page)
    at = (x.__array_interface__["data"][0] // 8 + gap) // 8 * 8
    start = (at - raw.__array_interface__["data"][0] // 8) % page
    return [raw[start + r * stride: start + r * stride + n] for r in range(rows)]


# Below this many bars the alignment bookkeeping is not worth its microseconds.
_MIN_ALIGNED = 256


def ema(close: ArrayLike, period: int) -> NDArray[np.float64]:
    """EMA with alpha 2 / (period + 1), seeded with the mean of the first `period` values."""
    from engine.indicators.kernels_nb import ema_nb

    p = check_period("period", period)
    x = _as_input(close)
    (out,) = _outputs(x, 1)
    ema_nb(x, p, out)
    return out


def rsi(close: ArrayLike, period: int = 14) -> NDArray[np.float64]:
    """Wilder's RSI in [0, 100] (50 for a flat stretch), seeded with mean gain and loss."""
    from engine.indicators.kernels_nb import rsi_nb

    p = check_period("period", period)
    x = _as_input(close)
    (out,) = _outputs(x, 1)
    rsi_nb(x, p, out)
    return out


def macd(close: ArrayLike, fast: int = 12, slow: int = 26, signal: int = 9) -> MACDResult:
    """MACD line, signal line and histogram, with TA-Lib's EMA alignment (fast < slow)."""
    from engine.indicators.kernels_nb import macd_nb

    f, s, g = check_macd(fast, slow, signal)
    x = _as_input(close)
    result = MACDResult(*_outputs(x, 3))
    macd_nb(x, f, s, g, *result)
    return result
