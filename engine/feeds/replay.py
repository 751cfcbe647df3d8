"""Load candle files into compact columns, validating every row on the way in.

Formats (auto-detected from the extension and the first line, or forced with `fmt=`):

* "json"    — freqtrade: `[[ts_ms, open, high, low, close, volume], ...]`
* "binance" — Binance kline CSV: 12 columns, no header, open_time first.
* "csv"     — CSV with a header naming the columns (timestamp/ts/time/open_time/date...,
              open, high, low, close, volume; other columns ignored).

Any of them may be zipped (a zip holding exactly one file, like Binance's daily dumps).
Timestamps may be epoch s, ms, us or ns (told apart by magnitude) or ISO-8601 (naive means
UTC); they are stored as epoch ms.

Positions: `row` is the 1-based data row — the index in the JSON array, or the line
counted from the first line after the header (blank lines count, and are ignored), so in
a CSV with a header, line = row + 1.

Corrupt rows: wrong column count, unparsable value, NaN/inf, price <= 0, high < low,
open/close outside [low, high], volume < 0, duplicate, out-of-order or off-grid
("misaligned") timestamp. What happens to them is the policy:

* "fail" (default) — DataError listing the first problems with their positions: bad
  prices are never traded on silently.
* "skip" — the row is dropped and reported.
* "fill" — the row becomes a flat candle (o=h=l=c=previous close, volume 0, flagged in
  `Series.synthetic`) at its own timestamp, and is reported. A row whose timestamp is
  unusable (unparsable, duplicate, out of order, off-grid) or that has no previous close
  is dropped instead. A duplicate is always dropped, the first occurrence kept.

Gaps (missing intervals) are not corruption. Under every policy each is reported as a
`Gap` (row and ts of the first bar after it, from/to ts, missing bar count) and bridged:
under "fail" and "skip" the series just continues after the gap — no prices are
invented; under "fill" the missing bars are inserted as flat synthetic candles at the
previous close with volume 0 (gaps over MAX_FILL_BARS bars are only bridged).

The interval is the median spacing of consecutive timestamps.
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
import statistics
import time
import zipfile
import zlib
from array import array
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import chain, islice
from pathlib import Path
from typing import Any

from engine.errors import ConfigError, DataError
from engine.types import Bar

__all__ = ["FORMATS", "MAX_FILL_BARS", "POLICIES", "DataIssue", "Gap", "ReplayFeed", "Series",
           "load_series", "symbol_from_filename"]

FORMATS = ("json", "binance", "csv")
POLICIES = ("fail", "skip", "fill")
MAX_FILL_BARS = 10_000
"""Longest gap "fill" pads: a longer one is a problem to look at, not to paper over."""

_SHOWN_IN_ERROR = 5
_INF = math.inf
_MIN_MS, _MAX_MS = 10**11, 10**14  # epoch ms 1973..5138; other magnitudes are s/us/ns
_HEADER_NAMES = {
    "ts": ("timestamp", "ts", "time", "open_time", "opentime", "date", "datetime", "t"),
    "open": ("open", "o"),
    "high": ("high", "h"),
    "low": ("low", "l"),
    "close": ("close", "c"),
    "volume": ("volume", "vol", "v", "base_volume"),
}
_QUOTES = ("FDUSD", "USDT", "USDC", "BUSD", "TUSD", "USD", "EUR", "GBP", "TRY", "DAI",
           "BTC", "ETH", "BNB")
_TIMEFRAME = re.compile(r"(?:^|[-_])(\d+)([smhdw])(?:[-_.]|$)")
_UNIT_MS = {"s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}


@dataclass(frozen=True, slots=True)
class DataIssue:
    """One problem found in a file; `str()` gives it with its position."""

    kind: str
    """columns, unparsable, nonfinite, nonpositive_price, inconsistent_ohlc,
    negative_volume, duplicate, out_of_order, misaligned, or gap."""
    row: int | None
    """1-based data row (see module docstring); None for the whole file."""
    ts: int | None
    """The row's timestamp (epoch ms) when it could be read."""
    message: str
    """What is wrong and what the policy did about it."""

    def __str__(self) -> str:
        where = "file" if self.row is None else f"row {self.row}"
        if self.ts is not None:
            where += f" (ts {self.ts} = {_iso(self.ts)})"
        return f"{where}: {self.message}"


