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

from . import backends, bound, engine, plans, reference, validate


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

    def bind(self, sources, sinks, plan="paired", backend="auto", method="auto"):
        """This field for fixed charges and plan, prepared once for many :meth:`direction`
        calls (:mod:`physfield.bound`): ``field.bind(A, B, plan).direction(points)``."""
        return BoundCoulomb(self, sources, sinks, plan, backend, method)

    def direction(self, points, sources, sinks, plan="paired", backend="auto", method="auto",
                  return_ess=False):
        """Unit field direction and ``log|E|`` at ``points`` (``(n, D+1)``, column 0 = z).

        Defined everywhere but on the charges: a point exactly on a charge is a ``ValueError``.
        Where the field vanishes exactly (a null point) ``u = 0`` and ``log_norm = -inf``.
        With ``return_ess`` also the effective number of charges ``(sum_c m_c)^2 / sum_c m_c^2``,
        ``m_c = |q_c G(p - c)|`` each charge's magnitude there (between 1 and ``N + M``).
        For repeated calls on the same charges use :meth:`bind`.
        """
        return self.bind(sources, sinks, plan, backend, method).direction(points, return_ess)

    def field(self, points, sources, sinks, plan="paired", backend="auto", method="auto"):
        """The field ``E`` itself, ``(n, D+1)`` float64 (may underflow or overflow at large D)."""
        return self.bind(sources, sinks, plan, backend, method).field(points)


class BoundCoulomb(bound.Bound):
    """:meth:`CoulombField.bind`: the charges ``log q`` (the plan's marginals) and, for the fast
    backends, the :func:`physfield.engine.plates` of the GEMM form, made once."""

    def __init__(self, field, sources, sinks, plan="paired", backend="auto", method="auto"):
        super().__init__(field, sources, sinks, backend, method)
        self.host = [backends.to_host(a) for a in (self.sources, self.sinks)]
        alpha, beta = plans.marginals(plan, *self.host)
        with np.errstate(divide="ignore"):
            self.log_qa, self.log_qb = np.log(alpha), np.log(beta)

    def _prepare(self, xp, A, B):
        return xp.asarray(self.log_qa), xp.asarray(self.log_qb), engine.plates(xp, A, B, self.gemm)

    def direction(self, points, return_ess=False):
        """:meth:`CoulombField.direction` at ``points`` for the bound charges and plan."""
        L, dim, log_qa, log_qb = self.source_field.L, self.dim, self.log_qa, self.log_qb
        points, dtype, xp, on_device = self._points(points)
        host_points = backends.to_host(points)
        hit = _on_charge(host_points, *self.host, L)
        if hit is not None:
            raise ValueError(f"point {hit} lies exactly on a charge: the Coulomb field is infinite there")
        A, B, prepared = self.charges(dtype)
        P = xp.ascontiguousarray(xp.asarray(points, dtype=dtype))
        if self.backend == "numpy":
            log_scale, V, ess = reference.coulomb(P, A, B, log_qa, log_qb, L, log_sphere_area(dim))
        else:
            k, _ = backends.kernels(self.backend)
            qa, qb, plates = prepared
            z = P[:, 0].astype(np.float64)
            shift, vz, vx, r2min, ess = engine.coulomb_terms(k, xp, xp.ascontiguousarray(P[:, 1:]), z, L, A, B,
                                                             qa, qb, self.gemm, plates)
            V = xp.concatenate([vz[:, None].astype(dtype), vx], axis=1)
            log_scale = shift - log_sphere_area(dim)
            close = backends.to_host(xp.nonzero(r2min < R2_CLOSE)[0])
            if len(close):  # squared distances near underflow: the nearest charge alone, exactly
                lc, vc, ec = _nearest_charge(host_points[close], *self.host, log_qa, log_qb, L)
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
        if self.backend == "cupy" and not on_device:
            u, log_norm, ess = u.get(), log_norm.get(), ess.get()
        return (u, log_norm, ess) if return_ess else (u, log_norm)
