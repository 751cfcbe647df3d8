"""A fake Binance spot exchange on 127.0.0.1: the real peer for tests of the exchange layer.

`FakeExchange` is an aiohttp.web server bound to 127.0.0.1 on a free port, run in a
background thread with its own event loop. It speaks the Binance spot REST API (the
response shapes ccxt parses, real HMAC-SHA256 request signing, Binance's error codes) and
the spot websocket market streams ccxt.pro uses, serving candles from a candle file, a
loaded `Series`, a list of bars, or a small generated series. Faults (latency, 429, 418,
5xx, hangs, malformed bodies, rejected signatures, an order accepted whose response never
comes, websocket drops) are switched on and off at runtime from any thread.

    with FakeExchange("ETH_USDT-1m.json") as fx:
        ex = ccxt.binance(ccxt_config(fx, timeout=2_000))
        ex.fetch_ohlcv("ETH/USDT", "1m", limit=10)
        fx.faults.set(kind="429", count=2, retry_after=1, path="/api/v3/klines")

Clocks. Two clocks, on purpose:

* the *market* clock is the data's own timeline: the fake's "now" for market data is the
  close of the *current* candle (candle `cursor`; by default the last candle of the data,
  so "now" = the last candle's close time). Candles after the cursor are the future and
  are never served. The cursor advances one candle every `ws_interval_s` seconds while
  candles remain (unless `autoplay=False`), or on `advance()`; each step pushes that candle
  to websocket subscribers. With `retime=True` every served timestamp is shifted so the
  current candle closes at the wall-clock minute the server started (fresh-looking data).
* the *server* clock is the wall clock plus `set_time_offset_ms()` (clock skew): it is what
  `/api/v3/time` and `serverTime` return and what signed requests' `timestamp`/`recvWindow`
  are checked against (Binance: reject when timestamp > server + 1000 ms or
  server - timestamp > recvWindow; code -1021). Order, trade and event times use it too.

Accounts. One account: `api_key`/`api_secret` (defaults DEFAULT_API_KEY/DEFAULT_API_SECRET),
balances from `balances` (default 10,000 of the quote asset and 5 of the base asset).
MARKET orders fill entirely at the current price (the current candle's close) with a
`fee_rate` commission taken from the asset received. LIMIT orders that cross the current
price fill the same way; the others rest (funds locked) and fill at their limit price when a
later candle trades through it; IOC/FOK ones that do not cross expire. No partial fills.

The library code here never prints and never exits; only the `__main__` block prints.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import contextvars
import hashlib
import hmac
import itertools
import json
import os
import random
import secrets
import socket
import statistics
import threading
import time
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from decimal import ROUND_DOWN, Decimal, InvalidOperation
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import parse_qsl

from aiohttp import WSMsgType, web

from engine.feeds.replay import Series, load_series
from engine.types import Bar

__all__ = [
    "DEFAULT_API_KEY",
    "DEFAULT_API_SECRET",
    "ERRORS",
    "FAULT_KINDS",
    "FakeExchange",
    "FaultRule",
    "Faults",
    "RequestRecord",
    "ccxt_config",
]

DEFAULT_API_KEY = "fake-binance-api-key"
DEFAULT_API_SECRET = "fake-binance-api-secret"
MAX_HANG_S = 60.0
"""Upper bound of every sleep the fake does (hangs, latency): nothing waits forever."""
KLINES_DEFAULT_LIMIT = 500
KLINES_MAX_LIMIT = 1000
DEPTH_DEFAULT_LIMIT = 100
DEPTH_MAX_LIMIT = 5000

ERRORS: dict[str, tuple[int, int, str]] = {
    # name: (HTTP status, Binance code, message). The messages are Binance's own.
    "too_many_requests": (429, -1003, "Too many requests; current limit of IP(127.0.0.1) is "
                          "6000 requests per minute. Please use WebSocket Streams for live "
                          "updates to avoid polling the API."),
    "ip_banned": (418, -1003, "Way too much request weight used; IP banned until {until}. "
                  "Please use WebSocket Streams for live updates to avoid bans."),
    "unknown": (500, -1000, "An unknown error occured while processing the request."),
    "backend_timeout": (503, -1007, "Timeout waiting for response from backend server. "
                        "Send status unknown; execution status unknown."),
    "filter_failure": (400, -1013, "Filter failure: {filter}"),
    "timestamp_ahead": (400, -1021, "Timestamp for this request was 1000ms ahead of the "
                        "server's time."),
    "timestamp_outside": (400, -1021, "Timestamp for this request is outside of the "
                          "recvWindow."),
    "bad_signature": (400, -1022, "Signature for this request is not valid."),
    "illegal_chars": (400, -1100, "Illegal characters found in parameter '{param}'; legal "
                      "range is '{legal}'."),
    "mandatory_param": (400, -1102, "Mandatory parameter '{param}' was not sent, was "
                        "empty/null, or malformed."),
    "invalid_tif": (400, -1115, "Invalid timeInForce."),
    "invalid_order_type": (400, -1116, "Invalid orderType."),
    "invalid_side": (400, -1117, "Invalid side."),
    "invalid_interval": (400, -1120, "Invalid interval."),
    "invalid_symbol": (400, -1121, "Invalid symbol."),
    "invalid_param": (400, -1130, "Data sent for parameter '{param}' is not valid."),
    "recv_window": (400, -1131, "recvWindow must be less than 60000"),
    "duplicate_order": (400, -2010, "Duplicate order sent."),
    "insufficient_balance": (400, -2010, "Account has insufficient balance for requested "
                             "action."),
    "unknown_order": (400, -2011, "Unknown order sent."),
    "order_not_found": (400, -2013, "Order does not exist."),
    "bad_api_key": (401, -2014, "API-key format invalid."),
}
"""Every Binance error the fake serves (see docs/FAKE_EXCHANGE.md for ccxt's mapping)."""

FAULT_KINDS = ("latency", "429", "418", "5xx", "500", "502", "503", "504", "hang",
               "malformed", "bad_signature", "order_timeout")
_STATUS_KINDS = {"5xx": 503, "500": 500, "502": 502, "503": 503, "504": 504}
_WS_KINDS = {"latency", "429", "418", "hang", *_STATUS_KINDS}

INTERVALS_MS = {
    "1s": 1_000, "1m": 60_000, "3m": 180_000, "5m": 300_000, "15m": 900_000,
    "30m": 1_800_000, "1h": 3_600_000, "2h": 7_200_000, "4h": 14_400_000,
    "6h": 21_600_000, "8h": 28_800_000, "12h": 43_200_000, "1d": 86_400_000,
    "3d": 259_200_000, "1w": 604_800_000,
}
_VALID_INTERVALS = (*INTERVALS_MS, "1M")
_DAY_MS = 86_400_000

# REST bases of ccxt's binance (4.5.x) other than spot's: ccxt_config points them at a path
# of the fake that answers 404, so a stray futures/sapi call fails fast instead of going out.
_OTHER_REST_KEYS = ("sapi", "sapiV2", "sapiV3", "sapiV4", "dapiPublic", "dapiPrivate",
                    "dapiPrivateV2", "dapiData", "eapiPublic", "eapiPrivate", "fapiPublic",
                    "fapiPublicV2", "fapiPublicV3", "fapiPrivate", "fapiPrivateV2",
                    "fapiPrivateV3", "fapiData", "papi", "papiV2")
_OTHER_WS_KEYS = ("linear", "inverse", "stock", "option", "optionMarket", "optionPrivate",
                  "papi")

_SIGNED_PATHS = frozenset({"/api/v3/account", "/api/v3/order", "/api/v3/order/test",
                           "/api/v3/openOrders", "/api/v3/allOrders", "/api/v3/myTrades"})
_ORDER_PATH = "/api/v3/order"


class RequestRecord(NamedTuple):
    """One request the fake received. `query` merges the query string and a form body;
    websocket upgrades are logged with method "WS"."""

    method: str
    path: str
    query: dict[str, str]


@dataclass
class FaultRule:
    """One active fault. `count` is how many more requests it hits (None: until cleared);
    `hits` how many it has hit so far."""

    kind: str
    count: int | None = None
    path: str | None = None
    method: str | None = None
    retry_after: float = 1.0
    status: int | None = None
    seconds: float | None = None
    body: str | None = None
    hits: int = 0

    def matches(self, method: str, path: str, *, signed: bool, ws: bool) -> bool:
        if self.method is not None and self.method.upper() != method:
            return False
        rule_path = self.path
        if self.kind == "order_timeout" and rule_path is None:
            rule_path = _ORDER_PATH
        if rule_path is not None:
            base = rule_path.rstrip("/")
            if path != rule_path and not path.startswith(base + "/"):
                return False
        if ws:
            return self.kind in _WS_KINDS
        if self.kind == "bad_signature":
            return signed
        if self.kind == "order_timeout":
            return method == "POST" and signed
        return True

    def sleep_s(self, default: float) -> float:
        return max(0.0, min(MAX_HANG_S, default if self.seconds is None else self.seconds))


class Faults:
    """The faults of one FakeExchange; every method is thread-safe.

    Kinds (FAULT_KINDS), each for the next `count` matching requests or, with count=None,
    until cleared; `path` targets a path and the paths under it ("/api/v3/order" also
    matches "/api/v3/order/test", "/ws" every websocket path), `method` one HTTP method:

    * "latency": wait `seconds` (default 1) then answer normally.
    * "429" / "418": answer that status, header `Retry-After: retry_after`, Binance body
      code -1003.
    * "5xx" (status 503, or `status=`), "500", "502", "503", "504": answer that status with a
      plain-text gateway page (or `body`), as a load balancer does.
    * "hang": wait `seconds` (default 10, at most MAX_HANG_S; longer than the client's
      timeout) without touching any state, then answer 503 code -1007.
    * "malformed": answer `status` (default 200) with a truncated JSON body (or `body`).
    * "bad_signature": signed endpoints reject even valid signatures (-1022).
    * "order_timeout": POST /api/v3/order (by default) is carried out (the order IS
      created) and then the response waits `seconds` (default 10): the client times out
      not knowing whether its order went through.

    Websocket upgrades are affected by latency, 429, 418, the 5xx kinds and hang only.
    `latency_s` adds a delay to every request; `drop_ws()` closes the websockets.
    """

    def __init__(self, drop_ws: Any = None) -> None:
        self._lock = threading.Lock()
        self._rules: list[FaultRule] = []
        self._latency_s = 0.0
        self._drop_ws = drop_ws

    @property
    def latency_s(self) -> float:
        """Seconds added before every request is answered (0 = none)."""
        with self._lock:
            return self._latency_s

    @latency_s.setter
    def latency_s(self, value: float) -> None:
        with self._lock:
            self._latency_s = max(0.0, min(MAX_HANG_S, float(value)))

    def set(self, kind: str, count: int | None = None, *, path: str | None = None,
            method: str | None = None, retry_after: float = 1.0, status: int | None = None,
            seconds: float | None = None, body: str | None = None) -> FaultRule:
        """Replace every active fault rule with this one; returns it (see `hits`)."""
        rule = self._rule(kind, count, path, method, retry_after, status, seconds, body)
        with self._lock:
            self._rules = [rule]
        return rule

    def add(self, kind: str, count: int | None = None, *, path: str | None = None,
            method: str | None = None, retry_after: float = 1.0, status: int | None = None,
            seconds: float | None = None, body: str | None = None) -> FaultRule:
        """Add a rule beside the active ones (the first matching rule wins)."""
        rule = self._rule(kind, count, path, method, retry_after, status, seconds, body)
        with self._lock:
            self._rules.append(rule)
        return rule

    def clear(self) -> None:
        """Remove every rule and the global latency."""
        with self._lock:
            self._rules = []
            self._latency_s = 0.0

    @property
    def rules(self) -> list[FaultRule]:
        """A snapshot of the active rules."""
        with self._lock:
            return [replace(r) for r in self._rules]

    def drop_ws(self, refuse_s: float = 0.0, *, abrupt: bool = False) -> int:
        """Close every websocket (close code 1001 "going away", or with `abrupt` cut the
        TCP connection with no close frame), and refuse new websocket connections with
        HTTP 503 for `refuse_s` seconds; they are accepted again after. Returns the number of
        connections closed. It returns once the close is sent, without waiting for clients."""
        if self._drop_ws is None:
            return 0
        return int(self._drop_ws(refuse_s, abrupt))

    def _rule(self, kind: str, count: int | None, path: str | None, method: str | None,
              retry_after: float, status: int | None, seconds: float | None,
              body: str | None) -> FaultRule:
        kind = str(kind)
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; expected one of {FAULT_KINDS}")
        if count is not None and count < 1:
            raise ValueError("count must be >= 1, or None for every request")
        if kind in _STATUS_KINDS and status is None:
            status = _STATUS_KINDS[kind]
        if kind == "5xx" and status is not None and not 500 <= status <= 599:
            raise ValueError(f"a 5xx fault needs a 5xx status, not {status}")
        return FaultRule(kind, count, path, method, float(retry_after), status,
                         None if seconds is None else float(seconds), body)

    def _take(self, method: str, path: str, *, signed: bool, ws: bool) -> FaultRule | None:
        with self._lock:
            for i, rule in enumerate(self._rules):
                if rule.matches(method, path, signed=signed, ws=ws):
                    rule.hits += 1
                    if rule.count is not None:
                        rule.count -= 1
                        if rule.count <= 0:
                            del self._rules[i]
                    return replace(rule)
        return None


class _ApiError(Exception):
    def __init__(self, name: str, **fmt: Any) -> None:
        status, code, msg = ERRORS[name]
        super().__init__(msg)
        self.status = status
        self.code = code
        self.msg = msg.format(**fmt) if fmt else msg

    def response(self) -> web.Response:
        return _json({"code": self.code, "msg": self.msg}, status=self.status)


@dataclass
class _Order:
    order_id: int
    client_id: str
    side: str
    type: str
    tif: str
    price: Decimal
    qty: Decimal
    time: int
    status: str = "NEW"
    executed: Decimal = Decimal(0)
    cum_quote: Decimal = Decimal(0)
    update_time: int = 0
    locked: Decimal = Decimal(0)
    fills: list[dict[str, Any]] = field(default_factory=list)


@dataclass(eq=False)
class _WsConn:
    ws: web.WebSocketResponse
    request: web.Request
    combined: bool
    streams: set[str] = field(default_factory=set)
    send_lock: asyncio.Lock = field(default_factory=asyncio.Lock)


@dataclass
class _Ctx:
    """What the middleware parsed from the request being handled (one per task)."""

    params: dict[str, str]
    body: str
    raw_query: str
    bad_signature: bool = False


_CTX: contextvars.ContextVar[_Ctx] = contextvars.ContextVar("fake_exchange_request")


def _params() -> dict[str, str]:
    return _CTX.get().params


def _json(data: Any, status: int = 200, headers: Mapping[str, str] | None = None
          ) -> web.Response:
    return web.Response(text=json.dumps(data, separators=(",", ":")), status=status,
                        content_type="application/json", headers=headers)


def _f8(x: float | Decimal) -> str:
    return f"{x:.8f}"


def _dec(x: float) -> Decimal:
    return Decimal(repr(float(x)))


def _generated_bars(n: int = 3_000, seed: int = 7) -> list[Bar]:
    """A deterministic 1m random walk around 2,000 from 2024-01-01 00:00 UTC."""
    rng = random.Random(seed)
    ts0 = 1_704_067_200_000
    price = 2_000.0
    bars = []
    for i in range(n):
        o = price
        c = max(1.0, round(o * (1 + rng.gauss(0, 0.0008)), 2))
        h = round(max(o, c) * (1 + abs(rng.gauss(0, 0.0003))), 2)
        lo = round(min(o, c) * (1 - abs(rng.gauss(0, 0.0003))), 2)
        bars.append(Bar(ts0 + i * 60_000, o, h, lo, c, round(rng.uniform(20, 400), 4)))
        price = c
    return bars


class FakeExchange:
    """A fake Binance spot exchange on 127.0.0.1 (see the module docstring).

    candles: a `Series`, a candle file path (anything `load_series` reads), an iterable of
    `Bar`s/6-tuples, or None for 3,000 generated 1m candles. symbol: "BASE-QUOTE" (or
    "BASE/QUOTE"), served as BASEQUOTE. start: index of the current candle at start
    (default: the last one; negative counts from the end). ws_interval_s: the pace of the
    replay and of websocket pushes (None or 0: no pushes except on `advance()`).
    reject_duplicate: "any" rejects a newClientOrderId used by any earlier order; "open"
    only while that order is open, as Binance itself does.
    """

    def __init__(self, candles: Series | str | os.PathLike[str] | Iterable[Any] | None = None,
                 symbol: str = "ETH-USDT", api_key: str | None = None,
                 api_secret: str | None = None,
                 balances: Mapping[str, float | str | Decimal] | None = None, *,
                 port: int = 0, start: int | None = None, ws_interval_s: float | None = 0.2,
                 autoplay: bool = True, retime: bool = False, fee_rate: float = 0.001,
                 tick_size: str = "0.01", step_size: str = "0.0001", min_notional: str = "5",
                 reject_duplicate: str = "any", max_log: int = 2_000) -> None:
        self.symbol = symbol.upper().replace("/", "-")
        parts = self.symbol.split("-")
        if len(parts) != 2 or not all(p.isalnum() for p in parts):
            raise ValueError(f"symbol must look like ETH-USDT, not {symbol!r}")
        self.base_asset, self.quote_asset = parts
        self.symbol_id = self.base_asset + self.quote_asset
        if reject_duplicate not in ("any", "open"):
            raise ValueError("reject_duplicate must be 'any' or 'open'")
        self.reject_duplicate = reject_duplicate
        self.api_key = DEFAULT_API_KEY if api_key is None else api_key
        self.api_secret = DEFAULT_API_SECRET if api_secret is None else api_secret
        self.tick = Decimal(tick_size)
        self.step = Decimal(step_size)
        self.min_notional = Decimal(min_notional)
        self.fee_rate = Decimal(repr(float(fee_rate)))
        self.ws_interval_s = ws_interval_s
        self.autoplay = autoplay

        self._ts, self._o, self._h, self._l, self._c, self._v, self.interval_ms = (
            self._load(candles))
        n = len(self._ts)
        if n == 0:
            raise ValueError("no candles to serve")
        names = [k for k, v in INTERVALS_MS.items() if v == self.interval_ms]
        if not names:
            raise ValueError(f"candle interval {self.interval_ms} ms is not a Binance interval")
        self.interval = names[0]
        cursor = n - 1 if start is None else (start if start >= 0 else n + start)
        if not 0 <= cursor < n:
            raise ValueError(f"start {start} is outside the {n} candles")
        self._cursor = cursor
        self._shift_ms = 0
        if retime:
            wall = int(time.time() * 1000)
            self._shift_ms = (wall // self.interval_ms * self.interval_ms
                              - (self._ts[cursor] + self.interval_ms))

        self._lock = threading.Lock()
        self._time_offset_ms = 0
        self._log: deque[RequestRecord] = deque(maxlen=max(1, max_log))
        self.errors: list[BaseException] = []
        """Unexpected exceptions in handlers (answered as HTTP 500), for debugging."""
        start_balances = ({self.quote_asset: 10_000, self.base_asset: 5}
                          if balances is None else balances)
        self._free: dict[str, Decimal] = {a.upper(): Decimal(str(v))
                                          for a, v in start_balances.items()}
        self._free.setdefault(self.base_asset, Decimal(0))
        self._free.setdefault(self.quote_asset, Decimal(0))
        self._locked: dict[str, Decimal] = dict.fromkeys(self._free, Decimal(0))
        self._orders: dict[int, _Order] = {}
        self._trades: list[dict[str, Any]] = []
        self._order_ids = itertools.count(1)
        self._trade_ids = itertools.count(1)
        self._weight: tuple[int, int] = (0, 0)  # (minute, requests in it)

        self.faults = Faults(self._drop_ws_threadsafe)
        self._ws: set[_WsConn] = set()
        self._tasks: set[asyncio.Future[Any]] = set()
        self._ws_refuse_until = 0.0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._start_error: BaseException | None = None
        self._requested_port = port
        self.port = 0

    # --- lifecycle -----------------------------------------------------------------

    def start(self) -> FakeExchange:
        """Bind 127.0.0.1 and serve from a background thread; returns once it listens."""
        if self._thread is not None:
            return self
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("127.0.0.1", self._requested_port))
        except OSError:
            sock.close()
            raise
        self.port = sock.getsockname()[1]
        self._thread = threading.Thread(target=self._run, args=(sock,),
                                        name=f"fake-exchange-{self.port}", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the fake exchange did not start within 10 s")
        if self._start_error is not None:
            raise RuntimeError(f"the fake exchange failed to start: {self._start_error!r}")
        return self

    def stop(self) -> None:
        """Close every connection and stop the server thread (idempotent, bounded)."""
        loop, stopping, thread = self._loop, self._stopping, self._thread
        if loop is not None and stopping is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(stopping.set)
        if thread is not None:
            thread.join(timeout=10)

    def __enter__(self) -> FakeExchange:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def rest_url(self) -> str:
        return f"{self.base_url}/api/v3"

    @property
    def ws_url(self) -> str:
        """The spot stream base (Binance's wss://stream.binance.com:9443/ws)."""
        return f"ws://127.0.0.1:{self.port}/ws"

    # --- state, for tests ----------------------------------------------------------

    @property
    def requests(self) -> list[RequestRecord]:
        """The last `max_log` requests, oldest first (a snapshot)."""
        with self._lock:
            return list(self._log)

    def clear_requests(self) -> None:
        with self._lock:
            self._log.clear()

    @property
    def orders(self) -> list[dict[str, Any]]:
        """Every order so far, oldest first, as GET /api/v3/order returns them."""
        with self._lock:
            return [self._order_json(o) for o in self._orders.values()]

    @property
    def trades(self) -> list[dict[str, Any]]:
        """Every fill so far, as GET /api/v3/myTrades returns them."""
        with self._lock:
            return [dict(t) for t in self._trades]

    @property
    def balances(self) -> dict[str, dict[str, float]]:
        with self._lock:
            return {a: {"free": float(self._free[a]), "locked": float(self._locked[a])}
                    for a in self._free}

    def set_balance(self, asset: str, free: float | str | Decimal) -> None:
        with self._lock:
            self._free[asset.upper()] = Decimal(str(free))
            self._locked.setdefault(asset.upper(), Decimal(0))

    def set_time_offset_ms(self, ms: int) -> None:
        """Skew the server clock by `ms` (positive: the server is ahead of the client)."""
        with self._lock:
            self._time_offset_ms = int(ms)

    def server_time_ms(self) -> int:
        with self._lock:
            offset = self._time_offset_ms
        return int(time.time() * 1000) + offset

    @property
    def cursor(self) -> int:
        """Index of the current candle (the last one served)."""
        with self._lock:
            return self._cursor

    @property
    def now_ms(self) -> int:
        """The market clock: the close of the current candle (its open + interval), in the
        served (possibly retimed) timeline."""
        with self._lock:
            return self._ts[self._cursor] + self.interval_ms + self._shift_ms

    @property
    def ts_shift_ms(self) -> int:
        """What `retime` adds to the data's timestamps (0 without retime)."""
        return self._shift_ms

    @property
    def n_candles(self) -> int:
        return len(self._ts)

    def candle(self, i: int) -> Bar:
        """Candle `i` of the data as served (timestamps shifted by `ts_shift_ms`)."""
        return Bar(self._ts[i] + self._shift_ms, self._o[i], self._h[i], self._l[i],
                   self._c[i], self._v[i])

    @property
    def ws_connections(self) -> int:
        """Open websocket connections."""
        return len(self._ws)

    @property
    def ws_streams(self) -> set[str]:
        """The streams subscribed on the open websocket connections (lowercase)."""
        return {s for conn in list(self._ws) for s in list(conn.streams)}

    def advance(self, n: int = 1) -> int:
        """Move the market `n` candles forward (bounded by the data), fill resting orders
        the new candles trade through, push the new candle to websocket subscribers.
        Returns the new cursor."""
        with self._lock:
            moved = self._step_locked(max(0, int(n)))
            cursor = self._cursor
        loop = self._loop
        if moved and loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._spawn_broadcast)
        return cursor

    def _spawn_broadcast(self) -> None:
        task = asyncio.ensure_future(self._broadcast())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- loading -------------------------------------------------------------------

    @staticmethod
    def _load(candles: Any) -> tuple[list[int], list[float], list[float], list[float],
                                     list[float], list[float], int]:
        if candles is None:
            candles = _generated_bars()
        if isinstance(candles, (str, os.PathLike)):
            candles = load_series(Path(candles))
        if isinstance(candles, Series):
            return (list(candles.ts), list(candles.open), list(candles.high),
                    list(candles.low), list(candles.close), list(candles.volume),
                    candles.interval_ms)
        rows = [tuple(b)[:6] for b in candles]
        rows.sort(key=lambda r: int(r[0]))
        ts = [int(r[0]) for r in rows]
        diffs = [b - a for a, b in itertools.pairwise(ts) if b > a]
        interval = int(statistics.median(diffs)) if diffs else 60_000
        return (ts, [float(r[1]) for r in rows], [float(r[2]) for r in rows],
                [float(r[3]) for r in rows], [float(r[4]) for r in rows],
                [float(r[5]) for r in rows], interval)

    # --- server --------------------------------------------------------------------

    def _run(self, sock: socket.socket) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._serve(sock))
        except BaseException as exc:  # reported to start(); the thread must not die noisily
            self._start_error = exc
        finally:
            self._ready.set()
            with contextlib.suppress(Exception):
                pending = asyncio.all_tasks(loop)
                for task in pending:
                    task.cancel()
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
                loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()
            sock.close()

    async def _serve(self, sock: socket.socket) -> None:
        self._stopping = asyncio.Event()
        app = web.Application(middlewares=[self._middleware], client_max_size=1 << 20)
        r = app.router
        r.add_get("/api/v3/ping", self._ping)
        r.add_get("/api/v3/time", self._time)
        r.add_get("/api/v3/exchangeInfo", self._exchange_info)
        r.add_get("/api/v3/klines", self._klines)
        r.add_get("/api/v3/uiKlines", self._klines)
        r.add_get("/api/v3/ticker/24hr", self._ticker_24hr)
        r.add_get("/api/v3/ticker/price", self._ticker_price)
        r.add_get("/api/v3/ticker/bookTicker", self._book_ticker)
        r.add_get("/api/v3/depth", self._depth)
        r.add_get("/api/v3/account", self._account)
        r.add_post("/api/v3/order", self._new_order)
        r.add_post("/api/v3/order/test", self._test_order)
        r.add_get("/api/v3/order", self._get_order)
        r.add_delete("/api/v3/order", self._cancel_order)
        r.add_get("/api/v3/openOrders", self._open_orders)
        r.add_delete("/api/v3/openOrders", self._cancel_all)
        r.add_get("/api/v3/allOrders", self._all_orders)
        r.add_get("/api/v3/myTrades", self._my_trades)
        r.add_get("/ws", self._ws_handler)
        r.add_get("/ws/{name}", self._ws_handler)
        r.add_get("/stream", self._ws_handler)
        runner = web.AppRunner(app, access_log=None, handle_signals=False,
                               shutdown_timeout=1.0, handler_cancellation=True)
        await runner.setup()
        try:
            site = web.SockSite(runner, sock)
            await site.start()
            pacer = asyncio.ensure_future(self._pace())
            self._ready.set()
            await self._stopping.wait()
            pacer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pacer
            await self._close_ws(abrupt=False, wait=0.5)
        finally:
            await runner.cleanup()

    async def _sleep(self, seconds: float) -> None:
        """Sleep, bounded by MAX_HANG_S and cut short when the server stops."""
        stopping = self._stopping
        seconds = max(0.0, min(MAX_HANG_S, seconds))
        if stopping is None:
            await asyncio.sleep(seconds)
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), seconds)

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        method, path = request.method, request.path
        is_ws = path in ("/ws", "/stream") or path.startswith("/ws/")
        params = dict(request.query)
        body = ""
        if not is_ws and request.can_read_body:
            body = await request.text()
            if body:
                params.update(parse_qsl(body, keep_blank_values=True))
        ctx = _Ctx(params, body, request.rel_url.raw_query_string)
        _CTX.set(ctx)
        with self._lock:
            self._log.append(RequestRecord("WS" if is_ws else method, path, params))
            minute = int(time.time() // 60)
            used = self._weight[1] + 1 if self._weight[0] == minute else 1
            self._weight = (minute, used)
        latency = self.faults.latency_s
        if latency > 0:
            await self._sleep(latency)
        rule = self.faults._take(method, path, signed=path in _SIGNED_PATHS, ws=is_ws)
        if rule is not None:
            early = await self._fault_response(rule, ctx)
            if early is not None:
                return early
        try:
            response = await handler(request)
        except _ApiError as err:
            response = err.response()
        except web.HTTPException:
            raise
        except Exception as exc:
            self.errors.append(exc)
            response = _ApiError("unknown").response()
        if rule is not None and rule.kind == "order_timeout":
            await self._sleep(rule.sleep_s(10.0))
        if not is_ws and not response.prepared:
            response.headers["X-MBX-USED-WEIGHT-1M"] = str(used)
        return response

    async def _fault_response(self, rule: FaultRule, ctx: _Ctx) -> web.StreamResponse | None:
        kind = rule.kind
        if kind == "latency":
            await self._sleep(rule.sleep_s(1.0))
            return None
        if kind in ("429", "418"):
            name = "too_many_requests" if kind == "429" else "ip_banned"
            status, code, msg = ERRORS[name]
            until = self.server_time_ms() + int(rule.retry_after * 1000)
            retry = str(max(0, round(rule.retry_after)))
            body = rule.body or json.dumps({"code": code, "msg": msg.format(until=until)})
            return web.Response(text=body, status=status, content_type="application/json",
                                headers={"Retry-After": retry})
        if kind in _STATUS_KINDS:
            status = rule.status or 503
            reason = {500: "Internal Server Error", 502: "Bad Gateway",
                      503: "Service Unavailable", 504: "Gateway Time-out"}.get(status, "Error")
            text = rule.body or (f"<html><head><title>{status} {reason}</title></head><body>"
                                 f"<center><h1>{status} {reason}</h1></center></body></html>")
            return web.Response(text=text, status=status, content_type="text/html")
        if kind == "hang":
            await self._sleep(rule.sleep_s(10.0))
            return _ApiError("backend_timeout").response()
        if kind == "malformed":
            text = rule.body if rule.body is not None else '{"code":0,"msg":"ok","data":[{"t'
            return web.Response(text=text, status=rule.status or 200,
                                content_type="application/json")
        if kind == "bad_signature":
            ctx.bad_signature = True
        return None

    # --- signing -------------------------------------------------------------------

    def _check_signed(self, request: web.Request) -> dict[str, str]:
        ctx = _CTX.get()
        params = ctx.params
        key = request.headers.get("X-MBX-APIKEY", "")
        if not key or not hmac.compare_digest(key.encode(), self.api_key.encode()):
            raise _ApiError("bad_api_key")
        for name in ("timestamp", "signature"):
            if not params.get(name):
                raise _ApiError("mandatory_param", param=name)
        payload = _without_signature(ctx.raw_query) + _without_signature(ctx.body)
        expected = hmac.new(self.api_secret.encode(), payload.encode(), hashlib.sha256)
        if (ctx.bad_signature
                or not hmac.compare_digest(expected.hexdigest().encode(),
                                           params["signature"].lower().encode())):
            raise _ApiError("bad_signature")
        ts = _int_param(params, "timestamp")
        window = _int_param(params, "recvWindow")
        if window is None:
            window = 5_000
        if window > 60_000:
            raise _ApiError("recv_window")
        now = self.server_time_ms()
        if ts is None or ts > now + 1_000:
            raise _ApiError("timestamp_ahead")
        if now - ts > window:
            raise _ApiError("timestamp_outside")
        return params

    def _check_symbol(self, params: Mapping[str, str], required: bool = True) -> None:
        sym = params.get("symbol")
        if sym is None or sym == "":
            if required:
                raise _ApiError("mandatory_param", param="symbol")
            return
        if sym != self.symbol_id:
            raise _ApiError("invalid_symbol")

    # --- public endpoints ----------------------------------------------------------

    async def _ping(self, request: web.Request) -> web.Response:
        return _json({})

    async def _time(self, request: web.Request) -> web.Response:
        return _json({"serverTime": self.server_time_ms()})

    async def _exchange_info(self, request: web.Request) -> web.Response:
        params = _params()
        wanted: list[str] = []
        if params.get("symbol"):
            wanted = [params["symbol"]]
        elif params.get("symbols"):
            try:
                wanted = [str(s) for s in json.loads(params["symbols"])]
            except (ValueError, TypeError):
                raise _ApiError("illegal_chars", param="symbols",
                                legal="^\\[(\"[A-Z0-9-_.]{1,20}\"(,\"[A-Z0-9-_.]{1,20}\"){0,}){0,1}\\]$"
                                ) from None
        if any(w != self.symbol_id for w in wanted):
            raise _ApiError("invalid_symbol")
        return _json({
            "timezone": "UTC",
            "serverTime": self.server_time_ms(),
            "rateLimits": [
                {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1,
                 "limit": 6000},
                {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10,
                 "limit": 100},
                {"rateLimitType": "RAW_REQUESTS", "interval": "MINUTE", "intervalNum": 5,
                 "limit": 61000},
            ],
            "exchangeFilters": [],
            "symbols": [self._symbol_info()],
        })

    def _symbol_info(self) -> dict[str, Any]:
        return {
            "symbol": self.symbol_id,
            "status": "TRADING",
            "baseAsset": self.base_asset,
            "baseAssetPrecision": 8,
            "quoteAsset": self.quote_asset,
            "quotePrecision": 8,
            "quoteAssetPrecision": 8,
            "baseCommissionPrecision": 8,
            "quoteCommissionPrecision": 8,
            "orderTypes": ["LIMIT", "LIMIT_MAKER", "MARKET"],
            "icebergAllowed": False,
            "ocoAllowed": False,
            "otoAllowed": False,
            "quoteOrderQtyMarketAllowed": True,
            "allowTrailingStop": False,
            "cancelReplaceAllowed": False,
            "isSpotTradingAllowed": True,
            "isMarginTradingAllowed": False,
            "filters": [
                {"filterType": "PRICE_FILTER", "minPrice": _f8(self.tick),
                 "maxPrice": "1000000.00000000", "tickSize": _f8(self.tick)},
                {"filterType": "LOT_SIZE", "minQty": _f8(self.step),
                 "maxQty": "9000.00000000", "stepSize": _f8(self.step)},
                {"filterType": "NOTIONAL", "minNotional": _f8(self.min_notional),
                 "applyMinToMarket": True, "maxNotional": "9000000.00000000",
                 "applyMaxToMarket": False, "avgPriceMins": 5},
            ],
            "permissions": [],
            "permissionSets": [["SPOT"]],
            "defaultSelfTradePreventionMode": "EXPIRE_MAKER",
            "allowedSelfTradePreventionModes": ["EXPIRE_TAKER", "EXPIRE_MAKER", "EXPIRE_BOTH"],
        }

    async def _klines(self, request: web.Request) -> web.Response:
        params = _params()
        self._check_symbol(params)
        interval = params.get("interval")
        if not interval:
            raise _ApiError("mandatory_param", param="interval")
        if interval not in _VALID_INTERVALS or interval != self.interval:
            raise _ApiError("invalid_interval")
        limit = _int_param(params, "limit", KLINES_DEFAULT_LIMIT)
        if limit is None or limit < 1:
            raise _ApiError("invalid_param", param="limit")
        limit = min(limit, KLINES_MAX_LIMIT)
        start = _int_param(params, "startTime")
        end = _int_param(params, "endTime")
        with self._lock:
            hi = self._cursor + 1
            shift = self._shift_ms
        ts = self._ts
        if start is not None:
            lo = bisect.bisect_left(ts, start - shift, 0, hi)
            if end is not None:
                hi = bisect.bisect_right(ts, end - shift, 0, hi)
            idx = range(lo, min(hi, lo + limit))
        else:
            if end is not None:
                hi = bisect.bisect_right(ts, end - shift, 0, hi)
            idx = range(max(0, hi - limit), hi)
        return _json([self._kline_row(i) for i in idx])

    def _kline_row(self, i: int) -> list[Any]:
        t = self._ts[i] + self._shift_ms
        v = self._v[i]
        typical = (self._o[i] + self._h[i] + self._l[i] + self._c[i]) / 4
        return [t, _f8(self._o[i]), _f8(self._h[i]), _f8(self._l[i]), _f8(self._c[i]), _f8(v),
                t + self.interval_ms - 1, _f8(v * typical), max(1, int(v)), _f8(v / 2),
                _f8(v * typical / 2), "0"]

    def _price_locked(self) -> Decimal:
        return _dec(self._c[self._cursor]).quantize(self.tick)

    def _ticker(self) -> dict[str, Any]:
        with self._lock:
            cur = self._cursor
            price = self._price_locked()
        ts = self._ts
        # Binance's rolling 24 h: the candles that opened in [now - 24 h, now)
        lo = bisect.bisect_left(ts, ts[cur] + self.interval_ms - _DAY_MS, 0, cur + 1)
        lo = min(lo, cur)
        high = max(self._h[lo:cur + 1])
        low = min(self._l[lo:cur + 1])
        vol = sum(self._v[lo:cur + 1])
        qvol = sum(v * c for v, c in zip(self._v[lo:cur + 1], self._c[lo:cur + 1], strict=True))
        open_ = self._o[lo]
        change = float(price) - open_
        first_id = lo * 100 + 1
        return {
            "symbol": self.symbol_id,
            "priceChange": _f8(change),
            "priceChangePercent": f"{(change / open_ * 100) if open_ else 0:.3f}",
            "weightedAvgPrice": _f8(qvol / vol if vol else float(price)),
            "prevClosePrice": _f8(self._c[cur - 1] if cur > 0 else self._o[cur]),
            "lastPrice": _f8(price),
            "lastQty": "0.10000000",
            "bidPrice": _f8(price),
            "bidQty": "3.50000000",
            "askPrice": _f8(price + self.tick),
            "askQty": "2.75000000",
            "openPrice": _f8(open_),
            "highPrice": _f8(high),
            "lowPrice": _f8(low),
            "volume": _f8(vol),
            "quoteVolume": _f8(qvol),
            "openTime": ts[lo] + self._shift_ms,
            "closeTime": ts[cur] + self.interval_ms - 1 + self._shift_ms,
            "firstId": first_id,
            "lastId": (cur + 1) * 100,
            "count": (cur + 1) * 100 - first_id + 1,
        }

    def _one_or_all(self, params: Mapping[str, str], row: dict[str, Any]) -> web.Response:
        if params.get("symbol"):
            self._check_symbol(params)
            return _json(row)
        if params.get("symbols"):
            try:
                wanted = [str(s) for s in json.loads(params["symbols"])]
            except (ValueError, TypeError):
                raise _ApiError("invalid_param", param="symbols") from None
            if any(w != self.symbol_id for w in wanted):
                raise _ApiError("invalid_symbol")
        return _json([row])

    async def _ticker_24hr(self, request: web.Request) -> web.Response:
        return self._one_or_all(_params(), self._ticker())

    async def _ticker_price(self, request: web.Request) -> web.Response:
        with self._lock:
            price = self._price_locked()
        return self._one_or_all(_params(),
                                {"symbol": self.symbol_id, "price": _f8(price)})

    async def _book_ticker(self, request: web.Request) -> web.Response:
        return self._one_or_all(_params(), self._book_ticker_row())

    def _book_ticker_row(self) -> dict[str, Any]:
        with self._lock:
            price = self._price_locked()
        return {"symbol": self.symbol_id, "bidPrice": _f8(price), "bidQty": "3.50000000",
                "askPrice": _f8(price + self.tick), "askQty": "2.75000000"}

    async def _depth(self, request: web.Request) -> web.Response:
        params = _params()
        self._check_symbol(params)
        limit = _int_param(params, "limit", DEPTH_DEFAULT_LIMIT)
        if limit is None or limit < 1:
            raise _ApiError("invalid_param", param="limit")
        limit = min(limit, DEPTH_MAX_LIMIT)
        with self._lock:
            cur = self._cursor
            price = self._price_locked()
        rng = random.Random(cur)
        bids, asks = [], []
        for i in range(limit):
            bid = price - self.tick * i
            if bid > 0:
                bids.append([_f8(bid), f"{rng.uniform(0.05, 25):.8f}"])
            asks.append([_f8(price + self.tick * (i + 1)), f"{rng.uniform(0.05, 25):.8f}"])
        return _json({"lastUpdateId": 1_000_000 + cur * 100, "bids": bids, "asks": asks})

    # --- signed endpoints ----------------------------------------------------------

    async def _account(self, request: web.Request) -> web.Response:
        params = self._check_signed(request)
        omit_zero = params.get("omitZeroBalances", "false").lower() == "true"
        with self._lock:
            balances = [{"asset": a, "free": _f8(self._free[a]),
                         "locked": _f8(self._locked[a])} for a in self._free
                        if not (omit_zero and self._free[a] == 0 and self._locked[a] == 0)]
        fee = _f8(self.fee_rate)
        return _json({
            "makerCommission": int(self.fee_rate * 10_000),
            "takerCommission": int(self.fee_rate * 10_000),
            "buyerCommission": 0, "sellerCommission": 0,
            "commissionRates": {"maker": fee, "taker": fee, "buyer": _f8(0), "seller": _f8(0)},
            "canTrade": True, "canWithdraw": True, "canDeposit": True, "brokered": False,
            "requireSelfTradePrevention": False, "preventSor": False,
            "updateTime": self.server_time_ms(), "accountType": "SPOT",
            "balances": balances, "permissions": ["SPOT"], "uid": 354937868,
        })

    async def _test_order(self, request: web.Request) -> web.Response:
        params = self._check_signed(request)
        self._validate_order(params)
        return _json({})

    def _validate_order(self, p: Mapping[str, str]) -> tuple[str, str, str, Decimal, Decimal]:
        """(side, type, timeInForce, quantity, price) after Binance's checks; quantity may
        be derived from quoteOrderQty, price is 0 for MARKET."""
        self._check_symbol(p)
        for name in ("side", "type"):
            if not p.get(name):
                raise _ApiError("mandatory_param", param=name)
        side, otype = p["side"].upper(), p["type"].upper()
        if side not in ("BUY", "SELL"):
            raise _ApiError("invalid_side")
        if otype not in ("MARKET", "LIMIT"):
            raise _ApiError("invalid_order_type")
        tif = ""
        price = Decimal(0)
        if otype == "LIMIT":
            for name in ("timeInForce", "quantity", "price"):
                if not p.get(name):
                    raise _ApiError("mandatory_param", param=name)
            tif = p["timeInForce"].upper()
            if tif not in ("GTC", "IOC", "FOK"):
                raise _ApiError("invalid_tif")
            price = _dec_param(p, "price")
            if price <= 0 or price % self.tick != 0:
                raise _ApiError("filter_failure", filter="PRICE_FILTER")
        if p.get("quantity"):
            qty = _dec_param(p, "quantity")
        elif otype == "MARKET" and p.get("quoteOrderQty"):
            quote = _dec_param(p, "quoteOrderQty")
            with self._lock:
                cur_price = self._price_locked()
            qty = (quote / cur_price).quantize(self.step, rounding=ROUND_DOWN)
        else:
            raise _ApiError("mandatory_param", param="quantity")
        if qty < self.step or qty > 9000 or qty % self.step != 0:
            raise _ApiError("filter_failure", filter="LOT_SIZE")
        with self._lock:
            ref = price if otype == "LIMIT" else self._price_locked()
        if qty * ref < self.min_notional:
            raise _ApiError("filter_failure", filter="NOTIONAL")
        return side, otype, tif, qty, price

    async def _new_order(self, request: web.Request) -> web.Response:
        p = self._check_signed(request)
        side, otype, tif, qty, price = self._validate_order(p)
        client_id = p.get("newClientOrderId") or f"fake{secrets.token_hex(10)}"
        resp_type = (p.get("newOrderRespType") or "FULL").upper()
        now = self.server_time_ms()
        with self._lock:
            for o in self._orders.values():
                if o.client_id == client_id and (self.reject_duplicate == "any"
                                                 or o.status == "NEW"):
                    raise _ApiError("duplicate_order")
            cur = self._price_locked()
            base, quote = self.base_asset, self.quote_asset
            crosses = otype == "MARKET" or (price >= cur if side == "BUY" else price <= cur)
            need_asset, need = ((quote, qty * (price if otype == "LIMIT" else cur))
                                if side == "BUY" else (base, qty))
            if self._free[need_asset] < need:
                raise _ApiError("insufficient_balance")
            order = _Order(next(self._order_ids), client_id, side, otype, tif or "GTC",
                           price, qty, now, update_time=now)
            if crosses:
                self._fill_locked(order, cur, now, maker=False)
            elif tif in ("IOC", "FOK"):
                order.status = "EXPIRED"
            else:
                order.locked = need
                self._free[need_asset] -= need
                self._locked[need_asset] += need
            self._orders[order.order_id] = order
            body = self._order_json(order, ack=True)
            if resp_type != "ACK":
                body.update(self._order_json(order))
                for k in ("time", "updateTime", "isWorking", "stopPrice", "icebergQty"):
                    body.pop(k, None)
                body["transactTime"] = now
                body["workingTime"] = now
                body["selfTradePreventionMode"] = "EXPIRE_MAKER"
                if resp_type == "FULL":
                    body["fills"] = [dict(f) for f in order.fills]
        return _json(body)

    def _fill_locked(self, order: _Order, price: Decimal, now: int, maker: bool) -> None:
        """Fill `order` entirely at `price`; the caller holds the lock and checked funds."""
        base, quote = self.base_asset, self.quote_asset
        cost = order.qty * price
        if order.side == "BUY":
            fee, fee_asset = (order.qty * self.fee_rate).quantize(Decimal("1e-8")), base
            if order.locked:
                self._locked[quote] -= order.locked
                self._free[quote] += order.locked
            self._free[quote] -= cost
            self._free[base] += order.qty - fee
        else:
            fee, fee_asset = (cost * self.fee_rate).quantize(Decimal("1e-8")), quote
            if order.locked:
                self._locked[base] -= order.locked
                self._free[base] += order.locked
            self._free[base] -= order.qty
            self._free[quote] += cost - fee
        order.locked = Decimal(0)
        order.status = "FILLED"
        order.executed = order.qty
        order.cum_quote = cost
        order.update_time = now
        trade_id = next(self._trade_ids)
        order.fills.append({"price": _f8(price), "qty": _f8(order.qty),
                            "commission": _f8(fee), "commissionAsset": fee_asset,
                            "tradeId": trade_id})
        self._trades.append({
            "symbol": self.symbol_id, "id": trade_id, "orderId": order.order_id,
            "orderListId": -1, "price": _f8(price), "qty": _f8(order.qty),
            "quoteQty": _f8(cost), "commission": _f8(fee), "commissionAsset": fee_asset,
            "time": now, "isBuyer": order.side == "BUY", "isMaker": maker,
            "isBestMatch": True,
        })

    def _order_json(self, o: _Order, ack: bool = False) -> dict[str, Any]:
        if ack:
            return {"symbol": self.symbol_id, "orderId": o.order_id, "orderListId": -1,
                    "clientOrderId": o.client_id, "transactTime": o.time}
        return {
            "symbol": self.symbol_id, "orderId": o.order_id, "orderListId": -1,
            "clientOrderId": o.client_id, "price": _f8(o.price), "origQty": _f8(o.qty),
            "executedQty": _f8(o.executed), "cummulativeQuoteQty": _f8(o.cum_quote),
            "status": o.status, "timeInForce": o.tif, "type": o.type, "side": o.side,
            "stopPrice": _f8(0), "icebergQty": _f8(0), "time": o.time,
            "updateTime": o.update_time, "isWorking": o.status == "NEW",
            "workingTime": o.time, "origQuoteOrderQty": _f8(0),
            "selfTradePreventionMode": "EXPIRE_MAKER",
        }

    def _find_locked(self, p: Mapping[str, str]) -> _Order | None:
        if p.get("orderId"):
            oid = _int_param(p, "orderId")
            return self._orders.get(oid) if oid is not None else None
        if p.get("origClientOrderId"):
            cid = p["origClientOrderId"]
            # the newest order with that client id, as Binance resolves it
            for o in reversed(self._orders.values()):
                if o.client_id == cid:
                    return o
            return None
        raise _ApiError("mandatory_param", param="orderId")

    async def _get_order(self, request: web.Request) -> web.Response:
        p = self._check_signed(request)
        self._check_symbol(p)
        with self._lock:
            order = self._find_locked(p)
            if order is None:
                raise _ApiError("order_not_found")
            return _json(self._order_json(order))

    def _cancel_locked(self, order: _Order, now: int, new_client_id: str | None
                       ) -> dict[str, Any]:
        if order.locked:
            asset = self.quote_asset if order.side == "BUY" else self.base_asset
            self._locked[asset] -= order.locked
            self._free[asset] += order.locked
            order.locked = Decimal(0)
        order.status = "CANCELED"
        order.update_time = now
        body = self._order_json(order)
        for k in ("time", "updateTime", "isWorking", "workingTime", "stopPrice", "icebergQty"):
            body.pop(k, None)
        body["origClientOrderId"] = order.client_id
        body["clientOrderId"] = new_client_id or f"fake{secrets.token_hex(10)}"
        body["transactTime"] = now
        return body

    async def _cancel_order(self, request: web.Request) -> web.Response:
        p = self._check_signed(request)
        self._check_symbol(p)
        now = self.server_time_ms()
        with self._lock:
            order = self._find_locked(p)
            if order is None or order.status != "NEW":
                raise _ApiError("unknown_order")
            return _json(self._cancel_locked(order, now, p.get("newClientOrderId")))

    async def _cancel_all(self, request: web.Request) -> web.Response:
        p = self._check_signed(request)
        self._check_symbol(p)
        now = self.server_time_ms()
        with self._lock:
            open_ = [o for o in self._orders.values() if o.status == "NEW"]
            if not open_:
                raise _ApiError("unknown_order")
            return _json([self._cancel_locked(o, now, None) for o in open_])

    async def _open_orders(self, request: web.Request) -> web.Response:
        p = self._check_signed(request)
        self._check_symbol(p, required=False)
        with self._lock:
            return _json([self._order_json(o) for o in self._orders.values()
                          if o.status == "NEW"])

    async def _all_orders(self, request: web.Request) -> web.Response:
        p = self._check_signed(request)
        self._check_symbol(p)
        limit = min(max(1, _int_param(p, "limit", 500) or 500), 1000)
        from_id = _int_param(p, "orderId")
        start, end = _int_param(p, "startTime"), _int_param(p, "endTime")
        with self._lock:
            rows = [self._order_json(o) for o in self._orders.values()
                    if (from_id is None or o.order_id >= from_id)
                    and (start is None or o.time >= start) and (end is None or o.time <= end)]
        return _json(rows[:limit] if from_id is not None or start is not None
                     else rows[-limit:])

    async def _my_trades(self, request: web.Request) -> web.Response:
        p = self._check_signed(request)
        self._check_symbol(p)
        limit = min(max(1, _int_param(p, "limit", 500) or 500), 1000)
        order_id, from_id = _int_param(p, "orderId"), _int_param(p, "fromId")
        start, end = _int_param(p, "startTime"), _int_param(p, "endTime")
        with self._lock:
            rows = [dict(t) for t in self._trades
                    if (order_id is None or t["orderId"] == order_id)
                    and (from_id is None or t["id"] >= from_id)
                    and (start is None or t["time"] >= start)
                    and (end is None or t["time"] <= end)]
        return _json(rows[:limit] if from_id is not None or start is not None
                     else rows[-limit:])

    # --- replay and websockets -----------------------------------------------------

    def _step_locked(self, n: int) -> int:
        moved = 0
        now = int(time.time() * 1000) + self._time_offset_ms
        while moved < n and self._cursor < len(self._ts) - 1:
            self._cursor += 1
            moved += 1
            low, high = _dec(self._l[self._cursor]), _dec(self._h[self._cursor])
            for o in self._orders.values():
                if o.status == "NEW" and ((o.side == "BUY" and low <= o.price)
                                          or (o.side == "SELL" and high >= o.price)):
                    self._fill_locked(o, o.price, now, maker=True)
        return moved

    async def _pace(self) -> None:
        interval = self.ws_interval_s
        if not interval or interval <= 0:
            return
        stopping = self._stopping
        while stopping is not None and not stopping.is_set():
            await self._sleep(interval)
            if stopping.is_set():
                break
            if self.autoplay:
                with self._lock:
                    self._step_locked(1)
            await self._broadcast()

    async def _broadcast(self) -> None:
        conns = list(self._ws)
        if not conns:
            return
        cache: dict[str, Any] = {}
        for conn in conns:
            for stream in list(conn.streams):
                if stream not in cache:
                    cache[stream] = self._stream_event(stream)
                if cache[stream] is not None:
                    await self._send(conn, stream, cache[stream])

    async def _send(self, conn: _WsConn, stream: str, payload: Any) -> None:
        data = {"stream": stream, "data": payload} if conn.combined else payload
        try:
            async with conn.send_lock:
                if not conn.ws.closed:
                    await conn.ws.send_str(json.dumps(data, separators=(",", ":")))
        except (ConnectionError, RuntimeError):
            self._ws.discard(conn)

    def _stream_event(self, stream: str) -> Any:
        """The event a subscriber of `stream` gets now, or None for streams not served."""
        sid = self.symbol_id.lower()
        now = self.server_time_ms()
        if stream in ("!ticker@arr", "!miniticker@arr"):
            mini = self._stream_event(f"{sid}@{stream[1:-4]}")
            return [mini]
        sym, _, channel = stream.partition("@")
        if sym != sid:
            return None
        if channel == f"kline_{self.interval}":
            with self._lock:
                cur = self._cursor
            t = self._ts[cur] + self._shift_ms
            row = self._kline_row(cur)
            return {"e": "kline", "E": now, "s": self.symbol_id, "k": {
                "t": t, "T": row[6], "s": self.symbol_id, "i": self.interval,
                "f": cur * 100 + 1, "L": cur * 100 + row[8], "o": row[1], "c": row[4],
                "h": row[2], "l": row[3], "v": row[5], "n": row[8], "x": True, "q": row[7],
                "V": row[9], "Q": row[10], "B": "0"}}
        if channel in ("ticker", "miniticker"):
            tk = self._ticker()
            event = {"e": "24hrTicker" if channel == "ticker" else "24hrMiniTicker",
                     "E": now, "s": self.symbol_id, "c": tk["lastPrice"],
                     "o": tk["openPrice"], "h": tk["highPrice"], "l": tk["lowPrice"],
                     "v": tk["volume"], "q": tk["quoteVolume"]}
            if channel == "ticker":
                event.update({"p": tk["priceChange"], "P": tk["priceChangePercent"],
                              "w": tk["weightedAvgPrice"], "x": tk["prevClosePrice"],
                              "Q": tk["lastQty"], "b": tk["bidPrice"], "B": tk["bidQty"],
                              "a": tk["askPrice"], "A": tk["askQty"], "O": tk["openTime"],
                              "C": tk["closeTime"], "F": tk["firstId"], "L": tk["lastId"],
                              "n": tk["count"]})
            return event
        if channel == "bookticker":
            bt = self._book_ticker_row()
            with self._lock:
                cur = self._cursor
            return {"u": 1_000_000 + cur * 100, "s": self.symbol_id, "b": bt["bidPrice"],
                    "B": bt["bidQty"], "a": bt["askPrice"], "A": bt["askQty"]}
        return None

    async def _ws_handler(self, request: web.Request) -> web.StreamResponse:
        if time.monotonic() < self._ws_refuse_until:
            return web.Response(status=503, text="websocket connections refused for now")
        ws = web.WebSocketResponse(autoping=True, timeout=2.0, max_msg_size=1 << 20)
        if not ws.can_prepare(request).ok:
            return web.Response(status=400, text="expected a websocket upgrade")
        await ws.prepare(request)
        combined = request.path == "/stream"
        conn = _WsConn(ws, request, combined)
        initial: list[str] = []
        if combined:
            initial = [s for s in request.query.get("streams", "").lower().split("/") if s]
        elif request.match_info.get("name", "").find("@") > 0:
            initial = [request.match_info["name"].lower()]
        conn.streams.update(initial)
        self._ws.add(conn)
        try:
            for stream in initial:
                event = self._stream_event(stream)
                if event is not None:
                    await self._send(conn, stream, event)
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    await self._ws_message(conn, msg.data)
                elif msg.type in (WSMsgType.ERROR, WSMsgType.CLOSE):
                    break
        finally:
            self._ws.discard(conn)
        return ws

    async def _ws_message(self, conn: _WsConn, text: str) -> None:
        try:
            msg = json.loads(text)
            method = msg.get("method")
            req_id = msg.get("id")
            params = msg.get("params", [])
        except (ValueError, AttributeError):
            await self._send_raw(conn, {"error": {"code": 3, "msg": "Invalid JSON"},
                                        "id": None})
            return
        if method == "SUBSCRIBE" and isinstance(params, list):
            new = [str(s).lower() for s in params if str(s).lower() not in conn.streams]
            conn.streams.update(new)
            await self._send_raw(conn, {"result": None, "id": req_id})
            for stream in new:
                event = self._stream_event(stream)
                if event is not None:
                    await self._send(conn, stream, event)
        elif method == "UNSUBSCRIBE" and isinstance(params, list):
            conn.streams.difference_update(str(s).lower() for s in params)
            await self._send_raw(conn, {"result": None, "id": req_id})
        elif method == "LIST_SUBSCRIPTIONS":
            await self._send_raw(conn, {"result": sorted(conn.streams), "id": req_id})
        else:
            await self._send_raw(conn, {"error": {"code": 2, "msg": "Invalid request: "
                                                  "unknown method or bad params"},
                                        "id": req_id})

    async def _send_raw(self, conn: _WsConn, data: Any) -> None:
        try:
            async with conn.send_lock:
                if not conn.ws.closed:
                    await conn.ws.send_str(json.dumps(data, separators=(",", ":")))
        except (ConnectionError, RuntimeError):
            self._ws.discard(conn)

    def _drop_ws_threadsafe(self, refuse_s: float, abrupt: bool) -> int:
        loop = self._loop
        if loop is None or loop.is_closed():
            return 0
        self._ws_refuse_until = time.monotonic() + max(0.0, min(MAX_HANG_S, refuse_s))
        future = asyncio.run_coroutine_threadsafe(self._close_ws(abrupt, wait=0.05), loop)
        return future.result(timeout=5)

    async def _close_ws(self, abrupt: bool, wait: float) -> int:
        conns = list(self._ws)
        self._ws.clear()
        if not conns:
            return 0
        if abrupt:
            for conn in conns:
                transport = conn.request.transport
                if transport is not None:
                    transport.abort()
            return len(conns)
        tasks = [asyncio.ensure_future(c.ws.close(code=1001, message=b"going away"))
                 for c in conns]
        for task in tasks:
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        await asyncio.wait(tasks, timeout=wait)
        return len(conns)


def _without_signature(raw: str) -> str:
    if "signature=" not in raw:
        return raw
    return "&".join(part for part in raw.split("&") if not part.startswith("signature="))


def _int_param(p: Mapping[str, str], name: str, default: int | None = None) -> int | None:
    raw = p.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise _ApiError("illegal_chars", param=name, legal="^[0-9]{1,20}$") from None


def _dec_param(p: Mapping[str, str], name: str) -> Decimal:
    try:
        value = Decimal(p[name])
    except (InvalidOperation, KeyError):
        raise _ApiError("illegal_chars", param=name,
                        legal="^([0-9]{1,20})(\\.[0-9]{1,20})?$") from None
    if not value.is_finite():
        raise _ApiError("illegal_chars", param=name, legal="^([0-9]{1,20})(\\.[0-9]{1,20})?$")
    return value


def _deep_merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in extra.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), dict):
            out[k] = _deep_merge(out[k], v)
        else:
            out[k] = v
    return out


