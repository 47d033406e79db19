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
                      ``digits:2`` keeps class 2 only, ``digits:2,3`` classes 2 and 3
    PATH.npy          user array, one sample per row
    PATH.h5:DATASET   user array from an HDF5 dataset (``.hdf5`` too); DATASET may be a/b/c
    module:Class[:A]  a user's own :class:`Source` subclass (``A``: its argument)

Each named source is one :class:`Source` subclass (:mod:`physfield.data.toys`,
:mod:`physfield.data.rows`) registered by :func:`register`; it declares its dimension, image
shape, classes and, where it has one, its closed-form log-density. A source of your own is one
class::

    class Ring(physfield.data.Source):
        name, dim = "ring", 2
        def draw(self, n, rng, labels=None):
            t = rng.uniform(0, 2 * np.pi, n)
            return np.stack([np.cos(t), np.sin(t)], axis=1), None

reached as ``--source mymodule:Ring`` (the module importable from the current folder) or, once
registered, by its name.

Finite sources (digits, user arrays) are resampled with the seed: ``n`` distinct rows when
``n`` does not exceed the rows available, ``n`` draws with replacement otherwise. User arrays of
rank > 2, ``(n, ...)``, are images: each sample is flattened to a row and ``shape`` gives the
image shape.

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

import numpy as np

from . import toys  # noqa: F401  (registers the synthetic sources first, for the order of names())
from .rows import Digits, H5File, NpyFile, Rows
from .source import REGISTRY, Source, get, names, register
from .source import draw as _draw
from .source import parse as _parse
from .toys import MIXTURE, TOY_NOISE

__all__ = ["sample", "sample_labelled", "draw_pair", "log_density", "classes", "shape", "pair_dims", "Source", "Rows",
           "Digits", "NpyFile", "H5File", "register", "get", "names", "REGISTRY", "MIXTURE", "TOY_NOISE"]


def sample(spec, n, seed=0, dim=None):
    """``n`` samples of the source ``spec``, reproducible by ``seed``.

    Parameters
    ----------
    spec : str
        A data spec (module docstring).
    n : int
        The number of samples.
    seed : int or sequence of int
        Seed of ``numpy.random.default_rng``.
    dim : int, optional
        The dimension of a bare ``gaussian`` (default 2); for every other source it is only
        checked against the source's own dimension (a mismatch is a ``ValueError``).

    Returns
    -------
    ndarray, shape (n, D), float64
    """
    return _draw(spec, get(spec, dim), n, seed)[0]


def draw_pair(source, target, n, seed=0, dim=None):
    """``n`` sources and ``n`` sinks for one reproducible command: three independent streams of ``seed``.

    The seed is split by ``numpy.random.SeedSequence(seed)`` into the streams of the sinks, the
    sources and a spare one the caller uses for its own randomness (``physfield check``'s probes,
    ``physfield trace``'s line starts), so each is independent of the others and the same for the
    same ``seed``.

    Parameters
    ----------
    source, target : str
        Data specs of the sources (``z = 0``) and the sinks (``z = L``).
    n : int
        Samples per side.
    seed : int
        The command's seed.
    dim : int, optional
        Dimension of both sides (:func:`pair_dims`).

    Returns
    -------
    A : ndarray, shape (n, D)
        The sources.
    B : ndarray, shape (n, D)
        The sinks.
    spare : int
        The seed of the third stream.
    """
    source_seed, target_seed, spare = np.random.SeedSequence(seed).generate_state(3)
    dim_source, dim_target = pair_dims(source, target, dim)
    B = sample(target, n, seed=target_seed, dim=dim_target)
    A = sample(source, n, seed=source_seed, dim=dim_source)
    return A, B, int(spare)


