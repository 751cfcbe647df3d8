"""Benchmark `supreme run` end to end: full tick, replay throughput, memory, start-up.

    python benchmarks/bench_run.py [--quick] [--json out.json]

* full tick: the run loop's own bounded latency histogram (feed → strategy → risk → paper
  broker → store buffer → histogram), real SQLite store writer on, for the replay feed over
  the 66k-bar ETH file and for the simulator; medians over repeats.
* replay throughput: wall time of the `supreme run --feed replay --speed max` process over
  ETH_USDT-1m.json, start-up included.
* engine memory: tracemalloc's traced heap while a run processes 1,000,000 simulated bars,
  sampled as it goes (the store writer's queue included), plus the peak.
* peak RSS of `supreme run --feed sim` on the embedded defaults (no Redis, no PostgreSQL).
* start-up: wall time of `supreme --help`.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
DATA = Path(os.environ.get("SUPREME_SHARED_DATA", REPO.parent / "shared" / "data"))
BIN = Path(sys.executable).with_name("supreme")

from engine.cache import CacheSettings  # noqa: E402
from engine.pipeline import Run, RunSpec  # noqa: E402


def _clean_env(data_dir: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("POSTGRES_URL", "REDIS_URL", "SUPREME_DB")}
    env["SUPREME_DATA_DIR"] = data_dir
    return env


def full_tick(feed: str, repeats: int, bars: int | None) -> dict[str, Any]:
    runs = []
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as tmp:
            spec = RunSpec(symbol=None if feed == "replay" else "ETH-USDT", feed=feed,
                           data_file=str(DATA / "ETH_USDT-1m.json") if feed == "replay"
                           else None, bars=bars, seed=1, data_dir=Path(tmp),
                           cache=CacheSettings())  # as `supreme run` runs by default
            runs.append(Run(spec).execute())
    lat = [r["latency_us"] for r in runs]
    return {
        "feed": feed, "repeats": repeats, "bars": runs[0]["bars"],
        "mean_us": statistics.median(x["mean"] for x in lat),
        "p50_us": statistics.median(x["p50"] for x in lat),
        "p95_us": statistics.median(x["p95"] for x in lat),
        "p99_us": statistics.median(x["p99"] for x in lat),
        "max_us": statistics.median(x["max"] for x in lat),
        "runs_mean_us": [x["mean"] for x in lat], "runs_p99_us": [x["p99"] for x in lat],
        "commit_wait_ms": statistics.median(r["commit_wait_ms"] for r in runs),
    }


def instrumentation_cost(repeats: int, bars: int) -> dict[str, Any]:
    """Mean tick with the metrics server on and scraped every 100 ms, against off, runs
    interleaved; the difference is what serving metrics costs a tick."""
    import threading
    import urllib.request

    from engine.observability.server import EngineServer

    means: dict[str, list[float]] = {"off": [], "on": []}
    for _ in range(repeats):
        for mode in ("off", "on"):
            with tempfile.TemporaryDirectory() as tmp:
                spec = RunSpec(symbol="ETH-USDT", feed="sim", bars=bars, seed=1,
                               data_dir=Path(tmp), cache=CacheSettings())
                run = Run(spec)
                if mode == "off":
                    summary = run.execute()
                else:
                    stop = threading.Event()
                    with EngineServer(run, 0) as server:
                        def scrape(url: str = server.url + "/metrics",
                                   stop: threading.Event = stop) -> None:
                            while not stop.wait(0.1):
                                urllib.request.urlopen(url, timeout=5).read()

                        scraper = threading.Thread(target=scrape, daemon=True)
                        scraper.start()
                        try:
                            summary = run.execute()
                        finally:
                            stop.set()
                            scraper.join(5)
                means[mode].append(summary["latency_us"]["mean"])
    off, on = statistics.median(means["off"]), statistics.median(means["on"])
    return {"bars": bars, "repeats": repeats, "off_mean_us": off, "on_mean_us": on,
            "cost_us": on - off, "runs": means}


def replay_wall(repeats: int) -> dict[str, Any]:
    walls = []
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(repeats):
            t0 = time.perf_counter()
            subprocess.run([str(BIN), "run", "--feed", "replay", "--speed", "max", "--data",
                            str(DATA / "ETH_USDT-1m.json"), "--json"], check=True,
                           capture_output=True, env=_clean_env(tmp))
            walls.append(time.perf_counter() - t0)
    return {"median_s": statistics.median(walls), "runs_s": walls, "bars": 66_087}


class _Sampler:
    def __init__(self) -> None:
        self.samples: list[tuple[int, int]] = []

    def on_start(self, info: dict[str, Any]) -> None:
        pass

    def on_progress(self, snap: dict[str, Any]) -> None:
        self.samples.append((snap["bars"], tracemalloc.get_traced_memory()[0]))

    def on_trade(self, trade: dict[str, Any]) -> None:
        pass

    def on_warning(self, message: str) -> None:
        pass


def engine_memory(bars: int) -> dict[str, Any]:
    sampler = _Sampler()
    with tempfile.TemporaryDirectory() as tmp:
        tracemalloc.start()
        base = tracemalloc.get_traced_memory()[0]
        Run(RunSpec(symbol="ETH-USDT", feed="sim", bars=bars, seed=2, data_dir=Path(tmp),
                    cache=CacheSettings()), sampler).execute()
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    samples = [(b, m - base) for b, m in sampler.samples]
    later = [m for b, m in samples if b >= bars // 10]
    return {
        "bars": bars, "samples": len(samples),
        "heap_at_10pct_mib": later[0] / 2**20 if later else None,
        "heap_at_end_mib": samples[-1][1] / 2**20 if samples else None,
        "heap_max_after_10pct_mib": max(later) / 2**20 if later else None,
        "heap_min_after_10pct_mib": min(later) / 2**20 if later else None,
        "peak_mib": (peak - base) / 2**20,
    }


def core_state_memory(ticks: int) -> dict[str, Any]:
    """tracemalloc over the engine's own state (strategy, risk, paper broker, latency
    histogram) fed `ticks` simulated bars: what a run keeps, without the store's queue."""
    from engine.broker.paper import PaperBroker
    from engine.feeds.sim import SimFeed
    from engine.latency import LatencyHistogram
    from engine.risk import RiskManager
    from engine.strategy import ScalpStrategy

    feed = iter(SimFeed(seed=3))
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    strat, risk, broker, hist = ScalpStrategy(), RiskManager(), PaperBroker(), LatencyHistogram()
    samples = []
    for i in range(1, ticks + 1):
        bar = next(feed)
        broker.on_bar(bar.ts, bar.open, bar.high, bar.low)
        strat.update(bar.close)
        risk.mark(broker.equity(bar.close), bar.ts)
        hist.record(1000 + i % 5000)
        if i % (ticks // 10) == 0:
            samples.append(tracemalloc.get_traced_memory()[0] - base)
    peak = tracemalloc.get_traced_memory()[1] - base
    tracemalloc.stop()
    return {"ticks": ticks, "samples_mib": [x / 2**20 for x in samples],
            "start_mib": samples[0] / 2**20, "end_mib": samples[-1] / 2**20,
            "peak_mib": peak / 2**20}


def sim_peak_rss(bars: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        code = ("import resource, subprocess, sys; "
                f"subprocess.run([{str(BIN)!r}, 'run', '--feed', 'sim', '--bars', '{bars}', "
                "'--json'], check=True, capture_output=True); "
                "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
        out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                             text=True, env=_clean_env(tmp))
    return {"bars": bars, "peak_rss_mib": int(out.stdout.strip()) / 1024}


def exchange_peak_rss(bars: int) -> dict[str, Any]:
    """Peak RSS of `supreme run --feed exchange` (paper) against the packaged fake exchange
    on 127.0.0.1, polling and streaming: ccxt is imported on this path only."""

    out: dict[str, Any] = {"bars": bars}
    schema = f"bench_{os.getpid()}"
    pg = os.environ.get("SUPREME_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
    redis_url = os.environ.get("SUPREME_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
    services = {"POSTGRES_URL": f"{pg}{'&' if '?' in pg else '?'}options=-csearch_path%3D{schema}",
                "REDIS_URL": redis_url, "SUPREME_CACHE__ENV": schema}
    modes: list[tuple[str, list[str], dict[str, str]]] = [
        ("polling", [], {}), ("stream", ["--stream"], {}),
        ("full", ["--metrics-port", "0"], services)]
    import psycopg

    with psycopg.connect(pg, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    try:
        for mode, extra, more_env in modes:
            _one_exchange_rss(out, mode, extra, more_env, bars)
    finally:
        with psycopg.connect(pg, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
        import redis

        client = redis.Redis.from_url(redis_url)
        for key in client.scan_iter(match=f"supreme:{schema}:*"):
            client.unlink(key)
        client.close()
    return out


def _one_exchange_rss(out: dict[str, Any], mode: str, extra: list[str],
                      more_env: dict[str, str], bars: int) -> None:
    from engine.testing import FakeExchange

    with tempfile.TemporaryDirectory() as tmp, \
            FakeExchange(start=-400, ws_interval_s=0.03) as fx:
        args = [str(BIN), "run", "--feed", "exchange", "--endpoint", fx.base_url,
                "--bars", str(bars), "--json", *extra]
        code = ("import resource, subprocess, sys; "
                f"subprocess.run({args!r}, check=True, capture_output=True); "
                "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
        env = {**_clean_env(tmp), "INTERVAL_SECONDS": "0.05", **more_env}
        res = subprocess.run([sys.executable, "-c", code], check=True,
                             capture_output=True, text=True, env=env)
        out[f"{mode}_peak_rss_mib"] = int(res.stdout.strip()) / 1024


def startup(repeats: int) -> dict[str, Any]:
    walls = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        subprocess.run([str(BIN), "--help"], check=True, capture_output=True)
        walls.append(time.perf_counter() - t0)
    return {"median_s": statistics.median(walls), "min_s": min(walls), "repeats": repeats}


def run(quick: bool) -> dict[str, Any]:
    r = 3 if quick else 7
    res = {
        "full_tick_replay": full_tick("replay", r, None),
        "full_tick_sim": full_tick("sim", r, 66_087),
        "replay_wall": replay_wall(r),
        "core_state_memory": core_state_memory(200_000 if quick else 1_000_000),
        "engine_memory": engine_memory(200_000 if quick else 1_000_000),
        "sim_peak_rss": sim_peak_rss(100_000 if quick else 300_000),
        "startup": startup(10 if quick else 30),
        "exchange_peak_rss": exchange_peak_rss(20),
        "instrumentation": instrumentation_cost(r, 66_087),
        "self_maxrss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    ft = res["full_tick_replay"]
    res["targets"] = {
        "full tick mean <= 5 us (replay)": ft["mean_us"] <= 5,
        "full tick p99 <= 20 us (replay)": ft["p99_us"] <= 20,
        "full tick mean <= 5 us (sim)": res["full_tick_sim"]["mean_us"] <= 5,
        "full tick p99 <= 20 us (sim)": res["full_tick_sim"]["p99_us"] <= 20,
        "replay 66k bars <= 2 s wall": res["replay_wall"]["median_s"] <= 2,
        "engine state <= 1 MiB and flat": (
            res["core_state_memory"]["peak_mib"] <= 1
            and abs(res["core_state_memory"]["end_mib"] - res["core_state_memory"]["start_mib"])
            < 0.01),
        "whole run heap <= 1 MiB": (res["engine_memory"]["heap_max_after_10pct_mib"] or 99) <= 1,
        "sim peak RSS <= 64 MiB": res["sim_peak_rss"]["peak_rss_mib"] <= 64,
        "--help <= 0.15 s": res["startup"]["median_s"] <= 0.15,
        "exchange run peak RSS <= 128 MiB (polling)":
            res["exchange_peak_rss"]["polling_peak_rss_mib"] <= 128,
        "exchange run peak RSS <= 128 MiB (--stream)":
            res["exchange_peak_rss"]["stream_peak_rss_mib"] <= 128,
        "exchange run peak RSS <= 128 MiB (metrics server, Redis and PostgreSQL tiers)":
            res["exchange_peak_rss"]["full_peak_rss_mib"] <= 128,
        "serving metrics costs <= 1 us a tick": res["instrumentation"]["cost_us"] <= 1,
    }
    return res


def render(res: dict[str, Any]) -> str:
    lines = ["| full tick | mean µs | p50 µs | p95 µs | p99 µs | max µs | bars |",
             "|---|---|---|---|---|---|---|"]
    for key in ("full_tick_replay", "full_tick_sim"):
        t = res[key]
        lines.append(f"| {t['feed']} | {t['mean_us']:.2f} | {t['p50_us']:.2f} | "
                     f"{t['p95_us']:.2f} | {t['p99_us']:.2f} | {t['max_us']:.0f} | "
                     f"{t['bars']:,} |")
    m = res["engine_memory"]
    c = res["core_state_memory"]
    lines += [
        "",
        f"Engine state (strategy, risk, broker, latency histogram; tracemalloc) over "
        f"{c['ticks']:,} ticks: {c['start_mib'] * 1024:.1f} KiB after 10 %, "
        f"{c['end_mib'] * 1024:.1f} KiB at the end, peak {c['peak_mib'] * 1024:.1f} KiB.",
        "",
        f"Replay of {res['replay_wall']['bars']:,} bars, process wall time with start-up: "
        f"{res['replay_wall']['median_s']:.2f} s (median).",
        f"Whole run heap, store writer queue included (tracemalloc) over {m['bars']:,} sim "
        "bars: "
        f"{m['heap_min_after_10pct_mib']:.3f}–{m['heap_max_after_10pct_mib']:.3f} MiB after "
        f"the first 10 %, {m['heap_at_end_mib']:.3f} MiB at the end, peak "
        f"{m['peak_mib']:.3f} MiB.",
        f"Peak RSS of `supreme run --feed sim --bars {res['sim_peak_rss']['bars']:,}`: "
        f"{res['sim_peak_rss']['peak_rss_mib']:.1f} MiB.",
        f"Peak RSS of `supreme run --feed exchange --bars {res['exchange_peak_rss']['bars']}` "
        f"against the fake exchange on 127.0.0.1: "
        f"{res['exchange_peak_rss']['polling_peak_rss_mib']:.1f} MiB polling, "
        f"{res['exchange_peak_rss']['stream_peak_rss_mib']:.1f} MiB with --stream, "
        f"{res['exchange_peak_rss']['full_peak_rss_mib']:.1f} MiB polling with "
        "--metrics-port, REDIS_URL and POSTGRES_URL set (limit 128 MiB).",
        f"Serving metrics (scraped every 100 ms) against not, sim full tick mean: "
        f"{res['instrumentation']['on_mean_us']:.2f} vs "
        f"{res['instrumentation']['off_mean_us']:.2f} µs, a cost of "
        f"{res['instrumentation']['cost_us']:+.2f} µs a tick (median of "
        f"{res['instrumentation']['repeats']} interleaved pairs).",
        f"`supreme --help`: {res['startup']['median_s'] * 1000:.0f} ms median, "
        f"{res['startup']['min_s'] * 1000:.0f} ms best of {res['startup']['repeats']}.",
        "Targets: " + ", ".join(f"{k}: {'met' if v else 'MISSED'}"
                                for k, v in res["targets"].items()),
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description="end-to-end run benchmarks")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    res = run(args.quick)
    print(render(res))
    if args.json:
        args.json.write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
