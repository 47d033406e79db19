"""Following field lines in ``z``: ``dx/dz = E_x / E_z`` on a uniform grid.

Following in ``z`` (:func:`follow_z`). Where the field points forwards (``E_z > 0``) a line is
the graph ``x(z)`` of ``dx/dz = s(z, x) = E_x / E_z``. On the uniform grid ``z_i = z0 + i h``,
``h = (z1 - z0) / steps``, one step is (:mod:`physfield.lines.rk`)::

    euler:  x += h k1
    heun:   x += h (k1 + k2) / 2,                k2 = s(z + h, x + h k1)
    rk4:    x += h (k1 + 2 k2 + 2 k3 + k4) / 6   (classical: k2 = s(z + h/2, x + h/2 k1),
                                                  k3 = s(z + h/2, x + h/2 k2), k4 = s(z + h, x + h k3))

The slope callable also answers a ``bad`` flag per row and stage (``E_z <= 0``, a non-finite
or a capped slope: what is bad is the caller's rule); the follower counts them per line.

"""

from __future__ import annotations

from typing import Any, NamedTuple

from array_api_compat import array_namespace
from array_api_compat import device as array_device

from ..validate import finite_number, positive_int
from .rk import advance, check_method


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
        The grid points ``(z_i, x_i)``, ``(n, D+1)`` each, from ``z0`` to ``z1`` (``steps + 1``
        arrays) when ``keep``; ``None`` otherwise.
    """

    x: Any
    bad: Any
    path: list | None


def follow_z(slope, x, z0, z1, steps, method="rk4", keep=False, on_step=None):
    """Follow ``dx/dz = slope`` from ``z0`` to ``z1`` on a uniform grid (module docstring).

    Parameters
    ----------
    slope : callable
        ``slope(z, x) -> (s, bad)``: ``z`` a float, ``x (n, D)``; ``s (n, D)`` the slope
        ``dx/dz`` and ``bad (n,)`` boolean, the stages the caller counts as bad.
    x : array (n, D)
        Start points at ``z0`` (NumPy, CuPy or torch; dtype and device are kept).
    z0, z1 : float
        The two ends of the grid.
    steps : int
        Number of steps, ``>= 1``.
    method : {"euler", "heun", "rk4"}
    keep : bool
        Also return the points ``(z_i, x_i)`` of every grid level.
    on_step : callable, optional
        Called after every step with the number of steps done (a progress bar's update).

    Returns
    -------
    ZLines
        ``(x, bad, path)``: the end points, the bad stages per line, the path when ``keep``.
    """
    check_method(method)
    steps = positive_int("steps", steps)
    z0, z1 = finite_number("z0", z0), finite_number("z1", z1)
    xp = array_namespace(x)
    h = (z1 - z0) / steps
    bad = xp.zeros(x.shape[0], dtype=xp.int64, device=array_device(x))
    path = [] if keep else None
    z = z0

    def rate(dz, y):
        nonlocal bad
        s, b = slope(z + dz, y)
        bad = bad + xp.astype(b, xp.int64)
        return s

    for i in range(steps):
        z = z0 + i * h
        if keep:
            path.append(_with_z(xp, z, x))
        x = advance(rate, x, h, method)
        if on_step is not None:
            on_step(i + 1)
    if keep:
        path.append(_with_z(xp, z1, x))
    return ZLines(x, bad, path)
