"""Fit `SimParams` to real candles, and the statistics used to judge the fit.

numpy is imported inside the functions: this module is an offline tool, and importing
`engine.feeds.sim` on the run path must not pull numpy in.

Everything works on "clean" log returns of the close: consecutive bars exactly one
interval apart, both with volume > 0 — so an exchange outage (flat zero-volume bars, then
a gap) does not pass for calm trading. `fit_params`:

1. `sigma` starts as the std of the clean returns.
2. A conditional sigma s_t is filtered through the returns with the simulator's own GARCH
   recursion and the current guess; z_t = r_t / s_t.
3. Jumps are the bars with |z_t| > `t_trunc` (8). The simulator redraws t draws beyond
   that, so every such bar belongs to the jump process: `jump_prob` is their rate, and
   `jump_log_mean`/`jump_log_sd` the mean/std of log(|r_t| / sqrt(S)) over them.
4. `t_dof` is the Student-t whose kurtosis, truncated at `t_trunc`, equals the kurtosis of
   the other z_t.
5. `garch_alpha`/`garch_beta` by indirect inference: the model is simulated for a grid of
   (alpha, beta) on common random numbers, and the pair whose autocorrelation of |r| at
   lags 1, 2, 5, 10, 20 is closest to the real one wins.
6. `sigma` is rescaled so the simulated mean |r| equals the real one. With tails this fat
   the std of a finite run sits mostly below its population value, so matching the std
   itself made simulated runs visibly calmer than the market. Steps 2-6 run twice.
7. `wick` = (real mean wick / real mean |r|) * (simulated mean |r| / mean s_t), where a
   wick is the log distance of the high (low) beyond max (min) of open and close.
8. Volume: least squares of log v on [1, log(s_t / sqrt(S)), log1p(|r_t| / s_t)]; the
   residual std is `volume_noise`.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Iterable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from engine.errors import DataError
from engine.feeds.sim import SimParams
from engine.types import Bar

if TYPE_CHECKING:
    import numpy as np

__all__ = ["ACF_LAGS", "fit_params", "summary_stats"]

ACF_LAGS = (1, 2, 5, 10, 20)
"""Lags of the |r| autocorrelation the GARCH fit matches."""
_MIN_RETURNS = 1_000


def summary_stats(bars: Iterable[Bar]) -> dict[str, float]:
    """Statistics of a candle series for comparing real and simulated data.

    On clean returns (module docstring). Keys: n_returns, mean, std, excess_kurtosis,
    skew, acf_abs_1/5/10/20 (autocorrelation of |r|), acf_sq_1, acf_ret_1, tail_rate_6sd
    (share of |r| > 6 std), max_abs_sd (largest |r| in std), mean_range_over_close
    (mean (high-low)/close), range_over_abs_return (mean log(high/low) / mean |r|),
    volume_mean, volume_median, log_volume_std, corr_logvol_absret (log volume vs |r|).
    """
    import numpy as np

    d = _clean(bars)
    r, v = d["r"], d["v"]
    mu, sd = float(r.mean()), float(r.std())
    x = r - mu
    a = np.abs(r)
    return {
        "n_returns": float(r.size),
        "mean": mu,
        "std": sd,
        "excess_kurtosis": float((x**4).mean() / sd**4 - 3.0),
        "skew": float((x**3).mean() / sd**3),
        "acf_abs_1": _acf(a, 1),
        "acf_abs_5": _acf(a, 5),
        "acf_abs_10": _acf(a, 10),
        "acf_abs_20": _acf(a, 20),
        "acf_sq_1": _acf(r * r, 1),
        "acf_ret_1": _acf(r, 1),
        "tail_rate_6sd": float((a > 6 * sd).mean()),
        "max_abs_sd": float(a.max() / sd),
        "mean_range_over_close": float(((d["h"] - d["l"]) / d["c"]).mean()),
        "range_over_abs_return": float(np.log(d["h"] / d["l"]).mean() / a.mean()),
        "volume_mean": float(v.mean()),
        "volume_median": float(np.median(v)),
        "log_volume_std": float(np.log(v).std()),
        "corr_logvol_absret": float(np.corrcoef(np.log(v), a)[0, 1]),
    }


def fit_params(bars: Iterable[Bar], *, seed: int = 0) -> SimParams:
    """Fit the fitted fields of `SimParams` to 1m candles (unrounded; module docstring).

    Deterministic for a given `seed`, which drives the indirect-inference simulations.
    Raises DataError when there are fewer than 1,000 clean returns.
    """
    import numpy as np

    d = _clean(bars)
    r = d["r"]
    abs_r = np.abs(r)
    target = np.array([_acf(abs_r, lag) for lag in ACF_LAGS])
    p = SimParams(sigma=float(r.std()), garch_alpha=0.1, garch_beta=0.85, t_dof=5.0,
                  jump_prob=0.0)
    for round_ in range(2):
        z = r / np.sqrt(_filter_var(r, p))
        big = np.abs(z) > p.t_trunc
        sizes = np.log(abs_r[big] / math.sqrt(p.long_run_var))
        p = replace(p, t_dof=_fit_dof(z[~big], p.t_trunc), jump_prob=float(big.mean()),
                    jump_log_mean=float(sizes.mean()) if sizes.size else p.jump_log_mean,
                    jump_log_sd=float(sizes.std()) if sizes.size > 1 else p.jump_log_sd)
        alpha, beta = p.garch_alpha, p.garch_beta
        if round_ == 0:
            alpha, beta, *_ = _fit_garch(target, r.size, p, seed, _coarse_grid())
        # The second round only refines: the shock law moves little between rounds.
        alpha, beta, mean_abs, mean_sig = _fit_garch(target, r.size, p, seed,
                                                     _fine_grid(alpha, alpha + beta))
        p = replace(p, garch_alpha=alpha, garch_beta=beta,
                    sigma=p.sigma * float(abs_r.mean()) / mean_abs)

    top, bottom = np.maximum(d["o"], d["c"]), np.minimum(d["o"], d["c"])
    wicks = (np.log(d["h"] / top) + np.log(bottom / d["l"])) / 2.0
    wick = float(wicks.mean() / abs_r.mean()) * mean_abs / mean_sig

    s = np.sqrt(_filter_var(r, p))
    design = np.column_stack([np.ones(r.size), np.log(s / math.sqrt(p.long_run_var)),
                              np.log1p(abs_r / s)])
    y = np.log(d["v"])
    coef, *_ = np.linalg.lstsq(design, y, rcond=None)
    return replace(p, wick=wick, volume_mu=float(coef[0]),
                   volume_vol_elasticity=float(coef[1]), volume_move=float(coef[2]),
                   volume_noise=float((y - design @ coef).std()))


def _clean(bars: Iterable[Bar]) -> dict[str, Any]:
    """Clean log returns "r" and the OHLCV ("o".."v") of the bar each return ends on."""
    import numpy as np

    arr = _as_array(bars)
    if arr.shape[0] < 2:
        raise DataError(f"need at least {_MIN_RETURNS} clean returns, got {arr.shape[0]} bars")
    ts = arr[:, 0].astype(np.int64)
    o, h, lo, c, v = (arr[:, i] for i in range(1, 6))
    dt = np.diff(ts)
    ok = (dt == int(np.median(dt))) & (v[1:] > 0) & (v[:-1] > 0)
    if int(ok.sum()) < _MIN_RETURNS:
        raise DataError(f"need at least {_MIN_RETURNS} clean returns, got {int(ok.sum())}")
    return {"r": np.diff(np.log(c))[ok], "o": o[1:][ok], "h": h[1:][ok], "l": lo[1:][ok],
            "c": c[1:][ok], "v": v[1:][ok]}


def _as_array(bars: Iterable[Bar]) -> np.ndarray:
    import numpy as np

    names = ("ts", "open", "high", "low", "close", "volume")
    cols = [col for col in (getattr(bars, n, None) for n in names) if isinstance(col, array)]
    if len(cols) == 6:
        # A replay Series: its array('q')/array('d') columns convert without Python objects.
        return np.column_stack([
            np.frombuffer(col, dtype=np.int64 if col.typecode == "q" else np.float64)
            .astype(np.float64) for col in cols])
    return np.array(list(bars), dtype=np.float64).reshape(-1, 6)


def _acf(x: np.ndarray, lag: int) -> float:
    y = x - x.mean()
    return float((y[:-lag] * y[lag:]).sum() / (y * y).sum())


def _filter_var(r: np.ndarray, p: SimParams) -> np.ndarray:
    """The simulator's conditional-variance recursion run over given returns."""
    import numpy as np

    long_var = p.long_run_var
    omega = long_var * (1.0 - p.garch_alpha * p.jump_factor - p.garch_beta)
    cap = long_var * p.var_cap
    alpha, beta = p.garch_alpha, p.garch_beta
    out = np.empty(r.size)
    s2 = long_var
    for i, e in enumerate(r.tolist()):
        out[i] = s2
        s2 = min(omega + alpha * e * e + beta * s2, cap)
    return out


