"""Following field lines in ``z``: ``dx/dz = E_x / E_z``, on a uniform grid or with adaptive steps.

Following in ``z`` (:func:`follow_z`). Where the field points forwards (``E_z > 0``) a line is
the graph ``x(z)`` of ``dx/dz = s(z, x) = E_x / E_z``. On the uniform grid ``z_i = z0 + i h``,
``h = (z1 - z0) / steps``, one step is (:mod:`physfield.lines.rk`)::

    euler:  x += h k1
    heun:   x += h (k1 + k2) / 2,                k2 = s(z + h, x + h k1)
    rk4:    x += h (k1 + 2 k2 + 2 k3 + k4) / 6   (classical: k2 = s(z + h/2, x + h/2 k1),
                                                  k3 = s(z + h/2, x + h/2 k2), k4 = s(z + h, x + h k3))

With an embedded pair (``bs32``, ``dopri5``) the steps adapt instead: the first trial step is
``(z1 - z0) / steps``, a step is kept when every line's error estimate is within ``rtol`` and
``atol`` (:func:`physfield.lines.rk.error_norm`), and the next is sized from it; the lines of a
batch share their steps (one ``z`` per call of the slope).

The slope callable also answers a ``bad`` flag per row and stage (``E_z <= 0``, a non-finite
or a capped slope: what is bad is the caller's rule); the follower counts them per line, over
the stages of the steps it keeps. Every call of the slope, on the whole batch, is counted
(``ZLines.evaluations``): the cost of the lines in evaluations of the field or the network.

"""

from __future__ import annotations

from typing import Any, NamedTuple

from array_api_compat import array_namespace
from array_api_compat import device as array_device

from ..validate import finite_number, positive_int
from .rk import FIXED, PAIRS, advance, check_method, embedded_step, error_norm, next_step

#: the most steps (kept or rejected) an adaptive method takes before it gives up
MAX_ADAPTIVE_STEPS = 100_000


def _with_z(xp, z, x):
    """Rows ``(z, x)``."""
    return xp.concat([xp.full((x.shape[0], 1), z, dtype=x.dtype, device=array_device(x)), x], axis=1)


class ZLines(NamedTuple):
    """Result of :func:`follow_z`. Arrays are of the start points' library, on their device.

    Parameters
    ----------
    x : array, ``(n, D)``
        The end points at ``z1``.
    bad : array, ``(n,)`` int64
        Count of bad stages per line (those the slope flagged).
    path : list of array, or None
        The points ``(z_i, x_i)``, ``(n, D+1)`` each, of every step kept, from ``z0`` to ``z1``
        when ``keep``; ``None`` otherwise.
    evaluations : int
        The calls of the slope (each on all ``n`` rows), rejected steps' included.
    steps : int
        The steps kept.
    rejected : int
        The steps an adaptive method rejected (0 for a fixed grid).
    """

    x: Any
    bad: Any
    path: list | None
    evaluations: int = 0
    steps: int = 0
    rejected: int = 0


def follow_z(slope, x, z0, z1, steps, method="rk4", keep=False, on_step=None, rtol=1e-6, atol=1e-6):
    """Follow ``dx/dz = slope`` from ``z0`` to ``z1``, on a uniform grid or with adaptive steps
    (module docstring).

    Parameters
    ----------
    slope : callable
        ``slope(z, x) -> (s, bad)``: ``z`` a float, ``x (n, D)``; ``s (n, D)`` the slope
        ``dx/dz`` and ``bad (n,)`` boolean, the stages the caller counts as bad.
    x : array (n, D)
        Start points at ``z0`` (NumPy, CuPy or torch; dtype and device are kept).
    z0, z1 : float
        The two ends of the lines.
    steps : int
        Number of steps, ``>= 1`` (an adaptive method's first trial step is ``(z1 - z0) / steps``).
    method : {"euler", "heun", "rk4", "bs32", "dopri5"}
        A fixed-step method or an embedded pair (:mod:`physfield.lines.rk`).
    keep : bool
        Also return the points ``(z_i, x_i)`` of every step kept.
    on_step : callable, optional
        Called after every step kept with the level ``z`` reached (a progress bar).
    rtol, atol : float
        The relative and absolute tolerances of an adaptive method (default ``1e-6`` each);
        unused on a uniform grid.

    Returns
    -------
    ZLines
        ``(x, bad, path, evaluations, steps, rejected)``.
    """
    check_method(method)
    steps = positive_int("steps", steps)
    z0, z1 = finite_number("z0", z0), finite_number("z1", z1)
    rtol, atol = finite_number("rtol", rtol, 0.0), finite_number("atol", atol, 0.0)
    if method in PAIRS and rtol == atol == 0:
        raise ValueError("rtol and atol cannot both be 0")
    xp = array_namespace(x)
    bad = xp.zeros(x.shape[0], dtype=xp.int64, device=array_device(x))
    path = [_with_z(xp, z0, x)] if keep else None
    calls = 0
    z = z0
    flagged = []

    def rate(dz, y):
        nonlocal calls
        s, b = slope(z + dz, y)
        calls += 1
        flagged.append(b)
        return s

    def kept(x_new, z_new, stages):
        """Count the bad flags of a kept step's ``stages`` evaluations, and report it."""
        nonlocal bad
        for b in stages:
            bad = bad + xp.astype(b, xp.int64)
        if keep:
            path.append(_with_z(xp, z_new, x_new))
        if on_step is not None:
            on_step(z_new)

    if method in FIXED:
        h = (z1 - z0) / steps
        for i in range(steps):
            z = z0 + i * h
            x = advance(rate, x, h, method)
            kept(x, z1 if i == steps - 1 else z0 + (i + 1) * h, flagged)
            flagged.clear()
        return ZLines(x, bad, path, calls, steps, 0)
    pair, span = PAIRS[method], z1 - z0
    h, taken, rejected = span / steps, 0, 0
    k1 = rate(0.0, x)
    while (z1 - z) * span > 0:
        if taken + rejected >= MAX_ADAPTIVE_STEPS:
            raise ValueError(f"{method} took {MAX_ADAPTIVE_STEPS} steps without reaching z = {z1} "
                             f"(stopped at z = {z:.6g}); loosen rtol/atol or use a fixed-step method")
        last = abs(h) >= abs(z1 - z)
        h = z1 - z if last else h
        x_new, error, k_last = embedded_step(rate, x, h, pair, k1)
        err = error_norm(xp, error, x, x_new, rtol, atol)
        if err <= 1.0:
            taken += 1
            z_new = z1 if last else z + h
            kept(x_new, z_new, flagged[:-1])  # the last stage, at the new point, is the next step's first
            del flagged[:-1]
            x, z, k1 = x_new, z_new, k_last
        else:
            rejected += 1
            del flagged[1:]
        h = next_step(h, err, pair.order)
    for b in flagged:  # the final stage, evaluated at z1
        bad = bad + xp.astype(b, xp.int64)
    return ZLines(x, bad, path, calls, taken, rejected)
