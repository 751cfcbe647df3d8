"""What the engine puts in the cache during a run, and what it reads back."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from engine.cache import CacheSettings, open_cache
from engine.config import RiskParams, StrategyParams
from engine.pipeline import Run, RunSpec, WarningRecorder
from engine.store import open_store
from engine.strategy import ScalpStrategy


def test_snapshot_restore_continues_exactly() -> None:
    closes = [2000.0 + 5 * ((i * 7919) % 13 - 6) + i * 0.3 for i in range(400)]
    whole = ScalpStrategy(StrategyParams(), RiskParams())
    codes_whole = [whole.update(c) for c in closes]
    first = ScalpStrategy(StrategyParams(), RiskParams())
    for c in closes[:150]:
        first.update(c)
    state = json.loads(json.dumps(first.snapshot(150)))  # survives a plain-data round trip
    second = ScalpStrategy(StrategyParams(), RiskParams())
    assert second.restore(state)
    codes_second = [second.update(c) for c in closes[150:]]
    assert codes_second == codes_whole[150:]
    assert (second.ema_fast, second.rsi, second.hist) == (whole.ema_fast, whole.rsi, whole.hist)
    other = ScalpStrategy(StrategyParams(ema_fast=5), RiskParams())
    assert not other.restore(state)  # a snapshot of other parameters is refused


def test_a_run_caches_ticker_market_and_state(tmp_path: Path) -> None:
    spec = RunSpec(symbol="ETH-USDT", feed="sim", bars=2500, seed=4, data_dir=tmp_path,
                   cache=CacheSettings(env="use"))
    summary = Run(spec).execute()
    cache_doc = summary["cache"]
    assert cache_doc["flushed"] is True
    assert cache_doc["counters"]["published"] >= 2500
    store = open_store(None, tmp_path)
    try:
        with open_cache(CacheSettings(env="use"), store) as cache:
            ticker = cache.get("ticker:ETH-USDT")
            state = cache.get("state:ETH-USDT:paper")
            assert ticker is not None and len(ticker) == 6
            assert state is not None and state["ts"] == ticker[0]
            if summary["orders"] + summary["orders_rejected"]:
                assert cache.get("market:paper:ETH-USDT")["min_notional"] == 5.0
    finally:
        store.close()


@pytest.mark.realdata
def test_a_resumed_run_restores_indicators_from_the_cache(shared_data: Path,
                                                          tmp_path: Path) -> None:
    # part B is short, so indicators warmed from scratch would still differ at its end
    rows = json.loads((shared_data / "ETH_USDT-1m.json").read_text())[:1600]
    part_a, part_b, both = tmp_path / "a.json", tmp_path / "b.json", tmp_path / "ab.json"
    part_a.write_text(json.dumps(rows[:1500]))
    part_b.write_text(json.dumps(rows[1500:]))
    both.write_text(json.dumps(rows))

    def run(data: Path, folder: Path) -> WarningRecorder:
        recorder = WarningRecorder()
        Run(RunSpec(symbol="ETH-USDT", feed="replay", data_file=str(data), data_dir=folder,
                    resume=True, cache=CacheSettings(env="resume")), recorder).execute()
        return recorder

    def final_state(folder: Path) -> dict[str, Any]:
        store = open_store(None, folder)
        try:
            with open_cache(CacheSettings(env="resume"), store) as cache:
                return dict(cache.get("state:ETH-USDT:paper"))
        finally:
            store.close()

    assert not any("restored" in w for w in run(part_a, tmp_path / "split").warnings)
    warned = run(part_b, tmp_path / "split").warnings
    assert "indicators restored from the cached state snapshot" in warned
    run(both, tmp_path / "whole")
    split, whole = final_state(tmp_path / "split"), final_state(tmp_path / "whole")
    for key in ("ema_fast", "ema_slow", "signal", "avg_gain", "avg_loss", "var", "ts"):
        assert split[key] == whole[key], key


def test_an_exchange_run_caches_candles_and_the_markets_limits(tmp_path: Path) -> None:
    pytest.importorskip("ccxt")
    from engine.exchange.adapter import ExchangeSpec
    from engine.exchange.endpoints import endpoint_overrides
    from engine.testing.fake_exchange import FakeExchange

    with FakeExchange(start=-400, ws_interval_s=0.03) as fx:
        spec = RunSpec(symbol="ETH-USDT", feed="exchange", interval_s=0.1, bars=40,
                       duration_s=20, data_dir=tmp_path, resume=True,
                       exchange=ExchangeSpec(timeout_s=2.0, overrides=endpoint_overrides(
                           "binance", fx.base_url)),
                       cache=CacheSettings(env="ex"))
        summary = Run(spec).execute()
        min_notional = fx.min_notional
    assert summary["bars"] == 40
    store = open_store(None, tmp_path)
    try:
        with open_cache(CacheSettings(env="ex"), store) as cache:
            last = cache.get("ticker:ETH-USDT")
            assert last is not None
            candles = cache.get_many(f"candle:ETH-USDT:1m:{last[0] - i * 60_000}"
                                     for i in range(5))
            assert len(candles) == 5
            market = cache.get("market:binance:ETH-USDT")  # from the exchange's own filters
            assert market["venue"] == "binance"
            assert market["min_notional"] == pytest.approx(min_notional)
    finally:
        store.close()


def test_order_book_is_fetched_at_most_every_two_seconds_and_gives_the_spread() -> None:
    from engine.cache.market import MarketCache
    from engine.errors import ServiceUnavailable

    calls: list[int] = []

    def book() -> dict[str, Any]:
        calls.append(1)
        return {"bids": [[1999.0, 1.0]], "asks": [[2001.0, 2.0]]}

    with open_cache_off() as cache:
        market = MarketCache(cache, "ETH-USDT", "binance", "paper", book_loader=book)
        assert market.spread_bps() == pytest.approx(10.0)
        assert market.spread_bps() == pytest.approx(10.0)
        assert len(calls) == 1  # the second read came from the cache

        def down() -> dict[str, Any]:
            raise ServiceUnavailable("exchange down")

        offline = MarketCache(cache, "BTC-USDT", "binance", "paper", book_loader=down)
        assert offline.spread_bps() is None  # no book, no filter
        assert MarketCache(cache, "ETH-USDT", "paper", "paper").spread_bps() is None


def open_cache_off() -> Any:
    from engine.cache import TieredCache

    return TieredCache(CacheSettings(env="book"))