def _fit_dof(z: np.ndarray, trunc: float) -> float:
    """Student-t dof whose unit-variance kurtosis, truncated at |z| <= trunc, is z's."""
    import numpy as np

    m2 = float((z * z).mean())
    target = float((z**4).mean()) / (m2 * m2)
    best, best_err = 30.0, math.inf
    for nu in (round(2.2 + 0.05 * i, 2) for i in range(557)):
        x = np.linspace(0.0, trunc * math.sqrt(nu / (nu - 2.0)), 4_001)
        f = np.power(1.0 + x * x / nu, -(nu + 1) / 2)
        kurt = float(np.trapezoid(f * x**4, x) * np.trapezoid(f, x)
                     / np.trapezoid(f * x * x, x) ** 2)
        if abs(kurt - target) < best_err:
            best, best_err = nu, abs(kurt - target)
    return best


def _coarse_grid() -> list[tuple[float, float]]:
    alphas = [0.02 + 0.04 * i for i in range(8)]
    persistence = (0.80, 0.88, 0.93, 0.96, 0.975, 0.985, 0.99, 0.995)
    return [(a, q - a) for a in alphas for q in persistence]


def _fine_grid(alpha: float, persistence: float) -> list[tuple[float, float]]:
    alphas = [max(0.005, alpha * (0.6 + 0.8 * i / 6)) for i in range(7)]
    qs = [max(0.5, persistence - 0.03 + 0.04 * i / 6) for i in range(7)]
    return [(a, min(q, 0.998) - a) for a in alphas for q in qs]


