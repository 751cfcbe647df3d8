"""Fault scenarios for `supreme degrade`: a real `Run` in a thread, one fault, measured.

Each scenario starts a run whose relevant tier or feed goes through a fault injector it owns
(a private redis-server, a TcpProxy in front of a service, the packaged fake exchange),
waits for a few bars, injects the fault for `fault_s` seconds, lifts it, and measures:

* stayed_up: the run thread never died, and bars kept coming after the fault;
* lost_records: rows the run produced (one equity row per bar, its trades) minus rows found
  in the store after the run; for exchange feeds also candles missing or repeated;
* recovered / recovery_s: from the moment the fault was lifted to the tier being healthy
  again (breaker closed, a successful call, the store writer drained) and the next bar.

Shared services are never touched: PostgreSQL is only reached through a proxy of ours, in a
schema of ours (created and dropped here); Redis faults use a private redis-server. Every
wait is bounded.
"""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from engine.pipeline import Run, RunSpec, WarningRecorder

SYMBOL = "ETH-USDT"
WARM_BARS = 5
WARM_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 20.0
POLL_S = 0.02
SIM_SPEED = 2250.0          # 45 s bars / 2250 = one bar every ~20 ms
REDIS_TIMEOUT_S = 0.2
BREAKER_RESET_S = 1.0
EXCHANGE_TIMEOUT_S = 1.0
EXCHANGE_POLL_S = 0.3
CANDLE_EVERY_S = 0.05       # the fake exchange's market moves one 1m candle this often
SKEW_MS = 5_000
MAX_WARNINGS = 200


class Skip(Exception):
    """The scenario cannot run here (a service or binary is missing)."""


@dataclass
class Outcome:
    name: str
    injected: str = ""
    engine_did: str = ""
    stayed_up: bool = False
    lost_records: int | None = None
    recovered: bool = False
    recovery_s: float | None = None
    status: str = "fail"
    reason: str = ""
    details: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "injected": self.injected, "engine_did": self.engine_did,
                "stayed_up": self.stayed_up, "lost_records": self.lost_records,
                "recovered": self.recovered, "recovery_s": self.recovery_s,
                "status": self.status, "reason": self.reason, "details": self.details}


