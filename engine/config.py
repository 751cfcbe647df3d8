"""The one configuration resolver: defaults < profile < environment < flags.

Every key is declared once in `KEYS` with its parser, default, environment variable and
whether it is secret. `resolve()` merges the four layers, remembers which layer set each key,
and validates every value; `Settings` is the frozen result the rest of the engine reads.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.errors import ConfigError
from engine.parsing import normalize_symbol, parse_duration, parse_speed, shown

Parser = Callable[[Any], Any]

REPO_PROFILES = Path(__file__).resolve().parent.parent / "profiles"


def _choice(*options: str) -> Parser:
    def parse(value: Any) -> str:
        text = str(value).strip().lower()
        if text not in options:
            raise ValueError(f"expected one of {', '.join(options)}")
        return text

    return parse


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise ValueError("expected true or false")


def _number(lo: float | None = None, hi: float | None = None, integer: bool = False) -> Parser:
    def parse(value: Any) -> float | int:
        if isinstance(value, bool):
            raise ValueError("expected a number")
        number: float | int = int(value) if integer else float(value)
        if number != number or number in (float("inf"), float("-inf")):
            raise ValueError("expected a finite number")
        if lo is not None and number < lo:
            raise ValueError(f"must be at least {lo}")
        if hi is not None and number > hi:
            raise ValueError(f"must be at most {hi}")
        return number

    return parse


def _optional(parser: Parser) -> Parser:
    def parse(value: Any) -> Any:
        if value is None or (isinstance(value, str) and value.strip() == ""):
            return None
        return parser(value)

    return parse


def _text(value: Any) -> str:
    return str(value)


def _speed(value: Any) -> str:
    parse_speed(str(value))
    return str(value).strip().lower()


def _exchange_id(value: Any) -> str:
    text = str(value).strip().lower()
    if not re.fullmatch(r"[a-z0-9_]{2,40}", text):
        raise ValueError("expected a ccxt exchange id such as binance, kraken or okx")
    return text


def _timeframe(value: Any) -> str:
    from engine.exchange.download import TIMEFRAME_MS

    text = str(value).strip()
    if text not in TIMEFRAME_MS:
        raise ValueError(f"expected one of {', '.join(TIMEFRAME_MS)}")
    return text


@dataclass(frozen=True)
class Key:
    name: str
    parser: Parser
    default: Any
    help: str
    env: str | None = None
    secret: bool = False

    @property
    def env_var(self) -> str:
        return self.env or "SUPREME_" + self.name.upper().replace(".", "__")


KEYS: dict[str, Key] = {
    k.name: k
    for k in [
        Key("symbol", normalize_symbol, "ETH-USDT", "market to trade", env="SYMBOL_FOCUS"),
        Key("mode", _choice("paper", "live", "backtest"), "paper", "execution mode",
            env="TRADING_MODE"),
        Key("feed", _choice("sim", "replay", "exchange"), "sim", "market data source"),
        Key("data_file", _optional(_text), None, "file replayed by --feed replay"),
        Key("replay_policy", _choice("fail", "skip", "fill"), "fail",
            "what replay does with corrupt rows (gaps are always reported and bridged)"),
        Key("interval_seconds", _number(0.05, 3600), 45.0,
            "live pacing interval; each bar waits this long with jitter inside 30-60 s "
            "(values below 1 s are for tests)",
            env="INTERVAL_SECONDS"),
        Key("speed", _speed, "max", "pacing of sim/replay: max, realtime or Nx"),
        Key("seed", _number(0, 2**63 - 1, integer=True), 0, "simulator seed"),
        Key("sim_model", _choice("calibrated", "random_walk"), "calibrated",
            "simulator: the model fitted on real ETH candles, or a zero-edge random walk"),
        Key("timeframe", _timeframe, "1m", "candle timeframe of --feed exchange"),
        Key("stream", _bool, False,
            "--feed exchange: websocket candles (ccxt.pro) with REST polling as fallback"),
        Key("duration", _optional(parse_duration), None, "wall-clock limit in seconds"),
        Key("bars", _optional(_number(1, 10**12, integer=True)), None, "stop after N bars"),
        Key("db", _optional(_text), None, "store: SQLite path or postgresql:// URL"),
        Key("postgres_url", _optional(_text), None, "PostgreSQL store URL", env="POSTGRES_URL",
            secret=True),
        Key("redis_url", _optional(_text), None,
            "Redis URL of the L2 cache tier; unset means no L2 (L1 and the store's L3 only)",
            env="REDIS_URL", secret=True),
        Key("data_dir", _optional(_text), None, "where the store, data and reports live"),
        Key("metrics_port", _optional(_number(0, 65535, integer=True)), None,
            "serve /metrics, /health, /ready and the cache API on this port (unset: off)"),
        Key("metrics_addr", _text, "127.0.0.1",
            "address the metrics server binds; a non-loopback one needs SUPREME_API_TOKEN"),
        Key("api_token", _optional(_text), None,
            "bearer token of POST /api/cache/reset", env="SUPREME_API_TOKEN", secret=True),
        Key("log_format", _choice("text", "json"), "text",
            "stderr lines: human text, or one JSON object a line for containers"),
        Key("stats_every", _number(0, 86_400), 60.0,
            "seconds between stats log lines while a run is not on a terminal (0: never)"),
        Key("starting_equity", _number(1, 1e12), 10_000.0, "paper account size in quote currency"),
        Key("equity_every_bars", _number(1, 10**9, integer=True), 1,
            "store an equity snapshot every N bars"),
        Key("exchange.id", _exchange_id, "binance", "ccxt id of the exchange"),
        Key("exchange.api_key", _optional(_text), None, "exchange API key",
            env="EXCHANGE_API_KEY", secret=True),
        Key("exchange.secret", _optional(_text), None, "exchange API secret",
            env="EXCHANGE_SECRET", secret=True),
        Key("exchange.sandbox", _bool, False, "use the exchange's sandbox",
            env="EXCHANGE_SANDBOX"),
        Key("strategy.ema_fast", _number(2, 500, integer=True), 12, "fast EMA period"),
        Key("strategy.ema_slow", _number(3, 1000, integer=True), 26, "slow EMA period"),
        Key("strategy.macd_signal", _number(2, 200, integer=True), 9, "MACD signal period"),
        Key("strategy.rsi_period", _number(2, 200, integer=True), 14, "RSI period (Wilder)"),
        Key("strategy.rsi_min", _number(0, 100), 40.0, "entry needs RSI at or above this"),
        Key("strategy.rsi_max", _number(0, 100), 70.0, "entry needs RSI at or below this"),
        Key("strategy.rsi_exit", _number(0, 100), 78.0, "exit when RSI rises above this"),
        Key("strategy.min_strength_bps", _number(0, 10_000), 0.5,
            "entry needs |MACD histogram| of at least this many bps of price"),
        Key("strategy.cooldown_bars", _number(0, 10**6, integer=True), 5,
            "bars to wait after an entry before the next"),
        Key("risk.risk_per_trade", _number(0, 0.2), 0.005,
            "fraction of equity lost if the stop is hit"),
        Key("risk.vol_halflife_bars", _number(1, 10_000), 30.0,
            "half-life of the EWMA volatility that sizes positions"),
        Key("risk.stop_vol_mult", _number(0.1, 100), 2.0, "stop distance in volatility units"),
        Key("risk.min_stop_bps", _number(0, 10_000), 5.0, "stop at least this far from entry"),
        Key("risk.take_profit_r", _number(0.1, 100), 2.0, "take-profit as a multiple of risk"),
        Key("risk.max_position_fraction", _number(0, 10), 0.5,
            "largest position as a fraction of equity"),
        Key("risk.max_daily_loss", _number(0, 1), 0.03,
            "halt entries for the UTC day after losing this fraction"),
        Key("risk.max_drawdown", _number(0, 1), 0.10,
            "drawdown from peak equity that trips the breaker and halts entries"),
        Key("risk.max_spread_bps", _number(0, 10_000), 10.0,
            "--feed exchange: no entry while the order book's spread is wider than this"),
        Key("cache.enabled", _bool, True,
            "run the engine with the tiered cache (L1, L2 when REDIS_URL is set, L3 store)"),
        Key("cache.env", _text, "local",
            "cache namespace: keys live under supreme:<env>: in Redis and the store"),
        Key("cache.l1_capacity", _number(1, 10**7, integer=True), 10_000,
            "entries held in process (L1)"),
        Key("cache.l2_max_entries", _number(1, 10**9, integer=True), 100_000,
            "entries kept in Redis (L2); the oldest writes are evicted past this"),
        Key("cache.redis_timeout", _number(0.001, 60), 0.25,
            "seconds before a Redis call gives up (connect and socket)"),
        Key("cache.l3_timeout", _number(0.01, 60), 1.0,
            "seconds before a cache read from the store gives up"),
        Key("cache.breaker_threshold", _number(1, 1000, integer=True), 3,
            "consecutive failures that open a tier's circuit breaker"),
        Key("cache.breaker_reset", _number(0.01, 3600), 5.0,
            "seconds an open breaker waits before probing its tier again"),
        Key("cache.require_redis", _bool, False,
            "exit instead of starting degraded when REDIS_URL is set but Redis is down"),
        Key("cache.prefetch", _bool, True, "neuromorphic prefetching of learned co-accesses"),
        Key("cache.learning_rate", _number(0.0001, 1), 0.15,
            "Hebbian learning rate of the neuromorphic layer"),
        Key("cache.decay_rate", _number(0, 1), 0.005,
            "exponential decay of learned associations"),
        Key("broker.fee_bps", _number(0, 1000), 10.0, "taker fee per fill in bps"),
        Key("broker.slippage_bps", _number(0, 1000), 1.0, "adverse slippage per fill in bps"),
    ]
}

SECTIONS = ("exchange", "strategy", "risk", "broker", "cache")


@dataclass(frozen=True)
class Resolved:
    """The merged configuration: values by dotted key, and the layer that set each one."""

    values: dict[str, Any]
    sources: dict[str, str]
    profile_path: Path | None = None

    def __getitem__(self, key: str) -> Any:
        return self.values[key]

    def section(self, name: str) -> dict[str, Any]:
        prefix = name + "."
        return {k[len(prefix):]: v for k, v in self.values.items() if k.startswith(prefix)}

    def redacted(self) -> dict[str, Any]:
        return {k: redact(k, v) for k, v in self.values.items()}

    def secrets(self) -> list[str]:
        """Values to scrub from any output. For a service URL only its password is secret:
        scrubbing the whole URL would hide the host an operator needs to see."""
        out = []
        for k, v in self.values.items():
            if not (KEYS[k].secret and v):
                continue
            text = str(v)
            if "://" in text:
                from urllib.parse import unquote, urlsplit

                try:
                    parts = urlsplit(text)
                    # a user with no password is a bare token (redis://TOKEN@host)
                    secret = parts.password or parts.username
                except ValueError:
                    out.append(text)
                    continue
                if secret:
                    out.extend({secret, unquote(secret)})
                continue
            out.append(text)
        return out

    @property
    def data_dir(self) -> Path:
        return resolve_data_dir(self.values.get("data_dir"))

    @property
    def store_url(self) -> str | None:
        """`--db` wins over POSTGRES_URL; None means the SQLite default under the data dir."""
        db = self.values.get("db")
        return str(db) if db else self.values.get("postgres_url")


def redact(key: str, value: Any) -> Any:
    if value is None or not KEYS[key].secret:
        return value
    text = str(value)
    if "://" in text:
        return redact_url(text)
    return "***"


def redact_url(url: str) -> str:
    """Hide the password (and a bare token user) in a service URL; keep host and path."""
    scheme, _, rest = url.partition("://")
    creds, at, host = rest.rpartition("@")
    if not at:
        return url
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}" if ":" in creds else f"{scheme}://***@{host}"


def resolve_data_dir(explicit: str | None = None, env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    if explicit:
        return Path(explicit).expanduser()
    if env.get("SUPREME_DATA_DIR"):
        return Path(env["SUPREME_DATA_DIR"]).expanduser()
    import platformdirs

    return Path(platformdirs.user_data_dir("supreme", appauthor=False))


def profile_dirs(env: Mapping[str, str]) -> list[Path]:
    dirs = []
    if env.get("SUPREME_PROFILE_DIR"):
        dirs.append(Path(env["SUPREME_PROFILE_DIR"]))
    xdg = env.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    dirs.append(Path(xdg) / "supreme" / "profiles")
    dirs.append(REPO_PROFILES)
    return dirs


def find_profile(name: str, env: Mapping[str, str]) -> Path:
    if not name.replace("-", "").replace("_", "").isalnum() or len(name) > 64:
        raise ConfigError(f"invalid profile name {shown(name)}")
    for folder in profile_dirs(env):
        candidate = folder / f"{name}.toml"
        if candidate.is_file():
            return candidate
    known = sorted({p.stem for d in profile_dirs(env) if d.is_dir() for p in d.glob("*.toml")})
    raise ConfigError(f"unknown profile {name!r}; available: {', '.join(known) or 'none'}")


def _flatten_profile(data: Mapping[str, Any], path: Path) -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if key in SECTIONS and isinstance(value, Mapping):
            for sub, subval in value.items():
                flat[f"{key}.{sub}"] = subval
        elif key in ("alerts", "validation") and isinstance(value, Mapping):
            continue  # read by `report` and `validate`, not part of the run configuration
        else:
            flat[key] = value
    unknown = sorted(k for k in flat if k not in KEYS)
    if unknown:
        raise ConfigError(f"{path.name}: unknown keys {', '.join(unknown)}")
    return flat


def profile_section(name: str, section: str,
                    env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """A non-run section (`validation`, `alerts`) of a named profile; {} when absent."""
    import tomllib

    path = find_profile(name, os.environ if env is None else env)
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path.name}: {exc}") from exc
    value = data.get(section, {})
    if not isinstance(value, Mapping):
        raise ConfigError(f"{path.name}: [{section}] must be a table")
    return dict(value)


def load_profile_file(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None
    return _flatten_profile(data, path)


def _parse(key: Key, value: Any, source: str) -> Any:
    try:
        return key.parser(value)
    except ConfigError as exc:
        raise ConfigError(f"{key.name} (from {source}): {exc}") from None
    except (ValueError, TypeError) as exc:
        shown_value = "<secret>" if key.secret else shown(value)
        raise ConfigError(f"invalid {key.name} {shown_value} (from {source}): {exc}") from None


def resolve(
    profile: str | None = None,
    config_path: str | Path | None = None,
    flags: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
) -> Resolved:
    """Merge defaults < profile < environment < flags; raise ConfigError on any bad value.

    A message about any key never contains the raw value of a secret key, even when that
    secret was pasted into the wrong variable.
    """
    env = os.environ if env is None else env
    raw_secrets = [str(env[k.env_var]) for k in KEYS.values() if k.secret and env.get(k.env_var)]
    raw_secrets += [str(v) for k, v in (flags or {}).items()
                    if v and k in KEYS and KEYS[k].secret]
    try:
        return _resolve(profile, config_path, flags, env, raw_secrets)
    except ConfigError as exc:
        message = str(exc)
        for secret in raw_secrets:
            if len(secret) >= 4:
                message = message.replace(secret, "***")
        raise ConfigError(message) from None


def _resolve(
    profile: str | None,
    config_path: str | Path | None,
    flags: Mapping[str, Any] | None,
    env: Mapping[str, str],
    raw_secrets: list[str],
) -> Resolved:
    values = {name: key.default for name, key in KEYS.items()}
    sources = dict.fromkeys(KEYS, "default")

    profile = profile or env.get("SUPREME_PROFILE") or None
    path: Path | None = None
    if config_path:
        path = Path(config_path)
    elif profile:
        path = find_profile(profile, env)
    if path is not None:
        label = f"profile:{path.stem}" if not config_path else f"config:{path}"
        loaded = load_profile_file(path)
        raw_secrets += [str(v) for k, v in loaded.items() if v and KEYS[k].secret]
        for name, raw in loaded.items():
            values[name] = _parse(KEYS[name], raw, label)
            sources[name] = label

    for name, key in KEYS.items():
        raw = env.get(key.env_var)
        if raw is not None and raw != "":
            values[name] = _parse(key, raw, f"env:{key.env_var}")
            sources[name] = f"env:{key.env_var}"

    for name, raw in (flags or {}).items():
        if raw is None:
            continue
        if name not in KEYS:
            raise ConfigError(f"unknown configuration key {name!r}")
        values[name] = _parse(KEYS[name], raw, "flag")
        sources[name] = "flag"

    _check_consistency(values)
    return Resolved(values=values, sources=sources, profile_path=path)


def _check_consistency(values: Mapping[str, Any]) -> None:
    if values["strategy.ema_fast"] >= values["strategy.ema_slow"]:
        raise ConfigError("strategy.ema_fast must be smaller than strategy.ema_slow")
    if values["strategy.rsi_min"] > values["strategy.rsi_max"]:
        raise ConfigError("strategy.rsi_min must not exceed strategy.rsi_max")
    if values["feed"] == "replay" and not values["data_file"]:
        raise ConfigError("--feed replay needs a data file (--data FILE)")


# Defaults come from KEYS, so a default is written in one place only.
@dataclass(frozen=True)
class StrategyParams:
    ema_fast: int = KEYS["strategy.ema_fast"].default
    ema_slow: int = KEYS["strategy.ema_slow"].default
    macd_signal: int = KEYS["strategy.macd_signal"].default
    rsi_period: int = KEYS["strategy.rsi_period"].default
    rsi_min: float = KEYS["strategy.rsi_min"].default
    rsi_max: float = KEYS["strategy.rsi_max"].default
    rsi_exit: float = KEYS["strategy.rsi_exit"].default
    min_strength_bps: float = KEYS["strategy.min_strength_bps"].default
    cooldown_bars: int = KEYS["strategy.cooldown_bars"].default


@dataclass(frozen=True)
class RiskParams:
    risk_per_trade: float = KEYS["risk.risk_per_trade"].default
    vol_halflife_bars: float = KEYS["risk.vol_halflife_bars"].default
    stop_vol_mult: float = KEYS["risk.stop_vol_mult"].default
    min_stop_bps: float = KEYS["risk.min_stop_bps"].default
    take_profit_r: float = KEYS["risk.take_profit_r"].default
    max_position_fraction: float = KEYS["risk.max_position_fraction"].default
    max_daily_loss: float = KEYS["risk.max_daily_loss"].default
    max_drawdown: float = KEYS["risk.max_drawdown"].default
    max_spread_bps: float = KEYS["risk.max_spread_bps"].default


@dataclass(frozen=True)
class BrokerParams:
    fee_bps: float = KEYS["broker.fee_bps"].default
    slippage_bps: float = KEYS["broker.slippage_bps"].default


@dataclass(frozen=True)
class EngineParams:
    """What the pure core and the paper broker need, cut out of a Resolved configuration."""

    strategy: StrategyParams = field(default_factory=StrategyParams)
    risk: RiskParams = field(default_factory=RiskParams)
    broker: BrokerParams = field(default_factory=BrokerParams)

    @classmethod
    def from_resolved(cls, resolved: Resolved) -> EngineParams:
        return cls(
            strategy=StrategyParams(**resolved.section("strategy")),
            risk=RiskParams(**resolved.section("risk")),
            broker=BrokerParams(**resolved.section("broker")),
        )
