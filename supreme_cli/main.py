"""The root `supreme` app: global options, command registration and error mapping.

Errors are turned into exit codes here and only here (`SupremeGroup.invoke`), so commands
raise and never decide how the process ends.
"""

from __future__ import annotations

import sys
from typing import Any

import typer
from typer.core import TyperGroup

try:  # typer >= 0.20 vendors click as typer._click
    from typer._click import Context
    from typer._click.exceptions import UsageError
except ImportError:  # pragma: no cover - older typer depends on click itself
    from click import Context  # type: ignore[no-redef,unused-ignore]
    from click.exceptions import UsageError  # type: ignore[no-redef,unused-ignore]

from engine import __version__
from engine.errors import SupremeError
from supreme_cli.commands import register
from supreme_cli.exit_codes import ExitCode, code_for
from supreme_cli.options import ConfigOpt, Globals, JsonOpt, ProfileOpt, VerboseOpt
from supreme_cli.output import current


def _wants_json(ctx: Context) -> bool:
    args = [*getattr(ctx, "protected_args", []), *ctx.args]
    return "--json" in args or (isinstance(ctx.obj, Globals) and ctx.obj.json)


class SupremeGroup(TyperGroup):
    def invoke(self, ctx: Context) -> Any:
        json_requested = _wants_json(ctx)
        try:
            return super().invoke(ctx)
        except SupremeError as exc:
            _fail(str(exc), code_for(exc), json_requested)
        except UsageError as exc:
            if not json_requested:
                raise
            _fail(exc.format_message(), ExitCode.USAGE, True)
        except KeyboardInterrupt:
            _fail("interrupted", ExitCode.INTERRUPTED, json_requested)


def _fail(message: str, code: ExitCode, json_requested: bool) -> None:
    out = current()
    out.error(message)
    if (json_requested or out.json_mode) and not out.emitted:
        out.emit({"error": {"message": out.scrub(message), "exit_code": int(code),
                            "kind": code.name.lower()}})
    raise typer.Exit(int(code))


app = typer.Typer(
    cls=SupremeGroup,
    name="supreme",
    help="Validation and operations tools around a fast ETH-USDT scalping engine.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"supreme {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    profile: ProfileOpt = None,
    config: ConfigOpt = None,
    verbose: VerboseOpt = False,
    json_out: JsonOpt = False,
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                 help="Print the version and exit."),
) -> None:
    """Validation and operations tools around a fast ETH-USDT scalping engine."""
    ctx.obj = Globals(profile=profile, config=config, verbose=verbose, json=json_out)


register(app)


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(int(ExitCode.INTERRUPTED))


if __name__ == "__main__":
    main()
