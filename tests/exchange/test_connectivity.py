"""`supreme connectivity` and `engine.exchange.connectivity`, against real peers.

The exchanges are FakeExchange servers on 127.0.0.1 reached with `--endpoint`, a listening
socket that never answers (a TCP black hole), a resolver that never answers (getaddrinfo
patched to block), and, on a machine without internet, the real exchange hosts: the
deadline must hold in every case. No test sends traffic anywhere but 127.0.0.1; the real
hosts are only tried when their DNS fails, and the test skips where it resolves.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.config import KEYS
from engine.errors import ConfigError
from engine.exchange.connectivity import (
    ENDPOINTS,
    EndpointResult,
    _verdict,
    check_exchanges,
    margin_s,
    parse_endpoints,
    parse_exchange_ids,
)
from engine.testing.fake_exchange import FakeExchange
from supreme_cli.exit_codes import ExitCode
from tests.cli.helpers import Result, invoke

pytest.importorskip("ccxt")

BIN = Path(sys.executable).with_name("supreme")
REAL_HOSTS = ("api.binance.com", "api.kraken.com", "api.coinbase.com")
PUBLIC = ("time", "markets", "symbol", "ticker", "order_book", "ohlcv")
KEY_CANARY = "canary-api-key-7Qx9Lm2Vw"
SECRET_CANARY = "canary-secret-Zp4Kd8Rt1Ny"


@pytest.fixture(autouse=True)
def _isolated(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No keys, proxies or profile from the developer's shell; 127.0.0.1 never proxied."""
    for var in ("NO_PROXY", "no_proxy"):
        monkeypatch.setenv(var, "127.0.0.1,localhost")
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy",
                "all_proxy", "SUPREME_PROFILE"):
        monkeypatch.delenv(var, raising=False)




def run_cli(*args: str, env: dict[str, str] | None = None) -> tuple[Result, float]:
    started = time.monotonic()
    result = invoke("connectivity", *args, env=env)
    return result, time.monotonic() - started


def statuses(doc: dict, exchange: str = "binance") -> dict[str, str]:
    return {k: v["status"] for k, v in doc["exchanges"][exchange]["endpoints"].items()}


def reasons(doc: dict) -> list[str]:
    return [e["reason"] for ex in doc["exchanges"].values() for e in ex["endpoints"].values()
            if e["reason"]]


# --- against the fake exchange ------------------------------------------------------------


def test_all_reachable_exits_0_with_one_json_document(fx: FakeExchange) -> None:
    r, wall = run_cli("--endpoint", f"binance={fx.base_url}", "--timeout", "5", "--json")
    assert r.exit_code == 0, r.stderr
    doc = r.json()
    assert set(doc) == {"verdict", "symbol", "deadline_s", "elapsed_s", "exit_code",
                        "exchanges"}
    assert (doc["verdict"], doc["exit_code"], doc["symbol"]) == ("ok", 0, "ETH-USDT")
    assert doc["deadline_s"] == 5.0 and 0 < doc["elapsed_s"] < 5.0 and wall < 5.0
    ex = doc["exchanges"]["binance"]
    assert set(ex) == {"verdict", "url", "host", "sandbox", "skew_ms", "dns", "endpoints"}
    assert ex["verdict"] == "ok" and ex["url"] == fx.rest_url and ex["host"] == "127.0.0.1"
    assert list(ex["endpoints"]) == list(ENDPOINTS)
    for name in PUBLIC:
        endpoint = ex["endpoints"][name]
        assert set(endpoint) == {"status", "latency_s", "reason", "note"}
        assert endpoint["status"] == "ok", (name, endpoint)
        assert endpoint["reason"] is None
        if name != "symbol":  # derived from the market list: no request of its own
            assert 0 < endpoint["latency_s"] < 5.0
    for name in ("balance", "open_orders"):
        assert ex["endpoints"][name]["status"] == "skipped"
        assert "EXCHANGE_API_KEY" in ex["endpoints"][name]["reason"]
    for name in ("ws_ticker", "ws_ohlcv"):
        assert ex["endpoints"][name] == {"status": "skipped", "latency_s": None,
                                         "reason": "websocket check not requested",
                                         "note": None}
    assert abs(ex["skew_ms"]) < 500
    assert ex["dns"]["status"] == "ok"
    paths = {rec.path for rec in fx.requests}
    assert {"/api/v3/time", "/api/v3/exchangeInfo", "/api/v3/ticker/24hr", "/api/v3/depth",
            "/api/v3/klines"} <= paths
    assert not any(p.startswith(("/sapi", "/fapi", "/dapi")) for p in paths)
    assert sum(1 for rec in fx.requests if rec.path == "/api/v3/exchangeInfo") == 1


