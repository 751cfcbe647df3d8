"""Benchmark engine.indicators against TA-Lib (batch) and talipp (streaming).

    python benchmarks/bench_indicators.py [--bars 1000000] [--repeats 30] [--json out.json]
                                          [--quick]

What it measures (medians over --repeats unless noted; --quick: fewer repeats and ticks,
well under a minute):

* batch, this process: our four public calls (ema 12, ema 26, macd 12/26/9, rsi 14)
  against TA-Lib's EMA, EMA, MACD, RSI on the same array, at --bars bars and at the
  length of one real 1m file (cache-resident: compute rather than memory bandwidth
  decides). The sides run interleaved, in an order that rotates every round (see
  `interleaved`), so they share the machine and allocator state; the target is ours
  >= TARGET x faster at --bars. Minor page faults per four-call loop are counted for
  both. The two "floor" columns run copy kernels with exactly our calls'
  memory traffic (one read of the input per call, one output array per result, no
  arithmetic): with ordinary stores into fresh arrays, and with the stores our kernels
  use (full-line streaming stores into aligned arrays from STREAM_MIN bars on). At
  sizes that miss the caches no implementation of the four calls gets far below them.
* batch, alone: the same four-call loop for each library in its own fresh interpreter,
  with minor page faults per loop. In one process both sides share glibc's state,
  including the malloc tuning our first batch call applies (engine.indicators.
  _tune_malloc), so this is what a program using only one of them sees.
* first call: numba compile (empty cache dir) and cache load, each in a fresh
  interpreter, with VmRSS after `import engine.indicators` and after the first call.
* streaming: talipp and our incremental classes, all four indicators per tick, fed one
  close at a time: mean µs per tick (untimed loop), p50 and p99 (each tick timed with
  perf_counter_ns, so they include about one timer call).

Prices are real ETH/USDT 1m closes (../shared/data), extended to --bars by cycling
their log returns; without the data folder, a seeded random walk.
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
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
DATA = Path(os.environ.get("SUPREME_SHARED_DATA", REPO.parent / "shared" / "data"))

import engine.indicators as ind  # noqa: E402
from engine.indicators import EMA, MACD, RSI  # noqa: E402

TARGET = 2.0  # required speedup over TA-Lib, four calls at --bars, one process
QUICK = {"repeats": 8, "ticks": 10_000}


def load_prices(bars: int) -> tuple[np.ndarray, np.ndarray, str]:
    """(`bars` closes, the original closes, a description of where they came from)."""
    path = DATA / "ETH_USDT-1m.json"
    if path.exists():
        base = np.array([row[4] for row in json.loads(path.read_text())], dtype=np.float64)
        source = f"real ETH/USDT 1m closes ({len(base):,}) extended by cycling log returns"
    else:
        rng = np.random.default_rng(7)
        base = 2000.0 * np.exp(np.cumsum(rng.normal(0.0, 1e-3, 66_087)))
        source = "seeded random walk (shared data not found)"
    steps = np.resize(np.diff(np.log(base)), bars - 1)
    extended = base[0] * np.exp(np.concatenate(([0.0], np.cumsum(steps))))
    return extended, base, source


def minor_faults() -> int:
    return int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[7])


def interleaved(fns: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median ms of each function, run in turn after two warm-up rounds.

    The order rotates every round (ABC, BCA, CAB, ...) so that each function follows
    each other one equally often: a call pays for the dirty cache lines its predecessor
    left behind (TA-Lib's outputs are written through the cache, ours around it), and a
    fixed order would hand one side the cheaper predecessor every time.
    """
    names = list(fns)
    times: dict[str, list[float]] = {k: [] for k in names}
    for i in range(repeats + 2):
        shift = i % len(names)
        for name in names[shift:] + names[:shift]:
            t0 = time.perf_counter()
            fns[name]()
            if i >= 2:
                times[name].append(time.perf_counter() - t0)
    return {k: statistics.median(v) * 1e3 for k, v in times.items()}


def four_calls(lib: str, close: np.ndarray) -> Callable[[], None]:
    if lib == "ours":
        def run() -> None:
            ind.ema(close, 12)
            ind.ema(close, 26)
            ind.macd(close, 12, 26, 9)
            ind.rsi(close, 14)
        return run
    import talib

    def run_talib() -> None:
        talib.EMA(close, timeperiod=12)
        talib.EMA(close, timeperiod=26)
        talib.MACD(close, fastperiod=12, slowperiod=26, signalperiod=9)
        talib.RSI(close, timeperiod=14)
    return run_talib


