"""Options shared by every command, defined once.

The global options work before or after the command name (`supreme --json run` and
`supreme run --json`); `use_globals` merges the two places.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from supreme_cli.output import Output, configure

if TYPE_CHECKING:
    from engine.config import Resolved

ProfileOpt = Annotated[
    str | None, typer.Option("--profile", help="Profile name from profiles/ (e.g. scalp-1m).")
]
ConfigOpt = Annotated[
    Path | None, typer.Option("--config", help="Path to a TOML configuration file.")
]
VerboseOpt = Annotated[bool, typer.Option("--verbose", "-v", help="More detail on stderr.")]
JsonOpt = Annotated[
    bool, typer.Option("--json", help="Print exactly one JSON document on stdout.")
]
DbOpt = Annotated[
    str | None,
    typer.Option("--db", help="Store: SQLite file path or postgresql:// URL "
                 "(default: POSTGRES_URL, else SQLite under the data dir)."),
]


@dataclass
class Globals:
    profile: str | None = None
    config: Path | None = None
    verbose: bool = False
    json: bool = False


def use_globals(ctx: typer.Context, profile: str | None, config: Path | None, verbose: bool,
                json_out: bool) -> tuple[Globals, Output]:
    root = ctx.find_root().obj
    base = root if isinstance(root, Globals) else Globals()
    merged = Globals(
        profile=profile or base.profile,
        config=config or base.config,
        verbose=verbose or base.verbose,
        json=json_out or base.json,
    )
    return merged, configure(merged.json, merged.verbose)


def resolve_for(g: Globals, out: Output, flags: dict[str, Any] | None = None) -> Resolved:
    from engine.config import resolve

    resolved = resolve(profile=g.profile, config_path=g.config, flags=flags or {})
    out.secrets = resolved.secrets()
    return resolved


def resolve_sim_or_replay(g: Globals, out: Output, command: str, feed: str | None,
                          data: Path | None, seed: int | None, db: str | None) -> Resolved:
    """The configuration of a command that drives its own sim or replay runs (profile,
    memory): ConfigError for any other feed."""
    from engine.errors import ConfigError

    resolved = resolve_for(g, out, {"feed": feed, "data_file": str(data) if data else None,
                                    "seed": seed, "db": db})
    if resolved["feed"] not in ("sim", "replay"):
        raise ConfigError(f"supreme {command} runs on --feed sim or replay")
    return resolved
