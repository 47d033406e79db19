"""Sample by following the learned field lines from ``P`` (``z = eps``) to ``Q`` (``z = L``).

The line through ``(z, x)`` solves ``dx/dz = s(z, x)`` with the slope::

    direction network:  s = f_x / f_z      (f = f(z, x) in R^{D+1})
    velocity network:   s = f / L          (f in R^D, the slope dx/dt in t = z / L)

integrated on the uniform grid ``z_i = eps + i h``, ``h = (L - eps) / steps`` by Euler, Heun or
RK4 (:func:`physfield.lines.follow_z`, the one line follower of the package).

A direction network may answer ``f_z <= 0`` (or a non-finite ``f``) where the true strong field
never does: the line would reverse and ``f_x / f_z`` blow up. Such a stage gets slope 0 (the
line holds its ``x`` for that stage) and is counted. A tiny positive ``f_z`` is as harmful (slopes
of hundreds throw a line far away): a slope steeper than ``STEEP_FACTOR`` times the steepest
target slope of the training cache (``steepest`` in the run record) is scaled down to that limit,
direction kept, and counted with them; the count of stage evaluations and of lines
affected is reported, so no NaN appears silently. Lines are started at the ``P`` samples
themselves (``source`` spec of the run unless another is given), drawn with ``seed``.

A class-conditional net (trained on a ``--conditional`` cache) follows the field of the class
asked for each line (``labels``), or the unconditional field it learned by label dropout (no
``labels``). Classifier-free guidance of strength ``w`` (Ho and Salimans, 2022) follows::

    f = (1 + w) f(z, x | y) - w f(z, x | none)

in the parametrisation the net regresses (the velocity, or the direction before ``f_x / f_z``);
``w = 0`` is the conditional field itself. The default with labels, :data:`GUIDANCE`, is the best
measured (the README, "Conditional generation and log-likelihoods": the smallest ``w`` of the
sweep at which every digit is read as the one asked at least 95 % of the time; larger ``w`` raise
the Frechet distance).

Runs of a field whose lines are followed in arc length (``field.lines == "arc"``, the Coulomb
field of EFM): the learned direction may turn back, so lines are followed in ``tau`` instead of
``z``::

    dp/dtau = f(p) / |f(p)|,   p = (z, x) in R^{D+1},   p(0) = (eps, a),  a ~ P

with the same stepper (Euler, Heun or RK4 on this autonomous ODE), step ``h = (L - eps) /
steps`` (a straight line takes ``steps`` steps), at most ``max_steps`` (default
``ARC_STEP_CAP * steps``) steps, so sampling always ends, by :func:`physfield.lines.follow_arc`
with its end rules: each line ends ``arrived`` (through ``z = L`` with its crossing point within
the support ball ``|x* - c| <= r`` of ``Q``), ``leaked`` (through ``z = L`` outside it: the
learned analogue of a line passing the plate away from every sink, the sinks being unknown to a
network), ``reversed`` (a backward step to ``z <= 0``: behind ``P``) or ``lost`` (``f = 0`` or
a non-finite ``f``, farther than ``radius`` (default ``ARC_RADIUS * (L + r)``) from
``(L/2, c)``, or still running after ``max_steps``).

``c, r``: the mean of ``SUPPORT_DRAWS`` draws of the run's target spec and the largest distance
of a draw from it. Samples are the crossing points of the ``arrived`` lines only, with their
starts as ``inputs`` and ``mask`` marking them among all ``n`` lines; the counts of every status,
and of lines that met ``f_z < 0`` at a step (they may still arrive), are in ``stats``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from physfield import data as pdata
from physfield import lines
from physfield.validate import positive_int

from . import models, regression
from .record import RunRecord
from .train import load_checkpoint

ARC_STATUS = lines.STATUS
STEEP_FACTOR = 2.0  # sampler slopes are capped at this times the steepest training target
ARC_STEP_CAP = 10
ARC_RADIUS = 10.0
SUPPORT_DRAWS = 4096
GUIDANCE = 0.25  # default classifier-free guidance with labels (the README, "Conditional generation and log-likelihoods")


@dataclass
class SampleResult:
    """The result of :func:`sample`: ``samples (m, D)`` at ``z = L`` started from ``inputs (m, D)``,
    optional ``trajectories`` and ``stats``.

    For a Coulomb run (arc length) ``mask (n,)`` marks the arrived lines among all ``n`` and
    ``status (n,)`` indexes ``ARC_STATUS``; both are ``None`` otherwise, and then ``m = n``.
    ``str()`` of a result is the one-line summary ``learn sample`` prints (with a warning for
    stages that met ``f_z <= 0`` or the slope limit, non-finite samples or lines that did not
    arrive).

    Parameters
    ----------
    samples : ndarray, shape (m, D)
        The samples at ``z = L``: the ends of all ``n`` lines, or for a Coulomb run the crossing
        points of the ``m`` arrived lines only.
    trajectories : ndarray or None
        The lines' points ``(z, x)`` when asked for (``trajectories=True`` of :func:`sample`),
        shape ``(steps+1, n, D+1)`` (for a Coulomb run: the start and the points after each step
        taken, ended lines frozen), else ``None``.
    stats : dict
        The sampler's settings and counts (module docstring): ``n``, ``method``, ``z0``, ``z1``
        and, in ``z``, ``steps``, ``source``, ``fz_nonpositive`` (stage evaluations with
        ``f_z <= 0``, a non-finite ``f`` or the slope limit), ``lines_fz_nonpositive`` (lines
        affected), ``nonfinite``, ``guidance``, ``labels``; in arc length (``"sampler": "arc"``)
        ``h``, ``max_steps``, ``steps_done``, ``radius``, ``support_centre``, ``support_radius``,
        ``lines_fz_negative`` and the count of every status of ``ARC_STATUS``.
    inputs : ndarray, shape (m, D), optional
        The starts ``x(eps)`` (draws of ``P``) of the samples' lines.
    mask : ndarray of bool, shape (n,), optional
        Coulomb runs: which of the ``n`` lines arrived (gave a sample); ``None`` otherwise.
    status : ndarray of int, shape (n,), optional
        Coulomb runs: each line's end status, an index into ``ARC_STATUS``; ``None`` otherwise.
    """

    samples: np.ndarray
    trajectories: np.ndarray | None
    stats: dict
    inputs: np.ndarray | None = None
    mask: np.ndarray | None = None
    status: np.ndarray | None = None

    def __str__(self):
        s = self.stats
        if s.get("sampler") == "arc":
            counts = ", ".join(f"{s[k]} {k}" for k in ARC_STATUS)
            text = (f"{s['n']} lines in arc length, {s['method']} with step {s['h']:.3g} (cap {s['max_steps']} "
                    f"steps) from z={s['z0']:g}: {counts}; {s['lines_fz_negative']} met f_z < 0; "
                    f"{len(self.samples)} samples (the arrived lines)")
            if s["arrived"] < s["n"]:
                text += f"; WARNING: {s['n'] - s['arrived']} of {s['n']} lines did not arrive inside Q's support"
            return text
        text = f"{s['n']} samples, {s['method']} with {s['steps']} steps from z={s['z0']:g} to z={s['z1']:g}"
        if s["fz_nonpositive"]:
            text += (f"; WARNING: f_z <= 0, a non-finite f or a slope beyond {STEEP_FACTOR:g}x the steepest "
                     f"target at {s['fz_nonpositive']} stage evaluations on {s['lines_fz_nonpositive']} lines: "
                     "those stages used slope 0 or the limit")
        if s["nonfinite"]:
            text += f"; WARNING: {s['nonfinite']} samples are not finite"
        return text


def slope_fn(model, target, limit=None, L=1.0):
    """``(z, x) -> (slope, bad)``: the slope of the module docstring for a net, and the mask of
    stages where the slope is undefined (a direction network's ``f_z <= 0`` or a non-finite
    output), or steeper than ``limit`` (then scaled down to ``limit``, its direction kept).

    Parameters
    ----------
    model : callable
        The net (a :class:`torch.nn.Module`, or a wrapper such as :func:`conditioned`): rows
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


