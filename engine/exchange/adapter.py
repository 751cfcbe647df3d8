"""One adapter over a ccxt exchange: retries, a circuit breaker, idempotent orders, no leaks.

Design decision: **sync ccxt** (`ccxt.binance` and friends), not `ccxt.async_support`. The
engine loop is synchronous, trades one symbol and polls every 30-60 s; an async client would
put an event loop on the tick path for no gain. ccxt is imported **lazily**, when the first
adapter is built (the import costs ~70 MiB and ~0.25 s and loads every exchange module), so
`import engine.exchange.adapter` stays light.

Every call goes through `engine.exchange.policy.call_with_retry` with the adapter's
`CircuitBreaker` and a Retry-After extractor reading ccxt's `last_response_headers`.
Transport errors (ccxt's NetworkError family: RequestTimeout, DDoSProtection,
RateLimitExceeded, ExchangeNotAvailable, InvalidNonce) are retried with capped, jittered
backoff; errors a resend cannot fix never are.

Error mapping at the boundary (the CLI turns each class into one exit code):

=====================================================  =====================================
ccxt (after retries)                                   raised here
=====================================================  =====================================
NetworkError family, retries exhausted                 ServiceUnavailable ("binance
                                                       fetch_ohlcv: RequestTimeout after 3
                                                       attempts ...")
circuit breaker open (no request sent)                 ServiceUnavailable (from the policy)
AuthenticationError, PermissionDenied                  ExchangeAuthError
BadSymbol                                              ConfigError ("ETH-XYZ is not listed
                                                       on binance")
InvalidOrder, InsufficientFunds, any other ccxt error  ExchangeError
a 200 answer of the wrong shape                        ExchangeError ("malformed response")
=====================================================  =====================================

ccxt does not raise for a malformed 200 body (it returns the raw text, so `fetch_time` gives
None, OHLCV rows are all None and `load_markets` returns no market), so every method checks
the shape of what it returns.

Orders are idempotent by client order id (Binance `newClientOrderId`, ccxt's unified
`clientOrderId`). After a timeout or transport error on `create_order` the order is never
blindly resent: it is first looked up by client id; only if it does not exist is it resent
with the *same* client id, and a "duplicate order" rejection means it exists, so it is
looked up again. Caveat: real Binance only rejects a duplicate client id while the earlier
order is *open*, so the lookup before each resend is what protects a filled market order.

Secrets: ccxt logs request headers (API key) and URLs (signature) at DEBUG and prints them in
`verbose` mode. The adapter forces `verbose=False`, silences ccxt's `log` (engine code never
prints), pins the `ccxt` and `ccxt.base.exchange` loggers to WARNING and installs a
`logging.Filter` on them (and on `urllib3.connectionpool`, which logs every signed URL at
DEBUG) that replaces the key, the secret and `signature=` values in every record. Every
message the adapter raises is scrubbed the same way, and raised without the ccxt exception
chained (its text holds the signed URL). `ExchangeSpec`'s repr shows neither key nor
secret, not even inside `overrides`.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar
from urllib.parse import quote, quote_plus

from engine.errors import (
    ConfigError,
    ExchangeAuthError,
    ExchangeError,
    ServiceUnavailable,
    SupremeError,
)
from engine.exchange.policy import CircuitBreaker, RetryPolicy, call_with_retry
from engine.latency import LatencyHistogram
from engine.parsing import ccxt_symbol, normalize_symbol, shown
from engine.types import Bar

__all__ = ["ExchangeAdapter", "ExchangeSpec", "ExchangeStats", "scrub"]

T = TypeVar("T")

log = logging.getLogger("engine.exchange")
log.addHandler(logging.NullHandler())  # a library: the application decides where logs go

CCXT_LOGGERS = ("ccxt", "ccxt.base.exchange")
"""The loggers ccxt writes request headers to (`ccxt.base.exchange` is the one used);
pinned to WARNING and scrubbed."""
SCRUBBED_LOGGERS = (*CCXT_LOGGERS, "urllib3.connectionpool")
"""Scrubbed but left at their level: urllib3 (under requests) logs each signed URL at
DEBUG, and pinning it would silence other users of urllib3."""

OHLCV_PAGE_LIMITS = {"binance": 1000, "binanceus": 1000}
"""Most candles one OHLCV request returns, by exchange id (DEFAULT_OHLCV_PAGE_LIMIT else)."""
DEFAULT_OHLCV_PAGE_LIMIT = 500

_SECRET_FIELDS = ("apiKey", "secret", "password", "uid", "privateKey", "walletAddress",
                  "token", "login", "twofa")
_CLIENT_ID_RE = re.compile(r"^[.A-Z:/a-z0-9_-]{1,36}$")
_SIDES = ("buy", "sell")
_ORDER_TYPES = ("market", "limit")
_MIN_TS_MS = 1_230_768_000_000  # 2009-01-01
_MAX_TS_MS = 10**14
_DETAIL_CHARS = 300


# --- secrets ---------------------------------------------------------------------------

_SIGNATURE_RE = re.compile(r"(signature=)[^&\s'\"]+", re.IGNORECASE)
_HEADER_RE = re.compile(
    r"((?:X-MBX-APIKEY|api[-_]?key|secret|signature)['\"]?\s*[:=]\s*['\"]?)[^'\"\s,}&]+",
    re.IGNORECASE)
_MASK = "***"
_MIN_SECRET_LEN = 4


def scrub(text: str, secrets: Iterable[str] = ()) -> str:
    """`text` with each secret (and its URL-encoded forms), `signature=` values and API-key
    header values replaced by ***."""
    for secret in sorted({s for s in secrets if s}, key=len, reverse=True):
        for form in {secret, quote(secret, safe=""), quote_plus(secret)}:
            text = text.replace(form, _MASK)
    text = _SIGNATURE_RE.sub(r"\1" + _MASK, text)
    return _HEADER_RE.sub(r"\1" + _MASK, text)


class _SecretFilter(logging.Filter):
    """Rewrites every record of the ccxt loggers with the known secrets masked."""

    def __init__(self) -> None:
        super().__init__("engine.exchange.secrets")
        self._lock = threading.Lock()
        self._secrets: frozenset[str] = frozenset()

    def add(self, secrets: Iterable[str]) -> None:
        with self._lock:
            self._secrets = self._secrets | {s for s in secrets if len(s) >= _MIN_SECRET_LEN}

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string: keep only what is safe to show
            message = str(record.msg)
        record.msg = scrub(message, self._secrets)
        record.args = ()
        if record.exc_text:
            record.exc_text = scrub(record.exc_text, self._secrets)
        return True


_FILTER = _SecretFilter()


def _guard_ccxt_logging(secrets: Iterable[str]) -> None:
    """Pin ccxt's loggers to WARNING and make sure the scrubbing filter sits on them."""
    _FILTER.add(secrets)
    for name in SCRUBBED_LOGGERS:
        logger = logging.getLogger(name)
        if name in CCXT_LOGGERS:
            logger.setLevel(logging.WARNING)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)