class RunThread:
    """One `Run` executing on a daemon thread, watched from the caller's thread."""

    def __init__(self, spec: RunSpec) -> None:
        self.spec = spec
        self.observer = WarningRecorder(limit=MAX_WARNINGS)
        self.run = Run(spec, self.observer)
        self.summary: dict[str, Any] | None = None
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._target, name="degrade-run", daemon=True)
        self._last_bars = 0
        self.last_bar_at = 0.0  # monotonic time the bar count was last seen rising

    def _target(self) -> None:
        try:
            self.summary = self.run.execute()
        except BaseException as exc:  # reported as the scenario's outcome
            self.error = exc

    def start(self) -> RunThread:
        self._thread.start()
        return self

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    @property
    def bars(self) -> int:
        view = self.run.view
        bars = view.hist.count if view is not None else 0
        if bars > self._last_bars:
            self._last_bars = bars
            self.last_bar_at = time.monotonic()
        return bars

    def wait_for(self, cond: Callable[[], bool], timeout_s: float) -> float | None:
        """Seconds until cond() held (polled), or None at the deadline / if the run died."""
        t0 = time.monotonic()
        deadline = t0 + timeout_s
        while time.monotonic() < deadline:
            if cond():
                return time.monotonic() - t0
            if not self.alive:
                return None
            time.sleep(POLL_S)
        return None

    def sleep(self, seconds: float) -> None:
        """Sleep, keeping `last_bar_at` fresh."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            _ = self.bars
            time.sleep(min(POLL_S, max(0.0, deadline - time.monotonic())))

    def stop(self) -> bool:
        self.run.request_stop()
        self._thread.join(STOP_TIMEOUT_S)
        return not self._thread.is_alive()


def sim_spec(store_url: str, data_dir: Path, **kw: Any) -> RunSpec:
    return RunSpec(symbol=SYMBOL, feed="sim", seed=7, speed=SIM_SPEED, store_url=store_url,
                   data_dir=data_dir, **kw)


def count_lost(rt: RunThread, store_url: str, data_dir: Path, *, candles: bool = False
               ) -> tuple[int | None, dict[str, Any]]:
    """Rows the run produced minus rows in its store; with `candles`, also 1m candles
    missing between the first and last bar or stored twice."""
    from engine.store import open_store

    s = rt.summary
    view = rt.run.view
    if s is not None:
        expected_equity, expected_trades = int(s["bars"]), int(s["trades"])
    elif view is not None:  # the run died: what it had processed when it did
        expected_equity, expected_trades = view.hist.count, int(view.counters["trades"])
    else:
        return None, {}
    store = open_store(store_url, data_dir)
    try:
        equity = store.equity_for_run(rt.run.run_id)
        trades = store.trades_for_run(rt.run.run_id)
    finally:
        store.close()
    facts: dict[str, Any] = {"bars": expected_equity, "equity_rows": len(equity),
                             "trades": expected_trades, "trade_rows": len(trades),
                             "writer": s.get("store") if s else None}
    lost = max(0, expected_equity - len(equity)) + max(0, expected_trades - len(trades))
    if candles and equity:
        ts = sorted(e.ts_ms for e in equity)
        span = (ts[-1] - ts[0]) // 60_000 + 1
        facts["candles_missing"] = span - len(set(ts))
        facts["candles_repeated"] = len(ts) - len(set(ts))
        lost += facts["candles_missing"] + facts["candles_repeated"]
    return lost, facts


def finish(out: Outcome, rt: RunThread, store_url: str, data_dir: Path, *,
           bars_in_fault: int, recovery_s: float | None, candles: bool = False) -> Outcome:
    """Stop the run and fill in stayed_up, lost_records, status."""
    bars_after = rt.bars
    alive_before_stop = rt.alive
    stopped = rt.stop()
    out.stayed_up = alive_before_stop  # an error after the stop request is reported below
    out.recovered = recovery_s is not None
    out.recovery_s = recovery_s
    out.details.update({"bars_total": bars_after, "bars_during_fault": bars_in_fault,
                        "warnings": rt.observer.warnings[:10],
                        "warning_count": len(rt.observer.warnings)})
    if rt.error is not None:
        out.details["error"] = f"{type(rt.error).__name__}: {rt.error}"[:400]
    if not stopped:
        out.reason = f"the run did not stop within {STOP_TIMEOUT_S:g} s of a stop request"
        out.status = "fail"
        return out
    try:
        out.lost_records, facts = count_lost(rt, store_url, data_dir, candles=candles)
        out.details.update(facts)
    except Exception as exc:  # the store is ours; report rather than crash the report
        out.details["count_error"] = f"{type(exc).__name__}: {exc}"[:300]
    problems = []
    if rt.error is not None or not out.stayed_up:
        what = "the run failed while finishing" if out.stayed_up else "the run died"
        problems.append(what + (f" ({out.details['error']})" if "error" in out.details
                                else ""))
    if out.lost_records is None:
        problems.append("records could not be counted")
    elif out.lost_records:
        problems.append(f"{out.lost_records} records lost")
    if not out.recovered:
        problems.append("no recovery within the bound")
    out.status = "fail" if problems else "pass"
    out.reason = "; ".join(problems)
    return out


def timeline(rt: RunThread, inject: Callable[[], None], lift: Callable[[], None],
             fault_s: float, healthy: Callable[[float], bool], recovery_timeout_s: float
             ) -> tuple[int, float | None]:
    """Warm up, inject, hold, lift; bars during the fault and the recovery time (fault
    lifted → healthy(lifted_at) and a bar after the lift)."""
    if rt.wait_for(lambda: rt.bars >= WARM_BARS, WARM_TIMEOUT_S) is None:
        raise RuntimeError(f"the run produced no {WARM_BARS} bars within {WARM_TIMEOUT_S:g} s"
                           + (f": {rt.error}" if rt.error else ""))
    before = rt.bars
    inject()
    try:
        rt.sleep(fault_s)
    finally:
        during = rt.bars - before
        lift()
    lifted = time.monotonic()
    took = rt.wait_for(lambda: rt.bars > 0 and rt.last_bar_at > lifted and healthy(lifted),
                       recovery_timeout_s)
    if took is not None:
        rt.sleep(0.3)  # a little life after recovery before stopping
    return during, took


def recovery_bound(fault_s: float) -> float:
    return min(60.0, 10.0 + 2.0 * fault_s)


# --- Redis ------------------------------------------------------------------------------

@contextlib.contextmanager
def _redis_target(redis_url: str | None) -> Iterator[tuple[Any, str]]:
    """(private redis-server or None, upstream URL). A private server when redis-server is
    installed; else the configured Redis behind our proxy only (never frozen or killed)."""
    from engine.testing.redis_server import RedisServer, RedisServerMissing

    try:
        server = RedisServer()
    except RedisServerMissing as exc:
        if not redis_url:
            raise Skip(f"{exc}, and no Redis URL to put a proxy in front of") from exc
        if not _redis_answers(redis_url):
            raise Skip(f"{exc}, and Redis at the configured URL does not answer") from exc
        yield None, redis_url
        return
    with server:
        yield server, server.url


def _redis_answers(url: str) -> bool:
    try:
        import redis

        client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:
        return False


def redis_scenario(kind: str, fault_s: float, data_dir: Path, redis_url: str | None
                   ) -> Outcome:
    from engine.testing.tcp_proxy import TcpProxy

    out = Outcome(f"redis-{kind}")
    store_url = str(data_dir / f"{out.name}.db")
    with _redis_target(redis_url) as (server, url):
        parts = urlsplit(url)
        if parts.hostname not in ("127.0.0.1", "localhost"):
            raise Skip(f"Redis at {parts.hostname}: fault drills run against 127.0.0.1 only")
        db = parts.path.strip("/") or "0"
        with TcpProxy("127.0.0.1", parts.port or 6379) as proxy:
            netloc = parts.netloc.rsplit("@", 1)
            hostport = f"127.0.0.1:{proxy.port}"
            proxied = parts._replace(
                netloc=f"{netloc[0]}@{hostport}" if len(netloc) == 2 else hostport,
                path=f"/{db}").geturl()
            return _redis_drill(out, kind, fault_s, data_dir, store_url, server, proxy,
                                url, proxied)


def _redis_drill(out: Outcome, kind: str, fault_s: float, data_dir: Path, store_url: str,
                 server: Any, proxy: Any, url: str, proxied: str) -> Outcome:
    from engine.cache import CacheSettings

    settings = CacheSettings(env=f"degrade-{uuid.uuid4().hex[:8]}", redis_url=proxied,
                             redis_timeout_s=REDIS_TIMEOUT_S, breaker_reset_s=BREAKER_RESET_S)
    rt = RunThread(sim_spec(store_url, data_dir, cache=settings)).start()
    inject: Callable[[], None]
    lift: Callable[[], None]
    if kind == "down" and server is not None:
        out.injected = (f"private redis-server SIGKILLed for {fault_s:g} s, then restarted "
                        "empty on the same port")
        inject, lift = server.kill, server.start
    elif kind == "down":
        out.injected = f"proxy in front of Redis refused and reset connections for {fault_s:g} s"
        inject = lambda: proxy.set_mode("refuse")  # noqa: E731
        lift = lambda: proxy.set_mode("pass")  # noqa: E731
    elif kind == "frozen" and server is not None:
        out.injected = (f"private redis-server SIGSTOPped for {fault_s:g} s (accepts "
                        "connections, never answers), then SIGCONT")
        inject, lift = server.freeze, server.thaw
    elif kind == "frozen":
        out.injected = f"proxy in front of Redis black-holed all traffic for {fault_s:g} s"
        inject = lambda: proxy.set_mode("blackhole")  # noqa: E731
        lift = lambda: proxy.set_mode("pass")  # noqa: E731
    else:
        delay_ms = REDIS_TIMEOUT_S * 1000 * 2
        out.injected = (f"every Redis reply delayed {delay_ms:g} ms by a proxy (client timeout "
                        f"{REDIS_TIMEOUT_S:g} s) for {fault_s:g} s")
        inject = lambda: proxy.set_mode("delay", delay_ms)  # noqa: E731
        lift = lambda: proxy.set_mode("pass", 0)  # noqa: E731
    marks: dict[str, Any] = {}

    def l2() -> Any:
        cache = rt.run.cache
        return cache.l2 if cache is not None else None

    def on_inject() -> None:
        g = l2()
        marks["errors0"] = g.stats.errors if g is not None else 0
        marks["trips0"] = g.breaker.trips if g is not None else 0
        inject()

    def on_lift() -> None:
        g = l2()
        marks["ok_at_lift"] = g.stats.latency.count if g is not None else 0
        marks["state_at_lift"] = g.breaker.state if g is not None else None
        lift()

    def healthy(_: float) -> bool:
        g = l2()
        return (g is not None and g.breaker.state == "closed"
                and g.stats.latency.count > marks.get("ok_at_lift", 0))

    try:
        during, took = timeline(rt, on_inject, on_lift, fault_s, healthy,
                                recovery_bound(fault_s))
    except RuntimeError as exc:
        rt.stop()
        out.reason = str(exc)
        return out
    g = l2()
    errors = (g.stats.errors - marks.get("errors0", 0)) if g is not None else 0
    trips = (g.breaker.trips - marks.get("trips0", 0)) if g is not None else 0
    skipped = g.stats.skipped if g is not None else 0
    stale = g.stale_invalidations if g is not None else 0
    out.engine_did = (f"L2 errors +{errors}, breaker opened {trips}x (state at lift: "
                      f"{marks.get('state_at_lift')}), {skipped} calls skipped while "
                      f"open, {stale} stale keys invalidated; {during} bars processed "
                      "during the fault (fail-open on L1/L3)")
    out.details.update({"l2_errors": errors, "breaker_trips": trips,
                        "calls_skipped": skipped, "stale_invalidated": stale,
                        "redis_timeout_s": REDIS_TIMEOUT_S,
                        "breaker_reset_s": BREAKER_RESET_S})
    finish(out, rt, store_url, data_dir, bars_in_fault=during, recovery_s=took)
    if out.status == "pass" and errors == 0:
        out.status = "fail"
        out.reason = "the fault was not observed: no L2 error counted"
    with contextlib.suppress(Exception):
        from engine.cache.redis_tier import RedisTier

        tier = RedisTier(url, settings.env)
        tier.clear_namespace()
        tier.close()
    return out


# --- PostgreSQL -------------------------------------------------------------------------

def postgres_down(fault_s: float, data_dir: Path, postgres_url: str | None) -> Outcome:
    out = Outcome("postgres-down")
    if not postgres_url:
        raise Skip("no PostgreSQL URL (pass --postgres-url or set POSTGRES_URL)")
    try:
        import psycopg
    except ImportError as exc:
        raise Skip("psycopg is not installed") from exc
    from engine.testing.tcp_proxy import TcpProxy

    parts = urlsplit(postgres_url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 5432
    if host not in ("127.0.0.1", "localhost"):
        raise Skip(f"PostgreSQL at {host}: fault drills run against 127.0.0.1 only")
    schema = f"degrade_{uuid.uuid4().hex[:12]}"
    try:
        with psycopg.connect(postgres_url, autocommit=True, connect_timeout=3) as conn:
            conn.execute(f'CREATE SCHEMA "{schema}"')
    except psycopg.Error as exc:
        raise Skip(f"PostgreSQL does not answer: {exc}") from exc
    try:
        with TcpProxy("127.0.0.1", port) as proxy:
            netloc = parts.netloc.rsplit("@", 1)
            hostport = f"127.0.0.1:{proxy.port}"
            netloc_p = f"{netloc[0]}@{hostport}" if len(netloc) == 2 else hostport
            sep = "&" if parts.query else ""
            query = f"{parts.query}{sep}options=-csearch_path%3D{schema}&connect_timeout=2"
            store_url = parts._replace(netloc=netloc_p, query=query).geturl()
            out.injected = (f"TCP proxy in front of PostgreSQL refused connections and reset "
                            f"open ones for {fault_s:g} s (store in schema {schema})")
            rt = RunThread(sim_spec(store_url, data_dir)).start()
            marks: dict[str, Any] = {}

            def inject() -> None:
                proxy.set_mode("refuse")

            def lift() -> None:
                view = rt.run.view
                marks["errors_at_lift"] = view.writer.stats.errors if view else 0
                marks["queued_at_lift"] = view.writer.stats.queued if view else 0
                proxy.set_mode("pass")

            def healthy(_: float) -> bool:
                view = rt.run.view
                return (view is not None and view.writer.healthy
                        and view.writer.stats.queued < 50)

            try:
                during, took = timeline(rt, inject, lift, fault_s, healthy,
                                        recovery_bound(fault_s))
            except RuntimeError as exc:
                rt.stop()
                out.reason = str(exc)
                return out
            out.engine_did = (f"store writer failed {marks.get('errors_at_lift', 0)} commits "
                              f"and queued {marks.get('queued_at_lift', 0)} rows, retrying "
                              f"with back-off; {during} bars processed during the fault")
            out.details["writer_errors"] = marks.get("errors_at_lift", 0)
            out.details["queued_at_lift"] = marks.get("queued_at_lift", 0)
            finish(out, rt, store_url, data_dir, bars_in_fault=during, recovery_s=took)
            if during == 0 and out.status == "pass":
                out.engine_did += " (the tick loop blocked on a trade commit)"
    finally:
        with contextlib.suppress(Exception), \
                psycopg.connect(postgres_url, autocommit=True, connect_timeout=3) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    return out


# --- the exchange -----------------------------------------------------------------------

class _Market:
    """Moves the fake exchange's market one candle every CANDLE_EVERY_S, pausable."""

    def __init__(self, fx: Any) -> None:
        self.fx = fx
        self.paused = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="degrade-market", daemon=True)

    def _loop(self) -> None:
        while not self._stop.wait(CANDLE_EVERY_S):
            if not self.paused.is_set():
                self.fx.advance()

    def __enter__(self) -> _Market:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(2.0)


