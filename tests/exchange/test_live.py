"""`supreme run --feed exchange` in paper and live mode against a real FakeExchange.

Real ccxt talks HTTP to the fake on 127.0.0.1 (`--endpoint`); the fake replays its candles
quickly so a run sees a few new closed candles every ~0.05 s poll (INTERVAL_SECONDS=0.05).
A "fast" strategy (short periods, no filters) makes orders happen within a few dozen bars.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.store import PositionRecord, open_store
from engine.testing.fake_exchange import FakeExchange, ccxt_config
from supreme_cli.exit_codes import ExitCode
from tests.cli.helpers import Result, invoke

pytest.importorskip("ccxt")

BIN = Path(sys.executable).with_name("supreme")
ORDER = "/api/v3/order"
FAST = {"SUPREME_STRATEGY__EMA_FAST": "2", "SUPREME_STRATEGY__EMA_SLOW": "4",
        "SUPREME_STRATEGY__MACD_SIGNAL": "2", "SUPREME_STRATEGY__RSI_PERIOD": "2",
        "SUPREME_STRATEGY__RSI_MIN": "0", "SUPREME_STRATEGY__RSI_MAX": "100",
        "SUPREME_STRATEGY__RSI_EXIT": "100", "SUPREME_STRATEGY__MIN_STRENGTH_BPS": "0",
        "SUPREME_STRATEGY__COOLDOWN_BARS": "0"}
FLAT = {"USDT": 10_000, "ETH": 0}


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch, data_dir: Path) -> None:
    for var in ("NO_PROXY", "no_proxy"):
        monkeypatch.setenv(var, "127.0.0.1,localhost")
    monkeypatch.setenv("INTERVAL_SECONDS", "0.05")


@pytest.fixture
def fx() -> Iterator[FakeExchange]:
    with FakeExchange(start=-2000, ws_interval_s=0.02, balances=FLAT) as server:
        yield server


def keys(fx: FakeExchange) -> dict[str, str]:
    return {"EXCHANGE_API_KEY": fx.api_key, "EXCHANGE_SECRET": fx.api_secret}


def run_exchange(fx: FakeExchange, *args: str, env: dict[str, str] | None = None) -> Result:
    return invoke("run", "--feed", "exchange", "--endpoint", fx.base_url, *args, env=env)


def order_posts(fx: FakeExchange) -> list[str]:
    return [r.query.get("newClientOrderId", "") for r in fx.requests
            if r.path == ORDER and r.method == "POST"]


def db_dump(path: Path) -> str:
    con = sqlite3.connect(path)
    try:
        return "\n".join(con.iterdump())
    finally:
        con.close()


def stored_orders(path: Path) -> list[tuple[str, str, str]]:
    con = sqlite3.connect(path)
    try:
        return con.execute("SELECT id, status, side FROM orders ORDER BY ts_ms").fetchall()
    finally:
        con.close()


def eth(fx: FakeExchange) -> float:
    return fx.balances["ETH"]["free"] + fx.balances["ETH"]["locked"]


# --- refusals ----------------------------------------------------------------------------


def test_live_without_keys_exits_2_and_sends_nothing(fx: FakeExchange) -> None:
    r = run_exchange(fx, "--mode", "live", "--confirm-live", "--bars", "3")
    assert r.exit_code == ExitCode.USAGE
    assert "EXCHANGE_API_KEY" in r.stderr and "no order was sent" in r.stderr
    assert fx.requests == []


def test_live_without_confirmation_exits_2_and_sends_nothing(fx: FakeExchange) -> None:
    r = run_exchange(fx, "--mode", "live", "--bars", "3", "--json", env=keys(fx))
    assert r.exit_code == ExitCode.USAGE
    assert "--confirm-live" in r.json()["error"]["message"]
    assert fx.requests == []
    assert fx.api_secret not in r.stdout + r.stderr


def test_live_needs_the_exchange_feed(fx: FakeExchange) -> None:
    r = invoke("run", "--mode", "live", "--confirm-live", "--bars", "3", env=keys(fx))
    assert r.exit_code == ExitCode.USAGE
    assert "--feed exchange" in r.stderr


# --- paper --------------------------------------------------------------------------------


def test_paper_run_on_live_candles_keeps_secrets_out_of_everything(
        fx: FakeExchange, data_dir: Path) -> None:
    canary = {"EXCHANGE_API_KEY": "canaryKEY-4f1d9b27", "EXCHANGE_SECRET": "canarySECRET-8e2c"}
    r = run_exchange(fx, "--bars", "20", "--verbose", "--json", env=canary)
    assert r.exit_code == 0, r.stderr
    doc = r.json()
    assert (doc["bars"], doc["feed"], doc["mode"], doc["stopped_by"]) == (
        20, "exchange", "paper", "bars")
    assert doc["data"]["exchange"] == "binance" and doc["data"]["polls"] >= 2
    dump = db_dump(data_dir / "supreme.db")
    for secret in canary.values():
        assert secret not in r.stdout and secret not in r.stderr and secret not in dump
    # paper mode reads public market data only: nothing signed, no order
    assert not [q for q in fx.requests if q.path in (ORDER, "/api/v3/account")]


def test_paper_exchange_runs_resume_and_keep_their_open_position(fx: FakeExchange,
                                                                  data_dir: Path) -> None:
    with open_store(None, data_dir) as store:
        store.migrate()
        store.upsert_position(PositionRecord("ETH-USDT", "paper", 0.5, 1990.0,
                                             1_700_000_000_000, 1.0, 1e6, "paperrun0000-3",
                                             1_700_000_000_000))
    r = run_exchange(fx, "--bars", "3", "--json")
    assert r.exit_code == 0, r.stderr
    assert "resumed open position: 0.5 ETH-USDT at 1990" in r.stderr
    doc = r.json()
    assert doc["trades"] == 0  # not closed at the end: the next start resumes it
    with open_store(None, data_dir) as store:
        pos = store.load_position("ETH-USDT", "paper")
    assert pos is not None and (pos.qty, pos.run_id) == (0.5, "paperrun0000-3")


# --- live ---------------------------------------------------------------------------------


def test_live_orders_carry_client_ids_and_match_the_store(fx: FakeExchange,
                                                          data_dir: Path) -> None:
    r = run_exchange(fx, "--mode", "live", "--confirm-live", "--bars", "60", "--json",
                     env={**keys(fx), **FAST})
    assert r.exit_code == 0, r.stderr
    doc = r.json()
    prefix = doc["run_id"][:12] + "-"
    server = [o["clientOrderId"] for o in fx.orders]
    assert doc["live"]["orders_sent"] == len(server) >= 2
    assert all(cid.startswith(prefix) for cid in server)
    posts = order_posts(fx)
    assert len(posts) == len(set(posts)) == len(server)
    stored = stored_orders(data_dir / "supreme.db")
    assert {oid for oid, _, _ in stored} == set(server)
    assert {status for _, status, _ in stored} == {"filled"}
    with open_store(None, data_dir) as store:
        pos = store.load_position("ETH-USDT", "live")
    assert pos is not None
    assert pos.qty == pytest.approx(eth(fx), abs=0.002)  # dust below the lot step aside
    dump = db_dump(data_dir / "supreme.db")
    for secret in (fx.api_key, fx.api_secret):
        assert secret not in r.stdout + r.stderr and secret not in dump


def test_reconciliation_adopts_the_exchanges_position_and_open_order(data_dir: Path) -> None:
    with FakeExchange(start=-500, ws_interval_s=0.02,
                      balances={"USDT": 10_000, "ETH": 0.5}) as fx:
        import ccxt

        client = ccxt.binance(ccxt_config(fx, timeout=2_000))
        client.load_markets()
        client.create_order("ETH/USDT", "limit", "buy", 0.01, 1000.0,
                            {"clientOrderId": "manual-1"})
        client.close()
        with open_store(None, data_dir) as store:
            store.migrate()
            store.upsert_position(PositionRecord(
                "ETH-USDT", "live", 1.0, 1990.0, 1_700_000_000_000, 1000.0, 9000.0,
                "oldrun00000-7", 1_700_000_000_000))
        fx.clear_requests()
        r = run_exchange(fx, "--mode", "live", "--confirm-live", "--bars", "3", "--json",
                         env=keys(fx))
        assert r.exit_code == 0, r.stderr
        manual = next(o for o in fx.orders if o["clientOrderId"] == "manual-1")
        posts = order_posts(fx)
    doc = r.json()
    assert "open order" in r.stderr and "adopted" in r.stderr
    assert "the store holds 1 ETH but the exchange holds 0.5" in r.stderr
    assert doc["live"]["open_orders_adopted"] == 1
    assert manual["status"] == "NEW"  # adopted, not cancelled
    assert posts == []  # three bars of a warming-up strategy: no order
    # the account's truth: 0.5 ETH plus 10,000 USDT (10 of them locked in the bid)
    # (the generated market trades near 2,000)
    assert doc["starting_equity"] == pytest.approx(10_000 + 0.5 * 2_000, rel=0.05)
    with open_store(None, data_dir) as store:
        pos = store.load_position("ETH-USDT", "live")
    assert pos is not None
    assert pos.qty == pytest.approx(0.5)
    assert (pos.run_id, pos.stop_price, pos.take_profit) == ("oldrun00000-7", 1000.0, 9000.0)


CHILD_TIMEOUT_S = 30


def test_restart_after_sigkill_resumes_without_duplicate_orders(fx: FakeExchange,
                                                                data_dir: Path) -> None:
    env = {**os.environ, **keys(fx), **FAST, "SUPREME_DATA_DIR": str(data_dir),
           "INTERVAL_SECONDS": "0.05"}
    proc = subprocess.Popen(
        [str(BIN), "run", "--feed", "exchange", "--endpoint", fx.base_url, "--mode", "live",
         "--confirm-live", "--duration", "60s", "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.monotonic() + CHILD_TIMEOUT_S
        while time.monotonic() < deadline and proc.poll() is None:
            orders = fx.orders
            if len(orders) >= 3 and orders[-1]["side"] == "BUY":
                break
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    before = [o["clientOrderId"] for o in fx.orders]
    assert len(before) >= 3, "the killed run placed too few orders"

    r = run_exchange(fx, "--mode", "live", "--confirm-live", "--bars", "15", "--json",
                     env={**keys(fx), **FAST})
    assert r.exit_code == 0, r.stderr
    after = [o["clientOrderId"] for o in fx.orders]
    assert after[:len(before)] == before
    posts = order_posts(fx)
    assert len(posts) == len(set(posts)) == len(after), "an order was sent twice"
    stored = stored_orders(data_dir / "supreme.db")
    ids = [oid for oid, _, _ in stored]
    assert len(ids) == len(set(ids))
    assert set(after) <= set(ids), "an order on the exchange is missing from the store"
    assert "open" not in {status for _, status, _ in stored}
    if eth(fx) * 1900 > 10:
        assert "resumed open position" in r.stderr or "adopt" in r.stderr
    with open_store(None, data_dir) as store:
        pos = store.load_position("ETH-USDT", "live")
        runs = store.list_runs()
    assert pos is not None and pos.qty == pytest.approx(eth(fx), abs=0.002)
    assert {run.status for run in runs} == {"running", "finished"}  # the killed one, this one
    assert json.loads(r.stdout)["live"]["orders_sent"] == len(after) - len(before)


def test_orders_journaled_before_a_crash_are_settled_not_resent(data_dir: Path) -> None:
    """A crash between journaling an order (committed `open`) and storing its fill: the
    restart looks each one up by client id and records what the exchange did."""
    from engine.store import OrderRecord, RunRecord

    with FakeExchange(start=-500, ws_interval_s=0.02, balances=FLAT) as fx:
        import ccxt

        client = ccxt.binance(ccxt_config(fx, timeout=2_000))
        client.load_markets()
        client.create_order("ETH/USDT", "market", "buy", 0.25, None,
                            {"clientOrderId": "crashed00000-1"})
        client.close()
        with open_store(None, data_dir) as store:
            store.migrate()
            store.create_run(RunRecord("crashed00000aaaa", "ETH-USDT", "exchange", "live",
                                       1_700_000_000_000))
            store.write_batch(orders=[
                OrderRecord("crashed00000-1", "crashed00000aaaa", 1_700_000_000_000,
                            "ETH-USDT", "buy", 0.25, 2000.0, "open", "macd_cross_up"),
                OrderRecord("crashed00000-2", "crashed00000aaaa", 1_700_000_000_001,
                            "ETH-USDT", "sell", 0.25, 2000.0, "open", "macd_cross_down")])
        fx.clear_requests()
        r = run_exchange(fx, "--mode", "live", "--confirm-live", "--bars", "2", "--json",
                         env=keys(fx))
        assert r.exit_code == 0, r.stderr
        posts = order_posts(fx)
        held = eth(fx)
    assert posts == []
    assert "crashed00000-1 was filled before the restart" in r.stderr
    assert "crashed00000-2 was journaled but never reached the exchange" in r.stderr
    status = {oid: st for oid, st, _ in stored_orders(data_dir / "supreme.db")}
    assert status == {"crashed00000-1": "filled", "crashed00000-2": "rejected"}
    with open_store(None, data_dir) as store:
        pos = store.load_position("ETH-USDT", "live")
    assert pos is not None and pos.run_id == "crashed00000-1"
    assert pos.qty == pytest.approx(held) == pytest.approx(0.25 * 0.999)


def test_live_broker_fills_stops_and_rejections_against_the_exchange() -> None:
    from engine.broker.live import LiveBroker
    from engine.broker.paper import PendingOrder
    from engine.exchange.adapter import ExchangeAdapter, ExchangeSpec
    from engine.exchange.policy import RetryPolicy

    with FakeExchange(start=-100, ws_interval_s=None, autoplay=False, balances=FLAT) as fx, \
            ExchangeAdapter(ExchangeSpec(timeout_s=2.0, overrides=ccxt_config(fx)),
                            RetryPolicy(max_attempts=2, base_s=0.01, cap_s=0.02)) as adapter:
        warnings: list[str] = []
        journal: list[str] = []
        broker = LiveBroker(adapter, "ETH-USDT", warn=warnings.append, run_id="abcdef123456",
                            before_send=lambda oid, *rest: journal.append(oid))
        assert broker.reconcile(None, []) == []
        price = broker.last_price
        assert broker.cash == 10_000 and broker.qty == 0.0 and warnings == []

        broker.submit(PendingOrder("abcdef123456-1", "buy", 1.0, "macd_cross_up",
                                   price * 0.99, price * 1.02))
        fills, rejections = broker.take_reports()
        assert rejections == [] and len(fills) == 1
        fill, trade = fills[0]
        assert trade is None and fill.price == pytest.approx(price)
        assert fill.qty == pytest.approx(0.999)  # the 0.1 % fee is taken in ETH
        assert broker.qty == pytest.approx(eth(fx))
        assert broker.cash == pytest.approx(fx.balances["USDT"]["free"])

        # a candle touching the stop closes the position with a market sell "<entry>-sl"
        _, _, exit_fill, exit_trade = broker.on_bar(1, price, price, price * 0.98)
        assert exit_fill is not None and exit_trade is not None
        assert exit_fill.order_id == "abcdef123456-1-sl" and exit_trade.exit_reason == "stop_loss"
        assert broker.qty == 0.0
        assert [o["clientOrderId"] for o in fx.orders] == ["abcdef123456-1",
                                                           "abcdef123456-1-sl"]
        assert journal == ["abcdef123456-1", "abcdef123456-1-sl"]

        # the exchange failing the order: reported as rejected, balance re-read, run goes on
        fx.faults.set(kind="503", path=ORDER, method="POST")
        broker.submit(PendingOrder("abcdef123456-2", "buy", 1.0, "macd_cross_up"))
        fills, rejections = broker.take_reports()
        assert fills == [] and [r.order_id for r in rejections] == ["abcdef123456-2"]
        assert any("abcdef123456-2" in w and "failed" in w for w in warnings)
        assert broker.qty == 0.0 and broker.cash == pytest.approx(fx.balances["USDT"]["free"])
