"""Field lines and their diagnostics.

``trace(field, sources, sinks, plan=..., n_lines=..., seed=...)`` starts ``n_lines`` lines
flux-weighted just above ``P`` and advances them all together through the field's fast
``direction`` backend.

Strong field: start ``x = c_ij(eps) + sigma(eps) xi`` with ``(i, j) ~ pi`` and ``xi ~ N(0, I)``
(exactly the flux density at ``z = eps``); integrate ``dx/dz = E_x / E_z`` with classical RK4
on a uniform grid ``z: eps -> L - eps``. By the transport theorem the endpoints are distributed
as ``Q`` blurred by ``sigma(eps)``.

Coulomb field: start on spheres of radius ``r0`` around the sources (source ``i`` with
probability ``alpha_i``), in uniform directions of ``R^{D+1}`` (the flux is isotropic there, so
back-facing lines are counted); integrate ``dp/dtau = E/|E|`` with RK4 in arc length, the step
being ``min(h_max, step_frac * distance to the nearest charge)`` so lines resolve the charges.
A line stops when it comes within ``r0`` of a sink (it ends there), crosses ``z >= L`` anywhere
else (it leaks past ``Q``), reaches ``z <= 0`` (it went behind ``P``), leaves the ball of
radius ``R_max`` or uses ``max_steps``.

Outcomes per line (flags; a Coulomb line that meets ``E_z < 0`` and still ends at a sink is both
``reversed`` and ``arrived``):

- ``arrived``  reached the ``Q`` plate going forward (strong: ``z = L - eps``; Coulomb: ended
  at a sink from ``z < L``);
- ``reversed`` ``E_z < 0`` somewhere on the line, or left through ``z <= 0``;
- ``leaked``   passed ``z > L`` (Coulomb: crossed the plane away from every sink);
- ``lost``     escaped ``R_max``, ran out of steps, or met a non-finite value.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field as dataclass_field

import numpy as np
from tqdm.auto import tqdm

from . import plans, validate
from .metrics import w2


@dataclass
class TraceResult:
    """``endpoints (n_lines, D+1)``, per-line boolean ``flags`` (arrived/reversed/leaked/lost),
    ``paths`` (list of ``(n_lines, D+1)`` snapshots, or ``None``) and the ``stats`` dict."""

    endpoints: np.ndarray
    starts: np.ndarray
    flags: dict
    stats: dict
    paths: list | None = dataclass_field(default=None, repr=False)

    def outcome(self):
        """One label per line for pictures: lost > leaked > reversed > arrived."""
        label = np.full(len(self.endpoints), "arrived", dtype=object)
        for name in ("reversed", "leaked", "lost"):
            label[self.flags[name]] = name
        return label


def _straightness(paths, ok):
    """Mean over lines ``ok`` of path length / distance between the path's ends (>= 1)."""
    if len(paths) < 2 or not ok.any():
        return float("nan")
    p = np.stack(paths)[:, ok]
    length = np.sqrt((np.diff(p, axis=0) ** 2).sum(axis=-1)).sum(axis=0)
    chord = np.sqrt(((p[-1] - p[0]) ** 2).sum(axis=-1))
    return float(np.mean(length[chord > 0] / chord[chord > 0]))


def trace(field, sources, sinks, plan="paired", n_lines=512, seed=0, eps=None, n_steps=200,
          keep_paths=False, backend="auto", progress=False, r0=None, h_max=None, R_max=None,
          max_steps=4000, step_frac=0.25, planes=7):
    """Trace ``n_lines`` field lines of ``field`` (lines in ``z`` or in arc length, as the field declares); see module doc.

    ``eps`` (strong, default ``1e-3 L``), ``n_steps`` (strong RK4 steps), ``r0``/``h_max``/
    ``R_max``/``max_steps``/``step_frac`` (Coulomb; defaults from the data scale). ``planes``:
    how many planes ``z = L q``, ``q`` evenly inside ``(0, 1)``, the flux error is measured over:
    the net fraction of lines crossing each plane forwards, minus 1.
    Returns a :class:`TraceResult`; ``stats`` holds n_lines, arrived, reversed, leaked, lost,
    straightness, flux_error, w2, seconds.
    """
    sources, sinks = validate.charges(sources, sinks)
    if int(n_lines) < 1:
        raise ValueError(f"n_lines must be >= 1, got {n_lines}")
    rng = np.random.default_rng(seed)
    t0 = time.perf_counter()
    A, B = np.asarray(sources, np.float64), np.asarray(sinks, np.float64)
    if field.lines == "z":
        res = _trace_strong(field, A, B, plan, int(n_lines), rng, backend, progress, eps, n_steps)
    else:
        res = _trace_coulomb(field, A, B, plan, int(n_lines), rng, backend, progress, r0, h_max, R_max,
                             max_steps, step_frac)
    zq = field.L * (np.arange(1, planes + 1) / (planes + 1))
    crossings = _net_crossings(res.paths, zq) / res.paths[0].shape[0]
    res.stats.update({
        "n_lines": int(n_lines),
        **{name: float(np.mean(flag)) for name, flag in res.flags.items()},
        "flux_error": float(np.max(np.abs(crossings - 1.0))),
        "seconds": time.perf_counter() - t0,
    })
    if not keep_paths:
        res.paths = None
    return res


