"""`supreme stats` and `supreme stats ab`: measured statistics, never quoted ones."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

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

EPILOG = ("Example: supreme stats --run 3f2a9c1d --baseline random --json\n\n"
          "Example: supreme stats --returns my-returns.csv --trials 20")

app = typer.Typer(help="Performance statistics of a run, a data file or a return series, "
                       "and whether a difference is more than luck.",
                  invoke_without_command=True, epilog=EPILOG)

BaselineOpt = Annotated[str | None, typer.Option(
    "--baseline", help="buy-and-hold, random (matched exposure and trade count) or run:ID.")]
ResamplesOpt = Annotated[int, typer.Option(
    min=99, max=1_000_000, help="Bootstrap and permutation resamples.")]
AlphaOpt = Annotated[float, typer.Option(min=0.0001, max=0.5, help="Significance level.")]
SeedOpt = Annotated[int, typer.Option(min=0, help="Seed of the resampling and baselines.")]


@app.callback(invoke_without_command=True)
def stats(
    ctx: typer.Context,
    run: Annotated[str | None, typer.Option("--run", help="Run id (or a prefix); "
                                             "default: the newest run.")] = None,
    data: Annotated[Path | None, typer.Option(
        "--data", help="Replay this candle file with the configuration, then analyse it.")]
    = None,
    returns: Annotated[Path | None, typer.Option(
        "--returns", help="CSV with the header timestamp,return (ISO-8601 UTC, simple "
                          "returns per period).")] = None,
    baseline: BaselineOpt = None,
    trials: Annotated[int, typer.Option(
        min=1, help="Strategy variants tried (for the Deflated Sharpe Ratio).")] = 1,
    walk_forward: Annotated[int, typer.Option(
        "--walk-forward", min=0, max=100,
        help="Walk-forward windows (in-sample, then out-of-sample); 0 = none.")] = 0,
    report: Annotated[bool, typer.Option(
        "--report", help="Also write a Markdown report under the data dir.")] = False,
    resamples: ResamplesOpt = 10_000,
    alpha: AlphaOpt = 0.05,
    seed: SeedOpt = 0,
    db: DbOpt = None,
    profile: ProfileOpt = None,
    config: ConfigOpt = None,
    verbose: VerboseOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """Metrics (win rate with its Wilson interval, Sharpe, Sortino, Calmar, drawdown, SQN,
    PSR, DSR, ...), an optional baseline comparison with four significance tests and
    Holm's correction, and walk-forward windows. Results are stored with their run."""
    if ctx.invoked_subcommand is not None:
        return
    from engine.errors import ConfigError
    from engine.stats.analyze import analyze
    from engine.stats.series import from_returns_csv, from_run
    from engine.store import open_store

    g, out = use_globals(ctx, profile, config, verbose, json_out)
    if sum(x is not None for x in (run, data, returns)) > 1:
        raise ConfigError("give one of --run, --data or --returns")
    flags: dict[str, Any] = {"db": db}
    if data is not None:
        flags.update({"feed": "replay", "data_file": str(data)})
    resolved = resolve_for(g, out, flags)
    store = open_store(resolved.store_url, resolved.data_dir)
    try:
        if returns is not None:
            series = from_returns_csv(returns)
        else:
            run_id = _run_data(resolved, out) if data is not None else _find_run(store, run)
            series = from_run(store, run_id)
        doc = analyze(series, store=store, baseline=baseline, n_trials=trials,
                      walk_forward=walk_forward, resamples=resamples, alpha=alpha, seed=seed)
        if series.run_id is not None:
            store.save_stats(series.run_id, "metrics", doc)
        if report:
            from engine.stats.report import write_report

            doc["report_path"] = str(write_report(doc, resolved.data_dir / "reports"))
    finally:
        store.close()
    if out.json_mode:
        out.emit(doc)
        return
    from supreme_cli.render_stats import stats_tables

    for table in stats_tables(doc):
        out.result(table)
    if doc.get("verdict"):
        out.result(doc["verdict"])
    if doc.get("report_path"):
        out.result(f"report: {doc['report_path']}")


def _find_run(store: Any, wanted: str | None) -> str:
    from engine.errors import DataError

    runs = store.list_runs(limit=500)
    finished = [r for r in runs if r.status in ("finished", "interrupted")]
    if wanted is None:
        if not finished:
            raise DataError(f"no finished run in {store.url_redacted}: run `supreme run` first "
                            "or give --returns")
        return str(finished[0].id)
    matches = [r.id for r in runs if r.id.startswith(wanted)]
    if len(matches) != 1:
        raise DataError(f"run {wanted!r}: {'no match' if not matches else 'ambiguous prefix'} "
                        f"in the newest {len(runs)} runs of {store.url_redacted}")
    return str(matches[0])


def _run_data(resolved: Any, out: Output) -> str:
    from engine.pipeline import Run, spec_from_resolved

    out.info(f"replaying {resolved['data_file']} to analyse it")
    engine_run = Run(spec_from_resolved(resolved))
    engine_run.execute()
    return engine_run.run_id


@app.command("ab", epilog="Example: supreme stats ab --candidate scalp-1m --baseline "
                          "conservative --data ../shared/data/ETH_USDT-1m.json")
def ab(
    ctx: typer.Context,
    candidate: Annotated[str, typer.Option("--candidate", help="Profile under test.")],
    baseline_profile: Annotated[str, typer.Option("--baseline", help="Profile to beat.")],
    data: Annotated[Path | None, typer.Option(
        "--data", help="Replay this candle file for both (default: the simulator, same "
                       "seed for both).")] = None,
    feed: Annotated[str | None, typer.Option(
        help="sim, replay or exchange (side by side on live candles for --duration).")]
    = None,
    duration: Annotated[str | None, typer.Option(
        help="Wall-clock length of a side-by-side live comparison: 86400, 24h.")] = None,
    bars: Annotated[int | None, typer.Option(min=10, help="Bars for sim or replay.")] = None,
    sim_model: Annotated[str | None, typer.Option(
        "--sim-model", help="calibrated or random_walk (zero edge).")] = None,
    endpoint: Annotated[str | None, typer.Option(
        "--endpoint", metavar="URL", help="Exchange base URL for --feed exchange.")] = None,
    resamples: ResamplesOpt = 10_000,
    alpha: AlphaOpt = 0.05,
    seed: SeedOpt = 0,
    db: DbOpt = None,
    config: ConfigOpt = None,
    verbose: VerboseOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """Run two profiles on the same data and say whether the candidate's edge is more
    than luck: both runs are stored; the verdict comes from one pre-declared test."""
    from engine.stats.ab import run_ab

    g, out = use_globals(ctx, None, config, verbose, json_out)
    flags: dict[str, Any] = {"db": db, "duration": duration, "bars": bars,
                             "sim_model": sim_model, "speed": "max"}
    if data is not None:
        flags.update({"feed": "replay", "data_file": str(data)})
    elif feed is not None:
        flags["feed"] = feed
    if flags.get("feed", "sim") == "sim" and bars is None and duration is None:
        flags["bars"] = 20_000
    resolve_for(g, out, {k: v for k, v in flags.items() if v is not None})
    doc = run_ab(candidate, baseline_profile,
                 flags={k: v for k, v in flags.items() if v is not None},
                 config_path=g.config, endpoint=endpoint, resamples=resamples, alpha=alpha,
                 seed=seed)
    if out.json_mode:
        out.emit(doc)
        return
    from supreme_cli.render_stats import ab_tables

    for table in ab_tables(doc):
        out.result(table)
    out.result(doc["verdict"])
