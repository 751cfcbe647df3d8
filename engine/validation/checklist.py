"""`supreme validate`: the guide's performance checklist, every item measured in this run.

A validation profile (the [validation] table of profiles/quick|realtime|extended.toml) says
how long each step runs (shares of `duration`, which --duration replaces), the thresholds,
and which items are required. Steps: `profile` twice (as fast as possible for latency and
throughput; paced at `rate` bars/s for CPU %), `memory`, `stress` when its share is
positive, `degrade`, a significance comparison against random entries with matched
exposure, and an exchange connectivity check. Each item is a number with a unit, a
threshold and a status: pass, fail, warn (a non-required item that missed) or skipped (with
the reason). A required item that could not be measured fails.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.cache import CacheSettings
from engine.errors import ConfigError, SupremeError

ITEMS = ("latency_avg", "latency_p95", "memory", "cpu", "throughput", "cache_hit_rate",
         "significance", "win_rate", "position_sizing", "indicators", "exchange_connectivity",
         "graceful_recovery", "error_rate")
Progress = Callable[[str, float, float], None]


@dataclass
class ValidationPlan:
    name: str
    duration_s: float
    shares: dict[str, float]
    thresholds: dict[str, float]
    required: set[str]
    rate: float
    stats_bars: int
    trading_data: str | None
    endpoint: str | None = None
    redis_url: str | None = None
    postgres_url: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def seconds(self, step: str, floor: float = 1.0) -> float:
        return max(floor, self.duration_s * self.shares.get(step, 0.0))


def plan_from_profile(name: str, section: dict[str, Any], duration_s: float | None
                      ) -> ValidationPlan:
    if not section:
        raise ConfigError(f"profile {name!r} has no [validation] table; use quick, realtime "
                          "or extended")
    try:
        required = set(section.get("required", []))
        unknown = required - set(ITEMS)
        if unknown:
            raise ConfigError(f"profile {name!r}: unknown required items {sorted(unknown)}")
        shares = {k.removesuffix("_share"): float(v) for k, v in section.items()
                  if k.endswith("_share")}
        return ValidationPlan(
            name=name, duration_s=float(duration_s or section.get("duration", 300)),
            shares=shares, thresholds={k: float(v) for k, v in
                                       section.get("thresholds", {}).items()},
            required=required, rate=float(section.get("rate", 0)),
            stats_bars=int(section.get("stats_bars", 20_000)),
            trading_data=_data_path(str(section.get("trading_data") or "")))
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"profile {name!r}: bad [validation] value: {exc}") from exc


def _data_path(text: str) -> str | None:
    if not text:
        return None
    path = Path(text).expanduser()
    if not path.is_absolute():
        shared = Path(os.environ.get("SUPREME_SHARED_DATA") or Path.cwd().parent / "shared"
                      / "data")
        candidate = shared / path
        path = candidate if candidate.exists() else path
    return str(path)


def _item(name: str, value: Any, unit: str, threshold: Any, required: bool,
          ok: bool | None, reason: str) -> dict[str, Any]:
    if ok is None:
        status = "fail" if required else "skipped"
    elif ok:
        status = "pass"
    else:
        status = "fail" if required else "warn"
    return {"name": name, "value": value, "unit": unit, "threshold": threshold,
            "required": required, "status": status, "reason": reason}


class _Steps:
    """Runs each step once, keeping its result or the error that stopped it."""

    def __init__(self, plan: ValidationPlan, data_dir: Path, progress: Progress | None,
                 stop: threading.Event | None) -> None:
        self.plan = plan
        self.data_dir = data_dir
        self.progress = progress
        self.stop = stop
        self.results: dict[str, Any] = {}
        self.errors: dict[str, str] = {}

    def run(self, name: str, fn: Callable[[], Any]) -> Any:
        if self.stop is not None and self.stop.is_set():
            self.errors[name] = "interrupted before this step"
            return None
        if self.progress is not None:
            self.progress(name, 0, 1)
        t0 = time.monotonic()
        try:
            self.results[name] = fn()
        except SupremeError as exc:
            self.errors[name] = f"{type(exc).__name__}: {exc}"[:300]
        self.results.setdefault(f"{name}_wall_s", time.monotonic() - t0)
        return self.results.get(name)

    def reason(self, name: str) -> str:
        return self.errors.get(name, f"{name} did not run")


def run_validation(plan: ValidationPlan, *, data_dir: Path, progress: Progress | None = None,
                   stop: threading.Event | None = None) -> dict[str, Any]:
    from engine.validation.degrade import run_degrade
    from engine.validation.memory import run_memory
    from engine.validation.profile import run_profile

    steps = _Steps(plan, data_dir, progress, stop)
    cache = CacheSettings(env=f"validate-{uuid.uuid4().hex[:8]}", redis_url=plan.redis_url)
    profile_s = plan.seconds("profile", 2.0)
    fast = steps.run("profile", lambda: run_profile(
        duration_s=profile_s / 2, data_dir=data_dir, cache=cache, stop=stop))
    paced = steps.run("profile_paced", lambda: run_profile(
        duration_s=profile_s / 2, rate=plan.rate or None, data_dir=data_dir, cache=cache,
        stop=stop)) if plan.rate else fast
    memory = steps.run("memory", lambda: run_memory(
        duration_s=plan.seconds("memory", 2.0), data_dir=data_dir, stop=stop))
    if plan.shares.get("stress", 0) > 0:
        from engine.validation.stress import run_stress

        steps.run("stress", lambda: run_stress(
            duration_s=plan.seconds("stress", 2.0), rate=plan.rate or 20.0, data_dir=data_dir,
            stop=stop))
    degrade = steps.run("degrade", lambda: run_degrade(
        scenarios=None, fault_s=min(3.0, max(0.5, plan.seconds("degrade") / 20)),
        duration_s=max(2.0, plan.seconds("degrade", 8.0) / 4), data_dir=data_dir,
        redis_url=plan.redis_url, postgres_url=plan.postgres_url, progress=None))
    trading = steps.run("trading", lambda: _trading(plan, data_dir))
    connectivity = steps.run("connectivity", lambda: _connectivity(plan))
    items = _items(plan, steps, fast, paced, memory, degrade, trading, connectivity)
    failed = [i["name"] for i in items if i["status"] == "fail"]
    return {"profile": plan.name, "duration_s": plan.duration_s,
            "interrupted": bool(stop is not None and stop.is_set()),
            "items": items, "passed": not failed, "failed": failed,
            "steps": {k: v for k, v in steps.results.items() if not k.endswith("_wall_s")},
            "step_errors": steps.errors,
            "step_wall_s": {k.removesuffix("_wall_s"): v for k, v in steps.results.items()
                            if k.endswith("_wall_s")}}


def _trading(plan: ValidationPlan, data_dir: Path) -> dict[str, Any]:
    """The default strategy on the trading data (or the simulator) against random entries
    with the same exposure and trade count: its win rate and the verdict test's p."""
    from engine.pipeline import Run, RunSpec
    from engine.stats.analyze import analyze
    from engine.stats.series import from_run
    from engine.store import open_store

    feed = "replay" if plan.trading_data else "sim"
    spec = RunSpec(symbol=None if feed == "replay" else "ETH-USDT", feed=feed,
                   data_file=plan.trading_data, replay_policy="skip",
                   bars=None if feed == "replay" else plan.stats_bars, data_dir=data_dir)
    run = Run(spec)
    run.execute()
    store = open_store(None, data_dir)
    try:
        doc = analyze(from_run(store, run.run_id), store=store, baseline="random",
                      resamples=2_000)
    finally:
        store.close()
    return {"run_id": run.run_id, "feed": feed, "data": plan.trading_data,
            "win_rate": doc["metrics"]["win_rate"], "trades": doc["metrics"]["trades"],
            "p_value": doc["comparison"]["primary"]["p_value"],
            "estimate": doc["comparison"]["primary"].get("estimate"),
            "verdict": doc["verdict"]}


