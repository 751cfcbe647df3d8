"""`supreme stats`: metrics of one series, its comparison with a baseline, walk-forward,
and the verdict in plain words. Every figure is computed here, from the series given."""

from __future__ import annotations

from typing import Any

from engine.errors import ConfigError
from engine.stats.baselines import align, baseline_for
from engine.stats.metrics import compute_metrics
from engine.stats.series import ReturnSeries, from_run
from engine.store.base import Store


def metrics_of(series: ReturnSeries, *, n_trials: int = 1) -> dict[str, Any]:
    return compute_metrics(series.returns, periods_per_year=series.periods_per_year,
                           trade_pnls=series.trade_pnls, in_market=series.in_market,
                           timestamps=series.timestamps_ms, n_trials=n_trials,
                           timestamp_unit="ms")


def compare_series(candidate: ReturnSeries, baseline: ReturnSeries, *, resamples: int,
                   alpha: float, seed: int) -> dict[str, Any]:
    from engine.stats.significance import compare

    return {
        "metrics": metrics_of(candidate),
        "baseline_metrics": metrics_of(baseline),
        "comparison": compare(candidate.returns, baseline.returns,
                              periods_per_year=candidate.periods_per_year, paired=True,
                              resamples=resamples, seed=seed, alpha=alpha),
    }


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value * 100:+.4f} %"


def verdict(result: dict[str, Any], candidate: str, baseline: str) -> str:
    """One sentence a trader can act on, from the pre-declared primary test."""
    comparison = result["comparison"]
    primary = comparison["primary"]
    p = primary["p_value"]
    alpha = comparison["alpha"]
    estimate = primary.get("estimate")
    ci = primary.get("ci")
    span = "" if not ci else f" (CI {_pct(ci[0])} to {_pct(ci[1])})"
    where = (f"mean return per period differs by {_pct(estimate)}{span}; "
             f"p = {p:.4g} ({primary['test']}; null: {primary['null']})")
    if p is None or p >= alpha:
        return (f"No evidence that {candidate} differs from {baseline} at α = {alpha}: "
                f"{where}. A difference this size is what luck alone produces.")
    better = estimate is not None and estimate > 0
    return (f"{candidate} {'outperforms' if better else 'underperforms'} {baseline}, "
            f"significant at α = {alpha}: {where}.")


def resolve_baseline(spec: str, candidate: ReturnSeries, store: Store | None,
                     seed: int) -> ReturnSeries:
    if spec.startswith("run:"):
        if store is None:
            raise ConfigError("--baseline run:ID needs a store")
        return from_run(store, spec.removeprefix("run:"))
    return baseline_for(spec, candidate, seed)


def analyze(series: ReturnSeries, *, store: Store | None = None, baseline: str | None = None,
            n_trials: int = 1, walk_forward: int = 0, resamples: int = 10_000,
            alpha: float = 0.05, seed: int = 0) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "source": {"label": series.label, "run_id": series.run_id,
                   "first_ts_ms": int(series.timestamps_ms[0]),
                   "last_ts_ms": int(series.timestamps_ms[-1])},
        "metrics": metrics_of(series, n_trials=n_trials),
    }
    if baseline:
        base = resolve_baseline(baseline, series, store, seed)
        cand, base = align(series, base)
        result = compare_series(cand, base, resamples=resamples, alpha=alpha, seed=seed)
        doc["baseline"] = {"name": baseline, "label": base.label, "run_id": base.run_id,
                           "metrics": result["baseline_metrics"]}
        doc["comparison"] = result["comparison"]
        doc["verdict"] = verdict(result, series.label, base.label)
    if walk_forward:
        from engine.stats.walkforward import walk_forward as split

        doc["walk_forward"] = split(series.returns, series.timestamps_ms,
                                    windows=walk_forward,
                                    periods_per_year=series.periods_per_year,
                                    metric_fn=_window_metrics)
    return doc


def _window_metrics(returns: Any, periods_per_year: float) -> dict[str, Any]:
    m = compute_metrics(returns, periods_per_year=periods_per_year)
    return {k: m[k] for k in ("total_return", "sharpe", "sortino", "max_drawdown",
                              "volatility")}
