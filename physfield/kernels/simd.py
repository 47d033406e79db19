"""CPU pair kernels laid out for the compiler's vectoriser (the ``numba`` backend, low ``D``).

The per-point loop of :func:`physfield.kernels.rows.pair_direct_row` (one thread per point on the GPU)
calls the C library's scalar ``exp`` once per pair; on a CPU that call is most of the cost
(about 3-5 ns, and Numba has no vector math library to replace it). Here the same quantities are
computed in contiguous passes over blocks of pairs, each a loop LLVM turns into SIMD code:

1. logits  ``l_k = log pi_k - |x - a_k - t (b_k - a_k)|^2 / (2 sigma^2)`` (coordinates stored
   as ``(D, K)`` rows, so the inner loop runs over pairs), and the block maximum;
2. ``e_k = exp(l_k - m)`` by :func:`exp_nonpositive`, a branch-free polynomial;
3. ``sum e``, ``sum e^2``, ``sum e (x - a)``, ``sum e (x - b)``.

Blocks of ``BLOCK`` pairs keep the scratch in cache whatever ``K``; when a block raises the
running maximum ``m``, what was accumulated is rescaled by ``exp(m_old - m_new)`` (an online
softmax over blocks). The results are those of :func:`physfield.kernels.rows.pair_direct_row` to
round-off (tested against the NumPy reference).
"""

import math

import numpy as np
from numba import njit, prange

#: pairs per block (scratch: three float64 arrays of this length per thread)
BLOCK = 512
#: partial maxima kept side by side (one AVX-512 register of float64)
LANES = 8
#: ``exp(x)`` for ``x`` below this is taken as 0: ``e^-700 = 1e-304`` of the largest term,
#: far below float64 resolution of the sums (the scalar kernels drop terms below ``-746``)
EXP_FLOOR = -700.0

_LOG2E = 1.4426950408889634
_LN2_HI = 0.6931471803691238  # ln 2 split so that n * _LN2_HI is exact for |n| < 2^11
_LN2_LO = 1.9082149292705877e-10
_ROUND = 6755399441055744.0  # 1.5 * 2^52: y + _ROUND rounds y to an integer in the low mantissa bits

# fast-math flags for the reductions (reassociation lets LLVM split sums and maxima into SIMD
# lanes; no NaN reaches them: inputs are validated finite); exp_nonpositive gets fused
# multiply-adds only, since reassociation would undo its rounding trick
_REDUCE = {"reassoc", "nsz", "nnan", "contract"}
_FMA = {"contract"}


