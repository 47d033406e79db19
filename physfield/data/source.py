"""The data-source base class and its registry: a source is one class that draws samples.

A spec string names one source (``moons``, ``gaussian:5``, ``digits:2,3``, ``PATH.npy``,
``PATH.h5:DATASET``, ``module:Class[:ARG]``); :func:`get` parses it into a :class:`Source`
instance. Every problem is a ``ValueError`` with a one-line message.
"""

from __future__ import annotations

import numpy as np

from .. import registry
from ..validate import array as _checked
from ..validate import positive_int

#: the registered data sources by name
REGISTRY = {}
_H5 = (".h5", ".hdf5")
_FILES = "PATH.npy, PATH.h5:DATASET"


class Source:
    """A data source: seeded samples ``(n, D)`` float64, with optional labels and density.

    Subclass it, set the class attributes and override :meth:`draw` (and :meth:`log_density`
    where the density has a closed form); :func:`register` names it, and the command line reaches
    an unregistered one as ``--source module:Class`` (``module:Class:ARG`` passes ``ARG``).

    Attributes
    ----------
    name : str
        The registered name.
    dim : int
        The dimension ``D`` of a sample (a row); a source sized by its spec or by the caller sets
        it in ``__init__``.
    shape : tuple of int or None
        The image shape of one sample (``digits``: ``(1, 8, 8)``), ``None`` for vectors.
    classes : int or None
        The size of the label space (labels ``0 .. classes - 1``), ``None`` without labels.
    takes_dim : bool
        A bare spec takes its dimension from the caller (``gaussian``: :func:`pair_dims`).

    Parameters
    ----------
    arg : str or None
        The text after ``name:`` in the spec; a source that takes none refuses it.
    dim : int or None
        The dimension the caller asks for; a source with ``takes_dim`` uses it, every other
        source is only checked against it by :func:`get`.
    """

    name = None
    dim = None
    shape = None
    classes = None
    takes_dim = False

    def __init__(self, arg=None, dim=None):
        if arg is not None:
            raise ValueError(f"{self.name} takes no ':' argument, got {self.name}:{arg}")

    @property
    def present(self):
        """The labels its samples take (all of ``range(classes)`` unless the spec keeps fewer);
        ``()`` without labels."""
        return tuple(range(self.classes)) if self.classes else ()

    def draw(self, n, rng, labels=None):
        """``n`` samples from the generator ``rng``.

        Parameters
        ----------
        n : int
            The number of samples.
        rng : numpy.random.Generator
            The only source of randomness, so that a seed reproduces the draw.
        labels : ndarray of int, shape (n,), optional
            Draw sample ``i`` from class ``labels[i]`` (labelled sources only).

        Returns
        -------
        x : ndarray, shape (n, dim)
            The samples.
        y : ndarray of int, shape (n,), or None
            Each sample's class (``labels`` when given), ``None`` for a source without labels.
        """
        raise NotImplementedError(f"{type(self).__name__} must implement draw(n, rng, labels=None)")

    def log_density(self, x):
        """``log p(x)`` of the rows of ``x`` ``(n, dim)``, for a source with a closed-form density
        (override it); the base class has none."""
        raise NotImplementedError

    @classmethod
    def has_density(cls):
        """Whether the class overrides :meth:`log_density`."""
        return cls.log_density is not Source.log_density


def register(cls):
    """Class decorator: register the :class:`Source` subclass ``cls`` under ``cls.name``."""
    return registry.add_class(REGISTRY, Source, cls)


def names(labelled=False, density=False):
    """The registered source names, in the order they were registered.

    Parameters
    ----------
    labelled : bool
        Only the sources with labels (``classes`` set); default ``False``.
    density : bool
        Only the sources with a closed-form density (:meth:`Source.has_density`); default
        ``False``.

    Returns
    -------
    tuple of str
    """
    return tuple(name for name, cls in REGISTRY.items()
                 if (cls.classes or not labelled) and (cls.has_density() or not density))


def parse(spec):
    """``spec`` -> ``(Source subclass, argument or None)`` (:func:`get` without building it)."""
    from .rows import H5File, NpyFile

    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"a data spec must be a non-empty string, got {spec!r}")
    spec = spec.strip()
    if spec.lower().endswith(".npy"):
        return NpyFile, spec
    path, _, dataset = spec.rpartition(":")
    if path.lower().endswith(_H5):
        return H5File, (path, dataset)
    if spec.lower().endswith(_H5):
        raise ValueError(f"HDF5 data spec {spec!r} needs a dataset: '{spec}:NAME'")
    name, colon, arg = spec.partition(":")
    if name in REGISTRY:
        return REGISTRY[name], (arg if colon else None)
    if not colon:  # an unknown name: the registry's one-line message lists the known ones
        registry.lookup(name, REGISTRY, "data source", f"module:Class, {_FILES}")
    qualname, colon, arg = arg.partition(":")
    cls = registry.lookup_class(f"{name}:{qualname}", REGISTRY, Source, "data source", "physfield.data.Source")
    return cls, (arg if colon else None)


def get(spec, dim=None):
    """The :class:`Source` that ``spec`` names, built and checked against ``dim``.

    Parameters
    ----------
    spec : str
        A registered name with its optional argument (``gaussian:5``, ``digits:2,3``), a user
        file (``PATH.npy``, ``PATH.h5:DATASET``) or ``module:Class[:ARG]``.
    dim : int, optional
        The dimension asked for: sets that of a bare ``gaussian``; any other source must have it.

    Returns
    -------
    Source
    """
    cls, arg = parse(spec)
    source = cls(arg, dim) if cls.takes_dim else cls(arg)
    D = source.dim
    if not (isinstance(D, (int, np.integer)) and not isinstance(D, bool) and D > 0):
        raise ValueError(f"data source {spec!r} declares no dimension (set dim, got {D!r})")
    if dim is not None and positive_int("dim", dim) != D:
        raise ValueError(f"data source {spec!r} is {D}-dimensional, but dim={dim} was asked")
    return source


def draw(spec, source, n, seed, labels=None):
    """``(x (n, D) float64, labels or None)`` from ``source`` with the seed ``seed``, checked."""
    n = positive_int("n", n)
    try:
        rng = np.random.default_rng(seed)
    except (TypeError, ValueError):
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}") from None
    out = source.draw(n, rng, labels=labels)
    x, y = out if isinstance(out, tuple) else (out, None)
    x = _checked(f"samples of {spec!r}", np.asarray(x), 2)
    if x.shape != (n, source.dim):
        raise ValueError(f"data source {spec!r} drew shape {x.shape}, not ({n}, {source.dim})")
    if y is not None:
        y = np.asarray(y)
        if y.shape != (n,) or y.dtype.kind not in "iu":
            raise ValueError(f"data source {spec!r} drew labels {y.dtype} {y.shape}, not {n} integers")
        y = y.astype(np.int64)
    return np.ascontiguousarray(x, dtype=np.float64), y
