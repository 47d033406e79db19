"""Field lines of any field and how they end: ``physfield trace``.

``trace(field, sources, sinks, plan=..., n_lines=..., seed=...)`` treats the field as a black box
(it calls only ``bind`` and the bound ``direction``) and follows every field the same way, with
the one follower of :mod:`physfield.lines`:

- **starts**: flux-weighted on spheres of radius ``r0`` around the sources ``(0, a_i)``: source
  ``i`` with probability ``alpha_i = sum_j pi_ij``, a point of its sphere with density
  ``max(E . n, 0)`` (:func:`physfield.lines.sphere_starts`). A field that vanishes behind the
  plate gives no back-facing starts; the Coulomb field's isotropic flux gives half of them.
- **lines**: ``dp/dtau = E/|E|`` in arc length, free to turn back and to pass either plate, by
  :data:`METHOD` (the Bogacki-Shampine pair, each line its own step, tolerance :data:`RTOL`) with
  steps at most ``min(h_max, step_frac * distance to the nearest charge)`` (:data:`STEP_LIMITS`),
  so lines resolve the charges they approach; ``method="rk4"`` takes fixed steps of that length.
- **ends** (:class:`physfield.lines.Ends`): ``arrived`` within ``r0`` of a sink ``(L, b_j)`` or
  through ``z = L`` within ``r0`` of one; ``leaked`` through ``z = L`` away from every sink;
  ``reversed`` back behind the source plate (a step moving backwards to ``z <= 0``; where a line
  starts does not count); ``lost`` at a null point, beyond ``R_max`` or after ``max_steps``.
  Every line has one of these; ``turned`` marks the lines that met ``E_z < 0`` somewhere.

Statistics (``stats``): the four shares and ``turned``; ``straightness``, the mean arc length /
chord of the arrived lines; ``flux_error``, ``max_q |net crossings of plane z_q / n - 1|`` over
``planes`` evenly spaced planes (a backward crossing counts ``-1``: a flux-conserving field whose
lines all run from ``P`` to ``Q`` gives 0); ``w2``, the exact ``W2`` between the arrived lines'
end points and the sinks; ``evaluations``, the calls of the field's ``direction`` (each on the
lines still going: 3 a step for ``bs32``, 4 for RK4); ``seconds``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from dataclasses import field as dataclass_field

import numpy as np

from . import lines, plans, validate
from .metrics import w2
from .progress import bar as progress_bar
from .progress import ended_lines


@dataclass
class TraceResult:
    """The field lines of one :func:`trace` and how they ended; each argument is kept as the
    attribute of the same name.

    Parameters
    ----------
    endpoints : ndarray, ``(n_lines, D+1)``
        Where each line ended (column 0 = ``z``).
    starts : ndarray, ``(n_lines, D+1)``
        Where each line started (flux-weighted on the spheres around the sources).
    flags : dict
        Per-line boolean arrays ``(n_lines,)`` by name: ``arrived``, ``reversed``, ``leaked``,
        ``lost`` (exactly one of these four per line) and ``turned`` (the line met ``E_z < 0``).
    stats : dict
        The statistics of the trace (module docstring; :func:`trace` lists the keys).
    source : ndarray of int, ``(n_lines,)``, optional
        The source index of each line (default ``None``).
    paths : list of ndarray, optional
        ``(n_lines, D+1)`` snapshots of all lines, the starts and the points after every step
        (ended lines frozen), when ``keep_paths``; ``None`` (the default) otherwise.
    lines : physfield.lines.ArcLines, optional
        The follower's result (default ``None``).
    geometry : physfield.tracing.Geometry, optional
        The geometry used: ``r0``, ``h_max``, ``R_max``, ``step_frac`` (default ``None``).
    """

    endpoints: np.ndarray
    starts: np.ndarray
    flags: dict
    stats: dict
    source: np.ndarray | None = None
    paths: list | None = dataclass_field(default=None, repr=False)
    lines: object = dataclass_field(default=None, repr=False)
    geometry: object = dataclass_field(default=None, repr=False)

    def outcome(self):
        """One label per line (its status)."""
        label = np.full(len(self.endpoints), "lost", dtype=object)
        for name in lines.STATUS:
            label[self.flags[name]] = name
        return label


#: ``(h_max / (L + spread), step_frac)`` by the kind of method: fixed steps resolve the lines
#: with these; an embedded pair controls its error and needs only a bound near the charges, which
#: keeps a step from jumping past a sink (measured: ``bench/bench_trace.py``)
STEP_LIMITS = {"fixed": (0.02, 0.25), "adaptive": (0.1, 0.5)}
#: the tolerance (``rtol = atol``) of an embedded pair in :func:`trace`
RTOL = 1e-4
#: the default method of :func:`trace`
METHOD = "bs32"


@dataclass(frozen=True)
class Geometry:
    """The scales of a trace, from the charges alone: ``r0`` (start sphere and capture radius),
    ``h_max`` (longest step), ``R_max`` (escape radius), ``step_frac``."""

    sources: np.ndarray  # (N, D+1) points (0, a_i)
    sinks: np.ndarray  # (M, D+1) points (L, b_j)
    L: float
    r0: float
    h_max: float
    R_max: float
    step_frac: float

    @classmethod
    def of(cls, A, B, L, r0=None, h_max=None, R_max=None, step_frac=None, method="rk4"):
        """The geometry of charges ``A``, ``B`` at plate distance ``L``; a scale not given is the
        default of :data:`STEP_LIMITS` for ``method``'s kind (fixed or adaptive)."""
        h_frac, near_frac = STEP_LIMITS["adaptive" if method in lines.PAIRS else "fixed"]
        step_frac = near_frac if step_frac is None else step_frac
        sources = np.column_stack([np.zeros(len(A)), A])
        sinks = np.column_stack([np.full(len(B), L), B])
        charges = np.concatenate([sources, sinks])
        spread = float(np.ptp(charges[:, 1:], axis=0).max()) or 1.0
        r0 = 0.1 * min(_nearest_spacing(charges), L) if r0 is None else validate.positive("r0", r0)
        h_max = h_frac * (L + spread) if h_max is None else validate.positive("h_max", h_max)
        R_max = 10 * (L + spread) if R_max is None else validate.positive("R_max", R_max)
        return cls(sources, sinks, float(L), float(r0), float(h_max), float(R_max),
                   validate.positive("step_frac", step_frac))

    @property
    def charges(self):
        return np.concatenate([self.sources, self.sinks])

    def ends(self):
        return lines.Ends(L=self.L, targets=self.sinks[:, 1:], radius=self.r0,
                          centre=self.charges.mean(axis=0), R_max=self.R_max)

    def step(self, p):
        """``min(h_max, step_frac * distance to the nearest charge)`` per row of ``p``."""
        return np.minimum(self.h_max, self.step_frac * np.sqrt(lines.nearest_sq(p, self.charges)))


