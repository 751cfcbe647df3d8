"""Risk management: position sizing, stops, limits and the drawdown breaker.

Sizing is fixed-fractional: a position loses `risk_per_trade` of equity if its stop is hit.
The stop sits `stop_vol_mult` recent-volatility units below entry (never closer than
`min_stop_bps`), the take-profit `take_profit_r` times that distance above. The size is then
capped by `max_position_fraction` of equity. New entries halt for the rest of the UTC day
after `max_daily_loss`, and for the rest of the run once drawdown from peak equity exceeds
`max_drawdown` (the breaker latches; a person decides when to trade again).
"""

from __future__ import annotations

from typing import NamedTuple

from engine.config import RiskParams

DAY_MS = 86_400_000

REJECT_BREAKER = "drawdown_breaker"
REJECT_DAILY_LOSS = "daily_loss_limit"
REJECT_ZERO_SIZE = "size_below_minimum"
REJECT_NO_VOLATILITY = "no_volatility_estimate"
REJECT_SPREAD = "spread_too_wide"


class Sizing(NamedTuple):
    qty: float
    stop_price: float
    take_profit: float
    capped: bool


class RiskManager:
    __slots__ = ("_p", "breaker_tripped", "day", "day_start_equity", "drawdown",
                 "max_drawdown_seen", "peak_equity")

    def __init__(self, params: RiskParams | None = None, starting_equity: float = 10_000.0):
        self._p = params or RiskParams()
        self.peak_equity = starting_equity
        self.drawdown = 0.0
        self.max_drawdown_seen = 0.0
        self.day = -1
        self.day_start_equity = starting_equity
        self.breaker_tripped = False

    def mark(self, equity: float, ts_ms: int) -> float:
        """Track peak, drawdown and the trading day; return the current drawdown fraction."""
        day = ts_ms // DAY_MS
        if day != self.day:
            self.day = day
            self.day_start_equity = equity
        if equity > self.peak_equity:
            self.peak_equity = equity
            self.drawdown = 0.0
            return 0.0
        dd = 1.0 - equity / self.peak_equity
        self.drawdown = dd
        if dd > self.max_drawdown_seen:
            self.max_drawdown_seen = dd
            if dd > self._p.max_drawdown:
                self.breaker_tripped = True
        return dd

    def entry_blocked(self, equity: float) -> str | None:
        """The reason new entries are not allowed now, or None."""
        if self.breaker_tripped:
            return REJECT_BREAKER
        if equity < self.day_start_equity * (1.0 - self._p.max_daily_loss):
            return REJECT_DAILY_LOSS
        return None

    def stop_distance(self, price: float, volatility: float) -> float:
        p = self._p
        return max(p.stop_vol_mult * volatility, p.min_stop_bps / 10_000.0) * price

    def size(self, equity: float, price: float, volatility: float) -> Sizing:
        """Fixed-fractional size for a long entry at `price` given per-bar return volatility.

        The reference definition; ScalpStrategy computes the same quantity inline on every
        tick, and a test holds the two equal.
        """
        p = self._p
        stop_distance = self.stop_distance(price, volatility)
        qty = equity * p.risk_per_trade / stop_distance
        cap = equity * p.max_position_fraction / price
        capped = qty > cap
        if capped:
            qty = cap
        return Sizing(qty, price - stop_distance, price + p.take_profit_r * stop_distance, capped)

    def levels(self, price: float, volatility: float) -> tuple[float, float]:
        """Stop-loss and take-profit prices for a long entry at `price`."""
        distance = self.stop_distance(price, volatility)
        return price - distance, price + self._p.take_profit_r * distance
