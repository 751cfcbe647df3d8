"""A live broker: the paper broker's interface, with real market orders through the adapter.

The pipeline drives `LiveBroker` exactly as it drives `PaperBroker` (`submit`, `on_bar`,
`close_all`, `equity`, `affordable_qty`, `cash`, `qty`, `pending`, `entry_*`, `stop_price`,
`take_profit`, `fees_paid`), plus `reconcile` once at start and `take_reports` after each
call that may have traded. What differs, and why:

* **Orders go out at once.** `submit` sends a market order through
  `ExchangeAdapter.create_order(..., client_order_id=order_id)` when the strategy decides (on
  a candle's close, which in real time is the next candle's open), instead of queueing it for
  the next bar. `pending` is therefore always None. Client ids are the pipeline's
  deterministic order ids (`"<run id[:12]>-<seq>"`, exits `"<entry id>-sl"` / `"-tp"` / `"-x"`),
  which fit the exchange's charset and 36-character limit; an id that does not is replaced by
  a stable hash of it. Before each send `before_send` is called so the pipeline can commit
  the order as `open` (a write-ahead journal): after a crash, `reconcile` looks every order
  still `open` in the store up on the exchange by client id, so an order is never sent twice
  and never forgotten.
* **Fills are the exchange's.** Quantity, average price and fees come from the order the
  exchange reports. A fee charged in the base asset (Binance takes it from the asset
  received) reduces the position; fees are converted to quote at the fill price.
* **Stops and take-profits are not resting orders.** They are checked against each closed
  candle's range like the paper broker does, and a touched level is closed with a market
  sell at the price of the moment (not at the level): up to one candle plus one poll late.
  While the engine is not running nothing protects the position.
* **The exchange is the truth.** The account is assumed dedicated to the engine's symbol:
  the base asset's balance (free, plus what open sell orders lock) *is* the position, the
  quote asset's (free, plus what open buy orders lock) the cash. `reconcile` compares that
  with the stored position, adopts the exchange's numbers and reports every difference as
  a warning. Open orders found on the exchange are adopted: left in place, their locked
  funds counted, and watched each bar; when one disappears the balance is read again. A
  balance worth less than `min_notional` is dust and counts as flat.
* **Errors do not stop the run.** A rejected order (no funds, filter failure) or an order
  whose fate is unknown after the adapter's retries is reported (`rejected` with the
  reason) and the balance is read again to adopt whatever happened. Bad keys
  (ExchangeAuthError) and bad configuration raise.

Levels of 0 mean "none": a position adopted without a stored stop or take-profit exits only
on the strategy's exit signal (a warning says so).
"""

from __future__ import annotations

import hashlib
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from engine.broker.paper import BUY, SELL, ClosedTrade, Fill, PendingOrder, PositionBook
from engine.config import BrokerParams
from engine.errors import ExchangeAuthError, ExchangeError, ServiceUnavailable
from engine.parsing import ccxt_symbol, normalize_symbol

__all__ = ["LiveBroker", "Rejection", "client_id"]

_CLIENT_ID_RE = re.compile(r"^[.A-Z:/a-z0-9_-]{1,36}$")
DEFAULT_MIN_NOTIONAL = 5.0


class _Adapter(Protocol):
    """What the live broker needs of an ExchangeAdapter."""

    def fetch_balance(self) -> dict[str, float]: ...

    def fetch_open_orders(self, symbol: str) -> list[dict[str, Any]]: ...

    def fetch_ticker(self, symbol: str) -> dict[str, Any]: ...

    def create_order(self, symbol: str, side: str, amount: float, *, client_order_id: str,
                     order_type: str = ..., price: float | None = ...) -> dict[str, Any]: ...

    def fetch_order_by_client_id(self, symbol: str, client_order_id: str
                                 ) -> dict[str, Any] | None: ...


@dataclass(frozen=True, slots=True)
class Rejection:
    """An order that did not fill: the pipeline stores it as `rejected` with `reason`."""

    order_id: str
    side: str
    qty: float
    reason: str
    ts_ms: int


@dataclass(frozen=True, slots=True)
class JournalUpdate:
    """The outcome of an order a previous run left `open` in the store."""

    order_id: str
    run_id: str
    side: str
    status: str  # filled | rejected | open
    qty: float
    fill_price: float | None
    fee: float
    reason: str
    ts_ms: int


