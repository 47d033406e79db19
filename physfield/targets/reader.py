"""Reading a targets cache back: :func:`open_cache` validates the file and hands out its datasets lazily."""

from __future__ import annotations

import json
import math
from functools import cached_property
from pathlib import Path

import h5py
import numpy as np

from ..validate import one_line
from .schema import ATTRS, FORMAT, OPTIONAL_ATTRS, SCHEMA_VERSION, UNIT_TOL, plain


class Cache:
    """An open, validated targets cache: ``points``, ``targets``, ``log_norm``, ``ess`` (h5py
    datasets, read lazily), ``labels`` (dataset, or ``None`` unless conditional) and ``n_classes``,
    ``conditional``, ``pairs`` (dict of datasets, or ``None``), ``attrs`` (plain dict, ``field``
    decoded from JSON into ``field_params``), ``D``, ``path``, ``file``, and ``run``: the typed
    :class:`physfield.targets.Run` the attributes record (read on first use); ``len(cache)`` is
    the number of points. Use as a context manager, or call :meth:`close`.

    Made by :func:`open_cache`, which validates the file first; the constructor checks nothing.

    Parameters
    ----------
    path : str or os.PathLike
        Where the file is (kept as ``path``, a ``str``).
    file : h5py.File
        The file, open for reading (kept as ``file``; :meth:`close` closes it).
    """

    def __init__(self, path, file):
        self.path, self.file = str(path), file
        self.attrs = {key: plain(value) for key, value in file.attrs.items()}
        self.field_params = json.loads(self.attrs["field"])
        self.points, self.targets = file["points"], file["targets"]
        self.log_norm, self.ess = file["log_norm"], file["ess"]
        self.pairs = {name: file["pairs"][name] for name in file["pairs"]} if "pairs" in file else None
        self.D = int(self.attrs["D"])
        self.conditional = bool(self.attrs.get("conditional", False))
        self.labels = file["labels"] if self.conditional else None
        self.n_classes = int(self.attrs["n_classes"]) if self.conditional else None

    def __len__(self):
        return self.points.shape[0]

    @cached_property
    def run(self):
        """The :class:`physfield.targets.Run` that wrote this cache, from its attributes."""
        from .sampler import Run

        return Run.from_attrs(self.attrs)

    def __repr__(self):
        return f"Cache({self.path!r}, n={len(self)}, D={self.D}, field={self.field_params})"

    def close(self):
        self.file.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def open_cache(path, verify=False):
    """Open the targets cache at ``path`` and validate its schema.

    Checked: the file exists and is HDF5 that opens (a truncated file does not); ``format`` and
    a known ``schema_version``; every required attribute; the datasets, their dtypes and
    consistent shapes (``(n, D+1)``, ``(n,)``; the ``pairs`` group when ``store_pairs``).
    ``verify=True`` also reads every chunk (Fletcher-32 checksums catch damaged data) and checks
    the values: finite points, unit targets, finite ``log_norm``, ``ess >= 1``.

    Parameters
    ----------
    path : str or os.PathLike
        The cache file.
    verify : bool
        Also read every chunk and check the values (default ``False``: the schema only).

    Returns
    -------
    Cache
        The open cache (close it, or use it as a context manager).

    Raises
    ------
    ValueError
        One-line, for any problem (the file is then closed).
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"cache file not found: {path}")
    if not h5py.is_hdf5(path):
        raise ValueError(f"{path} is not an HDF5 file")
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise ValueError(f"cannot open {path} (truncated or corrupt HDF5): {one_line(exc)}") from None
    try:
        problem = _schema_problem(f)
        if problem is None and verify:
            problem = _data_problem(f)
    except (OSError, KeyError, ValueError, TypeError, json.JSONDecodeError) as exc:
        problem = f"unreadable ({one_line(exc)})"
    if problem is not None:
        f.close()
        raise ValueError(f"{path}: {problem}")
    return Cache(path, f)


def _schema_problem(f):
    """A one-line description of the first schema violation, or ``None``."""
    if plain(f.attrs.get("format")) != FORMAT:
        return f"not a physfield targets cache (no format={FORMAT!r} attribute)"
    version = plain(f.attrs.get("schema_version"))
    if version != SCHEMA_VERSION:
        return f"unknown schema_version {version!r} (this physfield reads {SCHEMA_VERSION})"
    missing = [k for k in ATTRS if k not in OPTIONAL_ATTRS and k not in f.attrs]
    if missing:
        return f"missing attribute {missing[0]!r}"
    json.loads(plain(f.attrs["field"]))
    D, B = int(f.attrs["D"]), int(f.attrs["B"])
    expected = {"points": (np.float32, 2), "targets": (np.float32, 2), "log_norm": (np.float64, 1),
                "ess": (np.float64, 1)}
    if bool(f.attrs.get("conditional", False)):
        if int(f.attrs.get("n_classes", 0)) < 1:
            return "conditional cache without a positive n_classes attribute"
        expected["labels"] = (np.int32, 1)
    if bool(f.attrs["store_pairs"]):
        expected.update({"pairs/sources": (np.float64, 3), "pairs/sinks": (np.float64, 3),
                         "pairs/plan": (np.float64, 3), "pairs/partner": (np.int32, 1)})
    for name, (dtype, ndim) in expected.items():
        ds = f.get(name)
        if not isinstance(ds, h5py.Dataset):
            return f"missing dataset {name!r}"
        if ds.dtype != dtype or ds.ndim != ndim:
            return f"dataset {name!r} is {ds.dtype} {ds.ndim}-D, expected {np.dtype(dtype)} {ndim}-D"
        missing = _missing_source(f, ds)
        if missing:
            return f"dataset {name!r} reads shard {missing}, which is missing (HDF5 would read zeros there)"
    n = f["points"].shape[0]
    batches = math.ceil(n / B)
    shapes = {"points": (n, D + 1), "targets": (n, D + 1), "log_norm": (n,), "ess": (n,), "labels": (n,),
              "pairs/sources": (batches, B, D), "pairs/sinks": (batches, B, D),
              "pairs/plan": (batches, B, B), "pairs/partner": (n,)}
    for name in expected:
        if f[name].shape != shapes[name]:
            return f"dataset {name!r} has shape {f[name].shape}, expected {shapes[name]}"
    return None


def _missing_source(f, ds):
    """The first source file of the virtual dataset ``ds`` (of the open file ``f``) that does not
    exist, resolved as HDF5 does relative to ``f``'s folder; ``None`` when all do (or ``ds`` is
    not virtual)."""
    if not ds.is_virtual:
        return None
    base = Path(f.filename).parent
    for source in ds.virtual_sources():
        if source.file_name != "." and not (base / source.file_name).is_file():
            return source.file_name
    return None


def _data_problem(f, rows=1 << 14):
    """Read everything (checksums verified by HDF5) and check the values block by block."""
    n = f["points"].shape[0]
    for lo in range(0, n, rows):
        sl = slice(lo, min(n, lo + rows))
        P, U, log_norm, ess = (f[name][sl] for name in ("points", "targets", "log_norm", "ess"))
        norm = np.sqrt((U.astype(np.float64) ** 2).sum(axis=1))
        checks = (("points", np.isfinite(P).all(axis=1)), ("targets", np.abs(norm - 1) <= UNIT_TOL),
                  ("log_norm", np.isfinite(log_norm)), ("ess", ess >= 1 - 1e-9))
        for name, ok in checks:
            if not ok.all():
                return f"bad value in {name} at row {lo + int(np.flatnonzero(~ok)[0])}"
        if "labels" in f:
            labels = f["labels"][sl]
            ok = (labels >= 0) & (labels < int(f.attrs["n_classes"]))
            if not ok.all():
                return f"bad value in labels at row {lo + int(np.flatnonzero(~ok)[0])}"
    if "pairs" in f:
        for ds in f["pairs"].values():
            ds[()]
    return None
