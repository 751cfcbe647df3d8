"""Rich renderings of a run: the live view and the summary table."""

from __future__ import annotations

from typing import Any

from rich.table import Table


def _num(value: Any, fmt: str = ".2f") -> str:
    if value is None:
        return "–"
    if isinstance(value, float) and value != value:
        return "–"
    return format(value, fmt)


def live_view(snap: dict[str, Any], symbol: str) -> Table:
    table = Table(title=f"supreme run · {symbol}", title_justify="left", show_header=False,
                  box=None, padding=(0, 2))
    table.add_column(style="dim")
    table.add_column(justify="right")
    table.add_column(style="dim")
    table.add_column(justify="right")
    progress = str(snap["bars"])
    if snap.get("bars_limit"):
        progress += f" / {snap['bars_limit']}"
    elapsed = f"{snap['elapsed_s']:.0f} s"
    if snap.get("duration_s"):
        elapsed += f" / {snap['duration_s']:.0f} s"
    pos = snap["position_qty"]
    lat = snap["latency_us"]
    rows = [
        ("bars", progress, "elapsed", elapsed),
        ("price", _num(snap["price"]), "position",
         f"{pos:.5f} @ {_num(snap['entry_price'])}" if pos else "flat"),
        ("EMA fast / slow", f"{_num(snap['ema_fast'])} / {_num(snap['ema_slow'])}",
         "equity", _num(snap["equity"])),
        ("MACD / signal", f"{_num(snap['macd'], '.4f')} / {_num(snap['macd_signal'], '.4f')}",
         "PnL", _num(snap["pnl"], "+.2f")),
        ("RSI", _num(snap["rsi"], ".1f"), "drawdown", f"{snap['drawdown'] * 100:.2f} %"),
        ("latency p50 / p99", f"{lat['p50']:.2f} / {lat['p99']:.2f} µs", "trades / win rate",
         f"{snap['trades']} / {_num(snap['win_rate'] and snap['win_rate'] * 100, '.1f')} %"),
    ]
    if snap.get("breaker"):
        rows.append(("breaker", "[red]TRIPPED: entries halted[/]", "", ""))
    for row in rows:
        table.add_row(*row)
    return table


def summary_table(s: dict[str, Any]) -> Table:
    table = Table(title=f"run {s['run_id'][:12]} · {s['symbol']} · {s['feed']} · {s['mode']}",
                  title_justify="left", show_header=False)
    table.add_column(style="bold")
    table.add_column(justify="right")
    lat = s["latency_us"]
    win = s["win_rate"]
    rows = [
        ("status", f"{s['status']} ({s['stopped_by']})"),
        ("bars", f"{s['bars']}"),
        ("signals fired / filtered", f"{s['signals']} / {s['signals_filtered']}"),
        ("orders / rejected", f"{s['orders']} / {s['orders_rejected']}"),
        ("trades / wins", f"{s['trades']} / {s['wins']}"),
        ("win rate", "–" if win is None else f"{win * 100:.1f} %"),
        ("PnL", f"{s['pnl']:+.2f} ({s['pnl_pct']:+.3f} %)"),
        ("fees", f"{s['fees']:.2f}"),
        ("max drawdown", f"{s['max_drawdown'] * 100:.2f} %"),
        ("latency mean / p50 / p95 / p99 / max",
         " / ".join(_num(lat[k]) for k in ("mean", "p50", "p95", "p99", "max")) + " µs"),
        ("throughput", f"{_num(s['bars_per_s'], ',.0f')} bars/s over {s['wall_s']:.2f} s"),
        ("RSS now / peak", f"{_num(s['rss_mib'], '.1f')} / {_num(s['rss_peak_mib'], '.1f')} MiB"),
        ("store", s["store"].get("url", "")),
    ]
    if s.get("breaker_tripped"):
        rows.append(("drawdown breaker", "tripped: entries halted"))
    if s.get("cache"):
        rows.append(("cache hit rate L1 / L2 / L3", cache_rates(s["cache"])))
    for row in rows:
        table.add_row(*row)
    return table


def _pct(value: Any) -> str:
    return "–" if value is None else f"{value * 100:.1f} %"


def cache_rates(cache: dict[str, Any]) -> str:
    """'99.1 % / off / 50.0 %', with a tier's status when it is not ok."""
    parts = []
    for name in ("l1", "l2", "l3"):
        tier = cache["tiers"][name]
        if tier.get("status") == "off":
            parts.append("off")
            continue
        text = _pct(tier.get("hit_rate"))
        if tier.get("status") != "ok":
            text += f" ({tier['status']})"
        parts.append(text)
    return " / ".join(parts)
