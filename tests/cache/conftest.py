"""Fixtures of the cache's fault tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from engine.testing.redis_server import RedisServer, RedisServerMissing
from tests.conftest import _missing


@pytest.fixture
def server() -> Iterator[RedisServer]:
    """A private redis-server on its own port, to kill, freeze and restart (never the
    shared one)."""
    try:
        private = RedisServer()
    except RedisServerMissing:
        _missing("the redis-server binary", "SUPREME_REQUIRE_SERVICES")
    with private as running:
        yield running
