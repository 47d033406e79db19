"""Sample by following the learned field lines from ``P`` (``z = eps``) to ``Q`` (``z = L``).

The line through ``(z, x)`` solves ``dx/dz = s(z, x)`` with the slope of the net
(:func:`learn.slope.slope_fn`: ``f_x / f_z`` for a direction network, ``f / L`` for a velocity
network), integrated on the uniform grid ``z_i = eps + i h``, ``h = (L - eps) / steps`` by Euler,
Heun or RK4, or with adaptive steps by an embedded pair (``bs32``, ``dopri5``: steps kept when
every line's error estimate is within ``rtol``/``atol``), all by :func:`physfield.lines.follow_z`,
the one line follower of the package; the network evaluations are counted. Stages where
the slope is undefined or steeper than ``STEEP_FACTOR`` times the steepest target slope of the
training cache (``steepest`` in the run record) are counted and reported, so no NaN appears
silently. Lines are started at the ``P`` samples themselves (``source`` spec of the run unless
another is given), drawn with ``seed``. A class-conditional net follows the field of the class
asked for each line, with classifier-free guidance (:mod:`learn.guidance`).

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
from physfield.progress import bar as progress_bar
from physfield.progress import ended_lines, gap_covered
from physfield.validate import positive_int

from . import models
from .guidance import check_labels, conditioned
from .record import RunRecord
from .slope import slope_fn, unit_fn
from .train import load_checkpoint

ARC_STATUS = lines.STATUS
STEEP_FACTOR = 2.0  # sampler slopes are capped at this times the steepest training target
ARC_STEP_CAP = 10
ARC_RADIUS = 10.0
SUPPORT_DRAWS = 4096


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
        The sampler's settings and counts (module docstring): ``n``, ``method``, ``z0``, ``z1``,
        ``evaluations`` (the network's evaluations on the batch of lines, guidance's second pass
        not counted) and, in ``z``, ``steps`` (kept), ``rejected``, ``rtol``, ``atol``,
        ``source``, ``fz_nonpositive`` (stage evaluations with ``f_z <= 0``, a non-finite ``f`` or the slope limit), ``lines_fz_nonpositive`` (lines
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
                    f"steps, {s['evaluations']} evaluations) from z={s['z0']:g}: {counts}; "
                    f"{s['lines_fz_negative']} met f_z < 0; {len(self.samples)} samples (the arrived lines)")
            if s["arrived"] < s["n"]:
                text += f"; WARNING: {s['n'] - s['arrived']} of {s['n']} lines did not arrive inside Q's support"
            return text
        how = f"{s['method']} with {s['steps']} steps"
        if s["method"] in lines.PAIRS:
            how += f" ({s['rejected']} rejected; rtol {s['rtol']:g}, atol {s['atol']:g})"
        text = f"{s['n']} samples, {how}, {s['evaluations']} evaluations, from z={s['z0']:g} to z={s['z1']:g}"
        if s["fz_nonpositive"]:
            text += (f"; WARNING: f_z <= 0, a non-finite f or a slope beyond {STEEP_FACTOR:g}x the steepest "
                     f"target at {s['fz_nonpositive']} stage evaluations on {s['lines_fz_nonpositive']} lines: "
                     "those stages used slope 0 or the limit")
        if s["nonfinite"]:
            text += f"; WARNING: {s['nonfinite']} samples are not finite"
        return text


def follow_arc(model, p, L, h, max_steps, centre, support, radius, method="euler", keep=False, on_step=None,
               rtol=1e-4, atol=1e-4):
    """Follow ``dp/dtau = f/|f|`` from the rows of ``p`` with step ``h`` by
    :func:`physfield.lines.follow_arc` (module docstring, Coulomb runs): the end rules with ``Q``'s
    support ball as the one target, no capture before the plate, escape beyond ``radius`` of
    ``(L/2, centre)`` (:func:`support_ends`).

    Parameters
    ----------
    model : torch.nn.Module
        The net of a direction target (its output is the field ``f``, :func:`learn.slope.unit_fn`).
    p : torch.Tensor, shape (n, D+1)
        The start points ``(z, x)``.
    L : float
        The plate distance (the sink plate ``z = L``).
    h : float
        The arc-length step, ``> 0`` (an embedded pair's longest step).
    max_steps : int
        Lines still running after this many steps are lost.
    centre : torch.Tensor, shape (D,)
        The centre ``c`` of ``Q``'s support ball.
    support : float
        The radius ``r >= 0`` of ``Q``'s support ball.
    radius : float
        The escape radius ``> 0`` around ``(L/2, centre)``.
    method : str
        ``"euler"`` (the default), ``"heun"``, ``"rk4"``, or an embedded pair ``"bs32"``,
        ``"dopri5"`` (each line its own step).
    keep : bool
        Also keep every line's points after each step (the follower's ``path``).
    on_step : callable, optional
        Passed to :func:`physfield.lines.follow_arc` (``on_step(lines still going)``).
    rtol, atol : float
        An embedded pair's tolerances (default ``1e-4`` each).

    Returns
    -------
    physfield.lines.ArcLines
        The follower's result (status, ends, turned, ..., path).
    """
    if not (h > 0 and radius > 0 and support >= 0):
        raise ValueError(f"need step h > 0, radius > 0 and support radius >= 0, got {h}, {radius}, {support}")
    return lines.follow_arc(unit_fn(model), p, support_ends(L, centre, support, radius), h, max_steps, method,
                            keep=keep, on_step=on_step, rtol=rtol, atol=atol)


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
def sample(model, run, n, source=None, steps=100, method="rk4", seed=0, trajectories=False, device="cpu",
           max_steps=None, radius=None, labels=None, guidance=None, progress=False, rtol=1e-4, atol=1e-4):
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
        The ``z`` grid's steps (default 100; an adaptive method's first trial step is ``(L - eps)
        / steps``); in arc length the step is ``(L - eps) / steps``.
    method : str
        ``"euler"``, ``"heun"``, ``"rk4"`` (the default: ``learn check``'s too), or in ``z`` the
        adaptive ``"bs32"`` or ``"dopri5"``.
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
        The guidance ``w`` (default :data:`learn.guidance.GUIDANCE` with labels, 0 without).
    progress : bool
        Report progress (:func:`physfield.progress.bar`: the share of the gap covered in ``z``,
        ended lines in arc length).
    rtol, atol : float
        The tolerances of an adaptive method (default ``1e-4`` each; float32 lines).

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
        return _sample_arc(model, run, x, x0, steps, method, trajectories, max_steps, radius, progress, rtol, atol)
    limit = STEEP_FACTOR * run.steepest if run.steepest else None
    y = None if labels is None else torch.from_numpy(labels.astype(np.int64)).to(device)
    net = conditioned(model, y, guidance)
    bar = progress_bar(100, "sample", "%", enabled=progress)
    res = lines.follow_z(slope_fn(net, run.regression, limit, L), x, eps, L, steps, method, keep=trajectories,
                         on_step=gap_covered(bar, eps, L), rtol=rtol, atol=atol)
    bar.close()
    x, bad, path = res.x, res.bad, res.path
    out = x.cpu().numpy()
    stats = {"n": n, "steps": res.steps, "rejected": res.rejected, "evaluations": res.evaluations, "method": method,
             "rtol": rtol, "atol": atol, "source": source, "z0": eps, "z1": L,
             "fz_nonpositive": int(bad.sum()), "lines_fz_nonpositive": int((bad > 0).sum()),
             "nonfinite": int((~np.isfinite(out).all(axis=1)).sum()), "guidance": guidance,
             "labels": None if labels is None else sorted(set(labels.tolist()))}
    paths = torch.stack(path).cpu().numpy() if trajectories else None
    return SampleResult(out, paths, stats, x0)


def _sample_arc(model, run, x, x0, steps, method, trajectories, max_steps, radius, progress, rtol, atol):
    """The Coulomb branch of :func:`sample`: arc length from ``(eps, x0)`` (module docstring)."""
    D, L, eps = run.D, run.L, run.eps
    positive_int("steps", steps)
    c, r = support_ball(run.targets.target, D)
    max_steps = ARC_STEP_CAP * steps if max_steps is None else max_steps
    radius = ARC_RADIUS * (L + r) if radius is None else radius
    h = (L - eps) / steps
    p = torch.cat([torch.full_like(x[:, :1], eps), x], dim=1)
    centre = torch.from_numpy(c.astype(np.float32)).to(x.device)
    bar = progress_bar(len(x0), "sample", "line", enabled=progress)
    res = follow_arc(model, p, L, h, max_steps, centre, r, radius, method, trajectories, ended_lines(bar, len(x0)),
                     rtol, atol)
    bar.close()
    status = res.status.cpu().numpy()
    mask = status == lines.ARRIVED
    stats = {"sampler": "arc", "n": len(x0), "method": method, "h": h, "max_steps": max_steps,
             "steps_done": int(res.steps.max()), "evaluations": res.evaluations, "radius": radius,
             "support_centre": c.tolist(), "support_radius": r,
             "z0": eps, "z1": L, "lines_fz_negative": int(res.turned.sum())}
    stats.update({k: int((status == i).sum()) for i, k in enumerate(ARC_STATUS)})
    paths = torch.stack(res.path).cpu().numpy() if trajectories else None
    return SampleResult(res.end[:, 1:].cpu().numpy()[mask], paths, stats, x0[mask], mask, status)