@dataclass(frozen=True, slots=True)
class Gap(DataIssue):
    """`missing` bars absent between `from_ts` (last bar before) and `to_ts` (first after,
    which is `row`/`ts`); `filled` when policy "fill" padded it."""

    from_ts: int
    to_ts: int
    missing: int
    filled: bool


@dataclass(eq=False, slots=True)
class Series:
    """A validated candle series in compact columns; iterating yields `Bar`s.

    `synthetic[i]` is 1 for candles invented by policy "fill"; `dropped`/`filled` count
    the rows dropped and the candles invented.
    """

    path: Path | None
    symbol: str
    interval_ms: int
    fmt: str
    policy: str
    ts: array[int] = field(repr=False)
    open: array[float] = field(repr=False)
    high: array[float] = field(repr=False)
    low: array[float] = field(repr=False)
    close: array[float] = field(repr=False)
    volume: array[float] = field(repr=False)
    synthetic: array[int] = field(repr=False)
    issues: list[DataIssue] = field(default_factory=list, repr=False)
    dropped: int = 0
    filled: int = 0

    @property
    def gaps(self) -> list[Gap]:
        return [issue for issue in self.issues if isinstance(issue, Gap)]

    def __len__(self) -> int:
        return len(self.ts)

    def __iter__(self) -> Iterator[Bar]:
        return map(Bar, self.ts, self.open, self.high, self.low, self.close, self.volume)

    def __getitem__(self, i: int) -> Bar:
        return Bar(self.ts[i], self.open[i], self.high[i], self.low[i], self.close[i],
                   self.volume[i])


class ReplayFeed:
    """A `Feed` (kind "replay") over a loaded `Series`; every `iter()` starts over."""

    kind = "replay"

    def __init__(self, series: Series) -> None:
        self.series = series
        self.symbol = series.symbol
        self.interval_ms = series.interval_ms

    @classmethod
    def from_path(cls, path: str | os.PathLike[str], fmt: str | None = None,
                  policy: str = "fail", symbol: str | None = None) -> ReplayFeed:
        return cls(load_series(path, fmt=fmt, policy=policy, symbol=symbol))

    def __iter__(self) -> Iterator[Bar]:
        return iter(self.series)

    def __len__(self) -> int:
        return len(self.series)


def load_series(path: str | os.PathLike[str], fmt: str | None = None, policy: str = "fail",
                symbol: str | None = None) -> Series:
    """Load and validate a candle file (formats and policies: see the module docstring).

    `symbol` defaults to the one in the file name. Raises ConfigError for an unknown
    `fmt`/`policy`; DataError when the file cannot be read or parsed, holds no usable
    candle, or has corrupt rows under policy "fail".
    """
    if policy not in POLICIES:
        raise ConfigError(f"unknown data policy {policy!r}; expected one of {POLICIES}")
    if fmt is not None and fmt not in FORMATS:
        raise ConfigError(f"unknown data format {fmt!r}; expected one of {FORMATS}")
    p = Path(path)
    fmt, rows, ncols, cols = _open_rows(p, fmt)
    scan = _fast_json(rows) if fmt == "json" else None
    if scan is None:
        scan = _scan(rows, ncols, cols, policy, text=fmt != "json")
    return _finish(p, fmt, policy, symbol or symbol_from_filename(p.name), scan)


def symbol_from_filename(name: str) -> str:
    """"ETH_USDT-1m.json" / "ETHUSDT-1m-2022-08-14.zip" -> "ETH-USDT"; "UNKNOWN" if unsure."""
    tokens = [t for t in re.split(r"[-_.\s]+", name.upper()) if t]
    if len(tokens) >= 2 and tokens[1] in _QUOTES and tokens[0].isalnum():
        return f"{tokens[0]}-{tokens[1]}"
    for quote in _QUOTES if tokens else ():
        if tokens[0].endswith(quote) and len(tokens[0]) > len(quote):
            return f"{tokens[0][: -len(quote)]}-{quote}"
    return "UNKNOWN"


