"""The run pipeline against a real store: persistence, resume, and crash safety."""

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from engine.pipeline import Run, RunSpec
from engine.store import open_store


class Recorder:
    def __init__(self):
        self.trades, self.warnings, self.progress, self.started = [], [], [], []

    def on_start(self, info):
        self.started.append(info)

    def on_progress(self, snapshot):
        self.progress.append(snapshot)

    def on_trade(self, trade):
        self.trades.append(trade)

    def on_warning(self, message):
        self.warnings.append(message)


def spec(tmp_path: Path, **kw) -> RunSpec:
    base = dict(symbol="ETH-USDT", feed="sim", seed=5, bars=8000, data_dir=tmp_path,
                store_url=str(tmp_path / "s.db"))
    base.update(kw)
    return RunSpec(**base)


def test_every_closed_trade_reaches_the_store_and_matches_the_summary(tmp_path):
    rec = Recorder()
    summary = Run(spec(tmp_path), rec).execute()
    assert summary["trades"] > 0
    with open_store(str(tmp_path / "s.db"), tmp_path) as store:
        trades = store.trades_for_run(summary["run_id"])
        run = store.get_run(summary["run_id"])
    assert len(trades) == summary["trades"] == len(rec.trades)
    assert sum(t.pnl for t in trades) == pytest.approx(summary["pnl"], abs=1e-6)
    assert run.status == "finished"
    assert run.summary["latency_us"]["p99"] == summary["latency_us"]["p99"]


def test_request_stop_finishes_cleanly(tmp_path):
    run = Run(spec(tmp_path, bars=None, speed=1000.0, interval_s=1.0))
    import threading

    threading.Timer(0.3, run.request_stop).start()
    summary = run.execute()
    assert summary["status"] == "interrupted" and summary["stopped_by"] == "signal"
    assert summary["bars"] >= 1


def test_replay_reports_gap_as_warning_and_keeps_going(tmp_path, shared_data):
    rec = Recorder()
    summary = Run(spec(tmp_path, symbol=None, feed="replay", bars=None,
                       data_file=str(shared_data / "ETH_USDT-5m.json")), rec).execute()
    assert summary["bars"] == 13217
    assert summary["data"]["issues"] == {"gap": 1}
    assert any("missing bar" in w for w in rec.warnings)


def _final_position_run(tmp_path):
    """A resumable run short enough to end while holding a position."""
    for bars in range(300, 8000, 97):
        summary = Run(spec(tmp_path, bars=bars, resume=True)).execute()
        with open_store(str(tmp_path / "s.db"), tmp_path) as store:
            pos = store.load_position("ETH-USDT", "paper")
        if pos is not None and pos.qty > 0:
            return summary, pos
    pytest.fail("no run ended in a position")


def test_resumable_run_restores_its_open_position(tmp_path):
    _, pos = _final_position_run(tmp_path)
    rec = Recorder()
    Run(spec(tmp_path, bars=1, resume=True, seed=99), rec).execute()
    assert any("resumed open position" in w for w in rec.warnings)
    assert f"{pos.qty:.6g}" in next(w for w in rec.warnings if "resumed" in w)


CRASH_SCRIPT = textwrap.dedent("""
    import sys
    from pathlib import Path
    from engine.pipeline import Run, RunSpec

    class Print:
        def on_start(self, info): pass
        def on_progress(self, snap): pass
        def on_warning(self, msg): pass
        def on_trade(self, trade):
            print(trade["id"], flush=True)

    folder = Path(sys.argv[1])
    Run(RunSpec(symbol="ETH-USDT", feed="sim", seed=3, bars=None, speed=20000.0,
                interval_s=1.0, data_dir=folder, store_url=sys.argv[2], resume=True),
        Print()).execute()
""")


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_sigkill_loses_no_closed_trade_and_restart_resumes(tmp_path, backend, request):
    url = str(tmp_path / "crash.db") if backend == "sqlite" else request.getfixturevalue(
        "postgres_url")
    script = tmp_path / "crash.py"
    script.write_text(CRASH_SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    proc = subprocess.Popen([sys.executable, str(script), str(tmp_path), url],
                            stdout=subprocess.PIPE, text=True, env=env)
    seen = []
    deadline = time.monotonic() + 60
    while len(seen) < 8 and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        seen.append(line.strip())
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    assert len(seen) >= 8, "the run produced too few trades before the deadline"
    with open_store(url, tmp_path) as store:
        stored = {t.id for run in store.list_runs() for t in store.trades_for_run(run.id)}
        assert set(seen) <= stored
        assert store.integrity_check() == "ok"
        counts = store.counts()
        pos = store.load_position("ETH-USDT", "paper")
    rec = Recorder()
    Run(spec(tmp_path, bars=1, resume=True, store_url=url), rec).execute()
    if pos is not None and pos.qty > 0:
        assert any("resumed open position" in w for w in rec.warnings)
    with open_store(url, tmp_path) as store:
        after = store.counts()
        assert after["trades"] >= counts["trades"]
        assert store.integrity_check() == "ok"


def test_live_pacing_jitter_stays_inside_30_to_60_s_for_45():
    import random

    from engine.pipeline import jittered_interval

    rng = random.Random(0)
    waits = [jittered_interval(45.0, rng) for _ in range(10_000)]
    assert 30.0 <= min(waits) < 31.0
    assert 59.0 < max(waits) <= 60.0


def test_snapshots_render_in_the_live_view(tmp_path):
    from rich.console import Console

    from supreme_cli.render import live_view

    rec = Recorder()
    Run(spec(tmp_path, bars=None, duration_s=0.6, speed=200.0, interval_s=1.0), rec).execute()
    assert rec.progress, "a paced run reports progress"
    console = Console(record=True, width=100)
    for snap in rec.progress[:1] + rec.progress[-1:]:
        console.print(live_view(snap, "ETH-USDT"))
    text = console.export_text()
    assert "price" in text and "latency p50 / p99" in text