@njit(cache=True, inline="always", fastmath=_FMA)
def _exp_parts(x):
    """``(p, y)`` with ``exp(x) = p * 2^n``, ``n`` held in the low mantissa bits of ``y``.

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


@njit(cache=True, fastmath=_FMA)
def exp_nonpositive(x, out, scale):
    """``out[k] = exp(x[k])`` for ``x <= 0`` (0 below :data:`EXP_FLOOR`), a few ulp from libm.

    Branch-free so it vectorises: ``p`` and ``y`` from :func:`_exp_parts`, then ``2^n`` is built
    from its bits, ``(bits(y) + 1023) << 52`` (the exponent field of ``2^n``: ``y``'s low
    mantissa bits hold ``2^51 + n`` and the shift drops everything above ``n + 1023``), and
    ``out = p * 2^n``. ``scale`` is a float64 scratch array as long as ``x``.
    """
    bits = scale.view(np.int64)
    for k in range(x.shape[0]):
        xk = x[k] if x[k] > EXP_FLOOR else EXP_FLOOR
        out[k], scale[k] = _exp_parts(xk)
    for k in range(x.shape[0]):
        bits[k] = (bits[k] + 1023) << 52
    for k in range(x.shape[0]):
        out[k] = out[k] * scale[k] if x[k] > EXP_FLOOR else 0.0


@njit(cache=True)
def _scratch(n):
    """Per-thread scratch of the pair kernels: logits, exponentials and the exp's bit buffer
    (``n`` each), and the ``LANES`` partial maxima of :func:`_max`."""
    return np.empty(n), np.empty(n), np.empty(n), np.empty(LANES)


@njit(cache=True, fastmath=_REDUCE)
def _max(l, lanes):
    """``max l`` over ``LANES`` interleaved partial maxima (``lanes``: scratch of that length),
    which the vectoriser keeps in one register: a plain running maximum stays scalar."""
    n = l.shape[0]
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
    s1 = 0.0
    s2 = 0.0
    for k in range(n):
        s1 += e[k]
        s2 += e[k] * e[k]
    for d in range(AT.shape[0]):
        xd = x[d]
        a = AT[d, lo:lo + n]
        b = BT[d, lo:lo + n]
        sa = 0.0
        sb = 0.0
        for k in range(n):
            sa += e[k] * (xd - a[k])
            sb += e[k] * (xd - b[k])
        oa[d] += sa
        ob[d] += sb
    return s1, s2


@njit(parallel=True, cache=True)
def pair_direct(t, inv2s2, X, AT, BT, DT, logw, off_a, off_b, lse, ess):
    """The outputs of :func:`physfield.kernels.rows.pair_direct_row` for every point, from the pairs'
    coordinates as rows ``AT = a_k^T``, ``BT = b_k^T``, ``DT = BT - AT`` (each ``(D, K)``)."""
    K = logw.shape[0]
    D = X.shape[1]
    for p in prange(X.shape[0]):
        l, e, scale, lanes = _scratch(BLOCK)
        oa = np.zeros(D)
        ob = np.zeros(D)
        x = X[p]
        m = -math.inf
        s1 = 0.0
        s2 = 0.0
        for lo in range(0, K, BLOCK):
            n = min(BLOCK, K - lo)
            _logits(x, t[p], inv2s2[p], AT, DT, logw, lo, l[:n])
            mb = _max(l[:n], lanes)
            if mb > m:  # rescale what the earlier blocks accumulated
                c = math.exp(m - mb) if s1 > 0.0 else 0.0
                s1 *= c
                s2 *= c * c
                for d in range(D):
                    oa[d] *= c
                    ob[d] *= c
                m = mb
            for k in range(n):
                l[k] -= m
            exp_nonpositive(l[:n], e[:n], scale[:n])
            b1, b2 = _accumulate(x, AT, BT, e[:n], lo, oa, ob)
            s1 += b1
            s2 += b2
        for d in range(D):
            off_a[p, d] = oa[d] / s1
            off_b[p, d] = ob[d] / s1
        lse[p] = m + math.log(s1)
        ess[p] = s1 * s1 / s2


@njit(cache=True, fastmath=_REDUCE)
def _grid_logits(i, p, tp, h, X, A, B, alpha, beta, logw, gamma, refine, l):
    """Logits of the pairs ``(i, j)``, ``j < M``, of a full-grid plan into ``l``. ``|rho|^2`` by
    the identity of :mod:`physfield.kernels.rows`, clamped at 0; where it cancels (``|rho|^2 < refine *
    ((1 - t) alpha + t beta + t (1 - t) gamma)``) it is recomputed from the coordinates, as
    :func:`physfield.kernels.rows.pair_softmax_row` does."""
    M = l.shape[0]
    u = 1.0 - tp
    w = tp * (1.0 - tp)
    ua = u * alpha[p, i]
    b = beta[p]
    g = gamma[i]
    lw = logw[i]
    cancel = 0
    for j in range(M):
        ends = ua + tp * b[j]
        r2 = ends - w * g[j]
        cancel += r2 < refine * (ends + w * g[j])
        l[j] = lw[j] - h * (r2 if r2 > 0.0 else 0.0)
    if cancel:
        for j in range(M):
            ends = ua + tp * b[j]
            r2 = ends - w * g[j]
            if r2 < refine * (ends + w * g[j]):
                r2 = 0.0
                for d in range(X.shape[1]):
                    diff = X[p, d] - u * A[i, d] - tp * B[j, d]
                    r2 += diff * diff
                l[j] = lw[j] - h * r2


@njit(cache=True, fastmath=_REDUCE)
def _grid_accumulate(e, C, p):
    """``C[p] += e``; returns ``(sum e, sum e^2)``."""
    s1 = 0.0
    s2 = 0.0
    for j in range(e.shape[0]):
        C[p, j] += e[j]
        s1 += e[j]
        s2 += e[j] * e[j]
    return s1, s2


@njit(parallel=True, cache=True)
def pair_softmax_grid(t, inv2s2, X, A, B, alpha, beta, logw, gamma, refine, R, C, lse, ess):
    """:func:`physfield.kernels.rows.pair_softmax_row` for a plan whose support is the full ``N x M``
    grid (``independent``, Sinkhorn, dense explicit plans), ``logw`` and ``gamma`` as ``(N, M)``.

    Two passes over the rows ``i`` of the grid per point: the first finds each row's largest
    logit, the second forms ``exp(l - m)`` only in rows whose largest term is above
    :data:`EXP_FLOOR`. In high ``D`` the logits of a point span thousands, so nearly every row is
    skipped and the second pass costs next to nothing.
    """
    N, M = logw.shape
    for p in prange(X.shape[0]):
        l, e, scale, lanes = _scratch(M)
        rowmax = np.empty(N)
        tp = t[p]
        h = inv2s2[p]
        m = -math.inf
        for i in range(N):
            _grid_logits(i, p, tp, h, X, A, B, alpha, beta, logw, gamma, refine, l)
            rowmax[i] = _max(l, lanes)
            m = rowmax[i] if rowmax[i] > m else m
        for j in range(M):
            C[p, j] = 0.0
        s1 = 0.0
        s2 = 0.0
        for i in range(N):
            R[p, i] = 0.0
            if rowmax[i] - m > EXP_FLOOR:
                _grid_logits(i, p, tp, h, X, A, B, alpha, beta, logw, gamma, refine, l)
                for j in range(M):
                    l[j] -= m
                exp_nonpositive(l, e, scale)
                b1, b2 = _grid_accumulate(e, C, p)
                R[p, i] = b1
                s1 += b1
                s2 += b2
        inv = 1.0 / s1
        for i in range(N):
            R[p, i] *= inv
        for j in range(M):
            C[p, j] *= inv
        lse[p] = m + math.log(s1)
        ess[p] = s1 * s1 / s2
