"""CPU kernels: the row bodies of :mod:`physfield.kernels.rows` compiled by Numba, points in parallel.

Every function here fills row ``p`` of its outputs for every point ``p`` (``numba.prange``);
the GEMM products of the high-dimensional path are NumPy/BLAS calls in
:mod:`physfield.kernels.engine`. The two pair kernels are the exception: the vectorised passes of
:mod:`physfield.kernels.simd` replace the scalar row bodies (whose libm ``exp`` per pair
dominated them) with the same results.

Compiled functions are cached on disk, so only the first call of a new dtype pays for
compilation. Numba keys a cached function on the source of the file that defines it, and the
wrappers here are defined in this file while their bodies live in ``rows.py``: an edit of
``rows.py`` alone would leave the cache valid and the old code running. So the cache of this
module lives in a folder named by a digest of both files (:func:`_cache_dir`); any edit of either
compiles afresh.
"""

import os

# Numba's OpenMP workers spin after every parallel loop by default; the GEMM path alternates
# such loops with multithreaded BLAS calls, and on a busy machine the spinning threads starve
# each other (measured: 15 ms instead of 4 us per small call). Sleeping workers cost a few
# microseconds to wake. Set before libgomp starts; a value the user set is kept.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import functools  # noqa: E402
import hashlib  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402
from contextlib import contextmanager  # noqa: E402
from pathlib import Path  # noqa: E402

import numba  # noqa: E402
import numpy as np  # noqa: E402
from numba import njit, prange  # noqa: E402
from threadpoolctl import ThreadpoolController  # noqa: E402

from . import rows, simd  # noqa: E402

#: the files whose code the cached functions of this module contain
SOURCES = (Path(__file__), Path(rows.__file__))


def _cache_dir():
    """``__pycache__/numba-<digest of SOURCES>`` beside this file (older digests removed), or the
    same name in the temporary folder when the package folder is not writable."""
    digest = hashlib.sha256(b"".join(p.read_bytes() for p in SOURCES)).hexdigest()[:16]
    for root in (Path(__file__).parent / "__pycache__", Path(tempfile.gettempdir()) / "physfield"):
        try:
            root.mkdir(parents=True, exist_ok=True)
            for old in root.glob("numba-*"):
                if old.name != f"numba-{digest}":
                    shutil.rmtree(old, ignore_errors=True)
            (root / f"numba-{digest}").mkdir(exist_ok=True)
            return str(root / f"numba-{digest}")
        except OSError:
            continue
    return ""  # numba's own locators


_CACHE = _cache_dir()


def _jit(**options):
    """``njit(cache=True, **options)`` caching in :data:`_CACHE`: numba reads ``config.CACHE_DIR``
    when a cached function is decorated, so it is set for that moment only (other code keeps
    the user's setting)."""

    def decorate(fn):
        before = numba.config.CACHE_DIR
        numba.config.CACHE_DIR = _CACHE
        try:
            return njit(cache=True, **options)(fn)
        finally:
            numba.config.CACHE_DIR = before

    return decorate

_sq_dist_row = _jit()(rows.sq_dist_row)
_weighted_offset_row = _jit()(rows.weighted_offset_row)
_charge_weights_row = _jit()(rows.charge_weights_row)
_unit_row = _jit()(rows.unit_row)


@_jit(parallel=True)
def sq_dist(X, A, out):
    for p in prange(X.shape[0]):
        _sq_dist_row(p, X, A, out)


def pair_layout(I, J):
    """The plan's pairs as :func:`pair_softmax` takes them: ``(I, J, los, his, runs)``, the pairs
    cut into blocks ``los[q] <= k < his[q]`` by :func:`physfield.kernels.simd.pair_blocks`."""
    starts, run = simd.pair_blocks(I, J)
    return I, J, starts[:-1].copy(), starts[1:].copy(), run


#: a point sums only its near pairs when they are at most this share of the plan's
NEAR_SHARE = 0.5
_NO_NEAR = (np.zeros(0, np.int64), 0, np.zeros(0), np.zeros(0), np.zeros(0))


