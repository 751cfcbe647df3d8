"""`supreme degrade`: the report's contract, the statistics, and real fault drills.

The drills run a real engine against a private redis-server, the packaged fake exchange and
(through a proxy of ours, in a throw-away schema) the shared PostgreSQL. Faults are held
1-1.5 s here so the whole module stays well under a minute.
"""

from __future__ import annotations

import os
from typing import Any

import pytest

from engine.validation.degrade import SCENARIOS, compare, parse_scenarios
from supreme_cli.commands import degrade as degrade_cmd
from supreme_cli.main import app
from tests.cli.helpers import Result, invoke

if not any(c.name == "degrade" for c in app.registered_commands):
    # until the lead registers it in supreme_cli/commands/__init__.py
    app.command("degrade", help=degrade_cmd.HELP, epilog=degrade_cmd.EPILOG)(
        degrade_cmd.degrade)

KEYS = {"name", "injected", "engine_did", "stayed_up", "lost_records", "recovered",
        "recovery_s", "status", "reason"}


def _doc(result: Result) -> dict[str, Any]:
    doc = result.json()
    assert isinstance(doc, dict)
    assert set(doc) >= {"degradation", "scenarios", "passed"}
    for s in doc["scenarios"]:
        assert set(s) >= KEYS, s
        assert s["status"] in ("pass", "fail", "skipped")
    assert result.exit_code == (0 if doc["passed"] else 9)
    return doc


def _by_name(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["name"]: s for s in doc["scenarios"]}


def _skip_if_missing(s: dict[str, Any]) -> None:
    if s["status"] == "skipped":
        if os.environ.get("SUPREME_REQUIRE_SERVICES") == "1":
            pytest.fail(f"{s['name']} skipped but services are required: {s['reason']}")
        pytest.skip(s["reason"])


def _assert_survived(s: dict[str, Any], bound_s: float) -> None:
    assert s["status"] == "pass", s
    assert s["stayed_up"] is True
    assert s["lost_records"] == 0
    assert s["recovered"] is True
    assert s["recovery_s"] is not None and 0 <= s["recovery_s"] < bound_s
    assert s["details"]["bars"] > 5 and s["details"]["equity_rows"] == s["details"]["bars"]


# --- options and the report's shape -----------------------------------------------------

def test_list_names_every_scenario(data_dir: Any) -> None:
    result = invoke("degrade", "--list")
    assert result.exit_code == 0, result.stderr
    for name in SCENARIOS:
        assert name in result.stdout
    listed = invoke("--json", "degrade", "--list")
    assert listed.exit_code == 0
    assert [s["name"] for s in listed.json()["scenarios"]] == list(SCENARIOS)


def test_help_has_an_example() -> None:
    result = invoke("degrade", "--help")
    assert result.exit_code == 0
    assert "Example:" in result.stdout


def test_an_unknown_scenario_is_a_usage_error(data_dir: Any) -> None:
    result = invoke("degrade", "--scenarios", "redis-down,nope", "--json")
    assert result.exit_code == 2
    assert "nope" in result.json()["error"]["message"]
    bad_fault = invoke("degrade", "--fault-seconds", "0.1s", "--json")
    assert bad_fault.exit_code == 2


def test_parse_scenarios() -> None:
    assert parse_scenarios(None) == list(SCENARIOS)
    assert parse_scenarios(["redis-down,clock-skew", "redis-down"]) == ["redis-down",
                                                                        "clock-skew"]
    assert parse_scenarios(["none"]) == []


# --- the statistics ---------------------------------------------------------------------

def test_compare_flags_a_real_slowdown_and_not_noise() -> None:
    first = [10.0 + 0.1 * (i % 5) for i in range(15)]
    slower = [13.0 + 0.1 * (i % 5) for i in range(15)]
    got = compare(first, slower, "latency_us")
    assert got["verdict"] == "degraded"
    assert got["p_value"] < 0.01 and got["effect_size"] == pytest.approx(1.0)
    assert got["relative_change"] == pytest.approx(0.3, abs=0.02)
    same = compare(first, list(reversed(first)), "latency_us")
    assert same["verdict"] == "stable" and same["p_value"] > 0.5
    # significant but small: below the practical threshold, not a degradation
    assert compare(first, [x * 1.05 for x in first], "latency_us")["verdict"] == "stable"
    # throughput falling is the bad direction
    assert compare([100.0 + i % 3 for i in range(12)], [50.0 + i % 3 for i in range(12)],
                   "bars_per_s")["verdict"] == "degraded"
    assert compare([1.0] * 3, [2.0] * 3, "rss_mib")["verdict"] == "insufficient data"


