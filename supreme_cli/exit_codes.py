"""Exit codes, and the one table that maps engine exceptions to them."""

from __future__ import annotations

from enum import IntEnum

from engine.errors import (
    ConfigError,
    DataError,
    ExchangeError,
    ServiceUnavailable,
    StoreError,
    SupremeError,
)


class ExitCode(IntEnum):
    OK = 0
    FAILURE = 1  # an unexpected internal error (a bug): the message says so
    USAGE = 2  # an invalid option, argument or configuration value
    DATA = 3  # a market-data file is unreadable or fails validation under the policy
    STORE = 4  # the store cannot be opened, migrated, written, backed up or restored
    UNAVAILABLE = 5  # a required service (PostgreSQL, Redis, an exchange) is unreachable
    EXCHANGE = 6  # the exchange refused a request: bad keys, unknown symbol, rejected order
    DEGRADED = 7  # some endpoints, exchanges or cache tiers failing (connectivity, cache stats)
    DOWN = 8  # a check reached nothing at all (supreme connectivity)
    CHECK_FAILED = 9  # a required validation item or a stress/degrade verdict failed
    NO_DATA = 10  # nothing to report for the period asked (supreme report --daily)
    INTERRUPTED = 130  # a second Ctrl-C: stopped without the orderly finish


EXCEPTION_CODES: tuple[tuple[type[SupremeError], ExitCode], ...] = (
    (ConfigError, ExitCode.USAGE),
    (DataError, ExitCode.DATA),
    (StoreError, ExitCode.STORE),
    (ServiceUnavailable, ExitCode.UNAVAILABLE),
    (ExchangeError, ExitCode.EXCHANGE),
)


def code_for(exc: BaseException) -> ExitCode:
    for cls, code in EXCEPTION_CODES:
        if isinstance(exc, cls):
            return code
    return ExitCode.FAILURE
