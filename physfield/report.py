"""The property report behind ``physfield check``: every property measured on a black box.

:func:`measure` treats the field as a black box: it calls only ``field.bind`` and the bound
``direction``, on the user's charges and plan and on small configurations of its own. Each
property of :data:`physfield.fields.CLAIMS` is measured by procedures a wrong field fails; a row
is ``pass``/``fail`` when the field claims its property, ``measured`` otherwise. The procedures:

- **lines** (:mod:`physfield.tracing`): ``N_LINES`` lines from flux-weighted starts on small
  spheres around the sources, followed in arc length, free to turn back or pass ``z = L``.
  ``endpoints``: the share that does not end at a sink. ``flux``: the net number of lines
  through each of ``PLANES`` (a backward crossing counts ``-1``) over ``N_LINES``, minus 1.
  ``forward``: the share that went back behind ``P`` or met ``E_z < 0``. ``vanishes_outside``:
  the share that passed ``z = L`` away from every sink.
- **plane flux** (``flux``): ``int E_z dx`` on each of ``PLANES`` by importance sampling from the
  lines' crossings and the straight interpolations of the plan's heaviest pair at each charge
  (:func:`physfield.checks.plane_flux`), within 5 standard errors of 1 (and a
  standard error below ``FLUX_SE``: an estimate too noisy to test fails). Up to
  ``D = MAX_IS_DIM``; beyond, a kernel proposal from a few hundred crossings cannot resolve a
  field on a plane of ``D`` dimensions, and this row and the two transport rows say so (``n/a``).
- **transport** (``divergence_free``): on the same planes, the lines carry the flux of ``E_z``
  (the transport theorem for a divergence-free field whose lines start flux-weighted): the
  flux, mean and spread of the lines' signed crossings against those of ``E_z``, within
  ``SCORE`` standard errors. A divergence anywhere between the source and the plane shows here.
- **divergence** (``divergence_free``): central differences at points on the lines, relative to
  ``|E| / l`` with ``l`` the local scale of ``|E|`` measured by a pilot stencil; at most
  ``DIV_SHARE`` of the points above ``DIV_TOL`` (a stencil that straddles a kink of a smooth
  field's second derivative is allowed, a divergent field fails nearly everywhere).
- **superposition**: for 4 sources, 4 sinks and a random non-uniform plan, ``E_pi`` against
  ``sum_ij pi_ij E_ij`` of the single-pair fields, relative error below ``SUPER_TOL``.
- **pairing**: a configuration of 3 sources and 3 sinks in a staircase plan of unequal weights,
  spaced far beyond the width of a single pair's lines (measured first): the share of lines from
  source ``i`` ending at sink ``j`` against ``pi_ij`` by Pearson's chi-square test, p-value
  above ``P_MIN``, and at most ``LINE_TOL`` of the lines ending off the plan's cells. This
  configuration and the single pair live in ``D = min(D, MAX_IS_DIM)``.
- **gauss**: the flux out of small spheres around a few charges equals their charge
  (quadrature for ``D <= 2``, mirrored Monte Carlo beyond); half-spheres measure the flux that
  leaves the sources backwards (``forward``) and enters the sinks from behind
  (``vanishes_outside``).
- **probes**: ``E_z`` at points inside the plates (``forward``), ``|E|`` outside (``vanishes_outside``).

Each row is a dict: ``name``, ``property``, ``value``, ``threshold``, ``claim`` (the threshold in
words), ``status`` (``pass``, ``fail``, ``measured``, or ``n/a`` where a procedure does not apply,
with the reason as its method), ``method`` (and extras).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import cached_property

import numpy as np
from scipy.spatial.distance import cdist
from scipy.stats import chi2

from . import checks, plans
from .progress import bar as progress_bar
from .kernels import get_backend
from .lines import PAIRS, STATUS
from .tracing import METHOD, RTOL, Geometry, follow

PLANES = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)  # flux planes z / L
N_LINES = 512
N_SINGLE = 1024  # lines of the single-pair configuration
N_PROBE_PLANES = 24  # random planes whose crossings are the divergence probes
N_INSIDE, N_OUTSIDE, N_DIVERGENCE = 4096, 1024, 256  # probe points
N_CHARGES = 4  # Gauss spheres around this many sources and as many sinks
LINE_TOL = 0.01  # lines: largest share not arriving / net crossings off by
FLUX_SE = 0.02  # plane flux: largest standard error of a usable estimate
SCORE = 5.0  # transport: largest |difference| / standard error
GAUSS_TOL = 1e-6  # quadrature; a Monte Carlo estimate may also be off by 5 standard errors
DIV_TOL = 1e-6  # |div E| / (|E| / l)
DIV_SHARE = 0.01  # largest share of divergence probes above DIV_TOL
STEP = 1e-4  # central-difference step / local scale
STENCIL_BUDGET = 2e7  # numbers in all divergence stencils together: fewer probe points at large D
SPHERE = 0.1  # sphere radius / distance to the nearest other charge
SUPER_TOL = 1e-9  # superposition: relative error
P_MIN = 1e-3  # pairing: smallest p-value
MAX_IS_DIM = 3  # plane flux and transport: importance sampling from the crossings resolves E_z up to this D
PAIRING_PROPOSALS = 256  # sphere proposals per line of the pairing configuration (its starts' bias ~ 1/m)
MAX_STEPS = 4000  # steps after which a line that has not ended is lost


@dataclass
class Setup:
    """A field with its charges, plan and backend, and the lines followed once."""

    field: object
    A: np.ndarray
    B: np.ndarray
    plan: object
    backend: str
    rng: np.random.Generator
    n_lines: int = N_LINES
    max_steps: int = MAX_STEPS
    method: str = METHOD
    rtol: float = RTOL

    def follow(self, bound, alpha, geometry, n_lines, **options):
        """:func:`physfield.tracing.follow` with this check's stepper, tolerance and step cap."""
        return follow(bound, alpha, geometry, n_lines, self.rng, self.max_steps, method=self.method, rtol=self.rtol,
                      **options)

    @property
    def stepping(self):
        """The stepper in words, for the rows' methods."""
        return f"{self.method} (rtol = atol = {self.rtol:g})" if self.method in PAIRS else self.method

    def geometry_of(self, A, B, **scales):
        """:meth:`physfield.tracing.Geometry.of` with the step bounds of this check's stepper."""
        return Geometry.of(A, B, self.L, method=self.method, **scales)

    @property
    def dim(self):
        return self.A.shape[1]

    @property
    def L(self):
        return self.field.L

    @cached_property
    def marginals(self):
        return plans.marginals(self.plan, self.A, self.B)

    @cached_property
    def bound(self):
        return self.field.bind(self.A, self.B, plan=self.plan, backend=self.backend)

    def direction(self, points):
        return self.bound.direction(points)

    @cached_property
    def geometry(self):
        return self.geometry_of(self.A, self.B)

    @cached_property
    def probe_planes(self):
        return np.sort(self.rng.uniform(0.02, 0.98, N_PROBE_PLANES)) * self.L

    @property
    def small_dim(self):
        """The dimension of the check's own configurations (single pair, pairing): the user's ``D``
        up to ``MAX_IS_DIM``, where flux-weighted starts and the plane's importance sampling are
        exact enough (a field's formula does not depend on ``D``; its charges set it)."""
        return min(self.dim, MAX_IS_DIM)

    @cached_property
    def single(self):
        """One pair ``0 -> 0`` in ``small_dim``: ``(bound, geometry, starts, ArcLines)``,
        ``N_SINGLE`` lines with the crossings of ``PLANES`` recorded."""
        origin = np.zeros((1, self.small_dim))
        bound = self.field.bind(origin, origin, plan=np.ones((1, 1)), backend=self.backend)
        geometry = self.geometry_of(origin, origin, r0=1e-3 * self.L)
        starts, res = self.follow(bound, np.ones(1), geometry, N_SINGLE, planes=self.L * np.asarray(PLANES),
                                  record=True)
        return bound, geometry, starts, res

    @cached_property
    def lines(self):
        """``(starts, ArcLines)`` on ``PLANES`` and the probe planes, crossings recorded."""
        planes = np.concatenate([self.L * np.asarray(PLANES), self.probe_planes])
        return self.follow(self.bound, self.marginals[0], self.geometry, self.n_lines, planes=planes, record=True)


