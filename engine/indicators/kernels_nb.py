"""Numba kernels behind the batch functions in engine.indicators (imported lazily).

Each kernel makes one pass over a C-contiguous float64 input and writes into
preallocated outputs. Its numbers equal incremental.py's up to rounding (a few ulp of
the price scale; tests/indicators/test_properties.py bounds the difference), and depend
on the input values only: the grouping below is fixed by bar index, never by addresses.

What makes them fast (figures in benchmarks/bench_indicators.py):

* Block form. A smoother y[t] = a * y[t-1] + alpha * v[t] is the textbook recurrence,
  one 4-cycle multiply-add chain per bar, slower than memory. Here it runs one line of
  BLOCK = 8 bars (one 64-byte cache line, one AVX-512 register) at a time: with
  P = the line's block-local recurrence started from 0 (a 3-step log scan across the
  lanes, `_prefix`), y[s+k] = a**(k+1) * y[s-1] + P[k] for the line starting at bar s.
  The only loop-carried dependency is one multiply-add (plus, for some smoothers, a
  lane broadcast; see `_Smoother`) per line, instead of one per bar. The lines are written
  in LLVM IR (`_ema_lines` & co., numba intrinsics) because numba cannot hold vector
  values and leaves the SLP vectoriser off; bars before the first whole line and after
  the last are done one at a time in the plain form.
* Streaming stores. From STREAM_MIN bars on, outputs are written with full-line
  non-temporal stores, which skip reading each output line into the cache before
  overwriting it: for four indicators over 1M bars the run is bound by memory traffic,
  and this nearly halves the cost of the writes. The outputs then start out of cache,
  the right trade-off only when they would not fit in it anyway; shorter outputs use
  plain stores. Streaming needs 64-byte aligned outputs (engine.indicators allocates
  them so); a kernel given an unaligned output uses plain stores, same numbers.
* Software prefetch of the input (`_prefetch`).

Indices are uint64 so numba emits no negative-index wraparound code; error_model="numpy"
drops zero-division checks; fastmath is limited to "contract" (fused multiply-add), so
LLVM may not reassociate anything.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from llvmlite import ir
from numba import int64, njit, types, uint64
from numba.extending import intrinsic

BLOCK = 8  # bars per block: one 64-byte cache line of float64
STREAM_MIN = 1 << 18  # bars (2 MiB per output) from which outputs bypass the cache
PREFETCH_LINES = 64  # how far ahead of the loads the input is prefetched (4 KiB)

_K = uint64(BLOCK)
_STREAM_MIN = uint64(STREAM_MIN)
_LINE = uint64(64)
_W = uint64(8)  # bytes per float64
_ONE = uint64(1)
_ZERO = uint64(0)
_IN = types.Array(types.float64, 1, "C", readonly=True)
_OUT = types.float64[::1]
_SIG = types.void(_IN, types.int64, _OUT)
_SIG_MACD = types.void(_IN, types.int64, types.int64, types.int64, _OUT, _OUT, _OUT)
_OPTS: dict[str, Any] = {"nogil": True, "fastmath": {"contract"}, "error_model": "numpy",
                         "boundscheck": False}


_F64 = ir.DoubleType()
_V8 = ir.VectorType(_F64, BLOCK)
_I32 = ir.IntType(32)
_NONTEMPORAL = [ir.Constant(_I32, 1)]


def _line_ptr(context: Any, builder: Any, arrty: Any, arr: Any, index: Any) -> Any:
    data = context.make_array(arrty)(context, builder, arr).data
    return builder.bitcast(builder.gep(data, [index], inbounds=True), _V8.as_pointer())


def _load_line(context: Any, builder: Any, arrty: Any, arr: Any, index: Any) -> Any:
    return builder.load(_line_ptr(context, builder, arrty, arr, index), align=8)


def _prefetch(context: Any, builder: Any, arrty: Any, arr: Any, index: Any) -> None:
    """Hint the line PREFETCH_LINES lines past arr[index] into L1 (never faults).

    The hardware prefetchers alone fall behind once the output stream competes for
    memory bandwidth; this took the four-call 1M-bar benchmark from 2.2x to about 3x
    TA-Lib (any distance from 16 to 128 lines measured about the same).
    """
    data = context.make_array(arrty)(context, builder, arr).data
    ahead = builder.add(index, ir.Constant(index.type, PREFETCH_LINES * BLOCK))
    ptr = builder.bitcast(builder.gep(data, [ahead]), ir.IntType(8).as_pointer())
    name = "llvm.prefetch.p0"
    fn = builder.module.globals.get(name)
    if fn is None:
        fn = ir.Function(builder.module, ir.FunctionType(
            ir.VoidType(), [ir.IntType(8).as_pointer(), _I32, _I32, _I32]), name)
    # read, keep in all cache levels, data cache
    builder.call(fn, [ptr, ir.Constant(_I32, 0), ir.Constant(_I32, 3), ir.Constant(_I32, 1)])


def _store_line(context: Any, builder: Any, arrty: Any, arr: Any, index: Any, value: Any,
                stream: bool) -> None:
    """Store one line; streaming stores need arr[index] 64-byte aligned."""
    ptr = _line_ptr(context, builder, arrty, arr, index)
    if stream:
        store = builder.store(value, ptr, align=64)
        store.set_metadata("nontemporal", builder.module.add_metadata(_NONTEMPORAL))
    else:
        builder.store(value, ptr, align=8)


def _splat(builder: Any, x: Any) -> Any:
    v = builder.insert_element(ir.Constant(_V8, ir.Undefined), x, ir.Constant(_I32, 0))
    return builder.shuffle_vector(v, v, ir.Constant(ir.VectorType(_I32, BLOCK), [0] * BLOCK))


def _const(x: float) -> Any:
    return ir.Constant(_V8, [x] * BLOCK)


def _fma(builder: Any, a: Any, b: Any, c: Any) -> Any:
    """a * b + c, rounded once (llvmlite cannot name vector intrinsics itself)."""
    name = f"llvm.fma.v{BLOCK}f64"
    fn = builder.module.globals.get(name)
    if fn is None:
        fn = ir.Function(builder.module, ir.FunctionType(_V8, [_V8] * 3), name)
    return builder.call(fn, [a, b, c])


def _powers_vec(builder: Any, a: Any) -> Any:
    """<a, a**2, ..., a**BLOCK> by repeated multiplication."""
    v = ir.Constant(_V8, ir.Undefined)
    q = a
    for k in range(BLOCK):
        v = builder.insert_element(v, q, ir.Constant(_I32, k))
        q = builder.fmul(q, a)
    return v


def _prefix(builder: Any, v: Any, a: Any) -> Any:
    """Block-local recurrence P[k] = a * P[k-1] + v[k] (P[-1] = 0) over the lanes of v.

    A log-step scan: lanes k >= s add a**s times lane k - s, for s = 1, 2, 4. Each step
    is a one-source lane permute and a multiply-add whose coefficient is 0 in lanes
    k < s (x86 runs that permute as one shuffle uop; a shift that pulls in zero lanes
    becomes a two-uop expand). Inputs are finite, so 0 * v[k] adds nothing there.
    """
    coef = a
    shift = 1
    while shift < BLOCK:
        index = ir.Constant(ir.VectorType(_I32, BLOCK), [max(k - shift, 0) for k in range(BLOCK)])
        lanes = ir.Constant(_V8, ir.Undefined)
        for k in range(BLOCK):
            lane = coef if k >= shift else ir.Constant(_F64, 0.0)
            lanes = builder.insert_element(lanes, lane, ir.Constant(_I32, k))
        v = _fma(builder, builder.shuffle_vector(v, v, index), lanes, v)
        coef = builder.fmul(coef, coef)
        shift *= 2
    return v


def _lane_splat(builder: Any, v: Any, lane: int) -> Any:
    """Every lane set to v[lane] (one permute)."""
    return builder.shuffle_vector(v, v, ir.Constant(ir.VectorType(_I32, BLOCK), [lane] * BLOCK))


class _Smoother:
    """IR for one smoother y[t] = a * y[t-1] + alpha * v[t], a line at a time.

    The running value is carried as a vector with y in every lane (no moves between
    scalar and vector registers). A line costs the prefix scan, one multiply-add for its
    values and, for the carry, either one more multiply-add beside them (`short_chain`:
    the loop-carried dependency is that one 4-cycle operation, best when a kernel has
    little else to do) or just a lane broadcast of the last value (one operation fewer,
    a 7-cycle chain, best when the multiply-add port is the bottleneck). alpha None
    means 1 (no scaling).
    """

    def __init__(self, builder: Any, a: Any, alpha: Any, short_chain: bool) -> None:
        self.powers = _powers_vec(builder, a)
        self.carry = _lane_splat(builder, self.powers, BLOCK - 1)
        self.a = a
        self.alpha = alpha
        self.short_chain = short_chain

    def line(self, builder: Any, v: Any, y: Any) -> tuple[Any, Any]:
        """(values of the line, the carry vector after it) given the carry before it."""
        if self.alpha is not None:
            v = builder.fmul(v, _splat(builder, self.alpha))
        partial = _prefix(builder, v, self.a)
        values = _fma(builder, self.powers, y, partial)
        if self.short_chain:
            after = _fma(builder, self.carry, y, _lane_splat(builder, partial, BLOCK - 1))
        else:
            after = _lane_splat(builder, values, BLOCK - 1)
        return values, after


def _lines(builder: Any, start: Any, end: Any, init: list[Any], body: Any) -> list[Any]:
    """IR for `for i in range(start, end, BLOCK): state = body(i, state)`; returns state."""
    pre = builder.block
    loop = builder.append_basic_block("lines")
    done = builder.append_basic_block("lines.done")
    builder.cbranch(builder.icmp_unsigned("<", start, end), loop, done)
    builder.position_at_end(loop)
    i = builder.phi(start.type)
    state = [builder.phi(v.type) for v in init]
    i.add_incoming(start, pre)
    for phi, v in zip(state, init, strict=True):
        phi.add_incoming(v, pre)
    new = body(i, state)
    nxt = builder.add(i, ir.Constant(start.type, BLOCK))
    latch = builder.block
    i.add_incoming(nxt, latch)
    for phi, v in zip(state, new, strict=True):
        phi.add_incoming(v, latch)
    builder.cbranch(builder.icmp_unsigned("<", nxt, end), loop, done)
    builder.position_at_end(done)
    out = []
    for v, w in zip(init, new, strict=True):
        phi = builder.phi(v.type)
        phi.add_incoming(v, pre)
        phi.add_incoming(w, latch)
        out.append(phi)
    return out


def _first(builder: Any, v: Any) -> Any:
    return builder.extract_element(v, ir.Constant(_I32, 0))


def _ema_lines_impl(stream: bool) -> Any:
    def impl(typingctx: Any, out: Any, x: Any, start: Any, end: Any, a: Any, alpha: Any,
             y: Any) -> Any:
        """EMA over bars [start, end) (whole lines) given y at start - 1; returns the last."""
        sig = types.float64(out, x, start, end, a, alpha, y)

        def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
            out_, x_, start_, end_, a_, alpha_, y_ = args
            smoother = _Smoother(builder, a_, alpha_, True)

            def body(i: Any, state: list[Any]) -> list[Any]:
                _prefetch(context, builder, signature.args[1], x_, i)
                xv = _load_line(context, builder, signature.args[1], x_, i)
                values, after = smoother.line(builder, xv, state[0])
                _store_line(context, builder, signature.args[0], out_, i, values, stream)
                return [after]

            (final,) = _lines(builder, start_, end_, [_splat(builder, y_)], body)
            return _first(builder, final)

        return sig, codegen
    return intrinsic(impl)


_ema_lines = _ema_lines_impl(False)
_ema_lines_nt = _ema_lines_impl(True)


def _rsi_lines_impl(stream: bool) -> Any:
    def impl(typingctx: Any, out: Any, x: Any, start: Any, end: Any, a: Any, g: Any,
             lo: Any) -> Any:
        """RSI over bars [start, end) (whole lines; start >= 1) from gain and loss sums g, lo
        at start - 1 (50 where both are 0); returns the sums at end - 1.
        """
        sig = types.UniTuple(types.float64, 2)(out, x, start, end, a, g, lo)

        def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
            out_, x_, start_, end_, a_, g_, l_ = args
            smoother = _Smoother(builder, a_, None, False)
            zero = ir.Constant(_V8, None)
            xt = signature.args[1]

            def body(i: Any, state: list[Any]) -> list[Any]:
                _prefetch(context, builder, xt, x_, i)
                prev = builder.sub(i, ir.Constant(i.type, 1))
                d = builder.fsub(_load_line(context, builder, xt, x_, i),
                                 _load_line(context, builder, xt, x_, prev))
                up = builder.select(builder.fcmp_ordered(">", d, zero), d, zero)
                down = builder.select(builder.fcmp_ordered("<", d, zero), builder.fneg(d), zero)
                gain, g_after = smoother.line(builder, up, state[0])
                loss, l_after = smoother.line(builder, down, state[1])
                total = builder.fadd(gain, loss)
                ratio = builder.fmul(_const(100.0), builder.fdiv(gain, total))
                value = builder.select(builder.fcmp_ordered("==", total, zero), _const(50.0),
                                       ratio)
                _store_line(context, builder, signature.args[0], out_, i, value, stream)
                return [g_after, l_after]

            init = [_splat(builder, g_), _splat(builder, l_)]
            final = _lines(builder, start_, end_, init, body)
            return context.make_tuple(builder, signature.return_type,
                                      [_first(builder, v) for v in final])

        return sig, codegen
    return intrinsic(impl)


_rsi_lines = _rsi_lines_impl(False)
_rsi_lines_nt = _rsi_lines_impl(True)


def _macd_lines_impl(stream: bool) -> Any:
    def impl(typingctx: Any, m: Any, sig_out: Any, hist: Any, x: Any, start: Any, end: Any,
             coefs: Any, yf: Any, ys: Any, yg: Any) -> Any:
        """MACD, signal and histogram over bars [start, end) (whole lines), given the fast,
        slow and signal values at start - 1 and coefs = (af, alf, as, als, ag, alg);
        returns those three values at end - 1.
        """
        sig = types.UniTuple(types.float64, 3)(m, sig_out, hist, x, start, end, coefs,
                                               yf, ys, yg)

        def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
            x_, start_, end_, coefs_, yf_, ys_, yg_ = args[3:]
            af, alf, as_, als, ag, alg = (builder.extract_value(coefs_, k) for k in range(6))
            # The fast and slow EMAs run unscaled (y / alpha): the MACD line is then one
            # multiply and one multiply-add, alf * F - als * S.
            fast = _Smoother(builder, af, None, False)
            slow = _Smoother(builder, as_, None, False)
            signal = _Smoother(builder, ag, alg, False)
            neg_als = _splat(builder, builder.fneg(als))

            def body(i: Any, state: list[Any]) -> list[Any]:
                _prefetch(context, builder, signature.args[3], x_, i)
                xv = _load_line(context, builder, signature.args[3], x_, i)
                f, f_after = fast.line(builder, xv, state[0])
                sl, s_after = slow.line(builder, xv, state[1])
                line = _fma(builder, _splat(builder, alf), f, builder.fmul(neg_als, sl))
                g, g_after = signal.line(builder, line, state[2])
                for k, value in ((0, line), (1, g), (2, builder.fsub(line, g))):
                    _store_line(context, builder, signature.args[k], args[k], i, value, stream)
                return [f_after, s_after, g_after]

            init = [_splat(builder, builder.fdiv(yf_, alf)),
                    _splat(builder, builder.fdiv(ys_, als)), _splat(builder, yg_)]
            yf_end, ys_end, yg_end = (_first(builder, v) for v in
                                      _lines(builder, start_, end_, init, body))
            result = [builder.fmul(alf, yf_end), builder.fmul(als, ys_end), yg_end]
            return context.make_tuple(builder, signature.return_type, result)

        return sig, codegen
    return intrinsic(impl)


_macd_lines = _macd_lines_impl(False)
_macd_lines_nt = _macd_lines_impl(True)


def _fence_impl(typingctx: Any) -> Any:
    """Full memory fence: orders the non-temporal stores before anything that follows."""
    sig = types.void()

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        builder.fence("seq_cst")
        return context.get_dummy_value()

    return sig, codegen


_store_fence: Any = intrinsic(_fence_impl)


@njit(inline="always", **_OPTS)
def _aligned(arr):
    return arr.ctypes.data % _LINE == _ZERO


@njit(types.int64(_IN, _OUT, types.int64), cache=True, **_OPTS)
def place_nb(x, raw, row):
    """Start index in raw (len(x) + 512 float64s) for output row `row` of input x.

    The row starts 64-byte aligned, 1 KiB * (row + 1) past x's address modulo 4 KiB
    (engine.indicators._outputs explains why); a numba call is cheaper than asking numpy
    for two addresses.
    """
    at = (x.ctypes.data // _W + uint64(128) * uint64(row + 1)) // _K * _K
    return int64((at - raw.ctypes.data // _W) % uint64(512))


@njit(_SIG, cache=True, **_OPTS)
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
    t = p
    while t < n and t % _K != 0:
        y = a * y + al * x[t]
        out[t] = y
        t += _ONE
    end = max(t, n - n % _K)  # whole lines in [t, end)
    stream = n >= _STREAM_MIN and _aligned(out)
    if t < end:
        if stream:
            y = _ema_lines_nt(out, x, t, end, a, al, y)
        else:
            y = _ema_lines(out, x, t, end, a, al, y)
    for i in range(end, n):
        y = a * y + al * x[i]
        out[i] = y
    if stream:
        _store_fence()  # streaming stores are weakly ordered


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
    end = max(t, n - n % _K)  # whole lines in [t, end)
    stream = n >= _STREAM_MIN and _aligned(out)
    if t < end:
        if stream:
            gs, ls = _rsi_lines_nt(out, x, t, end, a, gs, ls)
        else:
            gs, ls = _rsi_lines(out, x, t, end, a, gs, ls)
    for i in range(end, n):
        d = x[i] - x[i - _ONE]
        gs = a * gs + (d if d > 0.0 else 0.0)
        ls = a * ls + (-d if d < 0.0 else 0.0)
        out[i] = _rsi(gs, ls)
    if stream:
        _store_fence()  # streaming stores are weakly ordered


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
    end = max(t, n - n % _K)  # whole lines in [t, end)
    stream = n >= _STREAM_MIN and _aligned(m) and _aligned(sig) and _aligned(hist)
    coefs = (af, alf, as_, als, ag, alg)
    if t < end:
        if stream:
            yf, ys, yg = _macd_lines_nt(m, sig, hist, x, t, end, coefs, yf, ys, yg)
        else:
            yf, ys, yg = _macd_lines(m, sig, hist, x, t, end, coefs, yf, ys, yg)
    for i in range(end, n):
        yf = af * yf + alf * x[i]
        ys = as_ * ys + als * x[i]
        mv = yf - ys
        yg = ag * yg + alg * mv
        m[i] = mv
        sig[i] = yg
        hist[i] = mv - yg
    if stream:
        _store_fence()  # streaming stores are weakly ordered
