"""The Coulomb field of the EFM capacitor (SPEC section 3).

Green's field in ``R^{D+1}`` and the capacitor of source charges on ``z = 0`` and sink
charges on ``z = L``::

    G(r) = r / (|S^D| |r|^(D+1)),    |S^D| = 2 pi^((D+1)/2) / Gamma((D+1)/2)
    E(p) = sum_i alpha_i G(p - (0, a_i)) - sum_j beta_j G(p - (L, b_j))

``alpha``/``beta`` are the row/column sums of the plan: only the marginals matter. The flux of
``G`` out of any closed surface around 0 is 1, so the flux of ``E`` out of a surface is the
charge it encloses (Gauss). Magnitudes are handled in log space with one common shift for both
signs, so the direction is stable for ``D`` up to ``10^4`` and beyond.
"""

from __future__ import annotations

import numpy as np
from scipy.special import gammaln

from . import backends, engine, plans, reference, validate


def log_sphere_area(dim):
    """``log |S^D|``: the area of the unit sphere in ``R^{D+1}``."""
    return np.log(2.0) + (dim + 1) / 2 * np.log(np.pi) - gammaln((dim + 1) / 2)


def _on_charge(P, A, B, L):
    """Index of the first point that sits exactly on a charge, or ``None``."""
    for plate, charges in ((0.0, A), (L, B)):
        for p in np.flatnonzero(P[:, 0] == plate):
            if np.any(np.all(charges == P[p, 1:], axis=1)):
                return int(p)
    return None


#: below this squared distance to a charge the point is evaluated by :func:`_nearest_charge`
R2_CLOSE = 1e-250


def _nearest_charge(P, A, B, log_qa, log_qb, L):
    """Field at points extremely close to a charge, from that charge alone.

    ``|E| = |q| / (|S^D| r^D)`` along ``sign(q) r / r``, with ``log r`` formed without squaring
    (:func:`physfield.reference.log_norms`); the other charges contribute a relative
    ``(r / R)^D``, below round-off when ``r^2 < R2_CLOSE``. Coincident charges (duplicated data
    points) add up. Returns ``(log |q| - D log r, unit vector)``, the shifted form of
    :func:`physfield.reference.coulomb` without ``log |S^D|``.
    """
    dim = A.shape[1]
    charges = np.concatenate([np.column_stack([np.zeros(len(A)), A]), np.column_stack([np.full(len(B), L), B])])
    log_q = np.concatenate([log_qa, log_qb])
    sign = np.concatenate([np.ones(len(A)), -np.ones(len(B))])
    log_scale, V, ess = np.empty(len(P)), np.empty(P.shape), np.empty(len(P))
    for n, p in enumerate(P.astype(np.float64)):
        r = p[None, :] - charges
        log_r = reference.log_norms(r)
        nearest = log_r == log_r.min()
        q = (sign[nearest] * np.exp(log_q[nearest])).sum()
        k = np.argmax(nearest)
        unit = r[k] / np.abs(r[k]).max()
        log_scale[n] = np.log(abs(q)) - dim * log_r[k]
        V[n] = np.sign(q) * unit / np.sqrt((unit**2).sum())
        shares = np.exp(log_q[nearest])
        ess[n] = shares.sum() ** 2 / (shares**2).sum()
    return log_scale, V, ess


class CoulombField:
    """The EFM capacitor field: unit-total charges on ``z = 0`` (+) and ``z = L`` (-)."""

    kind = "coulomb"

    def __init__(self, L=6.0):
        self.L = validate.positive("L", L)

    def params(self):
        return {"kind": self.kind, "L": self.L}

    def __repr__(self):
        return f"CoulombField(L={self.L})"

    def direction(self, points, sources, sinks, plan="paired", backend="auto", method="auto",
                  return_ess=False):
        """Unit field direction and ``log|E|`` at ``points`` (``(n, D+1)``, column 0 = z).

        Defined everywhere but on the charges: a point exactly on a charge is a ``ValueError``.
        Where the field vanishes exactly (a null point) ``u = 0`` and ``log_norm = -inf``.
        With ``return_ess`` also the effective number of charges ``(sum_c m_c)^2 / sum_c m_c^2``,
        ``m_c = |q_c G(p - c)|`` each charge's magnitude there (between 1 and ``N + M``).
        """
        sources, sinks = validate.charges(sources, sinks)
        dim = sources.shape[1]
        points = validate.points(points, dim)
        backend = backends.resolve(backend)
        gemm = engine.use_gemm(method, dim)
        host = [backends.to_host(a) for a in (points, sources, sinks)]
        alpha, beta = plans.marginals(plan, host[1], host[2])
        hit = _on_charge(*host, self.L)
        if hit is not None:
            raise ValueError(f"point {hit} lies exactly on a charge: the Coulomb field is infinite there")
        dtype = validate.compute_dtype(points, sources, sinks)
        with np.errstate(divide="ignore"):
            log_qa, log_qb = np.log(alpha), np.log(beta)

        xp = backends.xp_for(backend)
        on_device = backends.is_device_array(points)
        P = xp.ascontiguousarray(xp.asarray(points, dtype=dtype))
        A = xp.ascontiguousarray(xp.asarray(sources, dtype=dtype))
        B = xp.ascontiguousarray(xp.asarray(sinks, dtype=dtype))
        if backend == "numpy":
            log_scale, V, ess = reference.coulomb(P, A, B, log_qa, log_qb, self.L, log_sphere_area(dim))
        else:
            k, _ = backends.kernels(backend)
            z = P[:, 0].astype(np.float64)
            shift, vz, vx, r2min, ess = engine.coulomb_terms(k, xp, xp.ascontiguousarray(P[:, 1:]), z, self.L, A, B,
                                                 xp.asarray(log_qa), xp.asarray(log_qb), gemm)
            V = xp.concatenate([vz[:, None].astype(dtype), vx], axis=1)
            log_scale = shift - log_sphere_area(dim)
            close = backends.to_host(xp.nonzero(r2min < R2_CLOSE)[0])
            if len(close):  # squared distances near underflow: the nearest charge alone, exactly
                lc, vc, ec = _nearest_charge(host[0][close], host[1], host[2], log_qa, log_qb, self.L)
                log_scale[close] = xp.asarray(lc - log_sphere_area(dim))
                V[close] = xp.asarray(vc.astype(dtype))
                ess[close] = xp.asarray(ec)
        V = V.astype(np.float64)
        big = xp.abs(V).max(axis=1)  # |V| = big * |V / big|: no underflow when V is tiny
        nonzero = big > 0
        V = V / xp.where(nonzero, big, 1.0)[:, None]
        norm = xp.sqrt((V**2).sum(axis=1))
        u = xp.where(nonzero[:, None], V / norm[:, None], 0.0).astype(dtype)
        with np.errstate(divide="ignore"):
            log_norm = log_scale + xp.log(big) + xp.log(norm)
        if backend == "cupy" and not on_device:
            u, log_norm, ess = u.get(), log_norm.get(), ess.get()
        return (u, log_norm, ess) if return_ess else (u, log_norm)

    def field(self, points, sources, sinks, plan="paired", backend="auto", method="auto"):
        """The field ``E`` itself, ``(n, D+1)`` float64 (may underflow or overflow at large D)."""
        u, log_norm = self.direction(points, sources, sinks, plan=plan, backend=backend, method=method)
        xp = backends.array_module(u)
        with np.errstate(over="ignore", invalid="ignore"):  # 0 * inf is masked to 0
            return xp.where(u == 0, 0.0, u.astype(np.float64) * xp.exp(log_norm)[:, None])
