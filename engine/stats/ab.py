"""`supreme stats ab`: two profiles on the same data, then the comparison.

With a data file both replay it; with the simulator both see the same seed's bars; with the
exchange feed both run side by side, each on its own thread, for the same duration. Each
is a real, stored run, so the comparison can be re-read and re-checked later.
"""

from __future__ import annotations

import threading
from dataclasses import replace
from pathlib import Path
from typing import Any

from engine.config import resolve
from engine.errors import ConfigError
from engine.pipeline import NullObserver, Run, RunObserver, RunSpec, spec_from_resolved
from engine.stats.analyze import compare_series, verdict
from engine.stats.baselines import align
from engine.stats.series import from_run
from engine.store import open_store


def _spec(profile: str, flags: dict[str, Any], config_path: Path | None) -> RunSpec:
    resolved = resolve(profile=profile, config_path=config_path, flags=flags)
    if resolved["mode"] == "live":
        raise ConfigError("stats ab compares paper runs; a profile asks for --mode live")
    spec = spec_from_resolved(resolved)
    return replace(spec, config={**spec.config, "profile": profile}, resume=False)


def _exchange_spec(endpoint: str | None) -> Any:
    from engine.exchange.adapter import ExchangeSpec
    from engine.exchange.endpoints import endpoint_overrides

    overrides = endpoint_overrides("binance", endpoint) if endpoint else {}
    return ExchangeSpec(overrides=overrides)


def run_ab(candidate: str, baseline: str, *, flags: dict[str, Any],
           config_path: Path | None = None, endpoint: str | None = None,
           resamples: int = 10_000, alpha: float = 0.05, seed: int = 0,
           observer: RunObserver | None = None,
           stop: threading.Event | None = None) -> dict[str, Any]:
    """Run both profiles on the same data, compare them, store the result with the
    candidate's run, and return the report document."""
    specs = [_spec(name, flags, config_path) for name in (candidate, baseline)]
    if specs[0].feed != specs[1].feed:
        raise ConfigError("the two profiles name different feeds; give --feed")
    if specs[0].feed == "exchange":
        specs = [replace(s, exchange=_exchange_spec(endpoint)) for s in specs]
        if not specs[0].duration_s:
            raise ConfigError("side by side on the live feed needs --duration")
    runs = [Run(s, observer or NullObserver()) for s in specs]
    summaries: list[dict[str, Any]] = [{}, {}]
    if specs[0].feed == "exchange":
        _side_by_side(runs, summaries, stop)
    else:
        for i, run in enumerate(runs):
            summaries[i] = run.execute()
    store = open_store(specs[0].store_url, specs[0].data_dir)
    try:
        cand = from_run(store, runs[0].run_id)
        base = from_run(store, runs[1].run_id)
        cand.label, base.label = f"candidate {candidate}", f"baseline {baseline}"
        cand, base = align(cand, base)
        comparison = compare_series(cand, base, resamples=resamples, alpha=alpha, seed=seed)
        doc = {"candidate": {"profile": candidate, "run_id": runs[0].run_id},
               "baseline": {"profile": baseline, "run_id": runs[1].run_id},
               "feed": specs[0].feed, "periods": len(cand), **comparison}
        doc["verdict"] = verdict(comparison, candidate, baseline)
        store.save_stats(runs[0].run_id, f"ab:{runs[1].run_id}", doc)
        return doc
    finally:
        store.close()


def _side_by_side(runs: list[Run], summaries: list[dict[str, Any]],
                  stop: threading.Event | None) -> None:
    errors: list[BaseException] = []

    def go(i: int) -> None:
        try:
            summaries[i] = runs[i].execute()
        except BaseException as exc:  # re-raised on the caller's thread
            errors.append(exc)
            for other in runs:
                other.request_stop()

    threads = [threading.Thread(target=go, args=(i,), name=f"ab-{i}") for i in range(2)]
    for t in threads:
        t.start()
    try:
        while any(t.is_alive() for t in threads):
            for t in threads:
                t.join(0.2)
            if stop is not None and stop.is_set():
                for run in runs:
                    run.request_stop()
    finally:
        for run in runs:
            run.request_stop()
        for t in threads:
            t.join(30)
    if errors:
        raise errors[0]
