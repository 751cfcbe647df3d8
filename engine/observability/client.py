"""Talking to a running engine's API from another process (`supreme cache --engine`)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

from engine.errors import ConfigError, ServiceUnavailable

TIMEOUT_S = 5.0


def _call(url: str, method: str = "GET", token: str | None = None,
          body: dict[str, Any] | None = None) -> dict[str, Any]:
    if not url.startswith(("http://", "https://")):
        raise ConfigError(f"--engine {url!r}: give the engine's base URL, "
                          "e.g. http://127.0.0.1:9108")
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=TIMEOUT_S) as resp:
            doc = json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as exc:
        if exc.code == 401:
            raise ConfigError("the engine refused the token: set SUPREME_API_TOKEN to the "
                              "engine's") from None
        raise ServiceUnavailable(f"the engine answered {exc.code} to {method} "
                                 f"{url}") from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise ServiceUnavailable(f"no engine answers at {url}: {exc}") from None
    return doc if isinstance(doc, dict) else {"answer": doc}


def engine_cache_stats(base: str) -> dict[str, Any]:
    return _call(base.rstrip("/") + "/api/cache/stats")


def engine_cache_reset(base: str, token: str | None, *, learning: bool, l1: bool,
                       l2: bool) -> dict[str, Any]:
    return _call(base.rstrip("/") + "/api/cache/reset", "POST", token,
                 {"learning": learning, "l1": l1, "l2": l2})
