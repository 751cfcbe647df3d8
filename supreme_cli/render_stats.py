"""Rich renderings of `supreme stats` and `supreme stats ab`."""

from __future__ import annotations

from typing import Any

from rich.table import Table

METRIC_ROWS = (
    ("periods", "periods", "d"), ("total_return", "total return", "%"),
    ("annual_return", "annual return", "%"), ("volatility", "volatility (annual)", "%"),
    ("sharpe", "Sharpe (annual)", ".3f"), ("sortino", "Sortino (annual)", ".3f"),
    ("calmar", "Calmar", ".3f"), ("max_drawdown", "max drawdown", "%"),
    ("max_drawdown_duration_periods", "max drawdown duration (periods)", "d"),
    ("psr", "PSR (SR > 0)", ".4f"), ("dsr", "DSR", ".4f"), ("n_trials", "variants tried", "d"),
    ("exposure", "exposure", "%"), ("trades", "trades", "d"), ("win_rate", "win rate", "%"),
    ("profit_factor", "profit factor", ".3f"), ("expectancy", "expectancy per trade", ".4f"),
    ("avg_win", "average win", ".4f"), ("avg_loss", "average loss", ".4f"),
    ("sqn", "SQN", ".3f"),
)


def fmt(value: Any, spec: str) -> str:
    if value is None:
        return "–"
    if spec == "%":
        return f"{value * 100:.3f} %"
    if spec == "d":
        return f"{int(value):,}"
    return format(value, spec)


def _metric_cells(m: dict[str, Any], key: str, spec: str) -> str:
    text = fmt(m.get(key), spec)
    if key == "win_rate" and m.get("win_rate_ci"):
        low, high = m["win_rate_ci"]
        text += f" (95 % CI {low * 100:.1f}–{high * 100:.1f} %)"
    return text


def metrics_table(title: str, columns: list[tuple[str, dict[str, Any]]]) -> Table:
    table = Table(title=title, title_justify="left")
    table.add_column("metric", style="bold")
    for name, _ in columns:
        table.add_column(name, justify="right")
    for key, label, spec in METRIC_ROWS:
        if all(m.get(key) is None for _, m in columns):
            continue
        table.add_row(label, *(_metric_cells(m, key, spec) for _, m in columns))
    return table


def tests_table(comparison: dict[str, Any]) -> Table:
    table = Table(title=f"significance (α = {comparison['alpha']}; Holm-adjusted across "
                        "tests)", title_justify="left")
    for col in ("test", "estimate", "CI", "p", "Holm p", "null hypothesis"):
        table.add_column(col)
    adjusted = comparison.get("holm", {}).get("adjusted", {})
    for t in comparison["tests"]:
        ci = t.get("ci")
        table.add_row(t["test"], fmt(t.get("estimate"), ".6g"),
                      "–" if not ci else f"{ci[0]:.6g} … {ci[1]:.6g}",
                      fmt(t.get("p_value"), ".4g"), fmt(adjusted.get(t["test"]), ".4g"),
                      t["null"])
    primary = comparison["primary"]
    table.caption = f"verdict test (pre-declared): {primary['test']}"
    return table


def stats_tables(doc: dict[str, Any]) -> list[Table]:
    columns = [(doc["source"]["label"], doc["metrics"])]
    if doc.get("baseline"):
        columns.append((doc["baseline"]["label"], doc["baseline"]["metrics"]))
    tables = [metrics_table("statistics (measured in this run of the command)", columns)]
    if doc.get("comparison"):
        tables.append(tests_table(doc["comparison"]))
    wf = doc.get("walk_forward")
    if wf:
        tables.append(walk_forward_table(wf))
    return tables


def walk_forward_table(wf: dict[str, Any]) -> Table:
    table = Table(title="walk-forward: in-sample vs out-of-sample", title_justify="left")
    for col in ("window", "IS Sharpe", "OOS Sharpe", "IS return", "OOS return"):
        table.add_column(col, justify="right")
    for i, w in enumerate(wf.get("windows", []), start=1):
        ins, oos = w.get("in_sample", {}), w.get("out_of_sample", {})
        ins_m, oos_m = ins.get("metrics", ins), oos.get("metrics", oos)
        table.add_row(str(i), fmt(ins_m.get("sharpe"), ".3f"), fmt(oos_m.get("sharpe"), ".3f"),
                      fmt(ins_m.get("total_return"), "%"), fmt(oos_m.get("total_return"), "%"))
    return table


def ab_tables(doc: dict[str, Any]) -> list[Table]:
    cand, base = doc["candidate"], doc["baseline"]
    return [metrics_table(
        f"A/B on {doc['feed']}, {doc['periods']:,} shared periods",
        [(f"{cand['profile']} ({cand['run_id'][:8]})", doc["metrics"]),
         (f"{base['profile']} ({base['run_id'][:8]})", doc["baseline_metrics"])]),
        tests_table(doc["comparison"])]
