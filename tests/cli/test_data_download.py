"""`supreme data download` against a real FakeExchange on 127.0.0.1 (`--endpoint`).

The fake serves 3,000 generated 1m candles from 2024-01-01 00:00 UTC.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.testing.fake_exchange import FakeExchange
from supreme_cli.exit_codes import ExitCode
from tests.cli.helpers import invoke

pytest.importorskip("ccxt")

KLINES = "/api/v3/klines"
JAN1 = 1_704_067_200_000  # 2024-01-01T00:00:00Z
MIN = 60_000




def download(fx: FakeExchange, *args: str) -> tuple[int, str, str]:
    r = invoke("data", "download", "--endpoint", fx.base_url, "--symbol", "ETH-USDT",
               "--timeframe", "1m", *args)
    return r.exit_code, r.stdout, r.stderr


def test_download_resume_and_replay(fx: FakeExchange, data_dir: Path, tmp_path: Path) -> None:
    path = tmp_path / "ETH_USDT-1m.json"
    code, out, err = download(fx, "--since", "2024-01-01", "--until", "2024-01-01T12:00",
                              "--output", str(path), "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["rows"] == doc["added"] == 720
    assert doc["resumed_from"] is None and doc["gaps"] == 0
    assert doc["first_ts"] == JAN1 and doc["last_ts"] == JAN1 + 719 * MIN
    assert doc["hint"] == f"supreme run --feed replay --data {path}"
    assert "━" not in err  # no progress bar with --json
    rows = json.loads(path.read_text())
    assert [r[0] for r in rows] == list(range(JAN1, JAN1 + 720 * MIN, MIN))

    fx.clear_requests()
    code, out, err = download(fx, "--since", "2024-01-01", "--output", str(path), "--json")
    assert code == 0, err
    doc = json.loads(out)
    starts = [int(r.query["startTime"]) for r in fx.requests if r.path == KLINES]
    assert starts and min(starts) == JAN1 + 720 * MIN  # after the file's last candle
    assert doc["resumed_from_ms"] == JAN1 + 720 * MIN
    assert doc["rows"] == fx.n_candles and doc["added"] == fx.n_candles - 720
    assert doc["duplicates_dropped"] == 0

    r = invoke("run", "--feed", "replay", "--data", str(path), "--json")
    assert r.exit_code == 0, r.stderr
    assert r.json()["bars"] == fx.n_candles
    assert r.json()["data"]["issues"] == {}


def test_default_output_is_under_the_data_dir_and_the_summary_has_a_hint(
        fx: FakeExchange, data_dir: Path) -> None:
    code, out, err = download(fx, "--since", "2024-01-02T00:00:00Z", "--until",
                              "2024-01-02T01:00:00+00:00")
    assert code == 0, err
    target = data_dir / "data" / "binance" / "ETH_USDT-1m.json"
    assert len(json.loads(target.read_text())) == 60
    assert "supreme run --feed replay --data" in out
    assert "resumed from" in out and "duplicates dropped" in out


@pytest.mark.parametrize("args", [
    ("--since", "2024-13-01"),
    ("--since", "yesterday"),
    ("--since", "2001-01-01"),
    ("--since", "2999-01-01"),
    ("--since", "2024-01-02", "--until", "2024-01-01"),
    ("--since", "2024-01-01", "--timeframe", "7m"),
    ("--since", "2024-01-01", "--exchange", "kraken"),  # --endpoint is Binance-only
])
def test_bad_arguments_exit_2_without_a_request(fx: FakeExchange, data_dir: Path,
                                                args: tuple[str, ...]) -> None:
    code, out, err = download(fx, *args, "--json")
    assert code == ExitCode.USAGE, err
    assert json.loads(out)["error"]["exit_code"] == 2
    assert not [r for r in fx.requests if r.path == KLINES]