def conditioned(model, labels=None, guidance=0.0):
    """``points -> f``: the net ``model`` for one label per row, with classifier-free guidance
    (module docstring).

    Parameters
    ----------
    model : torch.nn.Module
        The net, ``model(points[, labels])`` (a class-conditional one when ``labels`` are given).
    labels : torch.Tensor, shape (n,), optional
        The class of each row of the points (int); ``None``: the unconditional field (``model``
        itself is returned).
    guidance : float
        The guidance strength ``w``; 0 (the default): the conditional field itself.

    Returns
    -------
    callable
        ``points (n, D+1) -> f``: ``model`` itself without labels, else
        ``(1 + w) f(z, x | y) - w f(z, x | none)`` (``f(z, x | y)`` alone when ``w = 0``).
    """
    if labels is None:
        return model
    if not guidance:
        return lambda points: model(points, labels)
    none = models.none_labels(model.label.n_classes, len(labels), labels.device)

    def guided(points):
        both = model(torch.cat([points, points]), torch.cat([labels, none]))
        cond, uncond = both.chunk(2)
        return (1 + guidance) * cond - guidance * uncond

    return guided


def labels_for(values, run, per_label=1):
    """The label of every line ``learn sample --label`` asks for: each requested class
    ``per_label`` times, in class order.

    Parameters
    ----------
    values : sequence of str or int
        Class numbers, or ``"all"``: every class of the run's target (:func:`physfield.data.classes`).
    run : learn.record.RunRecord
        The run sampled (its target spec gives the classes of ``"all"``).
    per_label : int
        Lines per class (default 1).

    Returns
    -------
    ndarray of int or None
        ``None`` when ``values`` is empty (an unconditional sample).
    """
    if not values:
        return None
    if "all" in values:
        present = pdata.classes(run.targets.target)
        if present is None:
            raise ValueError("--label all needs a run trained on a labelled target")
        asked = np.array(present[1])
    else:
        try:
            asked = np.array(sorted({int(v) for v in values}))
        except ValueError:
            raise ValueError(f"--label takes class numbers or 'all', got {', '.join(map(str, values))}") from None
    return np.repeat(asked, positive_int("per_label", per_label))


