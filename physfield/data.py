"""Data sources: a spec string -> seeded samples, an ``(n, D)`` float64 array.

One spec string per side (``--source gaussian --target swissroll``)::

    gaussian[:D]      standard normal N(0, I_D); D from the spec, else from ``dim``, else the
                      other side's (:func:`pair_dims`), else 2
    8gaussians        eight Gaussians, std 0.4, centres on the circle of radius 4
    moons             two interleaved half circles of radius 2, x in [-3, 3], y in [-1.5, 1.5]
    circles           two concentric circles of radii 4 and 2
    swissroll         the 2-D swiss roll spiral, radius 1.6 to 4.7
    checkerboard      uniform on 8 of the 16 squares (side 2) tiling [-4, 4]^2
    mixture           three anisotropic Gaussians with weights 0.5, 0.3, 0.2
    digits[:C,...]    scikit-learn digits, 8x8 images as 64-D rows scaled to [-1, 1];
                      ``digits:2`` keeps class 2 only (180 or so images per class),
                      ``digits:2,3`` classes 2 and 3
    PATH.npy          user array, one sample per row
    PATH.h5:DATASET   user array from an HDF5 dataset (``.hdf5`` too); DATASET may be a/b/c

The toy sets are 2-D (except ``gaussian``) and sit at the scales of the flow-matching literature,
a few units across, centred at 0 except ``mixture`` and ``swissroll`` (the docstring of each
sampler gives its geometry, noise and mean). The samplers are pure functions of ``(n, rng)``.

Finite sources (digits, user arrays) are resampled with the seed: ``n`` distinct rows when
``n`` does not exceed the rows available, ``n`` draws with replacement otherwise. User arrays of
rank > 2, ``(n, ...)``, are images: each sample is flattened to a row and ``shape`` gives the
image shape. Nothing is downloaded: scikit-learn ships the digits inside the package.

Labels (class-conditional runs, :func:`sample_labelled`): ``digits`` carry their digit (10
classes, also for a subset such as ``digits:2,3``), the toy mixtures the index of the component a
sample was drawn from: ``8gaussians`` its centre ``k`` (angle ``k pi/4``, 8 classes), ``moons`` 0
upper / 1 lower, ``circles`` 0 outer / 1 inner, ``checkerboard`` its square ``2 i + j // 2`` (8),
``mixture`` its component (3). ``gaussian``, ``swissroll`` and user files have none. Given the
labels (``labels=``), a sampler draws each sample from that class, so a batch of sinks can match
a batch of sources class by class.

Every problem (unknown name, a ``dim`` the set does not have, a missing, empty, non-numeric or
non-finite file, a missing dataset, an empty class) is a ``ValueError`` with a one-line message.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache, partial
from pathlib import Path

import numpy as np
from scipy.special import logsumexp

from .validate import array as _checked
from .validate import one_line, positive_int

TOY_NOISE = 0.1  # std of the isotropic Gaussian noise on moons, circles and swissroll


def _unit(t):
    """Unit vectors ``(cos t, sin t)`` as an ``(n, 2)`` array."""
    return np.stack([np.cos(t), np.sin(t)], axis=1)


def _gaussian(n, rng, dim, labels=None):
    """Standard normal N(0, I_dim): mean 0, covariance I. No labels."""
    return rng.standard_normal((n, dim)), None


def _eight_gaussians(n, rng, labels=None):
    """Equal-weight mixture of N(4 (cos k pi/4, sin k pi/4), 0.4^2 I), k = 0..7 (the label).

    Mean 0; covariance (4^2 / 2 + 0.4^2) I = 8.16 I.
    """
    k = rng.integers(0, 8, n) if labels is None else labels
    centres = 4.0 * _unit(k * (np.pi / 4))
    return centres + 0.4 * rng.standard_normal((n, 2)), k


def _moons(n, rng, labels=None):
    """scikit-learn's two moons, centred and scaled by 2, plus noise of std ``TOY_NOISE``.

    Upper moon ``2 (cos t - 1/2, sin t - 1/4)`` (label 0), lower moon ``2 (1/2 - cos t, 1/4 - sin t)``
    (label 1), ``t ~ U(0, pi)``, equal weights: the arcs have radius 2 and the mean is exactly 0.
    """
    t = rng.uniform(0.0, np.pi, n)
    k = (rng.random(n) >= 0.5).astype(np.int64) if labels is None else labels
    side = np.where(k == 0, 1.0, -1.0)  # +1 upper moon, -1 lower moon
    arc = side[:, None] * (_unit(t) - [0.5, 0.25])
    return 2.0 * arc + TOY_NOISE * rng.standard_normal((n, 2)), k


def _circles(n, rng, labels=None):
    """Two concentric circles of radii 4 (label 0) and 2 (label 1), equal weights, uniform angle,
    noise std ``TOY_NOISE``."""
    k = (rng.random(n) >= 0.5).astype(np.int64) if labels is None else labels
    radius = np.where(k == 0, 4.0, 2.0)
    return radius[:, None] * _unit(rng.uniform(0.0, 2 * np.pi, n)) + TOY_NOISE * rng.standard_normal((n, 2)), k


def _swissroll(n, rng, labels=None):
    """The 2-D swiss roll ``(t/3) (cos t, sin t)``, ``t ~ U(1.5 pi, 4.5 pi)``, noise std ``TOY_NOISE``.

    A spiral of one and a half turns whose radius ``t/3`` grows from pi/2 to 3 pi/2 (1.6 to 4.7);
    mean ``(2/3, 2/(9 pi))``. No labels.
    """
    t = rng.uniform(1.5 * np.pi, 4.5 * np.pi, n)
    return (t / 3.0)[:, None] * _unit(t) + TOY_NOISE * rng.standard_normal((n, 2)), None


def _checkerboard(n, rng, labels=None):
    """Uniform on the 8 squares ``[2i-4, 2i-2] x [2j-4, 2j-2]`` with ``i + j`` even, i, j in 0..3;
    label ``2 i + j // 2``.

    Support in [-4, 4]^2, mean 0, no noise.
    """
    if labels is None:
        i = rng.integers(0, 4, n)
        j = 2 * rng.integers(0, 2, n) + i % 2  # i + j even
    else:
        i = labels // 2
        j = 2 * (labels % 2) + i % 2
    return 2.0 * (np.stack([i, j], axis=1) + rng.random((n, 2))) - 4.0, 2 * i + j // 2


MIXTURE = {  # weights, means, per-axis standard deviations of the three components of `mixture`
    "weights": np.array([0.5, 0.3, 0.2]),
    "means": np.array([[-2.5, -1.5], [2.5, -1.5], [0.0, 3.0]]),
    "stds": np.array([[0.8, 0.3], [0.3, 0.8], [0.5, 0.5]]),
}


def _mixture(n, rng, labels=None):
    """Three anisotropic Gaussians (label: the component), parameters in ``MIXTURE``: mean
    ``sum_k w_k m_k = (-0.5, -0.6)``."""
    k = rng.choice(3, size=n, p=MIXTURE["weights"]) if labels is None else labels
    return MIXTURE["means"][k] + MIXTURE["stds"][k] * rng.standard_normal((n, 2)), k


TOYS = {  # the fixed 2-D toy sets
    "8gaussians": _eight_gaussians,
    "moons": _moons,
    "circles": _circles,
    "swissroll": _swissroll,
    "checkerboard": _checkerboard,
    "mixture": _mixture,
}
CLASSES = {"8gaussians": 8, "moons": 2, "circles": 2, "checkerboard": 8, "mixture": 3, "digits": 10}
NAMES = ("gaussian", *TOYS, "digits")  # every named source (files aside)
_H5 = (".h5", ".hdf5")


def sample(spec, n, seed=0, dim=None):
    """``n`` samples of the source ``spec`` as an ``(n, D)`` float64 array, reproducible by ``seed``.

    ``dim`` sets the dimension of ``gaussian`` (default 2); for every other source it is only
    checked against the source's own dimension (a mismatch is a ``ValueError``).
    """
    return _draw(spec, n, seed, dim, None)[0]


def sample_labelled(spec, n, seed=0, dim=None, labels=None):
    """``(x (n, D) float64, labels (n,) int64)``: :func:`sample` with each sample's class (module
    docstring; the same ``x`` as :func:`sample` for the same arguments). ``labels``: draw sample
    ``i`` from class ``labels[i]`` instead. A spec without labels, or a class the spec does not
    hold, is a ``ValueError``."""
    source = _source(spec, dim)
    if source.classes is None:
        raise ValueError(f"data source {spec!r} has no labels (labelled: {', '.join(CLASSES)})")
    if labels is not None:
        labels = np.asarray(labels)
        if labels.shape != (n,) or labels.dtype.kind not in "iu":
            raise ValueError(f"labels must be {n} integers, got {labels.dtype} {labels.shape}")
        missing = sorted(set(np.unique(labels).tolist()) - set(source.present))
        if missing:
            raise ValueError(f"data source {spec!r} has no class {missing[0]} (it has {_classes_text(source.present)})")
        labels = labels.astype(np.int64)
    x, y = _draw(spec, n, seed, dim, labels)
    return x, np.asarray(y, dtype=np.int64)


def log_density(spec, x):
    """``log p(x)`` of the rows of ``x (n, D)`` under the source ``spec``, where it has a closed form:
    ``gaussian[:D]`` (``-|x|^2/2 - D/2 log 2 pi``) and the Gaussian mixtures ``8gaussians`` and
    ``mixture`` (log-sum-exp over their components). Any other spec is a ``ValueError``."""
    name, _ = _parse(spec)
    x = np.asarray(x, dtype=np.float64)
    D = x.shape[1] if x.ndim == 2 else None
    if D is None or D != sample(spec, 1, dim=D if name == "gaussian" else None).shape[1]:
        raise ValueError(f"points must be rows (n, D) of the dimension of {spec!r}, got shape {x.shape}")
    if name == "gaussian":
        return -0.5 * (x ** 2).sum(axis=1) - 0.5 * D * np.log(2 * np.pi)
    if name == "8gaussians":
        means, stds, weights = 4.0 * _unit(np.arange(8) * (np.pi / 4)), np.full((8, 2), 0.4), np.full(8, 1 / 8)
    elif name == "mixture":
        means, stds, weights = MIXTURE["means"], MIXTURE["stds"], MIXTURE["weights"]
    else:
        raise ValueError(f"no closed-form density for {spec!r}; log p is known for gaussian, 8gaussians, mixture")
    z = (x[:, None, :] - means[None]) / stds[None]
    log_k = np.log(weights) - 0.5 * (z ** 2).sum(axis=2) - np.log(stds).sum(axis=1) - np.log(2 * np.pi)
    return logsumexp(log_k, axis=1)


def classes(spec):
    """``(n_classes, present)``: the size of the label space of ``spec`` (labels ``0 .. n_classes
    - 1``) and the labels its samples take (``digits:2,3``: ``(10, (2, 3))``); ``None`` for a
    spec without labels."""
    source = _source(spec)
    return None if source.classes is None else (source.classes, source.present)


def _classes_text(present):
    return ", ".join(map(str, present))


def _draw(spec, n, seed, dim, labels):
    source = _source(spec, dim)
    n = positive_int("n", n)
    try:
        rng = np.random.default_rng(seed)
    except (TypeError, ValueError):
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}") from None
    x, y = source.draw(n, rng, labels=labels)
    return np.ascontiguousarray(x, dtype=np.float64), y


def pair_dims(source, target, dim=None):
    """``(source_dim, target_dim)`` to sample a pair of specs with: ``dim`` for both when given;
    otherwise a bare ``gaussian`` takes the dimension of the other side when that one is fixed
    (``gaussian -> digits`` is 64-D) and every other spec its own (``None``)."""
    if dim is not None:
        return dim, dim

    def fixed(spec):
        name, arg = _parse(spec)
        return None if name == "gaussian" and arg is None else sample(spec, 1).shape[1]

    ds, dt = fixed(source), fixed(target)
    return (dt if ds is None else None), (ds if dt is None else None)


def shape(spec):
    """Image shape of one sample of ``spec`` (``digits``: ``(1, 8, 8)``), ``None`` for vectors."""
    return _source(spec).shape


@dataclass(frozen=True)
class _Source:
    """A parsed spec: ``draw(n, rng, labels=None) -> (x, labels or None)``, the image ``shape``,
    the size of its label space ``classes`` and the labels it holds ``present`` (``None``, ``()``
    without labels)."""

    draw: object
    shape: tuple | None
    classes: int | None
    present: tuple


def _source(spec, dim=None):
    """Parse and validate ``spec`` -> :class:`_Source`."""
    name, arg = _parse(spec)
    classes = CLASSES.get(name)
    present = tuple(range(classes)) if classes else ()
    if name == "gaussian":
        D = 2 if dim is None else dim
        if arg is not None:
            if not arg.isdecimal():
                raise ValueError(f"gaussian dimension must be a positive integer ('gaussian:3'), got {arg!r}")
            D = int(arg)
        D = positive_int("gaussian dimension", D)
        draw, shape_ = partial(_gaussian, dim=D), None
    elif name in TOYS:
        if arg is not None:
            raise ValueError(f"{name} takes no ':' argument, got {spec!r}")
        draw, shape_, D = TOYS[name], None, 2
    elif name == "digits":
        rows, labels, present = _digits(arg)
        draw, shape_, D = partial(_resample, rows, labels), (1, 8, 8), rows.shape[1]
    else:
        rows, shape_ = _read(name, arg)
        draw, D = partial(_resample, rows, None), rows.shape[1]
    if dim is not None and positive_int("dim", dim) != D:
        raise ValueError(f"data source {spec!r} is {D}-dimensional, but dim={dim} was asked")
    return _Source(draw, shape_, classes, present)


def _parse(spec):
    """``spec`` -> ``(name, argument or None)``; user files give ``("npy", path)`` or
    ``("h5", (path, dataset))``."""
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"a data spec must be a non-empty string, got {spec!r}")
    spec = spec.strip()
    if spec.lower().endswith(".npy"):
        return "npy", spec
    path, _, dataset = spec.rpartition(":")
    if path.lower().endswith(_H5):
        return "h5", (path, dataset)
    if spec.lower().endswith(_H5):
        raise ValueError(f"HDF5 data spec {spec!r} needs a dataset: '{spec}:NAME'")
    name, colon, arg = spec.partition(":")
    if name not in NAMES:
        known = ", ".join(NAMES)
        raise ValueError(f"unknown data source {name!r}; known: {known}, PATH.npy, PATH.h5:DATASET")
    return name, arg if colon else None


def _resample(rows, row_labels, n, rng, labels=None):
    """``n`` rows of ``rows`` and their labels (``row_labels``, or ``None``): distinct when ``n <=
    len(rows)``, drawn with replacement otherwise; given ``labels``, row ``i`` from class ``labels[i]``
    (the same rule within each class)."""
    if labels is None:
        pick = rng.choice(len(rows), size=n, replace=n > len(rows))
    else:
        pick = np.empty(n, dtype=np.int64)
        for c in np.unique(labels):
            where, pool = np.flatnonzero(labels == c), np.flatnonzero(row_labels == c)
            pick[where] = pool[rng.choice(len(pool), size=len(where), replace=len(where) > len(pool))]
    return rows[pick], (None if row_labels is None else row_labels[pick])


@lru_cache(maxsize=1)
def _all_digits():
    """scikit-learn's 1797 digits: pixels 0..16 mapped to [-1, 1] (``p / 8 - 1``), and labels."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise ValueError("the digits data set needs scikit-learn: pip install scikit-learn") from None
    digits = load_digits()
    return digits.data / 8.0 - 1.0, digits.target


