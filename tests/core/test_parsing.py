import pytest

from engine.errors import ConfigError
from engine.parsing import normalize_symbol, parse_duration, parse_speed


@pytest.mark.parametrize(("text", "seconds"), [
    ("28800", 28800.0), ("30s", 30.0), ("10m", 600.0), ("8h", 28800.0), ("1d", 86400.0),
    ("1.5m", 90.0), (" 45 ", 45.0), ("2H", 7200.0), (12, 12.0),
])
def test_durations_accept_seconds_and_suffixes(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["-5m", "0", "0s", "abc", "", "5x", "1e999", "99999999999d",
                                 "inf", "nan", "5 m s", True, -1, float("nan")])
def test_bad_durations_raise_config_error(bad):
    with pytest.raises(ConfigError):
        parse_duration(bad)


@pytest.mark.parametrize(("text", "symbol"), [
    ("ETH-USDT", "ETH-USDT"), ("ETH/USDT", "ETH-USDT"), ("ETHUSDT", "ETH-USDT"),
    ("eth-usdt", "ETH-USDT"), ("BTC_USDT", "BTC-USDT"), ("SOLBTC", "SOL-BTC"),
    ("ETHFDUSD", "ETH-FDUSD"),
])
def test_symbol_forms_normalise(text, symbol):
    assert normalize_symbol(text) == symbol


@pytest.mark.parametrize("bad", ["BTC/USDT';DROP TABLE trades;--", "../x", "", "   ",
                                 "X" * 10_000, "ETH", "ETH-", "-USDT", "ETH USDT", "ÉTH-USDT",
                                 "ETH/USDT/BTC"])
def test_malformed_symbols_raise_without_echoing_long_input(bad):
    with pytest.raises(ConfigError) as info:
        normalize_symbol(bad)
    assert len(str(info.value)) < 200


def test_speed_forms():
    assert parse_speed("max") == 0.0
    assert parse_speed("realtime") == 1.0
    assert parse_speed("60x") == 60.0
    for bad in ("fast", "0x", "-2x", "x", "infx"):
        with pytest.raises(ConfigError):
            parse_speed(bad)
