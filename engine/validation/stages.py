"""Where a tick's time goes: the real per-bar work of `Run._loop`, timed stage by stage.

`stage_breakdown` replays `Run._loop`'s per-bar body with the engine's own objects
(ScalpStrategy, RiskManager, PaperBroker, StoreWriter, TieredCache/MarketCache publish, the
LatencyHistogram) and the Run's own `_order` and `_record_fills`, timing each stage with
perf_counter_ns. The store and the cache live in a throw-away SQLite store. Stages:

  ingest      the feed producing the bar (next(iterator))
  cache       MarketCache.on_bar: the ticker publish (deque append, written behind)
  broker      PaperBroker.on_bar: pending fill at the open, stop/take-profit on the range
  indicators  ScalpStrategy.update: EMA/MACD/RSI/volatility and sizing; the cross and filter
              checks are fused into the same method, so they are counted here
  signal      handling a non-zero code: reason counters and the DeferredSignal record
  risk        Run._order (entry_blocked, sizing cap, min notional, levels, submit) and
              RiskManager.mark (drawdown) every bar
  store       StoreWriter.add_* of fills, trades, signals and equity (buffer appends; the
              commit runs on the writer's thread)
  metrics     LatencyHistogram.record and the loop's counters

Waits for the writer (backpressure, barrier after a closed trade) are untimed, as in the
pipeline. Each perf_counter_ns call costs tens of nanoseconds, so the replica's tick is
longer than the pipeline's `latency_us`; shares are what this is for.
"""

from __future__ import annotations

import tempfile
import threading
import time
from pathlib import Path
from typing import Any

STAGES = ("ingest", "indicators", "signal", "risk", "broker", "store", "cache", "metrics")


def stage_breakdown(spec: Any, bars: int, stop: threading.Event | None = None
                    ) -> dict[str, Any]:
    """Time each stage over up to `bars` bars of the spec's feed (unpaced)."""
    import dataclasses

    from engine import strategy as st
    from engine.broker.paper import PaperBroker
    from engine.cache import CacheSettings, open_cache
    from engine.cache.market import MarketCache
    from engine.latency import LatencyHistogram
    from engine.pipeline import DeferredSignal, NullObserver, Run, open_feed
    from engine.risk import RiskManager
    from engine.store import EquityRecord, RunRecord, open_store
    from engine.store.writer import StoreWriter

    base = Path(spec.data_dir)
    base.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".profile-stages-", dir=base) as tmp:
        spec = dataclasses.replace(spec, store_url=None, data_dir=Path(tmp), speed=0.0,
                                   bars=bars, duration_s=None, resume=False)
        run = Run(spec, NullObserver())
        feed, symbol, _ = open_feed(spec, run.observer)
        store = open_store(None, Path(tmp))
        try:
            store.migrate()
            store.create_run(RunRecord(id=run.run_id, symbol=symbol, feed=spec.feed,
                                       mode=spec.mode, started_at_ms=int(time.time() * 1000),
                                       status="running", config={"profile": "stages"}))
            writer = StoreWriter(store.clone, max_batch=2000)
            cache = open_cache(spec.cache or CacheSettings(), store)
            try:
                market = MarketCache(cache, symbol, "paper", spec.mode)
                market.market()
                run.cache = cache
                run._market = market
                result = _timed_loop(run, feed, symbol, writer, market, bars, stop,
                                     st=st, PaperBroker=PaperBroker, RiskManager=RiskManager,
                                     LatencyHistogram=LatencyHistogram,
                                     DeferredSignal=DeferredSignal, EquityRecord=EquityRecord)
            finally:
                writer.close()
                cache.close(timeout=2.0)
                close = getattr(feed, "close", None)
                if close is not None:
                    close()
        finally:
            store.close()
    return result


