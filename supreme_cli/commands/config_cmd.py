"""`supreme config`: show the resolved configuration and where each value came from."""

from __future__ import annotations

import typer

from supreme_cli.options import ConfigOpt, JsonOpt, ProfileOpt, VerboseOpt, resolve_for, use_globals

app = typer.Typer(help="Inspect the configuration.", no_args_is_help=True)


@app.command("show", epilog="Example: SYMBOL_FOCUS=BTC-USDT supreme config show --json")
def show(
    ctx: typer.Context,
    profile: ProfileOpt = None,
    config: ConfigOpt = None,
    verbose: VerboseOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """Print every configuration key, its value (secrets redacted) and its source.

    Precedence: defaults < profile or --config file < environment < flags.
    """
    from rich.table import Table

    from engine.config import KEYS

    g, out = use_globals(ctx, profile, config, verbose, json_out)
    resolved = resolve_for(g, out)
    values = resolved.redacted()
    if out.json_mode:
        out.emit({
            "profile": str(resolved.profile_path) if resolved.profile_path else None,
            "data_dir": str(resolved.data_dir),
            "keys": {k: {"value": values[k], "source": resolved.sources[k],
                         "env": KEYS[k].env_var, "secret": KEYS[k].secret} for k in KEYS},
        })
        return
    table = Table(title="supreme configuration", title_justify="left")
    for column in ("key", "value", "source", "environment variable"):
        table.add_column(column)
    for key in KEYS:
        value = values[key]
        table.add_row(key, "" if value is None else str(value), resolved.sources[key],
                      KEYS[key].env_var)
    out.result(table)
    out.result(f"data dir: {resolved.data_dir}")
