"""Backups and restores.

Two file kinds, told apart by their magic bytes:
- a SQLite database, made with sqlite3's online backup API (the default for SQLite);
- a portable dump: gzip'd JSON lines (the default for PostgreSQL, and `portable=True`):
  a header line with the schema version, then per table a {"table", "columns"} line
  followed by one JSON array per row, then an {"end", "rows"} line so truncation shows.

A restore merges the backup's rows into a migrated store in one transaction with
`ON CONFLICT DO NOTHING`: rows already present are kept, so restoring twice, or into a
store that kept running, is harmless. Either kind restores into either backend.
"""

from __future__ import annotations

import gzip
import json
import os
import sqlite3
import zlib
from collections.abc import Generator, Sequence
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from engine.errors import StoreError
from engine.store.base import Store, insert_sql, now_ms
from engine.store.schema import BOOL_COLUMNS, COLUMNS, KEYS, LATEST_VERSION, TABLES

SQLITE_MAGIC = b"SQLite format 3\x00"
GZIP_MAGIC = b"\x1f\x8b"
DUMP_FORMAT = "supreme-dump"
DUMP_VERSION = 1
_CHUNK = 5000

_Row = tuple[str, Sequence[str], Sequence[Any]]  # (table, columns, values)
_Rows = Generator[_Row, None, None]


@dataclass(frozen=True)
class BackupInfo:
    kind: str  # "sqlite" or "dump"
    schema_version: int
    rows: dict[str, int]


def _bool_fix(table: str, columns: Sequence[str]) -> list[int]:
    return [columns.index(c) for c in BOOL_COLUMNS.get(table, ()) if c in columns]


# --- backup --------------------------------------------------------------------------


def backup(store: Store, path: str | Path, *, portable: bool | None = None) -> BackupInfo:
    """Write a backup of `store` to `path` (atomically: a partial file never replaces it)."""
    path = Path(path)
    portable = store.dialect != "sqlite" if portable is None else portable
    tmp = path.with_name(path.name + ".partial")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        info = _write_dump(store, tmp) if portable else _write_sqlite(store, tmp)
        os.replace(tmp, path)
    except OSError as exc:
        raise StoreError(f"cannot write backup {path}: {exc}") from exc
    finally:
        tmp.unlink(missing_ok=True)
    return info


def _write_sqlite(store: Store, tmp: Path) -> BackupInfo:
    from engine.store.sqlite import SqliteStore

    if not isinstance(store, SqliteStore):
        raise StoreError("a SQLite backup needs a SQLite store; use portable=True")
    tmp.unlink(missing_ok=True)
    try:
        # Its own connection: the backup takes one consistent read snapshot and lets the
        # store's connection (and the writer's) carry on.
        with closing(sqlite3.connect(store.path, timeout=30)) as src, \
                closing(sqlite3.connect(tmp)) as dst:
            src.backup(dst)
            dst.execute("PRAGMA journal_mode = DELETE")  # one self-contained file
            version, rows = _sqlite_summary(dst)
    except sqlite3.Error as exc:
        raise StoreError(f"SQLite backup of {store.url_redacted} failed: {exc}") from exc
    return BackupInfo("sqlite", version, rows)


def _sqlite_summary(conn: sqlite3.Connection) -> tuple[int, dict[str, int]]:
    names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    version = (conn.execute("SELECT COALESCE(MAX(version), 0) FROM schema_version").fetchone()[0]
               if "schema_version" in names else 0)
    rows = {t: conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]
            for t in TABLES if t in names}
    return int(version), rows


def _write_dump(store: Store, tmp: Path) -> BackupInfo:
    rows: dict[str, int] = {}
    with store._tx("backup", write=False) as tx, \
            gzip.open(tmp, "wt", encoding="utf-8", compresslevel=6) as fh:
        version = store._version(tx)
        if version < 1:
            raise StoreError(f"{store.url_redacted} has no schema yet: nothing to back up")
        _line(fh, {"format": DUMP_FORMAT, "version": DUMP_VERSION, "schema_version": version,
                   "source": store.dialect, "created_at_ms": now_ms()})
        for table in TABLES:
            if not store._table_exists(tx, table):
                continue
            cols = COLUMNS[table]
            fix = _bool_fix(table, cols)
            _line(fh, {"table": table, "columns": cols})
            n = 0
            sql = f"SELECT {', '.join(cols)} FROM {table} ORDER BY {', '.join(KEYS[table])}"
            for row in tx.iterate(sql, chunk=_CHUNK):
                if fix:
                    row = tuple(bool(v) if i in fix else v for i, v in enumerate(row))
                _line(fh, row)
                n += 1
            rows[table] = n
        _line(fh, {"end": True, "rows": rows})
    return BackupInfo("dump", version, rows)


def _line(fh: IO[str], value: Any) -> None:
    fh.write(json.dumps(value, separators=(",", ":")))
    fh.write("\n")


# --- restore -------------------------------------------------------------------------


def restore(store: Store, path: str | Path) -> BackupInfo:
    """Merge a backup (either kind) into `store`, migrating it first; all or nothing."""
    path = Path(path)
    try:
        with path.open("rb") as fh:
            head = fh.read(len(SQLITE_MAGIC))
    except OSError as exc:
        raise StoreError(f"cannot read backup {path}: {exc}") from exc
    if head.startswith(SQLITE_MAGIC):
        kind, (version, source) = "sqlite", _read_sqlite(path)
    elif head.startswith(GZIP_MAGIC):
        kind, (version, source) = "dump", _read_dump(path)
    else:
        raise StoreError(f"{path} is not a supreme backup (neither SQLite nor a gzip dump)")
    with closing(source):
        store.migrate()
        rows = _import(store, source)
    return BackupInfo(kind, version, rows)


