"""The HDF5 target cache: writing a run to it, and reading it back validated.

``generate(field, source, target, n, out, ...)`` writes ``n`` training points with their field
targets (batches of :mod:`physfield.targets.sampler`); ``open_cache(path)`` validates such a file
and hands out its datasets lazily.

``n`` need not be a multiple of ``B``: the last batch is computed in full (its targets still
come from all ``B`` pairs) and only its first ``n mod B`` points are stored; a later ``resume``
recomputes that batch and stores the rest, so the bytes do not depend on where a run stopped.

HDF5 layout (``schema_version`` 1): datasets ``points (n, D+1) float32``, ``targets (n, D+1)
float32``, ``log_norm (n,) float64``, ``ess (n,) float64`` and, in a conditional cache (attribute
``conditional`` true, with ``n_classes``), ``labels (n,) int32`` (each point's class, ``0 ..
n_classes - 1``; its target is that class's field), chunked by rows, shuffled, compressed
(``COMPRESSION``: LZF, built into h5py and 3-4 times faster than gzip level 1 on these nearly
incompressible floats; other HDF5 readers need the LZF filter plugin) and checksummed
(Fletcher-32, so damaged chunks fail to read). Attributes
``ATTRS``: format, schema_version, field (JSON: kind and every parameter), L, D, plan, B, lambda,
eps, outside_fraction, seed, source, target, store_pairs, backend, version, plus ``reg`` for
sinkhorn, ``data_shape`` (e.g. ``(1, 8, 8)``) when the source, else the target, is an image
set, ``conditional`` and ``n_classes`` in a conditional cache, ``within_class`` for a
within-class plan (caches without them read as unconditional) and ``z_schedule`` when the
training points' ``z`` were not drawn uniformly (:mod:`physfield.targets.sampler`). The
field's ``kind`` is its registered name or ``module:Class``
(:func:`physfield.fields.from_params` rebuilds it). With ``store_pairs`` (verification mode) the
group ``pairs`` keeps each batch's ``sources (batches, B, D)``, ``sinks (batches, B, D)`` and
dense ``plan (batches, B, B)`` in float64 and each point's ``partner (n,)`` sink index (its
source index is its row mod ``B``).

Safety: a run writes ``.NAME.*.tmp`` in the folder of ``out`` (``resume`` first copies the
complete cache there), fsyncs it and renames it over ``out`` only when complete (one atomic
``os.replace``: a reader holding the old file keeps reading the old, complete one), so a killed
run leaves the previous complete cache (or none) plus a stale temporary file. ``resume`` refuses
a cache whose attributes differ from this run's (all of them, the backend and package version
included: a different backend changes targets at round-off and the bytes would differ).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from pathlib import Path

import h5py
import numpy as np
from tqdm.auto import tqdm

from . import sampler
from .sampler import positive_int

FORMAT = "physfield-targets"
SCHEMA_VERSION = 1
COMPRESSION = {"compression": "lzf", "shuffle": True, "fletcher32": True}
CHUNK_BYTES = 1 << 20  # largest chunk of points/targets
ATTRS = ("format", "schema_version", "field", "L", "D", "plan", "reg", "B", "lambda", "eps",
         "outside_fraction", "seed", "source", "target", "data_shape", "store_pairs", "backend",
         "version", "conditional", "n_classes", "within_class", "z_schedule")
OPTIONAL_ATTRS = ("reg", "data_shape", "conditional", "n_classes", "within_class", "z_schedule")
UNIT_TOL = 1e-5  # |targets| = 1 within float32 rounding
DATASETS = ("points", "targets", "log_norm", "ess")  # one row per point (and labels, :func:`datasets`)
PAIRS = ("sources", "sinks", "plan")  # group pairs: one entry per batch (plus partner, per point)


@dataclass
class GenerateResult:
    """What :func:`generate` did: ``n`` points in ``path``, ``new`` of them by this call, and the
    wall time split into ``timings`` (data draws, plans, field kernel, HDF5 writing)."""

    path: str
    n: int
    new: int
    seconds: float
    timings: dict = dataclass_field(default_factory=dict)

    @property
    def points_per_second(self):
        return self.new / self.seconds if self.seconds > 0 else float("nan")

    def __str__(self):
        if not self.new:
            return f"{self.path} already holds {self.n} points: nothing to do"
        total = max(self.seconds, sum(self.timings.values()))  # workers' seconds add up past the wall time
        share = ", ".join(f"{k} {v / total:.0%}" for k, v in self.timings.items())
        return (f"{self.new} points in {self.seconds:.2f} s: {self.points_per_second:.0f} points/s "
                f"({share}); {self.path} holds {self.n}")


def generate(field, source, target, n, out, *, batch=256, plan=sampler.PLAN, noise=None, lam=None, seed=0, eps=None,
             outside_fraction=None, reg=0.05, dim=None, backend="auto", resume=False, overwrite=False,
             store_pairs=False, progress=False, engine=None, shard_points=None, copy=False, retries=2,
             conditional=False, within_class=False, z_schedule=None):
    """Write ``n`` training points and field targets of ``field`` to the HDF5 file ``out``.

    ``field``: any field (:mod:`physfield.fields`) whose parameters are numbers or strings;
    ``source``/``target``: data specs (``physfield.data``; ``dim`` sets ``gaussian``'s D);
    ``batch``: pairs per minibatch ``B``; ``plan``: ``paired``, ``independent``, ``optimal``
    (the default :data:`~physfield.targets.sampler.PLAN`) or ``sinkhorn`` (``reg``); ``noise``: the training points' spread in units of ``t = z/L``
    (:mod:`physfield.targets.sampler`; default :data:`~physfield.targets.sampler.NOISE`), or
    ``lam``: the paper's knob ``lambda = noise / sqrt(L)`` (the cache records ``lambda``); ``eps``: ``z`` margin
    (default ``1e-3 L``, at least ``1e-6 L``, below ``L/2``); ``outside_fraction``: the share of
    points outside the plates, for a field that does not vanish there (default 0.2; 0 otherwise). ``resume``: extend an existing cache at ``out`` to ``n`` points (start afresh
    when there is none); otherwise an existing ``out`` is refused unless ``overwrite``.
    ``store_pairs``: keep every batch's pairs and plan (verification mode). ``progress``: a
    tqdm bar. ``engine`` (:mod:`physfield.targets.engines`: ``Local()``, ``Pool(workers)``,
    ``Ray(address)``): compute the run in shards of ``shard_points`` points on that engine and
    join them into one cache (:mod:`physfield.targets.shards`; ``copy``: one self-contained file;
    ``retries``: attempts more per failed shard); the cache's datasets are the same bytes as
    without an engine. ``conditional``: store each point's class (its sink's label) in
    ``labels`` with the class-conditional field as its target; ``within_class``: pair only
    samples of the same class (both need labelled data, :mod:`physfield.targets.sampler`).
    ``z_schedule``: the law of the training points' ``z``, ``uniform`` (the default
    :data:`~physfield.targets.sampler.Z_SCHEDULE`) or ``logit-normal`` (the sampler's module
    docstring). Returns a :class:`GenerateResult`. Bad arguments are a one-line
    ``ValueError`` raised before any file is touched. See the module docstring for the sampling
    and layout.
    """
    run = sampler.make_run(field, source, target, batch, plan, reg, noise, lam, eps, outside_fraction, seed, dim,
                           backend, store_pairs, conditional, within_class, z_schedule)
    n = positive_int("n", n)
    out = Path(out)
    if out.is_dir():
        raise ValueError(f"output {out} is a directory")
    if not out.parent.is_dir():
        raise ValueError(f"output folder {out.parent} does not exist")
    if engine is not None:
        from . import shards

        if shard_points is not None:
            positive_int("shard_points", shard_points)
        return shards.generate(run, n, out, engine, shard_points=shard_points, copy=copy, resume=resume,
                               overwrite=overwrite, retries=retries, progress=progress)
    n0 = 0
    if out.exists() and resume:
        n0 = _check_resumable(out, run_attrs(run))
        if n < n0:
            raise ValueError(f"cannot resume {out} to n={n}: it already holds {n0} points")
        if n == n0:
            return GenerateResult(str(out), n, 0, 0.0)
    elif out.exists() and not overwrite:
        raise ValueError(f"{out} exists; pass resume to extend it or overwrite to replace it")

    tmp = temporary(out)
    try:
        if n0:
            shutil.copyfile(out, tmp)
        result = write_points(run, tmp, n0, n, progress)
        publish(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    result.path = str(out)
    return result


def temporary(out):
    """A new, empty temporary file ``.NAME.*.tmp`` beside ``out`` (mode 0644), for :func:`publish`."""
    fd, tmp = tempfile.mkstemp(prefix=f".{Path(out).name}.", suffix=".tmp", dir=Path(out).parent)
    os.close(fd)
    os.chmod(tmp, 0o644)  # mkstemp's 0600 would make the cache private
    return tmp


def publish(tmp, out):
    """Make the finished file ``tmp`` the file ``out``: fsync it, then one atomic ``os.replace``
    (and fsync the folder), so ``out`` is always absent, the old file or the complete new one."""
    _fsync(tmp)
    os.replace(tmp, out)
    _fsync(Path(out).parent)


def run_attrs(run):
    """The HDF5 attributes of ``run``."""
    from .. import __version__

    attrs = {
        "format": FORMAT, "schema_version": SCHEMA_VERSION,
        "field": json.dumps(run.field.params(), sort_keys=True), "L": run.field.L, "D": run.dim,
        "plan": run.plan, "reg": run.reg if run.plan == "sinkhorn" else None, "B": run.B,
        "lambda": run.lam, "eps": run.eps, "outside_fraction": run.outside, "seed": run.seed,
        "source": run.source, "target": run.target, "data_shape": run.shape,
        "store_pairs": run.store_pairs, "backend": run.backend, "version": __version__,
        "conditional": True if run.conditional else None, "n_classes": run.n_classes,
        "within_class": True if run.within_class else None,
        "z_schedule": None if run.z_schedule == "uniform" else run.z_schedule,
    }
    return {k: v for k, v in attrs.items() if v is not None}


def datasets(run):
    """The per-point datasets of ``run``: :data:`DATASETS`, plus ``labels`` when conditional."""
    return (*DATASETS, "labels") if run.conditional else DATASETS


def write_points(run, path, n0, n, progress=False, start=0, attrs=None):
    """Append points ``n0 .. n-1`` of ``run`` to the HDF5 file ``path``, which holds points
    ``start .. n0-1`` (created, with :func:`run_attrs` plus ``attrs``, when ``n0 == start``;
    ``start`` is a multiple of ``B``). Returns a :class:`GenerateResult`."""
    B = run.B
    timings, t_start = {}, time.perf_counter()
    with h5py.File(path, "r+" if n0 > start else "w") as f:
        if n0 == start:
            create(f, run, attrs or {})
        bar = tqdm(total=n, initial=n0, unit="pt", desc="targets", disable=None if progress else True, leave=False)
        for k in range(n0 // B, math.ceil(n / B)):
            b = sampler.batch(run, k, timings)
            t0 = time.perf_counter()
            lo, hi = max(n0, k * B), min(n, (k + 1) * B)
            rows = slice(lo - k * B, hi - k * B)
            for name in datasets(run):
                append(f[name], b[name][rows])
            if run.store_pairs:
                append(f["pairs/partner"], b["partner"][rows].astype(np.int32))
                if lo == k * B:  # first time this batch is stored
                    for name in PAIRS:
                        append(f["pairs"][name], b[name][None])
            timings["write"] = timings.get("write", 0.0) + time.perf_counter() - t0
            bar.update(hi - lo)
        bar.close()
        t0 = time.perf_counter()
    timings["write"] = timings.get("write", 0.0) + time.perf_counter() - t0  # flush on close
    return GenerateResult(path, n, n - n0, time.perf_counter() - t_start, timings)


def write_attrs(f, run, attrs):
    """:func:`run_attrs` of ``run`` plus ``attrs`` as the attributes of the open HDF5 file ``f``."""
    for key, value in {**run_attrs(run), **attrs}.items():
        f.attrs[key] = np.asarray(value, dtype=np.int64) if key == "data_shape" else value


def create(f, run, attrs):
    """The empty datasets of ``run`` in the open HDF5 file ``f``, with :func:`run_attrs` plus
    ``attrs``: rows chunked so that batches align, compressed (:data:`COMPRESSION`)."""
    B, D = run.B, run.dim
    write_attrs(f, run, attrs)
    rows = min(B, 1 << max(0, (CHUNK_BYTES // (4 * (D + 1))).bit_length() - 1))  # power of 2: batches align
    for name in ("points", "targets"):
        f.create_dataset(name, (0, D + 1), np.float32, maxshape=(None, D + 1), chunks=(rows, D + 1), **COMPRESSION)
    for name in ("log_norm", "ess"):
        f.create_dataset(name, (0,), np.float64, maxshape=(None,), chunks=(max(rows, 1024),), **COMPRESSION)
    if run.conditional:
        f.create_dataset("labels", (0,), np.int32, maxshape=(None,), chunks=(max(rows, 1024),), **COMPRESSION)
    if run.store_pairs:
        g = f.create_group("pairs")
        for name, width in (("sources", D), ("sinks", D), ("plan", B)):
            g.create_dataset(name, (0, B, width), np.float64, maxshape=(None, B, width), chunks=(1, B, width),
                             **COMPRESSION)
        g.create_dataset("partner", (0,), np.int32, maxshape=(None,), chunks=(max(B, 1024),), **COMPRESSION)


def append(dataset, rows):
    """``rows`` appended to the resizable ``dataset``."""
    start = dataset.shape[0]
    dataset.resize(start + len(rows), axis=0)
    dataset[start:] = rows


def _fsync(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _check_resumable(path, expected):
    """Number of points in the cache at ``path`` after checking it (fully) and its attributes."""
    with open_cache(path, verify=True) as cache:
        check_same_run(path, cache, expected)
        return len(cache)


def mismatch(cache, expected):
    """The first attribute that differs between the open ``cache`` and the attributes
    ``expected`` (:func:`run_attrs`, perhaps with more), as ``(name, in the cache, expected)``;
    ``None`` when all of :data:`ATTRS` and of ``expected`` agree."""
    for key in (*ATTRS, *(k for k in expected if k not in ATTRS)):
        have, want = cache.attrs.get(key), plain(expected.get(key))
        if have != want:
            return key, have, want
    return None


def check_same_run(path, cache, expected):
    """One-line ``ValueError`` when the cache at ``path`` is not of the run ``expected`` describes."""
    found = mismatch(cache, expected)
    if found:
        key, have, want = found
        raise ValueError(f"cannot resume {path}: attribute {key} is {have!r} in the cache but {want!r} for this run")


def plain(value):
    """An HDF5 attribute value as a plain Python value (str, int, float, bool or tuple)."""
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.ndarray):
        return tuple(plain(v) for v in value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    return value


class Cache:
    """An open, validated targets cache: ``points``, ``targets``, ``log_norm``, ``ess`` (h5py
    datasets, read lazily), ``labels`` (dataset, or ``None`` unless conditional) and ``n_classes``,
    ``pairs`` (dict of datasets, or ``None``), ``attrs`` (plain dict, ``field`` decoded from JSON
    into ``field_params``), ``D``. Use as a context manager, or
    call :meth:`close`."""

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

    def __repr__(self):
        return f"Cache({self.path!r}, n={len(self)}, D={self.D}, field={self.field_params})"

    def close(self):
        self.file.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def open_cache(path, verify=False):
    """Open the targets cache at ``path`` and validate its schema; returns a :class:`Cache`.

    Checked: the file exists and is HDF5 that opens (a truncated file does not); ``format`` and
    a known ``schema_version``; every required attribute; the datasets, their dtypes and
    consistent shapes (``(n, D+1)``, ``(n,)``; the ``pairs`` group when ``store_pairs``).
    ``verify=True`` also reads every chunk (Fletcher-32 checksums catch damaged data) and checks
    the values: finite points, unit targets, finite ``log_norm``, ``ess >= 1``.
    Any problem is a one-line ``ValueError``.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"cache file not found: {path}")
    if not h5py.is_hdf5(path):
        raise ValueError(f"{path} is not an HDF5 file")
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise ValueError(f"cannot open {path} (truncated or corrupt HDF5): {_one_line(exc)}") from None
    try:
        problem = _schema_problem(f)
        if problem is None and verify:
            problem = _data_problem(f)
    except (OSError, KeyError, ValueError, TypeError, json.JSONDecodeError) as exc:
        problem = f"unreadable ({_one_line(exc)})"
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


def _one_line(exc):
    return " ".join(str(exc).split())

