"""Composition of the row kernels and matrix products, the same for the CPU and GPU backends.

``k`` is a kernel module (:mod:`physfield.cpu` or :mod:`physfield.gpu`) and ``xp`` the array
module (NumPy or CuPy) that holds the arrays and does the matrix products.

Two ways to get the squared distances ``alpha_pi = |x_p - a_i|^2`` and the weighted offsets
``sum_i W_pi (x_p - a_i)``:

- ``direct``: differences, exact to round-off, ``O(n N D)`` scalar work (best for small ``D``);
- ``gemm``: ``|x|^2 + |a|^2 - 2 X A^T`` and ``(W 1) x - W A``, i.e. BLAS/cuBLAS products
  (best for large ``D``). Cancellation costs accuracy: the absolute error of ``alpha`` is about
  ``D * eps * (|x|^2 + |a|^2)``, so the data are centred on the mean charge first and the result
  is clamped at 0; an error ``delta`` in ``|rho|^2`` moves the log-weights by
  ``delta / (2 sigma(z)^2)``. In float64 at ``D = 3072`` with unit-scale data this is ~1e-12
  relative in the middle of the gap; the tests bound it against the direct form.

Points are processed in chunks so the ``(chunk, N + M)`` scratch arrays stay near
``CHUNK_ELEMENTS`` entries.
"""

from __future__ import annotations

import numpy as np

GEMM_MIN_D = 16
CHUNK_ELEMENTS = 2**21


def use_gemm(method, dim):
    """``method`` is ``"auto"`` (GEMM for ``D >= GEMM_MIN_D``), ``"direct"`` or ``"gemm"``."""
    if method not in ("auto", "direct", "gemm"):
        raise ValueError(f"unknown method {method!r}; expected 'auto', 'direct' or 'gemm'")
    return method == "gemm" or (method == "auto" and dim >= GEMM_MIN_D)


def chunks(n, width):
    """Slices of at most ``CHUNK_ELEMENTS // width`` points."""
    size = max(1, CHUNK_ELEMENTS // max(int(width), 1))
    return [slice(s, min(n, s + size)) for s in range(0, n, size)]


def stack_charges(xp, A, B, gemm):
    """Sources over sinks, ``(N + M, D)``; for GEMM centred on their mean, with squared norms.

    Returns ``(AB, centre, |AB|^2)``; ``centre`` and the norms are ``None`` for ``direct``.
    """
    AB = xp.concatenate([A, B])
    if not gemm:
        return AB, None, None
    centre = AB.mean(axis=0)
    AB -= centre
    return AB, centre, xp.einsum("kd,kd->k", AB, AB)


def sq_dists(k, xp, X, AB, ab2):
    """``|X_p - AB_k|^2``, shape ``(len(X), len(AB))``: GEMM form when ``ab2`` is given."""
    if ab2 is not None:
        out = xp.einsum("pd,pd->p", X, X)[:, None] + ab2[None, :]
        out -= 2.0 * (X @ AB.T)
        return xp.maximum(out, 0.0, out=out)
    out = xp.empty((X.shape[0], AB.shape[0]), dtype=X.dtype)
    k.sq_dist(X, AB, out)
    return out


def split(xp, d, N):
    """Distances to sources and to sinks as two C-contiguous arrays (what the kernels expect)."""
    return xp.ascontiguousarray(d[:, :N]), xp.ascontiguousarray(d[:, N:])


def offsets(k, xp, X, A, W, gemm):
    """``sum_i W_pi (X_p - A_i)``, shape ``X.shape``."""
    if gemm:
        return W.sum(axis=1)[:, None] * X - W @ A
    out = xp.empty_like(X)
    k.weighted_offset(X, xp.ascontiguousarray(A), W, out)
    return out


def pair_sq_dists(k, xp, AB, ab2, N, I, J):
    """``gamma_k = |a_{i_k} - b_{j_k}|^2``: from the full ``N x M`` table when the plan is dense."""
    A, B = AB[:N], AB[N:]
    if 4 * len(I) >= A.shape[0] * B.shape[0]:
        return sq_dists(k, xp, A, B, None if ab2 is None else ab2[N:])[I, J]
    diff = A[I] - B[J]
    return (diff * diff).sum(axis=1)


def strong_terms(k, xp, X, t, inv2s2, A, B, I, J, logw, gemm):
    """Per point: ``lse = log sum_k pi_k exp(-|rho_k|^2 / 2 sigma^2)``, ``ess`` and the offsets

        off_a = sum_i R_i (x - a_i),   off_b = sum_j C_j (x - b_j)

    (``R``, ``C`` the row/column sums of the pair weights), from which the mean slope is
    ``sum_k w_k v_k = (1/L + s (1 - t)) off_a + (s t - 1/L) off_b`` (see :mod:`physfield.strong`).
    """
    AB, centre, ab2 = stack_charges(xp, A, B, gemm)
    N = A.shape[0]
    gamma = pair_sq_dists(k, xp, AB, ab2, N, I, J)
    lse = xp.empty(len(X))
    ess = xp.empty(len(X))
    off_a = xp.empty_like(X)
    off_b = xp.empty_like(X)
    for s in chunks(len(X), len(AB)):
        Xs = X[s] if centre is None else X[s] - centre
        alpha, beta = split(xp, sq_dists(k, xp, Xs, AB, ab2), N)
        R = xp.empty((len(Xs), N), dtype=X.dtype)
        C = xp.empty((len(Xs), len(AB) - N), dtype=X.dtype)
        k.pair_softmax(t[s], inv2s2[s], alpha, beta, I, J, logw, gamma, R, C, lse[s], ess[s])
        off_a[s] = offsets(k, xp, Xs, AB[:N], R, gemm)
        off_b[s] = offsets(k, xp, Xs, AB[N:], C, gemm)
    return lse, ess, off_a, off_b


def coulomb_terms(k, xp, X, z, L, A, B, log_qa, log_qb, gemm):
    """Per point: ``shift`` and ``V = (V_z, V_x)`` with ``E = exp(shift) / |S^D| * V``,

        V = sum_i Wa_i (z, x - a_i) + sum_j Wb_j (z - L, x - b_j)

    (``Wa > 0`` source weights, ``Wb < 0`` sink weights, see :func:`physfield.rows.charge_weights_row`).
    """
    AB, centre, ab2 = stack_charges(xp, A, B, gemm)
    N = A.shape[0]
    half_d1 = (X.shape[1] + 1) / 2.0
    shift = xp.empty(len(X))
    vz = xp.empty(len(X))
    vx = xp.empty_like(X)
    for s in chunks(len(X), len(AB)):
        Xs = X[s] if centre is None else X[s] - centre
        alpha, beta = split(xp, sq_dists(k, xp, Xs, AB, ab2), N)
        Wa = xp.empty((len(Xs), N), dtype=X.dtype)
        Wb = xp.empty((len(Xs), len(AB) - N), dtype=X.dtype)
        k.charge_weights(z[s], float(L), half_d1, alpha, beta, log_qa, log_qb, Wa, Wb, shift[s])
        vz[s] = z[s] * Wa.sum(axis=1) + (z[s] - L) * Wb.sum(axis=1)
        vx[s] = offsets(k, xp, Xs, AB[:N], Wa, gemm) + offsets(k, xp, Xs, AB[N:], Wb, gemm)
    return shift, vz, vx
