"""`supreme report --daily`: the day's report from the store, for people and for cron."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path
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

if TYPE_CHECKING:
    from supreme_cli.output import Output

HELP = """The daily report, from the store alone: runs, trades and PnL, the equity curve and
drawdown, win rate and the other statistics, latency percentiles per run, cache hit rates,
the day's validation results, and the alert thresholds breached.

Day D (UTC, default yesterday) holds every run whose wall-clock start falls on D, with all
of its trades. Files go to --output as supreme-daily-D.md, .html (charts as inline SVG,
opens offline) and .json, written atomically; the same store gives byte-identical files.
Thresholds come from the profile's [alerts] table, else the built-in defaults. Exit 0 when
no threshold was breached, 9 when one was (the files are still written), 10 when the day
holds no run and no validation result (nothing is written)."""
EPILOG = ("Example: supreme report --daily --quiet (in cron: 0 0 * * * supreme report "
          "--daily --quiet) · supreme report --daily --date 2026-01-31 --output ./reports "
          "· supreme report --daily --since 7d --format html --profile scalp-1m")


def report(
    ctx: typer.Context,
    daily: Annotated[bool, typer.Option(
        "--daily", help="The daily report (required: the only kind there is).")] = False,
    day: Annotated[str | None, typer.Option(
        "--date", metavar="YYYY-MM-DD", help="The day (UTC); default: yesterday.")] = None,
    since: Annotated[str | None, typer.Option(
        "--since", metavar="Nd|YYYY-MM-DD",
        help="Start of a multi-day report ending with --date: 3d (three days, --date "
             "included) or a date.")] = None,
    output: Annotated[Path | None, typer.Option(
        "--output", "-o", metavar="DIR",
        help="Directory for the files (created if missing; default: <data dir>/reports).")]
    = None,
    formats: Annotated[str, typer.Option(
        "--format", metavar="LIST", help="Files to write, comma-separated: md, html, json.")]
    = "md,html,json",
    quiet: Annotated[bool, typer.Option(
        "--quiet", "-q", help="Print nothing on success (breaches and errors still go to "
                              "stderr).")] = False,
    db: DbOpt = None,
    profile: ProfileOpt = None,
    config: ConfigOpt = None,
    verbose: VerboseOpt = False,
    json_out: JsonOpt = False,
) -> None:
    from engine.config import profile_section
    from engine.errors import ConfigError, DataError
    from engine.report.daily import build_daily, parse_date, parse_since
    from engine.report.render import parse_formats, write_reports
    from engine.store import open_store

    g, out = use_globals(ctx, profile, config, verbose, json_out)
    if not daily:
        raise ConfigError("say which report: --daily (the only one there is)")
    wanted = parse_formats(formats)
    the_day = (parse_date(day, "--date") if day is not None
               else datetime.now(UTC).date() - timedelta(days=1))
    first: date | None = parse_since(since, the_day) if since is not None else None
    alerts = profile_section(g.profile, "alerts") if g.profile else {}
    resolved = resolve_for(g, out, {"db": db})
    directory = output if output is not None else resolved.data_dir / "reports"
    store = open_store(resolved.store_url, resolved.data_dir)
    try:
        try:
            doc = build_daily(store, the_day, first, alerts)
        except DataError as exc:
            _no_data(out, str(exc))
            return
    finally:
        store.close()
    paths = write_reports(doc, directory, wanted)
    code = ExitCode.OK if doc["passed"] else ExitCode.CHECK_FAILED
    if out.json_mode:
        out.emit({**doc, "files": [str(p) for p in paths], "exit_code": int(code)})
    elif not quiet:
        _render(out, doc, paths)
    if code != ExitCode.OK:
        for c in doc["breaches"]:
            out.warn(f"{c['rule']}: measured {c['measured']:.6g}, threshold "
                     f"{c['threshold']:g}; runs {', '.join(i[:12] for i in c['run_ids'])}")
        raise typer.Exit(int(code))


def _no_data(out: Output, message: str) -> None:
    text = f"no data: {message}; no report written"
    if out.json_mode:
        out.emit({"error": {"message": out.scrub(text), "exit_code": int(ExitCode.NO_DATA),
                            "type": "NoData"}})
    else:
        out.error(text)
    raise typer.Exit(int(ExitCode.NO_DATA))


def _table(title: str, headers: Any, rows: Any, status_col: int | None = None) -> Any:
    from rich.table import Table
    from rich.text import Text

    table = Table(title=title, title_justify="left")
    for h in headers:
        table.add_column(h)
    styles = {"ok": "green", "breach": "red", "not judged": "dim"}
    for row in rows:
        table.add_row(*(Text(c, style=styles.get(c, "") if i == status_col else "")
                        for i, c in enumerate(row)))
    return table


def _render(out: Output, doc: dict[str, Any], paths: list[Path]) -> None:
    from engine.report import render as r

    out.result(_table(r.title(doc), ("figure", "value"), r.summary_rows(doc)))
    if doc["runs"]:
        out.result(_table("runs", r.RUN_HEADERS, r.run_rows(doc)))
    if doc["cache"]:
        headers, rows = r.cache_rows(doc)
        out.result(_table("cache hit rates", headers, rows))
    if doc["validations"]:
        out.result(_table("validations", r.VALIDATION_HEADERS, r.validation_rows(doc)))
    out.result(_table("alerts", r.CHECK_HEADERS, r.check_rows(doc), status_col=3))
    verdict = ("[green]passed[/]: no threshold breached" if doc["passed"] else
               "[red]breached[/]: " + ", ".join(c["rule"] for c in doc["breaches"]))
    out.result(verdict)
    for p in paths:
        out.result(f"report: {p}")
