"""`supreme memory`: the engine's heap over a real run, and whether it leaks.

One real `engine.pipeline.Run` under tracemalloc (which slows it; the figures are about
memory, not speed). An observer samples, every duration/snapshots seconds (the run reports
progress every 0.25 s): ticks, tracemalloc's traced size and RSS from /proc. With
`allocations` it also takes a tracemalloc snapshot at each sample and keeps the first one
after the warm-up and the last: the top 15 sites by size come from the last, the top
growing sites from their difference.

Only memory allocated after tracing starts is traced (not the interpreter and the imported
modules): that is the run's heap. RSS is the whole process, shown beside it.

Leak rule (`leak_verdict`), over the samples after the warm-up (the first quarter of the
run, at least one sample): the least-squares slope of traced heap against ticks, in KiB
per 1 000 ticks, and its R². A leak is declared when all three hold:
  * slope > LEAK_SLOPE_KIB (1 KiB per 1k ticks, i.e. a byte per tick);
  * the growth the fit predicts over the window > LEAK_MIN_GROWTH_KIB (256 KiB), so a
    short or slow run cannot call a few buffers a leak;
  * R² >= LEAK_MIN_R2 (0.6): the heap rises steadily with ticks, not in one step or noise.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

LEAK_SLOPE_KIB = 1.0
LEAK_MIN_GROWTH_KIB = 256.0
LEAK_MIN_R2 = 0.6
WARM_UP_FRACTION = 0.25
TOP_ALLOCATIONS = 15

Progress = Callable[[str, int, int], None]


def leak_verdict(samples: list[tuple[int, int]]) -> dict[str, Any]:
    """The leak rule (module docstring) over (ticks, traced bytes) samples after warm-up."""
    pts = [(float(t), float(b)) for t, b in samples]
    if len(pts) < 3 or len({t for t, _ in pts}) < 2:
        return {"leak": False, "growth_kib_per_1k_ticks": 0.0, "r2": None,
                "growth_kib": 0.0, "samples": len(pts),
                "verdict": "not enough samples after warm-up to judge (need 3)"}
    ticks = [t for t, _ in pts]
    heap = [b for _, b in pts]
    mt, mh = statistics.fmean(ticks), statistics.fmean(heap)
    sxx = sum((t - mt) ** 2 for t in ticks)
    sxy = sum((t - mt) * (h - mh) for t, h in pts)
    syy = sum((h - mh) ** 2 for h in heap)
    slope = sxy / sxx  # bytes per tick
    r2 = (sxy * sxy) / (sxx * syy) if syy > 0 else 0.0
    kib_per_1k = slope * 1000.0 / 1024.0
    growth_kib = slope * (max(ticks) - min(ticks)) / 1024.0
    leak = kib_per_1k > LEAK_SLOPE_KIB and growth_kib > LEAK_MIN_GROWTH_KIB \
        and r2 >= LEAK_MIN_R2
    rule = (f"leak if slope > {LEAK_SLOPE_KIB:g} KiB/1k ticks and fitted growth > "
            f"{LEAK_MIN_GROWTH_KIB:g} KiB and R² >= {LEAK_MIN_R2:g}")
    verdict = (f"{'LEAK' if leak else 'no leak'}: heap {kib_per_1k:+.3f} KiB per 1k ticks "
               f"(R² {r2:.2f}, {growth_kib:+.0f} KiB over {max(ticks) - min(ticks):.0f} "
               f"ticks after warm-up); {rule}")
    return {"leak": leak, "growth_kib_per_1k_ticks": kib_per_1k, "r2": r2,
            "growth_kib": growth_kib, "samples": len(pts), "verdict": verdict, "rule": rule}


class _Sampler:
    def __init__(self, every_s: float, total_s: float, allocations: bool,
                 warm_up_s: float, progress: Progress | None, stop: threading.Event | None,
                 chained: Any = None):
        self.every_s = every_s
        self.total = max(1, round(total_s))
        self.allocations = allocations
        self.warm_up_s = warm_up_s
        self.progress = progress
        self.stop = stop
        self.chained = chained
        self.run: Any = None
        self.next_t = 0.0
        self.samples: list[tuple[float, int, int, float | None]] = []  # t, ticks, heap, rss
        self.first_snap: Any = None
        self.last_snap: Any = None
        self.warnings: list[str] = []

    def on_start(self, info: dict[str, Any]) -> None:
        if self.chained is not None:
            self.chained.on_start(info)

    def on_progress(self, snapshot: dict[str, Any]) -> None:
        if self.chained is not None:
            self.chained.on_progress(snapshot)
        t = float(snapshot.get("elapsed_s") or 0.0)
        if t >= self.next_t:
            self.next_t = t + self.every_s
            self.sample(t, int(snapshot["bars"]))
        if self.progress is not None:
            self.progress("memory", min(self.total, int(t)), self.total)
        if self.stop is not None and self.stop.is_set() and self.run is not None:
            self.run.request_stop()

    def sample(self, t: float, ticks: int) -> None:
        import tracemalloc

        from engine.sysinfo import rss_mib

        self.samples.append((t, ticks, tracemalloc.get_traced_memory()[0], rss_mib()))
        if self.allocations:
            snap = tracemalloc.take_snapshot().filter_traces(_filters())
            if self.first_snap is None and t >= self.warm_up_s:
                self.first_snap = snap
            self.last_snap = snap

    def on_trade(self, trade: dict[str, Any]) -> None:
        if self.chained is not None:
            self.chained.on_trade(trade)

    def on_warning(self, message: str) -> None:
        if self.chained is not None:
            self.chained.on_warning(message)
        if len(self.warnings) < 50:
            self.warnings.append(message)


def _filters() -> list[Any]:
    import tracemalloc

    return [tracemalloc.Filter(False, tracemalloc.__file__),
            tracemalloc.Filter(False, "<frozen importlib._bootstrap>"),
            tracemalloc.Filter(False, "<frozen importlib._bootstrap_external>"),
            tracemalloc.Filter(False, "<unknown>")]


def _where(frame: Any) -> str:
    from engine.validation.stages import _short

    return f"{_short(frame.filename)}:{frame.lineno}"


def run_memory(*, duration_s: float, allocations: bool = False, feed: str = "sim",
               data_file: str | None = None, data_dir: Path, seed: int = 0,
               snapshots: int = 20, progress: Progress | None = None,
               stop: threading.Event | None = None, store_url: str | None = None,
               observer: Any = None) -> dict[str, Any]:
    """Trace a real run's heap; see the module docstring. `observer` (optional) also gets
    the run's events (tests use it to leak on purpose)."""
    import tracemalloc

    from engine.cache import CacheSettings
    from engine.errors import ConfigError
    from engine.pipeline import Run, RunSpec
    from engine.sysinfo import peak_rss_mib, rss_mib

    if duration_s <= 0:
        raise ConfigError("--duration must be positive")
    if snapshots < 4:
        raise ConfigError("snapshots must be at least 4")
    every = max(duration_s / snapshots, 0.25)
    warm_up_s = duration_s * WARM_UP_FRACTION
    spec = RunSpec(symbol=None, feed=feed, seed=seed, data_file=data_file,
                   duration_s=duration_s, data_dir=Path(data_dir), store_url=store_url,
                   cache=CacheSettings())
    sampler = _Sampler(every, duration_s, allocations, warm_up_s, progress, stop, observer)
    run = Run(spec, sampler)
    sampler.run = run
    if stop is not None and stop.is_set():
        run.request_stop()
    started_here = not tracemalloc.is_tracing()
    if started_here:
        tracemalloc.start()
    tracemalloc.reset_peak()
    t0 = time.monotonic()
    try:
        summary = run.execute()
        end_heap, peak = tracemalloc.get_traced_memory()
    finally:
        if started_here and not allocations:
            tracemalloc.stop()
    try:
        samples = sampler.samples
        if not samples or samples[-1][1] < summary["bars"]:
            # the run ended between samples: the last sample is the end of the loop
            samples.append((time.monotonic() - t0, summary["bars"], end_heap, rss_mib()))
        after = [s for s in samples if s[0] >= warm_up_s]
        if len(after) < 3:
            after = samples[len(samples) // 4:]
        verdict = leak_verdict([(s[1], s[2]) for s in after])
        steady = statistics.median(s[2] for s in after) / 2**20 if after else end_heap / 2**20
        doc: dict[str, Any] = {
            "run_id": summary["run_id"], "feed": feed,
            "seed": seed if feed == "sim" else None, "duration_s": duration_s,
            "stopped_by": summary["stopped_by"],
            "interrupted": summary["stopped_by"] == "signal",
            "ticks": summary["bars"], "wall_s": summary["wall_s"],
            "ticks_per_s": summary["bars_per_s"],
            "heap_steady_mib": steady,
            "heap_peak_mib": peak / 2**20,
            "heap_end_mib": end_heap / 2**20,
            "growth_kib_per_1k_ticks": verdict["growth_kib_per_1k_ticks"],
            "growth_r2": verdict["r2"],
            "leak": verdict["leak"], "verdict": verdict["verdict"],
            "leak_rule": verdict.get("rule"),
            "warm_up_s": warm_up_s,
            "rss_mib": summary["rss_mib"], "rss_peak_mib": peak_rss_mib(),
            "rss_timeline": [[s[0], s[3]] for s in samples],
            "heap_timeline": [[s[0], s[1], s[2] / 2**20] for s in samples],
            "warnings": sampler.warnings,
            "method": "tracemalloc traced size (heap allocated during the run), sampled every "
                      f"{every:g} s; steady = median after the warm-up; growth = least-squares "
                      "slope of heap vs ticks after the warm-up",
        }
        if allocations:
            doc["top_allocations"] = _top(sampler.last_snap)
            doc["top_growth"] = _growth(sampler.first_snap, sampler.last_snap)
        return doc
    finally:
        if started_here and allocations:
            tracemalloc.stop()


def _top(snap: Any) -> list[dict[str, Any]]:
    if snap is None:
        return []
    stats = snap.statistics("lineno")[:TOP_ALLOCATIONS]
    return [{"where": _where(s.traceback[0]), "size_kib": s.size / 1024, "count": s.count}
            for s in stats]


def _growth(first: Any, last: Any) -> list[dict[str, Any]]:
    if first is None or last is None or first is last:
        return []
    diffs = last.compare_to(first, "lineno")[:10]
    return [{"where": _where(d.traceback[0]), "size_diff_kib": d.size_diff / 1024,
             "count_diff": d.count_diff} for d in diffs if d.size_diff]