def check_labels(run, labels, guidance, n=None):
    """The guidance to use; a one-line ``ValueError`` unless ``labels`` and ``guidance`` fit the run:
    one label per line (``n`` lines, when given), a conditional net, labels in ``0 .. n_classes -
    1``, ``guidance >= 0`` with labels.

    Parameters
    ----------
    run : learn.record.RunRecord
        The run (its ``n_classes``, and how its lines are followed: conditional sampling needs
        lines in ``z``).
    labels : sequence of int or None
        The class of each line; ``None``: an unconditional sample.
    guidance : float or None
        The guidance strength ``w``; ``None``: :data:`GUIDANCE` with labels, 0 without. Without
        labels it must be ``None`` or 0.
    n : int, optional
        The number of lines, checked against the number of labels; ``None``: not checked.

    Returns
    -------
    float
        The guidance ``w``: 0 without labels, else ``guidance`` (or :data:`GUIDANCE`).
    """
    if labels is not None and n is not None and np.shape(labels) != (n,):
        raise ValueError(f"need one label per line: {n} lines, labels of shape {np.shape(labels)}")
    if labels is None:
        if guidance:
            raise ValueError("guidance needs labels (--label)")
        return 0.0
    guidance = GUIDANCE if guidance is None else float(guidance)
    n_classes = run.n_classes
    if not n_classes:
        raise ValueError("this run's net has no labels: train it on a `physfield targets --conditional` cache")
    if run.lines == "arc":
        raise ValueError("conditional sampling follows lines in z; this run's field is followed in arc length")
    bad = [y for y in labels if not 0 <= int(y) < n_classes]
    if bad:
        raise ValueError(f"label {bad[0]} is not one of the run's classes 0..{n_classes - 1}")
    if not (np.isfinite(guidance) and guidance >= 0):
        raise ValueError(f"guidance must be a finite number >= 0, got {guidance}")
    return guidance


