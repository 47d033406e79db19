"""The strong-interaction field of IFM (SPEC section 2).

Quarks ``a_i`` sit on ``z = 0``, antiquarks ``b_j`` on ``z = L``. Each pair is joined by a
Gaussian "string" whose width follows

    sigma(z) = sigma0 sin(k z)          0 < z < d          k = pi / (2 d)
    sigma(z) = sigma0                   d <= z <= L - d
    sigma(z) = sigma0 sin(k (L - z))    L - d < z < L

and whose field is the flux of the Gaussian path from ``a`` to ``b``::

    E_ab(z, x) = N(x; c(z), sigma(z)^2 I) * (1, (b - a)/L + s(z) (x - c(z))),
    c(z) = a + (z/L)(b - a),   s = sigma'/sigma,

zero outside ``0 < z < L``. The field of a plan is ``E_pi = sum_ij pi_ij E_{a_i b_j}``.

How it is computed (fast backends): with ``t = z/L``, ``R``/``C`` the row/column sums of the
pair weights ``w = softmax(log pi - |rho|^2 / 2 sigma^2)``, and using
``b - a = (x - a) - (x - b)`` and ``rho = (1 - t)(x - a) + t (x - b)``,

    E_x / E_z = sum_k w_k v_k = (1/L + s (1 - t)) sum_i R_i (x - a_i) + (s t - 1/L) sum_j C_j (x - b_j)

so the ``D``-dimensional work is ``O((N + M) D)`` per point whatever the number of pairs.
``log|E| = logsumexp(log pi - |rho|^2/2 sigma^2) - D/2 log(2 pi sigma^2) + 1/2 log(1 + |E_x/E_z|^2)``
is formed without ever forming ``phi`` (which is ``1e-1226`` at ``D = 3072``).
"""

from __future__ import annotations

import numpy as np

from . import backends, bound, engine, plans, reference, validate

#: points closer than ``Z_FLOOR * L`` to a plate are evaluated at that distance (the string is
#: then ``~1e-12 L`` wide: numerically the plate itself), which keeps ``1/sigma^2`` finite.
Z_FLOOR = 1e-12


def profile(z, L, sigma0, d):
    """``sigma(z)`` and ``s(z) = sigma'(z)/sigma(z)`` for ``0 < z < L`` (NumPy or CuPy ``z``)."""
    xp = backends.array_module(z)
    k = np.pi / (2 * d)
    left, right = z < d, z > L - d
    end = xp.where(left, z, xp.where(right, L - z, d))  # depth into the nearer end region
    sin = xp.sin(k * end)
    cot = k * xp.cos(k * end) / sin
    return sigma0 * sin, xp.where(left, cot, xp.where(right, -cot, 0.0))


class StrongField:
    """The IFM strong-interaction field between the plates ``z = 0`` and ``z = L``.

    Parameters: plate distance ``L > 0``, string width ``sigma0 > 0``, end length
    ``0 < d <= L/2`` (``d = L/2``: pure sine bridge; small ``d``: long straight strings).
    """

    kind = "strong"

    def __init__(self, L=6.0, sigma0=1.0, d=0.5):
        self.L = validate.positive("L", L)
        self.sigma0 = validate.positive("sigma0", sigma0)
        self.d = validate.positive("d", d)
        if self.d > self.L / 2 * (1 + 1e-12):
            raise ValueError(f"d must satisfy 0 < d <= L/2 = {self.L / 2}, got {self.d}")
        self.d = min(self.d, self.L / 2)

    def params(self):
        return {"kind": self.kind, "L": self.L, "sigma0": self.sigma0, "d": self.d}

    def __repr__(self):
        return f"StrongField(L={self.L}, sigma0={self.sigma0}, d={self.d})"

    def sigma(self, z):
        """String width ``sigma(z)`` (for ``0 < z < L``)."""
        return profile(np.asarray(z, dtype=np.float64), self.L, self.sigma0, self.d)[0]

    def bind(self, sources, sinks, plan="paired", backend="auto", method="auto"):
        """This field for fixed charges and plan, prepared once for many :meth:`direction`
        calls (:mod:`physfield.bound`): ``field.bind(A, B, plan).direction(points)``."""
        return BoundStrong(self, sources, sinks, plan, backend, method)

    def direction(self, points, sources, sinks, plan="paired", backend="auto", method="auto",
                  return_ess=False):
        """Unit field direction and ``log|E|`` at ``points`` (``(n, D+1)``, column 0 = z).

        Returns ``u`` (``(n, D+1)``, unit rows, the dtype of the inputs) and ``log_norm``
        (``(n,)`` float64), finite for every finite point with ``0 < z < L`` at any ``D``.
        Outside the plates the field is exactly 0: ``u = 0`` and ``log_norm = -inf``.
        With ``return_ess`` also the effective number of pairs ``1 / sum_k w_k^2`` (0 outside).

        ``plan``: ``"paired"``, ``"independent"``, ``"optimal"``, ``"sinkhorn"`` or an
        ``(N, M)`` array. ``backend``: ``"auto"``, ``"numpy"``, ``"numba"``, ``"cupy"``.
        ``method``: ``"auto"``, ``"direct"`` or ``"gemm"`` (see :mod:`physfield.engine`).
        For repeated calls on the same charges use :meth:`bind` (a named OT plan is then solved
        once, not at every call).
        """
        return self.bind(sources, sinks, plan, backend, method).direction(points, return_ess)

    def field(self, points, sources, sinks, plan="paired", backend="auto", method="auto"):
        """The field ``E`` itself, ``(n, D+1)`` float64: ``exp(log_norm) * u``.

        ``phi`` carries ``(2 pi sigma^2)^(-D/2)``, so this underflows to 0 (or overflows to inf
        when ``2 pi sigma^2 < 1``) for large ``D``; use :meth:`direction` there.
        """
        return self.bind(sources, sinks, plan, backend, method).field(points)


