"""CPU pair kernels laid out for the compiler's vectoriser (the ``numba`` backend).

The per-point loops of :func:`physfield.kernels.rows.pair_direct_row` and
:func:`physfield.kernels.rows.pair_softmax_row` (one thread per point on the GPU) call the C
library's scalar ``exp`` once per pair; on a CPU that call is most of the cost (about 3-5 ns,
and Numba has no vector math library to replace it). Here the same quantities are computed in
contiguous passes over blocks of pairs, each a loop LLVM turns into SIMD code, with ``exp`` by
:func:`exp_nonpositive`, a branch-free polynomial:

- :func:`pair_direct` (sparse plans in low ``D``): logits ``l_k = log pi_k - |x - a_k - t (b_k
  - a_k)|^2 / (2 sigma^2)`` from the coordinates (stored as ``(D, K)`` rows, so the inner loop
  runs over pairs), then ``sum e``, ``sum e^2``, ``sum e (x - a)``, ``sum e (x - b)``. When a
  block raises the running maximum ``m``, what was accumulated is rescaled by ``exp(m_old -
  m_new)`` (an online softmax over blocks). A block is computed in the points' precision
  (float32 points: float32 logits, exponentials and block sums, twice the SIMD
  lanes), the sums across blocks in float64.
- :func:`pair_softmax` (any plan, from the squared distances to the charges): the row and column
  sums of the pair weights, the pairs cut into blocks by :func:`pair_blocks`; for a plan with dense
  rows each point first finds the pairs it can see (:func:`_near_blocks`,
  :mod:`physfield.kernels.near`) and visits only those.

Blocks of at most ``BLOCK`` pairs keep the scratch in cache whatever ``K``. The results are those
of the row bodies to round-off; both kernels are tested against
:mod:`physfield.kernels.reference`.
"""

import math

import numpy as np
from numba import njit, prange, types
from numba.extending import overload

#: pairs per block (scratch: three arrays of this length per thread)
BLOCK = 512
#: points that share one allocation of scratch in :func:`pair_direct` (allocating it per point
#: cost a quarter of the time at 256 x 256 pairs, ``bench/bench_lanes.py``)
CHUNK = 16
#: consecutive pairs of one row with consecutive columns that :func:`pair_blocks` makes a run
RUN_MIN = 32
#: partial maxima kept side by side (one AVX-512 register of float64)
LANES = 8
#: ``exp(x)`` for ``x`` below this is taken as 0: ``e^-700 = 1e-304`` of the largest term,
#: far below float64 resolution of the sums (the scalar kernels drop terms below ``-746``)
EXP_FLOOR = -700.0

_LOG2E = 1.4426950408889634
_LN2_HI = 0.6931471803691238  # ln 2 split so that n * _LN2_HI is exact for |n| < 2^11
_LN2_LO = 1.9082149292705877e-10
_ROUND = 6755399441055744.0  # 1.5 * 2^52: y + _ROUND rounds y to an integer in the low mantissa bits
#: float32: ``exp(x)`` below this is taken as 0 (``e^-87 = 1.6e-38``, near float32's smallest
#: normal number)
EXP_FLOOR32 = np.float32(-87.0)
_F = np.float32
_LN2_HI32 = _F(0.693145751953125)  # 16 significant bits: n * _LN2_HI32 is exact for |n| < 2^7
_LN2_LO32 = _F(1.428606765330187e-06)
_ROUND32 = _F(12582912.0)  # 1.5 * 2^23

# fast-math flags for the reductions (reassociation lets LLVM split sums and maxima into SIMD
# lanes; no NaN reaches them: inputs are validated finite); exp_nonpositive gets fused
# multiply-adds only, since reassociation would undo its rounding trick. Reassociated sums take
# the order LLVM vectorises them in, and that differs between a kernel compiled in this process
# and numba's cached build of it (measured: the last bit of a few sums); every process that
# loads the cache computes the same bits. Sums in a fixed order by hand cost 40 % of
# pair_direct's speed (measured), so the build, not the order, is what is kept fixed.
_REDUCE = {"reassoc", "nsz", "nnan", "contract"}
_FMA = {"contract"}


