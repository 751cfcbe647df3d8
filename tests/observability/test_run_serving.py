"""`supreme run` with the server, JSON logs and the stats line; two runs side by side on
the same Redis and PostgreSQL."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.cli.helpers import invoke

CANARY = "canary-token-" + uuid.uuid4().hex


def test_a_non_loopback_bind_without_a_token_refuses_to_start(data_dir: Path) -> None:
    r = invoke("run", "--bars", "10", "--metrics-port", "0", "--metrics-addr", "0.0.0.0",
               "--json")
    assert r.exit_code == 2
    assert "SUPREME_API_TOKEN" in r.json()["error"]["message"]


def test_json_logs_carry_the_stats_line_and_never_the_token(data_dir: Path) -> None:
    env = {"SUPREME_API_TOKEN": CANARY, "SUPREME_STATS_EVERY": "0.01",
           "INTERVAL_SECONDS": "0.05"}
    r = invoke("run", "--bars", "30", "--speed", "1x", "--metrics-port", "0",
               "--log-format", "json", "--no-live", "--json", env=env)
    assert r.exit_code == 0, r.stderr
    lines = [json.loads(line) for line in r.stderr.splitlines() if line.strip()]
    stats = [line for line in lines if line["msg"] == "stats"]
    assert stats and {"ticks", "latency_p95_us", "cache_hit_rate", "win_rate",
                      "rss_mib"} <= set(stats[-1])
    assert any(line["msg"] == "serving" for line in lines)
    assert CANARY not in r.stdout + r.stderr


def _run_proc(tmp: Path, symbol: str, env: dict[str, str]) -> subprocess.Popen[str]:
    exe = Path(sys.executable).with_name("supreme")
    return subprocess.Popen(
        [str(exe), "run", "--symbol", symbol, "--bars", "3000", "--seed", "3", "--no-live",
         "--json"], env={**os.environ, **env, "SUPREME_DATA_DIR": str(tmp)},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.redis
@pytest.mark.postgres
@pytest.mark.slow
def test_two_symbols_side_by_side_on_shared_redis_and_postgres(
        tmp_path: Path, redis_url: str, postgres_url: str) -> None:
    import redis

    env_name = f"s{uuid.uuid4().hex[:8]}"
    env = {"REDIS_URL": redis_url, "POSTGRES_URL": postgres_url,
           "SUPREME_CACHE__ENV": env_name}
    procs = [_run_proc(tmp_path, s, env) for s in ("ETH-USDT", "BTC-USDT")]
    docs: list[dict[str, Any]] = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        docs.append(json.loads(out))
    client = redis.Redis.from_url(redis_url, socket_timeout=2)
    try:
        keys = {k.decode() for k in client.scan_iter(match=f"supreme:{env_name}:*")}
        assert f"supreme:{env_name}:ticker:ETH-USDT" in keys
        assert f"supreme:{env_name}:ticker:BTC-USDT" in keys
        for key in keys:
            client.unlink(key)
    finally:
        client.close()
    from engine.store import open_store

    store = open_store(postgres_url, tmp_path)
    try:
        for doc, symbol in zip(docs, ("ETH-USDT", "BTC-USDT"), strict=True):
            run = store.get_run(doc["run_id"])
            assert run is not None and run.symbol == symbol and run.status == "finished"
            trades = store.trades_for_run(doc["run_id"])
            assert len(trades) == doc["trades"]
            assert all(t.symbol == symbol for t in trades)
            assert len(store.equity_for_run(doc["run_id"])) == doc["bars"]
    finally:
        store.close()
