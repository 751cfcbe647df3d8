"""The store's data shapes: record types, table columns and numbered migrations.

One DDL text serves SQLite and PostgreSQL: SQLite accepts BIGINT, DOUBLE PRECISION and
BOOLEAN as type names, so a per-dialect variant is only needed when a statement truly
differs (`Migration.statements` may map a dialect to its own text for that case).
Timestamps are BIGINT milliseconds since the epoch (UTC); ids are TEXT; JSON is TEXT.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from engine.errors import StoreError

RUN_STATUSES = frozenset({"running", "finished", "interrupted", "failed"})
ACTIONS = frozenset({"buy", "sell", "none"})
SIDES = frozenset({"buy", "sell"})
ORDER_STATUSES = frozenset({"filled", "rejected", "open", "cancelled"})


def _check(value: str, allowed: frozenset[str], what: str) -> None:
    # Rejecting bad values at construction keeps a poison row from ever reaching the
    # writer's queue, where it would fail its batch on every retry.
    if value not in allowed:
        raise StoreError(f"invalid {what} {value!r}; expected one of {sorted(allowed)}")


@dataclass(frozen=True, slots=True)
class RunRecord:
    id: str
    symbol: str
    feed: str
    mode: str
    started_at_ms: int
    status: str = "running"
    config: dict[str, Any] = field(default_factory=dict)
    ended_at_ms: int | None = None
    summary: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        _check(self.status, RUN_STATUSES, "run status")


@dataclass(frozen=True, slots=True)
class SignalRecord:
    run_id: str
    seq: int
    ts_ms: int
    action: str
    fired: bool
    reason: str
    price: float

    def __post_init__(self) -> None:
        _check(self.action, ACTIONS, "signal action")


@dataclass(frozen=True, slots=True)
class OrderRecord:
    id: str  # the client order id: the exchange dedupes on it, we key on it
    run_id: str
    ts_ms: int
    symbol: str
    side: str
    qty: float
    price: float
    status: str
    reason: str = ""
    fill_price: float | None = None
    fee: float = 0.0

    def __post_init__(self) -> None:
        _check(self.side, SIDES, "order side")
        _check(self.status, ORDER_STATUSES, "order status")


@dataclass(frozen=True, slots=True)
class TradeRecord:
    id: str
    run_id: str
    symbol: str
    side: str
    qty: float
    entry_ts_ms: int
    exit_ts_ms: int
    entry_price: float
    exit_price: float
    pnl: float
    fees: float
    exit_reason: str

    def __post_init__(self) -> None:
        _check(self.side, SIDES, "trade side")


@dataclass(frozen=True, slots=True)
class PositionRecord:
    """The open position for one symbol in one mode; qty is signed and 0 means flat."""

    symbol: str
    mode: str
    qty: float
    entry_price: float
    entry_ts_ms: int | None
    stop_price: float | None
    take_profit: float | None
    run_id: str | None
    updated_at_ms: int


class EquityRecord(NamedTuple):
    """One equity snapshot. A NamedTuple, not a dataclass: one is built on every bar, and
    tuple construction costs a tenth of a frozen dataclass's."""

    run_id: str
    ts_ms: int
    equity: float
    cash: float
    position_value: float
    drawdown: float


# Column order of every table, as written and as dumped. Only `runs` differs from its
# record: config and summary are stored as JSON text.
COLUMNS: dict[str, tuple[str, ...]] = {
    "runs": ("id", "symbol", "feed", "mode", "started_at_ms", "ended_at_ms", "status",
             "config_json", "summary_json"),
    "signals": ("run_id", "seq", "ts_ms", "action", "fired", "reason", "price"),
    "orders": ("id", "run_id", "ts_ms", "symbol", "side", "qty", "price", "status", "reason",
               "fill_price", "fee"),
    "trades": ("id", "run_id", "symbol", "side", "qty", "entry_ts_ms", "exit_ts_ms",
               "entry_price", "exit_price", "pnl", "fees", "exit_reason"),
    "positions": ("symbol", "mode", "qty", "entry_price", "entry_ts_ms", "stop_price",
                  "take_profit", "run_id", "updated_at_ms"),
    "equity": ("run_id", "ts_ms", "equity", "cash", "position_value", "drawdown"),
}
KEYS: dict[str, tuple[str, ...]] = {
    "runs": ("id",),
    "signals": ("run_id", "seq"),
    "orders": ("id",),
    "trades": ("id",),
    "positions": ("symbol", "mode"),
    "equity": ("run_id", "ts_ms"),
}
# SQLite hands booleans back as 0/1 and PostgreSQL refuses integers for BOOLEAN, so
# anything crossing backends (reads, dumps, restores) normalises these columns.
BOOL_COLUMNS: dict[str, tuple[str, ...]] = {"signals": ("fired",)}
TABLES: tuple[str, ...] = tuple(COLUMNS)

