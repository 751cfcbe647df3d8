"""The fake Binance spot exchange against real ccxt: sync, async and ccxt.pro websockets.

Every test starts its own server on 127.0.0.1 (a few ms with generated candles); real-data
tests load each candle file once per module.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import urllib.request
from decimal import ROUND_UP, Decimal
from pathlib import Path
from typing import Any

import pytest

from engine.feeds.replay import Series, load_series
from engine.testing.fake_exchange import (
    DEFAULT_API_KEY,
    ERRORS,
    FakeExchange,
    ccxt_config,
)

ccxt = pytest.importorskip("ccxt")
accxt = pytest.importorskip("ccxt.async_support")
ccxtpro = pytest.importorskip("ccxt.pro")

SYMBOL = "ETH/USDT"
REPO = Path(__file__).resolve().parents[2]




def sync_ex(fx: FakeExchange, **extra: Any) -> Any:
    extra.setdefault("timeout", 3_000)
    return ccxt.binance(ccxt_config(fx, **extra))


@pytest.fixture(scope="module")
def eth_1m(shared_data: Path) -> Series:
    return load_series(shared_data / "ETH_USDT-1m.json")


# --- public REST ---------------------------------------------------------------------


def test_markets_time_and_urls(fx: FakeExchange) -> None:
    ex = sync_ex(fx)
    markets = ex.load_markets()
    assert list(markets) == [SYMBOL]
    m = markets[SYMBOL]
    assert m["id"] == "ETHUSDT" and m["spot"] and m["active"]
    assert m["precision"]["price"] == 0.01 and m["precision"]["amount"] == 0.0001
    assert m["limits"]["cost"]["min"] == 5.0
    before = fx.server_time_ms()
    assert before - 50 <= ex.fetch_time() <= fx.server_time_ms() + 50
    paths = [r.path for r in fx.requests]
    assert paths == ["/api/v3/exchangeInfo", "/api/v3/time"]
    # every other REST/ws base points at the fake, never at binance.com
    cfg = ccxt_config(fx)
    assert all("127.0.0.1" in str(u) for u in cfg["urls"]["api"].values())
    assert cfg["urls"]["api"]["ws"]["spot"] == fx.ws_url
    merged = ccxt_config(fx, keys=False, timeout=1_234, options={"recvWindow": 5_000})
    assert "apiKey" not in merged and merged["timeout"] == 1_234
    assert merged["options"]["recvWindow"] == 5_000
    assert merged["options"]["fetchMarkets"] == {"types": ["spot"]}


def test_ohlcv_paging_generated(fx: FakeExchange) -> None:
    ex = sync_ex(fx)
    first = fx.candle(0)
    got: list[list[float]] = []
    since = first.ts
    for _ in range(5):  # 3,000 candles at 1,000 a page, bounded
        page = ex.fetch_ohlcv(SYMBOL, "1m", since=since, limit=1000)
        if not page:
            break
        got.extend(page)
        since = page[-1][0] + 60_000
    assert len(got) == fx.n_candles == 3_000
    assert [row[0] for row in got] == [fx.candle(i).ts for i in range(fx.n_candles)]
    assert got[123] == list(fx.candle(123))
    # no since: the last `limit` candles ending at the current candle; limit capped at 1000
    tail = ex.fetch_ohlcv(SYMBOL, "1m", limit=5)
    assert [r[0] for r in tail] == [fx.candle(i).ts for i in range(2_995, 3_000)]
    assert len(ex.public_get_klines({"symbol": "ETHUSDT", "interval": "1m",
                                     "limit": 5000})) == 1000
    assert len(ex.public_get_klines({"symbol": "ETHUSDT", "interval": "1m"})) == 500
    row = ex.public_get_klines({"symbol": "ETHUSDT", "interval": "1m", "limit": 1})[0]
    assert len(row) == 12 and row[6] == row[0] + 59_999
    # startTime + endTime window
    window = ex.public_get_klines({"symbol": "ETHUSDT", "interval": "1m",
                                   "startTime": fx.candle(10).ts,
                                   "endTime": fx.candle(14).ts})
    assert [r[0] for r in window] == [fx.candle(i).ts for i in range(10, 15)]
    with pytest.raises(ccxt.BadRequest, match="-1120"):
        ex.fetch_ohlcv(SYMBOL, "5m")


@pytest.mark.realdata
def test_ohlcv_paging_real_file_with_gap(eth_1m: Series) -> None:
    assert eth_1m.gaps, "the file's known gap"
    gap = eth_1m.gaps[0]
    i_after = eth_1m.ts.index(gap.to_ts)
    with FakeExchange(eth_1m, ws_interval_s=None) as fx:
        ex = sync_ex(fx)
        since = eth_1m.ts[i_after - 600]
        got: list[list[float]] = []
        for _ in range(3):
            page = ex.fetch_ohlcv(SYMBOL, "1m", since=since, limit=500)
            got.extend(page)
            since = page[-1][0] + 60_000
        assert len(got) == 1_500
        # served exactly as in the file, the gap bridged as Binance would: no invented bars
        assert [r[0] for r in got] == list(eth_1m.ts[i_after - 600:i_after + 900])
        assert got[600] == list(eth_1m[i_after])
        last = ex.fetch_ohlcv(SYMBOL, "1m", limit=1)[0]
        assert last == list(eth_1m[len(eth_1m) - 1])
        assert fx.now_ms == eth_1m.ts[-1] + 60_000


@pytest.mark.realdata
def test_binance_dump_zip_and_5m_file(shared_data: Path) -> None:
    with FakeExchange(shared_data / "ETHUSDT-1m-2022-08-14.zip", ws_interval_s=None) as fx:
        ex = sync_ex(fx)
        day = ex.fetch_ohlcv(SYMBOL, "1m", since=fx.candle(0).ts, limit=1000)
        day += ex.fetch_ohlcv(SYMBOL, "1m", since=day[-1][0] + 60_000, limit=1000)
        assert len(day) == 1_440 and day[-1][0] - day[0][0] == 1_439 * 60_000
    with FakeExchange(shared_data / "ETH_USDT-5m.json", ws_interval_s=None) as fx:
        ex = sync_ex(fx)
        rows = ex.fetch_ohlcv(SYMBOL, "5m", limit=3)
        assert [r[0] for r in rows] == [fx.candle(fx.n_candles - k).ts for k in (3, 2, 1)]
        with pytest.raises(ccxt.BadRequest):
            ex.fetch_ohlcv(SYMBOL, "1m", limit=3)


def test_retime_serves_fresh_candles() -> None:
    with FakeExchange(retime=True, ws_interval_s=None) as fx:
        ex = sync_ex(fx)
        wall = time.time() * 1000
        last = ex.fetch_ohlcv(SYMBOL, "1m", limit=1)[0]
        assert last == list(fx.candle(fx.n_candles - 1))
        assert fx.now_ms == last[0] + 60_000 and wall - 60_000 <= fx.now_ms <= wall + 1
        assert fx.ts_shift_ms > 0
        rows = ex.fetch_ohlcv(SYMBOL, "1m", since=fx.candle(7).ts, limit=2)
        assert [r[0] for r in rows] == [fx.candle(7).ts, fx.candle(8).ts]


def test_ticker_order_book_and_bad_symbol(fx: FakeExchange) -> None:
    ex = sync_ex(fx)
    last = fx.candle(fx.n_candles - 1)
    t = ex.fetch_ticker(SYMBOL)
    assert t["last"] == last.close and t["bid"] == last.close
    assert t["ask"] == pytest.approx(last.close + 0.01)
    day = [fx.candle(i) for i in range(fx.n_candles - 1440, fx.n_candles)]
    assert t["high"] == max(b.high for b in day) and t["low"] == min(b.low for b in day)
    assert t["baseVolume"] == pytest.approx(sum(b.volume for b in day))
    book = ex.fetch_order_book(SYMBOL, 20)
    assert len(book["bids"]) == len(book["asks"]) == 20
    assert book["bids"][0][0] < book["asks"][0][0]
    assert book["bids"][0][0] == last.close
    assert ex.public_get_ticker_price({"symbol": "ETHUSDT"})["price"] == f"{last.close:.8f}"
    for call in (lambda: ex.public_get_ticker_24hr({"symbol": "BTCUSDT"}),
                 lambda: ex.public_get_klines({"symbol": "BTCUSDT", "interval": "1m"}),
                 lambda: ex.public_get_depth({"symbol": "NOPE"}),
                 lambda: ex.public_get_exchangeinfo({"symbol": "BTCUSDT"})):
        with pytest.raises(ccxt.BadSymbol, match="-1121"):
            call()


# --- signed REST -----------------------------------------------------------------------


def test_account_orders_and_idempotency_errors(fx: FakeExchange) -> None:
    ex = sync_ex(fx)
    ex.load_markets()
    bal = ex.fetch_balance()
    assert bal["total"]["USDT"] == 10_000 and bal["total"]["ETH"] == 5
    price = fx.candle(fx.n_candles - 1).close
    order = ex.create_order(SYMBOL, "market", "buy", 0.5, params={"clientOrderId": "cid-1"})
    assert order["clientOrderId"] == "cid-1" and order["status"] == "closed"
    assert order["filled"] == 0.5 and order["average"] == price
    assert order["fee"] == {"currency": "ETH", "cost": 0.0005}
    bal = fx.balances
    assert bal["USDT"]["free"] == pytest.approx(10_000 - 0.5 * price)
    assert bal["ETH"]["free"] == pytest.approx(5.4995)
    by_cid = ex.fetch_order(None, SYMBOL, params={"clientOrderId": "cid-1"})
    assert by_cid["id"] == order["id"] and by_cid["status"] == "closed"
    with pytest.raises(ccxt.InvalidOrder, match="Duplicate order sent"):
        ex.create_order(SYMBOL, "market", "buy", 0.5, params={"clientOrderId": "cid-1"})
    with pytest.raises(ccxt.InsufficientFunds):
        ex.create_order(SYMBOL, "market", "buy", 100)
    with pytest.raises(ccxt.InvalidOrder, match="LOT_SIZE"):
        ex.private_post_order({"symbol": "ETHUSDT", "side": "BUY", "type": "MARKET",
                               "quantity": "0.00001"})
    limit = ex.create_order(SYMBOL, "limit", "buy", 0.1, 1000, params={"clientOrderId": "l-1"})
    assert limit["status"] == "open"
    assert fx.balances["USDT"]["locked"] == pytest.approx(100)
    assert [o["id"] for o in ex.fetch_open_orders(SYMBOL)] == [limit["id"]]
    canceled = ex.cancel_order(limit["id"], SYMBOL)
    assert canceled["status"] == "canceled" and fx.balances["USDT"]["locked"] == 0
    assert ex.fetch_open_orders(SYMBOL) == []
    with pytest.raises(ccxt.OrderNotFound, match="-2011"):
        ex.cancel_order(limit["id"], SYMBOL)
    with pytest.raises(ccxt.OrderNotFound, match="-2013"):
        ex.fetch_order("424242", SYMBOL)
    trades = ex.fetch_my_trades(SYMBOL)
    assert [t["order"] for t in trades] == [order["id"]]
    sell = ex.create_order(SYMBOL, "market", "sell", 1.0)
    assert sell["status"] == "closed" and sell["fee"]["currency"] == "USDT"
    assert [o["clientOrderId"] for o in fx.orders][:2] == ["cid-1", "l-1"]


def test_duplicate_policy_open_mimics_binance() -> None:
    with FakeExchange(ws_interval_s=None, reject_duplicate="open") as fx:
        ex = sync_ex(fx)
        ex.load_markets()
        a = ex.create_order(SYMBOL, "market", "buy", 0.01, params={"clientOrderId": "same"})
        b = ex.create_order(SYMBOL, "market", "buy", 0.01, params={"clientOrderId": "same"})
        assert a["id"] != b["id"]  # a filled order's client id may be reused
        ex.create_order(SYMBOL, "limit", "buy", 0.01, 1000, params={"clientOrderId": "rest"})
        with pytest.raises(ccxt.InvalidOrder, match="Duplicate"):
            ex.create_order(SYMBOL, "limit", "buy", 0.01, 1000, params={"clientOrderId": "rest"})


def test_resting_limit_fills_when_the_market_trades_through() -> None:
    with FakeExchange(start=-100, ws_interval_s=None) as fx:
        ex = sync_ex(fx)
        ex.load_markets()
        cur = fx.cursor
        future_low = min(fx.candle(i).low for i in range(cur + 1, cur + 50))
        price = float(Decimal(str(future_low)).quantize(Decimal("0.01"), rounding=ROUND_UP))
        assert price < fx.candle(cur).close
        o = ex.create_order(SYMBOL, "limit", "buy", 0.1, price)
        assert o["status"] == "open"
        fx.advance(49)
        done = ex.fetch_order(o["id"], SYMBOL)
        assert done["status"] == "closed" and done["average"] == price
        assert ex.fetch_my_trades(SYMBOL)[0]["takerOrMaker"] == "maker"


def test_wrong_credentials_are_authentication_errors(fx: FakeExchange) -> None:
    good = sync_ex(fx)
    good.load_markets()
    for bad in (sync_ex(fx, secret="not-the-secret"), sync_ex(fx, apiKey="not-the-key")):
        bad.markets, bad.markets_by_id = good.markets, good.markets_by_id
        with pytest.raises(ccxt.AuthenticationError):
            bad.fetch_balance()
    codes = [r for r in fx.requests if r.path == "/api/v3/account"]
    assert len(codes) == 2
    # raw: missing key header -> 401 -2014
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(f"{fx.rest_url}/account?timestamp=1&signature=x", timeout=3)
    assert err.value.code == 401 and b"-2014" in err.value.read()
    err.value.close()


def test_clock_skew(fx: FakeExchange) -> None:
    ex = sync_ex(fx)
    ex.load_markets()
    fx.set_time_offset_ms(-30_000)  # the server is 30 s behind: client timestamps "ahead"
    with pytest.raises(ccxt.InvalidNonce, match="-1021"):
        ex.fetch_balance()
    fx.set_time_offset_ms(60_000)  # server ahead by more than ccxt's recvWindow (10 s)
    with pytest.raises(ccxt.InvalidNonce, match="recvWindow"):
        ex.fetch_balance()
    adjusted = sync_ex(fx, options={"adjustForTimeDifference": True})
    adjusted.load_markets()
    assert abs(adjusted.options["timeDifference"] + 60_000) < 1_000
    assert adjusted.fetch_balance()["total"]["USDT"] == 10_000


# --- faults ----------------------------------------------------------------------------


@pytest.mark.parametrize(("kind", "extra", "expected"), [
    ("429", {}, ccxt.DDoSProtection),
    ("418", {}, ccxt.DDoSProtection),
    ("500", {}, ccxt.ExchangeNotAvailable),
    ("503", {}, ccxt.ExchangeNotAvailable),
    ("5xx", {"status": 502}, ccxt.ExchangeNotAvailable),
    ("504", {}, ccxt.RequestTimeout),
    ("hang", {"seconds": 3}, ccxt.RequestTimeout),
    ("malformed", {"status": 502}, ccxt.ExchangeNotAvailable),
])
def test_fault_maps_to_ccxt_exception(fx: FakeExchange, kind: str, extra: dict[str, Any],
                                      expected: type[Exception]) -> None:
    ex = sync_ex(fx, timeout=400)
    ex.load_markets()
    fx.faults.set(kind, count=1, **extra)
    t0 = time.monotonic()
    with pytest.raises(expected):
        ex.fetch_ohlcv(SYMBOL, "1m", limit=5)
    assert time.monotonic() - t0 < 2
    assert fx.faults.rules == []  # count=1 used up
    assert len(ex.fetch_ohlcv(SYMBOL, "1m", limit=5)) == 5  # and the next one is fine
    assert issubclass(expected, ccxt.NetworkError)  # all of these are retryable


def test_429_retry_after_count_and_path(fx: FakeExchange) -> None:
    ex = sync_ex(fx)
    ex.load_markets()
    rule = fx.faults.set(kind="429", count=2, retry_after=3, path="/api/v3/klines")
    assert ex.fetch_time() > 0  # other paths are untouched
    for _ in range(2):
        with pytest.raises(ccxt.DDoSProtection, match="-1003"):
            ex.fetch_ohlcv(SYMBOL, "1m", limit=2)
        assert ex.last_http_response and ex.last_response_headers["Retry-After"] == "3"
    assert rule.hits == 2 and rule.count == 0  # the returned rule is live
    assert fx.faults.rules == []  # used up, removed
    assert ex.fetch_ohlcv(SYMBOL, "1m", limit=2)
    # count=None: every matching request until cleared; method targeting
    fx.faults.set("503", path="/api/v3/order", method="POST")
    for _ in range(2):
        with pytest.raises(ccxt.ExchangeNotAvailable):
            ex.create_order(SYMBOL, "market", "buy", 0.01)
    assert fx.orders == [] and ex.fetch_open_orders(SYMBOL) == []
    assert fx.faults.rules[0].hits == 2
    fx.faults.clear()
    assert ex.create_order(SYMBOL, "market", "buy", 0.01)["status"] == "closed"


def test_malformed_200_is_not_raised_by_ccxt(fx: FakeExchange) -> None:
    """ccxt 4.5.90 returns the raw text of a 200 whose JSON does not parse: callers must
    check the shape themselves (documented in docs/FAKE_EXCHANGE.md)."""
    ex = sync_ex(fx)
    ex.load_markets()
    fx.faults.set("malformed", count=1, path="/api/v3/time")
    assert ex.fetch_time() is None
    fx.faults.set("malformed", count=1, path="/api/v3/klines")
    rows = ex.fetch_ohlcv(SYMBOL, "1m", limit=5)
    assert all(r[0] is None for r in rows)


def test_bad_signature_fault_and_latency(fx: FakeExchange) -> None:
    ex = sync_ex(fx)
    ex.load_markets()
    fx.faults.set("bad_signature", count=1)
    assert ex.fetch_time() > 0  # public endpoints do not consume it
    with pytest.raises(ccxt.AuthenticationError, match="-1022"):
        ex.fetch_balance()
    assert ex.fetch_balance()["total"]["USDT"] == 10_000
    fx.faults.latency_s = 0.3
    t0 = time.monotonic()
    ex.fetch_time()
    assert 0.3 <= time.monotonic() - t0 < 1.5
    fx.faults.clear()
    fx.faults.set("latency", count=1, seconds=0.25, path="/api/v3/time")
    t0 = time.monotonic()
    ex.fetch_time()
    assert time.monotonic() - t0 >= 0.25


def test_order_accepted_but_response_times_out(fx: FakeExchange) -> None:
    ex = sync_ex(fx, timeout=400)
    ex.load_markets()
    fx.faults.set("order_timeout", count=1, seconds=3)
    with pytest.raises(ccxt.RequestTimeout):
        ex.create_order(SYMBOL, "market", "buy", 0.01, params={"clientOrderId": "idem-7"})
    # the order went through: a retry with the same client id is refused, a lookup finds it
    assert [o["clientOrderId"] for o in fx.orders] == ["idem-7"]
    with pytest.raises(ccxt.InvalidOrder, match="Duplicate"):
        ex.create_order(SYMBOL, "market", "buy", 0.01, params={"clientOrderId": "idem-7"})
    found = ex.fetch_order(None, SYMBOL, params={"clientOrderId": "idem-7"})
    assert found["status"] == "closed" and found["filled"] == 0.01


def test_stop_is_prompt_while_a_request_hangs() -> None:
    fx = FakeExchange(ws_interval_s=None).start()
    try:
        fx.faults.set("hang", seconds=30)
        with pytest.raises(OSError):
            urllib.request.urlopen(f"{fx.rest_url}/time", timeout=0.2)
    finally:
        t0 = time.monotonic()
        fx.stop()
    assert time.monotonic() - t0 < 3 and not fx.running


def test_fault_api_validation_and_request_log() -> None:
    with FakeExchange(ws_interval_s=None, max_log=3) as fx:
        with pytest.raises(ValueError):
            fx.faults.set("teapot")
        with pytest.raises(ValueError):
            fx.faults.set("429", count=0)
        for _ in range(5):
            with urllib.request.urlopen(f"{fx.rest_url}/ping", timeout=3) as resp:
                resp.read()
        assert len(fx.requests) == 3 and fx.requests[-1] == ("GET", "/api/v3/ping", {})
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(f"{fx.base_url}/_blocked/sapi/capital/config", timeout=3)
        assert err.value.code == 404
        err.value.close()
    assert ERRORS["invalid_symbol"][1] == -1121


# --- async and websockets --------------------------------------------------------------


def test_async_client_rest_orders_and_faults(fx: FakeExchange) -> None:
    async def main() -> None:
        ex = accxt.binance(ccxt_config(fx, timeout=500))
        try:
            await ex.load_markets()
            rows = await ex.fetch_ohlcv(SYMBOL, "1m", since=fx.candle(100).ts, limit=3)
            assert rows == [list(fx.candle(i)) for i in (100, 101, 102)]
            o = await ex.create_order(SYMBOL, "market", "buy", 0.02,
                                      params={"clientOrderId": "a-sync_1.x"})
            assert o["clientOrderId"] == "a-sync_1.x"
            again = await ex.fetch_order(None, SYMBOL, params={"clientOrderId": "a-sync_1.x"})
            assert again["id"] == o["id"]
            fx.faults.set("503", count=1)
            with pytest.raises(ccxt.ExchangeNotAvailable):
                await ex.fetch_ticker(SYMBOL)
            fx.faults.set("hang", count=1, seconds=3)
            with pytest.raises(ccxt.RequestTimeout):
                await ex.fetch_ticker(SYMBOL)
            fx.faults.set("429", count=1)
            with pytest.raises(ccxt.DDoSProtection):
                await ex.fetch_balance()
            assert (await ex.fetch_balance())["total"]["ETH"] == pytest.approx(5.01998)
        finally:
            await ex.close()

    asyncio.run(asyncio.wait_for(main(), 20))


def test_watch_ohlcv_survives_drop_ws() -> None:
    async def main(fx: FakeExchange) -> None:
        ex = ccxtpro.binance(ccxt_config(fx, timeout=2_000))
        try:
            seen: list[int] = []
            for _ in range(20):  # bounded: a new candle every 50 ms
                candles = await asyncio.wait_for(ex.watch_ohlcv(SYMBOL, "1m"), 3)
                seen.append(candles[-1][0])
                if len(set(seen)) >= 3:
                    break
            assert len(set(seen)) >= 3 and seen == sorted(seen)
            last = candles[-1]
            assert last in [list(fx.candle(i)) for i in range(fx.n_candles)]
            assert fx.ws_connections == 1 and "ethusdt@kline_1m" in fx.ws_streams
            assert fx.faults.drop_ws(refuse_s=0.3) == 1
            with pytest.raises(ccxt.NetworkError):
                await asyncio.wait_for(ex.watch_ohlcv(SYMBOL, "1m"), 3)
            refused = 0
            after: list[list[float]] | None = None
            for _ in range(40):  # bounded reconnection loop
                try:
                    after = await asyncio.wait_for(ex.watch_ohlcv(SYMBOL, "1m"), 3)
                    break
                except ccxt.NetworkError:
                    refused += 1
                    await asyncio.sleep(0.05)
            assert after is not None and refused >= 1
            assert after[-1][0] > seen[-1]
            ticker = await asyncio.wait_for(ex.watch_ticker(SYMBOL), 3)
            assert ticker["symbol"] == SYMBOL and ticker["last"] is not None
        finally:
            await ex.close()

    with FakeExchange(start=-200, ws_interval_s=0.05) as fx:
        asyncio.run(asyncio.wait_for(main(fx), 30))
        ws_log = [r for r in fx.requests if r.method == "WS"]
        assert ws_log and all(r.path.startswith("/ws/") for r in ws_log)


def test_ws_upgrade_faults_and_abrupt_drop() -> None:
    async def main(fx: FakeExchange) -> None:
        ex = ccxtpro.binance(ccxt_config(fx, timeout=2_000))
        try:
            await ex.load_markets()
            fx.faults.set("503", count=1, path="/ws")
            with pytest.raises(ccxt.NetworkError):
                await asyncio.wait_for(ex.watch_ohlcv(SYMBOL, "1m"), 3)
            got = await asyncio.wait_for(ex.watch_ohlcv(SYMBOL, "1m"), 3)
            assert got[-1] == list(fx.candle(fx.n_candles - 1))
            assert fx.faults.drop_ws(abrupt=True) == 1
            with pytest.raises(ccxt.NetworkError):
                await asyncio.wait_for(ex.watch_ohlcv(SYMBOL, "1m"), 3)
            got = await asyncio.wait_for(ex.watch_ohlcv(SYMBOL, "1m"), 3)
            assert got
        finally:
            await ex.close()

    # default start: the last candle; it is re-pushed each tick
    with FakeExchange(ws_interval_s=0.05) as fx:
        asyncio.run(asyncio.wait_for(main(fx), 30))


# --- packaging -------------------------------------------------------------------------


def test_imports_stay_light() -> None:
    code = ("import sys, engine.testing as t, engine.testing.fake_exchange;"
            "assert 'ccxt' not in sys.modules, 'ccxt imported';"
            "assert t.FakeExchange is engine.testing.fake_exchange.FakeExchange")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO, timeout=30)
    code = "import sys, engine.testing; assert 'aiohttp' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO, timeout=30)


def test_main_serves_until_interrupted() -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with subprocess.Popen([sys.executable, "-m", "supreme_cli.fake_exchange_server",
                           "--port", "0"], cwd=REPO, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True) as proc:
        try:
            assert proc.stdout is not None
            url = proc.stdout.readline().strip()
            assert url.startswith("http://127.0.0.1:")
            with urllib.request.urlopen(f"{url}/api/v3/ping", timeout=3) as resp:
                assert resp.read() == b"{}"
            proc.send_signal(signal.SIGINT)  # Ctrl-C
            assert proc.wait(timeout=10) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=5)


def test_default_credentials() -> None:
    with FakeExchange(ws_interval_s=None) as fx:
        assert fx.api_key == DEFAULT_API_KEY
        assert ccxt_config(fx)["apiKey"] == DEFAULT_API_KEY
