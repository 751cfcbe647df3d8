"""`supreme degrade`: degradation over a run, and fault scenarios against a running engine."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from supreme_cli.exit_codes import ExitCode
from supreme_cli.options import ConfigOpt, JsonOpt, ProfileOpt, VerboseOpt, resolve_for, use_globals

if TYPE_CHECKING:
    from supreme_cli.output import Output

HELP = """Does the engine degrade, and does it survive faults?

Degradation over time: a sim run at full speed for --duration; tick latency, bars/s and RSS
sampled per window; the first and last thirds compared with the Mann-Whitney U test
(p-value, Cliff's delta, change of the medians). A metric is degraded when the change is
significant (p < 0.01) and larger than its threshold (latency +20 %, bars/s -20 %,
RSS +10 %).

Fault scenarios (--list): each runs a real engine in a thread with one tier or feed behind a
private redis-server, a TCP proxy or the packaged fake exchange, injects the fault for
--fault-seconds, lifts it, and reports what was injected, what the engine did, whether it
stayed up, how many records were lost and how long recovery took. The shared Redis and
PostgreSQL are never stopped, frozen or reconfigured: PostgreSQL is reached through a proxy
of ours, in a schema created and dropped for the drill. Scenarios whose service is missing
are skipped with the reason.

Exit 0 when every scenario passed (or was skipped) and nothing degraded, 9 (check failed)
otherwise."""
EPILOG = ("Example: supreme degrade "
          "· supreme degrade --scenarios redis-down,exchange-429 --fault-seconds 2 --json "
          "· supreme degrade --duration 0 --scenarios postgres-down "
          "--postgres-url postgresql://postgres@127.0.0.1:5432/test · supreme degrade --list")

_STYLES = {"pass": "green", "fail": "red", "skipped": "dim", "stable": "green",
           "degraded": "red", "improved": "green", "insufficient data": "yellow",
           "skipped-analysis": "dim", "error": "red"}


def degrade(
    ctx: typer.Context,
    scenarios: Annotated[list[str] | None, typer.Option(
        "--scenarios", "-s", metavar="NAMES",
        help="Scenarios to run, comma-separated or repeated; `all` (default) or `none`. "
        "See --list.")] = None,
    list_: Annotated[bool, typer.Option(
        "--list", help="List the scenarios and exit.")] = False,
    fault_seconds: Annotated[str, typer.Option(
        "--fault-seconds", metavar="DURATION",
        help="How long each fault is held: 3, 2s (0.5 s to 60 s).")] = "3s",
    duration: Annotated[str, typer.Option(
        "--duration", metavar="DURATION",
        help="Length of the degradation-over-time run: 9s, 2m; 0 skips it.")] = "9s",
    redis_url: Annotated[str | None, typer.Option(
        "--redis-url", metavar="URL",
        help="Redis to put a proxy in front of when redis-server is not installed "
        "(default: REDIS_URL). Never stopped or frozen.")] = None,
    postgres_url: Annotated[str | None, typer.Option(
        "--postgres-url", metavar="URL",
        help="PostgreSQL for the postgres-down drill (default: POSTGRES_URL); reached "
        "through a proxy, in a throw-away schema.")] = None,
    profile: ProfileOpt = None,
    config: ConfigOpt = None,
    verbose: VerboseOpt = False,
    json_out: JsonOpt = False,
) -> None:
    from engine.parsing import parse_duration
    from engine.validation.degrade import SCENARIOS, parse_scenarios, run_degrade

    g, out = use_globals(ctx, profile, config, verbose, json_out)
    if list_:
        if out.json_mode:
            out.emit({"scenarios": [{"name": n, "description": d}
                                    for n, d in SCENARIOS.items()]})
        else:
            for name, description in SCENARIOS.items():
                out.result(f"{name:<20} {description}")
        return
    fault_s = parse_duration(fault_seconds, "--fault-seconds")
    duration_s = 0.0 if duration.strip() in ("0", "0s") else parse_duration(duration,
                                                                             "--duration")
    names = parse_scenarios(scenarios)
    resolved = resolve_for(g, out)
    redis = redis_url or resolved.values.get("redis_url")
    postgres = postgres_url or resolved.values.get("postgres_url")
    out.info(f"degrade: {len(names)} scenarios, faults of {fault_s:g} s"
             + (f", degradation run of {duration_s:g} s" if duration_s else ""))

    def note(label: str, done: int, total: int) -> None:
        advance(label, done, total)
        if not out.err.is_terminal:  # off a terminal the bar draws nothing: plain lines
            out.err.print(f"degrade [{done}/{total}] {label}", markup=False,
                          highlight=False)

    with out.progress("degrade") as advance:
        doc = run_degrade(scenarios=names, fault_s=fault_s, duration_s=duration_s,
                          data_dir=resolved.data_dir, redis_url=redis, postgres_url=postgres,
                          progress=note)
    code = ExitCode.OK if doc["passed"] else ExitCode.CHECK_FAILED
    doc["exit_code"] = int(code)
    if out.json_mode:
        out.emit(doc)
    else:
        _render(out, doc)
    if code != ExitCode.OK:
        raise typer.Exit(int(code))


def _fmt(value: Any, unit: str = "", digits: int = 3) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}g}{unit}"
    return f"{value}{unit}"


def _render(out: Output, doc: dict[str, Any]) -> None:
    from rich.table import Table
    from rich.text import Text

    deg = doc["degradation"]
    if deg.get("metrics"):
        table = Table(title=f"degradation over {deg['duration_s']:g} s · {deg['windows']} "
                      f"windows of {deg['window_s']:.2g} s · {deg.get('bars')} bars · "
                      "first vs last third, Mann-Whitney U", title_justify="left")
        for column in ("metric", "first third", "last third", "change", "p-value",
                       "Cliff's δ", "verdict"):
            table.add_column(column, justify="left" if column in ("metric", "verdict")
                             else "right")
        for name, m in deg["metrics"].items():
            change = m.get("relative_change")
            table.add_row(name, _fmt(m.get("median_first"), digits=4),
                          _fmt(m.get("median_last"), digits=4),
                          "–" if change is None else f"{change * 100:+.1f} %",
                          _fmt(m.get("p_value"), digits=2),
                          _fmt(m.get("effect_size"), digits=2),
                          Text(m["verdict"], style=_STYLES.get(m["verdict"], "")))
        out.result(table)
    elif deg.get("verdict") == "error":
        out.result(f"[red]degradation run failed:[/] {deg.get('error')}")
    if doc["scenarios"]:
        table = Table(title=f"fault scenarios · faults held {doc['fault_s']:g} s",
                      title_justify="left")
        for column in ("scenario", "status", "up", "lost", "recovery", "injected",
                       "engine did / reason"):
            table.add_column(column, justify="right" if column in ("lost", "recovery")
                             else "left", overflow="fold")
        for s in doc["scenarios"]:
            detail = s["engine_did"]
            if s["reason"]:
                detail = f"{detail} — {s['reason']}" if detail else s["reason"]
            table.add_row(
                s["name"], Text(s["status"], style=_STYLES.get(s["status"], "")),
                "–" if s["status"] == "skipped" else ("yes" if s["stayed_up"] else "no"),
                _fmt(s["lost_records"]),
                _fmt(s["recovery_s"], " s", 2) if s["recovered"] else (
                    "–" if s["status"] == "skipped" else "no"),
                Text(s["injected"]), Text(out.scrub(detail)))
        out.result(table)
    counts = {k: sum(1 for s in doc["scenarios"] if s["status"] == k)
              for k in ("pass", "fail", "skipped")}
    verdict = "[green]passed[/]" if doc["passed"] else "[red]degraded[/]"
    out.result(f"{verdict}: {counts['pass']} passed, {counts['fail']} failed, "
               f"{counts['skipped']} skipped; over time: {deg.get('verdict')}; "
               f"{doc['elapsed_s']:.1f} s")
