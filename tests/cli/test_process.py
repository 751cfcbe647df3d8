"""The installed `supreme` executable as a user's shell runs it: signals, help, imports."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

BIN = Path(sys.executable).with_name("supreme")


def _start(args, data_dir: Path) -> subprocess.Popen:
    env = {**os.environ, "SUPREME_DATA_DIR": str(data_dir), "INTERVAL_SECONDS": "1"}
    env.pop("POSTGRES_URL", None)
    return subprocess.Popen([str(BIN), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)


def _wait_for_db(data_dir: Path) -> None:
    deadline = time.monotonic() + 20
    while not (data_dir / "supreme.db").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_first_signal_finishes_the_bar_flushes_and_exits_0(tmp_path, sig):
    proc = _start(["run", "--speed", "20x", "--json"], tmp_path)
    _wait_for_db(tmp_path)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    summary = json.loads(out)
    assert summary["status"] == "interrupted"
    assert summary["stopped_by"] == "signal"
    import sqlite3

    con = sqlite3.connect(tmp_path / "supreme.db")
    status, stored_bars = con.execute(
        "SELECT status, (SELECT COUNT(*) FROM equity) FROM runs").fetchone()
    assert status == "interrupted"
    assert stored_bars == summary["bars"]


def test_second_ctrl_c_exits_130(monkeypatch):
    # In-process, because two signals sent to a child race its orderly exit.
    from supreme_cli import signals

    stops, exits = [], []
    monkeypatch.setattr(signals.os, "_exit", exits.append)
    previous = signals.install_signal_handlers(lambda: stops.append(1))
    try:
        os.kill(os.getpid(), signal.SIGINT)
        assert stops == [1] and exits == []
        os.kill(os.getpid(), signal.SIGINT)
        assert exits == [130]
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def test_help_is_light_and_lists_every_command():
    code = ("import sys; from supreme_cli.main import app; "
            "heavy = [m for m in ('numpy', 'numba', 'psycopg', 'redis', 'ccxt', 'scipy', "
            "'engine.pipeline', 'engine.store', 'rich.console') if m in sys.modules]; "
            "print(','.join(heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == ""
    r = subprocess.run([str(BIN), "--help"], capture_output=True, text=True)
    assert r.returncode == 0
    for command in ("run", "config", "db"):
        assert command in r.stdout


def test_version():
    r = subprocess.run([str(BIN), "--version"], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.startswith("supreme ")


def test_a_sim_run_imports_no_numpy_numba_or_psycopg(tmp_path):
    code = ("import sys; from supreme_cli.main import app; "
            "from typer.testing import CliRunner; "
            "r = CliRunner().invoke(app, ['run', '--bars', '300', '--json']); "
            "assert r.exit_code == 0, r.output; "
            "print(','.join(m for m in ('numpy', 'numba', 'psycopg', 'redis', 'ccxt') "
            "if m in sys.modules))")
    env = {**os.environ, "SUPREME_DATA_DIR": str(tmp_path)}
    env.pop("POSTGRES_URL", None)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=env, check=True)
    assert out.stdout.strip() == ""