def _stream_copy(outputs: int) -> Any:
    """Numba intrinsic (out_1, ..., out_outputs, x, n): copy whole lines of x[:n] the way
    our kernels store (prefetch ahead, one full-line streaming store per line and output)."""
    from numba import types
    from numba.extending import intrinsic

    from engine.indicators import kernels_nb as k

    def typed(*args: Any) -> Any:
        def codegen(context, builder, signature, values):  # type: ignore[no-untyped-def]
            x, n = values[outputs], values[outputs + 1]
            xt = signature.args[outputs]

            def body(i, state):  # type: ignore[no-untyped-def]
                k._prefetch(context, builder, xt, x, i)
                line = k._load_line(context, builder, xt, x, i)
                for j in range(outputs):
                    k._store_line(context, builder, signature.args[j], values[j], i, line, True)
                return []

            k._lines(builder, k.ir.Constant(n.type, 0), n, [], body)
            return context.get_dummy_value()

        return types.void(*args), codegen

    if outputs == 1:
        return intrinsic(lambda typingctx, out, x, n: typed(out, x, n))
    return intrinsic(lambda typingctx, a, b, c, x, n: typed(a, b, c, x, n))


def memory_floor(close: np.ndarray, streaming: bool) -> Callable[[], None]:
    """Copy kernels with our four calls' memory traffic; see the module docstring."""
    from numba import njit, uint64

    from engine.indicators import kernels_nb as k

    line = uint64(k.BLOCK)
    s1, s3 = _stream_copy(1), _stream_copy(3)

    @njit(nogil=True)
    def copy1(x, out):
        n = uint64(x.shape[0])
        end = uint64(0)
        if streaming and n >= k.STREAM_MIN and out.ctypes.data % 64 == 0:
            end = n - n % line
            s1(out, x, end)
            k._store_fence()
        for i in range(end, n):
            out[i] = x[i]

    @njit(nogil=True)
    def copy3(x, a, b, c):
        n = uint64(x.shape[0])
        end = uint64(0)
        if (streaming and n >= k.STREAM_MIN and a.ctypes.data % 64 == 0
                and b.ctypes.data % 64 == 0 and c.ctypes.data % 64 == 0):
            end = n - n % line
            s3(a, b, c, x, end)
            k._store_fence()
        for i in range(end, n):
            a[i] = x[i]
            b[i] = x[i]
            c[i] = x[i]

    def outputs(rows: int) -> list[np.ndarray]:
        if streaming:
            return ind._outputs(close, rows)
        return [np.empty(close.shape[0])] if rows == 1 else list(np.empty((rows, close.shape[0])))

    def run() -> None:
        for _ in range(3):  # ema, ema, rsi: one read, one output each
            copy1(close, outputs(1)[0])
        copy3(close, *outputs(3))  # macd: one read, three outputs
    return run


def faults_per_loop(fn: Callable[[], object], loops: int = 5) -> float:
    fn()
    f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(loops):
        fn()
    return (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0) / loops


def bench_batch(close: np.ndarray, repeats: int) -> dict[str, Any]:
    import talib

    ours, theirs = four_calls("ours", close), four_calls("talib", close)
    total = interleaved({"ours": ours, "talib": theirs,
                         "floor": memory_floor(close, streaming=False),
                         "floor_streaming": memory_floor(close, streaming=True)}, repeats)
    calls = interleaved({
        "ours ema12": lambda: ind.ema(close, 12), "talib ema12": lambda: talib.EMA(close, 12),
        "ours macd": lambda: ind.macd(close), "talib macd": lambda: talib.MACD(close),
        "ours rsi14": lambda: ind.rsi(close, 14), "talib rsi14": lambda: talib.RSI(close, 14),
    }, repeats)
    bars = close.shape[0]
    return {"bars": bars, "ours_ms": total["ours"], "talib_ms": total["talib"],
            "floor_ms": total["floor"], "floor_streaming_ms": total["floor_streaming"],
            "ours_mbars_s": bars / total["ours"] / 1e3,
            "talib_mbars_s": bars / total["talib"] / 1e3,
            "speedup_vs_talib": total["talib"] / total["ours"], "per_call_ms": calls,
            "ours_faults_per_loop": faults_per_loop(ours),
            "talib_faults_per_loop": faults_per_loop(theirs)}


