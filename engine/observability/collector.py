"""The Prometheus view of a running Run, computed when scraped.

Nothing is observed on the tick path: the run already counts everything and keeps a latency
histogram, so a scrape reads those and converts them (the fine log-linear histogram into
Prometheus buckets). Instrumentation therefore costs the tick nothing. Names: docs/METRICS.md.
"""

from __future__ import annotations

import math
import platform
from collections.abc import Iterator
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
)
from prometheus_client.registry import Collector

from engine.exchange.policy import RETRYABLE
from engine.latency import LatencyHistogram
from engine.sysinfo import rss_mib

if TYPE_CHECKING:
    from engine.pipeline import Run

# 1 µs to 1 s: a bar takes microseconds here, the guide's alert fires at 50 ms.
LATENCY_BUCKETS_S = (1e-6, 2e-6, 5e-6, 1e-5, 2e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3,
                     5e-3, 1e-2, 2.5e-2, 5e-2, 0.1, 0.25, 0.5, 1.0)
# 100 ns (an L1 hit) to 10 s (a slow exchange call)
CALL_BUCKETS_S = (1e-7, 2.5e-7, 5e-7, 1e-6, 2.5e-6, 5e-6, 1e-5, 5e-5, 1e-4, 2.5e-4, 5e-4,
                  1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2, 5e-2, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BREAKER_STATES = {"closed": 0, "half_open": 1, "open": 2}


def _package_version() -> str:
    try:
        return version("supreme")
    except PackageNotFoundError:
        return "unknown"


def _buckets(hist: LatencyHistogram, bounds_s: tuple[float, ...]) -> list[tuple[str, float]]:
    counts = hist.cumulative_counts([b * 1e9 for b in bounds_s])
    out = [(repr(b), float(c)) for b, c in zip(bounds_s, counts, strict=True)]
    out.append(("+Inf", float(hist.count)))
    return out


class RunCollector(Collector):
    def __init__(self, run: Run) -> None:
        self.run = run
        self.version = _package_version()

    def collect(self) -> Iterator[Any]:
        info = GaugeMetricFamily("supreme_build_info", "Build information",
                                 labels=["version", "python"])
        info.add_metric([self.version, platform.python_version()], 1.0)
        yield info
        rss = rss_mib()
        if rss is not None:
            yield GaugeMetricFamily("supreme_memory_usage_bytes", "Resident set size",
                                    value=rss * 2**20)
        view = self.run.view
        if view is None:
            return
        yield from self._core(view)
        yield from self._cache(view)
        yield from self._exchange(view)

    def _core(self, view: Any) -> Iterator[Any]:
        hist: LatencyHistogram = view.hist
        c = view.counters
        ticks = hist.count
        latency = HistogramMetricFamily("supreme_processing_latency_seconds",
                                        "Time to process one bar")
        latency.add_metric([], _buckets(hist, LATENCY_BUCKETS_S), hist.total_ns / 1e9)
        yield latency
        yield CounterMetricFamily("supreme_ticks", "Bars processed", value=ticks)
        signals = CounterMetricFamily("supreme_signals", "Signals", labels=["outcome"])
        signals.add_metric(["fired"], c["signals"])
        signals.add_metric(["filtered"], c["filtered"])
        yield signals
        orders = CounterMetricFamily("supreme_orders", "Orders", labels=["status"])
        orders.add_metric(["submitted"], c["orders"])
        orders.add_metric(["rejected"], c["rejected"])
        yield orders
        trades = CounterMetricFamily("supreme_trades", "Closed trades", labels=["result"])
        trades.add_metric(["win"], c["wins"])
        trades.add_metric(["loss"], c["trades"] - c["wins"])
        yield trades
        win = c["wins"] / c["trades"] if c["trades"] else math.nan
        yield GaugeMetricFamily("supreme_trading_win_ratio",
                                "Winning trades / closed trades", value=win)
        close = view.last_close
        equity = view.broker.equity(close) if close is not None else view.broker.cash
        yield GaugeMetricFamily("supreme_equity", "Account equity", value=equity)
        yield GaugeMetricFamily("supreme_pnl", "Equity minus starting equity",
                                value=equity - view.spec.starting_equity)
        yield GaugeMetricFamily("supreme_drawdown_ratio", "Drawdown from peak equity",
                                value=view.risk.drawdown)
        yield GaugeMetricFamily("supreme_feed_last_bar_timestamp_seconds",
                                "When the last bar was processed", value=view.last_bar_wall)
        yield GaugeMetricFamily("supreme_store_up", "1 while the store accepts writes",
                                value=1.0 if view.writer.healthy else 0.0)
        errors = self._errors(view)
        family = CounterMetricFamily("supreme_errors", "Errors by kind", labels=["kind"])
        for kind, n in errors.items():
            family.add_metric([kind], n)
        yield family
        yield GaugeMetricFamily("supreme_error_ratio", "Errors / bars since start",
                                value=sum(errors.values()) / ticks if ticks else 0.0)

    def _errors(self, view: Any) -> dict[str, float]:
        errors = {"store": float(view.writer.stats.errors), "cache_l2": 0.0, "cache_l3": 0.0,
                  "exchange": 0.0, "feed": 0.0}
        cache = view.cache
        if cache is not None:
            for name, tier in (("cache_l2", cache.l2), ("cache_l3", cache.l3)):
                if tier is not None:
                    errors[name] = float(tier.stats.errors + tier.stats.write_errors)
        adapter = getattr(view.feed, "_adapter", None)
        if adapter is not None:
            errors["exchange"] = float(sum(adapter.stats.errors.values()))
        info = getattr(view.feed, "info", None)
        if isinstance(info, dict):
            errors["feed"] = float(info.get("outages", 0) + info.get("stream_drops", 0))
        return errors

    def _cache(self, view: Any) -> Iterator[Any]:
        cache = view.cache
        if cache is None:
            return
        hits = CounterMetricFamily("supreme_cache_hits", "Cache hits", labels=["tier"])
        misses = CounterMetricFamily("supreme_cache_misses", "Cache misses", labels=["tier"])
        duration = HistogramMetricFamily("supreme_cache_request_duration_seconds",
                                         "Cache call latency", labels=["tier"])
        up = GaugeMetricFamily("supreme_cache_tier_up", "1 while the tier's breaker is closed",
                               labels=["tier"])
        breakers = GaugeMetricFamily("supreme_circuit_breaker_state",
                                     "0 closed, 1 half-open, 2 open", labels=["name"])
        tiers = [("l1", cache.l1_stats, None)]
        tiers += [(n, t.stats, t) for n, t in (("l2", cache.l2), ("l3", cache.l3))
                  if t is not None]
        for name, stats, guarded in tiers:
            hits.add_metric([name], stats.hits)
            misses.add_metric([name], stats.misses)
            lat = stats.latency
            duration.add_metric([name], _buckets(lat, CALL_BUCKETS_S), lat.total_ns / 1e9)
            if guarded is not None:
                state = guarded.breaker.state
                up.add_metric([name], 1.0 if state == "closed" else 0.0)
                breakers.add_metric([f"cache_{name}"], BREAKER_STATES.get(state, 2))
        yield hits
        yield misses
        yield duration
        yield up
        adapter = getattr(view.feed, "_adapter", None)
        breaker = getattr(adapter, "breaker", None)
        if breaker is not None:
            breakers.add_metric(["exchange"], BREAKER_STATES.get(breaker.state, 2))
        yield breakers
        hit_rate = cache.hit_rate()
        yield GaugeMetricFamily("supreme_cache_hit_ratio", "Reads served by a cache tier",
                                value=math.nan if hit_rate is None else hit_rate)
        l1 = cache.l1
        yield CounterMetricFamily("supreme_neuromorphic_prefetches",
                                  "Entries loaded by prefetch", value=l1.prefetched)
        yield CounterMetricFamily("supreme_neuromorphic_prefetch_hits",
                                  "Prefetched entries later read", value=l1.prefetch_hits)
        yield CounterMetricFamily("supreme_neuromorphic_prefetch_wasted",
                                  "Prefetched entries evicted unread", value=l1.prefetch_wasted)
        yield GaugeMetricFamily("supreme_neuromorphic_associations", "Learned edges",
                                value=l1.learning_size())

    def _exchange(self, view: Any) -> Iterator[Any]:
        if view.spec.feed != "exchange":
            return
        yield GaugeMetricFamily("supreme_exchange_up", "1 while the exchange answers",
                                value=1.0 if getattr(view.feed, "healthy", False) else 0.0)
        adapter = getattr(view.feed, "_adapter", None)
        duration = HistogramMetricFamily("supreme_exchange_request_duration_seconds",
                                         "Exchange REST call latency", labels=["endpoint"])
        errors = CounterMetricFamily("supreme_exchange_errors", "Exchange errors by type",
                                     labels=["type"])
        if adapter is not None:
            for endpoint, hist in list(adapter.stats.latency.items()):
                duration.add_metric([endpoint], _buckets(hist, CALL_BUCKETS_S),
                                    hist.total_ns / 1e9)
        # the transport errors always have a series (0 until one happens), so rate() and
        # alerts work from the first scrape
        seen: dict[str, float] = dict.fromkeys(sorted(RETRYABLE), 0.0)
        if adapter is not None:
            seen.update(adapter.stats.errors)
        for kind, n in sorted(seen.items()):
            errors.add_metric([kind], n)
        yield duration
        yield errors
