"""The default scalping strategy, fused with its indicators for the per-tick path.

Entry (long only; spot has no shorting): the MACD histogram crosses above zero (MACD crosses
its signal line) and three filters agree:
  * RSI (Wilder) lies inside [rsi_min, rsi_max]: momentum, but not already overbought;
  * the trend agrees: fast EMA above slow EMA;
  * the cross is strong enough: |histogram| >= min_strength_bps of the price;
and the cooldown since the last entry has passed.
Exit: the histogram crosses back below zero, or RSI rises above rsi_exit. Stops and take-
profits belong to risk management and the broker, not here.

Every cross yields a code: BUY / SELL_* when the signal fires, FILTERED_* naming the first
filter that stopped it. `describe()` turns a code into a sentence with the numbers behind it.

The indicator arithmetic is written out here rather than composed from
engine.indicators.incremental because one method with state in slots is several times faster
than a call per indicator; tests hold it equal to those classes and to the batch functions.
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import Any

from engine.config import RiskParams, StrategyParams

NONE = 0
BUY = 1
SELL_MACD = 2
SELL_RSI = 3
FILTERED_COOLDOWN = 10
FILTERED_RSI_LOW = 11
FILTERED_RSI_HIGH = 12
FILTERED_TREND = 13
FILTERED_WEAK = 14

FIRED = frozenset({BUY, SELL_MACD, SELL_RSI})
ACTION = {BUY: "buy", SELL_MACD: "sell", SELL_RSI: "sell"}
REASON_KEY = {
    BUY: "macd_cross_up",
    SELL_MACD: "macd_cross_down",
    SELL_RSI: "rsi_exit",
    FILTERED_COOLDOWN: "filtered_cooldown",
    FILTERED_RSI_LOW: "filtered_rsi_low",
    FILTERED_RSI_HIGH: "filtered_rsi_high",
    FILTERED_TREND: "filtered_trend",
    FILTERED_WEAK: "filtered_weak",
}


class ScalpStrategy:
    """EMA fast/slow, MACD + signal, RSI, an EWMA return variance and the entry size, in O(1).

    The entry size is engine.risk.RiskManager.size's quantity, computed inline on every
    tick for the equity last given to `set_sizing_equity` (the cash while flat): a call per
    tick into the risk module would cost as much as all the indicators together.
    """

    __slots__ = (
        "_a_fast", "_a_sig", "_a_slow", "_a_var", "_buf", "_cap_budget", "_inv_rsi", "_k",
        "_min_stop_var", "_p", "_risk_budget", "_stop_k2", "avg_gain", "avg_loss",
        "cooldown_left", "ema_fast", "ema_slow", "entry_qty", "hist", "long", "prev_close",
        "ready", "risk_params", "signal", "var",
    )

    def __init__(self, params: StrategyParams | None = None, risk: RiskParams | None = None,
                 sizing_equity: float = 10_000.0):
        p = params or StrategyParams()
        r = risk or RiskParams()
        self._p = p
        self.risk_params = r
        self._a_fast = 2.0 / (p.ema_fast + 1)
        self._a_slow = 2.0 / (p.ema_slow + 1)
        self._a_sig = 2.0 / (p.macd_signal + 1)
        self._inv_rsi = 1.0 / p.rsi_period
        self._a_var = 1.0 - 0.5 ** (1.0 / r.vol_halflife_bars)
        self._k = (self._a_fast, self._a_slow, self._a_sig, self._inv_rsi, self._a_var)
        # Sizing compares variances, not deviations, to skip a square root when the floor wins.
        self._stop_k2 = r.stop_vol_mult**2
        self._min_stop_var = (r.min_stop_bps / 10_000.0) ** 2
        self._risk_budget = self._cap_budget = 0.0
        self.set_sizing_equity(sizing_equity)
        self.entry_qty = 0.0
        self._buf: list[float] = []
        self.ready = False
        self.ema_fast = self.ema_slow = self.signal = self.hist = float("nan")
        self.avg_gain = self.avg_loss = float("nan")
        self.prev_close = float("nan")
        self.var = 0.0
        self.cooldown_left = 0
        self.long = False

    def set_sizing_equity(self, equity: float) -> None:
        r = self.risk_params
        self._risk_budget = equity * r.risk_per_trade
        self._cap_budget = equity * r.max_position_fraction

    @property
    def macd(self) -> float:
        return self.ema_fast - self.ema_slow

    @property
    def rsi(self) -> float:
        total = self.avg_gain + self.avg_loss
        if total != total:
            return float("nan")
        return 100.0 * self.avg_gain / total if total > 0.0 else 0.0

    @property
    def volatility(self) -> float:
        """EWMA standard deviation of simple per-bar returns."""
        return self.var**0.5

    def update(self, close: float) -> int:
        """Feed one close; return NONE, a fired code or a FILTERED_* code."""
        if not self.ready:
            return self._warm_up(close)
        # State is read into locals and written back once: slot access costs more than math.
        a_fast, a_slow, a_sig, inv, a_var = self._k
        prev_close = self.prev_close
        change = close - prev_close
        ret = change / prev_close
        var = self.var
        var += a_var * (ret * ret - var)
        self.var = var
        stop_var = self._stop_k2 * var
        if stop_var < self._min_stop_var:
            stop_var = self._min_stop_var
        qty = self._risk_budget / (stop_var**0.5 * close)
        cap = self._cap_budget / close
        self.entry_qty = qty if qty < cap else cap
        gain = self.avg_gain
        loss = self.avg_loss
        if change > 0.0:
            self.avg_gain = gain + (change - gain) * inv
            self.avg_loss = loss - loss * inv
        else:
            self.avg_gain = gain - gain * inv
            self.avg_loss = loss + (-change - loss) * inv
        self.prev_close = close
        fast = self.ema_fast
        fast += a_fast * (close - fast)
        self.ema_fast = fast
        slow = self.ema_slow
        slow += a_slow * (close - slow)
        self.ema_slow = slow
        macd = fast - slow
        signal = self.signal
        signal += a_sig * (macd - signal)
        self.signal = signal
        prev_hist = self.hist
        hist = macd - signal
        self.hist = hist
        if self.cooldown_left:
            self.cooldown_left -= 1
        if self.long:
            if prev_hist > 0.0 >= hist:
                return SELL_MACD
            if self.rsi > self._p.rsi_exit:
                return SELL_RSI
            return NONE
        if prev_hist <= 0.0 < hist:
            return self._entry(close, hist)
        return NONE

    def _entry(self, close: float, hist: float) -> int:
        p = self._p
        if self.cooldown_left:
            return FILTERED_COOLDOWN
        rsi = self.rsi
        if rsi < p.rsi_min:
            return FILTERED_RSI_LOW
        if rsi > p.rsi_max:
            return FILTERED_RSI_HIGH
        if self.ema_fast <= self.ema_slow:
            return FILTERED_TREND
        if hist * 10_000.0 < p.min_strength_bps * close:
            return FILTERED_WEAK
        self.cooldown_left = p.cooldown_bars
        return BUY

    def _warm_up(self, close: float) -> int:
        """Seed each average with the simple mean of its first window, as TA-Lib does."""
        p = self._p
        buf = self._buf
        buf.append(close)
        n = len(buf)
        if n > 1:
            change = close - self.prev_close
            ret = change / self.prev_close
            self.var += self._a_var * (ret * ret - self.var)
            if n - 1 == p.rsi_period:
                steps = list(itertools.pairwise(buf))
                self.avg_gain = sum(max(b - a, 0.0) for a, b in steps) / p.rsi_period
                self.avg_loss = sum(max(a - b, 0.0) for a, b in steps) / p.rsi_period
            elif n - 1 > p.rsi_period:
                self.avg_gain += (max(change, 0.0) - self.avg_gain) * self._inv_rsi
                self.avg_loss += (max(-change, 0.0) - self.avg_loss) * self._inv_rsi
        self.prev_close = close
        if n == p.ema_fast:
            self.ema_fast = sum(buf[-p.ema_fast :]) / p.ema_fast
        elif n > p.ema_fast:
            self.ema_fast += self._a_fast * (close - self.ema_fast)
        if n == p.ema_slow:
            self.ema_slow = sum(buf[-p.ema_slow :]) / p.ema_slow
        elif n > p.ema_slow:
            self.ema_slow += self._a_slow * (close - self.ema_slow)
        if n >= p.ema_slow:
            macd = self.ema_fast - self.ema_slow
            macd_count = n - p.ema_slow + 1
            if macd_count == p.macd_signal:
                self.signal = sum(self._macd_history(p)) / p.macd_signal
            elif macd_count > p.macd_signal:
                self.signal += self._a_sig * (macd - self.signal)
            if macd_count >= p.macd_signal:
                self.hist = macd - self.signal
        if self.hist == self.hist and self.avg_gain == self.avg_gain:
            self.ready = True
            self._buf = []
        return NONE

    def _macd_history(self, p: StrategyParams) -> list[float]:
        """MACD values of the warm-up so far, recomputed once to seed the signal line."""
        a_fast, a_slow = self._a_fast, self._a_slow
        buf = self._buf
        fast = sum(buf[: p.ema_fast]) / p.ema_fast
        for x in buf[p.ema_fast : p.ema_slow]:
            fast += a_fast * (x - fast)
        slow = sum(buf[: p.ema_slow]) / p.ema_slow
        values = [fast - slow]
        for x in buf[p.ema_slow :]:
            fast += a_fast * (x - fast)
            slow += a_slow * (x - slow)
            values.append(fast - slow)
        return values

    _STATE = ("ema_fast", "ema_slow", "signal", "hist", "avg_gain", "avg_loss",
              "prev_close", "var", "cooldown_left", "ready")

    def snapshot(self, ts_ms: int) -> dict[str, Any]:
        """The indicator state as plain data, with the parameters it belongs to."""
        state: dict[str, Any] = {name: getattr(self, name) for name in self._STATE}
        state["buf"] = list(self._buf)
        state["ts"] = ts_ms
        state["params"] = dataclasses.astuple(self._p)
        return state

    def restore(self, state: dict[str, Any]) -> bool:
        """Adopt a snapshot taken with the same parameters; False (and no change) otherwise."""
        if tuple(state.get("params", ())) != dataclasses.astuple(self._p):
            return False
        try:
            values = {name: state[name] for name in self._STATE}
            buf = [float(x) for x in state["buf"]]
        except (KeyError, TypeError, ValueError):
            return False
        for name, value in values.items():
            setattr(self, name, value)
        self._buf = buf
        return True

    def warm_up_bars(self) -> int:
        p = self._p
        return max(p.ema_slow + p.macd_signal - 1, p.rsi_period + 1)

    def facts(self) -> tuple[float, float, float, float, int]:
        """The numbers a reason quotes, captured now so the sentence can be built later."""
        return (self.hist, self.rsi, self.ema_fast, self.ema_slow, self.cooldown_left)

    def describe(self, code: int, close: float) -> str:
        """A sentence saying why a signal fired or was filtered, with the numbers."""
        return describe(self._p, code, close, *self.facts())


def describe(p: StrategyParams, code: int, close: float, hist: float, rsi: float,
             ema_fast: float, ema_slow: float, cooldown_left: int) -> str:
    """The reason sentence for a signal code; pure, so it can run off the tick path."""
    strength_bps = abs(hist) / close * 10_000.0 if close else 0.0
    facts = (
        f"hist={hist:.6g} ({strength_bps:.2f} bps) rsi={rsi:.1f} "
        f"ema{p.ema_fast}={ema_fast:.6g} ema{p.ema_slow}={ema_slow:.6g}"
    )
    text = {
        BUY: "MACD crossed above signal; RSI, trend and strength filters passed",
        SELL_MACD: "MACD crossed below signal",
        SELL_RSI: f"RSI above exit level {p.rsi_exit:g}",
        FILTERED_COOLDOWN: f"cross ignored: cooldown, {cooldown_left} bars left",
        FILTERED_RSI_LOW: f"cross ignored: RSI below {p.rsi_min:g}",
        FILTERED_RSI_HIGH: f"cross ignored: RSI above {p.rsi_max:g}",
        FILTERED_TREND: "cross ignored: fast EMA not above slow EMA",
        FILTERED_WEAK: f"cross ignored: strength below {p.min_strength_bps:g} bps",
    }.get(code, "no signal")
    return f"{text}; {facts}"
