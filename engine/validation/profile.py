"""`supreme profile`: what one real run of the engine costs, measured in that run.

Passes, in order (each a real `engine.pipeline.Run`; only the main pass writes to the
configured store):

1. main: the run itself, for `duration_s` (paced at `rate` bars/s, else as fast as it goes).
   latency_us is the pipeline's own per-bar histogram; throughput = bars / wall; CPU % =
   process CPU time (time.process_time: every thread, the store writer included) / wall;
   RSS from /proc at the end of the run, rss_peak_mib is the process's VmHWM.
2. heap: a shorter run (min(max(duration/5, 1 s), 15 s)) under tracemalloc, which slows the
   run, so it is kept apart from the main pass: heap_mib is the median traced size sampled
   every 0.25 s over the run's second half, heap_peak_mib tracemalloc's peak. Only memory
   allocated after tracing starts is counted (not the interpreter and imported modules).
3. with `detailed`: the per-stage breakdown (engine.validation.stages, 50k bars unpaced)
   and cProfile's top 10 by tottime over a real run of 20k bars.
4. checks on the main run: order sizes from the store (filled buys) and their relation to
   the strategy's volatility at the signal bar; the indicators' deviation from the batch
   kernels, re-running ScalpStrategy over the same bars (the first CHECK_BARS of them).
"""

from __future__ import annotations

import dataclasses
import statistics
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from engine.cache import CacheSettings

STAGE_BARS = 50_000
HOT_BARS = 20_000
CHECK_BARS = 200_000  # bars re-run for the indicator and sizing checks
CHECK_WARM_UP = 300  # bars skipped by the deviation check, as tests/core/test_strategy does:
# the fused MACD seeds its fast EMA like TA-Lib's EMA, the batch MACD with TA-Lib's MACD
# alignment; the two converge within a few hundred bars
PACE_INTERVAL_S = 1.0  # with --rate N: interval 1 s at speed N → one bar every 1/N s ± 1/3

Progress = Callable[[str, int, int], None]


class _Watch:
    """Observer for the passes: progress, the stop event, and heap samples."""

    def __init__(self, label: str, total_s: float, progress: Progress | None,
                 stop: threading.Event | None, heap: bool = False):
        self.label = label
        self.total = max(1, round(total_s))
        self.progress = progress
        self.stop = stop
        self.heap = heap
        self.run: Any = None
        self.samples: list[tuple[float, int, int]] = []  # elapsed, bars, traced bytes
        self.warnings: list[str] = []

    def on_start(self, info: dict[str, Any]) -> None:
        pass

    def on_progress(self, snapshot: dict[str, Any]) -> None:
        elapsed = float(snapshot.get("elapsed_s") or 0.0)
        if self.heap:
            import tracemalloc

            self.samples.append((elapsed, int(snapshot["bars"]),
                                 tracemalloc.get_traced_memory()[0]))
        if self.progress is not None:
            self.progress(self.label, min(self.total, int(elapsed)), self.total)
        if self.stop is not None and self.stop.is_set() and self.run is not None:
            self.run.request_stop()

    def on_trade(self, trade: dict[str, Any]) -> None:
        pass

    def on_warning(self, message: str) -> None:
        if len(self.warnings) < 50:
            self.warnings.append(message)


def pacing(rate: float | None) -> tuple[float, float]:
    """(speed, interval_s) that make the pipeline deliver `rate` bars per second on
    average (it waits interval_s/speed, jittered ±1/3, after each bar); (0, 45) is max."""
    if rate is None or rate <= 0:
        return 0.0, 45.0
    return float(rate) * PACE_INTERVAL_S, PACE_INTERVAL_S


def _spec(*, duration_s: float | None, feed: str, data_file: str | None, rate: float | None,
          data_dir: Path, cache: CacheSettings | None, seed: int, store_url: str | None,
          bars: int | None = None) -> Any:
    from engine.pipeline import RunSpec

    speed, interval = pacing(rate)
    return RunSpec(symbol=None, feed=feed, seed=seed, data_file=data_file, bars=bars,
                   duration_s=duration_s, speed=speed, interval_s=interval,
                   data_dir=Path(data_dir), store_url=store_url, cache=cache)


def _execute(spec: Any, watch: _Watch) -> dict[str, Any]:
    from engine.pipeline import Run

    run = Run(spec, watch)
    watch.run = run
    if watch.stop is not None and watch.stop.is_set():
        run.request_stop()
    return run.execute()


def _errors(summary: dict[str, Any]) -> int:
    """Store writer errors + cache background errors + tier read/write errors."""
    n = int(summary.get("store", {}).get("errors") or 0)
    cache = summary.get("cache") or {}
    counters = cache.get("counters") or {}
    n += int(counters.get("background_errors") or 0)
    n += int(counters.get("l3_write_failures") or 0)
    for tier in (cache.get("tiers") or {}).values():
        n += int(tier.get("errors") or 0) + int(tier.get("write_errors") or 0)
    return n