@njit(cache=True, inline="always", fastmath=_FMA)
def _exp_parts(x):
    """``(p, y)`` with ``exp(x) = p * 2^n``, ``n`` held in the low mantissa bits of ``y``. ::

        n = round(x / ln 2),   r = x - n ln 2  (|r| <= ln 2 / 2, Cody-Waite: two-part ln 2)
        p = sum_{i <= 13} r^i / i!       (truncation error < r^14 / 14! < 5e-18 relative)
    """
    y = x * _LOG2E + _ROUND
    n = y - _ROUND
    r = x - n * _LN2_HI - n * _LN2_LO
    p = 1.0 / 6227020800.0
    p = p * r + 1.0 / 479001600.0
    p = p * r + 1.0 / 39916800.0
    p = p * r + 1.0 / 3628800.0
    p = p * r + 1.0 / 362880.0
    p = p * r + 1.0 / 40320.0
    p = p * r + 1.0 / 5040.0
    p = p * r + 1.0 / 720.0
    p = p * r + 1.0 / 120.0
    p = p * r + 1.0 / 24.0
    p = p * r + 1.0 / 6.0
    p = p * r + 0.5
    p = p * r + 1.0
    return p * r + 1.0, y


@njit(cache=True, inline="always", fastmath=_FMA)
def _exp_parts32(x):
    """:func:`_exp_parts` in float32: ``p = sum_{i <= 7} r^i / i!`` (truncation error < r^8 / 8!
    < 5e-9 relative, below float32's 6e-8), ``n`` in the low mantissa bits of ``y``."""
    y = x * _F(_LOG2E) + _ROUND32
    n = y - _ROUND32
    r = x - n * _LN2_HI32 - n * _LN2_LO32
    p = _F(1.0 / 5040.0)
    p = p * r + _F(1.0 / 720.0)
    p = p * r + _F(1.0 / 120.0)
    p = p * r + _F(1.0 / 24.0)
    p = p * r + _F(1.0 / 6.0)
    p = p * r + _F(0.5)
    p = p * r + _F(1.0)
    return p * r + _F(1.0), y


def _exp_parts_of(x):
    """:func:`_exp_parts` or :func:`_exp_parts32`, by the precision of the scalar ``x``."""


@overload(_exp_parts_of, inline="always")
def _exp_parts_impl(x):
    parts = _exp_parts32 if x == types.float32 else _exp_parts

    def impl(x):
        return parts(x)

    return impl


def _bit_layout(scale):
    """``(bits, bias, shift, floor)`` of float64 or float32 ``scale``: its integer view, the
    exponent's bias and position, and the floor of :func:`exp_nonpositive`."""


@overload(_bit_layout, inline="always")
def _bit_layout_impl(scale):
    if scale.dtype == types.float32:
        def impl(scale):
            return scale.view(np.int32), 127, 23, EXP_FLOOR32
    else:
        def impl(scale):
            return scale.view(np.int64), 1023, 52, EXP_FLOOR
    return impl


@njit(cache=True, fastmath=_FMA)
def exp_nonpositive(x, m, out, scale, n):
    """``out[k] = exp(x[k] - m)`` for ``x <= m`` in the precision of ``x`` (float64: 0 below
    :data:`EXP_FLOOR`, a few ulp from libm; float32: 0 below :data:`EXP_FLOOR32`, within one
    float32 ulp); ``m`` (of the dtype of ``x``) is a softmax's largest logit, subtracted here
    rather than in a pass of its own.

    Branch-free so it vectorises: ``p`` and ``y`` from :func:`_exp_parts` (float32:
    :func:`_exp_parts32`), then ``2^n`` is built from its bits, ``(bits(y) + 1023) << 52``
    (float32: ``+ 127 << 23``; the exponent field of ``2^n``: ``y``'s low mantissa bits hold
    ``2^51 + n`` and the shift drops everything above ``n + 1023``), and ``out = p * 2^n``.
    ``scale`` is a scratch array as long as ``x``, of its dtype.
    """
    bits, bias, shift, floor = _bit_layout(scale)
    for k in range(n):
        xk = x[k] - m
        out[k], scale[k] = _exp_parts_of(xk if xk > floor else floor)
    for k in range(n):
        bits[k] = (bits[k] + bias) << shift
        out[k] = out[k] * scale[k] if x[k] - m > floor else 0.0


