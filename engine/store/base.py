"""The backend-neutral Store: every query is written once here, with `?` placeholders.

Backends (sqlite.py, postgres.py) only supply a connection, transactions and a few
catalogue lookups. Every write is keyed, so replaying a batch after a retry or a restart
never duplicates a row: inserts are `ON CONFLICT DO NOTHING`, and the two tables holding
mutable state (orders, positions) are upserts.

A Store serialises its own calls with a lock, so threads may share one; a writer thread
should still get its own via `clone()` so a slow commit never blocks reads.
"""

from __future__ import annotations

import json
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from operator import attrgetter
from typing import Any, ClassVar, Protocol
from urllib.parse import urlsplit, urlunsplit

from engine.errors import StoreError
from engine.store.schema import (
    COLUMNS,
    KEYS,
    LATEST_VERSION,
    MIGRATIONS,
    RUN_STATUSES,
    TABLES,
    VERSION_TABLE_DDL,
    EquityRecord,
    OrderRecord,
    PositionRecord,
    RunRecord,
    SignalRecord,
    TradeRecord,
)


class Tx(Protocol):
    """The statement runner a backend hands out inside one transaction."""

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int: ...

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None: ...

    def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]: ...

    def iterate(
        self, sql: str, params: Sequence[Any] = (), chunk: int = 5000
    ) -> Iterator[tuple[Any, ...]]: ...


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def insert_sql(
    table: str, columns: Sequence[str] | None = None, conflict: str = "DO NOTHING"
) -> str:
    cols = COLUMNS[table] if columns is None else columns
    marks = ", ".join("?" * len(cols))
    keys = ", ".join(KEYS[table])
    return (f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({marks}) "
            f"ON CONFLICT ({keys}) {conflict}")


def _set_all(table: str, only: Sequence[str] | None = None) -> str:
    cols = [c for c in COLUMNS[table] if c not in KEYS[table] and (only is None or c in only)]
    return "DO UPDATE SET " + ", ".join(f"{c} = excluded.{c}" for c in cols)


_INSERT_RUN = insert_sql("runs")
_INSERT_SIGNAL = insert_sql("signals")
_INSERT_TRADE = insert_sql("trades")
_INSERT_EQUITY = insert_sql("equity")
# An order moves open -> filled/rejected/cancelled; the WHERE keeps a late replay of its
# earlier 'open' row from reopening an order that already reached a final state.
_UPSERT_ORDER = insert_sql(
    "orders", conflict=_set_all("orders", ("ts_ms", "qty", "price", "status", "reason",
                                           "fill_price", "fee")) + " WHERE orders.status = 'open'")
# Last write wins: updated_at_ms may be simulated time, so it cannot order the writes.
_UPSERT_POSITION = insert_sql("positions", conflict=_set_all("positions"))

_SELECT = {t: f"SELECT {', '.join(cols)} FROM {t}" for t, cols in COLUMNS.items()}

_order_row = attrgetter(*COLUMNS["orders"])
_trade_row = attrgetter(*COLUMNS["trades"])
_position_row = attrgetter(*COLUMNS["positions"])
_equity_row = attrgetter(*COLUMNS["equity"])


