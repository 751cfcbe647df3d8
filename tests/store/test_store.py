"""The Store API on both backends: schema, runs, idempotent batches, positions, reads."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.errors import StoreError
from engine.store import (
    LATEST_VERSION,
    EquityRecord,
    OrderRecord,
    PositionRecord,
    SignalRecord,
    Store,
    TradeRecord,
    open_store,
)
from engine.store.base import redact_url
from engine.store.schema import COLUMNS

from . import (
    BACKENDS,
    SYMBOL,
    T0,
    equity,
    order,
    populate,
    position,
    run_rec,
    signal,
    store_url,
    trade,
)

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(params=BACKENDS)
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return store_url(request, request.param, tmp_path)


@pytest.fixture
def store(url: str, data_dir: Path) -> Iterator[Store]:
    s = open_store(url, data_dir)
    yield s
    s.close()


# --- opening -------------------------------------------------------------------------


def test_import_does_not_load_psycopg() -> None:
    code = "import sys, engine.store, engine.store.writer, engine.store.backup; " \
           "sys.exit('psycopg' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, timeout=30).returncode == 0


def test_default_store_is_sqlite_in_data_dir(data_dir: Path) -> None:
    with open_store(None, data_dir) as s:
        assert s.dialect == "sqlite"
        assert (data_dir / "supreme.db").is_file()
        assert s.url_redacted == f"sqlite://{data_dir / 'supreme.db'}"
        assert s.schema_version() == LATEST_VERSION


@pytest.mark.parametrize("form", ["path", "sqlite_url"])
def test_sqlite_path_forms(form: str, tmp_path: Path, data_dir: Path) -> None:
    path = tmp_path / "nested" / "dir" / "x.db"
    arg = str(path) if form == "path" else f"sqlite://{path}"
    with open_store(arg, data_dir) as s:
        assert s.integrity_check() == "ok"
    assert path.is_file()


@pytest.mark.parametrize("bad", ["sqlite://", "sqlite:///:memory:", "mysql://u:pw@h/db"])
def test_bad_urls_are_store_errors(bad: str, data_dir: Path) -> None:
    with pytest.raises(StoreError) as err:
        open_store(bad, data_dir)
    assert "pw" not in str(err.value)


def test_directory_is_not_a_store(tmp_path: Path, data_dir: Path) -> None:
    with pytest.raises(StoreError, match="directory"):
        open_store(str(tmp_path), data_dir)


def test_not_a_database_file(tmp_path: Path, data_dir: Path) -> None:
    bogus = tmp_path / "bogus.db"
    bogus.write_bytes(b"this is not a database at all" * 100)
    with pytest.raises(StoreError):
        open_store(str(bogus), data_dir)


def test_password_never_in_errors_or_repr(data_dir: Path) -> None:
    url = "postgresql://trader:s3cr3t-pw@127.0.0.1:1/db?password=s3cr3t-pw"
    assert "s3cr3t" not in redact_url(url)
    assert redact_url(url) == "postgresql://trader:***@127.0.0.1:1/db?password=***"
    with pytest.raises(StoreError) as err:
        open_store(url, data_dir)  # port 1: refused at once
    assert "s3cr3t" not in str(err.value)


def test_records_match_table_columns() -> None:
    for table, cls in [("signals", SignalRecord), ("orders", OrderRecord),
                       ("trades", TradeRecord), ("positions", PositionRecord),
                       ("equity", EquityRecord)]:
        names = (cls._fields if hasattr(cls, "_fields")
                 else tuple(f.name for f in dataclasses.fields(cls)))
        assert names == COLUMNS[table]


def test_records_reject_bad_enums() -> None:
    with pytest.raises(StoreError):
        SignalRecord("r", 1, 1, "hold", False, "", 1.0)
    with pytest.raises(StoreError):
        dataclasses.replace(order("r", 1), status="partial")
    with pytest.raises(StoreError):
        dataclasses.replace(run_rec(), status="done")


# --- schema --------------------------------------------------------------------------


def test_migrate_is_stepwise_and_idempotent(url: str, data_dir: Path) -> None:
    with open_store(url, data_dir, migrate=False) as s:
        assert s.schema_version() == 0
        assert s.migrate(1) == 1
        assert s.schema_version() == 1
        assert "schema version 1" in s.integrity_check()
        assert s.migrate() == LATEST_VERSION
        assert s.migrate() == LATEST_VERSION
        assert s.schema_version() == LATEST_VERSION
        assert s.integrity_check() == "ok"
    with open_store(url, data_dir) as again:  # re-opening migrates again: a no-op
        assert again.schema_version() == LATEST_VERSION
        with again._tx("t") as tx:
            assert tx.fetchall("SELECT COUNT(*) FROM schema_version")[0][0] == LATEST_VERSION


def test_newer_schema_is_refused(store: Store) -> None:
    with store._tx("t", write=True) as tx:
        tx.execute("INSERT INTO schema_version (version, name, applied_at_ms) VALUES (?, ?, ?)",
                   (LATEST_VERSION + 1, "from the future", 0))
    with pytest.raises(StoreError, match="newer"):
        store.migrate()


def test_concurrent_migrations_apply_each_step_once(url: str, data_dir: Path) -> None:
    stores = [open_store(url, data_dir, migrate=False) for _ in range(4)]
    errors: list[BaseException] = []

    def go(s: Store) -> None:
        try:
            s.migrate()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=go, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors
    assert stores[0].integrity_check() == "ok"
    for s in stores:
        s.close()


# --- runs ----------------------------------------------------------------------------


def test_runs_lifecycle(store: Store) -> None:
    assert store.get_run("nope") is None
    store.create_run(run_rec("a", started=T0))
    store.create_run(run_rec("a", started=T0))  # a retried create is a no-op
    store.create_run(run_rec("b", started=T0 + 10))
    store.create_run(run_rec("c", mode="live", started=T0 + 20))

    a = store.get_run("a")
    assert a == run_rec("a")
    assert a is not None and a.status == "running" and a.summary is None

    store.finish_run("a", "finished", T0 + 99, {"pnl": 1.5, "trades": 3, "tags": {"x"}})
    a = store.get_run("a")
    assert a is not None
    assert (a.status, a.ended_at_ms, a.summary) == ("finished", T0 + 99,
                                                    {"pnl": 1.5, "trades": 3, "tags": ["x"]})

    assert [r.id for r in store.list_runs()] == ["c", "b", "a"]
    assert [r.id for r in store.list_runs(limit=2)] == ["c", "b"]
    assert [r.id for r in store.list_runs(since_ms=T0 + 10)] == ["c", "b"]
    assert store.counts()["runs"] == 3

    with pytest.raises(StoreError, match="no run"):
        store.finish_run("missing", "failed", T0, None)
    with pytest.raises(StoreError, match="invalid run status"):
        store.finish_run("a", "done", T0, None)
    with pytest.raises(StoreError, match="JSON"):
        store.create_run(dataclasses.replace(run_rec("d"), config={"obj": object()}))


# --- batches -------------------------------------------------------------------------


def test_write_batch_is_idempotent(store: Store) -> None:
    store.create_run(run_rec())
    batch = {
        "signals": [signal("run-1", i) for i in range(50)],
        "orders": [order("run-1", i) for i in range(10)],
        "trades": [trade("run-1", i) for i in range(5)],
        "equity": [equity("run-1", i) for i in range(50)],
    }
    assert store.write_batch(**batch) == 115
    first = store.counts()
    store.write_batch(**batch)
    store.write_batch(signals=batch["signals"][:10], trades=batch["trades"][:1])
    assert store.counts() == first == {"runs": 1, "signals": 50, "orders": 10, "trades": 5,
                                       "positions": 0, "equity": 50}
    # Values come back exactly, booleans as booleans.
    assert store.signals_for_run("run-1") == batch["signals"]
    assert store.orders_for_run("run-1") == batch["orders"]
    assert store.trades_for_run("run-1") == batch["trades"]
    assert store.equity_for_run("run-1") == batch["equity"]
    assert all(type(s.fired) is bool for s in store.signals_for_run("run-1"))
    assert store.write_batch() == 0


def test_order_moves_forward_only(store: Store) -> None:
    store.create_run(run_rec("p", mode="paper"))
    store.create_run(run_rec("l", mode="live"))
    store.write_batch(orders=[order("p", 1, "open"), order("l", 1, "open")])
    assert [o.id for o in store.open_orders(SYMBOL)] == ["l-o1", "p-o1"]  # by ts, then id
    assert [o.id for o in store.open_orders(SYMBOL, "live")] == ["l-o1"]
    assert store.open_orders("BTC/USDT") == []

    store.write_batch(orders=[order("l", 1, "filled")])
    store.write_batch(orders=[order("l", 1, "open")])  # a stale replay must not reopen it
    (filled,) = store.orders_for_run("l")
    assert filled == order("l", 1, "filled")
    assert store.open_orders(SYMBOL, "live") == []


def test_positions_upsert_and_load(store: Store) -> None:
    assert store.load_position(SYMBOL, "paper") is None
    store.upsert_position(position(0.5))
    store.upsert_position(position(0.75))
    store.write_batch(positions=[position(1.0, mode="live")])
    assert store.load_position(SYMBOL, "paper") == position(0.75)
    assert store.load_position(SYMBOL, "live") == position(1.0, mode="live")
    flat = PositionRecord(SYMBOL, "paper", 0.0, 0.0, None, None, None, None, T0 + 9)
    store.upsert_position(flat)
    assert store.load_position(SYMBOL, "paper") == flat
    assert store.counts()["positions"] == 2


def test_counts_and_integrity(store: Store) -> None:
    assert set(store.counts().values()) == {0}
    populate(store)
    assert store.counts() == {"runs": 1, "signals": 30, "orders": 30, "trades": 15,
                              "positions": 1, "equity": 30}
    assert store.integrity_check() == "ok"


def test_store_shared_between_threads(store: Store) -> None:
    store.create_run(run_rec())

    def work(k: int) -> None:
        for i in range(20):
            store.write_batch(equity=[equity("run-1", k * 1000 + i)])
            store.counts()

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert store.counts()["equity"] == 80


def test_clone_is_an_independent_connection(store: Store) -> None:
    other = store.clone()
    try:
        other.create_run(run_rec("from-clone"))
        assert store.get_run("from-clone") is not None
        other.close()
        assert store.counts()["runs"] == 1  # closing a clone leaves the original usable
    finally:
        other.close()


def test_closed_store_raises(store: Store) -> None:
    store.close()
    store.close()
    assert store.closed
    with pytest.raises(StoreError, match="closed"):
        store.counts()