def test_human_output_is_a_table_per_exchange_on_stdout(fx: FakeExchange) -> None:
    r, _ = run_cli("--endpoint", f"binance={fx.base_url}", "--timeout", "5")
    assert r.exit_code == 0, r.stderr
    assert "binance · ok" in r.stdout
    for name in ENDPOINTS:
        assert name in r.stdout
    assert "ok: 1 of 1 exchanges fully reachable" in r.stdout


def test_keys_check_balance_and_open_orders(fx: FakeExchange) -> None:
    env = {"EXCHANGE_API_KEY": fx.api_key, "EXCHANGE_SECRET": fx.api_secret}
    r, _ = run_cli("--endpoint", f"binance={fx.base_url}", "--timeout", "5", "--json",
                   env=env)
    assert r.exit_code == 0, r.stderr
    st = statuses(r.json())
    assert st["balance"] == "ok" and st["open_orders"] == "ok"
    assert {"/api/v3/account", "/api/v3/openOrders"} <= {rec.path for rec in fx.requests}


def test_unlisted_symbol_fails_the_symbol_endpoint_and_exits_degraded(fx: FakeExchange) -> None:
    r, _ = run_cli("--endpoint", f"binance={fx.base_url}", "--symbol", "ETH-XYZ", "--json",
                   "--timeout", "5")
    assert r.exit_code == ExitCode.DEGRADED == 7, r.stderr
    doc = r.json()
    assert doc["verdict"] == "degraded" and doc["exit_code"] == 7
    symbol = doc["exchanges"]["binance"]["endpoints"]["symbol"]
    assert symbol["status"] == "failed"
    assert symbol["reason"] == "symbol ETH-XYZ is not listed on binance"
    st = statuses(doc)
    assert st["time"] == st["markets"] == "ok"
    for name in ("ticker", "order_book", "ohlcv"):
        endpoint = doc["exchanges"]["binance"]["endpoints"][name]
        assert endpoint["status"] == "skipped"
        assert "ETH-XYZ is not listed" in endpoint["reason"]


def test_wrong_secret_fails_the_balance_with_api_key_rejected(fx: FakeExchange) -> None:
    env = {"EXCHANGE_API_KEY": fx.api_key, "EXCHANGE_SECRET": "not-the-right-secret-1234"}
    r, _ = run_cli("--endpoint", f"binance={fx.base_url}", "--json", "--timeout", "5", env=env)
    assert r.exit_code == ExitCode.DEGRADED, r.stderr
    doc = r.json()
    balance = doc["exchanges"]["binance"]["endpoints"]["balance"]
    assert balance["status"] == "failed"
    assert balance["reason"].startswith("API key rejected")
    assert doc["exchanges"]["binance"]["endpoints"]["ticker"]["status"] == "ok"
    assert "not-the-right-secret-1234" not in r.stdout + r.stderr


def test_a_hanging_endpoint_times_out_and_the_others_still_answer(fx: FakeExchange) -> None:
    fx.faults.set("hang", path="/api/v3/depth", seconds=30)
    r, wall = run_cli("--endpoint", f"binance={fx.base_url}", "--json", "--timeout", "3")
    assert r.exit_code == ExitCode.DEGRADED, r.stdout + r.stderr
    assert wall < 3.0
    doc = r.json()
    assert doc["elapsed_s"] < 3.0 - margin_s(3.0) + 0.1
    book = doc["exchanges"]["binance"]["endpoints"]["order_book"]
    assert book["status"] == "failed"
    assert book["reason"].startswith("timed out")
    assert "127.0.0.1" in book["reason"]
    st = statuses(doc)
    for name in ("time", "markets", "symbol", "ticker", "ohlcv"):
        assert st[name] == "ok", (name, doc)


