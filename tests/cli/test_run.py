import sqlite3
from pathlib import Path

import pytest

from supreme_cli.exit_codes import ExitCode
from tests.cli.helpers import invoke

SUMMARY_KEYS = {"bars", "signals", "trades", "win_rate", "pnl", "max_drawdown", "latency_us",
                "rss_mib"}


def test_sim_run_json_is_one_document_with_documented_keys(data_dir: Path):
    r = invoke("run", "--bars", "3000", "--seed", "3", "--json")
    assert r.exit_code == 0, r.stderr
    doc = r.json()
    assert doc.keys() >= SUMMARY_KEYS
    assert doc["bars"] == 3000
    assert set(doc["latency_us"]) >= {"mean", "p50", "p95", "p99", "max"}
    assert 0 < doc["latency_us"]["p50"] <= doc["latency_us"]["p99"] <= doc["latency_us"]["max"]
    assert doc["stopped_by"] == "bars"
    assert doc["rss_mib"] > 0


def test_sim_run_is_deterministic_for_a_seed(data_dir: Path):
    a = invoke("run", "--bars", "4000", "--seed", "11", "--json").json()
    b = invoke("run", "--bars", "4000", "--seed", "11", "--json").json()
    c = invoke("run", "--bars", "4000", "--seed", "12", "--json").json()
    keys = ("signals", "signals_filtered", "trades", "wins", "pnl", "max_drawdown")
    assert [a[k] for k in keys] == [b[k] for k in keys]
    assert [a[k] for k in keys] != [c[k] for k in keys]


def test_run_persists_run_trades_equity_and_summary(data_dir: Path):
    db = data_dir / "t.db"
    doc = invoke("run", "--bars", "6000", "--seed", "5", "--db", str(db), "--json").json()
    con = sqlite3.connect(db)
    run_id, status, summary = con.execute(
        "SELECT id, status, summary_json FROM runs").fetchone()
    assert run_id == doc["run_id"] and status == "finished"
    assert '"latency_us"' in summary
    (trades,) = con.execute("SELECT COUNT(*) FROM trades WHERE run_id=?", (run_id,)).fetchone()
    assert trades == doc["trades"]
    (pnl,) = con.execute("SELECT COALESCE(SUM(pnl), 0) FROM trades").fetchone()
    assert pnl == pytest.approx(doc["pnl"], abs=1e-6)
    (equity_rows,) = con.execute("SELECT COUNT(*) FROM equity").fetchone()
    assert equity_rows == doc["bars"]
    (signals,) = con.execute("SELECT COUNT(*) FROM signals WHERE fired").fetchone()
    assert signals == doc["signals"]
    assert con.execute("PRAGMA integrity_check").fetchone() == ("ok",)


def test_default_store_lives_under_the_data_dir(data_dir: Path):
    r = invoke("run", "--bars", "500", "--json")
    assert r.exit_code == 0
    assert (data_dir / "supreme.db").exists()


@pytest.mark.parametrize("symbol", ["BTC/USDT';DROP TABLE trades;--", "../x", "", "X" * 10_000])
def test_bad_symbols_exit_2_and_touch_nothing(data_dir: Path, symbol: str):
    r = invoke("run", "--symbol", symbol, "--bars", "10")
    assert r.exit_code == ExitCode.USAGE
    assert "invalid symbol" in r.stderr
    assert "Traceback" not in r.stderr
    assert not data_dir.exists()


@pytest.mark.parametrize("duration", ["-5m", "0", "abc", "99999999999999999999d"])
def test_bad_durations_exit_2(data_dir: Path, duration: str):
    r = invoke("run", "--duration", duration)
    assert r.exit_code == ExitCode.USAGE
    assert "invalid duration" in r.stderr
    assert not data_dir.exists()


def test_bad_value_with_json_prints_one_error_document(data_dir: Path):
    r = invoke("run", "--symbol", "../x", "--json")
    assert r.exit_code == ExitCode.USAGE
    assert r.json()["error"]["exit_code"] == 2


def test_live_mode_refuses_without_keys_and_confirmation(data_dir: Path):
    r = invoke("run", "--mode", "live", "--bars", "10")
    assert r.exit_code == ExitCode.USAGE
    assert "exchange layer" in r.stderr


def test_symbol_forms_are_accepted(data_dir: Path):
    for form in ("ETH/USDT", "ETHUSDT", "eth-usdt"):
        r = invoke("run", "--symbol", form, "--bars", "100", "--json")
        assert r.exit_code == 0
        assert r.json()["symbol"] == "ETH-USDT"


def test_duration_is_wall_clock(data_dir: Path):
    r = invoke("run", "--duration", "1s", "--json")
    assert r.exit_code == 0
    doc = r.json()
    assert doc["stopped_by"] == "duration"
    assert 0.9 <= doc["wall_s"] < 3.0


def test_paced_run_waits_between_bars(data_dir: Path):
    # INTERVAL_SECONDS=3 at 30x is about 0.1 s a bar (jittered ±1/3): 5 bars take ~0.4 s.
    r = invoke("run", "--bars", "5", "--speed", "30x", "--json",
               env={"INTERVAL_SECONDS": "3"})
    assert r.exit_code == 0
    assert 0.25 <= r.json()["wall_s"] < 2.0


def test_global_options_work_before_the_command(data_dir: Path):
    r = invoke("--json", "run", "--bars", "200")
    assert r.exit_code == 0
    assert r.json()["bars"] == 200


def test_profile_applies_and_flags_win(data_dir: Path):
    r = invoke("run", "--profile", "ci", "--json")
    assert r.exit_code == 0
    assert r.json()["bars"] == 5000
    r = invoke("run", "--profile", "ci", "--bars", "300", "--json")
    assert r.json()["bars"] == 300
