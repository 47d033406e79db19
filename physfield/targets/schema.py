"""The layout of a targets cache: its datasets, its attributes, and a run's attributes compared.

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

A cache belongs to one run: :func:`run_attrs` are the attributes a run writes, and
:func:`mismatch` names the first one a cache holds differently (``resume`` and shard reuse
refuse such a cache).
"""

from __future__ import annotations

import json

import numpy as np

from .. import plans

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


def run_attrs(run):
    """The HDF5 attributes of ``run``."""
    from .. import __version__

    attrs = {
        "format": FORMAT, "schema_version": SCHEMA_VERSION,
        "field": json.dumps(run.field.params(), sort_keys=True), "L": run.field.L, "D": run.dim,
        "plan": run.plan, "reg": run.reg if "reg" in plans.get(run.plan).params else None, "B": run.B,
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
