"""`supreme degrade`: does the engine degrade over a run, and does it survive faults?

Two parts, one report (`run_degrade`):

* **Degradation over time.** A sim run at full speed for `duration_s`; a sampler reads the
  run's live latency histogram, bar count and the process RSS every window. The first and
  last thirds of the windows (after a short warm-up) are compared with the Mann-Whitney U
  test (scipy); the effect size is Cliff's delta and the relative change of the medians.
  A metric is `degraded` only when the change is both significant (p < ALPHA) and larger
  than its practical threshold (THRESHOLDS), in the bad direction.
* **Fault scenarios** (engine/validation/scenarios.py): Redis down, frozen and slow;
  PostgreSQL down; exchange 429, 5xx, timeouts and malformed answers; a stalled feed; clock
  skew. Each against a real Run, each reported with what was injected, what the engine did,
  whether it stayed up, lost nothing and recovered, and how long recovery took.

Nothing here prints; `progress(label, done, total)` is called between steps.
"""

from __future__ import annotations

import shutil
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from engine.errors import ConfigError
from engine.validation import scenarios as sc

Progress = Callable[[str, int, int], None]

SCENARIOS: dict[str, str] = {
    "redis-down": "private redis-server killed, then restarted (cache L2)",
    "redis-frozen": "private redis-server frozen with SIGSTOP, then thawed (cache L2)",
    "redis-slow": "Redis replies delayed past the client timeout by a proxy (cache L2)",
    "postgres-down": "proxy in front of PostgreSQL refuses connections (the store)",
    "exchange-429": "fake exchange answers 429 + Retry-After to candle requests",
    "exchange-5xx": "fake exchange answers 503 to candle requests",
    "exchange-timeout": "fake exchange hangs candle requests past the client timeout",
    "exchange-malformed": "fake exchange answers candle requests with truncated JSON",
    "feed-stalled": "the exchange answers but no new candle closes",
    "clock-skew": "the exchange's server clock runs 5 s ahead",
}
ALPHA = 0.01
THRESHOLDS = {"latency_us": 0.20, "bars_per_s": 0.20, "rss_mib": 0.10}  # relative change
BAD_DIRECTION = {"latency_us": 1, "bars_per_s": -1, "rss_mib": 1}
WARMUP_S = 0.5
MIN_PER_THIRD = 5


def parse_scenarios(names: list[str] | None) -> list[str]:
    """Scenario names from `--scenarios a,b` (repeatable); all when None or `all`, none
    for `none` or an empty list."""
    if names is None:
        return list(SCENARIOS)
    chosen: list[str] = []
    for raw in names:
        for name in (n.strip() for n in raw.split(",")):
            if not name:
                continue
            if name == "all":
                return list(SCENARIOS)
            if name == "none":
                continue
            if name not in SCENARIOS:
                raise ConfigError(f"unknown scenario {name!r}; available: "
                                  f"{', '.join(SCENARIOS)}")
            if name not in chosen:
                chosen.append(name)
    return chosen


def run_scenario(name: str, fault_s: float, data_dir: Path, redis_url: str | None,
                 postgres_url: str | None) -> dict[str, Any]:
    """One scenario's outcome; a missing service makes it `skipped`, a crash of the drill
    itself `fail` with the reason."""
    t0 = time.monotonic()
    try:
        if name.startswith("redis-"):
            out = sc.redis_scenario(name.removeprefix("redis-"), fault_s, data_dir, redis_url)
        elif name == "postgres-down":
            out = sc.postgres_down(fault_s, data_dir, postgres_url)
        else:
            out = sc.exchange_scenario(name, fault_s, data_dir)
    except sc.Skip as exc:
        out = sc.Outcome(name, status="skipped", reason=str(exc))
    except Exception as exc:
        out = sc.Outcome(name, status="fail",
                         reason=f"the drill failed: {type(exc).__name__}: {exc}"[:400])
    doc = out.as_dict()
    doc["elapsed_s"] = time.monotonic() - t0
    return doc


# --- degradation over time --------------------------------------------------------------

def sample_run(duration_s: float, data_dir: Path, window_s: float) -> dict[str, Any]:
    """Run the sim at full speed for duration_s; per-window mean tick latency, bars/s and
    RSS, plus the run's summary."""
    from engine.sysinfo import rss_mib

    spec = sc.RunSpec(symbol=sc.SYMBOL, feed="sim", seed=11, duration_s=duration_s,
                      store_url=str(data_dir / "degradation.db"), data_dir=data_dir)
    rt = sc.RunThread(spec).start()
    windows: list[dict[str, float]] = []
    t_start = time.monotonic()
    hard_stop = t_start + duration_s + 30.0
    prev: tuple[float, int, int] | None = None
    while rt.alive and time.monotonic() < hard_stop:
        time.sleep(window_s)
        view = rt.run.view
        if view is None:
            continue
        now, count, total = time.monotonic(), view.hist.count, view.hist.total_ns
        if prev is not None and now - t_start >= WARMUP_S:
            dt, dc, dtot = now - prev[0], count - prev[1], total - prev[2]
            rss = rss_mib()
            if dc > 0 and dt > 0 and rss is not None:
                windows.append({"t": now - t_start, "latency_us": dtot / dc / 1000.0,
                                "bars_per_s": dc / dt, "rss_mib": rss})
        prev = (now, count, total)
    stopped = rt.stop()
    if rt.error is not None:
        raise RuntimeError(f"the degradation run failed: {rt.error}") from rt.error
    if not stopped:
        raise RuntimeError("the degradation run did not stop")
    return {"windows": windows, "summary": rt.summary or {}}


