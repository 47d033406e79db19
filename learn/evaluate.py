"""Distances between generated samples and held-out reference samples of ``Q``.

- ``W2``: exact 2-Wasserstein distance of the two empirical measures (uniform weights), POT
  ``emd2`` on the squared Euclidean cost, then the square root (``physfield.metrics.w2``).
- ``MMD``: ``sqrt(max(0, MMD^2))`` with the biased (V-statistic) estimate::

      MMD^2 = mean k(x, x') + mean k(y, y') - 2 mean k(x, y),
      k(a, b) = (1/|H|) sum_{h in H} exp(-|a - b|^2 / (2 h^2)),

  ``H`` the given bandwidths, or by default the median heuristic ``H = {median |a - b|}`` over
  all distinct pairs of the pooled samples.

The reference is ``reference`` drawn fresh with ``seed`` (default ``EVAL_SEED``, a stream no
cache or sampler uses by default); for a finite data set (digits, files) it is resampled from
the same rows, so there it is not held out. When there are more samples than ``n`` a seeded
subset of ``n`` is used (exact ``W2`` costs ``O(n^3)``).

- Shape preservation (translation): ``mean_i |y_i - x_i|`` over the rows of the outputs ``y``
  and the inputs ``x`` they were started from (same shapes, row ``i`` with row ``i``).
- Digits: intended-class accuracy and the Frechet distance in a small classifier's feature
  space, :mod:`learn.classifier`.
- Pictures (:mod:`learn.pictures`): a scatter over the reference for 2-D samples; a grid of
  images for image-shaped samples (``C = 1`` channel, e.g. digits ``(1, 8, 8)``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy.spatial.distance import cdist, pdist

from physfield import data as pdata
from physfield.metrics import w2
from physfield.validate import one_line

from .pictures import picture

EVAL_SEED = 20240605


def mmd(x, y, bandwidths=None):
    """MMD between the rows of ``x`` and ``y`` (module docstring).

    Parameters
    ----------
    x : array_like, shape (m, D)
        The first point set.
    y : array_like, shape (k, D)
        The second point set.
    bandwidths : sequence of float, optional
        The kernel bandwidths ``H``, all ``> 0``; ``None``: the median heuristic.

    Returns
    -------
    mmd : float
        ``sqrt(max(0, MMD^2))``.
    bandwidths : list of float
        The bandwidths used.
    """
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if bandwidths is None:
        bandwidths = [float(np.median(pdist(np.concatenate([x, y]))))]
    if not bandwidths or min(bandwidths) <= 0:
        raise ValueError(f"bandwidths must be positive, got {bandwidths}")

    def mean_k(a, b):
        d2 = cdist(a, b, "sqeuclidean")
        return np.mean([np.exp(-d2 / (2 * h * h)).mean() for h in bandwidths])

    value = mean_k(x, x) + mean_k(y, y) - 2 * mean_k(x, y)
    return float(np.sqrt(max(value, 0.0))), list(bandwidths)


def load_samples(path, what="samples"):
    """A finite ``(n, D)`` float array from a ``.npy`` file; one-line ``ValueError`` messages.

    Parameters
    ----------
    path : str or os.PathLike
        The ``.npy`` file: a non-empty numeric 2-D array of finite values.
    what : str
        What the file holds, for the messages (default ``"samples"``).

    Returns
    -------
    ndarray, shape (n, D), float64
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{what} file not found: {path}")
    try:
        x = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path} is not a .npy array ({one_line(exc)})") from None
    if x.ndim != 2 or len(x) == 0 or not np.issubdtype(x.dtype, np.number):
        raise ValueError(f"{path}: expected a non-empty numeric (n, D) array, got {x.dtype} {x.shape}")
    if not np.isfinite(x).all():
        bad = int((~np.isfinite(x).all(axis=1)).sum())
        raise ValueError(f"{path}: {bad} of {len(x)} samples are not finite")
    return x.astype(np.float64)


def load_labels(path, n):
    """Integer labels ``(n,)`` from ``.npy`` (``learn sample --labels``), one per sample; one-line
    ``ValueError`` messages.

    Parameters
    ----------
    path : str or os.PathLike
        The ``.npy`` file of integer labels.
    n : int
        The number of samples: the labels must have shape ``(n,)``.

    Returns
    -------
    ndarray of int, shape (n,)
    """
    try:
        labels = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise ValueError(f"labels file not found: {path}") from None
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot read labels {path} as .npy: {one_line(exc)}") from None
    if not isinstance(labels, np.ndarray) or labels.dtype.kind not in "iu" or labels.shape != (n,):
        raise ValueError(f"labels {path} must be {n} integers (one per sample), got "
                         f"{getattr(labels, 'dtype', type(labels))} {getattr(labels, 'shape', '')}")
    return labels


