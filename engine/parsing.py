"""Parsing of user-supplied durations, symbols and speeds.

Everything a user types passes through here first, so a malformed value is rejected with a
message before anything is touched. Messages quote the value only after checking it is short
and printable, so a pasted secret or a 10k-character string never comes back in full.
"""

from __future__ import annotations

import math
import re

from engine.errors import ConfigError

_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$", re.IGNORECASE)
_UNIT_SECONDS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
MAX_DURATION_S = 366 * 86400.0

_QUOTES = ("FDUSD", "USDT", "USDC", "BUSD", "TUSD", "USD", "EUR", "DAI", "BTC", "ETH", "BNB")
_ASSET_RE = re.compile(r"^[A-Z0-9]{2,12}$")
_PAIR_RE = re.compile(r"^([A-Z0-9]{2,12})[-/_]([A-Z0-9]{2,12})$")


def shown(value: object, limit: int = 40) -> str:
    """A safe rendering of a user value for an error message."""
    text = str(value)
    if len(text) > limit or not text.isprintable():
        return f"<{len(text)} characters>"
    return repr(text)


def parse_duration(value: str | float | int, what: str = "duration") -> float:
    """Seconds from `28800`, `30s`, `10m`, `8h` or `1d`; positive and at most a year."""
    if isinstance(value, bool):
        raise ConfigError(f"invalid {what} {shown(value)}")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        match = _DURATION_RE.match(value)
        if not match:
            raise ConfigError(
                f"invalid {what} {shown(value)}: use seconds (28800) or a number with "
                "s, m, h or d (30s, 10m, 8h)"
            )
        seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2).lower()]
    if not math.isfinite(seconds) or seconds <= 0:
        raise ConfigError(f"invalid {what} {shown(value)}: must be greater than zero")
    if seconds > MAX_DURATION_S:
        raise ConfigError(f"invalid {what} {shown(value)}: longer than {MAX_DURATION_S:.0f} s")
    return seconds


def normalize_symbol(value: str) -> str:
    """Canonical `BASE-QUOTE` from ETH-USDT, ETH/USDT, eth_usdt or ETHUSDT."""
    text = value.strip().upper() if isinstance(value, str) else ""
    match = _PAIR_RE.match(text)
    if match:
        return f"{match.group(1)}-{match.group(2)}"
    if _ASSET_RE.match(text):
        for quote in _QUOTES:
            base = text[: -len(quote)]
            if text.endswith(quote) and len(base) >= 2:
                return f"{base}-{quote}"
    raise ConfigError(
        f"invalid symbol {shown(value)}: expected BASE-QUOTE such as ETH-USDT, ETH/USDT or ETHUSDT"
    )


def ccxt_symbol(symbol: str) -> str:
    """ETH-USDT → ETH/USDT, the form ccxt uses."""
    return normalize_symbol(symbol).replace("-", "/")


def parse_speed(value: str) -> float:
    """Pacing multiplier: 0 for `max`, 1 for `realtime`, N for `Nx`."""
    text = str(value).strip().lower()
    if text == "max":
        return 0.0
    if text == "realtime":
        return 1.0
    if text.endswith("x"):
        try:
            factor = float(text[:-1])
        except ValueError:
            factor = float("nan")
        if math.isfinite(factor) and 0 < factor <= 1_000_000:
            return factor
    raise ConfigError(f"invalid speed {shown(value)}: use max, realtime or a multiplier like 10x")
