"""`supreme report --daily` against a real SQLite store filled by real sim runs."""

from __future__ import annotations

import json
import math
import os
import shutil
import sqlite3
import subprocess
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from supreme_cli.main import app
from tests.cli.helpers import Result, invoke
from tests.conftest import _missing

DAY = date(2026, 3, 10)
OTHER = date(2026, 3, 9)
Stored = tuple[Path, list[str], list[str]]
FILES = ("supreme-daily-2026-03-10.md", "supreme-daily-2026-03-10.html",
         "supreme-daily-2026-03-10.json")


def _register() -> None:
    # Until the lead registers `report` in supreme_cli/commands/__init__.py.
    if not any(c.name == "report" for c in app.registered_commands):
        from supreme_cli.commands import report

        app.command("report", help=report.HELP, epilog=report.EPILOG)(report.report)


_register()


def _ms(day: date, hour: int) -> int:
    return int(datetime(day.year, day.month, day.day, hour, tzinfo=UTC).timestamp() * 1000)


@pytest.fixture(scope="module")
def store_dir(tmp_path_factory: pytest.TempPathFactory) -> Stored:
    from engine.pipeline import Run, RunSpec

    folder = tmp_path_factory.mktemp("report_store")
    ids = []
    for seed in (1, 2, 3):
        run = Run(RunSpec(symbol="ETH-USDT", feed="sim", bars=2000, seed=seed,
                          data_dir=folder))
        run.execute()
        ids.append(run.run_id)
    on_day, off_day = ids[:2], ids[2:]
    with sqlite3.connect(folder / "supreme.db") as conn:
        conn.execute("UPDATE runs SET started_at_ms = ? WHERE id = ?", (_ms(DAY, 1), ids[0]))
        conn.execute("UPDATE runs SET started_at_ms = ? WHERE id = ?", (_ms(DAY, 23), ids[1]))
        conn.execute("UPDATE runs SET started_at_ms = ? WHERE id = ?", (_ms(OTHER, 12), ids[2]))
    return folder, on_day, off_day


def _env(folder: Path, **extra: str) -> dict[str, str]:
    return {"SUPREME_DATA_DIR": str(folder), "POSTGRES_URL": "", "REDIS_URL": "", **extra}


def _report(folder: Path, out: Path, *args: str,
            env: dict[str, str] | None = None) -> Result:
    return invoke("report", "--daily", "--date", DAY.isoformat(), "--output", str(out),
                  *args, env=env or _env(folder))


def test_numbers_match_the_store_and_only_day_d(store_dir: Stored, tmp_path: Path) -> None:
    folder, on_day, off_day = store_dir
    result = _report(folder, tmp_path / "r", "--json")
    assert result.exit_code == 0, result.stdout + result.stderr
    doc = result.json()
    assert [r["run_id"] for r in doc["runs"]] == on_day
    assert off_day[0] not in result.stdout
    with sqlite3.connect(folder / "supreme.db") as conn:
        marks = ",".join("?" * len(on_day))
        n, pnl, wins = conn.execute(
            f"SELECT COUNT(*), COALESCE(SUM(pnl), 0), COALESCE(SUM(pnl > 0), 0) FROM trades "
            f"WHERE run_id IN ({marks})", on_day).fetchone()
        per_run = {rid: conn.execute("SELECT COUNT(*), COALESCE(SUM(pnl), 0) FROM trades "
                                     "WHERE run_id = ?", (rid,)).fetchone() for rid in on_day}
        points = conn.execute(f"SELECT COUNT(*) FROM equity WHERE run_id IN ({marks})",
                              on_day).fetchone()[0]
        last = {rid: conn.execute("SELECT equity FROM equity WHERE run_id = ? ORDER BY ts_ms "
                                  "DESC LIMIT 1", (rid,)).fetchone()[0] for rid in on_day}
    totals = doc["totals"]
    assert totals["runs"] == 2 and totals["trades"] == n and totals["wins"] == wins
    assert math.isclose(totals["pnl"], pnl, rel_tol=1e-9, abs_tol=1e-9)
    assert totals["win_rate"] == (wins / n if n else None)
    for r in doc["runs"]:
        assert (r["trades"], pytest.approx(r["pnl"])) == (per_run[r["run_id"]][0],
                                                            per_run[r["run_id"]][1])
        assert r["final_equity"] == last[r["run_id"]]
        assert r["metrics"]["trades"] == r["trades"]
        assert r["latency_us"]["p95"] > 0
    assert doc["equity_curve"]["points"] == points - len(on_day) + 1
    assert {c["rule"] for c in doc["checks"]} >= {"max_latency_p95_us", "max_drawdown",
                                                   "min_win_rate", "failed_validations"}
    written = json.loads((tmp_path / "r" / FILES[2]).read_text())
    assert written["totals"] == totals
    md = (tmp_path / "r" / FILES[0]).read_text()
    assert on_day[0][:12] in md and off_day[0][:12] not in md


