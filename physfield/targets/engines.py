"""Where the shards of a run are computed: in this process, a local process pool, or Ray.

An engine maps a function over tasks and reports each task's outcome, a result or the exception
it raised: :meth:`Engine.map` yields ``(task, outcome)`` as tasks finish. :func:`run_all` calls
it again for the tasks that failed, up to ``retries`` times each, so a shard whose worker raised
or was killed is computed afresh (a shard is renamed into place only when complete, so a killed
worker leaves nothing half-written behind).

- :class:`Local`: one task after another in this process.
- :class:`Pool`: ``workers`` local processes (``concurrent.futures``, started by ``spawn``),
  each given ``cores / workers`` threads for its kernels. A killed worker breaks the pool: the
  tasks then running are reported failed (each is charged an attempt) and a new pool runs the
  rest.
- :class:`Ray`: one Ray task per shard on a Ray cluster (``address``: ``"auto"`` for a running
  cluster started with ``ray start --head``, a ``host:port``, or ``None`` for a local Ray
  started here). Ray re-runs a task whose worker died (``max_retries``); :func:`run_all` retries
  tasks that raised. With ``gpus=1`` each task holds one GPU (``--backend cupy``).
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import os
import re
import threading
import time

from ..validate import one_line, positive_int

_ANSI = re.compile(r"\x1b\[[0-9;]*m")  # colour codes in Ray's error messages


class Engine:
    """Base of the engines: :meth:`map` runs ``fn`` over ``tasks``; :attr:`workers` is how many
    run at once (for progress messages)."""

    workers = 1

    def map(self, fn, tasks):
        raise NotImplementedError

    def close(self):
        """Release what the engine holds (processes, a Ray connection it started)."""


class Local(Engine):
    """Tasks one after another in this process."""

    def map(self, fn, tasks):
        for task in tasks:
            try:
                yield task, fn(task)
            except Exception as exc:
                yield task, exc

    def __repr__(self):
        return "Local()"


PARENT_POLL = 1.0  # seconds between a pool worker's checks that its parent is alive


def _start_worker(threads, parent):
    """Initializer of a pool worker: its share of the cores for Numba and BLAS, and a watch that
    ends the worker when its parent ``parent`` is gone (killed with ``kill -9``, the pool never
    told its workers to stop: they would idle on, holding the resource tracker with them)."""
    import numba
    from threadpoolctl import threadpool_limits

    numba.set_num_threads(max(1, min(threads, numba.config.NUMBA_NUM_THREADS)))
    threadpool_limits(threads)
    threading.Thread(target=_exit_with_parent, args=(parent,), daemon=True, name="parent-watch").start()


def _exit_with_parent(parent):
    """Exit this process as soon as its parent process is no longer ``parent`` (it died and this
    process was handed to another)."""
    while os.getppid() == parent:
        time.sleep(PARENT_POLL)
    os._exit(1)


class Pool(Engine):
    """``workers`` local processes, each with ``cores // workers`` threads (at least 1)."""

    def __init__(self, workers):
        self.workers = positive_int("workers", workers)
        self._pool = None

    def _executor(self):
        if self._pool is None:
            threads = max(1, (os.cpu_count() or 1) // self.workers)
            self._pool = cf.ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"),
                                                initializer=_start_worker, initargs=(threads, os.getpid()))
        return self._pool

    def map(self, fn, tasks):
        """At most ``workers`` tasks in flight, so a worker that dies takes down (and has
        reported failed) only the tasks then running; the rest go to a new pool."""
        queue = list(tasks)[::-1]
        running = {}
        while queue or running:
            while queue and len(running) < self.workers:
                task = queue.pop()
                running[self._executor().submit(fn, task)] = task
            done, _ = cf.wait(running, return_when=cf.FIRST_COMPLETED)
            for future in done:
                task = running.pop(future)
                exc = future.exception()
                if isinstance(exc, cf.process.BrokenProcessPool):
                    self.close()  # unusable: the next submission starts a new pool
                yield task, future.result() if exc is None else exc

    def close(self):
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None

    def __repr__(self):
        return f"Pool(workers={self.workers})"


