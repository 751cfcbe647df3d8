"""ExchangeAdapter against a real FakeExchange on 127.0.0.1, with real ccxt over HTTP.

Each test starts its own fake (a few ms with generated candles). Retries wait through an
injected `sleep` that records the delays instead of sleeping, so Retry-After is asserted
without waiting for it; only the hang tests wait, for a 1 s ccxt timeout.
"""

from __future__ import annotations

import logging
import re
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import pytest

from engine.errors import (
    ConfigError,
    ExchangeAuthError,
    ExchangeError,
    ServiceUnavailable,
)
from engine.exchange.adapter import ExchangeAdapter, ExchangeSpec, scrub
from engine.exchange.policy import CircuitBreaker, RetryPolicy
from engine.testing.fake_exchange import FakeExchange, ccxt_config
from engine.types import Bar

pytest.importorskip("ccxt")

SYMBOL = "ETH-USDT"
KLINES = "/api/v3/klines"
REPO = Path(__file__).resolve().parents[2]


class Sleeps(list[float]):
    """A `sleep` that records instead of waiting."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)




def make(fx: FakeExchange, *, timeout_s: float = 2.0, attempts: int = 4,
         breaker: CircuitBreaker | None = None, sleep: Sleeps | None = None,
         keys: bool = True, **spec: Any) -> ExchangeAdapter:
    policy = RetryPolicy(max_attempts=attempts, base_s=0.01, cap_s=0.05)
    return ExchangeAdapter(
        ExchangeSpec(timeout_s=timeout_s, overrides=ccxt_config(fx, keys=keys), **spec),
        policy, breaker=breaker, sleep=sleep if sleep is not None else Sleeps())


def count(fx: FakeExchange, path: str, method: str | None = None) -> int:
    return sum(1 for r in fx.requests
               if r.path == path and (method is None or r.method == method))


# --- construction ----------------------------------------------------------------------


def test_import_does_not_load_ccxt() -> None:
    code = ("import sys, engine.exchange.adapter, engine.exchange.download; "
            "assert 'ccxt' not in sys.modules, 'ccxt imported'")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO, timeout=60)


def test_spec_repr_hides_keys_and_validates() -> None:
    spec = ExchangeSpec(api_key="KEY-canary-1234", secret="SECRET-canary-5678",
                        overrides={"apiKey": "OVR-key-canary", "options": {"x": 1}})
    text = repr(spec) + str(spec)
    assert "canary" not in text
    assert "binance" in text and "'options': {'x': 1}" in text
    with pytest.raises(ConfigError, match="timeout"):
        ExchangeSpec(timeout_s=0)
    with pytest.raises(ConfigError, match="timeout"):
        ExchangeSpec(timeout_s=float("nan"))


def test_unknown_exchange_and_sandbox() -> None:
    with pytest.raises(ConfigError, match=r"unknown exchange 'nope'.*binance"):
        ExchangeAdapter(ExchangeSpec(exchange_id="nope"))
    with pytest.raises(ConfigError, match="unknown exchange"):
        ExchangeAdapter(ExchangeSpec(exchange_id="Exchange"))  # a ccxt attribute, no exchange
    sandbox = ExchangeAdapter(ExchangeSpec(sandbox=True))
    assert "testnet" in sandbox.exchange.urls["api"]["public"]
    assert sandbox.exchange.isSandboxModeEnabled
    # ccxt would set urls['api'] = None for an exchange whose 'test' url is None
    with pytest.raises(ConfigError, match="no sandbox"):
        ExchangeAdapter(ExchangeSpec(exchange_id="bitfinex", sandbox=True))


def test_config_is_forced(fx: FakeExchange) -> None:
    overrides = ccxt_config(fx, verbose=True, enableRateLimit=False, timeout=99_000)
    adapter = ExchangeAdapter(ExchangeSpec(timeout_s=1.5, overrides=overrides))
    ex = adapter.exchange
    assert ex.timeout == 1500 and ex.enableRateLimit is True and ex.verbose is False
    assert adapter.breaker.name == "binance" and adapter.breaker.state == "closed"
    assert adapter.ohlcv_page_limit == 1000
    adapter.close()
    adapter.close()  # idempotent
    with pytest.raises(ExchangeError, match="closed"):
        adapter.server_time_ms()


# --- market data -----------------------------------------------------------------------


def test_markets_symbol_and_time(fx: FakeExchange) -> None:
    with make(fx) as adapter:
        assert adapter.load_markets() == [SYMBOL]
        assert adapter.has_symbol("ETH-USDT") and adapter.has_symbol("eth/usdt")
        assert not adapter.has_symbol("BTC-USDT")
        with pytest.raises(ConfigError, match="invalid symbol"):
            adapter.has_symbol("../x")
        before = fx.server_time_ms()
        server_ms, rtt = adapter.server_time_ms()
        assert before - 50 <= server_ms <= fx.server_time_ms() + 50
        assert 0 < rtt < 2
        assert [r.path for r in fx.requests] == ["/api/v3/exchangeInfo", "/api/v3/time"]
        assert adapter.stats.calls == 5 and adapter.stats.retries == 0
        assert adapter.stats.last_latency_s is not None


def test_ohlcv_pages_ticker_book_balance(fx: FakeExchange) -> None:
    with make(fx) as adapter:
        since = fx.candle(0).ts
        bars: list[Bar] = []
        for _ in range(3):
            page = adapter.fetch_ohlcv(SYMBOL, "1m", since_ms=since, limit=1000)
            assert len(page) == 1000
            bars.extend(page)
            since = page[-1].ts + 60_000
        assert [b.ts for b in bars] == [fx.candle(i).ts for i in range(3000)]
        assert bars[1234] == fx.candle(1234)
        assert all(isinstance(b, Bar) for b in bars)
        assert adapter.fetch_ohlcv(SYMBOL, since_ms=since) == []
        starts = [int(r.query["startTime"]) for r in fx.requests if r.path == KLINES]
        assert starts[:3] == [fx.candle(0).ts, fx.candle(1000).ts, fx.candle(2000).ts]

        ticker = adapter.fetch_ticker(SYMBOL)
        last = fx.candle(fx.cursor).close
        assert ticker["symbol"] == SYMBOL and ticker["last"] == pytest.approx(last, abs=0.01)
        assert ticker["bid"] <= ticker["ask"] and isinstance(ticker["timestamp"], int)

        book = adapter.fetch_order_book(SYMBOL, limit=5)
        assert len(book["bids"]) == 5 and len(book["asks"]) == 5
        assert book["bids"][0][0] < book["asks"][0][0]

        assert adapter.fetch_balance() == {"USDT": 10_000.0, "ETH": 5.0}
        assert adapter.fetch_open_orders(SYMBOL) == []
        with pytest.raises(ConfigError, match="timeframe"):
            adapter.fetch_ohlcv(SYMBOL, "30s")


# --- retried faults --------------------------------------------------------------------


@pytest.mark.parametrize(("kind", "ccxt_error"), [
    ("429", "DDoSProtection"),
    ("418", "DDoSProtection"),
    ("5xx", "ExchangeNotAvailable"),
    ("502", "ExchangeNotAvailable"),
    ("504", "RequestTimeout"),
])
def test_transport_faults_are_retried_then_succeed(fx: FakeExchange, kind: str,
                                                   ccxt_error: str) -> None:
    sleeps = Sleeps()
    with make(fx, sleep=sleeps) as adapter:
        adapter.load_markets()
        fx.faults.set(kind=kind, count=2, path=KLINES, retry_after=3)
        bars = adapter.fetch_ohlcv(SYMBOL, limit=10)
        assert len(bars) == 10
        assert count(fx, KLINES) == 3
        assert adapter.stats.retries == 2 and adapter.stats.errors[ccxt_error] == 2
        assert len(sleeps) == 2
        if kind in ("429", "418"):
            # Retry-After: 3 honoured, from ccxt's last_response_headers
            assert all(s >= 3 for s in sleeps)
        else:
            assert all(s < 1 for s in sleeps)
        assert adapter.breaker.state == "closed" and adapter.breaker.failures == 0


def test_hang_is_cut_by_the_timeout_and_retried(fx: FakeExchange) -> None:
    with make(fx, timeout_s=1.0) as adapter:
        adapter.load_markets()
        fx.faults.set(kind="hang", count=1, path=KLINES, seconds=5)
        bars = adapter.fetch_ohlcv(SYMBOL, limit=5)
        assert len(bars) == 5
        assert adapter.stats.errors["RequestTimeout"] == 1 and adapter.stats.retries == 1


def test_exhausted_retries_become_service_unavailable(fx: FakeExchange) -> None:
    with make(fx, attempts=3) as adapter:
        adapter.load_markets()
        fx.faults.set(kind="503", path=KLINES)
        with pytest.raises(ServiceUnavailable,
                           match=r"binance fetch_ohlcv: ExchangeNotAvailable after 3 attempts"):
            adapter.fetch_ohlcv(SYMBOL)
        assert count(fx, KLINES) == 3


# --- never retried ---------------------------------------------------------------------


def test_bad_symbol_is_a_config_error_at_once(fx: FakeExchange) -> None:
    with make(fx) as adapter:
        with pytest.raises(ConfigError, match=r"^ETH-XYZ is not listed on binance$"):
            adapter.fetch_ohlcv("ETH-XYZ")
        assert [r.path for r in fx.requests] == ["/api/v3/exchangeInfo"]
        assert adapter.stats.retries == 0


def test_wrong_secret_is_an_auth_error_at_once(fx: FakeExchange) -> None:
    with make(fx, keys=False, api_key=fx.api_key, secret="not-the-secret") as adapter:
        adapter.load_markets()
        with pytest.raises(ExchangeAuthError, match="binance fetch_balance: credentials"):
            adapter.fetch_balance()
        assert count(fx, "/api/v3/account") == 1
        assert adapter.stats.retries == 0


def test_bad_signature_fault_is_not_retried(fx: FakeExchange) -> None:
    with make(fx) as adapter:
        adapter.load_markets()
        fx.faults.set(kind="bad_signature")
        with pytest.raises(ExchangeAuthError):
            adapter.fetch_open_orders(SYMBOL)
        assert count(fx, "/api/v3/openOrders") == 1


def test_insufficient_funds_is_not_retried(fx: FakeExchange) -> None:
    fx.set_balance("USDT", 1)
    with make(fx) as adapter:
        adapter.load_markets()
        with pytest.raises(ExchangeError, match="insufficient funds") as info:
            adapter.create_order(SYMBOL, "buy", 0.01, client_order_id="poor-1")
        assert type(info.value) is ExchangeError
        assert count(fx, "/api/v3/order", "POST") == 1
        assert fx.orders == []


def test_invalid_arguments_send_nothing(fx: FakeExchange) -> None:
    with make(fx) as adapter:
        for kwargs in ({"side": "hold"}, {"amount": -1.0}, {"amount": float("nan")},
                       {"client_order_id": "bad id with spaces"},
                       {"client_order_id": "x" * 37},
                       {"order_type": "limit"}):
            args: dict[str, Any] = {"side": "buy", "amount": 0.01, "client_order_id": "ok-1"}
            args.update(kwargs)
            side, amount = args.pop("side"), args.pop("amount")
            with pytest.raises(ConfigError):
                adapter.create_order(SYMBOL, side, amount, **args)
        with pytest.raises(ConfigError):
            adapter.cancel_order(SYMBOL)
        assert fx.requests == []


# --- circuit breaker -------------------------------------------------------------------


def test_breaker_opens_stops_sending_and_closes_after_reset(fx: FakeExchange) -> None:
    now = [0.0]
    breaker = CircuitBreaker(name="binance", threshold=3, reset_s=30.0, clock=lambda: now[0])
    with make(fx, attempts=2, breaker=breaker) as adapter:
        fx.faults.set(kind="503", path="/api/v3/time")
        with pytest.raises(ServiceUnavailable, match="after 2 attempts"):
            adapter.server_time_ms()
        assert breaker.state == "closed" and count(fx, "/api/v3/time") == 2
        with pytest.raises(ServiceUnavailable):
            adapter.server_time_ms()
        assert breaker.state == "open" and count(fx, "/api/v3/time") == 3
        for _ in range(3):
            with pytest.raises(ServiceUnavailable, match="circuit open"):
                adapter.server_time_ms()
        assert count(fx, "/api/v3/time") == 3, "an open breaker sends nothing"
        assert adapter.stats.errors["CircuitOpen"] == 3

        fx.faults.clear()
        now[0] += 31  # half-open: one probe goes through, succeeds and closes it
        server_ms, _ = adapter.server_time_ms()
        assert server_ms > 0 and breaker.state == "closed"
        assert count(fx, "/api/v3/time") == 4


def test_errors_a_resend_cannot_fix_do_not_trip_the_breaker(fx: FakeExchange) -> None:
    breaker = CircuitBreaker(threshold=2)
    with make(fx, breaker=breaker) as adapter:
        for _ in range(4):
            with pytest.raises(ConfigError):
                adapter.fetch_ticker("ETH-XYZ")
        assert breaker.state == "closed"


# --- malformed answers -----------------------------------------------------------------


@pytest.mark.parametrize(("path", "call"), [
    ("/api/v3/time", lambda a: a.server_time_ms()),
    (KLINES, lambda a: a.fetch_ohlcv(SYMBOL, limit=3)),
    ("/api/v3/ticker/24hr", lambda a: a.fetch_ticker(SYMBOL)),
    ("/api/v3/depth", lambda a: a.fetch_order_book(SYMBOL)),
    ("/api/v3/account", lambda a: a.fetch_balance()),
    ("/api/v3/openOrders", lambda a: a.fetch_open_orders(SYMBOL)),
])
def test_malformed_200_is_an_exchange_error(fx: FakeExchange, path: str, call: Any) -> None:
    with make(fx) as adapter:
        adapter.load_markets()
        fx.faults.set(kind="malformed", count=1, path=path)
        with pytest.raises(ExchangeError, match="malformed response"):
            call(adapter)
        assert count(fx, path) == 1
        call(adapter)  # the next, well-formed answer is fine


def test_malformed_markets_and_bad_rows(fx: FakeExchange) -> None:
    with make(fx) as adapter:
        fx.faults.set(kind="malformed", count=1, path="/api/v3/exchangeInfo")
        with pytest.raises(ExchangeError, match=r"malformed response.*no markets"):
            adapter.load_markets()
        assert adapter.load_markets() == [SYMBOL]  # loaded again, not cached empty
        row = fx.candle(0)
        for bad in ([row.ts, "NaN", 1, 1, 1, 1], [row.ts, -1, 1, 1, 1, 1],
                    [row.ts, 1, 1, 2, 1, 1], [row.ts, 1, 1, 1, 1]):
            body = "[" + ",".join(str(v) if not isinstance(v, str) else f'"{v}"'
                                  for v in bad) + "]"
            fx.faults.set(kind="malformed", count=1, path=KLINES, body=f"[{body}]")
            with pytest.raises(ExchangeError, match="malformed response"):
                adapter.fetch_ohlcv(SYMBOL, limit=1)


# --- idempotent orders -----------------------------------------------------------------


def test_order_timeout_returns_the_one_order(fx: FakeExchange) -> None:
    """The order is created but its answer never comes: it is looked up, not resent."""
    with make(fx, timeout_s=1.0) as adapter:
        adapter.load_markets()
        fx.faults.set(kind="order_timeout", count=1, seconds=5)
        order = adapter.create_order(SYMBOL, "buy", 0.01, client_order_id="idem-1")
        assert order["client_order_id"] == "idem-1" and order["status"] == "closed"
        assert order["side"] == "buy" and order["amount"] == pytest.approx(0.01)
        assert [o["clientOrderId"] for o in fx.orders] == ["idem-1"]
        assert count(fx, "/api/v3/order", "POST") == 1, "never resent"
        assert fx.requests[-1].path == "/api/v3/order" and fx.requests[-1].method == "GET"
        assert fx.requests[-1].query["origClientOrderId"] == "idem-1"
        assert adapter.stats.errors["RequestTimeout"] == 1


def test_lost_request_is_resent_with_the_same_client_id(fx: FakeExchange) -> None:
    """The request hangs without reaching the book: looked up, absent, resent once."""
    with make(fx, timeout_s=1.0) as adapter:
        adapter.load_markets()
        fx.faults.set(kind="hang", count=1, path="/api/v3/order", method="POST", seconds=5)
        order = adapter.create_order(SYMBOL, "sell", 0.02, client_order_id="idem-2")
        assert order["client_order_id"] == "idem-2"
        posts = [r for r in fx.requests if r.path == "/api/v3/order" and r.method == "POST"]
        assert [p.query["newClientOrderId"] for p in posts] == ["idem-2", "idem-2"]
        assert [o["clientOrderId"] for o in fx.orders] == ["idem-2"]


def test_duplicate_client_id_returns_the_existing_order(fx: FakeExchange) -> None:
    with make(fx) as adapter:
        first = adapter.create_order(SYMBOL, "buy", 0.01, client_order_id="idem-3")
        again = adapter.create_order(SYMBOL, "buy", 0.01, client_order_id="idem-3")
        assert again["id"] == first["id"]
        assert len(fx.orders) == 1
        with pytest.raises(ExchangeError, match="different order"):
            adapter.create_order(SYMBOL, "sell", 0.01, client_order_id="idem-3")
        with pytest.raises(ExchangeError, match="different order"):
            adapter.create_order(SYMBOL, "buy", 0.02, client_order_id="idem-3")
        assert len(fx.orders) == 1
        # an amount finer than the lot size is rounded by ccxt; still the same order
        odd = adapter.create_order(SYMBOL, "buy", 0.0123456, client_order_id="idem-3b")
        assert odd["amount"] == pytest.approx(0.0123)
        assert adapter.create_order(SYMBOL, "buy", 0.0123456,
                                    client_order_id="idem-3b")["id"] == odd["id"]
        assert len(fx.orders) == 2


def test_lookup_failures_during_recovery_are_retried(fx: FakeExchange) -> None:
    with make(fx, timeout_s=1.0) as adapter:
        adapter.load_markets()
        fx.faults.set(kind="order_timeout", count=1, seconds=5)
        fx.faults.add(kind="503", count=1, path="/api/v3/order", method="GET")
        order = adapter.create_order(SYMBOL, "buy", 0.01, client_order_id="idem-4")
        assert order["client_order_id"] == "idem-4"
        assert len(fx.orders) == 1 and count(fx, "/api/v3/order", "POST") == 1


def test_fetch_by_client_id_and_idempotent_cancel(fx: FakeExchange) -> None:
    with make(fx) as adapter:
        assert adapter.fetch_order_by_client_id(SYMBOL, "nope-1") is None
        placed = adapter.create_order(SYMBOL, "buy", 0.1, client_order_id="lim-1",
                                      order_type="limit", price=100.0)
        assert placed["status"] == "open" and placed["price"] == 100.0
        found = adapter.fetch_order_by_client_id(SYMBOL, "lim-1")
        assert found is not None and found["id"] == placed["id"]
        assert [o["id"] for o in adapter.fetch_open_orders(SYMBOL)] == [placed["id"]]
        assert adapter.cancel_order(SYMBOL, client_order_id="lim-1")["status"] == "canceled"
        # a second cancel (say, a resend after a lost answer) returns the order as it stands
        assert adapter.cancel_order(SYMBOL, order_id=placed["id"])["status"] == "canceled"
        assert adapter.fetch_open_orders(SYMBOL) == []
        with pytest.raises(ExchangeError, match="order not found"):
            adapter.cancel_order(SYMBOL, order_id="999")


# --- secrets ---------------------------------------------------------------------------

CANARY_KEY = "CANARYKEY0123456789abcdefCANARYKEY"
CANARY_SECRET = "CANARYSECRET9876543210zyxwCANARYSECRET"
SIGNATURE_RE = re.compile(r"signature=[0-9a-fA-F]{16,}")


def _texts(exc: BaseException) -> list[str]:
    return [str(exc), repr(exc), "".join(traceback.format_exception(exc))]


def test_secret_canaries_never_leak(caplog: pytest.LogCaptureFixture,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    with FakeExchange(ws_interval_s=None, api_key=CANARY_KEY, api_secret=CANARY_SECRET) as fx:
        spec = ExchangeSpec(api_key=CANARY_KEY, secret=CANARY_SECRET, timeout_s=1.0,
                            overrides=ccxt_config(fx, verbose=True))
        adapter = ExchangeAdapter(spec, RetryPolicy(max_attempts=2, base_s=0.01),
                                  sleep=Sleeps())
        # DEBUG on every ccxt logger, after the adapter pinned them: the filter must scrub
        for name in ("", "ccxt", "ccxt.base.exchange"):
            caplog.set_level(logging.DEBUG, logger=name)
        texts: list[str] = [repr(spec), str(spec), repr(adapter), repr(adapter.stats)]

        adapter.load_markets()
        adapter.fetch_balance()
        adapter.create_order(SYMBOL, "buy", 0.01, client_order_id="canary-1")
        adapter.fetch_open_orders(SYMBOL)
        fx.faults.set(kind="hang", path="/api/v3/account", seconds=3)
        with pytest.raises(ServiceUnavailable) as timeout:
            adapter.fetch_balance()
        texts += _texts(timeout.value)
        fx.faults.set(kind="bad_signature")
        with pytest.raises(ExchangeAuthError) as auth:
            adapter.fetch_open_orders(SYMBOL)
        texts += _texts(auth.value)
        fx.faults.clear()
        wrong = ExchangeAdapter(ExchangeSpec(api_key=CANARY_KEY, secret=CANARY_SECRET + "x",
                                             overrides=ccxt_config(fx, keys=False)))
        with pytest.raises(ExchangeAuthError) as bad_key:
            wrong.fetch_balance()
        texts += _texts(bad_key.value)
        fx.faults.set(kind="order_timeout", count=1, seconds=3)
        adapter.create_order(SYMBOL, "buy", 0.01, client_order_id="canary-2")
        texts += [repr(adapter.stats), repr(wrong)]

    records = [r for r in caplog.records if r.name.startswith("ccxt")]
    assert records, "ccxt's DEBUG records were captured (so the check means something)"
    assert any("***" in r.getMessage() for r in records)
    out = capsys.readouterr()
    texts += [caplog.text, out.out, out.err, *(r.getMessage() for r in caplog.records)]
    for text in texts:
        assert CANARY_KEY not in text and CANARY_SECRET not in text
        assert not SIGNATURE_RE.search(text), text[:300]
    assert "fetch_balance: RequestTimeout after 2 attempts" in str(timeout.value)
    assert timeout.value.__cause__ is None and timeout.value.__context__ is None


def test_scrub() -> None:
    text = ("GET http://x/api?timestamp=1&signature=abcdef0123 {'X-MBX-APIKEY': 'k3y-value'} "
            "s3cr%2Ft s3cr/t")
    out = scrub(text, ["s3cr/t", "k3y-value"])
    assert "abcdef0123" not in out and "k3y-value" not in out and "s3cr" not in out
    assert "signature=***" in out


def test_retry_after_forms(fx: FakeExchange) -> None:
    from email.utils import formatdate

    with make(fx) as adapter:
        ex = adapter.exchange
        for headers, low, high in (({"retry-after": "7"}, 7, 7),
                                   ({"Retry-After": formatdate(time.time() + 60)}, 50, 61),
                                   ({"Retry-After": "soon"}, None, None),
                                   ({"Retry-After": "-3"}, None, None), ({}, None, None)):
            ex.last_response_headers = headers
            got = adapter._retry_after(Exception())
            if low is None:
                assert got is None
            else:
                assert got is not None and low <= got <= high
