"""Walk-forward: does what a strategy showed in-sample hold out-of-sample?

The series is cut into consecutive windows of equal length; each window's first part is
in-sample (IS) and the rest out-of-sample (OOS). Rolling: windows do not overlap, each
IS is its own window's first part, so no IS ever sees an earlier OOS and every window is
judged on fresh data. Anchored: the OOS parts are the same, but each IS runs from the
first return to its OOS, so it grows window by window (what a strategy re-fitted on all
history so far would see). When the windows do not divide the series evenly, the
leftover returns are dropped from the start (rolling) so that the last OOS ends at the
last return, the one nearest to live trading; anchored IS parts include them.

Metrics come from the caller's `metric_fn(returns, periods_per_year) -> dict`, run on each
part. Degradation, per window and metric: OOS - IS and, where IS is not 0, OOS / IS;
then their means over the windows. Only finite numbers (not bools) are compared; other
values (None for an undefined metric, say) are reported as they are and skipped.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from engine.errors import ConfigError, DataError

MetricFn = Callable[[npt.NDArray[np.float64], float], Mapping[str, Any]]

DEFAULT_WINDOWS = 5
MIN_PART = 2  # returns in each IS and OOS part: fewer leave a Sharpe undefined


@dataclass(frozen=True, slots=True)
class Split:
    """One window's parts as half-open index ranges [start, end) into the returns; the
    window itself is [window_start, oos_end) (is_start is 0 when anchored)."""

    index: int
    window_start: int
    is_start: int
    is_end: int
    oos_start: int
    oos_end: int


def walk_forward_splits(n: int, *, windows: int | None = None,
                        window_length: int | None = None, in_sample_fraction: float = 0.7,
                        anchored: bool = False, min_part: int = MIN_PART) -> list[Split]:
    """The windows for a series of n returns: `windows` of them, or as many of
    `window_length` returns as fit (give one of the two; neither means DEFAULT_WINDOWS)."""
    _check_int(min_part, "min_part", 1)
    if not 0.0 < in_sample_fraction < 1.0:
        raise ConfigError(f"in_sample_fraction must be strictly between 0 and 1, got "
                          f"{in_sample_fraction!r}")
    if windows is not None and window_length is not None:
        raise ConfigError("give the number of windows or their length, not both")
    if window_length is not None:
        _check_int(window_length, "window_length", 2 * min_part)
        if window_length > n:
            raise DataError(f"a series of {n} returns is shorter than one window of "
                            f"{window_length}")
        count, length = n // window_length, window_length
    else:
        count = DEFAULT_WINDOWS if windows is None else windows
        _check_int(count, "windows", 1)
        length = n // count
    in_sample = round(in_sample_fraction * length)
    if min(in_sample, length - in_sample) < min_part:
        raise DataError(f"a series of {n} returns is too short for {count} windows of "
                        f"{length} with at least {min_part} returns in-sample and "
                        f"out-of-sample (in-sample fraction {in_sample_fraction})")
    offset = n - count * length  # leftover returns, dropped from the start
    splits = []
    for i in range(count):
        start = offset + i * length
        oos_start = start + in_sample
        splits.append(Split(i, start, 0 if anchored else start, oos_start, oos_start,
                            start + length))
    return splits


def walk_forward(returns: npt.ArrayLike, timestamps: npt.ArrayLike | None = None, *,
                 metric_fn: MetricFn, periods_per_year: float, windows: int | None = None,
                 window_length: int | None = None, in_sample_fraction: float = 0.7,
                 anchored: bool = False, min_part: int = MIN_PART) -> dict[str, Any]:
    """IS and OOS metrics of every window, their degradation, and its means.

    `timestamps` (optional, one per return, strictly increasing) only label the parts.
    """
    if not callable(metric_fn):
        raise ConfigError("metric_fn must be callable as metric_fn(returns, periods_per_year)")
    if not (isinstance(periods_per_year, int | float) and math.isfinite(periods_per_year)
            and periods_per_year > 0):
        raise ConfigError(f"periods_per_year must be positive, got {periods_per_year!r}")
    x = _returns(returns)
    stamps = None if timestamps is None else _timestamps(timestamps, len(x))
    splits = walk_forward_splits(len(x), windows=windows, window_length=window_length,
                                 in_sample_fraction=in_sample_fraction, anchored=anchored,
                                 min_part=min_part)
    rows = []
    for s in splits:
        ins = _part(x, stamps, s.is_start, s.is_end, metric_fn, periods_per_year)
        oos = _part(x, stamps, s.oos_start, s.oos_end, metric_fn, periods_per_year)
        rows.append({"index": s.index, "in_sample": ins, "out_of_sample": oos,
                     "degradation": _degradation(ins["metrics"], oos["metrics"])})
    first = splits[0]
    return {
        "config": {"periods": len(x), "windows": len(splits),
                   "window_length": first.oos_end - first.window_start,
                   "in_sample_fraction": in_sample_fraction, "anchored": anchored,
                   "dropped_at_start": 0 if anchored else first.window_start},
        "windows": rows,
        "degradation": _mean_degradation(rows),
    }


def _part(x: npt.NDArray[np.float64], stamps: npt.NDArray[Any] | None, start: int, end: int,
          metric_fn: MetricFn, periods_per_year: float) -> dict[str, Any]:
    segment = x[start:end]
    metrics = dict(metric_fn(segment, periods_per_year))
    part: dict[str, Any] = {"start": start, "end": end, "n": end - start}
    if stamps is not None:
        part["first_timestamp"] = stamps[start].item()
        part["last_timestamp"] = stamps[end - 1].item()
    part["metrics"] = metrics
    return part


def _number(value: Any) -> float | None:
    """value as a float when it is a finite real number (not a bool), else None."""
    if isinstance(value, bool | np.bool_) or not isinstance(value, int | float | np.number):
        return None
    out = float(value)
    return out if math.isfinite(out) else None


def _degradation(ins: Mapping[str, Any], oos: Mapping[str, Any]) -> dict[str, Any]:
    out = {}
    for key in ins:
        a, b = _number(ins[key]), _number(oos.get(key))
        if a is None or b is None:
            continue
        out[key] = {"difference": b - a, "ratio": b / a if a != 0.0 else None}
    return out


def _mean_degradation(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Per metric, means over the windows where both IS and OOS are numbers."""
    keys: dict[str, None] = {}
    for row in rows:
        keys.update(dict.fromkeys(row["degradation"]))
    out = {}
    for key in keys:
        used = [r for r in rows if key in r["degradation"]]
        ins = [float(r["in_sample"]["metrics"][key]) for r in used]
        oos = [float(r["out_of_sample"]["metrics"][key]) for r in used]
        ratios = [r["degradation"][key]["ratio"] for r in used
                  if r["degradation"][key]["ratio"] is not None]
        out[key] = {"windows": len(used),
                    "in_sample_mean": float(np.mean(ins)),
                    "out_of_sample_mean": float(np.mean(oos)),
                    "difference_mean": float(np.mean(oos) - np.mean(ins)),
                    "ratio_mean": float(np.mean(ratios)) if ratios else None,
                    "ratio_windows": len(ratios)}
    return out


def _returns(values: npt.ArrayLike) -> npt.NDArray[np.float64]:
    try:
        x = np.array(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise DataError(f"returns are not numbers: {exc}") from None
    if x.ndim != 1:
        raise DataError(f"returns must be one-dimensional, got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise DataError("returns contain NaN or infinite values")
    x.setflags(write=False)  # metric_fn gets views of it and must not change them
    return x


def _timestamps(values: npt.ArrayLike, n: int) -> npt.NDArray[Any]:
    stamps = np.asarray(values)
    if stamps.shape != (n,):
        raise DataError(f"need one timestamp per return ({n}), got shape {stamps.shape}")
    if n > 1 and not np.all(stamps[1:] > stamps[:-1]):
        raise DataError("timestamps must be strictly increasing")
    return stamps


def _check_int(value: Any, name: str, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ConfigError(f"{name} must be an integer >= {minimum}, got {value!r}")
