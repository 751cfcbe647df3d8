"""Plain value types shared across the engine."""

from __future__ import annotations

from typing import NamedTuple


class Bar(NamedTuple):
    """One OHLCV candle. `ts` is the candle's open time in milliseconds since the epoch (UTC)."""

    ts: int
    open: float
    high: float
    low: float
    close: float
    volume: float
