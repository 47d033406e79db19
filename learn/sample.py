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
    """``samples (m, D)`` at ``z = L`` started from ``inputs (m, D)``, optional ``trajectories
    (steps+1, n, D+1)`` and ``stats``; for a Coulomb run ``mask (n,)`` marks the arrived lines
    among all ``n`` and ``status (n,)`` indexes ``ARC_STATUS`` (both ``None`` otherwise, ``m = n``)."""

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
    """``(z, x) -> (slope, bad)``: the slope of the module docstring for the net ``model`` of the
    regression target ``target`` (:func:`learn.regression.get`: a name or a target; ``L``: the
    plate distance a velocity network's ``t = z / L`` refers to) and the mask of stages where the
    slope is undefined (a direction network's ``f_z <= 0`` or a non-finite output), or steeper
    than ``limit`` (then scaled down to ``limit``, its direction kept)."""
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
    of the net ``model`` of the regression target ``target`` (NaN where the field is 0: the
    arc-length follower then finds no direction there)."""
    target = regression.get(target)

    def unit(p):
        f = target.field(model(p).to(p.dtype), L)
        return f / f.norm(dim=1, keepdim=True)

    return unit


def conditioned(model, labels=None, guidance=0.0):
    """``points -> f``: the net ``model`` for one label per row (torch ``labels``, or ``None``: the
    unconditional field), with classifier-free guidance ``guidance`` (module docstring)."""
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
    per_label : int
        Lines per class.

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
    """The guidance to use (``None``: :data:`GUIDANCE` with labels, 0 without); a one-line
    ``ValueError`` unless ``labels`` (a sequence of ints, or ``None``) and ``guidance`` fit the run:
    one label per line (``n`` lines, when given), a conditional net, labels in ``0 .. n_classes -
    1``, ``guidance >= 0`` with labels."""
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
    """Follow ``dp/dtau = f/|f|`` from the rows of ``p`` (torch ``(n, D+1)``) with step ``h`` by
    :func:`physfield.lines.follow_arc` (module docstring, Coulomb runs): the end rules with ``Q``'s
    support ball (``centre`` ``(D,)``, radius ``support``) as the one target, no capture before the
    plate, escape beyond ``radius`` of ``(L/2, centre)``. Returns the follower's
    :class:`physfield.lines.ArcLines`."""
    if not (h > 0 and radius > 0 and support >= 0):
        raise ValueError(f"need step h > 0, radius > 0 and support radius >= 0, got {h}, {radius}, {support}")
    return lines.follow_arc(unit_fn(model), p, support_ends(L, centre, support, radius), h, max_steps, method,
                            keep=keep)


def support_ends(L, centre, support, radius):
    """The end rules of a learned net's lines: ``Q``'s support ball (``centre`` ``(D,)`` torch,
    radius ``support``) at ``z = L`` as the one target, no capture before the plate, escape
    beyond ``radius`` of ``(L/2, centre)``."""
    return lines.Ends(L=L, targets=centre[None, :], radius=support, capture=False, R_max=radius,
                      centre=torch.cat([torch.full_like(centre[:1], L / 2), centre]))


def load_model(checkpoint, weights="ema", device="cpu"):
    """``(model, record)`` from a checkpoint (folder or file): the net with its ``weights`` (``ema``
    or ``raw``) on ``device``, and the run's :class:`learn.record.RunRecord`."""
    if weights not in ("ema", "raw"):
        raise ValueError(f"weights must be ema or raw, got {weights!r}")
    ckpt = load_checkpoint(checkpoint)
    model = models.build(ckpt["run"]["net"])
    model.load_state_dict(ckpt["ema" if weights == "ema" else "model"])
    return model.to(device).eval(), RunRecord.from_dict(ckpt["run"])


def support_ball(target, D):
    """``(c, r)``: mean of ``SUPPORT_DRAWS`` draws of the spec ``target`` and their largest distance to it."""
    b = pdata.sample(target, SUPPORT_DRAWS, seed=0, dim=D)
    c = b.mean(axis=0)
    return c, float(np.linalg.norm(b - c, axis=1).max())


@torch.no_grad()
def sample(model, run, n, source=None, steps=100, method="euler", seed=0, trajectories=False, device="cpu",
           max_steps=None, radius=None, labels=None, guidance=None):
    """``n`` samples of the run's ``Q`` by the learned lines (module docstring); a :class:`SampleResult`.
    A Coulomb run is followed in arc length (``max_steps``, ``radius``: the caps of the docstring).
    ``labels``: the class of each of the ``n`` lines (a conditional net), ``guidance``: its ``w``
    (default :data:`GUIDANCE` with labels)."""
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
