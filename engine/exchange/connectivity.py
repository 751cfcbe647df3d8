"""Connectivity check of one or more exchanges, inside a hard deadline.

`check_exchanges(["binance", "kraken"], "ETH-USDT", deadline_s=10)` checks, per exchange and
concurrently: the server time (and the clock skew against ours), the market list, whether
the symbol is listed, the ticker, the order book and the OHLCV candles; the balance and the
open orders when keys are given; ccxt.pro's `watch_ticker` and `watch_ohlcv` when asked.
Each endpoint ends `ok`, `failed` or `skipped`, with its latency and, when it did not work,
a reason in plain language ("DNS lookup failed for api.binance.com: ...", "timed out after
2.7 s waiting for api.kraken.com", "symbol ETH-XYZ is not listed on binance", "API key
rejected"). The verdict is `ok` (every endpoint checked worked), `down` (no endpoint of any
exchange worked) or `degraded` (anything in between); skipped endpoints do not count.

The deadline is hard and covers everything: loading ccxt, DNS, connecting, answers.

* Every endpoint runs in its own **daemon thread** with its own `ExchangeAdapter` (sync ccxt,
  `RetryPolicy(max_attempts=1)`, so no retry eats the budget) whose ccxt timeout is the time
  left before the deadline, less `GRACE_S` so the request's own timeout is what gets
  reported. The endpoints that need the market list (everything but the server time) wait
  for it and reuse it (`set_markets`) instead of downloading it again.
* The calling thread waits until every endpoint has a result or the deadline (less a small
  margin, `margin_s`) passes, then reports what finished; the endpoints still running are
  "timed out (deadline)". Socket timeouts do not bound DNS (`getaddrinfo` can block far
  longer), which is why the wait is on threads and not on the requests: a thread stuck in
  a lookup is abandoned, and being a daemon it never delays the process's exit.
* The websocket check runs ccxt.pro in its own event loop on a daemon thread, with a
  default executor that also uses daemon threads (asyncio's own executor threads are
  joined at interpreter exit, so a hung `getaddrinfo` there would hold the process).
* The exchange's main API host is resolved in parallel from the start, so a failed or
  silent DNS is named as such in the reasons.

Secrets: keys go only to the balance and open-orders adapters, which scrub every message;
every reason is scrubbed again here with the keys before it is stored.

`endpoints` points an exchange at a mirror or a test server (`{"binance":
"http://127.0.0.1:8080"}`) through `engine.exchange.endpoints.endpoint_overrides`, the one
mapping the CLI uses everywhere: Binance-protocol ids only (binance, binanceus), every other
REST and websocket base blocked so nothing leaves for the real exchange. An endpoint
replaces the sandbox for that exchange. Without an endpoint, binance and binanceus are
checked on spot markets only (no futures markets, no signed currency calls at load).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import copy
import errno
import logging
import math
import re
import socket
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from engine.errors import ConfigError, ExchangeAuthError, ServiceUnavailable, SupremeError
from engine.exchange.adapter import ExchangeAdapter, ExchangeSpec, scrub
from engine.exchange.endpoints import endpoint_overrides
from engine.exchange.policy import RetryPolicy
from engine.parsing import ccxt_symbol, normalize_symbol, shown

log = logging.getLogger("engine.exchange.connectivity")

__all__ = [
    "ENDPOINTS",
    "ConnectivityReport",
    "EndpointResult",
    "ExchangeReport",
    "check_exchanges",
    "margin_s",
    "parse_endpoints",
    "parse_exchange_ids",
]

ENDPOINTS = ("time", "markets", "symbol", "ticker", "order_book", "ohlcv", "balance",
             "open_orders", "ws_ticker", "ws_ohlcv")
"""Every endpoint of every exchange, in report order (all present in every report)."""
OK, FAILED, SKIPPED = "ok", "failed", "skipped"
VERDICTS = ("ok", "degraded", "down")
"""Best to worst; the CLI maps them to exit codes 0, 7 and 8."""

MAX_DEADLINE_S = 600.0
GRACE_S = 0.1
"""Requests time out this long before the deadline, so their own error is the reason."""
MIN_REQUEST_S = 0.05
"""No request is started with less time than this left."""
SKEW_WARN_MS = 1000.0
"""Beyond this clock skew signed requests risk rejection (Binance: 1000 ms ahead)."""
OHLCV_TIMEFRAME = "1m"
DEFAULT_IDS = ("binance",)

_ID_RE = re.compile(r"^[a-z0-9_]{2,40}$")
_URL_RE = re.compile(r"\b(?:https?|wss?)://[^\s)'\"<>]+")
_NAME_RE = re.compile(r":\s(\w+) after \d+ attempts?\b")
_HTTP_STATUS_RE = re.compile(r"\s([1-5]\d\d)\s[A-Z]")
_WS_STATUS_RE = re.compile(r"\b([1-5]\d\d), message='Invalid response status'")
_EXCHANGE_MSG_RE = re.compile(r"\"msg\"\s*:\s*\"([^\"]{1,200})\"")
_MAIN_URL_KEYS = ("public", "rest", "spot", "v3", "api")
_BINANCE_SPOT = ("binance", "binanceus")
"""ccxt ids checked as Binance spot: only spot markets are loaded and no sapi call is made
(a connectivity check has no use for futures markets or currency details)."""
_SPOT_ONLY = {"options": {"defaultType": "spot", "fetchMarkets": {"types": ["spot"]},
                          "fetchCurrencies": False, "fetchMargins": False}}
_MARKETS_NEEDED = ("ticker", "order_book", "ohlcv", "balance", "open_orders", "ws_ticker",
                   "ws_ohlcv")
_SYMBOL_NEEDED = ("ticker", "order_book", "ohlcv", "open_orders", "ws_ticker", "ws_ohlcv")
_HAS = {"time": "fetchTime", "ticker": "fetchTicker", "order_book": "fetchOrderBook",
        "ohlcv": "fetchOHLCV", "balance": "fetchBalance", "open_orders": "fetchOpenOrders"}


def margin_s(deadline_s: float, websocket: bool = False) -> float:
    """How long before the deadline the check returns: the time a command needs to print
    the report and for the interpreter to exit (~0.15 s with ccxt loaded, ~0.5 s with
    ccxt.pro), so that the whole process, not only the check, ends within the deadline."""
    return min(0.6, 0.25 + 0.1 * deadline_s) + (0.35 if websocket else 0.0)


# --- the report --------------------------------------------------------------------------


@dataclass
class EndpointResult:
    """One endpoint: `status` ok / failed / skipped, `latency_s` of its request (None when
    none was sent), `reason` why it failed or was skipped, `note` a remark on a success."""

    name: str
    status: str
    latency_s: float | None = None
    reason: str | None = None
    note: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"status": self.status, "latency_s": self.latency_s, "reason": self.reason,
                "note": self.note}


@dataclass
class ExchangeReport:
    """One exchange: its endpoints in ENDPOINTS order, the clock skew (exchange minus
    local, ms; None when the server time was not read), the REST base checked and its
    host, the DNS lookup of that host (not part of the verdict), and the verdict."""

    exchange_id: str
    url: str | None
    host: str | None
    sandbox: bool
    endpoints: list[EndpointResult]
    skew_ms: float | None
    dns: EndpointResult | None
    verdict: str

    def endpoint(self, name: str) -> EndpointResult:
        for result in self.endpoints:
            if result.name == name:
                return result
        raise KeyError(name)

    def as_dict(self) -> dict[str, Any]:
        return {"verdict": self.verdict, "url": self.url, "host": self.host,
                "sandbox": self.sandbox, "skew_ms": self.skew_ms,
                "dns": None if self.dns is None else self.dns.as_dict(),
                "endpoints": {e.name: e.as_dict() for e in self.endpoints}}


@dataclass
class ConnectivityReport:
    """The whole check: `elapsed_s` is measured from the call to the report."""

    symbol: str
    deadline_s: float
    elapsed_s: float
    verdict: str
    exchanges: list[ExchangeReport] = field(default_factory=list)

    def exchange(self, exchange_id: str) -> ExchangeReport:
        for report in self.exchanges:
            if report.exchange_id == exchange_id:
                return report
        raise KeyError(exchange_id)

    def as_dict(self) -> dict[str, Any]:
        return {"verdict": self.verdict, "symbol": self.symbol, "deadline_s": self.deadline_s,
                "elapsed_s": self.elapsed_s,
                "exchanges": {r.exchange_id: r.as_dict() for r in self.exchanges}}


def _verdict(results: Iterable[EndpointResult]) -> str:
    counted = [r.status for r in results if r.status != SKIPPED]
    if OK not in counted:
        return "down"
    return "degraded" if FAILED in counted else "ok"


def _overall(verdicts: list[str]) -> str:
    if verdicts and all(v == "ok" for v in verdicts):
        return "ok"
    if all(v == "down" for v in verdicts):
        return "down"
    return "degraded"


# --- input ---------------------------------------------------------------------------------


def parse_exchange_ids(value: str | Iterable[str]) -> list[str]:
    """["binance", "kraken"] from "binance,kraken" (or a list of such strings); lower case,
    duplicates dropped. Whether ccxt knows an id is checked by `check_exchanges`."""
    items = [value] if isinstance(value, str) else list(value)
    out: list[str] = []
    for item in items:
        for part in str(item).split(","):
            name = part.strip().lower()
            if not name:
                continue
            if not _ID_RE.match(name):
                raise ConfigError(f"invalid exchange id {shown(part.strip())}: expected a ccxt "
                                  "id such as binance, kraken or coinbase")
            if name not in out:
                out.append(name)
    if not out:
        raise ConfigError("no exchange to check: name at least one, e.g. binance")
    return out


def parse_endpoints(values: Iterable[str]) -> dict[str, str]:
    """{"binance": "http://127.0.0.1:8080"} from ["binance=http://127.0.0.1:8080"]; the URL
    itself is checked by `endpoint_overrides` when the check starts."""
    out: dict[str, str] = {}
    for raw in values:
        exchange_id, sep, url = str(raw).partition("=")
        exchange_id = exchange_id.strip().lower()
        url = url.strip()
        if not sep or not exchange_id or not url:
            raise ConfigError(f"invalid endpoint {shown(raw)}: expected ID=URL, e.g. "
                              "binance=http://127.0.0.1:8080")
        if not _ID_RE.match(exchange_id):
            raise ConfigError(f"invalid exchange id {shown(exchange_id)} in endpoint {shown(raw)}")
        out[exchange_id] = url
    return out


def _main_url(api: Any) -> str | None:
    """The REST base an exchange's public market data is served from, as far as a generic
    walk of ccxt's urls['api'] can tell (binance/kraken 'public', coinbase 'rest')."""
    if isinstance(api, str):
        return api if api.startswith(("http://", "https://")) else None
    if isinstance(api, Mapping):
        keys = [k for k in _MAIN_URL_KEYS if k in api]
        keys += [k for k in api if k not in keys and k not in ("ws", "test")]
        for key in keys:
            found = _main_url(api[key])
            if found:
                return found
    return None


