import pytest

from engine.broker.paper import BUY, SELL, PaperBroker, PendingOrder
from engine.config import BrokerParams, RiskParams
from engine.risk import DAY_MS, REJECT_BREAKER, REJECT_DAILY_LOSS, RiskManager


def test_fixed_fractional_size_loses_risk_fraction_at_stop():
    risk = RiskManager(RiskParams(risk_per_trade=0.01, stop_vol_mult=2.0, min_stop_bps=0,
                                  max_position_fraction=100.0))
    s = risk.size(equity=10_000.0, price=2000.0, volatility=0.001)
    assert s.stop_price == pytest.approx(2000.0 - 4.0)
    assert (2000.0 - s.stop_price) * s.qty == pytest.approx(100.0)
    assert s.take_profit == pytest.approx(2000.0 + 2.0 * 4.0)
    assert not s.capped


def test_size_is_capped_and_stop_has_a_floor():
    risk = RiskManager(RiskParams(risk_per_trade=0.01, min_stop_bps=5, max_position_fraction=0.5))
    s = risk.size(equity=10_000.0, price=2000.0, volatility=0.0)
    assert s.stop_price == pytest.approx(2000.0 * (1 - 5 / 10_000))
    assert s.capped and s.qty * 2000.0 == pytest.approx(5000.0)


def test_drawdown_breaker_latches_and_daily_loss_resets_next_day():
    risk = RiskManager(RiskParams(max_drawdown=0.10, max_daily_loss=0.03), 10_000.0)
    risk.mark(10_000.0, 0)
    risk.mark(9_650.0, 60_000)
    assert risk.entry_blocked(9_650.0) == REJECT_DAILY_LOSS
    risk.mark(9_650.0, DAY_MS + 1)
    assert risk.entry_blocked(9_650.0) is None
    assert risk.mark(8_900.0, DAY_MS + 2) == pytest.approx(0.11)
    assert risk.breaker_tripped
    risk.mark(11_000.0, 2 * DAY_MS)
    assert risk.entry_blocked(11_000.0) == REJECT_BREAKER
    assert risk.max_drawdown_seen == pytest.approx(0.11)


def test_paper_broker_fills_at_next_open_with_fee_and_slippage():
    b = PaperBroker(BrokerParams(fee_bps=10, slippage_bps=1), cash=10_000.0)
    b.submit(PendingOrder("o1", BUY, 1.0, "macd_cross_up", stop_price=1900, take_profit=2200))
    fill, closed, exit_fill, _exit_trade = b.on_bar(1, 2000.0, 2010.0, 1990.0)
    assert fill is not None and closed is None and exit_fill is None
    assert fill.price == pytest.approx(2000.0 * 1.0001)
    assert fill.fee == pytest.approx(fill.price * 0.001)
    assert b.cash == pytest.approx(10_000.0 - fill.price - fill.fee)
    b.submit(PendingOrder("o2", SELL, 1.0, "macd_cross_down"))
    fill2, closed2, _, _ = b.on_bar(2, 2100.0, 2110.0, 2090.0)
    assert fill2 is not None and closed2 is not None
    assert closed2.pnl == pytest.approx((2100 * 0.9999 - 2000 * 1.0001) - fill.fee - fill2.fee)
    assert b.equity(2100.0) == pytest.approx(10_000.0 + closed2.pnl)


def test_stop_is_pessimistic_and_gaps_fill_at_open():
    b = PaperBroker(BrokerParams(fee_bps=0, slippage_bps=0), cash=10_000.0)
    b.submit(PendingOrder("o1", BUY, 1.0, "x", stop_price=1950, take_profit=2050))
    _, _, exit_fill, trade = b.on_bar(1, 2000.0, 2060.0, 1940.0)
    assert exit_fill is not None and trade is not None
    assert trade.exit_reason == "stop_loss" and exit_fill.price == pytest.approx(1950.0)
    b.submit(PendingOrder("o2", BUY, 1.0, "x", stop_price=1950, take_profit=2050))
    b.on_bar(2, 2000.0, 2000.0, 2000.0)
    _, _, exit_fill, trade = b.on_bar(3, 1900.0, 1910.0, 1890.0)
    assert trade.exit_reason == "stop_loss" and exit_fill.price == pytest.approx(1900.0)


def test_buy_never_spends_more_cash_than_there_is():
    b = PaperBroker(BrokerParams(fee_bps=10, slippage_bps=1), cash=1_000.0)
    b.submit(PendingOrder("o1", BUY, 5.0, "x", stop_price=1, take_profit=1e9))
    b.on_bar(1, 2000.0, 2000.0, 2000.0)
    assert b.cash >= -1e-9
    assert b.qty == pytest.approx(1_000.0 / (2000.0 * 1.0001 * 1.001))