EXCHANGE_FAULTS = {  # scenario → (fake exchange fault kind, what it sends)
    "exchange-429": ("429", "HTTP 429 with Retry-After: 1 on every klines request"),
    "exchange-5xx": ("503", "HTTP 503 on every klines request"),
    "exchange-timeout": ("hang", f"klines requests hang past the client's "
                                 f"{EXCHANGE_TIMEOUT_S:g} s timeout"),
    "exchange-malformed": ("malformed", "truncated JSON bodies on every klines request"),
}


def exchange_scenario(name: str, fault_s: float, data_dir: Path) -> Outcome:
    try:
        import ccxt  # noqa: F401
    except ImportError as exc:
        raise Skip("ccxt is not installed") from exc
    from engine.exchange.adapter import ExchangeSpec
    from engine.exchange.endpoints import endpoint_overrides
    from engine.testing.fake_exchange import FakeExchange

    out = Outcome(name)
    store_url = str(data_dir / f"{name}.db")
    with FakeExchange(start=-2500, ws_interval_s=None, autoplay=False) as fx, \
            _Market(fx) as market:
        spec = RunSpec(symbol=SYMBOL, feed="exchange", interval_s=EXCHANGE_POLL_S,
                       store_url=store_url, data_dir=data_dir, seed=7,
                       exchange=ExchangeSpec(timeout_s=EXCHANGE_TIMEOUT_S,
                                             overrides=endpoint_overrides("binance",
                                                                          fx.base_url)))
        rt = RunThread(spec).start()
        marks: dict[str, Any] = {}
        inject: Callable[[], None]
        lift: Callable[[], None]
        if name == "feed-stalled":
            out.injected = (f"the exchange kept answering but no new candle closed for "
                            f"{fault_s:g} s")
            inject, lift = market.paused.set, market.paused.clear
        elif name == "clock-skew":
            out.injected = f"exchange server clock {SKEW_MS:+d} ms ahead for {fault_s:g} s"

            def inject() -> None:
                fx.set_time_offset_ms(SKEW_MS)
                marks["skew"] = _connectivity_skew(fx)

            def lift() -> None:
                fx.set_time_offset_ms(0)
        else:
            kind, what = EXCHANGE_FAULTS[name]
            out.injected = f"{what} for {fault_s:g} s (fake exchange)"

            def inject() -> None:
                marks["rule"] = fx.faults.set(kind, None, path="/api/v3/klines",
                                              seconds=EXCHANGE_TIMEOUT_S * 3)

            lift = fx.faults.clear
        warn0 = 0

        def on_inject() -> None:
            nonlocal warn0
            warn0 = len(rt.observer.warnings)
            inject()

        try:
            during, took = timeline(rt, on_inject, lift, fault_s, lambda _: True,
                                    recovery_bound(fault_s))
        except RuntimeError as exc:
            rt.stop()
            out.reason = str(exc)
            return out
        view = rt.run.view
        feed_info = dict(getattr(view.feed, "info", {})) if view is not None else {}
        new_warnings = rt.observer.warnings[warn0:]
        rule = marks.get("rule")
        out.details.update({"feed": {k: feed_info.get(k) for k in
                                     ("polls", "rest_bars", "backfilled", "outages")},
                            "fault_hits": getattr(rule, "hits", None),
                            "poll_interval_s": EXCHANGE_POLL_S})
        if name == "clock-skew":
            skew = marks.get("skew")
            out.details["connectivity_skew_ms"] = skew
            seen = skew is not None and abs(skew - SKEW_MS) < 1_000
            out.engine_did = (
                "run: skew not detected (the run never compares its clock with the "
                "exchange's; public candles are unaffected); `connectivity` reports "
                + (f"{skew:+.0f} ms" if skew is not None else "nothing"))
            out.details["skew_detected_by_run"] = False
            out.details["skew_detected_by_connectivity"] = seen
        elif name == "feed-stalled":
            out.engine_did = (f"{len(new_warnings)} warnings while no candle came (stall "
                              "not detected: the feed waits silently)" if not new_warnings
                              else f"warned: {new_warnings[0]}")
        else:
            adapter = getattr(view.feed, "_adapter", None) if view is not None else None
            breaker = getattr(adapter, "breaker", None)
            trips = getattr(breaker, "trips", None)
            out.details["adapter_breaker_trips"] = trips
            out.engine_did = (
                f"{getattr(rule, 'hits', 0)} requests hit the fault, retried with back-off "
                f"(adapter breaker opened {trips or 0}x); {feed_info.get('outages', 0)} feed "
                f"outage(s) reported, {during} bars during the fault, then caught up "
                f"({feed_info.get('backfilled', 0)} candles backfilled)"
                + (f"; warned: {new_warnings[0]}" if new_warnings else ""))
        finish(out, rt, store_url, data_dir, bars_in_fault=during, recovery_s=took,
               candles=True)
        if (out.status == "pass" and rule is not None and not rule.hits):
            out.status = "fail"
            out.reason = "the fault was never hit: the feed did not poll during it"
    return out


def _connectivity_skew(fx: Any) -> float | None:
    from engine.exchange.connectivity import check_exchanges

    report = check_exchanges(["binance"], SYMBOL, 5.0, endpoints={"binance": fx.base_url})
    return report.exchanges[0].skew_ms if report.exchanges else None