def run_profile(*, duration_s: float, feed: str = "sim", data_file: str | None = None,
                rate: float | None = None, detailed: bool = False, data_dir: Path,
                cache: CacheSettings | None = CacheSettings(),  # noqa: B008 (frozen)
                seed: int = 0, progress: Progress | None = None,
                stop: threading.Event | None = None,
                store_url: str | None = None) -> dict[str, Any]:
    """Profile the real pipeline; see the module docstring for how each figure is made."""
    if duration_s <= 0:
        from engine.errors import ConfigError

        raise ConfigError("--duration must be positive")
    spec = _spec(duration_s=duration_s, feed=feed, data_file=data_file, rate=rate,
                 data_dir=data_dir, cache=cache, seed=seed, store_url=store_url)
    watch = _Watch("run", duration_s, progress, stop)
    cpu0 = time.process_time()
    mono0 = time.monotonic()
    summary = _execute(spec, watch)
    cpu = time.process_time() - cpu0
    elapsed = time.monotonic() - mono0
    wall = float(summary["wall_s"])
    bars = int(summary["bars"])
    cache_stats = summary.get("cache")
    doc: dict[str, Any] = {
        "run_id": summary["run_id"],
        "feed": feed, "seed": seed if feed == "sim" else None,
        "rate_requested": rate,
        "pacing": {"speed": spec.speed, "interval_s": spec.interval_s},
        "duration_s": duration_s,
        "stopped_by": summary["stopped_by"],
        "interrupted": summary["stopped_by"] == "signal",
        "bars": bars,
        "wall_s": wall,
        "latency_us": summary["latency_us"],
        "throughput_per_s": bars / wall if wall > 0 else 0.0,
        "cpu_percent": 100.0 * cpu / elapsed if elapsed > 0 else 0.0,
        "rss_mib": summary["rss_mib"],
        "rss_peak_mib": summary["rss_peak_mib"],
        "heap_mib": None, "heap_peak_mib": None, "heap_pass": None,
        "cache": {"hit_rate": cache_stats["hit_rate"], "gets": cache_stats["gets"],
                  "tiers": {name: {k: t.get(k) for k in ("status", "hits", "misses",
                                                         "hit_rate")}
                            for name, t in cache_stats["tiers"].items()}}
        if cache_stats else {"hit_rate": None, "tiers": {}, "enabled": False},
        "errors": _errors(summary),
        "trades": summary["trades"], "orders": summary["orders"],
        "store_wait_ms": summary.get("store_wait_ms"),
        "commit_wait_ms": summary.get("commit_wait_ms"),
        "warnings": watch.warnings,
        "method": {
            "latency_us": "the pipeline's per-bar histogram (feed read to equity record)",
            "throughput_per_s": "bars / wall of the main run",
            "cpu_percent": "process CPU time (all threads) / wall over the main run",
            "heap_mib": "tracemalloc in a separate, shorter run: median traced size over "
                        "its second half",
        },
    }
    stopped = stop is not None and stop.is_set()
    if not stopped and bars:
        doc.update(_heap_pass(spec, duration_s, progress, stop))
    if detailed and not (stop is not None and stop.is_set()):
        from engine.validation.stages import hotspots, stage_breakdown

        if progress is not None:
            progress("stages", 0, 2)
        doc["stages"] = stage_breakdown(spec, STAGE_BARS, stop)
        if progress is not None:
            progress("hotspots", 1, 2)
        doc["hotspots"] = hotspots(spec, HOT_BARS)
        if progress is not None:
            progress("hotspots", 2, 2)
    checks = _checks(spec, summary, bars)
    doc.update(checks)
    return doc


def _heap_pass(spec: Any, duration_s: float, progress: Progress | None,
               stop: threading.Event | None) -> dict[str, Any]:
    import tempfile
    import tracemalloc

    heap_s = min(max(duration_s / 5.0, 1.0), 15.0)
    base = Path(spec.data_dir)
    base.mkdir(parents=True, exist_ok=True)
    started_here = not tracemalloc.is_tracing()
    with tempfile.TemporaryDirectory(prefix=".profile-heap-", dir=base) as tmp:
        hspec = dataclasses.replace(spec, duration_s=heap_s, store_url=None,
                                    data_dir=Path(tmp))
        watch = _Watch("heap", heap_s, progress, stop, heap=True)
        if started_here:
            tracemalloc.start()
        tracemalloc.reset_peak()
        try:
            hsum = _execute(hspec, watch)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            if started_here:
                tracemalloc.stop()
    half = [s[2] for s in watch.samples if s[0] >= heap_s / 2.0] or \
        [s[2] for s in watch.samples]
    heap = statistics.median(half) / 2**20 if half else None
    return {"heap_mib": heap, "heap_peak_mib": peak / 2**20,
            "heap_pass": {"duration_s": heap_s, "bars": hsum["bars"],
                          "samples": len(watch.samples),
                          "throughput_per_s": hsum["bars_per_s"]}}