def test_degradation_over_time_measures_a_real_run(data_dir: Any) -> None:
    result = invoke("--json", "degrade", "--scenarios", "none", "--duration", "3s")
    doc = _doc(result)
    deg = doc["degradation"]
    assert deg["windows"] >= 15 and deg["bars"] > 1000
    for name in ("latency_us", "bars_per_s", "rss_mib"):
        m = deg["metrics"][name]
        assert m["verdict"] in ("stable", "degraded", "improved")
        assert 0.0 <= m["p_value"] <= 1.0 and -1.0 <= m["effect_size"] <= 1.0
        assert m["median_first"] > 0 and m["median_last"] > 0
    assert doc["scenarios"] == []
    assert "degrade [" in result.stderr  # progress went to stderr, not stdout


# --- fault drills against a running engine ----------------------------------------------

@pytest.mark.redis
@pytest.mark.slow
def test_redis_down_and_exchange_faults(data_dir: Any) -> None:
    result = invoke("--json", "degrade", "--duration", "0", "--fault-seconds", "1.5",
                    "--scenarios", "redis-down,exchange-5xx,clock-skew,feed-stalled")
    doc = _doc(result)
    got = _by_name(doc)
    assert list(got) == ["redis-down", "exchange-5xx", "clock-skew", "feed-stalled"]
    for name in ("exchange-5xx", "clock-skew", "feed-stalled"):
        _assert_survived(got[name], bound_s=8.0)
        assert got[name]["details"]["candles_missing"] == 0
        assert got[name]["details"]["candles_repeated"] == 0
    assert got["exchange-5xx"]["details"]["fault_hits"] >= 1
    assert got["exchange-5xx"]["details"]["bars_during_fault"] == 0
    skew = got["clock-skew"]["details"]
    assert skew["connectivity_skew_ms"] == pytest.approx(5000, abs=1000)
    assert skew["skew_detected_by_run"] is False
    assert "not detected" in got["clock-skew"]["engine_did"]
    redis = got["redis-down"]
    _skip_if_missing(redis)
    _assert_survived(redis, bound_s=5.0)
    assert redis["details"]["l2_errors"] >= 1 and redis["details"]["breaker_trips"] >= 1
    assert redis["details"]["bars_during_fault"] > 10  # fail-open: the ticks went on
    assert doc["passed"] is True and result.exit_code == 0


@pytest.mark.redis
@pytest.mark.slow
def test_redis_frozen_and_slow(data_dir: Any) -> None:
    result = invoke("--json", "degrade", "--duration", "0", "--fault-seconds", "1",
                    "--scenarios", "redis-frozen,redis-slow")
    got = _by_name(_doc(result))
    for name in ("redis-frozen", "redis-slow"):
        _skip_if_missing(got[name])
        _assert_survived(got[name], bound_s=5.0)
        assert got[name]["details"]["l2_errors"] >= 1


def _schemas(url: str) -> set[str]:
    import psycopg

    with psycopg.connect(url, connect_timeout=3) as conn:
        rows = conn.execute("SELECT schema_name FROM information_schema.schemata "
                            "WHERE schema_name LIKE 'degrade_%'").fetchall()
    return {r[0] for r in rows}


@pytest.mark.postgres
@pytest.mark.slow
def test_postgres_down_is_injected_through_a_proxy_and_cleaned_up(
        data_dir: Any, postgres_base_url: str) -> None:
    before = _schemas(postgres_base_url)
    result = invoke("--json", "degrade", "--duration", "0", "--fault-seconds", "1.5",
                    "--scenarios", "postgres-down", "--postgres-url", postgres_base_url)
    s = _by_name(_doc(result))["postgres-down"]
    assert s["status"] in ("pass", "fail")
    assert "proxy" in s["injected"]
    assert s["details"]["writer_errors"] >= 1  # the writer really saw the outage
    assert s["recovered"] is True and s["recovery_s"] < 8.0  # and drained after it
    assert _schemas(postgres_base_url) - before == set()  # our schema was dropped


@pytest.mark.postgres
@pytest.mark.slow
def test_postgres_down_the_run_survives(data_dir: Any, postgres_base_url: str) -> None:
    result = invoke("--json", "degrade", "--duration", "0", "--fault-seconds", "1",
                    "--scenarios", "postgres-down", "--postgres-url", postgres_base_url)
    s = _by_name(_doc(result))["postgres-down"]
    assert s["status"] == "pass", s["reason"]
    assert s["lost_records"] == 0
