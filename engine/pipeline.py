"""Wires one run: feed → strategy → risk → paper broker → store writer, with measurement.

`Run.execute()` is the engine's main job. It never prints: whoever drives it (the CLI, a
benchmark, a test) passes a `RunObserver` to see progress, trades and warnings.

Per bar, in order: the broker fills any pending order at the bar's open and checks stop and
take-profit on its range; the strategy updates on the close; a fired signal goes through
risk checks and becomes an order for the next open; equity is marked; records go to the
store writer's buffer. The time from asking the feed for the bar to the end of that work
goes into a bounded histogram. A closed trade is made durable (writer barrier) before the
next bar, outside the timed section: that wait is I/O, reported as `commit_wait_ms`.

Feed `exchange` (engine/feeds/exchange.py) blocks until the next closed candle is due (REST
polls every `interval_s` ±1/3, or the stream), so it is never paced here whatever `speed`
says; stop and duration are checked after every bar and, through the feed's
`should_stop`, while it waits. Exchange runs are resumable (`resume=True`). Mode `live`
(checked by `check_live`: exchange feed, keys, `live_confirmed`) swaps the paper broker
for `engine.broker.live.LiveBroker`, reconciled with the exchange and the store before the
first bar; each order is journaled `open` in the store before it is sent.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import random
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from engine import strategy as st
from engine.broker.live import LiveBroker
from engine.broker.paper import BUY, SELL, ClosedTrade, Fill, PaperBroker, PendingOrder
from engine.config import EngineParams, StrategyParams
from engine.errors import ConfigError, StoreError
from engine.latency import LatencyHistogram
from engine.risk import REJECT_SPREAD, REJECT_ZERO_SIZE, RiskManager
from engine.store import (
    EquityRecord,
    OrderRecord,
    PositionRecord,
    RunRecord,
    SignalRecord,
    TradeRecord,
    open_store,
)
from engine.store.writer import StoreWriter
from engine.sysinfo import peak_rss_mib, rss_mib
from engine.types import Bar

if TYPE_CHECKING:
    from engine.cache import CacheSettings, TieredCache
    from engine.cache.market import MarketCache
    from engine.config import Resolved
    from engine.exchange.adapter import ExchangeSpec

Broker = PaperBroker | LiveBroker

PROGRESS_EVERY_S = 0.25
FINISH_ATTEMPTS = 4
FINISH_RETRY_S = 0.5
STATE_EVERY_BARS = 1_000  # indicator snapshots published to the cache
MIN_ORDER_NOTIONAL = 5.0  # quote currency; Binance's smallest ETH-USDT notional is 5 USDT


class DeferredSignal:
    """A signal whose reason sentence is formatted on the store writer's thread."""

    __slots__ = ("code", "facts", "params", "price", "run_id", "seq", "ts_ms")

    def __init__(self, run_id: str, seq: int, ts_ms: int, code: int, price: float,
                 params: StrategyParams, facts: tuple[float, float, float, float, int]):
        self.run_id = run_id
        self.seq = seq
        self.ts_ms = ts_ms
        self.code = code
        self.price = price
        self.params = params
        self.facts = facts

    def __call__(self) -> SignalRecord:
        return SignalRecord(
            run_id=self.run_id, seq=self.seq, ts_ms=self.ts_ms,
            action=st.ACTION.get(self.code, "none"), fired=self.code in st.FIRED,
            reason=st.describe(self.params, self.code, self.price, *self.facts),
            price=self.price)


class RunObserver(Protocol):
    def on_start(self, info: dict[str, Any]) -> None: ...
    def on_progress(self, snapshot: dict[str, Any]) -> None: ...
    def on_trade(self, trade: dict[str, Any]) -> None: ...
    def on_warning(self, message: str) -> None: ...


class NullObserver:
    def on_start(self, info: dict[str, Any]) -> None:
        pass

    def on_progress(self, snapshot: dict[str, Any]) -> None:
        pass

    def on_trade(self, trade: dict[str, Any]) -> None:
        pass

    def on_warning(self, message: str) -> None:
        pass


class WarningRecorder(NullObserver):
    """Keeps a run's warnings, at most `limit` of them, in `warnings`; ignores the rest."""

    def __init__(self, warnings: list[str] | None = None, limit: int = 100) -> None:
        self.warnings = [] if warnings is None else warnings
        self.limit = limit

    def on_warning(self, message: str) -> None:
        if len(self.warnings) < self.limit:
            self.warnings.append(message)


