"""Benchmark the resampling tests of engine.stats.significance; optionally calibrate them.

    python benchmarks/bench_stats.py [--n 100000] [--resamples 10000] [--repeats 5]
                                     [--json out.json] [--quick]
    python benchmarks/bench_stats.py --calibrate [--seeds 2000] [--cal-resamples 999]

Timing (medians over --repeats, after the kernels are compiled): the paired block
bootstrap (`block_bootstrap`: block length choice, prefix sums, resampling, CIs and
p-values of the mean and Sharpe differences) and the block sign-flip permutation test,
each with --resamples resamples of --n paired returns, on three kinds of data (below) with
the automatic block length. The target is <= 2 s each. Also, for information: both at
block length 1 (an explicit choice; the automatic length on uncorrelated data is larger),
where a resample costs one step per return, and the unpaired label permutation test of
two samples of --n values each. First call: compiling the kernels into an empty numba
cache, and loading them from it, each in a fresh interpreter.

Calibration (--calibrate): the share of p < 0.05 for each resampling test and Welch's t on
zero-edge pairs (the true mean difference is 0), one pair per seed; it should be near
0.05. This is how engine.stats.significance chose its primary test.

Data (all zero-mean, per-minute scale):
* ar1: two independent AR(1) series, phi = 0.3, so the differences are AR(1) too.
* sparse: two strategies flat most of the time (enter with probability 1 % a bar, hold a
  geometric 20 bars, long or short at random) on the same GARCH(1,1) random walk with
  Student-t(4) shocks; their returns are position[t-1] * market return[t].
* iid: two independent normal series.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from engine.stats import significance as sig  # noqa: E402

F64 = npt.NDArray[np.float64]
TARGET_S = 2.0
PPY = 525_600.0


def ar1(phi: float, n: int, rng: np.random.Generator) -> F64:
    from scipy.signal import lfilter

    shocks = rng.normal(scale=1e-3, size=n)
    shocks[0] /= np.sqrt(1.0 - phi * phi)  # start in the stationary law
    return np.asarray(lfilter([1.0], [1.0, -phi], shocks), dtype=np.float64)


def garch_returns(n: int, rng: np.random.Generator) -> F64:
    shocks = rng.standard_t(4, size=n) / np.sqrt(2.0)  # unit variance
    out = np.empty(n)
    h = 1e-6
    for t in range(n):
        out[t] = np.sqrt(h) * shocks[t]
        h = 1e-8 + 0.1 * out[t] ** 2 + 0.88 * h
    return out


def positions(n: int, rng: np.random.Generator, enter: float = 0.01,
              hold: float = 20.0) -> F64:
    pos = np.zeros(n)
    t = 0
    while t < n:
        if rng.random() < enter:
            length = int(rng.geometric(1.0 / hold))
            pos[t:t + length] = rng.choice([-1.0, 1.0])
            t += length
        else:
            t += 1
    return pos


def pair(kind: str, n: int, rng: np.random.Generator) -> tuple[F64, F64]:
    if kind == "ar1":
        return ar1(0.3, n, rng), ar1(0.3, n, rng)
    if kind == "sparse":
        market = garch_returns(n + 1, rng)
        return positions(n, rng) * market[1:], positions(n, rng) * market[1:]
    if kind == "iid":
        return rng.normal(scale=1e-3, size=n), rng.normal(scale=1e-3, size=n)
    raise ValueError(kind)


KINDS = ("ar1", "sparse", "iid")


def median_s(fn: Callable[[], object], repeats: int) -> float:
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples)


_FIRST_CALL = """
import json, time
import numpy as np
t0 = time.perf_counter(); import engine.stats.bootstrap; t_kernels = time.perf_counter() - t0
from engine.stats.significance import compare
x = np.random.default_rng(0).normal(size=(2, 1000))
t0 = time.perf_counter(); compare(x[0], x[1], periods_per_year=1.0, resamples=200)
print(json.dumps({"kernels_s": t_kernels, "first_compare_s": time.perf_counter() - t0}))
"""


def bench_first_call() -> dict[str, Any]:
    """Fresh interpreters: the first compiles into an empty numba cache, the second loads it.

    kernels_s: importing numba and compiling (or loading) the kernels, which have explicit
    signatures and so compile at import. first_compare_s: the rest of a first `compare`
    (scipy's import, mostly).
    """
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as cache_dir:
        env = {**os.environ, "NUMBA_CACHE_DIR": cache_dir, "PYTHONPATH": str(REPO)}
        for label in ("compile", "cache_load"):
            res = subprocess.run([sys.executable, "-c", _FIRST_CALL], env=env, cwd=REPO,
                                 capture_output=True, text=True, check=True)
            out[label] = json.loads(res.stdout)
    return out


def run(n: int, resamples: int, repeats: int, quick: bool) -> dict[str, Any]:
    res: dict[str, Any] = {"n": n, "resamples": resamples, "repeats": repeats,
                           "first_call": bench_first_call(), "rows": []}
    rng = np.random.default_rng(2024)
    data = {kind: pair(kind, n, rng) for kind in KINDS}
    cases: list[tuple[str, int | None]] = [(kind, None) for kind in KINDS]
    if not quick:
        cases.append(("iid", 1))
    for kind, given in cases:
        c, b = data[kind]
        boot = sig.block_bootstrap(c, b, periods_per_year=PPY, resamples=resamples,
                                   block_length=given)
        flip = sig.block_sign_flip_test(c, b, resamples=resamples, block_length=given)
        res["rows"].append({
            "data": kind, "block_length": boot.mean_difference.block_length,
            "automatic": given is None,
            "bootstrap_s": median_s(partial(sig.block_bootstrap, c, b, periods_per_year=PPY,
                                            resamples=resamples, block_length=given),
                                    repeats),
            "sign_flip_s": median_s(partial(sig.block_sign_flip_test, c, b,
                                            resamples=resamples, block_length=given),
                                    repeats),
            "bootstrap_p": boot.mean_difference.p_value, "sign_flip_p": flip.p_value})
    c, b = data["iid"]
    res["label_permutation_s"] = median_s(lambda: sig.label_permutation_test(
        c, b, resamples=resamples), 1 if quick else 3)
    auto = [r for r in res["rows"] if r["automatic"]]
    res["targets"] = {
        f"block bootstrap <= {TARGET_S:g} s": all(r["bootstrap_s"] <= TARGET_S for r in auto),
        f"block sign flip <= {TARGET_S:g} s": all(r["sign_flip_s"] <= TARGET_S for r in auto),
    }
    return res


def render(res: dict[str, Any]) -> str:
    lines = [f"{res['resamples']:,} resamples of {res['n']:,} paired returns, median of "
             f"{res['repeats']} runs after compilation:", "",
             "| data | block length | block bootstrap s | block sign flip s |",
             "|---|---:|---:|---:|"]
    for r in res["rows"]:
        length = f"{r['block_length']}{' (auto)' if r['automatic'] else ' (given)'}"
        lines.append(f"| {r['data']} | {length} | {r['bootstrap_s']:.3f} | "
                     f"{r['sign_flip_s']:.3f} |")
    first = res["first_call"]
    lines += ["", f"Unpaired label permutation, two samples of {res['n']:,}: "
              f"{res['label_permutation_s']:.2f} s.",
              f"First call (fresh interpreter): kernels compile in "
              f"{first['compile']['kernels_s']:.2f} s with an empty numba cache and load in "
              f"{first['cache_load']['kernels_s']:.2f} s from it (numba's import included); "
              f"the rest of the first `compare` takes "
              f"{first['cache_load']['first_compare_s']:.2f} s (scipy's import, mostly).",
              "Targets: " + ", ".join(f"{k}: {'met' if v else 'MISSED'}"
                                      for k, v in res["targets"].items())]
    return "\n".join(lines)


def calibrate(seeds: int, resamples: int) -> dict[str, Any]:
    """Share of p < 0.05 per test on zero-edge pairs (n = 2000 and 5000 per kind)."""
    out: dict[str, Any] = {"seeds": seeds, "resamples": resamples, "rows": []}
    for kind in ("ar1", "sparse"):
        for n in (2000, 5000):
            hits = {"bootstrap (circular)": 0, "bootstrap (stationary)": 0,
                    "block sign flip": 0, "welch t": 0}
            for seed in range(seeds):
                c, b = pair(kind, n, np.random.default_rng(10_000 + seed))
                ps = {
                    "bootstrap (circular)": sig.block_bootstrap(
                        c, b, periods_per_year=PPY, resamples=resamples,
                        seed=seed).mean_difference.p_value,
                    "bootstrap (stationary)": sig.block_bootstrap(
                        c, b, periods_per_year=PPY, resamples=resamples, seed=seed,
                        method="stationary").mean_difference.p_value,
                    "block sign flip": sig.block_sign_flip_test(
                        c, b, resamples=resamples, seed=seed).p_value,
                    "welch t": sig.welch_t_test(c, b).p_value}
                for name, p in ps.items():
                    hits[name] += p < 0.05
            out["rows"].append({"data": kind, "n": n,
                                **{k: v / seeds for k, v in hits.items()}})
    return out


def render_calibration(cal: dict[str, Any]) -> str:
    names = [k for k in cal["rows"][0] if k not in ("data", "n")]
    se = (0.05 * 0.95 / cal["seeds"]) ** 0.5
    lines = [f"Share of p < 0.05 on zero-edge pairs, {cal['seeds']} seeds, "
             f"{cal['resamples']} resamples (standard error {se:.3f}):", "",
             "| data | n | " + " | ".join(names) + " |",
             "|---|---:|" + "---:|" * len(names)]
    for r in cal["rows"]:
        lines.append(f"| {r['data']} | {r['n']} | "
                     + " | ".join(f"{r[k]:.3f}" for k in names) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description="significance test benchmark")
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--resamples", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--calibrate", action="store_true")
    parser.add_argument("--seeds", type=int, default=500)
    parser.add_argument("--cal-resamples", type=int, default=999)
    args = parser.parse_args()
    if args.calibrate:
        res = calibrate(args.seeds, args.cal_resamples)
        print(render_calibration(res))
    else:
        if args.quick:
            args.repeats = 3
        res = run(args.n, args.resamples, args.repeats, args.quick)
        print(render(res))
    if args.json:
        args.json.write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
