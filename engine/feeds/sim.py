"""A seeded, calibrated simulator of 1m candles (stdlib only: it sits on the run path).

Model, per bar t (details and calibration in docs/SIMULATOR.md):

    s2_t   = omega + alpha * e_{t-1}**2 + beta * s2_{t-1}     GARCH(1,1), capped at var_cap*S
    z_t    = Student-t(t_dof), redrawn beyond t_trunc, scaled to unit variance    fat tails
    e_t    = sqrt(s2_t) * z_t
    e_t   += ±sqrt(S) * exp(N(jump_log_mean, jump_log_sd))  w.p. jump_prob    rare jumps
    close  = prev_close * exp(e_t)
    wicks  = Exp(mean = wick * sqrt(s2_t)) above max(open, close) and below min(open, close)
    log v  = volume_mu + volume_vol_elasticity * log(s_t / sqrt(S))
             + volume_move * log1p(|e_t| / s_t) + volume_noise * N(0, 1)

`S` is the long-run diffusion variance, chosen so the unconditional std of returns (jumps
included) equals `sigma`. Jump sizes are in long-run sigmas, not conditional ones: the
real jumps are not bigger in busy markets, and scaling them by the conditional sigma
would stack two heavy tails into bars far beyond the real data's largest (40 std). Jumps
feed the GARCH recursion, so volatility stays high after them as it does in the data.

Prices keep `price_digits` significant digits (ETH at 1800 -> cents, like Binance's tick);
open is the previous close.

Only `random.Random(seed)` and `math` are used (no numpy: this is on the run path). The
same seed gives identical bars on the same Python version and platform; across versions
only `random()` itself is guaranteed stable, not `gauss()` or libm's last bits.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from dataclasses import dataclass, field

from engine.errors import ConfigError
from engine.types import Bar

__all__ = ["SimFeed", "SimParams"]

ONE_MINUTE_MS = 60_000


@dataclass(frozen=True, slots=True)
class SimParams:
    """Simulator parameters for 1m bars.

    The defaults are what `engine.feeds.calibrate.fit_params` finds in the real Binance
    ETH/USDT 1m candles 2023-03-16..2023-05-01 (ETH_USDT-1m.json, 66,087 bars), rounded to
    3 significant digits (unrounded values in docs/SIMULATOR.md; tests/feeds/
    test_calibrate.py re-runs the fit and checks them). `t_trunc`, `var_cap` and
    `price_digits` are fixed modelling choices, not fitted.
    """

    sigma: float = 7.49e-4
    """Unconditional std of 1m log returns, jumps included."""
    garch_alpha: float = 0.121
    garch_beta: float = 0.839
    t_dof: float = 4.05
    """Degrees of freedom of the Student-t innovations (> 2)."""
    t_trunc: float = 8.0
    """t draws beyond this many sigmas are redrawn: bigger moves are the jump process's.
    Without it, the t_dof ~ 4 the data asks for has barely a finite kurtosis, and a t draw
    at high volatility gave 100+ sigma bars (the real data's largest is 40 std)."""
    jump_prob: float = 6.06e-4
    """Probability that a bar carries a jump."""
    jump_log_mean: float = 2.23
    jump_log_sd: float = 0.437
    """|jump| = sqrt(S) * exp(N(jump_log_mean, jump_log_sd)): lognormal, in long-run sigmas."""
    wick: float = 0.244
    """Mean wick length per side, in conditional sigmas (exponential)."""
    volume_mu: float = 5.25
    volume_vol_elasticity: float = 1.51
    volume_move: float = 1.02
    volume_noise: float = 0.688
    var_cap: float = 100.0
    """Conditional variance never exceeds this multiple of the long-run variance."""
    price_digits: int = 6

    def __post_init__(self) -> None:
        checks = (
            (self.sigma > 0 and math.isfinite(self.sigma), "sigma must be > 0"),
            (self.garch_alpha >= 0 and self.garch_beta >= 0, "garch_alpha/beta must be >= 0"),
            (self.t_dof > 2, "t_dof must be > 2 (finite variance)"),
            (self.t_trunc >= 3, "t_trunc must be >= 3"),
            (0 <= self.jump_prob < 1, "jump_prob must be in [0, 1)"),
            (self.jump_log_sd >= 0 and abs(self.jump_log_mean) < 50, "bad jump size law"),
            (self.wick >= 0 and self.volume_noise >= 0, "wick/volume_noise must be >= 0"),
            (self.var_cap >= 1, "var_cap must be >= 1"),
            (1 <= self.price_digits <= 15, "price_digits must be in 1..15"),
        )
        for ok, message in checks:
            if not ok:
                raise ConfigError(f"invalid SimParams: {message}")
        if self.garch_alpha * self.jump_factor + self.garch_beta >= 1:
            raise ConfigError(
                "invalid SimParams: garch_alpha * (1 + jump variance) + garch_beta must be < 1 "
                "(otherwise the variance has no long-run level)"
            )

    @property
    def jump_factor(self) -> float:
        """E[e**2] / S: 1 + p * E[|jump|**2] / S, the lognormal's second moment."""
        return 1.0 + self.jump_prob * math.exp(2 * self.jump_log_mean + 2 * self.jump_log_sd**2)

    @property
    def t_var(self) -> float:
        """Variance of the truncated t draw before its final rescaling (< 1)."""
        return truncated_t_var(self.t_dof, self.t_trunc)

    @property
    def long_run_var(self) -> float:
        """S: the mean conditional variance that makes the total variance sigma**2."""
        return self.sigma * self.sigma / self.jump_factor


def truncated_t_var(nu: float, trunc: float) -> float:
    """E[z**2 | |z| <= trunc] for z a Student-t(nu) scaled to unit variance (Simpson)."""
    scale2 = (nu - 2.0) / nu
    hi = trunc / math.sqrt(scale2)
    n = 2_000
    h = hi / n
    mass = second = 0.0
    for i in range(n + 1):
        x = i * h
        wgt = 1.0 if i in (0, n) else (4.0 if i % 2 else 2.0)
        f = wgt * (1.0 + x * x / nu) ** (-(nu + 1.0) / 2.0)
        mass += f
        second += f * x * x
    return second / mass * scale2


SIM_MODELS = ("calibrated", "random_walk")


def sim_params(model: str) -> SimParams:
    """`calibrated`: the fitted GARCH / Student-t / jump model. `random_walk`: the same
    Student-t innovations at the long-run volatility, independent (no GARCH, no jumps),
    zero mean: prices where no strategy has an edge, for calibrating significance tests."""
    if model == "calibrated":
        return SimParams()
    if model == "random_walk":
        return SimParams(garch_alpha=0.0, garch_beta=0.0, jump_prob=0.0)
    raise ConfigError(f"unknown sim model {model!r}; available: {', '.join(SIM_MODELS)}")


@dataclass(frozen=True, slots=True)
class SimFeed:
    """Endless deterministic 1m-like candles. Each `iter()` restarts from `seed`.

    Parameters are calibrated on 1m bars; other intervals scale the variance and volume
    linearly with time (a square-root-of-time approximation, GARCH memory stays per bar).
    """

    symbol: str = "ETH-USDT"
    seed: int = 0
    start_price: float = 1800.0
    start_ts_ms: int = 1_672_531_200_000  # 2023-01-01T00:00Z
    interval_ms: int = ONE_MINUTE_MS
    params: SimParams = field(default_factory=SimParams)
    kind: str = field(default="sim", init=False)

    def __post_init__(self) -> None:
        if not isinstance(self.symbol, str) or not self.symbol:
            raise ConfigError("SimFeed symbol must be a non-empty string")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool):
            raise ConfigError(f"SimFeed seed must be an integer, got {self.seed!r}")
        if not (self.start_price > 0 and math.isfinite(self.start_price)):
            raise ConfigError(f"SimFeed start_price must be > 0, got {self.start_price!r}")
        if not isinstance(self.interval_ms, int) or self.interval_ms <= 0:
            raise ConfigError(f"SimFeed interval_ms must be an int > 0, got {self.interval_ms!r}")
        if not isinstance(self.start_ts_ms, int) or self.start_ts_ms < 0:
            raise ConfigError(f"SimFeed start_ts_ms must be an int >= 0, got {self.start_ts_ms!r}")

    def __iter__(self) -> Iterator[Bar]:
        return self._bars()

    def take(self, n: int) -> list[Bar]:
        """The first `n` bars (a convenience for tests and tools)."""
        it = self._bars()
        return [next(it) for _ in range(n)]

    def _bars(self) -> Iterator[Bar]:
        p = self.params
        rng = random.Random(self.seed)
        # Bound methods and constants in locals: this loop is the per-bar cost.
        gauss, rand, expo = rng.gauss, rng.random, rng.expovariate
        exp, log, log1p, sqrt, log10, floor = (
            math.exp, math.log, math.log1p, math.sqrt, math.log10, math.floor)

        scale = self.interval_ms / ONE_MINUTE_MS
        long_var = p.long_run_var * scale
        alpha, beta = p.garch_alpha, p.garch_beta
        omega = long_var * (1.0 - alpha * p.jump_factor - beta)
        cap = long_var * p.var_cap
        nu, neg_two_over_nu = p.t_dof, -2.0 / p.t_dof
        t_scale = sqrt((p.t_dof - 2.0) / p.t_dof)
        trunc = p.t_trunc
        renorm = 1.0 / sqrt(p.t_var)
        jump_prob, jump_mu, jump_sd = p.jump_prob, p.jump_log_mean, p.jump_log_sd
        long_sd = sqrt(long_var)
        wick = p.wick
        v_mu = p.volume_mu + log(scale)
        v_el, v_mv, v_sd = p.volume_vol_elasticity, p.volume_move, p.volume_noise
        digits = p.price_digits - 1

        ts, interval = self.start_ts_ms, self.interval_ms
        prev = round(self.start_price, digits - floor(log10(self.start_price)))
        log_price = log(prev)
        s2 = long_var
        while True:
            sig = sqrt(s2)
            # Bailey's polar method: a Student-t draw from two uniforms, ~2x faster than
            # gauss / sqrt(gammavariate) and exact.
            while True:
                u = 2.0 * rand() - 1.0
                w2 = u * u + (2.0 * rand() - 1.0) ** 2
                if 0.0 < w2 < 1.0:
                    z = u * t_scale * sqrt(nu * (w2 ** neg_two_over_nu - 1.0) / w2)
                    if -trunc <= z <= trunc:
                        break
            e = sig * z * renorm
            if rand() < jump_prob:
                jump = long_sd * exp(gauss(jump_mu, jump_sd))
                e += jump if rand() < 0.5 else -jump
            log_price += e
            decimals = digits - floor(log10(prev))
            close = round(exp(log_price), decimals)
            if close >= prev:
                top, bottom = close, prev
            else:
                top, bottom = prev, close
            w = wick * sig
            high = round(top * exp(w * expo(1.0)), decimals)
            low = round(bottom * exp(-w * expo(1.0)), decimals)
            # Rounding may cross open/close where the digit count changes (999.99 -> 1000.0).
            if high < top:
                high = top
            if low > bottom:
                low = bottom
            if low <= 0.0:
                # Reachable only after a crash below the rounding step: drop the rounding.
                close = exp(log_price)
                low = min(prev, close) * exp(-w)
                high = max(high, close)
            volume = exp(v_mu + v_el * log(sig / long_sd) + v_mv * log1p(abs(e) / sig)
                         + v_sd * gauss(0.0, 1.0))
            yield Bar(ts, prev, high, low, close, volume)
            s2 = omega + alpha * e * e + beta * s2
            if s2 > cap:
                s2 = cap
            prev = close
            ts += interval