@dataclass(frozen=True)
class RunSpec:
    symbol: str | None
    feed: str = "sim"
    mode: str = "paper"
    seed: int = 0
    sim_model: str = "calibrated"
    data_file: str | None = None
    replay_policy: str = "fail"
    bars: int | None = None
    duration_s: float | None = None
    speed: float = 0.0
    interval_s: float = 45.0
    starting_equity: float = 10_000.0
    equity_every_bars: int = 1
    params: EngineParams = field(default_factory=EngineParams)
    store_url: str | None = None
    data_dir: Path = Path(".")
    resume: bool = False
    config: dict[str, Any] = field(default_factory=dict)
    exchange: ExchangeSpec | None = None
    timeframe: str = "1m"
    stream: bool = False
    live_confirmed: bool = False
    cache: CacheSettings | None = None  # None: run without the tiered cache
    require_redis: bool = False
    record_cache_trace: bool = False


def spec_from_resolved(resolved: Resolved, *, exchange: ExchangeSpec | None = None,
                       live_confirmed: bool = False) -> RunSpec:
    """The run a resolved configuration describes (the CLI's `run`, `stats ab`, ...)."""
    from engine.cache import cache_settings
    from engine.parsing import parse_speed

    feed_name = resolved["feed"]
    symbol_set = resolved.sources["symbol"] != "default"
    return RunSpec(
        symbol=resolved["symbol"] if symbol_set or feed_name in ("sim", "exchange") else None,
        feed=feed_name, mode=resolved["mode"], seed=resolved["seed"],
        sim_model=resolved["sim_model"],
        data_file=resolved["data_file"], replay_policy=resolved["replay_policy"],
        bars=resolved["bars"], duration_s=resolved["duration"],
        speed=parse_speed(resolved["speed"]),
        interval_s=resolved["interval_seconds"], starting_equity=resolved["starting_equity"],
        equity_every_bars=resolved["equity_every_bars"],
        params=EngineParams.from_resolved(resolved), store_url=resolved.store_url,
        data_dir=resolved.data_dir, resume=feed_name == "exchange",
        config=resolved.redacted(), exchange=exchange, timeframe=resolved["timeframe"],
        stream=resolved["stream"], live_confirmed=live_confirmed,
        cache=cache_settings(resolved) if resolved["cache.enabled"] else None,
        require_redis=resolved["cache.require_redis"])


def jittered_interval(interval_s: float, rng: random.Random) -> float:
    """Uniform within ±1/3 of the interval: 30-60 s for the default 45 s."""
    return rng.uniform(interval_s * 2.0 / 3.0, interval_s * 4.0 / 3.0)


def open_feed(spec: RunSpec, observer: RunObserver, stop: threading.Event | None = None
              ) -> tuple[Any, str, dict[str, Any]]:
    """The feed for a spec, its symbol, and what loading it found (replay issues).

    For `exchange`, ccxt is imported (when the feed first builds its adapter) and `stop`
    makes the adapter's retry back-off end when the run is asked to stop."""
    if spec.feed == "sim":
        from engine.feeds.sim import SimFeed, sim_params

        symbol = spec.symbol or "ETH-USDT"
        sim = SimFeed(symbol=symbol, seed=spec.seed, params=sim_params(spec.sim_model))
        return sim, symbol, {"sim_model": spec.sim_model}
    if spec.feed == "replay":
        from engine.feeds.replay import ReplayFeed, load_series

        if not spec.data_file:
            raise ConfigError("--feed replay needs a data file (--data FILE)")
        series = load_series(spec.data_file, policy=spec.replay_policy)
        symbol = spec.symbol or series.symbol
        if spec.symbol and series.symbol and spec.symbol != series.symbol:
            observer.on_warning(
                f"--symbol {spec.symbol} differs from the file's {series.symbol}; using {symbol}"
            )
        for issue in series.issues[:20]:
            observer.on_warning(f"data: {issue}")
        if len(series.issues) > 20:
            observer.on_warning(f"data: {len(series.issues) - 20} more issues not shown")
        kinds: dict[str, int] = {}
        for issue in series.issues:
            kinds[issue.kind] = kinds.get(issue.kind, 0) + 1
        info = {"file": str(spec.data_file), "rows": len(series), "issues": kinds}
        return ReplayFeed(series), symbol, info
    if spec.feed == "exchange":
        from engine.exchange.adapter import ExchangeAdapter, ExchangeSpec
        from engine.feeds.exchange import ExchangeFeed, StopAwareSleep

        symbol = spec.symbol or "ETH-USDT"
        ex_spec = spec.exchange if spec.exchange is not None else ExchangeSpec()
        sleep = StopAwareSleep(stop if stop is not None else threading.Event())
        feed = ExchangeFeed(functools.partial(ExchangeAdapter, ex_spec, sleep=sleep), symbol,
                            spec.timeframe, spec.stream, interval_s=spec.interval_s,
                            seed=spec.seed, exchange_id=ex_spec.exchange_id,
                            on_warning=observer.on_warning)
        return feed, symbol, feed.info
    raise ConfigError(f"unknown feed {spec.feed!r}; available: sim, replay, exchange")


