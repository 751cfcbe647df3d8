import random

import ccxt
import pytest

from engine.errors import ServiceUnavailable
from engine.exchange.policy import CircuitBreaker, RetryPolicy, call_with_retry, is_retryable

RETRIED = [ccxt.NetworkError, ccxt.RequestTimeout, ccxt.DDoSProtection,
           ccxt.RateLimitExceeded, ccxt.ExchangeNotAvailable, ccxt.OnMaintenance]
NEVER = [ccxt.AuthenticationError, ccxt.PermissionDenied, ccxt.BadSymbol, ccxt.InvalidOrder,
         ccxt.InsufficientFunds, ccxt.OrderNotFound, ccxt.ExchangeError, ValueError]


@pytest.mark.parametrize("cls", RETRIED)
def test_transport_errors_are_retried(cls):
    assert is_retryable(cls("x"))


@pytest.mark.parametrize("cls", NEVER)
def test_errors_a_resend_cannot_fix_are_never_retried(cls):
    assert not is_retryable(cls("x"))


class Flaky:
    def __init__(self, errors):
        self.errors = list(errors)
        self.calls = 0

    def __call__(self):
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "ok"


def test_retries_then_succeeds_with_capped_jittered_backoff():
    sleeps = []
    fn = Flaky([ccxt.RequestTimeout("t"), ccxt.NetworkError("n"), ccxt.ExchangeNotAvailable("e")])
    policy = RetryPolicy(max_attempts=5, base_s=1.0, cap_s=3.0, rng=random.Random(1))
    assert call_with_retry(fn, policy, sleep=sleeps.append) == "ok"
    assert fn.calls == 4
    assert 0.5 <= sleeps[0] <= 1.0 and 1.0 <= sleeps[1] <= 2.0 and 1.5 <= sleeps[2] <= 3.0


def test_never_retried_error_raises_at_once():
    sleeps = []
    fn = Flaky([ccxt.InsufficientFunds("no money")])
    with pytest.raises(ccxt.InsufficientFunds):
        call_with_retry(fn, RetryPolicy(), sleep=sleeps.append)
    assert fn.calls == 1 and sleeps == []


def test_retry_after_is_honoured_and_capped():
    sleeps = []
    fn = Flaky([ccxt.RateLimitExceeded("429"), ccxt.DDoSProtection("418")])
    policy = RetryPolicy(base_s=0.1, max_retry_after_s=10.0)
    hints = iter([7.0, 500.0])
    call_with_retry(fn, policy, retry_after=lambda exc: next(hints), sleep=sleeps.append)
    assert sleeps[0] == pytest.approx(7.0) and sleeps[1] == pytest.approx(10.0)


def test_gives_up_after_max_attempts_and_at_the_deadline():
    fn = Flaky([ccxt.NetworkError("n")] * 10)
    with pytest.raises(ccxt.NetworkError):
        call_with_retry(fn, RetryPolicy(max_attempts=3, base_s=0.01), sleep=lambda s: None)
    assert fn.calls == 3
    now = [0.0]
    fn = Flaky([ccxt.NetworkError("n")] * 10)
    with pytest.raises(ccxt.NetworkError):
        call_with_retry(fn, RetryPolicy(max_attempts=10, base_s=4.0),
                        sleep=lambda s: now.__setitem__(0, now[0] + s),
                        clock=lambda: now[0], deadline=5.0)
    assert fn.calls <= 2


def test_breaker_opens_stops_calls_probes_and_closes():
    now = [0.0]
    breaker = CircuitBreaker(threshold=3, reset_s=10.0, clock=lambda: now[0])
    fn = Flaky([ccxt.NetworkError("down")] * 3)
    with pytest.raises(ccxt.NetworkError):
        call_with_retry(fn, RetryPolicy(max_attempts=3, base_s=0.0), breaker,
                        sleep=lambda s: None)
    assert breaker.state == "open" and breaker.trips == 1
    with pytest.raises(ServiceUnavailable, match="circuit open after 3"):
        call_with_retry(fn, RetryPolicy(), breaker, sleep=lambda s: None)
    assert fn.calls == 3, "an open breaker sends nothing"
    now[0] = 10.5
    assert breaker.state == "half_open"
    assert call_with_retry(fn, RetryPolicy(), breaker, sleep=lambda s: None) == "ok"
    assert breaker.state == "closed" and breaker.failures == 0


def test_a_failed_probe_reopens_the_breaker():
    now = [0.0]
    breaker = CircuitBreaker(threshold=1, reset_s=5.0, clock=lambda: now[0])
    breaker.failure("NetworkError")
    now[0] = 6.0
    assert breaker.state == "half_open"
    breaker.failure("NetworkError")
    assert breaker.state == "open" and breaker.trips == 2


def test_bad_symbol_does_not_count_against_the_breaker():
    breaker = CircuitBreaker(threshold=1)
    with pytest.raises(ccxt.BadSymbol):
        call_with_retry(Flaky([ccxt.BadSymbol("x")]), RetryPolicy(), breaker)
    assert breaker.state == "closed"
