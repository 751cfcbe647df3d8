"""The daily report's figures, assembled from the store alone.

Day D (UTC) holds every run whose wall-clock start (`runs.started_at_ms`) falls on D, with
all of its trades and equity, whatever market timestamps a replay carried; `since` widens
the window to [since 00:00, D+1 00:00). Validation results count when they were stored in
the window. Nothing here reads the clock, so the same store gives the same document.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

from engine.errors import ConfigError, DataError
from engine.store.base import Store
from engine.store.schema import RunRecord

DAY_MS = 86_400_000
CHART_POINTS = 600  # the curves keep at most this many points (a fixed stride: deterministic)

DEFAULT_ALERTS: dict[str, float] = {
    "max_latency_p95_us": 1000.0,
    "min_win_rate": 0.6,
    "min_trades_for_win_rate": 20,
    "max_drawdown": 0.10,
    "min_cache_hit_rate": 0.9,
    "max_error_rate": 0.001,
    "failed_validations": 0,
}


def day_start_ms(day: date) -> int:
    return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp() * 1000)


def iso_ms(ms: int | None) -> str | None:
    if ms is None:
        return None
    when = datetime.fromtimestamp(ms / 1000, tz=UTC)
    return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def alert_thresholds(profile_alerts: Mapping[str, Any] | None) -> dict[str, float]:
    """The built-in defaults overridden by a profile's [alerts] table (unknown keys refused)."""
    merged: dict[str, float] = dict(DEFAULT_ALERTS)
    for key, value in (profile_alerts or {}).items():
        if key not in DEFAULT_ALERTS:
            raise ConfigError(f"[alerts]: unknown key {key!r}; known: "
                              f"{', '.join(sorted(DEFAULT_ALERTS))}")
        if isinstance(value, bool) or not isinstance(value, int | float) \
                or not math.isfinite(value):
            raise ConfigError(f"[alerts]: {key} must be a number, got {value!r}")
        merged[key] = value
    return merged


def runs_between(store: Store, start_ms: int, end_ms: int) -> list[RunRecord]:
    """Runs started in [start_ms, end_ms), oldest first."""
    runs = store.list_runs(limit=1_000_000, since_ms=start_ms)
    return sorted((r for r in runs if r.started_at_ms < end_ms),
                  key=lambda r: (r.started_at_ms, r.id))


