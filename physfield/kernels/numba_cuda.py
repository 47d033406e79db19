"""GPU kernels: the row bodies of :mod:`physfield.kernels.rows` as ``numba.cuda`` device functions.

One thread per point. The launchers take CuPy arrays on a GPU (through
``__cuda_array_interface__``) and NumPy arrays under the CUDA simulator
(``NUMBA_ENABLE_CUDASIM=1``), which is how CI runs these kernels without a GPU. The GEMM
products of the high-dimensional path are CuPy (cuBLAS) calls in :mod:`physfield.kernels.engine`.
``KERNELS`` lists every kernel so a test can compile each one to PTX for sm_90.
"""

from contextlib import nullcontext

from numba import cuda

from . import rows

THREADS = 128

_sq_dist_row = cuda.jit(device=True)(rows.sq_dist_row)
_pair_softmax_row = cuda.jit(device=True)(rows.pair_softmax_row)
_pair_direct_row = cuda.jit(device=True)(rows.pair_direct_row)
_weighted_offset_row = cuda.jit(device=True)(rows.weighted_offset_row)
_charge_weights_row = cuda.jit(device=True)(rows.charge_weights_row)
_unit_row = cuda.jit(device=True)(rows.unit_row)


@cuda.jit
def _sq_dist(X, A, out):
    p = cuda.grid(1)
    if p < X.shape[0]:
        _sq_dist_row(p, X, A, out)


@cuda.jit
def _pair_softmax(t, inv2s2, X, A, B, alpha, beta, I, J, logw, gamma, refine, R, C, lse, ess):
    p = cuda.grid(1)
    if p < t.shape[0]:
        _pair_softmax_row(p, t, inv2s2, X, A, B, alpha, beta, I, J, logw, gamma, refine, R, C, lse, ess)


@cuda.jit
def _pair_direct(t, inv2s2, X, A, B, I, J, logw, ca, cb, out, lse, ess):
    p = cuda.grid(1)
    if p < t.shape[0]:
        _pair_direct_row(p, t, inv2s2, X, A, B, I, J, logw, ca, cb, out, lse, ess)


@cuda.jit
def _weighted_offset(X, A, W, out):
    p = cuda.grid(1)
    if p < X.shape[0]:
        _weighted_offset_row(p, X, A, W, out)


@cuda.jit
def _charge_weights(z, L, half_d1, alpha, beta, log_qa, log_qb, Wa, Wb, shift, r2min, ess):
    p = cuda.grid(1)
    if p < z.shape[0]:
        _charge_weights_row(p, z, L, half_d1, alpha, beta, log_qa, log_qb, Wa, Wb, shift, r2min, ess)


@cuda.jit
def _unit_rows(U, log_e):
    p = cuda.grid(1)
    if p < U.shape[0]:
        _unit_row(p, U, log_e)


KERNELS = {"sq_dist": _sq_dist, "pair_softmax": _pair_softmax, "pair_direct": _pair_direct,
           "weighted_offset": _weighted_offset, "charge_weights": _charge_weights, "unit_rows": _unit_rows}


def _grid(n):
    return (n + THREADS - 1) // THREADS, THREADS


def sq_dist(X, A, out):
    _sq_dist[_grid(X.shape[0])](X, A, out)


def pair_layout(I, J):
    """The plan's pairs as :func:`pair_softmax` takes them: the arrays ``(I, J)`` themselves."""
    return I, J


def pair_softmax(t, inv2s2, X, A, B, alpha, beta, layout, near, logw, gamma, refine, R, C, lse, ess):
    """One thread per point over every pair (``near``, the CPU's pruning, is not used here)."""
    I, J = layout
    _pair_softmax[_grid(t.shape[0])](t, inv2s2, X, A, B, alpha, beta, I, J, logw, gamma, refine, R, C, lse, ess)


def pair_coords(A, B, I, J):
    """The plan's pairs as :func:`pair_direct` takes them: the arrays themselves (each thread
    gathers its pairs' coordinates)."""
    return A, B, I, J


def pair_direct(t, inv2s2, X, coords, logw, ca, cb, out, lse, ess):
    A, B, I, J = coords
    _pair_direct[_grid(t.shape[0])](t, inv2s2, X, A, B, I, J, logw, ca, cb, out, lse, ess)


def cores_to(kernels):
    """Nothing to share on the GPU (the CPU's knob, see :func:`physfield.kernels.numba_cpu.cores_to`)."""
    return nullcontext()


def weighted_offset(X, A, W, out):
    _weighted_offset[_grid(X.shape[0])](X, A, W, out)


def charge_weights(z, L, half_d1, alpha, beta, log_qa, log_qb, Wa, Wb, shift, r2min, ess):
    _charge_weights[_grid(z.shape[0])](z, L, half_d1, alpha, beta, log_qa, log_qb, Wa, Wb, shift, r2min, ess)


def unit_rows(U, log_e):
    _unit_rows[_grid(U.shape[0])](U, log_e)
