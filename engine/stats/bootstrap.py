"""Resampling behind engine.stats.significance (imported lazily): the automatic block
length and the numba kernels.

Block length (`block_length_for`): twice the Politis & White (2004) length (with the
correction of Patton, Politis & White 2009; AUTO_SCALE says why twice), the choice that
minimises the mean squared error of the block bootstrap's variance of the mean. It reads
the series' autocovariances up to a lag where they stop being significant, so it is
small for uncorrelated returns and grows with their memory (and with n**(1/3)).

Each kernel runs every resample in one call and writes one row (or value) per resample
into a preallocated output; the caller turns those into statistics. None of them holds a
resample's indices: 10,000 resamples of 100,000 returns would be 1e9 of them.

* Block bootstrap (`block_bootstrap_sums_nb`). A resample is a run of circular blocks
  [s, s + length) of the original series, s uniform, until n values are drawn; the
  circular block bootstrap uses `block_length` for every block, the stationary bootstrap
  (Politis & Romano 1994) draws lengths from a geometric law of that mean. Every
  statistic the caller needs is a function of per-resample column sums (of x and x**2),
  and the sum of a column over a block is a difference of two prefix sums, so a
  resample costs one step per block instead of one per value. Paired series share one
  table, so both series of a pair are drawn with the same blocks.
* Block sign flip (`sign_flip_sums_nb`): the sum of given block totals, each with a
  random sign, 64 signs per random draw.
* Label permutation (`label_permutation_sums_nb`): the sum of a uniformly random subset
  of fixed size of a pooled sample (a partial Fisher-Yates shuffle, one step per member).

Random numbers come from SplitMix64 (Steele, Lea & Flood 2014) stepped inline: calling
numpy's Generator from numba costs about 15 ns a draw, more than a whole block step. Its
64-bit starting state is the `key` argument, drawn by `draw_keys` from a numpy Generator
built from the user's seed, so a seed fixes every number here. SplitMix64's arithmetic is
uint64 and relies on wraparound; indices are int64.

`run_in_chunks` splits the resamples into chunks of CHUNK, each with its own key, and runs
them on all cores (the kernels release the GIL); the split is fixed, so the results do
not depend on the number of threads. Costs on the benchmark machine (2 cores, 10,000
resamples of 100,000 values, benchmarks/bench_stats.py): the bootstrap about 3 ns per
block on two threads (random reads from a 3 MB table; stationary blocks cost twice that,
for a logarithm and a second draw each), the sign flip a fraction of a ns per block, the
label permutation about 1 ns per member.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from numba import njit, types, uint64

from engine.errors import ConfigError

BlockMethod = Literal["circular", "stationary"]

# Politis-White minimises the mean squared error of the bootstrap variance, trading its
# bias (the dependence across block edges that resampling cuts, shrinking as 1/L) against
# its noise. A test's false-positive rate suffers from the bias far more, and the sign
# flip not at all from having few blocks (it is exact for independent symmetric blocks),
# so the automatic length is twice Politis-White's. On zero-edge AR(1) and sparse series
# (2,000 seeds per case, benchmarks/bench_stats.py --calibrate) the sign flip rejected
# up to 6.0 % at the 5 % level with Politis-White's length, 4.2-5.8 % with twice it, for
# one or two points of power.
AUTO_SCALE = 2.0
MIN_BLOCKS = 20  # the automatic length leaves at least this many blocks
CHUNK = 1000  # resamples per kernel call: the unit of work spread over threads

_OPTS: dict[str, Any] = {"nogil": True, "error_model": "numpy", "boundscheck": False}

_GAMMA = uint64(0x9E3779B97F4A7C15)  # SplitMix64's increment (the golden ratio)
_MIX1 = uint64(0xBF58476D1CE4E5B9)
_MIX2 = uint64(0x94D049BB133111EB)
_S30 = uint64(30)
_S27 = uint64(27)
_S31 = uint64(31)
_S11 = uint64(11)
_ONE = uint64(1)
_TWO_POW_M53 = 2.0**-53
_SIGNS_PER_DRAW = 64

_TABLE = types.Array(types.float64, 2, "C", readonly=True)
_VALUES = types.Array(types.float64, 1, "C", readonly=True)
_OUT_ROWS = types.float64[:, ::1]
_OUT = types.float64[::1]


def draw_keys(seed: int, count: int) -> list[np.uint64]:
    """`count` 64-bit kernel keys from numpy's default Generator seeded with `seed`."""
    keys = np.random.default_rng(seed).integers(0, 2**64, size=count, dtype=np.uint64)
    return list(keys)


