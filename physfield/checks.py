"""Measured properties of a field: the quantities behind ``physfield check`` (the README's mathematics).

Small functions, arrays in, numbers out. A field enters as a callable
``direction(points) -> (u, log_norm)`` (unit rows and ``log|E|``, as ``StrongField.direction`` and
``CoulombField.direction`` return them with the charges and plan bound), so ``E = exp(log_norm) u``.
Magnitudes are compared in log space: ``E`` itself underflows for large ``D``. Points are
``(n, D+1)`` with column 0 = z.
"""

from __future__ import annotations

import numpy as np
from scipy.special import roots_legendre

from .fields.coulomb import log_sphere_area

#: matrix entries per chunk of scratch work
CHUNK = 2**21


def magnitude(log_norm, shift=0.0):
    """``|E| exp(-shift) = exp(log_norm - shift)``; ``log_norm = -inf`` (no field) gives 0."""
    return np.exp(np.asarray(log_norm, dtype=np.float64) - shift)


def on_plane(z, x):
    """Points ``(z, x_k)`` for the rows ``x_k`` of ``x``."""
    return np.column_stack([np.full(len(x), float(z)), x])


def nearest_distances(X, k):
    """Distance of each row of ``X`` to its ``k``-th nearest other row (chunked direct differences)."""
    out = np.empty(len(X))
    step = max(1, CHUNK // max(X.size, 1))
    for s in range(0, len(X), step):
        d2 = ((X[s:s + step, None, :] - X[None]) ** 2).sum(axis=-1)
        out[s:s + step] = np.sqrt(np.partition(d2, min(k, len(X) - 1), axis=1)[:, min(k, len(X) - 1)])
    return out


def kde_logpdf(y, X, b, wide=4.0, share=0.1):
    """``log q(y)`` of the proposal ``q = (1 - share) KDE_b + share KDE_(wide b)``, ``KDE_b`` the mean
    of ``N(X_c, b^2 I)`` over the rows ``X_c`` (the wide part keeps the weights' tails bounded).
    Squared distances by the expansion ``|y|^2 + |X_c|^2 - 2 y.X_c`` about the mean of ``X``
    (clamped at 0), log-sum-exps with the nearest row's term taken out (it is 1, so no sum underflows).
    The exponentials are float32 (three times faster), summed in float64: ``log q`` is then off
    by about 1e-7 relative, far below the standard errors of the estimates it weights."""
    dim = X.shape[1]
    centre = X.mean(axis=0)
    Xc = X - centre
    x2 = np.einsum("kd,kd->k", Xc, Xc)
    out = np.empty(len(y))
    step = max(1, CHUNK // max(len(X), 1))
    for s in range(0, len(y), step):
        yc = y[s:s + step] - centre
        d2 = np.maximum(np.einsum("pd,pd->p", yc, yc)[:, None] + x2[None, :] - 2 * yc @ Xc.T, 0.0)
        d2min = d2.min(axis=1)
        d2 -= d2min[:, None]
        parts = []
        for weight, width in ((1 - share, b), (share, wide * b)):
            terms = np.exp((d2 * (-0.5 / width**2)).astype(np.float32))
            parts.append(np.log(weight) + np.log(terms.sum(axis=1, dtype=np.float64)) - d2min / (2 * width**2)
                         - dim / 2 * np.log(2 * np.pi * width**2))
        out[s:s + step] = np.logaddexp(*parts) - np.log(len(X))
    return out


def kde_sample(rng, n, X, b, wide=4.0, share=0.1):
    """``n`` draws of the proposal of :func:`kde_logpdf`."""
    c = X[rng.integers(len(X), size=n)]
    scale = np.where(rng.random(n) < share, wide * b, b)
    return c + scale[:, None] * rng.standard_normal(c.shape)


def plane_flux(direction, z, X, rng, draws=4096, pilot=256, extra=None, target_se=None, max_draws=2**15):
    """``int E_z(z, x) dx`` over the plane ``z`` by importance sampling, the proposal built from
    the points ``X`` ``(K, D)`` where field lines cross the plane (a black box's own flux) and
    the points ``extra`` (the charges' straight interpolations, so that a string no line happened
    to follow still has proposal mass).

    The proposal is a kernel density of those points (:func:`kde_logpdf`) whose bandwidth ``b``
    is chosen among ``{1/8, ..., 8}`` times the median distance of a crossing to its 4th nearest
    neighbour by the effective sample size of ``pilot`` draws; then ``draws`` fresh draws ``y``
    give the estimate ``mean E_z(y) / q(y)`` and its standard error (ratios formed in log space);
    with ``target_se``, the draws are drawn afresh four times as many until the relative standard
    error is at most ``target_se`` (or ``max_draws`` are reached). Returns ``(y, w, se)``: the
    draws and their weights ``w = E_z / q / draws``, so ``w.sum()`` is
    the flux and ``sum w f(y)`` estimates ``int f E_z dx``.
    """
    X = np.asarray(X, dtype=np.float64)
    base = float(np.median(nearest_distances(X, 4))) if len(X) > 1 else 1.0
    if extra is not None:
        X = np.concatenate([X, np.asarray(extra, dtype=np.float64)])
    base = base if base > 0 else 1.0

    def weights(y, b):
        u, log_norm = direction(on_plane(z, y))
        return u[:, 0].astype(np.float64) * magnitude(log_norm, kde_logpdf(y, X, b))

    def ess(w):
        w = w / (w.max() or 1.0)  # scale-free: tiny weights' squares must not underflow
        return w.sum() ** 2 / max((w**2).sum(), np.finfo(float).tiny)

    b = max((base * f for f in (0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)),
            key=lambda b: ess(np.abs(weights(kde_sample(rng, pilot, X, b), b))))
    while True:
        y = kde_sample(rng, draws, X, b)
        w = weights(y, b)
        top = np.abs(w).max() or 1.0  # the spread of tiny weights, without underflow of their squares
        se = float(top * (w / top).std(ddof=1) / np.sqrt(draws))
        if target_se is None or se <= target_se * abs(w.mean()) or draws >= max_draws:
            return y, w / draws, se
        draws *= 4


def transport_scores(X, sign, line, n, Y, W, centre):
    """Whether ``n`` lines carry the flux of ``E_z`` through a plane, in standard errors.

    The lines cross the plane at ``X`` (``sign`` +1 forwards, -1 backwards; ``line`` the index of
    the crossing line); started flux-weighted, they carry ``1/n`` of the flux each, so for a
    test function ``f``, ``(1/n) sum_crossings sign f(x)`` estimates ``int f E_z dx``, which the
    importance sample ``Y`` with weights ``W`` (:func:`plane_flux`) estimates independently. Test
    functions: 1, each coordinate, ``|x - centre|^2``. Returns the largest ``|difference| /
    standard error`` (both estimates' errors, the lines' from their per-line sums).
    """
    def stats(P):
        P = np.asarray(P, dtype=np.float64)
        return np.column_stack([np.ones(len(P)), P, ((P - centre) ** 2).sum(axis=1)])

    per_line = np.zeros((n, len(centre) + 2))
    np.add.at(per_line, line, sign[:, None] * stats(X))
    per_draw = len(W) * W[:, None] * stats(Y)
    diff = per_line.mean(axis=0) - per_draw.mean(axis=0)
    se = np.sqrt(per_line.var(axis=0, ddof=1) / n + per_draw.var(axis=0, ddof=1) / len(W))
    return float(np.max(np.abs(diff) / np.where(se > 0, se, np.inf)))


def ez_stats(u):
    """``min E_z/|E|`` over the rows and the fraction of rows with ``E_z < 0``."""
    return float(u[:, 0].min()), float(np.mean(u[:, 0] < 0))


def max_magnitude(log_norm, shift=0.0):
    """``max |E| exp(-shift)`` over points (0 when the field vanishes at all of them)."""
    return float(magnitude(np.max(log_norm), shift))


def local_scale(direction, points, h0, cap):
    """The length over which ``|E|`` changes by O(1) near each point, from the field alone::

        l = 1 / max(|grad log|E||, sqrt(max_k |d^2 log|E| / dx_k^2|), 1 / cap)

    by central differences of step ``h0``; NaN where ``E = 0`` at a stencil point."""
    n, width = points.shape
    out = np.empty(n)
    step = max(1, CHUNK // (2 * width * width))
    eye = np.eye(width)
    for s in range(0, n, step):
        P = points[s:s + step]
        stencil = P[:, None, None, :] + np.array([1.0, -1.0])[None, :, None, None] * h0 * eye
        _, log_pm = direction(stencil.reshape(-1, width))
        _, log0 = direction(P)
        log_pm = log_pm.reshape(len(P), 2, width)
        with np.errstate(invalid="ignore"):
            grad = (log_pm[:, 0] - log_pm[:, 1]) / (2 * h0)
            curv = (log_pm[:, 0] + log_pm[:, 1] - 2 * log0[:, None]) / h0**2
            rate = np.maximum(np.sqrt((grad**2).sum(axis=1)), np.sqrt(np.abs(curv).max(axis=1)))
        out[s:s + step] = np.where(np.isfinite(rate), 1 / np.maximum(rate, 1 / cap), np.nan)
    return out


def divergence_residual(direction, points, h, scale):
    """Per point ``|div E| / (|E| / scale)``, ``div E`` by central differences of step ``h`` (per point)::

        div_h E(p) = sum_k [E_k(p + h e_k) - E_k(p - h e_k)] / (2 h),   k = z, x_1 .. x_D,

    formed relative to ``|E(p)|`` in log space, ``E_k(q) / |E(p)| = u_k(q) exp(log|E(q)| - log|E(p)|)``.
    ``scale`` is the length over which ``|E|`` changes by O(1) (``sigma / sqrt(D)`` for a string,
    ``r / D`` at distance ``r`` from a point charge): the residual is 0 for a divergence-free field
    up to ``O((h/scale)^2)`` truncation and round-off, and ``O(1)`` or more where it has sources.
    """
    n, width = points.shape
    out = np.empty(n)
    step = max(1, CHUNK // (2 * width * width))
    eye = np.eye(width)
    for s in range(0, n, step):
        P, hs = points[s:s + step], h[s:s + step]
        stencil = P[:, None, None, :] + np.array([1.0, -1.0])[None, :, None, None] * hs[:, None, None, None] * eye
        u, log_norm = direction(stencil.reshape(-1, width))
        _, log0 = direction(P)
        u = np.diagonal(u.reshape(len(P), 2, width, width), axis1=2, axis2=3)  # u_k at p +- h e_k
        Ek = u * magnitude(log_norm.reshape(len(P), 2, width), log0[:, None, None])
        div = (Ek[:, 0] - Ek[:, 1]).sum(axis=1) / (2 * hs)
        out[s:s + step] = np.abs(div) * scale[s:s + step]
    return out


def sphere_rule(dim, part="full", m=16, rng=None, draws=2048):
    """Directions ``n_k`` on the unit sphere ``S^D`` of ``R^{D+1}`` (column 0 = z) and weights ``w_k``::

        sum_k w_k f(n_k)  ~  (1 / |S^D|) int_part f dS,    part: "full", "lower" (n_z < 0), "upper" (n_z > 0)

    ``D = 1``: Gauss-Legendre in the angle (``4 m`` nodes). ``D = 2``: Gauss-Legendre in
    ``n_z = cos(theta)`` times the trapezoid rule in the azimuth (``m x 2m`` nodes). For a field
    analytic within ``R`` of the centre, a sphere of radius ``r`` costs about ``(r/R)^(2m)``.
    ``D >= 3``: Monte Carlo, ``draws`` uniform directions (folded into the half for a hemisphere)
    and their mirror images (``-n``, or ``x -> -x`` for a hemisphere), so odd terms cancel
    exactly; the second half of the rows mirrors the first. Returns ``(n, w, mc)``.
    """
    if dim == 1:
        start = {"full": 0.0, "lower": np.pi / 2, "upper": -np.pi / 2}[part]
        span = 2 * np.pi if part == "full" else np.pi
        nodes, weights = roots_legendre(4 * m)
        theta = start + span * (nodes + 1) / 2
        return np.column_stack([np.cos(theta), np.sin(theta)]), weights * span / 2 / (2 * np.pi), False
    if dim == 2:
        lo, hi = {"full": (-1.0, 1.0), "lower": (-1.0, 0.0), "upper": (0.0, 1.0)}[part]
        nodes, weights = roots_legendre(m)
        mu = lo + (hi - lo) * (nodes + 1) / 2
        phi = 2 * np.pi * np.arange(2 * m) / (2 * m)
        mu, phi = np.repeat(mu, 2 * m), np.tile(phi, m)
        ring = np.sqrt(1 - mu**2)
        n = np.column_stack([mu, ring * np.cos(phi), ring * np.sin(phi)])
        return n, np.repeat(weights * (hi - lo) / 2, 2 * m) / (2 * m) / 2, False
    g = rng.standard_normal((draws, dim + 1))
    n = g / np.linalg.norm(g, axis=1, keepdims=True)
    if part == "full":
        mirror = -n
    else:
        n[:, 0] = np.abs(n[:, 0]) * (-1 if part == "lower" else 1)
        mirror = np.column_stack([n[:, :1], -n[:, 1:]])
    share = 1.0 if part == "full" else 0.5
    return np.concatenate([n, mirror]), np.full(2 * draws, share / (2 * draws)), True


def surface_flux(direction, centre, r, rule):
    """Flux of ``E`` out of the (part of the) sphere ``{centre + r n}``, and its standard error. ::

        Phi = |S^D| r^D sum_k w_k E(centre + r n_k) . n_k

    with ``(n, w, mc)`` from :func:`sphere_rule`; each term is formed in log space. The standard
    error is that of the mirrored Monte Carlo pairs (0 for the quadrature rules of ``D <= 2``).
    """
    n, w, mc = rule
    dim = n.shape[1] - 1
    u, log_norm = direction(centre + r * n)
    terms = np.einsum("kd,kd->k", u.astype(np.float64), n) * magnitude(log_norm, -(log_sphere_area(dim) + dim * np.log(r)))
    flux = float(terms @ w)
    if not mc:
        return flux, 0.0
    half = len(terms) // 2
    pairs = (terms[:half] + terms[half:]) * w[:half]
    return flux, float(pairs.std(ddof=1) * np.sqrt(half))


def probes_inside(rng, n, L, lo, hi):
    """``n`` points with ``0 < z < L``, ``x`` uniform in the box ``[lo, hi]``; ``z`` uniform for
    three quarters of them, for the rest at log-uniform distances ``1e-9 L .. 1e-2 L`` from a plate."""
    z = rng.uniform(0, L, n)
    near = rng.random(n) < 0.25
    gap = L * 10.0 ** rng.uniform(-9, -2, n)
    z = np.where(near, np.where(rng.random(n) < 0.5, gap, L - gap), z)
    return np.column_stack([z, rng.uniform(lo, hi, (n, len(lo)))])


def probes_outside(rng, n, L, lo, hi):
    """``n`` points with ``z <= 0`` or ``z >= L`` (within ``L`` of the plates, one in eight exactly on a
    plate), ``x`` uniform in the box ``[lo, hi]``."""
    depth = np.where(rng.random(n) < 0.125, 0.0, rng.uniform(0, L, n))
    z = np.where(rng.random(n) < 0.5, -depth, L + depth)
    return np.column_stack([z, rng.uniform(lo, hi, (n, len(lo)))])
