"""User fields defined by the field of one pair: ``E = sum_ij pi_ij E_pair(a_i, b_j)``.

Subclass :class:`PairField` and implement ``pair(self, z, x, a, b)``: ``z`` ``(n,)``, ``x``, ``a``,
``b`` ``(n, D)`` NumPy float64 arrays, returning the field at ``(z_k, x_k)`` of one unit pair with
source ``a_k`` on ``z = 0`` and sink ``b_k`` on ``z = L``, ``(n, D+1)`` (column 0 = ``E_z``).
physfield superposes it over any plan: every point with every pair of the plan's support, in
chunks. It is the plain, correct path (``O(n K D)`` NumPy work, ``E`` formed as such, so it
under- or overflows where a single pair's field does); the built-in fields have fast kernels.

The constructor takes keyword parameters (``L`` at least), each stored under an attribute of its
name (so the command line can pass them and a cache can record them)::

    class Tube(pf.PairField):
        '''A Gaussian tube of constant width: not a proper field (it does not end at the sinks).'''
        def __init__(self, L=6.0, width=0.5):
            super().__init__(L)
            self.width = float(width)

        def pair(self, z, x, a, b):
            c = a + (z / self.L)[:, None] * (b - a)
            ...

A pair field declares, like every field, how its lines are followed (``lines``), whether it
vanishes outside the plates and which properties it claims (see :mod:`physfield.fields.base`);
the defaults are those of a proper transport field (every property of ``CLAIMS``), which is what
``physfield check --field module:Class`` then certifies or refuses.
"""

from __future__ import annotations

import numpy as np

from .. import plans
from ..kernels import backend as backends
from .base import CLAIMS, Bound, Field

#: point-pair-coordinate entries per chunk of the superposition
CHUNK = 2**21


class PairField(Field):
    """Base class of user fields given by the field of one unit pair (module docstring).

    Parameters
    ----------
    L : float
        Plate distance.
    """

    lines = "z"
    vanishes_outside = True
    claims = tuple(CLAIMS)

    def pair(self, z, x, a, b):
        """Field of one unit pair ``(a, b)`` at ``(z, x)``: ``(n, D+1)`` from ``z`` ``(n,)`` and
        ``x``, ``a``, ``b`` ``(n, D)``."""
        raise NotImplementedError(f"{type(self).__name__} must implement pair(self, z, x, a, b)")

    def bind(self, sources, sinks, plan="paired", backend="auto", method="auto"):
        return BoundPair(self, sources, sinks, plan, backend, method)


class BoundPair(Bound):
    """:meth:`PairField.bind`: the plan's support ``(I, J, pi)``; every evaluation in NumPy."""

    def __init__(self, field, sources, sinks, plan="paired", backend="auto", method="auto"):
        super().__init__(field, sources, sinks, backend, method)
        self.A = backends.to_host(self.sources).astype(np.float64)
        self.B = backends.to_host(self.sinks).astype(np.float64)
        self.I, self.J, logw = plans.support(plan, self.A, self.B)
        self.w = np.exp(logw)

    def _superpose(self, P):
        """``E`` and the effective number of pairs ``(sum_k m_k)^2 / sum_k m_k^2``,
        ``m_k = pi_k |E_k|``, at the float64 points ``P``."""
        n, width = P.shape
        K = len(self.I)
        E = np.empty((n, width))
        ess = np.empty(n)
        step = max(1, CHUNK // max(K * width, 1))
        for s in range(0, n, step):
            Ps = P[s:s + step]
            m = len(Ps)
            z = np.repeat(Ps[:, 0], K)
            x = np.repeat(Ps[:, 1:], K, axis=0)
            a, b = np.tile(self.A[self.I], (m, 1)), np.tile(self.B[self.J], (m, 1))
            Ek = np.asarray(self.source_field.pair(z, x, a, b), dtype=np.float64)
            if Ek.shape != (m * K, width):
                raise ValueError(f"{type(self.source_field).__name__}.pair returned shape {Ek.shape}, "
                                 f"expected {(m * K, width)} = (points, D+1)")
            if not np.all(np.isfinite(Ek)):
                raise ValueError(f"{type(self.source_field).__name__}.pair returned NaN or Inf")
            Ek = Ek.reshape(m, K, width) * self.w[None, :, None]
            E[s:s + step] = Ek.sum(axis=1)
            mag = np.sqrt((Ek**2).sum(axis=2))
            total = mag.sum(axis=1)
            squares = np.maximum((mag**2).sum(axis=1), np.finfo(float).tiny)
            ess[s:s + step] = np.where(total > 0, total**2 / squares, 0.0)
        return E, ess

    def direction(self, points, return_ess=False):
        """:meth:`Field.direction` at ``points`` for the bound charges and plan (NumPy)."""
        points, dtype, _ = self._points(points)
        E, ess = self._superpose(backends.to_host(points).astype(np.float64))
        norm = np.sqrt((E**2).sum(axis=1))
        with np.errstate(divide="ignore", invalid="ignore"):
            u = np.where(norm[:, None] > 0, E / norm[:, None], 0.0).astype(dtype)
            log_norm = np.log(norm)
        return (u, log_norm, ess) if return_ess else (u, log_norm)