def _no_log(*args: Any) -> None:
    """Replaces ccxt's `Exchange.log` (a print) on our instances."""


def _masked(value: Any) -> Any:
    """`value` with the secret fields of every nested mapping replaced, for reprs."""
    if isinstance(value, Mapping):
        return {k: (_MASK if k in _SECRET_FIELDS and v else _masked(v)) for k, v in value.items()}
    return value


# --- spec and stats --------------------------------------------------------------------


@dataclass(frozen=True, repr=False)
class ExchangeSpec:
    """What to connect to. `overrides` is deep-merged into ccxt's constructor config (tests
    pass `ccxt_config(fx)`); `api_key`, `secret` and `timeout_s` win over it, and
    `enableRateLimit=True` / `verbose=False` are always forced. With `sandbox`, ccxt's
    `set_sandbox_mode(True)` replaces `urls['api']` (URL overrides included) by the
    exchange's test URLs. The repr never shows a key or secret."""

    exchange_id: str = "binance"
    api_key: str | None = None
    secret: str | None = None
    sandbox: bool = False
    timeout_s: float = 10.0
    overrides: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.exchange_id, str) or not self.exchange_id:
            raise ConfigError(f"invalid exchange id {shown(self.exchange_id)}")
        if (isinstance(self.timeout_s, bool) or not isinstance(self.timeout_s, int | float)
                or not math.isfinite(self.timeout_s) or not 0 < self.timeout_s <= 300):
            raise ConfigError(f"invalid exchange timeout {shown(self.timeout_s)}: "
                              "must be more than 0 and at most 300 s")
        if not isinstance(self.overrides, Mapping):
            raise ConfigError("exchange overrides must be a mapping")

    def __repr__(self) -> str:
        return (f"ExchangeSpec(exchange_id={self.exchange_id!r}, "
                f"api_key={_MASK if self.api_key else None!r}, "
                f"secret={_MASK if self.secret else None!r}, sandbox={self.sandbox!r}, "
                f"timeout_s={self.timeout_s!r}, overrides={_masked(self.overrides)!r})")

    __str__ = __repr__


