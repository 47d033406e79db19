"""A run cut into shards, each its own small cache, joined by an HDF5 virtual dataset.

Shard ``s`` of a run holds points ``[s S, min((s + 1) S, n))`` for ``S`` points per shard (a
multiple of the batch size ``B``), so it is batches ``s S / B, ...`` of the run
(:func:`physfield.targets.sampler.batch`, a pure function of the run and the batch index) and
its bytes are those the single-process run writes for the same rows. A shard is a targets cache
in its own right (same schema, plus the attributes ``shard_start`` and ``shard_stop``), written
to a temporary name in the shard folder and renamed when complete, so a shard file that exists
is complete, and a killed worker leaves only a ``.tmp`` file behind.

:func:`merge` writes the cache itself: datasets ``points``, ``targets``, ``log_norm``, ``ess``
(and the ``pairs`` group) as HDF5 virtual datasets whose sources are the shards, named by paths
relative to the cache's folder (``NAME.shards/shard-000000.h5``, ...), so the cache and its
shard folder can be moved together. HDF5 (and so h5py and any HDF5 reader) reads it as one
file; :func:`physfield.targets.open_cache` also checks that every shard it names is there.
``copy=True`` instead copies the shards' rows into one self-contained file with the layout of a
single-process cache.
"""

from __future__ import annotations

import functools
import math
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

import h5py

from ..progress import bar as progress_bar
from . import engines
from .reader import open_cache
from .schema import PAIRS, check_same_run, datasets, mismatch, run_attrs
from .writer import GenerateResult, append, create, publish, temporary, write_attrs, write_points