def follow(bound, alpha, geometry, n_lines, rng, max_steps=4000, planes=(), keep_paths=False, record=False,
           progress=False, proposals=64, method="rk4", rtol=RTOL):
    """Lines of a bound field (module docstring): ``(starts, arc lines)``.

    ``bound``: a bound field (``field.bind(A, B, plan)``); ``alpha``: the source weights;
    ``planes``: levels whose net crossings are counted (and, with ``record``, where each line
    crossed them); ``proposals``: sphere proposals per start (:func:`physfield.lines.sphere_starts`);
    ``method``, ``rtol`` (``= atol``): :func:`physfield.lines.follow_arc`'s.
    """
    def field_at(p):
        return bound.direction(p)

    starts = lines.sphere_starts(field_at, geometry.sources, alpha, geometry.r0, n_lines, rng, proposals)
    bar = progress_bar(n_lines, "tracing", "line", enabled=progress)
    res = lines.follow_arc(lambda p: bound.direction(p)[0], starts.points, geometry.ends(), geometry.step,
                           int(max_steps), keep=keep_paths,
                           planes=np.asarray(planes, dtype=np.float64) if len(planes) else None,
                           record=record, on_step=ended_lines(bar, n_lines), method=method, rtol=rtol, atol=rtol)
    bar.close()
    return starts, res