def build_daily(store: Store, day: date, since: date | None = None,
                alerts: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The report document for `day` (or `since` .. `day`). Raises DataError when the window
    holds neither a run nor a validation result (the CLI's NO_DATA)."""
    first = since or day
    if first > day:
        raise ConfigError(f"--since {first.isoformat()} is after --date {day.isoformat()}")
    start_ms, end_ms = day_start_ms(first), day_start_ms(day) + DAY_MS
    thresholds = alert_thresholds(alerts)
    runs = runs_between(store, start_ms, end_ms)
    validations = _validations(store, start_ms, end_ms)
    if not runs and not validations:
        period = day.isoformat() if first == day else f"{first.isoformat()} .. {day.isoformat()}"
        raise DataError(f"no runs and no validation results for {period} (UTC) in "
                        f"{store.url_redacted}")
    per_run = [_run_figures(store, run) for run in runs]
    totals, curve = _totals(per_run)
    doc: dict[str, Any] = {
        "report": "daily",
        "date": day.isoformat(),
        "since": first.isoformat(),
        "window": {"start_ms": start_ms, "end_ms": end_ms, "start": iso_ms(start_ms),
                   "end": iso_ms(end_ms)},
        "store": store.url_redacted,
        "totals": totals,
        "runs": [{k: v for k, v in r.items() if not k.startswith("_")} for r in per_run],
        "equity_curve": curve,
        "latency": [{"run_id": r["run_id"], "started_at": r["started_at"],
                     **{p: (r["latency_us"] or {}).get(p) for p in ("p50", "p95", "p99")}}
                    for r in per_run],
        "cache": [{"run_id": r["run_id"], **r["cache"]} for r in per_run
                  if r["cache"] is not None],
        "validations": validations,
        "thresholds": thresholds,
    }
    doc["checks"] = _checks(doc, thresholds)
    doc["breaches"] = [c for c in doc["checks"] if c["status"] == "breach"]
    doc["passed"] = not doc["breaches"]
    return doc


def _validations(store: Store, start_ms: int, end_ms: int) -> list[dict[str, Any]]:
    found = []
    for run_id, kind, created, result in store.stats_since(start_ms, end_ms):
        if not kind.startswith("validate:") or not isinstance(result, Mapping):
            continue
        items = [{"name": i.get("name"), "value": i.get("value"), "unit": i.get("unit"),
                  "status": i.get("status"), "required": i.get("required")}
                 for i in result.get("items") or [] if isinstance(i, Mapping)]
        found.append({"id": run_id, "kind": kind, "profile": kind.split(":", 1)[1],
                      "created_at": iso_ms(created), "passed": bool(result.get("passed")),
                      "failed": [i["name"] for i in items if i["status"] == "fail"],
                      "items": items})
    return found


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _cache_figures(summary: Mapping[str, Any]) -> dict[str, Any] | None:
    cache = summary.get("cache")
    if not isinstance(cache, Mapping):
        return None
    raw = cache.get("tiers")
    tiers: Mapping[str, Any] = raw if isinstance(raw, Mapping) else {}
    return {"hit_rate": _num(cache.get("hit_rate")),
            "tiers": {name: _num(t.get("hit_rate")) if isinstance(t, Mapping) else None
                      for name, t in sorted(tiers.items())}}


def _run_figures(store: Store, run: RunRecord) -> dict[str, Any]:
    from engine.stats.metrics import compute_metrics
    from engine.stats.series import from_run

    summary = run.summary or {}
    trades = store.trades_for_run(run.id)
    equity = store.equity_for_run(run.id)
    pnls = [t.pnl for t in trades]
    metrics: dict[str, Any] | None = None
    returns: list[float] = []
    ppy: float | None = None
    try:
        series = from_run(store, run.id)
        metrics = compute_metrics(series.returns, periods_per_year=series.periods_per_year,
                                  trade_pnls=series.trade_pnls, in_market=series.in_market,
                                  timestamps=series.timestamps_ms)
        returns = [float(x) for x in series.returns]
        ppy = series.periods_per_year
    except DataError:
        pass  # fewer than 3 snapshots: no statistics for this run, the rest still counts
    raw_store = summary.get("store")
    store_info: Mapping[str, Any] = raw_store if isinstance(raw_store, Mapping) else {}
    bars = summary.get("bars") if isinstance(summary.get("bars"), int) else len(equity)
    errors = store_info.get("errors") if isinstance(store_info.get("errors"), int) else None
    latency = summary.get("latency_us")
    wins = sum(1 for p in pnls if p > 0)
    return {
        "run_id": run.id, "started_at": iso_ms(run.started_at_ms),
        "started_at_ms": run.started_at_ms, "ended_at": iso_ms(run.ended_at_ms),
        "status": run.status, "symbol": run.symbol, "feed": run.feed, "mode": run.mode,
        "bars": bars, "equity_points": len(equity), "trades": len(trades), "wins": wins,
        "losses": sum(1 for p in pnls if p < 0),
        "win_rate": wins / len(trades) if trades else None,
        "pnl": math.fsum(pnls), "fees": math.fsum(t.fees for t in trades),
        "starting_equity": equity[0].equity if equity else _num(summary.get("starting_equity")),
        "final_equity": equity[-1].equity if equity else _num(summary.get("final_equity")),
        "max_drawdown": metrics["max_drawdown"] if metrics
        else _num(summary.get("max_drawdown")),
        "latency_us": ({k: _num(latency.get(k)) for k in ("mean", "p50", "p95", "p99", "max")}
                       if isinstance(latency, Mapping) else None),
        "cache": _cache_figures(summary),
        "store_errors": errors,
        "error_rate": errors / bars if errors is not None and bars else None,
        "metrics": metrics,
        "_returns": returns, "_ppy": ppy, "_pnls": pnls,
    }


def _totals(per_run: Sequence[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The window's figures, and its equity curve: each run's returns compounded in start
    order into one index starting at 1.0 (runs start from their own equity, so an index,
    not money), with the drawdown from its running peak."""
    from engine.stats.metrics import compute_metrics

    returns = [x for r in per_run for x in r["_returns"]]
    pnls = [p for r in per_run for p in r["_pnls"]]
    ppys = [r["_ppy"] for r in per_run if r["_ppy"]]
    metrics = None
    if returns and ppys:
        metrics = compute_metrics(returns, periods_per_year=min(ppys), trade_pnls=pnls)
    index, peak, values, drawdowns = 1.0, 1.0, [1.0], [0.0]
    for x in returns:
        index *= 1.0 + x
        peak = max(peak, index)
        values.append(index)
        drawdowns.append(1.0 - index / peak)
    stride = max(1, math.ceil(len(values) / CHART_POINTS))
    keep = list(range(0, len(values), stride))
    if keep[-1] != len(values) - 1:
        keep.append(len(values) - 1)
    trades = len(pnls)
    wins = sum(1 for p in pnls if p > 0)
    totals = {
        "runs": len(per_run), "trades": trades, "wins": wins,
        "losses": sum(1 for p in pnls if p < 0),
        "win_rate": wins / trades if trades else None,
        "pnl": math.fsum(pnls), "fees": math.fsum(r["fees"] for r in per_run),
        "bars": sum(r["bars"] for r in per_run),
        "max_drawdown": max(drawdowns), "final_index": values[-1],
        "metrics": metrics,
    }
    curve = {"points": len(values), "stride": stride, "index": keep,
             "equity": [values[i] for i in keep], "drawdown": [drawdowns[i] for i in keep]}
    return totals, curve


def _check(rule: str, threshold: float, measured: float | None, breached: bool,
           run_ids: list[str], note: str = "") -> dict[str, Any]:
    status = "not judged" if measured is None else ("breach" if breached else "ok")
    return {"rule": rule, "threshold": threshold, "measured": measured, "status": status,
            "run_ids": run_ids if status == "breach" else [], "note": note}


def _worst(rows: list[tuple[str, float | None]], *, high_is_bad: bool, threshold: float,
           rule: str, note: str = "") -> dict[str, Any]:
    known = [(rid, v) for rid, v in rows if v is not None]
    if not known:
        return _check(rule, threshold, None, False, [], note or "no run measured it")
    bad = [rid for rid, v in known if (v > threshold if high_is_bad else v < threshold)]
    worst = max(v for _, v in known) if high_is_bad else min(v for _, v in known)
    return _check(rule, threshold, worst, bool(bad), bad, note)


def _checks(doc: Mapping[str, Any], t: Mapping[str, float]) -> list[dict[str, Any]]:
    runs = doc["runs"]
    checks = [
        _worst([(r["run_id"], (r["latency_us"] or {}).get("p95")) for r in runs],
               high_is_bad=True, threshold=t["max_latency_p95_us"], rule="max_latency_p95_us",
               note="worst run's latency p95 (µs)"),
    ]
    totals = doc["totals"]
    min_trades = t["min_trades_for_win_rate"]
    if totals["trades"] >= min_trades and totals["win_rate"] is not None:
        breached = totals["win_rate"] < t["min_win_rate"]
        checks.append(_check("min_win_rate", t["min_win_rate"], totals["win_rate"], breached,
                             [r["run_id"] for r in runs if r["trades"]] if breached else [],
                             f"over the window's {totals['trades']} trades"))
    else:
        checks.append(_check("min_win_rate", t["min_win_rate"], None, False, [],
                             f"{totals['trades']} trades, fewer than "
                             f"min_trades_for_win_rate = {min_trades:g}"))
    checks.append(_worst([(r["run_id"], r["max_drawdown"]) for r in runs], high_is_bad=True,
                         threshold=t["max_drawdown"], rule="max_drawdown",
                         note="worst run's max drawdown (fraction of its peak)"))
    checks.append(_worst([(r["run_id"], (r["cache"] or {}).get("hit_rate")) for r in runs],
                         high_is_bad=False, threshold=t["min_cache_hit_rate"],
                         rule="min_cache_hit_rate",
                         note="lowest overall hit rate of a run with the cache"))
    checks.append(_worst([(r["run_id"], r["error_rate"]) for r in runs], high_is_bad=True,
                         threshold=t["max_error_rate"], rule="max_error_rate",
                         note="store writer errors per bar, worst run"))
    failed = [v["id"] for v in doc["validations"] if not v["passed"]]
    checks.append(_check("failed_validations", t["failed_validations"], float(len(failed)),
                         len(failed) > t["failed_validations"], failed,
                         f"{len(doc['validations'])} validation results in the window"))
    return checks


def parse_since(text: str, day: date) -> date:
    """`3d` (three days ending with `day`, inclusive) or a date YYYY-MM-DD."""
    raw = text.strip().lower()
    if raw.endswith("d") and raw[:-1].isdigit():
        days = int(raw[:-1])
        if days < 1:
            raise ConfigError(f"--since {text!r}: give at least 1d")
        return day - timedelta(days=days - 1)
    return parse_date(text, "--since")


def parse_date(text: str, what: str) -> date:
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        raise ConfigError(f"{what} {text!r} is not a date YYYY-MM-DD") from None