def _host_port(url: str) -> tuple[str, int] | None:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    if not parts.hostname:
        return None
    default = 443 if parts.scheme in ("https", "wss") else 80
    return parts.hostname, port or default


# --- shared state between the workers and the waiting thread --------------------------------


class _Board:
    """Results by (exchange, endpoint). Workers `put`; the waiting thread `close`s it at the
    deadline, after which late results are dropped."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self._cond = threading.Condition()
        self._results: dict[tuple[str, str], EndpointResult] = {}
        self._started: dict[tuple[str, str], float] = {}
        self._expected = 0
        self._closed = False

    def expect(self, n: int) -> None:
        with self._cond:
            self._expected += n

    def start(self, ex: str, name: str) -> None:
        with self._cond:
            self._started.setdefault((ex, name), self.clock())

    def put(self, ex: str, result: EndpointResult) -> None:
        with self._cond:
            if self._closed or (ex, result.name) in self._results:
                return
            self._results[(ex, result.name)] = result
            self._cond.notify_all()

    def wait(self, end: float) -> None:
        with self._cond:
            while len(self._results) < self._expected:
                left = end - self.clock()
                if left <= 0:
                    return
                self._cond.wait(left)

    def close(self) -> tuple[dict[tuple[str, str], EndpointResult], dict[tuple[str, str], float]]:
        with self._cond:
            self._closed = True
            return dict(self._results), dict(self._started)


class _Lookup:
    """One DNS lookup, run once on a daemon thread; anyone may wait for it (bounded)."""

    def __init__(self, host: str, port: int, clock: Callable[[], float]) -> None:
        self.host, self.port = host, port
        self.clock = clock
        self.started = clock()
        self.done = threading.Event()
        self.latency_s: float | None = None
        self.error: str | None = None
        threading.Thread(target=self._run, name=f"dns-{host}", daemon=True).start()

    def _run(self) -> None:
        try:
            socket.getaddrinfo(self.host, self.port, type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            self.error = _gai_reason(exc)
        except Exception as exc:  # OSError, or UnicodeError for a malformed name
            self.error = getattr(exc, "strerror", None) or type(exc).__name__
        self.latency_s = self.clock() - self.started
        self.done.set()

    def result(self) -> EndpointResult:
        if not self.done.is_set():
            waited = self.clock() - self.started
            return EndpointResult("dns", FAILED, None, f"no answer from DNS after {waited:.1f} s")
        if self.error is not None:
            return EndpointResult("dns", FAILED, self.latency_s,
                                  f"DNS lookup failed for {self.host}: {self.error}")
        return EndpointResult("dns", OK, self.latency_s)


def _gai_reason(exc: socket.gaierror) -> str:
    code = exc.errno
    if code == socket.EAI_NONAME:
        return "name not found (no network, or a DNS that blocks it?)"
    if code == socket.EAI_AGAIN:
        return "the DNS server did not answer (no network?)"
    nodata = getattr(socket, "EAI_NODATA", None)
    if nodata is not None and code == nodata:
        return "the name has no address"
    return exc.strerror or str(exc)


class _DaemonExecutor(concurrent.futures.ThreadPoolExecutor):
    """Runs each call on a new daemon thread. asyncio's `getaddrinfo` goes through the
    loop's default executor, and a ThreadPoolExecutor's own threads are joined at
    interpreter exit; this one starts none of them (asyncio insists on the class)."""

    def submit(self, fn: Callable[..., Any], /, *args: Any,
               **kwargs: Any) -> concurrent.futures.Future[Any]:
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()

        def run() -> None:
            if not future.set_running_or_notify_cancel():
                return
            try:
                future.set_result(fn(*args, **kwargs))
            except BaseException as exc:
                future.set_exception(exc)

        threading.Thread(target=run, name="connectivity-executor", daemon=True).start()
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Nothing to join: the threads are daemons."""


