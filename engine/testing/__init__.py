"""Test peers shipped with the engine.

`engine.testing.fake_exchange` holds `FakeExchange`, a fake Binance spot exchange (REST and
websocket) on 127.0.0.1 with switchable faults, and `ccxt_config`, which points ccxt at it.
It imports aiohttp, so nothing here imports it until asked: `from engine.testing import
FakeExchange` loads it lazily, and the rest of `engine/` never imports it at module level.
"""

from __future__ import annotations

from typing import Any

__all__ = ["FakeExchange", "Faults", "ccxt_config"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from engine.testing import fake_exchange

        return getattr(fake_exchange, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
