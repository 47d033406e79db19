"""Following field lines in arc length, and how each line ends.

Following in arc length (:func:`follow_arc`). Anywhere, the line through ``p(0)`` solves
``dp/dtau = u(p) = E/|E|`` with ``tau`` its arc length, stepped by the methods of
:mod:`physfield.lines.rk` on this autonomous equation: fixed steps ``h`` (a number, or per line
``h(p)``), or an embedded pair's steps, one per line, controlled by its error and at most ``h``.
A stage where ``u`` is 0 or not finite has no direction. Only the still active lines are
stepped; after every step each of them is judged by the end rules of :class:`Ends`, first rule first:

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


Every crossing of the planes ``planes`` is counted (and, with ``record``, kept) as
:mod:`physfield.lines.crossings` describes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

from array_api_compat import array_namespace
from array_api_compat import device as array_device

from ..validate import finite_number, positive_int
from .crossings import Crossings, cut, net, no_crossings, step_crossings
from .rk import FIXED, GROW, METHODS, PAIRS, SAFETY, SHRINK, advance, check_method, embedded_step, row_errors

STATUS = ("arrived", "leaked", "reversed", "lost")
ARRIVED, LEAKED, REVERSED, LOST = range(len(STATUS))
_CHUNK = 2**22  # elements of one (rows, K, D) block of differences to the targets


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
        finite_number("L", self.L)
        finite_number("radius", self.radius, 0.0)
        finite_number("R_max", self.R_max, 0.0, strict=True)
        if not finite_number("behind", self.behind) < self.L:
            raise ValueError(f"behind must lie below L, got behind={self.behind!r}, L={self.L!r}")


class ArcLines(NamedTuple):
    """Result of :func:`follow_arc`, per line unless said. Arrays are of the start points' library,
    on their device.

    Parameters
    ----------
    status : array, ``(n,)`` int64
        How each line ended: an index into ``STATUS`` (``ARRIVED``, ``LEAKED``, ``REVERSED``,
        ``LOST``).
    end : array, ``(n, D+1)``
        Each line's end point, in the dtype of the starts.
    turned : array, ``(n,)`` bool
        ``u_z < 0`` at some stage of the line (``E_z < 0`` met on it), whatever its status.
    length : array, ``(n,)``
        Arc length: the length of the polyline through the line's points, up to its end point.
    chord : array, ``(n,)``
        ``|end - start|``.
    steps : array, ``(n,)`` int64
        The number of steps each line took.
    crossings : array, ``(Q,)`` int64, or None
        Net counts of crossings of each plane (``+1`` forwards, ``-1`` backwards) over all lines;
        ``None`` without planes.
    path : list of array, or None
        ``(n, D+1)`` arrays: the starts and all lines' points after each step (ended lines
        frozen); ``None`` unless ``keep``.
    events : physfield.lines.Crossings, optional
        Every crossing of a plane (:class:`Crossings`); ``None`` (the default) unless ``record``.
    evaluations : int
        The calls of ``direction`` (each on the lines still active, retried half steps included).
    """

    status: Any
    end: Any
    turned: Any
    length: Any
    chord: Any
    steps: Any
    crossings: Any
    path: list | None
    events: Any = None
    evaluations: int = 0


def nearest_sq(x, targets, xp=None):
    """``min_k |x - t_k|^2`` per row of ``x`` ``(n, d)`` over the rows ``t_k`` of ``targets`` ``(K, d)``,
    by direct differences in bounded blocks (any array library).

    Parameters
    ----------
    x : array, ``(n, d)``
        The points.
    targets : array, ``(K, d)``
        The points to measure to, of the same array library as ``x``.
    xp : module, optional
        The array namespace of ``x`` and ``targets``; ``None`` (the default) takes that of ``x``
        (``array_api_compat.array_namespace``).

    Returns
    -------
    array, ``(n,)``
        The squared distance from each row of ``x`` to the nearest row of ``targets``.
    """
    xp = array_namespace(x) if xp is None else xp
    rows = max(1, _CHUNK // max(targets.shape[0] * targets.shape[1], 1))
    return xp.concat([xp.min(xp.sum((x[i:i + rows, None, :] - targets[None, :, :]) ** 2, axis=2), axis=1)
                      for i in range(0, x.shape[0], rows)])


#: a step whose later stages find no direction is retried with half the step this many times
#: before it falls back to Euler
HALVINGS = 30


def _recording(direction, dtype, xp, stages):
    """``rate(dt, y)``: the direction at ``y`` in ``dtype``, 0 in the rows without one (zero or
    not finite); each call appends ``(ok, u)`` to ``stages``."""
    def rate(_, y):
        u = xp.astype(direction(y), dtype, copy=False)
        ok = xp.all(xp.isfinite(u), axis=1) & xp.any(u != 0, axis=1)
        u = xp.where(ok[:, None], u, 0.0)
        stages.append((ok, u))
        return u

    return rate


def _arc_step(direction, q, h, method, xp, halvings=HALVINGS):
    """One step of ``dp/dtau = u`` from ``q``: ``(new, stalled, turned)``. A row with no direction
    at ``q`` itself is stalled and stays at ``q``. A row whose direction fails only at a later
    stage (a stage point beyond where the field vanishes, e.g. past a plate) is retried with half
    its step, up to ``halvings`` times, and then takes the Euler step ``q + h u(q)``; so a line
    closes in on a plate beyond which its field vanishes rather than jump across it."""
    stages = []
    new = advance(_recording(direction, q.dtype, xp, stages), q, h, method)
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


def _embedded_arc_step(direction, q, h, k1, pair, rtol, atol, xp):
    """One trial step of the embedded ``pair`` from each row of ``q`` with its own step ``h``
    (``(m, 1)``), ``k1 = u(q)`` known: ``(new, every, err, k_last, turned)``. ``every``: every
    stage had a direction; ``err``: each row's scaled error (:func:`physfield.lines.rk.row_errors`);
    ``k_last = u(new)`` (the next step's first stage)."""
    stages = []
    new, error, k_last = embedded_step(_recording(direction, q.dtype, xp, stages), q, h, pair, k1)
    every = stages[0][0]
    turned = k1[:, 0] < 0
    for ok, u in stages:
        every, turned = every & ok, turned | (u[:, 0] < 0)
    return new, every, row_errors(xp, error, q, new, rtol, atol), k_last, turned


class _Adaptive:
    """The steps of an embedded pair in arc length, one step size per line (module docstring):
    ``step(counted, old, rows, cap)`` for the active lines ``rows`` at ``old`` returns ``(new,
    stalled, turned, moved)`` (``cap``: each row's largest step); a rejected row stays where it
    is (``moved`` false) and tries again with a smaller step. Each line keeps its step and its first stage (``u`` at its point) between
    calls. A step whose later stages find no direction (a stage past the plate of a field that
    vanishes beyond it) is retried with half its length; once a line has retried ``HALVINGS``
    times so (over its whole course: its steps would otherwise creep up to a plate, halving the
    distance left each time), such a step is taken as Euler's step ``q + h u(q)``, as the fixed
    methods do."""

    def __init__(self, pair, rtol, atol, n, like, xp):
        self.pair, self.rtol, self.atol, self.xp = pair, rtol, atol, xp
        self.h = xp.full(n, float("inf"), dtype=like.dtype, device=array_device(like))
        self.k = xp.zeros_like(like)
        self.known = xp.zeros(n, dtype=xp.bool, device=array_device(like))
        self.fails = xp.zeros(n, dtype=xp.int64, device=array_device(like))

    def step(self, direction, old, rows, cap):
        xp = self.xp
        hs = xp.minimum(self.h[rows], cap)
        k1 = self.k[rows, ...]
        fresh = ~self.known[rows]
        if bool(xp.any(fresh)):
            k1[fresh, ...] = xp.astype(direction(old[fresh, ...]), old.dtype, copy=False)
        stalled = ~(xp.all(xp.isfinite(k1), axis=1) & xp.any(k1 != 0, axis=1))
        k1 = xp.where(stalled[:, None], 0.0, k1)
        new, every, err, k_last, turned = _embedded_arc_step(direction, old, hs[:, None], k1, self.pair, self.rtol,
                                                             self.atol, xp)
        accept = every & (err <= 1.0) & ~stalled
        blind = ~every & ~stalled
        fails = self.fails[rows] + xp.astype(blind, xp.int64)
        fall = blind & (fails > HALVINGS)
        grow = SAFETY * xp.where(err > 0, err, 1e-300) ** (-1.0 / self.pair.order)
        factor = xp.where(accept, xp.clip(grow, SHRINK, GROW), xp.clip(grow, SHRINK, 1.0))
        self.h[rows] = xp.where(blind, hs / 2, hs * factor)
        self.fails[rows] = fails
        new = xp.where(fall[:, None], old + hs[:, None] * k1, new)
        turned = xp.where(fall, k1[:, 0] < 0, turned)
        moved = accept | fall
        new = xp.where(moved[:, None], new, old)
        self.k[rows, ...] = xp.where(accept[:, None], k_last, k1)
        self.known[rows] = (self.known[rows] | fresh) & ~fall
        return new, stalled, turned & moved, moved


def _judge(old, new, stalled, ends, targets, centre, xp):
    """Status (``-1``: still active) and end point of each stepped line (rules of the module docstring)."""
    L, behind = float(ends.L), float(ends.behind)
    z_old, z_new = old[:, 0], new[:, 0]
    crossed = ~stalled & (z_old < L) & (z_new >= L)
    new = cut(old, new, L, crossed, xp)
    near = ~stalled & (new[:, 0] <= L) & (
        nearest_sq(new[:, 1:], targets, xp) + (new[:, 0] - L) ** 2 <= float(ends.radius) ** 2)
    if not ends.capture:  # only through the plate (rule 2), not before it (rule 3)
        near = near & crossed
    open_ = ~stalled & ~crossed & ~near
    back = open_ & (z_new <= behind) & (z_new < z_old)
    new = cut(old, new, behind, back & (z_old > behind), xp)
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
               on_step=None, rtol=1e-6, atol=1e-6):
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
        distance to the nearest charge); for an adaptive method the largest step.
    max_steps : int
        Lines still active after this many steps (tried steps, for an adaptive method) are lost.
    method : {"euler", "heun", "rk4", "bs32", "dopri5"}
        A fixed-step method or an embedded pair (:mod:`physfield.lines.rk`). An embedded pair
        gives each line its own step: a step whose scaled error (the root mean square over the
        coordinates of ``error / (atol + rtol max(|p|, |p_new|))``) exceeds 1 is rejected and
        retried shorter; after each step the next is ``h min(5, max(0.2, 0.9 err^(-1/order)))``,
        at most ``h(p)``.
    keep : bool
        Also return all lines' points after every step (ended lines frozen).
    planes : sequence or array (Q,), optional
        Levels ``z_q`` whose net crossings are counted.
    record : bool
        Also return every crossing of the planes (``events``, :class:`Crossings`).
    on_step : callable, optional
        Called after every step with the number of lines still active (a progress bar).
    rtol, atol : float
        The tolerances of an embedded pair (``> 0`` together); ignored by the fixed methods.

    Returns
    -------
    ArcLines
        ``(status, end, turned, length, chord, steps, crossings, path, events)``.
    """
    check_method(method, METHODS)
    max_steps = positive_int("max_steps", max_steps)
    if method in PAIRS and not finite_number("rtol", rtol, 0.0) + finite_number("atol", atol, 0.0) > 0:
        raise ValueError("rtol and atol must not both be 0")
    if not callable(h):
        h = finite_number("h", h, 0.0, strict=True)
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
    calls = [0]
    adaptive = _Adaptive(PAIRS[method], rtol, atol, n, p, xp) if method in PAIRS else None

    def counted(q):
        calls[0] += 1
        return direction(q)

    for _ in range(max_steps):
        active = status < 0
        if not bool(xp.any(active)):
            break
        old = p[active, ...]
        cap = _step_sizes(h, old, xp)
        if adaptive is None:
            new, stalled, neg = _arc_step(counted, old, cap, method, xp)
            moved = xp.ones(old.shape[0], dtype=xp.bool, device=dev)
        else:
            cap = cap[:, 0] if hasattr(cap, "shape") else xp.full(old.shape[0], cap, dtype=dtype, device=dev)
            new, stalled, neg, moved = adaptive.step(counted, old, active, cap)
        s, new = _judge(old, new, stalled, ends, targets, centre, xp)
        if zq is not None:
            crossings = crossings + net(old[:, 0], new[:, 0], zq, xp)
        if record:
            events.extend(step_crossings(old, new, line_ids[active], zq, xp))
        length[active] = length[active] + xp.linalg.vector_norm(new - old, axis=1)
        turned[active] = turned[active] | neg
        steps[active] = steps[active] + xp.astype(moved, xp.int64)
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
                             for k, empty in enumerate(no_crossings(p, xp))))
    return ArcLines(status, p, turned, length, chord, steps, crossings, path, events, calls[0])


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
