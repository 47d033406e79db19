"""Flux-weighted starts of field lines on small spheres around charges (NumPy).

Flux-weighted starts (:func:`sphere_starts`, NumPy). The flux leaving a charge through a small
sphere ``|p - c| = r`` has density ``max(E . n, 0)`` over its outward normals ``n``. A line's
centre ``c_k`` is drawn with probability proportional to ``weights_k``, ``m`` normals are proposed
uniformly on the unit sphere of ``R^{D+1}`` per line, and the ``n_k`` starts of centre ``k`` are
drawn with replacement from the pool of all its ``m n_k`` proposals with probability
proportional to ``max(E . n, 0) = max(u . n, 0) exp(log|E| - max log|E|)`` (the maximum over the
pool is taken out, so nothing underflows at large ``D``): importance resampling, whose draws
approach the flux density as the pool grows (the error is ``O(1 / (m n_k))``, toward uniform;
pooling matters where the flux is concentrated on a small part of the sphere).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..validate import finite_number, positive_int

_BLOCK = 2**22  # numbers in one block of proposals evaluated at once


class Starts(NamedTuple):
    """Result of :func:`sphere_starts`.

    Parameters
    ----------
    points : ndarray, ``(n, D+1)`` float64
        The starts, on the spheres.
    centre : ndarray, ``(n,)`` int
        The index of each line's centre (a row of ``centres``).
    flagged : ndarray, ``(n,)`` bool
        No proposal of its centre had outward flux (the point is then a uniform proposal).
    """

    points: np.ndarray
    centre: np.ndarray
    flagged: np.ndarray


def sphere_starts(field_at, centres, weights, r, n, rng, proposals=64):
    """Flux-weighted line starts on spheres around charges (module docstring; NumPy).

    Parameters
    ----------
    field_at : callable
        ``field_at(p) -> (u, log_norm)`` at points ``(m, D+1)``: unit directions ``(m, D+1)`` and
        ``log|E| (m,)`` (``-inf`` where ``E = 0``).
    centres : array (K, D+1)
        Sphere centres (e.g. the sources ``(0, a_i)``).
    weights : array (K,)
        Non-negative weights of the centres, not all 0 (e.g. the plan's row sums).
    r : float
        Sphere radius ``> 0``.
    n : int
        Number of starts.
    rng : numpy.random.Generator
    proposals : int
        Uniform proposals per start (``m``), pooled by centre; the draws' bias toward uniform is
        ``O(1 / (m n_k))``.

    Returns
    -------
    Starts
        ``(points, centre, flagged)``.
    """
    centres = np.asarray(centres, dtype=np.float64)
    weights = np.asarray(weights, dtype=np.float64)
    r = finite_number("r", r, 0.0, strict=True)
    n, m = positive_int("n", n), positive_int("proposals", proposals)
    if centres.ndim != 2 or len(centres) < 1 or weights.shape != (len(centres),):
        raise ValueError(f"need centres (K >= 1, D+1) and weights (K,), got {centres.shape} and {weights.shape}")
    if not (np.all(np.isfinite(weights)) and np.all(weights >= 0) and weights.sum() > 0):
        raise ValueError("weights must be finite, >= 0 and not all 0")
    k = rng.choice(len(centres), size=n, p=weights / weights.sum())
    normal = rng.standard_normal((n, m, centres.shape[1]))
    normal /= np.linalg.norm(normal, axis=2, keepdims=True)
    points = centres[k][:, None, :] + r * normal
    flat = points.reshape(n * m, -1)
    rows = max(1, _BLOCK // flat.shape[1])  # evaluated in blocks: n m points of D+1 may be large
    parts = [field_at(flat[i:i + rows]) for i in range(0, len(flat), rows)]
    u = np.concatenate([np.asarray(a, dtype=np.float64) for a, _ in parts]).reshape(normal.shape)
    log_norm = np.concatenate([np.asarray(b, dtype=np.float64) for _, b in parts]).reshape(n, m)
    finite = np.all(np.isfinite(u), axis=2)
    cos = np.einsum("nmd,nmd->nm", np.where(finite[..., None], u, 0.0), normal)
    live = finite & np.isfinite(log_norm) & (cos > 0)
    chosen = np.empty(n, dtype=np.int64)  # flat index into the (n, m) proposals
    flagged = np.zeros(n, dtype=bool)
    for c in np.unique(k):
        rows = np.flatnonzero(k == c)
        pool_live, pool_log = live[rows].ravel(), log_norm[rows].ravel()
        flat = (rows[:, None] * m + np.arange(m)).ravel()
        if not pool_live.any():  # no outward flux anywhere on this sphere: uniform proposals, flagged
            chosen[rows], flagged[rows] = rows * m, True
            continue
        flux = np.where(pool_live, cos[rows].ravel(), 0.0) * np.exp(
            np.where(pool_live, pool_log - pool_log[pool_live].max(), -np.inf))
        chosen[rows] = flat[rng.choice(len(flat), size=len(rows), p=flux / flux.sum())]
    return Starts(points.reshape(n * m, -1)[chosen], k, flagged)