def follow_arc(model, p, L, h, max_steps, centre, support, radius, method="euler", keep=False):
    """Follow ``dp/dtau = f/|f|`` from the rows of ``p`` with step ``h`` by
    :func:`physfield.lines.follow_arc` (module docstring, Coulomb runs): the end rules with ``Q``'s
    support ball as the one target, no capture before the plate, escape beyond ``radius`` of
    ``(L/2, centre)`` (:func:`support_ends`).

    Parameters
    ----------
    model : torch.nn.Module
        The net of a direction target (its output is the field ``f``, :func:`unit_fn`).
    p : torch.Tensor, shape (n, D+1)
        The start points ``(z, x)``.
    L : float
        The plate distance (the sink plate ``z = L``).
    h : float
        The arc-length step, ``> 0``.
    max_steps : int
        Lines still running after this many steps are lost.
    centre : torch.Tensor, shape (D,)
        The centre ``c`` of ``Q``'s support ball.
    support : float
        The radius ``r >= 0`` of ``Q``'s support ball.
    radius : float
        The escape radius ``> 0`` around ``(L/2, centre)``.
    method : str
        ``"euler"`` (the default), ``"heun"`` or ``"rk4"``.
    keep : bool
        Also keep every line's points after each step (the follower's ``path``).

    Returns
    -------
    physfield.lines.ArcLines
        The follower's result (status, ends, turned, ..., path).
    """
    if not (h > 0 and radius > 0 and support >= 0):
        raise ValueError(f"need step h > 0, radius > 0 and support radius >= 0, got {h}, {radius}, {support}")
    return lines.follow_arc(unit_fn(model), p, support_ends(L, centre, support, radius), h, max_steps, method,
                            keep=keep)


def support_ends(L, centre, support, radius):
    """The end rules of a learned net's lines: ``Q``'s support ball at ``z = L`` as the one target,
    no capture before the plate, escape beyond ``radius`` of ``(L/2, centre)``.

    Parameters
    ----------
    L : float
        The plate distance (the sink plate ``z = L``).
    centre : torch.Tensor, shape (D,)
        The centre ``c`` of ``Q``'s support ball.
    support : float
        The radius of ``Q``'s support ball (the capture radius at the plate).
    radius : float
        The escape radius around ``(L/2, centre)``.

    Returns
    -------
    physfield.lines.Ends
    """
    return lines.Ends(L=L, targets=centre[None, :], radius=support, capture=False, R_max=radius,
                      centre=torch.cat([torch.full_like(centre[:1], L / 2), centre]))


def load_model(checkpoint, weights="ema", device="cpu"):
    """``(model, record)`` from a checkpoint: the net with its weights on ``device``, and the run's
    :class:`learn.record.RunRecord`.

    Parameters
    ----------
    checkpoint : str or os.PathLike
        A run folder or a checkpoint file (:func:`learn.train.load_checkpoint`).
    weights : str
        ``"ema"`` (the default: the weights' moving average) or ``"raw"`` (the optimised weights);
        anything else is a ``ValueError``.
    device : str or torch.device
        Where the net is put (default ``"cpu"``).

    Returns
    -------
    model : torch.nn.Module
        The net rebuilt from the run's spec (:func:`learn.models.build`), in eval mode.
    record : learn.record.RunRecord
        The run's record.
    """
    if weights not in ("ema", "raw"):
        raise ValueError(f"weights must be ema or raw, got {weights!r}")
    ckpt = load_checkpoint(checkpoint)
    model = models.build(ckpt["run"]["net"])
    model.load_state_dict(ckpt["ema" if weights == "ema" else "model"])
    return model.to(device).eval(), RunRecord.from_dict(ckpt["run"])


def support_ball(target, D):
    """``(c, r)``: mean of ``SUPPORT_DRAWS`` draws of the spec ``target`` and their largest distance to it.

    Parameters
    ----------
    target : str
        A data spec (``Q``, the run's target spec), drawn with seed 0.
    D : int
        The data dimension.

    Returns
    -------
    c : ndarray, shape (D,)
        The centre of the support ball.
    r : float
        Its radius.
    """
    b = pdata.sample(target, SUPPORT_DRAWS, seed=0, dim=D)
    c = b.mean(axis=0)
    return c, float(np.linalg.norm(b - c, axis=1).max())


