"""Numba kernels behind the batch functions in engine.indicators (imported lazily).

Each kernel makes one pass over a C-contiguous float64 input and writes into
preallocated outputs. The numbers equal incremental.py's up to rounding (a few ulp);
tests/indicators/test_properties.py bounds the difference.

Two things make them fast:

* Block form. Every smoother y[t] = a * y[t-1] + b[t] is computed per aligned block of
  BLOCK bars as y[t] = a**(k+1) * y[s-1] + P[t], where s is the block's first bar,
  k = t - s and P is the block-local recurrence started from zero. P for one block does
  not depend on earlier blocks, so the CPU overlaps many blocks (the textbook
  recurrence is one 4-cycle multiply-add chain per bar, slower than memory), and the
  second step vectorises. Bars are processed CHUNK at a time through L1-resident scratch
  buffers. The block grid is fixed by bar index, so results depend on the input only,
  never on memory addresses or on which store path ran.
* Streaming stores. Above STREAM_MIN bars a kernel writes its output with full-line
  non-temporal stores (`_stream_line`), which skip reading each output line into the
  cache before overwriting it. With four indicators over a 1M-bar series the run is
  bound by memory traffic, and this roughly halves the cost of the writes (benchmarks/
  bench_indicators.py). The outputs then start out of cache, which is the right
  trade-off only when they would not fit in it anyway; smaller outputs use plain stores.
  Streaming needs each output 64-byte aligned (engine.indicators allocates them so);
  a kernel given an unaligned output uses plain stores and returns the same numbers.

Indices are uint64 so numba emits no negative-index wraparound code; error_model="numpy"
drops zero-division checks; fastmath is limited to "contract" (fused multiply-add), so
LLVM may not reassociate anything.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from llvmlite import ir
from numba import njit, types, uint64
from numba.extending import intrinsic

BLOCK = 8  # bars per block: one 64-byte cache line of float64
GROUP = 4 * BLOCK  # bars whose blocks advance in lockstep
CHUNK = 256  # bars per scratch pass (a multiple of GROUP; 2 KiB per buffer)
STREAM_MIN = 1 << 18  # bars (2 MiB per output) from which outputs bypass the cache

_K = uint64(BLOCK)
_K1 = uint64(BLOCK - 1)
_K2 = uint64(2 * BLOCK)
_K3 = uint64(3 * BLOCK)
_G = uint64(GROUP)
_C = uint64(CHUNK)
_STREAM_MIN = uint64(STREAM_MIN)
_LINE = uint64(64)
_ONE = uint64(1)
_ZERO = uint64(0)
_IN = types.Array(types.float64, 1, "C", readonly=True)
_OUT = types.float64[::1]
_SIG = types.void(_IN, types.int64, _OUT)
_SIG_MACD = types.void(_IN, types.int64, types.int64, types.int64, _OUT, _OUT, _OUT)
_OPTS: dict[str, Any] = {"nogil": True, "fastmath": {"contract"}, "error_model": "numpy",
                         "boundscheck": False}


@intrinsic
def _stream_line(typingctx: Any, dst: Any, di: Any, src: Any, si: Any) -> Any:
    """Copy src[si:si+BLOCK] to dst[di:di+BLOCK] with one non-temporal store.

    dst[di] must be 64-byte aligned. The store is an LLVM vector store tagged
    !nontemporal: one `vmovntpd zmm` with AVX-512, two ymm or four xmm stores on older
    x86, an ordinary store where the target has no such instruction.
    """
    sig = types.void(dst, di, src, si)

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        d, i, s, j = args
        dst_data = context.make_array(signature.args[0])(context, builder, d).data
        src_data = context.make_array(signature.args[2])(context, builder, s).data
        vec = ir.VectorType(ir.DoubleType(), BLOCK)
        src_ptr = builder.bitcast(builder.gep(src_data, [j], inbounds=True), vec.as_pointer())
        dst_ptr = builder.bitcast(builder.gep(dst_data, [i], inbounds=True), vec.as_pointer())
        store = builder.store(builder.load(src_ptr, align=8), dst_ptr, align=64)
        store.set_metadata("nontemporal",
                           builder.module.add_metadata([ir.Constant(ir.IntType(32), 1)]))
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def _store_fence(typingctx: Any) -> Any:
    """Full memory fence: orders the non-temporal stores before anything that follows."""
    sig = types.void()

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        builder.fence("seq_cst")
        return context.get_dummy_value()

    return sig, codegen


@njit(inline="always", **_OPTS)
def _aligned(arr):
    return arr.ctypes.data % _LINE == _ZERO


@njit(inline="always", **_OPTS)
def _store(out, t, buf, m, stream):
    """out[t:t+m] = buf[:m]; m is a multiple of BLOCK, and so is t when streaming."""
    if stream:
        for j in range(_ZERO, m, _K):
            _stream_line(out, t + j, buf, j)
    else:
        for j in range(m):
            out[t + j] = buf[j]


@njit(inline="always", **_OPTS)
def _powers(a):
    """[a**0, ..., a**BLOCK] by repeated multiplication."""
    out = np.empty(BLOCK + 1)
    q = 1.0
    for j in range(BLOCK + 1):
        out[j] = q
        q *= a
    return out


@njit(inline="always", **_OPTS)
def _partials(src, o, m, a, dst):
    """dst[j] = block-local a-recurrence of src[o:o+m]: s = a * s + src[o+j], s = 0 at blocks.

    m is a multiple of GROUP; GROUP / BLOCK blocks advance in lockstep so that the CPU
    has four independent multiply-add chains to overlap.
    """
    for g in range(_ZERO, m, _G):
        s0 = 0.0
        s1 = 0.0
        s2 = 0.0
        s3 = 0.0
        i = o + g
        for k in range(_K):
            s0 = a * s0 + src[i + k]
            s1 = a * s1 + src[i + _K + k]
            s2 = a * s2 + src[i + _K2 + k]
            s3 = a * s3 + src[i + _K3 + k]
            dst[g + k] = s0
            dst[g + _K + k] = s1
            dst[g + _K2 + k] = s2
            dst[g + _K3 + k] = s3


@njit(inline="always", **_OPTS)
def _resolve(buf, m, pw, y, scale):
    """buf[j] = scale * (a**(k+1) * y + buf[j]) for block-local sums buf[:m] (k = j % BLOCK).

    y is the (unscaled) value before buf[0]; returns the one after buf[m-1]. It is
    recomputed from the partial sum so that the chain from block to block stays in
    registers and the eight lanes are free to vectorise.
    """
    p1 = pw[1]
    p2 = pw[2]
    p3 = pw[3]
    p4 = pw[4]
    p5 = pw[5]
    p6 = pw[6]
    p7 = pw[7]
    p8 = pw[8]
    for b in range(_ZERO, m, _K):
        nxt = p8 * y + buf[b + _K1]
        buf[b] = scale * (p1 * y + buf[b])
        buf[b + uint64(1)] = scale * (p2 * y + buf[b + uint64(1)])
        buf[b + uint64(2)] = scale * (p3 * y + buf[b + uint64(2)])
        buf[b + uint64(3)] = scale * (p4 * y + buf[b + uint64(3)])
        buf[b + uint64(4)] = scale * (p5 * y + buf[b + uint64(4)])
        buf[b + uint64(5)] = scale * (p6 * y + buf[b + uint64(5)])
        buf[b + uint64(6)] = scale * (p7 * y + buf[b + uint64(6)])
        buf[b + uint64(7)] = scale * (p8 * y + buf[b + uint64(7)])
        y = nxt
    return y


@njit(_SIG, cache=True, **_OPTS)
def ema_nb(x, period, out):
    """out[t] = EMA(period) of x[:t+1], NaN for t < period - 1 (seed: SMA of x[:period]).

    The block form runs on Y = y / alpha: Y[t] = a * Y[t-1] + x[t].
    """
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
    t = p
    while t < n and t % _K != 0:
        y = a * y + al * x[t]
        out[t] = y
        t += _ONE
    end = t + (n - t) // _G * _G
    stream = n >= _STREAM_MIN and _aligned(out)
    if t < end:
        pw = _powers(a)
        buf = np.empty(CHUNK)
        yy = y / al
        while t < end:
            m = min(_C, end - t)
            _partials(x, t, m, a, buf)
            yy = _resolve(buf, m, pw, yy, al)
            _store(out, t, buf, m, stream)
            t += m
        y = al * yy
    for i in range(end, n):
        y = a * y + al * x[i]
        out[i] = y
    if stream:
        _store_fence()


@njit(inline="always", **_OPTS)
def _rsi(g, lo):
    """RSI from gain and loss averages (or equally scaled sums); 50 when both are zero."""
    total = g + lo
    return 100.0 * (g / total) if total != 0.0 else 50.0


@njit(_SIG, cache=True, **_OPTS)
def rsi_nb(x, period, out):
    """out[t] = Wilder RSI(period) of x[:t+1], NaN for t < period (seed: mean gain/loss).

    Gains and losses are smoothed as sums, G[t] = a * G[t-1] + gain[t] with
    a = 1 - 1/period, which is period times Wilder's average; RSI depends on the ratio only.
    """
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
        if t < p:
            out[t] = np.nan
    out[p] = _rsi(gs, ls)
    a = 1.0 - 1.0 / period
    t = p + _ONE
    while t < n and t % _K != 0:
        d = x[t] - x[t - _ONE]
        gs = a * gs + (d if d > 0.0 else 0.0)
        ls = a * ls + (-d if d < 0.0 else 0.0)
        out[t] = _rsi(gs, ls)
        t += _ONE
    end = t + (n - t) // _G * _G
    stream = n >= _STREAM_MIN and _aligned(out)
    if t < end:
        pw = _powers(a)
        up = np.empty(CHUNK)
        dn = np.empty(CHUNK)
        while t < end:
            m = min(_C, end - t)
            for j in range(m):
                d = x[t + j] - x[t + j - _ONE]
                up[j] = d if d > 0.0 else 0.0
                dn[j] = -d if d < 0.0 else 0.0
            _partials(up, _ZERO, m, a, up)
            _partials(dn, _ZERO, m, a, dn)
            gs = _resolve(up, m, pw, gs, 1.0)
            ls = _resolve(dn, m, pw, ls, 1.0)
            for j in range(m):
                up[j] = _rsi(up[j], dn[j])
            _store(out, t, up, m, stream)
            t += m
    for i in range(end, n):
        d = x[i] - x[i - _ONE]
        gs = a * gs + (d if d > 0.0 else 0.0)
        ls = a * ls + (-d if d < 0.0 else 0.0)
        out[i] = _rsi(gs, ls)
    if stream:
        _store_fence()


@njit(_SIG_MACD, cache=True, **_OPTS)
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
    yf = fsum / fast
    ys = ssum / slow
    mv = yf - ys
    m[ps - _ONE] = mv
    msum = mv
    t = ps
    while t <= seed and t < n:
        yf = af * yf + alf * x[t]
        ys = as_ * ys + als * x[t]
        mv = yf - ys
        m[t] = mv
        msum += mv
        t += _ONE
    if seed >= n:
        return
    yg = msum / signal
    sig[seed] = yg
    hist[seed] = m[seed] - yg
    while t < n and t % _K != 0:
        yf = af * yf + alf * x[t]
        ys = as_ * ys + als * x[t]
        mv = yf - ys
        yg = ag * yg + alg * mv
        m[t] = mv
        sig[t] = yg
        hist[t] = mv - yg
        t += _ONE
    end = t + (n - t) // _G * _G
    stream = n >= _STREAM_MIN and _aligned(m) and _aligned(sig) and _aligned(hist)
    if t < end:
        pwf = _powers(af)
        pws = _powers(as_)
        pwg = _powers(ag)
        bf = np.empty(CHUNK)
        bs = np.empty(CHUNK)
        bg = np.empty(CHUNK)
        yyf = yf / alf
        yys = ys / als
        yyg = yg / alg
        while t < end:
            c = min(_C, end - t)
            _partials(x, t, c, af, bf)
            _partials(x, t, c, as_, bs)
            yyf = _resolve(bf, c, pwf, yyf, alf)
            yys = _resolve(bs, c, pws, yys, als)
            for j in range(c):
                bf[j] = bf[j] - bs[j]
            _partials(bf, _ZERO, c, ag, bg)
            yyg = _resolve(bg, c, pwg, yyg, alg)
            for j in range(c):
                bs[j] = bf[j] - bg[j]
            _store(m, t, bf, c, stream)
            _store(sig, t, bg, c, stream)
            _store(hist, t, bs, c, stream)
            t += c
        yf = alf * yyf
        ys = als * yys
        yg = alg * yyg
    for i in range(end, n):
        yf = af * yf + alf * x[i]
        ys = as_ * ys + als * x[i]
        mv = yf - ys
        yg = ag * yg + alg * mv
        m[i] = mv
        sig[i] = yg
        hist[i] = mv - yg
    if stream:
        _store_fence()
