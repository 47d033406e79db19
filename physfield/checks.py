"""Measured properties of a field: the quantities behind ``physfield check`` (the README's mathematics).

Small functions, arrays in, numbers out. A field enters as a callable
``direction(points) -> (u, log_norm)`` (unit rows and ``log|E|``, as ``StrongField.direction`` and
``CoulombField.direction`` return them with the charges and plan bound), so ``E = exp(log_norm) u``.
Magnitudes are compared in log space: ``E`` itself underflows for large ``D``. Points are
``(n, D+1)`` with column 0 = z.
"""

from __future__ import annotations

import numpy as np
from scipy.special import logsumexp, roots_legendre

from .fields.coulomb import log_sphere_area

#: most lattice nodes one plane's quadrature may use
MAX_NODES = 4_000_000
#: matrix entries per chunk of scratch work
CHUNK = 2**21


def magnitude(log_norm, shift=0.0):
    """``|E| exp(-shift) = exp(log_norm - shift)``; ``log_norm = -inf`` (no field) gives 0."""
    return np.exp(np.asarray(log_norm, dtype=np.float64) - shift)


def on_plane(z, x):
    """Points ``(z, x_k)`` for the rows ``x_k`` of ``x``."""
    return np.column_stack([np.full(len(x), float(z)), x])


def lattice(centres, radius, h):
    """Nodes of the lattice ``h Z^D`` within ``radius`` (per axis) of some centre, and the cell volume.

    The nodes of the bounding box of all the cubes, or of the union of the cubes when that is
    smaller (a few narrow strings far apart).
    """
    lo = np.floor((centres - radius) / h).astype(np.int64)
    side = int(np.ceil(2 * radius / h)) + 2
    first, last = lo.min(axis=0), lo.max(axis=0) + side
    in_box, in_cubes = np.prod((last - first).astype(float)), float(len(lo)) * side ** lo.shape[1]
    if min(in_box, in_cubes) > MAX_NODES:
        raise ValueError(f"flux quadrature would need {min(in_box, in_cubes):.3g} lattice nodes (spacing "
                         f"{h:.3g}): the field is too narrow for the extent of the data")
    if in_box <= in_cubes:
        axes = [np.arange(a, b) for a, b in zip(first, last)]
        idx = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, len(first))
    else:
        cube = np.stack(np.meshgrid(*[np.arange(side)] * lo.shape[1], indexing="ij"), axis=-1)
        idx = np.unique((lo[:, None, :] + cube.reshape(1, -1, lo.shape[1])).reshape(-1, lo.shape[1]), axis=0)
    return idx * h, h ** lo.shape[1]


def flux_quadrature(direction, z, centres, radius, h):
    """``int E_z(z, x) dx`` over ``R^D`` by the lattice rule (for ``D = 1, 2``):

        int f dx  ~  h^D  sum_{x in h Z^D} f(x)

    on the nodes within ``radius`` of the ``centres`` (:func:`lattice`), where the integrand must
    be negligible outside. For smooth integrands this is the trapezoid rule on ``R^D``, spectrally
    accurate: for a Gaussian of width ``sigma`` the error is about ``exp(-2 pi^2 sigma^2 / h^2)``.
    """
    nodes, cell = lattice(np.atleast_2d(centres), radius, h)
    u, log_norm = direction(on_plane(z, nodes))
    return cell * float(np.sum(u[:, 0] * magnitude(log_norm)))


def flux_importance(direction, z, x, log_q):
    """``int E_z(z, x) dx`` by importance sampling from a proposal ``q``: ``x ~ q``, ``log_q = log q(x)``.

    Estimate ``mean_s E_z(x_s) / q(x_s)`` and its standard error ``std / sqrt(n)``; each ratio is
    formed in log space, ``E_z / q = u_z exp(log|E| - log q)``, so nothing underflows at large ``D``.
    """
    u, log_norm = direction(on_plane(z, x))
    ratio = u[:, 0] * magnitude(log_norm, log_q)
    return float(ratio.mean()), float(ratio.std(ddof=1) / np.sqrt(len(ratio)))