# --- reading -------------------------------------------------------------------------


def _open_rows(p: Path, fmt: str | None) -> tuple[str, Any, int, tuple[int, ...]]:
    """(format, rows, expected column count, indexes of ts/o/h/l/c/v in a row)."""
    text = _read_text(p)
    if not text.strip():
        raise DataError(f"{p.name}: file is empty")
    fmt = fmt or _sniff(p, text)
    if fmt == "json":
        return fmt, _json_rows(p, text), 6, _FIRST6
    # splitlines, not StringIO: StringIO keeps a 4-byte-per-character copy of the text.
    reader = csv.reader(text.splitlines())
    if fmt == "binance":
        return fmt, reader, 12, _FIRST6
    return fmt, reader, *_header(p, next(reader, []))


_FIRST6 = (0, 1, 2, 3, 4, 5)


def _read_text(p: Path) -> str:
    try:
        if p.suffix.lower() != ".zip":
            return p.read_bytes().decode("utf-8-sig")
        with zipfile.ZipFile(p) as zf:
            members = [m for m in zf.infolist() if not m.is_dir()]
            if len(members) != 1:
                names = [m.filename for m in members]
                raise DataError(f"{p.name}: expected a zip holding one file, found {names}")
            return zf.read(members[0]).decode("utf-8-sig")
    except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
        raise DataError(f"{p.name}: corrupt or truncated zip archive ({exc})") from exc
    except UnicodeDecodeError as exc:
        raise DataError(f"{p.name}: not UTF-8 text (bad byte at offset {exc.start})") from exc
    except OSError as exc:
        raise DataError(f"{p.name}: cannot read ({exc.strerror or exc})") from exc


def _sniff(p: Path, text: str) -> str:
    head = text.lstrip()
    if p.name.lower().removesuffix(".zip").endswith(".json") or head.startswith("["):
        return "json"
    first = head.split("\n", 1)[0].split(",", 1)[0].strip().strip('"')
    # A header starts with a name; a Binance row with a number.
    return "csv" if first[:1].isalpha() and _ts(first) is None else "binance"


def _json_rows(p: Path, text: str) -> list[Any]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(f"{p.name}: invalid JSON at line {exc.lineno} column {exc.colno}: "
                        f"{exc.msg} (truncated file?)") from exc
    if not isinstance(data, list):
        raise DataError(f"{p.name}: expected a JSON array of [ts, o, h, l, c, v] rows")
    return data


def _header(p: Path, header: list[str]) -> tuple[int, tuple[int, ...]]:
    names = [h.strip().strip('"').lower().replace(" ", "_") for h in header]
    index = {}
    for key, aliases in _HEADER_NAMES.items():
        found = [names.index(a) for a in aliases if a in names]
        if found:
            index[key] = found[0]
    missing = [k for k in _HEADER_NAMES if k not in index]
    if missing:
        raise DataError(f"{p.name}: CSV header {header} lacks column(s) {missing}")
    return len(header), tuple(index[k] for k in _HEADER_NAMES)


# --- validation ----------------------------------------------------------------------


@dataclass(slots=True)
class _Scan:
    """Accepted rows so far: the Series columns plus each row's number in the file."""

    ts: array[int] = field(default_factory=lambda: array("q"))
    o: array[float] = field(default_factory=lambda: array("d"))
    h: array[float] = field(default_factory=lambda: array("d"))
    lo: array[float] = field(default_factory=lambda: array("d"))
    c: array[float] = field(default_factory=lambda: array("d"))
    v: array[float] = field(default_factory=lambda: array("d"))
    syn: array[int] = field(default_factory=lambda: array("b"))
    row: array[int] = field(default_factory=lambda: array("q"))
    issues: list[DataIssue] = field(default_factory=list)
    dropped: int = 0
    filled: int = 0

    def columns(self) -> tuple[array[Any], ...]:
        return (self.ts, self.o, self.h, self.lo, self.c, self.v, self.syn, self.row)

    def add(self, *values: float) -> None:
        for col, value in zip(self.columns(), values, strict=True):
            col.append(value)

    def pop(self) -> None:
        for col in self.columns():
            col.pop()