def _check_version(path: Path, version: Any) -> int:
    if not isinstance(version, int) or not 1 <= version <= LATEST_VERSION:
        raise StoreError(f"{path}: backup schema version {version!r} is not one this engine "
                         f"reads (1..{LATEST_VERSION})")
    return version


def _check_columns(path: Path, table: Any, columns: Any) -> None:
    if table not in COLUMNS or not isinstance(columns, list | tuple):
        raise StoreError(f"{path}: unknown table {table!r} in backup")
    if not set(KEYS[table]) <= set(columns) <= set(COLUMNS[table]):
        raise StoreError(f"{path}: table {table} has unexpected columns {list(columns)}")


def _import(store: Store, source: _Rows) -> dict[str, int]:
    counts: dict[str, int] = {}
    with store._tx("restore", write=True) as tx:
        pending: list[Sequence[Any]] = []
        current: tuple[str, Sequence[str]] | None = None
        fix: list[int] = []

        def flush() -> None:
            if current and pending:
                tx.executemany(insert_sql(current[0], current[1]), pending)
                pending.clear()

        for table, columns, values in source:
            if current is None or current[0] != table or current[1] is not columns:
                flush()
                current, fix = (table, columns), _bool_fix(table, columns)
                counts.setdefault(table, 0)
            if fix:
                values = [bool(v) if i in fix else v for i, v in enumerate(values)]
            pending.append(values)
            counts[table] += 1
            if len(pending) >= _CHUNK:
                flush()
        flush()
    return counts


def _read_sqlite(path: Path) -> tuple[int, _Rows]:
    try:
        conn = sqlite3.connect(path)
    except sqlite3.Error as exc:
        raise StoreError(f"{path}: unreadable SQLite backup: {exc}") from exc
    try:
        check = conn.execute("PRAGMA quick_check").fetchall()
        if check != [("ok",)]:
            raise StoreError(f"{path}: SQLite backup is damaged: "
                             + "; ".join(str(r[0]) for r in check[:5]))
        version, _ = _sqlite_summary(conn)
        _check_version(path, version)
    except sqlite3.Error as exc:
        conn.close()
        raise StoreError(f"{path}: unreadable SQLite backup: {exc}") from exc
    except BaseException:
        conn.close()
        raise
    return version, _sqlite_rows(path, conn)


def _sqlite_rows(path: Path, conn: sqlite3.Connection) -> _Rows:
    try:
        names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        for table in TABLES:
            if table not in names:
                continue
            present = {r[1] for r in conn.execute(f"PRAGMA table_info({table})")}
            cols = tuple(c for c in COLUMNS[table] if c in present)
            _check_columns(path, table, cols)
            for row in conn.execute(f"SELECT {', '.join(cols)} FROM {table}"):
                yield table, cols, row
    except sqlite3.Error as exc:
        raise StoreError(f"{path}: unreadable SQLite backup: {exc}") from exc
    finally:
        conn.close()


def _read_dump(path: Path) -> tuple[int, _Rows]:
    # Not a `with`: on success the open file is handed to the row generator, which closes it.
    fh = gzip.open(path, "rt", encoding="utf-8")  # noqa: SIM115
    try:
        header = json.loads(fh.readline())
        if not isinstance(header, dict) or header.get("format") != DUMP_FORMAT \
                or header.get("version") != DUMP_VERSION:
            raise StoreError(f"{path}: not a supreme dump (bad header)")
        version = _check_version(path, header.get("schema_version"))
    except (OSError, EOFError, ValueError, zlib.error) as exc:
        fh.close()
        raise StoreError(f"{path}: unreadable dump: {exc}") from exc
    except BaseException:
        fh.close()
        raise
    return version, _dump_rows(path, fh)


def _dump_rows(path: Path, fh: IO[str]) -> _Rows:
    table: str | None = None
    columns: tuple[str, ...] = ()
    seen: dict[str, int] = {}
    try:
        for lineno, line in enumerate(fh, start=2):
            item = json.loads(line)
            if isinstance(item, list):
                if table is None or len(item) != len(columns):
                    raise StoreError(f"{path}:{lineno}: row does not match its table header")
                seen[table] += 1
                yield table, columns, item
            elif isinstance(item, dict) and "table" in item:
                _check_columns(path, item["table"], item.get("columns"))
                table, columns = item["table"], tuple(item["columns"])
                seen.setdefault(table, 0)
            elif isinstance(item, dict) and item.get("end") is True:
                if item.get("rows") != seen:
                    raise StoreError(f"{path}: row counts {seen} do not match the dump's "
                                     f"trailer {item.get('rows')}")
                if fh.readline():
                    raise StoreError(f"{path}:{lineno}: data after the end of the dump")
                return
            else:
                raise StoreError(f"{path}:{lineno}: unexpected line in dump")
        raise StoreError(f"{path}: dump is truncated (no end line)")
    except (OSError, EOFError, ValueError, zlib.error) as exc:
        raise StoreError(f"{path}: unreadable dump: {exc}") from exc
    finally:
        fh.close()