def finite(x):
    """``x`` as a float, ``None`` (JSON ``null``) when it is not finite."""
    return float(x) if np.isfinite(x) else None


def status(prop, claims, ok):
    """The status of a row measuring the property ``prop``: ``pass`` or ``fail`` (``ok``) when it
    is one of the field's ``claims``, ``measured`` otherwise."""
    return ("pass" if ok else "fail") if prop in claims else "measured"


def passed(rows):
    """Whether no row failed (every claimed property holds)."""
    return all(r["status"] != "fail" for r in rows)


def verdict(rows):
    """``all K claimed properties hold`` or ``FAILED: names (k of K claimed properties)``."""
    claimed = [r for r in rows if r["status"] in ("pass", "fail")]
    failed = [r["name"] for r in claimed if r["status"] == "fail"]
    return (f"all {len(claimed)} claimed properties hold" if not failed
            else f"FAILED: {', '.join(failed)} ({len(failed)} of {len(claimed)} claimed properties)")


def make_row(s, name, prop, value, ok, threshold, claim, method, **extra):
    """One line of the table (and one entry of ``--json``): :func:`status` of ``prop``; a
    non-finite value fails a claim."""
    value = finite(value)
    return {"name": name, "property": prop, "value": value, "threshold": threshold, "claim": claim,
            "status": status(prop, s.field.claims, ok and value is not None), "method": method, **extra}


