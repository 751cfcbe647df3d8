"""Loading and validating candle files: real files, and every kind of corruption."""

from __future__ import annotations

import json
import math
import time
import zipfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.errors import ConfigError, DataError
from engine.feeds import Feed
from engine.feeds import replay as replay_mod
from engine.feeds.replay import (
    Gap,
    ReplayFeed,
    Series,
    load_series,
    symbol_from_filename,
)
from engine.types import Bar

T0 = 1_700_000_040_000  # on the 1m grid
MIN = 60_000
POLICIES = ("fail", "skip", "fill")


def rows(n: int = 10) -> list[list[Any]]:
    return [[T0 + i * MIN, 100.0 + i, 101.0 + i, 99.0 + i, 100.5 + i, 10.0 + i]
            for i in range(n)]


def write_json(tmp_path: Path, data: Any, name: str = "ETH_USDT-1m.json") -> Path:
    p = tmp_path / name
    p.write_text(json.dumps(data))  # json.dumps writes NaN/Infinity literals, like pandas
    return p


def binance_line(r: list[Any]) -> str:
    ts, o, h, lo, c, v = r
    return f"{ts},{o},{h},{lo},{c},{v},{ts + MIN - 1},1000.0,42,5.0,500.0,0"


def load_all(path: Path) -> dict[str, Series]:
    return {policy: load_series(path, policy=policy) for policy in ("skip", "fill")}


# --- real files -------------------------------------------------------------------------


@pytest.mark.realdata
@pytest.mark.parametrize("name, symbol, n, interval", [
    ("ETH_USDT-1m.json", "ETH-USDT", 66_087, 60_000),
    ("ETH_USDT-5m.json", "ETH-USDT", 13_217, 300_000),
    ("ETH_USDT-1h.json", "ETH-USDT", 719, 3_600_000),
    ("BTC_USDT-1m.json", "BTC-USDT", 66_087, 60_000),
    ("ETHUSDT-1m-2022-08-14.zip", "ETH-USDT", 1_440, 60_000),
    ("ETHUSDT-1m-2022-08-15.zip", "ETH-USDT", 1_440, 60_000),
])
def test_every_real_file_loads(shared_data: Path, name: str, symbol: str, n: int,
                               interval: int) -> None:
    s = load_series(shared_data / name)
    assert (len(s), s.symbol, s.interval_ms) == (n, symbol, interval)
    assert s.fmt == ("binance" if name.endswith(".zip") else "json")
    assert [i for i in s.issues if not isinstance(i, Gap)] == []
    assert not any(s.synthetic)
    bars = list(s)
    assert bars[0] == s[0] and bars[-1] == s[len(s) - 1]
    assert all(b.low <= min(b.open, b.close) <= max(b.open, b.close) <= b.high for b in bars)


@pytest.mark.realdata
@pytest.mark.parametrize("policy", POLICIES)
def test_real_gap_in_eth_1m_is_found_with_its_position(shared_data: Path, policy: str) -> None:
    s = load_series(shared_data / "ETH_USDT-1m.json", policy=policy)
    assert len(s.gaps) == 1
    gap = s.gaps[0]
    assert (gap.kind, gap.row, gap.from_ts, gap.to_ts, gap.missing) == (
        "gap", 10_946, 1_679_661_540_000, 1_679_666_400_000, 80)
    assert gap.ts == gap.to_ts
    assert "row 10946" in str(gap) and "2023-03-24T12:39:00Z" in str(gap)
    if policy == "fill":
        assert gap.filled and len(s) == 66_087 + 80 and sum(s.synthetic) == 80 == s.filled
        assert all(s.ts[i + 1] - s.ts[i] == 60_000 for i in range(len(s) - 1))
        flat = s[10_945]
        assert flat.open == flat.high == flat.low == flat.close == s.close[10_944]
        assert flat.volume == 0.0
    else:
        assert not gap.filled and len(s) == 66_087 and not any(s.synthetic)
        assert s.ts[10_945] - s.ts[10_944] == 81 * 60_000


@pytest.mark.realdata
def test_real_gaps_in_5m_and_btc(shared_data: Path) -> None:
    g5 = load_series(shared_data / "ETH_USDT-5m.json").gaps
    assert [(g.row, g.missing) for g in g5] == [(2_190, 16)]
    gb = load_series(shared_data / "BTC_USDT-1m.json").gaps
    assert [(g.row, g.missing) for g in gb] == [(10_946, 80)]


