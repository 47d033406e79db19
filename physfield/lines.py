"""Field lines of a black-box field: one follower for NumPy, CuPy and torch arrays.

Points are rows ``p = (z, x)`` of ``(n, D+1)`` arrays, column 0 being ``z``; the sources ``P``
sit on the plate ``z = 0``, the sinks ``Q`` on ``z = L``. A field enters only as a callable, and
every array operation goes through ``array_api_compat.array_namespace`` of the input, so the
same code follows lines on the CPU, on a GPU (CuPy) or with torch tensors; results keep the
input's dtype and device. This module never imports torch.

Following in ``z`` (:func:`follow_z`). Where the field points forwards (``E_z > 0``) a line is
the graph ``x(z)`` of ``dx/dz = s(z, x) = E_x / E_z``. On the uniform grid ``z_i = z0 + i h``,
``h = (z1 - z0) / steps``, one step is::

    euler:  x += h k1
    heun:   x += h (k1 + k2) / 2,                k2 = s(z + h, x + h k1)
    rk4:    x += h (k1 + 2 k2 + 2 k3 + k4) / 6   (classical: k2 = s(z + h/2, x + h/2 k1),
                                                  k3 = s(z + h/2, x + h/2 k2), k4 = s(z + h, x + h k3))

The slope callable also answers a ``bad`` flag per row and stage (``E_z <= 0``, a non-finite
or a capped slope: what is bad is the caller's rule); the follower counts them per line.

Following in arc length (:func:`follow_arc`). Anywhere, the line through ``p(0)`` solves
``dp/dtau = u(p) = E/|E|`` with ``tau`` its arc length, stepped by the same three methods on
this autonomous equation with step ``h`` (a number, or per line ``h(p)``). A stage where ``u`` is
0 or not finite has no direction. Only the still active lines are stepped; after every step each
of them is judged by the end rules of :class:`Ends`, first rule first:

1. ``lost``      no direction where the line is (a null point, or outside a field that
                 vanishes there): the line stays where it was before the step. (When only a
                 later stage of a step has none, e.g. a stage point past the plate of a field
                 that vanishes beyond it, the step is retried with half its length, up to
                 ``HALVINGS`` times, then taken as Euler's ``p + h u(p)``);
2. ``arrived`` / ``leaked``  the step crossed the sink plate forwards (``z_old < L <= z_new``):
                 the line ends at its crossing point ``(L, x*)``, ``x*`` linear between the two
                 points; it arrived if ``x*`` is within ``radius`` of a target, else it leaked
                 (it passed the plate away from every sink);
3. ``arrived``   the new point, with ``z <= L``, is within ``radius`` of a point ``(L, t_k)``
                 (distance in ``R^{D+1}``): the line ends there (unless ``capture`` is off);
4. ``reversed``  the step moved backwards (``z_new < z_old``) and ended at ``z <= behind``: the
                 line went back behind the source plate. It ends at its crossing of
                 ``z = behind`` when the step crossed it, else (it already was behind) at the
                 new point. Where a line starts is never judged: a start at or below ``behind``
                 is reversed only by a later backward step;
5. ``lost``      ``|p - centre| > R_max`` (it escaped);

and a line still active after ``max_steps`` steps is ``lost``. Likewise a start at ``z >= L``
counts only once a step crosses ``z = L`` forwards. Each line ends with exactly one status
(``STATUS``); ended lines are frozen at their end point. Per line the follower also returns
``turned`` (``u_z < 0`` at some stage: ``E_z < 0`` met on the line, whatever its status), the
arc length (the length of the polyline through its points, up to its end point), the chord
``|end - start|`` and its number of steps. Their ratio, :func:`straightness`, is ``>= 1``.

Flux through planes. For levels ``z_q`` every step of every line adds ``+1`` to plane ``q`` if it
crossed it forwards (``z_old < z_q <= z_new``) and ``-1`` if backwards (``z_new < z_q <=
z_old``); summed over lines this is the net number of lines through the plane: over ``n``, the
fraction of the flux through it when the lines start flux-weighted. A line that goes forwards, back and forwards
again through a plane counts once. :func:`net_crossings` counts the same on a stored path.

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

import math
from dataclasses import dataclass
from numbers import Integral, Real
from typing import Any, NamedTuple

import numpy as np
from array_api_compat import array_namespace
from array_api_compat import device as array_device

METHODS = ("euler", "heun", "rk4")
STATUS = ("arrived", "leaked", "reversed", "lost")
ARRIVED, LEAKED, REVERSED, LOST = range(len(STATUS))
_CHUNK = 2**22  # elements of one (rows, K, D) block of differences to the targets


def _number(name, value, low=-math.inf, strict=False):
    """``value`` as a finite float, ``> low`` (``strict``) or ``>= low``; else one-line ValueError."""
    ok = isinstance(value, Real) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < low or (strict and value == low):
        bound = f" {'>' if strict else '>='} {low:g}" if low > -math.inf else ""
        raise ValueError(f"{name} must be a finite number{bound}, got {value!r}")
    return float(value)


def _count(name, value):
    """``value`` as a positive int; else one-line ValueError."""
    if isinstance(value, bool) or not isinstance(value, Integral) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _method(method):
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    return method


def _advance(rate, y, h, method):
    """One step ``y -> y + h ...`` of ``dy/dt = rate(dt, y)``, ``dt`` the stage's offset in ``t``."""
    k1 = rate(0.0, y)
    if method == "euler":
        return y + h * k1
    if method == "heun":
        return y + h / 2 * (k1 + rate(h, y + h * k1))
    k2 = rate(h / 2, y + h / 2 * k1)
    k3 = rate(h / 2, y + h / 2 * k2)
    return y + h / 6 * (k1 + 2 * k2 + 2 * k3 + rate(h, y + h * k3))


