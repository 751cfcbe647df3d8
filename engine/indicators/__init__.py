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

Batch outputs of 256 bars or more are views into buffers aligned for the kernels (see
_outputs); from kernels_nb.STREAM_MIN bars on they are written with streaming stores
and start out of the CPU cache. The first such call also tunes glibc's malloc for the
whole process (see _tune_malloc; SUPREME_KEEP_MALLOC=1 opts out).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NamedTuple

from engine.errors import ConfigError
from engine.indicators.incremental import EMA, MACD, RSI, check_macd, check_period

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import ArrayLike, NDArray

__all__ = ["EMA", "MACD", "RSI", "MACDResult", "ema", "macd", "rsi"]

_MIN_ALIGNED = 256  # bars; below, the alignment bookkeeping is not worth its microseconds
_kernels_nb: Any = None
_malloc_tuned = False
_M_TRIM_THRESHOLD = -1  # glibc <malloc.h>
_M_MMAP_THRESHOLD = -3
_KEEP_FREED = 256 << 20  # bytes of freed heap glibc may keep instead of returning it
_HEAP_BELOW = 32 << 20  # blocks smaller than this come from the heap (glibc's maximum)


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
    """`rows` uninitialised float64 arrays as long as x.

    Each row starts on a 64-byte boundary, which the kernels' full-line (and, for long
    series, non-temporal) stores need, at an address 1 KiB * (row + 1) past x's modulo
    4 KiB: rows that shared x's page offset would make the CPU see false dependencies
    between loads of x and stores to the row (4K aliasing; about 10% on MACD).

    Rows are separate allocations, as TA-Lib's are: glibc serves blocks of up to 32 MiB
    from its heap, where a freed one is reused warm (see _tune_malloc), but a single
    block for MACD's three rows would pass that size at 1.4M bars and be mapped afresh,
    page fault by page fault, on every call (measured: twice TA-Lib's time at 2M bars).
    """
    import numpy as np

    n = x.shape[0]
    if n < _MIN_ALIGNED:
        return [np.empty(n) for _ in range(rows)]
    if not _malloc_tuned:
        _tune_malloc()
    place = _kernels().place_nb
    out = []
    for r in range(rows):
        raw = np.empty(n + 512)
        start = place(x, raw, r)
        out.append(raw[start: start + n])
    return out


def _kernels() -> Any:
    """engine.indicators.kernels_nb, imported on first use (a from-import per call costs
    more than some of the calls it serves)."""
    global _kernels_nb
    if _kernels_nb is None:
        from engine.indicators import kernels_nb

        _kernels_nb = kernels_nb
    return _kernels_nb


def _tune_malloc() -> None:
    """Make glibc keep freed output buffers mapped, so the next call reuses them warm.

    Every batch call allocates its outputs and the caller usually drops them soon, so
    the allocator decides whether the next call finds that memory still mapped or takes
    fresh pages from the OS, one page fault each (about 10 us apiece on this VM: at 2M
    bars a four-indicator pass went from 8 to 27 ms). glibc's own thresholds adapt, but
    trim the top of the heap once more than twice the largest recent block is free,
    which three MACD rows past 1.4M bars exceed. So, once, on the first batch call:

    * M_MMAP_THRESHOLD = 32 MiB (the most glibc accepts): blocks below it come from the
      heap instead of fresh mappings;
    * M_TRIM_THRESHOLD = 256 MiB: up to that much freed heap stays mapped.

    This is process-wide: the process returns freed memory to the OS later (RSS stays
    up to 256 MiB above live use) and glibc stops adapting its thresholds. Only on
    glibc; set SUPREME_KEEP_MALLOC=1 to leave the allocator alone.
    """
    global _malloc_tuned
    _malloc_tuned = True
    import os
    import sys

    if sys.platform != "linux" or os.environ.get("SUPREME_KEEP_MALLOC") == "1":
        return
    import ctypes

    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # noqa: B018 (glibc only: musl's mallopt is a stub)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt(_M_MMAP_THRESHOLD, _HEAP_BELOW)
    mallopt(_M_TRIM_THRESHOLD, _KEEP_FREED)


def ema(close: ArrayLike, period: int) -> NDArray[np.float64]:
    """EMA with alpha 2 / (period + 1), seeded with the mean of the first `period` values."""
    p = check_period("period", period)
    x = _as_input(close)
    (out,) = _outputs(x, 1)
    _kernels().ema_nb(x, p, out)
    return out


def rsi(close: ArrayLike, period: int = 14) -> NDArray[np.float64]:
    """Wilder's RSI in [0, 100] (50 for a flat stretch), seeded with mean gain and loss."""
    p = check_period("period", period)
    x = _as_input(close)
    (out,) = _outputs(x, 1)
    _kernels().rsi_nb(x, p, out)
    return out


def macd(close: ArrayLike, fast: int = 12, slow: int = 26, signal: int = 9) -> MACDResult:
    """MACD line, signal line and histogram, with TA-Lib's EMA alignment (fast < slow)."""
    f, s, g = check_macd(fast, slow, signal)
    x = _as_input(close)
    result = MACDResult(*_outputs(x, 3))
    _kernels().macd_nb(x, f, s, g, *result)
    return result
