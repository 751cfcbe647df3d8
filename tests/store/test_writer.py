"""StoreWriter: off-thread batching, barrier, ordering, bounded queue, retry, SIGKILL."""

from __future__ import annotations

import dataclasses
import os
import selectors
import signal as signals
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import suppress
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest

from engine.errors import StoreError
from engine.store import Store, open_store
from engine.store.sqlite import SqliteStore
from engine.store.writer import StoreWriter

from . import BACKENDS, SYMBOL, equity, order, position, run_rec, signal, store_url, trade

REPO_ROOT = Path(__file__).resolve().parents[2]
FAST = {"flush_interval_s": 0.02, "retry_initial_s": 0.01, "retry_max_s": 0.05}


def wait_for(cond: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.01)
    return cond()


@pytest.fixture
def db(tmp_path: Path, data_dir: Path) -> Iterator[SqliteStore]:
    s = open_store(tmp_path / "w.db", data_dir)
    assert isinstance(s, SqliteStore)
    s.create_run(run_rec())
    yield s
    s.close()


class Outage:
    """A store factory that fails while `down` is set, like a database that is away."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.down = threading.Event()
        self.down.set()

    def __call__(self) -> Store:
        if self.down.is_set():
            raise StoreError("database down (test)")
        return SqliteStore(self.path)


def test_writes_off_the_calling_thread(db: SqliteStore) -> None:
    threads: list[int] = []

    def factory() -> Store:
        threads.append(threading.get_ident())
        return db.clone()

    with StoreWriter(factory, **FAST) as w:
        for i in range(1000):
            w.add_signal(signal("run-1", i))
            w.add_equity(equity("run-1", i))
        w.set_position(position(0.5))
        assert w.flush(5)
        assert w.healthy and w.last_error is None
        stats = w.stats
    assert threads and threading.get_ident() not in threads
    assert db.counts()["signals"] == db.counts()["equity"] == 1000
    assert db.load_position(SYMBOL, "paper") == position(0.5)
    assert stats.rows_written == 2001 and stats.queued == 0 and stats.errors == 0
    assert stats.batches >= 1 and stats.commit_seconds > 0


def test_barrier_commits_before_returning(db: SqliteStore) -> None:
    with StoreWriter(db.clone, flush_interval_s=5.0) as w:  # only the barrier wakes it
        for i in range(20):
            w.add_equity(equity("run-1", i))
            w.add_trade(trade("run-1", i))
            started = time.monotonic()
            assert w.barrier(5)
            assert time.monotonic() - started < 1.0
            assert [t.id for t in db.trades_for_run("run-1")][-1] == f"run-1-t{i}"
        assert w.barrier(0)  # nothing new: returns at once


def test_batches_keep_enqueue_order(db: SqliteStore) -> None:
    batches: list[dict[str, list[Any]]] = []

    class Recording(SqliteStore):
        def write_batch(self, **kw: Any) -> int:  # type: ignore[override]
            n = super().write_batch(**kw)
            batches.append(kw)
            return n

    enqueued: list[Any] = []
    with StoreWriter(lambda: Recording(db.path), max_batch=7, **FAST) as w:
        for i in range(200):
            rec: Any
            if i % 10 == 3:
                rec = order("run-1", i)
                w.add_order(rec)
            elif i % 10 == 7:
                rec = trade("run-1", i)
                w.add_trade(rec)
            elif i % 2:
                rec = signal("run-1", i)
                w.add_signal(rec)
            else:
                rec = equity("run-1", i)
                w.add_equity(rec)
            enqueued.append(rec)
            w.set_position(position(float(i)))
        assert w.flush(10)
    where = {id(r): n for n, b in enumerate(batches) for rows in b.values() for r in rows}
    assert len(where) == 200 + len([b for b in batches if b["positions"]])
    order_seen = [where[id(r)] for r in enqueued]
    assert order_seen == sorted(order_seen), "a later record was committed in an earlier batch"
    assert all(sum(len(v) for k, v in b.items() if k != "positions") <= 7 for b in batches)
    assert db.load_position(SYMBOL, "paper") == position(199.0)


def test_queue_bound_sheds_oldest_equity_never_trades(db: SqliteStore) -> None:
    outage = Outage(db.path)
    w = StoreWriter(outage, max_batch=1000, max_queue=50, **FAST)
    try:
        for i in range(40):
            w.add_equity(equity("run-1", i))
        for i in range(10):
            w.add_order(order("run-1", i))
            w.add_trade(trade("run-1", i))
        for i in range(40, 80):
            w.add_equity(equity("run-1", i))
        errors = w.stats.errors
        assert wait_for(lambda: w.stats.errors > errors)  # a failed retry since the last add
        assert not w.healthy and "database down" in (w.last_error or "")
        assert not w.barrier(0.1)
        stats = w.stats
        assert (stats.dropped_equity, stats.dropped_signals, stats.queued) == (50, 0, 50)
        assert stats.max_queue_depth >= 50

        outage.down.clear()
        assert w.flush(5) and w.healthy
    finally:
        w.close()
    assert len(db.trades_for_run("run-1")) == 10
    assert len(db.orders_for_run("run-1")) == 10
    assert db.equity_for_run("run-1") == [equity("run-1", i) for i in range(50, 80)]


def test_signals_shed_after_equity_and_trades_exceed_the_bound(db: SqliteStore) -> None:
    outage = Outage(db.path)
    w = StoreWriter(outage, max_queue=10, **FAST)
    try:
        for i in range(5):
            w.add_equity(equity("run-1", i))
        for i in range(10):
            w.add_signal(signal("run-1", i))
        for i in range(20):
            w.add_trade(trade("run-1", i))
        errors = w.stats.errors
        assert wait_for(lambda: w.stats.errors > errors)
        stats = w.stats
        assert (stats.dropped_equity, stats.dropped_signals, stats.queued) == (5, 10, 20)
        outage.down.clear()
        assert w.flush(5)
    finally:
        w.close()
    assert len(db.trades_for_run("run-1")) == 20


def test_retries_while_sqlite_is_locked(db: SqliteStore) -> None:
    w = StoreWriter(lambda: SqliteStore(db.path, busy_timeout_ms=20), **FAST)
    locker = sqlite3.connect(db.path, isolation_level=None)
    try:
        locker.execute("BEGIN EXCLUSIVE")
        w.add_trade(trade("run-1", 1))
        assert not w.barrier(0.3)
        assert not w.healthy and "locked" in (w.last_error or "")
        locker.execute("ROLLBACK")
        assert w.barrier(5) and w.healthy
        assert w.stats.errors >= 1
    finally:
        locker.close()
        w.close()
    assert [t.id for t in db.trades_for_run("run-1")] == ["run-1-t1"]


def test_close_flushes_and_refuses_more(db: SqliteStore) -> None:
    w = StoreWriter(db.clone, flush_interval_s=10.0)
    for i in range(100):
        w.add_equity(equity("run-1", i))
    assert w.close()
    assert w.close()
    assert db.counts()["equity"] == 100
    with pytest.raises(StoreError, match="closed"):
        w.add_trade(trade("run-1", 1))


def test_close_gives_up_when_the_database_stays_down(db: SqliteStore) -> None:
    w = StoreWriter(Outage(db.path), **FAST)
    w.add_trade(trade("run-1", 1))
    started = time.monotonic()
    assert not w.close(timeout=0.3)
    assert time.monotonic() - started < 3
    assert w.stats.queued == 1


def test_bad_limits_rejected(db: SqliteStore) -> None:
    with pytest.raises(StoreError):
        StoreWriter(db.clone, max_batch=0)


# --- PostgreSQL outage through a TCP proxy we can cut ---------------------------------


class TcpProxy:
    """Forwards 127.0.0.1:port to the real server; stop() cuts every connection."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = 0
        self._socks: list[socket.socket] = []
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None

    def start(self) -> None:
        ls = socket.socket()
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        ls.bind(("127.0.0.1", self.port))
        ls.listen(16)
        self.port = ls.getsockname()[1]
        self._listener = ls
        threading.Thread(target=self._accept, args=(ls,), daemon=True).start()

    def _accept(self, ls: socket.socket) -> None:
        while True:
            try:
                client, _ = ls.accept()
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                return  # listener closed by stop()
            client.settimeout(None)
            upstream.settimeout(None)
            with self._lock:
                self._socks += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        with suppress(OSError):
            while data := src.recv(65536):
                dst.sendall(data)
        for s in (src, dst):
            with suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)

    def stop(self) -> None:
        if self._listener is not None:
            with suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)
            self._listener.close()
        with self._lock:
            socks, self._socks = self._socks, []
        for s in socks:
            with suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()


