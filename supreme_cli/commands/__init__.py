"""Every command module registers here, and only here, once it works."""

from __future__ import annotations

import typer

from supreme_cli.commands import (
    cache,
    config_cmd,
    connectivity,
    data,
    db,
    degrade,
    memory_cmd,
    profile_cmd,
    report,
    run,
    stats,
    stress,
    validate,
)


def register(app: typer.Typer) -> None:
    app.command("run", help=run.HELP, epilog=run.EPILOG)(run.run)
    app.add_typer(config_cmd.app, name="config")
    app.add_typer(db.app, name="db")
    app.add_typer(data.app, name="data")
    app.add_typer(cache.app, name="cache")
    app.add_typer(stats.app, name="stats")
    app.command("connectivity", help=connectivity.HELP,
                epilog=connectivity.EPILOG)(connectivity.connectivity)
    app.command("validate", help=validate.HELP, epilog=validate.EPILOG)(validate.validate)
    app.command("profile", help=profile_cmd.HELP,
                epilog=profile_cmd.EPILOG)(profile_cmd.profile_cmd)
    app.command("memory", help=memory_cmd.HELP, epilog=memory_cmd.EPILOG)(memory_cmd.memory_cmd)
    app.command("stress", help=stress.HELP, epilog=stress.EPILOG)(stress.stress)
    app.command("degrade", help=degrade.HELP, epilog=degrade.EPILOG)(degrade.degrade)
    app.command("report", help=report.HELP, epilog=report.EPILOG)(report.report)
