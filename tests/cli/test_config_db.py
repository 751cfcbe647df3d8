from pathlib import Path

import pytest

from supreme_cli.exit_codes import ExitCode
from tests.cli.helpers import invoke

CANARY_KEY = "canary-key-7f3a91"
CANARY_SECRET = "canary-secret-c0ffee42"


def test_config_show_json_reports_values_and_sources(data_dir: Path):
    r = invoke("config", "show", "--profile", "conservative", "--json",
               env={"SYMBOL_FOCUS": "BTC/USDT", "EXCHANGE_API_KEY": CANARY_KEY,
                    "EXCHANGE_SECRET": CANARY_SECRET,
                    "POSTGRES_URL": "postgresql://u:pw-canary-9@127.0.0.1/test"})
    assert r.exit_code == 0, r.stderr
    keys = r.json()["keys"]
    assert keys["symbol"] == {"value": "BTC-USDT", "source": "env:SYMBOL_FOCUS",
                              "env": "SYMBOL_FOCUS", "secret": False}
    assert keys["risk.risk_per_trade"]["source"] == "profile:conservative"
    assert keys["mode"]["source"] == "default"
    assert keys["exchange.api_key"]["value"] == "***"
    for canary in (CANARY_KEY, CANARY_SECRET, "pw-canary-9"):
        assert canary not in r.stdout and canary not in r.stderr


def test_config_show_table(data_dir: Path):
    r = invoke("config", "show", env={"EXCHANGE_SECRET": CANARY_SECRET})
    assert r.exit_code == 0
    assert "symbol" in r.stdout and "SYMBOL_FOCUS" in r.stdout
    assert CANARY_SECRET not in r.stdout


def test_invalid_env_value_exits_2_without_traceback_or_secret(data_dir: Path):
    r = invoke("config", "show", env={"TRADING_MODE": CANARY_SECRET,
                                      "EXCHANGE_SECRET": CANARY_SECRET})
    assert r.exit_code == ExitCode.USAGE
    assert "mode" in r.stderr
    assert "Traceback" not in r.stderr
    assert CANARY_SECRET not in r.stderr + r.stdout


def test_missing_config_file_exits_2(data_dir: Path, tmp_path: Path):
    r = invoke("config", "show", "--config", str(tmp_path / "nope.toml"))
    assert r.exit_code == ExitCode.USAGE
    assert "not found" in r.stderr


def test_db_migrate_backup_restore_round_trip_sqlite(data_dir: Path, tmp_path: Path):
    db = tmp_path / "a.db"
    r = invoke("db", "migrate", "--db", str(db), "--json")
    assert r.exit_code == 0, r.stderr
    assert r.json()["schema_version"] >= 1
    run = invoke("run", "--bars", "4000", "--seed", "2", "--db", str(db), "--json").json()
    backup = tmp_path / "backup.db"
    r = invoke("db", "backup", str(backup), "--db", str(db), "--json")
    assert r.exit_code == 0, r.stderr
    rows = r.json()["rows"]
    assert rows["trades"] == run["trades"] and rows["equity"] == 4000
    fresh = tmp_path / "fresh.db"
    r = invoke("db", "restore", str(backup), "--db", str(fresh), "--json")
    assert r.exit_code == 0, r.stderr
    assert r.json()["rows"] == rows


@pytest.mark.postgres
def test_db_round_trip_postgres(data_dir: Path, tmp_path: Path, postgres_url: str):
    run = invoke("run", "--bars", "3000", "--seed", "4", "--db", postgres_url, "--json")
    assert run.exit_code == 0, run.stderr
    backup = tmp_path / "pg.dump"
    r = invoke("db", "backup", str(backup), "--db", postgres_url, "--json")
    assert r.exit_code == 0, r.stderr
    rows = r.json()["rows"]
    assert rows["runs"] == 1 and rows["equity"] == 3000
    into = tmp_path / "from-pg.db"
    r = invoke("db", "restore", str(backup), "--db", str(into), "--json")
    assert r.exit_code == 0, r.stderr
    assert r.json()["rows"] == rows


def test_postgres_url_from_environment_is_used_and_redacted(data_dir: Path):
    r = invoke("run", "--bars", "10", "--json",
               env={"POSTGRES_URL": "postgresql://u:pw-canary-5@127.0.0.1:1/test"})
    assert r.exit_code == ExitCode.STORE
    assert "pw-canary-5" not in r.stdout + r.stderr


def test_restore_of_a_corrupt_file_exits_store_error(data_dir: Path, tmp_path: Path):
    bad = tmp_path / "bad.db"
    bad.write_bytes(b"not a backup at all")
    r = invoke("db", "restore", str(bad), "--db", str(tmp_path / "x.db"))
    assert r.exit_code == ExitCode.STORE
    assert "Traceback" not in r.stderr
