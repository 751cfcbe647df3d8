"""The engine's persistence: one schema on SQLite (the embedded default) or PostgreSQL.

`open_store` picks the backend from a URL or path and migrates the schema. psycopg is
imported only when a PostgreSQL URL is opened, so the SQLite path needs nothing beyond
the standard library.
"""

from __future__ import annotations

import os
from pathlib import Path

from engine.errors import StoreError
from engine.store.base import Store, redact_url
from engine.store.schema import (
    LATEST_VERSION,
    EquityRecord,
    OrderRecord,
    PositionRecord,
    RunRecord,
    SignalRecord,
    TradeRecord,
)
from engine.store.sqlite import SqliteStore

__all__ = [
    "LATEST_VERSION",
    "EquityRecord",
    "OrderRecord",
    "PositionRecord",
    "RunRecord",
    "SignalRecord",
    "Store",
    "TradeRecord",
    "open_store",
]

DEFAULT_DB_NAME = "supreme.db"


def _open(url_or_path: str | os.PathLike[str] | None, data_dir: Path) -> Store:
    text = "" if url_or_path is None else os.fspath(url_or_path).strip()
    if not text:
        return SqliteStore(Path(data_dir) / DEFAULT_DB_NAME)
    if text.startswith(("postgresql://", "postgres://")):
        try:
            from engine.store.postgres import PostgresStore
        except ImportError as exc:
            raise StoreError("a PostgreSQL store needs psycopg (pip install 'psycopg[binary]')"
                             ) from exc
        return PostgresStore(text)
    if text.startswith("sqlite:"):
        # sqlite:///abs/path.db -> /abs/path.db ; sqlite://rel.db -> rel.db
        path = text.removeprefix("sqlite:").removeprefix("//")
        if not path.strip("/"):
            raise StoreError(f"{text!r}: give the SQLite store a file path")
        return SqliteStore(path)
    if "://" in text:
        raise StoreError(f"unsupported store URL {redact_url(text)!r}: use a file path, "
                         "sqlite:///path or postgresql://...")
    return SqliteStore(text)


def open_store(url_or_path: str | os.PathLike[str] | None, data_dir: Path, *,
               migrate: bool = True) -> Store:
    """Open the store: None -> data_dir/supreme.db; a path or sqlite:///path -> SQLite;
    postgresql://... or postgres://... -> PostgreSQL. Migrates to the latest schema
    unless `migrate` is False."""
    store = _open(url_or_path, data_dir)
    if migrate:
        try:
            store.migrate()
        except BaseException:
            store.close()
            raise
    return store