def test_clock_skew_is_measured_and_noted(fx: FakeExchange) -> None:
    fx.set_time_offset_ms(3_000)
    r, _ = run_cli("--endpoint", f"binance={fx.base_url}", "--json", "--timeout", "5")
    assert r.exit_code == 0, r.stderr
    ex = r.json()["exchanges"]["binance"]
    assert abs(ex["skew_ms"] - 3_000) < 250
    note = ex["endpoints"]["time"]["note"]
    assert "ahead of ours" in note and "signed requests may be rejected" in note

    fx.set_time_offset_ms(-1_500)
    r, _ = run_cli("--endpoint", f"binance={fx.base_url}", "--json", "--timeout", "5")
    ex = r.json()["exchanges"]["binance"]
    assert abs(ex["skew_ms"] + 1_500) < 250
    assert "behind ours" in ex["endpoints"]["time"]["note"]


def test_two_exchanges_are_checked_concurrently() -> None:
    with FakeExchange(ws_interval_s=None) as a, FakeExchange(ws_interval_s=None) as b:
        a.faults.latency_s = b.faults.latency_s = 0.6
        r, _ = run_cli("--exchange", "binance,binanceus", "--endpoint",
                          f"binance={a.base_url}", "--endpoint", f"binanceus={b.base_url}",
                          "--json", "--timeout", "8")
        assert r.exit_code == 0, r.stderr
        doc = r.json()
        assert list(doc["exchanges"]) == ["binance", "binanceus"]
        for ex_id, fx in (("binance", a), ("binanceus", b)):
            assert set(statuses(doc, ex_id).values()) == {"ok", "skipped"}
            assert doc["exchanges"][ex_id]["url"] == fx.rest_url
            assert any(rec.path == "/api/v3/ticker/24hr" for rec in fx.requests)
        # each exchange needs two rounds of 0.6 s (the market list, then the rest in
        # parallel); one after the other would take 2.4 s and more
        assert doc["elapsed_s"] < 2.2, doc["elapsed_s"]


def test_websocket_watch_ticker_and_ohlcv(fx: FakeExchange) -> None:
    r, _ = run_cli("--endpoint", f"binance={fx.base_url}", "--websocket", "--json",
                   "--timeout", "8")
    assert r.exit_code == 0, r.stderr
    ws = r.json()["exchanges"]["binance"]["endpoints"]
    assert ws["ws_ticker"]["status"] == "ok" and ws["ws_ohlcv"]["status"] == "ok"
    assert ws["ws_ticker"]["latency_s"] > 0
    assert any(rec.method == "WS" for rec in fx.requests)


def test_a_hung_websocket_upgrade_times_out_within_the_deadline(fx: FakeExchange) -> None:
    fx.faults.set("hang", path="/ws", seconds=30)
    r, wall = run_cli("--endpoint", f"binance={fx.base_url}", "--websocket", "--json",
                      "--timeout", "3")
    assert r.exit_code == ExitCode.DEGRADED, r.stdout + r.stderr
    assert wall < 3.0
    endpoints = r.json()["exchanges"]["binance"]["endpoints"]
    for name in ("ws_ticker", "ws_ohlcv"):
        assert endpoints[name]["status"] == "failed"
        assert endpoints[name]["reason"].startswith("timed out"), endpoints[name]
    assert endpoints["ticker"]["status"] == "ok"
    assert r.stderr == ""


def test_a_refused_websocket_upgrade_is_named(fx: FakeExchange) -> None:
    fx.faults.set("503", path="/ws")
    report = check_exchanges(["binance"], "ETH-USDT", 5, websocket=True,
                             endpoints={"binance": fx.base_url})
    result = report.exchange("binance").endpoint("ws_ticker")
    assert result.status == "failed"
    assert result.reason == "websocket refused: HTTP 503 from 127.0.0.1"
    assert report.verdict == "degraded"