def test_idempotent_byte_identical_files(store_dir: Stored, tmp_path: Path) -> None:
    folder, _, _ = store_dir
    out = tmp_path / "r"
    assert _report(folder, out, "--quiet").exit_code == 0
    first = {name: (out / name).read_bytes() for name in FILES}
    assert _report(folder, out, "--quiet").exit_code == 0
    assert {name: (out / name).read_bytes() for name in FILES} == first
    assert sorted(p.name for p in out.iterdir()) == sorted(FILES)  # no temp files left


def test_quiet_success_prints_nothing(store_dir: Stored, tmp_path: Path) -> None:
    folder, _, _ = store_dir
    result = _report(folder, tmp_path / "r", "--quiet")
    assert result.exit_code == 0
    assert result.stdout == "" and result.stderr == ""


def test_breach_exits_9_and_still_writes(store_dir: Stored, tmp_path: Path) -> None:
    folder, on_day, _ = store_dir
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    (profiles / "tight.toml").write_text("[alerts]\nmax_drawdown = 0.000001\n")
    env = _env(folder, SUPREME_PROFILE_DIR=str(profiles))
    result = _report(folder, tmp_path / "r", "--quiet", "--profile", "tight", env=env)
    assert result.exit_code == 9, result.stdout + result.stderr
    assert result.stdout == "" and "max_drawdown" in result.stderr
    doc = json.loads((tmp_path / "r" / FILES[2]).read_text())
    breach = next(c for c in doc["breaches"] if c["rule"] == "max_drawdown")
    assert breach["threshold"] == 0.000001 and breach["measured"] > 0.000001
    assert set(breach["run_ids"]) <= set(on_day) and breach["run_ids"]
    assert all((tmp_path / "r" / name).is_file() for name in FILES)


def test_empty_store_is_no_data(tmp_path: Path) -> None:
    result = _report(tmp_path / "data", tmp_path / "r")
    assert result.exit_code == 10
    assert "no data" in result.stderr and "2026-03-10" in result.stderr
    assert not (tmp_path / "r").exists()


def test_other_day_only_is_no_data_and_daily_is_required(store_dir: Stored, tmp_path: Path) -> None:
    folder, _, _ = store_dir
    result = invoke("report", "--daily", "--date", "2026-03-11", "--output", str(tmp_path),
                    "--json", env=_env(folder))
    assert result.exit_code == 10
    assert result.json()["error"]["exit_code"] == 10
    assert invoke("report", env=_env(folder)).exit_code == 2
    since = _report(folder, tmp_path / "s", "--since", "2d", "--json")
    assert since.exit_code == 0
    assert since.json()["totals"]["runs"] == 3


@pytest.mark.slow
def test_html_renders_in_headless_chromium(store_dir: Stored, tmp_path: Path) -> None:
    browser = shutil.which("chromium") or ("/usr/bin/chromium"
                                           if os.path.exists("/usr/bin/chromium") else None)
    if browser is None:
        _missing("chromium (apt-get install chromium)", "SUPREME_REQUIRE_SERVICES")
    folder, _, _ = store_dir
    assert _report(folder, tmp_path / "r", "--quiet").exit_code == 0
    page = tmp_path / "r" / FILES[1]
    proc = subprocess.run(
        [str(browser), "--headless=new", "--no-sandbox", "--disable-gpu",
         "--enable-logging=stderr", "--v=0", f"--user-data-dir={tmp_path / 'profile'}",
         "--virtual-time-budget=3000", "--dump-dom", page.as_uri()],
        capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    dom = proc.stdout
    assert 'data-rendered="yes"' in dom
    for chart in ("equity-chart", "drawdown-chart", "latency-chart"):
        assert f'id="{chart}"' in dom
    assert dom.count("<polyline") >= 5
    console = [line for line in proc.stderr.splitlines() if "CONSOLE" in line]
    assert console == [], console
