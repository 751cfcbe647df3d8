"""Run every benchmark and write BENCHMARKS.md with the machine and the date.

    python benchmarks/run_all.py [--quick] [--write BENCHMARKS.md]

Each benchmark runs in its own process (so one's imports and allocator state do not colour
another's) and reports JSON; this script only collects and renders. Nothing is hard-coded:
every figure in the file comes from the run that wrote it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
BENCHES = ("bench_core", "bench_run", "bench_indicators", "bench_cache", "bench_stats",
           "calibrate_stats")


def machine() -> dict[str, Any]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        mem_kib = int(Path("/proc/meminfo").read_text().split()[1])
    except OSError:
        mem_kib = 0
    from importlib.metadata import PackageNotFoundError, version

    versions = {}
    for key, dist in (("numpy", "numpy"), ("numba", "numba"), ("talib", "TA-Lib"),
                      ("talipp", "talipp"), ("redis", "redis"), ("cachetools", "cachetools")):
        try:
            versions[key] = version(dist)
        except PackageNotFoundError:
            versions[key] = "missing"
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_gib": round(mem_kib / 2**20, 1),
            "python": platform.python_version(), "platform": platform.platform(),
            "versions": versions,
            "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")}


def run_bench(name: str, quick: bool, out_dir: Path) -> tuple[dict[str, Any], str]:
    out = out_dir / f"{name}.json"
    cmd = [sys.executable, str(HERE / f"{name}.py"), "--json", str(out)]
    if quick:
        cmd.append("--quick")
    sys.stderr.write(f"running {name}…\n")
    proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(out.read_text()), proc.stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description="run all benchmarks")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--write", type=Path)
    args = parser.parse_args()
    info = machine()
    sections = []
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in BENCHES:
            results[name], text = run_bench(name, args.quick, Path(tmp))
            sections.append((name, text))
    doc = render(info, sections, results, args.quick)
    print(doc)
    if args.write:
        args.write.write_text(doc)
        (args.write.with_suffix(".json")).write_text(
            json.dumps({"machine": info, "results": results}, indent=2, default=str))


TITLES = {
    "bench_core": "Core tick: indicators, decision and size, one value at a time",
    "bench_run": "`supreme run`: full tick, replay throughput, memory, start-up",
    "bench_indicators": "Batch and streaming indicators against TA-Lib and talipp",
    "bench_cache": "Cache tiers against redis-py, sqlite3 and psycopg; LRU, LFU and "
                   "neuromorphic on three traces",
    "bench_stats": "Significance tests: block bootstrap and permutation over 100,000 returns",
    "calibrate_stats": "Calibration of the `stats ab` verdict on zero-edge data",
}


def render(info: dict[str, Any], sections: list[tuple[str, str]], results: dict[str, Any],
           quick: bool) -> str:
    v = info["versions"]
    lines = [
        "# Benchmarks",
        "",
        f"Measured {info['date']} by `make bench` (`benchmarks/run_all.py`"
        f"{' --quick' if quick else ''}) on {info['cpu']}, {info['cores']} cores, "
        f"{info['memory_gib']} GiB, Python {info['python']}, numpy {v['numpy']}, "
        f"numba {v['numba']}, TA-Lib {v['talib']}, talipp {v['talipp']}, redis-py "
        f"{v['redis']}, cachetools {v['cachetools']}.",
        "",
        "The machine is a shared VM: timings move by 20-50 % between runs, so every figure",
        "is a median over repeats and comparisons are ratios measured side by side in one",
        "run. Targets that a run missed say MISSED. `BENCHMARKS.json` holds the raw numbers.",
        "",
    ]
    for name, text in sections:
        lines += [f"## {TITLES[name]}", "", text, ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