@pytest.mark.realdata
def test_eth_1m_loads_fast_on_the_columnar_path(shared_data: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    def no_row_scan(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("a clean freqtrade file must not need the row-by-row scan")

    monkeypatch.setattr(replay_mod, "_scan", no_row_scan)
    best = math.inf
    for _ in range(3):
        start = time.perf_counter()
        s = load_series(shared_data / "ETH_USDT-1m.json")
        best = min(best, time.perf_counter() - start)
    assert len(s) == 66_087
    assert best < 1.0  # ~0.15 s on an idle laptop; generous for loaded CI runners
    assert s.ts.itemsize == 8 and s.close.typecode == "d"


@pytest.mark.realdata
def test_zip_matches_its_plain_csv(shared_data: Path, tmp_path: Path) -> None:
    z = shared_data / "ETHUSDT-1m-2022-08-14.zip"
    with zipfile.ZipFile(z) as zf:
        csv_path = tmp_path / "ETHUSDT-1m-2022-08-14.csv"
        csv_path.write_bytes(zf.read(zf.namelist()[0]))
    a, b = load_series(z), load_series(csv_path)
    assert list(a) == list(b) and b.fmt == "binance"
    assert a[0] == Bar(1_660_435_200_000, 1983.55, 1983.9, 1982.14, 1982.29, 205.131)
    assert a.gaps == []


# --- each corruption, each policy -------------------------------------------------------


CORRUPTIONS: dict[str, tuple[str, Any]] = {
    # kind: (expected issue kind, replacement for row index 3 = file row 4)
    "columns": ("columns", [T0 + 3 * MIN, 103.0, 104.0, 102.0, 103.5]),
    "text": ("unparsable", [T0 + 3 * MIN, "abc", 104.0, 102.0, 103.5, 13.0]),
    "nan": ("nonfinite", [T0 + 3 * MIN, 103.0, math.nan, 102.0, 103.5, 13.0]),
    "inf": ("nonfinite", [T0 + 3 * MIN, 103.0, math.inf, 102.0, 103.5, 13.0]),
    "negative_price": ("nonpositive_price", [T0 + 3 * MIN, -103.0, 104.0, -105.0, 103.5, 1.0]),
    "zero_price": ("nonpositive_price", [T0 + 3 * MIN, 0.0, 0.0, 0.0, 0.0, 1.0]),
    "high_below_low": ("inconsistent_ohlc", [T0 + 3 * MIN, 103.0, 101.0, 102.0, 103.5, 1.0]),
    "close_above_high": ("inconsistent_ohlc", [T0 + 3 * MIN, 103.0, 104.0, 102.0, 109.0, 1.0]),
    "negative_volume": ("negative_volume", [T0 + 3 * MIN, 103.0, 104.0, 102.0, 103.5, -1.0]),
}


@pytest.mark.parametrize("case", CORRUPTIONS)
def test_corrupt_row_under_each_policy(tmp_path: Path, case: str) -> None:
    kind, bad = CORRUPTIONS[case]
    data = rows()
    data[3] = bad
    path = write_json(tmp_path, data)

    with pytest.raises(DataError) as err:
        load_series(path)  # "fail" is the default
    assert "row 4" in str(err.value) and "1 corrupt row" in str(err.value)

    skipped, filled = load_series(path, policy="skip"), load_series(path, policy="fill")
    assert [(i.kind, i.row, i.ts) for i in filled.issues] == [(kind, 4, T0 + 3 * MIN)]
    assert len(filled) == 10 and filled.filled == 1 and filled.dropped == 0
    assert [i for i, f in enumerate(filled.synthetic) if f] == [3]
    assert filled[3] == Bar(T0 + 3 * MIN, 102.5, 102.5, 102.5, 102.5, 0.0)
    assert "replaced by a flat candle at the previous close" in filled.issues[0].message

    # Dropping the row leaves a one-bar hole, which is reported and bridged like any gap.
    assert [(i.kind, i.row, i.ts) for i in skipped.issues] == [
        (kind, 4, T0 + 3 * MIN), ("gap", 5, T0 + 4 * MIN)]
    assert "dropped" in skipped.issues[0].message and skipped.gaps[0].missing == 1
    assert len(skipped) == 9 and T0 + 3 * MIN not in skipped.ts and skipped.dropped == 1


def test_corrupt_first_row_cannot_be_filled(tmp_path: Path) -> None:
    data = rows()
    data[0][4] = math.nan
    s = load_series(write_json(tmp_path, data), policy="fill")
    assert len(s) == 9 and s.issues[0].row == 1 and "no previous close" in s.issues[0].message


@pytest.mark.parametrize("policy", POLICIES)
def test_duplicate_timestamp(tmp_path: Path, policy: str) -> None:
    data = rows()
    data.insert(5, list(data[4]))  # identical duplicate of row 5 at row 6
    data.insert(8, [data[7][0], 1.0, 2.0, 0.5, 1.5, 3.0])  # conflicting duplicate at row 9
    path = write_json(tmp_path, data)
    if policy == "fail":
        with pytest.raises(DataError, match=r"row 6 .*duplicate.*identical to row 5"):
            load_series(path, policy=policy)
        return
    s = load_series(path, policy=policy)
    assert [(i.kind, i.row) for i in s.issues] == [("duplicate", 6), ("duplicate", 9)]
    assert "identical to row 5" in s.issues[0].message
    assert "different from row 8" in s.issues[1].message and "kept row 8" in s.issues[1].message
    assert list(s) == [Bar(*r) for r in rows()]  # first occurrence kept, nothing invented


@pytest.mark.parametrize("policy", POLICIES)
def test_out_of_order_row(tmp_path: Path, policy: str) -> None:
    data = rows()
    data.insert(6, [T0 + 2 * MIN, 102.0, 103.0, 101.0, 102.5, 12.0])  # a row from the past
    path = write_json(tmp_path, data)
    if policy == "fail":
        with pytest.raises(DataError, match=r"row 7 \(ts .*\): timestamp is before row 6"):
            load_series(path, policy=policy)
        return
    s = load_series(path, policy=policy)
    assert [(i.kind, i.row, i.ts) for i in s.issues] == [("out_of_order", 7, T0 + 2 * MIN)]
    assert list(s) == [Bar(*r) for r in rows()]


@pytest.mark.parametrize("policy", ("skip", "fill"))
def test_a_lone_future_timestamp_is_blamed_not_every_row_after_it(tmp_path: Path,
                                                                 policy: str) -> None:
    data = rows()
    data[4][0] = T0 + 10_000 * MIN  # row 5 jumps a week ahead
    s = load_series(write_json(tmp_path, data), policy=policy)
    assert [(i.kind, i.row) for i in s.issues if not isinstance(i, Gap)] == [
        ("out_of_order", 5)]
    assert len(s) == (10 if policy == "fill" else 9)
    assert T0 + 10_000 * MIN not in s.ts


def test_misaligned_timestamp(tmp_path: Path) -> None:
    data = rows()
    data[4][0] += 30_000
    path = write_json(tmp_path, data)
    with pytest.raises(DataError, match=r"row 5 .*off the 60000 ms grid"):
        load_series(path)
    for s in load_all(path).values():
        assert [(i.kind, i.row) for i in s.issues] == [("misaligned", 5), ("gap", 6)]
    assert len(load_series(path, policy="skip")) == 9
    filled = load_series(path, policy="fill")  # the gap it leaves is padded
    assert len(filled) == 10 and filled.synthetic[4] == 1


@pytest.mark.parametrize("policy", POLICIES)
def test_gaps_are_reported_and_bridged_under_every_policy(tmp_path: Path, policy: str) -> None:
    data = rows(12)
    del data[5:8]  # rows 6-8 missing; the next row (file row 6) is the first after the gap
    s = load_series(write_json(tmp_path, data), policy=policy)
    assert [(g.row, g.ts, g.from_ts, g.to_ts, g.missing) for g in s.gaps] == [
        (6, T0 + 8 * MIN, T0 + 4 * MIN, T0 + 8 * MIN, 3)]
    assert s.issues == s.gaps
    assert s.interval_ms == MIN
    if policy == "fill":
        assert len(s) == 12 and list(s.synthetic[5:8]) == [1, 1, 1] and s.filled == 3
        assert list(s.ts) == [T0 + i * MIN for i in range(12)]
        assert {s.close[i] for i in range(5, 8)} == {s.close[4]} and s.volume[6] == 0.0
        assert "filled with 3" in s.gaps[0].message
    else:
        assert len(s) == 9 and not any(s.synthetic)
        assert "without inventing prices" in s.gaps[0].message


def test_huge_gap_is_bridged_but_not_filled(tmp_path: Path) -> None:
    data = rows(4) + [[T0 + (20_000 + i) * MIN, 1.0, 2.0, 0.5, 1.5, 1.0] for i in range(4)]
    s = load_series(write_json(tmp_path, data), policy="fill")
    assert len(s) == 8 and not s.gaps[0].filled and s.gaps[0].missing == 19_996


# --- file-level problems ----------------------------------------------------------------


def test_truncated_zip(tmp_path: Path) -> None:
    good = tmp_path / "ETHUSDT-1m-2024-01-01.zip"
    with zipfile.ZipFile(good, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("ETHUSDT-1m-2024-01-01.csv", "\n".join(binance_line(r) for r in rows(200)))
    assert len(load_series(good)) == 200
    bad = tmp_path / "ETHUSDT-1m-2024-01-02.zip"
    bad.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    for policy in POLICIES:
        with pytest.raises(DataError, match="corrupt or truncated zip"):
            load_series(bad, policy=policy)


def test_zip_with_corrupt_member_data(tmp_path: Path) -> None:
    path = tmp_path / "x-1m.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("x-1m.csv", "\n".join(binance_line(r) for r in rows(200)))
    raw = bytearray(path.read_bytes())
    raw[60:80] = bytes(20)  # inside the deflated data; central directory intact
    path.write_bytes(bytes(raw))
    with pytest.raises(DataError, match="corrupt or truncated zip"):
        load_series(path)


def test_zip_with_two_members(tmp_path: Path) -> None:
    path = tmp_path / "two.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("a.csv", binance_line(rows(1)[0]))
        zf.writestr("b.csv", binance_line(rows(1)[0]))
    with pytest.raises(DataError, match="one file"):
        load_series(path)


@pytest.mark.parametrize("content", ["", "  \n\n"])
def test_empty_file(tmp_path: Path, content: str) -> None:
    for name in ("e.json", "e.csv"):
        (tmp_path / name).write_text(content)
        with pytest.raises(DataError, match="empty"):
            load_series(tmp_path / name)


def test_empty_json_array_and_all_rows_bad(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no usable candles"):
        load_series(write_json(tmp_path, []))
    with pytest.raises(DataError, match=r"no usable candles; first problem: row 1"):
        load_series(write_json(tmp_path, [[1, 2], [3, 4]]), policy="skip")


def test_truncated_json(tmp_path: Path) -> None:
    path = tmp_path / "t.json"
    path.write_text(json.dumps(rows())[:-30])
    with pytest.raises(DataError, match=r"invalid JSON at line 1 column \d+.*truncated"):
        load_series(path, policy="skip")


def test_json_not_an_array_of_rows(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="JSON array"):
        load_series(write_json(tmp_path, {"ts": 1}))
    s = load_series(write_json(tmp_path, [*rows(3), "oops", {"a": 1}, *rows(6)[3:]]),
                    policy="skip")
    assert [(i.kind, i.row) for i in s.issues] == [("columns", 4), ("columns", 5)]
    assert "got a JSON str" in s.issues[0].message


def test_absurd_numbers_are_reported_not_crashed_on(tmp_path: Path) -> None:
    data = rows()
    data[2][0] = 10**30  # no epoch unit fits
    data[5][2] = 10**400  # too big for a float
    s = load_series(write_json(tmp_path, data), policy="skip")
    assert [(i.kind, i.row) for i in s.issues if not isinstance(i, Gap)] == [
        ("unparsable", 3), ("unparsable", 6)]


def test_missing_file_and_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="cannot read"):
        load_series(tmp_path / "nope.json")
    path = write_json(tmp_path, rows())
    with pytest.raises(ConfigError):
        load_series(path, policy="ignore")
    with pytest.raises(ConfigError):
        load_series(path, fmt="parquet")


def test_single_candle_interval_comes_from_the_file_name(tmp_path: Path) -> None:
    assert load_series(write_json(tmp_path, rows(1), "SOL_USDT-5m.json")).interval_ms == 300_000
    with pytest.raises(DataError, match="single candle"):
        load_series(write_json(tmp_path, rows(1), "candles.json"))


# --- CSV flavours -----------------------------------------------------------------------


def test_binance_csv_reports_row_positions(tmp_path: Path) -> None:
    lines = [binance_line(r) for r in rows()]
    lines[2] = lines[2].rsplit(",", 3)[0]  # 9 columns
    lines[6] = lines[6].replace(",106.0,", ",nan,", 1)
    path = tmp_path / "ETHUSDT-1m-2024-01-01.csv"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"2 corrupt row\(s\): row 3 .*12 columns, got 9"):
        load_series(path)
    s = load_series(path, policy="skip")
    assert s.fmt == "binance" and s.symbol == "ETH-USDT"
    assert [(i.kind, i.row) for i in s.issues] == [
        ("columns", 3), ("gap", 4), ("nonfinite", 7), ("gap", 8)]
    assert len(s) == 8


def test_binance_microsecond_timestamps(tmp_path: Path) -> None:
    # Binance spot dumps switched open_time to microseconds in 2025.
    lines = [binance_line([r[0] * 1000, *r[1:]]) for r in rows()]
    path = tmp_path / "ETHUSDT-1m-2025-01-01.csv"
    path.write_text("\n".join(lines))
    assert list(load_series(path).ts) == [r[0] for r in rows()]


@pytest.mark.parametrize("header, stamp", [
    ("timestamp,open,high,low,close,volume", lambda t: str(t)),
    ("ts,open,high,low,close,volume", lambda t: str(t // 1000)),  # seconds
    ("date,open,high,low,close,volume",
     lambda t: time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t // 1000))),
    ("Date,Open,High,Low,Close,Volume",
     lambda t: time.strftime("%Y-%m-%d %H:%M:%S+00:00", time.gmtime(t // 1000))),
    ('"open_time","open","high","low","close","volume"', lambda t: f'"{t}"'),
    ("Open Time,Open,High,Low,Close,Volume", lambda t: f"{t / 1000:.3f}"),
])
def test_header_csv_variants(tmp_path: Path, header: str, stamp: Any) -> None:
    body = [f"{stamp(r[0])},{r[1]},{r[2]},{r[3]},{r[4]},{r[5]}" for r in rows()]
    path = tmp_path / "ETH-USDT-1m.csv"
    path.write_text("\n".join([header, *body]) + "\n")
    s = load_series(path)
    assert s.fmt == "csv" and s.symbol == "ETH-USDT"
    assert list(s) == [Bar(*r) for r in rows()]


def test_header_csv_reordered_extra_columns_and_positions(tmp_path: Path) -> None:
    lines = ["volume,close,low,high,open,timestamp,trades"]
    lines += [f"{r[5]},{r[4]},{r[3]},{r[2]},{r[1]},{r[0]},7" for r in rows()]
    lines.insert(3, "")  # line 4 = row 3: counted, so rows stay line - 1, and ignored
    lines[5] = lines[5].replace(",104.0,", ",-104.0,", 1)  # line 6 = row 5: bad high
    path = tmp_path / "ohlcv.csv"
    path.write_text("\n".join(lines))
    with pytest.raises(DataError, match=r"row 5 .*price <= 0 in high"):
        load_series(path)
    s = load_series(path, policy="skip", symbol="ETH-USDT")
    assert (s.symbol, len(s), s.issues[0].row) == ("ETH-USDT", 9, 5)


def test_header_csv_missing_column(tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    path.write_text("timestamp,open,high,low,close\n1700000040000,1,2,0.5,1.5\n")
    with pytest.raises(DataError, match=r"lacks column\(s\) \['volume'\]"):
        load_series(path)


def test_explicit_format_overrides_sniffing(tmp_path: Path) -> None:
    path = tmp_path / "data.txt"
    path.write_text(json.dumps(rows()))
    assert len(load_series(path, fmt="json")) == 10
    with pytest.raises(DataError):
        load_series(path, fmt="binance")


# --- API --------------------------------------------------------------------------------


def test_replay_feed_is_a_feed(tmp_path: Path) -> None:
    feed = ReplayFeed.from_path(write_json(tmp_path, rows()))
    assert isinstance(feed, Feed)
    assert (feed.kind, feed.symbol, feed.interval_ms, len(feed)) == ("replay", "ETH-USDT",
                                                                     MIN, 10)
    assert list(feed) == list(feed) == [Bar(*r) for r in rows()]


@pytest.mark.parametrize("name, symbol", [
    ("ETH_USDT-1m.json", "ETH-USDT"),
    ("ETHUSDT-1m-2022-08-14.zip", "ETH-USDT"),
    ("BTC-USDT-5m.csv", "BTC-USDT"),
    ("ethbtc-1h.csv", "ETH-BTC"),
    ("SOLFDUSD-1s-2024-01-01.zip", "SOL-FDUSD"),
    ("candles.json", "UNKNOWN"),
])
def test_symbol_from_filename(name: str, symbol: str) -> None:
    assert symbol_from_filename(name) == symbol


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(bad=st.sets(st.integers(min_value=1, max_value=29), max_size=8))
def test_skip_and_fill_account_for_every_corrupt_row(tmp_path: Path, bad: set[int]) -> None:
    data = rows(30)
    for i in bad:
        data[i][3] = math.nan
    path = write_json(tmp_path, data)
    skipped, filled = load_series(path, policy="skip"), load_series(path, policy="fill")
    corrupt = [(i.kind, i.row) for i in skipped.issues if not isinstance(i, Gap)]
    assert corrupt == [("nonfinite", i + 1) for i in sorted(bad)]
    assert len(skipped) == 30 - len(bad) and skipped.dropped == len(bad)
    assert len(filled) == 30 and [i for i, f in enumerate(filled.synthetic) if f] == sorted(bad)
    assert filled.gaps == []
    if bad:
        with pytest.raises(DataError):
            load_series(path)
