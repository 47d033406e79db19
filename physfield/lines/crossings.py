"""Flux through planes: the crossings of levels ``z_q`` by lines, counted and recorded.

Flux through planes. For levels ``z_q`` every step of every line adds ``+1`` to plane ``q`` if it
crossed it forwards (``z_old < z_q <= z_new``) and ``-1`` if backwards (``z_new < z_q <=
z_old``); summed over lines this is the net number of lines through the plane: over ``n``, the
fraction of the flux through it when the lines start flux-weighted. A line that goes forwards, back and forwards
again through a plane counts once. :func:`net_crossings` counts the same on a stored path.

"""

from __future__ import annotations

from typing import Any, NamedTuple

from array_api_compat import array_namespace
from array_api_compat import device as array_device


class Crossings(NamedTuple):
    """Every crossing of a plane by a line, in the order they happened (``E`` crossings in all).

    Parameters
    ----------
    plane : array, ``(E,)`` int64
        Index of the plane crossed, into the planes.
    line : array of int, ``(E,)``
        Index of the line that crossed it.
    sign : array, ``(E,)``
        ``+1`` forwards, ``-1`` backwards.
    point : array, ``(E, D+1)``
        Where the segment met the plane.
    """

    plane: Any
    line: Any
    sign: Any
    point: Any


def cut(old, new, level, hit, xp):
    """Rows ``hit``: the point ``(level, x)`` of the segment ``old -> new``; other rows: ``new``."""
    z_old, z_new = old[:, :1], new[:, :1]
    t = (level - z_old) / xp.where(hit[:, None], z_new - z_old, 1.0)
    cut = xp.concat([xp.full_like(z_old, level), old[:, 1:] + t * (new[:, 1:] - old[:, 1:])], axis=1)
    return xp.where(hit[:, None], cut, new)


def net(z_old, z_new, planes, xp):
    """Net crossings per plane (``+1`` forwards, ``-1`` backwards), summed over all other axes."""
    z_old, z_new = z_old[..., None], z_new[..., None]
    forward = xp.astype((z_old < planes) & (planes <= z_new), xp.int64)
    backward = xp.astype((z_new < planes) & (planes <= z_old), xp.int64)
    return xp.sum(xp.reshape(forward - backward, (-1, planes.shape[0])), axis=0)


def net_crossings(paths_z, planes):
    """Net number of lines through each plane along stored paths (module docstring).

    Parameters
    ----------
    paths_z : array (steps+1, n)
        ``z`` of every line at every stored point.
    planes : sequence or array (Q,)
        Levels ``z_q``.

    Returns
    -------
    array (Q,) int64
        Per plane, forward crossings minus backward crossings, summed over lines.
    """
    xp = array_namespace(paths_z)
    planes = xp.reshape(xp.asarray(planes, dtype=paths_z.dtype, device=array_device(paths_z)), (-1,))
    return net(paths_z[:-1, ...], paths_z[1:, ...], planes, xp)


def step_crossings(old, new, lines_, zq, xp):
    """The crossings of the levels ``zq`` by the step ``old -> new`` of the lines ``lines_`` (their
    indices), one :class:`Crossings`-like tuple per plane crossed."""
    out = []
    for q in range(zq.shape[0]):
        level = float(zq[q])
        forward = (old[:, 0] < level) & (level <= new[:, 0])
        hit = forward | ((new[:, 0] < level) & (level <= old[:, 0]))
        if bool(xp.any(hit)):
            count = int(xp.sum(xp.astype(hit, xp.int64)))
            out.append((xp.full(count, q, dtype=xp.int64, device=array_device(old)), lines_[hit],
                        xp.where(forward[hit], 1, -1), cut(old, new, level, hit, xp)[hit, ...]))
    return out


def no_crossings(p, xp):
    """The fields of a :class:`Crossings` without any crossing, for lines like ``p``."""
    dev = array_device(p)
    return (xp.zeros(0, dtype=xp.int64, device=dev), xp.zeros(0, dtype=xp.int64, device=dev),
            xp.zeros(0, dtype=xp.int64, device=dev), xp.zeros((0, p.shape[1]), dtype=p.dtype, device=dev))
