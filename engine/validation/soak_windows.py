"""The analysis of a soak: per-window samples in, drift, slopes and a verdict out.

Pure functions over plain dicts (the windows a stress run stores in its checkpoints), so a
resumed or interrupted soak is analysed exactly like a finished one, and the thresholds can
be tested on synthetic windows.

A window is a dict with at least `t_s` (stress time at its end, seconds; time spent killed
between a checkpoint and a resume is not counted), `bars`, `rss_mib`, `fds`, `connections`,
`errors` (cumulative) and `hist` (the window's latency histogram: sparse `[[bucket, count],
...]` over `engine.latency` buckets); `heap_mib` is None unless heap tracing was on.

Verdict thresholds (a soak fails when any holds):

- latency drift: pooled p95 of the last quarter of the windows more than
  `P95_DRIFT_MAX` (1.5×, i.e. +50 %) the pooled p95 of the first quarter, *and* a one-sided
  Mann–Whitney U test on the two pooled latency distributions gives p < `DRIFT_ALPHA`
  (0.01). Both: with millions of samples any difference is "significant", and with few any
  ratio is noise.
- RSS leak: least-squares slope of RSS over stress time above `RSS_SLOPE_MAX` MiB/h *and*
  the growth that slope implies over the analysed span above `RSS_GROWTH_MIN` MiB. The first
  `WARMUP_FRACTION` of the span is left out (imports, caches and the allocator settle).
- heap leak (only with heap tracing): the same with `HEAP_SLOPE_MAX` and `HEAP_GROWTH_MIN`.
- file descriptors grew by more than `FD_GROWTH_MAX`, connections by more than
  `CONN_GROWTH_MAX` (last window against the first).
- any error (store writer errors, cache tier errors, a segment that raised).
- throughput below `THROUGHPUT_MIN_FRACTION` of the requested rate.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

from engine.latency import N_BUCKETS, _bucket_mid

P95_DRIFT_MAX = 1.5
DRIFT_ALPHA = 0.01
RSS_SLOPE_MAX = 10.0  # MiB per hour
RSS_GROWTH_MIN = 4.0  # MiB over the analysed span
HEAP_SLOPE_MAX = 5.0
HEAP_GROWTH_MIN = 2.0
FD_GROWTH_MAX = 10
CONN_GROWTH_MAX = 5
THROUGHPUT_MIN_FRACTION = 0.8
WARMUP_FRACTION = 0.1

THRESHOLDS = {
    "p95_drift_ratio_max": P95_DRIFT_MAX, "drift_alpha": DRIFT_ALPHA,
    "rss_slope_mib_per_h_max": RSS_SLOPE_MAX, "rss_growth_mib_min": RSS_GROWTH_MIN,
    "heap_slope_mib_per_h_max": HEAP_SLOPE_MAX, "heap_growth_mib_min": HEAP_GROWTH_MIN,
    "fd_growth_max": FD_GROWTH_MAX, "connections_growth_max": CONN_GROWTH_MAX,
    "throughput_min_fraction": THROUGHPUT_MIN_FRACTION, "warmup_fraction": WARMUP_FRACTION,
}


# --- histograms -----------------------------------------------------------------------

def sparse_diff(now: Sequence[int], before: Sequence[int] | None) -> list[list[int]]:
    """The buckets that gained counts between two snapshots of `LatencyHistogram.counts`."""
    if before is None:
        return [[i, c] for i, c in enumerate(now) if c]
    return [[i, c - b] for i, (c, b) in enumerate(zip(now, before, strict=True)) if c != b]


def pool(hists: Iterable[Sequence[Sequence[int]]]) -> dict[int, int]:
    out: dict[int, int] = {}
    for h in hists:
        for i, c in h:
            out[int(i)] = out.get(int(i), 0) + int(c)
    return out


def quantile_us(hist: dict[int, int] | Sequence[Sequence[int]], q: float) -> float | None:
    """Quantile of a sparse histogram, from bucket midpoints (≤3 % off), in µs."""
    counts = hist if isinstance(hist, dict) else pool([hist])
    total = sum(counts.values())
    if total <= 0:
        return None
    rank = max(1, math.ceil(q * total))
    seen = 0
    for i in sorted(counts):
        seen += counts[i]
        if seen >= rank:
            return _bucket_mid(min(i, N_BUCKETS - 1)) / 1000.0
    return _bucket_mid(max(counts)) / 1000.0


def mann_whitney_greater(a: dict[int, int], b: dict[int, int]) -> float | None:
    """One-sided p-value that `b` (later) is stochastically greater than `a` (earlier), by
    the Mann–Whitney U test on binned samples: exact U with ties at equal buckets, normal
    approximation with the tie correction (the sample sizes here are hundreds to millions).
    """
    n1, n2 = sum(a.values()), sum(b.values())
    if n1 < 2 or n2 < 2:
        return None
    keys = sorted(set(a) | set(b))
    u_b = 0.0  # pairs (x in a, y in b) with y > x, ties count 1/2
    below_a = 0
    tie_term = 0.0
    for k in keys:
        ca, cb = a.get(k, 0), b.get(k, 0)
        u_b += cb * (below_a + 0.5 * ca)
        below_a += ca
        t = ca + cb
        tie_term += t ** 3 - t
    n = n1 + n2
    mean = n1 * n2 / 2.0
    var = n1 * n2 / 12.0 * ((n + 1) - tie_term / (n * (n - 1)))
    if var <= 0:
        return 1.0
    z = (u_b - mean - 0.5) / math.sqrt(var)  # continuity correction
    return 0.5 * math.erfc(z / math.sqrt(2.0))


# --- slopes ---------------------------------------------------------------------------

def slope_per_hour(ts: Sequence[float], ys: Sequence[float | None]) -> float | None:
    """Least-squares slope of ys over ts (seconds), per hour; None below 2 distinct points."""
    pts = [(t, y) for t, y in zip(ts, ys, strict=True) if y is not None]
    if len(pts) < 2:
        return None
    mt = sum(t for t, _ in pts) / len(pts)
    my = sum(y for _, y in pts) / len(pts)
    sxx = sum((t - mt) ** 2 for t, _ in pts)
    if sxx <= 0:
        return None
    sxy = sum((t - mt) * (y - my) for t, y in pts)
    return sxy / sxx * 3600.0


def _after_warmup(windows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    if len(windows) < 4:
        return list(windows)
    t0, t1 = windows[0]["t_s"], windows[-1]["t_s"]
    cut = t0 + (t1 - t0) * WARMUP_FRACTION
    kept = [w for w in windows if w["t_s"] >= cut]
    return kept if len(kept) >= 3 else list(windows[-3:])


def _leak(name: str, windows: Sequence[dict[str, Any]], key: str, slope_max: float,
          growth_min: float, reasons: list[str]) -> tuple[float | None, float | None]:
    kept = _after_warmup(windows)
    ts = [float(w["t_s"]) for w in kept]
    slope = slope_per_hour(ts, [w.get(key) for w in kept])
    if slope is None:
        return None, None
    growth = slope * (ts[-1] - ts[0]) / 3600.0
    if slope > slope_max and growth > growth_min:
        reasons.append(f"{name} grows {slope:.1f} MiB/h (> {slope_max:g}; "
                       f"+{growth:.1f} MiB over {ts[-1] - ts[0]:.0f} s)")
    return slope, growth


# --- the report -----------------------------------------------------------------------

def analyze(windows: Sequence[dict[str, Any]], *, rate: float | None = None,
            errors: int | None = None) -> dict[str, Any]:
    """Drift, slopes, growth, errors, throughput and the verdict of a soak's windows."""
    reasons: list[str] = []
    ws = [w for w in windows if w.get("bars", 0) > 0]
    ts = [float(w["t_s"]) for w in ws]
    quarter = max(1, len(ws) // 4)
    first, last = pool(w["hist"] for w in ws[:quarter]), pool(w["hist"] for w in ws[-quarter:])
    first_p95, last_p95 = quantile_us(first, 0.95), quantile_us(last, 0.95)
    ratio = last_p95 / first_p95 if first_p95 and last_p95 is not None else None
    p_value = mann_whitney_greater(first, last) if len(ws) >= 2 else None
    drift = {
        "p95_slope_us_per_h": slope_per_hour(ts, [w.get("p95_us") for w in ws]),
        "p99_slope_us_per_h": slope_per_hour(ts, [w.get("p99_us") for w in ws]),
        "first_p95_us": first_p95, "last_p95_us": last_p95,
        "last_vs_first_p95_ratio": ratio,
        "windows_per_side": quarter if len(ws) >= 2 else 0,
        "p_value": p_value,
        "test": "Mann-Whitney U, one-sided (later slower), pooled first vs last quarter",
    }
    if ratio is not None and p_value is not None and ratio > P95_DRIFT_MAX \
            and p_value < DRIFT_ALPHA:
        reasons.append(f"latency p95 drifted ×{ratio:.2f} ({first_p95:.1f} → "
                       f"{last_p95:.1f} µs, p={p_value:.2g})")
    rss_slope, rss_growth = _leak("RSS", ws, "rss_mib", RSS_SLOPE_MAX, RSS_GROWTH_MIN, reasons)
    heap_slope, heap_growth = _leak("heap", ws, "heap_mib", HEAP_SLOPE_MAX, HEAP_GROWTH_MIN,
                                    reasons)
    blocks_slope = slope_per_hour(ts, [w.get("allocated_blocks") for w in ws])

    def growth(key: str) -> int:
        vals = [w[key] for w in ws if w.get(key) is not None]
        return int(vals[-1] - vals[0]) if vals else 0

    fd_growth, conn_growth = growth("fds"), growth("connections")
    if fd_growth > FD_GROWTH_MAX:
        reasons.append(f"open file descriptors grew by {fd_growth} (> {FD_GROWTH_MAX})")
    if conn_growth > CONN_GROWTH_MAX:
        reasons.append(f"connections grew by {conn_growth} (> {CONN_GROWTH_MAX})")
    if errors is None:
        errors = max((int(w.get("errors", 0)) for w in windows), default=0)
    if errors:
        reasons.append(f"{errors} errors")
    bars = sum(int(w.get("bars", 0)) for w in windows)
    busy = sum(float(w.get("dur_s", 0.0)) for w in windows)
    throughput = bars / busy if busy > 0 else 0.0
    if rate and busy > 0 and throughput < THROUGHPUT_MIN_FRACTION * rate:
        reasons.append(f"throughput {throughput:.1f} bars/s below "
                       f"{THROUGHPUT_MIN_FRACTION:.0%} of the requested {rate:g}/s")
    if not ws:
        reasons.append("no bars were processed")
    return {
        "latency_drift": drift,
        "rss_slope_mib_per_h": rss_slope if rss_slope is not None else 0.0,
        "rss_growth_mib": rss_growth,
        "heap_slope_mib_per_h": heap_slope,
        "heap_growth_mib": heap_growth,
        "allocated_blocks_slope_per_h": blocks_slope,
        "fd_growth": fd_growth,
        "connections_growth": conn_growth,
        "errors": errors,
        "bars": bars,
        "throughput_per_s": throughput,
        "verdict": "fail" if reasons else "pass",
        "reasons": reasons,
        "thresholds": THRESHOLDS,
    }
