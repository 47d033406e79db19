"""Composition of the row kernels and matrix products, the same for the CPU and GPU backends.

``k`` is a kernel module (:mod:`physfield.kernels.numba_cpu` or :mod:`physfield.kernels.numba_cuda`) and ``xp`` the array
module (NumPy or CuPy) that holds the arrays and does the matrix products.

Two ways to get the squared distances ``alpha_pi = |x_p - a_i|^2`` and the weighted offsets
``sum_i W_pi (x_p - a_i)``:

- ``direct``: differences, exact to round-off, ``O(n N D)`` scalar work (best for small ``D``);
- ``gemm``: ``|x|^2 + |a|^2 - 2 X A^T`` and ``(W 1) x - W A``, i.e. BLAS/cuBLAS products
  (best for large ``D``). Cancellation costs accuracy: the absolute error of ``alpha`` is about
  ``eps (|x|^2 + |a|^2)``. The data are centred on the mean charge first, the result is
  clamped at 0, and every distance below ``REFINE * (|x|^2 + |a|^2)`` (a point near a charge,
  where the relative error would be large) is recomputed by differences, its offset too. What
  is left has a relative error of about ``eps / REFINE`` (~1e-12 in float64, ~1e-5 in float32);
  an error ``delta`` in ``|rho|^2`` moves a strong-field log-weight by ``delta / (2 sigma(z)^2)``.

Sparse plans in low ``D`` skip both: one fused pass over the pairs per point
(:func:`physfield.kernels.rows.pair_direct_row`; on the CPU its vectorised form
:func:`physfield.kernels.simd.pair_direct`). Otherwise points are processed in chunks so the
``(chunk, N + M)`` scratch arrays stay near ``CHUNK_ELEMENTS`` entries.
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import NamedTuple

import numpy as np

from . import near

GEMM_MIN_D = 16
CHUNK_ELEMENTS = 2**21
#: from this many point-pair terms on, the GEMM path gives the CPU's cores to the pair kernels
SERIAL_WORK = 2**22
#: distances that cancellation leaves below ``REFINE`` times their scale are recomputed from the
#: coordinates (by dtype char): GEMM ``|x - a|^2`` and the pair identity for ``|rho|^2``
REFINE = {"d": 1e-4, "f": 1e-2}


def use_gemm(method, dim):
    """``method`` is ``"auto"`` (GEMM for ``D >= GEMM_MIN_D``), ``"direct"`` or ``"gemm"``."""
    if method not in ("auto", "direct", "gemm"):
        raise ValueError(f"unknown method {method!r}; expected 'auto', 'direct' or 'gemm'")
    return method == "gemm" or (method == "auto" and dim >= GEMM_MIN_D)


def chunks(n, width):
    """Slices of at most ``CHUNK_ELEMENTS // width`` points."""
    size = max(1, CHUNK_ELEMENTS // max(int(width), 1))
    return [slice(s, min(n, s + size)) for s in range(0, n, size)]


class Plates(NamedTuple):
    """Both plates: sources ``src`` ``(N, D)`` and sinks ``snk`` ``(M, D)`` as given; for the
    GEMM form also their common ``centre``, ``centred`` (the centred charges of both plates
    stacked, ``(N + M, D)``: its halves serve one plate each, the whole both, :func:`offsets`)
    and its rows' squared ``norms``."""

    src: object
    snk: object
    centre: object = None
    centred: object = None
    norms: object = None


def plates(xp, A, B, gemm):
    """The :class:`Plates` of sources ``A`` and sinks ``B``: for the GEMM form shifted by their
    common mean, which keeps the cancellation in ``|x|^2 + |a|^2 - 2 x.a`` (its absolute error
    is about ``eps (|x|^2 + |a|^2)``) at the scale of the data's spread, not of their offset."""
    if not gemm:
        return Plates(A, B)
    N = A.shape[0]
    centre = (A.sum(axis=0) + B.sum(axis=0)) / (N + B.shape[0])
    centred = xp.empty((N + B.shape[0], A.shape[1]), dtype=A.dtype)
    xp.subtract(A, centre, out=centred[:N])
    xp.subtract(B, centre, out=centred[N:])
    return Plates(A, B, centre, centred, xp.einsum("kd,kd->k", centred, centred))


def sq_dists(k, xp, X, Xc, x2, charges):
    """``alpha_pi = |X_p - a_i|^2`` and ``beta_pj = |X_p - b_j|^2`` to the charges of both plates
    (:class:`Plates`), each a contiguous table as the pair kernels read them, and the ``near``
    masks ``(near_a, near_b)`` of the pairs (point, charge) recomputed by differences (``None``
    for the direct form).

    GEMM form when ``Xc`` (``X`` shifted like the charges) and ``x2 = |Xc|^2`` are given
    (:func:`_gemm_sq_dists`): one product for both plates when the points are wide
    (:func:`_wide`), one per plate otherwise.
    """
    A, B = charges.src, charges.snk
    if Xc is None:
        alpha = xp.empty((X.shape[0], A.shape[0]), dtype=X.dtype)
        beta = xp.empty((X.shape[0], B.shape[0]), dtype=X.dtype)
        k.sq_dist(X, A, alpha)
        k.sq_dist(X, B, beta)
        return alpha, beta, None
    N = A.shape[0]
    if _wide(X, charges):
        out, near = _gemm_sq_dists(xp, X, Xc, x2, charges.centred, charges.norms, A, B)
        return xp.ascontiguousarray(out[:, :N]), xp.ascontiguousarray(out[:, N:]), (near[:, :N], near[:, N:])
    alpha, near_a = _gemm_sq_dists(xp, X, Xc, x2, charges.centred[:N], charges.norms[:N], A)
    beta, near_b = _gemm_sq_dists(xp, X, Xc, x2, charges.centred[N:], charges.norms[N:], B)
    return alpha, beta, (near_a, near_b)


def _wide(X, charges):
    """Whether the points are at least as wide as the charges are many (``D >= N + M``): then
    one product over both plates' stacked charges is cheaper than one per plate, and the
    ``(n, N + M)`` copies it costs are small next to the ``(n, D)`` work."""
    return X.shape[1] >= charges.src.shape[0] + charges.snk.shape[0]


def _gemm_sq_dists(xp, X, Xc, x2, centred, norms, A, B=None):
    """``|X_p - c|^2`` to the charges ``c`` whose centred rows are ``centred`` (``A``'s, then
    ``B``'s if given), as ``|x|^2 + |c|^2 - 2 x.c`` on the centred data, and the ``near`` mask.
    The absolute error is about ``eps (|x|^2 + |c|^2)``, so entries below
    ``REFINE * (|x|^2 + |c|^2)`` (a point near a charge) are recomputed by differences of the
    original coordinates (``X``; ``A``, ``B``) and flagged ``near``."""
    scale = x2[:, None] + norms[None, :]
    out = Xc @ centred.T
    out *= -2.0
    out += scale
    xp.maximum(out, 0.0, out=out)
    near = out < REFINE[np.dtype(X.dtype).char] * scale
    p, i = xp.nonzero(near)
    if len(p):
        diff = xp.empty((len(p), X.shape[1]), dtype=X.dtype)
        first = i < A.shape[0]
        diff[first] = X[p[first]] - A[i[first]]
        if B is not None:
            diff[~first] = X[p[~first]] - B[i[~first] - A.shape[0]]
        out[p, i] = (diff * diff).sum(axis=1)
    return out, near


def offsets(k, xp, X, Xc, charges, Wa, Wb, near, out):
    """``out = sum_i Wa_pi (X_p - a_i) + sum_j Wb_pj (X_p - b_j)`` over both plates of
    ``charges`` (:class:`Plates`); ``out`` has the shape of ``X`` and may be a strided view.

    Direct differences when ``Xc`` is ``None``. Otherwise the GEMM form ``(W 1) x - W C`` on the
    centred data, written into ``out`` (``Xc`` is overwritten): for wide points (:func:`_wide`)
    one product of ``W = [Wa, Wb]`` with the stacked centred charges, else one product per
    plate, which spares the ``(n, N + M)`` copy of ``W``. The
    ``near`` pairs (the masks of :func:`sq_dists`), whose offsets are small and would be lost
    to cancellation, are summed from direct differences of the original coordinates instead.
    """
    src, snk = charges.src, charges.snk
    if Xc is None:
        acc = xp.zeros_like(X)
        k.weighted_offset(X, src, Wa, acc)
        k.weighted_offset(X, snk, Wb, acc)
        out[...] = acc
        return out
    near_w = None
    if bool(near[0].any()) or bool(near[1].any()):
        near_w = [xp.where(m, W, 0.0).astype(W.dtype) for W, m in zip((Wa, Wb), near)]
        Wa, Wb = (xp.where(m, 0.0, W).astype(W.dtype) for W, m in zip((Wa, Wb), near))
    N = Wa.shape[1]
    if _wide(X, charges):
        W = xp.concatenate([Wa, Wb], axis=1)
        xp.matmul(W, charges.centred, out=out)
        total = W.sum(axis=1)
    else:
        xp.matmul(Wa, charges.centred[:N], out=out)
        out += Wb @ charges.centred[N:]
        total = Wa.sum(axis=1) + Wb.sum(axis=1)
    Xc *= total[:, None]
    xp.subtract(Xc, out, out=out)
    if near_w is not None:
        acc = xp.zeros_like(X)
        k.weighted_offset(X, src, near_w[0], acc)
        k.weighted_offset(X, snk, near_w[1], acc)
        out += acc
    return out


#: entries of the temporaries of :func:`pair_sq_dists` per chunk of pairs (2 MiB in float64)
PAIR_CHUNK_ELEMENTS = 2**18


def pair_sq_dists(k, xp, charges, I, J):
    """``gamma_k = |a_{i_k} - b_{j_k}|^2``: from the full ``N x M`` table when the plan is dense,
    else from differences, in chunks of pairs that keep the temporaries small."""
    A, B = charges.src, charges.snk
    N = A.shape[0]
    if 4 * len(I) >= N * B.shape[0]:
        if charges.centred is None:
            table = xp.empty((N, B.shape[0]), dtype=A.dtype)
            k.sq_dist(A, B, table)
        else:
            table = _gemm_sq_dists(xp, A, charges.centred[:N], charges.norms[:N], charges.centred[N:],
                                   charges.norms[N:], B)[0]
        return table[I, J]
    gamma = xp.empty(len(I), dtype=A.dtype)
    step = max(1, PAIR_CHUNK_ELEMENTS // A.shape[1])
    for lo in range(0, len(I), step):
        diff = A[I[lo:lo + step]]
        diff -= B[J[lo:lo + step]]
        gamma[lo:lo + step] = xp.einsum("kd,kd->k", diff, diff)
    return gamma


class Paths(NamedTuple):
    """A plan's pairs as :func:`path_terms` takes them, made once by :func:`prepare_paths`.

    ``A``, ``B``, ``I``, ``J``, ``logw``: the charges and the plan's support, the sinks possibly
    renumbered (:func:`physfield.kernels.near.relabel`); ``layout``: the pairs as the kernels
    take them (``pair_layout``, or ``pair_coords`` for the fused sparse path). The rest is
    ``None`` for the fused sparse path: the :class:`Plates` (:func:`plates`), ``near``
    (:class:`physfield.kernels.near.Near`, or ``None``: no pruning) and ``gamma``
    (:func:`pair_sq_dists`).
    """

    A: object
    B: object
    I: object
    J: object
    logw: object
    charges: object = None
    layout: object = None
    near: object = None
    gamma: object = None


def prepare_paths(k, xp, A, B, I, J, logw, gemm):
    """The :class:`Paths` of the charges ``A``, ``B`` (arrays of ``xp``) and the plan's support
    ``I``, ``J``, ``logw`` (NumPy), computed once for many :func:`path_terms` calls. A plan with
    dense rows (:func:`physfield.kernels.near.dense_rows`) has its sinks renumbered so that the
    kernels can find each point's near pairs by bisection."""
    N, M = A.shape[0], B.shape[0]
    if not gemm and len(I) <= N + M:  # the fused sparse path
        I, J = xp.asarray(I), xp.asarray(J)
        return Paths(A, B, I, J, xp.asarray(logw), layout=k.pair_coords(A, B, I, J))
    if near.dense_rows(N, len(I)):
        order, I, J, logw = near.relabel(_host(B), I, J, logw)
        B = xp.ascontiguousarray(B[xp.asarray(order)])
    where = near.layout(_host(A), _host(B), I, J, logw)
    I, J, logw = xp.asarray(I), xp.asarray(J), xp.asarray(logw)
    charges = plates(xp, A, B, gemm)
    return Paths(A, B, I, J, logw, charges, k.pair_layout(I, J), where, pair_sq_dists(k, xp, charges, I, J))


def _host(x):
    return x.get() if hasattr(x, "get") else np.asarray(x)


def path_terms(k, xp, X, t, inv2s2, ca, cb, paths, out=None):
    """Per point: ``lse = log sum_k pi_k exp(-|rho_k|^2 / 2 sigma^2)``, ``ess`` and the weighted
    offsets ::

        out = ca off_a + cb off_b,   off_a = sum_i R_i (x - a_i),   off_b = sum_j C_j (x - b_j)

    (``R``, ``C`` the row/column sums of the pair weights, ``ca``, ``cb`` per point). With
    ``ca = 1/L + s (1 - t)`` and ``cb = s t - 1/L`` that is the mean slope ``sum_k w_k v_k``
    (see :meth:`physfield.kernels.backend.Backend.gaussian_path`).

    Three ways, by ``D`` and the plan's number of pairs ``K``: direct and ``K <= N + M`` (paired,
    optimal): one fused pass over the pairs (:func:`physfield.kernels.rows.pair_direct_row`); otherwise
    the distances to the ``N + M`` charges first (direct or GEMM), then the ``O(K)`` softmax
    over pairs (:func:`physfield.kernels.rows.pair_softmax_row`; on the CPU its vectorised form
    :func:`physfield.kernels.simd.pair_softmax`, which visits only a point's near pairs,
    :mod:`physfield.kernels.near`), then the offsets (direct or GEMM: one product for both
    plates, written into ``out``). ``paths``: :func:`prepare_paths` of the charges and plan;
    ``out``: an array of the shape of ``X`` (may be a strided view), or ``None``: a new one.
    Returns ``(lse, ess, out)``.
    """
    lse = xp.empty(len(X))
    ess = xp.empty(len(X))
    out = xp.empty_like(X) if out is None else out
    A, B, I, J, logw = paths[:5]
    if paths.charges is None:
        # the kernels write rows of a C-contiguous array (one compiled signature)
        res = out if out.flags.c_contiguous else xp.empty_like(X)
        k.pair_direct(t, inv2s2, X, paths.layout, logw, ca, cb, res, lse, ess)
        if res is not out:
            out[...] = res
        return lse, ess, out
    gemm = paths.charges.centred is not None
    with k.cores_to(len(X) * len(I) >= SERIAL_WORK) if gemm else nullcontext():
        for s, Xs, Xc, alpha, beta, near_ab in _by_chunk(k, xp, X, paths.charges):
            R = xp.empty((len(Xs), A.shape[0]), dtype=X.dtype)
            C = xp.empty((len(Xs), B.shape[0]), dtype=X.dtype)
            k.pair_softmax(t[s], inv2s2[s], Xs, A, B, alpha, beta, paths.layout, paths.near, logw, paths.gamma,
                           REFINE[np.dtype(X.dtype).char], R, C, lse[s], ess[s])
            R *= ca[s, None].astype(X.dtype, copy=False)
            C *= cb[s, None].astype(X.dtype, copy=False)
            offsets(k, xp, Xs, Xc, paths.charges, R, C, near_ab, out[s])
    return lse, ess, out


def _by_chunk(k, xp, X, charges):
    """Per chunk of points: its slice, the points as given and centred (``None`` for the direct
    form), and :func:`sq_dists` to the sources and to the sinks with the ``near`` masks."""
    for s in chunks(len(X), charges.src.shape[0] + charges.snk.shape[0]):
        Xs = X[s]
        Xc = x2 = None
        if charges.centred is not None:
            Xc = Xs - charges.centre
            x2 = xp.einsum("pd,pd->p", Xc, Xc)
        yield (s, Xs, Xc, *sq_dists(k, xp, Xs, Xc, x2, charges))


def coulomb_terms(k, xp, X, z, L, A, B, log_qa, log_qb, gemm, prepared=None):
    """Per point: ``shift``, ``V = (V_z, V_x)`` with ``E = exp(shift) / |S^D| * V``, and the
    smallest squared distance to a charge ``r2min`` and the effective number of charges ``ess``, ::

        V = sum_i Wa_i (z, x - a_i) + sum_j Wb_j (z - L, x - b_j)

    (``Wa > 0`` source weights, ``Wb < 0`` sink weights, see :func:`physfield.kernels.rows.charge_weights_row`).
    ``prepared``: :func:`plates` of the same charges (computed here when not given).
    """
    prepared = plates(xp, A, B, gemm) if prepared is None else prepared
    with k.cores_to(False) if gemm else nullcontext():
        return _coulomb_chunks(k, xp, X, z, L, A, B, log_qa, log_qb, prepared)


def _coulomb_chunks(k, xp, X, z, L, A, B, log_qa, log_qb, charges):
    N, M = A.shape[0], B.shape[0]
    half_d1 = (X.shape[1] + 1) / 2.0
    shift = xp.empty(len(X))
    r2min = xp.empty(len(X))
    ess = xp.empty(len(X))
    vz = xp.empty(len(X))
    vx = xp.empty_like(X)
    for s, Xs, Xc, alpha, beta, near_ab in _by_chunk(k, xp, X, charges):
        Wa = xp.empty((len(Xs), N), dtype=X.dtype)
        Wb = xp.empty((len(Xs), M), dtype=X.dtype)
        k.charge_weights(z[s], float(L), half_d1, alpha, beta, log_qa, log_qb, Wa, Wb, shift[s], r2min[s], ess[s])
        vz[s] = z[s] * Wa.sum(axis=1) + (z[s] - L) * Wb.sum(axis=1)
        offsets(k, xp, Xs, Xc, charges, Wa, Wb, near_ab, vx[s])
    return shift, vz, vx, r2min, ess
