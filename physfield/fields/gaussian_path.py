"""Gaussian-path fields: the strong field's family, one field per width profile.

Pair ``(a, b)`` of the plan is joined by a Gaussian "string" of width ``sigma(z)`` about the
straight line ``c(z) = a + (z/L)(b - a)``; its field is the flux of that Gaussian path::

    E_ab(z, x) = N(x; c(z), sigma(z)^2 I_D) * (1, (b - a)/L + s(z) (x - c(z))),   s = sigma'/sigma,

for ``0 < z < L`` and 0 outside, and the field of a plan is ``E = sum_ij pi_ij E_{a_i b_j}``
(IFM, Eqs. of the strong field in the README). Each ``E_ab`` is divergence-free between the
plates (the Gaussian moves and widens as the continuity equation demands), ``E_z > 0`` there, and
its flux through every plane ``z`` is 1. When ``sigma -> 0`` at both plates the string starts at
the point charge ``a`` and ends at ``b``: the field is a proper field between the charges. A
width that stays positive at a plate (conditional flow matching with ``sigma_min > 0``) gives a
blurred, improper one, which ``physfield check`` refuses.

``profile(z) -> (sigma, dsigma_dz)`` is the whole model: subclass :class:`GaussianPathField` and
override :meth:`GaussianPathField.profile`, or pass a callable. Every backend's fast kernels
serve every profile (:meth:`physfield.kernels.backend.Backend.gaussian_path`): they need only
``sigma(z)`` and ``s(z)`` per point, and ``log|E|`` is formed without ``phi`` (which is
``1e-1226`` at ``D = 3072``).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from .. import plans
from ..kernels import backend as backends
from .base import Bound, Field

#: points closer than ``Z_FLOOR * L`` to a plate are evaluated at that distance (the string is
#: then ``~1e-12 L`` wide for the strong profile: numerically the plate itself), which keeps
#: ``1/sigma^2`` finite.
Z_FLOOR = 1e-12


@njit(cache=True, error_model="numpy")
def _slope(sigma, dsigma):
    """``s = dsigma / sigma`` of 1-D arrays, and the first index where ``sigma`` is not positive
    and finite or ``s`` is not finite (``-1``: none), in one compiled pass (NaN fails every
    comparison; a subnormal ``sigma`` may overflow ``s`` to infinity, which is refused)."""
    s = np.empty_like(sigma)
    for i in range(sigma.shape[0]):
        if not (0.0 < sigma[i] < math.inf):
            return s, i
        s[i] = dsigma[i] / sigma[i]
        if not (-math.inf < s[i] < math.inf):
            return s, i
    return s, -1


class GaussianPathField(Field):
    """A superposition of Gaussian paths with width profile ``profile(z) -> (sigma, dsigma_dz)``.

    Parameters
    ----------
    L : float
        Plate distance.
    profile : callable, optional
        ``profile(z)`` for an array ``z`` in ``(0, L)`` returns ``(sigma, dsigma_dz)``, arrays of
        the shape of ``z``, ``sigma > 0``. Subclasses override :meth:`profile` instead.

    Examples
    --------
    A sine bridge of width 0.5 (a proper field: the width vanishes at both plates)::

        f = GaussianPathField(L=6.0, profile=lambda z: (0.5 * np.sin(np.pi * z / 6),
                                                        0.5 * np.pi / 6 * np.cos(np.pi * z / 6)))

    References
    ----------
    "Interaction Field Matching: Overcoming Limitations of Electrostatic Models", ICLR 2026 (IFM:
    the strong field, this family's sine-bridge member, :class:`~physfield.fields.StrongField`).
    """

    lines = "z"
    vanishes_outside = True
    claims = ("endpoints", "superposition", "pairing", "gauss", "flux", "forward", "vanishes_outside",
              "divergence_free")

    def __init__(self, L=6.0, profile=None):
        super().__init__(L)
        if profile is not None and not callable(profile):
            raise ValueError(f"profile must be a callable z -> (sigma, dsigma_dz), got {profile!r}")
        self._profile = profile

    def profile(self, z):
        """``(sigma(z), sigma'(z))`` for an array ``z`` in ``(0, L)``."""
        if self._profile is None:
            raise NotImplementedError(f"{type(self).__name__} has no width profile: pass profile= or override "
                                      "profile()")
        return self._profile(z)

    def params(self):
        params = super().params()
        params.pop("profile", None)  # a callable: the subclass's own parameters name it
        return params

    def widths(self, z):
        """``(sigma, s = sigma'/sigma)`` at the float64 array ``z``, checked: finite, ``sigma > 0``."""
        z = np.asarray(z, dtype=np.float64)
        sigma, dsigma = (v if isinstance(v, np.ndarray) and v.shape == z.shape and v.dtype == np.float64
                         else np.broadcast_to(np.asarray(v, dtype=np.float64), z.shape) for v in self.profile(z))
        s, bad = _slope(sigma.ravel(), dsigma.ravel())
        if bad >= 0:
            raise ValueError(f"{self!r}: the width profile gives sigma={sigma.flat[bad]!r}, "
                             f"sigma'={dsigma.flat[bad]!r} at z={z.flat[bad]!r}; it must be finite with sigma > 0 "
                             "inside (0, L)")
        return sigma, s.reshape(z.shape)

    def sigma(self, z):
        """String width ``sigma(z)`` (for ``0 < z < L``)."""
        return self.widths(z)[0]

    def bind(self, sources, sinks, plan="paired", backend="auto", method="auto"):
        return BoundGaussianPath(self, sources, sinks, plan, backend, method)


class BoundGaussianPath(Bound):
    """:meth:`GaussianPathField.bind`: the plan's support ``(I, J, log pi)`` and what the backend
    prepares of the charges (centring, norms, pair distances for the GEMM form), made once."""

    def __init__(self, field, sources, sinks, plan="paired", backend="auto", method="auto"):
        super().__init__(field, sources, sinks, backend, method)
        self.I, self.J, self.logw = plans.support(plan, backends.to_host(self.sources), backends.to_host(self.sinks))

    def _prepare(self, A, B):
        return self.backend.prepare_pairs(A, B, self.I, self.J, self.logw, self.gemm)

    def direction(self, points, return_ess=False):
        """:meth:`Field.direction` at ``points`` for the bound charges and plan."""
        f, bk = self.source_field, self.backend
        points, dtype, on_device = self._points(points)
        A, B, prepared = self.charges(dtype)
        xp = bk.xp
        P = xp.asarray(points, dtype=dtype)
        z = P[:, 0].astype(np.float64)
        every = bool(z.min() > 0) and bool(z.max() < f.L)
        # every point inside (the usual case): a slice, no gather and scatter copies, and every
        # entry of u is written (so no zeroed pages to fault in)
        inside = slice(None) if every else xp.nonzero((z > 0) & (z < f.L))[0]

        if every:  # every entry of u, log_norm and ess is written below
            u, log_norm, ess = xp.empty(P.shape, dtype=dtype), None, None
        else:
            u, log_norm, ess = xp.zeros(P.shape, dtype=dtype), xp.full(len(P), -np.inf), xp.zeros(len(P))
        zi = z[inside]
        if len(zi):
            zi = xp.minimum(xp.maximum(zi, Z_FLOOR * f.L), f.L * (1 - Z_FLOOR))
            sigma, s = (xp.asarray(v) for v in f.widths(backends.to_host(zi)))
            X = xp.ascontiguousarray(P[inside, 1:])
            # the rows of the points inside: u itself when every point is, so that the slope is
            # summed straight into its columns 1..D and made a unit vector there
            U = u if every else xp.empty((len(X), P.shape[1]), dtype=dtype)
            log_e, _, ess_in = bk.gaussian_path(X, zi / f.L, sigma, s, f.L, A, B, self.I, self.J, self.logw,
                                                self.gemm, prepared, U[:, 1:])
            bk.unit_rows(U, log_e)
            if every:
                log_norm, ess = log_e, ess_in
            else:
                u[inside] = U
                log_norm[inside] = log_e
                ess[inside] = ess_in
        u, log_norm, ess = self._result(on_device, u, log_norm, ess)
        return (u, log_norm, ess) if return_ess else (u, log_norm)
