"""Array checks and small numeric helpers shared by the stats modules."""

from __future__ import annotations

import math
import numbers
from typing import Literal

import numpy as np
import numpy.typing as npt

from engine.errors import ConfigError, DataError

FloatArray = npt.NDArray[np.float64]
TimestampUnit = Literal["auto", "s", "ms"]
SECONDS_PER_YEAR = 365 * 86_400
# Epoch values at or above this read as milliseconds: 1e11 s is the year 5138, 1e11 ms 1973.
_MILLISECONDS_FROM = 1e11

def _finite_array(values: npt.ArrayLike, name: str) -> FloatArray:
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise DataError(f"{name} must be numeric: {exc}") from exc
    if array.ndim != 1:
        raise DataError(f"{name} must be one-dimensional, got shape {array.shape}")
    bad = np.flatnonzero(~np.isfinite(array))
    if bad.size:
        raise DataError(f"{name} has a non-finite value ({array[bad[0]]}) at position {bad[0]}")
    return array


def _returns(values: npt.ArrayLike) -> FloatArray:
    returns = _finite_array(values, "returns")
    below = np.flatnonzero(returns < -1.0)
    if below.size:
        raise DataError(f"returns has {returns[below[0]]} at position {below[0]}: a simple "
                        "return below -100% would mean negative equity")
    return returns


def _periods_per_year(value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) \
            or not math.isfinite(value) or value <= 0:
        raise ConfigError(f"periods_per_year must be a positive number, got {value!r}")
    return float(value)


def _or_none(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def _is_constant(values: FloatArray) -> bool:
    # Exact test, as empyrical does: the std of equal values can be a 1e-18 residue.
    return values.size > 0 and bool(values.max() == values.min())


def _timestamps_seconds(timestamps: npt.ArrayLike, unit: TimestampUnit) -> FloatArray:
    stamps = _finite_array(timestamps, "timestamps")
    if stamps.size < 2:
        raise DataError("at least two timestamps are needed to measure their spacing")
    early = np.flatnonzero(np.diff(stamps) <= 0)
    if early.size:
        raise DataError(f"timestamps must strictly increase; position {early[0] + 1} "
                        f"is not after position {early[0]}")
    if unit == "auto":
        largest = max(abs(stamps[0]), abs(stamps[-1]))
        unit = "ms" if largest >= _MILLISECONDS_FROM else "s"
    elif unit not in ("s", "ms"):
        raise ConfigError(f"timestamp unit must be 'auto', 's' or 'ms', got {unit!r}")
    return stamps / 1000.0 if unit == "ms" else stamps
