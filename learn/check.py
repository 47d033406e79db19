"""Line diagnostics of a learned net: ``learn check --checkpoint DIR``.

The learned field is followed like an exact one in ``physfield check``: as a black box, from
``P`` in arc length, free to turn back or to pass the sink plate, with the one follower of
physfield (:func:`physfield.lines.follow_arc`). Lines start at ``(eps, a)``, ``a ~ P`` (the run's
source spec); the direction is ``f / |f|`` for a direction net and ``(1, f / L) / |(1, f / L)|``
for a velocity net (whose ``f_z`` is 1 by construction); by default the Bogacki-Shampine pair
steps each line (``rtol = atol = 1e-4``, steps at most ``(L - eps) / steps``), as ``physfield
check`` does; on the README's moons run it gives the RK4 figures in 421 evaluations instead of 556.
The end rules are those of :mod:`learn.sample` (``Q``'s support ball as the one target, no
capture before the plate). Rows (the properties the run's field claims are marked pass/fail,
the others measured):

- ``lines_turned`` (forward): the share of lines that met ``f_z <= 0``;
- ``lines_reversed`` (forward): the share that went back behind ``z = 0``;
- ``lines_leaked`` (vanishes_outside): the share through ``z = L`` outside ``Q``'s support;
- ``lines_lost`` (endpoints): the share at a null point, escaped or out of steps;
- ``transport_w2`` (endpoints): ``W2`` between the ``m`` arrived lines' ends and ``m`` of
  ``SUPPORT_DRAWS`` reference draws of ``Q``, against the exact field's own score on the same
  data: the exact field's lines end at its sinks, which are draws of ``Q``, so it scores the ``W2``
  of a fresh sample of ``m`` draws of ``Q`` to the same reference. ``FLOOR_DRAWS`` such samples
  give that finite-sample floor, mean ``mu`` and standard deviation ``sd``; the claim is ``W2 <=
  mu + FLOOR_SD sd``: the learned ends are as close to ``Q`` as an exact transport's, within the
  floor's own spread. A net that does not transport, or moves ``Q`` by a fraction of its
  spread, fails;
- ``lines_off_q`` (measured): the share whose end is farther from the nearest reference draw of
  ``Q`` than ``OFF_Q_QUANTILE`` of those draws are from their own nearest neighbour (a line that
  ends between ``Q``'s modes ends off ``Q``), beside the same share of a fresh sample of ``Q`` (the
  exact field's). A learned continuous transport puts some mass between modes an exact one
  does not (the README's moons run: 12.7 % against 0.9 %); the share is a measure of sharpness,
  not a claim, and ``transport_w2`` is the claim.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.spatial import cKDTree

from physfield import data as pdata
from physfield import lines, report
from physfield.metrics import w2
from physfield.progress import bar as progress_bar
from physfield.progress import ended_lines

from .sample import ARC_RADIUS, ARC_STEP_CAP, SUPPORT_DRAWS, support_ball, support_ends
from .slope import unit_fn

LINE_TOL = 0.01  # turned, reversed, leaked, lost: largest share
OFF_Q_QUANTILE = 0.99  # of the nearest-neighbour distances among Q's own draws
FLOOR_DRAWS = 8  # fresh samples of Q whose W2 to the reference are the exact field's own score
FLOOR_SD = 3.0  # the learned W2 may exceed the mean of that score by this many of its standard deviations


@torch.no_grad()
def check(model, run, n=1000, steps=100, method="bs32", seed=0, device="cpu", progress=False, rtol=1e-4, atol=1e-4):
    """The rows of the module docstring for ``n`` learned lines of a run's net.

    Parameters
    ----------
    model : torch.nn.Module
        The run's net (:func:`learn.sample.load_model`), on ``device``.
    run : learn.record.RunRecord
        The run's record: its field (which properties it claims), source and target specs, ``L``,
        ``eps`` and regression target.
    n : int
        The number of lines, started at ``n`` draws of the run's source spec (default 1000).
    steps : int
        The step is ``(L - eps) / steps`` (an embedded pair's longest step), the step cap
        ``ARC_STEP_CAP * steps`` (default 100).
    method : str
        An embedded pair ``"bs32"`` (the default) or ``"dopri5"`` (each line its own step,
        :func:`physfield.lines.follow_arc`), or fixed steps ``"euler"``, ``"heun"``, ``"rk4"``.
    seed : int
        The seed of the starts' draw (default 0).
    device : str or torch.device
        Where the lines are followed (default ``"cpu"``).
    progress : bool
        Report the lines that ended (:func:`physfield.progress.bar`).
    rtol, atol : float
        An embedded pair's tolerances (default ``1e-4`` each; float32 lines).

    Returns
    -------
    rows : list of dict
        One per row, ``{"name", "property", "value", "claim", "method", "status"}``; ``status``
        is pass/fail for a property the field claims (:func:`physfield.report.status`), else
        measured. The ``transport_w2`` row is there only when at least two lines arrived.
    stats : dict
        The share of lines of every status of :data:`physfield.lines.STATUS`, ``turned`` (the
        share that met ``f_z <= 0``), ``n`` and ``evaluations`` (the net's, each on the lines
        still going).
    """
    D, L, eps, field, target = run.D, run.L, run.eps, run.field, run.regression
    x0 = pdata.sample(run.targets.source, n, seed=seed, dim=D)
    p = torch.from_numpy(np.column_stack([np.full(n, eps), x0]).astype(np.float32)).to(device)
    c, r = support_ball(run.targets.target, D)
    centre = torch.from_numpy(c.astype(np.float32)).to(device)
    ends = support_ends(L, centre, r, ARC_RADIUS * (L + r))
    bar = progress_bar(n, "checking", "line", enabled=progress)
    res = lines.follow_arc(unit_fn(model, target, L), p, ends, (L - eps) / steps, ARC_STEP_CAP * steps,
                           method, on_step=ended_lines(bar, n), rtol=rtol, atol=atol)
    bar.close()
    status = res.status.cpu().numpy()
    share = {name: float(np.mean(status == code)) for code, name in enumerate(lines.STATUS)}
    end = res.end[:, 1:].cpu().numpy()
    arrived = status == lines.ARRIVED
    Q = pdata.sample(run.targets.target, SUPPORT_DRAWS, seed=1, dim=D)
    tree = cKDTree(Q)
    spacing = float(np.quantile(tree.query(Q, k=2)[0][:, 1], OFF_Q_QUANTILE))
    off = float(np.mean(~arrived | (tree.query(end)[0] > spacing)))
    exact_off = float(np.mean(tree.query(pdata.sample(run.targets.target, n, seed=2, dim=D))[0] > spacing))
    turned = float(res.turned.float().mean())
    stepper = f"{method} (rtol {rtol:g}, atol {atol:g}, steps at most" if method in lines.PAIRS else f"{method}, step"
    how = f"{n} learned lines from P, {stepper} (L - eps)/{steps}{')' if method in lines.PAIRS else ''}, " \
          f"{res.evaluations} evaluations"
    rows = [
        ("lines_turned", "forward", turned, turned <= LINE_TOL, f"<= {LINE_TOL}",
         f"{how}: share meeting f_z <= 0" + (f" (a {target.name} net: f_z = 1 by construction)"
                                             if target.always_forward else "")),
        ("lines_reversed", "forward", share["reversed"], share["reversed"] <= LINE_TOL, f"<= {LINE_TOL}",
         "share back behind z = 0"),
        ("lines_leaked", "vanishes_outside", share["leaked"], share["leaked"] <= LINE_TOL, f"<= {LINE_TOL}",
         f"share through z = L outside Q's support ball (radius {r:.3g})"),
        ("lines_lost", "endpoints", share["lost"], share["lost"] <= LINE_TOL, f"<= {LINE_TOL}",
         "share at a null point, escaped or out of steps"),
    ]
    m = int(arrived.sum())
    if m >= 2:
        learned, floor = w2(end[arrived], Q[:m]), np.array(
            [w2(pdata.sample(run.targets.target, m, seed=[3, k], dim=D), Q[:m]) for k in range(FLOOR_DRAWS)])
        limit = float(floor.mean() + FLOOR_SD * floor.std(ddof=1))
        rows.append(("transport_w2", "endpoints", learned, learned <= limit, f"<= {limit:.3g}",
                     f"W2 of the {m} arrived ends vs as many draws of Q; the exact field's (its sinks: {FLOOR_DRAWS} "
                     f"fresh samples of Q) {floor.mean():.3g} +- {floor.std(ddof=1):.2g}, + {FLOOR_SD:g} s.d."))
    out = [{"name": name, "property": prop, "value": value, "claim": claim, "method": method_,
            "status": report.status(prop, field.claims, ok)}
           for name, prop, value, ok, claim, method_ in rows]
    out.append({"name": "lines_off_q", "property": "-", "value": off, "claim": "-", "status": "measured",
                "method": f"share not ending within {spacing:.3g} of a draw of Q (its {OFF_Q_QUANTILE:.0%} "
                          f"nearest-neighbour spacing); a fresh sample of Q (the exact field's ends): {exact_off:.3g}"})
    return out, {**share, "turned": turned, "n": n, "evaluations": res.evaluations}
