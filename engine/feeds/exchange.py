"""Live candles from an exchange: each newly closed candle once, in order, never a forming one.

`ExchangeFeed` satisfies the `Feed` protocol (`kind == "exchange"`). It blocks until the
next candle is due, so the pipeline does not pace it (`--speed` does not apply):

* **First bar at once.** Iteration starts with the latest *closed* candle.
* **REST polling** (the default): after that, the exchange is asked every
  `interval_s` jittered by ±1/3 (INTERVAL_SECONDS: 30-60 s for 45) for the candles since the
  last one seen; every closed one is yielded once, oldest first. A full page means more are
  waiting, so the next request goes out at once (a backlog drains without waiting).
* **Closed, not forming.** A candle is closed when a newer one exists in the same answer or
  when the wall clock is past its close time plus `close_grace_ms` (1 s, against small clock
  skews). Exchanges serve the forming candle last; it is held back until it closes.
* **Outages.** An exchange unreachable at the first request (after the adapter's retries)
  raises ServiceUnavailable at once. Later, a failed poll (ServiceUnavailable after the
  adapter's retries, an open circuit, a malformed answer) is reported once as a warning and
  retried at the next poll; when the exchange answers again the missed candles are fetched
  since the last one seen, so nothing is skipped or repeated. Backfill is bounded: after
  more than `max_backfill` candles in one catch-up the feed jumps to the newest ones with a
  warning. An outage longer than `max_outage_s` (15 min) raises ServiceUnavailable: a live
  engine should not trade blind. Bad keys, a bad symbol or timeframe raise at once.
* **Streaming** (`stream=True`): ccxt.pro's `watch_ohlcv` runs in a background thread with its
  own asyncio loop (ccxt.pro is imported there, only then) and hands each closed candle to
  the feed through a bounded queue (a candle dropped because the queue was full is
  backfilled by REST like any gap). No key is given to the stream client: market data is
  public. While the stream is up, candles are yielded as they arrive and REST is not
  polled. When it drops, a warning says so and the feed falls back to REST polling; the
  thread reconnects with capped exponential backoff (`stream_backoff_s` doubling to
  `stream_backoff_cap_s`, at most `stream_retries` consecutive failures, after which it
  stays on REST with a warning), and when the stream delivers again a warning says it
  resumed and polling stops. A stream that goes quiet for longer than a candle plus a poll
  interval counts as down.
* **Stopping.** `should_stop` (a callable the pipeline sets: stop requested or duration
  reached) is checked at least every `wait_slice_s` (0.25 s) while waiting; `on_idle` is
  called as often, so a live view's clock keeps moving. A request in flight finishes first
  (bounded by the adapter's timeout); an adapter built with `StopAwareSleep` also abandons
  its retry back-off when the stop is requested.

Warnings go to `on_warning` (the pipeline passes its observer's `on_warning`); they are
raised on the consuming thread only, never from the stream thread. `info` holds counters
(polls, bars by source, backfilled, stream drops, outages) for the run summary.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import math
import queue
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

from engine.errors import ConfigError, ExchangeAuthError, ExchangeError, ServiceUnavailable
from engine.exchange.adapter import bar_from_row
from engine.exchange.download import timeframe_ms
from engine.parsing import ccxt_symbol, normalize_symbol
from engine.types import Bar

__all__ = ["ExchangeFeed", "Interrupted", "StopAwareSleep"]

_SECRET_FIELDS = ("apiKey", "secret", "password", "uid", "privateKey", "walletAddress",
                  "token", "login", "twofa")


class Interrupted(ServiceUnavailable):
    """A retry back-off abandoned because the run was asked to stop."""


class StopAwareSleep:
    """A `sleep` for ExchangeAdapter whose back-off ends when `stop` is set (raising
    Interrupted, which the adapter passes through unchanged)."""

    def __init__(self, stop: threading.Event) -> None:
        self.stop = stop

    def __call__(self, seconds: float) -> None:
        if self.stop.wait(max(0.0, seconds)):
            raise Interrupted("stopping: exchange retry abandoned")


class ExchangeFeed:
    """Closed candles of `symbol` from an exchange; see the module docstring.

    `adapter_factory()` builds the ExchangeAdapter (called once, on first use; the feed
    closes it in `close()`). `stream_client_factory()`, called on the stream thread, builds
    the ccxt.pro client (default: from the adapter's spec, without keys)."""

    kind = "exchange"

    def __init__(self, adapter_factory: Callable[[], Any], symbol: str, timeframe: str = "1m",
                 stream: bool = False, *, interval_s: float = 45.0, seed: int | None = None,
                 exchange_id: str | None = None,
                 on_warning: Callable[[str], None] | None = None,
                 should_stop: Callable[[], bool] | None = None,
                 on_idle: Callable[[], None] | None = None,
                 stream_client_factory: Callable[[], Any] | None = None,
                 max_backfill: int = 1000, max_outage_s: float = 900.0,
                 stream_retries: int = 20, stream_backoff_s: float = 0.5,
                 stream_backoff_cap_s: float = 30.0, queue_size: int = 1000,
                 close_grace_ms: int = 1000, wait_slice_s: float = 0.25,
                 clock: Callable[[], float] = time.time) -> None:
        if not interval_s > 0:
            raise ConfigError("the exchange feed's poll interval must be positive")
        self._symbol = normalize_symbol(symbol)
        self.timeframe = timeframe
        self._tf = timeframe_ms(timeframe)
        self.stream = bool(stream)
        self.interval_s = float(interval_s)
        self._rng = random.Random(seed)
        self._factory = adapter_factory
        self._adapter: Any = None
        self.on_warning = on_warning
        self.should_stop = should_stop
        self.on_idle = on_idle
        self._stream_client_factory = stream_client_factory
        self.max_backfill = max(1, int(max_backfill))
        self.max_outage_s = float(max_outage_s)
        self.stream_retries = max(0, int(stream_retries))
        self.stream_backoff_s = float(stream_backoff_s)
        self.stream_backoff_cap_s = float(stream_backoff_cap_s)
        self.close_grace_ms = int(close_grace_ms)
        self.wait_slice_s = float(wait_slice_s)
        self._clock = clock
        self._last_ts: int | None = None
        self._outage_since: float | None = None
        self._catchup = 0
        self._started = False
        self._closed = False
        # the stream thread's side
        self._queue: queue.Queue[Bar] = queue.Queue(maxsize=max(1, int(queue_size)))
        self._events: deque[tuple[str, str]] = deque(maxlen=64)
        self._wake = threading.Event()
        self._stream_stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._stream_state = "off"
        self._stream_last = 0.0
        self.info: dict[str, Any] = {
            "exchange": exchange_id, "timeframe": timeframe, "stream": self.stream,
            "polls": 0, "rest_bars": 0, "stream_bars": 0, "backfilled": 0,
            "stream_drops": 0, "stream_resumes": 0, "stream_queue_dropped": 0, "outages": 0,
        }

    @property
    def healthy(self) -> bool:
        """False while the exchange is in an outage (its last request failed)."""
        return self._outage_since is None

    # --- the Feed protocol --------------------------------------------------------------

    @property
    def symbol(self) -> str:
        return self._symbol

    @property
    def interval_ms(self) -> int:
        return self._tf

    @property
    def adapter(self) -> Any:
        """The ExchangeAdapter, built on first use."""
        if self._adapter is None:
            if self._closed:
                raise ExchangeError("the exchange feed is closed")
            self._adapter = self._factory()
            if self.info["exchange"] is None:
                self.info["exchange"] = getattr(self._adapter, "id", None)
        return self._adapter

    def __iter__(self) -> Iterator[Bar]:
        if self._started:
            raise RuntimeError("an ExchangeFeed is iterated once")
        self._started = True
        return self._bars()

    def close(self) -> None:
        """Stop the stream thread and close the adapter (idempotent, bounded)."""
        if self._closed:
            return
        self._closed = True
        self._stream_stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
        if self._adapter is not None:
            with contextlib.suppress(Exception):
                self._adapter.close()

    def __enter__(self) -> ExchangeFeed:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- the consuming side -------------------------------------------------------------

    def _bars(self) -> Iterator[Bar]:
        self.adapter  # noqa: B018 (build it now: bad keys or exchange fail before any wait)
        if self.stream:
            self._start_stream()
        first = self._first()
        if first is None:
            return
        self._last_ts = first.ts
        self.info["rest_bars"] += 1
        yield first
        next_poll = time.monotonic() + self._interval()
        while not self._stopping():
            self._wake.clear()
            got = self._drain()
            polling = not self._stream_live()
            if polling and time.monotonic() >= next_poll:
                polled, more = self._poll()
                got.extend(polled)
                next_poll = time.monotonic() + (0.0 if more else self._interval())
            out = self._accept(got)
            for bar in out:
                self._last_ts = bar.ts
                yield bar
            if out:
                continue
            if self.on_idle is not None:
                self.on_idle()
            timeout = self.wait_slice_s
            if polling:
                timeout = min(timeout, max(0.0, next_poll - time.monotonic()))
            if timeout > 0:
                self._wake.wait(timeout)

    def _stopping(self) -> bool:
        return self._closed or (self.should_stop is not None and bool(self.should_stop()))

    def _interval(self) -> float:
        return self._rng.uniform(self.interval_s * 2.0 / 3.0, self.interval_s * 4.0 / 3.0)

    def _warn(self, message: str) -> None:
        if self.on_warning is not None:
            self.on_warning(message)

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    def _is_closed(self, bar: Bar, newest_ts: int) -> bool:
        return bar.ts < newest_ts or bar.ts + self._tf + self.close_grace_ms <= self._now_ms()

    def _fetch(self, since_ms: int | None, limit: int) -> list[Bar] | None:
        """One OHLCV request; None on a transient failure (reported as an outage)."""
        try:
            bars = self.adapter.fetch_ohlcv(self._symbol, self.timeframe, since_ms=since_ms,
                                            limit=limit)
        except Interrupted:
            return None
        except (ExchangeAuthError, ConfigError):
            raise
        except (ServiceUnavailable, ExchangeError) as exc:
            self._outage(exc)
            return None
        if self._outage_since is not None:
            down = time.monotonic() - self._outage_since
            self._outage_since = None
            since = "" if self._last_ts is None else f" since candle {self._last_ts}"
            self._warn(f"exchange reachable again after {down:.1f} s; backfilling the missed "
                       f"candles{since}")
        return list(bars)

    def _outage(self, exc: BaseException) -> None:
        now = time.monotonic()
        if self._outage_since is None:
            self._outage_since = now
            self.info["outages"] += 1
            self._warn(f"exchange unreachable ({exc}); polling again every ~"
                       f"{self.interval_s:.3g} s, missed candles are backfilled")
        elif now - self._outage_since > self.max_outage_s:
            raise ServiceUnavailable(f"the exchange has been unreachable for more than "
                                     f"{self.max_outage_s:.0f} s (last: {exc})")

    def _page(self) -> int:
        return max(2, int(getattr(self.adapter, "ohlcv_page_limit", 500)))

    def _first(self) -> Bar | None:
        """The latest closed candle. An exchange unreachable at start (after the adapter's
        retries) raises ServiceUnavailable at once: nothing to wait out yet."""
        while not self._stopping():
            try:
                bars = self.adapter.fetch_ohlcv(self._symbol, self.timeframe, limit=3)
            except Interrupted:
                return None
            self.info["polls"] += 1
            if bars:
                newest = bars[-1].ts
                closed = [b for b in bars if self._is_closed(b, newest)]
                if closed:
                    return closed[-1]
            self._sleep(self._interval())
        return None

    def _sleep(self, seconds: float) -> None:
        until = time.monotonic() + seconds
        while not self._stopping():
            left = until - time.monotonic()
            if left <= 0:
                return
            if self.on_idle is not None:
                self.on_idle()
            self._stream_stop.wait(min(left, self.wait_slice_s))

    def _poll(self) -> tuple[list[Bar], bool]:
        """The closed candles after the last one seen; True when a full page came back."""
        assert self._last_ts is not None
        page = self._page()
        bars = self._fetch(self._last_ts + self._tf, page)
        self.info["polls"] += 1
        if not bars:
            self._catchup = 0
            return [], False
        newest = bars[-1].ts
        closed = [b for b in bars if b.ts > self._last_ts and self._is_closed(b, newest)]
        more = len(bars) >= page and bool(closed) and closed[-1].ts == newest
        if more:
            self._catchup += len(closed)
            if self._catchup > self.max_backfill:
                latest = self._fetch(None, page)
                if latest:
                    newest = latest[-1].ts
                    keep = [b for b in latest if self._is_closed(b, newest)]
                    keep = keep[-self.max_backfill:]
                    if keep and keep[0].ts > closed[-1].ts + self._tf:
                        skipped = (keep[0].ts - closed[-1].ts) // self._tf - 1
                        self._warn(f"catching up more than {self.max_backfill} candles: "
                                   f"skipping {skipped} to the newest ones")
                    closed = closed + [b for b in keep if b.ts > closed[-1].ts]
                    more = False
                self._catchup = 0
        else:
            self._catchup = 0
        self.info["rest_bars"] += len(closed)
        return closed, more

    def _accept(self, got: list[Bar]) -> list[Bar]:
        """New candles in order, once each, with any gap before them backfilled."""
        if not got:
            return []
        last = self._last_ts
        assert last is not None
        by_ts: dict[int, Bar] = {}
        for bar in got:
            if bar.ts > last:
                by_ts[bar.ts] = bar  # a later version of the same candle wins
        out: list[Bar] = []
        for ts in sorted(by_ts):
            if ts > last + self._tf:
                filled = self._backfill(last, ts)
                out.extend(filled)
            out.append(by_ts[ts])
            last = ts
        return out

    def _backfill(self, last: int, until: int) -> list[Bar]:
        """Closed candles strictly between `last` and `until`, bounded by max_backfill."""
        missing = (until - last) // self._tf - 1
        since = last + self._tf
        if missing > self.max_backfill:
            self._warn(f"{missing} candles missing before {until}; backfilling only the last "
                       f"{self.max_backfill}")
            since = until - self.max_backfill * self._tf
        page = self._page()
        out: list[Bar] = []
        for _ in range(math.ceil(self.max_backfill / page) + 1):
            if since >= until:
                break
            bars = self._fetch(since, page)
            if bars is None:
                self._warn(f"could not backfill the candles between {last} and {until}; "
                           "continuing with a gap")
                break
            fresh = [b for b in bars if since <= b.ts < until]
            if not fresh:
                break
            out.extend(fresh)
            since = fresh[-1].ts + self._tf
        self.info["backfilled"] += len(out)
        return out

    def _drain(self) -> list[Bar]:
        for kind, message in self._take_events():
            if kind in ("down", "unavailable"):
                self.info["stream_drops"] += 1
                what = "dropped" if kind == "down" else "unavailable"
                self._warn(f"candle stream {what} ({message}); falling back to REST polling "
                           f"every ~{self.interval_s:.3g} s until it returns")
            elif kind == "up":
                self.info["stream_resumes"] += 1
                self._warn("candle stream resumed; REST polling stopped")
            elif kind == "gave_up":
                self._warn(f"candle stream gave up ({message}); staying on REST polling")
        got: list[Bar] = []
        while True:
            try:
                got.append(self._queue.get_nowait())
            except queue.Empty:
                break
        self.info["stream_bars"] += len(got)
        return got

    def _take_events(self) -> list[tuple[str, str]]:
        events = []
        while True:
            try:
                events.append(self._events.popleft())
            except IndexError:
                return events

    def _stream_live(self) -> bool:
        if self._stream_state != "up":
            return False
        stale_s = self._tf / 1000.0 + self.interval_s * 4.0 / 3.0
        return time.monotonic() - self._stream_last < stale_s

    # --- the stream thread --------------------------------------------------------------

    def _start_stream(self) -> None:
        factory = self._stream_client_factory or self._default_stream_factory()
        self._stream_state = "connecting"
        self._thread = threading.Thread(target=self._stream_run, args=(factory,),
                                        name="supreme-candle-stream", daemon=True)
        self._thread.start()

    def _default_stream_factory(self) -> Callable[[], Any]:
        spec = self.adapter.spec
        config = copy.deepcopy(dict(spec.overrides))
        for key in _SECRET_FIELDS:
            config.pop(key, None)
        config.update(enableRateLimit=True, verbose=False, timeout=int(spec.timeout_s * 1000))

        def build() -> Any:
            import ccxt.pro

            cls = getattr(ccxt.pro, spec.exchange_id, None)
            if cls is None:
                raise ConfigError(f"{spec.exchange_id} has no websocket client in ccxt.pro")
            client = cls(config)
            client.verbose = False
            client.log = lambda *args: None
            if spec.sandbox:
                client.set_sandbox_mode(True)
            return client

        return build

    def _event(self, kind: str, message: str = "") -> None:
        self._events.append((kind, message))
        self._wake.set()

    def _stream_run(self, factory: Callable[[], Any]) -> None:
        try:
            asyncio.run(self._stream_main(factory))
        except BaseException as exc:  # the thread must never die silently
            self._stream_state = "gave_up"
            self._event("gave_up", f"{type(exc).__name__}: {str(exc)[:200]}")

    async def _stream_main(self, factory: Callable[[], Any]) -> None:
        try:
            client = factory()
        except Exception as exc:
            self._stream_state = "gave_up"
            self._event("gave_up", f"{type(exc).__name__}: {str(exc)[:200]}")
            return
        market = ccxt_symbol(self._symbol)
        held: dict[int, Bar] = {}
        failures = 0
        watch: asyncio.Future[Any] | None = None
        try:
            while not self._stream_stop.is_set():
                if watch is None:
                    watch = asyncio.ensure_future(client.watch_ohlcv(market, self.timeframe))
                done, _ = await asyncio.wait({watch}, timeout=self.wait_slice_s)
                self._release(held)
                if not done:
                    continue
                task, watch = watch, None
                try:
                    rows = task.result()
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    failures += 1
                    message = f"{type(exc).__name__}: {str(exc)[:200]}"
                    if self._stream_state in ("up", "connecting"):
                        kind = "down" if self._stream_state == "up" else "unavailable"
                        self._stream_state = "down"
                        self._event(kind, message)
                    if failures > self.stream_retries:
                        self._stream_state = "gave_up"
                        self._event("gave_up", f"{failures} consecutive failures, last "
                                               f"{message}")
                        return
                    delay = min(self.stream_backoff_cap_s,
                                self.stream_backoff_s * 2 ** (failures - 1))
                    delay = delay / 2 + random.uniform(0, delay / 2)
                    until = time.monotonic() + delay
                    while not self._stream_stop.is_set() and time.monotonic() < until:
                        await asyncio.sleep(min(self.wait_slice_s, until - time.monotonic()))
                    continue
                failures = 0
                self._stream_last = time.monotonic()
                if self._stream_state != "up":
                    resumed = self._stream_state == "down"
                    self._stream_state = "up"
                    if resumed:
                        self._event("up")
                for row in rows or ():
                    bar = bar_from_row(row)
                    if bar is not None:
                        held[bar.ts] = bar
                self._release(held)
        finally:
            if watch is not None and not watch.done():
                watch.cancel()
                with contextlib.suppress(BaseException):
                    await watch
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(client.close(), 5.0)

    def _release(self, held: dict[int, Bar]) -> None:
        """Hand the closed candles among `held` to the consumer."""
        if not held:
            return
        newest = max(held)
        released = False
        for ts in sorted(held):
            bar = held[ts]
            if not self._is_closed(bar, newest):
                continue
            del held[ts]
            try:
                self._queue.put_nowait(bar)
                released = True
            except queue.Full:
                self.info["stream_queue_dropped"] += 1  # the gap is backfilled by REST
        if released:
            self._wake.set()
