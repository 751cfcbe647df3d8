"""ExchangeFeed against a real FakeExchange on 127.0.0.1: real ccxt over HTTP and websockets.

The fake replays its candles quickly (`ws_interval_s` of a few tens of ms per 1m candle), so
a poll every ~0.1 s sees a few new closed candles each time. Every loop here is bounded by
a deadline passed to the feed as `should_stop`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from engine.errors import ConfigError
from engine.exchange.adapter import ExchangeAdapter, ExchangeSpec
from engine.exchange.endpoints import endpoint_overrides
from engine.exchange.policy import CircuitBreaker, RetryPolicy
from engine.feeds import Feed
from engine.feeds.exchange import ExchangeFeed, StopAwareSleep
from engine.pipeline import Run, RunSpec
from engine.testing.fake_exchange import FakeExchange, ccxt_config
from engine.types import Bar

pytest.importorskip("ccxt")

SYMBOL = "ETH-USDT"
MIN = 60_000



def factory(fx: FakeExchange, stop: threading.Event | None = None) -> Callable[[], Any]:
    """Adapters that fail fast: one attempt per call, a breaker that never opens."""
    def build() -> ExchangeAdapter:
        return ExchangeAdapter(
            ExchangeSpec(timeout_s=2.0, overrides=endpoint_overrides("binance", fx.base_url)),
            RetryPolicy(max_attempts=1), CircuitBreaker(threshold=10**6),
            sleep=StopAwareSleep(stop or threading.Event()))
    return build


class Warnings(list[str]):
    def __call__(self, message: str) -> None:
        self.append(message)


def feed_for(fx: FakeExchange, *, timeout_s: float, timeframe: str = "1m", **kw: Any
             ) -> tuple[ExchangeFeed, Warnings]:
    warnings = Warnings()
    deadline = time.monotonic() + timeout_s
    kw.setdefault("interval_s", 0.1)
    feed = ExchangeFeed(factory(fx), SYMBOL, timeframe, on_warning=warnings,
                        should_stop=lambda: time.monotonic() >= deadline, **kw)
    return feed, warnings


def take(it: Iterator[Bar], n: int, on_bar: Callable[[int, Bar], None] | None = None
         ) -> list[Bar]:
    out: list[Bar] = []
    for bar in it:
        out.append(bar)
        if on_bar is not None:
            on_bar(len(out), bar)
        if len(out) >= n:
            break
    return out


def assert_contiguous(bars: list[Bar], step: int = MIN) -> None:
    ts = [b.ts for b in bars]
    assert ts == list(range(ts[0], ts[0] + step * len(ts), step)), "gap or duplicate"


def test_endpoint_overrides_match_the_fakes_own_config() -> None:
    with FakeExchange(ws_interval_s=None) as fx:
        ours = endpoint_overrides("binance", fx.base_url)
        theirs = ccxt_config(fx, keys=False)
        assert ours["urls"] == theirs["urls"]
        assert ours["options"] == theirs["options"]
    for bad in ("ftp://x", "http://", "http://u:p@host", "http://h/?q=1", "x" * 400):
        with pytest.raises(ConfigError):
            endpoint_overrides("binance", bad)
    with pytest.raises(ConfigError):
        endpoint_overrides("kraken", "http://127.0.0.1:1")


def test_polling_yields_each_closed_candle_once_in_order_first_at_once() -> None:
    with FakeExchange(start=-400, ws_interval_s=0.03) as fx:
        feed, warnings = feed_for(fx, timeout_s=15)
        assert isinstance(feed, Feed) and feed.kind == "exchange"
        cursor_at_start = fx.cursor
        t0 = time.monotonic()
        with feed:
            it = iter(feed)
            first = next(it)
            first_after = time.monotonic() - t0
            bars = [first, *take(it, 40)]
            now_cursor = fx.cursor
        assert first_after < 1.5, "the first bar comes at once, not after a poll interval"
        assert first.ts >= fx.candle(cursor_at_start).ts
        assert first.ts <= fx.candle(cursor_at_start + 3).ts
        assert_contiguous(bars)
        assert bars[-1].ts <= fx.candle(now_cursor).ts  # never the future
        served = {fx.candle(i).ts: fx.candle(i) for i in range(fx.n_candles)}
        assert all(tuple(b) == pytest.approx(tuple(served[b.ts])) for b in bars)
        assert warnings == []
        assert feed.info["polls"] >= 3 and feed.info["rest_bars"] >= len(bars)


def test_a_forming_candle_is_held_back_until_it_closes() -> None:
    # 1 s candles around the wall clock; the current one (the fake's cursor) is still forming
    now_s = int(time.time())
    bars = [Bar((now_s - 300 + i) * 1000, 100.0 + i, 101.0 + i, 99.0 + i, 100.5 + i, 1.0)
            for i in range(360)]
    with FakeExchange(bars, start=301, ws_interval_s=None, autoplay=False) as fx:
        forming = fx.candle(301)
        assert forming.ts + 1000 > time.time() * 1000  # it has not closed yet
        seen: list[tuple[Bar, float]] = []
        feed, _ = feed_for(fx, timeout_s=6, timeframe="1s", close_grace_ms=100)
        with feed:
            for bar in feed:
                seen.append((bar, time.time() * 1000))
                if bar.ts == forming.ts:
                    break
        ts = [b.ts for b, _ in seen]
        assert ts == [fx.candle(300).ts, forming.ts]
        got_at = seen[-1][1]
        assert got_at >= forming.ts + 1000 + 100, "yielded before it closed"


def test_backfill_after_an_outage_without_duplicates() -> None:
    with FakeExchange(start=-600, ws_interval_s=0.02) as fx:
        feed, warnings = feed_for(fx, timeout_s=20)
        outage: dict[str, Any] = {}

        def on_bar(n: int, bar: Bar) -> None:
            if n == 10:
                outage["rule"] = fx.faults.set(kind="503", path="/api/v3/klines")
                outage["from"] = bar.ts
                threading.Timer(0.8, fx.faults.clear).start()

        with feed:
            bars = take(iter(feed), 70, on_bar)
        assert len(bars) == 70
        assert_contiguous(bars)
        assert feed.info["outages"] == 1
        assert outage["rule"].hits >= 2
        assert any("unreachable" in w for w in warnings)
        assert any("reachable again" in w for w in warnings)
        # the outage lasted long enough for the market to move on: some candles were
        # fetched in one catch-up, after the fault cleared
        assert bars[-1].ts - outage["from"] > 20 * MIN


def test_catch_up_is_bounded_by_max_backfill() -> None:
    with FakeExchange(start=-2000, ws_interval_s=None, autoplay=False) as fx:
        feed, warnings = feed_for(fx, timeout_s=10, max_backfill=50)
        with feed:
            it = iter(feed)
            first = next(it)
            fx.advance(1200)  # a long outage's worth of candles at once
            rest = take(it, 60)
        assert first.ts == fx.candle(fx.cursor - 1200).ts
        ts = [b.ts for b in rest]
        assert ts == sorted(set(ts))
        assert any("skipping" in w for w in warnings)
        assert rest[-1].ts <= fx.candle(fx.cursor).ts


def test_stream_falls_back_to_polling_on_a_drop_and_resumes() -> None:
    with FakeExchange(start=-1500, ws_interval_s=0.05) as fx:
        feed, warnings = feed_for(fx, timeout_s=25, stream=True, stream_backoff_s=0.05,
                                  stream_backoff_cap_s=0.2)
        state: dict[str, Any] = {}

        def on_bar(n: int, bar: Bar) -> None:
            if "dropped_at" not in state and feed.info["stream_bars"] >= 10:
                state["dropped_at"] = n
                state["rest_before"] = feed.info["rest_bars"]
                assert fx.faults.drop_ws(refuse_s=1.0) >= 1
            if "dropped_at" in state and "resumed_at" not in state \
                    and feed.info["stream_resumes"] >= 1:
                state["resumed_at"] = n
                state["stream_at_resume"] = feed.info["stream_bars"]
            if "resumed_at" in state and feed.info["stream_bars"] >= \
                    state["stream_at_resume"] + 10:
                state["done"] = True

        with feed:
            bars = []
            for bar in feed:
                bars.append(bar)
                on_bar(len(bars), bar)
                if state.get("done") or len(bars) > 400:
                    break
        assert state.get("done"), (feed.info, warnings)
        assert_contiguous(bars)
        assert any("stream dropped" in w for w in warnings)
        assert any("stream resumed" in w for w in warnings)
        assert feed.info["rest_bars"] > state["rest_before"], "no REST polling while down"
        ws = [r for r in fx.requests if r.method == "WS"]
        assert len(ws) >= 2  # connected, then reconnected after the drop


def test_stop_is_responsive_while_waiting_for_the_next_poll() -> None:
    with FakeExchange(ws_interval_s=None, autoplay=False) as fx:
        stop = threading.Event()
        feed = ExchangeFeed(factory(fx, stop), SYMBOL, interval_s=30.0,
                            should_stop=stop.is_set)
        with feed:
            it = iter(feed)
            next(it)
            threading.Timer(0.3, stop.set).start()
            t0 = time.monotonic()
            assert list(it) == []
            assert time.monotonic() - t0 < 1.2


def test_stream_thread_stops_quickly() -> None:
    with FakeExchange(start=-100, ws_interval_s=0.05) as fx:
        feed, _ = feed_for(fx, timeout_s=10, stream=True)
        it = iter(feed)
        take(it, 5)
        t0 = time.monotonic()
        feed.close()
        assert time.monotonic() - t0 < 2.0
        assert feed._thread is not None and not feed._thread.is_alive()


def test_run_request_stop_ends_an_exchange_run_within_a_second(tmp_path) -> None:
    with FakeExchange(ws_interval_s=None, autoplay=False) as fx:
        spec = RunSpec(symbol=SYMBOL, feed="exchange", interval_s=30.0, data_dir=tmp_path,
                       store_url=str(tmp_path / "s.db"), resume=True,
                       exchange=ExchangeSpec(timeout_s=2.0,
                                             overrides=endpoint_overrides("binance",
                                                                          fx.base_url)))
        run = Run(spec)
        timer = threading.Timer(0.8, run.request_stop)
        timer.start()
        t0 = time.monotonic()
        summary = run.execute()
        elapsed = time.monotonic() - t0
        timer.cancel()
    assert summary["bars"] == 1 and summary["stopped_by"] == "signal"
    assert summary["status"] == "interrupted"
    assert elapsed < 0.8 + 1.5
    assert summary["data"]["exchange"] == "binance"


def test_an_exchange_unreachable_at_start_fails_at_once() -> None:
    from engine.errors import ServiceUnavailable

    with FakeExchange(ws_interval_s=None) as fx:
        fx.faults.set(kind="503")
        feed, _ = feed_for(fx, timeout_s=10)
        t0 = time.monotonic()
        with feed, pytest.raises(ServiceUnavailable):
            next(iter(feed))
        assert time.monotonic() - t0 < 3.0
