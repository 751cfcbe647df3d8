"""`supreme db`: migrate, back up and restore the store."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

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

if TYPE_CHECKING:
    from engine.store import Store

app = typer.Typer(help="Manage the store (SQLite or PostgreSQL).", no_args_is_help=True)

PathArg = Annotated[Path, typer.Argument(help="Backup file.")]


def _open(ctx: typer.Context, db: str | None, profile: str | None, config: Path | None,
          verbose: bool, json_out: bool) -> tuple[Store, Output]:
    from engine.store import open_store

    g, out = use_globals(ctx, profile, config, verbose, json_out)
    resolved = resolve_for(g, out, {"db": db})
    return open_store(resolved.store_url, resolved.data_dir), out


@app.command("migrate", epilog="Example: supreme db migrate --db postgresql://localhost/test")
def migrate(ctx: typer.Context, db: DbOpt = None, profile: ProfileOpt = None,
            config: ConfigOpt = None, verbose: VerboseOpt = False,
            json_out: JsonOpt = False) -> None:
    """Create the store's tables or bring them to the newest schema version."""
    store, out = _open(ctx, db, profile, config, verbose, json_out)
    try:
        before = store.schema_version()
        store.migrate()
        after = store.schema_version()
        doc = {"store": store.url_redacted, "schema_version_before": before,
               "schema_version": after}
    finally:
        store.close()
    if out.json_mode:
        out.emit(doc)
    else:
        out.result(f"{doc['store']}: schema version {before} → {after}")


@app.command("backup", epilog="Example: supreme db backup ~/supreme-backup.db")
def backup(ctx: typer.Context, path: PathArg, db: DbOpt = None, profile: ProfileOpt = None,
           config: ConfigOpt = None, verbose: VerboseOpt = False,
           json_out: JsonOpt = False) -> None:
    """Back up the store to PATH (SQLite online backup; a portable dump for PostgreSQL)."""
    from engine.store.backup import backup as do_backup

    store, out = _open(ctx, db, profile, config, verbose, json_out)
    try:
        store.migrate()
        do_backup(store, path)
        counts = store.counts()
    finally:
        store.close()
    doc = {"store": store.url_redacted, "path": str(path), "rows": counts,
           "bytes": path.stat().st_size}
    if out.json_mode:
        out.emit(doc)
    else:
        out.result(f"backed up {sum(counts.values())} rows to {path} ({doc['bytes']} bytes)")


@app.command("restore", epilog="Example: supreme db restore ~/supreme-backup.db")
def restore(ctx: typer.Context, path: PathArg, db: DbOpt = None, profile: ProfileOpt = None,
            config: ConfigOpt = None, verbose: VerboseOpt = False,
            json_out: JsonOpt = False) -> None:
    """Restore the store from a backup made by `supreme db backup`."""
    from engine.store.backup import restore as do_restore

    store, out = _open(ctx, db, profile, config, verbose, json_out)
    try:
        do_restore(store, path)
        counts = store.counts()
    finally:
        store.close()
    doc = {"store": store.url_redacted, "path": str(path), "rows": counts}
    if out.json_mode:
        out.emit(doc)
    else:
        out.result(f"restored {path}: store now holds {sum(counts.values())} rows")
