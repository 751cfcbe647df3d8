"""NeuromorphicCacheManager: Hebbian learning, decay, bounds, and the L1 store it runs."""

from __future__ import annotations

import math
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.errors import ConfigError, DataError
from engine.neuromorphic import NeuromorphicCacheManager

ETH = ("ETH-USDT-price", "ETH-USDT-volume", "ETH-USDT-orderbook", "ETH-USDT-trades")


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def learn_sequence(manager: NeuromorphicCacheManager, keys: tuple[str, ...] | list[str],
                   clock: FakeClock, *, rounds: int = 1, step: float = 0.01,
                   context: str | None = None) -> None:
    for _ in range(rounds):
        for key in keys:
            clock.advance(step)
            manager.learn_access_pattern(key, context)


def weight(manager: NeuromorphicCacheManager, source: str, target: str) -> float:
    return dict(manager.associations(source)).get(target, 0.0)


# ---- learning ------------------------------------------------------------------------------


def test_guide_example_predicts_the_keys_read_after_the_price() -> None:
    manager = NeuromorphicCacheManager()
    for _ in range(5):
        for key in ETH:
            manager.learn_access_pattern(key)
    assert sorted(manager.predict_prefetch_candidates("ETH-USDT-price")) == sorted(ETH[1:])


def test_hebbian_rule_strengthens_towards_one() -> None:
    clock = FakeClock()
    manager = NeuromorphicCacheManager(learning_rate=0.15, decay_rate=0.0, clock=clock)
    learn_sequence(manager, ["a", "b"], clock)
    assert weight(manager, "a", "b") == pytest.approx(0.15)
    assert weight(manager, "b", "a") == 0.0  # directed: b was never followed by a
    learn_sequence(manager, ["a", "b"], clock)
    assert weight(manager, "a", "b") == pytest.approx(0.15 + 0.15 * 0.85)
    # a followed b once (b, a across rounds), then b was accessed again without a after it
    assert weight(manager, "b", "a") == pytest.approx(0.15 * 0.85)
    learn_sequence(manager, ["a", "b"], clock, rounds=300)
    assert 0.99 < weight(manager, "a", "b") <= 1.0


def test_unreinforced_weight_decays_exponentially_with_time() -> None:
    clock = FakeClock()
    manager = NeuromorphicCacheManager(decay_rate=0.005, prefetch_threshold=0.3,
                                       min_weight=0.01, clock=clock)
    learn_sequence(manager, ["a", "b"], clock, rounds=6)
    before = weight(manager, "a", "b")
    assert manager.predict_prefetch_candidates("a") == ["b"]
    clock.advance(100.0)
    assert weight(manager, "a", "b") == pytest.approx(before * math.exp(-0.5), rel=1e-9)
    clock.advance(200.0)  # now exp(-1.5) of the learned weight: below the threshold
    assert manager.predict_prefetch_candidates("a") == []
    assert manager.learning_size() == 2  # a->b and b->a, decayed but above the floor
    clock.advance(1000.0)
    assert manager.associations("a") == []  # below min_weight: dropped when read
    assert manager.learning_size() == 1


def test_reinforcement_after_a_pause_starts_from_the_decayed_weight() -> None:
    clock = FakeClock()
    manager = NeuromorphicCacheManager(decay_rate=0.01, clock=clock)
    learn_sequence(manager, ["a", "b"], clock, rounds=3)
    learned = weight(manager, "a", "b")
    clock.advance(50.0)
    decayed = learned * math.exp(-0.5)
    learn_sequence(manager, ["a", "b"], clock, step=0.0)
    assert weight(manager, "a", "b") == pytest.approx(decayed + 0.15 * (1 - decayed), rel=1e-6)


