import random

import pytest

from engine.latency import SUB, LatencyHistogram


def test_percentiles_within_bucket_error():
    rng = random.Random(1)
    values = [int(rng.lognormvariate(7, 1)) for _ in range(50_000)]
    h = LatencyHistogram()
    for v in values:
        h.record(v)
    values.sort()
    for q in (0.5, 0.95, 0.99):
        exact = values[int(q * len(values)) - 1]
        assert h.percentile_ns(q) == pytest.approx(exact, rel=2.0 / SUB)
    assert h.max_ns == values[-1] and h.min_ns == values[0]
    assert h.total_ns == sum(values)


def test_memory_is_bounded_regardless_of_count():
    h = LatencyHistogram()
    size = h.nbytes()
    for v in range(0, 10**12, 10**7):
        h.record(v)
    assert h.nbytes() == size
    assert h.percentile_ns(1.0) <= h.max_ns


def test_summary_and_merge():
    a, b = LatencyHistogram(), LatencyHistogram()
    assert a.summary_us()["p50"] is None
    for v in (1000, 2000, 3000):
        a.record(v)
    b.record(10_000)
    a.merge(b)
    s = a.summary_us()
    assert s["count"] == 4 and s["max"] == 10.0 and s["mean"] == 4.0
