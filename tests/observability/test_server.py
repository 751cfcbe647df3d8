"""What `supreme run --metrics-port` serves, against a real run, the fake exchange, the
real Redis and PostgreSQL: every documented metric, health, readiness, and the cache API."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import threading
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest

from engine.cache import CacheSettings
from engine.errors import ConfigError
from engine.observability.server import EngineServer
from engine.pipeline import Run, RunSpec
from tests.conftest import _missing

ROOT = Path(__file__).resolve().parents[2]
DOCUMENTED = sorted(set(re.findall(r"^\| `(supreme_[a-z_]+)`", (ROOT / "docs" / "METRICS.md")
                                   .read_text(), re.M)))
TOKEN = "tok-" + uuid.uuid4().hex


def _get(url: str, method: str = "GET", body: bytes | None = None,
         headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


class _Paced:
    """Runs a spec on a thread; stop() ends it."""

    def __init__(self, spec: RunSpec) -> None:
        self.run = Run(spec)
        self.thread = threading.Thread(target=self.run.execute, daemon=True)

    def __enter__(self) -> Run:
        self.thread.start()
        deadline = time.monotonic() + 20
        while self.run.view is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert self.run.view is not None, "the run did not start"
        return self.run

    def __exit__(self, *exc: object) -> None:
        self.run.request_stop()
        self.thread.join(30)


def _sim_spec(tmp_path: Path, **kw: Any) -> RunSpec:
    return RunSpec(symbol="ETH-USDT", feed="sim", bars=100_000, speed=2.0, interval_s=0.1,
                   data_dir=tmp_path, cache=CacheSettings(env=f"o{uuid.uuid4().hex[:8]}"), **kw)


def test_health_ready_and_the_cache_api(tmp_path: Path) -> None:
    with _Paced(_sim_spec(tmp_path)) as run, EngineServer(run, 0, token=TOKEN) as server:
        assert _get(server.url + "/health")[0] == 200
        deadline = time.monotonic() + 10
        while _get(server.url + "/ready")[0] != 200 and time.monotonic() < deadline:
            time.sleep(0.1)
        code, body = _get(server.url + "/ready")
        assert code == 200 and json.loads(body)["checks"]["store"]["status"] == "ok"
        reset = server.url + "/api/cache/reset"
        assert _get(reset)[0] == 405
        assert _get(reset, "POST", b"{}")[0] == 401
        assert _get(reset, "POST", b"{}", {"Authorization": "Bearer wrong"})[0] == 401
        assert _get(reset, "POST", b"{}", {"Authorization": f"Basic {TOKEN}"})[0] == 401
        assert _get(reset, "POST", b"x" * 5000, {"Authorization": f"Bearer {TOKEN}"})[0] == 413
        assert run.cache is not None
        run.cache.l1.put("k", 1)
        code, body = _get(reset, "POST", b'{"l1": true}', {"Authorization": f"Bearer {TOKEN}"})
        assert code == 200 and json.loads(body)["reset"]["l1_entries"] >= 1
        assert not run.cache.l1.contains("k")
        assert _get(server.url + "/nope")[0] == 404


def test_ready_is_503_before_the_first_bar(tmp_path: Path) -> None:
    run = Run(_sim_spec(tmp_path))
    with EngineServer(run, 0) as server:
        code, body = _get(server.url + "/ready")
    assert code == 503 and json.loads(body)["status"] == "not ready"


def test_a_non_loopback_bind_needs_a_token(tmp_path: Path) -> None:
    run = Run(_sim_spec(tmp_path))
    with pytest.raises(ConfigError, match="SUPREME_API_TOKEN"):
        EngineServer(run, 0, addr="0.0.0.0")
    EngineServer(run, 0, addr="0.0.0.0", token=TOKEN).close()


@pytest.mark.redis
@pytest.mark.postgres
@pytest.mark.slow
def test_every_documented_metric_is_exported_and_promtool_clean(
        tmp_path: Path, redis_url: str, postgres_url: str) -> None:
    from engine.exchange.adapter import ExchangeSpec
    from engine.exchange.endpoints import endpoint_overrides
    from engine.testing.fake_exchange import FakeExchange

    pytest.importorskip("ccxt")
    env = f"o{uuid.uuid4().hex[:8]}"
    with FakeExchange(start=-400, ws_interval_s=0.03) as fx:
        spec = RunSpec(symbol="ETH-USDT", feed="exchange", interval_s=0.1, bars=10_000,
                       data_dir=tmp_path, store_url=postgres_url, resume=True,
                       exchange=ExchangeSpec(timeout_s=2.0, overrides=endpoint_overrides(
                           "binance", fx.base_url)),
                       cache=CacheSettings(env=env, redis_url=redis_url))
        try:
            with _Paced(spec) as run, EngineServer(run, 0) as server:
                assert run.cache is not None
                run.cache.get("market:binance:ETH-USDT")  # an L1 read at least
                time.sleep(1.0)
                code, body = _get(server.url + "/metrics")
        finally:
            _drop(redis_url, env)
    assert code == 200
    text = body.decode()
    exported = set(re.findall(r"^(supreme_[a-z_]+?)(?:_bucket|_count|_sum|_created)?[{ ]",
                              text, re.M))
    missing = [name for name in DOCUMENTED if name not in exported
               and name.removesuffix("_total") not in exported]
    assert not missing, f"documented but not exported: {missing}"
    undocumented = sorted(n for n in exported if n not in DOCUMENTED
                          and f"{n}_total" not in DOCUMENTED)
    assert not undocumented, f"exported but not in docs/METRICS.md: {undocumented}"
    promtool = shutil.which("promtool")
    if promtool is None:
        _missing("promtool (Debian package prometheus)", "SUPREME_REQUIRE_SERVICES")
    assert promtool is not None
    check = subprocess.run([promtool, "check", "metrics"], input=text, text=True,
                           capture_output=True, timeout=30)
    assert check.returncode == 0, check.stdout + check.stderr


def _drop(redis_url: str, env: str) -> None:
    import redis

    client = redis.Redis.from_url(redis_url, socket_timeout=2)
    for key in client.scan_iter(match=f"supreme:{env}:*"):
        client.unlink(key)
    client.close()


def test_cache_commands_reach_a_running_engine(tmp_path: Path, data_dir: Path) -> None:
    from tests.cli.helpers import invoke

    with _Paced(_sim_spec(tmp_path)) as run, EngineServer(run, 0, token=TOKEN) as server:
        assert run.cache is not None
        run.cache.l1.put("probe", 1)
        r = invoke("cache", "stats", "--engine", server.url, "--json")
        assert r.exit_code == 0, r.stderr
        doc = r.json()
        assert doc["running"]["run_id"] == run.run_id
        assert doc["tiers"]["l1"]["status"] == "ok" and doc["tiers"]["l1"]["size"] >= 1
        bad = invoke("cache", "reset", "--l1", "--yes", "--engine", server.url, "--json",
                     env={"SUPREME_API_TOKEN": "wrong"})
        assert bad.exit_code == 2
        assert run.cache.l1.contains("probe")
        ok = invoke("cache", "reset", "--l1", "--yes", "--engine", server.url, "--json",
                    env={"SUPREME_API_TOKEN": TOKEN})
        assert ok.exit_code == 0, ok.stderr
        assert ok.json()["engine"]["reset"]["l1_entries"] >= 1
        assert not run.cache.l1.contains("probe")
        assert TOKEN not in ok.stdout + ok.stderr
    down = invoke("cache", "stats", "--engine", server.url, "--json")
    assert down.exit_code == 5