# --- one exchange ---------------------------------------------------------------------------


class _Check:
    """The checks of one exchange; its methods run on daemon threads."""

    def __init__(self, run: _Run, exchange_id: str, keys: tuple[str | None, str | None] | None,
                 endpoint: str | None, overrides: dict[str, Any]) -> None:
        self.run = run
        self.id = exchange_id
        self.api_key, self.secret = keys if keys is not None else (None, None)
        self.endpoint = endpoint
        self.sandbox = run.sandbox and endpoint is None
        self.market = ccxt_symbol(run.symbol)
        self.secrets = tuple(s for s in (self.api_key, self.secret) if s)
        self.markets_ready = threading.Event()
        self.markets: Any = None
        self.currencies: Any = None
        self.listed = False
        self.overrides = overrides
        self.url: str | None = None
        self.host: str | None = None
        self.lookup: _Lookup | None = None
        self.lookups: dict[str, _Lookup] = {}
        self.has: dict[str, Any] = {}
        self.timeframe = OHLCV_TIMEFRAME
        self.setup_error: str | None = None

    # setup (calling thread; no network) -----------------------------------------------

    def setup(self, ccxt: Any) -> None:
        try:
            base = getattr(ccxt, self.id)(copy.deepcopy(self.overrides))
            api = base.urls.get("api")
            if self.sandbox:
                if not base.urls.get("test"):
                    self.setup_error = (f"{self.id} has no sandbox (testnet) in ccxt: turn "
                                        "sandbox off (EXCHANGE_SANDBOX) or pick another "
                                        "exchange")
                    return
                api = base.urls["test"]
            self.has = dict(base.has)
            timeframes = getattr(base, "timeframes", None) or {}
            if timeframes and OHLCV_TIMEFRAME not in timeframes:
                self.timeframe = next(iter(timeframes))
        except Exception as exc:  # a broken exchange class: reported, not raised
            self.setup_error = f"cannot set up {self.id}: {self._scrub(str(exc))[:200]}"
            return
        self.url = _main_url(api)
        target = _host_port(self.url) if self.url else None
        if target is not None:
            self.host = target[0]
            self.lookup = self._lookup(*target)

    def _lookup(self, host: str, port: int) -> _Lookup:
        with self.run.lock:
            found = self.lookups.get(host)
            if found is None:
                found = self.lookups[host] = _Lookup(host, port, self.run.clock)
            return found

    def start(self) -> None:
        board = self.run.board
        if self.setup_error is not None:
            for name in ENDPOINTS:
                board.put(self.id, EndpointResult(name, FAILED, None, self.setup_error))
            return
        tasks: list[tuple[str, Callable[[], EndpointResult | None]]] = [
            ("time", self._time), ("markets", self._markets),
            ("ticker", self._ticker), ("order_book", self._order_book), ("ohlcv", self._ohlcv),
        ]
        if self.api_key and self.secret:
            tasks += [("balance", self._balance), ("open_orders", self._open_orders)]
        else:
            if self.api_key or self.secret:
                reason = "only one of the API key and secret is configured: both are needed"
            elif self.run.keys_elsewhere:
                reason = f"not checked: the configured keys are for {self.run.keys_elsewhere}"
            else:
                reason = "no API key configured (EXCHANGE_API_KEY and EXCHANGE_SECRET)"
            for name in ("balance", "open_orders"):
                board.put(self.id, EndpointResult(name, SKIPPED, None, reason))
        if not self.run.websocket:
            for name in ("ws_ticker", "ws_ohlcv"):
                board.put(self.id, EndpointResult(name, SKIPPED, None,
                                                  "websocket check not requested"))
        for name, fn in tasks:
            self._spawn(name, fn)
        self._spawn_ws()

    def _spawn(self, name: str, fn: Callable[[], EndpointResult | None]) -> None:
        threading.Thread(target=self._guarded, args=(name, fn), daemon=True,
                         name=f"connectivity-{self.id}-{name}").start()

    def _guarded(self, name: str, fn: Callable[[], EndpointResult | None]) -> None:
        try:
            result = fn()
        except SupremeError as exc:  # e.g. the adapter refusing its configuration
            result = EndpointResult(name, FAILED, None, self._scrub(str(exc))[:300])
        except Exception as exc:  # a bug or an unmapped library error: reported, not raised
            result = EndpointResult(name, FAILED, None, "unexpected error: "
                                    f"{type(exc).__name__}: {self._scrub(str(exc))[:200]}")
        if result is not None:
            self.run.board.put(self.id, result)

    # helpers -----------------------------------------------------------------------------

    def _scrub(self, text: str) -> str:
        return scrub(text, self.secrets)

    def _timeout(self) -> float | None:
        left = self.run.end - self.run.clock() - GRACE_S
        return None if left < MIN_REQUEST_S else min(left, 300.0)

    def _adapter(self, with_keys: bool = False) -> ExchangeAdapter | None:
        timeout = self._timeout()
        if timeout is None:
            return None  # no time left: the deadline marks it
        spec = ExchangeSpec(exchange_id=self.id,
                            api_key=self.api_key if with_keys else None,
                            secret=self.secret if with_keys else None,
                            sandbox=self.sandbox, timeout_s=timeout, overrides=self.overrides)
        adapter = ExchangeAdapter(spec, RetryPolicy(max_attempts=1))
        if self.markets is not None:
            adapter.exchange.set_markets(self.markets, self.currencies)
        return adapter

    def _needs(self, name: str) -> EndpointResult | None:
        """Wait for the market list; a skip result when `name` cannot be checked."""
        if not self.markets_ready.wait(max(0.0, self.run.end - self.run.clock())):
            return None  # the deadline passed first: reported as timed out
        if self.markets is None:
            return EndpointResult(name, SKIPPED, None,
                                  "not checked: the market list could not be loaded")
        if name in _SYMBOL_NEEDED and not self.listed:
            return EndpointResult(name, SKIPPED, None,
                                  f"not checked: symbol {self.run.symbol} is not listed on "
                                  f"{self.id}")
        return None

    def _not_offered(self, name: str) -> EndpointResult | None:
        capability = _HAS.get(name)
        if capability is not None and not self.has.get(capability):
            return EndpointResult(name, SKIPPED, None,
                                  f"{self.id} does not offer it (ccxt has no {capability})")
        return None

    def _simple(self, name: str, call: Callable[[ExchangeAdapter], Any], *,
                with_keys: bool = False) -> EndpointResult | None:
        """An endpoint that needs the market list: one request, timed."""
        skip = self._not_offered(name) or self._needs(name)
        if skip is not None or not self.markets_ready.is_set():
            return skip
        self.run.board.start(self.id, name)
        adapter = self._adapter(with_keys)
        if adapter is None:
            return None
        started = self.run.clock()
        try:
            call(adapter)
        except SupremeError as exc:
            latency = self.run.clock() - started
            return EndpointResult(name, FAILED, latency, self._reason(exc, latency))
        finally:
            adapter.close()
        return EndpointResult(name, OK, self.run.clock() - started)

    # the endpoints ------------------------------------------------------------------------

    def _time(self) -> EndpointResult | None:
        skip = self._not_offered("time")
        if skip is not None:
            return skip
        self.run.board.start(self.id, "time")
        adapter = self._adapter()
        if adapter is None:
            return None
        started = self.run.clock()
        try:
            server_ms, rtt = adapter.server_time_ms()
            local_ms = self.run.wall() * 1000.0 - rtt * 1000.0 / 2
            latency = self.run.clock() - started
            # the first read paid for DNS and the connection: read again on the warm
            # connection when there is time, and keep the read with the shorter round trip
            # (only where ccxt's rate limiter would not hold the second read back)
            timeout = self._timeout()
            if (timeout is not None and latency < timeout / 4
                    and getattr(adapter.exchange, "rateLimit", 1000) <= 100):
                adapter.exchange.timeout = int(timeout * 1000)
                with contextlib.suppress(SupremeError):
                    again, rtt2 = adapter.server_time_ms()
                    if rtt2 < rtt:
                        server_ms = again
                        local_ms = self.run.wall() * 1000.0 - rtt2 * 1000.0 / 2
        except SupremeError as exc:
            latency = self.run.clock() - started
            return EndpointResult("time", FAILED, latency, self._reason(exc, latency))
        finally:
            adapter.close()
        skew = server_ms - local_ms
        self.run.skews[self.id] = skew
        note = None
        if abs(skew) >= SKEW_WARN_MS:
            side = "ahead of" if skew > 0 else "behind"
            note = (f"the exchange's clock is {abs(skew):.0f} ms {side} ours: signed "
                    "requests may be rejected; sync the clock (NTP)")
        return EndpointResult("time", OK, latency, note=note)

    def _markets(self) -> EndpointResult | None:
        try:
            return self._load_markets()
        finally:
            self.markets_ready.set()  # whatever happened: the waiting endpoints go on

    def _load_markets(self) -> EndpointResult | None:
        board = self.run.board
        board.start(self.id, "markets")
        adapter = self._adapter()
        if adapter is None:
            return None
        started = self.run.clock()
        try:
            symbols = adapter.load_markets()
            latency = self.run.clock() - started
            listed = adapter.has_symbol(self.run.symbol)  # from the loaded list: no request
            markets = adapter.exchange.markets or {}
            currencies = adapter.exchange.currencies
        except SupremeError as exc:
            latency = self.run.clock() - started
            board.put(self.id, EndpointResult(
                "symbol", SKIPPED, None, "not checked: the market list could not be loaded"))
            return EndpointResult("markets", FAILED, latency, self._reason(exc, latency))
        finally:
            adapter.close()
        market = markets.get(self.market) or {}
        if not listed:
            symbol = EndpointResult("symbol", FAILED, None,
                                    f"symbol {self.run.symbol} is not listed on {self.id}")
        elif isinstance(market, Mapping) and market.get("active") is False:
            symbol = EndpointResult("symbol", FAILED, None,
                                    f"symbol {self.run.symbol} is listed on {self.id} but "
                                    "not trading (inactive)")
        else:
            symbol = EndpointResult("symbol", OK, None)
        self.listed = symbol.status == OK
        self.markets, self.currencies = markets, currencies
        board.put(self.id, symbol)
        return EndpointResult("markets", OK, latency,
                              note=_count(len(symbols), "spot market") if symbols else None)

    def _ticker(self) -> EndpointResult | None:
        return self._simple("ticker", lambda a: a.fetch_ticker(self.run.symbol))

    def _order_book(self) -> EndpointResult | None:
        return self._simple("order_book", lambda a: a.fetch_order_book(self.run.symbol, 5))

    def _ohlcv(self) -> EndpointResult | None:
        return self._simple("ohlcv",
                            lambda a: a.fetch_ohlcv(self.run.symbol, self.timeframe, limit=5))

    def _balance(self) -> EndpointResult | None:
        return self._simple("balance", lambda a: a.fetch_balance(), with_keys=True)

    def _open_orders(self) -> EndpointResult | None:
        return self._simple("open_orders", lambda a: a.fetch_open_orders(self.run.symbol),
                            with_keys=True)

    # websocket ------------------------------------------------------------------------------

    def _spawn_ws(self) -> None:
        if self.run.websocket:
            threading.Thread(target=self._ws, daemon=True,
                             name=f"connectivity-{self.id}-ws").start()

    def _ws(self) -> None:
        names = ("ws_ticker", "ws_ohlcv")
        try:
            self._ws_checks()
        except Exception as exc:  # reported, never raised from a daemon thread
            reason = f"unexpected error: {type(exc).__name__}: {self._scrub(str(exc))[:200]}"
            for name in names:
                self.run.board.put(self.id, EndpointResult(name, FAILED, None, reason))

    def _ws_checks(self) -> None:
        """Both watches at once on ccxt.pro; results go to the board as soon as they are
        known, before the client is closed (closing may take a while)."""
        board = self.run.board
        names = ("ws_ticker", "ws_ohlcv")
        skip = self._needs("ws_ticker")
        if skip is not None:
            for name in names:
                board.put(self.id, EndpointResult(name, skip.status, None, skip.reason))
            return
        if not self.markets_ready.is_set():
            return  # the deadline passed first
        for name in names:
            board.start(self.id, name)
        try:
            import ccxt.pro as ccxtpro
        except Exception as exc:
            reason = f"ccxt.pro is not available ({type(exc).__name__})"
            for name in names:
                board.put(self.id, EndpointResult(name, SKIPPED, None, reason))
            return
        cls = getattr(ccxtpro, self.id, None)
        if cls is None:
            for name in names:
                board.put(self.id, EndpointResult(
                    name, SKIPPED, None, f"ccxt.pro has no websocket client for {self.id}"))
            return
        timeout = self._timeout()
        if timeout is None:
            return
        config = copy.deepcopy(self.overrides)  # the endpoint's ws URLs included
        config.update(enableRateLimit=True, verbose=False, timeout=int(timeout * 1000))
        ex = cls(config)
        ex.verbose = False
        ex.log = _quiet  # ccxt's log is a print; engine code never prints
        if self.sandbox:
            ex.set_sandbox_mode(True)
        ex.set_markets(self.markets, self.currencies)
        loop = asyncio.new_event_loop()
        loop.set_default_executor(_DaemonExecutor())
        # abandoned watches end as "Task was destroyed but it is pending" and the like,
        # which asyncio's default handler writes to stderr: a debug log line instead
        loop.set_exception_handler(_loop_exception)
        try:
            for result in loop.run_until_complete(self._ws_watch(ex)):
                board.put(self.id, result)
        finally:
            with contextlib.suppress(BaseException):  # best effort: the results are in
                loop.run_until_complete(asyncio.wait_for(ex.close(), timeout=1.0))
            loop.close()

    async def _ws_watch(self, ex: Any) -> list[EndpointResult]:
        watches: dict[str, tuple[str, Callable[[], Any]]] = {
            "ws_ticker": ("watchTicker", lambda: ex.watch_ticker(self.market)),
            "ws_ohlcv": ("watchOHLCV",
                         lambda: ex.watch_ohlcv(self.market, self.timeframe, None, 5)),
        }
        out: list[EndpointResult] = []
        finished: dict[str, float] = {}
        started = self.run.clock()

        async def timed(name: str, watch: Callable[[], Any]) -> Any:
            try:
                return await watch()
            finally:
                finished[name] = self.run.clock()

        tasks: dict[str, asyncio.Task[Any]] = {}
        for name, (capability, watch) in watches.items():
            if ex.has.get(capability):
                tasks[name] = asyncio.ensure_future(timed(name, watch))
            else:
                out.append(EndpointResult(name, SKIPPED, None, f"{self.id} does not offer it "
                                          f"(ccxt.pro has no {capability})"))
        left = self.run.end - self.run.clock() - GRACE_S
        if tasks:
            # asyncio.wait, not wait_for: a timed-out watch is abandoned, not awaited while
            # it cancels (a hung websocket upgrade can take long to cancel)
            await asyncio.wait(tasks.values(), timeout=max(0.0, left))
        for name, task in tasks.items():
            if not task.done():
                latency = self.run.clock() - started
                task.cancel()
                out.append(EndpointResult(name, FAILED, latency, f"timed out after "
                                          f"{latency:.1f} s waiting for a websocket message"))
                continue
            latency = finished.get(name, self.run.clock()) - started
            exc = task.exception()
            if exc is not None:
                out.append(EndpointResult(name, FAILED, latency, self._ws_reason(exc, latency)))
            elif not task.result():
                out.append(EndpointResult(name, FAILED, latency, "empty websocket message"))
            else:
                out.append(EndpointResult(name, OK, latency))
        return out

    def _ws_reason(self, exc: BaseException, latency: float) -> str:
        name = type(exc).__name__
        detail = self._scrub(str(exc))
        urls = _URL_RE.findall(detail)
        host = (_host_port(urls[0]) or (None, 0))[0] if urls else None
        if "RequestTimeout" in name or "timed out" in detail.lower():
            return (f"timed out after {latency:.1f} s waiting for "
                    f"{host or 'the websocket server'}")
        refused = _WS_STATUS_RE.search(detail)
        if refused:
            return (f"websocket refused: HTTP {refused.group(1)} from "
                    f"{host or 'the server'}")
        if host is not None:
            dns = self._dns_failure(host, urls[0])
            if dns is not None:
                return dns
        text = detail if len(detail) <= 200 else detail[:200] + "..."
        return f"websocket failed ({name}: {text})" if text else f"websocket failed ({name})"

    # reasons ------------------------------------------------------------------------------

    def _reason(self, exc: SupremeError, latency: float) -> str:
        return self._scrub(self._explain(exc, latency))

    def _explain(self, exc: SupremeError, latency: float) -> str:
        message = self._scrub(str(exc))
        urls = _URL_RE.findall(message)
        url = urls[0] if urls else self.url
        host = (_host_port(url) or (None, 0))[0] if url else None
        if isinstance(exc, ExchangeAuthError):
            found = _EXCHANGE_MSG_RE.search(message)
            return "API key rejected" + (f" by {self.id}: {found.group(1)}" if found else
                                         f" by {self.id}")
        if isinstance(exc, ConfigError):
            if "is not listed" in message:
                return f"symbol {self.run.symbol} is not listed on {self.id}"
            return message
        if isinstance(exc, ServiceUnavailable):
            match = _NAME_RE.search(message)
            kind = match.group(1) if match else ""
            status = _HTTP_STATUS_RE.search(message)
            code = int(status.group(1)) if status else None
            if kind == "RequestTimeout" and code is None:
                return self._timeout_reason(latency, host)
            if kind in ("DDoSProtection", "RateLimitExceeded"):
                banned = "banned" in message.lower()
                what = "IP banned" if banned else "rate limited"
                return f"{what} by {self.id}" + (f" (HTTP {code})" if code else "")
            if kind == "InvalidNonce":
                return ("request rejected: its timestamp is outside the exchange's window "
                        "(clock skew; sync the clock)")
            if code is not None:
                return _http_reason(self.id, code, host)
            if kind in ("NetworkError", "ExchangeNotAvailable") and host is not None and url:
                diagnosed = self._network_reason(host, url)
                if diagnosed is not None:
                    return diagnosed
            if not match:  # the circuit breaker, or another message of the policy
                return message
            return f"network error talking to {host or self.id} ({kind})"
        if "malformed response" in message:
            return message.replace(f"malformed response from {self.id} ", "malformed response: ")
        return message[:300]

    def _timeout_reason(self, latency: float, host: str | None = None,
                        what: str | None = None) -> str:
        host = host or self.host
        text = f"timed out after {latency:.1f} s" + (f" waiting for {host}" if host else "")
        lookup = self.lookups.get(host) if host else None
        if lookup is not None and not lookup.done.is_set():
            return text + " (its DNS lookup had no answer either)"
        return text + (f" ({what})" if what else "")

    def _dns_failure(self, host: str, url: str) -> str | None:
        target = _host_port(url)
        if target is None:
            return None
        lookup = self._lookup(*target)
        lookup.done.wait(max(0.0, self.run.end - self.run.clock()))
        if not lookup.done.is_set():
            return f"DNS lookup for {host} had no answer"
        if lookup.error is not None:
            return f"DNS lookup failed for {host}: {lookup.error}"
        return None

    def _network_reason(self, host: str, url: str) -> str | None:
        """Why a request to `url` failed at the transport level, found by looking the host
        up and opening one TCP connection (ccxt's message carries only the URL)."""
        dns = self._dns_failure(host, url)
        if dns is not None:
            return dns
        target = _host_port(url)
        left = self.run.end - self.run.clock() - GRACE_S
        if target is None or left < MIN_REQUEST_S:
            return None
        where = f"{host}:{target[1]}"
        try:
            with socket.create_connection(target, timeout=min(left, 5.0)):
                pass
        except ConnectionRefusedError:
            return f"connection refused by {where} (nothing listens there)"
        except TimeoutError:
            return f"no answer from {where} (the connection attempt timed out)"
        except OSError as exc:
            if exc.errno == errno.ENETUNREACH:
                return f"network unreachable: cannot reach {where} (no route; no network?)"
            if exc.errno == errno.EHOSTUNREACH:
                return f"host unreachable: {where}"
            return f"cannot connect to {where}: {exc.strerror or type(exc).__name__}"
        return (f"the connection to {where} failed during the request (reset, TLS or proxy "
                "error)")