def box(s, pad=0.5):
    """Bounding box of the charges, widened by ``pad`` times its extent (at least 0.1 L) per side."""
    AB = np.concatenate([s.A, s.B])
    lo, hi = AB.min(axis=0), AB.max(axis=0)
    margin = pad * np.maximum(hi - lo, 0.1 * s.L)
    return lo - margin, hi + margin


def open_planes(L, r0):
    """Mask of the :data:`PLANES` outside the start and capture spheres (``r0 < z < L - r0``): a
    line that starts on a sphere of radius ``r0`` around its source has passed a plane that cuts
    the sphere without crossing it, so only these planes see the lines' flux."""
    z = L * np.asarray(PLANES)
    return (r0 < z) & (z < L - r0)


def line_rows(s):
    _, res = s.lines
    n = s.n_lines
    share = {name: float(np.mean(res.status == code)) for code, name in enumerate(STATUS)}
    back = float(np.mean((res.status == STATUS.index("reversed")) | res.turned))
    open_ = open_planes(s.L, s.geometry.r0)
    net = res.crossings[:len(PLANES)][open_] / n
    how = (f"{n} lines from flux-weighted starts on spheres r0={s.geometry.r0:.2g} around the sources, {s.stepping} "
           f"in arc length, {res.evaluations} evaluations")
    skipped = f"; {np.sum(~open_)} inside the spheres skipped" if not open_.all() else ""
    return [
        make_row(s, "lines_arrived", "endpoints", 1 - share["arrived"], 1 - share["arrived"] <= LINE_TOL, LINE_TOL,
                 f"<= {LINE_TOL}", f"{how}: share not ending within r0 of a sink", **share),
        make_row(s, "lines_flux", "flux", np.max(np.abs(net - 1)), np.max(np.abs(net - 1)) <= LINE_TOL, LINE_TOL,
                 f"<= {LINE_TOL}", f"net crossings of {open_.sum()} planes by the lines / {n} - 1 (backward: -1)"
                 f"{skipped}", planes=[finite(v) for v in net]),
        make_row(s, "lines_reversed", "forward", back, back == 0, 0.0, "= 0",
                 "share of the lines back behind z = 0 or meeting E_z < 0"),
        make_row(s, "lines_leaked", "vanishes_outside", share["leaked"], share["leaked"] == 0, 0.0, "= 0",
                 "share of the lines through z = L away from every sink"),
    ]