#: default points per shard (rounded to whole batches)
SHARD_POINTS = 1 << 16
#: rows read at a time when shards are copied into one file
COPY_ROWS = 1 << 14
_NAME = re.compile(r"shard-\d{6}\.h5")


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` of a run: points ``start .. stop-1``, stored at ``path`` once complete."""

    index: int
    start: int
    stop: int
    path: Path

    def __str__(self):
        return f"shard {self.index} (points {self.start}-{self.stop - 1}, {self.path.name})"


def folder_of(out):
    """The shard folder of the cache ``out``: ``out`` with ``.shards`` appended to its name."""
    out = Path(out)
    return out.with_name(out.name + ".shards")


def layout(run, n, out, shard_points=None):
    """The shards of ``n`` points of ``run`` for the cache ``out``: ``shard_points`` (default
    :data:`SHARD_POINTS`) rounded up to whole batches per shard, the last shard shorter."""
    per = math.ceil((SHARD_POINTS if shard_points is None else shard_points) / run.B) * run.B
    folder = folder_of(out)
    return [Shard(s, lo, min(n, lo + per), folder / f"shard-{s:06d}.h5") for s, lo in enumerate(range(0, n, per))]


def write(run, shard):
    """Compute and store ``shard`` of ``run`` (written to a temporary name, then renamed). Returns
    the shard's :class:`~physfield.targets.writer.GenerateResult`."""
    tmp = temporary(shard.path)
    try:
        result = write_points(run, tmp, shard.start, shard.stop, start=shard.start,
                                    attrs={"shard_start": shard.start, "shard_stop": shard.stop})
        publish(tmp, shard.path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    result.path = str(shard.path)
    return result


def complete(run, shard):
    """Whether ``shard.path`` holds exactly this shard of this run (its schema valid, its
    attributes those of ``run``, its rows ``start .. stop-1``)."""
    if not shard.path.is_file():
        return False
    try:
        with open_cache(shard.path) as cache:
            want = {**run_attrs(run), "shard_start": shard.start, "shard_stop": shard.stop}
            return len(cache) == shard.stop - shard.start and mismatch(cache, want) is None
    except ValueError:
        return False


def clear(folder, keep=()):
    """Remove the shard files (and stale temporary files) in ``folder`` other than ``keep``."""
    keep = {Path(p).name for p in keep}
    for path in Path(folder).glob("*"):
        stale = path.name.startswith(".shard-") and path.name.endswith(".tmp")
        if (_NAME.fullmatch(path.name) and path.name not in keep) or stale:
            path.unlink()


def merge(run, shards, out, copy=False):
    """Write the cache ``out`` over the complete ``shards`` (in order, covering points ``0 ..
    n-1``): virtual datasets naming the shards by relative paths, or with ``copy`` one
    self-contained file. Written to a temporary name and renamed."""
    n = shards[-1].stop
    tmp = temporary(out)
    try:
        with h5py.File(tmp, "w") as f:
            if copy:
                _copy(run, shards, f)
            else:
                _link(run, shards, n, Path(out).parent, f)
        publish(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _names(run):
    names = list(datasets(run))
    if run.store_pairs:
        names += [f"pairs/{name}" for name in (*PAIRS, "partner")]
    return names


def _rows(run, name, start, stop):
    """The rows of dataset ``name`` that hold points ``start .. stop-1`` (``start`` a multiple
    of ``B``): those rows themselves, or for a per-batch dataset of ``pairs`` their batches."""
    if name.startswith("pairs/") and name != "pairs/partner":
        return slice(start // run.B, math.ceil(stop / run.B))
    return slice(start, stop)


def _link(run, shards, n, base, f):
    write_attrs(f, run, {})
    with h5py.File(shards[0].path, "r") as first:
        meta = {name: (first[name].dtype, first[name].shape[1:]) for name in _names(run)}
    for name, (dtype, tail) in meta.items():
        vds = h5py.VirtualLayout(shape=(_rows(run, name, 0, n).stop, *tail), dtype=dtype)
        for shard in shards:
            rows = _rows(run, name, shard.start, shard.stop)
            source = os.path.relpath(shard.path, base)
            vds[rows] = h5py.VirtualSource(source, name, shape=(rows.stop - rows.start, *tail))
        f.create_virtual_dataset(name, vds)


def _copy(run, shards, f):
    """The shards' rows appended to a new single-process layout in ``f``, :data:`COPY_ROWS` at a
    time (a shard at D = 3072 holds gigabytes)."""
    rows = COPY_ROWS
    create(f, run, {})
    for shard in shards:
        with h5py.File(shard.path, "r") as src:
            for name in _names(run):
                for lo in range(0, src[name].shape[0], rows):
                    append(f[name], src[name][lo:lo + rows])



def generate(run, n, out, engine, *, shard_points=None, copy=False, resume=False, overwrite=False, retries=2,
             progress=False):
    """Write ``n`` points of ``run`` to the cache ``out`` as shards computed by ``engine``
    (:mod:`physfield.targets.engines`), then :func:`merge` them.

    ``resume``: keep the shards already complete and compute only the missing or incomplete
    ones (a cache at ``out`` with other attributes is refused); otherwise an existing ``out`` is
    refused unless ``overwrite``. A shard that fails is retried ``retries`` times. Returns a
    :class:`~physfield.targets.writer.GenerateResult`; the shard folder stays beside ``out``
    (with ``copy`` the cache does not need it).
    """
    out = Path(out)
    folder = folder_of(out)
    if out.exists() and resume and out.is_file():
        _check_attrs(out, run)
    elif out.exists() and not overwrite:
        raise ValueError(f"{out} exists; --resume (resume=True) extends it, --overwrite (overwrite=True) replaces it")
    plan = layout(run, n, out, shard_points)
    folder.mkdir(exist_ok=True)
    done = [shard for shard in plan if complete(run, shard)] if resume else []
    clear(folder, keep=[shard.path for shard in done])
    todo = [shard for shard in plan if shard not in done]
    timings, t_start = {}, time.perf_counter()
    bar = progress_bar(n, f"targets ({engine.workers} workers)", "pt", initial=n - sum(s.stop - s.start for s in todo),
                       enabled=progress)

    kept = list(done)

    def finished(shard, result):
        for key, seconds in result.timings.items():
            timings[key] = timings.get(key, 0.0) + seconds
        kept.append(shard)
        bar.update(shard.stop - shard.start)

    try:
        engines.run_all(engine, functools.partial(write, run), todo, retries, finished)
    except engines.TaskFailed as exc:
        raise ValueError(f"targets not complete: {exc}; run again with resume to compute the rest") from None
    except KeyboardInterrupt:  # Ctrl-C: the complete shards stay, and --resume computes only the others
        points = sum(shard.stop - shard.start for shard in kept)
        raise KeyboardInterrupt(f"{folder} keeps {len(kept)} of {len(plan)} shards ({points} of {n} points); "
                                "--resume continues") from None
    finally:
        bar.close()
    t0 = time.perf_counter()
    merge(run, plan, out, copy)
    timings["merge"] = time.perf_counter() - t0
    new = sum(s.stop - s.start for s in todo)
    return GenerateResult(str(out), n, new, time.perf_counter() - t_start, timings)


def _check_attrs(out, run):
    """Refuse to resume into ``out`` when it is a cache of another run (a cache that no longer
    opens, e.g. with a shard missing, is rebuilt from whatever shards are complete)."""
    try:
        cache = open_cache(out)
    except ValueError:
        return
    with cache:
        check_same_run(out, cache, run_attrs(run))