def test_time_window_keeps_distant_accesses_apart() -> None:
    clock = FakeClock()
    manager = NeuromorphicCacheManager(window_s=1.0, clock=clock)
    learn_sequence(manager, ["a", "b"], clock, rounds=3, step=5.0)
    assert manager.learning_size() == 0
    learn_sequence(manager, ["a", "b"], clock, rounds=3, step=0.5)
    assert weight(manager, "a", "b") > 0


def test_count_window_links_only_the_last_distinct_keys() -> None:
    clock = FakeClock()
    manager = NeuromorphicCacheManager(window=2, clock=clock)
    learn_sequence(manager, ["a", "b", "c", "d"], clock)
    assert weight(manager, "b", "d") > 0 and weight(manager, "c", "d") > 0
    assert weight(manager, "a", "d") == 0.0


def test_contexts_keep_interleaved_streams_apart() -> None:
    clock = FakeClock()
    separate = NeuromorphicCacheManager(clock=clock)
    shared = NeuromorphicCacheManager(clock=clock)
    fields = ("price", "volume", "orderbook", "trades")
    for _ in range(5):
        for field in fields:
            for symbol in ("BTC", "ETH"):
                clock.advance(0.01)
                separate.learn_access_pattern(f"{symbol}-{field}", symbol)
                shared.learn_access_pattern(f"{symbol}-{field}")
    for symbol in ("BTC", "ETH"):
        targets = {target for target, _ in separate.associations(f"{symbol}-price")}
        assert targets == {f"{symbol}-{field}" for field in fields[1:]}
    crossed = {target for target, _ in shared.associations("BTC-price")}
    assert any(target.startswith("ETH") for target in crossed)


def test_mapping_context_session_group_and_timestamp() -> None:
    clock = FakeClock()
    manager = NeuromorphicCacheManager(window_s=1.0, clock=clock)
    start = clock.now  # timestamps are in the clock's units
    manager.learn_access_pattern("a", {"session": "s1", "timestamp": start})
    manager.learn_access_pattern("x", {"group": "g1", "timestamp": start + 0.1})
    manager.learn_access_pattern("b", {"session": "s1", "timestamp": start + 0.2})
    manager.learn_access_pattern("y", {"group": "g1", "timestamp": start + 5.0})  # > window_s
    assert weight(manager, "a", "b") > 0
    assert weight(manager, "x", "b") == 0.0 and weight(manager, "a", "x") == 0.0
    assert weight(manager, "x", "y") == 0.0
    assert manager.stats()["contexts"] == 2


def test_prediction_respects_threshold_limit_and_max_prefetch() -> None:
    clock = FakeClock()
    manager = NeuromorphicCacheManager(prefetch_threshold=0.5, max_prefetch=2, decay_rate=0.0,
                                       clock=clock)
    learn_sequence(manager, ETH, clock, rounds=4)  # 1 - 0.85**4 = 0.478 < 0.5
    assert manager.predict_prefetch_candidates(ETH[0]) == []
    learn_sequence(manager, ETH, clock)  # 0.556
    assert len(manager.predict_prefetch_candidates(ETH[0])) == 2
    assert len(manager.predict_prefetch_candidates(ETH[0], limit=3)) == 3
    assert manager.predict_prefetch_candidates(ETH[0], limit=0) == []
    assert manager.predict_prefetch_candidates("never-seen") == []


def test_prediction_ranks_by_strength() -> None:
    clock = FakeClock()
    manager = NeuromorphicCacheManager(prefetch_threshold=0.1, decay_rate=0.0, clock=clock)
    learn_sequence(manager, ["a", "strong"], clock, rounds=6)
    learn_sequence(manager, ["a", "weak"], clock, rounds=2)
    assert manager.predict_prefetch_candidates("a") == ["strong", "weak"]


def test_fanout_pruning_keeps_the_strongest_edges() -> None:
    clock = FakeClock()
    manager = NeuromorphicCacheManager(max_fanout=3, window=2, decay_rate=0.0, clock=clock)
    for n in range(20):
        learn_sequence(manager, ["src", "keep", f"new{n}"], clock)
    targets = dict(manager.associations("src"))
    assert len(targets) == 3 and targets["keep"] > 0.9
    assert set(targets) == {"keep", "new18", "new19"}


