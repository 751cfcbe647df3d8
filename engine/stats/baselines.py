"""Baselines a candidate is compared against, on the same timestamps.

- buy-and-hold: fully invested from the first period to the last, paying the broker's fee
  and slippage once on entry and once on exit.
- random: the candidate's number of trades with the candidate's holding times, placed at
  random non-overlapping starts (seeded), each holding the candidate's mean position
  fraction of equity and paying the same costs. It matches exposure and trade count, so
  what it lacks is only the candidate's timing.
- another run: its returns where its timestamps meet the candidate's.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from engine.errors import ConfigError, DataError
from engine.stats.series import ReturnSeries, market_closes

DEFAULT_COST_BPS = 11.0  # the default broker: 10 bps fee + 1 bp slippage per fill


def _cost(series: ReturnSeries) -> float:
    cfg = series.run_config or {}
    fee = cfg.get("broker.fee_bps")
    slip = cfg.get("broker.slippage_bps")
    if fee is None or slip is None:
        return DEFAULT_COST_BPS / 10_000.0
    return (float(fee) + float(slip)) / 10_000.0


def market_returns(candidate: ReturnSeries) -> npt.NDArray[np.float64]:
    closes = market_closes(candidate.run_config or {}, candidate.timestamps_ms)
    return closes[1:] / closes[:-1] - 1.0


def buy_and_hold(candidate: ReturnSeries) -> ReturnSeries:
    rets = market_returns(candidate).copy()
    cost = _cost(candidate)
    rets[0] = (1.0 + rets[0]) * (1.0 - cost) - 1.0
    rets[-1] = (1.0 + rets[-1]) * (1.0 - cost) - 1.0
    return ReturnSeries(label="buy-and-hold", timestamps_ms=candidate.timestamps_ms,
                        returns=rets, periods_per_year=candidate.periods_per_year,
                        in_market=np.ones(len(rets), dtype=bool))


def _holding_runs(in_market: npt.NDArray[np.bool_]) -> list[int]:
    """Lengths of the candidate's consecutive in-market stretches (its holding times)."""
    runs: list[int] = []
    length = 0
    for held in in_market:
        if held:
            length += 1
        elif length:
            runs.append(length)
            length = 0
    if length:
        runs.append(length)
    return runs


def random_entries(candidate: ReturnSeries, seed: int = 0) -> ReturnSeries:
    if candidate.in_market is None:
        raise DataError("a random-entry baseline needs the candidate's positions (a run)")
    market = market_returns(candidate)
    n = len(market)
    holds = _holding_runs(candidate.in_market)
    rng = np.random.default_rng(seed)
    fraction = candidate.position_fraction or 0.0
    cost = _cost(candidate)
    rets = np.zeros(n, dtype=np.float64)
    in_market = np.zeros(n, dtype=bool)
    free = n - sum(holds)
    if holds and free >= 0:
        # Non-overlapping placement: shuffle the holds, then spread the free periods among
        # the len(holds) + 1 gaps uniformly (stars and bars).
        order = rng.permutation(len(holds))
        cuts = np.sort(rng.integers(0, free + 1, size=len(holds)))
        gaps = np.diff(np.concatenate(([0], cuts)))
        start = 0
        for gap, index in zip(gaps, order, strict=True):
            start += int(gap)
            length = holds[index]
            stop = start + length
            rets[start:stop] = fraction * market[start:stop]
            rets[start] = (1.0 + rets[start]) * (1.0 - cost * fraction) - 1.0
            rets[stop - 1] = (1.0 + rets[stop - 1]) * (1.0 - cost * fraction) - 1.0
            in_market[start:stop] = True
            start = stop
    return ReturnSeries(label=f"random entries (seed {seed})",
                        timestamps_ms=candidate.timestamps_ms, returns=rets,
                        periods_per_year=candidate.periods_per_year, in_market=in_market,
                        trade_pnls=None, position_fraction=fraction)


def align(candidate: ReturnSeries, other: ReturnSeries) -> tuple[ReturnSeries, ReturnSeries]:
    """Both series restricted to the timestamps they share (paired comparison)."""
    common, ci, oi = np.intersect1d(candidate.timestamps_ms, other.timestamps_ms,
                                    assume_unique=True, return_indices=True)
    if len(common) < 3:
        raise DataError(f"{candidate.label} and {other.label} share {len(common)} periods; "
                        "a paired comparison needs them on the same data")

    def cut(s: ReturnSeries, idx: npt.NDArray[np.intp]) -> ReturnSeries:
        return ReturnSeries(label=s.label, timestamps_ms=common, returns=s.returns[idx],
                            periods_per_year=s.periods_per_year, trade_pnls=s.trade_pnls,
                            in_market=None if s.in_market is None else s.in_market[idx],
                            position_fraction=s.position_fraction, run_id=s.run_id,
                            run_config=s.run_config)

    return cut(candidate, ci), cut(other, oi)


BASELINES = ("buy-and-hold", "random")


def baseline_for(name: str, candidate: ReturnSeries, seed: int = 0) -> ReturnSeries:
    if name == "buy-and-hold":
        return buy_and_hold(candidate)
    if name == "random":
        return random_entries(candidate, seed)
    raise ConfigError(f"unknown baseline {name!r}; use buy-and-hold, random or run:ID")