def _fast_json(rows: list[Any]) -> _Scan | None:
    """Columns of a clean freqtrade file built at C speed, or None when anything looks off
    (then `_scan` goes row by row and says exactly what is wrong)."""
    if not rows or not all(type(r) is list and len(r) == 6 and type(r[0]) is int for r in rows):
        return None
    try:
        flat = array("d", chain.from_iterable(rows))
        ts = array("q", [r[0] for r in rows])
    except (TypeError, OverflowError):
        return None
    o, h, lo, c, v = (flat[i::6] for i in range(1, 6))
    if min(ts) < _MIN_MS or max(ts) >= _MAX_MS:
        return None
    if not all(b > a for a, b in zip(ts, islice(ts, 1, None), strict=False)):
        return None
    for oo, hh, ll, cc, vv in zip(o, h, lo, c, v, strict=True):
        if not (0.0 < ll <= oo <= hh and ll <= cc <= hh and 0.0 <= vv < _INF and hh < _INF):
            return None
    n = len(ts)
    return _Scan(ts, o, h, lo, c, v, array("b", bytes(n)), array("q", range(1, n + 1)))


def _scan(rows: Iterable[Any], ncols: int, cols: tuple[int, ...], policy: str,
          text: bool) -> _Scan:
    """One pass: parse each row, check values and order, apply the policy when corrupt."""
    s = _Scan()
    i_t, i_o, i_h, i_l, i_c, i_v = cols
    last = -1
    for row, fields in enumerate(rows, 1):
        if text and not fields:
            continue
        t, bad, values = _parse(fields, ncols, i_t, i_o, i_h, i_l, i_c, i_v)
        if t is not None and t <= last:
            if bad is None and t < last and len(s.ts) >= 2 and s.ts[-2] < t:
                # The previous row is the odd one out (a lone timestamp from the future):
                # blaming it instead of every row after it keeps the rest of the file.
                s.issues.append(DataIssue("out_of_order", s.row[-1], s.ts[-1],
                                          f"timestamp is after the next row's ({_iso(t)}); "
                                          f"{_rejected(policy)}"))
                s.dropped += 1
                s.filled -= s.syn[-1]
                s.pop()
            else:
                s.issues.append(_order_issue(s, row, t, bad, values, policy))
                s.dropped += 1
                continue
        if t is not None and bad is None:
            s.add(t, *values, 0, row)
            last = t
            continue
        kind, what = bad or ("unparsable", "")
        if policy == "fill" and t is not None and s.ts:
            prev = s.c[-1]
            s.add(t, prev, prev, prev, prev, 0.0, 1, row)
            last = t
            s.filled += 1
            action = "replaced by a flat candle at the previous close"
        else:
            s.dropped += 1
            action = _rejected(policy)
            if policy == "fill":
                action += " (no usable timestamp)" if t is None else " (no previous close)"
        s.issues.append(DataIssue(kind, row, t, f"{what}; {action}"))
    return s


_NO_VALUES = (0.0, 0.0, 0.0, 0.0, 0.0)


def _parse(fields: Any, ncols: int, i_t: int, i_o: int, i_h: int, i_l: int, i_c: int,
           i_v: int) -> tuple[int | None, tuple[str, str] | None, tuple[float, ...]]:
    """(timestamp or None, (kind, message) when corrupt, (o, h, l, c, v))."""
    n = len(fields) if isinstance(fields, list) else -1
    if n != ncols:
        got = n if n >= 0 else f"a JSON {type(fields).__name__}"
        t = _ts(fields[i_t]) if n > i_t else None
        return t, ("columns", f"expected {ncols} columns, got {got}"), _NO_VALUES
    raw_t = fields[i_t]
    t = raw_t if type(raw_t) is int and _MIN_MS <= raw_t < _MAX_MS else _ts(raw_t)
    if t is None:
        what = f"timestamp {raw_t!r} is not epoch s/ms/us/ns or ISO-8601"
        return None, ("unparsable", what), _NO_VALUES
    raw = (fields[i_o], fields[i_h], fields[i_l], fields[i_c], fields[i_v])
    try:
        o, h, lo, c, v = values = tuple(map(float, raw))
    except (TypeError, ValueError, OverflowError):
        return t, ("unparsable", f"non-numeric value among {list(raw)!r}"), _NO_VALUES
    # NaN fails every comparison, so this one chain rejects every bad value.
    if 0.0 < lo <= o <= h and lo <= c <= h and 0.0 <= v < _INF and h < _INF:
        return t, None, values
    return t, _classify(o, h, lo, c, v), values