def test_a_key_that_stops_following_fades_below_the_threshold() -> None:
    clock = FakeClock()
    manager = NeuromorphicCacheManager(decay_rate=0.0, window=2, clock=clock)
    learn_sequence(manager, ["src", "old"], clock, rounds=10)
    assert manager.predict_prefetch_candidates("src") == ["old"]
    learned = 1 - 0.85**10
    learn_sequence(manager, ["src", "new"], clock, rounds=10)
    assert weight(manager, "src", "old") == pytest.approx(learned * 0.85**10)  # 0.16 < 0.2
    assert manager.predict_prefetch_candidates("src") == ["new"]


def test_source_pruning_drops_the_least_recently_used_source() -> None:
    clock = FakeClock()
    manager = NeuromorphicCacheManager(max_sources=5, max_fanout=2, clock=clock)
    learn_sequence(manager, [f"k{n}" for n in range(50)], clock)
    assert manager.stats()["sources"] == 5
    assert manager.learning_size() <= 5 * 2
    assert manager.associations("k0") == []
    assert manager.associations("k47") != []


def test_export_import_round_trip() -> None:
    clock = FakeClock()
    source = NeuromorphicCacheManager(clock=clock)
    learn_sequence(source, ETH, clock, rounds=5)
    rows = source.export_weights()
    assert len(rows) == source.learning_size() == 12
    target = NeuromorphicCacheManager(clock=FakeClock(5.0))
    target.import_weights(rows)
    imported = sorted(target.export_weights())
    assert [row[:2] for row in imported] == [row[:2] for row in sorted(rows)]
    assert [row[2] for row in imported] == pytest.approx([row[2] for row in sorted(rows)])
    assert target.predict_prefetch_candidates(ETH[0]) == source.predict_prefetch_candidates(ETH[0])
    assert target.top_associations(3) == source.top_associations(3)


@pytest.mark.parametrize("bad_row", [("a", "b", 1.5), ("a", "b", -0.1), ("a", "", 0.5),
                                     ("a", "b"), ("a", "b", "heavy"), (1, "b", 0.5)])
def test_import_rejects_bad_rows_without_partial_import(bad_row: tuple[object, ...]) -> None:
    manager = NeuromorphicCacheManager()
    with pytest.raises(DataError):
        manager.import_weights([("x", "y", 0.5), bad_row])  # type: ignore[list-item]
    assert manager.learning_size() == 0


def test_import_respects_fanout_and_counts_edges() -> None:
    manager = NeuromorphicCacheManager(max_fanout=2)
    manager.import_weights([("a", "b", 0.9), ("a", "c", 0.2), ("a", "d", 0.5), ("a", "a", 1.0)])
    assert manager.associations("a") == [("b", pytest.approx(0.9)), ("d", pytest.approx(0.5))]
    assert manager.learning_size() == 2


def test_top_associations_are_the_strongest_overall() -> None:
    manager = NeuromorphicCacheManager()
    manager.import_weights([("a", "b", 0.3), ("c", "d", 0.9), ("e", "f", 0.6)])
    top = manager.top_associations(2)
    assert [(s, t) for s, t, _ in top] == [("c", "d"), ("e", "f")]


def test_reset_learning_forgets_edges_but_keeps_values() -> None:
    clock = FakeClock()
    manager = NeuromorphicCacheManager(clock=clock)
    manager.put("v", 1)
    learn_sequence(manager, ETH, clock, rounds=5)
    assert manager.learning_size() > 0
    manager.reset_learning()
    assert manager.learning_size() == 0
    assert manager.predict_prefetch_candidates(ETH[0]) == []
    assert manager.get("v") == 1


# ---- store ---------------------------------------------------------------------------------


