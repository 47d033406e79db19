"""The Coulomb field of the EFM capacitor.

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

from .. import plans
from ..kernels import backend as backends
from ..kernels import reference
from .base import Bound, Field, register


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
    (:func:`physfield.kernels.reference.log_norms`); the other charges contribute a relative
    ``(r / R)^D``, below round-off when ``r^2 < R2_CLOSE``. Coincident charges (duplicated data
    points) add up. Returns ``(log |q| - D log r, unit vector)``, the shifted form of
    :func:`physfield.kernels.reference.coulomb` without ``log |S^D|``.
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


@register
class CoulombField(Field):
    """The EFM capacitor field: unit-total charges on ``z = 0`` (+) and ``z = L`` (-).

    Parameters
    ----------
    L : float
        Plate distance.

    Only the plan's marginals matter: source ``i`` carries ``alpha_i = sum_j pi_ij``, sink ``j``
    carries ``-beta_j = -sum_i pi_ij``. Gauss's law and zero divergence hold; half of every
    source's flux leaves backwards (``z < 0``) and sinks draw flux from beyond ``z = L``, so
    its lines are followed in arc length.

    References
    ----------
    A. Kolesov, S. Manukhov, V. Palyulin, A. Korotin, "Field Matching: an Electrostatic Paradigm
    to Generate and Transfer Data", ICML 2025 (EFM).
    """

    name = "coulomb"
    lines = "arc"
    vanishes_outside = False
    claims = ("superposition", "gauss", "divergence_free")

    def bind(self, sources, sinks, plan="paired", backend="auto", method="auto"):
        return BoundCoulomb(self, sources, sinks, plan, backend, method)


class BoundCoulomb(Bound):
    """:meth:`CoulombField.bind`: the charges ``log q`` (the plan's marginals) and what the backend
    prepares of them (the plates of the GEMM form), made once."""

    def __init__(self, field, sources, sinks, plan="paired", backend="auto", method="auto"):
        super().__init__(field, sources, sinks, backend, method)
        self.host = [backends.to_host(a) for a in (self.sources, self.sinks)]
        alpha, beta = plans.marginals(plan, *self.host)
        with np.errstate(divide="ignore"):
            self.log_qa, self.log_qb = np.log(alpha), np.log(beta)

    def _prepare(self, A, B):
        return self.backend.prepare_charges(A, B, self.gemm)

    def direction(self, points, return_ess=False):
        """:meth:`Field.direction` at ``points`` for the bound charges and plan."""
        L, dim, log_qa, log_qb, bk = self.source_field.L, self.dim, self.log_qa, self.log_qb, self.backend
        points, dtype, on_device = self._points(points)
        host_points = backends.to_host(points)
        hit = _on_charge(host_points, *self.host, L)
        if hit is not None:
            raise ValueError(f"point {hit} lies exactly on a charge: the Coulomb field is infinite there")
        A, B, prepared = self.charges(dtype)
        xp = bk.xp
        P = xp.ascontiguousarray(xp.asarray(points, dtype=dtype))
        shift, V, ess, r2min = bk.coulomb(P, L, A, B, log_qa, log_qb, self.gemm, prepared)
        log_scale = shift - log_sphere_area(dim)
        close = [] if r2min is None else backends.to_host(xp.nonzero(r2min < R2_CLOSE)[0])
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
        u, log_norm, ess = self._result(on_device, u, log_norm, ess)
        return (u, log_norm, ess) if return_ess else (u, log_norm)
