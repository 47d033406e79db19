"""Training points and their field targets, batch by batch: batch ``k`` of a run is a pure function.

:func:`batch` ``(run, k)`` draws minibatch ``k`` of the run :func:`make_run` validated. Its random
generators come from ``numpy.random.SeedSequence([seed, k])`` (children: sources, sinks,
points), so batch ``k`` is the same bytes whoever computes it and in whatever order.

One minibatch:

1. ``B`` fresh draws ``a_i`` of the source and ``B`` of the target ``b_j`` (``physfield.data``).
2. The plan ``pi`` (``B x B``) of the batch: ``paired`` (``I / B``), ``independent``,
   ``optimal`` (exact OT, the IFM-MB variant; the default :data:`PLAN`, the best measured) or
   ``sinkhorn`` (entropic, ``reg`` relative to the mean cost).
3. One training point per source ``i``: its partner ``j`` is drawn from the row ``pi_i. / sum_j
   pi_ij`` (``j = i`` for ``paired``; the matched sink for an OT permutation), then::

       z ~ Z(eps, L - eps),   t = z / L
       x = (1 - t) a_i + t b_j + lambda * sqrt(sigma_n^2(z)) * xi,   xi ~ N(0, I_D)
       sigma_n^2(z) = L/2 - |L/2 - z|          (distance to the nearer plate)

   The law ``Z`` of ``z`` is the run's ``z_schedule`` (:data:`Z_SCHEDULES`): ``uniform``
   (``z ~ U(eps, L - eps)``, the default :data:`Z_SCHEDULE`) or ``logit-normal`` (``t =
   1 / (1 + exp(-n))``, ``n ~ N(0, 1)``, clipped to ``[eps, L - eps]``: the logit-normal
   timestep density of Esser et al., "Scaling Rectified Flow Transformers for High-Resolution
   Image Synthesis", ICML 2024, section 3.1: more of the training points mid-gap, fewer near
   the plates). The schedule weights the regression over ``z``; the target at a point is the
   same whichever law drew it. The README ("Generating digits") gives the figures of both: the
   logit-normal law is the better for digits, the uniform one for the 2-D toys.

   ``lambda`` is the IFM paper's knob. The run is set by the noise in units of ``t``,
   ``noise = lambda sqrt(L)``: the spread is ``noise * sqrt(min(t, 1 - t))`` whatever ``L``, so
   the same ``noise`` trains the same problem at every plate distance (with ``d = L/2`` the
   field's lines in ``(t, x)`` do not depend on ``L`` either). The default :data:`NOISE` is the
   best measured (the README, "Learning the field"); ``lambda`` may be given instead.

   For a field that does not vanish outside the plates (``field.vanishes_outside`` false: the
   Coulomb field of EFM) each point is instead, with probability ``outside_fraction`` (default
   :data:`OUTSIDE`), put outside the plates, because lines that reverse or leak run there and
   the learner must follow them: with probability 1/2 behind ``P`` at ``z = -h`` over ``a_i``,
   else beyond ``Q`` at ``z = L + h`` over ``b_j``, depth ``h ~ U(eps, L)``, with the same noise
   law ``x = anchor + lambda * sqrt(h) * xi`` (``h`` is again the distance to the nearer plate).
   A field that vanishes outside (the strong field) takes ``outside_fraction = 0`` only.
   Labelled runs (class-conditional generation, :mod:`physfield.data` labels) couple only
   within a class (:func:`physfield.plans.within_class`: the named plan between the sources and
   the sinks of each class, block by block), so pairs never cross classes. With
   ``within_class`` both sides are labelled and the sinks are drawn class by class to match the
   sources (sink ``i`` from the class of source ``i``). A ``conditional`` run without it gives
   source ``i`` the class of sink ``i``, an independent draw: each class's pairs then start
   from an unbiased sample of ``P`` and couple it to that class's sinks (the transport of ``P``
   to ``Q_c``; an OT plan over the whole batch would tie each class to the part of ``P``
   nearest it, and the class's field would be learned nowhere else). In a ``conditional`` run
   each point carries the label of its sink ``j`` (``labels``: the label travels with its sink,
   whatever order the plan put the pairs in) and its target is the field of that class's pairs
   only, ``pi[:, J_c] / pi[:, J_c].sum()``: the class-conditional field ``E(p | c)``. A net
   regressing it without the label learns ``sum_c p(c | p) E(p | c) = E(p)`` in expectation,
   the field of the whole block plan, so label dropout trains the unconditional field from the
   same targets.
4. Points are rounded to float32 (the stored dtype) and the targets computed at exactly those
   points from all ``B`` pairs of the batch through ``field.direction(points, a, b, plan=pi)``:
   the unit direction ``E/|E|``, ``log|E|`` and the effective sample size ``ess`` the field
   reports (``direction(return_ess=True)``): for the strong field ``1 / sum_k w_k^2`` of the pair
   weights ``w = softmax(log pi_k - |rho_k|^2 / 2 sigma^2)``, between 1 and the number of pairs;
   for the Coulomb field the same statistic of the charges' magnitudes ``|q_c G(p - c)|`` over
   the ``2B`` charges.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass

import numpy as np

from .. import data, plans
from ..fields import Field
from ..kernels import get_backend
from ..validate import positive_int

Z_SCHEDULES = {
    "uniform": lambda rng, B, L, eps: rng.uniform(eps, L - eps, B),
    "logit-normal": lambda rng, B, L, eps: np.clip(L / (1 + np.exp(-rng.standard_normal(B))), eps, L - eps),
}  # the laws of the training points' z (module docstring, step 3)
Z_SCHEDULE = "uniform"  # default z schedule, the best measured on the toys (the README, "Generating digits")
NOISE = 1.2247  # default noise in units of t = z/L: lambda = 0.5 at L = 6 (the README, "Learning the field")
PLAN = "optimal"  # default minibatch plan, the best measured with NOISE (the README, "Learning the field")
OUTSIDE = 0.2  # default outside_fraction of a field that does not vanish outside the plates


@dataclass(frozen=True)
class Run:
    """Validated parameters of a run (:func:`make_run`), or those a cache records
    (:meth:`from_attrs`, :attr:`physfield.targets.Cache.run`); each argument is kept as the
    attribute of the same name. Build one with :func:`make_run`, which checks the arguments;
    the constructor checks nothing.

    Parameters
    ----------
    field : physfield.fields.Field
        The field whose targets are computed.
    source, target : str
        Data specs (:mod:`physfield.data`) of the sources (``z = 0``) and the sinks (``z = L``).
    B : int
        Pairs per minibatch: sources, sinks and training points of one batch.
    plan : str
        The minibatch plan's name (:func:`physfield.plans.get`): a registered name (``paired``,
        ``independent``, ``optimal``, ``sinkhorn``) or ``module:function``.
    reg : float or None
        The ``sinkhorn`` regularisation, relative to the mean cost; ``None`` when read from a
        cache whose plan takes none.
    lam : float
        The paper's ``lambda >= 0``: the spread of the training points is
        ``lambda * sqrt(sigma_n^2(z))`` (module docstring).
    eps : float
        The ``z`` margin: training points between the plates lie in ``[eps, L - eps]``.
    outside : float
        The share ``outside_fraction`` of points put outside the plates, in ``[0, 1)`` (0 for a
        field that vanishes there).
    seed : int
        The run's seed (batch ``k`` draws from ``numpy.random.SeedSequence([seed, k])``).
    dim : int
        The dimension ``D`` of a sample.
    shape : tuple of int or None
        The image shape of a sample (the source's, else the target's), ``None`` for vectors.
    backend : str
        The backend's name (``"auto"`` already resolved).
    store_pairs : bool
        Keep every batch's pairs and plan in the cache (verification mode).
    conditional : bool
        Class-conditional targets: each point carries its sink's label (default ``False``).
    within_class : bool
        Pair only samples of the same class (default ``False``).
    n_classes : int, optional
        The size of the target's label space in a conditional run; ``None`` (the default)
        otherwise.
    z_schedule : str
        The law of the training points' ``z``, a name in :data:`Z_SCHEDULES` (default
        :data:`Z_SCHEDULE`, ``"uniform"``).
    """

    field: object
    source: str
    target: str
    B: int
    plan: str
    reg: float
    lam: float
    eps: float
    outside: float
    seed: int
    dim: int
    shape: tuple | None
    backend: str
    store_pairs: bool
    conditional: bool = False
    within_class: bool = False
    n_classes: int | None = None
    z_schedule: str = Z_SCHEDULE

    @classmethod
    def from_attrs(cls, attrs):
        """The run whose attributes a cache holds: :func:`physfield.targets.schema.run_attrs` read
        back (the field rebuilt by :func:`physfield.fields.from_params`; ``reg`` is ``None`` for a
        plan that takes none).

        Parameters
        ----------
        attrs : dict
            The cache's attributes as plain values (:attr:`physfield.targets.Cache.attrs`).

        Returns
        -------
        Run
        """
        from ..fields import from_params

        shape = attrs.get("data_shape")
        n_classes = attrs.get("n_classes")
        return cls(from_params(json.loads(attrs["field"])), attrs["source"], attrs["target"], int(attrs["B"]),
                   attrs["plan"], attrs.get("reg"), float(attrs["lambda"]), float(attrs["eps"]),
                   float(attrs["outside_fraction"]), int(attrs["seed"]), int(attrs["D"]),
                   None if shape is None else tuple(int(s) for s in shape), attrs["backend"], bool(attrs["store_pairs"]),
                   bool(attrs.get("conditional", False)), bool(attrs.get("within_class", False)),
                   None if n_classes is None else int(n_classes), attrs.get("z_schedule", Z_SCHEDULE))


def make_run(field, source, target, batch, plan, reg, noise, lam, eps, outside, seed, dim, backend, store_pairs,
             conditional=False, within_class=False, z_schedule=None):
    """The validated :class:`Run`; bad arguments are a one-line ``ValueError``.

    Parameters
    ----------
    field : physfield.fields.Field
        Any field whose parameters are numbers or strings (a cache records them as JSON).
    source, target : str
        Data specs (:mod:`physfield.data`) of the same dimension.
    batch : int
        Pairs per minibatch ``B``, ``>= 1``.
    plan : str or physfield.plans.Plan
        A registered name (``paired``, ``independent``, ``optimal``, ``sinkhorn``),
        ``module:function`` or a plan (:func:`physfield.plans.get`); the run keeps its name.
    reg : float
        The ``sinkhorn`` regularisation relative to the mean cost, finite and ``> 0`` (checked
        whatever the plan).
    noise : float or None
        The training noise in units of ``t = z/L``, ``>= 0`` (``None``: :data:`NOISE`, unless
        ``lam`` is given).
    lam : float or None
        Instead of ``noise``, the paper's ``lambda = noise / sqrt(L)``, ``>= 0``; not both.
    eps : float or None
        The ``z`` margin, in ``[1e-6 L, L/2)`` (``None``: ``1e-3 L``).
    outside : float or None
        ``outside_fraction``, in ``[0, 1)`` and 0 for a field that vanishes outside the plates
        (``None``: 0 for such a field, else :data:`OUTSIDE`).
    seed : int
        A non-negative integer.
    dim : int or None
        The dimension of both sides (:func:`physfield.data.pair_dims`; ``None``: from the specs).
    backend : str or physfield.kernels.backend.Backend
        The backend (:func:`physfield.kernels.get_backend`); the run keeps its name.
    store_pairs : bool
        Keep every batch's pairs and plan (verification mode).
    conditional : bool
        Class-conditional targets (module docstring, step 3); needs a labelled target. Default
        ``False``.
    within_class : bool
        Pair only samples of the same class; needs labelled sources and sinks with the same
        label space, the sources holding no class the sinks lack. Default ``False``.
    z_schedule : str or None
        A name in :data:`Z_SCHEDULES` (``None``, the default: :data:`Z_SCHEDULE`).

    Returns
    -------
    Run
    """
    if not isinstance(field, Field):
        raise ValueError(f"field must be a physfield field (StrongField, CoulombField, ...), got {field!r}")
    try:
        json.dumps(field.params())
    except TypeError:
        raise ValueError(f"{field!r}: a cache records the field's parameters, which must be numbers or "
                         "strings (subclass the field instead of passing a callable)") from None
    L = field.L
    B = positive_int("batch", batch)
    plan = plans.get(plan).name
    z_schedule = Z_SCHEDULE if z_schedule is None else z_schedule
    if z_schedule not in Z_SCHEDULES:
        raise ValueError(f"z_schedule must be one of {', '.join(Z_SCHEDULES)}, got {z_schedule!r}")
    reg = _number("reg", reg)
    if not reg > 0:
        raise ValueError(f"reg must be > 0, got {reg}")
    if noise is not None and lam is not None:
        raise ValueError("give the noise or lambda, not both (lambda = noise / sqrt(L))")
    if lam is None:
        noise = NOISE if noise is None else _number("noise", noise)
        if noise < 0:
            raise ValueError(f"noise must be >= 0, got {noise}")
        lam = noise / math.sqrt(L)
    lam = _number("lambda", lam)
    if lam < 0:
        raise ValueError(f"lambda must be >= 0, got {lam}")
    eps = 1e-3 * L if eps is None else _number("eps", eps)
    if not 1e-6 * L <= eps < L / 2:
        raise ValueError(f"eps must lie in [1e-6 L, L/2) = [{1e-6 * L:g}, {L / 2:g}), got {eps}")
    outside = (0.0 if field.vanishes_outside else OUTSIDE) if outside is None else _number("outside_fraction", outside)
    if not 0 <= outside < 1:
        raise ValueError(f"outside_fraction must lie in [0, 1), got {outside}")
    if field.vanishes_outside and outside > 0:
        raise ValueError(f"outside_fraction must be 0 for {field!r}: it vanishes outside the plates")
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    dim_source, dim_target = data.pair_dims(source, target, dim)
    D = data.get(source, dim_source).dim
    D_target = data.get(target, dim_target).dim
    if D != D_target:
        raise ValueError(f"source {source!r} is {D}-dimensional but target {target!r} is {D_target}-dimensional")
    shape = data.shape(source) or data.shape(target)
    n_classes = _check_labels(source, target, bool(conditional), bool(within_class))
    return Run(field, source, target, B, plan, reg, lam, eps, outside, int(seed), D,
                tuple(int(s) for s in shape) if shape else None, get_backend(backend).name, bool(store_pairs),
                bool(conditional), bool(within_class), n_classes, z_schedule)


def _check_labels(source, target, conditional, within_class):
    """The number of classes of a labelled run (``None`` otherwise); a ``ValueError`` when a side
    it needs has no labels or the sources hold a class the sinks do not."""
    target_classes = data.classes(target)
    if (conditional or within_class) and target_classes is None:
        raise ValueError(f"conditional runs need a labelled target; {target!r} has none "
                         f"(labelled: {', '.join(data.names(labelled=True))})")
    if within_class:
        source_classes = data.classes(source)
        if source_classes is None:
            raise ValueError(f"within-class plans need labelled sources; {source!r} has none")
        if source_classes[0] != target_classes[0]:
            raise ValueError(f"source {source!r} has {source_classes[0]} classes but target {target!r} "
                             f"{target_classes[0]}: within-class plans need the same labels on both sides")
        missing = sorted(set(source_classes[1]) - set(target_classes[1]))
        if missing:
            raise ValueError(f"source {source!r} holds class {missing[0]}, which target {target!r} does not")
    return target_classes[0] if conditional else None


def _number(name, value):
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    return value


def batch(run, k, timings=None):
    """Minibatch ``k`` of ``run``: ``B`` points with targets, and the batch's pairs (module docstring).

    A pure function of ``run`` and ``k``.

    Parameters
    ----------
    run : Run
        The run (:func:`make_run`).
    k : int
        The batch index; its generators come from ``numpy.random.SeedSequence([run.seed, k])``.
    timings : dict, optional
        A dict the seconds spent on data, plan and field are added to (under the keys ``data``,
        ``plan`` and ``field``); ``None`` (the default): not reported.

    Returns
    -------
    dict
        Arrays by name: ``points`` ``(B, D+1)`` float32, ``targets`` ``(B, D+1)`` float32 (unit
        ``E/|E|``), ``log_norm`` ``(B,)`` float64, ``ess`` ``(B,)`` float64 (``labels``
        ``(B,)`` int32 too for a conditional run) and the batch's ``sources`` ``(B, D)``,
        ``sinks`` ``(B, D)``, dense ``plan`` ``(B, B)`` and each point's ``partner`` ``(B,)``
        (its sink index).

    Raises
    ------
    ValueError
        The field vanishes or is not finite at one of the points.
    """
    timings = {} if timings is None else timings
    L, B, D = run.field.L, run.B, run.dim
    src_seed, snk_seed, pts_seed = np.random.SeedSequence([run.seed, k]).spawn(3)
    t0 = time.perf_counter()
    sink_labels = None
    if run.within_class:
        A, source_labels = data.sample_labelled(run.source, B, seed=src_seed, dim=D)
        Q, sink_labels = data.sample_labelled(run.target, B, seed=snk_seed, dim=D, labels=source_labels)
    else:
        A = data.sample(run.source, B, seed=src_seed, dim=D)
        if run.conditional:
            Q, sink_labels = data.sample_labelled(run.target, B, seed=snk_seed, dim=D)
            source_labels = sink_labels  # source i takes the class of sink i, an independent draw
        else:
            Q = data.sample(run.target, B, seed=snk_seed, dim=D)
    rng = np.random.default_rng(pts_seed)
    t1 = time.perf_counter()
    if sink_labels is not None:
        pi = plans.within_class(run.plan, A, Q, source_labels, sink_labels, reg=run.reg)
    else:
        pi = plans.resolve(run.plan, A, Q, reg=run.reg)
    pi = pi.toarray() if hasattr(pi, "toarray") else np.asarray(pi)
    partner = np.arange(B) if plans.get(run.plan).diagonal else _draw_partners(pi, rng)
    t2 = time.perf_counter()

    z = Z_SCHEDULES[run.z_schedule](rng, B, L, run.eps)
    xi = rng.standard_normal((B, D))
    if run.outside > 0:
        out = rng.random(B) < run.outside
        beyond = rng.random(B) < 0.5
        h = rng.uniform(run.eps, L, B)
        z = np.where(out, np.where(beyond, L + h, -h), z)
    t = np.clip(z / L, 0.0, 1.0)[:, None]
    spread = run.lam * np.sqrt(np.minimum(np.abs(z), np.abs(L - z)))[:, None]  # sqrt(sigma_n^2(z))
    x = (1 - t) * A + t * Q[partner] + spread * xi
    points = np.column_stack([z, x]).astype(np.float32)
    t3 = time.perf_counter()

    P = points.astype(np.float64)
    if run.conditional:
        labels = sink_labels[partner]
        u, log_norm, ess = np.empty_like(P), np.empty(B), np.empty(B)
        for c in np.unique(labels):
            rows, cols = labels == c, sink_labels == c
            sub = pi[:, cols]
            u[rows], log_norm[rows], ess[rows] = run.field.direction(
                P[rows], A, Q[cols], plan=sub / sub.sum(), backend=run.backend, return_ess=True)
    else:
        u, log_norm, ess = run.field.direction(P, A, Q, plan=pi, backend=run.backend, return_ess=True)
    if not np.all(np.isfinite(log_norm)):
        bad = int(np.flatnonzero(~np.isfinite(log_norm))[0])
        raise ValueError(f"batch {k}: the field vanishes or is not finite at point {bad} ({points[bad, :3]}...)")
    t4 = time.perf_counter()
    for name, dt in (("data", t1 - t0 + t3 - t2), ("plan", t2 - t1), ("field", t4 - t3)):
        timings[name] = timings.get(name, 0.0) + dt
    out = {"points": points, "targets": u.astype(np.float32), "log_norm": log_norm.astype(np.float64),
           "ess": np.asarray(ess, np.float64), "sources": A, "sinks": Q, "plan": pi, "partner": partner}
    if run.conditional:
        out["labels"] = labels.astype(np.int32)
    return out


def _draw_partners(pi, rng):
    """One sink index per row ``i``, ``j ~ pi_i. / sum_j pi_ij`` (inverse CDF, one uniform per row)."""
    cdf = np.cumsum(pi, axis=1)
    j = (cdf <= (rng.random(len(pi)) * cdf[:, -1])[:, None]).sum(axis=1)
    last = pi.shape[1] - 1 - np.argmax(pi[:, ::-1] > 0, axis=1)  # u rounding up to the row sum
    return np.minimum(j, last)


