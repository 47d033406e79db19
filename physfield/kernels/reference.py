"""The NumPy reference (``backend="numpy"``): the formulas of the README's mathematics, line by line.

No identities, no matrix-product tricks: every pair's centre line, offset, Gaussian and slope
is formed explicitly, so this is the yardstick the fast backends are tested against. Memory is
bounded by evaluating ``CHUNK`` point-pair-coordinate entries at a time; it is meant for
correctness, not speed.
"""

from __future__ import annotations

import numpy as np
from scipy.special import logsumexp

CHUNK = 2**22


def _point_chunks(n, per_point):
    size = max(1, CHUNK // max(per_point, 1))
    return [slice(s, min(n, s + size)) for s in range(0, n, size)]


def log_norms(r):
    """``log |r|`` of each row, formed as ``log s + 1/2 log |r / s|^2`` with ``s = max_k |r_k|``
    so that tiny offsets (a point next to a charge) neither underflow nor lose digits."""
    s = np.abs(r).max(axis=-1)
    safe = np.where(s > 0, s, 1.0)
    with np.errstate(divide="ignore"):
        return np.where(s > 0, np.log(safe) + 0.5 * np.log(((r / safe[..., None]) ** 2).sum(axis=-1)), -np.inf)


def _pair_logits(X, t, inv2s2, a, b, logw):
    """``(l, rho)`` for points ``X`` (a chunk) and pairs ``(a_k, b_k)``: ``rho_pk = x_p - (1 - t_p)
    a_k - t_p b_k`` and ``l_pk = log pi_k - inv2s2_p |rho_pk|^2``."""
    tt = t[:, None, None]
    rho = X[:, None, :] - ((1 - tt) * a + tt * b)
    return logw - inv2s2[:, None] * (rho**2).sum(axis=-1), rho


def pair_softmax(X, t, inv2s2, A, B, I, J, logw):
    """The softmax over the pairs of a plan that the fast kernels compute
    (:func:`physfield.kernels.rows.pair_softmax_row`), from the coordinates::

        l_k = log pi_k - inv2s2 |x - (1 - t) a_ik - t b_jk|^2,    w = softmax_k(l)
        R_i = sum_{k: i_k = i} w_k,   C_j = sum_{k: j_k = j} w_k,   lse = logsumexp(l),   ess = 1 / sum w^2

    Returns ``(R, C, lse, ess)``, the offsets ``sum_i R_i (x - a_i) = x - R A`` and
    ``sum_j C_j (x - b_j) = x - C B`` follow (:func:`physfield.kernels.rows.pair_direct_row`).
    """
    R = np.zeros((len(X), len(A)))
    C = np.zeros((len(X), len(B)))
    lse = np.empty(len(X))
    ess = np.empty(len(X))
    a, b = A[I], B[J]
    for sl in _point_chunks(len(X), len(I) * A.shape[1]):
        logits, _ = _pair_logits(X[sl], t[sl], inv2s2[sl], a, b, logw)
        lse[sl] = logsumexp(logits, axis=1)
        w = np.exp(logits - lse[sl, None])
        ess[sl] = 1.0 / (w**2).sum(axis=1)
        np.add.at(R[sl], (slice(None), I), w)
        np.add.at(C[sl], (slice(None), J), w)
    return R, C, lse, ess


def gaussian_path(X, t, sigma, s, A, B, I, J, logw, L):
    """A superposition of Gaussian paths (the strong field's family) at points ``(z, X)``, with
    ``t = z/L``, ``sigma = sigma(z)`` and ``s = s(z) = sigma'(z) / sigma(z)``.

    For each pair ``k = (i, j)`` of the plan, with ``a = a_i``, ``b = b_j``::

        c(z)   = a + t (b - a)                                string centre line
        rho    = x - c(z)
        log phi = -D/2 log(2 pi sigma^2) - |rho|^2 / (2 sigma^2)
        v      = (b - a)/L + s(z) rho                          slope dx/dz
        E      = sum_k pi_k phi_k (1, v_k)

    Returns ``log E_z = logsumexp_k(log pi_k + log phi_k)``, the slope ``E_x / E_z =
    sum_k w_k v_k`` with ``w = softmax(log pi + log phi)``, and ``ess = 1 / sum_k w_k^2``.
    """
    D = A.shape[1]
    a, b = A[I], B[J]
    log_ez = np.empty(len(X))
    slope = np.empty(X.shape, dtype=X.dtype)
    ess = np.empty(len(X))
    for sl in _point_chunks(len(X), len(I) * D):
        var = sigma[sl] ** 2
        logits, rho = _pair_logits(X[sl], t[sl], 1 / (2 * var), a, b, logw)
        lse = logsumexp(logits, axis=1)
        log_ez[sl] = lse - D / 2 * np.log(2 * np.pi * var)
        w = np.exp(logits - lse[:, None])
        v = (b - a) / L + s[sl, None, None] * rho
        slope[sl] = np.einsum("pk,pkd->pd", w, v)
        ess[sl] = 1.0 / (w**2).sum(axis=1)
    return log_ez, slope, ess


def unit_rows(U, log_e):
    """The unit direction and log-norm from the slope, in place (any array module)::

        U[:, 0] = 1 / sqrt(1 + |g|^2),   U[:, 1:] = g U[:, 0],   log_e += log(1 + |g|^2) / 2

    where ``g = U[:, 1:]`` is the slope ``E_x / E_z`` and ``log_e = log E_z``
    (:func:`physfield.kernels.rows.unit_row` is the fast backends' form).
    """
    g = U[:, 1:]
    sq = (g.astype(np.float64) ** 2).sum(axis=1)
    u0 = 1 / (1 + sq) ** 0.5
    g *= u0[:, None].astype(U.dtype)
    U[:, 0] = u0
    log_e += 0.5 * np.log1p(sq)


def coulomb(P, A, B, log_qa, log_qb, L):
    """Coulomb field at points ``P = (z, x)``::

        G(r) = r / (|S^D| |r|^(D+1))
        E(p) = sum_i q_i G(p - (0, a_i)) - sum_j q_j G(p - (L, b_j))

    Each term is ``sign * exp(log q - (D+1) log|r| - log|S^D|) * r``; with one common shift
    ``m = max(log q - (D+1) log|r|)`` for both signs, ``E = exp(m - log|S^D|) * V``.
    Returns ``(m, V, ess)`` with ``ess = (sum m_c)^2 / sum m_c^2`` over the charges'
    magnitudes ``m_c = q_c / (|S^D| |r_c|^D)``.
    """
    D = A.shape[1]
    charges = np.concatenate([np.column_stack([np.zeros(len(A)), A]),
                              np.column_stack([np.full(len(B), L), B])])
    log_q = np.concatenate([log_qa, log_qb])
    sign = np.concatenate([np.ones(len(A)), -np.ones(len(B))])
    shift = np.empty(len(P))
    ess = np.empty(len(P))
    V = np.empty(P.shape, dtype=P.dtype)
    for sl in _point_chunks(len(P), len(charges) * (D + 1)):
        r = P[sl, None, :] - charges[None]
        log_r = log_norms(r)
        logits = log_q - (D + 1) * log_r
        shift[sl] = logits.max(axis=1)
        V[sl] = np.einsum("pk,pkd->pd", sign * np.exp(logits - shift[sl, None]), r)
        magnitude = np.exp(logits + log_r - (logits + log_r).max(axis=1, keepdims=True))
        ess[sl] = magnitude.sum(axis=1) ** 2 / (magnitude**2).sum(axis=1)
    return shift, V, ess
