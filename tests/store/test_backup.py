"""Backups and restores: round trips on each backend, across backends, and bad files."""

from __future__ import annotations

import gzip
import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.errors import StoreError
from engine.store import Store, open_store
from engine.store.backup import GZIP_MAGIC, SQLITE_MAGIC, backup, restore
from engine.store.writer import StoreWriter

from . import equity, populate, snapshot, trade


@pytest.fixture
def sqlite_store(tmp_path: Path, data_dir: Path) -> Iterator[Store]:
    s = open_store(tmp_path / "src.db", data_dir)
    yield s
    s.close()


@pytest.fixture
def fresh_sqlite(tmp_path: Path, data_dir: Path) -> Iterator[Store]:
    s = open_store(tmp_path / "dst.db", data_dir)
    yield s
    s.close()


@pytest.fixture
def pg_store(postgres_url: str, data_dir: Path) -> Iterator[Store]:
    s = open_store(postgres_url, data_dir)
    yield s
    s.close()


@pytest.fixture
def fresh_pg(postgres_base_url: str, data_dir: Path) -> Iterator[Store]:
    """A second PostgreSQL store in its own throwaway schema."""
    import psycopg

    schema = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_base_url, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    sep = "&" if "?" in postgres_base_url else "?"
    s = open_store(f"{postgres_base_url}{sep}options=-csearch_path%3D{schema}", data_dir)
    try:
        yield s
    finally:
        s.close()
        with psycopg.connect(postgres_base_url, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


def _fill(store: Store) -> dict[str, object]:
    populate(store, "run-1")
    populate(store, "run-2", n=12)
    return snapshot(store)


def test_sqlite_backup_round_trip(sqlite_store: Store, fresh_sqlite: Store,
                                  tmp_path: Path) -> None:
    before = _fill(sqlite_store)
    target = tmp_path / "backups" / "b.sqlite"
    info = backup(sqlite_store, target)
    assert target.read_bytes()[:16] == SQLITE_MAGIC
    assert (info.kind, info.rows["trades"]) == ("sqlite", 21)
    assert not list(target.parent.glob("*.partial"))

    assert restore(fresh_sqlite, target).rows == info.rows
    assert snapshot(fresh_sqlite) == before
    restore(fresh_sqlite, target)  # a second restore changes nothing
    assert snapshot(fresh_sqlite) == before
    assert fresh_sqlite.integrity_check() == "ok"


def test_sqlite_backup_while_the_writer_runs(sqlite_store: Store, fresh_sqlite: Store,
                                             tmp_path: Path) -> None:
    populate(sqlite_store)
    with StoreWriter(sqlite_store.clone, flush_interval_s=0.01) as w:
        for i in range(2000):
            w.add_equity(equity("run-1", 1000 + i))
            if i == 1000:
                info = backup(sqlite_store, tmp_path / "live.sqlite")
    restore(fresh_sqlite, tmp_path / "live.sqlite")
    assert fresh_sqlite.counts() == info.rows  # one consistent snapshot
    assert fresh_sqlite.integrity_check() == "ok"


def test_portable_dump_from_sqlite(sqlite_store: Store, fresh_sqlite: Store,
                                   tmp_path: Path) -> None:
    before = _fill(sqlite_store)
    info = backup(sqlite_store, tmp_path / "b.jsonl.gz", portable=True)
    assert (tmp_path / "b.jsonl.gz").read_bytes()[:2] == GZIP_MAGIC
    assert info.kind == "dump"
    restore(fresh_sqlite, tmp_path / "b.jsonl.gz")
    assert snapshot(fresh_sqlite) == before


@pytest.mark.postgres
def test_postgres_dump_round_trip(pg_store: Store, fresh_pg: Store, tmp_path: Path) -> None:
    before = _fill(pg_store)
    info = backup(pg_store, tmp_path / "pg.dump")
    assert info.kind == "dump" and info.rows == before["counts"]
    restore(fresh_pg, tmp_path / "pg.dump")
    restore(fresh_pg, tmp_path / "pg.dump")
    assert snapshot(fresh_pg) == before
    assert fresh_pg.integrity_check() == "ok"


@pytest.mark.postgres
def test_cross_backend_restores(pg_store: Store, sqlite_store: Store, fresh_pg: Store,
                                fresh_sqlite: Store, tmp_path: Path) -> None:
    from_pg = _fill(pg_store)
    backup(pg_store, tmp_path / "pg.dump")
    restore(fresh_sqlite, tmp_path / "pg.dump")
    assert snapshot(fresh_sqlite) == from_pg

    from_sqlite = _fill(sqlite_store)
    backup(sqlite_store, tmp_path / "lite.sqlite")
    restore(fresh_pg, tmp_path / "lite.sqlite")  # booleans stored as 0/1 must become bool
    assert snapshot(fresh_pg) == from_sqlite


def test_restore_merges_into_an_existing_store(sqlite_store: Store, fresh_sqlite: Store,
                                               tmp_path: Path) -> None:
    populate(sqlite_store, "run-1")
    backup(sqlite_store, tmp_path / "b.sqlite")
    populate(fresh_sqlite, "run-9", n=6)
    fresh_sqlite.write_batch(trades=[trade("run-1", 0)])  # already there: kept, not doubled
    restore(fresh_sqlite, tmp_path / "b.sqlite")
    assert {r.id for r in fresh_sqlite.list_runs()} == {"run-1", "run-9"}
    assert fresh_sqlite.counts()["trades"] == 15 + 3


def _dump_lines(path: Path) -> list[str]:
    with gzip.open(path, "rt") as fh:
        return fh.read().splitlines()


def _write_dump(path: Path, lines: list[str]) -> None:
    with gzip.open(path, "wt") as fh:
        fh.write("\n".join(lines) + "\n")


@pytest.mark.parametrize("damage", [
    "missing", "empty", "random", "sqlite_garbage", "gzip_truncated", "gzip_garbage",
    "not_json", "bad_header", "no_end", "short_row", "wrong_counts", "future_version",
    "unknown_table",
])
def test_bad_backup_files_raise_store_error(damage: str, sqlite_store: Store,
                                            fresh_sqlite: Store, tmp_path: Path) -> None:
    populate(sqlite_store)
    good = tmp_path / "good.dump"
    backup(sqlite_store, good, portable=True)
    lines = _dump_lines(good)
    bad = tmp_path / "bad"
    if damage == "empty":
        bad.write_bytes(b"")
    elif damage == "random":
        bad.write_bytes(b"\x00garbage" * 100)
    elif damage == "sqlite_garbage":
        bad.write_bytes(SQLITE_MAGIC + b"\xff" * 4096)
    elif damage == "gzip_truncated":
        bad.write_bytes(good.read_bytes()[:-200])
    elif damage == "gzip_garbage":
        bad.write_bytes(GZIP_MAGIC + b"\x08\x00" + b"\x13" * 500)
    elif damage == "not_json":
        _write_dump(bad, [lines[0], lines[1], "{not json"])
    elif damage == "bad_header":
        _write_dump(bad, [json.dumps({"format": "other"}), *lines[1:]])
    elif damage == "no_end":
        _write_dump(bad, lines[:-1])
    elif damage == "short_row":
        _write_dump(bad, [*lines[:2], "[1, 2]", *lines[2:]])
    elif damage == "wrong_counts":
        _write_dump(bad, [*lines[:2], lines[2], *lines[2:]])
    elif damage == "future_version":
        header = json.loads(lines[0]) | {"schema_version": 999}
        _write_dump(bad, [json.dumps(header), *lines[1:]])
    elif damage == "unknown_table":
        _write_dump(bad, [lines[0], json.dumps({"table": "users", "columns": ["id"]}),
                          *lines[1:]])
    with pytest.raises(StoreError):
        restore(fresh_sqlite, bad)
    # All or nothing: a dump that breaks half-way leaves no rows behind.
    assert set(fresh_sqlite.counts().values()) == {0}


def test_backup_of_unmigrated_store_is_refused(tmp_path: Path, data_dir: Path) -> None:
    with open_store(tmp_path / "empty.db", data_dir, migrate=False) as s, \
            pytest.raises(StoreError, match="no schema"):
        backup(s, tmp_path / "x.dump", portable=True)
    assert not (tmp_path / "x.dump").exists()