class BoundStrong(bound.Bound):
    """:meth:`StrongField.bind`: the plan's support ``(I, J, log pi)`` and, for the fast
    backends, :func:`physfield.engine.prepare_strong` of the charges, made once."""

    def __init__(self, field, sources, sinks, plan="paired", backend="auto", method="auto"):
        super().__init__(field, sources, sinks, backend, method)
        self.I, self.J, self.logw = plans.support(plan, backends.to_host(self.sources),
                                                  backends.to_host(self.sinks))

    def _prepare(self, xp, A, B):
        I, J, logw = (xp.asarray(a) for a in (self.I, self.J, self.logw))
        k, _ = backends.kernels(self.backend)
        return I, J, logw, engine.prepare_strong(k, xp, A, B, I, J, self.gemm)

    def direction(self, points, return_ess=False):
        """:meth:`StrongField.direction` at ``points`` for the bound charges and plan."""
        f = self.source_field
        points, dtype, xp, on_device = self._points(points)
        A, B, prepared = self.charges(dtype)
        dim = self.dim
        P = xp.asarray(points, dtype=dtype)
        z = P[:, 0].astype(np.float64)
        mask = (z > 0) & (z < f.L)
        # a slice when every point is inside (the usual case): no gather and scatter copies
        inside = slice(None) if bool(mask.all()) else xp.nonzero(mask)[0]

        u = xp.zeros(P.shape, dtype=dtype)
        log_norm = xp.full(len(P), -np.inf)
        ess = xp.zeros(len(P))
        if bool(mask.any()):
            zi = xp.clip(z[inside], Z_FLOOR * f.L, f.L * (1 - Z_FLOOR))
            X = xp.ascontiguousarray(P[inside, 1:])
            t = zi / f.L
            sigma, s = profile(zi, f.L, f.sigma0, f.d)
            log_gauss = -dim / 2 * xp.log(2 * np.pi * sigma**2)
            if self.backend == "numpy":
                log_ez, slope, ess_in = reference.strong(X, t, sigma, s, A, B, self.I, self.J, self.logw, f.L)
            else:
                k, _ = backends.kernels(self.backend)
                I, J, logw, pair_prep = prepared
                lse, ess_in, off_a, off_b = engine.strong_terms(
                    k, xp, X, t, 0.5 / sigma**2, A, B, I, J, logw, self.gemm, pair_prep)
                log_ez = lse + log_gauss
                slope = off_a
                slope *= (1 / f.L + s * (1 - t))[:, None]
                off_b *= (s * t - 1 / f.L)[:, None]
                slope += off_b
            sq = xp.einsum("pd,pd->p", slope, slope, dtype=np.float64)
            u0 = 1 / xp.sqrt(1 + sq)
            slope *= u0[:, None].astype(dtype)
            u[inside, 0] = u0
            u[inside, 1:] = slope
            log_norm[inside] = log_ez + 0.5 * xp.log1p(sq)
            ess[inside] = ess_in
        if self.backend == "cupy" and not on_device:
            u, log_norm, ess = u.get(), log_norm.get(), ess.get()
        return (u, log_norm, ess) if return_ess else (u, log_norm)