def plane_rows(s):
    """Plane flux by importance sampling from the crossings, and the lines against ``E_z``: on the
    user's charges (up to ``D = MAX_IS_DIM``), and on a single pair in ``small_dim`` (where a wrong
    width shows without the data's spread)."""
    single_bound, single_geometry, _, single = s.single
    origin = np.zeros((1, s.small_dim))
    _, single_scores = _planes(s, single_bound.direction, single.events, single_geometry, N_SINGLE, (origin, origin))
    where = f"{len(PLANES)} planes z/L={PLANES[0]}..{PLANES[-1]}"
    pair_row = _transport_row(s, "transport_pair", single_scores, single,
                              f"one pair in D = {s.small_dim}, {N_SINGLE} lines", where)
    if s.dim > MAX_IS_DIM:
        reason = (f"not applicable in D = {s.dim}: importance sampling from the lines' crossings resolves E_z "
                  f"on a plane up to D = {MAX_IS_DIM} (the lines' net crossings and Gauss's law still measure "
                  "the flux)")
        return [dict(make_row(s, name, prop, np.nan, False, None, "-", reason), status="n/a", value=None)
                for name, prop in (("plane_flux", "flux"), ("transport", "divergence_free"))] + [pair_row]
    pairs = heaviest_pairs(*plans.support(s.plan, s.A, s.B), s.A, s.B)
    fluxes, scores = _planes(s, s.direction, s.lines[1].events, s.geometry, s.n_lines, pairs)
    error = max(abs(f - 1) for _, f, _ in fluxes)
    worst_se = max(se for _, _, se in fluxes)
    ok = all(abs(f - 1) <= 5 * se + GAUSS_TOL and se <= FLUX_SE for _, f, se in fluxes)
    planes = [{"z": float(z), "flux": finite(f), "se": finite(se)} for z, f, se in fluxes]
    return [make_row(s, "plane_flux", "flux", error, ok, None, f"< 5 s.e. ({5 * worst_se:.2g}), s.e. <= {FLUX_SE}",
                     f"{where}: int E_z dx by importance sampling from the lines' crossings", planes=planes),
            _transport_row(s, "transport", scores, s.lines[1], "the data", where), pair_row]


def _transport_row(s, name, values, res, what, where):
    """The transport row of ``values`` (scores per plane); ``n/a`` when the lines ``res`` do not
    all end at a sink (lines stopped behind P or past Q carry flux the planes still see)."""
    row = make_row(s, name, "divergence_free", max(values), max(values) <= SCORE, SCORE, f"<= {SCORE:g} s.e.",
                   f"{where}, {what}: the lines' crossings (flux, mean, spread) vs E_z",
                   scores=[finite(v) for v in values])
    ended = float(np.mean(res.status == STATUS.index("arrived")))
    if ended < 1 - LINE_TOL:
        row.update(status="n/a", method=f"{what}: not applicable, only {ended:.0%} of the lines end at a sink "
                   "(the others are stopped where their flux still crosses the planes)")
    return row


def heaviest_pairs(I, J, logw, A, B):
    """``(a, b)`` of the plan's heaviest pair at each source and at each sink (at most ``N + M``
    pairs): their straight interpolations put proposal mass near every string of the plan."""
    pick = []
    for index in (I, J):
        order = np.lexsort((-logw, index))
        first = np.ones(len(order), dtype=bool)
        first[1:] = index[order][1:] != index[order][:-1]
        pick.append(order[first])
    pick = np.unique(np.concatenate(pick))
    return A[I[pick]], B[J[pick]]


