"""Writing a run's points into an HDF5 file, and publishing a finished file atomically.

``n`` need not be a multiple of ``B``: the last batch is computed in full (its targets still
come from all ``B`` pairs) and only its first ``n mod B`` points are stored; a later ``resume``
recomputes that batch and stores the rest, so the bytes do not depend on where a run stopped.

Safety: a run writes ``.NAME.*.tmp`` in the folder of ``out`` (``resume`` first copies the
complete cache there), fsyncs it and renames it over ``out`` only when complete (one atomic
``os.replace``: a reader holding the old file keeps reading the old, complete one), so a killed
run leaves the previous complete cache (or none) plus a stale temporary file. ``resume`` refuses
a cache whose attributes differ from this run's (all of them, the backend and package version
included: a different backend changes targets at round-off and the bytes would differ).
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import tempfile
import threading
import time
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from pathlib import Path
from types import SimpleNamespace

import h5py
import numpy as np

from ..progress import bar as progress_bar
from . import sampler
from .reader import open_cache
from .schema import CHUNK_BYTES, COMPRESSION, PAIRS, datasets, mismatch, plain, run_attrs


@dataclass
class GenerateResult:
    """What :func:`generate` did: ``n`` points in ``path``, ``new`` of them by this call, and the
    wall time split into ``timings`` (data draws, plans, field kernel, HDF5 writing); each
    argument is kept as the attribute of the same name. ``points_per_second`` is
    ``new / seconds``; ``str()`` gives a one-line summary.

    Parameters
    ----------
    path : str
        The cache file written.
    n : int
        The number of points it holds.
    new : int
        How many of them this call computed (0: nothing to do).
    seconds : float
        The wall time of the call.
    timings : dict
        Seconds by stage: ``data`` (data draws), ``plan`` (plans), ``field`` (field kernel),
        ``write`` (HDF5 writing) and, for a run on an engine, ``merge``, summed over the
        workers; default empty.
    """

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


FLUSH_SECONDS = 1.0  # a single-process run commits its points to disk at least this often


def temporary(out):
    """A new, empty temporary file ``.NAME.PID.*.tmp`` beside ``out`` (mode 0644), for
    :func:`publish`; ``PID`` names the process writing it (:func:`stale_temporaries`)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{Path(out).name}.{os.getpid()}.", suffix=".tmp", dir=Path(out).parent)
    os.close(fd)
    os.chmod(tmp, 0o644)  # mkstemp's 0600 would make the cache private
    return tmp


def publish(tmp, out):
    """Make the finished file ``tmp`` the file ``out``: fsync it, then one atomic ``os.replace``
    (and fsync the folder), so ``out`` is always absent, the old file or the complete new one."""
    _fsync(tmp)
    os.replace(tmp, out)
    _fsync(Path(out).parent)


def write_points(run, path, n0, n, progress=False, start=0, attrs=None):
    """Append points ``n0 .. n-1`` of ``run`` to the HDF5 file ``path``, which holds points
    ``start .. n0-1`` (created, with :func:`run_attrs` plus ``attrs``, when ``n0 == start``;
    ``start`` is a multiple of ``B``). Returns a :class:`GenerateResult`."""
    B = run.B
    timings, t_start = {}, time.perf_counter()
    with h5py.File(path, "r+" if n0 > start else "w") as f:
        if n0 == start:
            create(f, run, attrs or {})
        bar = progress_bar(n, "targets", "pt", initial=n0, enabled=progress)
        pending = Pending(f)
        flushed = time.perf_counter()
        with interrupt_between_batches() as stop:
            try:
                for k in range(n0 // B, math.ceil(n / B)):
                    if stop.requested:
                        raise KeyboardInterrupt
                    b = sampler.batch(run, k, timings)
                    t0 = time.perf_counter()
                    lo, hi = max(n0, k * B), min(n, (k + 1) * B)
                    rows = slice(lo - k * B, hi - k * B)
                    for name in datasets(run):
                        pending.add(name, b[name][rows])
                    if run.store_pairs:
                        pending.add("pairs/partner", b["partner"][rows].astype(np.int32))
                        if lo == k * B:  # first time this batch is stored
                            for name in PAIRS:
                                pending.add(f"pairs/{name}", b[name][None])
                    if time.perf_counter() - flushed >= FLUSH_SECONDS:  # a kill loses at most the points since
                        pending.write()
                        f.flush()
                        flushed = time.perf_counter()
                    timings["write"] = timings.get("write", 0.0) + time.perf_counter() - t0
                    bar.update(hi - lo)
            finally:  # the computed batches are kept, also on Ctrl-C
                t0 = time.perf_counter()
                pending.write()
                timings["write"] = timings.get("write", 0.0) + time.perf_counter() - t0
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


class Pending:
    """Rows waiting to be appended to the datasets of the open HDF5 file ``f``: a batch's rows are
    collected (:meth:`add`) and written together (:meth:`write`, one resize and one write per
    dataset), which at small ``D`` costs a fraction of writing every batch (each write passes
    the filters of its chunks). Only what :meth:`write` wrote reaches the file."""

    def __init__(self, f):
        self.f, self.rows = f, {}

    def add(self, name, rows):
        self.rows.setdefault(name, []).append(rows)

    def write(self):
        for name, parts in self.rows.items():
            append(self.f[name], np.concatenate(parts))
        self.rows = {}


class _Stop:
    requested = False


@contextlib.contextmanager
def interrupt_between_batches():
    """Ctrl-C inside the block asks the loop to stop (``stop.requested``) at its next batch instead
    of interrupting h5py mid-write (which can leave its lock held and the file half written); a
    second Ctrl-C interrupts at once. Outside the main thread, nothing changes."""
    stop = _Stop()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def handler(signum, frame):
        if stop.requested:
            raise KeyboardInterrupt
        stop.requested = True

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield stop
    finally:
        signal.signal(signal.SIGINT, previous)


def stale_temporaries(out):
    """The temporary files beside ``out`` (:func:`temporary`) whose writing process is no longer
    alive on this machine."""
    found = []
    for tmp in Path(out).parent.glob(f".{Path(out).name}.*.tmp"):
        pid = tmp.name[len(Path(out).name) + 2:].partition(".")[0]
        if pid.isdecimal() and _alive(int(pid)):
            continue
        found.append(tmp)
    return found


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def committed(path, run, n):
    """Cut the file ``path`` of ``run`` to the points it holds in every dataset (at most ``n``)
    and check it; returns their number, ``0`` when the file is not a readable cache of ``run``.

    A run interrupted or killed between two flushes leaves datasets of unequal lengths (and,
    killed mid-write, perhaps a damaged file): the common prefix is the committed work, each
    point being a function of its batch alone.
    """
    try:
        with h5py.File(path, "r+") as f:
            if mismatch(SimpleNamespace(attrs={k: plain(v) for k, v in f.attrs.items()}), run_attrs(run)):
                return 0
            rows = min([n] + [f[name].shape[0] for name in datasets(run)])
            if run.store_pairs:
                rows = min(rows, f["pairs/partner"].shape[0], f["pairs/plan"].shape[0] * run.B)
            for name in datasets(run):
                f[name].resize(rows, axis=0)
            if run.store_pairs:
                f["pairs/partner"].resize(rows, axis=0)
                for name in PAIRS:
                    f["pairs"][name].resize(math.ceil(rows / run.B), axis=0)
        with open_cache(path, verify=True):
            return rows
    except (OSError, ValueError, KeyError):
        return 0


def _fsync(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
