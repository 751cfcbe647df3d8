"""What the engine keeps in the cache, under which keys, for how long.

The engine re-reads five kinds of data, and only these go through the cache:
- `ticker:<SYM>`: the last bar (ts, open, high, low, close, volume), published every bar
  (write-behind), so another process (`supreme cache stats`, a dashboard, a second engine)
  reads it without the feed.
- `candle:<SYM>:<TF>:<ts>`: live candles (exchange feed only; sim and replay bars come from
  a file or a seed and are cheaper to recompute than to cache), read back on restart.
- `market:<venue>:<SYM>`: exchange market metadata (minimum notional, steps), read on
  every order; loaded from the exchange once a day, or the paper venue's defaults.
- `orderbook:<SYM>`: the top of the book (exchange feed only), read before an entry to check
  the spread (`risk.max_spread_bps`), fetched again when older than two seconds.
- `state:<SYM>:<mode>`: an indicator-state snapshot, published every STATE_EVERY_BARS bars
  and at the end of a run, read at the start of a resumed run.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from engine.cache.tiered import TieredCache
from engine.errors import SupremeError
from engine.types import Bar

TICKER_TTL_S = 300.0
CANDLE_TTL_S = 7 * 86_400.0
MARKET_TTL_S = 86_400.0
ORDERBOOK_TTL_S = 2.0
STATE_TTL_S = 7 * 86_400.0
STATE_EVERY_BARS = 1_000
PAPER_MARKET = {"venue": "paper", "min_notional": 5.0, "amount_step": 1e-6,
                "price_step": 0.01}


class MarketCache:
    def __init__(self, cache: TieredCache, symbol: str, venue: str, mode: str,
                 timeframe: str = "1m", *, candles: bool = False,
                 market_loader: Callable[[], dict[str, Any]] | None = None,
                 book_loader: Callable[[], dict[str, Any]] | None = None) -> None:
        self.cache = cache
        self.symbol = symbol
        self.ticker_key = f"ticker:{symbol}"
        self.market_key = f"market:{venue}:{symbol}"
        self.book_key = f"orderbook:{symbol}"
        self.state_key = f"state:{symbol}:{mode}"
        self._candle_prefix = f"candle:{symbol}:{timeframe}:"
        self._candles = candles
        self._market_loader = market_loader or (lambda: dict(PAPER_MARKET))
        self._book_loader = book_loader
        self._publish = cache.publish
        self._append = cache.publisher()

    def on_bar(self, bar: Bar) -> None:
        """Per bar, on the tick path: one or two bare deque appends."""
        self._append((self.ticker_key, bar, TICKER_TTL_S))  # ts, open, high, low, close, volume
        if self._candles:
            self._append((self._candle_prefix + str(bar.ts), bar, CANDLE_TTL_S))

    def market(self) -> dict[str, Any]:
        value = self.cache.get_or_load(self.market_key, self._market_loader,
                                       ttl_s=MARKET_TTL_S)
        return value if isinstance(value, dict) else dict(PAPER_MARKET)

    def order_book(self) -> dict[str, Any] | None:
        if self._book_loader is None:
            return None
        value = self.cache.get_or_load(self.book_key, self._book_loader,
                                       ttl_s=ORDERBOOK_TTL_S)
        return value if isinstance(value, dict) else None

    def spread_bps(self) -> float | None:
        """The top of the book's spread in bps of the mid, or None without a usable book
        (no order books on this feed, or the exchange did not answer: no filter then)."""
        try:
            book = self.order_book()
        except SupremeError:
            return None
        if not book or not book.get("bids") or not book.get("asks"):
            return None
        bid, ask = float(book["bids"][0][0]), float(book["asks"][0][0])
        mid = (bid + ask) / 2.0
        return (ask - bid) / mid * 10_000.0 if mid > 0 else None

    def recent_candles(self, timestamps: list[int]) -> dict[int, tuple[float, ...]]:
        found = self.cache.get_many(self._candle_prefix + str(ts) for ts in timestamps)
        return {int(k.rsplit(":", 1)[1]): tuple(v) for k, v in found.items()}

    def save_state(self, state: dict[str, Any]) -> None:
        self._publish(self.state_key, state, STATE_TTL_S)

    def load_state(self) -> dict[str, Any] | None:
        value = self.cache.get(self.state_key)
        return value if isinstance(value, dict) else None