def _connectivity(plan: ValidationPlan) -> dict[str, Any]:
    from engine.exchange.connectivity import check_exchanges

    endpoints = {"binance": plan.endpoint} if plan.endpoint else None
    report = check_exchanges(["binance"], "ETH-USDT", 10.0, endpoints=endpoints)
    return report.as_dict()


def _items(plan: ValidationPlan, steps: _Steps, fast: Any, paced: Any, memory: Any,
           degrade: Any, trading: Any, connectivity: Any) -> list[dict[str, Any]]:
    t, req = plan.thresholds, plan.required
    out: list[dict[str, Any]] = []

    def add(name: str, value: Any, unit: str, threshold: Any, ok: bool | None,
            reason: str) -> None:
        out.append(_item(name, value, unit, threshold, name in req, ok, reason))

    if fast:
        lat = fast["latency_us"]
        add("latency_avg", lat["mean"] / 1000, "ms", t.get("latency_avg_ms"),
            lat["mean"] / 1000 < t.get("latency_avg_ms", 0.02),
            f"mean of {fast['bars']:,} bars at full speed")
        add("latency_p95", lat["p95"] / 1000, "ms", t.get("latency_p95_ms"),
            lat["p95"] / 1000 < t.get("latency_p95_ms", 1.0), "95th percentile, same run")
        add("throughput", fast["throughput_per_s"], "updates/s", t.get("throughput_per_s"),
            fast["throughput_per_s"] > t.get("throughput_per_s", 10), "bars per wall second")
        hit = (fast.get("cache") or {}).get("hit_rate")
        add("cache_hit_rate", hit, "ratio", t.get("cache_hit_rate"),
            None if hit is None else hit > t.get("cache_hit_rate", 0.9),
            "reads served by any tier / reads" if hit is not None else "no cache reads")
        errors, bars = fast.get("errors", 0), max(1, fast["bars"])
        add("error_rate", errors / bars, "ratio", t.get("error_rate"),
            errors / bars < t.get("error_rate", 0.001), f"{errors} errors in {bars:,} bars")
        dev = fast.get("indicator_max_deviation")
        add("indicators", dev, "relative", t.get("indicators_max_deviation"),
            None if dev is None else dev < t.get("indicators_max_deviation", 1e-8),
            "largest deviation of the incremental indicators from the batch reference "
            "on the run's own closes")
        add("position_sizing", *_sizing(fast.get("order_sizes")))
    else:
        for name in ("latency_avg", "latency_p95", "throughput", "cache_hit_rate",
                     "error_rate", "indicators", "position_sizing"):
            add(name, None, "", None, None, steps.reason("profile"))
    if paced:
        add("cpu", paced["cpu_percent"], "%", t.get("cpu_percent"),
            paced["cpu_percent"] < t.get("cpu_percent", 85),
            f"process CPU / wall at {plan.rate or 'full'} bars/s")
    else:
        add("cpu", None, "%", t.get("cpu_percent"), None, steps.reason("profile_paced"))
    if memory:
        heap_mb = memory["heap_steady_mib"] * 1.048576
        add("memory", heap_mb, "MB", t.get("memory_mb"), heap_mb < t.get("memory_mb", 15),
            f"engine heap (tracemalloc) in steady state; process RSS "
            f"{memory.get('rss_mib', float('nan')):.1f} MiB; {memory.get('verdict', '')}")
    else:
        add("memory", None, "MB", t.get("memory_mb"), None, steps.reason("memory"))
    if trading:
        where = "real candles" if trading["feed"] == "replay" else "the simulator"
        add("significance", trading["p_value"], "p", t.get("significance_p"),
            None if trading["p_value"] is None else
            trading["p_value"] < t.get("significance_p", 0.05)
            and (trading.get("estimate") or 0) > 0,
            f"candidate vs random entries with matched exposure on {where}: "
            f"{trading['verdict']}")
        win = trading["win_rate"]
        add("win_rate", win, "ratio", t.get("win_rate"),
            None if win is None else win > t.get("win_rate", 0.6),
            f"{trading['trades']} trades on {where}")
    else:
        for name in ("significance", "win_rate"):
            add(name, None, "", None, None, steps.reason("trading"))
    if connectivity:
        verdict = connectivity["verdict"]
        add("exchange_connectivity", 1.0 if verdict == "ok" else 0.0, "up", 1.0,
            verdict == "ok", f"binance: {verdict}")
    else:
        add("exchange_connectivity", None, "up", 1.0, None, steps.reason("connectivity"))
    add("graceful_recovery", *_recovery(degrade, steps))
    order = {name: i for i, name in enumerate(ITEMS)}
    out.sort(key=lambda item: order[item["name"]])
    return out


