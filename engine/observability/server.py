"""The engine's HTTP endpoints, served beside a Run on a thread of their own.

- GET /metrics: Prometheus exposition (engine/observability/collector.py).
- GET /health: liveness, 200 while this process answers.
- GET /api/cache/stats: the run's cache figures, L1 included (read only, no token).
- GET /ready: readiness, 200 when every dependency the run uses is up, else 503; the body
  gives each one's status (feed, store, redis, exchange).
- POST /api/cache/reset: resets the run's cache (learning, L1 and L2 unless the JSON body
  names some of "learning", "l1", "l2"). Needs `Authorization: Bearer <SUPREME_API_TOKEN>`,
  compared in constant time: 401 without it or with a wrong one; 405 on GET; 413 past
  MAX_BODY bytes.

It binds 127.0.0.1 unless told otherwise, and refuses to bind anything else without a
token: the reset endpoint must never be open to a network. Request lines are not logged,
so a token in a header or URL never reaches a log.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

from engine.errors import ConfigError, ServiceUnavailable

if TYPE_CHECKING:
    from engine.pipeline import Run

MAX_BODY = 4096
STALE_FEED_MIN_S = 30.0  # a feed with no bar for 3 intervals (at least this) is not ready


def is_loopback(addr: str) -> bool:
    if addr == "localhost":
        return True
    try:
        return ipaddress.ip_address(addr).is_loopback
    except ValueError:
        return False


def readiness(run: Run) -> tuple[bool, dict[str, Any]]:
    view = run.view
    checks: dict[str, Any] = {}
    if view is None:
        return False, {"feed": {"status": "starting"}}
    age = time.time() - view.last_bar_wall
    limit = max(STALE_FEED_MIN_S, 3 * view.spec.interval_s)
    checks["feed"] = {"status": "ok" if age <= limit or view.spec.feed != "exchange"
                      else "stalled", "last_bar_age_s": round(age, 3)}
    checks["store"] = {"status": "ok" if view.writer.healthy else "down",
                       "error": view.writer.last_error}
    cache = view.cache
    if cache is not None and cache.l2 is not None:
        checks["redis"] = {"status": cache.l2.status, "breaker": cache.l2.breaker.state}
    if view.spec.feed == "exchange":
        checks["exchange"] = {"status": "ok" if getattr(view.feed, "healthy", False)
                              else "down"}
    # Redis is optional (the cache fails open), so it informs but does not gate readiness.
    gating = [v["status"] for k, v in checks.items() if k != "redis"]
    return all(s == "ok" for s in gating), checks


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass  # request lines can carry tokens; the engine never logs them

    def _send(self, code: int, body: bytes, content_type: str = "application/json",
              extra: dict[str, str] | None = None) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def _json(self, code: int, doc: dict[str, Any], **extra: str) -> None:
        self._send(code, json.dumps(doc, default=str).encode() + b"\n", extra=extra or None)

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

            self._send(200, generate_latest(self.server.registry), CONTENT_TYPE_LATEST)
        elif path == "/health":
            self._json(200, {"status": "ok"})
        elif path == "/ready":
            ok, checks = readiness(self.server.run)
            self._json(200 if ok else 503, {"status": "ready" if ok else "not ready",
                                            "checks": checks})
        elif path == "/api/cache/stats":
            cache = self.server.run.cache
            if cache is None:
                self._json(409, {"error": "this run has no cache"})
            else:
                self._json(200, {"run_id": self.server.run.run_id,
                                 **cache.stats(sizes=False)})
        elif path == "/api/cache/reset":
            self._json(405, {"error": "use POST"}, Allow="POST")
        else:
            self._json(404, {"error": "not found"})

    def do_POST(self) -> None:
        path = self.path.split("?", 1)[0]
        if path != "/api/cache/reset":
            self._json(404 if path not in ("/metrics", "/health", "/ready") else 405,
                       {"error": "not found"})
            return
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = MAX_BODY + 1
        if length > MAX_BODY or length < 0:
            self.close_connection = True
            self._json(413, {"error": f"body larger than {MAX_BODY} bytes"})
            return
        body = self.rfile.read(length) if length else b""
        if not self._authorised():
            self._json(401, {"error": "a valid bearer token is required"},
                       **{"WWW-Authenticate": "Bearer"})
            return
        try:
            asked = json.loads(body) if body.strip() else {}
            if not isinstance(asked, dict):
                raise ValueError
        except ValueError:
            self._json(400, {"error": "the body must be a JSON object"})
            return
        self._json(*self.server.reset_cache(asked))

    def _authorised(self) -> bool:
        token = self.server.token
        header = self.headers.get("Authorization") or ""
        scheme, _, given = header.partition(" ")
        if not token or scheme.lower() != "bearer":
            return False
        return hmac.compare_digest(given.strip().encode(), token.encode())


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, addr: tuple[str, int], run: Run, token: str | None,
                 registry: Any) -> None:
        super().__init__(addr, _Handler)
        self.run = run
        self.token = token
        self.registry = registry

    def reset_cache(self, asked: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        cache = self.run.cache
        if cache is None:
            return 409, {"error": "this run has no cache"}
        names = ("learning", "l1", "l2")
        flags = {n: bool(asked.get(n)) for n in names}
        if not any(flags.values()):
            flags = dict.fromkeys(names, True)
        try:
            done = cache.reset(**flags)
        except ServiceUnavailable as exc:
            return 503, {"error": str(exc)[:300]}
        return 200, {"status": "reset", "reset": done}


class EngineServer:
    """Serve a Run's endpoints until `close()`; a context manager."""

    def __init__(self, run: Run, port: int, addr: str = "127.0.0.1",
                 token: str | None = None) -> None:
        if not is_loopback(addr) and not token:
            raise ConfigError(f"--metrics-addr {addr} is reachable from other hosts: set "
                              "SUPREME_API_TOKEN first (the API can reset the cache)")
        if not 0 <= port <= 65535:
            raise ConfigError(f"--metrics-port {port} is not a TCP port")
        from prometheus_client import CollectorRegistry

        from engine.observability.collector import RunCollector

        registry = CollectorRegistry(auto_describe=False)
        registry.register(RunCollector(run))
        try:
            self._server = _Server((addr, port), run, token, registry)
        except OSError as exc:
            raise ServiceUnavailable(f"cannot serve metrics on {addr}:{port}: {exc}") from exc
        self.address = addr
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.2},
                                        name="supreme-http", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"http://{host}:{self.port}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    def __enter__(self) -> EngineServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