def _with_z(xp, z, x):
    """Rows ``(z, x)``."""
    return xp.concat([xp.full((x.shape[0], 1), z, dtype=x.dtype, device=array_device(x)), x], axis=1)


class ZLines(NamedTuple):
    """Result of :func:`follow_z`: end points ``x (n, D)``, ``bad (n,)`` int64 count of bad stages
    per line, ``path`` (list of ``(n, D+1)`` grid points, or ``None``)."""

    x: Any
    bad: Any
    path: list | None


def follow_z(slope, x, z0, z1, steps, method="rk4", keep=False):
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

    Returns
    -------
    ZLines
        ``(x, bad, path)``: the end points, the bad stages per line, the path when ``keep``.
    """
    _method(method)
    steps = _count("steps", steps)
    z0, z1 = _number("z0", z0), _number("z1", z1)
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
        x = _advance(rate, x, h, method)
    if keep:
        path.append(_with_z(xp, z1, x))
    return ZLines(x, bad, path)


@dataclass(frozen=True)
class Ends:
    """Where lines followed in arc length end (rules 1-5 of the module docstring).

    Parameters
    ----------
    L : float
        The sink plate ``z = L``.
    targets : array (K, D)
        Points ``t_k`` of the sink plate (the sinks; for a learned net the centre of ``Q``'s
        support, ``K = 1``), NumPy or the lines' library: it is moved to their dtype and device.
    radius : float
        Capture radius ``r >= 0`` around ``(L, t_k)`` (the support radius for a learned net).
    centre : array (D+1,)
        Centre of the escape ball.
    R_max : float
        Radius ``> 0`` of the escape ball.
    behind : float
        Level ``< L`` behind the source plate (default 0).
    capture : bool
        Rule 3 (arrival within ``radius`` of a target before the plate) applies; without it a
        line arrives only through ``z = L`` (a learned net, whose samples are its crossings).
    """

    L: float
    targets: Any
    radius: float
    centre: Any
    R_max: float
    behind: float = 0.0
    capture: bool = True

    def __post_init__(self):
        _number("L", self.L)
        _number("radius", self.radius, 0.0)
        _number("R_max", self.R_max, 0.0, strict=True)
        if not _number("behind", self.behind) < self.L:
            raise ValueError(f"behind must lie below L, got behind={self.behind!r}, L={self.L!r}")


class ArcLines(NamedTuple):
    """Result of :func:`follow_arc`, per line unless said: ``status`` int64 indexing ``STATUS``,
    ``end (n, D+1)``, ``turned`` bool, ``length`` (arc length), ``chord`` (``|end - start|``),
    ``steps`` int64, ``crossings (Q,)`` int64 net counts over all lines (``None`` without
    planes), ``path`` (list of ``(n, D+1)``: the start and the points after each step, or ``None``),
    ``events``: every crossing of a plane (:class:`Crossings`; ``None`` unless ``record``)."""

    status: Any
    end: Any
    turned: Any
    length: Any
    chord: Any
    steps: Any
    crossings: Any
    path: list | None
    events: Any = None


class Crossings(NamedTuple):
    """Every crossing of a plane by a line, in the order they happened: ``plane`` (index into the
    planes), ``line`` (index of the line), ``sign`` (``+1`` forwards, ``-1`` backwards) and
    ``point (E, D+1)``, where the segment met the plane."""

    plane: Any
    line: Any
    sign: Any
    point: Any


def nearest_sq(x, targets, xp=None):
    """``min_k |x - t_k|^2`` per row of ``x`` ``(n, d)`` over the rows of ``targets`` ``(K, d)``, by
    direct differences in bounded blocks (any array library; ``xp`` its namespace)."""
    xp = array_namespace(x) if xp is None else xp
    rows = max(1, _CHUNK // max(targets.shape[0] * targets.shape[1], 1))
    return xp.concat([xp.min(xp.sum((x[i:i + rows, None, :] - targets[None, :, :]) ** 2, axis=2), axis=1)
                      for i in range(0, x.shape[0], rows)])


def _cut(old, new, level, hit, xp):
    """Rows ``hit``: the point ``(level, x)`` of the segment ``old -> new``; other rows: ``new``."""
    z_old, z_new = old[:, :1], new[:, :1]
    t = (level - z_old) / xp.where(hit[:, None], z_new - z_old, 1.0)
    cut = xp.concat([xp.full_like(z_old, level), old[:, 1:] + t * (new[:, 1:] - old[:, 1:])], axis=1)
    return xp.where(hit[:, None], cut, new)


def _net(z_old, z_new, planes, xp):
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
    return _net(paths_z[:-1, ...], paths_z[1:, ...], planes, xp)


#: a step whose later stages find no direction is retried with half the step this many times
#: before it falls back to Euler
HALVINGS = 30


def _arc_step(direction, q, h, method, xp, halvings=HALVINGS):
    """One step of ``dp/dtau = u`` from ``q``: ``(new, stalled, turned)``. A row with no direction
    at ``q`` itself is stalled and stays at ``q``. A row whose direction fails only at a later
    stage (a stage point beyond where the field vanishes, e.g. past a plate) is retried with half
    its step, up to ``halvings`` times, and then takes the Euler step ``q + h u(q)``; so a line
    closes in on a plate beyond which its field vanishes rather than jump across it."""
    stages = []

    def rate(_, y):
        u = xp.astype(direction(y), q.dtype, copy=False)
        ok = xp.all(xp.isfinite(u), axis=1) & xp.any(u != 0, axis=1)
        u = xp.where(ok[:, None], u, 0.0)
        stages.append((ok, u))
        return u

    new = _advance(rate, q, h, method)
    (ok1, u1) = stages[0]
    every = ok1
    turned = xp.zeros_like(ok1)
    for ok, u in stages:
        every, turned = every & ok, turned | (u[:, 0] < 0)
    stalled, retry = ~ok1, ok1 & ~every
    new = xp.where(stalled[:, None], q, new)
    if bool(xp.any(retry)):
        h_rows = h[retry, ...] if hasattr(h, "shape") and len(h.shape) else h
        if halvings:
            sub, _, sub_turned = _arc_step(direction, q[retry, ...], h_rows / 2, method, xp, halvings - 1)
        else:
            sub, sub_turned = q[retry, ...] + h_rows * u1[retry, ...], turned[retry]
        new[retry, ...] = sub
        turned[retry] = turned[retry] | sub_turned
    return new, stalled, turned


def _judge(old, new, stalled, ends, targets, centre, xp):
    """Status (``-1``: still active) and end point of each stepped line (rules of the module docstring)."""
    L, behind = float(ends.L), float(ends.behind)
    z_old, z_new = old[:, 0], new[:, 0]
    crossed = ~stalled & (z_old < L) & (z_new >= L)
    new = _cut(old, new, L, crossed, xp)
    near = ~stalled & (new[:, 0] <= L) & (
        nearest_sq(new[:, 1:], targets, xp) + (new[:, 0] - L) ** 2 <= float(ends.radius) ** 2)
    if not ends.capture:  # only through the plate (rule 2), not before it (rule 3)
        near = near & crossed
    open_ = ~stalled & ~crossed & ~near
    back = open_ & (z_new <= behind) & (z_new < z_old)
    new = _cut(old, new, behind, back & (z_old > behind), xp)
    far = open_ & ~back & (xp.linalg.vector_norm(new - centre, axis=1) > float(ends.R_max))
    status = xp.full(z_old.shape, -1, dtype=xp.int64, device=array_device(old))
    for mask, code in ((far, LOST), (back, REVERSED), (crossed, LEAKED), (near, ARRIVED), (stalled, LOST)):
        status = xp.where(mask, code, status)
    return status, new


def _step_sizes(h, q, xp):
    """The step: the number ``h``, or ``h(q)`` checked and shaped ``(m, 1)``."""
    if not callable(h):
        return h
    s = xp.astype(h(q), q.dtype, copy=False)
    if tuple(s.shape) != (q.shape[0],) or not bool(xp.all(xp.isfinite(s) & (s > 0))):
        raise ValueError("h(p) must return one finite step > 0 per row of p")
    return s[:, None]


def follow_arc(direction, p, ends, h, max_steps, method="rk4", keep=False, planes=None, record=False,
               on_step=None):
    """Follow ``dp/dtau = u(p)`` in arc length from the rows of ``p`` until each line ends.

    Parameters
    ----------
    direction : callable
        ``direction(p) -> u``: unit field directions ``(m, D+1)`` at points ``(m, D+1)``; a zero
        or non-finite row means no direction there.
    p : array (n, D+1)
        Start points (NumPy, CuPy or torch; dtype and device are kept).
    ends : Ends
        The end rules (module docstring).
    h : float or callable
        Step ``> 0``, or ``h(p) -> (m,)`` one step per active line (e.g. a fraction of the
        distance to the nearest charge).
    max_steps : int
        Lines still active after this many steps are lost.
    method : {"euler", "heun", "rk4"}
    keep : bool
        Also return all lines' points after every step (ended lines frozen).
    planes : sequence or array (Q,), optional
        Levels ``z_q`` whose net crossings are counted.
    record : bool
        Also return every crossing of the planes (``events``, :class:`Crossings`).
    on_step : callable, optional
        Called after every step with the number of lines still active (a progress bar).

    Returns
    -------
    ArcLines
        ``(status, end, turned, length, chord, steps, crossings, path, events)``.
    """
    _method(method)
    max_steps = _count("max_steps", max_steps)
    if not callable(h):
        h = _number("h", h, 0.0, strict=True)
    if not isinstance(ends, Ends):
        raise TypeError(f"ends must be an Ends, got {type(ends).__name__}")
    xp = array_namespace(p)
    if len(p.shape) != 2 or p.shape[1] < 2:
        raise ValueError(f"p must have shape (n, D+1) with D >= 1, got {tuple(p.shape)}")
    n, dev, dtype = p.shape[0], array_device(p), p.dtype
    targets = xp.asarray(ends.targets, dtype=dtype, device=dev)
    centre = xp.asarray(ends.centre, dtype=dtype, device=dev)
    if len(targets.shape) != 2 or targets.shape[0] < 1 or targets.shape[1] != p.shape[1] - 1:
        raise ValueError(f"ends.targets must have shape (K >= 1, {p.shape[1] - 1}), got {tuple(targets.shape)}")
    if tuple(centre.shape) != (p.shape[1],):
        raise ValueError(f"ends.centre must have shape ({p.shape[1]},), got {tuple(centre.shape)}")
    zq = None if planes is None else xp.reshape(xp.asarray(planes, dtype=dtype, device=dev), (-1,))
    if record and zq is None:
        raise ValueError("record needs planes")

    start = xp.asarray(p, copy=True)
    p = xp.asarray(p, copy=True)
    status = xp.full(n, -1, dtype=xp.int64, device=dev)
    turned = xp.zeros(n, dtype=xp.bool, device=dev)
    length = xp.zeros(n, dtype=dtype, device=dev)
    steps = xp.zeros(n, dtype=xp.int64, device=dev)
    crossings = None if zq is None else xp.zeros(zq.shape[0], dtype=xp.int64, device=dev)
    path = [xp.asarray(p, copy=True)] if keep else None
    events = [] if record else None
    line_ids = xp.arange(n, device=dev)
    for _ in range(max_steps):
        active = status < 0
        if not bool(xp.any(active)):
            break
        old = p[active, ...]
        new, stalled, neg = _arc_step(direction, old, _step_sizes(h, old, xp), method, xp)
        s, new = _judge(old, new, stalled, ends, targets, centre, xp)
        if zq is not None:
            crossings = crossings + _net(old[:, 0], new[:, 0], zq, xp)
        if record:
            events.extend(_events(old, new, line_ids[active], zq, xp))
        length[active] = length[active] + xp.linalg.vector_norm(new - old, axis=1)
        turned[active] = turned[active] | neg
        steps[active] = steps[active] + 1
        p[active, ...] = new
        status[active] = s
        if keep:
            path.append(xp.asarray(p, copy=True))
        if on_step is not None:
            on_step(int(xp.sum(xp.astype(status < 0, xp.int64))))
    status = xp.where(status < 0, LOST, status)
    chord = xp.linalg.vector_norm(p - start, axis=1)
    if record:
        events = Crossings(*(xp.concat([e[k] for e in events]) if events else empty
                             for k, empty in enumerate(_no_events(p, xp))))
    return ArcLines(status, p, turned, length, chord, steps, crossings, path, events)


def _events(old, new, lines_, zq, xp):
    """The crossings of this step, one :class:`Crossings`-like tuple per plane crossed."""
    out = []
    for q in range(zq.shape[0]):
        level = float(zq[q])
        forward = (old[:, 0] < level) & (level <= new[:, 0])
        hit = forward | ((new[:, 0] < level) & (level <= old[:, 0]))
        if bool(xp.any(hit)):
            count = int(xp.sum(xp.astype(hit, xp.int64)))
            out.append((xp.full(count, q, dtype=xp.int64, device=array_device(old)), lines_[hit],
                        xp.where(forward[hit], 1, -1), _cut(old, new, level, hit, xp)[hit, ...]))
    return out


def _no_events(p, xp):
    dev = array_device(p)
    return (xp.zeros(0, dtype=xp.int64, device=dev), xp.zeros(0, dtype=xp.int64, device=dev),
            xp.zeros(0, dtype=xp.int64, device=dev), xp.zeros((0, p.shape[1]), dtype=p.dtype, device=dev))


def straightness(length, chord, mask=None):
    """Mean of ``length / chord`` over the lines ``mask`` (all by default) with ``chord > 0``.

    Parameters
    ----------
    length, chord : array (n,)
        Arc length and chord of each line (:func:`follow_arc`).
    mask : array (n,) of bool, optional
        The lines to average over.

    Returns
    -------
    float
        ``>= 1`` (1 for straight lines); NaN when no line qualifies.
    """
    xp = array_namespace(length, chord)
    ok = chord > 0 if mask is None else (chord > 0) & mask
    if not bool(xp.any(ok)):
        return float("nan")
    return float(xp.mean(length[ok] / chord[ok]))


class Starts(NamedTuple):
    """Result of :func:`sphere_starts`: ``points (n, D+1)``, ``centre (n,)`` the index of each
    line's centre, ``flagged (n,)`` bool: no proposal of its centre had outward flux (the point is
    then a uniform proposal)."""

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
    r = _number("r", r, 0.0, strict=True)
    n, m = _count("n", n), _count("proposals", proposals)
    if centres.ndim != 2 or len(centres) < 1 or weights.shape != (len(centres),):
        raise ValueError(f"need centres (K >= 1, D+1) and weights (K,), got {centres.shape} and {weights.shape}")
    if not (np.all(np.isfinite(weights)) and np.all(weights >= 0) and weights.sum() > 0):
        raise ValueError("weights must be finite, >= 0 and not all 0")
    k = rng.choice(len(centres), size=n, p=weights / weights.sum())
    normal = rng.standard_normal((n, m, centres.shape[1]))
    normal /= np.linalg.norm(normal, axis=2, keepdims=True)
    points = centres[k][:, None, :] + r * normal
    flat = points.reshape(n * m, -1)
    rows = max(1, _CHUNK // flat.shape[1])  # evaluated in blocks: n m points of D+1 may be large
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