def test_get_put_delete_clear_and_counters() -> None:
    manager = NeuromorphicCacheManager(capacity=4)
    assert manager.get("a") is None and manager.get("a", "dflt") == "dflt"
    manager.put("a", 1)
    manager.put("a", 2)
    assert manager.get("a") == 2 and manager.contains("a") and len(manager) == 1
    assert manager.delete("a") is True and manager.delete("a") is False
    manager.put("p", 3, prefetched=True)
    manager.put("q", 4, prefetched=True)
    assert manager.get("p") == 3
    manager.clear()
    assert len(manager) == 0 and manager.capacity == 4
    stats = manager.stats()
    assert (stats["hits"], stats["misses"]) == (2, 2)
    assert (stats["prefetched"], stats["prefetch_hits"], stats["prefetch_wasted"]) == (2, 1, 1)


def test_expired_entries_read_as_misses_and_are_dropped() -> None:
    clock = FakeClock()
    manager = NeuromorphicCacheManager(capacity=4, clock=clock)
    manager.put("a", 1, expires_at=clock.now + 1.0)
    manager.put("p", 2, prefetched=True, expires_at=clock.now + 1.0)
    manager.put("forever", 3)
    assert manager.get("a") == 1
    clock.advance(1.0)
    assert manager.get("a") is None
    assert not manager.contains("p")
    assert len(manager) == 1 and manager.get("forever") == 3
    assert manager.prefetch_wasted == 1


def test_eviction_takes_unused_prefetched_entries_first() -> None:
    manager = NeuromorphicCacheManager(capacity=3)
    manager.put("a", 1)
    manager.put("b", 2)
    manager.put("c", 3, prefetched=True)
    manager.put("d", 4)  # a, b were never read either, and are older: c still goes first
    assert not manager.contains("c") and manager.contains("a") and manager.contains("b")
    assert (manager.evictions, manager.prefetch_wasted) == (1, 1)


def test_eviction_takes_expired_entries_first() -> None:
    clock = FakeClock()
    manager = NeuromorphicCacheManager(capacity=2, clock=clock)
    manager.put("old", 1)
    manager.put("short", 2, expires_at=clock.now + 1)
    clock.advance(2)
    manager.put("new", 3)
    assert manager.contains("old") and manager.contains("new") and len(manager) == 2


def test_frequently_read_entries_survive_a_scan() -> None:
    manager = NeuromorphicCacheManager(capacity=10)
    hot = [f"hot{n}" for n in range(5)]
    for key in hot:
        manager.put(key, key)
    for _ in range(3):
        for key in hot:
            assert manager.get(key) == key
    for n in range(200):
        manager.put(f"scan{n}", n)
    assert all(manager.contains(key) for key in hot)
    assert len(manager) == 10


def test_fresh_prefetches_outlive_older_entries() -> None:
    clock = FakeClock()
    manager = NeuromorphicCacheManager(capacity=4, clock=clock)
    learn_sequence(manager, ETH, clock, rounds=5)
    for n in range(4):
        manager.put(f"old{n}", n)
        manager.get(f"old{n}")
    clock.advance(0.01)
    manager.learn_access_pattern(ETH[0])
    for key in manager.predict_prefetch_candidates(ETH[0]):
        manager.put(key, key, prefetched=True)
    assert all(manager.contains(key) for key in ETH[1:])
    assert manager.prefetch_wasted == 0


def test_invalid_settings_raise_config_error() -> None:
    for kwargs in ({"capacity": 0}, {"learning_rate": 0.0}, {"learning_rate": 1.5},
                   {"decay_rate": -1.0}, {"window": 0}, {"window_s": 0.0},
                   {"prefetch_threshold": 2.0}, {"max_prefetch": -1}, {"max_fanout": 0},
                   {"max_sources": 0}, {"capacity": True}, {"decay_rate": math.nan}):
        with pytest.raises(ConfigError):
            NeuromorphicCacheManager(**kwargs)