def _classify(o: float, h: float, lo: float, c: float, v: float) -> tuple[str, str]:
    values = {"open": o, "high": h, "low": lo, "close": c, "volume": v}
    shown = ", ".join(f"{k}={x}" for k, x in values.items())
    odd = [k for k, x in values.items() if not math.isfinite(x)]
    if odd:
        return "nonfinite", f"non-finite {'/'.join(odd)}: {shown}"
    odd = [k for k in ("open", "high", "low", "close") if values[k] <= 0]
    if odd:
        return "nonpositive_price", f"price <= 0 in {'/'.join(odd)}: {shown}"
    if h < lo:
        return "inconsistent_ohlc", f"high < low: {shown}"
    if not (lo <= o <= h and lo <= c <= h):
        return "inconsistent_ohlc", f"open/close outside [low, high]: {shown}"
    return "negative_volume", f"volume < 0: {shown}"


def _order_issue(s: _Scan, row: int, t: int, bad: tuple[str, str] | None,
                 values: tuple[float, ...], policy: str) -> DataIssue:
    kept, last = s.row[-1], s.ts[-1]
    also = f" (also: {bad[1]})" if bad else ""
    if t == last:
        same = bad is None and values == (s.o[-1], s.h[-1], s.lo[-1], s.c[-1], s.v[-1])
        how = "identical to" if same else "with values different from"
        action = "rejected" if policy == "fail" else f"dropped, kept row {kept}"
        return DataIssue("duplicate", row, t,
                         f"duplicate timestamp, {how} row {kept}{also}; {action}")
    return DataIssue("out_of_order", row, t, f"timestamp is before row {kept}'s "
                     f"({_iso(last)}){also}; {_rejected(policy)}")


def _rejected(policy: str) -> str:
    return "rejected" if policy == "fail" else "dropped"


def _finish(p: Path, fmt: str, policy: str, symbol: str, s: _Scan) -> Series:
    if not s.ts:
        first = f"; first problem: {s.issues[0]}" if s.issues else ""
        raise DataError(f"{p.name}: no usable candles{first}")
    diffs = _diffs(s.ts)
    interval = _interval(p, diffs)
    if any(d % interval for d in diffs):
        _drop_misaligned(s, interval, policy)
        diffs = _diffs(s.ts)
    s.issues.sort(key=lambda issue: issue.row or 0)
    if policy == "fail" and s.issues:
        shown = "; ".join(str(i) for i in s.issues[:_SHOWN_IN_ERROR])
        more = len(s.issues) - _SHOWN_IN_ERROR
        raise DataError(
            f"{p.name}: {len(s.issues)} corrupt row(s): {shown}"
            + (f"; and {more} more" if more > 0 else "")
            + " (policy 'skip' drops such rows, 'fill' replaces them by flat candles)")
    gaps = [i for i, d in enumerate(diffs, 1) if d != interval]
    ts, o, h, lo, c, v, syn = _bridge_gaps(s, interval, gaps, policy == "fill")
    return Series(p, symbol, interval, fmt, policy, ts, o, h, lo, c, v, syn, s.issues,
                  s.dropped, s.filled + len(ts) - len(s.ts))


def _diffs(ts: array[int]) -> list[int]:
    return [b - a for a, b in zip(ts, islice(ts, 1, None), strict=False)]


