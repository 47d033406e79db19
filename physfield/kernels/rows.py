"""Per-point kernel bodies, written once in plain Python and compiled twice.

Each function computes row ``p`` of its output from row ``p`` of its inputs and touches no
other row, so the CPU backend (:mod:`physfield.kernels.numba_cpu`) runs it under ``numba.prange`` and the
GPU backend (:mod:`physfield.kernels.numba_cuda`) as a ``numba.cuda`` device function, one thread per point.
Only scalars, loops and ``math`` are used so both compilers accept the same source. The two pair
kernels, :func:`pair_softmax_row` and :func:`pair_direct_row`, are the GPU's; the CPU runs their
vectorised forms in :mod:`physfield.kernels.simd`. All are tested against
:mod:`physfield.kernels.reference`.

The quantities (the README's mathematics; ``t = z / L``)::

    alpha_pi = |x_p - a_i|^2,    beta_pj = |x_p - b_j|^2,    gamma_k = |a_ik - b_jk|^2

    |rho_pk|^2 = |x_p - (1 - t) a_i - t b_j|^2
               = (1 - t) alpha_pi + t beta_pj - t (1 - t) gamma_k          (k = (i, j))

The identity needs only the ``N + M`` distances of a point, so a dense ``N x M`` plan costs
``O(N M + (N + M) D)`` per point, never ``O(N M D)``.
"""

import math

#: ``exp(x)`` is exactly 0 in float64 below this: such terms are skipped, not computed
UNDERFLOW = -746.0


def sq_dist_row(p, X, A, out):
    """``out[p, i] = |X[p] - A[i]|^2``, by direct differences (exact to round-off)."""
    for i in range(A.shape[0]):
        acc = 0.0
        for k in range(A.shape[1]):
            diff = X[p, k] - A[i, k]
            acc += diff * diff
        out[p, i] = acc


def pair_softmax_row(p, t, inv2s2, X, A, B, alpha, beta, I, J, logw, gamma, refine, R, C, lse, ess):
    """Softmax over the pairs of a plan and its row/column sums. ::

        l_k   = log pi_k - |rho_pk|^2 / (2 sigma(z_p)^2)        (inv2s2 = 1 / (2 sigma^2))
        w_k   = exp(l_k - lse_p),   lse_p = log sum_k exp(l_k)
        R[p, i] = sum_{k: i_k = i} w_k,   C[p, j] = sum_{k: j_k = j} w_k
        ess_p = 1 / sum_k w_k^2

    ``|rho|^2`` from the identity in the module docstring, clamped at 0 against round-off. The
    identity cancels when the point is close to a string compared with the string's length
    (``|rho|^2 << |a - b|^2``): where ``|rho|^2 < refine * ((1 - t) alpha + t beta + t (1 - t)
    gamma)`` it is recomputed from the coordinates ``X``, ``A``, ``B``, ``O(D)`` for those few
    pairs. (The shift ``m`` needs no such care: any value near the maximum keeps the sums in
    range, and ``lse`` is exact whatever it is.) Conditional expressions stand in for ``max``:
    numba's CUDA target mis-resolves the builtin.
    """
    tp = t[p]
    h = inv2s2[p]
    m = -math.inf
    for k in range(I.shape[0]):
        r2 = (1.0 - tp) * alpha[p, I[k]] + tp * beta[p, J[k]] - tp * (1.0 - tp) * gamma[k]
        lk = logw[k] - h * (r2 if r2 > 0.0 else 0.0)
        m = lk if lk > m else m
    for i in range(R.shape[1]):
        R[p, i] = 0.0
    for j in range(C.shape[1]):
        C[p, j] = 0.0
    s1 = 0.0
    s2 = 0.0
    for k in range(I.shape[0]):
        ends = (1.0 - tp) * alpha[p, I[k]] + tp * beta[p, J[k]]
        r2 = ends - tp * (1.0 - tp) * gamma[k]
        if r2 < refine * (ends + tp * (1.0 - tp) * gamma[k]):
            r2 = 0.0
            for d in range(X.shape[1]):
                diff = X[p, d] - (1.0 - tp) * A[I[k], d] - tp * B[J[k], d]
                r2 += diff * diff
        lk = logw[k] - h * r2 - m
        if lk > UNDERFLOW:  # exp would give exactly 0: skip it (the bits are the same)
            e = math.exp(lk)
            s1 += e
            s2 += e * e
            R[p, I[k]] += e
            C[p, J[k]] += e
    inv = 1.0 / s1
    for i in range(R.shape[1]):
        R[p, i] *= inv
    for j in range(C.shape[1]):
        C[p, j] *= inv
    lse[p] = m + math.log(s1)
    ess[p] = s1 * s1 / s2


