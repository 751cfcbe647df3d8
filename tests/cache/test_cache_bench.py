"""`run_bench` and its traces: report shape, accounting, and the goals on reduced traces."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from engine.cache import traces
from engine.cache.bench import run_bench
from engine.errors import ConfigError, DataError

POLICY_FIELDS = {"hit_rate", "hits", "misses", "loads", "prefetches", "prefetch_hits",
                 "prefetch_precision", "prefetch_recall", "wasted_prefetches",
                 "ns_per_access", "wall_s"}


@pytest.fixture(scope="module")
def cooccur_report() -> dict[str, Any]:
    keys = traces.cooccur(seed=3, groups=1000, accesses=30_000)
    return run_bench(keys, trace_name="cooccur", seed=3)


@pytest.fixture(scope="module")
def scan_report() -> dict[str, Any]:
    keys = traces.scan(seed=3, groups=1000, accesses=30_000)
    return run_bench(keys, trace_name="scan", seed=3)


def test_report_shape_is_json_and_complete(cooccur_report: dict[str, Any]) -> None:
    doc = json.loads(json.dumps(cooccur_report))
    assert doc["trace"] == "cooccur" and doc["seed"] == 3 and doc["accesses"] == 30_000
    assert doc["capacity"] == max(1, doc["distinct_keys"] // 10)
    assert set(doc["policies"]) == {"lru", "lfu", "neuromorphic"}
    for policy in doc["policies"].values():
        assert set(policy) == POLICY_FIELDS
    assert [set(goal) for goal in doc["goals"]] == [{"goal", "target", "measured", "met"}]


@pytest.mark.parametrize("report", ["cooccur_report", "scan_report"])
def test_accounting_holds_for_every_policy(report: str, request: pytest.FixtureRequest) -> None:
    doc = request.getfixturevalue(report)
    for name, policy in doc["policies"].items():
        assert 0.0 <= policy["hit_rate"] <= 1.0, name
        assert policy["hits"] + policy["misses"] == doc["accesses"]
        assert policy["hit_rate"] == pytest.approx(policy["hits"] / doc["accesses"])
        assert policy["loads"] == policy["misses"] + policy["prefetches"]
        assert policy["ns_per_access"] > 0
    for name in ("lru", "lfu"):
        policy = doc["policies"][name]
        assert policy["prefetches"] == policy["prefetch_hits"] == 0
        assert policy["prefetch_precision"] is None and policy["prefetch_recall"] == 0.0
    neuro = doc["policies"]["neuromorphic"]
    assert neuro["prefetches"] > 0
    assert neuro["prefetch_precision"] == pytest.approx(neuro["prefetch_hits"]
                                                        / neuro["prefetches"])
    assert neuro["prefetch_recall"] == pytest.approx(
        neuro["prefetch_hits"] / (neuro["prefetch_hits"] + neuro["misses"]))
    assert neuro["prefetch_hits"] + neuro["wasted_prefetches"] <= neuro["prefetches"]


def test_neuromorphic_beats_lru_by_five_points_on_cooccur(cooccur_report: dict[str, Any]) -> None:
    policies = cooccur_report["policies"]
    assert policies["neuromorphic"]["hit_rate"] >= policies["lru"]["hit_rate"] + 0.05
    goal = cooccur_report["goals"][0]
    assert goal["measured"] == policies["neuromorphic"]["hit_rate"]
    assert goal["target"] == pytest.approx(policies["lru"]["hit_rate"] + 0.05)
    assert goal["met"] is True


def test_neuromorphic_within_one_point_of_lru_on_scan(scan_report: dict[str, Any]) -> None:
    policies = scan_report["policies"]
    assert policies["neuromorphic"]["hit_rate"] >= policies["lru"]["hit_rate"] - 0.01
    assert scan_report["goals"][0]["met"] is True


def test_goals_report_a_miss_instead_of_hiding_it() -> None:
    keys = traces.cooccur(seed=1, groups=50, accesses=4000)
    # room for every key: LRU only has compulsory misses, so nothing can win by 5 points
    doc = run_bench(keys, trace_name="cooccur", capacity=len(set(keys)))
    goal = doc["goals"][0]
    assert goal["met"] is False and goal["measured"] < goal["target"]
    engine = run_bench(keys, trace_name="engine", capacity=2)
    assert engine["goals"][0]["target"] == 0.95 and engine["goals"][0]["met"] is False
    assert run_bench(keys, trace_name="mine.txt", capacity=20)["goals"] == []


def test_progress_reports_each_policy_to_completion() -> None:
    calls: list[tuple[str, int, int]] = []
    keys = traces.cooccur(seed=0, groups=20, accesses=25_000)
    run_bench(keys, trace_name="cooccur", progress=lambda *call: calls.append(call))
    finals = [call for call in calls if call[1] == call[2]]
    assert finals == [("lru", 25_000, 25_000), ("lfu", 25_000, 25_000),
                      ("neuromorphic", 25_000, 25_000)]
    assert len(calls) == 9


def test_bench_rejects_empty_trace_and_bad_capacity() -> None:
    with pytest.raises(ConfigError):
        run_bench([], trace_name="empty")
    with pytest.raises(ConfigError):
        run_bench(["a"], trace_name="one", capacity=0)


# ---- traces --------------------------------------------------------------------------------


def test_cooccur_trace_is_seeded_groups_of_four_with_zipf_popularity() -> None:
    keys = traces.cooccur(seed=7, groups=100, accesses=20_000)
    assert keys == traces.cooccur(seed=7, groups=100, accesses=20_000)
    assert keys != traces.cooccur(seed=8, groups=100, accesses=20_000)
    assert len(keys) == 20_000
    for start in range(0, len(keys), 4):
        visit = keys[start:start + 4]
        assert len({key.split("-")[0] for key in visit}) == 1
        assert {key.split("-")[1] for key in visit} == set(traces.GROUP_FIELDS)
    visits = Counter(key.split("-")[0] for key in keys[::4])
    assert visits["G0"] > 3 * visits["G9"] > 0  # Zipf(1): rank 1 about 10x rank 10


def test_scan_trace_mixes_one_off_runs_into_the_co_access_trace() -> None:
    keys = traces.scan(seed=2, groups=100, accesses=40_000, scan_fraction=0.2)
    assert len(keys) == 40_000 and keys == traces.scan(seed=2, groups=100, accesses=40_000,
                                                       scan_fraction=0.2)
    scanned = [key for key in keys if key.startswith("scan-")]
    assert len(scanned) == len(set(scanned))
    assert 0.12 < len(scanned) / len(keys) < 0.28
    runs = [len(run) for run in "".join("s" if k.startswith("scan-") else "."
                                        for k in keys).split(".") if run]
    assert min(runs[:-1]) >= 100 and max(runs) <= 500


@pytest.mark.parametrize("kwargs", [{"groups": 0}, {"accesses": 0}, {"zipf_s": -1.0}])
def test_trace_parameters_are_checked(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        traces.cooccur(**kwargs)
    with pytest.raises(ConfigError):
        traces.scan(scan_fraction=1.0)


def test_trace_file_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "keys.txt"
    keys = traces.cooccur(seed=1, groups=30, accesses=2000)
    path.write_text("# recorded by hand\n\n" + "\n".join(keys) + "\n  \n# end\n")
    loaded = traces.load_trace_file(path)
    assert loaded == keys
    doc = run_bench(loaded, trace_name=str(path), capacity=20)
    assert doc["accesses"] == 2000 and doc["distinct_keys"] == len(set(keys))


@pytest.mark.parametrize("content", [None, b"", b"# only a comment\n\n", b"\x00\x01binary",
                                     b"\xff\xfe not utf-8\n", "dir"])
def test_trace_file_errors_are_data_errors(tmp_path: Path, content: bytes | str | None) -> None:
    path = tmp_path / "trace.txt"
    if content == "dir":
        path.mkdir()
    elif isinstance(content, bytes):
        path.write_bytes(content)
    with pytest.raises(DataError, match="trace file"):
        traces.load_trace_file(path)