def pair_mixture_sample(rng, n, sources, sinks, I, J, logw, t, scale):
    """``n`` draws of ``q = sum_k pi_k N((1 - t) a_{i_k} + t b_{j_k}, scale^2 I_D)``, ``pi_k = exp(logw_k)``."""
    p = np.exp(logw - logw.max())
    k = rng.choice(len(p), size=n, p=p / p.sum())
    centres = (1 - t) * sources[I[k]] + t * sinks[J[k]]
    return centres + scale * rng.standard_normal(centres.shape)


def pair_mixture_logpdf(x, sources, sinks, I, J, logw, t, scale):
    """``log q(x)`` of the mixture of :func:`pair_mixture_sample`, in plain NumPy.

    With ``c_k = (1 - t) a_{i_k} + t b_{j_k}`` (after centring everything on the mean charge)

        |x - c_k|^2 = |x|^2 - 2 ((1 - t) x.a_{i_k} + t x.b_{j_k}) + |c_k|^2,
        log q(x) = logsumexp_k (log pi_k - |x - c_k|^2 / (2 scale^2)) - D/2 log(2 pi scale^2),

    so the work is ``O(N M + (N + M) D)`` per point for any plan. The expansion loses about
    ``D eps (|x|^2 + |c|^2)`` absolute in ``|x - c|^2``; it is clamped at 0.
    """
    dim = sources.shape[1]
    centre = np.concatenate([sources, sinks]).mean(axis=0)
    A, B, X = sources - centre, sinks - centre, x - centre
    step = max(1, CHUNK // dim)
    ab = np.concatenate([np.einsum("kd,kd->k", A[I[s:s + step]], B[J[s:s + step]])
                         for s in range(0, len(I), step)])
    c2 = (1 - t) ** 2 * np.einsum("kd,kd->k", A, A)[I] + t**2 * np.einsum("kd,kd->k", B, B)[J] + 2 * t * (1 - t) * ab
    out = np.empty(len(X))
    step = max(1, CHUNK // max(len(I), A.shape[0] + B.shape[0]))
    for s in range(0, len(X), step):
        Xs = X[s:s + step]
        xc = (1 - t) * (Xs @ A.T)[:, I] + t * (Xs @ B.T)[:, J]
        sq = np.maximum(np.einsum("pd,pd->p", Xs, Xs)[:, None] - 2 * xc + c2, 0.0)
        out[s:s + step] = logsumexp(logw - sq / (2 * scale**2), axis=1)
    return out - dim / 2 * np.log(2 * np.pi * scale**2)


def ez_stats(u):
    """``min E_z/|E|`` over the rows and the fraction of rows with ``E_z < 0``."""
    return float(u[:, 0].min()), float(np.mean(u[:, 0] < 0))


def max_magnitude(log_norm, shift=0.0):
    """``max |E| exp(-shift)`` over points (0 when the field vanishes at all of them)."""
    return float(magnitude(np.max(log_norm), shift))


def divergence_residual(direction, points, h, scale):
    """Per point ``|div E| / (|E| / scale)``, ``div E`` by central differences of step ``h`` (per point):

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
    """Directions ``n_k`` on the unit sphere ``S^D`` of ``R^{D+1}`` (column 0 = z) and weights ``w_k``:

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
    """Flux of ``E`` out of the (part of the) sphere ``{centre + r n}``, and its standard error.

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


def probes_strings(rng, n, sources, sinks, I, J, logw, L, width, margin=0.05):
    """``n`` points near the data: a pair ``k ~ pi``, ``z`` uniform in ``(margin L, (1 - margin) L)``,
    ``x = c_k(z) + width(z) xi``, ``xi ~ N(0, I_D)`` (``width``: a function of ``z``)."""
    z = rng.uniform(margin * L, (1 - margin) * L, n)
    t = (z / L)[:, None]
    x = pair_mixture_sample(rng, n, sources, sinks, I, J, logw, t, np.asarray(width(z), float)[:, None])
    return np.column_stack([z, x])