def _interval(p: Path, diffs: list[int]) -> int:
    if diffs:
        return statistics.median_low(diffs)
    m = _TIMEFRAME.search(p.name)
    if m:
        return int(m.group(1)) * _UNIT_MS[m.group(2)]
    raise DataError(f"{p.name}: cannot infer the bar interval from a single candle")


def _drop_misaligned(s: _Scan, interval: int, policy: str) -> None:
    """Drop rows off the time grid most rows share; they cannot be placed, even by fill."""
    phase = Counter(t % interval for t in s.ts).most_common(1)[0][0]
    keep = [i for i, t in enumerate(s.ts) if t % interval == phase]
    for i, t in enumerate(s.ts):
        if t % interval != phase:
            s.issues.append(DataIssue(
                "misaligned", s.row[i], t,
                f"timestamp is off the {interval} ms grid of the other rows; "
                f"{_rejected(policy)}"))
            s.dropped += 1
            s.filled -= s.syn[i]
    for col in s.columns():
        col[:] = array(col.typecode, [col[i] for i in keep])


def _bridge_gaps(s: _Scan, interval: int, gaps: list[int],
                 fill: bool) -> tuple[array[Any], ...]:
    """Report every gap; under fill, pad the short ones with flat synthetic candles."""
    ts, src = s.ts, s.columns()[:7]
    padded = []
    for i in gaps:
        missing = (ts[i] - ts[i - 1]) // interval - 1
        do_fill = fill and missing <= MAX_FILL_BARS
        how = (f"filled with {missing} flat synthetic candle(s) at the previous close"
               if do_fill else "bridged: the series continues without inventing prices")
        s.issues.append(Gap(
            "gap", s.row[i], ts[i],
            f"{missing} missing bar(s) between {_iso(ts[i - 1])} and {_iso(ts[i])}; {how}",
            from_ts=ts[i - 1], to_ts=ts[i], missing=missing, filled=do_fill))
        if do_fill:
            padded.append(i)
    s.issues.sort(key=lambda issue: issue.row or 0)
    if not padded:
        return src
    out: tuple[array[Any], ...] = tuple(array(col.typecode) for col in src)
    start = 0
    for i in padded:
        for dst, col in zip(out, src, strict=True):
            dst.extend(col[start:i])
        missing = (ts[i] - ts[i - 1]) // interval - 1
        prev = s.c[i - 1]
        out[0].extend(range(ts[i - 1] + interval, ts[i], interval))
        for dst, value in zip(out[1:], (prev, prev, prev, prev, 0.0, 1), strict=True):
            dst.extend(array(dst.typecode, [value]) * missing)
        start = i
    for dst, col in zip(out, src, strict=True):
        dst.extend(col[start:])
    return out


# --- values --------------------------------------------------------------------------


def _ts(x: Any) -> int | None:
    """Epoch ms from an int/float/str timestamp in s, ms, us or ns, or ISO-8601; else None."""
    if type(x) is int:
        return _int_ms(x)
    if type(x) is float:
        return _float_ms(x)
    if not isinstance(x, str):
        return None
    s = x.strip().strip('"')
    try:
        return _int_ms(int(s))
    except ValueError:
        pass
    try:
        return _float_ms(float(s))
    except ValueError:
        pass
    try:
        d = datetime.fromisoformat(s)
    except ValueError:
        return None
    if d.tzinfo is None:
        d = d.replace(tzinfo=UTC)
    return _int_ms(round(d.timestamp() * 1000))


def _int_ms(v: int) -> int | None:
    for lo, hi, mul, div in ((_MIN_MS, _MAX_MS, 1, 1), (10**8, 10**11, 1_000, 1),
                             (10**14, 10**17, 1, 1_000), (10**17, 10**20, 1, 1_000_000)):
        if lo <= v < hi:
            return v * mul // div
    return None


def _float_ms(f: float) -> int | None:
    if not math.isfinite(f):
        return None
    for lo, hi, scale in ((1e11, 1e14, 1.0), (1e8, 1e11, 1e3), (1e14, 1e17, 1e-3),
                          (1e17, 1e20, 1e-6)):
        if lo <= f < hi:
            return round(f * scale)
    return None


def _iso(ts: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts // 1000))
