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


class CoulombField:
    """The EFM capacitor field: unit-total charges on ``z = 0`` (+) and ``z = L`` (-)."""

    kind = "coulomb"

    def __init__(self, L=6.0):
        self.L = validate.positive("L", L)

    def params(self):
        return {"kind": self.kind, "L": self.L}

    def __repr__(self):
        return f"CoulombField(L={self.L})"

    def direction(self, points, sources, sinks, plan="paired", backend="auto", method="auto"):
        """Unit field direction and ``log|E|`` at ``points`` (``(n, D+1)``, column 0 = z).

        Defined everywhere but on the charges: a point exactly on a charge is a ``ValueError``.
        Where the field vanishes exactly (a null point) ``u = 0`` and ``log_norm = -inf``.
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
            log_scale, V = reference.coulomb(P, A, B, log_qa, log_qb, self.L, log_sphere_area(dim))
        else:
            k, _ = backends.kernels(backend)
            z = P[:, 0].astype(np.float64)
            shift, vz, vx = engine.coulomb_terms(k, xp, xp.ascontiguousarray(P[:, 1:]), z, self.L, A, B,
                                                 xp.asarray(log_qa), xp.asarray(log_qb), gemm)
            V = xp.concatenate([vz[:, None].astype(dtype), vx], axis=1)
            log_scale = shift - log_sphere_area(dim)
        norm = xp.sqrt((V.astype(np.float64) ** 2).sum(axis=1))
        nonzero = norm > 0
        u = xp.where(nonzero[:, None], V / xp.where(nonzero, norm, 1.0)[:, None], 0.0).astype(dtype)
        with np.errstate(divide="ignore"):
            log_norm = log_scale + xp.log(norm)
        if backend == "cupy" and not on_device:
            u, log_norm = u.get(), log_norm.get()
        return u, log_norm

    def field(self, points, sources, sinks, plan="paired", backend="auto", method="auto"):
        """The field ``E`` itself, ``(n, D+1)`` float64 (may underflow or overflow at large D)."""
        u, log_norm = self.direction(points, sources, sinks, plan=plan, backend=backend, method=method)
        xp = backends.array_module(u)
        return u.astype(np.float64) * xp.exp(log_norm)[:, None]
