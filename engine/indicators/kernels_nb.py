"""Numba kernels behind the batch functions in engine.indicators (imported lazily).

Each kernel makes one pass over a C-contiguous float64 input and writes into
preallocated outputs, reproducing incremental.py bit for bit: same seeds, same operation
order, same re-anchoring every BLOCK bars (incremental.py's docstring explains it).

Speed comes from that block scheme. A block's partial sums do not depend on earlier
blocks, so EMA and RSI advance the partial sums of 2 * LANES blocks in lockstep (two
streams of LANES blocks: two smoothers, or two halves of a superblock of one), giving
the CPU eight independent dependency chains where the textbook recurrence has one; a
short pass over data still in L1 then resolves the anchors. Bars outside whole aligned
(super)blocks take the per-bar `_step_nb`. Indices are
uint64 so numba emits no negative-index wraparound code, and error_model="numpy" drops
zero-division checks (the RSI guard handles zero).
"""

from __future__ import annotations

import numpy as np
from numba import njit, types, uint64

# Must equal incremental.BLOCK (numba's cache keys on this file only; a test checks).
BLOCK = 8
LANES = 4

_K = uint64(BLOCK)
_K2 = uint64(2 * BLOCK)
_K3 = uint64(3 * BLOCK)
_HALF = uint64(BLOCK * LANES)
_SB = uint64(2 * BLOCK * LANES)
_ONE = uint64(1)
_ZERO = uint64(0)
_IN = types.Array(types.float64, 1, "C", readonly=True)
_OUT = types.float64[::1]
_SIG = types.void(_IN, types.int64, _OUT)
_SIG_MACD = types.void(_IN, types.int64, types.int64, types.int64, _OUT, _OUT, _OUT)


@njit(inline="always", nogil=True, error_model="numpy")
def _powers_nb(a):
    """Return [a**0, ..., a**BLOCK] by repeated multiplication (as incremental.powers)."""
    out = np.empty(BLOCK + 1)
    q = 1.0
    for j in range(BLOCK + 1):
        out[j] = q
        q *= a
    return out


@njit(inline="always", nogil=True, error_model="numpy")
def _step_nb(v, alpha, a, pw, anchor, s, j, t):
    """One bar of a seeded smoother at index t; returns (y, anchor, s, j) as _Smoother.step."""
    s = s * a + v * alpha
    j += _ONE
    y = pw[j] * anchor + s
    if t % _K == _K - _ONE:
        return y, y, 0.0, _ZERO
    return y, anchor, s, j


@njit(inline="always", nogil=True, error_model="numpy")
def _partials_nb(u, uo, alu, au, du, duo, v, vo, alv, av, dv, dvo):
    """Write the partial sums of LANES fresh blocks of u[uo:] to du[duo:] and of v to dv."""
    u0 = 0.0
    u1 = 0.0
    u2 = 0.0
    u3 = 0.0
    v0 = 0.0
    v1 = 0.0
    v2 = 0.0
    v3 = 0.0
    for k in range(_K):
        u0 = u0 * au + u[uo + k] * alu
        u1 = u1 * au + u[uo + _K + k] * alu
        u2 = u2 * au + u[uo + _K2 + k] * alu
        u3 = u3 * au + u[uo + _K3 + k] * alu
        v0 = v0 * av + v[vo + k] * alv
        v1 = v1 * av + v[vo + _K + k] * alv
        v2 = v2 * av + v[vo + _K2 + k] * alv
        v3 = v3 * av + v[vo + _K3 + k] * alv
        du[duo + k] = u0
        du[duo + _K + k] = u1
        du[duo + _K2 + k] = u2
        du[duo + _K3 + k] = u3
        dv[dvo + k] = v0
        dv[dvo + _K + k] = v1
        dv[dvo + _K2 + k] = v2
        dv[dvo + _K3 + k] = v3


@njit(inline="always", nogil=True, error_model="numpy")
def _resolve_nb(pw, anchor, buf, o, nblocks):
    """Turn nblocks blocks of partial sums at buf[o:] into values, in place; return anchor."""
    for _ in range(nblocks):
        # The next anchor equals the block's last value; computing it from the partial
        # sum keeps the anchor chain in registers and leaves the loop below free to vectorise.
        nxt = pw[BLOCK] * anchor + buf[o + _K - _ONE]
        for k in range(_K):
            buf[o + k] = pw[k + _ONE] * anchor + buf[o + k]
        anchor = nxt
        o += _K
    return anchor


@njit(_SIG, cache=True, nogil=True, error_model="numpy")
def ema_nb(x, period, out):
    """out[t] = EMA(period) of x[:t+1], NaN for t < period - 1 (seed: SMA of x[:period])."""
    n = uint64(x.shape[0])
    p = uint64(period)
    if n < p:
        out[:] = np.nan
        return
    acc = 0.0
    for t in range(p - _ONE):
        acc += x[t]
        out[t] = np.nan
    acc += x[p - _ONE]
    y = acc / period
    out[p - _ONE] = y
    al = 2.0 / (period + 1.0)
    a = 1.0 - al
    pw = _powers_nb(a)
    s = 0.0
    j = _ZERO
    t = p
    while t < n:
        if t % _K == 0 and t + _SB <= n:
            _partials_nb(x, t, al, a, out, t, x, t + _HALF, al, a, out, t + _HALF)
            y = _resolve_nb(pw, y, out, t, uint64(2 * LANES))
            t += _SB
        else:
            out[t], y, s, j = _step_nb(x[t], al, a, pw, y, s, j, t)
            t += _ONE


