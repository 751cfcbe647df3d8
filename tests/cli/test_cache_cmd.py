"""`supreme cache stats|reset|bench` through the CLI, on the embedded store and real Redis."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.cli.helpers import invoke


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[Any]:
    import redis

    client = redis.Redis.from_url(redis_url, socket_timeout=2)
    yield client
    client.close()


def test_run_summary_has_a_cache_section(data_dir: Path) -> None:
    r = invoke("run", "--feed", "sim", "--bars", "3000", "--seed", "3", "--json")
    assert r.exit_code == 0, r.stderr
    cache = r.json()["cache"]
    assert set(cache["tiers"]) == {"l1", "l2", "l3"}
    assert cache["tiers"]["l2"]["status"] == "off"
    assert cache["tiers"]["l3"]["status"] == "ok"
    assert cache["counters"]["published"] >= 3000
    assert cache["flushed"] is True
    for tier in ("l1", "l3"):
        rate = cache["tiers"][tier]["hit_rate"]
        assert rate is None or 0.0 <= rate <= 1.0


def test_no_cache_flag_runs_without_it(data_dir: Path) -> None:
    r = invoke("run", "--feed", "sim", "--bars", "500", "--no-cache", "--json")
    assert r.exit_code == 0, r.stderr
    assert "cache" not in r.json()


def test_stats_on_the_embedded_store_reports_last_run(data_dir: Path) -> None:
    assert invoke("run", "--feed", "sim", "--bars", "2000", "--json").exit_code == 0
    r = invoke("cache", "stats", "--json")
    assert r.exit_code == 0, r.stderr
    doc = r.json()
    assert doc["namespace"] == "supreme:local:"
    assert doc["tiers"]["l2"]["status"] == "off"
    assert doc["tiers"]["l3"]["status"] == "ok"
    assert doc["tiers"]["l3"]["size"] >= 2  # the ticker and the state snapshot at least
    assert doc["last_run"]["cache"]["tiers"]["l3"]["status"] == "ok"
    assert "not reachable" in doc["tiers"]["l1"]["status"]
    human = invoke("cache", "stats")
    assert human.exit_code == 0
    assert "L3 store" in human.stdout and "last run" in human.stdout


def test_stats_with_redis_down_exits_degraded(data_dir: Path) -> None:
    from engine.testing.redis_server import free_port

    r = invoke("cache", "stats", "--json",
               env={"REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"})
    assert r.exit_code == 7
    doc = r.json()
    assert doc["tiers"]["l2"]["status"] == "down"
    assert doc["degraded"] is True


def test_reset_needs_confirmation_off_a_terminal(data_dir: Path) -> None:
    r = invoke("cache", "reset", "--json")
    assert r.exit_code == 2
    assert "--yes" in r.json()["error"]["message"]


@pytest.mark.redis
def test_stats_shows_redis_memory_policy_and_changes_nothing(
        data_dir: Path, redis_url: str, redis_client: Any) -> None:
    try:
        before = redis_client.config_get("maxmemory*")
    except Exception:
        before = None
    env = {"REDIS_URL": redis_url, "SUPREME_CACHE__ENV": f"t{uuid.uuid4().hex[:8]}"}
    r = invoke("cache", "stats", "--json", env=env)
    assert r.exit_code == 0, r.stderr
    info = r.json()["tiers"]["l2"]["info"]
    assert "maxmemory_policy" in info and "maxmemory" in info
    assert redis_url.split("@")[-1].split("/")[2] in info["url"]
    if before is not None:
        assert redis_client.config_get("maxmemory*") == before


@pytest.mark.redis
def test_reset_keeps_other_tenants_keys(data_dir: Path, redis_url: str,
                                        redis_client: Any) -> None:
    ns_env = f"t{uuid.uuid4().hex[:8]}"
    env = {"REDIS_URL": redis_url, "SUPREME_CACHE__ENV": ns_env}
    tenant = f"othertenant:{uuid.uuid4().hex}"
    neighbour = f"supreme:o{uuid.uuid4().hex[:8]}:k"
    redis_client.set(tenant, b"keep")
    redis_client.set(neighbour, b"keep")
    try:
        r = invoke("run", "--feed", "sim", "--bars", "2000", "--json", env=env)
        assert r.exit_code == 0, r.stderr
        assert r.json()["cache"]["tiers"]["l2"]["status"] == "ok"
        ours = list(redis_client.scan_iter(match=f"supreme:{ns_env}:*"))
        assert ours, "the run wrote nothing to L2"
        r = invoke("cache", "reset", "--yes", "--json", env=env)
        assert r.exit_code == 0, r.stderr
        assert r.json()["reset"]["l2_keys_deleted"] >= 1
        assert not list(redis_client.scan_iter(match=f"supreme:{ns_env}:*"))
        assert redis_client.get(tenant) == b"keep"
        assert redis_client.get(neighbour) == b"keep"
    finally:
        redis_client.delete(tenant, neighbour)
        for key in redis_client.scan_iter(match=f"supreme:{ns_env}:*"):
            redis_client.unlink(key)


def test_bench_json_shape_on_a_trace_file(tmp_path: Path) -> None:
    trace = tmp_path / "keys.txt"
    trace.write_text("\n".join(["a", "b", "c", "a", "b", "c", "d"] * 200) + "\n")
    r = invoke("cache", "bench", "--trace", str(trace), "--capacity", "2", "--json")
    assert r.exit_code == 0, r.stderr
    doc = r.json()
    assert doc["capacity"] == 2 and doc["accesses"] == 1400
    assert set(doc["policies"]) == {"lru", "lfu", "neuromorphic"}
    for policy in doc["policies"].values():
        assert 0.0 <= policy["hit_rate"] <= 1.0
        assert policy["loads"] == policy["misses"] + policy["prefetches"]


def test_bench_missing_trace_file_exits_3(tmp_path: Path) -> None:
    r = invoke("cache", "bench", "--trace", str(tmp_path / "nope.txt"), "--json")
    assert r.exit_code == 3


@pytest.mark.realdata
@pytest.mark.slow
def test_bench_engine_trace_is_recorded_from_a_real_replay(shared_data: Path) -> None:
    r = invoke("cache", "bench", "--trace", "engine", "--data",
               str(shared_data / "ETH_USDT-1m.json"), "--json")
    assert r.exit_code == 0, r.stderr
    doc = r.json()
    assert doc["trace"] == "engine" and doc["accesses"] > 60_000
    assert doc["capacity"] == 10_000
    goal = next(g for g in doc["goals"] if "95%" in g["goal"])
    assert goal["measured"] == doc["policies"]["neuromorphic"]["hit_rate"]
