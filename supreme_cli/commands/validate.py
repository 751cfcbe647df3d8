"""`supreme validate`: the guide's checklist, measured, with pass/fail and an exit code."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from supreme_cli.exit_codes import ExitCode
from supreme_cli.options import ConfigOpt, DbOpt, JsonOpt, VerboseOpt, resolve_for, use_globals
from supreme_cli.signals import stop_on_signal

HELP = """Run the validation steps a profile names (profile, memory, stress, degrade, a
significance comparison, connectivity) and print the guide's checklist: each item measured,
its threshold, and pass, fail, warn or skipped. Exits 9 exactly when a required item fails.
Results are stored, so `report --daily` can show the day's validations."""
EPILOG = ("Example: supreme validate --profile quick · supreme validate --profile quick "
          "--duration 60 --json --junit validate.xml · supreme validate --profile extended")


def validate(
    ctx: typer.Context,
    profile: Annotated[str | None, typer.Option(
        "--profile", help="quick (5 min, the default), realtime (60-120 min) or extended "
                          "(6-8 h).")] = None,
    duration: Annotated[str | None, typer.Option(
        help="Total time; scales every step (e.g. 60, 10m). Default: the profile's.")] = None,
    junit: Annotated[Path | None, typer.Option(
        "--junit", help="Also write the checklist as JUnit XML.")] = None,
    endpoint: Annotated[str | None, typer.Option(
        "--endpoint", metavar="URL", help="Exchange base URL for the connectivity item.")]
    = None,
    db: DbOpt = None,
    config: ConfigOpt = None,
    verbose: VerboseOpt = False,
    json_out: JsonOpt = False,
) -> None:
    from engine.config import profile_section
    from engine.parsing import parse_duration
    from engine.store import open_store
    from engine.validation.checklist import plan_from_profile, run_validation

    g, out = use_globals(ctx, profile, config, verbose, json_out)
    g.profile = profile = g.profile or "quick"
    resolved = resolve_for(g, out, {"db": db})
    total = parse_duration(duration, "--duration") if duration else None
    plan = plan_from_profile(profile, profile_section(profile, "validation"), total)
    plan.endpoint = endpoint
    plan.redis_url = resolved.values.get("redis_url")
    plan.postgres_url = resolved.values.get("postgres_url")
    work_dir = resolved.data_dir / "validate"
    with stop_on_signal("stopping after this step and writing the checklist") as stop, \
            out.progress(f"validate {profile}") as advance:
        doc = run_validation(plan, data_dir=work_dir, stop=stop,
                             progress=lambda step, done, total_: advance(
                                 step, int(done), int(total_)))
    store = open_store(resolved.store_url, resolved.data_dir)
    try:
        import uuid

        doc["validation_id"] = f"validate-{uuid.uuid4().hex[:12]}"
        store.save_stats(doc["validation_id"], f"validate:{profile}", doc)
    finally:
        store.close()
    if junit is not None:
        from engine.validation.junit import write_junit

        write_junit(doc, junit)
    if out.json_mode:
        out.emit(doc)
    else:
        out.result(_table(doc))
    if not doc["passed"]:
        out.warn("required items failed: " + ", ".join(doc["failed"]))
        raise typer.Exit(int(ExitCode.CHECK_FAILED))


def _table(doc: dict[str, Any]) -> Any:
    from rich.table import Table

    from supreme_cli.render_stats import fmt

    table = Table(title=f"supreme validate · {doc['profile']} · measured in this run",
                  title_justify="left")
    for col in ("item", "value", "threshold", "required", "status", "how it was measured"):
        table.add_column(col)
    colours = {"pass": "green", "fail": "red", "warn": "yellow", "skipped": "dim"}
    for item in doc["items"]:
        value = item["value"]
        shown = "–" if value is None else f"{fmt(value, '.4g')} {item['unit']}"
        table.add_row(item["name"], shown, fmt(item["threshold"], ".4g"),
                      "yes" if item["required"] else "no",
                      f"[{colours[item['status']]}]{item['status']}[/]", item["reason"])
    return table
