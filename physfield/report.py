"""The property report behind ``physfield check``: measured values, each marked pass/fail.

:func:`measure` binds a field to its charges and plan and runs the checks of SPEC sections 2 and
3 through the quantity functions of :mod:`physfield.checks`: ``pass``/``fail`` for what the
field claims, ``measured`` for facts that are no claim (the Coulomb field's reversal and
leakage). Each row is a dict: name, property, value, claim, status, method (and extras).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from functools import cached_property

import numpy as np
from scipy.spatial.distance import cdist
from tqdm import tqdm

from . import checks, plans
from .kernels import get_backend

PLANES = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)  # flux planes z / L
N_INSIDE, N_OUTSIDE, N_STRING, N_IMPORTANCE = 4096, 1024, 256, 4096  # probe points, draws per plane
N_CHARGES = 4  # Gauss spheres around this many sources and as many sinks
FLUX_TOL = GAUSS_TOL = 1e-6  # quadrature; a Monte Carlo estimate may also be off by 5 standard errors
DIV_TOL = 1e-6  # |div E| / (|E| / scale), scale the local length on which |E| changes by O(1)
STEP = 1e-4  # central-difference step / local length scale
STENCIL_BUDGET = 2e7  # numbers in all divergence stencils together: fewer probe points at large D
SPHERE = 0.1  # sphere radius / distance to the nearest other charge


@dataclass
class Setup:
    """A field with its charges, plan and backend bound."""

    field: object
    A: np.ndarray
    B: np.ndarray
    plan: object
    backend: str
    rng: np.random.Generator
    support: tuple  # (i, j, log pi) of the plan's non-zero entries

    @property
    def dim(self):
        return self.A.shape[1]

    @cached_property
    def bound(self):
        return self.field.bind(self.A, self.B, plan=self.plan, backend=self.backend)

    def direction(self, points):
        return self.bound.direction(points)


def finite(x):
    """``x`` as a float, ``None`` (JSON ``null``) when it is not finite."""
    return float(x) if np.isfinite(x) else None


def row(name, prop, value, claim, status, method, **extra):
    """One line of the table (and one entry of ``--json``); a non-finite value fails."""
    value = finite(value)
    if value is None:
        status = "fail"
    return {"name": name, "property": prop, "value": value, "claim": claim, "status": status,
            "method": method, **extra}


def verdict(ok):
    return "pass" if ok else "fail"


def box(s, pad=0.5):
    """Bounding box of the charges, widened by ``pad`` times its extent (at least 0.1 L) per side."""
    AB = np.concatenate([s.A, s.B])
    lo, hi = AB.min(axis=0), AB.max(axis=0)
    margin = pad * np.maximum(hi - lo, 0.1 * s.field.L)
    return lo - margin, hi + margin


def flux_rows(s):
    """``|int E_z dx - 1|`` on the planes ``PLANES``: lattice quadrature for ``D <= 2``, otherwise
    importance sampling from the plan's pair mixture with widths ``tau sigma(z)``,
    ``tau = 1 + 1/(4 sqrt(D))``, which keeps the variance of the weights below ``exp(1/8) - 1``
    of the squared flux at any ``D`` (a proposal other than the field's own mixture)."""
    L, dim = s.field.L, s.dim
    I, J, logw = s.support
    tau = 1 + 0.25 / np.sqrt(dim)
    planes = []
    for z in L * np.asarray(PLANES):
        sigma, t = float(s.field.sigma(z)), z / L
        if dim <= 2:
            centres = (1 - t) * s.A[I] + t * s.B[J]
            flux, tol = checks.flux_quadrature(s.direction, z, centres, 8 * sigma, sigma / 1.5), FLUX_TOL
        else:
            x = checks.pair_mixture_sample(s.rng, N_IMPORTANCE, s.A, s.B, I, J, logw, t, tau * sigma)
            log_q = checks.pair_mixture_logpdf(x, s.A, s.B, I, J, logw, t, tau * sigma)
            flux, se = checks.flux_importance(s.direction, z, x, log_q)
            tol = 5 * se
        planes.append((z, flux, tol))
    error = max(abs(flux - 1) for _, flux, _ in planes)
    ok = all(abs(flux - 1) <= tol for _, flux, tol in planes)
    where = f"{len(PLANES)} planes z/L={PLANES[0]}..{PLANES[-1]}"
    if dim <= 2:
        method, claim = f"{where}, lattice quadrature", f"< {FLUX_TOL:.0e}"
    else:
        method = f"{where}, importance sampling ({N_IMPORTANCE} draws each)"
        claim = f"< 5 s.e. ({max(tol for _, _, tol in planes):.2g})"
    planes = [{"z": float(z), "flux": finite(flux), "tolerance": finite(tol)} for z, flux, tol in planes]
    return [row("flux", "flux error |int E_z dx - 1|", error, claim, verdict(ok), method, planes=planes)]


def probe_rows(s, claimed):
    """``E_z`` at probe points inside, ``|E|`` at probe points outside the plates."""
    lo, hi = box(s)
    u, log_inside = s.direction(checks.probes_inside(s.rng, N_INSIDE, s.field.L, lo, hi))
    min_ez, negative = checks.ez_stats(u)
    _, log_outside = s.direction(checks.probes_outside(s.rng, N_OUTSIDE, s.field.L, lo, hi))
    outside = checks.max_magnitude(log_outside, np.max(log_inside))
    inside = f"{N_INSIDE} points 0<z<L, 1/4 near a plate"
    return [
        row("min_ez", "min E_z/|E| inside", min_ez, "> 0" if claimed else "-",
            verdict(min_ez > 0) if claimed else "measured", inside),
        row("ez_negative", "fraction with E_z < 0 inside", negative, "= 0" if claimed else "-",
            verdict(negative == 0) if claimed else "measured", inside),
        row("max_outside", "max |E| outside / max |E| inside", outside, "= 0" if claimed else "-",
            verdict(outside == 0) if claimed else "measured",
            f"{N_OUTSIDE} points z<=0 or z>=L"),
    ]


def divergence_rows(s, scale_of, width, kinks=()):
    """Central-difference divergence at probe points near the data, relative to ``|E| / scale``.

    ``kinks``: planes where the field is not differentiable in ``z`` (the strong field's
    ``sigma''`` jumps at ``z = d`` and ``L - d``); probes within two steps of one are moved to
    two steps from it, so no stencil straddles it.
    """
    count = int(min(N_STRING, max(2, STENCIL_BUDGET // (2 * (s.dim + 1) ** 2))))
    P = checks.probes_strings(s.rng, count, s.A, s.B, *s.support, s.field.L, width)
    for zk in kinks:
        h = STEP * scale_of(P)
        close = np.abs(P[:, 0] - zk) < 2 * h
        P[close, 0] = zk + np.where(P[close, 0] >= zk, 2.0, -2.0) * h[close]
    scale = scale_of(P)
    residual = checks.divergence_residual(s.direction, P, STEP * scale, scale).max()
    return [row("divergence", "divergence |div E| scale/|E|", residual, f"< {DIV_TOL:.0e}",
                verdict(residual < DIV_TOL), f"{count} points near the data, central differences")]


def strong_rows(s):
    field = s.field

    def scale(P):
        """``log phi`` changes by O(1) over ``sigma / sqrt(D)`` across and ``min(z, L - z) / D`` along."""
        z = P[:, 0]
        return np.minimum(field.sigma(z) / np.sqrt(s.dim), np.minimum(z, field.L - z) / s.dim)

    return [
        lambda: flux_rows(s),
        lambda: probe_rows(s, claimed=True),
        lambda: divergence_rows(s, scale, field.sigma, kinks=(field.d, field.L - field.d) if hasattr(field, "d") else ()),
    ]


def coulomb_rows(s):
    L = s.field.L
    alpha, beta = plans.marginals(s.plan, s.A, s.B)
    charges = np.concatenate([checks.on_plane(0.0, s.A), checks.on_plane(L, s.B)])
    q = np.concatenate([alpha, -beta])

    def spheres():
        """Gauss's law on small spheres around a few sources and sinks; backward flux on half-spheres."""
        N, M = len(s.A), len(s.B)
        pick = np.concatenate([s.rng.choice(N, min(N, N_CHARGES), replace=False),
                               N + s.rng.choice(M, min(M, N_CHARGES), replace=False)])
        gauss, tol, back, leak = [], [], [], []
        for k in pick[q[pick] != 0]:
            dist = np.linalg.norm(charges - charges[k], axis=1)
            r = SPHERE * dist[dist > 0].min()
            enclosed = q[dist < r].sum()
            flux, se = checks.surface_flux(s.direction, charges[k], r, checks.sphere_rule(s.dim, "full", rng=s.rng))
            gauss.append(abs(flux / enclosed - 1))
            tol.append(GAUSS_TOL + 5 * se / abs(enclosed))
            half = "lower" if k < N else "upper"
            flux, _ = checks.surface_flux(s.direction, charges[k], r, checks.sphere_rule(s.dim, half, rng=s.rng))
            (back if k < N else leak).append(flux / enclosed)
        rule = "quadrature" if s.dim <= 2 else "Monte Carlo"
        ok = all(g <= t for g, t in zip(gauss, tol))
        claim = f"< {GAUSS_TOL:.0e}" if s.dim <= 2 else f"< {GAUSS_TOL:.0e} + 5 s.e. ({max(tol):.2g})"
        return [
            row("gauss", "Gauss |flux / enclosed charge - 1|", max(gauss), claim, verdict(ok),
                f"{len(gauss)} spheres r={SPHERE} x nearest charge, {rule}"),
            row("backward_flux", "flux leaving sources backwards", np.mean(back), "-", "measured",
                f"reversal: lower half-spheres, {len(back)} sources"),
            row("leakage", "flux entering sinks from behind", np.mean(leak), "-", "measured",
                f"leakage: upper half-spheres, {len(leak)} sinks"),
        ]

    def scale(P):
        """``|G| ~ r^-D`` changes by O(1) over ``r / D``, ``r`` the distance to the nearest charge."""
        return cdist(P, charges).min(axis=1) / s.dim

    return [
        spheres,
        lambda: divergence_rows(s, scale, lambda z: np.full(len(z), 0.1 * L)),
        lambda: probe_rows(s, claimed=False),
    ]


def measure(field, A, B, plan, backend, seed):
    """Run every check of ``field`` (with its charges and plan); returns the rows."""
    rng = np.random.default_rng(seed)
    plan = plans.resolve(plan, A, B)
    s = Setup(field, A, B, plan, get_backend(backend).name, rng, plans.support(plan, A, B))
    steps = (strong_rows if "flux" in field.claims else coulomb_rows)(s)
    rows = []
    for step in tqdm(steps, desc=f"checking {field!r}", unit="check", leave=False,
                     disable=None, file=sys.stderr):
        rows.extend(step())
    return sorted(rows, key=lambda r: r["status"] == "measured"), s.backend
