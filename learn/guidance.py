"""Class-conditional nets: the labels a sample asks for, and classifier-free guidance.

A class-conditional net (trained on a ``--conditional`` cache) follows the field of the class
asked for each line (``labels``), or the unconditional field it learned by label dropout (no
``labels``). Classifier-free guidance of strength ``w`` (Ho and Salimans, 2022) follows::

    f = (1 + w) f(z, x | y) - w f(z, x | none)

in the parametrisation the net regresses (the velocity, or the direction before ``f_x / f_z``);
``w = 0`` is the conditional field itself. The default with labels, :data:`GUIDANCE`, is the best
measured (the README, "Conditional generation and log-likelihoods": the smallest ``w`` of the
sweep at which every digit is read as the one asked at least 95 % of the time; larger ``w`` raise
the Frechet distance).
"""

from __future__ import annotations

import numpy as np
import torch

from physfield import data as pdata
from physfield.validate import positive_int

from . import models

GUIDANCE = 0.25  # default classifier-free guidance with labels (the README, "Conditional generation and log-likelihoods")


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