@torch.no_grad()
def sample(model, run, n, source=None, steps=100, method="euler", seed=0, trajectories=False, device="cpu",
           max_steps=None, radius=None, labels=None, guidance=None):
    """``n`` samples of the run's ``Q`` by the learned lines (module docstring).

    A Coulomb run is followed in arc length (``max_steps``, ``radius``: the caps of the module
    docstring); any other run in ``z``, with slopes capped at ``STEEP_FACTOR`` times the run's
    steepest target slope (when the record has one).

    Parameters
    ----------
    model : torch.nn.Module
        The run's net (:func:`load_model`), on ``device``.
    run : learn.record.RunRecord
        The run's record: ``D``, ``L``, ``eps``, the regression target, the source spec and how
        the lines are followed.
    n : int
        The number of lines (the number of samples, for a run followed in ``z``).
    source : str, optional
        The data spec of the starts; ``None``: the run's source spec ``P``.
    steps : int
        The ``z`` grid's steps (default 100); in arc length the step is ``(L - eps) / steps``.
    method : str
        ``"euler"`` (the default), ``"heun"`` or ``"rk4"``.
    seed : int
        The seed of the starts' draw (default 0).
    trajectories : bool
        Also return the lines' points (``trajectories`` of the :class:`SampleResult`).
    device : str or torch.device
        Where the lines are followed (default ``"cpu"``).
    max_steps : int, optional
        Coulomb runs only: the step cap (default ``ARC_STEP_CAP * steps``); any other run refuses
        it (``ValueError``).
    radius : float, optional
        Coulomb runs only: the escape radius (default ``ARC_RADIUS * (L + r)``); any other run
        refuses it (``ValueError``).
    labels : array_like of int, shape (n,), optional
        The class of each of the ``n`` lines (a conditional net); ``None``: unconditional.
    guidance : float, optional
        The guidance ``w`` (default :data:`GUIDANCE` with labels, 0 without; :func:`check_labels`).

    Returns
    -------
    SampleResult
    """
    if run.lines != "arc" and (max_steps is not None or radius is not None):
        raise ValueError("--max-steps and --radius belong to Coulomb runs (arc-length sampling)")
    labels = None if labels is None else np.asarray(labels)
    guidance = check_labels(run, None if labels is None else labels.tolist(), guidance, n)
    D, L, eps = run.D, run.L, run.eps
    source = run.targets.source if source is None else source
    x0 = pdata.sample(source, n, seed=seed, dim=D)
    x = torch.from_numpy(x0.astype(np.float32)).to(device)
    if run.lines == "arc":
        return _sample_arc(model, run, x, x0, steps, method, trajectories, max_steps, radius)
    limit = STEEP_FACTOR * run.steepest if run.steepest else None
    y = None if labels is None else torch.from_numpy(labels.astype(np.int64)).to(device)
    net = conditioned(model, y, guidance)
    x, bad, path = lines.follow_z(slope_fn(net, run.regression, limit, L), x, eps, L, steps, method,
                                  keep=trajectories)
    out = x.cpu().numpy()
    stats = {"n": n, "steps": steps, "method": method, "source": source, "z0": eps, "z1": L,
             "fz_nonpositive": int(bad.sum()), "lines_fz_nonpositive": int((bad > 0).sum()),
             "nonfinite": int((~np.isfinite(out).all(axis=1)).sum()), "guidance": guidance,
             "labels": None if labels is None else sorted(set(labels.tolist()))}
    paths = torch.stack(path).cpu().numpy() if trajectories else None
    return SampleResult(out, paths, stats, x0)


def _sample_arc(model, run, x, x0, steps, method, trajectories, max_steps, radius):
    """The Coulomb branch of :func:`sample`: arc length from ``(eps, x0)`` (module docstring)."""
    D, L, eps = run.D, run.L, run.eps
    positive_int("steps", steps)
    c, r = support_ball(run.targets.target, D)
    max_steps = ARC_STEP_CAP * steps if max_steps is None else max_steps
    radius = ARC_RADIUS * (L + r) if radius is None else radius
    h = (L - eps) / steps
    p = torch.cat([torch.full_like(x[:, :1], eps), x], dim=1)
    centre = torch.from_numpy(c.astype(np.float32)).to(x.device)
    res = follow_arc(model, p, L, h, max_steps, centre, r, radius, method, trajectories)
    status = res.status.cpu().numpy()
    mask = status == lines.ARRIVED
    stats = {"sampler": "arc", "n": len(x0), "method": method, "h": h, "max_steps": max_steps,
             "steps_done": int(res.steps.max()), "radius": radius, "support_centre": c.tolist(), "support_radius": r,
             "z0": eps, "z1": L, "lines_fz_negative": int(res.turned.sum())}
    stats.update({k: int((status == i).sum()) for i, k in enumerate(ARC_STATUS)})
    paths = torch.stack(res.path).cpu().numpy() if trajectories else None
    return SampleResult(res.end[:, 1:].cpu().numpy()[mask], paths, stats, x0[mask], mask, status)