def pair_softmax(t, inv2s2, X, A, B, alpha, beta, layout, near, logw, gamma, refine, R, C, lse, ess):
    """:func:`physfield.kernels.rows.pair_softmax_row` for every point, by the vectorised
    :func:`physfield.kernels.simd.pair_softmax` over the blocks of ``layout`` (:func:`pair_layout`);
    with ``near`` (a :class:`physfield.kernels.near.Near`, or ``None``) each point visits only
    the pairs it can see, unless they are more than :data:`NEAR_SHARE` of all."""
    I, J, los, his, runs = layout
    cap = int(NEAR_SHARE * len(I))
    simd.pair_softmax(t, inv2s2, X, A, B, alpha, beta, I, J, los, his, runs, *(_NO_NEAR if near is None else near),
                      cap, logw, gamma, refine, R, C, lse, ess)


def pair_coords(A, B, I, J):
    """The plan's pairs as :func:`pair_direct` takes them: their coordinates gathered as
    ``(D, K)`` rows ``a^T``, ``b^T`` and ``b^T - a^T`` (made once by a bound field)."""
    AT = np.ascontiguousarray(A[I].T)
    BT = np.ascontiguousarray(B[J].T)
    return AT, BT, BT - AT


#: below this many point-pair terms :func:`pair_direct` makes one chunk of all points, so one
#: thread does the call: waking another costs more than it saves (measured on a 2-core VM: equal
#: at 192 x 192 paired, 101 vs 119 us at 128 x 128, 210 vs 171 us at 256 x 256)
SERIAL_WORK = 2**15


def pair_direct(t, inv2s2, X, coords, logw, ca, cb, out, lse, ess):
    """:func:`physfield.kernels.rows.pair_direct_row` for every point, by
    :func:`physfield.kernels.simd.pair_direct` on the pairs' ``coords`` (:func:`pair_coords`), in
    chunks of :data:`physfield.kernels.simd.CHUNK` points (one chunk below :data:`SERIAL_WORK`)."""
    chunk = max(len(X), 1) if len(X) * len(logw) < SERIAL_WORK else simd.CHUNK
    simd.pair_direct(t, inv2s2, X, *coords, logw, ca, cb, out, lse, ess, chunk)


@_jit(parallel=True)
def weighted_offset(X, A, W, out):
    for p in prange(X.shape[0]):
        _weighted_offset_row(p, X, A, W, out)


@_jit(parallel=True)
def charge_weights(z, L, half_d1, alpha, beta, log_qa, log_qb, Wa, Wb, shift, r2min, ess):
    for p in prange(z.shape[0]):
        _charge_weights_row(p, z, L, half_d1, alpha, beta, log_qa, log_qb, Wa, Wb, shift, r2min, ess)


@_jit()
def unit_rows(U, log_e):
    """:func:`physfield.kernels.rows.unit_row` for every row, on one thread: ``O(D)`` work per
    row, which waking other threads would not repay."""
    for p in range(U.shape[0]):
        _unit_row(p, U, log_e)


@functools.lru_cache(maxsize=1)
def _blas():
    return ThreadpoolController()


@contextmanager
def cores_to(kernels):
    """Give the CPU's cores to the Numba kernels (``True``: BLAS on one thread) or to BLAS
    (``False``: the kernels on one thread) inside the block.

    The GEMM path alternates BLAS products and Numba kernels. Both use every core, and OpenBLAS's
    workers keep spinning after a product, so a parallel kernel started next waits on them
    (measured at D = 3072, 256 x 256 paired: the softmax takes 0.54 ms on one thread and 4-8 ms on
    two). Light pair work (few pairs per point) leaves the cores to BLAS; heavy pair work (the
    N*M pairs of a dense plan) takes them (256 x 256 independent: 112 ms instead of 143 ms).
    """
    if kernels:
        with _blas().limit(limits=1, user_api="blas"):
            yield
        return
    before = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        yield
    finally:
        numba.set_num_threads(before)
