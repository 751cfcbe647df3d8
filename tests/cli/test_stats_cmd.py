"""`supreme stats` and `supreme stats ab` through the CLI, figures checked independently."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from engine.store import open_store
from tests.cli.helpers import invoke


@pytest.fixture
def one_run(data_dir: Path) -> str:
    r = invoke("run", "--feed", "sim", "--bars", "4000", "--seed", "11", "--json")
    assert r.exit_code == 0, r.stderr
    return str(r.json()["run_id"])


def test_stats_of_the_newest_run_match_its_equity(data_dir: Path, one_run: str) -> None:
    r = invoke("stats", "--json")
    assert r.exit_code == 0, r.stderr
    doc = r.json()
    assert doc["source"]["run_id"] == one_run
    store = open_store(None, data_dir)
    try:
        equity = np.array([e.equity for e in store.equity_for_run(one_run)])
        stored = store.stats_for_run(one_run)
    finally:
        store.close()
    rets = equity[1:] / equity[:-1] - 1
    sharpe = rets.mean() / rets.std(ddof=1) * math.sqrt(525_600)
    assert doc["metrics"]["sharpe"] == pytest.approx(sharpe, rel=1e-9)
    wealth = np.concatenate(([1.0], np.cumprod(1 + rets)))
    mdd = float(np.max(1 - wealth / np.maximum.accumulate(wealth)))
    assert doc["metrics"]["max_drawdown"] == pytest.approx(mdd, rel=1e-9)
    assert 0 <= doc["metrics"]["max_drawdown"] < 1
    assert stored["metrics"]["metrics"]["sharpe"] == doc["metrics"]["sharpe"]


def test_stats_of_a_returns_csv_anyone_can_check(data_dir: Path, tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    rets = rng.normal(0.0005, 0.01, 500)
    lines = ["timestamp,return"] + [
        f"2024-01-{1 + i // 24:02d}T{i % 24:02d}:00:00Z,{float(x)!r}" for i, x in enumerate(rets)]
    path = tmp_path / "r.csv"
    path.write_text("\n".join(lines) + "\n")
    r = invoke("stats", "--returns", str(path), "--json")
    assert r.exit_code == 0, r.stderr
    m = r.json()["metrics"]
    assert m["periods_per_year"] == pytest.approx(8760)
    assert m["sharpe"] == pytest.approx(rets.mean() / rets.std(ddof=1) * math.sqrt(8760))
    assert m["periods"] == 500


def test_baseline_comparison_states_each_null_and_a_verdict(data_dir: Path,
                                                            one_run: str) -> None:
    r = invoke("stats", "--run", one_run[:10], "--baseline", "random", "--resamples", "999",
               "--json")
    assert r.exit_code == 0, r.stderr
    doc = r.json()
    tests = doc["comparison"]["tests"]
    assert len(tests) >= 4
    assert all(t["null"] and 0.0 <= t["p_value"] <= 1.0 for t in tests if t["p_value"] is not None)
    assert doc["comparison"]["primary"]["null"]
    assert doc["verdict"]
    assert doc["baseline"]["metrics"]["exposure"] == pytest.approx(
        doc["metrics"]["exposure"])  # matched exposure
    human = invoke("stats", "--run", one_run, "--baseline", "buy-and-hold",
                   "--resamples", "999")
    assert human.exit_code == 0, human.stderr
    assert "verdict test (pre-declared)" in human.stdout and "null" in human.stdout


def test_report_and_walk_forward(data_dir: Path, one_run: str) -> None:
    r = invoke("stats", "--walk-forward", "3", "--report", "--json")
    assert r.exit_code == 0, r.stderr
    doc = r.json()
    assert Path(doc["report_path"]).is_file()
    assert "walk_forward" in doc


@pytest.mark.parametrize(("args", "code"), [
    (("--run", "nope"), 3),
    (("--run", "x", "--returns", "y.csv"), 2),
    (("--returns", "/nonexistent.csv"), 3),
    (("--baseline", "magic"), 2),
])
def test_bad_input_exits_with_its_code(data_dir: Path, one_run: str, args: tuple[str, ...],
                                       code: int) -> None:
    r = invoke("stats", *args, "--json")
    assert r.exit_code == code, r.stdout + r.stderr


def test_stats_with_an_empty_store_says_so(data_dir: Path) -> None:
    r = invoke("stats", "--json")
    assert r.exit_code == 3
    assert "no finished run" in r.json()["error"]["message"]


def test_ab_runs_both_profiles_on_the_same_data_and_stores_the_result(data_dir: Path) -> None:
    r = invoke("stats", "ab", "--candidate", "scalp-1m", "--baseline", "conservative",
               "--bars", "3000", "--seed", "4", "--resamples", "999", "--json")
    assert r.exit_code == 0, r.stderr
    doc = r.json()
    cand, base = doc["candidate"]["run_id"], doc["baseline"]["run_id"]
    assert cand != base and doc["periods"] == 2999
    assert doc["verdict"].startswith(("No evidence", "scalp-1m", "candidate"))
    store = open_store(None, data_dir)
    try:
        runs = {run.id: run for run in store.list_runs()}
        assert runs[cand].config["profile"] == "scalp-1m"
        assert runs[base].config["profile"] == "conservative"
        assert runs[cand].config["seed"] == runs[base].config["seed"]
        assert f"ab:{base}" in store.stats_for_run(cand)
    finally:
        store.close()


def test_ab_side_by_side_on_the_live_feed(data_dir: Path) -> None:
    pytest.importorskip("ccxt")
    from engine.testing.fake_exchange import FakeExchange

    with FakeExchange(start=-400, ws_interval_s=0.03) as fx:
        r = invoke("stats", "ab", "--candidate", "scalp-1m", "--baseline", "conservative",
                   "--feed", "exchange", "--endpoint", fx.base_url, "--duration", "4",
                   "--resamples", "999", "--json", env={"INTERVAL_SECONDS": "0.1"})
    assert r.exit_code == 0, r.stderr
    doc = r.json()
    assert doc["feed"] == "exchange"
    assert doc["periods"] >= 10  # both saw the same closed candles, paired by timestamp
    assert doc["comparison"]["primary"]["p_value"] is not None


@pytest.mark.realdata
def test_stats_of_a_data_file_replays_it_first(data_dir: Path, shared_data: Path,
                                               tmp_path: Path) -> None:
    import json

    rows = json.loads((shared_data / "ETH_USDT-1m.json").read_text())[:3000]
    data = tmp_path / "ETH_USDT-1m.json"
    data.write_text(json.dumps(rows))
    r = invoke("stats", "--data", str(data), "--baseline", "buy-and-hold", "--trials", "10",
               "--resamples", "999", "--json")
    assert r.exit_code == 0, r.stderr
    doc = r.json()
    assert doc["metrics"]["periods"] == 2999
    assert doc["metrics"]["n_trials"] == 10
    psr, dsr = doc["metrics"]["psr"], doc["metrics"]["dsr"]
    assert psr is None or dsr <= psr  # deflating for 10 variants never helps