def _quiet(*args: Any) -> None:
    """Replaces ccxt.pro's `Exchange.log` (a print)."""


def _loop_exception(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    log.debug("websocket check: %s", context.get("message") or context.get("exception"))


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _http_reason(exchange_id: str, code: int, host: str | None) -> str:
    where = host or exchange_id
    if code == 404:
        return f"not found (HTTP 404) at {where}: not this exchange's API?"
    if code in (502, 503):
        return f"{exchange_id} unavailable (HTTP {code} from {where})"
    if code == 504:
        return f"gateway timeout (HTTP 504 from {where})"
    if code >= 500:
        return f"{exchange_id} server error (HTTP {code})"
    return f"request refused (HTTP {code} from {where})"


# --- the run ----------------------------------------------------------------------------------


@dataclass
class _Run:
    symbol: str
    websocket: bool
    sandbox: bool
    end: float
    clock: Callable[[], float]
    wall: Callable[[], float]
    board: _Board
    keys_elsewhere: str | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)
    skews: dict[str, float] = field(default_factory=dict)


def _load_ccxt(end: float, clock: Callable[[], float],
               pro: bool = False) -> tuple[Any, str | None]:
    """(the ccxt module, None), or (None, why not) if it did not load before `end`. The
    import runs on a daemon thread: it takes 0.3-1 s and must not overrun the deadline.
    With `pro`, the thread goes on to import ccxt.pro (~1 s more) while the REST checks
    run, so the websocket check finds it loaded or loading."""
    box: dict[str, Any] = {}
    done = threading.Event()

    def load() -> None:
        try:
            import ccxt

            box["ccxt"] = ccxt
        except Exception as exc:
            box["error"] = f"cannot load the exchange library (ccxt): {type(exc).__name__}"
        done.set()
        if pro and "ccxt" in box:
            with contextlib.suppress(Exception):  # the websocket check reports it
                import ccxt.pro

    threading.Thread(target=load, name="connectivity-import", daemon=True).start()
    done.wait(max(0.0, end - clock()))
    if not done.is_set():
        return None, "timed out (deadline) while loading the exchange library (ccxt)"
    return box.get("ccxt"), box.get("error")