def trace(field, sources, sinks, plan="paired", n_lines=512, seed=0, keep_paths=False, backend="auto",
          progress=False, r0=None, h_max=None, R_max=None, max_steps=4000, step_frac=None, planes=7, method=METHOD,
          rtol=RTOL):
    """Trace ``n_lines`` field lines of ``field`` between ``sources`` and ``sinks`` (module docstring).

    Parameters
    ----------
    field : physfield.fields.Field
    sources, sinks : array_like, ``(N, D)`` and ``(M, D)``
    plan : str or array_like
        A plan name or an ``(N, M)`` coupling (solved once).
    n_lines : int
    seed : int
        Seeds the starts.
    keep_paths : bool
        Keep every line's points (for pictures).
    backend : str
    r0, h_max, R_max, step_frac : float, optional
        Start and capture radius (default ``0.1 min(nearest charge spacing, L)``), longest step
        (``0.02 (L + spread)``; adaptive: ``0.1 (L + spread)``), escape radius (``10 (L +
        spread)``), step / distance to the nearest charge (0.25; adaptive: 0.5); :data:`STEP_LIMITS`.
    progress : bool
        Show a tqdm bar of the lines still going.
    max_steps : int
        Steps after which a line that has not ended is lost.
    method : str
        ``rk4`` (the default), ``euler``, ``heun``, or an embedded pair ``bs32``, ``dopri5``
        (:func:`physfield.lines.follow_arc`).
    rtol : float
        The embedded pair's tolerance (``rtol = atol``).
    planes : int
        How many planes ``z = L q``, ``q`` evenly inside ``(0, 1)``, the flux error is measured on.

    Returns
    -------
    TraceResult
        ``stats``: n_lines, arrived, reversed, leaked, lost, turned, straightness, flux_error,
        w2, r0, h_max, evaluations, seconds.
    """
    sources, sinks = validate.charges(sources, sinks)
    if int(n_lines) < 1:
        raise ValueError(f"n_lines must be >= 1, got {n_lines}")
    n = int(n_lines)
    rng = np.random.default_rng(seed)
    t0 = time.perf_counter()
    A, B = np.asarray(sources, np.float64), np.asarray(sinks, np.float64)
    plan = plans.resolve(plan, A, B)  # once: an OT plan is not solved again for every step
    alpha, _ = plans.marginals(plan, A, B)
    geometry = Geometry.of(A, B, field.L, r0, h_max, R_max, step_frac, method)
    bound = field.bind(A, B, plan=plan, backend=backend)
    zq = field.L * np.arange(1, planes + 1) / (planes + 1)
    starts, res = follow(bound, alpha, geometry, n, rng, max_steps, zq, keep_paths, progress=progress, method=method,
                         rtol=rtol)
    flags = {name: res.status == code for code, name in enumerate(lines.STATUS)}
    flags["turned"] = np.asarray(res.turned)
    arrived = flags["arrived"]
    stats = {
        "n_lines": n,
        **{name: float(np.mean(flag)) for name, flag in flags.items()},
        "straightness": lines.straightness(res.length, res.chord, arrived),
        "flux_error": float(np.max(np.abs(res.crossings / n - 1.0))),
        "w2": w2(res.end[arrived, 1:], B) if arrived.any() else float("nan"),
        "r0": geometry.r0,
        "h_max": geometry.h_max,
        "evaluations": res.evaluations,
        "seconds": time.perf_counter() - t0,
    }
    return TraceResult(endpoints=res.end, starts=starts.points, flags=flags, stats=stats, source=starts.centre,
                       paths=res.path, lines=res, geometry=geometry)


#: the statistics :func:`table` shows, one column each
TABLE_STATS = ("arrived", "reversed", "leaked", "lost", "turned", "straightness", "flux_error", "w2")


def sweep(specs, Ls, sources, sinks, params=None, **options):
    """``physfield trace`` in Python: trace each field at each plate distance on the same charges.

    Parameters
    ----------
    specs : sequence of str
        Field names or ``module:Class`` (:func:`physfield.fields.get`).
    Ls : sequence of float
        Plate distances.
    sources, sinks : array_like, ``(N, D)`` and ``(M, D)``
    params : dict, optional
        Parameters of the fields' constructors besides ``L``; with several fields, each takes only
        those of its own constructor (``sigma0`` goes to ``strong``, not to ``coulomb``).
    **options
        Passed to :func:`trace` (``plan``, ``n_lines``, ``seed``, ``max_steps``, ``keep_paths``,
        ``backend``, ``progress``, ``method``, ``rtol``).

    Returns
    -------
    list of (Field, TraceResult)
        For each ``L`` in order, each field in order.
    """
    from . import fields

    params = dict(params or {})
    out = []
    for L in Ls:
        for spec in specs:
            known = fields.get(spec).parameter_names()
            given = {k: v for k, v in params.items() if len(specs) == 1 or k in known}
            field = fields.build(spec, L=L, **given)
            out.append((field, trace(field, sources, sinks, **options)))
    return out


def table(results):
    """Aligned text table of :func:`sweep`'s results: one row per (field, L), the columns of
    :data:`TABLE_STATS`, the field's evaluations and the seconds taken."""
    head = ("field", "L", *TABLE_STATS, "evaluations", "seconds")
    rows = [{"field": field.spec(), "L": field.L, **res.stats} for field, res in results]
    cells = [head] + [tuple(f"{r[k]:.3g}" if isinstance(r[k], float) else str(r[k]) for k in head) for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(head))]
    return "\n".join("  ".join(c[i].rjust(widths[i]) for i in range(len(head))) for c in cells)


def _nearest_spacing(charges):
    """Smallest distance between two distinct charges (the scale of ``r0``)."""
    d = np.sqrt(((charges[:, None, :] - charges[None]) ** 2).sum(axis=-1))
    d = d[d > 0]
    return float(d.min()) if d.size else 1.0