# ---- concurrency and bounds ----------------------------------------------------------------


def test_threads_hammering_get_put_and_learn_keep_invariants() -> None:
    manager = NeuromorphicCacheManager(capacity=50, max_sources=40, max_fanout=4)
    errors: list[BaseException] = []
    gets = [0, 0]

    def reader(slot: int) -> None:
        try:
            for n in range(4000):
                key = f"k{n % 97}"
                manager.get(key)
                gets[slot] += 1
                manager.learn_access_pattern(key)
                manager.predict_prefetch_candidates(key)
        except BaseException as exc:
            errors.append(exc)

    def writer() -> None:
        try:
            for n in range(4000):
                key = f"k{(n * 7) % 97}"
                manager.put(key, n, prefetched=n % 3 == 0)
                if n % 11 == 0:
                    manager.delete(key)
                if n % 500 == 0:
                    manager.export_weights()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=reader, args=(0,)),
               threading.Thread(target=reader, args=(1,)), threading.Thread(target=writer)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors
    assert len(manager) <= 50
    stats = manager.stats()
    assert stats["hits"] + stats["misses"] == sum(gets) == 8000
    assert stats["prefetch_hits"] + stats["prefetch_wasted"] <= stats["prefetched"]
    assert manager.learning_size() == len(manager.export_weights()) <= 40 * 4


operations = st.lists(
    st.tuples(st.sampled_from(["get", "put", "prefetch", "learn", "learn", "delete", "predict"]),
              st.integers(0, 15), st.sampled_from([0.0, 0.01, 0.1, 0.5, 3.0, 400.0])),
    min_size=20, max_size=400)


@settings(max_examples=150, deadline=None)
@given(ops=operations, capacity=st.integers(1, 8), max_sources=st.integers(1, 6),
       max_fanout=st.integers(1, 4), window=st.integers(1, 5),
       decay=st.sampled_from([0.0, 0.005, 0.5]))
def test_memory_stays_bounded_and_weights_in_range(
        ops: list[tuple[str, int, float]], capacity: int, max_sources: int, max_fanout: int,
        window: int, decay: float) -> None:
    clock = FakeClock()
    manager = NeuromorphicCacheManager(capacity, decay_rate=decay, window=window,
                                       max_sources=max_sources, max_fanout=max_fanout,
                                       min_weight=0.0, clock=clock)
    for op, n, dt in ops:
        key = f"k{n}"
        clock.advance(dt)
        if op == "get":
            manager.get(key)
        elif op in ("put", "prefetch"):
            manager.put(key, n, prefetched=op == "prefetch", expires_at=clock.now + 3.0)
        elif op == "learn":
            manager.learn_access_pattern(key)
        elif op == "delete":
            manager.delete(key)
        else:
            manager.predict_prefetch_candidates(key)
        assert len(manager) <= capacity
        assert manager.learning_size() <= max_sources * max_fanout
    rows = manager.export_weights()
    assert len(rows) == manager.learning_size()  # min_weight 0: every edge is live
    assert all(0.0 <= w <= 1.0 for _, _, w in rows)
    assert all(source != target for source, target, _ in rows)
    assert manager.stats()["sources"] <= max_sources
    stats = manager.stats()
    assert stats["prefetch_hits"] + stats["prefetch_wasted"] <= stats["prefetched"]


@settings(max_examples=50, deadline=None)
@given(rounds=st.integers(1, 400), rate=st.floats(0.01, 1.0))
def test_weights_never_leave_the_unit_interval(rounds: int, rate: float) -> None:
    clock = FakeClock()
    manager = NeuromorphicCacheManager(learning_rate=rate, decay_rate=0.0, clock=clock)
    learn_sequence(manager, ["a", "b", "c"], clock, rounds=rounds, step=0.0)
    assert all(0.0 < w <= 1.0 for _, _, w in manager.export_weights())