def alone(lib: str, bars: int, repeats: int) -> dict[str, float]:
    """Body of the fresh interpreter behind bench_alone: one library, nothing else."""
    close = load_prices(bars)[0] if bars else load_prices(2)[1]
    run = four_calls(lib, close)
    run()
    run()
    f0 = minor_faults()
    ms = interleaved({lib: run}, repeats)[lib]
    faults = (minor_faults() - f0) / (repeats + 2)
    return {"bars": close.shape[0], "ms": ms, "faults_per_loop": faults}


def bench_alone(bars: int, repeats: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for size, n, reps in (("requested", bars, repeats), ("one_file", 0, repeats * 5)):
        row = {}
        for lib in ("ours", "talib"):
            res = subprocess.run([sys.executable, __file__, "--alone", lib, "--bars", str(n),
                                  "--repeats", str(reps)], capture_output=True, text=True,
                                 check=True, cwd=REPO)
            row[lib] = json.loads(res.stdout)
        row["speedup_vs_talib"] = row["talib"]["ms"] / row["ours"]["ms"]
        out[size] = row
    return out


_FIRST_CALL = """
import json, time
from pathlib import Path
def rss():
    for line in Path('/proc/self/status').read_text().splitlines():
        if line.startswith('VmRSS:'):
            return int(line.split()[1]) / 1024
t0 = time.perf_counter(); import engine.indicators as m; t_import = time.perf_counter() - t0
rss_import = rss()
import numpy as np
x = np.linspace(100.0, 200.0, 1000)
t0 = time.perf_counter(); m.ema(x, 12); m.macd(x); m.rsi(x); t_first = time.perf_counter() - t0
print(json.dumps({"import_s": t_import, "first_call_s": t_first, "rss_import_mb": rss_import,
                  "rss_after_first_call_mb": rss()}))
"""


def bench_first_call() -> dict[str, Any]:
    """Fresh interpreters: the first compiles into an empty numba cache, the second loads it.

    first_call_s covers importing numba and the kernels plus compiling or loading them
    (numpy is imported before the clock starts).
    """
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as cache_dir:
        env = {**os.environ, "NUMBA_CACHE_DIR": cache_dir, "PYTHONPATH": str(REPO)}
        for label in ("compile", "cache_load"):
            res = subprocess.run([sys.executable, "-c", _FIRST_CALL], env=env, cwd=REPO,
                                 capture_output=True, text=True, check=True)
            out[label] = json.loads(res.stdout)
    return out


def _per_tick(feed: Callable[[float], object], prices: list[float]) -> dict[str, float]:
    t0 = time.perf_counter_ns()
    for x in prices:
        feed(x)
    mean_us = (time.perf_counter_ns() - t0) / len(prices) / 1e3
    clock = time.perf_counter_ns
    samples = []
    for x in prices:
        t = clock()
        feed(x)
        samples.append(clock() - t)
    samples.sort()
    return {"ticks": len(prices), "mean_us": mean_us, "p50_us": samples[len(samples) // 2] / 1e3,
            "p99_us": samples[int(len(samples) * 0.99)] / 1e3}


def bench_streaming(prices: list[float]) -> dict[str, Any]:
    from talipp.indicators import EMA as TEMA
    from talipp.indicators import MACD as TMACD
    from talipp.indicators import RSI as TRSI

    e12, e26, m, r = EMA(12).update, EMA(26).update, MACD(12, 26, 9).update, RSI(14).update

    def ours(x: float) -> None:
        e12(x)
        e26(x)
        m(x)
        r(x)

    talipp_objs = (TEMA(12), TEMA(26), TMACD(12, 26, 9), TRSI(14))

    def talipp(x: float) -> None:
        for o in talipp_objs:
            o.add(x)

    result: dict[str, Any] = {"talipp": _per_tick(talipp, prices), "ours": _per_tick(ours, prices)}
    result["speedup_vs_talipp"] = result["talipp"]["mean_us"] / result["ours"]["mean_us"]
    return result


def render(res: dict[str, Any]) -> str:
    lines = [f"Prices: {res['source']}", "",
             "| batch, 4 calls, one process | bars | ours ms | TA-Lib ms | ours Mbars/s "
             "| TA-Lib Mbars/s | speedup | floor ms | floor, streaming stores ms "
             "| ours faults/loop | TA-Lib faults/loop |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for key, label in (("batch", "requested size"), ("batch_file", "one real 1m file")):
        b = res[key]
        lines.append(f"| {label} | {b['bars']:,} | {b['ours_ms']:.3f} | {b['talib_ms']:.3f} | "
                     f"{b['ours_mbars_s']:.0f} | {b['talib_mbars_s']:.0f} | "
                     f"{b['speedup_vs_talib']:.2f}x | {b['floor_ms']:.3f} | "
                     f"{b['floor_streaming_ms']:.3f} | {b['ours_faults_per_loop']:.0f} | "
                     f"{b['talib_faults_per_loop']:.0f} |")
    b = res["batch"]
    verdict = "met" if b["speedup_vs_talib"] >= TARGET else "MISSED"
    lines += ["", f"Target: >= {TARGET:g}x TA-Lib for the four calls at {b['bars']:,} bars "
              f"in one process: {b['speedup_vs_talib']:.2f}x, {verdict}."]
    lines += ["", "| batch, 4 calls, each library alone in a fresh process | bars | ours ms "
              "| TA-Lib ms | speedup | ours faults/loop | TA-Lib faults/loop |",
              "|---|---:|---:|---:|---:|---:|---:|"]
    for key, row in res["batch_alone"].items():
        o, t = row["ours"], row["talib"]
        lines.append(f"| {key.replace('_', ' ')} | {o['bars']:,} | {o['ms']:.3f} | "
                     f"{t['ms']:.3f} | {row['speedup_vs_talib']:.2f}x | "
                     f"{o['faults_per_loop']:.0f} | {t['faults_per_loop']:.0f} |")
    names = list(res["batch"]["per_call_ms"])
    lines += ["", "| single call, ms | " + " | ".join(names) + " |",
              "|---|" + "---:|" * len(names)]
    for key in ("batch", "batch_file"):
        calls = res[key]["per_call_ms"]
        lines.append(f"| {res[key]['bars']:,} bars | "
                     + " | ".join(f"{calls[k]:.3f}" for k in names) + " |")
    lines += ["", "| first batch call, fresh process | s | VmRSS after import MB "
              "| VmRSS after first call MB |", "|---|---:|---:|---:|"]
    for label in ("compile", "cache_load"):
        f = res["first_call"][label]
        lines.append(f"| {label.replace('_', ' ')} | {f['first_call_s']:.3f} | "
                     f"{f['rss_import_mb']:.1f} | {f['rss_after_first_call_mb']:.1f} |")
    s = res["streaming"]
    lines += ["", f"| streaming, 4 indicators per tick, {s['ours']['ticks']:,} ticks "
              "| mean µs | p50 µs | p99 µs |", "|---|---:|---:|---:|"]
    for label in ("talipp", "ours"):
        t = s[label]
        lines.append(f"| {label} | {t['mean_us']:.2f} | {t['p50_us']:.2f} | {t['p99_us']:.2f} |")
    lines.append(f"\nStreaming speedup vs talipp: {s['speedup_vs_talipp']:.1f}x")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--bars", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--ticks", type=int, default=50_000)
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--quick", action="store_true",
                        help=f"fewer repeats and ticks ({QUICK}); under a minute")
    parser.add_argument("--alone", choices=("ours", "talib"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.alone:
        print(json.dumps(alone(args.alone, args.bars, args.repeats)))
        return
    if args.quick:
        args.repeats = min(args.repeats, QUICK["repeats"])
        args.ticks = min(args.ticks, QUICK["ticks"])

    close, base, source = load_prices(args.bars)
    res: dict[str, Any] = {"source": source, "python": sys.version.split()[0],
                           "quick": args.quick, "repeats": args.repeats, "target": TARGET}
    res["first_call"] = bench_first_call()
    res["batch_alone"] = bench_alone(args.bars, args.repeats)
    res["batch"] = bench_batch(close, args.repeats)
    res["batch_file"] = bench_batch(base, args.repeats * 5)
    res["target_met"] = res["batch"]["speedup_vs_talib"] >= TARGET
    res["streaming"] = bench_streaming(close[: args.ticks].tolist())
    print(render(res))
    if args.json:
        args.json.write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
