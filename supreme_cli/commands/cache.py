"""`supreme cache`: stats, reset and bench of the tiered cache."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

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
from supreme_cli.output import Output

if TYPE_CHECKING:
    from engine.cache import CacheSettings
    from engine.store import Store

app = typer.Typer(help="Inspect, reset and benchmark the tiered cache.", no_args_is_help=True)

EngineOpt = Annotated[str | None, typer.Option(
    "--engine", metavar="URL",
    help="A running `supreme run --metrics-port` to include (its in-process L1), e.g. "
         "http://127.0.0.1:9108.")]


def _open(ctx: typer.Context, db: str | None, profile: str | None, config: Path | None,
          verbose: bool, json_out: bool) -> tuple[CacheSettings, Store, Output]:
    from engine.cache import cache_settings
    from engine.store import open_store

    g, out = use_globals(ctx, profile, config, verbose, json_out)
    resolved = resolve_for(g, out, {"db": db})
    return cache_settings(resolved), open_store(resolved.store_url, resolved.data_dir), out


@app.command("stats", epilog="Example: supreme cache stats --json")
def stats(ctx: typer.Context, top: Annotated[int, typer.Option(
              min=0, max=1000, help="How many learned associations to list.")] = 10,
          engine: EngineOpt = None, db: DbOpt = None, profile: ProfileOpt = None,
          config: ConfigOpt = None,
          verbose: VerboseOpt = False, json_out: JsonOpt = False) -> None:
    """Per-tier state, sizes, Redis memory policy, learned associations and the last run's
    per-tier hit rates. Reads only: never changes a server setting. Exits 7 when a
    configured tier (Redis, the store) does not answer."""
    from engine.cache.admin import cache_status

    settings, store, out = _open(ctx, db, profile, config, verbose, json_out)
    try:
        doc = cache_status(settings, store, top=top)
    finally:
        store.close()
    if engine:
        from engine.observability.client import engine_cache_stats

        live = engine_cache_stats(engine)
        doc["engine"] = f"running engine at {engine}: run {live.get('run_id')}"
        doc["running"] = live
        doc["tiers"]["l1"] = {**live["tiers"]["l1"], "status": "ok"}
    warning = (doc["tiers"]["l2"].get("info") or {}).get("warning")
    if warning:
        out.warn(f"L2: {warning}")
    down = [n.upper() for n in ("l2", "l3") if doc["tiers"][n].get("status") == "down"]
    doc["degraded"] = bool(down)
    if out.json_mode:
        out.emit(doc)
    else:
        from supreme_cli.render_cache import status_tables

        for table in status_tables(doc):
            out.result(table)
    if down:
        out.warn(f"{' and '.join(down)} down: the cache is running degraded")
        raise typer.Exit(int(ExitCode.DEGRADED))


@app.command("reset", epilog="Example: supreme cache reset --learning --yes")
def reset(ctx: typer.Context,
          learning: Annotated[bool, typer.Option(
              "--learning", help="Forget the neuromorphic layer's learned associations.")]
          = False,
          l1: Annotated[bool, typer.Option("--l1", help="Empty the in-process tier.")] = False,
          l2: Annotated[bool, typer.Option(
              "--l2", help="Delete this project's supreme:<env>: keys in Redis.")] = False,
          l3: Annotated[bool, typer.Option(
              "--l3", help="Also delete the cache entries kept in the store (never part "
                           "of a reset without tier flags).")] = False,
          yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask.")] = False,
          engine: EngineOpt = None, db: DbOpt = None, profile: ProfileOpt = None,
          config: ConfigOpt = None,
          verbose: VerboseOpt = False, json_out: JsonOpt = False) -> None:
    """Reset the cache. With no tier flag: learning, L1 and L2. Only keys under this
    project's namespace are deleted (SCAN + UNLINK), never FLUSHALL or FLUSHDB."""
    from engine.cache.admin import reset_cache
    from engine.cache.base import namespace
    from engine.errors import ConfigError

    if not (learning or l1 or l2 or l3):
        learning = l1 = l2 = True
    settings, store, out = _open(ctx, db, profile, config, verbose, json_out)
    try:
        what = ", ".join(n for n, on in (("learning", learning), ("L1", l1), ("L2", l2),
                                         ("L3 entries", l3)) if on)
        if not yes:
            if out.json_mode or not out.err.is_terminal:
                raise ConfigError("cache reset changes shared state: add --yes to confirm")
            if not typer.confirm(f"Reset {what} of {namespace(settings.env)}?", err=True):
                raise typer.Exit(1)
        doc = reset_cache(settings, store, learning=learning, l1=l1, l2=l2, l3=l3,
                          engine_reachable=engine is not None)
        if engine:
            from engine.observability.client import engine_cache_reset

            token = resolve_for(use_globals(ctx, profile, config, verbose, json_out)[0],
                                out, {})["api_token"]
            doc["engine"] = engine_cache_reset(engine, token, learning=learning, l1=l1,
                                               l2=l2)
    finally:
        store.close()
    for note in doc["notes"]:
        out.warn(note)
    if out.json_mode:
        out.emit(doc)
    else:
        done = ", ".join(f"{k.replace('_', ' ')}: {v}" for k, v in doc["reset"].items())
        out.result(f"reset {what} of {doc['namespace']} ({done or 'nothing held'})")


