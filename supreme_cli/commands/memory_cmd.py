"""`supreme memory`: the engine's heap over a real run, growth per 1k ticks, leak verdict."""

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

HELP = """Trace the engine's heap (tracemalloc) over a real run: steady and peak heap, growth
per 1 000 ticks (least-squares slope after the warm-up), an RSS timeline and a leak verdict
(leak when the slope exceeds 1 KiB per 1k ticks, the fitted growth exceeds 256 KiB and
R² >= 0.6). Tracing slows the run; the figures are about memory, not speed.

--allocations adds the top 15 allocation sites by size (file:line) and the sites that grew
most. Ctrl-C stops the run and still reports."""
EPILOG = ("Example: supreme memory --duration 2m "
          "· supreme memory --allocations --duration 30s --json")


def memory_cmd(
    ctx: typer.Context,
    duration: Annotated[str, typer.Option(
        metavar="DURATION", help="How long the traced run lasts: 300, 30s, 5m.")] = "300",
    allocations: Annotated[bool, typer.Option(
        "--allocations", help="Add the top allocation sites and the sites that grew.")]
    = False,
    snapshots: Annotated[int, typer.Option(
        min=4, max=1000, help="Samples over the run.")] = 20,
    feed: Annotated[str | None, typer.Option(help="sim (default) or replay.")] = None,
    data: Annotated[Path | None, typer.Option(
        "--data", help="File to replay with --feed replay.")] = None,
    seed: Annotated[int | None, typer.Option(help="Simulator seed.")] = None,
    db: DbOpt = None,
    profile: ProfileOpt = None,
    config: ConfigOpt = None,
    verbose: VerboseOpt = False,
    json_out: JsonOpt = False,
) -> None:
    from engine.parsing import parse_duration
    from engine.validation.memory import run_memory
    from supreme_cli.options import resolve_sim_or_replay
    from supreme_cli.signals import stop_on_signal

    g, out = use_globals(ctx, profile, config, verbose, json_out)
    duration_s = parse_duration(duration, "--duration")
    resolved = resolve_sim_or_replay(g, out, "memory", feed, data, seed, db)
    feed_name = resolved["feed"]
    out.info(f"tracing the heap of a {feed_name} run for {duration_s:g} s "
             f"({snapshots} samples)")
    with stop_on_signal() as stop, out.progress("memory") as advance:
        doc = run_memory(duration_s=duration_s, allocations=allocations, feed=feed_name,
                         data_file=resolved["data_file"], data_dir=resolved.data_dir,
                         seed=resolved["seed"], snapshots=snapshots, progress=advance,
                         stop=stop, store_url=resolved.store_url)
    if out.json_mode:
        out.emit(doc)
    else:
        _render(out, doc)


def _render(out: Output, doc: dict[str, Any]) -> None:
    from rich.table import Table

    table = Table(title=f"memory · run {doc['run_id'][:12]} · {doc['ticks']} ticks in "
                        f"{doc['wall_s']:.2f} s"
                        + (" · interrupted" if doc["interrupted"] else ""),
                  title_justify="left")
    table.add_column("figure")
    table.add_column("value", justify="right")
    rss = doc["rss_timeline"]
    rss_values = [r for _, r in rss if r is not None]
    rows = [
        ("heap steady (median after warm-up)", f"{doc['heap_steady_mib']:.2f} MiB"),
        ("heap peak", f"{doc['heap_peak_mib']:.2f} MiB"),
        ("growth per 1k ticks", f"{doc['growth_kib_per_1k_ticks']:+.3f} KiB"),
        ("RSS now / peak", f"{doc['rss_mib'] or 0:.1f} / {doc['rss_peak_mib'] or 0:.1f} MiB"),
        ("RSS over the run",
         f"{min(rss_values):.1f} → {max(rss_values):.1f} MiB ({len(rss)} samples)"
         if rss_values else "–"),
    ]
    for name, value in rows:
        table.add_row(name, value)
    out.result(table)
    style = "red" if doc["leak"] else "green"
    out.result(f"[{style}]{_escape(doc['verdict'])}[/]")
    for key, title, size_key in (("top_allocations", "top allocations (last snapshot)",
                                  "size_kib"),
                                 ("top_growth", "growth since the warm-up", "size_diff_kib")):
        if key not in doc:
            continue
        t = Table(title=title, title_justify="left")
        t.add_column("where")
        t.add_column("KiB", justify="right")
        t.add_column("blocks", justify="right")
        for row in doc[key]:
            t.add_row(row["where"], f"{row[size_key]:+.1f}" if size_key == "size_diff_kib"
                      else f"{row[size_key]:.1f}",
                      str(row.get("count", row.get("count_diff"))))
        out.result(t)


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)