def _planes(s, direction, events, geometry, n, pairs):
    """Per plane of ``PLANES``: ``(z, flux, s.e.)`` by importance sampling from the crossings (and
    the straight interpolations ``(1 - t) a + t b`` of ``pairs``, ``(a, b)``), and the transport
    score of the lines (:func:`physfield.checks.transport_scores`)."""
    centre = geometry.charges.mean(axis=0)[1:]
    fluxes, scores = [], []
    for q, zq in enumerate(s.L * np.asarray(PLANES)):
        if not open_planes(s.L, geometry.r0)[q]:
            continue
        mine = events.plane == q
        X = events.point[mine][:, 1:]
        if len(X) < 2:
            fluxes.append((zq, np.nan, np.nan))
            scores.append(np.nan)
            continue
        t = zq / s.L
        y, w, se = checks.plane_flux(direction, zq, X, s.rng, extra=(1 - t) * pairs[0] + t * pairs[1],
                                     target_se=FLUX_SE / 2 if "flux" in s.field.claims else None)
        fluxes.append((zq, w.sum(), se))
        scores.append(checks.transport_scores(X, events.sign[mine], events.line[mine], n, y, w, centre))
    return fluxes, scores


def probe_rows(s):
    """``E_z`` at probe points inside, ``|E|`` at probe points outside the plates."""
    lo, hi = box(s)
    u, log_inside = s.direction(checks.probes_inside(s.rng, N_INSIDE, s.L, lo, hi))
    live = np.isfinite(log_inside)  # where E != 0 (a field may underflow far from the data)
    min_ez, negative = checks.ez_stats(u[live]) if live.any() else (np.nan, np.nan)
    _, log_outside = s.direction(checks.probes_outside(s.rng, N_OUTSIDE, s.L, lo, hi))
    outside = checks.max_magnitude(log_outside, np.max(log_inside))
    inside = f"{N_INSIDE} points 0<z<L, 1/4 near a plate ({int(live.sum())} with E != 0)"
    return [
        make_row(s, "min_ez", "forward", min_ez, min_ez > 0, 0.0, "> 0", inside),
        make_row(s, "ez_negative", "forward", negative, negative == 0, 0.0, "= 0", inside),
        make_row(s, "max_outside", "vanishes_outside", outside, outside == 0, 0.0, "= 0",
                 f"{N_OUTSIDE} points z<=0 or z>=L, |E| / max |E| inside"),
    ]