VERSION_TABLE_DDL = (
    "CREATE TABLE IF NOT EXISTS schema_version ("
    "version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at_ms BIGINT NOT NULL)"
)


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    statements: tuple[str | Mapping[str, str], ...]

    def for_dialect(self, dialect: str) -> list[str]:
        out = []
        for stmt in self.statements:
            if isinstance(stmt, str):
                out.append(stmt)
            elif dialect in stmt:
                out.append(stmt[dialect])
        return out


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "core tables", (
        """CREATE TABLE runs (
            id TEXT PRIMARY KEY,
            symbol TEXT NOT NULL,
            feed TEXT NOT NULL,
            mode TEXT NOT NULL,
            started_at_ms BIGINT NOT NULL,
            ended_at_ms BIGINT,
            status TEXT NOT NULL,
            config_json TEXT NOT NULL,
            summary_json TEXT)""",
        """CREATE TABLE signals (
            run_id TEXT NOT NULL,
            seq BIGINT NOT NULL,
            ts_ms BIGINT NOT NULL,
            action TEXT NOT NULL,
            fired BOOLEAN NOT NULL,
            reason TEXT NOT NULL,
            price DOUBLE PRECISION NOT NULL,
            PRIMARY KEY (run_id, seq))""",
        """CREATE TABLE orders (
            id TEXT PRIMARY KEY,
            run_id TEXT NOT NULL,
            ts_ms BIGINT NOT NULL,
            symbol TEXT NOT NULL,
            side TEXT NOT NULL,
            qty DOUBLE PRECISION NOT NULL,
            price DOUBLE PRECISION NOT NULL,
            status TEXT NOT NULL,
            reason TEXT NOT NULL,
            fill_price DOUBLE PRECISION,
            fee DOUBLE PRECISION NOT NULL)""",
        """CREATE TABLE trades (
            id TEXT PRIMARY KEY,
            run_id TEXT NOT NULL,
            symbol TEXT NOT NULL,
            side TEXT NOT NULL,
            qty DOUBLE PRECISION NOT NULL,
            entry_ts_ms BIGINT NOT NULL,
            exit_ts_ms BIGINT NOT NULL,
            entry_price DOUBLE PRECISION NOT NULL,
            exit_price DOUBLE PRECISION NOT NULL,
            pnl DOUBLE PRECISION NOT NULL,
            fees DOUBLE PRECISION NOT NULL,
            exit_reason TEXT NOT NULL)""",
        """CREATE TABLE positions (
            symbol TEXT NOT NULL,
            mode TEXT NOT NULL,
            qty DOUBLE PRECISION NOT NULL,
            entry_price DOUBLE PRECISION NOT NULL,
            entry_ts_ms BIGINT,
            stop_price DOUBLE PRECISION,
            take_profit DOUBLE PRECISION,
            run_id TEXT,
            updated_at_ms BIGINT NOT NULL,
            PRIMARY KEY (symbol, mode))""",
        """CREATE TABLE equity (
            run_id TEXT NOT NULL,
            ts_ms BIGINT NOT NULL,
            equity DOUBLE PRECISION NOT NULL,
            cash DOUBLE PRECISION NOT NULL,
            position_value DOUBLE PRECISION NOT NULL,
            drawdown DOUBLE PRECISION NOT NULL,
            PRIMARY KEY (run_id, ts_ms))""",
    )),
    Migration(2, "lookup indexes", (
        "CREATE INDEX runs_started_idx ON runs (started_at_ms)",
        "CREATE INDEX orders_run_idx ON orders (run_id, ts_ms)",
        "CREATE INDEX orders_open_idx ON orders (symbol, status)",
        "CREATE INDEX trades_run_idx ON trades (run_id, exit_ts_ms)",
    )),
    # The L3 cache tier and the neuromorphic layer's learned weights. Not part of TABLES:
    # backups carry the trading record, and a cache is rebuilt from it and the exchange.
    Migration(3, "cache tier and learned associations", (
        {"sqlite": """CREATE TABLE cache_entries (
            namespace TEXT NOT NULL,
            key TEXT NOT NULL,
            value BLOB NOT NULL,
            expires_at_ms BIGINT,
            updated_at_ms BIGINT NOT NULL,
            PRIMARY KEY (namespace, key))""",
         "postgresql": """CREATE TABLE cache_entries (
            namespace TEXT NOT NULL,
            key TEXT NOT NULL,
            value BYTEA NOT NULL,
            expires_at_ms BIGINT,
            updated_at_ms BIGINT NOT NULL,
            PRIMARY KEY (namespace, key))"""},
        "CREATE INDEX cache_entries_expiry_idx ON cache_entries (namespace, expires_at_ms)",
        """CREATE TABLE cache_associations (
            namespace TEXT NOT NULL,
            src TEXT NOT NULL,
            dst TEXT NOT NULL,
            weight DOUBLE PRECISION NOT NULL,
            updated_at_ms BIGINT NOT NULL,
            PRIMARY KEY (namespace, src, dst))""",
    )),
    # `supreme stats` results, kept with their run so `validate` and `report` read them.
    Migration(4, "statistics results", (
        """CREATE TABLE stats_results (
            run_id TEXT NOT NULL,
            kind TEXT NOT NULL,
            created_at_ms BIGINT NOT NULL,
            result_json TEXT NOT NULL,
            PRIMARY KEY (run_id, kind))""",
        "CREATE INDEX stats_results_created_idx ON stats_results (created_at_ms)",
    )),
)
CACHE_TABLES: tuple[str, ...] = ("cache_entries", "cache_associations")
LATEST_VERSION = MIGRATIONS[-1].version
