"""The embedded SQLite backend (stdlib sqlite3).

WAL lets readers run while the writer thread commits; synchronous=NORMAL skips the fsync
per commit yet keeps every committed transaction across a process crash or SIGKILL (only
an OS crash or power cut can lose the last few).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from engine.errors import StoreError
from engine.store.base import Store, Tx


class _SqliteTx:
    __slots__ = ("_conn",)

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        return self._conn.execute(sql, params).rowcount

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        self._conn.executemany(sql, rows)

    def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self._conn.execute(sql, params).fetchall()

    def iterate(
        self, sql: str, params: Sequence[Any] = (), chunk: int = 5000
    ) -> Iterator[tuple[Any, ...]]:
        cur = self._conn.execute(sql, params)
        while rows := cur.fetchmany(chunk):
            yield from rows


class SqliteStore(Store):
    dialect = "sqlite"
    _db_errors = (sqlite3.Error,)

    def __init__(self, path: str | Path, *, busy_timeout_ms: int = 5000) -> None:
        super().__init__()
        if Path(path).name == ":memory:":
            # Each connection would get its own empty database, so clones would see nothing.
            raise StoreError("an in-memory SQLite store is not supported; give a file path")
        self.path = Path(path).expanduser().absolute()
        self._busy_timeout_ms = int(busy_timeout_ms)
        if self.path.is_dir():
            raise StoreError(f"cannot open SQLite store {self.path}: it is a directory")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # Autocommit mode: transactions are begun explicitly, so a read never holds
            # a lock it did not ask for and BEGIN IMMEDIATE takes the write lock up front.
            conn = sqlite3.connect(self.path, timeout=self._busy_timeout_ms / 1000,
                                   isolation_level=None, check_same_thread=False)
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"cannot open SQLite store {self.path}: {exc}") from exc
        try:
            conn.execute(f"PRAGMA busy_timeout = {self._busy_timeout_ms}")
            conn.execute("PRAGMA journal_mode = WAL").fetchone()
            conn.execute("PRAGMA synchronous = NORMAL")
        except sqlite3.Error as exc:
            conn.close()
            raise StoreError(f"cannot open SQLite store {self.path}: {exc}") from exc
        self._conn = conn

    @property
    def url_redacted(self) -> str:
        return f"sqlite://{self.path}"

    def clone(self) -> SqliteStore:
        return SqliteStore(self.path, busy_timeout_ms=self._busy_timeout_ms)

    def bounded_clone(self, timeout_s: float) -> SqliteStore:
        return SqliteStore(self.path, busy_timeout_ms=max(1, int(timeout_s * 1000)))

    @contextmanager
    def _transaction(self, write: bool) -> Iterator[Tx]:
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
        try:
            yield _SqliteTx(conn)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                with suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            raise

    def _single(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        return self._conn.execute(sql, params).fetchall()

    def _lock_schema(self, tx: Tx) -> None:
        pass  # BEGIN IMMEDIATE already holds the database's single write lock

    def _table_exists(self, tx: Tx, name: str) -> bool:
        return bool(tx.fetchall(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)))

    def _dialect_check(self, tx: Tx) -> str:
        return "\n".join(str(r[0]) for r in tx.fetchall("PRAGMA integrity_check"))

    def _close(self) -> None:
        self._conn.close()