def choose(workers=None, ray=None, gpus=0):
    """The engine that ``physfield targets``' options name.

    Parameters
    ----------
    workers : int, optional
        :class:`Pool` of this many local processes.
    ray : str, optional
        :class:`Ray` at this address (``"auto"``, ``host:port``), or on a local Ray started here
        (``"local"``).
    gpus : int
        GPUs per Ray task.

    Returns
    -------
    Engine or None
        ``None`` when neither is given: the run is computed in this process.
    """
    if workers and ray:
        raise ValueError("choose --workers or --ray, not both")
    if workers:
        return Pool(workers)
    if ray:
        return Ray(None if ray == "local" else ray, gpus=gpus)
    return None


class Ray(Engine):
    """One Ray task per shard (``num_cpus=1``, or ``num_gpus=1`` with ``gpus=1``), on the cluster
    at ``address`` (``"auto"``, ``host:port``) or on a local Ray started here (``None``,
    ``num_cpus`` cores)."""

    def __init__(self, address=None, num_cpus=None, gpus=0, max_retries=2):
        try:
            import ray
        except ImportError:
            raise ValueError("--ray needs Ray: pip install 'physfield[distributed]'") from None
        self._ray = ray
        self._started = not ray.is_initialized()
        if self._started and address not in (None, "auto"):
            _reachable(address)
        if self._started:
            kwargs = {"address": address} if address else {"num_cpus": num_cpus}
            try:
                ray.init(**kwargs, include_dashboard=False, log_to_driver=False, configure_logging=False)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                raise ValueError(f"cannot connect to Ray at {address or 'a new local instance'}: "
                                 f"{one_line(exc)[:200]}") from None
        self.resources = {"num_gpus": 1} if gpus else {"num_cpus": 1}
        self.max_retries = max_retries
        self.workers = int(ray.cluster_resources().get("GPU" if gpus else "CPU", 1))

    def map(self, fn, tasks):
        ray = self._ray
        remote = ray.remote(max_retries=self.max_retries, **self.resources)(_call)
        shared = ray.put(fn)  # sent to the object store once, not with every task
        refs = {remote.remote(shared, task): task for task in tasks}
        pending = list(refs)
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            for ref in done:
                try:
                    yield refs[ref], ray.get(ref)
                except Exception as exc:  # RayTaskError wraps what the task raised; worker loss
                    yield refs[ref], exc

    def close(self):
        if self._started and self._ray.is_initialized():
            self._ray.shutdown()

    def __repr__(self):
        return f"Ray(workers={self.workers})"


CONNECT_TIMEOUT = 10.0  # seconds to reach a Ray cluster's address before giving up


def _reachable(address, timeout=CONNECT_TIMEOUT):
    """A one-line ``ValueError`` unless something answers at the Ray address ``host:port`` (or
    ``ray://host:port``): Ray itself would retry an unreachable address for minutes."""
    import socket

    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdecimal():
        raise ValueError(f"a Ray address is 'auto' or host:port, got {address!r}")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as exc:
        raise ValueError(f"cannot reach Ray at {address}: {one_line(exc)} (is `ray start` running there?)") from None


def _call(fn, task):
    """``fn(task)``: what a Ray task runs (Ray takes functions, not ``functools.partial``)."""
    return fn(task)


class TaskFailed(RuntimeError):
    """A task still failed after its retries."""


def run_all(engine, fn, tasks, retries=2, on_done=None):
    """Run ``fn`` over ``tasks`` on ``engine``; a task that fails is run again, up to ``retries``
    more times. ``on_done(task, result)`` is called as each task succeeds. Raises
    :class:`TaskFailed` (one line: the task and its last error) when a task is out of retries."""
    attempts = {task: 0 for task in tasks}
    pending = list(tasks)
    while pending:
        failed = []
        for task, outcome in engine.map(fn, pending):
            if not isinstance(outcome, BaseException):
                if on_done is not None:
                    on_done(task, outcome)
                continue
            attempts[task] += 1
            if attempts[task] > retries:
                reason = " ".join(_ANSI.sub("", str(outcome)).split()) or type(outcome).__name__
                raise TaskFailed(f"{task} failed {attempts[task]} times; last error: {reason[:300]}")
            failed.append(task)
        pending = failed
