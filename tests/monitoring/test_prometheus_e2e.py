"""End to end: a real Prometheus server scrapes `supreme run --metrics-port` on loopback.

Prometheus (the Debian `prometheus` binary) loads monitoring/alerts.yml, scrapes the app
every second, and must see ticks, latency observations and the build info; every
dashboard query must then be accepted by the server. Skipped when the binary is missing,
mandatory when SUPREME_REQUIRE_SERVICES=1.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO_ROOT, _missing
from tests.monitoring.test_monitoring import dashboard_exprs, grafana_to_promql

pytestmark = pytest.mark.slow

HOST = "127.0.0.1"
WAIT_SECONDS = 20.0
POLL_SECONDS = 0.25


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def supreme_command() -> list[str]:
    script = Path(sys.executable).with_name("supreme")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from supreme_cli.main import main; main()"]


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def tail(path: Path, n: int = 3000) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")[-n:]
    except OSError:
        return ""


def http_get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=3) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


class Prom:
    def __init__(self, port: int) -> None:
        self.base = f"http://{HOST}:{port}"

    def api(self, path: str, **params: str) -> dict[str, Any]:
        url = f"{self.base}/api/v1/{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        status, body = http_get(url)
        doc: dict[str, Any] = json.loads(body)
        doc["http_status"] = status
        return doc

    def query(self, expr: str) -> list[dict[str, Any]]:
        doc = self.api("query", query=expr)
        assert doc["status"] == "success", (expr, doc)
        result: list[dict[str, Any]] = doc["data"]["result"]
        return result


@pytest.fixture
def prometheus_bin() -> str:
    path = shutil.which("prometheus")
    if path is None:
        _missing("the prometheus server binary", "SUPREME_REQUIRE_SERVICES")
    assert path is not None
    return path


@pytest.fixture
def stack(prometheus_bin: str, tmp_path: Path) -> Iterator[tuple[Prom, Path, Path]]:
    """The app with --metrics-port, and Prometheus scraping it every second."""
    app_port, prom_port = free_port(), free_port()
    while prom_port == app_port:
        prom_port = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(json.dumps({  # JSON is YAML
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(REPO_ROOT / "monitoring" / "alerts.yml")],
        "scrape_configs": [{"job_name": "supreme", "scrape_interval": "1s",
                            "scrape_timeout": "1s",
                            "static_configs": [{"targets": [f"{HOST}:{app_port}"]}]}],
    }), encoding="utf-8")

    env = dict(os.environ, SUPREME_DATA_DIR=str(tmp_path / "data"), INTERVAL_SECONDS="1")
    for var in ("POSTGRES_URL", "REDIS_URL"):  # SQLite under the data dir, no Redis
        env.pop(var, None)
    app_log, prom_log = tmp_path / "app.log", tmp_path / "prometheus.log"
    procs: list[subprocess.Popen[bytes]] = []
    try:
        with app_log.open("wb") as out:
            procs.append(subprocess.Popen(
                [*supreme_command(), "run", "--feed", "sim", "--bars", "100000",
                 "--speed", "20x", "--metrics-port", str(app_port), "--no-live"],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env,
                cwd=tmp_path))
        with prom_log.open("wb") as out:
            procs.append(subprocess.Popen(
                [prometheus_bin, f"--config.file={config}",
                 f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                 f"--web.listen-address={HOST}:{prom_port}"],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, cwd=tmp_path))
        yield Prom(prom_port), app_log, prom_log
    finally:
        for proc in reversed(procs):
            stop(proc)


def wait_for_value(prom: Prom, expr: str, logs: Callable[[], str], deadline: float) -> float:
    last: object = None
    for _ in range(int(WAIT_SECONDS / POLL_SECONDS) + 1):
        try:
            result = prom.query(expr)
            if result and float(result[0]["value"][1]) > 0:
                return float(result[0]["value"][1])
            last = result
        except (OSError, ValueError) as exc:  # not listening yet, or not JSON yet
            last = exc
        if time.monotonic() > deadline:
            break
        time.sleep(POLL_SECONDS)
    pytest.fail(f"{expr} never became > 0 within {WAIT_SECONDS} s (last: {last!r})\n{logs()}")


def test_prometheus_scrapes_the_running_app(stack: tuple[Prom, Path, Path]) -> None:
    prom, app_log, prom_log = stack

    def logs() -> str:
        return f"--- app ---\n{tail(app_log)}\n--- prometheus ---\n{tail(prom_log)}"

    deadline = time.monotonic() + WAIT_SECONDS
    ticks = wait_for_value(prom, 'supreme_ticks_total{job="supreme"}', logs, deadline)
    assert ticks > 0
    count = wait_for_value(prom, 'supreme_processing_latency_seconds_count{job="supreme"}',
                           logs, deadline)
    assert count > 0, logs()

    build = prom.query('supreme_build_info{job="supreme"}')
    assert len(build) == 1, (build, logs())
    assert build[0]["metric"].get("version"), build
    assert build[0]["metric"].get("python"), build
    assert float(build[0]["value"][1]) == 1

    up = prom.query('up{job="supreme"}')
    assert [float(r["value"][1]) for r in up] == [1.0], (up, logs())

    # The alert rules loaded into a real server and evaluate without errors.
    rules = prom.api("rules")
    assert rules["status"] == "success", rules
    loaded = [r for g in rules["data"]["groups"] for r in g["rules"]]
    assert len(loaded) >= 9, loaded
    for _ in range(int(WAIT_SECONDS / POLL_SECONDS) + 1):
        if all(r.get("health") == "ok" for r in loaded) or time.monotonic() > deadline + 5:
            break
        time.sleep(POLL_SECONDS)
        loaded = [r for g in prom.api("rules")["data"]["groups"] for r in g["rules"]]
    bad = [(r["name"], r.get("health"), r.get("lastError")) for r in loaded
           if r.get("health") != "ok"]
    assert bad == [], bad

    # Every dashboard query is accepted by the server.
    for expr in dashboard_exprs():
        if expr.startswith("label_values("):
            continue
        doc = prom.api("query", query=grafana_to_promql(expr))
        assert doc["status"] == "success", (expr, doc)