def check_live(spec: RunSpec) -> None:
    """ConfigError unless a live run has everything it needs: the exchange feed, keys and
    the explicit confirmation. Checked before anything touches the network."""
    if spec.mode != "live":
        return
    if spec.feed != "exchange":
        raise ConfigError("--mode live trades on live candles: it needs --feed exchange")
    ex = spec.exchange
    if ex is None or not ex.api_key or not ex.secret:
        raise ConfigError("--mode live needs exchange API keys (EXCHANGE_API_KEY and "
                          "EXCHANGE_SECRET); no order was sent")
    if not spec.live_confirmed:
        raise ConfigError("--mode live places real orders: add --confirm-live to confirm; "
                          "no order was sent")


@dataclass
class RunView:
    """What a running Run exposes to observers on other threads (the metrics server):
    references to its live objects, read at scrape time, so instrumentation costs the tick
    nothing. Plain reads of ints and floats; a scrape may see one bar's figures torn."""

    symbol: str
    spec: RunSpec
    counters: dict[str, Any]
    hist: LatencyHistogram
    broker: Any
    risk: RiskManager
    writer: StoreWriter
    feed: Any
    cache: TieredCache | None
    last_bar_wall: float = 0.0
    last_close: float | None = None


class Run:
    """One run of the engine. Create, then `execute()`; `request_stop()` from any thread."""

    def __init__(self, spec: RunSpec, observer: RunObserver | None = None):
        self.spec = spec
        self.observer: RunObserver = observer or NullObserver()
        self.run_id = uuid.uuid4().hex
        self._stop = threading.Event()
        self.stopped_by = ""
        self._idle_state: tuple[int, Bar] | None = None
        self._next_idle_progress = 0.0
        self._wall0 = 0.0
        self.cache: TieredCache | None = None
        self._market: MarketCache | None = None
        self.view: RunView | None = None
        self.store_up = True
        self.cache_trace: list[str] = []

    def request_stop(self) -> None:
        self._stop.set()

    def execute(self) -> dict[str, Any]:
        spec = self.spec
        observer = self.observer
        check_live(spec)
        if spec.mode == "backtest" and spec.feed == "exchange":
            raise ConfigError("--mode backtest replays history: use --feed replay or sim, or "
                              "--mode paper for live candles")
        feed, symbol, feed_info = open_feed(spec, observer, self._stop)
        try:
            return self._execute(feed, symbol, feed_info)
        finally:
            close = getattr(feed, "close", None)
            if close is not None:
                close()

    def _execute(self, feed: Any, symbol: str, feed_info: dict[str, Any]) -> dict[str, Any]:
        spec = self.spec
        store = open_store(spec.store_url, spec.data_dir)
        try:
            store.migrate()
            started_ms = int(time.time() * 1000)
            store.create_run(RunRecord(
                id=self.run_id, symbol=symbol, feed=spec.feed, mode=spec.mode,
                started_at_ms=started_ms, status="running",
                config=json.loads(json.dumps(self._run_facts(symbol), default=str))))
            # Small batches keep the queue (and so the heap) under a megabyte at full speed.
            writer = StoreWriter(store.clone, max_batch=2000)
            self.cache = self._open_cache(store)
            try:
                summary = self._loop(feed, symbol, feed_info, store.url_redacted, store, writer)
                if self.cache is not None:
                    summary["cache"] = self._close_cache()
            except BaseException:
                writer.close()
                if self.cache is not None:
                    self.cache.close(timeout=2.0)
                with contextlib.suppress(StoreError):  # the original error matters more
                    self._finish(store, "failed", None)
                raise
            self._finish(store, summary["status"], summary)
            return summary
        finally:
            store.close()

    def _finish(self, store: Any, status: str, summary: dict[str, Any] | None) -> None:
        """Mark the run finished. The store may have dropped its connection during an
        outage the writer rode out; the next call reconnects, so a few bounded retries
        keep a healthy run from failing at its very last step."""
        for attempt in range(FINISH_ATTEMPTS):
            try:
                store.finish_run(self.run_id, status, int(time.time() * 1000), summary)
                return
            except StoreError:
                if attempt == FINISH_ATTEMPTS - 1:
                    raise
                time.sleep(FINISH_RETRY_S * (attempt + 1))

    def _run_facts(self, symbol: str) -> dict[str, Any]:
        """The configuration stored with the run, with what it really ran on written over
        it, so the run's market data can be rebuilt later (stats baselines)."""
        spec = self.spec
        p = spec.params
        return {**spec.config, "symbol": symbol, "feed": spec.feed, "mode": spec.mode,
                "seed": spec.seed, "sim_model": spec.sim_model, "data_file": spec.data_file,
                "replay_policy": spec.replay_policy, "timeframe": spec.timeframe,
                "broker.fee_bps": p.broker.fee_bps,
                "broker.slippage_bps": p.broker.slippage_bps}

    def _open_cache(self, store: Any) -> TieredCache | None:
        if self.spec.cache is None:
            return None
        from engine.cache import open_cache

        cache = open_cache(self.spec.cache, store, require_redis=self.spec.require_redis,
                           warn=self.observer.on_warning)
        if self.spec.record_cache_trace:
            cache.trace = self.cache_trace
        return cache

    def _close_cache(self) -> dict[str, Any]:
        cache = self.cache
        assert cache is not None
        flushed = cache.flush(timeout=10.0)
        saved = cache.save_learning()
        stats = cache.stats()
        cache.close(timeout=2.0)
        stats["flushed"] = flushed
        stats["learning_saved"] = saved
        return stats

    def _market_cache(self, feed: Any, symbol: str) -> MarketCache | None:
        if self.cache is None:
            return None
        from engine.cache.market import MarketCache

        spec = self.spec
        if spec.feed != "exchange":
            return MarketCache(self.cache, symbol, "paper", spec.mode)
        adapter_of = functools.partial(getattr, feed, "adapter")
        venue = spec.exchange.exchange_id if spec.exchange is not None else "exchange"
        return MarketCache(self.cache, symbol, venue, spec.mode, spec.timeframe, candles=True,
                           market_loader=lambda: adapter_of().market_info(symbol),
                           book_loader=lambda: adapter_of().fetch_order_book(symbol))

    def _loop(self, feed: Any, symbol: str, feed_info: dict[str, Any], store_url: str,
              store: Any, writer: StoreWriter) -> dict[str, Any]:
        spec = self.spec
        observer = self.observer
        run_id = self.run_id
        params = spec.params
        live = spec.mode == "live"
        exchange_feed = spec.feed == "exchange"
        broker: Broker
        if live:
            broker = self._live_broker(feed, symbol, store, writer)
            # the account, not the configuration, is what a live run starts with
            spec = self.spec = dataclasses.replace(
                spec, starting_equity=broker.equity(broker.last_price))
        else:
            broker = PaperBroker(params.broker, spec.starting_equity)
        strat = st.ScalpStrategy(params.strategy, params.risk, spec.starting_equity)
        risk = RiskManager(params.risk, spec.starting_equity)
        if live:
            strat.long = broker.qty > 0.0
            strat.set_sizing_equity(broker.cash if broker.qty <= 0.0 else
                                    spec.starting_equity)
        elif spec.resume:
            self._resume(store, symbol, broker, strat)
        hist = LatencyHistogram()
        perf_ns = time.perf_counter_ns
        add_equity = writer.add_equity
        stop = self._stop
        bar_limit = spec.bars or 0
        deadline = time.monotonic() + spec.duration_s if spec.duration_s else None
        # The exchange feed blocks until the next candle is due (30-60 s polls or the
        # stream): it is never paced here, whatever --speed says, and stop/duration are
        # checked after every bar and, through should_stop, while it waits.
        speed = 0.0 if exchange_feed else spec.speed
        check_each = bool(speed) or exchange_feed
        pace_rng = random.Random(spec.seed)
        equity_every = spec.equity_every_bars
        counters = {"signals": 0, "filtered": 0, "orders": 0, "rejected": 0, "trades": 0,
                    "wins": 0, "gross_profit": 0.0, "gross_loss": 0.0}
        reasons: dict[str, int] = {}
        market = self._market_cache(feed, symbol)
        on_bar = market.on_bar if market is not None else None
        restore_state = market.load_state() if market is not None and spec.resume else None
        if market is not None:
            market.market()  # the venue's limits, before the first order needs them
        self._market = market
        if exchange_feed:
            feed.should_stop = functools.partial(self._should_stop, deadline)
            feed.on_idle = functools.partial(self._idle_progress, strat, broker, risk, hist,
                                             counters)
        commit_wait_ns = 0
        store_wait_ns = 0
        order_seq = 0
        signal_seq = 0
        bars = 0
        last_bar: Bar | None = None
        next_progress = time.monotonic()
        view = self.view = RunView(symbol, spec, counters, hist, broker, risk, writer, feed,
                                   self.cache, time.time())
        observer.on_start({"run_id": run_id, "symbol": symbol, "feed": spec.feed,
                           "mode": spec.mode, "store": store_url, **feed_info})
        wall0 = self._wall0 = time.monotonic()
        self._idle_state = None
        iterator: Iterator[Bar] = iter(feed)
        live_trades: tuple[ClosedTrade, ...] = ()
        t0 = perf_ns()
        for bar in iterator:
            if exchange_feed:
                t0 = perf_ns()  # the wait for a live candle is pacing, not processing
            ts, open_, high, low, close, _volume = bar
            if on_bar is not None:
                on_bar(bar)
                if restore_state is not None:
                    self._restore(strat, restore_state, ts)
                    restore_state = None
            durable = False
            closed = exit_trade = None
            if broker.pending is not None or broker.qty > 0.0 or live:
                fill, closed, exit_fill, exit_trade = broker.on_bar(ts, open_, high, low)
                if fill is not None or exit_fill is not None:
                    durable = self._record_fills(writer, symbol, (fill, exit_fill),
                                                 (closed, exit_trade), counters, strat, broker)
            code = strat.update(close)
            if code:
                signal_seq += 1
                reason_key = st.REASON_KEY[code]
                reasons[reason_key] = reasons.get(reason_key, 0) + 1
                writer.add_signal(DeferredSignal(run_id, signal_seq, ts, code, close,
                                                 params.strategy, strat.facts()))
                if code in st.FIRED:
                    counters["signals"] += 1
                    order_seq += 1
                    self._order(writer, symbol, code, order_seq, ts, close, strat, risk,
                                broker, counters, reasons)
                else:
                    counters["filtered"] += 1
            if live:
                # orders went out during this bar: store their fills and rejections now
                traded = self._drain_live(writer, symbol, broker, counters, reasons, strat,
                                          close)
                if traded is not None:
                    durable = True
                    live_trades = traded
            equity = broker.cash + broker.qty * close
            drawdown = risk.mark(equity, ts)
            bars += 1
            if bars % equity_every == 0:
                add_equity(EquityRecord(run_id, ts, equity, broker.cash, broker.qty * close,
                                        drawdown))
            last_bar = bar
            hist.record(perf_ns() - t0)
            if market is not None and not bars % STATE_EVERY_BARS:
                market.save_state(strat.snapshot(ts))
            if writer.backlogged:
                w0 = perf_ns()
                writer.wait_for_room()
                store_wait_ns += perf_ns() - w0
            if durable:
                w0 = perf_ns()
                writer.barrier(timeout=30.0)
                commit_wait_ns += perf_ns() - w0
                self._notify_trades(observer, closed, exit_trade, *live_trades)
                live_trades = ()
            if bars == bar_limit:
                self.stopped_by = "bars"
                break
            if check_each or not bars & 63:
                now = time.monotonic()
                view.last_bar_wall = time.time()
                view.last_close = close
                if deadline is not None and now >= deadline:
                    self.stopped_by = "duration"
                    break
                if exchange_feed:
                    self._idle_state = (bars, bar)
                if now >= next_progress:
                    next_progress = now + PROGRESS_EVERY_S
                    observer.on_progress(self._snapshot(bars, bar, strat, broker, risk, hist,
                                                        counters, wall0))
                if speed:
                    wait = jittered_interval(spec.interval_s, pace_rng) / speed
                    if deadline is not None:
                        wait = min(wait, max(0.0, deadline - time.monotonic()))
                    if self._paced_wait(wait, bars, bar, strat, broker, risk, hist, counters,
                                        wall0):
                        self.stopped_by = "signal"
                        break
                if stop.is_set():
                    self.stopped_by = "signal"
                    break
            t0 = perf_ns()
        else:
            # a feed that ends early (the exchange feed, asked to stop while it waited)
            if stop.is_set():
                self.stopped_by = "signal"
            elif deadline is not None and time.monotonic() >= deadline:
                self.stopped_by = "duration"
            else:
                self.stopped_by = "end_of_data"

        if last_bar is not None and not spec.resume:
            # Sim and replay runs are self-contained: close what is open so every position
            # ends as a trade. Resumable runs keep it open for the next start.
            fill, closed = broker.close_all(last_bar.ts, last_bar.close, "end_of_run")
            if fill is not None:
                self._record_fills(writer, symbol, (fill,), (closed,), counters, strat, broker)
                self._notify_trades(observer, closed, None)
        if market is not None and last_bar is not None:
            market.save_state(strat.snapshot(last_bar.ts))
        w0 = perf_ns()
        writer.close()
        commit_wait_ns += perf_ns() - w0
        wall = time.monotonic() - wall0
        summary = self._summary(symbol, bars, broker, risk, hist, counters, reasons, wall,
                                commit_wait_ns, writer, feed_info, last_bar, store_url)
        summary["store_wait_ms"] = store_wait_ns / 1e6
        if live:
            assert isinstance(broker, LiveBroker)
            summary["live"] = {"orders_sent": broker.orders_sent,
                               "open_orders_adopted": len(broker.open_orders),
                               "position_qty": broker.qty}
        return summary

    # --- exchange feed and live trading -------------------------------------------------

    def _should_stop(self, deadline: float | None) -> bool:
        return self._stop.is_set() or (deadline is not None and time.monotonic() >= deadline)

    def _idle_progress(self, strat: st.ScalpStrategy, broker: Broker, risk: RiskManager,
                       hist: LatencyHistogram, counters: dict[str, Any]) -> None:
        """Called by a waiting exchange feed: keeps the live view's clock moving."""
        state = self._idle_state
        now = time.monotonic()
        if state is None or now < self._next_idle_progress:
            return
        self._next_idle_progress = now + PROGRESS_EVERY_S
        bars, bar = state
        self.observer.on_progress(self._snapshot(bars, bar, strat, broker, risk, hist,
                                                 counters, self._wall0))

    def _live_broker(self, feed: Any, symbol: str, store: Any, writer: StoreWriter
                     ) -> LiveBroker:
        """The live broker, reconciled with the exchange and the store before any bar."""
        broker = LiveBroker(feed.adapter, symbol, self.spec.params.broker,
                            warn=self.observer.on_warning,
                            before_send=functools.partial(self._journal, writer, symbol),
                            run_id=self.run_id)
        stored = store.load_position(symbol, "live")
        journal = store.open_orders(symbol, "live")
        updates = broker.reconcile(stored, journal)
        for u in updates:
            writer.add_order(OrderRecord(
                id=u.order_id, run_id=u.run_id, ts_ms=u.ts_ms, symbol=symbol, side=u.side,
                qty=u.qty, price=u.fill_price or 0.0, status=u.status, reason=u.reason,
                fill_price=u.fill_price, fee=u.fee))
            if (u.side == SELL and u.status == "filled" and u.fill_price and stored is not None
                    and stored.qty > 0 and stored.run_id):
                # the exit of the stored position filled before the restart: its trade
                fees = u.fee
                pnl = (u.fill_price - stored.entry_price) * min(u.qty, stored.qty) - fees
                writer.add_trade(TradeRecord(
                    id=stored.run_id, run_id=u.run_id, symbol=symbol, side=BUY,
                    qty=min(u.qty, stored.qty), entry_ts_ms=stored.entry_ts_ms or 0,
                    exit_ts_ms=u.ts_ms, entry_price=stored.entry_price,
                    exit_price=u.fill_price, pnl=pnl, fees=fees,
                    exit_reason=f"{u.reason} (recovered)"))
        writer.set_position(self._position_record(symbol, broker))
        if not writer.barrier(timeout=30.0):
            raise StoreError("the store did not commit the reconciled position within 30 s")
        return broker

    def _position_record(self, symbol: str, broker: Broker) -> PositionRecord:
        return PositionRecord(
            symbol=symbol, mode=self.spec.mode, qty=broker.qty,
            entry_price=broker.entry_price, entry_ts_ms=broker.entry_ts_ms,
            stop_price=broker.stop_price, take_profit=broker.take_profit,
            run_id=broker.entry_order_id, updated_at_ms=int(time.time() * 1000))

    def _journal(self, writer: StoreWriter, symbol: str, order_id: str, side: str, qty: float,
                 price: float, reason: str) -> None:
        """Commit a live order as `open` before it is sent (a write-ahead journal)."""
        writer.add_order(OrderRecord(
            id=order_id, run_id=self.run_id, ts_ms=int(time.time() * 1000), symbol=symbol,
            side=side, qty=qty, price=price, status="open", reason=reason))
        if not writer.barrier(timeout=30.0):
            raise StoreError(f"the store did not journal order {order_id} within 30 s; "
                             "it was not sent")

    def _drain_live(self, writer: StoreWriter, symbol: str, broker: Broker,
                    counters: dict[str, Any], reasons: dict[str, int],
                    strat: st.ScalpStrategy, close: float
                    ) -> tuple[ClosedTrade, ...] | None:
        """Store the fills and rejections of the orders sent during this bar; the trades
        they closed, or None when nothing happened."""
        assert isinstance(broker, LiveBroker)
        broker.last_price = close
        fills, rejections = broker.take_reports()
        if not fills and not rejections:
            return None
        for rej in rejections:
            counters["rejected"] += 1
            reasons["rejected_exchange"] = reasons.get("rejected_exchange", 0) + 1
            writer.add_order(OrderRecord(
                id=rej.order_id, run_id=self.run_id, ts_ms=rej.ts_ms, symbol=symbol,
                side=rej.side, qty=rej.qty, price=close, status="rejected", reason=rej.reason,
                fill_price=None, fee=0.0))
        trades = tuple(t for _, t in fills if t is not None)
        self._record_fills(writer, symbol, tuple(f for f, _ in fills), trades, counters,
                           strat, broker)
        writer.set_position(self._position_record(symbol, broker))
        return trades

    def _paced_wait(self, wait: float, bars: int, bar: Bar, strat: st.ScalpStrategy,
                    broker: Broker, risk: RiskManager, hist: LatencyHistogram,
                    counters: dict[str, Any], wall0: float) -> bool:
        """Sleep until the next bar is due, keeping the live view's clock moving.

        True when a stop was requested meanwhile.
        """
        until = time.monotonic() + wait
        while True:
            remaining = until - time.monotonic()
            if remaining <= 0:
                return self._stop.is_set()
            if self._stop.wait(min(remaining, 1.0)):
                return True
            if until - time.monotonic() > 0:
                self.observer.on_progress(self._snapshot(bars, bar, strat, broker, risk, hist,
                                                         counters, wall0))

    def _restore(self, strat: st.ScalpStrategy, state: dict[str, Any], ts: int) -> None:
        """Adopt the cached indicator state when it ends right before this bar."""
        from engine.exchange.download import timeframe_ms

        gap = ts - int(state.get("ts", 0))
        if 0 < gap <= 2 * timeframe_ms(self.spec.timeframe) and strat.restore(state):
            self.observer.on_warning("indicators restored from the cached state snapshot")

    def _resume(self, store: Any, symbol: str, broker: Broker,
                strat: st.ScalpStrategy) -> None:
        pos = store.load_position(symbol, self.spec.mode)
        if pos is not None and pos.qty > 0:
            broker.restore(pos.qty, pos.entry_price, pos.entry_ts_ms, pos.stop_price,
                           pos.take_profit, pos.run_id)
            strat.long = True
            self.observer.on_warning(
                f"resumed open position: {pos.qty:.6g} {symbol} at {pos.entry_price:.6g}")

    def _order(self, writer: StoreWriter, symbol: str, code: int, seq: int, ts: int,
               close: float, strat: st.ScalpStrategy, risk: RiskManager, broker: Broker,
               counters: dict[str, Any], reasons: dict[str, int]) -> None:
        order_id = f"{self.run_id[:12]}-{seq}"
        reason = st.REASON_KEY[code]
        if code != st.BUY:
            if broker.qty > 0.0:
                broker.submit(PendingOrder(order_id, SELL, broker.qty, reason))
                counters["orders"] += 1
            return
        equity = broker.cash + broker.qty * close
        reject = risk.entry_blocked(equity)
        qty = min(strat.entry_qty, broker.affordable_qty(close))
        min_notional = MIN_ORDER_NOTIONAL
        if self._market is not None:
            min_notional = float(self._market.market().get("min_notional") or min_notional)
        if reject is None and self._market is not None:
            spread = self._market.spread_bps()
            if spread is not None and spread > self.spec.params.risk.max_spread_bps:
                reject = REJECT_SPREAD
        if reject is None and qty * close < min_notional:
            reject = REJECT_ZERO_SIZE
        if reject is not None:
            counters["rejected"] += 1
            key = f"rejected_{reject}"
            reasons[key] = reasons.get(key, 0) + 1
            writer.add_order(OrderRecord(
                id=order_id, run_id=self.run_id, ts_ms=ts, symbol=symbol, side=BUY, qty=0.0,
                price=close, status="rejected", reason=str(reject), fill_price=None, fee=0.0))
            return
        stop_price, take_profit = risk.levels(close, strat.volatility)
        broker.submit(PendingOrder(order_id, BUY, qty, reason, stop_price, take_profit))
        counters["orders"] += 1

    def _record_fills(self, writer: StoreWriter, symbol: str, fills: tuple[Fill | None, ...],
                      trades: tuple[ClosedTrade | None, ...], counters: dict[str, Any],
                      strat: st.ScalpStrategy, broker: Broker) -> bool:
        run_id = self.run_id
        for fill in fills:
            if fill is None:
                continue
            writer.add_order(OrderRecord(
                id=fill.order_id, run_id=run_id, ts_ms=fill.ts_ms, symbol=symbol,
                side=fill.side, qty=fill.qty, price=fill.price, status="filled",
                reason=fill.reason, fill_price=fill.price, fee=fill.fee))
        for trade in trades:
            if trade is None:
                continue
            counters["trades"] += 1
            if trade.pnl > 0:
                counters["wins"] += 1
                counters["gross_profit"] += trade.pnl
            else:
                counters["gross_loss"] -= trade.pnl
            writer.add_trade(TradeRecord(
                id=trade.entry_order_id, run_id=run_id, symbol=symbol, side=BUY,
                qty=trade.qty, entry_ts_ms=trade.entry_ts_ms, exit_ts_ms=trade.exit_ts_ms,
                entry_price=trade.entry_price, exit_price=trade.exit_price, pnl=trade.pnl,
                fees=trade.fees, exit_reason=trade.exit_reason))
        strat.long = broker.qty > 0.0
        if not strat.long:
            strat.set_sizing_equity(broker.cash)
        if self.spec.resume:
            writer.set_position(PositionRecord(
                symbol=symbol, mode=self.spec.mode, qty=broker.qty,
                entry_price=broker.entry_price, entry_ts_ms=broker.entry_ts_ms,
                stop_price=broker.stop_price, take_profit=broker.take_profit,
                run_id=broker.entry_order_id, updated_at_ms=int(time.time() * 1000)))
            return True
        return any(t is not None for t in trades)

    def _notify_trades(self, observer: RunObserver, *trades: ClosedTrade | None) -> None:
        for trade in trades:
            if trade is not None:
                observer.on_trade({"id": trade.entry_order_id, "pnl": trade.pnl,
                                   "exit_reason": trade.exit_reason,
                                   "entry_price": trade.entry_price,
                                   "exit_price": trade.exit_price, "qty": trade.qty})

    def _snapshot(self, bars: int, bar: Bar, strat: st.ScalpStrategy, broker: Broker,
                  risk: RiskManager, hist: LatencyHistogram, counters: dict[str, Any],
                  wall0: float) -> dict[str, Any]:
        equity = broker.equity(bar.close)
        trades = counters["trades"]
        return {
            "bars": bars, "ts": bar.ts, "price": bar.close,
            "ema_fast": strat.ema_fast, "ema_slow": strat.ema_slow, "macd": strat.macd,
            "macd_signal": strat.signal, "rsi": strat.rsi,
            "position_qty": broker.qty, "entry_price": broker.entry_price if broker.qty else None,
            "equity": equity, "pnl": equity - self.spec.starting_equity,
            "drawdown": risk.drawdown, "trades": trades,
            "win_rate": counters["wins"] / trades if trades else None,
            "latency_us": {"p50": hist.percentile_ns(0.5) / 1000,
                           "p95": hist.percentile_ns(0.95) / 1000,
                           "p99": hist.percentile_ns(0.99) / 1000},
            "cache_hit_rate": None if self.cache is None else self.cache.hit_rate(),
            "elapsed_s": time.monotonic() - wall0,
            "bars_limit": self.spec.bars, "duration_s": self.spec.duration_s,
            "breaker": risk.breaker_tripped,
        }

    def _summary(self, symbol: str, bars: int, broker: Broker, risk: RiskManager,
                 hist: LatencyHistogram, counters: dict[str, Any], reasons: dict[str, int],
                 wall: float, commit_wait_ns: int, writer: StoreWriter,
                 feed_info: dict[str, Any], last_bar: Bar | None, store_url: str
                 ) -> dict[str, Any]:
        spec = self.spec
        final_equity = broker.cash if last_bar is None else broker.equity(last_bar.close)
        trades = counters["trades"]
        gross_loss = counters["gross_loss"]
        return {
            "run_id": self.run_id,
            "status": "interrupted" if self.stopped_by == "signal" else "finished",
            "stopped_by": self.stopped_by,
            "symbol": symbol, "feed": spec.feed, "mode": spec.mode,
            "seed": spec.seed if spec.feed == "sim" else None,
            "bars": bars,
            "signals": counters["signals"],
            "signals_filtered": counters["filtered"],
            "orders": counters["orders"],
            "orders_rejected": counters["rejected"],
            "trades": trades,
            "wins": counters["wins"],
            "win_rate": counters["wins"] / trades if trades else None,
            "profit_factor": counters["gross_profit"] / gross_loss if gross_loss else None,
            "pnl": final_equity - spec.starting_equity,
            "pnl_pct": (final_equity / spec.starting_equity - 1.0) * 100.0,
            "fees": broker.fees_paid,
            "starting_equity": spec.starting_equity,
            "final_equity": final_equity,
            "max_drawdown": risk.max_drawdown_seen,
            "breaker_tripped": risk.breaker_tripped,
            "reasons": reasons,
            "latency_us": hist.summary_us(),
            "commit_wait_ms": commit_wait_ns / 1e6,
            "wall_s": wall,
            "bars_per_s": bars / wall if wall > 0 else None,
            "rss_mib": rss_mib(),
            "rss_peak_mib": peak_rss_mib(),
            "store": {"url": store_url, **dataclasses.asdict(writer.stats)},
            "data": feed_info or None,
        }