def test_secrets_never_appear_in_any_output(fx: FakeExchange) -> None:
    env = {"EXCHANGE_API_KEY": KEY_CANARY, "EXCHANGE_SECRET": SECRET_CANARY}
    for extra in ((), ("--json",)):
        r, _ = run_cli("--endpoint", f"binance={fx.base_url}", "--verbose", "--timeout", "5",
                       *extra, env=env)
        assert r.exit_code == ExitCode.DEGRADED, r.stderr
        text = r.stdout + r.stderr
        assert KEY_CANARY not in text and SECRET_CANARY not in text
        assert "API key rejected" in text
        assert "checking binance" in r.stderr  # --verbose did say something


def test_keys_belong_to_the_configured_exchange_only() -> None:
    with FakeExchange(ws_interval_s=None) as a, FakeExchange(ws_interval_s=None) as b:
        env = {"EXCHANGE_API_KEY": a.api_key, "EXCHANGE_SECRET": a.api_secret}
        r, _ = run_cli("--exchange", "binanceus,binance", "--endpoint", f"binance={a.base_url}",
                       "--endpoint", f"binanceus={b.base_url}", "--json", "--timeout", "5",
                       env=env)
        assert r.exit_code == 0, r.stderr
        doc = r.json()
        assert list(doc["exchanges"]) == ["binanceus", "binance"]
        assert statuses(doc, "binance")["balance"] == "ok"  # exchange.id's default
        other = doc["exchanges"]["binanceus"]["endpoints"]["balance"]
        assert other["status"] == "skipped" and "keys are for binance" in other["reason"]
        assert not any(rec.path == "/api/v3/account" for rec in b.requests)


@pytest.mark.skipif("exchange.id" not in KEYS, reason="no exchange.id key in this build")
def test_without_exchange_the_configured_exchange_is_checked(fx: FakeExchange) -> None:
    env = {"SUPREME_EXCHANGE__ID": "binanceus", "EXCHANGE_API_KEY": fx.api_key,
           "EXCHANGE_SECRET": fx.api_secret}
    r, _ = run_cli("--endpoint", f"binanceus={fx.base_url}", "--json", "--timeout", "5",
                   env=env)
    assert r.exit_code == 0, r.stderr
    doc = r.json()
    assert list(doc["exchanges"]) == ["binanceus"]
    assert statuses(doc, "binanceus")["balance"] == "ok"


@pytest.mark.parametrize("kind, path, expected", [
    ("503", "/api/v3/ticker/24hr", "binance unavailable (HTTP 503 from 127.0.0.1)"),
    ("429", "/api/v3/ticker/24hr", "rate limited by binance (HTTP 429)"),
    ("418", "/api/v3/ticker/24hr", "IP banned by binance (HTTP 418)"),
    ("malformed", "/api/v3/ticker/24hr", "malformed response"),
    ("504", "/api/v3/ticker/24hr", "gateway timeout (HTTP 504 from 127.0.0.1)"),
])
def test_http_faults_get_plain_reasons(fx: FakeExchange, kind: str, path: str,
                                       expected: str) -> None:
    fx.faults.set(kind, path=path)
    report = check_exchanges(["binance"], "ETH-USDT", 5, endpoints={"binance": fx.base_url})
    ticker = report.exchange("binance").endpoint("ticker")
    assert ticker.status == "failed"
    assert ticker.reason is not None and ticker.reason.startswith(expected), ticker.reason
    assert report.verdict == "degraded"
    assert report.exchange("binance").endpoint("ohlcv").status == "ok"


def test_nothing_listening_is_connection_refused() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    report = check_exchanges(["binance"], "ETH-USDT", 5,
                             endpoints={"binance": f"http://127.0.0.1:{port}"})
    assert report.verdict == "down" and report.elapsed_s < 2
    for name in ("time", "markets"):
        result = report.exchange("binance").endpoint(name)
        assert result.status == "failed"
        assert result.reason == f"connection refused by 127.0.0.1:{port} (nothing listens there)"


# --- black holes: the deadline holds --------------------------------------------------------