def _net_crossings(paths, zq):
    """Net number of forward crossings of each plane ``z = zq`` summed over lines."""
    z = np.stack([p[:, 0] for p in paths])  # (steps, lines)
    above = z[:, :, None] > zq[None, None, :]
    moves = np.diff(above.astype(np.int8), axis=0)  # +1 forward crossing, -1 backward
    return moves.sum(axis=(0, 1)).astype(np.float64)


def _trace_strong(fld, A, B, plan, n, rng, backend, progress, eps, n_steps):
    L = fld.L
    eps = 1e-3 * L if eps is None else eps
    if not 0 < eps < L / 2:
        raise ValueError(f"eps must lie in (0, L/2), got {eps}")
    plan = plans.resolve(plan, A, B)  # once: an OT plan is not recomputed at every step
    I, J, logw = plans.support(plan, A, B)
    weights = np.exp(logw) / np.exp(logw).sum()
    pick = rng.choice(len(I), size=n, p=weights)
    a, b = A[I[pick]], B[J[pick]]
    sig_eps = fld.sigma(np.array([eps]))[0]
    x = a + eps / L * (b - a) + sig_eps * rng.standard_normal(a.shape)
    zs = np.linspace(eps, L - eps, int(n_steps) + 1)
    bad = np.zeros(n, bool)
    bound = fld.bind(A, B, plan=plan, backend=backend)

    def slope(z, x):
        u, _ = bound.direction(np.column_stack([np.full(len(x), z), x]))
        bad[u[:, 0] <= 0] = True
        return u[:, 1:] / np.where(u[:, :1] > 0, u[:, :1], 1.0)

    paths = [np.column_stack([np.full(n, zs[0]), x])]
    for z, z_next in tqdm(list(zip(zs[:-1], zs[1:])), desc="tracing", disable=None if progress else True, leave=False):
        h = z_next - z
        k1 = slope(z, x)
        k2 = slope(z + h / 2, x + h / 2 * k1)
        k3 = slope(z + h / 2, x + h / 2 * k2)
        k4 = slope(z_next, x + h * k3)
        x = x + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
        paths.append(np.column_stack([np.full(n, z_next), x]))
    lost = ~np.all(np.isfinite(x), axis=1)
    end = paths[-1]
    flags = {"arrived": ~bad & ~lost, "reversed": bad & ~lost, "leaked": np.zeros(n, bool), "lost": lost}
    ok = ~lost
    mid = [q for q in paths if L / 4 <= q[0, 0] <= 3 * L / 4]
    stats = {
        "straightness": _straightness(paths, ok),
        # the same over the middle half L/4 <= z <= 3L/4 (single strong strings are straight there)
        "straightness_mid": _straightness(mid, ok),
        "w2": w2(end[ok, 1:], B) if ok.any() else float("nan"),
        # the same statistic for an exact sample of the end density (Q blurred by sigma(eps)):
        # W2 "at the level of the blur" for this sample size
        "w2_blur": _w2_blur(A, B, I, J, weights, n, L - eps, L, sig_eps, rng),
        "eps": eps,
        "sigma_eps": float(sig_eps),
    }
    return TraceResult(endpoints=end, starts=paths[0], flags=flags, stats=stats, paths=paths)


