"""A paper broker that fills against the feed, with fees and slippage.

Orders decided on a bar's close fill at the next bar's open (no look-ahead), moved against
the trader by `slippage_bps`. After the open, the bar's range is checked against the
position's stop and take-profit; if both lie inside one bar the stop is assumed first, the
pessimistic reading. A stop gapped through fills at the open. Every fill pays `fee_bps`.
"""

from __future__ import annotations

from dataclasses import dataclass

from engine.config import BrokerParams

BUY = "buy"
SELL = "sell"


@dataclass(slots=True)
class Fill:
    order_id: str
    side: str
    qty: float
    price: float
    fee: float
    ts_ms: int
    reason: str


@dataclass(slots=True)
class ClosedTrade:
    entry_order_id: str
    qty: float
    entry_ts_ms: int
    exit_ts_ms: int
    entry_price: float
    exit_price: float
    pnl: float
    fees: float
    exit_reason: str


@dataclass(slots=True)
class PendingOrder:
    order_id: str
    side: str
    qty: float
    reason: str
    stop_price: float = 0.0
    take_profit: float = 0.0


class PositionBook:
    """The account and open-position bookkeeping both brokers keep, and how they value it."""

    __slots__ = ("_fee", "_slip", "cash", "entry_fee", "entry_order_id", "entry_price",
                 "entry_ts_ms", "fees_paid", "pending", "qty", "stop_price", "take_profit")

    def __init__(self, params: BrokerParams | None = None, cash: float = 0.0):
        p = params or BrokerParams()
        self._fee = p.fee_bps / 10_000.0
        self._slip = p.slippage_bps / 10_000.0
        self.cash = cash
        self.qty = 0.0
        self.fees_paid = 0.0
        self.pending: PendingOrder | None = None
        self.set_position(0.0, 0.0, 0, 0.0, 0.0, "")

    def equity(self, price: float) -> float:
        return self.cash + self.qty * price

    def set_position(self, qty: float, entry_price: float, entry_ts_ms: int, stop_price: float,
                     take_profit: float, order_id: str, entry_fee: float = 0.0) -> None:
        self.qty = qty
        self.entry_price = entry_price
        self.entry_ts_ms = entry_ts_ms
        self.stop_price = stop_price
        self.take_profit = take_profit
        self.entry_order_id = order_id
        self.entry_fee = entry_fee


class PaperBroker(PositionBook):
    __slots__ = ()

    def __init__(self, params: BrokerParams | None = None, cash: float = 10_000.0):
        super().__init__(params, cash)

    def affordable_qty(self, price: float) -> float:
        """The most that cash buys at `price` after slippage and fee."""
        return self.cash / (price * (1.0 + self._slip) * (1.0 + self._fee))

    def submit(self, order: PendingOrder) -> None:
        self.pending = order

    def restore(self, qty: float, entry_price: float, entry_ts_ms: int, stop_price: float,
                take_profit: float, order_id: str) -> None:
        """Re-open a position loaded from the store after a restart."""
        self.cash -= qty * entry_price
        self.set_position(qty, entry_price, entry_ts_ms, stop_price, take_profit, order_id)

    def on_bar(self, ts_ms: int, open_: float, high: float, low: float
               ) -> tuple[Fill | None, ClosedTrade | None, Fill | None, ClosedTrade | None]:
        """Fill a pending order at the open, then check stop and take-profit on the range.

        Returns (fill, closed trade) for the pending order and for a protective exit; any
        of them None.
        """
        fill = closed = None
        if self.pending is not None:
            fill, closed = self._fill_pending(ts_ms, open_)
        if self.qty <= 0.0:
            return fill, closed, None, None
        if low <= self.stop_price:
            price = min(open_, self.stop_price) * (1.0 - self._slip)
            exit_fill, exit_trade = self._exit(self.entry_order_id + "-sl", ts_ms, price,
                                               "stop_loss")
            return fill, closed, exit_fill, exit_trade
        if high >= self.take_profit:
            price = max(open_, self.take_profit)
            exit_fill, exit_trade = self._exit(self.entry_order_id + "-tp", ts_ms, price,
                                               "take_profit")
            return fill, closed, exit_fill, exit_trade
        return fill, closed, None, None

    def close_all(self, ts_ms: int, price: float, reason: str
                  ) -> tuple[Fill | None, ClosedTrade | None]:
        if self.qty <= 0.0:
            return None, None
        return self._exit(self.entry_order_id + "-x", ts_ms, price * (1.0 - self._slip), reason)

    def _fill_pending(self, ts_ms: int, open_: float) -> tuple[Fill | None, ClosedTrade | None]:
        order = self.pending
        assert order is not None
        self.pending = None
        if order.side == SELL:
            if self.qty <= 0.0:
                return None, None
            return self._exit(order.order_id, ts_ms, open_ * (1.0 - self._slip), order.reason)
        price = open_ * (1.0 + self._slip)
        qty = min(order.qty, self.cash / (price * (1.0 + self._fee)))
        fee = qty * price * self._fee
        self.cash -= qty * price + fee
        self.fees_paid += fee
        self.set_position(qty, price, ts_ms, order.stop_price, order.take_profit,
                          order.order_id, fee)
        return Fill(order.order_id, BUY, qty, price, fee, ts_ms, order.reason), None

    def _exit(self, order_id: str, ts_ms: int, price: float, reason: str
              ) -> tuple[Fill, ClosedTrade]:
        qty = self.qty
        fee = qty * price * self._fee
        self.cash += qty * price - fee
        self.fees_paid += fee
        fees = self.entry_fee + fee
        pnl = (price - self.entry_price) * qty - fees
        trade = ClosedTrade(self.entry_order_id, qty, self.entry_ts_ms, ts_ms, self.entry_price,
                            price, pnl, fees, reason)
        self.qty = 0.0
        self.entry_fee = 0.0
        return Fill(order_id, SELL, qty, price, fee, ts_ms, reason), trade