def _json_default(obj: Any) -> Any:
    item = getattr(obj, "item", None)  # numpy scalars sneak into summaries
    if callable(item):
        return item()
    if isinstance(obj, set | frozenset):
        return sorted(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def to_json(value: Mapping[str, Any] | None) -> str | None:
    if value is None:
        return None
    try:
        return json.dumps(value, sort_keys=True, separators=(",", ":"), default=_json_default)
    except (TypeError, ValueError) as exc:
        raise StoreError(f"cannot store value as JSON: {exc}") from exc


def _from_json(text: str | None) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError as exc:
        raise StoreError(f"stored JSON is unreadable: {exc}") from exc


def _run_from_row(row: Sequence[Any]) -> RunRecord:
    rid, symbol, feed, mode, started, ended, status, config, summary = row
    return RunRecord(id=rid, symbol=symbol, feed=feed, mode=mode, started_at_ms=started,
                     status=status, config=_from_json(config) or {}, ended_at_ms=ended,
                     summary=_from_json(summary))


def _signal_from_row(row: Sequence[Any]) -> SignalRecord:
    run_id, seq, ts, action, fired, reason, price = row
    return SignalRecord(run_id, seq, ts, action, bool(fired), reason, price)


def redact_url(url: str) -> str:
    """The URL with any password replaced by ***, safe for logs and error messages."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if parts.password is not None:
        userinfo, _, hostinfo = netloc.rpartition("@")
        netloc = f"{userinfo.split(':', 1)[0]}:***@{hostinfo}"
    query = "&".join(
        "password=***" if kv.lower().startswith("password=") else kv
        for kv in parts.query.split("&")
    ) if parts.query else ""
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


class Store(ABC):
    dialect: ClassVar[str]
    _db_errors: ClassVar[tuple[type[BaseException], ...]] = ()

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._closed = False

    # --- backend hooks -------------------------------------------------------------

    @property
    @abstractmethod
    def url_redacted(self) -> str: ...

    @abstractmethod
    def clone(self) -> Store:
        """A new Store on the same database with its own connection (not migrated again)."""

    @abstractmethod
    def bounded_clone(self, timeout_s: float) -> Store:
        """A clone whose every call gives up after about `timeout_s` (the cache's L3)."""

    @abstractmethod
    def _transaction(self, write: bool) -> AbstractContextManager[Tx]: ...

    @abstractmethod
    def _lock_schema(self, tx: Tx) -> None: ...

    @abstractmethod
    def _table_exists(self, tx: Tx, name: str) -> bool: ...

    @abstractmethod
    def _dialect_check(self, tx: Tx) -> str: ...

    @abstractmethod
    def _close(self) -> None: ...

    @abstractmethod
    def _single(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        """Run one read statement outside an explicit transaction (its own snapshot)."""

    def _after_error(self, exc: BaseException) -> None:  # noqa: B027 (optional hook)
        """Hook for dropping a connection the error left unusable."""

    def _describe(self, exc: BaseException) -> str:
        return " ".join(str(exc).split())[:400] or type(exc).__name__

    @contextmanager
    def _tx(self, what: str, *, write: bool = False) -> Iterator[Tx]:
        """One transaction, with database errors turned into StoreError (package-internal)."""
        with self._lock:
            if self._closed:
                raise StoreError(f"{what}: the store is closed")
            try:
                with self._transaction(write) as tx:
                    yield tx
            except self._db_errors as exc:
                self._after_error(exc)
                raise StoreError(
                    f"{what} failed on {self.url_redacted}: {self._describe(exc)}") from exc

    def _fetch(self, what: str, sql: str, params: Sequence[Any] = ()
               ) -> list[tuple[Any, ...]]:
        """One read statement without BEGIN/COMMIT: the cache's hot read (package-internal)."""
        with self._lock:
            if self._closed:
                raise StoreError(f"{what}: the store is closed")
            try:
                return self._single(sql, params)
            except self._db_errors as exc:
                self._after_error(exc)
                raise StoreError(
                    f"{what} failed on {self.url_redacted}: {self._describe(exc)}") from exc

    # --- schema --------------------------------------------------------------------

    def _version(self, tx: Tx) -> int:
        if not self._table_exists(tx, "schema_version"):
            return 0
        return int(tx.fetchall("SELECT COALESCE(MAX(version), 0) FROM schema_version")[0][0])

    def migrate(self, target: int | None = None) -> int:
        """Apply the missing migration steps (all in one transaction); returns the version."""
        target = LATEST_VERSION if target is None else target
        if not 0 <= target <= LATEST_VERSION:
            raise StoreError(f"unknown schema version {target} (latest is {LATEST_VERSION})")
        with self._tx("migrate", write=True) as tx:
            self._lock_schema(tx)
            tx.execute(VERSION_TABLE_DDL)
            current = self._version(tx)
            if current > LATEST_VERSION:
                raise StoreError(f"the database schema (v{current}) is newer than this engine "
                                 f"(v{LATEST_VERSION}); upgrade supreme")
            for step in MIGRATIONS:
                if current < step.version <= target:
                    for stmt in step.for_dialect(self.dialect):
                        tx.execute(stmt)
                    tx.execute("INSERT INTO schema_version (version, name, applied_at_ms) "
                               "VALUES (?, ?, ?)", (step.version, step.name, now_ms()))
            return max(current, target)

    def schema_version(self) -> int:
        with self._tx("schema_version") as tx:
            return self._version(tx)

    # --- runs ----------------------------------------------------------------------

    def create_run(self, run: RunRecord) -> None:
        row = (run.id, run.symbol, run.feed, run.mode, run.started_at_ms, run.ended_at_ms,
               run.status, to_json(run.config), to_json(run.summary))
        with self._tx("create_run", write=True) as tx:
            tx.execute(_INSERT_RUN, row)

    def finish_run(self, run_id: str, status: str, ended_at_ms: int,
                   summary: Mapping[str, Any] | None = None) -> None:
        if status not in RUN_STATUSES:
            raise StoreError(f"invalid run status {status!r}; expected one of "
                             f"{sorted(RUN_STATUSES)}")
        with self._tx("finish_run", write=True) as tx:
            changed = tx.execute(
                "UPDATE runs SET status = ?, ended_at_ms = ?, summary_json = ? WHERE id = ?",
                (status, ended_at_ms, to_json(summary), run_id))
        if changed == 0:
            raise StoreError(f"finish_run: no run with id {run_id!r}")

    def get_run(self, run_id: str) -> RunRecord | None:
        with self._tx("get_run") as tx:
            rows = tx.fetchall(_SELECT["runs"] + " WHERE id = ?", (run_id,))
        return _run_from_row(rows[0]) if rows else None

    def list_runs(self, limit: int = 50, since_ms: int | None = None) -> list[RunRecord]:
        """The newest runs first."""
        where, params = ("", ()) if since_ms is None else (" WHERE started_at_ms >= ?", (since_ms,))
        sql = _SELECT["runs"] + where + " ORDER BY started_at_ms DESC, id DESC LIMIT ?"
        with self._tx("list_runs") as tx:
            rows = tx.fetchall(sql, (*params, max(0, int(limit))))
        return [_run_from_row(r) for r in rows]

    # --- the hot path's batches ----------------------------------------------------

    def write_batch(
        self,
        signals: Iterable[SignalRecord] = (),
        orders: Iterable[OrderRecord] = (),
        trades: Iterable[TradeRecord] = (),
        equity: Iterable[EquityRecord] = (),
        positions: Iterable[PositionRecord] = (),
    ) -> int:
        """Write everything in one transaction; replaying the same batch changes nothing.

        Returns the number of records submitted (not the number that were new).
        """
        # bool() because PostgreSQL rejects an int where BOOLEAN is due.
        work = [
            (_INSERT_SIGNAL, [(s.run_id, s.seq, s.ts_ms, s.action, bool(s.fired), s.reason,
                               s.price) for s in signals]),
            (_UPSERT_ORDER, [_order_row(o) for o in orders]),
            (_INSERT_TRADE, [_trade_row(t) for t in trades]),
            (_INSERT_EQUITY, [_equity_row(e) for e in equity]),
            (_UPSERT_POSITION, [_position_row(p) for p in positions]),
        ]
        total = sum(len(rows) for _, rows in work)
        if total:
            with self._tx("write_batch", write=True) as tx:
                for sql, rows in work:
                    if rows:
                        tx.executemany(sql, rows)
        return total

    def upsert_position(self, position: PositionRecord) -> None:
        with self._tx("upsert_position", write=True) as tx:
            tx.execute(_UPSERT_POSITION, _position_row(position))

    # --- reads ---------------------------------------------------------------------

    def load_position(self, symbol: str, mode: str) -> PositionRecord | None:
        with self._tx("load_position") as tx:
            rows = tx.fetchall(_SELECT["positions"] + " WHERE symbol = ? AND mode = ?",
                               (symbol, mode))
        return PositionRecord(*rows[0]) if rows else None

    def open_orders(self, symbol: str, mode: str | None = None) -> list[OrderRecord]:
        """Orders still 'open' for a symbol; `mode` filters on the mode of the owning run."""
        cols = ", ".join(f"o.{c}" for c in COLUMNS["orders"])
        sql = f"SELECT {cols} FROM orders o WHERE o.symbol = ? AND o.status = 'open'"
        params: tuple[Any, ...] = (symbol,)
        if mode is not None:
            sql += " AND o.run_id IN (SELECT id FROM runs WHERE mode = ?)"
            params += (mode,)
        with self._tx("open_orders") as tx:
            rows = tx.fetchall(sql + " ORDER BY o.ts_ms, o.id", params)
        return [OrderRecord(*r) for r in rows]

    def signals_for_run(self, run_id: str) -> list[SignalRecord]:
        with self._tx("signals_for_run") as tx:
            rows = tx.fetchall(_SELECT["signals"] + " WHERE run_id = ? ORDER BY seq", (run_id,))
        return [_signal_from_row(r) for r in rows]

    def orders_for_run(self, run_id: str) -> list[OrderRecord]:
        with self._tx("orders_for_run") as tx:
            rows = tx.fetchall(_SELECT["orders"] + " WHERE run_id = ? ORDER BY ts_ms, id",
                               (run_id,))
        return [OrderRecord(*r) for r in rows]

    def trades_for_run(self, run_id: str) -> list[TradeRecord]:
        with self._tx("trades_for_run") as tx:
            rows = tx.fetchall(_SELECT["trades"] + " WHERE run_id = ? ORDER BY exit_ts_ms, id",
                               (run_id,))
        return [TradeRecord(*r) for r in rows]

    def equity_for_run(self, run_id: str) -> list[EquityRecord]:
        with self._tx("equity_for_run") as tx:
            rows = tx.fetchall(_SELECT["equity"] + " WHERE run_id = ? ORDER BY ts_ms", (run_id,))
        return [EquityRecord(*r) for r in rows]

    # --- statistics results -------------------------------------------------------

    def save_stats(self, run_id: str, kind: str, result: Mapping[str, Any]) -> None:
        """Keep a `supreme stats` result with its run; the same kind again replaces it."""
        sql = ("INSERT INTO stats_results (run_id, kind, created_at_ms, result_json) "
               "VALUES (?, ?, ?, ?) ON CONFLICT (run_id, kind) DO UPDATE SET "
               "created_at_ms = excluded.created_at_ms, result_json = excluded.result_json")
        with self._tx("save_stats", write=True) as tx:
            tx.execute(sql, (run_id, kind, now_ms(), to_json(result)))

    def stats_for_run(self, run_id: str) -> dict[str, Any]:
        """Every stored result of a run, by kind."""
        with self._tx("stats_for_run") as tx:
            rows = tx.fetchall("SELECT kind, result_json FROM stats_results WHERE run_id = ? "
                               "ORDER BY kind", (run_id,))
        return {kind: _from_json(text) for kind, text in rows}

    def stats_since(self, since_ms: int, until_ms: int | None = None
                    ) -> list[tuple[str, str, int, dict[str, Any]]]:
        """(run_id, kind, created_at_ms, result) of results created in [since, until)."""
        sql = ("SELECT run_id, kind, created_at_ms, result_json FROM stats_results "
               "WHERE created_at_ms >= ?")
        params: tuple[Any, ...] = (since_ms,)
        if until_ms is not None:
            sql += " AND created_at_ms < ?"
            params += (until_ms,)
        with self._tx("stats_since") as tx:
            rows = tx.fetchall(sql + " ORDER BY created_at_ms, run_id, kind", params)
        return [(r, k, int(c), _from_json(t)) for r, k, c, t in rows]

    def counts(self) -> dict[str, int]:
        sql = "SELECT " + ", ".join(f"(SELECT COUNT(*) FROM {t})" for t in TABLES)
        with self._tx("counts") as tx:
            row = tx.fetchall(sql)[0]
        return {t: int(n) for t, n in zip(TABLES, row, strict=True)}

    def integrity_check(self) -> str:
        """'ok', or a description of every problem found."""
        with self._tx("integrity_check") as tx:
            result = self._dialect_check(tx)
            version = self._version(tx)
            missing = [t for t in TABLES if not self._table_exists(tx, t)]
        problems = [] if result == "ok" else [result]
        if version != LATEST_VERSION:
            problems.append(f"schema version {version}, expected {LATEST_VERSION}")
        if missing:
            problems.append("missing tables: " + ", ".join(missing))
        return "; ".join(problems) or "ok"

    # --- lifecycle -----------------------------------------------------------------

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                self._close()

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.url_redacted}>"
