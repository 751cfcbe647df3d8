"""Shared fixtures: the real data folder and the real services.

Service-backed and real-data tests skip when their resource is missing on a developer's
machine, and fail instead when CI sets SUPREME_REQUIRE_SERVICES=1 / SUPREME_REQUIRE_DATA=1,
so a missing service can never turn a CI run green by skipping.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("SUPREME_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


def _missing(what: str, require_var: str) -> None:
    if os.environ.get(require_var) == "1":
        pytest.fail(f"{what} is required here ({require_var}=1) but is not available")
    pytest.skip(f"{what} not available")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--soak", action="store_true", help="run long soak tests")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--soak"):
        return
    skip = pytest.mark.skip(reason="soak test: opt in with --soak")
    for item in items:
        if "soak" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The folder of real Binance candles (../shared/data)."""
    if not (SHARED_DATA / "ETH_USDT-1m.json").exists():
        _missing(f"real market data in {SHARED_DATA}", "SUPREME_REQUIRE_DATA")
    return SHARED_DATA


@pytest.fixture(scope="session")
def postgres_base_url() -> str:
    url = os.environ.get("SUPREME_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
    try:
        import psycopg

        with psycopg.connect(url, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except Exception:
        _missing(f"PostgreSQL at {url}", "SUPREME_REQUIRE_SERVICES")
    return url


@pytest.fixture
def postgres_url(postgres_base_url: str) -> Iterator[str]:
    """A PostgreSQL URL whose search_path is a fresh schema, dropped afterwards.

    Tests share the `test` database with other users, so each test works in its own schema.
    """
    import psycopg

    schema = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_base_url, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    sep = "&" if "?" in postgres_base_url else "?"
    yield f"{postgres_base_url}{sep}options=-csearch_path%3D{schema}"
    with psycopg.connect(postgres_base_url, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


@pytest.fixture(scope="session")
def redis_url() -> str:
    url = os.environ.get("SUPREME_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
    try:
        import redis

        client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
        client.ping()
        client.close()
    except Exception:
        _missing(f"Redis at {url}", "SUPREME_REQUIRE_SERVICES")
    return url


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An isolated SUPREME_DATA_DIR so tests never touch the user's real store."""
    d = tmp_path / "data"
    monkeypatch.setenv("SUPREME_DATA_DIR", str(d))
    for var in ("POSTGRES_URL", "REDIS_URL", "EXCHANGE_API_KEY", "EXCHANGE_SECRET",
                "TRADING_MODE", "SYMBOL_FOCUS", "INTERVAL_SECONDS", "EXCHANGE_SANDBOX"):
        monkeypatch.delenv(var, raising=False)
    return d


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test talks to 127.0.0.1 only; a configured proxy must never see that traffic."""
    for var in ("NO_PROXY", "no_proxy"):
        monkeypatch.setenv(var, "127.0.0.1,localhost")


@pytest.fixture
def fx() -> Iterator[object]:
    """The packaged fake Binance exchange with 3,000 generated 1m candles, static REST
    state (no automatic replay). Tests that need another set-up define their own `fx`."""
    from engine.testing import FakeExchange

    with FakeExchange(ws_interval_s=None) as server:
        yield server
