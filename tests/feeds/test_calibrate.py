"""Calibration: the SimParams defaults are what fit_params finds in the real ETH 1m data."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import pytest

from engine.errors import DataError
from engine.feeds.calibrate import fit_params, summary_stats
from engine.feeds.replay import Series, load_series
from engine.feeds.sim import SimFeed, SimParams

NOT_FITTED = {"t_trunc", "var_cap", "price_digits"}
# Defaults are the fit rounded to 3 significant digits; the looser ones come out of the
# indirect-inference simulations, whose grid could shift with a numpy RNG change.
TOLERANCE = {"sigma": 0.03, "garch_alpha": 0.15, "garch_beta": 0.03, "wick": 0.03}


@pytest.fixture(scope="module")
def eth(shared_data: Path) -> Series:
    return load_series(shared_data / "ETH_USDT-1m.json")


@pytest.fixture(scope="module")
def fitted(eth: Series) -> SimParams:
    return fit_params(eth)


@pytest.mark.realdata
def test_defaults_are_the_fit_on_real_eth_1m(fitted: SimParams) -> None:
    default = SimParams()
    for f in fields(SimParams):
        want, got = getattr(default, f.name), getattr(fitted, f.name)
        if f.name in NOT_FITTED:
            assert got == want, f.name
        else:
            assert got == pytest.approx(want, rel=TOLERANCE.get(f.name, 0.01)), f.name


@pytest.mark.realdata
def test_fit_makes_sense(fitted: SimParams) -> None:
    assert 4 < fitted.t_dof < 5  # fat tails
    assert 0.9 < fitted.garch_alpha + fitted.garch_beta < 1  # persistent volatility
    assert 1e-4 < fitted.jump_prob < 2e-3  # jumps: ~40 bars in 66k
    assert fitted.volume_move > 0 and fitted.volume_vol_elasticity > 0  # busy <-> volume


@pytest.mark.realdata
def test_summary_stats_of_real_data(eth: Series) -> None:
    st = summary_stats(eth)
    # 66,086 returns minus 73: the 72 ending on the zero-volume outage bars and the one
    # across the gap right after them.
    assert st["n_returns"] == 66_013
    assert st["std"] == pytest.approx(7.344e-4, rel=1e-3)
    assert st["excess_kurtosis"] > 50
    assert st["acf_abs_1"] > st["acf_abs_5"] > st["acf_abs_10"] > st["acf_abs_20"] > 0.1
    assert st == summary_stats(list(eth))  # Series columns and Bars give the same numbers


def test_fit_recovers_the_simulator_parameters() -> None:
    true = SimParams()
    got = fit_params(SimFeed(seed=11).take(40_000))
    assert got.sigma == pytest.approx(true.sigma, rel=0.15)
    assert 3.5 < got.t_dof < 6
    assert got.garch_alpha + got.garch_beta == pytest.approx(
        true.garch_alpha + true.garch_beta, abs=0.06)
    assert got.jump_prob == pytest.approx(true.jump_prob, rel=0.6)
    assert got.wick == pytest.approx(true.wick, rel=0.1)
    assert got.volume_mu == pytest.approx(true.volume_mu, rel=0.05)
    assert got.volume_move == pytest.approx(true.volume_move, rel=0.15)
    assert got.volume_noise == pytest.approx(true.volume_noise, rel=0.1)


def test_fit_is_deterministic() -> None:
    bars = SimFeed(seed=12).take(3_000)
    assert fit_params(bars) == fit_params(bars)
    assert fit_params(bars, seed=1) != fit_params(bars, seed=2)


def test_too_little_data() -> None:
    with pytest.raises(DataError, match="clean returns"):
        fit_params(SimFeed().take(500))
    with pytest.raises(DataError):
        summary_stats([])