def pair_direct_row(p, t, inv2s2, X, A, B, I, J, logw, ca, cb, out, lse, ess):
    """Everything :func:`pair_softmax_row` and the offsets give, fused, for sparse plans in low D.

    ``|rho_pk|^2 = |x_p - (1 - t) a_i - t b_j|^2`` straight from the coordinates (exact), and::

        out[p] = ca_p sum_k w_k (x_p - a_ik) + cb_p sum_k w_k (x_p - b_jk)

    accumulated pair by pair in one pass (an online softmax: whenever a larger ``l_k`` turns
    up, what is accumulated so far is rescaled by ``exp(m_old - m_new)``): ``O(K D)`` per point
    and no ``N``- or ``M``-wide scratch, which is what a plan with ``K ~ N`` pairs (paired,
    optimal) wants when ``D`` is small.
    """
    tp = t[p]
    h = inv2s2[p]
    wa = ca[p]
    wb = cb[p]
    m = -math.inf
    s1 = 0.0
    s2 = 0.0
    for d in range(X.shape[1]):
        out[p, d] = 0.0
    for k in range(I.shape[0]):
        i = I[k]
        j = J[k]
        r2 = 0.0
        for d in range(X.shape[1]):
            diff = X[p, d] - (1.0 - tp) * A[i, d] - tp * B[j, d]
            r2 += diff * diff
        lk = logw[k] - h * r2
        if lk > m:
            if s1 > 0.0:
                c = math.exp(m - lk)
                s1 *= c
                s2 *= c * c
                for d in range(X.shape[1]):
                    out[p, d] *= c
            m = lk
        if lk - m > UNDERFLOW:  # exp would give exactly 0: skip it
            e = math.exp(lk - m)
            s1 += e
            s2 += e * e
            for d in range(X.shape[1]):
                out[p, d] += e * (wa * (X[p, d] - A[i, d]) + wb * (X[p, d] - B[j, d]))
    for d in range(X.shape[1]):
        out[p, d] /= s1
    lse[p] = m + math.log(s1)
    ess[p] = s1 * s1 / s2


def unit_row(p, U, log_e):
    """Row ``p`` of ``U`` holds ``(., g)``, the slope ``g = E_x / E_z``, and ``log_e[p] = log E_z``;
    makes the row the unit direction and ``log_e[p]`` the log-norm::

        U[p] = (1, g) / sqrt(1 + |g|^2),    log_e[p] += log(1 + |g|^2) / 2

    ``|g|^2`` is summed in float64 whatever the dtype of ``U``.
    """
    sq = 0.0
    for d in range(1, U.shape[1]):
        g = 0.0 + U[p, d]  # float64 (a float32 U would square in float32)
        sq += g * g
    u0 = 1.0 / math.sqrt(1.0 + sq)
    U[p, 0] = u0
    for d in range(1, U.shape[1]):
        U[p, d] *= u0
    log_e[p] += 0.5 * math.log1p(sq)


def weighted_offset_row(p, X, A, W, out):
    """``out[p] += sum_i W[p, i] (X[p] - A[i])`` by direct differences; zero weights skipped."""
    for i in range(A.shape[0]):
        w = W[p, i]
        if w != 0.0:
            for k in range(X.shape[1]):
                out[p, k] += w * (X[p, k] - A[i, k])


def charge_weights_row(p, z, L, half_d1, alpha, beta, log_qa, log_qb, Wa, Wb, shift, r2min, ess):
    """Signed, shifted Coulomb weights of the charges at ``(0, a_i)`` and ``(L, b_j)``. ::

        |r|^2 = z^2 + alpha_pi   (source i),     (z - L)^2 + beta_pj   (sink j)
        l     = log q - (D + 1)/2 log |r|^2        (|G(r)| |S^D| = |r|^-D, G along r / |r|)
        Wa[p, i] = exp(l_i - shift_p),   Wb[p, j] = -exp(l_j - shift_p),   shift_p = max l

    so that ``E(p) = exp(shift_p) / |S^D| * (sum_i Wa_i r_i + sum_j Wb_j r_j)``; ``ess[p] =
    (sum_c |W_c| r_c)^2 / sum_c (|W_c| r_c)^2`` is the effective number of charges, ``|W_c| r_c``
    being charge ``c``'s share of the magnitudes ``|q_c G(r_c)|``. ``r2min[p]`` is
    the smallest ``|r|^2``: where it nears underflow the caller evaluates the nearest charge in
    closed form (``|r|^2`` is floored at the smallest normal number here to stay finite).
    """
    zp = z[p]
    tiny = 2.2250738585072014e-308
    m = -math.inf
    rmin = math.inf
    for i in range(Wa.shape[1]):
        r2 = zp * zp + alpha[p, i]
        r2 = r2 if r2 > tiny else tiny
        rmin = r2 if r2 < rmin else rmin
        lk = log_qa[i] - half_d1 * math.log(r2)
        m = lk if lk > m else m
    for j in range(Wb.shape[1]):
        r2 = (zp - L) * (zp - L) + beta[p, j]
        r2 = r2 if r2 > tiny else tiny
        rmin = r2 if r2 < rmin else rmin
        lk = log_qb[j] - half_d1 * math.log(r2)
        m = lk if lk > m else m
    s1 = 0.0
    s2 = 0.0
    for i in range(Wa.shape[1]):
        r2 = zp * zp + alpha[p, i]
        r2 = r2 if r2 > tiny else tiny
        Wa[p, i] = math.exp(log_qa[i] - half_d1 * math.log(r2) - m)
        c = Wa[p, i] * math.sqrt(r2)
        s1 += c
        s2 += c * c
    for j in range(Wb.shape[1]):
        r2 = (zp - L) * (zp - L) + beta[p, j]
        r2 = r2 if r2 > tiny else tiny
        Wb[p, j] = -math.exp(log_qb[j] - half_d1 * math.log(r2) - m)
        c = -Wb[p, j] * math.sqrt(r2)
        s1 += c
        s2 += c * c
    shift[p] = m
    r2min[p] = rmin
    ess[p] = s1 * s1 / s2