def _sizing(summary: Any) -> tuple[Any, str, Any, bool | None, str]:
    if not isinstance(summary, dict) or not summary.get("count"):
        return None, "cv", 0.0, None, "no orders were sized in the run"
    cv = summary.get("cv")
    corr = summary.get("corr_with_volatility")
    ok = cv is not None and cv > 0.01 and (corr is None or corr < 0)
    return (cv, "cv", 0.01, ok,
            f"{summary['count']} orders, sizes {summary.get('min')}–{summary.get('max')}, "
            f"correlation with volatility {corr if corr is None else round(corr, 3)} "
            "(a risk-based size shrinks as volatility grows)")


def _recovery(degrade: Any, steps: _Steps) -> tuple[Any, str, Any, bool | None, str]:
    if not degrade:
        return None, "scenarios", None, None, steps.reason("degrade")
    scenarios = [s for s in degrade.get("scenarios", []) if s.get("status") != "skipped"]
    if not scenarios:
        return None, "scenarios", None, None, "every fault scenario was skipped"
    passed = [s for s in scenarios if s.get("status") == "pass"]
    worst = max((s.get("recovery_s") or 0.0) for s in scenarios)
    lost = sum(int(s.get("lost_records") or 0) for s in scenarios)
    return (len(passed) / len(scenarios), "ratio", 1.0, len(passed) == len(scenarios),
            f"{len(passed)}/{len(scenarios)} fault scenarios recovered; slowest recovery "
            f"{worst:.2f} s; {lost} records lost")
