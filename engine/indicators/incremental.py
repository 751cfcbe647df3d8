"""Streaming EMA, RSI and MACD: pure Python, O(1) time and memory per update.

These classes are the reference definition of the numbers. The numba kernels in
kernels_nb.py compute the same recurrences in a regrouped order (blocks of eight bars,
fused multiply-adds), so batch and streaming values agree to rounding, a few ulp of the
price scale; tests/indicators/test_properties.py bounds the difference on arbitrary
inputs, and test_reference.py checks both against TA-Lib.

Conventions (chosen to match TA-Lib, which tests/indicators/test_reference.py checks):

* EMA(p): alpha = 2 / (p + 1), y[t] = (1 - alpha) * y[t-1] + alpha * x[t]. The first
  value, at bar index p - 1, is the simple mean of the first p inputs; earlier bars
  have no value.
* RSI(p): Wilder's smoothing, alpha = 1 / p, of gains and losses. The first value, at
  bar index p, uses the simple means of the first p gains and losses. When average gain
  and loss are both exactly zero (a flat series) RSI is 50, where TA-Lib reports 0.
* MACD(fast, slow, signal): like TA-Lib, both EMAs start at bar slow - 1; the fast EMA
  is seeded with the mean of the `fast` inputs ending there, so the MACD line starts at
  slow - 1. The signal line is an EMA(signal) of the MACD line seeded with the mean of
  its first `signal` values, so signal and histogram start at slow + signal - 2.
"""

from __future__ import annotations

import numbers

from engine.errors import ConfigError

# Kernels take int64 periods; nothing sensible needs more.
_MAX_PERIOD = 2**31 - 1


def check_period(name: str, value: object) -> int:
    """Return `value` as an int >= 1, or raise ConfigError."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ConfigError(f"{name} must be an integer >= 1, got {value!r}")
    period = int(value)
    if not 1 <= period <= _MAX_PERIOD:
        raise ConfigError(f"{name} must be an integer in [1, {_MAX_PERIOD}], got {period}")
    return period


def check_macd(fast: object, slow: object, signal: object) -> tuple[int, int, int]:
    """Validate MACD periods: each an int >= 1 and fast < slow."""
    f = check_period("fast", fast)
    s = check_period("slow", slow)
    g = check_period("signal", signal)
    if f >= s:
        raise ConfigError(f"MACD needs fast < slow, got fast={f}, slow={s}")
    return f, s, g


class _Smoother:
    """y = a * y + alpha * x, already seeded."""

    __slots__ = ("_a", "_alpha", "y")

    def __init__(self, alpha: float, seed: float) -> None:
        self._alpha = alpha
        self._a = 1.0 - alpha
        self.y = seed

    def step(self, x: float) -> float:
        self.y = y = self._a * self.y + self._alpha * x
        return y


class EMA:
    """Exponential moving average. `update(x)` returns the new value, or None in warm-up.

    The latest value is also in `.value` (None until bar period - 1).
    """

    __slots__ = ("_n", "_smoother", "_sum", "period", "value")

    def __init__(self, period: int) -> None:
        self.period = check_period("period", period)
        self.value: float | None = None
        self._n = 0
        self._sum = 0.0
        self._smoother: _Smoother | None = None

    def update(self, x: float) -> float | None:
        i = self._n
        self._n = i + 1
        sm = self._smoother
        if sm is not None:
            self.value = y = sm.step(x)
            return y
        self._sum += x
        if i + 1 < self.period:
            return None
        seed = self._sum / self.period
        self._smoother = _Smoother(2.0 / (self.period + 1.0), seed)
        self.value = seed
        return seed


def rsi_value(gain: float, loss: float) -> float:
    """RSI from smoothed average gain and loss; 50 when both are exactly zero."""
    total = gain + loss
    return 100.0 * (gain / total) if total != 0.0 else 50.0


class RSI:
    """Wilder's RSI. `update(x)` returns the new value in [0, 100], or None in warm-up.

    The latest value is also in `.value` (None until bar `period`).
    """

    __slots__ = ("_gain", "_gsum", "_loss", "_lsum", "_n", "_prev", "period", "value")

    def __init__(self, period: int = 14) -> None:
        self.period = check_period("period", period)
        self.value: float | None = None
        self._n = 0
        self._prev = 0.0
        self._gsum = 0.0
        self._lsum = 0.0
        self._gain: _Smoother | None = None
        self._loss: _Smoother | None = None

    def update(self, x: float) -> float | None:
        i = self._n
        self._n = i + 1
        d = x - self._prev
        self._prev = x
        if i == 0:
            return None
        up = d if d > 0.0 else 0.0
        down = -d if d < 0.0 else 0.0
        gain, loss = self._gain, self._loss
        if gain is not None and loss is not None:
            self.value = r = rsi_value(gain.step(up), loss.step(down))
            return r
        self._gsum += up
        self._lsum += down
        if i < self.period:
            return None
        g = self._gsum / self.period
        lo = self._lsum / self.period
        alpha = 1.0 / self.period
        self._gain = _Smoother(alpha, g)
        self._loss = _Smoother(alpha, lo)
        self.value = r = rsi_value(g, lo)
        return r


class MACD:
    """MACD with TA-Lib's alignment. `update(x)` returns (macd, signal, hist) or None.

    None is returned until bar slow + signal - 2. The MACD line alone is available from
    bar slow - 1 in `.macd`; `.signal` and `.hist` follow once the tuple is returned.
    """

    __slots__ = ("_fast", "_fsum", "_msum", "_n", "_signal", "_slow", "_ssum",
                 "fast", "hist", "macd", "signal", "signal_period", "slow")

    def __init__(self, fast: int = 12, slow: int = 26, signal: int = 9) -> None:
        self.fast, self.slow, self.signal_period = check_macd(fast, slow, signal)
        self.macd: float | None = None
        self.signal: float | None = None
        self.hist: float | None = None
        self._n = 0
        self._fsum = 0.0
        self._ssum = 0.0
        self._msum = 0.0
        self._fast: _Smoother | None = None
        self._slow: _Smoother | None = None
        self._signal: _Smoother | None = None

    def update(self, x: float) -> tuple[float, float, float] | None:
        i = self._n
        self._n = i + 1
        fast, slow = self._fast, self._slow
        if fast is None or slow is None:
            self._ssum += x
            if i >= self.slow - self.fast:
                self._fsum += x
            if i < self.slow - 1:
                return None
            f = self._fsum / self.fast
            s = self._ssum / self.slow
            self._fast = _Smoother(2.0 / (self.fast + 1.0), f)
            self._slow = _Smoother(2.0 / (self.slow + 1.0), s)
        else:
            f = fast.step(x)
            s = slow.step(x)
        self.macd = m = f - s
        sig = self._signal
        if sig is not None:
            g = sig.step(m)
        else:
            self._msum += m
            if i < self.slow + self.signal_period - 2:
                return None
            g = self._msum / self.signal_period
            self._signal = _Smoother(2.0 / (self.signal_period + 1.0), g)
        self.signal = g
        self.hist = h = m - g
        return (m, g, h)
