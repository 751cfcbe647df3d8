import json
from pathlib import Path

import pytest

from supreme_cli.exit_codes import ExitCode
from tests.cli.helpers import invoke

REAL_FILES = ["ETH_USDT-1m.json", "ETH_USDT-5m.json", "ETH_USDT-1h.json", "BTC_USDT-1m.json",
              "ETHUSDT-1m-2022-08-14.zip", "ETHUSDT-1m-2022-08-15.zip"]


@pytest.mark.realdata
@pytest.mark.parametrize("name", REAL_FILES)
def test_replay_runs_on_every_real_file(data_dir: Path, shared_data: Path, name: str):
    path = shared_data / name
    r = invoke("run", "--feed", "replay", "--data", str(path), "--json")
    assert r.exit_code == 0, r.stderr
    doc = r.json()
    assert doc["stopped_by"] == "end_of_data"
    assert doc["bars"] == doc["data"]["rows"]
    assert doc["symbol"] == ("BTC-USDT" if name.startswith("BTC") else "ETH-USDT")
    if doc["data"]["issues"].get("gap"):
        assert "missing bar" in r.stderr


def _rows(n=200, start=1_700_000_000_000):
    price = 2000.0
    rows = []
    for i in range(n):
        price *= 1.0 + (0.001 if i % 7 < 4 else -0.0012)
        rows.append([start + i * 60_000, price, price * 1.001, price * 0.999, price, 10.0])
    return rows


@pytest.mark.parametrize(("corrupt", "kind"), [
    (lambda rows: rows[50].__setitem__(4, float("nan")), "nonfinite"),
    (lambda rows: rows[50].__setitem__(4, -1.0), "nonpositive"),
    (lambda rows: rows[50].pop(), "column"),
    (lambda rows: rows.__setitem__(50, list(rows[49])), "duplicate"),
])
def test_corrupt_replay_file_exits_3_with_its_position(data_dir: Path, tmp_path: Path,
                                                       corrupt, kind):
    rows = _rows()
    corrupt(rows)
    path = tmp_path / "ETH_USDT-1m.json"
    path.write_text(json.dumps(rows).replace("NaN", "NaN"))
    r = invoke("run", "--feed", "replay", "--data", str(path))
    assert r.exit_code == ExitCode.DATA, r.stderr
    assert "row 51" in r.stderr
    assert "Traceback" not in r.stderr
    skipped = invoke("run", "--feed", "replay", "--data", str(path), "--policy", "skip",
                     "--json")
    assert skipped.exit_code == 0, skipped.stderr
    assert skipped.json()["bars"] < len(rows)
    assert "row 51" in skipped.stderr


def test_missing_replay_file_is_a_data_error(data_dir: Path, tmp_path: Path):
    r = invoke("run", "--feed", "replay", "--data", str(tmp_path / "nope.json"))
    assert r.exit_code == ExitCode.DATA
    r = invoke("run", "--feed", "replay")
    assert r.exit_code == ExitCode.USAGE
    assert "--data" in r.stderr