@pytest.mark.postgres
def test_retries_across_a_postgres_outage(postgres_url: str, data_dir: Path) -> None:
    parts = urlsplit(postgres_url)
    proxy = TcpProxy((parts.hostname or "127.0.0.1", parts.port or 5432))
    proxy.start()
    netloc = parts.netloc.rsplit("@", 1)[0] + f"@127.0.0.1:{proxy.port}"
    proxied = urlunsplit(parts._replace(netloc=netloc))
    direct = open_store(postgres_url, data_dir)
    direct.create_run(run_rec())
    w = StoreWriter(lambda: open_store(proxied, data_dir, migrate=False), **FAST)
    try:
        w.add_trade(trade("run-1", 0))
        assert w.barrier(5)
        proxy.stop()
        w.add_trade(trade("run-1", 1))
        w.add_order(order("run-1", 1))
        w.set_position(position(0.25))
        assert not w.barrier(0.5)
        assert not w.healthy and w.last_error
        proxy.start()
        assert w.barrier(10) and w.healthy
        assert w.stats.errors >= 1
    finally:
        w.close()
        proxy.stop()
    assert [t.id for t in direct.trades_for_run("run-1")] == ["run-1-t0", "run-1-t1"]
    assert direct.orders_for_run("run-1") == [order("run-1", 1)]
    assert direct.load_position(SYMBOL, "paper") == position(0.25)
    direct.close()