@njit(cache=True)
def _scratch(n, like):
    """Per-thread scratch of the pair kernels in the dtype of ``like``: logits, exponentials and
    the exp's bit buffer (``n`` each), and the ``LANES`` partial maxima of :func:`_max`."""
    dt = like.dtype
    return np.empty(n, dt), np.empty(n, dt), np.empty(n, dt), np.empty(LANES, dt)


@njit(cache=True, fastmath=_REDUCE)
def _max(l, n, lanes):
    """``max l`` over ``LANES`` interleaved partial maxima (``lanes``: scratch of that length),
    which the vectoriser keeps in one register: a plain running maximum stays scalar."""
    for j in range(LANES):
        lanes[j] = -math.inf
    whole = n - n % LANES
    for k in range(0, whole, LANES):
        for j in range(LANES):
            lanes[j] = l[k + j] if l[k + j] > lanes[j] else lanes[j]
    for k in range(whole, n):
        lanes[0] = l[k] if l[k] > lanes[0] else lanes[0]
    m = lanes[0]
    for j in range(1, LANES):
        m = lanes[j] if lanes[j] > m else m
    return m


@njit(cache=True, fastmath=_REDUCE)
def _logits(x, t, h, AT, DT, logw, lo, l):
    """``l[k] = logw[lo + k] - h |x - AT[:, lo + k] - t DT[:, lo + k]|^2``."""
    n = l.shape[0]
    w = logw[lo:lo + n]
    for k in range(n):
        l[k] = w[k]
    for d in range(AT.shape[0]):
        xd = x[d]
        a = AT[d, lo:lo + n]
        b = DT[d, lo:lo + n]
        for k in range(n):
            diff = xd - a[k] - t * b[k]
            l[k] -= h * diff * diff


@njit(cache=True, fastmath=_REDUCE)
def _accumulate(x, AT, BT, e, lo, oa, ob):
    """Adds ``sum e (x - a)`` and ``sum e (x - b)`` over the block to ``oa``, ``ob``; returns
    ``(sum e, sum e^2)``."""
    n = e.shape[0]
    zero = e.dtype.type(0.0)
    s1 = zero
    s2 = zero
    for k in range(n):
        s1 += e[k]
        s2 += e[k] * e[k]
    for d in range(AT.shape[0]):
        xd = x[d]
        a = AT[d, lo:lo + n]
        b = BT[d, lo:lo + n]
        sa = zero
        sb = zero
        for k in range(n):
            sa += e[k] * (xd - a[k])
            sb += e[k] * (xd - b[k])
        oa[d] += sa
        ob[d] += sb
    return s1, s2


