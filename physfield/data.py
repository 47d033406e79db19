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
    digits[:C]        scikit-learn digits, 8x8 images as 64-D rows scaled to [-1, 1];
                      ``digits:2`` keeps class 2 only (180 or so images per class)
    PATH.npy          user array, one sample per row
    PATH.h5:DATASET   user array from an HDF5 dataset (``.hdf5`` too); DATASET may be a/b/c

The toy sets are 2-D (except ``gaussian``) and sit at the scales of the flow-matching literature,
a few units across, centred at 0 except ``mixture`` and ``swissroll`` (the docstring of each
sampler gives its geometry, noise and mean). The samplers are pure functions of ``(n, rng)``.

Finite sources (digits, user arrays) are resampled with the seed: ``n`` distinct rows when
``n`` does not exceed the rows available, ``n`` draws with replacement otherwise. User arrays of
rank > 2, ``(n, ...)``, are images: each sample is flattened to a row and ``shape`` gives the
image shape. Nothing is downloaded: scikit-learn ships the digits inside the package.

Every problem (unknown name, a ``dim`` the set does not have, a missing, empty, non-numeric or
non-finite file, a missing dataset, an empty class) is a ``ValueError`` with a one-line message.
"""

from __future__ import annotations

from functools import lru_cache, partial
from pathlib import Path

import numpy as np

from .validate import array as _checked

NOISE = 0.1  # std of the isotropic Gaussian noise on moons, circles and swissroll


def _unit(t):
    """Unit vectors ``(cos t, sin t)`` as an ``(n, 2)`` array."""
    return np.stack([np.cos(t), np.sin(t)], axis=1)


def _gaussian(n, rng, dim):
    """Standard normal N(0, I_dim): mean 0, covariance I."""
    return rng.standard_normal((n, dim))


def _eight_gaussians(n, rng):
    """Equal-weight mixture of N(4 (cos k pi/4, sin k pi/4), 0.4^2 I), k = 0..7.

    Mean 0; covariance (4^2 / 2 + 0.4^2) I = 8.16 I.
    """
    centres = 4.0 * _unit(rng.integers(0, 8, n) * (np.pi / 4))
    return centres + 0.4 * rng.standard_normal((n, 2))


def _moons(n, rng):
    """scikit-learn's two moons, centred and scaled by 2, plus noise of std ``NOISE``.

    Upper moon ``2 (cos t - 1/2, sin t - 1/4)``, lower moon ``2 (1/2 - cos t, 1/4 - sin t)``,
    ``t ~ U(0, pi)``, equal weights: the arcs have radius 2 and the mean is exactly 0.
    """
    t = rng.uniform(0.0, np.pi, n)
    side = np.where(rng.random(n) < 0.5, 1.0, -1.0)  # +1 upper moon, -1 lower moon
    arc = side[:, None] * (_unit(t) - [0.5, 0.25])
    return 2.0 * arc + NOISE * rng.standard_normal((n, 2))


def _circles(n, rng):
    """Two concentric circles of radii 4 and 2 (equal weights, uniform angle), noise std ``NOISE``."""
    radius = np.where(rng.random(n) < 0.5, 4.0, 2.0)
    return radius[:, None] * _unit(rng.uniform(0.0, 2 * np.pi, n)) + NOISE * rng.standard_normal((n, 2))


def _swissroll(n, rng):
    """The 2-D swiss roll ``(t/3) (cos t, sin t)``, ``t ~ U(1.5 pi, 4.5 pi)``, noise std ``NOISE``.

    A spiral of one and a half turns whose radius ``t/3`` grows from pi/2 to 3 pi/2 (1.6 to 4.7);
    mean ``(2/3, 2/(9 pi))``.
    """
    t = rng.uniform(1.5 * np.pi, 4.5 * np.pi, n)
    return (t / 3.0)[:, None] * _unit(t) + NOISE * rng.standard_normal((n, 2))


def _checkerboard(n, rng):
    """Uniform on the 8 squares ``[2i-4, 2i-2] x [2j-4, 2j-2]`` with ``i + j`` even, i, j in 0..3.

    Support in [-4, 4]^2, mean 0, no noise.
    """
    i = rng.integers(0, 4, n)
    j = 2 * rng.integers(0, 2, n) + i % 2  # i + j even
    return 2.0 * (np.stack([i, j], axis=1) + rng.random((n, 2))) - 4.0


MIXTURE = {  # weights, means, per-axis standard deviations of the three components of `mixture`
    "weights": np.array([0.5, 0.3, 0.2]),
    "means": np.array([[-2.5, -1.5], [2.5, -1.5], [0.0, 3.0]]),
    "stds": np.array([[0.8, 0.3], [0.3, 0.8], [0.5, 0.5]]),
}


def _mixture(n, rng):
    """Three anisotropic Gaussians, parameters in ``MIXTURE``: mean ``sum_k w_k m_k = (-0.5, -0.6)``."""
    k = rng.choice(3, size=n, p=MIXTURE["weights"])
    return MIXTURE["means"][k] + MIXTURE["stds"][k] * rng.standard_normal((n, 2))


TOYS = {  # the fixed 2-D toy sets
    "8gaussians": _eight_gaussians,
    "moons": _moons,
    "circles": _circles,
    "swissroll": _swissroll,
    "checkerboard": _checkerboard,
    "mixture": _mixture,
}
NAMES = ("gaussian", *TOYS, "digits")  # every named source (files aside)
_H5 = (".h5", ".hdf5")


def sample(spec, n, seed=0, dim=None):
    """``n`` samples of the source ``spec`` as an ``(n, D)`` float64 array, reproducible by ``seed``.

    ``dim`` sets the dimension of ``gaussian`` (default 2); for every other source it is only
    checked against the source's own dimension (a mismatch is a ``ValueError``).
    """
    draw, _ = _source(spec, dim)
    n = _positive_int("n", n)
    try:
        rng = np.random.default_rng(seed)
    except (TypeError, ValueError):
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}") from None
    return np.ascontiguousarray(draw(n, rng), dtype=np.float64)


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
    return _source(spec)[1]


def _source(spec, dim=None):
    """Parse and validate ``spec`` -> ``(draw(n, rng), image shape or None)``."""
    name, arg = _parse(spec)
    if name == "gaussian":
        D = 2 if dim is None else dim
        if arg is not None:
            if not arg.isdecimal():
                raise ValueError(f"gaussian dimension must be a positive integer ('gaussian:3'), got {arg!r}")
            D = int(arg)
        D = _positive_int("gaussian dimension", D)
        draw, shape_ = partial(_gaussian, dim=D), None
    elif name in TOYS:
        if arg is not None:
            raise ValueError(f"{name} takes no ':' argument, got {spec!r}")
        draw, shape_, D = TOYS[name], None, 2
    else:
        rows, shape_ = _digits(arg) if name == "digits" else _read(name, arg)
        draw, D = partial(_resample, rows), rows.shape[1]
    if dim is not None and _positive_int("dim", dim) != D:
        raise ValueError(f"data source {spec!r} is {D}-dimensional, but dim={dim} was asked")
    return draw, shape_


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


def _positive_int(name, value):
    """``value`` as a positive int (a Python or NumPy integer, not a bool)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _resample(rows, n, rng):
    """``n`` rows of ``rows``: distinct when ``n <= len(rows)``, drawn with replacement otherwise."""
    return rows[rng.choice(len(rows), size=n, replace=n > len(rows))]


@lru_cache(maxsize=1)
def _all_digits():
    """scikit-learn's 1797 digits: pixels 0..16 mapped to [-1, 1] (``p / 8 - 1``), and labels."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise ValueError("the digits data set needs scikit-learn: pip install scikit-learn") from None
    digits = load_digits()
    return digits.data / 8.0 - 1.0, digits.target


def _digits(label):
    """Digits rows ``(m, 64)``, all of them or class ``label`` ('0'..'9') only, and (1, 8, 8)."""
    rows, target = _all_digits()
    if label is not None:
        if label not in tuple("0123456789"):
            raise ValueError(f"digits class must be one of 0..9 ('digits:2'), got {label!r}")
        rows = rows[target == int(label)]
    return rows, (1, 8, 8)


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
            raise ValueError(f"cannot read {path} as .npy: {_one_line(exc)}") from None
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
        raise ValueError(f"cannot read {path} as HDF5: {_one_line(exc)}") from None


def _one_line(exc):
    return " ".join(str(exc).split())
