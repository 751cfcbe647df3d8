"""The honesty test of `supreme stats ab`: its verdict on zero-edge data.

    python benchmarks/calibrate_stats.py [--quick] [--seeds 1000] [--json out.json]

For each seed, `stats ab` runs the candidate profile (scalp-1m) and the baseline profile
(conservative) on the same random-walk prices from the simulator (`--sim-model
random_walk`), with fees and slippage set to zero so that neither can have an edge, and
applies its pre-declared verdict test at α = 0.05. A calibrated test calls about 5 % of
these significant; with 1,000 seeds the 99 % binomial band around 5 % is 3.2 %-6.8 %.
The code path is run_ab itself: the same runs, stored and read back, and the same test.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from engine.stats.ab import run_ab  # noqa: E402

ALPHA = 0.05


def binomial_band(n: int, p: float = ALPHA, z: float = 2.5758) -> tuple[float, float]:
    """The 99 % normal-approximation band of a binomial share around p."""
    half = z * math.sqrt(p * (1 - p) / n)
    return p - half, p + half


def run(seeds: int, bars: int, resamples: int) -> dict[str, Any]:
    significant = 0
    p_values: list[float] = []
    t0 = time.perf_counter()
    for seed in range(seeds):
        with tempfile.TemporaryDirectory(prefix="supreme-calib-") as tmp:
            flags = {"feed": "sim", "sim_model": "random_walk", "seed": seed, "bars": bars,
                     "speed": "max", "broker.fee_bps": 0.0, "broker.slippage_bps": 0.0,
                     "cache.enabled": False, "data_dir": tmp}
            doc = run_ab("scalp-1m", "conservative", flags=flags, resamples=resamples,
                         alpha=ALPHA, seed=seed)
        p = doc["comparison"]["primary"]["p_value"]
        p_values.append(p)
        significant += p < ALPHA
    wall = time.perf_counter() - t0
    rate = significant / seeds
    low, high = binomial_band(seeds)
    return {"seeds": seeds, "bars": bars, "resamples": resamples, "alpha": ALPHA,
            "significant": significant, "rate": rate, "band": [low, high],
            "test": doc["comparison"]["primary"]["test"],
            "null": doc["comparison"]["primary"]["null"],
            "p_value_deciles": [sorted(p_values)[int(q * (seeds - 1))]
                                for q in (0.1, 0.25, 0.5, 0.75, 0.9)],
            "wall_s": wall, "targets": {f"false-positive rate in {low:.1%}-{high:.1%}":
                                        low <= rate <= high}}


def render(res: dict[str, Any]) -> str:
    low, high = res["band"]
    return "\n".join([
        f"`stats ab` (scalp-1m vs conservative, fees 0) on random-walk prices, seeds 0–"
        f"{res['seeds'] - 1}, {res['bars']:,} bars each, {res['resamples']:,} resamples: "
        f"**{res['significant']} of {res['seeds']} called significant at α = "
        f"{res['alpha']}, a rate of {res['rate']:.1%}** (99 % band {low:.1%}–{high:.1%}).",
        f"Verdict test: {res['test']}; null: {res['null']}.",
        "p-value deciles 10/25/50/75/90 %: "
        + ", ".join(f"{p:.3f}" for p in res["p_value_deciles"])
        + f". Wall time {res['wall_s']:.0f} s.",
        "Targets: " + ", ".join(f"{k}: {'met' if v else 'MISSED'}"
                                for k, v in res["targets"].items()),
    ])


def main() -> None:
    parser = argparse.ArgumentParser(description="calibrate the stats ab verdict")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--seeds", type=int, default=1000)
    parser.add_argument("--bars", type=int, default=2000)
    parser.add_argument("--resamples", type=int, default=999)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    res = run(100 if args.quick else args.seeds, args.bars, args.resamples)
    print(render(res))
    if args.json:
        args.json.write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