# --- SIGKILL: nothing acknowledged by barrier() is ever lost ---------------------------

CHILD = r"""
import sys
from pathlib import Path
from engine.store import EquityRecord, RunRecord, SignalRecord, TradeRecord, open_store
from engine.store.writer import StoreWriter

store = open_store(sys.argv[1], Path(sys.argv[2]))
store.create_run(RunRecord("crash", "ETH/USDT", "replay", "paper", 0))
writer = StoreWriter(store.clone, flush_interval_s=0.01)
for i in range(1_000_000):
    for j in range(50):
        writer.add_signal(SignalRecord("crash", i * 50 + j, i, "none", False, "", 1.0))
        writer.add_equity(EquityRecord("crash", i * 50 + j, 1.0, 1.0, 0.0, 0.0))
    writer.add_trade(TradeRecord(f"t{i}", "crash", "ETH/USDT", "buy", 1.0, i, i + 1,
                                 1.0, 1.1, 0.1, 0.0, "take_profit"))
    if not writer.barrier(10):
        sys.exit(3)
    print(f"t{i}", flush=True)
"""


@pytest.mark.parametrize("backend", BACKENDS)
def test_sigkill_never_loses_an_acknowledged_trade(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path, data_dir: Path
) -> None:
    url = store_url(request, backend, tmp_path)
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", CHILD, url, str(data_dir)], cwd=REPO_ROOT,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    acked: list[str] = []
    assert proc.stdout is not None
    try:
        with selectors.DefaultSelector() as sel:
            sel.register(proc.stdout, selectors.EVENT_READ)
            deadline = time.monotonic() + 20
            while len(acked) < 150 and time.monotonic() < deadline and proc.poll() is None:
                if sel.select(timeout=0.5):
                    acked.append(proc.stdout.readline().strip())
        os.kill(proc.pid, signals.SIGKILL)
        rest, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    acked += rest.split()
    acked = [a for a in acked if a]
    assert proc.returncode == -signals.SIGKILL, err
    assert len(acked) >= 100, err
    with open_store(url, data_dir) as s:
        stored = {t.id for t in s.trades_for_run("crash")}
        assert set(acked) <= stored
        assert s.integrity_check() == "ok"


def test_records_are_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        trade("r", 1).pnl = 2.0  # type: ignore[misc]


def test_backpressure_waits_for_a_healthy_store_and_never_sheds(db: SqliteStore) -> None:
    writer = StoreWriter(db.clone, max_batch=100, max_queue=1_000, **FAST)
    try:
        for i in range(5_000):
            writer.add_equity(equity("run-1", i))
            if writer.backlogged:
                assert writer.wait_for_room(timeout=10)
                assert writer.stats.queued <= 100
        assert writer.close()
        stats = writer.stats
        assert stats.dropped_equity == 0
        assert stats.max_queue_depth <= 1_000
    finally:
        writer.close()
    assert db.counts()["equity"] == 5_000


def test_backpressure_does_not_block_on_a_failing_store(tmp_path: Path) -> None:
    outage = Outage(tmp_path / "down.db")
    writer = StoreWriter(outage, max_batch=10, max_queue=50, **FAST)
    try:
        for i in range(200):
            writer.add_equity(equity("run-1", i))
        assert wait_for(lambda: not writer.healthy)
        started = time.monotonic()
        assert writer.wait_for_room(timeout=5)
        assert time.monotonic() - started < 0.5
        assert writer.stats.dropped_equity > 0
    finally:
        writer.close(timeout=1)
