"""Benchmark the per-tick core against talipp and TA-Lib streaming, in one process.

    python benchmarks/bench_core.py [--ticks 200000] [--repeats 7] [--json out.json]

The core tick is what `supreme run` does for every bar before the broker:
engine.strategy.ScalpStrategy.update updates EMA12, EMA26, MACD(12,26,9) + signal, RSI14 and
the EWMA volatility, computes the fixed-fractional entry size (the quantity
engine.risk.RiskManager.size defines; a test holds them equal) and decides. Baselines
compute the same four indicators one value at a time: talipp (four objects) and TA-Lib's
streaming functions.

mean: an untimed loop over all ticks, median over repeats. p50/p99: each tick timed with
perf_counter_ns; the median cost of an empty timer pair is subtracted and reported.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
DATA = Path(os.environ.get("SUPREME_SHARED_DATA", REPO.parent / "shared" / "data"))

from engine.config import RiskParams, StrategyParams  # noqa: E402
from engine.strategy import ScalpStrategy  # noqa: E402


def load_closes(ticks: int) -> list[float]:
    rows = json.loads((DATA / "ETH_USDT-1m.json").read_text())
    base = [float(r[4]) for r in rows]
    out: list[float] = []
    while len(out) < ticks:
        out.extend(base)
    return out[:ticks]


def core_tick() -> Callable[[float], object]:
    return ScalpStrategy(StrategyParams(), RiskParams(), 10_000.0).update


def talipp_tick() -> Callable[[float], object]:
    from talipp.indicators import EMA, MACD, RSI

    ema12, ema26, macd, rsi = EMA(12), EMA(26), MACD(12, 26, 9), RSI(14)

    def tick(close: float) -> object:
        ema12.add(close)
        ema26.add(close)
        macd.add(close)
        rsi.add(close)
        return None

    return tick


def talib_stream_tick() -> Callable[[float], object]:
    """TA-Lib's `talib.stream` recomputes from a window; give it the lookback it needs."""
    import numpy as np
    from talib import stream

    window = np.zeros(300)
    filled = [0]

    def tick(close: float) -> object:
        window[:-1] = window[1:]
        window[-1] = close
        filled[0] += 1
        if filled[0] < 300:
            return None
        return (stream.EMA(window, 12), stream.EMA(window, 26),
                stream.MACD(window, 12, 26, 9), stream.RSI(window, 14))

    return tick


def mean_us(make: Callable[[], Callable[[float], object]], closes: list[float],
            repeats: int) -> float:
    samples = []
    for _ in range(repeats):
        tick = make()
        t0 = time.perf_counter()
        for c in closes:
            tick(c)
        samples.append((time.perf_counter() - t0) / len(closes) * 1e6)
    return statistics.median(samples)


def timer_overhead_ns() -> float:
    ns = time.perf_counter_ns
    samples = []
    for _ in range(200_000):
        t0 = ns()
        samples.append(ns() - t0)
    return statistics.median(samples)


def percentiles_us(make: Callable[[], Callable[[float], object]], closes: list[float],
                   overhead: float) -> dict[str, float]:
    tick = make()
    ns = time.perf_counter_ns
    samples = []
    for c in closes:
        t0 = ns()
        tick(c)
        samples.append(ns() - t0)
    samples.sort()
    n = len(samples)
    return {"p50": max(samples[n // 2] - overhead, 0) / 1000,
            "p99": max(samples[int(n * 0.99)] - overhead, 0) / 1000,
            "max": samples[-1] / 1000}


def run(ticks: int, repeats: int) -> dict[str, Any]:
    closes = load_closes(ticks)
    overhead = timer_overhead_ns()
    sides = {"supreme core": core_tick, "talipp (4 objects)": talipp_tick}
    res: dict[str, Any] = {"ticks": ticks, "repeats": repeats, "timer_overhead_ns": overhead,
                           "sides": {}}
    talib_ticks = closes[: max(ticks // 20, 2000)]
    for name, make in sides.items():
        n = closes if name == "supreme core" else closes[: max(ticks // 10, 5000)]
        res["sides"][name] = {"mean_us": mean_us(make, n, repeats),
                              **percentiles_us(make, n, overhead), "ticks": len(n)}
    res["sides"]["TA-Lib stream (window 300)"] = {
        "mean_us": mean_us(talib_stream_tick, talib_ticks, 3), "ticks": len(talib_ticks)}
    core = res["sides"]["supreme core"]["mean_us"]
    res["talipp_ratio"] = res["sides"]["talipp (4 objects)"]["mean_us"] / core
    res["targets"] = {
        "mean <= 0.5 us": core <= 0.5,
        "p99 <= 1 us": res["sides"]["supreme core"]["p99"] <= 1.0,
        ">= 15x faster than talipp": res["talipp_ratio"] >= 15,
    }
    return res


def render(res: dict[str, Any]) -> str:
    lines = ["| per tick | mean µs | p50 µs | p99 µs | ticks |", "|---|---|---|---|---|"]
    for name, s in res["sides"].items():
        lines.append(f"| {name} | {s['mean_us']:.3f} | {s.get('p50', float('nan')):.3f} | "
                     f"{s.get('p99', float('nan')):.3f} | {s['ticks']:,} |")
    lines.append("")
    lines.append(f"talipp / supreme core: {res['talipp_ratio']:.1f}x. Timer pair overhead "
                 f"{res['timer_overhead_ns']:.0f} ns, subtracted from p50/p99.")
    lines.append("Targets: " + ", ".join(f"{k}: {'met' if v else 'MISSED'}"
                                         for k, v in res["targets"].items()))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description="core tick benchmark")
    parser.add_argument("--ticks", type=int, default=200_000)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.ticks, args.repeats = 50_000, 3
    res = run(args.ticks, args.repeats)
    print(render(res))
    if args.json:
        args.json.write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