def ccxt_config(fx: FakeExchange, *, keys: bool = True, **extra: Any) -> dict[str, Any]:
    """kwargs for `ccxt.binance(...)`, `ccxt.async_support.binance(...)` and
    `ccxt.pro.binance(...)` that point ccxt at `fx`.

    Overrides urls['api'] public/private (the spot REST base, /api/v3), v1 and every other
    REST base (to a path of the fake that answers 404, so nothing leaves 127.0.0.1), and
    urls['api']['ws'] spot/margin (the stream base) plus the other ws bases; sets
    options fetchMarkets spot only, fetchCurrencies/fetchMargins off (no sapi calls with
    keys), defaultType spot, enableRateLimit. `keys` adds fx's apiKey/secret. `extra` is
    deep-merged on top (e.g. timeout=2_000, options={'adjustForTimeDifference': True}).
    """
    base, ws = fx.base_url, fx.ws_url
    blocked = f"{base}/_blocked"
    ws_blocked = f"ws://127.0.0.1:{fx.port}/_blocked"
    api: dict[str, Any] = {k: f"{blocked}/{k}" for k in _OTHER_REST_KEYS}
    api.update({"public": fx.rest_url, "private": fx.rest_url, "v1": f"{base}/api/v1"})
    ws_urls: dict[str, Any] = {k: f"{ws_blocked}/{k}" for k in _OTHER_WS_KEYS}
    ws_urls.update({"spot": ws, "margin": ws,
                    "ws-api": {k: f"{ws_blocked}/ws-api-{k}"
                               for k in ("spot", "linear", "inverse")}})
    api["ws"] = ws_urls
    config: dict[str, Any] = {
        "enableRateLimit": True,
        "urls": {"api": api},
        "options": {
            "fetchMarkets": {"types": ["spot"]},
            "fetchCurrencies": False,
            "fetchMargins": False,
            "defaultType": "spot",
        },
    }
    if keys:
        config["apiKey"] = fx.api_key
        config["secret"] = fx.api_secret
    return _deep_merge(config, extra)