@njit(inline="always", nogil=True, error_model="numpy")
def _rsi_nb(g, lo):
    """RSI from average gain and loss; 50 when both are zero (as incremental.rsi_value)."""
    total = g + lo
    return 100.0 * (g / total) if total != 0.0 else 50.0


@njit(_SIG, cache=True, nogil=True, error_model="numpy")
def rsi_nb(x, period, out):
    """out[t] = Wilder RSI(period) of x[:t+1], NaN for t < period (seed: mean gain/loss)."""
    n = uint64(x.shape[0])
    p = uint64(period)
    if n <= p:
        out[:] = np.nan
        return
    out[0] = np.nan
    gs = 0.0
    ls = 0.0
    for t in range(_ONE, p + _ONE):
        d = x[t] - x[t - _ONE]
        gs += d if d > 0.0 else 0.0
        ls += -d if d < 0.0 else 0.0
        out[t] = np.nan
    ga = gs / period
    la = ls / period
    out[p] = _rsi_nb(ga, la)
    al = 1.0 / period
    a = 1.0 - al
    pw = _powers_nb(a)
    up = np.empty(_HALF)
    dn = np.empty(_HALF)
    sg = 0.0
    sl = 0.0
    jg = _ZERO
    jl = _ZERO
    t = p + _ONE
    while t < n:
        if t % _K == 0 and t + _HALF <= n:
            for i in range(_HALF):
                d = x[t + i] - x[t + i - _ONE]
                up[i] = d if d > 0.0 else 0.0
                dn[i] = -d if d < 0.0 else 0.0
            _partials_nb(up, _ZERO, al, a, up, _ZERO, dn, _ZERO, al, a, dn, _ZERO)
            ga = _resolve_nb(pw, ga, up, _ZERO, uint64(LANES))
            la = _resolve_nb(pw, la, dn, _ZERO, uint64(LANES))
            for i in range(_HALF):
                out[t + i] = _rsi_nb(up[i], dn[i])
            t += _HALF
        else:
            d = x[t] - x[t - _ONE]
            g, ga, sg, jg = _step_nb(d if d > 0.0 else 0.0, al, a, pw, ga, sg, jg, t)
            lo, la, sl, jl = _step_nb(-d if d < 0.0 else 0.0, al, a, pw, la, sl, jl, t)
            out[t] = _rsi_nb(g, lo)
            t += _ONE


@njit(_SIG_MACD, cache=True, nogil=True, error_model="numpy")
def macd_nb(x, fast, slow, signal, m, sig, hist):
    """TA-Lib-aligned MACD: m from slow-1, sig/hist from slow+signal-2, NaN before."""
    n = uint64(x.shape[0])
    pf = uint64(fast)
    ps = uint64(slow)
    seed = ps + uint64(signal) - uint64(2)
    m[: min(ps - _ONE, n)] = np.nan
    sig[: min(seed, n)] = np.nan
    hist[: min(seed, n)] = np.nan
    if n < ps:
        return
    fsum = 0.0
    ssum = 0.0
    for t in range(ps):
        ssum += x[t]
        if t >= ps - pf:
            fsum += x[t]
    alf = 2.0 / (fast + 1.0)
    af = 1.0 - alf
    als = 2.0 / (slow + 1.0)
    as_ = 1.0 - als
    alg = 2.0 / (signal + 1.0)
    ag = 1.0 - alg
    pwf = _powers_nb(af)
    pws = _powers_nb(as_)
    pwg = _powers_nb(ag)
    yf = fsum / fast
    ys = ssum / slow
    mv = yf - ys
    m[ps - _ONE] = mv
    msum = mv
    sf = 0.0
    ss = 0.0
    jf = _ZERO
    js = _ZERO
    t = ps
    while t <= seed and t < n:
        f, yf, sf, jf = _step_nb(x[t], alf, af, pwf, yf, sf, jf, t)
        s, ys, ss, js = _step_nb(x[t], als, as_, pws, ys, ss, js, t)
        mv = f - s
        m[t] = mv
        msum += mv
        t += _ONE
    if seed >= n:
        return
    yg = msum / signal
    sig[seed] = yg
    hist[seed] = m[seed] - yg
    sgv = 0.0
    jg = _ZERO
    while t < n:
        # Three smoothers already give the CPU three chains to overlap; the lockstep
        # scheme measured no faster here, so MACD walks whole blocks in a single pass.
        if t % _K == 0 and t + _K <= n:
            bf = 0.0
            bs = 0.0
            bg = 0.0
            for k in range(_K):
                v = x[t + k]
                bf = bf * af + v * alf
                bs = bs * as_ + v * als
                mv = (pwf[k + _ONE] * yf + bf) - (pws[k + _ONE] * ys + bs)
                bg = bg * ag + mv * alg
                g = pwg[k + _ONE] * yg + bg
                m[t + k] = mv
                sig[t + k] = g
                hist[t + k] = mv - g
            yf = pwf[BLOCK] * yf + bf
            ys = pws[BLOCK] * ys + bs
            yg = pwg[BLOCK] * yg + bg
            t += _K
        else:
            f, yf, sf, jf = _step_nb(x[t], alf, af, pwf, yf, sf, jf, t)
            s, ys, ss, js = _step_nb(x[t], als, as_, pws, ys, ss, js, t)
            mv = f - s
            g, yg, sgv, jg = _step_nb(mv, alg, ag, pwg, yg, sgv, jg, t)
            m[t] = mv
            sig[t] = g
            hist[t] = mv - g
            t += _ONE