def sample_labelled(spec, n, seed=0, dim=None, labels=None):
    """:func:`sample` with each sample's class: the same ``x`` as :func:`sample` for the same
    arguments.

    Parameters
    ----------
    spec, n, seed, dim
        As :func:`sample`.
    labels : ndarray of int, shape (n,), optional
        Draw sample ``i`` from class ``labels[i]`` instead.

    Returns
    -------
    x : ndarray, shape (n, D), float64
    labels : ndarray, shape (n,), int64

    Raises
    ------
    ValueError
        A spec without labels, or a class the spec does not hold.
    """
    source = get(spec, dim)
    if source.classes is None:
        raise ValueError(f"data source {spec!r} has no labels (labelled: {', '.join(names(labelled=True))})")
    if labels is not None:
        labels = np.asarray(labels)
        if labels.shape != (n,) or labels.dtype.kind not in "iu":
            raise ValueError(f"labels must be {n} integers, got {labels.dtype} {labels.shape}")
        missing = sorted(set(np.unique(labels).tolist()) - set(source.present))
        if missing:
            present = ", ".join(map(str, source.present))
            raise ValueError(f"data source {spec!r} has no class {missing[0]} (it has {present})")
        labels = labels.astype(np.int64)
    x, y = _draw(spec, source, n, seed, labels)
    if y is None:
        raise ValueError(f"data source {spec!r} declares {source.classes} classes but drew no labels")
    return x, y


def log_density(spec, x):
    """``log p(x)`` of the rows of ``x`` under the source ``spec``, where it has a closed form.

    ``gaussian[:D]``: ``-|x|^2/2 - (D/2) log 2 pi``; the Gaussian mixtures ``8gaussians`` and
    ``mixture``: the log-sum-exp over their components; a user's source that overrides
    :meth:`Source.log_density`.

    Parameters
    ----------
    spec : str
        A data spec.
    x : array_like, shape (n, D)
        Points of the source's dimension (a bare ``gaussian`` takes ``D`` from ``x``).

    Returns
    -------
    ndarray, shape (n,)

    Raises
    ------
    ValueError
        No closed form for ``spec``, or points of another shape.
    """
    cls, arg = _parse(spec)
    x = np.asarray(x, dtype=np.float64)
    D = x.shape[1] if x.ndim == 2 else None
    source = get(spec, D if cls.takes_dim and arg is None else None)
    if D != source.dim:
        raise ValueError(f"points must be rows (n, D) of the dimension of {spec!r}, got shape {x.shape}")
    if not cls.has_density():
        known = ", ".join(names(density=True))
        raise ValueError(f"no closed-form density for {spec!r}; log p is known for {known}")
    return np.asarray(source.log_density(x), dtype=np.float64)


def classes(spec):
    """The label space of ``spec``.

    Parameters
    ----------
    spec : str
        A data spec (module docstring).

    Returns
    -------
    tuple (int, tuple of int) or None
        ``(n_classes, present)``: labels run over ``0 .. n_classes - 1`` and its samples take
        ``present`` (``digits:2,3``: ``(10, (2, 3))``); ``None`` for a spec without labels.
    """
    source = get(spec)
    return None if source.classes is None else (source.classes, source.present)


def shape(spec):
    """Image shape of one sample of ``spec``.

    Parameters
    ----------
    spec : str
        A data spec (module docstring).

    Returns
    -------
    tuple of int or None
        The image shape (``digits``: ``(1, 8, 8)``; a user array ``(n, ...)`` of rank > 2: the
        ``...``, the shape of one sample), ``None`` for vectors.
    """
    return get(spec).shape


def pair_dims(source, target, dim=None):
    """The dimensions to sample a pair of specs with.

    Parameters
    ----------
    source, target : str
        Data specs.
    dim : int, optional
        The dimension of both sides.

    Returns
    -------
    (int or None, int or None)
        ``(dim, dim)`` when ``dim`` is given; otherwise a bare ``gaussian`` (any source with
        ``takes_dim``) takes the dimension of the other side when that one is fixed
        (``gaussian -> digits`` is 64-D) and every other spec its own (``None``).
    """
    if dim is not None:
        return dim, dim

    def fixed(spec):
        cls, arg = _parse(spec)
        return None if cls.takes_dim and arg is None else get(spec).dim

    ds, dt = fixed(source), fixed(target)
    return (dt if ds is None else None), (ds if dt is None else None)