@pytest.fixture
def tcp_black_hole() -> Iterator[int]:
    """A port that accepts connections (the kernel does, up to the backlog) and never
    answers: a request's bytes go in and nothing ever comes back."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(1)
    try:
        yield sock.getsockname()[1]
    finally:
        sock.close()


def _subprocess(args: list[str], timeout: float) -> tuple[subprocess.CompletedProcess, float]:
    env = {**os.environ, "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"}
    for var in ("EXCHANGE_API_KEY", "EXCHANGE_SECRET", "HTTP_PROXY", "HTTPS_PROXY",
                "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy"):
        env.pop(var, None)
    started = time.monotonic()
    proc = subprocess.run([str(BIN), "connectivity", *args], capture_output=True, text=True,
                          env=env, timeout=timeout)
    return proc, time.monotonic() - started


def test_a_tcp_black_hole_is_down_within_the_deadline(tcp_black_hole: int) -> None:
    proc, wall = _subprocess(["--endpoint", f"binance=http://127.0.0.1:{tcp_black_hole}",
                              "--timeout", "2", "--json"], timeout=30)
    print(f"TCP black hole, --timeout 2: wall {wall:.2f} s")
    assert proc.returncode == ExitCode.DOWN == 8, proc.stderr
    assert wall < 2.0 + 0.5
    doc = json.loads(proc.stdout)
    assert doc["verdict"] == "down" and doc["elapsed_s"] < 2.0
    ex = doc["exchanges"]["binance"]
    for name in ("time", "markets"):
        assert ex["endpoints"][name]["status"] == "failed"
        assert ex["endpoints"][name]["reason"].startswith("timed out"), ex["endpoints"][name]
    assert "Traceback" not in proc.stderr


def _real_hosts_resolve() -> bool:
    box: list[bool] = []

    def probe() -> None:
        for host in REAL_HOSTS:
            try:
                socket.getaddrinfo(host, 443)
            except OSError:
                continue
            box.append(True)
            return

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(5)
    return bool(box)


def test_no_internet_real_exchanges_are_down_within_the_deadline() -> None:
    if _real_hosts_resolve():
        pytest.skip("the exchange hosts resolve here: tests send no traffic beyond 127.0.0.1")
    proc, wall = _subprocess(["--exchange", "binance,kraken,coinbase", "--timeout", "3"],
                             timeout=30)
    print(f"no internet, --timeout 3: wall {wall:.2f} s")
    assert proc.returncode == ExitCode.DOWN, proc.stdout + proc.stderr
    assert wall < 3.0 + 0.5
    assert "Traceback" not in proc.stderr
    for ex in ("binance", "kraken", "coinbase"):
        assert f"{ex} · down" in proc.stdout
    assert "DNS lookup failed for api.binance.com" in proc.stdout or "timed out" in proc.stdout
    assert "down: 0 of 3 exchanges fully reachable" in proc.stdout

    proc, wall = _subprocess(["--exchange", "binance,kraken,coinbase", "--timeout", "3",
                              "--json"], timeout=30)
    assert proc.returncode == ExitCode.DOWN and wall < 3.5
    doc = json.loads(proc.stdout)
    assert doc["verdict"] == "down"
    for ex in doc["exchanges"].values():
        assert ex["endpoints"]["time"]["status"] == "failed"
        reason = ex["endpoints"]["time"]["reason"]
        assert reason.startswith(("DNS lookup failed for api.", "timed out")), reason


@pytest.fixture
def silent_dns(monkeypatch: pytest.MonkeyPatch) -> Iterator[threading.Event]:
    """getaddrinfo that never answers for anything but 127.0.0.1 (until teardown)."""
    release = threading.Event()
    real = socket.getaddrinfo

    def blocking(host, *args, **kwargs):  # type: ignore[no-untyped-def]
        if host not in ("127.0.0.1", "localhost"):
            release.wait(60)
            raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", blocking)
    yield release
    release.set()


def test_a_dns_that_never_answers_cannot_hold_the_command(silent_dns: threading.Event) -> None:
    r, wall = run_cli("--exchange", "binance,kraken", "--timeout", "2", "--json")
    assert r.exit_code == ExitCode.DOWN, r.stderr
    assert wall < 2.0
    doc = r.json()
    for ex_id in ("binance", "kraken"):
        ex = doc["exchanges"][ex_id]
        assert ex["dns"]["status"] == "failed"
        assert ex["dns"]["reason"].startswith("no answer from DNS")
        time_reason = ex["endpoints"]["time"]["reason"]
        assert time_reason.startswith("timed out"), time_reason
        assert "DNS lookup" in time_reason and ex["host"] in time_reason


def test_the_engine_returns_before_the_deadline_with_a_margin(tcp_black_hole: int) -> None:
    started = time.monotonic()
    report = check_exchanges(["binance"], "ETH-USDT", 1.5,
                             endpoints={"binance": f"http://127.0.0.1:{tcp_black_hole}"})
    elapsed = time.monotonic() - started
    assert elapsed < 1.5 - margin_s(1.5) + 0.1
    assert report.verdict == "down"
    assert report.exchange("binance").endpoint("markets").status == "failed"


# --- usage errors -----------------------------------------------------------------------------


@pytest.mark.parametrize("args, message", [
    (("--timeout", "soon"), "invalid --timeout"),
    (("--timeout", "0"), "invalid --timeout"),
    (("--exchange", "nosuchexchange"), "unknown exchange nosuchexchange"),
    (("--exchange", "bin ance"), "invalid exchange id"),
    (("--endpoint", "binance"), "expected ID=URL"),
    (("--endpoint", "binance=ftp://127.0.0.1"), "invalid endpoint URL"),
    (("--endpoint", "binance=http://user:pw@127.0.0.1:1"), "no credentials"),
    (("--endpoint", "kraken=http://127.0.0.1:1"), "not among the exchanges checked"),
    (("--exchange", "kraken", "--endpoint", "kraken=http://127.0.0.1:1"),
     "supports binance, binanceus only"),
    (("--symbol", "not a symbol"), "invalid symbol"),
])
def test_usage_errors_exit_2(args: tuple[str, ...], message: str) -> None:
    r, _ = run_cli(*args, "--json")
    assert r.exit_code == ExitCode.USAGE, (r.stdout, r.stderr)
    assert message in r.json()["error"]["message"]


# --- engine helpers -----------------------------------------------------------------------------


def test_parse_exchange_ids_and_endpoints() -> None:
    assert parse_exchange_ids("Binance, kraken,,binance") == ["binance", "kraken"]
    assert parse_exchange_ids(["binance,kraken", "coinbase"]) == ["binance", "kraken",
                                                                   "coinbase"]
    with pytest.raises(ConfigError):
        parse_exchange_ids(" , ")
    assert parse_endpoints(["Binance = http://127.0.0.1:8080", "binanceus=http://h:1"]) == {
        "binance": "http://127.0.0.1:8080", "binanceus": "http://h:1"}
    with pytest.raises(ConfigError, match="expected ID=URL"):
        parse_endpoints(["http://127.0.0.1:8080"])


def test_verdicts() -> None:
    def results(*statuses: str) -> list[EndpointResult]:
        return [EndpointResult(str(i), s) for i, s in enumerate(statuses)]

    assert _verdict(results("ok", "ok", "skipped")) == "ok"
    assert _verdict(results("ok", "failed", "skipped")) == "degraded"
    assert _verdict(results("failed", "skipped")) == "down"
    assert _verdict(results("skipped")) == "down"


def test_the_engine_rejects_bad_input() -> None:
    with pytest.raises(ConfigError, match="invalid deadline"):
        check_exchanges(["binance"], "ETH-USDT", 0)
    with pytest.raises(ConfigError, match="invalid deadline"):
        check_exchanges(["binance"], "ETH-USDT", float("nan"))
    with pytest.raises(ConfigError, match="endpoint given for binanceus"):
        check_exchanges(["binance"], "ETH-USDT", 1, endpoints={"binanceus": "http://h:1"})
    with pytest.raises(ConfigError, match="supports binance, binanceus only"):
        check_exchanges(["kraken"], "ETH-USDT", 1, endpoints={"kraken": "http://h:1"})
