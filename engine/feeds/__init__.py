"""Market-data feeds: anything that yields `Bar`s in time order.

Three implementations live beside this module and are imported explicitly, so importing
the package stays cheap:

* `engine.feeds.sim.SimFeed` — an endless, seeded, calibrated 1m candle simulator (stdlib only).
* `engine.feeds.replay.ReplayFeed` — replays a validated file loaded by `load_series`.
* `engine.feeds.exchange.ExchangeFeed` — closed candles from an exchange (REST polling or
  websockets), the only feed that imports ccxt.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol, runtime_checkable

from engine.types import Bar

__all__ = ["Feed"]


@runtime_checkable
class Feed(Protocol):
    """An iterable of `Bar`s, oldest first, with a little metadata.

    `kind` is "sim" or "replay"; `symbol` is dash-separated ("ETH-USDT"); `interval_ms` is
    the bar spacing. Members are read-only properties so both plain attributes and
    properties satisfy the protocol.
    """

    @property
    def kind(self) -> str: ...

    @property
    def symbol(self) -> str: ...

    @property
    def interval_ms(self) -> int: ...

    def __iter__(self) -> Iterator[Bar]: ...