def _digits(arg):
    """Digits rows ``(m, 64)``, their labels and the classes kept: all of them, or the classes of
    ``arg`` ('2' or '2,3')."""
    rows, target = _all_digits()
    if arg is None:
        return rows, target, tuple(range(10))
    wanted = arg.split(",")
    if not all(w in tuple("0123456789") for w in wanted):
        raise ValueError(f"digits classes must be digits 0..9 ('digits:2' or 'digits:2,3'), got {arg!r}")
    present = tuple(sorted({int(w) for w in wanted}))
    keep = np.isin(target, present)
    return rows[keep], target[keep], present


def _read(kind, arg):
    """User array from ``.npy`` or HDF5 -> ``(rows (m, D) float64, sample shape if rank > 2)``."""
    path = arg if kind == "npy" else arg[0]
    if not Path(path).is_file():
        raise ValueError(f"data file not found: {path}")
    if kind == "npy":
        where = path
        try:
            array = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise ValueError(f"cannot read {path} as .npy: {one_line(exc)}") from None
        if not isinstance(array, np.ndarray):  # an .npz archive renamed .npy
            raise ValueError(f"{path} is not a single .npy array")
    else:
        array, where = _read_h5(*arg), f"{path}:{arg[1]}"
    array = np.asarray(array)
    if array.ndim < 2:
        raise ValueError(f"{where} must hold one sample per row, shape (n, D) or (n, ...), got {array.shape}")
    rows = _checked(where, array.reshape(array.shape[0], int(np.prod(array.shape[1:]))), 2)
    return rows.astype(np.float64), (array.shape[1:] if array.ndim > 2 else None)


def _read_h5(path, dataset):
    """The array stored in ``dataset`` of the HDF5 file ``path``."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            node = f.get(dataset) if dataset else None
            if not isinstance(node, h5py.Dataset):
                names = []
                f.visititems(lambda name, obj: names.append(name) if isinstance(obj, h5py.Dataset) else None)
                raise ValueError(f"{path} has no dataset {dataset!r}; it has: {', '.join(names) or 'none'}")
            return node[()]
    except OSError as exc:
        raise ValueError(f"cannot read {path} as HDF5: {one_line(exc)}") from None
