"""`supreme profile`: latency, throughput, CPU, memory and cache figures of a real run."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from supreme_cli.options import (
    ConfigOpt,
    DbOpt,
    JsonOpt,
    ProfileOpt,
    VerboseOpt,
    use_globals,
)

if TYPE_CHECKING:
    from supreme_cli.output import Output

HELP = """Profile the real engine pipeline: run it for --duration and report per-bar latency
(mean, p50, p95, p99, max), throughput, CPU % (process CPU time / wall), RSS, the engine's
heap (tracemalloc, in a separate shorter run because tracing slows the run) and the cache's
hit rates, plus order sizing and the indicators' deviation from the batch kernels.

--detailed adds a per-stage breakdown of the tick (ingest, indicators, signal, risk,
broker, store, cache, metrics; the real engine objects timed stage by stage) and the top 10
hotspots by own time (cProfile). Ctrl-C stops the run and still reports."""
EPILOG = ("Example: supreme profile --duration 30s --detailed "
          "· supreme profile --duration 5m --rate 100 --json "
          "· supreme profile --feed replay --data ETH_USDT-1m.json --duration 1m")


def profile_cmd(
    ctx: typer.Context,
    duration: Annotated[str, typer.Option(
        metavar="DURATION", help="How long the profiled run lasts: 300, 30s, 5m.")] = "300",
    detailed: Annotated[bool, typer.Option(
        "--detailed", help="Add the per-stage breakdown and the top hotspots.")] = False,
    feed: Annotated[str | None, typer.Option(help="sim (default) or replay.")] = None,
    data: Annotated[Path | None, typer.Option(
        "--data", help="File to replay with --feed replay.")] = None,
    rate: Annotated[float | None, typer.Option(
        min=0.001, metavar="N", help="Pace the feed at about N bars per second (default: as "
        "fast as it goes).")] = None,
    seed: Annotated[int | None, typer.Option(help="Simulator seed.")] = None,
    cache: Annotated[bool, typer.Option(
        "--cache/--no-cache", help="Run with the tiered cache (default on).")] = True,
    db: DbOpt = None,
    profile: ProfileOpt = None,
    config: ConfigOpt = None,
    verbose: VerboseOpt = False,
    json_out: JsonOpt = False,
) -> None:
    from engine.cache import cache_settings
    from engine.parsing import parse_duration
    from engine.validation.profile import run_profile
    from supreme_cli.options import resolve_sim_or_replay
    from supreme_cli.signals import stop_on_signal

    g, out = use_globals(ctx, profile, config, verbose, json_out)
    duration_s = parse_duration(duration, "--duration")
    resolved = resolve_sim_or_replay(g, out, "profile", feed, data, seed, db)
    feed_name = resolved["feed"]
    out.info(f"profiling {feed_name} for {duration_s:g} s"
             + (f" at ~{rate:g} bars/s" if rate else " at full speed")
             + (" with the stage breakdown" if detailed else ""))
    with stop_on_signal() as stop, out.progress("profile") as advance:
        doc = run_profile(
            duration_s=duration_s, feed=feed_name, data_file=resolved["data_file"],
            rate=rate, detailed=detailed, data_dir=resolved.data_dir,
            cache=cache_settings(resolved) if cache else None, seed=resolved["seed"],
            progress=advance, stop=stop, store_url=resolved.store_url)
    if out.json_mode:
        out.emit(doc)
    else:
        _render(out, doc)


def _f(value: Any, fmt: str = ".2f", unit: str = "") -> str:
    if value is None:
        return "–"
    return f"{value:{fmt}}{unit}"


def _render(out: Output, doc: dict[str, Any]) -> None:
    from rich.table import Table

    lat = doc["latency_us"]
    table = Table(title=f"profile · run {doc['run_id'][:12]} · {doc['feed']} · "
                        f"{doc['bars']} bars in {doc['wall_s']:.2f} s"
                        + (" · interrupted" if doc["interrupted"] else ""),
                  title_justify="left")
    table.add_column("figure")
    table.add_column("value", justify="right")
    rows = [
        ("latency mean / p50", f"{_f(lat.get('mean'))} / {_f(lat.get('p50'))} µs"),
        ("latency p95 / p99 / max",
         f"{_f(lat.get('p95'))} / {_f(lat.get('p99'))} / {_f(lat.get('max'))} µs"),
        ("throughput", _f(doc["throughput_per_s"], ",.0f", " bars/s")),
        ("CPU", _f(doc["cpu_percent"], ".1f", " %")),
        ("RSS / peak", f"{_f(doc['rss_mib'], '.1f')} / {_f(doc['rss_peak_mib'], '.1f')} MiB"),
        ("engine heap / peak (tracemalloc pass)",
         f"{_f(doc['heap_mib'])} / {_f(doc['heap_peak_mib'])} MiB"),
        ("cache hit rate", _f(doc["cache"].get("hit_rate"), ".1%")),
    ]
    for name, tier in doc["cache"].get("tiers", {}).items():
        if tier.get("status") != "off":
            rows.append((f"  {name} hit rate", _f(tier.get("hit_rate"), ".1%")))
    sizes = doc["order_sizes"]
    rows += [
        ("order sizes (count, min–max, cv)",
         f"{sizes['count']}, {_f(sizes['min'], '.4g')}–{_f(sizes['max'], '.4g')}, "
         f"{_f(sizes['cv'], '.3f')}"),
        ("order size ~ volatility (corr)", _f(sizes["corr_with_volatility"], "+.2f")),
        ("indicator max deviation", _f(doc["indicator_max_deviation"], ".2e")),
        ("errors", str(doc["errors"])),
    ]
    for name, value in rows:
        table.add_row(name, value)
    out.result(table)
    if "stages" in doc:
        st = doc["stages"]
        stages = Table(title=f"stages · {st['bars']} bars · replica tick "
                             f"{st['tick_mean_us']:.2f} µs", title_justify="left")
        for column in ("stage", "mean µs", "share"):
            stages.add_column(column, justify="left" if column == "stage" else "right")
        for name, s in sorted(st["stages"].items(), key=lambda kv: -kv[1]["share"]):
            stages.add_row(name, f"{s['mean_us']:.3f}", f"{s['share']:.1%}")
        out.result(stages)
    if "hotspots" in doc:
        hot = Table(title=f"hotspots · cProfile over {doc['hotspots']['bars']} bars",
                    title_justify="left")
        for column in ("function", "where", "calls", "tottime ms", "share"):
            hot.add_column(column, justify="right" if column in ("calls", "tottime ms",
                                                                 "share") else "left")
        for h in doc["hotspots"]["top"]:
            hot.add_row(h["function"][:48], h["where"], str(h["calls"]),
                        f"{h['tottime_ms']:.1f}", f"{h['share']:.1%}")
        out.result(hot)
