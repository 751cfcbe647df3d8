"""The `engine` trace of `supreme cache bench`: every key a real replay run reads or
publishes through the cache, in order, recorded from `Run` itself."""

from __future__ import annotations

import tempfile
from dataclasses import replace
from pathlib import Path

from engine.cache.tiered import CacheSettings


def record_engine_trace(data_file: str | Path, *, bars: int | None = None) -> list[str]:
    """Replay `data_file` at full speed with the cache on (SQLite in a temporary folder,
    no Redis) and return the cache's key-access trace."""
    from engine.pipeline import Run, RunSpec

    with tempfile.TemporaryDirectory(prefix="supreme-trace-") as tmp:
        spec = RunSpec(symbol=None, feed="replay", data_file=str(data_file), bars=bars,
                       data_dir=Path(tmp), replay_policy="skip",
                       cache=replace(CacheSettings(), env="trace"),
                       record_cache_trace=True)
        run = Run(spec)
        run.execute()
        return list(run.cache_trace)