def compare(first: list[float], last: list[float], metric: str) -> dict[str, Any]:
    """Mann-Whitney U (two-sided) of the last third against the first, Cliff's delta,
    relative change of the medians, and the verdict."""
    out: dict[str, Any] = {"n_first": len(first), "n_last": len(last),
                           "test": "Mann-Whitney U (two-sided)"}
    if len(first) < MIN_PER_THIRD or len(last) < MIN_PER_THIRD:
        out.update(verdict="insufficient data", p_value=None, effect_size=None,
                   median_first=statistics.median(first) if first else None,
                   median_last=statistics.median(last) if last else None,
                   relative_change=None)
        return out
    from scipy.stats import mannwhitneyu

    res = mannwhitneyu(last, first, alternative="two-sided")
    u = float(res.statistic)
    cliffs = 2.0 * u / (len(first) * len(last)) - 1.0  # > 0: last third larger
    m0, m1 = statistics.median(first), statistics.median(last)
    rel = (m1 - m0) / m0 if m0 else None
    p = float(res.pvalue)
    verdict = "stable"
    if p < ALPHA and rel is not None and abs(rel) >= THRESHOLDS[metric]:
        verdict = "degraded" if rel * BAD_DIRECTION[metric] > 0 else "improved"
    out.update(p_value=p, u_statistic=u, effect_size=cliffs, effect_size_kind="Cliff's delta",
               median_first=m0, median_last=m1, relative_change=rel,
               threshold=THRESHOLDS[metric], verdict=verdict)
    return out


def degradation(duration_s: float, data_dir: Path) -> dict[str, Any]:
    window_s = max(0.1, duration_s / 45.0)
    sampled = sample_run(duration_s, data_dir, window_s)
    windows = sampled["windows"]
    third = len(windows) // 3
    metrics = {}
    for metric in THRESHOLDS:
        first = [w[metric] for w in windows[:third]]
        last = [w[metric] for w in windows[len(windows) - third:]] if third else []
        metrics[metric] = compare(first, last, metric)
    summary = sampled["summary"]
    degraded = [m for m, r in metrics.items() if r["verdict"] == "degraded"]
    return {"duration_s": duration_s, "window_s": window_s, "windows": len(windows),
            "warmup_s": WARMUP_S, "alpha": ALPHA, "bars": summary.get("bars"),
            "wall_s": summary.get("wall_s"), "metrics": metrics, "degraded": degraded,
            "verdict": "degraded" if degraded else (
                "insufficient data" if all(r["verdict"] == "insufficient data"
                                           for r in metrics.values()) else "stable")}


# --- the whole report -------------------------------------------------------------------

def run_degrade(*, scenarios: list[str] | None, fault_s: float, duration_s: float,
                data_dir: Path, redis_url: str | None, postgres_url: str | None,
                progress: Progress | None) -> dict[str, Any]:
    """The degradation analysis (skipped when duration_s is 0) and the chosen scenarios
    (names from SCENARIOS; None: all). `passed` is False when a scenario failed or a
    metric degraded. Stores and servers are throw-away, in a temporary folder under
    data_dir."""
    if not 0.5 <= fault_s <= 60:
        raise ConfigError(f"--fault-seconds must be between 0.5 and 60, not {fault_s:g}")
    if duration_s != 0 and not 2 <= duration_s <= 3600:
        raise ConfigError(f"--duration must be 0 (skip) or 2 s to 1 h, not {duration_s:g}")
    names = list(SCENARIOS) if scenarios is None else parse_scenarios(scenarios)
    report = progress or (lambda label, done, total: None)
    total = len(names) + (1 if duration_s else 0)
    done = 0
    t0 = time.monotonic()
    data_dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="degrade-", dir=data_dir))
    try:
        deg: dict[str, Any] = {"skipped": True, "verdict": "skipped", "degraded": []}
        if duration_s:
            report(f"degradation over {duration_s:g} s", done, total)
            try:
                deg = degradation(duration_s, work)
            except Exception as exc:
                deg = {"verdict": "error", "error": f"{type(exc).__name__}: {exc}"[:400],
                       "degraded": []}
            done += 1
        results: list[dict[str, Any]] = []
        for name in names:
            report(name, done, total)
            sub = work / name
            sub.mkdir()
            results.append(run_scenario(name, fault_s, sub, redis_url, postgres_url))
            done += 1
            report(f"{name}: {results[-1]['status']}", done, total)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    failed = [r["name"] for r in results if r["status"] == "fail"]
    passed = not failed and not deg.get("degraded") and deg.get("verdict") != "error"
    return {"degradation": deg, "scenarios": results, "passed": passed, "failed": failed,
            "fault_s": fault_s, "elapsed_s": time.monotonic() - t0,
            "threads_alive": threading.active_count()}