def evaluate(samples, reference, n=2000, seed=EVAL_SEED, bandwidths=None):
    """``W2`` and MMD of ``samples`` against ``n`` draws of the data spec ``reference`` (module
    docstring); also returns the two point sets used.

    Parameters
    ----------
    samples : array_like, shape (m, D)
        The generated samples; more than ``n`` are subsampled to a seeded subset of ``n``.
    reference : str
        The data spec of ``Q``.
    n : int
        The number of reference draws and the most samples used (default 2000).
    seed : int
        The seed of the reference draws and of the subset (default ``EVAL_SEED``).
    bandwidths : sequence of float, optional
        The MMD's bandwidths (:func:`mmd`; ``None``: the median heuristic).

    Returns
    -------
    report : dict
        ``{"w2", "mmd", "bandwidths", "n", "n_reference", "reference"}``: ``n`` the number of
        samples used, ``n_reference`` the number of reference draws.
    samples : ndarray, shape (min(m, n), D)
        The samples used (float64).
    ref : ndarray, shape (n, D)
        The reference draws.
    """
    samples = np.asarray(samples, np.float64)
    D = samples.shape[1]
    D_ref = pdata.pair_dims(reference, f"gaussian:{D}")[0] or pdata.get(reference).dim  # a bare gaussian takes D
    if D_ref != D:
        raise ValueError(f"the samples are {D}-dimensional but the reference {reference!r} is {D_ref}-dimensional")
    ref = pdata.sample(reference, n, seed=seed, dim=D)
    if len(samples) > n:
        samples = samples[np.random.default_rng(seed).choice(len(samples), n, replace=False)]
    value, h = mmd(samples, ref, bandwidths)
    report = {"w2": w2(samples, ref), "mmd": value, "bandwidths": h, "n": len(samples), "n_reference": n,
              "reference": reference}
    return report, samples, ref


def is_digits(reference):
    """Whether the data spec ``reference`` names the digits (``digits``, ``digits:C,...``), which
    add the metrics of :mod:`learn.classifier`.

    Parameters
    ----------
    reference : str
        A data spec.

    Returns
    -------
    bool
    """
    return issubclass(pdata.source.parse(reference)[0], pdata.Digits)


def assess(samples, reference, n=2000, seed=EVAL_SEED, bandwidths=None, classify=None, inputs=None, labels=None,
           png=None):
    """Everything ``learn eval`` measures of ``samples`` against the data spec ``reference``.

    Parameters
    ----------
    samples : ndarray, shape (m, D)
        Generated samples (``learn sample``).
    reference : str
        The data spec of ``Q``; a digits spec (:func:`is_digits`) adds the classifier's metrics.
    n, seed, bandwidths
        As :func:`evaluate`.
    classify : int, optional
        Digits: the intended class (default: ``C`` of ``digits:C``).
    inputs : ndarray, shape (m, D), optional
        The inputs the samples were started from: adds the mean input-output distance.
    labels : ndarray of int, shape (m,), optional
        Digits: the class each sample was asked for: adds per-label metrics
        (:func:`learn.classifier.per_label`).
    png : str or os.PathLike, optional
        Also draw a picture: a scatter of 2-D samples over the reference, or a grid of image
        samples (with ``labels``: a row of up to 10 per class).

    Returns
    -------
    dict
        :func:`evaluate`'s report, plus ``"digits"`` (:func:`learn.classifier.report`, with
        ``"per_label"``) and ``"input_output_distance"`` where they apply.
    """
    digits = is_digits(reference)
    if classify is not None and not digits:
        raise ValueError(f"--classify needs a digits reference (digits or digits:C), got {reference!r}")
    if labels is not None and not digits:
        raise ValueError(f"--labels scores digits with the classifier; the reference is {reference!r}")
    io = None if inputs is None else input_output_distance(inputs, samples)
    report, used, ref = evaluate(samples, reference, n, seed, bandwidths)
    if digits:
        from . import classifier

        report["digits"] = classifier.report(samples, reference, classify)
        if labels is not None:
            report["digits"]["per_label"] = classifier.per_label(samples, labels)
    if io is not None:
        report["input_output_distance"] = io
    if png is not None:
        picture(samples, used, ref, report, png, labels)
    return report


def summary(report):
    """The lines ``learn eval`` prints for a report of :func:`assess`.

    Parameters
    ----------
    report : dict
        A report of :func:`assess`.

    Returns
    -------
    list of str
    """
    h = ", ".join(f"{v:.3g}" for v in report["bandwidths"])
    lines = [f"W2 {report['w2']:.4f}  MMD {report['mmd']:.4f} (bandwidth {h})  "
             f"n={report['n']} vs {report['n_reference']} of {report['reference']}"]
    if "digits" in report:
        from .classifier import CONFIDENT

        d = report["digits"]
        if d["intended"] is not None:
            lines.append(f"classified as {d['intended']}: {d['accuracy_intended']:.3f}")
        lines.append(f"Frechet distance (classifier features) {d['fd']:.4g} vs {d['n_real']} held-out real digits "
                     f"(classifier accuracy {d['classifier_accuracy']:.3f})")
        lines.append(f"read with confidence >= {CONFIDENT:g}: {d['confident']:.3f} of the samples, "
                     f"{d['confident_real']:.3f} of the real digits")
        for c, row in d.get("per_label", {}).items():
            fd = "-" if row["fd"] is None else f"{row['fd']:.4g}"
            lines.append(f"label {c}: {row['n']} samples, read as {c}: {row['accuracy']:.3f}, Frechet distance to "
                         f"real {c}s {fd}, confident {row['confident']:.3f}")
    if "input_output_distance" in report:
        lines.append(f"mean input-output distance {report['input_output_distance']:.4f}")
    return lines


def input_output_distance(inputs, outputs):
    """``mean_i |outputs_i - inputs_i|`` (Euclidean, row ``i`` with row ``i``).

    Parameters
    ----------
    inputs : array_like, shape (m, D)
        The points the lines started from.
    outputs : array_like, shape (m, D)
        The samples, row ``i`` started from row ``i`` of ``inputs`` (same shape, else a
        ``ValueError``).

    Returns
    -------
    float
    """
    inputs, outputs = np.asarray(inputs, np.float64), np.asarray(outputs, np.float64)
    if inputs.shape != outputs.shape:
        raise ValueError(f"inputs {inputs.shape} and samples {outputs.shape} must have the same shape, "
                         "one input row per sample row")
    return float(np.linalg.norm(outputs - inputs, axis=1).mean())
