"""A bounded latency histogram: constant memory however long a run lasts.

Values (nanoseconds) fall into log-linear buckets: 2**SUB_BITS sub-buckets per power of two,
so a reported percentile is within 1/2**SUB_BITS (about 3%) of the true value. The exact
count, sum, minimum and maximum are kept alongside.
"""

from __future__ import annotations

from typing import Any

SUB_BITS = 5
SUB = 1 << SUB_BITS
MAX_EXP = 40  # 2**40 ns is about 18 minutes; anything slower lands in the last bucket
N_BUCKETS = (MAX_EXP + 1) * SUB


def _bucket(ns: int) -> int:
    if ns < SUB:
        return ns if ns > 0 else 0
    shift = ns.bit_length() - SUB_BITS - 1
    index = ((shift + 1) << SUB_BITS) + ((ns >> shift) - SUB)
    return index if index < N_BUCKETS else N_BUCKETS - 1


def _bucket_mid(index: int) -> float:
    if index < SUB:
        return float(index)
    shift = (index >> SUB_BITS) - 1
    low = (SUB + (index & (SUB - 1))) << shift
    return low + ((1 << shift) - 1) / 2.0


class LatencyHistogram:
    __slots__ = ("count", "counts", "max_ns", "min_ns", "total_ns")

    def __init__(self) -> None:
        self.counts = [0] * N_BUCKETS
        self.count = 0
        self.total_ns = 0
        self.max_ns = 0
        self.min_ns = 0

    def record(self, ns: int) -> None:
        if ns < SUB:
            index = ns if ns > 0 else 0
        else:
            shift = ns.bit_length() - SUB_BITS - 1
            index = ((shift + 1) << SUB_BITS) + ((ns >> shift) - SUB)
            if index >= N_BUCKETS:
                index = N_BUCKETS - 1
        self.counts[index] += 1
        self.count += 1
        self.total_ns += ns
        if ns > self.max_ns:
            self.max_ns = ns
        if ns < self.min_ns or self.count == 1:
            self.min_ns = ns

    def merge(self, other: LatencyHistogram) -> None:
        for i, c in enumerate(other.counts):
            if c:
                self.counts[i] += c
        if other.count:
            self.min_ns = other.min_ns if not self.count else min(self.min_ns, other.min_ns)
        self.count += other.count
        self.total_ns += other.total_ns
        self.max_ns = max(self.max_ns, other.max_ns)

    def percentile_ns(self, q: float) -> float:
        """The value at quantile q (0..1), from the bucket midpoint, clamped to min/max."""
        if not self.count:
            return 0.0
        rank = max(1, int(q * self.count + 0.999999999))
        seen = 0
        for i, c in enumerate(self.counts):
            seen += c
            if seen >= rank:
                return min(max(_bucket_mid(i), float(self.min_ns)), float(self.max_ns))
        return float(self.max_ns)

    def summary_us(self) -> dict[str, Any]:
        if not self.count:
            return {"count": 0, "mean": None, "p50": None, "p95": None, "p99": None, "max": None}
        return {
            "count": self.count,
            "mean": self.total_ns / self.count / 1000.0,
            "p50": self.percentile_ns(0.50) / 1000.0,
            "p95": self.percentile_ns(0.95) / 1000.0,
            "p99": self.percentile_ns(0.99) / 1000.0,
            "max": self.max_ns / 1000.0,
        }

    def cumulative_counts(self, bounds_ns: list[float]) -> list[int]:
        """How many values fell at or below each bound (ascending), as a Prometheus
        histogram's buckets need; a value counts by its bucket's midpoint (≤3 % off)."""
        out: list[int] = []
        seen = 0
        i = 0
        counts = self.counts
        for bound in bounds_ns:
            while i < N_BUCKETS and _bucket_mid(i) <= bound:
                seen += counts[i]
                i += 1
            out.append(seen)
        return out

    def nbytes(self) -> int:
        """Approximate heap held: fixed, independent of how many values were recorded."""
        import sys

        return sys.getsizeof(self.counts) + 8 * N_BUCKETS