@dataclass
class ExchangeStats:
    """Counters of one adapter. `calls` counts adapter calls, `attempts` requests tried
    (a call may send more than one), `errors` every failed attempt by exception name."""

    calls: int = 0
    attempts: int = 0
    retries: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    last_latency_s: float | None = None
    latency: dict[str, LatencyHistogram] = field(default_factory=dict)  # by endpoint, ns


# --- the adapter -----------------------------------------------------------------------


def _import_ccxt() -> Any:
    import ccxt

    return ccxt


class ExchangeAdapter:
    """A ccxt exchange behind retries, a breaker and the error mapping (module docstring).

    Symbols are ours ("ETH-USDT"); they are converted with `ccxt_symbol`. `breaker=None`
    gives the adapter its own `CircuitBreaker` named after the exchange; pass one to tune
    or share it. `sleep` is what the retry loop waits with (tests inject a recorder).
    """

    def __init__(self, spec: ExchangeSpec, policy: RetryPolicy | None = None,
                 breaker: CircuitBreaker | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.spec = spec
        self.id = spec.exchange_id
        self.policy = policy if policy is not None else RetryPolicy()
        self.breaker = breaker if breaker is not None else CircuitBreaker(name=spec.exchange_id)
        self.stats = ExchangeStats()
        self._sleep = sleep
        self._ccxt = _import_ccxt()
        self._secrets: tuple[str, ...] = ()
        self._ex = self._build()
        self._closed = False

    def _build(self) -> Any:
        ccxt, spec = self._ccxt, self.spec
        if spec.exchange_id not in ccxt.exchanges:
            some = ", ".join(sorted(set(ccxt.exchanges) & {
                "binance", "binanceus", "bybit", "coinbase", "kraken", "kucoin", "okx",
                "bitstamp", "gate", "mexc"}))
            raise ConfigError(f"unknown exchange {shown(spec.exchange_id)}; valid ids include "
                              f"{some} ({len(ccxt.exchanges)} in total)")
        config = copy.deepcopy(dict(spec.overrides))
        if spec.api_key is not None:
            config["apiKey"] = spec.api_key
        if spec.secret is not None:
            config["secret"] = spec.secret
        config.update(enableRateLimit=True, verbose=False, timeout=int(spec.timeout_s * 1000))
        self._secrets = tuple(str(config[k]) for k in _SECRET_FIELDS
                              if isinstance(config.get(k), str)
                              and len(config[k]) >= _MIN_SECRET_LEN)
        _guard_ccxt_logging(self._secrets)
        error: ConfigError | None = None
        try:
            ex = getattr(ccxt, spec.exchange_id)(config)
        except Exception as exc:
            error = ConfigError(f"cannot configure {spec.exchange_id}: "
                                f"{self._scrub(str(exc))}")
        if error is not None:
            raise error  # outside the except block: the original is not kept as context
        ex.verbose = False
        ex.log = _no_log
        # anything the exchange class itself filled in (never logged or raised either)
        self._secrets = tuple({*self._secrets, *(getattr(ex, k) for k in _SECRET_FIELDS
                                                 if isinstance(getattr(ex, k, None), str)
                                                 and len(getattr(ex, k)) >= _MIN_SECRET_LEN)})
        _guard_ccxt_logging(self._secrets)
        if spec.sandbox:
            # ccxt's set_sandbox_mode checks only that urls has a 'test' key; for many
            # exchanges it is None, which would silently leave urls['api'] = None.
            if not ex.urls.get("test"):
                raise ConfigError(f"{spec.exchange_id} has no sandbox (testnet) in ccxt; "
                                  "turn sandbox off or pick another exchange")
            ex.set_sandbox_mode(True)
        return ex

    def __repr__(self) -> str:
        return (f"ExchangeAdapter({self.id!r}, sandbox={self.spec.sandbox}, "
                f"breaker={self.breaker.state})")

    def __enter__(self) -> ExchangeAdapter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def exchange(self) -> Any:
        """The underlying ccxt instance (for tests and diagnostics)."""
        return self._ex

    @property
    def ohlcv_page_limit(self) -> int:
        return OHLCV_PAGE_LIMITS.get(self.id, DEFAULT_OHLCV_PAGE_LIMIT)

    def close(self) -> None:
        """Close the HTTP session (idempotent)."""
        if not self._closed:
            self._closed = True
            with contextlib.suppress(Exception):
                self._ex.close()

    # --- the retry loop and the error mapping ---------------------------------------

    def _scrub(self, text: str) -> str:
        return scrub(text, self._secrets)

    def _retry_after(self, exc: BaseException) -> float | None:
        headers = getattr(self._ex, "last_response_headers", None)
        if not headers:
            return None
        value = None
        for k, v in dict(headers).items():
            if str(k).lower() == "retry-after":
                value = str(v).strip()
        if not value:
            return None
        try:
            seconds = float(value)
        except ValueError:
            try:
                seconds = parsedate_to_datetime(value).timestamp() - time.time()
            except (TypeError, ValueError, IndexError):
                return None
        return seconds if math.isfinite(seconds) and seconds > 0 else None

    def _call(self, endpoint: str, fn: Callable[[Any], T], symbol: str | None = None) -> T:
        """`fn(exchange)` through call_with_retry; ccxt errors leave mapped and scrubbed."""
        ex = self._ex
        attempts = 0

        def attempt() -> T:
            nonlocal attempts
            attempts += 1
            self.stats.attempts += 1
            ex.last_response_headers = None  # so a Retry-After read is this attempt's own
            start = time.perf_counter()
            try:
                result = fn(ex)
            except Exception as exc:
                self.stats.errors[type(exc).__name__] += 1
                raise
            took = time.perf_counter() - start
            self.stats.last_latency_s = took
            hist = self.stats.latency.get(endpoint)
            if hist is None:
                hist = self.stats.latency[endpoint] = LatencyHistogram()
            hist.record(int(took * 1e9))
            return result

        def on_retry(n: int, exc: BaseException, delay: float) -> None:
            self.stats.retries += 1
            log.warning("%s %s: %s, retry %d in %.2f s", self.id, endpoint,
                        type(exc).__name__, n, delay)

        if self._closed:
            raise ExchangeError(f"{self.id} {endpoint}: the adapter is closed")
        self.stats.calls += 1
        try:
            return call_with_retry(attempt, self.policy, self.breaker,
                                   retry_after=self._retry_after, sleep=self._sleep,
                                   on_retry=on_retry)
        except SupremeError as exc:
            if isinstance(exc, ServiceUnavailable) and attempts == 0:
                self.stats.errors["CircuitOpen"] += 1
            mapped: SupremeError = exc
        except Exception as exc:
            mapped = self._map(endpoint, exc, attempts, symbol)
        # raised outside the except block: the ccxt exception (signed URL, headers) is
        # neither chained nor kept as context
        raise mapped

    def _map(self, endpoint: str, exc: Exception, attempts: int,
             symbol: str | None) -> SupremeError:
        ccxt = self._ccxt
        name = type(exc).__name__
        where = f"{self.id} {endpoint}"
        detail = self._scrub(str(exc))
        if len(detail) > _DETAIL_CHARS:
            detail = detail[:_DETAIL_CHARS] + "..."
        if isinstance(exc, ccxt.NetworkError):
            plural = "s" if attempts != 1 else ""
            return ServiceUnavailable(f"{where}: {name} after {attempts} attempt{plural} "
                                      f"({detail})")
        if isinstance(exc, ccxt.AuthenticationError):
            return ExchangeAuthError(f"{where}: credentials rejected ({name}: {detail})")
        if isinstance(exc, ccxt.BadSymbol):
            if symbol is not None:
                return ConfigError(f"{symbol} is not listed on {self.id}")
            return ConfigError(f"{where}: unknown symbol ({detail})")
        if isinstance(exc, ccxt.InsufficientFunds):
            return ExchangeError(f"{where}: insufficient funds ({detail})")
        if isinstance(exc, ccxt.OrderNotFound):
            return ExchangeError(f"{where}: order not found ({detail})")
        if isinstance(exc, ccxt.InvalidOrder):
            return ExchangeError(f"{where}: order rejected ({name}: {detail})")
        if isinstance(exc, ccxt.BadResponse):
            return ExchangeError(f"{where}: malformed response ({name}: {detail})")
        if isinstance(exc, ccxt.BaseError):
            return ExchangeError(f"{where}: {name} ({detail})")
        # ccxt parsing garbage it did not recognise (e.g. a text body where JSON was due)
        return ExchangeError(f"{where}: malformed response (unexpected {name}: {detail})")

    def _malformed(self, endpoint: str, what: str) -> ExchangeError:
        self.stats.errors["malformed"] += 1
        return ExchangeError(f"malformed response from {self.id} {endpoint}: "
                             f"{self._scrub(what)}")

    def _symbol(self, symbol: str) -> tuple[str, str]:
        """(our form, ccxt's form); ConfigError for a malformed symbol."""
        ours = normalize_symbol(symbol)
        return ours, ccxt_symbol(ours)

    # --- market data ------------------------------------------------------------------

    def load_markets(self, reload: bool = False) -> list[str]:
        """Load (or reload) the markets; returns the spot symbols in our form, sorted."""
        markets = self._call("load_markets", lambda ex: ex.load_markets(reload))
        if not isinstance(markets, dict) or not markets:
            self._ex.markets = None  # let the next call load them again
            raise self._malformed("load_markets", "no markets in the answer")
        out = []
        for m in markets.values():
            if isinstance(m, dict) and m.get("spot") and m.get("base") and m.get("quote"):
                out.append(f"{m['base']}-{m['quote']}")
        return sorted(out)

    def has_symbol(self, symbol: str) -> bool:
        """True when the exchange lists `symbol` (ConfigError if it is malformed)."""
        _, market = self._symbol(symbol)
        self.load_markets()
        return market in (self._ex.markets or {})

    def market_info(self, symbol: str) -> dict[str, Any]:
        """The market's trading limits the engine sizes orders by (cached by the engine)."""
        ours, market = self._symbol(symbol)
        self.load_markets()
        m = (self._ex.markets or {}).get(market)
        if not isinstance(m, dict):
            raise ExchangeError(f"{self.spec.exchange_id} does not list {ours}")
        limits = m.get("limits") or {}
        precision = m.get("precision") or {}
        return {"venue": self.spec.exchange_id, "symbol": ours,
                "min_notional": _finite((limits.get("cost") or {}).get("min")) or 0.0,
                "min_amount": _finite((limits.get("amount") or {}).get("min")) or 0.0,
                "amount_step": _finite(precision.get("amount")),
                "price_step": _finite(precision.get("price"))}

    def server_time_ms(self) -> tuple[int, float]:
        """(the exchange's clock in epoch ms, the round trip in seconds)."""
        rtt = 0.0

        def fetch_time(ex: Any) -> Any:
            nonlocal rtt
            start = time.perf_counter()
            value = ex.fetch_time()
            rtt = time.perf_counter() - start
            return value

        value = self._call("fetch_time", fetch_time)
        if type(value) is not int or not _MIN_TS_MS <= value < _MAX_TS_MS:
            raise self._malformed("fetch_time", f"server time {str(value)[:40]!r}")
        return value, rtt

    def fetch_ohlcv(self, symbol: str, timeframe: str = "1m", since_ms: int | None = None,
                    limit: int | None = None) -> list[Bar]:
        """Candles from `since_ms` (open time, epoch ms), oldest first, validated."""
        ours, market = self._symbol(symbol)
        if timeframe not in (getattr(self._ex, "timeframes", None) or {}):
            raise ConfigError(f"timeframe {shown(timeframe)} is not offered by {self.id}")
        if since_ms is not None and (type(since_ms) is not int or since_ms < 0):
            raise ConfigError(f"invalid since_ms {shown(since_ms)}")
        if limit is not None and (type(limit) is not int or limit < 1):
            raise ConfigError(f"invalid limit {shown(limit)}")
        rows = self._call("fetch_ohlcv",
                          lambda ex: ex.fetch_ohlcv(market, timeframe, since_ms, limit),
                          symbol=ours)
        if not isinstance(rows, list):
            raise self._malformed("fetch_ohlcv", f"expected a list, got {type(rows).__name__}")
        bars: list[Bar] = []
        for i, row in enumerate(rows):
            bar = bar_from_row(row)
            if bar is None:
                raise self._malformed("fetch_ohlcv", f"row {i} {str(row)[:120]}")
            if bars and bar.ts <= bars[-1].ts:
                raise self._malformed("fetch_ohlcv", f"row {i} timestamp {bar.ts} is not "
                                      f"after the previous row's {bars[-1].ts}")
            bars.append(bar)
        return bars

    def fetch_ticker(self, symbol: str) -> dict[str, Any]:
        """{symbol, timestamp, last, bid, ask, high, low, base_volume, quote_volume};
        last/bid/ask are finite and positive, timestamp is epoch ms."""
        ours, market = self._symbol(symbol)
        t = self._call("fetch_ticker", lambda ex: ex.fetch_ticker(market), symbol=ours)
        if not isinstance(t, dict) or not isinstance(t.get("info"), dict | list):
            raise self._malformed("fetch_ticker", "not a ticker")
        out: dict[str, Any] = {"symbol": ours}
        for key in ("last", "bid", "ask"):
            value = _price(t.get(key))
            if value is None:
                raise self._malformed("fetch_ticker", f"{key} = {str(t.get(key))[:40]}")
            out[key] = value
        ts = t.get("timestamp")
        if type(ts) is not int or not _MIN_TS_MS <= ts < _MAX_TS_MS:
            raise self._malformed("fetch_ticker", f"timestamp = {str(ts)[:40]}")
        if out["ask"] < out["bid"]:
            raise self._malformed("fetch_ticker", f"ask {out['ask']} below bid {out['bid']}")
        out["timestamp"] = ts
        for key, name in (("high", "high"), ("low", "low"), ("baseVolume", "base_volume"),
                          ("quoteVolume", "quote_volume")):
            out[name] = _finite(t.get(key))
        return out

    def fetch_order_book(self, symbol: str, limit: int = 5) -> dict[str, Any]:
        """{symbol, timestamp (may be None: Binance spot sends none), bids, asks}; each side
        a list of [price, amount], best first."""
        ours, market = self._symbol(symbol)
        book = self._call("fetch_order_book", lambda ex: ex.fetch_order_book(market, limit),
                          symbol=ours)
        if not isinstance(book, dict):
            raise self._malformed("fetch_order_book", "not an order book")
        sides: dict[str, list[list[float]]] = {}
        for side in ("bids", "asks"):
            levels = book.get(side)
            if not isinstance(levels, list):
                raise self._malformed("fetch_order_book", f"{side} is not a list")
            parsed = []
            for level in levels:
                price = _price(level[0]) if isinstance(level, list | tuple) and level else None
                amount = _finite(level[1]) if price is not None and len(level) > 1 else None
                if price is None or amount is None or amount < 0:
                    raise self._malformed("fetch_order_book", f"{side} level {str(level)[:60]}")
                parsed.append([price, amount])
            sides[side] = parsed
        if not sides["bids"] and not sides["asks"]:
            raise self._malformed("fetch_order_book", "both sides are empty")
        ts = book.get("timestamp")
        return {"symbol": ours, "timestamp": ts if type(ts) is int else None, **sides}

    # --- account ----------------------------------------------------------------------

    def fetch_balance(self) -> dict[str, float]:
        """Free balance by asset."""
        raw = self._call("fetch_balance", lambda ex: ex.fetch_balance())
        if (not isinstance(raw, dict) or not isinstance(raw.get("info"), dict | list)
                or not isinstance(raw.get("free"), dict)):
            raise self._malformed("fetch_balance", "not a balance")
        out: dict[str, float] = {}
        for asset, value in raw["free"].items():
            if value is None:
                continue
            amount = _finite(value)
            if amount is None or amount < 0:
                raise self._malformed("fetch_balance", f"free {asset} = {str(value)[:40]}")
            out[str(asset)] = amount
        return out

    def fetch_open_orders(self, symbol: str) -> list[dict[str, Any]]:
        """The open orders on `symbol`, each as `_order` shapes it (see create_order)."""
        ours, market = self._symbol(symbol)
        raw = self._call("fetch_open_orders", lambda ex: ex.fetch_open_orders(market),
                         symbol=ours)
        if not isinstance(raw, list):
            raise self._malformed("fetch_open_orders", "not a list")
        return [self._order(o, ours, "fetch_open_orders") for o in raw]

    def create_order(self, symbol: str, side: str, amount: float, *, client_order_id: str,
                     order_type: str = "market", price: float | None = None) -> dict[str, Any]:
        """Place an order, idempotently by `client_order_id` (see the module docstring).

        Returns {id, client_order_id, symbol, side, type, status, price, average, amount,
        filled, remaining, cost, timestamp, fees}. A client id the exchange already holds
        returns that order (ExchangeError if it is a different side or amount)."""
        ours, market = self._symbol(symbol)
        if side not in _SIDES:
            raise ConfigError(f"invalid order side {shown(side)}: expected buy or sell")
        if order_type not in _ORDER_TYPES:
            raise ConfigError(f"invalid order type {shown(order_type)}: expected market/limit")
        if _price(amount) is None:
            raise ConfigError(f"invalid order amount {shown(amount)}")
        if order_type == "limit" and _price(price) is None:
            raise ConfigError(f"a limit order needs a positive price, not {shown(price)}")
        if not isinstance(client_order_id, str) or not _CLIENT_ID_RE.match(client_order_id):
            raise ConfigError(f"invalid client order id {shown(client_order_id)}: 1-36 of "
                              "A-Z a-z 0-9 . : / _ -")
        cid = client_order_id
        send_price = price if order_type == "limit" else None
        sent = False

        def attempt(ex: Any) -> Any:
            nonlocal sent
            if sent:
                # the previous send may have gone through: never resend blindly
                found = self._find_raw(ex, market, cid)
                if found is not None:
                    return found
            sent = True
            try:
                return ex.create_order(market, order_type, side, amount, send_price,
                                       {"clientOrderId": cid})
            except self._ccxt.InvalidOrder as exc:
                if not _is_duplicate(exc):
                    raise
            # the exchange holds an order with this client id: that one is ours
            found = self._find_raw(ex, market, cid)
            if found is None:
                raise ExchangeError(f"{self.id} create_order: the exchange reports client "
                                    f"order id {cid} as a duplicate but no such order is found")
            return found

        raw = self._call("create_order", attempt, symbol=ours)
        if not isinstance(raw, dict) or not raw.get("id"):
            # status unknown: the order may exist although the answer was garbage
            found = self.fetch_order_by_client_id(ours, cid)
            if found is None:
                raise self._malformed("create_order", "no order id in the answer, and no "
                                      f"order with client id {cid} exists")
            order = found
        else:
            order = self._order(raw, ours, "create_order")
        if not self._same_order(order, market, side, float(amount)):
            raise ExchangeError(f"{self.id} create_order: client order id {cid} belongs to a "
                                f"different order ({order['side']} {order['amount']})")
        return order

    def fetch_order_by_client_id(self, symbol: str, client_order_id: str
                                 ) -> dict[str, Any] | None:
        """The order with this client id, or None if the exchange has none."""
        ours, market = self._symbol(symbol)
        raw = self._call("fetch_order",
                         lambda ex: self._find_raw(ex, market, client_order_id), symbol=ours)
        return None if raw is None else self._order(raw, ours, "fetch_order")

    def cancel_order(self, symbol: str, order_id: str | None = None,
                     client_order_id: str | None = None) -> dict[str, Any]:
        """Cancel by exchange id or client id. Idempotent: if the order is no longer open
        (cancelled by an earlier attempt, or filled) it is returned as it stands; one that
        does not exist at all is an ExchangeError."""
        ours, market = self._symbol(symbol)
        if order_id is None and client_order_id is None:
            raise ConfigError("cancel_order needs an order id or a client order id")
        params = {"clientOrderId": client_order_id} if client_order_id is not None else {}

        def attempt(ex: Any) -> Any:
            try:
                return ex.cancel_order(order_id, market, dict(params))
            except self._ccxt.OrderNotFound:
                pass
            found = ex.fetch_order(order_id, market, dict(params))  # OrderNotFound: raised
            return found

        raw = self._call("cancel_order", attempt, symbol=ours)
        return self._order(raw, ours, "cancel_order")

    # --- orders: helpers --------------------------------------------------------------

    def _same_order(self, order: dict[str, Any], market: str, side: str,
                    amount: float) -> bool:
        """Whether an order found under our client id is the one we meant to place: same
        side, same amount once rounded to the market's precision as ccxt sends it."""
        if order["side"] != side:
            return False
        if order["amount"] is None:
            return True
        try:
            expected = float(self._ex.amount_to_precision(market, amount))
        except Exception:  # no market data or precision: compare as given
            expected = amount
        return math.isclose(order["amount"], expected, rel_tol=1e-9, abs_tol=1e-12)

    def _find_raw(self, ex: Any, market: str, client_order_id: str) -> Any:
        try:
            return ex.fetch_order(None, market, {"clientOrderId": client_order_id})
        except self._ccxt.OrderNotFound:
            return None

    def _order(self, o: Any, symbol: str, endpoint: str) -> dict[str, Any]:
        if not isinstance(o, dict) or not o.get("id") or not isinstance(o.get("status"), str):
            raise self._malformed(endpoint, f"order without id or status: {str(o)[:120]}")
        fees = []
        for fee in o.get("fees") or ([o["fee"]] if o.get("fee") else []):
            if isinstance(fee, dict) and fee.get("cost") is not None:
                fees.append({"currency": fee.get("currency"), "cost": _finite(fee["cost"])})
        return {
            "id": str(o["id"]),
            "client_order_id": o.get("clientOrderId"),
            "symbol": symbol,
            "side": o.get("side"),
            "type": o.get("type"),
            "status": o["status"],
            "price": _finite(o.get("price")),
            "average": _finite(o.get("average")),
            "amount": _finite(o.get("amount")),
            "filled": _finite(o.get("filled")),
            "remaining": _finite(o.get("remaining")),
            "cost": _finite(o.get("cost")),
            "timestamp": o.get("timestamp") if type(o.get("timestamp")) is int else None,
            "fees": fees,
        }


# --- value checks ----------------------------------------------------------------------


def _finite(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        x = float(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return x if math.isfinite(x) else None


def _price(value: Any) -> float | None:
    x = _finite(value)
    return x if x is not None and x > 0 else None


def bar_from_row(row: Any) -> Bar | None:
    """A validated Bar from a ccxt OHLCV row, or None: 6 finite numbers, an epoch-ms
    timestamp, positive prices with high >= low, volume >= 0."""
    if not isinstance(row, list | tuple) or len(row) < 6:
        return None
    ts = row[0]
    if isinstance(ts, float) and ts.is_integer():
        ts = int(ts)
    if type(ts) is not int or not _MIN_TS_MS <= ts < _MAX_TS_MS:
        return None
    o, h, lo, c = (_price(v) for v in row[1:5])
    v = _finite(row[5])
    if o is None or h is None or lo is None or c is None or v is None or v < 0 or h < lo:
        return None
    return Bar(ts, o, h, lo, c, v)


def _is_duplicate(exc: BaseException) -> bool:
    return type(exc).__name__ == "DuplicateOrderId" or "duplicate" in str(exc).lower()
