"""Secret canaries across every command, failures and --verbose included (RELIABILITY 8)."""

import sqlite3
from pathlib import Path

import pytest

from engine.testing import FakeExchange
from tests.cli.helpers import invoke

KEY = "canary-key-5d1e8b7f"
SECRET = "canary-secret-93af0c2e"
PG_PASSWORD = "canary-pw-77"
API_TOKEN = "canary-token-4c2b"
REDIS_PASSWORD = "canary-redis-pw-19"


@pytest.fixture
def canary_env(data_dir: Path) -> dict[str, str]:
    return {"EXCHANGE_API_KEY": KEY, "EXCHANGE_SECRET": SECRET, "SUPREME_API_TOKEN": API_TOKEN,
            "SUPREME_DATA_DIR": str(data_dir)}


def _assert_clean(*texts: str) -> None:
    for text in texts:
        for canary in (KEY, SECRET, PG_PASSWORD, API_TOKEN, REDIS_PASSWORD):
            assert canary not in text


def test_no_command_leaks_the_canaries(canary_env, data_dir: Path, tmp_path: Path):
    db = str(tmp_path / "s.db")
    calls = [
        ("config", "show", "--verbose"),
        ("config", "show", "--json"),
        ("run", "--bars", "2000", "--verbose", "--db", db),
        ("run", "--bars", "2000", "--json", "--db", db),
        ("run", "--mode", "live", "--bars", "5", "--verbose"),
        ("run", "--mode", "live", "--confirm-live", "--feed", "exchange", "--bars", "1",
         "--endpoint", "http://127.0.0.1:1", "--verbose"),
        ("run", "--symbol", "../x", "--json"),
        ("db", "migrate", "--db", db, "--verbose"),
        ("db", "backup", str(tmp_path / "b.db"), "--db", db),
        ("connectivity", "--exchange", "binance", "--timeout", "2", "--verbose"),
        ("connectivity", "--exchange", "binance", "--endpoint",
         "binance=http://127.0.0.1:1", "--timeout", "2", "--json"),
        ("run", "--bars", "50", "--metrics-port", "0", "--log-format", "json", "--db", db),
        ("run", "--bars", "5", "--metrics-port", "0", "--metrics-addr", "0.0.0.0", "--json"),
        ("cache", "stats", "--db", db, "--verbose"),
        ("cache", "reset", "--yes", "--db", db, "--engine", "http://127.0.0.1:1", "--json"),
        ("stats", "--db", db, "--verbose"),
        ("stats", "--db", db, "--baseline", "random", "--resamples", "199", "--json"),
    ]
    for args in calls:
        r = invoke(*args, env=canary_env)
        _assert_clean(r.stdout, r.stderr)
    bad_pg = {**canary_env, "POSTGRES_URL": f"postgresql://u:{PG_PASSWORD}@127.0.0.1:1/x"}
    r = invoke("run", "--bars", "10", "--verbose", env=bad_pg)
    assert r.exit_code != 0
    _assert_clean(r.stdout, r.stderr)
    bad_redis = {**canary_env, "REDIS_URL": f"redis://:{REDIS_PASSWORD}@127.0.0.1:1/0"}
    for args in (("run", "--bars", "10", "--verbose", "--db", db),
                 ("cache", "stats", "--db", db, "--json")):
        r = invoke(*args, env=bad_redis)
        _assert_clean(r.stdout, r.stderr)
    con = sqlite3.connect(db)
    for (table,) in con.execute("SELECT name FROM sqlite_master WHERE type='table'").fetchall():
        for row in con.execute(f'SELECT * FROM "{table}"'):
            _assert_clean(repr(row))


def test_exchange_commands_against_the_fake_leak_nothing(canary_env, tmp_path: Path):
    with FakeExchange(ws_interval_s=None) as fx:
        out = tmp_path / "dl.json"
        r = invoke("data", "download", "--since", "2020-01-01", "--endpoint", fx.base_url,
                   "--output", str(out), "--verbose", env=canary_env)
        _assert_clean(r.stdout, r.stderr)
        r = invoke("connectivity", "--exchange", "binance", "--endpoint",
                   f"binance={fx.base_url}", "--timeout", "5", "--verbose", "--json",
                   env=canary_env)
        _assert_clean(r.stdout, r.stderr)
