"""The return series `supreme stats` works on, from a stored run or a CSV of returns.

A run's series comes from its equity snapshots: period t's simple return is
equity[t] / equity[t-1] - 1, stamped with the later snapshot's time; the period was in the
market when a position was held at its start. The market's closes on the same timestamps
(for the buy-and-hold and random-entry baselines) are rebuilt from what the run replayed:
the simulator's seed and model, or the data file.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from engine.errors import DataError
from engine.store.base import Store

SECONDS_PER_YEAR = 365 * 86_400.0


@dataclass
class ReturnSeries:
    label: str
    timestamps_ms: npt.NDArray[np.int64]
    returns: npt.NDArray[np.float64]
    periods_per_year: float
    trade_pnls: list[float] | None = None
    in_market: npt.NDArray[np.bool_] | None = None
    position_fraction: float | None = None  # mean position value / equity while in market
    run_id: str | None = None
    run_config: dict[str, Any] | None = None

    def __len__(self) -> int:
        return len(self.returns)


def periods_per_year(timestamps_ms: npt.NDArray[np.int64]) -> float:
    """From the median spacing of the timestamps, on a 365-day year."""
    if len(timestamps_ms) < 2:
        raise DataError("need at least two timestamps to tell the period length")
    spacing_s = float(np.median(np.diff(timestamps_ms))) / 1000.0
    if not spacing_s > 0:
        raise DataError("timestamps must increase: the median spacing is not positive")
    return SECONDS_PER_YEAR / spacing_s


def from_run(store: Store, run_id: str) -> ReturnSeries:
    run = store.get_run(run_id)
    if run is None:
        raise DataError(f"no run {run_id!r} in {store.url_redacted}")
    equity = store.equity_for_run(run_id)
    if len(equity) < 3:
        raise DataError(f"run {run_id[:12]} has {len(equity)} equity snapshots; "
                        "statistics need at least 3")
    ts = np.array([e.ts_ms for e in equity], dtype=np.int64)
    eq = np.array([e.equity for e in equity], dtype=np.float64)
    held = np.array([e.position_value for e in equity], dtype=np.float64)
    if np.any(eq <= 0):
        raise DataError(f"run {run_id[:12]} has non-positive equity snapshots")
    returns = eq[1:] / eq[:-1] - 1.0
    # In the market when a position was held at either end of the period: an entry fills
    # at a bar's open and an exit at its open or stop, inside the period.
    in_market = (held[:-1] != 0.0) | (held[1:] != 0.0)
    holding = held[1:] != 0.0
    fractions = held[1:][holding] / eq[1:][holding]
    trades = store.trades_for_run(run_id)
    return ReturnSeries(
        label=f"run {run_id[:12]}", timestamps_ms=ts[1:], returns=returns,
        periods_per_year=periods_per_year(ts), trade_pnls=[t.pnl for t in trades],
        in_market=in_market,
        position_fraction=float(np.mean(fractions)) if len(fractions) else None,
        run_id=run_id, run_config=dict(run.config))


def from_returns_csv(path: str | Path) -> ReturnSeries:
    """A CSV with the header `timestamp,return`: ISO-8601 UTC timestamps and simple returns
    per period."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read {p}: {exc}") from exc
    rows = list(csv.reader(text.splitlines()))
    if not rows or [c.strip().lower() for c in rows[0]] != ["timestamp", "return"]:
        raise DataError(f"{p}: the first line must be the header 'timestamp,return'")
    ts: list[int] = []
    rets: list[float] = []
    for line_no, row in enumerate(rows[1:], start=2):
        if not row or not "".join(row).strip():
            continue
        if len(row) != 2:
            raise DataError(f"{p}:{line_no}: expected 2 columns, got {len(row)}")
        ts.append(_parse_time(row[0], p, line_no))
        try:
            value = float(row[1])
        except ValueError as exc:
            raise DataError(f"{p}:{line_no}: return {row[1]!r} is not a number") from exc
        if not math.isfinite(value) or value <= -1.0:
            raise DataError(f"{p}:{line_no}: return {row[1]!r} must be finite and > -1")
        rets.append(value)
        if len(ts) > 1 and ts[-1] <= ts[-2]:
            raise DataError(f"{p}:{line_no}: timestamps must strictly increase")
    if len(rets) < 3:
        raise DataError(f"{p}: statistics need at least 3 returns, found {len(rets)}")
    stamps = np.array(ts, dtype=np.int64)
    return ReturnSeries(label=p.name, timestamps_ms=stamps,
                        returns=np.array(rets, dtype=np.float64),
                        periods_per_year=periods_per_year(stamps))


def _parse_time(text: str, path: Path, line_no: int) -> int:
    raw = text.strip()
    try:
        when = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError as exc:
        raise DataError(f"{path}:{line_no}: timestamp {raw!r} is not ISO-8601") from exc
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)  # the format is UTC; a bare time means UTC
    elif when.utcoffset() != UTC.utcoffset(None):
        raise DataError(f"{path}:{line_no}: timestamp {raw!r} must be UTC")
    return int(when.timestamp() * 1000)


def market_closes(config: dict[str, Any], timestamps_ms: npt.NDArray[np.int64]
                  ) -> npt.NDArray[np.float64]:
    """The closes a run traded on, at `timestamps_ms` (and one period before the first)."""
    feed = config.get("feed")
    wanted = {int(t) for t in timestamps_ms}
    first = int(timestamps_ms[0])
    closes: dict[int, float] = {}
    previous: float | None = None
    if feed == "sim":
        from engine.feeds.sim import SimFeed, sim_params

        bars = iter(SimFeed(symbol=str(config.get("symbol") or "ETH-USDT"),
                            seed=int(config.get("seed") or 0),
                            params=sim_params(str(config.get("sim_model") or "calibrated"))))
    elif feed == "replay" and config.get("data_file"):
        from engine.feeds.replay import load_series

        bars = iter(load_series(config["data_file"],
                                policy=str(config.get("replay_policy") or "fail")))
    else:
        raise DataError(f"the market prices of a {feed!r} run cannot be rebuilt; "
                        "compare it with --baseline run:ID instead")
    last = int(timestamps_ms[-1])
    for bar in bars:
        if bar.ts < first:
            previous = bar.close
        elif bar.ts in wanted:
            closes[bar.ts] = bar.close
        if bar.ts >= last:
            break
    if previous is None or len(closes) != len(wanted):
        raise DataError("the run's market data no longer matches its equity timestamps")
    return np.array([previous] + [closes[int(t)] for t in timestamps_ms], dtype=np.float64)