def _timed_loop(run: Any, feed: Any, symbol: str, writer: Any, market: Any, limit: int,
                stop: threading.Event | None, *, st: Any, PaperBroker: Any,
                RiskManager: Any, LatencyHistogram: Any, DeferredSignal: Any,
                EquityRecord: Any) -> dict[str, Any]:
    spec = run.spec
    params = spec.params
    run_id = run.run_id
    broker = PaperBroker(params.broker, spec.starting_equity)
    strat = st.ScalpStrategy(params.strategy, params.risk, spec.starting_equity)
    risk = RiskManager(params.risk, spec.starting_equity)
    hist = LatencyHistogram()
    counters = {"signals": 0, "filtered": 0, "orders": 0, "rejected": 0, "trades": 0,
                "wins": 0, "gross_profit": 0.0, "gross_loss": 0.0}
    reasons: dict[str, int] = {}
    perf = time.perf_counter_ns
    t_ingest = t_cache = t_broker = t_ind = t_sig = t_risk = t_store = t_metrics = 0
    on_bar = market.on_bar
    order_seq = signal_seq = bars = 0
    iterator = iter(feed)
    wall0 = time.monotonic()
    while bars < limit:
        a = perf()
        bar = next(iterator, None)
        b = perf()
        t_ingest += b - a
        if bar is None:
            break
        ts, open_, high, low, close, _volume = bar
        on_bar(bar)
        a = perf()
        t_cache += a - b
        durable = False
        if broker.pending is not None or broker.qty > 0.0:
            fill, closed, exit_fill, exit_trade = broker.on_bar(ts, open_, high, low)
            b = perf()
            t_broker += b - a
            if fill is not None or exit_fill is not None:
                durable = run._record_fills(writer, symbol, (fill, exit_fill),
                                            (closed, exit_trade), counters, strat, broker)
                a = perf()
                t_store += a - b
            else:
                a = b
        code = strat.update(close)
        b = perf()
        t_ind += b - a
        if code:
            signal_seq += 1
            reason_key = st.REASON_KEY[code]
            reasons[reason_key] = reasons.get(reason_key, 0) + 1
            rec = DeferredSignal(run_id, signal_seq, ts, code, close, params.strategy,
                                 strat.facts())
            a = perf()
            t_sig += a - b
            writer.add_signal(rec)
            b = perf()
            t_store += b - a
            if code in st.FIRED:
                counters["signals"] += 1
                order_seq += 1
                run._order(writer, symbol, code, order_seq, ts, close, strat, risk, broker,
                           counters, reasons)
                a = perf()
                t_risk += a - b
                b = a
            else:
                counters["filtered"] += 1
        equity = broker.cash + broker.qty * close
        drawdown = risk.mark(equity, ts)
        a = perf()
        t_risk += a - b
        bars += 1
        writer.add_equity(EquityRecord(run_id, ts, equity, broker.cash, broker.qty * close,
                                       drawdown))
        b = perf()
        t_store += b - a
        hist.record(b - a)
        a = perf()
        t_metrics += a - b
        if writer.backlogged:
            writer.wait_for_room()
        if durable:
            writer.barrier(timeout=30.0)
        if not bars & 1023 and stop is not None and stop.is_set():
            break
    wall = time.monotonic() - wall0
    totals = {"ingest": t_ingest, "indicators": t_ind, "signal": t_sig, "risk": t_risk,
              "broker": t_broker, "store": t_store, "cache": t_cache, "metrics": t_metrics}
    tick_ns = sum(totals.values())
    stages = {name: {"total_ms": ns / 1e6,
                     "mean_us": ns / bars / 1000 if bars else 0.0,
                     "share": ns / tick_ns if tick_ns else 0.0}
              for name, ns in totals.items()}
    return {"bars": bars, "wall_s": wall, "tick_mean_us": tick_ns / bars / 1000 if bars else 0.0,
            "stages": stages, "signals": signal_seq, "orders": counters["orders"],
            "trades": counters["trades"],
            "method": "Run._loop's per-bar body replayed with the same engine objects, each "
                      "stage timed with perf_counter_ns; share = stage time / sum of stages"}


def hotspots(spec: Any, bars: int, top: int = 10) -> dict[str, Any]:
    """cProfile over a real Run of `bars` bars (unpaced, throw-away store): the top
    functions by own time (tottime). Only the run's own thread is profiled; the store
    writer and the cache's background thread are not."""
    import cProfile
    import dataclasses
    import pstats

    from engine.pipeline import Run

    base = Path(spec.data_dir)
    base.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".profile-hot-", dir=base) as tmp:
        spec = dataclasses.replace(spec, store_url=None, data_dir=Path(tmp), speed=0.0,
                                   bars=bars, duration_s=None, resume=False)
        prof = cProfile.Profile()
        summary = prof.runcall(Run(spec).execute)
    stats = pstats.Stats(prof)
    raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    total_tt = sum(v[2] for v in raw.values()) or 1.0
    rows = sorted(raw.items(), key=lambda kv: kv[1][2], reverse=True)[:top]
    out = []
    for (filename, line, func), (_cc, nc, tt, ct, _callers) in rows:
        out.append({"function": func, "where": f"{_short(filename)}:{line}", "calls": nc,
                    "tottime_ms": tt * 1000, "cumtime_ms": ct * 1000,
                    "share": tt / total_tt})
    return {"bars": summary["bars"], "profiled_s": total_tt, "top": out,
            "method": f"cProfile over a real Run of {summary['bars']} bars, top {top} "
                      "by tottime (run thread only)"}


def _short(filename: str) -> str:
    for marker in ("/engine/", "/site-packages/", "/lib/python"):
        i = filename.rfind(marker)
        if i >= 0:
            return filename[i + 1:]
    return filename
