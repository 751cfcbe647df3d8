"""download_ohlcv through a real ExchangeAdapter and real ccxt against a FakeExchange."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from engine.errors import ConfigError, DataError, ServiceUnavailable
from engine.exchange.adapter import ExchangeAdapter, ExchangeSpec
from engine.exchange.download import (
    DownloadResult,
    default_path,
    download_ohlcv,
    timeframe_ms,
)
from engine.exchange.policy import RetryPolicy
from engine.feeds.replay import Series, load_series
from engine.testing.fake_exchange import FakeExchange, ccxt_config
from engine.types import Bar

pytest.importorskip("ccxt")

SYMBOL = "ETH-USDT"
KLINES = "/api/v3/klines"
MIN = 60_000




def adapter_for(fx: FakeExchange, attempts: int = 3) -> ExchangeAdapter:
    return ExchangeAdapter(ExchangeSpec(timeout_s=2.0, overrides=ccxt_config(fx)),
                           RetryPolicy(max_attempts=attempts, base_s=0.01, cap_s=0.02),
                           sleep=lambda s: None)


def klines_starts(fx: FakeExchange) -> list[int]:
    return [int(r.query["startTime"]) for r in fx.requests if r.path == KLINES]


def file_ts(path: Path) -> list[int]:
    return [row[0] for row in json.loads(path.read_text())]


def run(fx: FakeExchange, path: Path, since: int | None = None, until: int | None = None,
        **kw: Any) -> DownloadResult:
    with adapter_for(fx) as adapter:
        return download_ohlcv(adapter, SYMBOL, "1m",
                              fx.candle(0).ts if since is None else since,
                              fx.now_ms if until is None else until, path, **kw)


def test_fresh_download_writes_a_file_load_series_reads(fx: FakeExchange,
                                                        tmp_path: Path) -> None:
    path = default_path(tmp_path, "binance", "eth/usdt", "1m")
    assert path == tmp_path / "data" / "binance" / "ETH_USDT-1m.json"
    calls: list[tuple[int, int]] = []
    result = run(fx, path, progress=lambda done, total: calls.append((done, total)))
    assert (result.rows, result.added, result.duplicates_dropped) == (3000, 3000, 0)
    assert result.resumed_from_ms is None and result.gaps == [] and not result.capped
    assert result.first_ts == fx.candle(0).ts and result.last_ts == fx.candle(2999).ts
    series = load_series(path)
    assert len(series) == 3000 and series.symbol == SYMBOL and series.interval_ms == MIN
    assert list(series) == [fx.candle(i) for i in range(3000)]
    # 1,000 candles a request, and no request past the end of the range
    assert klines_starts(fx) == [fx.candle(0).ts, fx.candle(1000).ts, fx.candle(2000).ts]
    assert all(r.query["limit"] == "1000" for r in fx.requests if r.path == KLINES)
    assert result.requests == 3
    assert calls[-1] == (3000, 3000) and [d for d, _ in calls] == sorted(d for d, _ in calls)
    assert not list(path.parent.glob(".*tmp")), "no temp file left behind"


def test_interrupted_download_saves_progress_and_resumes(fx: FakeExchange,
                                                         tmp_path: Path) -> None:
    path = tmp_path / "ETH_USDT-1m.json"

    def break_after_two_pages(done: int, total: int) -> None:
        if done >= 2000:
            fx.faults.set(kind="503", path=KLINES)

    with pytest.raises(ServiceUnavailable, match="fetch_ohlcv"):
        run(fx, path, progress=break_after_two_pages)
    saved = file_ts(path)
    assert saved == [fx.candle(i).ts for i in range(2000)], "the two pages were kept"

    fx.faults.clear()
    fx.clear_requests()
    result = run(fx, path)
    assert result.resumed_from_ms == saved[-1] + MIN
    assert klines_starts(fx)[0] == saved[-1] + MIN, "resumed after the file's last candle"
    assert (result.rows, result.added, result.duplicates_dropped) == (3000, 1000, 0)
    ts = file_ts(path)
    assert ts == sorted(set(ts)) and len(ts) == 3000
    assert len(load_series(path)) == 3000


def test_until_then_rerun_resumes_without_duplicates(fx: FakeExchange,
                                                     tmp_path: Path) -> None:
    path = tmp_path / "ETH_USDT-1m.json"
    first = run(fx, path, until=fx.candle(1500).ts)  # exclusive: candles 0..1499
    assert first.rows == 1500 and file_ts(path)[-1] == fx.candle(1499).ts
    fx.clear_requests()
    again = run(fx, path)
    assert again.resumed_from_ms == fx.candle(1500).ts
    assert klines_starts(fx) == [fx.candle(1500).ts, fx.candle(2500).ts]
    assert (again.rows, again.added) == (3000, 1500)
    # a third run has nothing left to fetch and sends nothing
    fx.clear_requests()
    third = run(fx, path)
    assert (third.rows, third.added, third.requests) == (3000, 0, 0)
    assert klines_starts(fx) == []


def test_earlier_since_fetches_the_head_too(fx: FakeExchange, tmp_path: Path) -> None:
    path = tmp_path / "ETH_USDT-1m.json"
    run(fx, path, since=fx.candle(1000).ts, until=fx.candle(2000).ts)
    fx.clear_requests()
    result = run(fx, path, since=fx.candle(500).ts, until=fx.candle(2500).ts)
    assert klines_starts(fx) == [fx.candle(500).ts, fx.candle(2000).ts]
    assert (result.rows, result.added) == (2000, 1000)
    assert file_ts(path) == [fx.candle(i).ts for i in range(500, 2500)]


def test_gap_in_the_source_is_reported(tmp_path: Path) -> None:
    with FakeExchange(ws_interval_s=None) as source:
        bars = [source.candle(i) for i in range(1500)]
    del bars[700:705]  # five missing minutes
    with FakeExchange(bars, ws_interval_s=None) as fx:
        path = tmp_path / "ETH_USDT-1m.json"
        result = run(fx, path)
    assert result.rows == 1495
    assert len(result.gaps) == 1
    gap = result.gaps[0]
    assert gap.missing == 5 and gap.from_ts == bars[699].ts and gap.to_ts == bars[700].ts
    assert [g.to_ts for g in load_series(path).gaps] == [bars[700].ts]


def test_open_candle_is_not_stored(fx: FakeExchange, tmp_path: Path) -> None:
    path = tmp_path / "ETH_USDT-1m.json"
    # "now" in the middle of candle 2000: it is still forming, so 0..1999 are kept
    result = run(fx, path, now_ms=fx.candle(2000).ts + 30_000)
    assert result.rows == 2000 and result.last_ts == fx.candle(1999).ts


def test_existing_file_of_another_kind_is_refused(fx: FakeExchange, tmp_path: Path) -> None:
    wrong_symbol = tmp_path / "BTC_USDT-1m.json"
    wrong_symbol.write_text(json.dumps([list(fx.candle(i)) for i in range(3)]))
    with pytest.raises(ConfigError, match="BTC-USDT"):
        run(fx, wrong_symbol)

    five_min = tmp_path / "ETH_USDT-5m.json"
    five_min.write_text(json.dumps([[fx.candle(0).ts + i * 300_000, 1, 1, 1, 1, 1]
                                    for i in range(3)]))
    with pytest.raises(ConfigError, match="300 s"):
        run(fx, five_min)

    corrupt = tmp_path / "ETH_USDT-1m.json"
    text = json.dumps([list(fx.candle(0)), [fx.candle(1).ts, "NaN", 1, 1, 1, 1]])
    corrupt.write_text(text)
    with pytest.raises(DataError, match="fix or remove"):
        run(fx, corrupt)
    assert corrupt.read_text() == text, "never overwritten"
    assert not [r for r in fx.requests if r.path == KLINES]


def test_arguments_are_checked(fx: FakeExchange, tmp_path: Path) -> None:
    path = tmp_path / "x.json"
    with pytest.raises(ConfigError, match="timeframe"):
        timeframe_ms("30s")
    with pytest.raises(ConfigError, match="empty range"):
        run(fx, path, since=fx.candle(10).ts, until=fx.candle(5).ts)
    with pytest.raises(ConfigError, match="since_ms"):
        run(fx, path, since=-5)
    with pytest.raises(ConfigError, match="exchange id"):
        default_path(tmp_path, "../x", SYMBOL, "1m")
    with pytest.raises(ConfigError, match="invalid symbol"):
        default_path(tmp_path, "binance", "BTC/USDT';DROP TABLE trades;--", "1m")
    assert not path.exists()


class StuckAdapter:
    """An exchange that answers every request with the same page, ignoring `since`."""

    ohlcv_page_limit = 1000

    def __init__(self, bars: list[Bar]) -> None:
        self.bars = bars
        self.calls = 0

    def fetch_ohlcv(self, symbol: str, timeframe: str = "1m", since_ms: int | None = None,
                    limit: int | None = None) -> list[Bar]:
        self.calls += 1
        return self.bars


def test_no_progress_stops_the_paging(tmp_path: Path) -> None:
    t0 = 1_700_000_000_000 - 1_700_000_000_000 % MIN
    page = [Bar(t0 + i * MIN, 10.0, 11.0, 9.0, 10.5, 1.0) for i in range(1000)]
    stuck = StuckAdapter(page)
    result = download_ohlcv(stuck, SYMBOL, "1m", t0, t0 + 10**9, tmp_path / "ETH_USDT-1m.json")
    assert stuck.calls == 2, "the second, identical page brings nothing newer: stop"
    assert result.rows == 1000 and not result.capped


def test_request_cap_bounds_a_runaway_exchange(tmp_path: Path) -> None:
    t0 = 1_700_000_000_000 - 1_700_000_000_000 % MIN

    class Trickle(StuckAdapter):
        def fetch_ohlcv(self, symbol: str, timeframe: str = "1m",
                        since_ms: int | None = None, limit: int | None = None) -> list[Bar]:
            self.calls += 1
            assert since_ms is not None
            return [Bar(since_ms, 10.0, 11.0, 9.0, 10.5, 1.0)]  # one candle a page

    trickle = Trickle([])
    result = download_ohlcv(trickle, SYMBOL, "1m", t0, t0 + 5000 * MIN,
                            tmp_path / "ETH_USDT-1m.json")
    assert trickle.calls == 5000 // 1000 + 2 and result.capped
    assert result.rows == trickle.calls


def test_inconsistent_candle_is_refused_after_saving_the_good_ones(tmp_path: Path) -> None:
    t0 = 1_700_000_000_000 - 1_700_000_000_000 % MIN
    page = [Bar(t0 + i * MIN, 10.0, 11.0, 9.0, 10.5, 1.0) for i in range(10)]
    page[5] = page[5]._replace(open=12.0)  # open above high
    path = tmp_path / "ETH_USDT-1m.json"
    with pytest.raises(DataError, match="inconsistent candle"):
        download_ohlcv(StuckAdapter(page), SYMBOL, "1m", t0, t0 + 10 * MIN, path)
    assert file_ts(path) == [b.ts for b in page[:5]]


@pytest.mark.realdata
def test_real_candles_round_trip_with_their_gap(shared_data: Path, tmp_path: Path) -> None:
    source: Series = load_series(shared_data / "ETH_USDT-1m.json")
    assert source.gaps, "the file's known gap"
    with FakeExchange(source, ws_interval_s=None) as fx:
        path = default_path(tmp_path, "binance", SYMBOL, "1m")
        result = run(fx, path, since=source.ts[0], until=source.ts[-1] + MIN)
        assert result.requests == -(-len(source) // 1000)
    assert result.rows == len(source) and result.added == len(source)
    assert [(g.from_ts, g.to_ts, g.missing) for g in result.gaps] == [
        (g.from_ts, g.to_ts, g.missing) for g in source.gaps]
    got = load_series(path)
    assert list(got.ts) == list(source.ts)
    assert list(got.close) == list(source.close) and list(got.volume) == list(source.volume)
