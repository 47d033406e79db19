"""A learned net as the right-hand side of its lines: the slope in ``z`` and the unit direction.

The line through ``(z, x)`` solves ``dx/dz = s(z, x)`` with the slope::

    direction network:  s = f_x / f_z      (f = f(z, x) in R^{D+1})
    velocity network:   s = f / L          (f in R^D, the slope dx/dt in t = z / L)

(each regression target of :mod:`learn.regression` says how, ``Target.slope``). A direction
network may answer ``f_z <= 0`` (or a non-finite ``f``) where the true strong field never does:
the line would reverse and ``f_x / f_z`` blow up. Such a stage gets slope 0 (the line holds its
``x`` for that stage) and is marked ``bad``. A tiny positive ``f_z`` is as harmful (slopes of
hundreds throw a line far away): a slope steeper than a ``limit`` is scaled down to it, direction
kept, and marked with them (:mod:`learn.sample` sets the limit from the training cache). Lines
followed in arc length (the Coulomb field of EFM) step along the unit direction ``f / |f|``
instead (:func:`unit_fn`).
"""

from __future__ import annotations

import torch

from . import regression


def slope_fn(model, target, limit=None, L=1.0):
    """``(z, x) -> (slope, bad)``: the slope of the module docstring for a net, and the mask of
    stages where the slope is undefined (a direction network's ``f_z <= 0`` or a non-finite
    output), or steeper than ``limit`` (then scaled down to ``limit``, its direction kept).

    Parameters
    ----------
    model : callable
        The net (a :class:`torch.nn.Module`, or a wrapper such as :func:`learn.guidance.conditioned`): rows
        ``(z, x)`` ``(n, D+1)`` -> its output ``f``.
    target : str or learn.regression.Target
        The regression target the net learned (:func:`learn.regression.get`: a name or a target).
    limit : float, optional
        The largest slope norm ``|dx/dz|``; ``None``: no cap.
    L : float
        The plate distance a velocity network's ``t = z / L`` refers to (default 1).

    Returns
    -------
    callable
        ``slope(z, x) -> (s, bad)`` for a float ``z`` and torch ``x (n, D)``: the slope ``dx/dz``
        ``(n, D)`` and the boolean mask ``bad (n,)``, as :func:`physfield.lines.follow_z` takes it.
    """
    target = regression.get(target)

    def slope(z, x):
        s, bad = target.slope(model(torch.cat([torch.full_like(x[:, :1], z), x], dim=1)), L)
        if limit is not None:
            norm = torch.linalg.vector_norm(s, dim=1)
            steep = norm > limit
            s = s * torch.where(steep, limit / torch.where(steep, norm, 1.0), 1.0)[:, None]
            bad = bad | steep
        return s, bad

    return slope


def unit_fn(model, target="direction", L=1.0):
    """``p -> f / |f|``: the unit direction of the learned field at points ``p`` (torch ``(n, D+1)``)
    (NaN where the field is 0: the arc-length follower then finds no direction there).

    Parameters
    ----------
    model : torch.nn.Module
        The net: rows ``(z, x)`` ``(n, D+1)`` -> its output ``f``.
    target : str or learn.regression.Target
        The regression target the net learned (:func:`learn.regression.get`; default
        ``"direction"``).
    L : float
        The plate distance a velocity network's ``t = z / L`` refers to (default 1).

    Returns
    -------
    callable
        ``unit(p) -> u``: the unit directions ``(n, D+1)`` (torch, the dtype of ``p``).
    """
    target = regression.get(target)

    def unit(p):
        f = target.field(model(p).to(p.dtype), L)
        return f / f.norm(dim=1, keepdim=True)

    return unit