def chunks(resamples: int) -> int:
    """How many kernel calls (and keys) `resamples` resamples take: CHUNK each."""
    return -(-resamples // CHUNK)


def run_in_chunks(kernel: Callable[[np.uint64, npt.NDArray[np.float64]], object],
                  out: npt.NDArray[np.float64], keys: Sequence[np.uint64]) -> None:
    """Fill `out` (one row or value per resample) CHUNK rows per `kernel(key, rows)` call,
    the i-th chunk from keys[i], on as many threads as there are cores (the kernels
    release the GIL). The split never depends on the thread count, so neither do results.
    """
    parts = [(keys[i], out[start:start + CHUNK])
             for i, start in enumerate(range(0, len(out), CHUNK))]
    workers = min(len(parts), os.cpu_count() or 1)
    if workers == 1:
        for key, rows in parts:
            kernel(key, rows)
        return
    with ThreadPoolExecutor(workers) as pool:
        for _ in pool.map(lambda part: kernel(*part), parts):
            pass  # re-raises a kernel's exception


def prefix_table(first: npt.NDArray[np.float64],
                 second: npt.NDArray[np.float64] | None = None) -> npt.NDArray[np.float64]:
    """The kernel's (n + 1, 4) prefix-sum table of [x, x**2, y, y**2], each series centred.

    Centring on the sample mean keeps the sums of squares from cancelling when the mean
    is large next to the spread; the caller adds the mean back.
    """
    columns = np.zeros((len(first), 4))
    for j, series in enumerate((first, second)):
        if series is not None:
            centred = series - series.mean()
            columns[:, 2 * j] = centred
            columns[:, 2 * j + 1] = centred * centred
    prefix = np.zeros((len(first) + 1, 4))
    np.cumsum(columns, axis=0, out=prefix[1:])
    return prefix


def block_length_for(series: Sequence[npt.NDArray[np.float64]], given: int | None,
                     method: BlockMethod) -> int:
    """`given` once checked, else the automatic length: the largest over `series` of
    AUTO_SCALE times the Politis-White length, rounded, from 1 to n // MIN_BLOCKS."""
    if method not in ("circular", "stationary"):
        raise ConfigError(f"block method must be 'circular' or 'stationary', got {method!r}")
    n = min(len(x) for x in series)
    if given is not None:
        if isinstance(given, bool) or not isinstance(given, int) or not 1 <= given <= n:
            raise ConfigError(f"block_length must be an integer from 1 to {n}, got {given!r}")
        return given
    which = 0 if method == "stationary" else 1
    auto = max(round(AUTO_SCALE * politis_white(x)[which]) for x in series)
    return max(1, min(auto, n // MIN_BLOCKS))


def politis_white(x: npt.NDArray[np.float64]) -> tuple[float, float]:
    """(stationary, circular) bootstrap block lengths of Politis & White (2004), corrected.

    Same construction as the authors' code and arch.bootstrap.optimal_block_length: the
    first lag m after which K_N = 5 autocorrelations in a row are insignificant (below
    2 sqrt(log10(n) / n)), a flat-top lag window of width M = 2m, then
    b = (2 G**2 / D)**(1/3) n**(1/3), capped at min(3 sqrt(n), n / 3). A constant series,
    or one whose estimated long-run variance is not positive, gets 1.
    """
    n = len(x)
    centred = x - x.mean()
    k_n = max(5, math.ceil(math.sqrt(math.log10(n))))
    m_max = min(math.ceil(math.sqrt(n)) + k_n, n - 1)
    size = 1 << (2 * n - 1).bit_length()  # zero padding: linear, not circular, lags
    spectrum = np.fft.rfft(centred, size)
    acov = np.fft.irfft(spectrum.real**2 + spectrum.imag**2, size)[: m_max + 1] / n
    if not acov[0] > 1e-20 * float(np.max(x * x)):  # constant but for rounding
        return 1.0, 1.0
    insignificant = np.abs(acov[1:] / acov[0]) < 2.0 * math.sqrt(math.log10(n) / n)
    runs = np.convolve(insignificant, np.ones(k_n, dtype=int), mode="valid") == k_n
    # runs[m] means lags m + 1 .. m + K_N are all insignificant
    m_hat = int(np.argmax(runs)) if runs.any() else m_max
    width = min(2 * max(m_hat, 1), m_max)
    lags = np.arange(1, width + 1)
    t = lags / width
    window = np.where(t <= 0.5, 1.0, 2.0 * (1.0 - t))
    g = 2.0 * float(np.sum(window * lags * acov[1: width + 1]))
    long_run = float(acov[0] + 2.0 * np.sum(window * acov[1: width + 1]))
    if long_run <= 0.0:
        return 1.0, 1.0
    cap = math.ceil(min(3.0 * math.sqrt(n), n / 3.0))
    root_n = n ** (1.0 / 3.0)
    stationary = (2.0 * g * g / (2.0 * long_run**2)) ** (1.0 / 3.0) * root_n
    circular = (2.0 * g * g / (4.0 / 3.0 * long_run**2)) ** (1.0 / 3.0) * root_n
    return min(stationary, cap), min(circular, cap)


@njit(inline="always", **_OPTS)
def _next(state):
    """(next state, next 64 random bits) of SplitMix64."""
    state = state + _GAMMA
    z = state
    z = (z ^ (z >> _S30)) * _MIX1
    z = (z ^ (z >> _S27)) * _MIX2
    return state, z ^ (z >> _S31)


@njit(inline="always", **_OPTS)
def _unit(bits):
    """A uniform float in [0, 1) from the top 53 bits."""
    return float(bits >> _S11) * _TWO_POW_M53


@njit(types.void(_TABLE, types.int64, types.boolean, types.uint64, _OUT_ROWS),
      cache=True, **_OPTS)
def block_bootstrap_sums_nb(prefix, block_length, stationary, key, out):
    """out[r, j] = sum of column j over block-bootstrap resample r of the series.

    prefix is (n + 1, 4): prefix[i, j] = sum of column j over values [0, i), so
    prefix[0] = 0 (four columns: two series and their squares; a caller with one series
    leaves two columns zero). Blocks wrap around the end of the series (circular), which
    gives every value the same chance to be drawn. stationary: geometric block lengths of
    mean block_length (>= 1), else every block has block_length values; the last block of
    a resample is cut to make exactly n values.

    Two passes per resample: draw every block, then sum them. The sums read two random
    rows of a table that outgrows L2 at 100,000 values; with no random draws between
    them the CPU keeps more of those reads in flight (25 % faster at short blocks). The
    four columns are named, not a loop over k, so the sums stay in registers (a loop over
    an accumulator array ran 1.6x slower).
    """
    n = prefix.shape[0] - 1
    # P(length > m) = (1 - 1/L)**m, so length = 1 + floor(log(u) / log(1 - 1/L)), u in (0, 1]
    geometric = stationary and block_length > 1
    log_stay = np.log1p(-1.0 / block_length) if geometric else -1.0
    starts = np.empty(n, dtype=np.int64)
    ends = np.empty(n, dtype=np.int64)
    state = uint64(key)
    for r in range(out.shape[0]):
        blocks = 0
        filled = 0
        while filled < n:
            state, bits = _next(state)
            starts[blocks] = int(_unit(bits) * n)
            if geometric:
                state, bits = _next(state)
                extra = np.log(1.0 - _unit(bits)) / log_stay  # 1 - u is in (0, 1]
                length = int(min(extra, float(n))) + 1
            else:
                length = block_length
            length = min(length, n - filled)
            ends[blocks] = starts[blocks] + length
            filled += length
            blocks += 1
        s0 = s1 = s2 = s3 = 0.0
        for i in range(blocks):
            start = starts[i]
            end = ends[i]
            if end <= n:
                s0 += prefix[end, 0] - prefix[start, 0]
                s1 += prefix[end, 1] - prefix[start, 1]
                s2 += prefix[end, 2] - prefix[start, 2]
                s3 += prefix[end, 3] - prefix[start, 3]
            else:  # the block wraps around to the start of the series
                wrapped = end - n
                s0 += (prefix[n, 0] - prefix[start, 0]) + prefix[wrapped, 0]
                s1 += (prefix[n, 1] - prefix[start, 1]) + prefix[wrapped, 1]
                s2 += (prefix[n, 2] - prefix[start, 2]) + prefix[wrapped, 2]
                s3 += (prefix[n, 3] - prefix[start, 3]) + prefix[wrapped, 3]
        out[r, 0] = s0
        out[r, 1] = s1
        out[r, 2] = s2
        out[r, 3] = s3


@njit(types.void(_VALUES, types.uint64, _OUT), cache=True, **_OPTS)
def sign_flip_sums_nb(block_sums, key, out):
    """out[r] = sum over blocks b of sign[r, b] * block_sums[b], signs uniform in {-1, +1}."""
    m = block_sums.shape[0]
    state = uint64(key)
    for r in range(out.shape[0]):
        total = 0.0
        for first in range(0, m, _SIGNS_PER_DRAW):
            state, bits = _next(state)
            for b in range(first, min(first + _SIGNS_PER_DRAW, m)):
                value = block_sums[b]
                total += value if bits & _ONE else -value
                bits = bits >> _ONE
        out[r] = total


@njit(types.void(types.float64[::1], types.int64, types.uint64, _OUT), cache=True, **_OPTS)
def label_permutation_sums_nb(pooled, members, key, out):
    """out[r] = sum of a uniformly random `members`-subset of pooled, one per resample.

    pooled is shuffled in place (a partial Fisher-Yates shuffle per resample); the order it
    is left in does not matter, since each step picks uniformly among all that remain.
    """
    total_count = pooled.shape[0]
    state = uint64(key)
    for r in range(out.shape[0]):
        total = 0.0
        for i in range(members):
            state, bits = _next(state)
            pick = i + int(_unit(bits) * float(total_count - i))
            value = pooled[pick]
            pooled[pick] = pooled[i]
            pooled[i] = value
            total += value
        out[r] = total
