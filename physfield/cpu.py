"""CPU kernels: the row bodies of :mod:`physfield.rows` compiled by Numba, points in parallel.

Every function here fills row ``p`` of its outputs for every point ``p`` (``numba.prange``);
the GEMM products of the high-dimensional path are NumPy/BLAS calls in :mod:`physfield.engine`.
Compiled functions are cached on disk (``cache=True``), so only the first call of a new
dtype pays for compilation.
"""

import os

# Numba's OpenMP workers spin after every parallel loop by default; the GEMM path alternates
# such loops with multithreaded BLAS calls, and on a busy machine the spinning threads starve
# each other (measured: 15 ms instead of 4 us per small call). Sleeping workers cost a few
# microseconds to wake. Set before libgomp starts; a value the user set is kept.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from contextlib import contextmanager  # noqa: E402

import numba  # noqa: E402
from numba import njit, prange  # noqa: E402

from . import rows  # noqa: E402

_sq_dist_row = njit(cache=True)(rows.sq_dist_row)
_pair_softmax_row = njit(cache=True)(rows.pair_softmax_row)
_pair_direct_row = njit(cache=True)(rows.pair_direct_row)
_weighted_offset_row = njit(cache=True)(rows.weighted_offset_row)
_charge_weights_row = njit(cache=True)(rows.charge_weights_row)


@njit(parallel=True, cache=True)
def sq_dist(X, A, out):
    for p in prange(X.shape[0]):
        _sq_dist_row(p, X, A, out)


@njit(parallel=True, cache=True)
def pair_softmax(t, inv2s2, X, A, B, alpha, beta, I, J, logw, gamma, refine, R, C, lse, ess):
    for p in prange(t.shape[0]):
        _pair_softmax_row(p, t, inv2s2, X, A, B, alpha, beta, I, J, logw, gamma, refine, R, C, lse, ess)


@njit(parallel=True, cache=True)
def pair_direct(t, inv2s2, X, A, B, I, J, logw, off_a, off_b, lse, ess):
    for p in prange(t.shape[0]):
        _pair_direct_row(p, t, inv2s2, X, A, B, I, J, logw, off_a, off_b, lse, ess)


@njit(parallel=True, cache=True)
def weighted_offset(X, A, W, out):
    for p in prange(X.shape[0]):
        _weighted_offset_row(p, X, A, W, out)


@njit(parallel=True, cache=True)
def charge_weights(z, L, half_d1, alpha, beta, log_qa, log_qb, Wa, Wb, shift, r2min):
    for p in prange(z.shape[0]):
        _charge_weights_row(p, z, L, half_d1, alpha, beta, log_qa, log_qb, Wa, Wb, shift, r2min)


@contextmanager
def threads(count):
    """Run the kernels on ``count`` threads inside the block (``None``: all of them).

    The GEMM path calls one short kernel between multithreaded BLAS products; OpenBLAS's
    workers still spin when it starts and a parallel kernel then waits on them (measured at
    D = 3072: 0.54 ms on one thread, 4-8 ms on two), so short kernels there run on one.
    """
    if count is None:
        yield
        return
    before = numba.get_num_threads()
    numba.set_num_threads(max(1, min(count, before)))
    try:
        yield
    finally:
        numba.set_num_threads(before)