@njit(parallel=True, cache=True)
def pair_direct(t, inv2s2, X, AT, BT, DT, logw, ca, cb, out, lse, ess, chunk):
    """The outputs of :func:`physfield.kernels.rows.pair_direct_row` for every point, from the pairs'
    coordinates as rows ``AT = a_k^T``, ``BT = b_k^T``, ``DT = BT - AT`` (each ``(D, K)``), each
    block in the dtype of ``X`` (module docstring); the two offsets are summed apart and combined
    as ``ca off_a + cb off_b`` at the end. The points are shared out between the threads in
    chunks of ``chunk`` (each allocates its scratch once)."""
    K = logw.shape[0]
    D = X.shape[1]
    P = X.shape[0]
    for q in prange((P + chunk - 1) // chunk):  # scratch once per chunk of points, not per point
        l, e, scale, lanes = _scratch(BLOCK, X)
        oa = np.empty(D)
        ob = np.empty(D)
        for p in range(chunk * q, min(chunk * q + chunk, P)):
            oa[:] = 0.0
            ob[:] = 0.0
            x = X[p]
            tp = X.dtype.type(t[p])
            h = X.dtype.type(inv2s2[p])
            m = -math.inf
            s1 = 0.0
            s2 = 0.0
            for lo in range(0, K, BLOCK):
                n = min(BLOCK, K - lo)
                _logits(x, tp, h, AT, DT, logw, lo, l[:n])
                mb = _max(l, n, lanes)
                if mb > m:  # rescale what the earlier blocks accumulated
                    c = math.exp(m - mb) if s1 > 0.0 else 0.0
                    s1 *= c
                    s2 *= c * c
                    for d in range(D):
                        oa[d] *= c
                        ob[d] *= c
                    m = mb
                exp_nonpositive(l, X.dtype.type(m), e, scale, n)
                b1, b2 = _accumulate(x, AT, BT, e[:n], lo, oa, ob)
                s1 += b1
                s2 += b2
            for d in range(D):
                out[p, d] = (ca[p] * oa[d] + cb[p] * ob[d]) / s1
            lse[p] = m + math.log(s1)
            ess[p] = s1 * s1 / s2


@njit(cache=True)
def pair_blocks(I, J):
    """The plan's pairs cut into blocks of consecutive pairs for :func:`pair_softmax`:
    ``(starts, run)``, block ``q`` holding pairs ``starts[q] <= k < starts[q + 1]``.

    A run block is at least :data:`RUN_MIN` pairs of one row with consecutive columns ``j0, j0 +
    1, ...`` (every row of a dense plan in row-major order): its ``alpha`` is one number and its
    ``beta`` one slice; a longer run is cut into equal pieces. The other pairs go into gather
    blocks. No block exceeds :data:`BLOCK`.
    """
    K = I.shape[0]
    starts = np.empty(K + 1, np.int64)
    run = np.empty(K, np.bool_)
    nb = 0
    gathering = False
    k = 0
    while k < K:
        end = k + 1
        while end < K and I[end] == I[k] and J[end] == J[end - 1] + 1:
            end += 1
        if end - k >= RUN_MIN:  # cut into equal pieces of at most BLOCK (each >= RUN_MIN)
            pieces = (end - k + BLOCK - 1) // BLOCK
            for q in range(pieces):
                starts[nb] = k + (end - k) * q // pieces
                run[nb] = True
                nb += 1
            gathering = False
        else:
            for q in range(k, end):
                if not gathering or q - starts[nb - 1] >= BLOCK:
                    starts[nb] = q
                    run[nb] = False
                    nb += 1
                    gathering = True
        k = end
    starts[nb] = K
    return starts[:nb + 1].copy(), run[:nb].copy()


@njit(cache=True, inline="always", fastmath=_REDUCE)
def _block_logits(p, tp, h, X, A, B, alpha, beta, Is, Js, lw, g, run, refine, ends, l):
    """Logits of the pairs ``(Is[k], Js[k])`` of one block into ``l``; ``lw``, ``g`` are their
    ``log pi`` and ``gamma``. With ``ends_k = (1 - t) alpha_k + t beta_k`` formed as ``c0 + c1
    e[k]``: for a run block ``c0 = (1 - t) alpha`` of its row, ``c1 = t`` and ``e`` a slice of
    ``beta``; otherwise ``c0 = 0``, ``c1 = 1`` and ``e = ends``, scratch gathered here.
    ``|rho|^2 = ends - t (1 - t) gamma`` (the identity of :mod:`physfield.kernels.rows`), clamped
    at 0; where it cancels (``|rho|^2 < refine * (ends + t (1 - t) gamma)``) it is recomputed from
    the coordinates, as :func:`physfield.kernels.rows.pair_softmax_row` does."""
    n = Is.shape[0]
    u = 1.0 - tp
    w = tp * (1.0 - tp)
    if run:
        c0 = u * alpha[p, Is[0]]
        c1 = tp
        e = beta[p, Js[0]:Js[0] + n]
    else:
        c0 = 0.0
        c1 = 1.0
        e = ends
        for k in range(n):
            ends[k] = u * alpha[p, Is[k]] + tp * beta[p, Js[k]]
    cancel = 0
    for k in range(n):
        r2 = c0 + c1 * e[k] - w * g[k]
        cancel += r2 < refine * (c0 + c1 * e[k] + w * g[k])
        l[k] = lw[k] - h * (r2 if r2 > 0.0 else 0.0)
    if cancel:
        for k in range(n):
            if c0 + c1 * e[k] - w * g[k] < refine * (c0 + c1 * e[k] + w * g[k]):
                r2 = 0.0
                for d in range(X.shape[1]):
                    diff = X[p, d] - u * A[Is[k], d] - tp * B[Js[k], d]
                    r2 += diff * diff
                l[k] = lw[k] - h * r2


@njit(cache=True, inline="always", fastmath=_REDUCE)
def _block_accumulate(e, Is, Js, run, R, C, p):
    """``R[p, Is[k]] += e[k]``, ``C[p, Js[k]] += e[k]``; returns ``(sum e, sum e^2)``."""
    n = Is.shape[0]
    s1 = 0.0
    s2 = 0.0
    if run:
        c = C[p, Js[0]:Js[0] + n]
        for k in range(n):
            c[k] += e[k]
            s1 += e[k]
            s2 += e[k] * e[k]
        R[p, Is[0]] += s1
    else:
        for k in range(n):
            R[p, Is[k]] += e[k]
            C[p, Js[k]] += e[k]
            s1 += e[k]
            s2 += e[k] * e[k]
    return s1, s2


@njit(cache=True, inline="always")
def _first_at_least(b_proj, J, lo, hi, v):
    """The first ``k`` in ``[lo, hi)`` with ``b_proj[J[k]] >= v`` (``hi`` if none); ``b_proj[J[k]]``
    ascends over the range."""
    while lo < hi:
        mid = (lo + hi) // 2
        if b_proj[J[mid]] < v:
            lo = mid + 1
        else:
            hi = mid
    return lo


@njit(cache=True, fastmath=_REDUCE)
def _near_blocks(p, tp, h, X, alpha, beta, J, logw, gamma, rows, coord, a_proj, b_proj, lw_max, cap, los, his, runs):
    """The blocks of the pairs point ``p`` can see (:mod:`physfield.kernels.near`) into ``los``,
    ``his``, ``runs``; returns their number, or ``-1`` when they hold more than ``cap`` pairs
    (pruning would not pay: the caller takes every block).

    First a lower bound ``m0`` on the largest logit: per row the pairs whose sinks bracket ``y_i``
    in ``b_proj``. Then per row the interval of sinks with ``|y_id - b_jd| < r_i / t``, cut into
    blocks of at most :data:`BLOCK` pairs (a block of consecutive sinks is a run).
    """
    u = 1.0 - tp
    w = tp * u
    xd = X[p, coord]
    N = rows.shape[0] - 1
    m0 = -math.inf
    for i in range(N):
        lo, hi = rows[i], rows[i + 1]
        if lo < hi:
            k = _first_at_least(b_proj, J, lo, hi, (xd - u * a_proj[i]) / tp)
            for q in range(k - 1 if k > lo else lo, k + 1 if k < hi else hi):
                r2 = u * alpha[p, i] + tp * beta[p, J[q]] - w * gamma[q]
                lq = logw[q] - h * (r2 if r2 > 0.0 else 0.0)
                m0 = lq if lq > m0 else m0
    nb = 0
    total = 0
    for i in range(N):
        lo, hi = rows[i], rows[i + 1]
        r2max = (lw_max[i] - m0 - EXP_FLOOR) / h
        if lo == hi or r2max <= 0.0:
            continue
        reach = math.sqrt(r2max) / tp
        y = (xd - u * a_proj[i]) / tp
        first = _first_at_least(b_proj, J, lo, hi, y - reach)
        last = _first_at_least(b_proj, J, first, hi, y + reach)
        total += last - first
        if total > cap:
            return -1
        while first < last:
            end = min(first + BLOCK, last)
            los[nb] = first
            his[nb] = end
            runs[nb] = J[end - 1] - J[first] == end - 1 - first
            nb += 1
            first = end
    return nb


@njit(cache=True, fastmath=_REDUCE)
def _softmax_blocks(p, t, inv2s2, X, A, B, alpha, beta, I, J, los, his, runs, nb, logw, gamma, refine, R, C, lse,
                    ess):
    """Point ``p``'s softmax over the pairs of blocks ``los[q] <= k < his[q]``, ``q < nb`` (the
    pairs not in a block are taken as 0). Two passes: the first finds each block's largest
    logit, the second forms ``exp(l - m)`` only in blocks whose largest term is above
    :data:`EXP_FLOOR`."""
    l, e, scale, lanes = _scratch(BLOCK, inv2s2)  # float64 whatever the points' dtype
    ends = np.empty(BLOCK, beta.dtype)
    blockmax = np.empty(nb)
    tp = t[p]
    h = inv2s2[p]
    m = -math.inf
    for q in range(nb):
        lo, hi = los[q], his[q]
        _block_logits(p, tp, h, X, A, B, alpha, beta, I[lo:hi], J[lo:hi], logw[lo:hi], gamma[lo:hi], runs[q],
                      refine, ends, l)
        blockmax[q] = _max(l, hi - lo, lanes)
        m = blockmax[q] if blockmax[q] > m else m
    for i in range(R.shape[1]):
        R[p, i] = 0.0
    for j in range(C.shape[1]):
        C[p, j] = 0.0
    s1 = 0.0
    s2 = 0.0
    for q in range(nb):
        if blockmax[q] - m > EXP_FLOOR:
            lo, hi = los[q], his[q]
            Is, Js = I[lo:hi], J[lo:hi]
            _block_logits(p, tp, h, X, A, B, alpha, beta, Is, Js, logw[lo:hi], gamma[lo:hi], runs[q], refine,
                          ends, l)
            exp_nonpositive(l, m, e, scale, hi - lo)
            b1, b2 = _block_accumulate(e, Is, Js, runs[q], R, C, p)
            s1 += b1
            s2 += b2
    inv = 1.0 / s1
    for i in range(R.shape[1]):
        R[p, i] *= inv
    for j in range(C.shape[1]):
        C[p, j] *= inv
    lse[p] = m + math.log(s1)
    ess[p] = s1 * s1 / s2


@njit(parallel=True, cache=True, fastmath=_REDUCE)
def pair_softmax(t, inv2s2, X, A, B, alpha, beta, I, J, los, his, runs, rows, coord, a_proj, b_proj, lw_max, cap,
                 logw, gamma, refine, R, C, lse, ess):
    """:func:`physfield.kernels.rows.pair_softmax_row` for every point and any plan, its pairs
    cut into the blocks ``los[q] <= k < his[q]`` (``runs[q]``: a run block) by :func:`pair_blocks`.

    With ``rows`` (non-empty: a :class:`physfield.kernels.near.Near` of the pairs, with ``coord``,
    ``a_proj``, ``b_proj``, ``lw_max``), each point first finds the blocks of the pairs it can see
    (:func:`_near_blocks`) and sums only those, unless they hold more than ``cap`` pairs. Then two
    passes over the blocks (:func:`_softmax_blocks`). In high ``D`` the logits of a point span
    thousands, so nearly every block is skipped in the second pass. A gather block's ``alpha``
    and ``beta`` are first gathered into contiguous scratch so that its logits loop vectorises
    as a run block's does.
    """
    N = rows.shape[0] - 1
    most = cap // BLOCK + N + 1 if N > 0 else 0
    for p in prange(X.shape[0]):
        near_lo = np.empty(most, np.int64)
        near_hi = np.empty(most, np.int64)
        near_run = np.empty(most, np.bool_)
        nb = -1
        if N > 0:
            nb = _near_blocks(p, t[p], inv2s2[p], X, alpha, beta, J, logw, gamma, rows, coord, a_proj, b_proj, lw_max,
                              cap, near_lo, near_hi, near_run)
        if nb < 0:  # every block
            near_lo, near_hi, near_run, nb = los, his, runs, runs.shape[0]
        _softmax_blocks(p, t, inv2s2, X, A, B, alpha, beta, I, J, near_lo, near_hi, near_run, nb, logw, gamma, refine,
                        R, C, lse, ess)
