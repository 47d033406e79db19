"""Composition of the row kernels and matrix products, the same for the CPU and GPU backends.

``k`` is a kernel module (:mod:`physfield.cpu` or :mod:`physfield.gpu`) and ``xp`` the array
module (NumPy or CuPy) that holds the arrays and does the matrix products.

Two ways to get the squared distances ``alpha_pi = |x_p - a_i|^2`` and the weighted offsets
``sum_i W_pi (x_p - a_i)``:

- ``direct``: differences, exact to round-off, ``O(n N D)`` scalar work (best for small ``D``);
- ``gemm``: ``|x|^2 + |a|^2 - 2 X A^T`` and ``(W 1) x - W A``, i.e. BLAS/cuBLAS products
  (best for large ``D``). Cancellation costs accuracy: the absolute error of ``alpha`` is about
  ``eps (|x|^2 + |a|^2)``. The data are centred on the mean charge first, the result is clamped
  at 0, and every distance below ``REFINE * (|x|^2 + |a|^2)`` (a point near a charge, where the
  relative error would be large) is recomputed by differences, its offset too. What is left has
  a relative error of about ``eps / REFINE`` (~1e-12 in float64, ~1e-5 in float32); an error
  ``delta`` in ``|rho|^2`` moves a strong-field log-weight by ``delta / (2 sigma(z)^2)``.

Points are processed in chunks so the ``(chunk, N + M)`` scratch arrays stay near
``CHUNK_ELEMENTS`` entries.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

GEMM_MIN_D = 16
CHUNK_ELEMENTS = 2**21
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


class Charges(NamedTuple):
    """Sources over sinks as given (``AB``, first ``N`` rows the sources) and, for GEMM, the
    ``centre`` they are shifted by, the shifted copy ``ABc`` and its squared row norms ``ab2``."""

    AB: object
    N: int
    centre: object = None
    ABc: object = None
    ab2: object = None

    def rows(self, s):
        """The same charges restricted to rows ``s`` (a slice)."""
        if self.centre is None:
            return Charges(self.AB[s], 0)
        return Charges(self.AB[s], 0, self.centre, self.ABc[s], self.ab2[s])

    def centred(self, X):
        """``X`` shifted like the charges (``None`` for the direct form)."""
        return None if self.centre is None else X - self.centre


def stack_charges(xp, A, B, gemm):
    AB = xp.concatenate([A, B])
    if not gemm:
        return Charges(AB, A.shape[0])
    centre = AB.mean(axis=0)
    ABc = AB - centre
    return Charges(AB, A.shape[0], centre, ABc, xp.einsum("kd,kd->k", ABc, ABc))


def sq_dists(k, xp, X, Xc, ch):
    """``|X_p - AB_k|^2``, shape ``(len(X), len(AB))``, and the ``near`` mask (GEMM only).

    GEMM form when ``Xc`` (``X`` centred like the charges) is given: ``|x|^2 + |a|^2 - 2 x.a``
    on the centred data. Its absolute error is ~``eps (|x|^2 + |a|^2)``, so entries below
    ``REFINE * (|x|^2 + |a|^2)`` (a point near a charge) are recomputed by differences of the
    original coordinates and flagged ``near``.
    """
    if Xc is None:
        out = xp.empty((X.shape[0], ch.AB.shape[0]), dtype=X.dtype)
        k.sq_dist(X, ch.AB, out)
        return out, None
    scale = xp.einsum("pd,pd->p", Xc, Xc)[:, None] + ch.ab2[None, :]
    out = scale - 2.0 * (Xc @ ch.ABc.T)
    xp.maximum(out, 0.0, out=out)
    near = out < REFINE[np.dtype(X.dtype).char] * scale
    p, i = xp.nonzero(near)
    if len(p):
        diff = X[p] - ch.AB[i]
        out[p, i] = (diff * diff).sum(axis=1)
    return out, near


def split(xp, d, N):
    """Columns of sources and of sinks as two C-contiguous arrays (what the kernels expect)."""
    if d is None:
        return None, None
    return xp.ascontiguousarray(d[:, :N]), xp.ascontiguousarray(d[:, N:])


def offsets(k, xp, X, Xc, ch, W, near):
    """``sum_i W_pi (X_p - AB_i)``, shape ``X.shape``.

    Direct differences when ``Xc`` is ``None``; otherwise the GEMM form ``(W 1) x - W A`` on the
    centred data for the far charges plus direct differences of the original coordinates for
    the ``near`` ones, whose offsets are small and would be lost to cancellation.
    """
    if Xc is None:
        out = xp.zeros_like(X)
        k.weighted_offset(X, ch.AB, W, out)
        return out
    w_near = xp.where(near, W, 0.0).astype(W.dtype)
    w_far = W - w_near
    out = w_far.sum(axis=1)[:, None] * Xc - w_far @ ch.ABc
    if near.any():
        k.weighted_offset(X, ch.AB, w_near, out)
    return out


def pair_sq_dists(k, xp, ch, I, J):
    """``gamma_k = |a_{i_k} - b_{j_k}|^2``: from the full ``N x M`` table when the plan is dense."""
    N = ch.N
    A, B = ch.AB[:N], ch.AB[N:]
    if 4 * len(I) >= A.shape[0] * B.shape[0]:
        return sq_dists(k, xp, A, ch.rows(slice(None, N)).centred(A), ch.rows(slice(N, None)))[0][I, J]
    diff = A[I] - B[J]
    return (diff * diff).sum(axis=1)


def strong_terms(k, xp, X, t, inv2s2, A, B, I, J, logw, gemm):
    """Per point: ``lse = log sum_k pi_k exp(-|rho_k|^2 / 2 sigma^2)``, ``ess`` and the offsets

        off_a = sum_i R_i (x - a_i),   off_b = sum_j C_j (x - b_j)

    (``R``, ``C`` the row/column sums of the pair weights), from which the mean slope is
    ``sum_k w_k v_k = (1/L + s (1 - t)) off_a + (s t - 1/L) off_b`` (see :mod:`physfield.strong`).
    """
    ch = stack_charges(xp, A, B, gemm)
    N = ch.N
    src, snk = ch.rows(slice(None, N)), ch.rows(slice(N, None))
    gamma = pair_sq_dists(k, xp, ch, I, J)
    lse = xp.empty(len(X))
    ess = xp.empty(len(X))
    off_a = xp.empty_like(X)
    off_b = xp.empty_like(X)
    for s in chunks(len(X), len(ch.AB)):
        Xs = X[s]
        Xc = ch.centred(Xs)
        d, near = sq_dists(k, xp, Xs, Xc, ch)
        (alpha, beta), (near_a, near_b) = split(xp, d, N), split(xp, near, N)
        R = xp.empty((len(Xs), N), dtype=X.dtype)
        C = xp.empty((len(Xs), len(ch.AB) - N), dtype=X.dtype)
        k.pair_softmax(t[s], inv2s2[s], Xs, ch.AB[:N], ch.AB[N:], alpha, beta, I, J, logw, gamma,
                        REFINE[np.dtype(X.dtype).char], R, C, lse[s], ess[s])
        off_a[s] = offsets(k, xp, Xs, Xc, src, R, near_a)
        off_b[s] = offsets(k, xp, Xs, Xc, snk, C, near_b)
    return lse, ess, off_a, off_b


def coulomb_terms(k, xp, X, z, L, A, B, log_qa, log_qb, gemm):
    """Per point: ``shift``, ``V = (V_z, V_x)`` with ``E = exp(shift) / |S^D| * V``, and the
    smallest squared distance to a charge ``r2min``,

        V = sum_i Wa_i (z, x - a_i) + sum_j Wb_j (z - L, x - b_j)

    (``Wa > 0`` source weights, ``Wb < 0`` sink weights, see :func:`physfield.rows.charge_weights_row`).
    """
    ch = stack_charges(xp, A, B, gemm)
    N = ch.N
    src, snk = ch.rows(slice(None, N)), ch.rows(slice(N, None))
    half_d1 = (X.shape[1] + 1) / 2.0
    shift = xp.empty(len(X))
    r2min = xp.empty(len(X))
    vz = xp.empty(len(X))
    vx = xp.empty_like(X)
    for s in chunks(len(X), len(ch.AB)):
        Xs = X[s]
        Xc = ch.centred(Xs)
        d, near = sq_dists(k, xp, Xs, Xc, ch)
        (alpha, beta), (near_a, near_b) = split(xp, d, N), split(xp, near, N)
        Wa = xp.empty((len(Xs), N), dtype=X.dtype)
        Wb = xp.empty((len(Xs), len(ch.AB) - N), dtype=X.dtype)
        k.charge_weights(z[s], float(L), half_d1, alpha, beta, log_qa, log_qb, Wa, Wb, shift[s], r2min[s])
        vz[s] = z[s] * Wa.sum(axis=1) + (z[s] - L) * Wb.sum(axis=1)
        vx[s] = offsets(k, xp, Xs, Xc, src, Wa, near_a) + offsets(k, xp, Xs, Xc, snk, Wb, near_b)
    return shift, vz, vx, r2min
