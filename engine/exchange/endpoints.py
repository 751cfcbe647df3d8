"""Point an exchange at another server (a mirror, a test server, the fake): ccxt overrides.

`endpoint_overrides("binance", "http://127.0.0.1:8080")` returns the dict to pass as
`ExchangeSpec(overrides=...)` (and to ccxt.pro): the spot REST bases (`public`, `private`)
become `<base_url>/api/v3`, `v1` becomes `<base_url>/api/v1`, every other REST base
(margin/futures/options: `sapi*`, `fapi*`, `dapi*`, `eapi*`, `papi*`) points to
`<base_url>/_blocked/<key>` so a stray call fails there instead of leaving for the real
exchange, and the spot websocket base becomes `ws(s)://<host>/ws`. The options keep
`load_markets` on spot markets without the signed `sapi` calls it makes when keys are set.
These are the same overrides as `engine.testing.fake_exchange.ccxt_config`, without keys.

Pure: no ccxt import, no I/O. Only Binance-compatible exchange ids are supported; any other
is a ConfigError (their URL layouts differ and a half-redirected client would talk to the
real exchange). Keys are sent to the endpoint with signed requests: point live keys only at
a server you trust.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from engine.errors import ConfigError
from engine.parsing import shown

__all__ = ["SUPPORTED", "endpoint_overrides"]

SUPPORTED = ("binance", "binanceus")
"""Exchange ids whose spot API layout the overrides describe."""

_OTHER_REST_KEYS = ("sapi", "sapiV2", "sapiV3", "sapiV4", "dapiPublic", "dapiPrivate",
                    "dapiPrivateV2", "dapiData", "eapiPublic", "eapiPrivate", "fapiPublic",
                    "fapiPublicV2", "fapiPublicV3", "fapiPrivate", "fapiPrivateV2",
                    "fapiPrivateV3", "fapiData", "papi", "papiV2")
_OTHER_WS_KEYS = ("linear", "inverse", "stock", "option", "optionMarket", "optionPrivate",
                  "papi")
_MAX_URL = 300


def endpoint_overrides(exchange_id: str, base_url: str) -> dict[str, Any]:
    """ccxt constructor overrides that send every request of `exchange_id` to `base_url`.

    `base_url` is `http(s)://host[:port]` with an optional path prefix; ConfigError for
    anything else (no credentials, query or fragment in it)."""
    if exchange_id not in SUPPORTED:
        raise ConfigError(f"--endpoint supports {', '.join(SUPPORTED)} only, not "
                          f"{shown(exchange_id)}")
    if not isinstance(base_url, str) or not base_url or len(base_url) > _MAX_URL:
        raise ConfigError(f"invalid endpoint URL {shown(base_url)}")
    try:
        parts = urlsplit(base_url.strip())
        port = parts.port
    except ValueError:
        raise ConfigError(f"invalid endpoint URL {shown(base_url)}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"invalid endpoint URL {shown(base_url)}: expected "
                          "http(s)://host[:port]")
    if parts.username or parts.password or parts.query or parts.fragment:
        raise ConfigError(f"invalid endpoint URL {shown(base_url)}: no credentials, query or "
                          "fragment")
    host = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
    netloc = host if port is None else f"{host}:{port}"
    prefix = parts.path.rstrip("/")
    base = f"{parts.scheme}://{netloc}{prefix}"
    ws_scheme = "wss" if parts.scheme == "https" else "ws"
    ws = f"{ws_scheme}://{netloc}{prefix}/ws"
    blocked = f"{base}/_blocked"
    ws_blocked = f"{ws_scheme}://{netloc}{prefix}/_blocked"
    api: dict[str, Any] = {k: f"{blocked}/{k}" for k in _OTHER_REST_KEYS}
    api.update({"public": f"{base}/api/v3", "private": f"{base}/api/v3",
                "v1": f"{base}/api/v1"})
    ws_urls: dict[str, Any] = {k: f"{ws_blocked}/{k}" for k in _OTHER_WS_KEYS}
    ws_urls.update({"spot": ws, "margin": ws,
                    "ws-api": {k: f"{ws_blocked}/ws-api-{k}"
                               for k in ("spot", "linear", "inverse")}})
    api["ws"] = ws_urls
    return {
        "urls": {"api": api},
        "options": {
            "fetchMarkets": {"types": ["spot"]},
            "fetchCurrencies": False,
            "fetchMargins": False,
            "defaultType": "spot",
        },
    }
