import json
import math

import numpy as np
import pytest
import talib
from hypothesis import given, settings
from hypothesis import strategies as hs

from engine import strategy as st
from engine.config import StrategyParams


def _trace(closes, params=None):
    s = st.ScalpStrategy(params)
    out = {k: [] for k in ("ema_fast", "ema_slow", "macd", "signal", "rsi")}
    codes = []
    for c in closes:
        codes.append(s.update(float(c)))
        for k in out:
            out[k].append(getattr(s, k))
    return {k: np.array(v) for k, v in out.items()}, codes


@pytest.mark.realdata
@pytest.mark.parametrize("name", ["ETH_USDT-1m.json", "BTC_USDT-1m.json", "ETH_USDT-1h.json"])
def test_fused_indicators_match_talib_after_warm_up(shared_data, name):
    rows = json.loads((shared_data / name).read_text())
    close = np.array([r[4] for r in rows], dtype=float)
    got, _ = _trace(close)
    macd, signal, _ = talib.MACD(close, 12, 26, 9)
    ref = {"ema_fast": talib.EMA(close, 12), "ema_slow": talib.EMA(close, 26), "macd": macd,
           "signal": signal, "rsi": talib.RSI(close, 14)}
    for key, expected in ref.items():
        err = np.abs(got[key][300:] - expected[300:])
        assert np.all(err <= 1e-9 * close[300:]), key


@settings(max_examples=60, deadline=None)
@given(hs.lists(hs.floats(min_value=1.0, max_value=1e5), min_size=40, max_size=300),
       hs.integers(min_value=2, max_value=10), hs.integers(min_value=11, max_value=30))
def test_fused_indicators_match_talib_for_any_series(closes, fast, slow):
    close = np.array(closes)
    params = StrategyParams(ema_fast=fast, ema_slow=slow, macd_signal=5, rsi_period=7)
    got, _ = _trace(close, params)
    ema_fast = talib.EMA(close, fast)
    rsi = talib.RSI(close, 7)
    scale = np.max(close)
    # EMA seeding is identical to TA-Lib's, so agreement holds from the first value.
    mask = ~np.isnan(ema_fast)
    assert np.allclose(got["ema_fast"][mask], ema_fast[mask], rtol=0, atol=1e-9 * scale)
    mask = ~np.isnan(rsi)
    assert np.allclose(got["rsi"][mask], rsi[mask], rtol=0, atol=1e-7)


def test_warm_up_is_silent_and_then_ready():
    s = st.ScalpStrategy()
    codes = [s.update(100.0 + i % 7) for i in range(s.warm_up_bars() - 1)]
    assert set(codes) == {st.NONE}
    assert not s.ready
    s.update(101.0)
    assert s.ready
    assert math.isfinite(s.hist) and math.isfinite(s.rsi)


def _series_with_cross():
    # A decline, a rally that lifts the fast EMA above the slow one, a short pullback that
    # pushes the histogram below zero, then a new leg up: the last cross passes the trend filter.
    series = [100.0 - 0.2 * i for i in range(60)]
    series += [series[-1] + 0.35 * i for i in range(1, 40)]
    series += [series[-1] - 0.3 * i for i in range(1, 7)]
    series += [series[-1] + 0.4 * i for i in range(1, 30)]
    return series


def test_cross_up_fires_buy_with_reason():
    s = st.ScalpStrategy(StrategyParams(rsi_min=0, rsi_max=100, min_strength_bps=0))
    codes = [s.update(c) for c in _series_with_cross()]
    assert st.BUY in codes
    text = s.describe(st.BUY, 100.0)
    assert "MACD crossed above signal" in text and "rsi=" in text


def test_filters_record_why_a_cross_was_ignored():
    strict = st.ScalpStrategy(StrategyParams(rsi_min=99, rsi_max=100))
    codes = [strict.update(c) for c in _series_with_cross()]
    assert st.FILTERED_RSI_LOW in codes and st.BUY not in codes
    weak = st.ScalpStrategy(StrategyParams(rsi_min=0, rsi_max=100, min_strength_bps=10_000))
    codes = [weak.update(c) for c in _series_with_cross()]
    assert st.FILTERED_WEAK in codes and st.BUY not in codes
    assert "strength below" in weak.describe(st.FILTERED_WEAK, 100.0)


def test_cooldown_filters_a_second_cross():
    params = StrategyParams(rsi_min=0, rsi_max=100, min_strength_bps=0, cooldown_bars=10_000)
    s = st.ScalpStrategy(params)
    series = _series_with_cross() * 3
    codes = [s.update(c) for c in series]
    assert codes.count(st.BUY) == 1
    assert st.FILTERED_COOLDOWN in codes


def test_exit_only_when_long():
    s = st.ScalpStrategy(StrategyParams(rsi_min=0, rsi_max=100, min_strength_bps=0))
    series = _series_with_cross() + [108.0 - 0.4 * i for i in range(40)]
    codes = []
    for c in series:
        code = s.update(c)
        codes.append(code)
        if code == st.BUY:
            s.long = True
        elif code in (st.SELL_MACD, st.SELL_RSI):
            s.long = False
    assert codes.index(st.BUY) < max(
        i for i, c in enumerate(codes) if c in (st.SELL_MACD, st.SELL_RSI))
    flat = st.ScalpStrategy()
    assert all(flat.update(c) not in (st.SELL_MACD, st.SELL_RSI) for c in series)


def test_volatility_tracks_return_scale():
    calm, wild = st.ScalpStrategy(), st.ScalpStrategy()
    for i in range(500):
        calm.update(100.0 * (1.0 + 0.0005 * (-1) ** i))
        wild.update(100.0 * (1.0 + 0.01 * (-1) ** i))
    assert wild.volatility > 10 * calm.volatility > 0


def test_inline_entry_size_equals_the_risk_reference():
    from engine.config import RiskParams
    from engine.risk import RiskManager

    for rp in (RiskParams(), RiskParams(min_stop_bps=0.0, max_position_fraction=100.0),
               RiskParams(min_stop_bps=500.0)):
        s = st.ScalpStrategy(risk=rp, sizing_equity=12_345.0)
        risk = RiskManager(rp)
        for i, c in enumerate(_series_with_cross() * 3):
            s.update(c)
            if s.ready and i > 40:
                assert s.entry_qty == pytest.approx(
                    risk.size(12_345.0, c, s.volatility).qty, rel=1e-12)
