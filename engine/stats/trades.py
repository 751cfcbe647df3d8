"""Trade statistics: win rate with its Wilson interval, profit factor, expectancy, SQN,
and exposure. A win has PnL > 0, a loss PnL < 0; break-even trades count as trades only;
profit factor is None, not inf, without a losing trade; avg_loss is negative."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy.stats import norm

from engine.errors import ConfigError, DataError
from engine.stats._arrays import _finite_array, _is_constant, _or_none

TRADE_STAT_KEYS = ("trades", "wins", "losses", "win_rate", "win_rate_ci", "gross_profit",
                   "gross_loss", "profit_factor", "expectancy", "avg_win", "avg_loss",
                   "payoff_ratio", "sqn")


def wilson_interval(successes: int, trials: int, confidence: float = 0.95
                    ) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion."""
    if trials < 1 or not 0 <= successes <= trials:
        raise ConfigError(f"need 0 <= successes <= trials and trials >= 1, "
                          f"got {successes}/{trials}")
    if not 0.0 < confidence < 1.0:
        raise ConfigError(f"confidence must be between 0 and 1, got {confidence!r}")
    z = float(norm.ppf(0.5 + confidence / 2.0))
    share = successes / trials
    shrink = 1.0 + z * z / trials
    centre = (share + z * z / (2 * trials)) / shrink
    half = z / shrink * math.sqrt(share * (1 - share) / trials + z * z / (4 * trials**2))
    # At 0 or all successes the exact bound is 0 or 1; rounding would miss it by an ulp.
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == trials else min(1.0, centre + half)
    return low, high


def system_quality_number(trade_pnls: npt.ArrayLike) -> float | None:
    """Van Tharp's SQN, sqrt(n) * mean / std(ddof=1), without capping n at 100."""
    pnl = _finite_array(trade_pnls, "trade_pnls")
    if pnl.size < 2 or _is_constant(pnl):
        return None
    return _or_none(math.sqrt(pnl.size) * pnl.mean() / pnl.std(ddof=1))


def trade_stats(trade_pnls: npt.ArrayLike, confidence: float = 0.95) -> dict[str, Any]:
    pnl = _finite_array(trade_pnls, "trade_pnls")
    wins, losses = pnl[pnl > 0], pnl[pnl < 0]
    gross_profit, gross_loss = float(wins.sum()), float(-losses.sum())
    avg_win = float(wins.mean()) if wins.size else None
    avg_loss = float(losses.mean()) if losses.size else None
    return {
        "trades": int(pnl.size), "wins": int(wins.size), "losses": int(losses.size),
        "win_rate": wins.size / pnl.size if pnl.size else None,
        "win_rate_ci": list(wilson_interval(wins.size, pnl.size, confidence))
        if pnl.size else None,
        "gross_profit": gross_profit, "gross_loss": gross_loss,
        "profit_factor": _or_none(gross_profit / gross_loss) if gross_loss > 0 else None,
        "expectancy": float(pnl.mean()) if pnl.size else None,
        "avg_win": avg_win, "avg_loss": avg_loss,
        "payoff_ratio": _or_none(avg_win / -avg_loss)
        if avg_win is not None and avg_loss is not None else None,
        "sqn": system_quality_number(pnl),
    }


def exposure(in_market: npt.ArrayLike) -> float:
    """Fraction of periods with a position, from booleans or 0/1 values."""
    flags = _finite_array(in_market, "in_market")
    if flags.size == 0:
        raise DataError("in_market is empty")
    other = np.flatnonzero((flags != 0.0) & (flags != 1.0))
    if other.size:
        raise DataError(f"in_market must be 0/1; position {other[0]} is {flags[other[0]]}")
    return float(flags.mean())


def in_market_from_trades(period_timestamps: npt.ArrayLike, entry_timestamps: npt.ArrayLike,
                          exit_timestamps: npt.ArrayLike) -> npt.NDArray[np.bool_]:
    """Per period, whether a trade was open at its timestamp: entry <= t < exit. All three
    in the same unit; a period stamped at a bar's open is held over that bar."""
    stamps = _finite_array(period_timestamps, "period_timestamps")
    entries = _finite_array(entry_timestamps, "entry_timestamps")
    exits = _finite_array(exit_timestamps, "exit_timestamps")
    if stamps.size > 1 and np.any(np.diff(stamps) <= 0):
        raise DataError("period_timestamps must strictly increase")
    if entries.size != exits.size:
        raise DataError(f"{entries.size} entry timestamps but {exits.size} exit timestamps")
    backwards = np.flatnonzero(exits < entries)
    if backwards.size:
        raise DataError(f"trade {backwards[0]} exits before it enters")
    # +1 where a trade opens, -1 where it closes; a running sum > 0 means a position is held.
    opens = np.zeros(stamps.size + 1, dtype=np.int64)
    np.add.at(opens, np.searchsorted(stamps, entries, side="left"), 1)
    np.add.at(opens, np.searchsorted(stamps, exits, side="left"), -1)
    return np.cumsum(opens[:-1]) > 0