def check_exchanges(
    ids: str | Iterable[str],
    symbol: str,
    deadline_s: float,
    keys: Mapping[str, tuple[str | None, str | None]] | None = None,
    websocket: bool = False,
    endpoints: Mapping[str, str] | None = None,
    *,
    sandbox: bool = False,
    started: float | None = None,
    clock: Callable[[], float] = time.monotonic,
    wall: Callable[[], float] = time.time,
) -> ConnectivityReport:
    """Check every exchange in `ids` concurrently and return within `deadline_s` (see the
    module docstring). `keys` maps an exchange id to its (API key, secret): the balance and
    open orders are checked there only (keys of an exchange not checked only explain why
    the others are skipped). `endpoints` maps an id to the base URL of a server speaking its
    API. `sandbox` checks the exchanges' testnets. `started` is the `clock()` value the
    deadline counts from (default: now; a command passes its own start). `clock` is the
    monotonic clock of the deadline and latencies, `wall` the clock the exchange's time is
    compared with. Raises ConfigError for invalid input (an id ccxt does not know
    included); every network problem is a result, never an exception."""
    started = clock() if started is None else started
    exchange_ids = parse_exchange_ids(ids)
    ours = normalize_symbol(symbol)
    if (isinstance(deadline_s, bool) or not isinstance(deadline_s, int | float)
            or not math.isfinite(deadline_s) or not 0 < deadline_s <= MAX_DEADLINE_S):
        raise ConfigError(f"invalid deadline {shown(deadline_s)}: must be more than 0 and at "
                          f"most {MAX_DEADLINE_S:.0f} s")
    deadline_s = float(deadline_s)
    endpoints = {k.lower(): v for k, v in (endpoints or {}).items()}
    stray = sorted(set(endpoints) - set(exchange_ids))
    if stray:
        raise ConfigError(f"endpoint given for {', '.join(stray)}, which is not among the "
                          f"exchanges checked ({', '.join(exchange_ids)})")
    overrides = {i: endpoint_overrides(i, endpoints[i]) if i in endpoints
                 else copy.deepcopy(_SPOT_ONLY) if i in _BINANCE_SPOT else {}
                 for i in exchange_ids}
    keys = {k.lower(): v for k, v in (keys or {}).items()}
    end = started + deadline_s - margin_s(deadline_s, websocket)
    board = _Board(clock)
    board.expect(len(exchange_ids) * len(ENDPOINTS))
    with_keys = [k for k, v in keys.items() if v and any(v)]
    run = _Run(symbol=ours, websocket=websocket, sandbox=sandbox, end=end, clock=clock,
               wall=wall, board=board,
               keys_elsewhere=with_keys[0] if len(with_keys) == 1 else None)
    checks = [_Check(run, i, keys.get(i), endpoints.get(i), overrides[i]) for i in exchange_ids]

    ccxt, error = _load_ccxt(end, clock, pro=websocket)
    if ccxt is not None:
        unknown = [i for i in exchange_ids if i not in ccxt.exchanges]
        if unknown:
            some = ", ".join(sorted(set(ccxt.exchanges) & {
                "binance", "binanceus", "bybit", "coinbase", "kraken", "kucoin", "okx"}))
            raise ConfigError(f"unknown exchange {', '.join(unknown)}: valid ids include "
                              f"{some} ({len(ccxt.exchanges)} in total)")
        for check in checks:
            check.setup(ccxt)
        for check in checks:
            check.start()
        board.wait(end)
    results, begun = board.close()
    now = clock()
    reports = []
    for check in checks:
        endpoints_out = []
        for name in ENDPOINTS:
            result = results.get((check.id, name))
            if result is None:
                result = _unfinished(check, name, begun.get((check.id, name)), now, error)
            endpoints_out.append(result)
        dns = check.lookup.result() if check.lookup is not None else None
        reports.append(ExchangeReport(
            exchange_id=check.id, url=check.url, host=check.host, sandbox=check.sandbox,
            endpoints=endpoints_out, skew_ms=run.skews.get(check.id), dns=dns,
            verdict=_verdict(endpoints_out)))
    return ConnectivityReport(symbol=ours, deadline_s=deadline_s, elapsed_s=clock() - started,
                              verdict=_overall([r.verdict for r in reports]),
                              exchanges=reports)


def _unfinished(check: _Check, name: str, begun: float | None, now: float,
                error: str | None) -> EndpointResult:
    """The result of an endpoint that had none when the deadline passed."""
    if error is not None:
        return EndpointResult(name, FAILED, None, error)
    lookup = check.lookup
    dns_silent = lookup is not None and not lookup.done.is_set()
    dns_note = f" (the DNS lookup of {lookup.host} had no answer either)" if (
        dns_silent and lookup is not None) else ""
    if begun is None:
        if name in _MARKETS_NEEDED or name == "symbol":
            return EndpointResult(name, FAILED, None, "timed out (deadline) waiting for the "
                                  "market list" + dns_note)
        return EndpointResult(name, FAILED, None, "timed out (deadline) before it started")
    waited = now - begun
    return EndpointResult(name, FAILED, waited,
                          f"timed out (deadline): no answer after {waited:.1f} s" + dns_note)