def divergence_rows(s):
    """Central differences at points on the lines, relative to ``|E| / l`` (module docstring)."""
    events = s.lines[1].events
    P = events.point[events.plane >= len(PLANES)]
    charges = s.geometry.charges
    P = P[cdist(P, charges).min(axis=1) > s.geometry.r0]
    count = int(min(N_DIVERGENCE, len(P), max(2, STENCIL_BUDGET // (2 * (s.dim + 1) ** 2))))
    P = P[s.rng.choice(len(P), count, replace=False)] if len(P) else P
    spread = float(np.ptp(charges[:, 1:], axis=0).max()) or 1.0
    scale = checks.local_scale(s.direction, P, 1e-6 * (s.L + spread), s.L + spread)
    keep = np.isfinite(scale)
    residual = checks.divergence_residual(s.direction, P[keep], STEP * scale[keep], scale[keep])
    share = float(np.mean(residual > DIV_TOL)) if len(residual) else np.nan
    return [make_row(s, "divergence", "divergence_free", share, share <= DIV_SHARE, DIV_SHARE,
                     f"<= {DIV_SHARE} above {DIV_TOL:.0e}",
                     f"{len(residual)} points on the lines: share with |div E| l/|E| > {DIV_TOL:.0e}, "
                     "l measured by a pilot stencil", median=finite(np.median(residual)) if len(residual) else None)]


def superposition_rows(s):
    """``E_pi`` against ``sum pi_ij E_ij`` for a sub-configuration with a random non-uniform plan."""
    rng = s.rng
    A = s.A[rng.permutation(len(s.A))[:4]]
    B = s.B[rng.permutation(len(s.B))[:4]]
    pi = rng.random((len(A), len(B))) ** 3 + 1e-3
    pi /= pi.sum()
    z = rng.uniform(0.05, 0.95, 64) * s.L
    i, j = rng.integers(len(A), size=64), rng.integers(len(B), size=64)
    t = (z / s.L)[:, None]
    spread = float(np.ptp(np.concatenate([A, B]), axis=0).max()) or 1.0
    P = np.column_stack([z, (1 - t) * A[i] + t * B[j] + 0.1 * spread * rng.standard_normal((64, s.dim))])
    u, log_norm = s.field.bind(A, B, plan=pi, backend=s.backend).direction(P)
    parts = [s.field.bind(A[a:a + 1], B[b:b + 1], plan=np.ones((1, 1)), backend=s.backend).direction(P)
             for a in range(len(A)) for b in range(len(B))]
    logs = np.stack([ln + np.log(pi.flat[k]) for k, (_, ln) in enumerate(parts)])
    top = np.maximum(logs.max(axis=0), log_norm)
    live = np.isfinite(top)
    with np.errstate(invalid="ignore", over="ignore"):
        total = sum(un.astype(np.float64) * np.exp(lg - top)[:, None] for (un, _), lg in zip(parts, logs))
        mine = u.astype(np.float64) * np.exp(log_norm - top)[:, None]
        size = sum(np.exp(lg - top) for lg in logs)  # sum_ij |pi_ij E_ij| / the shift
    error = np.linalg.norm(mine - total, axis=1)[live] / size[live]
    value = float(error.max()) if live.any() else np.nan
    return [make_row(s, "superposition", "superposition", value, value <= SUPER_TOL, SUPER_TOL,
                     f"< {SUPER_TOL:.0e}", f"{len(A)}x{len(B)} charges, random plan, 64 points: "
                     "|E_pi - sum pi_ij E_ij| / sum |pi_ij E_ij|")]


def pairing_rows(s):
    """Shares of lines from source i ending at sink j against ``pi_ij`` (module docstring)."""
    D, L = s.small_dim, s.L
    _, _, _, single = s.single
    width = float(np.abs(single.events.point[:, 1:]).max()) if len(single.events.line) else L
    gap = 8 * max(width, 1e-6 * L)
    axis = np.zeros(D)
    axis[0] = gap
    A = np.arange(3)[:, None] * axis
    B = (np.arange(3)[:, None] + 0.5) * axis
    cells = [(0, 0), (0, 1), (1, 1), (1, 2), (2, 2)]
    pi = np.zeros((3, 3))
    for (a, b), w in zip(cells, (1.0, 3.0, 0.5, 2.0, 1.5)):
        pi[a, b] = w
    pi /= pi.sum()
    bound = s.field.bind(A, B, plan=pi, backend=s.backend)
    starts, res = s.follow(bound, pi.sum(axis=1), s.geometry_of(A, B), s.n_lines, proposals=PAIRING_PROPOSALS)
    arrived = res.status == STATUS.index("arrived")
    sink = np.argmin(cdist(res.end[:, 1:], B), axis=1)
    counts = np.array([np.sum(arrived & (starts.centre == a) & (sink == b)) for a, b in cells])
    expected = s.n_lines * np.array([pi[a, b] for a, b in cells])
    other = int(s.n_lines - counts.sum())  # lines ending off the plan's cells (or not at all): expected 0
    expected = counts.sum() * expected / s.n_lines  # the shares among the lines that did end on the plan
    stat = float(((counts - expected) ** 2 / np.maximum(expected, 1e-12)).sum())
    p = float(chi2.sf(stat, len(cells) - 1)) if counts.sum() else 0.0  # no line on the plan: no sign of it
    return [make_row(s, "pairing", "pairing", p, p >= P_MIN and other <= LINE_TOL * s.n_lines, P_MIN,
                     f"p >= {P_MIN:g}, off the plan <= {LINE_TOL:g}",
                     f"3+3 charges in D = {D}, {gap:.3g} apart (8x the width of a single pair's lines), "
                     f"5 unequal plan weights, {s.n_lines} lines: Pearson chi-square p-value of the shares "
                     "ending at each sink",
                     counts=counts.tolist(), expected=expected.round(1).tolist(), off_plan=other)]


def gauss_rows(s):
    """Gauss's law on small spheres around a few sources and sinks; flux through half-spheres."""
    alpha, beta = s.marginals
    charges = np.concatenate([checks.on_plane(0.0, s.A), checks.on_plane(s.L, s.B)])
    q = np.concatenate([alpha, -beta])
    N, M = len(s.A), len(s.B)
    pick = np.concatenate([s.rng.choice(N, min(N, N_CHARGES), replace=False),
                           N + s.rng.choice(M, min(M, N_CHARGES), replace=False)])
    gauss, tol, back, leak = [], [], [], []
    for k in pick[q[pick] != 0]:
        dist = np.linalg.norm(charges - charges[k], axis=1)
        r = SPHERE * min(dist[dist > 0].min(initial=s.L), s.L)
        enclosed = q[dist < r].sum()
        halves = {}
        for part in ("lower", "upper"):
            halves[part] = checks.surface_flux(s.direction, charges[k], r,
                                               checks.sphere_rule(s.dim, part, m=64, rng=s.rng))
        flux = halves["lower"][0] + halves["upper"][0]
        se = np.hypot(halves["lower"][1], halves["upper"][1])
        gauss.append(abs(flux / enclosed - 1))
        tol.append(GAUSS_TOL + 5 * se / abs(enclosed))
        (back if k < N else leak).append(halves["lower" if k < N else "upper"][0] / enclosed)
    rule = "quadrature" if s.dim <= 2 else "Monte Carlo"
    claim = f"< {GAUSS_TOL:.0e}" if s.dim <= 2 else f"< {GAUSS_TOL:.0e} + 5 s.e. ({max(tol):.2g})"
    return [
        make_row(s, "gauss", "gauss", max(gauss), all(g <= t for g, t in zip(gauss, tol)), GAUSS_TOL, claim,
                 f"{len(gauss)} spheres r={SPHERE} x nearest charge, {rule}"),
        make_row(s, "backward_flux", "forward", np.mean(back), np.max(np.abs(back)) <= GAUSS_TOL, GAUSS_TOL,
                 f"< {GAUSS_TOL:.0e}", f"flux leaving sources backwards: lower half-spheres, {len(back)} sources"),
        make_row(s, "leakage", "vanishes_outside", np.mean(leak), np.max(np.abs(leak)) <= GAUSS_TOL, GAUSS_TOL,
                 f"< {GAUSS_TOL:.0e}", f"flux entering sinks from behind: upper half-spheres, {len(leak)} sinks"),
    ]


#: each procedure and the rows it gives, in the order they run
STEPS = {
    line_rows: ("lines_arrived", "lines_flux", "lines_reversed", "lines_leaked"),
    plane_rows: ("plane_flux", "transport", "transport_pair"),
    divergence_rows: ("divergence",),
    probe_rows: ("min_ez", "ez_negative", "max_outside"),
    gauss_rows: ("gauss", "backward_flux", "leakage"),
    superposition_rows: ("superposition",),
    pairing_rows: ("pairing",),
}
ROWS = tuple(name for names in STEPS.values() for name in names)


def check(field, source="gaussian", target="8gaussians", n=256, dim=None, plan="paired", backend="auto", seed=0,
          only=None, progress=True, method=METHOD, rtol=RTOL):
    """``physfield check`` in Python: draw the charges, measure the field's properties, report.

    ``n`` sources and sinks come from the data specs, with the probes' seed, from three streams
    of ``seed`` (:func:`physfield.data.draw_pair`), so a seed reproduces the whole report; then
    :func:`measure`.

    Parameters
    ----------
    field : physfield.fields.Field
    source, target : str
        Data specs of the sources and the sinks.
    n : int
        Charges per side.
    dim : int, optional
        The dimension of a bare ``gaussian``.
    plan : str or array_like
        A plan name (``module:function`` too) or an ``(n, n)`` coupling.
    backend : str
    seed : int
    only : sequence of str, optional
        Names of :data:`ROWS` to measure (default: all).
    progress : bool
        Report the procedures done (:func:`physfield.progress.bar`).
    method : str
        The lines' stepper (default :data:`physfield.tracing.METHOD`, ``bs32``; ``rk4`` for fixed
        steps).
    rtol : float
        An embedded pair's tolerance, ``rtol = atol`` (default :data:`physfield.tracing.RTOL`).

    Returns
    -------
    dict
        ``field`` (its parameters), ``config`` (source, target, dim, n, plan, seed, backend, method, rtol),
        ``checks`` (the rows), ``passed`` (:func:`passed`), ``seconds``; :func:`text` prints it.
    """
    from . import data

    start = time.perf_counter()
    A, B, probe_seed = data.draw_pair(source, target, n, seed, dim)
    rows, used = measure(field, A, B, plan, backend, probe_seed, only=only, progress=progress, method=method, rtol=rtol)
    config = {"source": source, "target": target, "dim": A.shape[1], "n": n,
              "plan": plan if isinstance(plan, str) else "explicit", "seed": seed, "backend": used, "method": method,
              "rtol": rtol}
    return {"field": field.params(), "config": config, "checks": rows, "passed": passed(rows),
            "seconds": time.perf_counter() - start}


def rows_table(rows):
    """Aligned lines of check rows: name, property, value, claim, status, how."""
    cells = [("check", "property", "value", "claim", "status", "how")]
    cells += [(r["name"], r["property"], "nan" if r["value"] is None else f"{r['value']:.3g}", r["claim"],
               r["status"], r["method"]) for r in rows]
    widths = [max(len(cell[i]) for cell in cells) for i in range(5)]
    return [("  ".join(cell[i].ljust(widths[i]) for i in range(5)) + "  " + cell[5]).rstrip() for cell in cells]


def text(report):
    """The report of :func:`check` as ``physfield check`` prints it: a header, the rows, the verdict."""
    f, c = report["field"], report["config"]
    params = " ".join(f"{k}={v:g}" if isinstance(v, (int, float)) else f"{k}={v}" for k, v in f.items() if k != "kind")
    lines = [f"physfield check: {f['kind']} field, {params}",
             (f"data: {c['source']} -> {c['target']}, D={c['dim']}, n={c['n']} per side, plan={c['plan']}, "
              f"seed={c['seed']}, backend={c['backend']}, lines by {c['method']}"
              + (f" (rtol {c['rtol']:g})" if c["method"] in PAIRS else "")), ""]
    lines += rows_table(report["checks"])
    lines += ["", f"{verdict(report['checks'])}  [{report['seconds']:.1f} s]"]
    return "\n".join(line.rstrip() for line in lines)


def measure(field, A, B, plan, backend, seed, n_lines=N_LINES, max_steps=MAX_STEPS, only=None, progress=True,
            method=METHOD, rtol=RTOL):
    """Measure every property of ``field`` with its charges and plan; returns ``(rows, backend name)``.

    ``n_lines`` lines are followed for the line checks and the pairing configuration, each for at
    most ``max_steps`` steps (a line still going is ``lost``: it did not arrive). ``only``: names
    of :data:`ROWS` to measure (the procedures that give them run; the other rows are left out);
    all by default. ``progress``: report the procedures done (:func:`physfield.progress.bar`).
    ``method``, ``rtol``: the lines' stepper and its tolerance (``rtol = atol``), as ``physfield
    trace``'s (:func:`physfield.tracing.trace`).
    """
    only = ROWS if only is None else tuple(only)
    unknown = sorted(set(only) - set(ROWS))
    if unknown:
        raise ValueError(f"unknown check {', '.join(map(repr, unknown))}; the checks: {', '.join(ROWS)}")
    steps = [step for step, names in STEPS.items() if set(names) & set(only)]
    rng = np.random.default_rng(seed)
    plan = plans.resolve(plan, A, B)
    s = Setup(field, np.asarray(A, np.float64), np.asarray(B, np.float64), plan, get_backend(backend).name, rng,
              n_lines, int(max_steps), method, rtol)
    rows = []
    bar = progress_bar(len(steps), f"checking {field!r}", "check", enabled=progress)
    for step in steps:
        rows.extend(row for row in step(s) if row["name"] in only)
        bar.update(1)
    bar.close()
    return sorted(rows, key=lambda r: r["status"] in ("measured", "n/a")), s.backend