def _fit_garch(target: np.ndarray, n: int, p: SimParams, seed: int,
               grid: list[tuple[float, float]]) -> tuple[float, float, float, float]:
    """(alpha, beta) from `grid` whose simulated |r| autocorrelation is closest to
    `target`, with that run's mean |r| and mean conditional sigma. Runs are `n` bars, the
    real sample's length, so both autocorrelations carry the same finite-sample bias."""
    import numpy as np

    pairs = [(a, b) for a, b in grid if b >= 0 and a * p.jump_factor + b < 0.999]
    alpha = np.array([a for a, _ in pairs])
    beta = np.array([b for _, b in pairs])
    z, jumps = _shocks(n, p, seed)
    absr, mean_sig = _simulate(z, jumps, alpha, beta, p)
    mean_abs = absr.mean(axis=0)
    absr -= mean_abs
    var = (absr * absr).sum(axis=0)
    acf = np.array([(absr[:-lag] * absr[lag:]).sum(axis=0) / var for lag in ACF_LAGS])
    best = int(np.argmin(((acf - target[:, None]) ** 2).sum(axis=0)))
    return pairs[best][0], pairs[best][1], float(mean_abs[best]), float(mean_sig[best])


def _shocks(n: int, p: SimParams, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The simulator's random inputs, drawn with numpy: unit-variance truncated t draws,
    and signed jumps in long-run sigmas (0 on bars without one)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    nu = p.t_dof
    unit = math.sqrt((nu - 2.0) / nu)
    z = rng.standard_t(nu, n) * unit
    while (redraw := np.abs(z) > p.t_trunc).any():
        z[redraw] = rng.standard_t(nu, int(redraw.sum())) * unit
    z /= math.sqrt(p.t_var)
    sizes = np.exp(rng.normal(p.jump_log_mean, p.jump_log_sd, n))
    sizes *= np.where(rng.random(n) < 0.5, 1.0, -1.0)
    return z, np.where(rng.random(n) < p.jump_prob, sizes, 0.0)


def _simulate(z: np.ndarray, jumps: np.ndarray, alpha: np.ndarray, beta: np.ndarray,
              p: SimParams) -> tuple[np.ndarray, np.ndarray]:
    """|returns| of the simulator's recursion, one column per (alpha, beta) candidate, and
    each column's mean conditional sigma.

    All candidates share the random inputs (common random numbers), so differences between
    columns come from the parameters rather than from sampling noise.
    """
    import numpy as np

    long_var = p.long_run_var
    omega = long_var * (1.0 - alpha * p.jump_factor - beta)
    cap = long_var * p.var_cap
    jumps = jumps * math.sqrt(long_var)
    s2 = np.full(alpha.size, long_var)
    sig_sum = np.zeros(alpha.size)
    out = np.empty((z.size, alpha.size))
    for t, (zt, jt) in enumerate(zip(z.tolist(), jumps.tolist(), strict=True)):
        sig = np.sqrt(s2)
        sig_sum += sig
        e = sig * zt + jt
        out[t] = e
        s2 = np.minimum(omega + alpha * e * e + beta * s2, cap)
    return np.abs(out), sig_sum / z.size