@app.command("bench", epilog="Example: supreme cache bench --trace cooccur --json")
def bench(ctx: typer.Context,
          trace: Annotated[str, typer.Option(
              help="engine (a real replay of ../shared/data), cooccur, scan, or a file with "
                   "one key per line.")] = "cooccur",
          capacity: Annotated[int | None, typer.Option(
              min=1, help="Entries each policy may hold (default: 10% of distinct keys; "
                          "the engine's L1 size for --trace engine).")]
          = None,
          seed: Annotated[int, typer.Option(min=0, help="Trace seed.")] = 0,
          data: Annotated[Path | None, typer.Option(
              "--data", help="Candle file replayed for --trace engine (default: the ETH 1m "
                             "file in ../shared/data or SUPREME_SHARED_DATA).")] = None,
          profile: ProfileOpt = None, config: ConfigOpt = None, verbose: VerboseOpt = False,
          json_out: JsonOpt = False) -> None:
    """Replay a key-access trace through LRU, LFU and the neuromorphic cache at the same
    capacity; report hit rates, prefetch precision and recall, wasted prefetches and cost.
    Every figure is measured in this run."""
    from engine.cache.bench import run_bench

    _, out = use_globals(ctx, profile, config, verbose, json_out)
    keys = _trace_keys(trace, seed, data, out)
    if trace == "engine" and capacity is None:
        # the engine runs with its configured L1 size; 10% of a handful of hot keys would
        # measure a cache the engine never has
        from engine.cache import CacheSettings

        capacity = CacheSettings().l1_capacity
    with out.progress("replaying trace") as advance:
        doc = run_bench(keys, trace_name=trace if trace in ("engine", "cooccur", "scan")
                        else str(trace), capacity=capacity, seed=seed,
                        progress=lambda policy, done, total: advance(policy, done, total))
    for goal in doc.get("goals", []):
        if not goal["met"]:
            out.warn(f"goal missed: {goal['goal']} (measured {goal['measured']})")
    if out.json_mode:
        out.emit(doc)
        return
    from supreme_cli.render_cache import bench_table

    out.result(bench_table(doc))


def _trace_keys(trace: str, seed: int, data: Path | None, out: Output) -> list[str]:
    from engine.cache import traces

    if trace == "cooccur":
        return list(traces.cooccur(seed))
    if trace == "scan":
        return list(traces.scan(seed))
    if trace == "engine":
        from engine.cache.engine_trace import record_engine_trace

        path = data or _default_data()
        out.info(f"recording the engine trace from a replay of {path}")
        return record_engine_trace(path)
    return list(traces.load_trace_file(Path(trace)))


def _default_data() -> Path:
    import os

    from engine.errors import DataError

    base = Path(os.environ.get("SUPREME_SHARED_DATA") or Path.cwd().parent / "shared" / "data")
    path = base / "ETH_USDT-1m.json"
    if not path.is_file():
        raise DataError(f"no candle file at {path}: pass --data FILE or set "
                        "SUPREME_SHARED_DATA")
    return path

