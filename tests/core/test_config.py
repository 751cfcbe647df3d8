from pathlib import Path

import pytest

from engine.config import KEYS, EngineParams, redact_url, resolve
from engine.errors import ConfigError


def test_defaults_when_nothing_is_set():
    r = resolve(env={})
    assert r["symbol"] == "ETH-USDT"
    assert r["mode"] == "paper"
    assert r["interval_seconds"] == 45.0
    assert set(r.sources.values()) == {"default"}


def test_precedence_default_profile_env_flag(tmp_path: Path):
    cfg = tmp_path / "p.toml"
    cfg.write_text('symbol = "BTC-USDT"\nseed = 3\n[risk]\nmax_drawdown = 0.2\n')
    r = resolve(config_path=cfg, env={})
    assert (r["symbol"], r.sources["symbol"]) == ("BTC-USDT", f"config:{cfg}")
    assert r["risk.max_drawdown"] == 0.2
    r = resolve(config_path=cfg, env={"SYMBOL_FOCUS": "SOL/USDT"})
    assert (r["symbol"], r.sources["symbol"]) == ("SOL-USDT", "env:SYMBOL_FOCUS")
    r = resolve(config_path=cfg, env={"SYMBOL_FOCUS": "SOL/USDT"}, flags={"symbol": "ethusdt"})
    assert (r["symbol"], r.sources["symbol"]) == ("ETH-USDT", "flag")
    assert r["seed"] == 3 and r.sources["seed"].startswith("config:")


def test_guide_variable_names_work_as_written():
    env = {"TRADING_MODE": "backtest", "SYMBOL_FOCUS": "ETHUSDT", "INTERVAL_SECONDS": "30",
           "REDIS_URL": "redis://127.0.0.1:6379/0", "POSTGRES_URL": "postgresql://u:pw@h/db",
           "EXCHANGE_API_KEY": "key-canary-123", "EXCHANGE_SECRET": "secret-canary-456",
           "EXCHANGE_SANDBOX": "true"}
    r = resolve(env=env)
    assert r["mode"] == "backtest"
    assert r["interval_seconds"] == 30.0
    assert r["exchange.sandbox"] is True
    assert r.store_url == "postgresql://u:pw@h/db"
    red = r.redacted()
    assert red["exchange.api_key"] == "***"
    assert red["exchange.secret"] == "***"
    assert "pw" not in red["postgres_url"]
    assert set(r.secrets()) >= {"key-canary-123", "secret-canary-456"}


def test_nested_env_keys_use_supreme_prefix():
    r = resolve(env={"SUPREME_STRATEGY__RSI_MIN": "35", "SUPREME_BROKER__FEE_BPS": "7.5"})
    assert r["strategy.rsi_min"] == 35.0
    assert r.sources["broker.fee_bps"] == "env:SUPREME_BROKER__FEE_BPS"
    assert KEYS["strategy.rsi_min"].env_var == "SUPREME_STRATEGY__RSI_MIN"


@pytest.mark.parametrize(("env", "fragment"), [
    ({"TRADING_MODE": "yolo"}, "mode"),
    ({"INTERVAL_SECONDS": "-1"}, "interval_seconds"),
    ({"SUPREME_RISK__MAX_DRAWDOWN": "2"}, "risk.max_drawdown"),
    ({"SUPREME_STRATEGY__EMA_FAST": "30"}, "ema_fast"),
    ({"SUPREME_DURATION": "-5m"}, "duration"),
    ({"SYMBOL_FOCUS": "../x"}, "symbol"),
])
def test_invalid_values_name_the_key_and_source(env, fragment):
    with pytest.raises(ConfigError) as info:
        resolve(env=env)
    assert fragment in str(info.value)


def test_secret_pasted_into_the_wrong_variable_is_not_echoed():
    with pytest.raises(ConfigError) as info:
        resolve(env={"EXCHANGE_SECRET": "secret-canary-789",
                     "EXCHANGE_SANDBOX": "secret-canary-789"})
    assert "secret-canary-789" not in str(info.value)


def test_unknown_profile_key_and_bad_toml(tmp_path: Path):
    bad = tmp_path / "bad.toml"
    bad.write_text("symbl = 'ETH-USDT'\n")
    with pytest.raises(ConfigError, match="unknown keys symbl"):
        resolve(config_path=bad, env={})
    broken = tmp_path / "broken.toml"
    broken.write_text("symbol = \n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        resolve(config_path=broken, env={})


def test_named_profiles_resolve_from_the_profiles_folder():
    r = resolve(profile="conservative", env={})
    assert r["risk.risk_per_trade"] == 0.0025
    assert r.sources["risk.risk_per_trade"] == "profile:conservative"
    with pytest.raises(ConfigError, match="unknown profile"):
        resolve(profile="nope", env={})
    with pytest.raises(ConfigError, match="invalid profile name"):
        resolve(profile="../etc/passwd", env={})


def test_every_shipped_profile_is_valid():
    folder = Path(__file__).resolve().parents[2] / "profiles"
    names = [p.stem for p in folder.glob("*.toml")]
    assert names
    for name in names:
        resolve(profile=name, env={})


def test_engine_params_from_resolved():
    params = EngineParams.from_resolved(resolve(env={"SUPREME_STRATEGY__COOLDOWN_BARS": "9"}))
    assert params.strategy.cooldown_bars == 9
    assert params.broker.fee_bps == 10.0


def test_redact_url():
    assert redact_url("postgresql://user:pw@host:5432/db") == "postgresql://user:***@host:5432/db"
    assert redact_url("redis://:tok@h:6379/0") == "redis://:***@h:6379/0"
    assert redact_url("redis://h:6379/0") == "redis://h:6379/0"


def test_data_dir_env_override(tmp_path: Path):
    r = resolve(env={"SUPREME_DATA_DIR": str(tmp_path)})
    assert r.data_dir == tmp_path


def test_param_dataclasses_cover_every_section_key_with_its_default():
    from dataclasses import fields

    from engine.config import BrokerParams, RiskParams, StrategyParams

    for section, cls in (("strategy", StrategyParams), ("risk", RiskParams),
                         ("broker", BrokerParams)):
        names = {f.name for f in fields(cls)}
        assert names == {k.split(".", 1)[1] for k in KEYS if k.startswith(section + ".")}
        for f in fields(cls):
            assert f.default == KEYS[f"{section}.{f.name}"].default
