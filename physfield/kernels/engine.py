"""Composition of the row kernels and matrix products, the same for the CPU and GPU backends.

``k`` is a kernel module (:mod:`physfield.kernels.numba_cpu` or :mod:`physfield.kernels.numba_cuda`) and ``xp`` the array
module (NumPy or CuPy) that holds the arrays and does the matrix products.

Two ways to get the squared distances ``alpha_pi = |x_p - a_i|^2`` and the weighted offsets
``sum_i W_pi (x_p - a_i)``:

- ``direct``: differences, exact to round-off, ``O(n N D)`` scalar work (best for small ``D``);
- ``gemm``: ``|x|^2 + |a|^2 - 2 X A^T`` and ``(W 1) x - W A``, i.e. BLAS/cuBLAS products
  (best for large ``D``). Cancellation costs accuracy: the absolute error of ``alpha`` is about
  ``eps (|x|^2 + |a|^2)``. The data are centred on the mean charge first (unless their mean is
  already small next to their spread), the result is clamped at 0, and every distance below ``REFINE * (|x|^2 + |a|^2)`` (a point near a charge, where the
  relative error would be large) is recomputed by differences, its offset too. What is left has
  a relative error of about ``eps / REFINE`` (~1e-12 in float64, ~1e-5 in float32); an error
  ``delta`` in ``|rho|^2`` moves a strong-field log-weight by ``delta / (2 sigma(z)^2)``.

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
#: data whose mean is within this fraction of their spread (squared) are not shifted for GEMM
CENTRED = 0.01
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


class Plate(NamedTuple):
    """The charges of one plate: coordinates as given (``pts``) and, for the GEMM form, shifted
    by the common centre of both plates (``centred``) with their squared norms (``norms``)."""

    pts: object
    centred: object = None
    norms: object = None


def plates(xp, A, B, gemm):
    """``(sources, sinks, centre)`` as :class:`Plate` s; ``centre`` is ``None`` when the data are
    not shifted (``direct``, or already centred to within ``CENTRED`` of their spread)."""
    if not gemm:
        return Plate(A), Plate(B), None
    a2, b2 = xp.einsum("kd,kd->k", A, A), xp.einsum("kd,kd->k", B, B)
    centre = (A.sum(axis=0) + B.sum(axis=0)) / (A.shape[0] + B.shape[0])
    c2 = float((centre * centre).sum())
    spread = float((a2.sum() + b2.sum()) / (A.shape[0] + B.shape[0])) - c2
    if c2 <= CENTRED * spread:  # already centred enough: no copies
        return Plate(A, A, a2), Plate(B, B, b2), None
    Ac, Bc = A - centre, B - centre
    return Plate(A, Ac, xp.einsum("kd,kd->k", Ac, Ac)), Plate(B, Bc, xp.einsum("kd,kd->k", Bc, Bc)), centre


def sq_dists(k, xp, X, Xc, plate):
    """``|X_p - a_i|^2`` to the charges of ``plate``, shape ``(len(X), N)``, and the ``near`` mask.

    GEMM form when ``Xc`` (``X`` shifted like the plate) is given: ``|x|^2 + |a|^2 - 2 x.a`` on
    the centred data. Its absolute error is about ``eps (|x|^2 + |a|^2)``, so entries below
    ``REFINE * (|x|^2 + |a|^2)`` (a point near a charge) are recomputed by differences of the
    original coordinates and flagged ``near``; ``near`` is ``None`` for the direct form.
    """
    if Xc is None:
        out = xp.empty((X.shape[0], plate.pts.shape[0]), dtype=X.dtype)
        k.sq_dist(X, plate.pts, out)
        return out, None
    scale = xp.einsum("pd,pd->p", Xc, Xc)[:, None] + plate.norms[None, :]
    out = scale - 2.0 * (Xc @ plate.centred.T)
    xp.maximum(out, 0.0, out=out)
    near = out < REFINE[np.dtype(X.dtype).char] * scale
    p, i = xp.nonzero(near)
    if len(p):
        diff = X[p] - plate.pts[i]
        out[p, i] = (diff * diff).sum(axis=1)
    return out, near


def offsets(k, xp, X, Xc, plate, W, near):
    """``sum_i W_pi (X_p - a_i)`` over the charges of ``plate``, shape ``X.shape``.

    Direct differences when ``Xc`` is ``None``; otherwise the GEMM form ``(W 1) x - W A`` on the
    centred data for the far charges plus direct differences of the original coordinates for
    the ``near`` ones, whose offsets are small and would be lost to cancellation.
    """
    if Xc is None:
        out = xp.zeros_like(X)
        k.weighted_offset(X, plate.pts, W, out)
        return out
    has_near = bool(near.any())
    w_far = xp.where(near, 0.0, W).astype(W.dtype) if has_near else W
    out = Xc * w_far.sum(axis=1)[:, None]
    out -= w_far @ plate.centred
    if has_near:
        k.weighted_offset(X, plate.pts, xp.where(near, W, 0.0).astype(W.dtype), out)
    return out


def pair_sq_dists(k, xp, src, snk, I, J):
    """``gamma_k = |a_{i_k} - b_{j_k}|^2``: from the full ``N x M`` table when the plan is dense."""
    A, B = src.pts, snk.pts
    if 4 * len(I) >= A.shape[0] * B.shape[0]:
        return sq_dists(k, xp, A, src.centred, snk)[0][I, J]
    same = len(I) == A.shape[0] == B.shape[0] and bool((I == J).all()) and bool((I == xp.arange(len(I))).all())
    diff = A - B if same else A[I] - B[J]  # paired: no gathers
    return xp.einsum("kd,kd->k", diff, diff)


class Paths(NamedTuple):
    """A plan's pairs as :func:`path_terms` takes them, made once by :func:`prepare_paths`.

    ``A``, ``B``, ``I``, ``J``, ``logw``: the charges and the plan's support, the sinks possibly
    renumbered (:func:`physfield.kernels.near.relabel`); the rest is ``None`` for the fused sparse
    path: the :class:`Plate` s and ``centre`` (:func:`plates`), the kernels' ``layout`` of the
    pairs, ``near`` (:class:`physfield.kernels.near.Near`, or ``None``: no pruning) and ``gamma``
    (:func:`pair_sq_dists`).
    """

    A: object
    B: object
    I: object
    J: object
    logw: object
    src: object = None
    snk: object = None
    centre: object = None
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
        return Paths(A, B, xp.asarray(I), xp.asarray(J), xp.asarray(logw))
    if near.dense_rows(N, len(I)):
        order, I, J, logw = near.relabel(_host(B), I, J, logw)
        B = xp.ascontiguousarray(B[xp.asarray(order)])
    where = near.layout(_host(A), _host(B), I, J, logw)
    I, J, logw = xp.asarray(I), xp.asarray(J), xp.asarray(logw)
    src, snk, centre = plates(xp, A, B, gemm)
    return Paths(A, B, I, J, logw, src, snk, centre, k.pair_layout(I, J), where, pair_sq_dists(k, xp, src, snk, I, J))


def _host(x):
    return x.get() if hasattr(x, "get") else np.asarray(x)


def path_terms(k, xp, X, t, inv2s2, paths):
    """Per point: ``lse = log sum_k pi_k exp(-|rho_k|^2 / 2 sigma^2)``, ``ess`` and the offsets::

        off_a = sum_i R_i (x - a_i),   off_b = sum_j C_j (x - b_j)

    (``R``, ``C`` the row/column sums of the pair weights), from which the mean slope is
    ``sum_k w_k v_k = (1/L + s (1 - t)) off_a + (s t - 1/L) off_b`` (see :meth:`physfield.kernels.backend.Backend.gaussian_path`).

    Three ways, by ``D`` and the plan's number of pairs ``K``: direct and ``K <= N + M`` (paired,
    optimal): one fused pass over the pairs (:func:`physfield.kernels.rows.pair_direct_row`); otherwise
    the distances to the ``N + M`` charges first (direct or GEMM), then the ``O(K)`` softmax
    over pairs (:func:`physfield.kernels.rows.pair_softmax_row`; on the CPU its vectorised form
    :func:`physfield.kernels.simd.pair_softmax`, which visits only a point's near pairs,
    :mod:`physfield.kernels.near`), then the offsets (direct or GEMM).
    ``paths``: :func:`prepare_paths` of the charges and plan.
    """
    lse = xp.empty(len(X))
    ess = xp.empty(len(X))
    off_a = xp.empty_like(X)
    off_b = xp.empty_like(X)
    A, B, I, J, logw = paths[:5]
    if paths.src is None:
        k.pair_direct(t, inv2s2, X, A, B, I, J, logw, off_a, off_b, lse, ess)
        return lse, ess, off_a, off_b
    gemm = paths.src.centred is not None
    with k.cores_to(len(X) * len(I) >= SERIAL_WORK) if gemm else nullcontext():
        return _path_chunks(k, xp, X, t, inv2s2, paths, gemm, lse, ess, off_a, off_b)


def _by_chunk(k, xp, X, src, snk, centre, gemm):
    """Per chunk of points: its slice, the points as given and centred, and the squared
    distances (with ``near`` masks) to the sources and to the sinks."""
    for s in chunks(len(X), src.pts.shape[0] + snk.pts.shape[0]):
        Xs = X[s]
        Xc = None if not gemm else Xs if centre is None else Xs - centre
        yield (s, Xs, Xc, *sq_dists(k, xp, Xs, Xc, src), *sq_dists(k, xp, Xs, Xc, snk))


def _path_chunks(k, xp, X, t, inv2s2, paths, gemm, lse, ess, off_a, off_b):
    A, B, I, J, logw, src, snk, centre, layout, where, gamma = paths
    refine = REFINE[np.dtype(X.dtype).char]
    for s, Xs, Xc, alpha, near_a, beta, near_b in _by_chunk(k, xp, X, src, snk, centre, gemm):
        R = xp.empty((len(Xs), A.shape[0]), dtype=X.dtype)
        C = xp.empty((len(Xs), B.shape[0]), dtype=X.dtype)
        k.pair_softmax(t[s], inv2s2[s], Xs, A, B, alpha, beta, layout, where, logw, gamma, refine, R, C, lse[s],
                       ess[s])
        off_a[s] = offsets(k, xp, Xs, Xc, src, R, near_a)
        off_b[s] = offsets(k, xp, Xs, Xc, snk, C, near_b)
    return lse, ess, off_a, off_b


def coulomb_terms(k, xp, X, z, L, A, B, log_qa, log_qb, gemm, prepared=None):
    """Per point: ``shift``, ``V = (V_z, V_x)`` with ``E = exp(shift) / |S^D| * V``, and the
    smallest squared distance to a charge ``r2min`` and the effective number of charges ``ess``, ::

        V = sum_i Wa_i (z, x - a_i) + sum_j Wb_j (z - L, x - b_j)

    (``Wa > 0`` source weights, ``Wb < 0`` sink weights, see :func:`physfield.kernels.rows.charge_weights_row`).
    ``prepared``: :func:`plates` of the same charges (computed here when not given).
    """
    prepared = plates(xp, A, B, gemm) if prepared is None else prepared
    with k.cores_to(False) if gemm else nullcontext():
        return _coulomb_chunks(k, xp, X, z, L, A, B, log_qa, log_qb, gemm, prepared)


def _coulomb_chunks(k, xp, X, z, L, A, B, log_qa, log_qb, gemm, prepared):
    src, snk, centre = prepared
    N, M = A.shape[0], B.shape[0]
    half_d1 = (X.shape[1] + 1) / 2.0
    shift = xp.empty(len(X))
    r2min = xp.empty(len(X))
    ess = xp.empty(len(X))
    vz = xp.empty(len(X))
    vx = xp.empty_like(X)
    for s, Xs, Xc, alpha, near_a, beta, near_b in _by_chunk(k, xp, X, src, snk, centre, gemm):
        Wa = xp.empty((len(Xs), N), dtype=X.dtype)
        Wb = xp.empty((len(Xs), M), dtype=X.dtype)
        k.charge_weights(z[s], float(L), half_d1, alpha, beta, log_qa, log_qb, Wa, Wb, shift[s], r2min[s], ess[s])
        vz[s] = z[s] * Wa.sum(axis=1) + (z[s] - L) * Wb.sum(axis=1)
        vx[s] = offsets(k, xp, Xs, Xc, src, Wa, near_a) + offsets(k, xp, Xs, Xc, snk, Wb, near_b)
    return shift, vz, vx, r2min, ess
