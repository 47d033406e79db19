"""``generate``: a run's training points and field targets written to one HDF5 cache.

``generate(field, source, target, n, out, ...)`` writes ``n`` training points with their field
targets (batches of :mod:`physfield.targets.sampler`); :func:`physfield.targets.open_cache`
validates such a file and hands out its datasets lazily. The run is computed in this process
(:mod:`physfield.targets.writer`) or in shards on an engine (:mod:`physfield.targets.shards`);
the cache's layout is :mod:`physfield.targets.schema`.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from . import sampler, shards
from .reader import open_cache
from ..validate import positive_int
from .schema import check_same_run, run_attrs
from .writer import GenerateResult, committed, publish, stale_temporaries, temporary, write_points


def default_path(field, source, target):
    """Where ``physfield targets`` writes a cache when no ``-o`` is given.

    Parameters
    ----------
    field : physfield.fields.Field
        The field (its :meth:`~physfield.fields.Field.spec` names it).
    source, target : str
        The data specs.

    Returns
    -------
    str
        ``data/<field>_<source>_<target>.h5``, each spec reduced to letters, digits, ``.`` and
        ``-`` (every other run of characters becomes one ``-``).
    """
    import re

    slug = "_".join(re.sub(r"[^A-Za-z0-9.-]+", "-", v) for v in (field.spec(), source, target))
    return f"data/{slug}.h5"


def generate(field, source, target, n, out, *, batch=256, plan=sampler.PLAN, noise=None, lam=None, seed=0, eps=None,
             outside_fraction=None, reg=0.05, dim=None, backend="auto", resume=False, overwrite=False,
             store_pairs=False, progress=False, engine=None, shard_points=None, copy=False, retries=2,
             conditional=False, within_class=False, z_schedule=None):
    """Write ``n`` training points and field targets of ``field`` to the HDF5 file ``out``.

    See the module docstring for the sampling and layout. Bad arguments are a one-line
    ``ValueError`` raised before any file is touched.

    Parameters
    ----------
    field : physfield.fields.Field
        Any field (:mod:`physfield.fields`) whose parameters are numbers or strings.
    source, target : str
        Data specs (``physfield.data``) of the sources and the sinks.
    n : int
        The number of points the cache holds when done, ``>= 1``.
    out : str or os.PathLike
        The cache file; its folder must exist.
    batch : int
        Pairs per minibatch ``B`` (default 256).
    plan : str
        ``paired``, ``independent``, ``optimal`` (the default
        :data:`~physfield.targets.sampler.PLAN`) or ``sinkhorn`` (``reg``).
    noise : float, optional
        The training points' spread in units of ``t = z/L`` (:mod:`physfield.targets.sampler`;
        default :data:`~physfield.targets.sampler.NOISE`).
    lam : float, optional
        Instead of ``noise``: the paper's knob ``lambda = noise / sqrt(L)`` (the cache records
        ``lambda``); not both.
    seed : int
        The run's seed, a non-negative integer (default 0).
    eps : float, optional
        ``z`` margin (default ``1e-3 L``, at least ``1e-6 L``, below ``L/2``).
    outside_fraction : float, optional
        The share of points outside the plates, for a field that does not vanish there (default
        0.2; 0 otherwise).
    reg : float
        The ``sinkhorn`` regularisation, relative to the mean cost (default 0.05).
    dim : int, optional
        The dimension of both sides: sets ``gaussian``'s ``D`` (:func:`physfield.data.pair_dims`).
    backend : str
        ``"auto"`` (the default), ``"numpy"``, ``"numba"`` or ``"cupy"``
        (:func:`physfield.kernels.get_backend`).
    resume : bool
        Extend an existing cache at ``out`` to ``n`` points (start afresh when there is none; a
        cache of another run is refused, and so, without an engine, is one holding more than
        ``n`` points).
    overwrite : bool
        Without ``resume``, replace an existing ``out``, which is refused otherwise.
    store_pairs : bool
        Keep every batch's pairs and plan (verification mode).
    progress : bool
        Show a tqdm bar.
    engine : physfield.targets.engines.Engine, optional
        :mod:`physfield.targets.engines`: ``Local()``, ``Pool(workers)``, ``Ray(address)``:
        compute the run in shards of ``shard_points`` points on that engine and join them into
        one cache (:mod:`physfield.targets.shards`); the cache's datasets are the same bytes as
        without an engine. ``None`` (the default): in this process.
    shard_points : int, optional
        Points per shard with an engine (default
        :data:`~physfield.targets.shards.SHARD_POINTS`, rounded up to whole batches).
    copy : bool
        With an engine: one self-contained file (the cache does not need the shard folder).
    retries : int
        With an engine: attempts more per failed shard (default 2).
    conditional : bool
        Store each point's class (its sink's label) in ``labels`` with the class-conditional
        field as its target (needs labelled data, :mod:`physfield.targets.sampler`).
    within_class : bool
        Pair only samples of the same class (needs labelled data on both sides).
    z_schedule : str, optional
        The law of the training points' ``z``: ``uniform`` (the default
        :data:`~physfield.targets.sampler.Z_SCHEDULE`) or ``logit-normal`` (the sampler's module
        docstring).

    Returns
    -------
    GenerateResult
        ``n`` points in ``out``, ``new`` of them written by this call (0 when a resumed cache
        already holds ``n``), and the time taken.
    """
    run = sampler.make_run(field, source, target, batch, plan, reg, noise, lam, eps, outside_fraction, seed, dim,
                           backend, store_pairs, conditional, within_class, z_schedule)
    n = positive_int("n", n)
    out = Path(out)
    if out.is_dir():
        raise ValueError(f"output {out} is a directory")
    if not out.parent.is_dir():
        raise ValueError(f"output folder {out.parent} does not exist")
    if engine is None and (shard_points is not None or copy):
        raise ValueError("--shard-points and --copy go with --workers or --ray (an engine)")
    if engine is not None:
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
        raise ValueError(f"{out} exists; --resume (resume=True) extends it, --overwrite (overwrite=True) replaces it")

    tmp, start = None, n0
    for stale in stale_temporaries(out):  # of killed runs: the most complete one of this run is resumed
        rows = committed(stale, run, n) if resume else 0
        if rows > start:
            if tmp is not None:
                tmp.unlink(missing_ok=True)
            tmp, start = stale, rows
        else:
            stale.unlink(missing_ok=True)
    if tmp is None:
        tmp = temporary(out)
        if n0:
            shutil.copyfile(out, tmp)
    try:
        result = write_points(run, tmp, start, n, progress)
        publish(tmp, out)
    except KeyboardInterrupt:  # Ctrl-C: the points committed so far become the cache, which --resume extends
        kept = committed(tmp, run, n)
        if kept > n0:
            publish(tmp, out)
        else:
            Path(tmp).unlink(missing_ok=True)
            kept = n0
        raise KeyboardInterrupt(f"{out} keeps {kept} of {n} points; --resume continues" if kept
                                else f"no point of {out} was done") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    result.path = str(out)
    return result


def _check_resumable(path, expected):
    """Number of points in the cache at ``path`` after checking it (fully) and its attributes."""
    with open_cache(path, verify=True) as cache:
        check_same_run(path, cache, expected)
        return len(cache)
