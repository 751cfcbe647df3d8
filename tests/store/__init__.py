"""Shared helpers for the store tests: backend parameters and record factories."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.store import (
    EquityRecord,
    OrderRecord,
    PositionRecord,
    RunRecord,
    SignalRecord,
    Store,
    TradeRecord,
)

BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
]

T0 = 1_700_000_000_000
SYMBOL = "ETH/USDT"


def store_url(request: pytest.FixtureRequest, backend: str, tmp_path: Path) -> str:
    """A URL for a fresh, empty store of the given backend."""
    if backend == "postgres":
        return str(request.getfixturevalue("postgres_url"))
    return f"sqlite://{tmp_path / 'store.db'}"


def run_rec(run_id: str = "run-1", mode: str = "paper", started: int = T0) -> RunRecord:
    return RunRecord(id=run_id, symbol=SYMBOL, feed="replay", mode=mode, started_at_ms=started,
                     config={"strategy": "ema", "fast": 9, "slow": 21})


def signal(run_id: str, seq: int) -> SignalRecord:
    action = ("buy", "sell", "none")[seq % 3]
    return SignalRecord(run_id, seq, T0 + seq * 1000, action, action != "none", f"r{seq}",
                        3000.0 + seq / 7)


def order(run_id: str, i: int, status: str = "filled") -> OrderRecord:
    return OrderRecord(f"{run_id}-o{i}", run_id, T0 + i * 1000, SYMBOL,
                       "buy" if i % 2 == 0 else "sell", 0.01 * (i + 1), 3000.0 + i, status,
                       reason="entry", fill_price=None if status == "open" else 3000.5 + i,
                       fee=0.0123 * i)


def trade(run_id: str, i: int) -> TradeRecord:
    return TradeRecord(f"{run_id}-t{i}", run_id, SYMBOL, "buy", 0.5, T0 + i * 1000,
                       T0 + i * 1000 + 600, 3000.0 + i, 3001.25 + i, 0.625, 0.3, "take_profit")


def equity(run_id: str, i: int) -> EquityRecord:
    return EquityRecord(run_id, T0 + i * 1000, 10_000.0 + i / 3, 9_000.0, 1_000.0 + i / 3,
                        -0.001 * i)


def position(qty: float = 0.5, mode: str = "paper", run_id: str = "run-1") -> PositionRecord:
    return PositionRecord(SYMBOL, mode, qty, 3000.0, T0, 2990.0, 3015.0, run_id, T0 + 5)


def populate(store: Store, run_id: str = "run-1", n: int = 30) -> None:
    store.create_run(run_rec(run_id))
    store.write_batch(
        signals=[signal(run_id, i) for i in range(n)],
        orders=[order(run_id, i, "open" if i == n - 1 else "filled") for i in range(n)],
        trades=[trade(run_id, i) for i in range(n // 2)],
        equity=[equity(run_id, i) for i in range(n)],
        positions=[position(run_id=run_id)],
    )
    store.finish_run(run_id, "finished", T0 + n * 1000, {"trades": n // 2, "pnl": 1.25})


def snapshot(store: Store) -> dict[str, object]:
    """Everything readable through the public API, for comparing two stores."""
    runs = store.list_runs(limit=1000)
    return {
        "counts": store.counts(),
        "runs": runs,
        "per_run": {
            r.id: (store.signals_for_run(r.id), store.orders_for_run(r.id),
                   store.trades_for_run(r.id), store.equity_for_run(r.id))
            for r in runs
        },
        "position": store.load_position(SYMBOL, "paper"),
        "open_orders": store.open_orders(SYMBOL),
    }