def _checks(spec: Any, summary: dict[str, Any], bars: int) -> dict[str, Any]:
    """Order sizes (from the store) and indicator deviation (re-run vs batch kernels)."""
    from engine.store import open_store

    with open_store(spec.store_url, spec.data_dir) as store:
        orders = store.orders_for_run(summary["run_id"])
    fills = [(o.ts_ms, o.qty) for o in orders if o.side == "buy" and o.status == "filled"]
    n = min(bars, CHECK_BARS)
    replay = _replay_indicators(spec, n, {ts for ts, _ in fills}) if n else None
    sizes = _order_sizes(fills, replay["vol_at_fill"] if replay else {}, n)
    deviation = replay["deviation"] if replay else {}
    return {"order_sizes": sizes,
            "indicator_max_deviation": max(deviation.values()) if deviation else None,
            "indicator_deviation": {**deviation, "bars_checked": n,
                                    "warm_up_bars": CHECK_WARM_UP,
                                    "method": "max |incremental - batch| over bars where "
                                              "both are defined, after the warm-up; EMA and "
                                              "MACD lines divided by the bar's close "
                                              "(relative to price), RSI by 100"}}


def _replay_indicators(spec: Any, n: int, fill_ts: set[int]) -> dict[str, Any]:
    """Re-run ScalpStrategy over the run's first n bars (same feed, same seed) and compare
    with engine.indicators' batch kernels; the volatility at the bar before each fill (the
    signal bar: orders fill at the next bar's open)."""
    from array import array

    import numpy as np

    from engine import strategy as st
    from engine.indicators import ema, macd, rsi
    from engine.pipeline import NullObserver, open_feed

    feed, _, _ = open_feed(dataclasses.replace(spec, speed=0.0), NullObserver())
    p = spec.params.strategy
    strat = st.ScalpStrategy(p, spec.params.risk, spec.starting_equity)
    cols = {k: array("d") for k in ("close", "ema_fast", "ema_slow", "macd", "signal", "hist",
                                    "rsi")}
    vol_at_fill: dict[int, float] = {}
    prev_vol = float("nan")
    try:
        for i, bar in enumerate(feed):
            if i >= n:
                break
            if bar.ts in fill_ts:
                vol_at_fill[bar.ts] = prev_vol
            strat.update(bar.close)
            prev_vol = strat.volatility
            cols["close"].append(bar.close)
            cols["ema_fast"].append(strat.ema_fast)
            cols["ema_slow"].append(strat.ema_slow)
            cols["macd"].append(strat.macd)
            cols["signal"].append(strat.signal)
            cols["hist"].append(strat.hist)
            cols["rsi"].append(strat.rsi)
    finally:
        close = getattr(feed, "close", None)
        if close is not None:
            close()
    x = np.frombuffer(cols["close"], dtype=np.float64)
    m = macd(x, p.ema_fast, p.ema_slow, p.macd_signal)
    batch = {"ema_fast": ema(x, p.ema_fast), "ema_slow": ema(x, p.ema_slow),
             "macd": m.macd, "signal": m.signal, "hist": m.hist, "rsi": rsi(x, p.rsi_period)}
    deviation: dict[str, float] = {}
    for name, ref in batch.items():
        inc = np.frombuffer(cols[name], dtype=np.float64)
        ok = np.isfinite(inc) & np.isfinite(ref)
        ok[:CHECK_WARM_UP] = False
        scale = 100.0 if name == "rsi" else x[ok]
        diff = np.abs(inc[ok] - ref[ok]) / scale
        deviation[name] = float(diff.max()) if diff.size else 0.0
    return {"deviation": deviation, "vol_at_fill": vol_at_fill}


def _order_sizes(fills: list[tuple[int, float]], vol_at_fill: dict[int, float],
                 checked_bars: int) -> dict[str, Any]:
    """count/min/max/mean/cv of filled entry quantities; Pearson correlation of quantity
    with the strategy's volatility at the signal bar (negative when sizing is
    volatility-targeted), over the fills within the re-run bars."""
    qty = [q for _, q in fills]
    doc: dict[str, Any] = {"count": len(qty), "min": None, "max": None, "mean": None,
                           "cv": None, "corr_with_volatility": None, "corr_pairs": 0,
                           "source": "orders_for_run: filled buy orders' qty",
                           "volatility": "ScalpStrategy.volatility (EWMA std of returns) at "
                                         f"the bar before each fill, first {checked_bars} "
                                         "bars re-run"}
    if not qty:
        return doc
    mean = statistics.fmean(qty)
    doc.update(min=min(qty), max=max(qty), mean=mean,
               cv=statistics.pstdev(qty) / mean if mean else None)
    pairs = [(vol_at_fill[ts], q) for ts, q in fills
             if ts in vol_at_fill and vol_at_fill[ts] == vol_at_fill[ts]]
    doc["corr_pairs"] = len(pairs)
    if len(pairs) >= 3:
        vols, qs = zip(*pairs, strict=True)
        try:
            doc["corr_with_volatility"] = statistics.correlation(vols, qs)
        except statistics.StatisticsError:
            doc["corr_with_volatility"] = None
    return doc
