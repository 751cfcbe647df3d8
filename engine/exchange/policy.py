"""Retry and circuit-breaker policy for exchange calls. Pure: no ccxt import, no I/O.

Errors are classified by the names in their class hierarchy, so this module works on
ccxt's exceptions without importing ccxt (70 MiB). Transport trouble is retried with capped
exponential backoff and jitter, honouring Retry-After; errors that a resend cannot fix
(bad keys, bad symbol, invalid order, no funds) never are. Unknown errors are not retried
either: blindly resending an order is worse than reporting a failed call.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from engine.errors import ServiceUnavailable

T = TypeVar("T")

RETRYABLE = frozenset({"NetworkError", "RequestTimeout", "DDoSProtection", "RateLimitExceeded",
                       "ExchangeNotAvailable"})
NEVER_RETRIED = frozenset({"AuthenticationError", "PermissionDenied", "BadSymbol",
                           "InvalidOrder", "InsufficientFunds"})


def is_retryable(exc: BaseException) -> bool:
    names = {cls.__name__ for cls in type(exc).__mro__}
    if names & NEVER_RETRIED:
        return False
    return bool(names & RETRYABLE)


@dataclass
class RetryPolicy:
    max_attempts: int = 5
    base_s: float = 0.5
    cap_s: float = 30.0
    max_retry_after_s: float = 120.0
    rng: random.Random = field(default_factory=random.Random)

    def backoff(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds before retry number `attempt` (1-based): equal jitter on a capped
        exponential, never shorter than a server's Retry-After."""
        exp = min(self.cap_s, self.base_s * 2 ** (attempt - 1))
        delay = exp / 2 + self.rng.uniform(0, exp / 2)
        if retry_after is not None and retry_after > 0:
            delay = max(delay, min(retry_after, self.max_retry_after_s))
        return delay


@dataclass
class CircuitBreaker:
    """Opens after `threshold` consecutive transport failures; after `reset_s` one probe
    is let through (half-open): success closes it, failure opens it again."""

    name: str = "exchange"
    threshold: int = 5
    reset_s: float = 30.0
    clock: Callable[[], float] = time.monotonic
    failures: int = 0
    opened_at: float | None = None
    trips: int = 0
    last_error: str | None = None

    @property
    def state(self) -> str:
        if self.opened_at is None:
            return "closed"
        return "half_open" if self.clock() - self.opened_at >= self.reset_s else "open"

    def check(self) -> None:
        """Raise ServiceUnavailable while open, so callers stop hammering a dead peer."""
        if self.state == "open":
            assert self.opened_at is not None
            wait = self.reset_s - (self.clock() - self.opened_at)
            raise ServiceUnavailable(
                f"{self.name} circuit open after {self.failures} consecutive failures "
                f"(last: {self.last_error}); next probe in {wait:.1f} s")

    def success(self) -> None:
        self.failures = 0
        self.opened_at = None

    def failure(self, error: str) -> None:
        self.failures += 1
        self.last_error = error
        if self.opened_at is not None or self.failures >= self.threshold:
            if self.opened_at is None or self.state == "half_open":
                self.trips += 1
            self.opened_at = self.clock()


def call_with_retry(
    fn: Callable[[], T],
    policy: RetryPolicy,
    breaker: CircuitBreaker | None = None,
    retry_after: Callable[[BaseException], float | None] = lambda exc: None,
    sleep: Callable[[float], None] = time.sleep,
    on_retry: Callable[[int, BaseException, float], None] | None = None,
    deadline: float | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> T:
    """Call `fn`, retrying transport errors; never past `deadline` (a clock() value)."""
    attempt = 0
    while True:
        if breaker is not None:
            breaker.check()
        attempt += 1
        try:
            result = fn()
        except Exception as exc:
            retryable = is_retryable(exc)
            if breaker is not None and retryable:
                breaker.failure(type(exc).__name__)
            if not retryable or attempt >= policy.max_attempts:
                raise
            delay = policy.backoff(attempt, retry_after(exc))
            if deadline is not None and clock() + delay > deadline:
                raise
            if on_retry is not None:
                on_retry(attempt, exc, delay)
            sleep(delay)
            continue
        if breaker is not None:
            breaker.success()
        return result