def client_id(order_id: str) -> str:
    """`order_id` if the exchange accepts it as a client order id, else a stable hash."""
    if _CLIENT_ID_RE.match(order_id):
        return order_id
    return "s" + hashlib.sha256(order_id.encode()).hexdigest()[:31]


class LiveBroker(PositionBook):
    """Market orders through an adapter; see the module docstring."""

    # Instances keep a __dict__ for the live-only state below; PositionBook holds the rest.

    def __init__(self, adapter: _Adapter, symbol: str, params: BrokerParams | None = None,
                 *, warn: Callable[[str], None] | None = None,
                 before_send: Callable[[str, str, float, float, str], None] | None = None,
                 run_id: str = "", min_notional: float | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        super().__init__(params, cash=0.0)
        self._adapter = adapter
        self.symbol = normalize_symbol(symbol)
        self.base, self.quote = self.symbol.split("-", 1)
        self._warn = warn or (lambda message: None)
        self._before_send = before_send
        self._run_prefix = run_id[:12] or "live"
        self._clock = clock
        self.min_notional = DEFAULT_MIN_NOTIONAL if min_notional is None else min_notional
        # self.pending stays None: live orders go out at once.
        self.open_orders: dict[str, dict[str, Any]] = {}
        self.locked_quote = 0.0
        self.last_price = 0.0
        self.orders_sent = 0
        self._market: dict[str, Any] = {}
        self._fills: list[tuple[Fill, ClosedTrade | None]] = []
        self._rejections: list[Rejection] = []

    # --- the paper broker's interface ----------------------------------------------

    def affordable_qty(self, price: float) -> float:
        """The most the free quote balance buys at `price`, with slippage and fee margins."""
        free = max(0.0, self.cash - self.locked_quote)
        return free / (price * (1.0 + self._slip) * (1.0 + self._fee))

    def restore(self, qty: float, entry_price: float, entry_ts_ms: int, stop_price: float,
                take_profit: float, order_id: str) -> None:
        """Set the position bookkeeping (no request). `reconcile` is what a start uses."""
        self.set_position(qty, entry_price, entry_ts_ms, stop_price, take_profit, order_id)

    def submit(self, order: PendingOrder) -> None:
        """Send `order` as a market order now; its fill or rejection waits in
        `take_reports`."""
        ts = self._now_ms()
        if order.side == BUY:
            fill = self._send(order.order_id, BUY, order.qty, order.reason)
            if fill is not None:
                self._open(fill, order.stop_price, order.take_profit)
                self._fills.append((fill, None))
            return
        if self.qty <= 0.0:
            return
        self._sell(order.order_id, order.reason, ts)

    def on_bar(self, ts_ms: int, open_: float, high: float, low: float
               ) -> tuple[Fill | None, ClosedTrade | None, Fill | None, ClosedTrade | None]:
        """Watch adopted open orders; close the position with a market sell when the
        closed candle's range touched the stop (checked first) or the take-profit."""
        self.last_price = open_
        if self.open_orders:
            self._watch_open_orders()
        if self.qty <= 0.0:
            return None, None, None, None
        reason = ""
        if self.stop_price > 0.0 and low <= self.stop_price:
            reason, suffix = "stop_loss", "-sl"
        elif self.take_profit > 0.0 and high >= self.take_profit:
            reason, suffix = "take_profit", "-tp"
        if not reason:
            return None, None, None, None
        before = len(self._fills)
        self._sell(self.entry_order_id + suffix, reason, ts_ms)
        if len(self._fills) > before:
            fill, trade = self._fills.pop()
            return None, None, fill, trade
        return None, None, None, None

    def close_all(self, ts_ms: int, price: float, reason: str
                  ) -> tuple[Fill | None, ClosedTrade | None]:
        if self.qty <= 0.0:
            return None, None
        before = len(self._fills)
        self._sell(self.entry_order_id + "-x", reason, ts_ms)
        if len(self._fills) > before:
            return self._fills.pop()
        return None, None

    def take_reports(self) -> tuple[list[tuple[Fill, ClosedTrade | None]], list[Rejection]]:
        """Fills (with the trade each closed) and rejections since the last call."""
        fills, rejections = self._fills, self._rejections
        self._fills, self._rejections = [], []
        return fills, rejections

    # --- start: reconciliation ----------------------------------------------------------

    def reconcile(self, stored: Any, journal: list[Any] | None = None,
                  price: float | None = None) -> list[JournalUpdate]:
        """Adopt the exchange's balance and open orders; compare with the stored position.

        `stored` is the store's PositionRecord for (symbol, "live") or None; `journal` the
        orders the store still holds as `open` (OrderRecords). Returns what became of each
        journal order, for the pipeline to store. Warns about every difference."""
        self._load_limits()
        if price is None:
            price = float(self._adapter.fetch_ticker(self.symbol)["last"])
        self.last_price = price
        updates = [self._settle(rec) for rec in journal or []]
        balance = self._adapter.fetch_balance()
        orders = self._adapter.fetch_open_orders(self.symbol)
        self.open_orders = {o["id"]: o for o in orders}
        for o in orders:
            self._warn(f"open order {o['id']} (client id {o.get('client_order_id')}) on "
                       f"{self.symbol}: {o.get('side')} {o.get('remaining')} at "
                       f"{o.get('price')}; adopted: left in place, its locked funds "
                       "counted, watched every bar")
        qty, cash = self._position_from(balance, orders, price)
        self.cash = cash
        stored_qty = float(stored.qty) if stored is not None and stored.qty else 0.0
        entry_update = next((u for u in updates if u.side == BUY and u.status == "filled"),
                            None)
        if stored_qty > 0.0 and qty > 0.0 and math.isclose(qty, stored_qty, rel_tol=1e-3,
                                                            abs_tol=self._step()):
            self.restore(qty, float(stored.entry_price), int(stored.entry_ts_ms or 0),
                         float(stored.stop_price or 0.0), float(stored.take_profit or 0.0),
                         str(stored.run_id or self._run_prefix + "-a"))
            self._warn(f"resumed open position: {qty:.6g} {self.symbol} at "
                       f"{self.entry_price:.6g} (matches the exchange)")
        elif qty > 0.0:
            if stored_qty > 0.0:
                self._warn(f"the store holds {stored_qty:.6g} {self.base} but the exchange "
                           f"holds {qty:.6g}: adopting the exchange's {qty:.6g}")
                entry = float(stored.entry_price)
                levels = (float(stored.stop_price or 0.0), float(stored.take_profit or 0.0))
                order_id = str(stored.run_id or self._run_prefix + "-a")
                entry_ts = int(stored.entry_ts_ms or 0)
            elif entry_update is not None and entry_update.fill_price:
                self._warn(f"the exchange holds {qty:.6g} {self.base} bought by order "
                           f"{entry_update.order_id} before the restart: adopted at "
                           f"{entry_update.fill_price:.6g}, without stop or take-profit")
                entry, levels = entry_update.fill_price, (0.0, 0.0)
                order_id, entry_ts = entry_update.order_id, entry_update.ts_ms
            else:
                self._warn(f"the store holds no {self.symbol} position but the exchange "
                           f"holds {qty:.6g} {self.base}: adopted at the market price "
                           f"{price:.6g}, without stop or take-profit (it exits on the "
                           "strategy's exit signal)")
                entry, levels = price, (0.0, 0.0)
                order_id, entry_ts = self._run_prefix + "-a", self._now_ms()
            self.restore(qty, entry, entry_ts, levels[0], levels[1], order_id)
        else:
            self.restore(0.0, 0.0, 0, 0.0, 0.0, "")
            if stored_qty > 0.0:
                self._warn(f"the store holds {stored_qty:.6g} {self.base} but the exchange "
                           f"holds none (or dust): adopting a flat position")
        return updates

    def _settle(self, rec: Any) -> JournalUpdate:
        """What became of an order a previous run journaled as open."""
        found = self._adapter.fetch_order_by_client_id(self.symbol, client_id(rec.id))
        if found is None:
            self._warn(f"order {rec.id} was journaled but never reached the exchange: "
                       "marked rejected")
            return JournalUpdate(rec.id, rec.run_id, rec.side, "rejected", rec.qty, None, 0.0,
                                 "not sent before the restart", rec.ts_ms)
        filled = found.get("filled") or 0.0
        if found["status"] == "open":
            self._warn(f"order {rec.id} from before the restart is still open on the "
                       "exchange: adopted")
            return JournalUpdate(rec.id, rec.run_id, rec.side, "open", rec.qty, None, 0.0,
                                 rec.reason, rec.ts_ms)
        if filled > 0.0:
            price = found.get("average") or found.get("price") or 0.0
            fee = self._fee_quote(found, price)
            self._warn(f"order {rec.id} was filled before the restart ({rec.side} "
                       f"{filled:.6g} at {price:.6g}): recorded")
            return JournalUpdate(rec.id, rec.run_id, rec.side, "filled", filled, price, fee,
                                 rec.reason, found.get("timestamp") or rec.ts_ms)
        self._warn(f"order {rec.id} from before the restart ended {found['status']} "
                   "without a fill: marked rejected")
        return JournalUpdate(rec.id, rec.run_id, rec.side, "rejected", rec.qty, None, 0.0,
                             f"exchange status {found['status']}", rec.ts_ms)

    # --- sending --------------------------------------------------------------------

    def _send(self, order_id: str, side: str, qty: float, reason: str) -> Fill | None:
        """One market order; its Fill, or None after recording a Rejection and re-reading
        the balance."""
        ts = self._now_ms()
        cid = client_id(order_id)
        if self._before_send is not None:
            self._before_send(order_id, side, qty, self.last_price, reason)
        self.orders_sent += 1
        try:
            order = self._adapter.create_order(self.symbol, side, qty, client_order_id=cid)
        except ExchangeAuthError:
            raise
        except (ExchangeError, ServiceUnavailable) as exc:
            self._reject(order_id, side, qty, f"{type(exc).__name__}: {exc}", ts)
            self._resync(f"after the failed order {order_id}")
            return None
        filled = order.get("filled") or 0.0
        if order["status"] != "closed" or filled <= 0.0:
            found = self._adapter.fetch_order_by_client_id(self.symbol, cid)
            if found is not None:
                order = found
                filled = order.get("filled") or 0.0
        if filled <= 0.0:
            self._reject(order_id, side, qty, f"exchange status {order['status']}", ts)
            self._resync(f"after order {order_id} ended {order['status']}")
            return None
        price = order.get("average") or order.get("price")
        if not price and order.get("cost"):
            price = order["cost"] / filled
        if not price:
            price = self.last_price
        fee_base = self._fee_in(order, self.base)
        fee_quote = self._fee_in(order, self.quote)
        fee = fee_quote + fee_base * price
        cost = order.get("cost") or filled * price
        if side == BUY:
            self.cash -= cost + fee_quote
            got = filled - fee_base
        else:
            self.cash += cost - fee_quote
            got = filled + fee_base
        self.fees_paid += fee
        when = order.get("timestamp") or ts
        return Fill(order_id, side, got, price, fee, when, reason)

    def _open(self, fill: Fill, stop_price: float, take_profit: float) -> None:
        self.set_position(self.qty + fill.qty, fill.price, fill.ts_ms, stop_price, take_profit,
                          fill.order_id, fill.fee)

    def _sell(self, order_id: str, reason: str, ts: int) -> None:
        qty = self.qty
        if self.last_price > 0.0 and qty * self.last_price < self.min_notional:
            self._warn(f"{qty:.6g} {self.base} is worth less than the exchange's minimum "
                       f"order ({self.min_notional:g} {self.quote}): left as dust, "
                       "position counted flat")
            self.restore(0.0, 0.0, 0, 0.0, 0.0, "")
            return
        fill = self._send(order_id, SELL, qty, reason)
        if fill is None:
            return
        sold = min(fill.qty, self.qty)
        fees = self.entry_fee + fill.fee
        pnl = (fill.price - self.entry_price) * sold - fees
        trade = ClosedTrade(self.entry_order_id, sold, self.entry_ts_ms, fill.ts_ms,
                            self.entry_price, fill.price, pnl, fees, reason)
        left = self.qty - fill.qty
        if left * fill.price < self.min_notional:
            left = 0.0
        self.qty = left
        self.entry_fee = 0.0
        if left == 0.0:
            self.stop_price = self.take_profit = 0.0
        self._fills.append((fill, trade))

    def _reject(self, order_id: str, side: str, qty: float, reason: str, ts: int) -> None:
        self._warn(f"order {order_id} ({side} {qty:.6g} {self.symbol}) failed: {reason}")
        self._rejections.append(Rejection(order_id, side, qty, reason[:200], ts))

    # --- the exchange's truth ------------------------------------------------------

    def _resync(self, why: str) -> None:
        """Adopt the balance after an order's fate became uncertain (best effort)."""
        try:
            balance = self._adapter.fetch_balance()
            orders = self._adapter.fetch_open_orders(self.symbol)
        except ExchangeAuthError:
            raise
        except (ExchangeError, ServiceUnavailable) as exc:
            self._warn(f"cannot read the balance {why} ({exc}); the next start reconciles")
            return
        self._adopt(balance, orders, why)

    def _watch_open_orders(self) -> None:
        try:
            orders = self._adapter.fetch_open_orders(self.symbol)
        except ExchangeAuthError:
            raise
        except (ExchangeError, ServiceUnavailable) as exc:
            self._warn(f"cannot check the adopted open orders ({exc}); retrying next bar")
            return
        gone = [oid for oid in self.open_orders if oid not in {o["id"] for o in orders}]
        if not gone:
            return
        try:
            balance = self._adapter.fetch_balance()
        except ExchangeAuthError:
            raise
        except (ExchangeError, ServiceUnavailable) as exc:
            self._warn(f"cannot read the balance ({exc}); retrying next bar")
            return
        self._adopt(balance, orders, f"after order(s) {', '.join(gone)} left the book")

    def _adopt(self, balance: dict[str, float], orders: list[dict[str, Any]], why: str
               ) -> None:
        self.open_orders = {o["id"]: o for o in orders}
        price = self.last_price
        qty, cash = self._position_from(balance, orders, price)
        self.cash = cash
        if not math.isclose(qty, self.qty, rel_tol=1e-3, abs_tol=self._step()):
            self._warn(f"position {self.qty:.6g} → {qty:.6g} {self.base} {why}: adopting "
                       "the exchange's balance")
            if self.qty <= 0.0 and qty > 0.0:
                self.restore(qty, price, self._now_ms(), 0.0, 0.0, self._run_prefix + "-a")
            elif qty <= 0.0:
                self.restore(0.0, 0.0, 0, 0.0, 0.0, "")
            else:
                self.qty = qty

    def _position_from(self, balance: dict[str, float], orders: list[dict[str, Any]],
                       price: float) -> tuple[float, float]:
        """(position, cash): free balances plus what open orders lock; dust is flat."""
        locked_base = sum((o.get("remaining") or 0.0) for o in orders if o.get("side") == SELL)
        self.locked_quote = sum((o.get("remaining") or 0.0) * (o.get("price") or 0.0)
                                for o in orders if o.get("side") == BUY)
        qty = balance.get(self.base, 0.0) + locked_base
        cash = balance.get(self.quote, 0.0) + self.locked_quote
        if qty * price < self.min_notional:
            qty = 0.0
        return qty, cash

    # --- helpers --------------------------------------------------------------------

    def _load_limits(self) -> None:
        """The market's minimum order value, when the adapter exposes ccxt's markets."""
        ex = getattr(self._adapter, "exchange", None)
        load = getattr(self._adapter, "load_markets", None)
        if ex is None or load is None:
            return
        try:
            load()
            market = (ex.markets or {}).get(ccxt_symbol(self.symbol)) or {}
        except (ExchangeError, ServiceUnavailable):
            return
        cost_min = ((market.get("limits") or {}).get("cost") or {}).get("min")
        if isinstance(cost_min, int | float) and cost_min > 0:
            self.min_notional = float(cost_min)
        self._market = market

    def _step(self) -> float:
        amount_min = ((self._market.get("limits") or {}).get("amount") or {}).get("min")
        return float(amount_min) if isinstance(amount_min, int | float) else 1e-8

    def _fee_in(self, order: dict[str, Any], currency: str) -> float:
        return sum(f["cost"] or 0.0 for f in order.get("fees") or []
                   if f.get("currency") == currency)

    def _fee_quote(self, order: dict[str, Any], price: float) -> float:
        return self._fee_in(order, self.quote) + self._fee_in(order, self.base) * price

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)
