"""`supreme stress`: a long soak at a sustained rate, with leak and drift detection."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated, Any

import typer

from supreme_cli.exit_codes import ExitCode
from supreme_cli.options import (
    ConfigOpt,
    DbOpt,
    JsonOpt,
    ProfileOpt,
    VerboseOpt,
    resolve_for,
    use_globals,
)
from supreme_cli.signals import stop_on_signal

if TYPE_CHECKING:
    from supreme_cli.output import Output

HELP = """Soak the engine: real simulator runs at a sustained --rate (bars per second) for
--duration, in segments of --segment. Every --checkpoint-every seconds a window is measured
(latency p50/p95/p99, throughput, RSS, open file descriptors, connections, errors; the
tracemalloc heap with --heap, which slows the engine) and checkpointed in the store, so a
killed soak continues with --resume, up to its original duration.

The report: latency drift (slope of the windows' p95; last against first quarter, with a
one-sided Mann-Whitney p-value), RSS and heap slopes in MiB/h, fd and connection growth,
errors and throughput. It fails when p95 grew more than 50 % (p < 0.01), RSS more than
10 MiB/h (and 4 MiB in all), the heap more than 5 MiB/h (and 2 MiB), fds by more than 10,
connections by more than 5, on any error, or below 80 % of the rate.

It always ends on time by itself. Ctrl-C or SIGTERM stops the current run, writes the
checkpoint and a partial report (status interrupted); a second Ctrl-C exits 130 at once.
Exit 0 when the verdict is pass, 9 (check failed) when it is fail."""
EPILOG = ("Example: supreme stress --duration 8h --rate 20 · supreme stress --duration 10m "
          "--rate 200 --checkpoint-every 30s --json · supreme stress --resume")


def stress(
    ctx: typer.Context,
    duration: Annotated[str, typer.Option(
        metavar="DURATION", help="How long to soak: 28800, 30m, 8h, 1d.")] = "8h",
    rate: Annotated[float, typer.Option(
        min=0.0, help="Bars per second to sustain (0: as fast as the engine goes).")] = 20.0,
    resume: Annotated[bool, typer.Option(
        "--resume", help="Continue the newest unfinished soak in the store (its duration, "
        "rate and seed); start a new one when there is none.")] = False,
    checkpoint_every: Annotated[str, typer.Option(
        "--checkpoint-every", metavar="DURATION",
        help="Window length and checkpoint interval: 60, 30s, 5m.")] = "60s",
    segment: Annotated[str, typer.Option(
        metavar="DURATION", help="Length of each run the soak is made of.")] = "10m",
    heap: Annotated[bool, typer.Option(
        "--heap", help="Trace the Python heap with tracemalloc (slower; RSS only without).")]
    = False,
    seed: Annotated[int, typer.Option(help="Simulator seed of the first segment.")] = 0,
    db: DbOpt = None,
    profile: ProfileOpt = None,
    config: ConfigOpt = None,
    verbose: VerboseOpt = False,
    json_out: JsonOpt = False,
) -> None:
    from engine.cache import cache_settings
    from engine.parsing import parse_duration
    from engine.validation.stress import run_stress

    g, out = use_globals(ctx, profile, config, verbose, json_out)
    duration_s = parse_duration(duration, "--duration")
    every_s = parse_duration(checkpoint_every, "--checkpoint-every")
    segment_s = parse_duration(segment, "--segment")
    resolved = resolve_for(g, out, {"db": db})
    cache = cache_settings(resolved) if resolved["cache.enabled"] else None
    with stop_on_signal("stopping the soak: checkpoint and partial report") as stop, \
            _progress(out) as advance:
        report = run_stress(duration_s=duration_s, rate=rate,
                            data_dir=resolved.data_dir, store_url=resolved.store_url,
                            resume=resume, checkpoint_every_s=every_s, seed=seed,
                            progress=advance, stop=stop, segment_s=segment_s,
                            heap=heap, cache=cache)
    code = ExitCode.OK if report["verdict"] == "pass" else ExitCode.CHECK_FAILED
    if out.json_mode:
        out.emit({**report, "exit_code": int(code)})
    else:
        _render(out, report)
    if code != ExitCode.OK:
        raise typer.Exit(int(code))


@contextmanager
def _progress(out: Output) -> Iterator[Callable[[str, float, float], None]]:
    """A bar with the time remaining on stderr when it is a terminal; nothing otherwise."""
    if not out.err.is_terminal:
        yield lambda label, done, total: None
        return
    from rich.progress import (
        BarColumn,
        Progress,
        TaskProgressColumn,
        TextColumn,
        TimeRemainingColumn,
    )

    with Progress(TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(),
                  TimeRemainingColumn(), console=out.err, transient=True) as bar:
        task = bar.add_task("stress", total=None)

        def advance(label: str, done: float, total: float) -> None:
            bar.update(task, description=f"stress: {label}", completed=done, total=total)

        yield advance


def _fmt(value: Any, spec: str = ".1f", unit: str = "") -> str:
    return "–" if value is None else f"{value:{spec}}{unit}"


def _render(out: Output, r: dict[str, Any]) -> None:
    from rich.table import Table

    d = r["latency_drift"]
    table = Table(title=f"stress {r['stress_id']} · {r['status']} · "
                        f"{r['elapsed_s']:.0f} of {r['duration_s']:.0f} s · "
                        f"{r['segments']} segments", title_justify="left")
    table.add_column("measure")
    table.add_column("value", justify="right")
    rows = (
        ("throughput", f"{r['throughput_per_s']:.1f} bars/s (rate {r['rate']:g}/s)"),
        ("bars", str(r["bars"])),
        ("windows", str(len(r["windows"]))),
        ("p95 first → last", f"{_fmt(d['first_p95_us'])} → {_fmt(d['last_p95_us'])} µs"),
        ("p95 ratio (p-value)", f"{_fmt(d['last_vs_first_p95_ratio'], '.2f')} "
                                f"(p={_fmt(d['p_value'], '.2g')})"),
        ("p95 slope", _fmt(d["p95_slope_us_per_h"], ".1f", " µs/h")),
        ("RSS slope", _fmt(r["rss_slope_mib_per_h"], ".2f", " MiB/h")),
        ("heap slope", _fmt(r["heap_slope_mib_per_h"], ".2f", " MiB/h")
         if r["heap_traced"] else "not traced (--heap)"),
        ("fd growth", str(r["fd_growth"])),
        ("connections growth", str(r["connections_growth"])),
        ("errors", str(r["errors"])),
    )
    for name, value in rows:
        table.add_row(name, value)
    out.result(table)
    for note in r["notes"]:
        out.warn(note)
    if r["verdict"] == "pass":
        out.result("[green]pass[/]")
    else:
        out.result("[red]fail[/]: " + "; ".join(_escape(x) for x in r["reasons"]))


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)
