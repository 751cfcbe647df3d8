"""Download OHLCV history through an `ExchangeAdapter` into a freqtrade JSON file.

The file is `[[ts_ms, open, high, low, close, volume], ...]`, sorted by open time without
duplicates: what `engine.feeds.replay.load_series` reads. Writes are atomic (a temp file in
the same folder, validated with `load_series`, fsynced, then renamed over the target), and
progress is checkpointed every `checkpoint_pages` pages and whenever the download stops on
an error, so an interrupted download loses at most a few pages.

Resume: when `path` already holds candles of the same symbol and timeframe (it is validated
first; a corrupt file is reported, never overwritten), the download continues after its last
candle, and also fetches `[since_ms, first candle)` if `since_ms` is earlier; the file stays
one contiguous span.

Bounded: each span gets a hard cap of requests derived from its length (candles / page size
+ 2), and paging stops as soon as the exchange returns no candle newer than the cursor. Only
closed candles are stored: `until_ms` is clipped so the candle still forming is left out.
Gaps in the exchange's own data are not errors; they are reported (as `load_series` reports
them) in `DownloadResult.gaps`.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from engine.errors import ConfigError, DataError
from engine.feeds.replay import Gap, load_series, symbol_from_filename
from engine.parsing import normalize_symbol, shown
from engine.types import Bar

__all__ = ["TIMEFRAME_MS", "DownloadResult", "default_path", "download_ohlcv", "timeframe_ms"]

TIMEFRAME_MS = {
    "1s": 1_000, "1m": 60_000, "3m": 180_000, "5m": 300_000, "15m": 900_000,
    "30m": 1_800_000, "1h": 3_600_000, "2h": 7_200_000, "4h": 14_400_000,
    "6h": 21_600_000, "8h": 28_800_000, "12h": 43_200_000, "1d": 86_400_000,
    "3d": 259_200_000, "1w": 604_800_000,
}
"""The fixed-length timeframes a download supports (Binance's, without the month)."""

CHECKPOINT_PAGES = 50
_EXCHANGE_ID_RE = re.compile(r"^[a-z0-9_]{2,40}$")
_MIN_TS_MS = 1_230_768_000_000  # 2009-01-01
_MAX_TS_MS = 10**14

Progress = Callable[[int, int], None]


class _Adapter(Protocol):
    """What the download needs of an ExchangeAdapter."""

    @property
    def ohlcv_page_limit(self) -> int: ...

    def fetch_ohlcv(self, symbol: str, timeframe: str = ..., since_ms: int | None = ...,
                    limit: int | None = ...) -> list[Bar]: ...


@dataclass(frozen=True)
class DownloadResult:
    """What a download did. `rows` is the file's candle count, `added` the new ones;
    `gaps` are the file's gaps (load_series `Gap`s); `duplicates_dropped` counts fetched
    candles already in the file; `resumed_from_ms` is where a resumed download continued
    (None for a fresh one); `requests` counts OHLCV requests; `capped` is True when a
    request cap, not the data, ended a span."""

    path: Path
    rows: int
    added: int
    gaps: list[Gap] = field(default_factory=list)
    duplicates_dropped: int = 0
    resumed_from_ms: int | None = None
    requests: int = 0
    first_ts: int | None = None
    last_ts: int | None = None
    capped: bool = False


def timeframe_ms(timeframe: str) -> int:
    """Milliseconds of a timeframe such as "1m"; ConfigError for an unsupported one."""
    try:
        return TIMEFRAME_MS[timeframe]
    except (KeyError, TypeError):
        raise ConfigError(f"unsupported timeframe {shown(timeframe)}; use one of "
                          f"{', '.join(TIMEFRAME_MS)}") from None


def default_path(data_dir: str | os.PathLike[str], exchange_id: str, symbol: str,
                 timeframe: str) -> Path:
    """data_dir/data/<exchange>/<BASE>_<QUOTE>-<timeframe>.json (freqtrade's layout)."""
    if not isinstance(exchange_id, str) or not _EXCHANGE_ID_RE.match(exchange_id):
        raise ConfigError(f"invalid exchange id {shown(exchange_id)}")
    timeframe_ms(timeframe)
    pair = normalize_symbol(symbol).replace("-", "_")
    return Path(data_dir) / "data" / exchange_id / f"{pair}-{timeframe}.json"


def download_ohlcv(adapter: _Adapter, symbol: str, timeframe: str, since_ms: int,
                   until_ms: int | None, path: str | os.PathLike[str],
                   progress: Progress | None = None, *,
                   checkpoint_pages: int = CHECKPOINT_PAGES,
                   now_ms: int | None = None) -> DownloadResult:
    """Fetch the closed candles with open time in [since_ms, until_ms) into `path`.

    `until_ms=None` means up to now. `progress(done, total)` is called after each page
    with candle slots covered so far and in all (an estimate: gaps are counted). Exchange
    errors (ServiceUnavailable, ...) propagate after what was fetched is saved, so a rerun
    resumes. Raises ConfigError for bad arguments or a file of another symbol/timeframe,
    DataError for a corrupt existing file or candles that fail validation."""
    ours = normalize_symbol(symbol)
    tf = timeframe_ms(timeframe)
    now = int(time.time() * 1000) if now_ms is None else now_ms
    if until_ms is None:
        until_ms = now
    for name, value in (("since_ms", since_ms), ("until_ms", until_ms)):
        if type(value) is not int or not _MIN_TS_MS <= value < _MAX_TS_MS:
            raise ConfigError(f"invalid {name} {shown(value)}: expected epoch milliseconds")
    if since_ms >= until_ms:
        raise ConfigError(f"empty range: since_ms {since_ms} is not before until_ms {until_ms}")
    if checkpoint_pages < 1:
        raise ConfigError("checkpoint_pages must be at least 1")
    # only closed candles: the one opened at ts closes at ts + tf
    end = min(until_ms, now - tf + 1)
    target = Path(path)

    existing, existing_gaps = _existing(target, ours, tf)
    spans: list[tuple[int, int]] = []
    resumed_from: int | None = None
    if existing:
        first, last = existing[0][0], existing[-1][0]
        resumed_from = last + tf
        if since_ms < first:
            spans.append((since_ms, min(first, end)))
        spans.append((resumed_from, end))
    else:
        spans.append((since_ms, end))
    spans = [(a, b) for a, b in spans if a < b]

    state = _State(existing, existing_gaps, target, ours, tf)
    limit = max(1, int(adapter.ohlcv_page_limit))
    total = sum(math.ceil((b - a) / tf) for a, b in spans)
    covered = 0
    try:
        for a, b in spans:
            cursor = a
            cap = math.ceil((b - a) / tf / limit) + 2
            for _ in range(cap):
                if cursor >= b:
                    break
                bars = adapter.fetch_ohlcv(ours, timeframe, since_ms=cursor, limit=limit)
                state.requests += 1
                fresh = [bar for bar in bars if cursor <= bar.ts < b]
                if not fresh:
                    break  # nothing newer in the range: the exchange has no more
                state.add(fresh)
                cursor = fresh[-1].ts + tf
                if progress is not None:
                    progress(min(total, covered + math.ceil((cursor - a) / tf)), total)
                if state.pages_since_save >= checkpoint_pages:
                    state.save()
            else:
                if cursor < b:
                    state.capped = True
            covered += math.ceil((b - a) / tf)
    except BaseException:
        with contextlib.suppress(Exception):
            state.save()  # keep what was fetched; the original error is what matters
        raise
    state.save()
    if progress is not None:
        progress(total, total)
    return state.result(resumed_from)


def _existing(path: Path, symbol: str, tf: int) -> tuple[list[list[Any]], list[Gap]]:
    """The rows and gaps of an existing file, validated; ([], []) when there is none."""
    if not path.exists():
        return [], []
    named = symbol_from_filename(path.name)
    if named not in ("UNKNOWN", symbol):
        raise ConfigError(f"{path} holds {named} candles, not {symbol}; pick another path")
    try:
        series = load_series(path, fmt="json", policy="fail", symbol=symbol)
    except DataError as exc:
        raise DataError(f"cannot resume into {path}: {exc}; fix or remove the file") from exc
    if len(series) >= 2 and series.interval_ms != tf:
        raise ConfigError(f"{path} holds {series.interval_ms // 1000} s candles, not "
                          f"{tf // 1000} s ones; pick another path")
    return [list(bar) for bar in series], series.gaps


class _State:
    """The merged rows of a download and their saving."""

    def __init__(self, existing: list[list[Any]], gaps: list[Gap], path: Path, symbol: str,
                 tf: int) -> None:
        self.rows: dict[int, list[Any]] = {int(r[0]): r for r in existing}
        self.path = path
        self.symbol = symbol
        self.tf = tf
        self.added = 0
        self.duplicates = 0
        self.requests = 0
        self.pages_since_save = 0
        self.dirty = False
        self.capped = False
        self.gaps: list[Gap] = list(gaps)

    def add(self, bars: Iterable[Bar]) -> None:
        for bar in bars:
            _check(bar)
            if bar.ts in self.rows:
                self.duplicates += 1
                continue
            self.rows[bar.ts] = [bar.ts, bar.open, bar.high, bar.low, bar.close, bar.volume]
            self.added += 1
            self.dirty = True
        self.pages_since_save += 1

    def save(self) -> None:
        """Write all rows atomically, after load_series accepted the temp file."""
        self.pages_since_save = 0
        if not self.dirty:
            return
        rows = [self.rows[t] for t in sorted(self.rows)]
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        try:
            with open(tmp, "w", encoding="utf-8") as f:
                json.dump(rows, f, separators=(",", ":"), allow_nan=False)
                f.flush()
                os.fsync(f.fileno())
            self.gaps = self._validate(tmp)
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
        _fsync_dir(self.path.parent)
        self.dirty = False

    def _validate(self, file: Path) -> list[Gap]:
        if len(self.rows) < 2:
            return []  # one candle: nothing to check across rows, no interval to infer
        try:
            series = load_series(file, fmt="json", policy="fail", symbol=self.symbol)
        except DataError as exc:
            raise DataError(f"downloaded candles for {self.path.name} failed validation: "
                            f"{exc}") from exc
        if len(series) != len(self.rows):
            raise DataError(f"{self.path.name}: wrote {len(self.rows)} candles but read back "
                            f"{len(series)}")
        return series.gaps

    def result(self, resumed_from: int | None) -> DownloadResult:
        ts = sorted(self.rows)
        return DownloadResult(
            path=self.path, rows=len(ts), added=self.added, gaps=list(self.gaps),
            duplicates_dropped=self.duplicates, resumed_from_ms=resumed_from,
            requests=self.requests, first_ts=ts[0] if ts else None,
            last_ts=ts[-1] if ts else None, capped=self.capped)


def _check(bar: Bar) -> None:
    """The row checks load_series makes, so a bad candle is refused before it is saved."""
    _, o, h, lo, c, v = bar
    if not (0.0 < lo <= o <= h and lo <= c <= h and 0.0 <= v < math.inf and h < math.inf):
        raise DataError(f"the exchange sent an inconsistent candle at ts {bar.ts}: "
                        f"open={o} high={h} low={lo} close={c} volume={v}")


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
