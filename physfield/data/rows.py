"""Finite sources: a table of rows resampled with the seed (scikit-learn's digits, user files)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np

from ..validate import array as _checked
from ..validate import one_line
from .source import Source, register


class Rows(Source):
    """A finite table of samples ``rows`` ``(m, D)`` with optional ``row_labels`` ``(m,)``.

    :meth:`draw` returns ``n`` distinct rows when ``n <= m`` and ``n`` draws with replacement
    otherwise; given ``labels``, row ``i`` comes from class ``labels[i]`` (the same rule within each
    class). Subclasses set ``rows``, ``row_labels`` and ``shape`` in ``__init__``; ``dim`` is the
    number of columns of ``rows``.

    Parameters
    ----------
    arg : str, optional
        The constructor is :class:`Source`'s: the text after ``name:`` in the spec, which it
        refuses (a one-line ``ValueError``) unless ``None`` (the default); subclasses define
        their own.
    dim : int, optional
        Accepted by :class:`Source`'s constructor and unused (default ``None``): the dimension
        of a table is that of its rows.
    """

    rows = None
    row_labels = None

    @property
    def dim(self):
        return self.rows.shape[1]

    def draw(self, n, rng, labels=None):
        if labels is None:
            pick = rng.choice(len(self.rows), size=n, replace=n > len(self.rows))
        else:
            pick = np.empty(n, dtype=np.int64)
            for c in np.unique(labels):
                where, pool = np.flatnonzero(labels == c), np.flatnonzero(self.row_labels == c)
                pick[where] = pool[rng.choice(len(pool), size=len(where), replace=len(where) > len(pool))]
        return self.rows[pick], (None if self.row_labels is None else self.row_labels[pick])


@lru_cache(maxsize=1)
def _all_digits():
    """scikit-learn's 1797 digits: pixels 0..16 mapped to [-1, 1] (``p / 8 - 1``), and labels."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise ValueError("the digits data set needs scikit-learn: pip install scikit-learn") from None
    digits = load_digits()
    return digits.data / 8.0 - 1.0, digits.target


@register
class Digits(Rows):
    """``digits[:C,...]``: scikit-learn's digits, 8x8 images as 64-D rows scaled to ``[-1, 1]``,
    labelled by their digit (10 classes).

    ``digits:2`` keeps class 2 only (180 or so images per class), ``digits:2,3`` classes 2 and 3.
    Nothing is downloaded: scikit-learn ships the digits inside the package. The pixels ``p``
    (0 to 16) are mapped to ``p / 8 - 1``; the labels keep their digit whatever subset is kept
    (``classes`` stays 10, :attr:`present` lists the kept ones).

    Parameters
    ----------
    arg : str, optional
        The classes to keep, comma-separated digits ``0`` to ``9`` (``"2"``, ``"2,3"``: the text
        after ``digits:``); ``None`` (the default) keeps all ten. Anything else is a one-line
        ``ValueError``, as is a missing scikit-learn.
    """

    name, shape, classes = "digits", (1, 8, 8), 10

    def __init__(self, arg=None):
        rows, target = _all_digits()
        self._present = tuple(range(10))
        if arg is not None:
            wanted = arg.split(",")
            if not all(w in tuple("0123456789") for w in wanted):
                raise ValueError(f"digits classes must be digits 0..9 ('digits:2' or 'digits:2,3'), got {arg!r}")
            self._present = tuple(sorted({int(w) for w in wanted}))
        keep = np.isin(target, self._present)
        self.rows, self.row_labels = rows[keep], target[keep]

    @property
    def present(self):
        return self._present


class NpyFile(Rows):
    """``PATH.npy``: a user array, one sample per row; rank > 2 arrays ``(n, ...)`` are images,
    flattened to rows, with ``shape`` the image shape.

    Parameters
    ----------
    path : str or os.PathLike
        The ``.npy`` file: one non-empty, numeric, finite array of rank >= 2 (no pickles), read
        as float64 rows ``(n, D)``. A missing or unreadable file, an ``.npz`` archive or an array
        of rank < 2 is a one-line ``ValueError``.
    """

    name = "PATH.npy"

    def __init__(self, path):
        if not Path(path).is_file():
            raise ValueError(f"data file not found: {path}")
        try:
            array = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise ValueError(f"cannot read {path} as .npy: {one_line(exc)}") from None
        if not isinstance(array, np.ndarray):  # an .npz archive renamed .npy
            raise ValueError(f"{path} is not a single .npy array")
        self.rows, self.shape = _table(path, array)


class H5File(Rows):
    """``PATH.h5:DATASET`` (``.hdf5`` too): a user array from an HDF5 dataset (``DATASET`` may be
    ``a/b/c``), read as :class:`NpyFile` reads its array.

    Parameters
    ----------
    where : tuple of (str or os.PathLike, str)
        ``(path, dataset)``: the HDF5 file and the name of the dataset in it (the spec
        ``PATH.h5:DATASET`` split at its last ``:``). A missing or unreadable file, or a
        missing dataset (the message lists those the file has), is a one-line ``ValueError``.
    """

    name = "PATH.h5:DATASET"

    def __init__(self, where):
        import h5py

        path, dataset = where
        if not Path(path).is_file():
            raise ValueError(f"data file not found: {path}")
        try:
            with h5py.File(path, "r") as f:
                node = f.get(dataset) if dataset else None
                if not isinstance(node, h5py.Dataset):
                    found = []
                    f.visititems(lambda name, obj: found.append(name) if isinstance(obj, h5py.Dataset) else None)
                    raise ValueError(f"{path} has no dataset {dataset!r}; it has: {', '.join(found) or 'none'}")
                array = node[()]
        except OSError as exc:
            raise ValueError(f"cannot read {path} as HDF5: {one_line(exc)}") from None
        self.rows, self.shape = _table(f"{path}:{dataset}", np.asarray(array))


def _table(where, array):
    """A user array -> ``(rows (m, D) float64, sample shape if rank > 2 else None)``."""
    if array.ndim < 2:
        raise ValueError(f"{where} must hold one sample per row, shape (n, D) or (n, ...), got {array.shape}")
    rows = _checked(where, array.reshape(array.shape[0], int(np.prod(array.shape[1:]))), 2)
    return rows.astype(np.float64), (array.shape[1:] if array.ndim > 2 else None)
