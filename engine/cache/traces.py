"""Key-access traces for `supreme cache bench`: synthetic ones (seeded) and text files.

cooccur: groups of four keys read together (`G{i}-price`, `-volume`, `-orderbook`, `-trades`,
in random order per visit); which group is visited follows Zipf(s) over group rank, G0
being the most popular. This is what a prefetcher can exploit: the first key of a visit
predicts the other three.

scan: the same visits, interrupted by one-off scans (`scan-{n}`, never read again), which
flush a plain LRU. Runs are `run_min`-`run_max` keys long (uniform) and separated by
co-access stretches whose length averages run length * (1 - f) / f, so scan keys make up
about `scan_fraction` f of the accesses (15% by default); total length is `accesses`.
"""

from __future__ import annotations

import itertools
import random
from pathlib import Path

from engine.errors import ConfigError, DataError

GROUP_FIELDS = ("price", "volume", "orderbook", "trades")
DEFAULT_ACCESSES = 200_000
DEFAULT_GROUPS = 2_000


def _check(groups: int, accesses: int, zipf_s: float) -> None:
    if groups < 1 or accesses < 1:
        raise ConfigError("a trace needs at least one group and one access")
    if zipf_s < 0:
        raise ConfigError(f"zipf_s must be >= 0, got {zipf_s!r}")


def _visits(rng: random.Random, groups: int, zipf_s: float, count: int) -> list[str]:
    """`count` group visits (4 keys each, shuffled), flattened."""
    cumulative = list(itertools.accumulate(1.0 / (rank ** zipf_s)
                                           for rank in range(1, groups + 1)))
    chosen = rng.choices(range(groups), cum_weights=cumulative, k=count)
    out: list[str] = []
    for group in chosen:
        keys = [f"G{group}-{field}" for field in GROUP_FIELDS]
        rng.shuffle(keys)
        out.extend(keys)
    return out


def cooccur(seed: int = 0, groups: int = DEFAULT_GROUPS, accesses: int = DEFAULT_ACCESSES,
            zipf_s: float = 1.0) -> list[str]:
    _check(groups, accesses, zipf_s)
    rng = random.Random(seed)
    visits = -(-accesses // len(GROUP_FIELDS))
    return _visits(rng, groups, zipf_s, visits)[:accesses]


def scan(seed: int = 0, groups: int = DEFAULT_GROUPS, accesses: int = DEFAULT_ACCESSES,
         zipf_s: float = 1.0, scan_fraction: float = 0.15, run_min: int = 100,
         run_max: int = 500) -> list[str]:
    _check(groups, accesses, zipf_s)
    if not 0.0 < scan_fraction < 1.0:
        raise ConfigError(f"scan_fraction must be within (0, 1), got {scan_fraction!r}")
    if not 1 <= run_min <= run_max:
        raise ConfigError("scan runs need 1 <= run_min <= run_max")
    rng = random.Random(seed)
    mean_gap = (run_min + run_max) / 2 * (1.0 - scan_fraction) / scan_fraction
    out: list[str] = []
    scanned = 0
    while len(out) < accesses:
        gap_visits = max(1, round(mean_gap * rng.uniform(0.5, 1.5) / len(GROUP_FIELDS)))
        out.extend(_visits(rng, groups, zipf_s, gap_visits))
        run = rng.randint(run_min, run_max)
        out.extend(f"scan-{n}" for n in range(scanned, scanned + run))
        scanned += run
    return out[:accesses]


def load_trace_file(path: str | Path) -> list[str]:
    """One key per line; blank lines and lines starting with '#' are ignored."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError as exc:
        raise DataError(f"trace file {path} does not exist") from exc
    except IsADirectoryError as exc:
        raise DataError(f"trace file {path} is a directory") from exc
    except OSError as exc:
        raise DataError(f"trace file {path} cannot be read: {exc.strerror}") from exc
    if b"\x00" in data:
        raise DataError(f"trace file {path} is binary; expected one key per line")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"trace file {path} is not UTF-8 text; expected one key per line") \
            from exc
    keys = [line.strip() for line in text.splitlines()]
    keys = [key for key in keys if key and not key.startswith("#")]
    if not keys:
        raise DataError(f"trace file {path} holds no keys (blank lines and # comments only)")
    return keys