def _trace_coulomb(fld, A, B, plan, n, rng, backend, progress, r0, h_max, R_max, max_steps, step_frac):
    L = fld.L
    D = A.shape[1]
    plan = plans.resolve(plan, A, B)
    alpha, _ = plans.marginals(plan, A, B)
    charges = np.concatenate([np.column_stack([np.zeros(len(A)), A]), np.column_stack([np.full(len(B), L), B])])
    spread = float(np.ptp(charges, axis=0).max()) or 1.0
    nearest = _nearest_spacing(charges)
    r0 = 0.1 * min(nearest, L) if r0 is None else r0
    h_max = 0.02 * (L + spread) if h_max is None else h_max
    R_max = 10 * (L + spread) if R_max is None else R_max
    centre = charges.mean(axis=0)
    src = rng.choice(len(A), size=n, p=alpha / alpha.sum())
    g = rng.standard_normal((n, D + 1))
    p = np.column_stack([np.zeros(n), A[src]]) + r0 * g / np.linalg.norm(g, axis=1, keepdims=True)
    sink_pts = charges[len(A):]

    active = np.ones(n, bool)
    flags = {k: np.zeros(n, bool) for k in ("arrived", "reversed", "leaked", "lost")}
    paths = [p.copy()]

    bound = fld.bind(A, B, plan=plan, backend=backend)

    def direction(q):
        u, _ = bound.direction(q)
        return u

    flags["reversed"] |= p[:, 0] <= 0
    active &= p[:, 0] > 0
    bar = tqdm(total=n, desc="tracing", disable=None if progress else True, leave=False)
    for _ in range(int(max_steps)):
        if not active.any():
            break
        q = p[active]
        d_near = np.sqrt(_sq_dist_min(q, charges))
        h = np.minimum(h_max, step_frac * d_near)[:, None]
        k1 = direction(q)
        flags["reversed"][np.flatnonzero(active)[k1[:, 0] < 0]] = True
        k2 = direction(q + h / 2 * k1)
        k3 = direction(q + h / 2 * k2)
        k4 = direction(q + h * k3)
        q = q + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
        p[active] = q
        idx = np.flatnonzero(active)
        at_sink = (_sq_dist_min(q, sink_pts) <= r0**2) & (q[:, 0] <= L)
        behind_q = (q[:, 0] >= L) & ~at_sink
        behind_p = q[:, 0] <= 0
        gone = (np.sqrt(((q - centre) ** 2).sum(axis=1)) > R_max) | ~np.all(np.isfinite(q), axis=1)
        flags["arrived"][idx[at_sink]] = True
        flags["leaked"][idx[behind_q]] = True
        flags["reversed"][idx[behind_p]] = True
        flags["lost"][idx[gone]] = True
        stop = at_sink | behind_q | behind_p | gone
        active[idx[stop]] = False
        bar.update(int(stop.sum()))
        paths.append(p.copy())
    bar.close()
    flags["lost"] |= active  # ran out of steps
    end = p
    reached = flags["arrived"] | flags["leaked"]
    ok = reached
    stats = {
        "straightness": _straightness(paths, ok),
        "w2": w2(end[ok, 1:], B) if ok.any() else float("nan"),
        "r0": r0,
        "h_max": h_max,
    }
    return TraceResult(endpoints=end, starts=paths[0], flags=flags, stats=stats, paths=paths)


def _w2_blur(A, B, I, J, weights, n, z, L, sigma, rng):
    """``W2`` between ``n`` i.i.d. draws of ``sum_k pi_k N(c_k(z), sigma^2)`` and the sinks."""
    pick = rng.choice(len(I), size=n, p=weights)
    a, b = A[I[pick]], B[J[pick]]
    return w2(a + z / L * (b - a) + sigma * rng.standard_normal(a.shape), B)


def _sq_dist_min(q, pts):
    """``min_k |q - pts_k|^2`` per row (direct differences, chunked)."""
    out = np.empty(len(q))
    step = max(1, 2**22 // max(pts.size, 1))
    for s in range(0, len(q), step):
        out[s:s + step] = ((q[s:s + step, None, :] - pts[None]) ** 2).sum(axis=-1).min(axis=1)
    return out


def _nearest_spacing(charges):
    """Smallest distance between two distinct charges (the scale of ``r0``)."""
    d = np.sqrt(((charges[:, None, :] - charges[None]) ** 2).sum(axis=-1))
    d = d[d > 0]
    return float(d.min()) if d.size else 1.0
