"""The pairs of a dense plan that a point can see, and the order that makes them cheap to find.

A pair ``k = (i, j)`` enters a point's softmax with the logit ``l_k = log pi_k - h |rho_k|^2``,
``h = 1 / (2 sigma(z)^2)``, where (``t = z / L``)::

    rho_k = x - (1 - t) a_i - t b_j = t (y_i - b_j),      y_i = (x - (1 - t) a_i) / t

so for each source ``i`` only the sinks near ``y_i`` matter. The kernels drop every term whose
logit is more than ``-EXP_FLOOR`` (700) below the largest, ``m``. Given any lower bound ``m0 <= m``
(the logit of some pair), a pair of row ``i`` can pass that floor only if::

    |rho_k|^2 < r_i^2 = (max_j log pi_ij - m0 - EXP_FLOOR) / h

and, projecting on one coordinate ``d`` (``|rho_k| >= t |y_id - b_jd|``), only if ``b_jd`` lies in
``(y_id - r_i / t, y_id + r_i / t)``. With the sinks numbered in ascending ``b_d`` and each row's
pairs in ascending sink number (:func:`relabel`), that is one interval of each row, found by
bisection: ``O(N log M)`` per point to find the pairs that matter. Near the plates, where the
strings are thin, a few pairs of a few rows remain; between them, where every pair still weighs
more than ``e^-700``, the intervals cover the row and the kernel sums every pair, as without
pruning. Dropped pairs are exactly those the floor drops, so the sums are unchanged (to the order
of summation).

The coordinate ``d`` is the one along which the sinks spread most (their range, which does not
depend on their order). The test suite checks the pruned sums against
:mod:`physfield.kernels.reference` on plans whose mass sits on far pairs.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

#: a plan is pruned when its rows hold at least this many pairs on average
ROW_MIN = 32


class Near(NamedTuple):
    """What the CPU pair kernel needs to find a point's near pairs (module docstring).

    Parameters
    ----------
    rows : ndarray of int64, ``(N + 1,)``
        Row ``i``'s pairs are ``rows[i] <= k < rows[i + 1]``, in ascending sink number.
    coord : int
        The coordinate ``d`` the bounds project on.
    a_proj, b_proj : ndarray, ``(N,)`` and ``(M,)``
        ``a_id`` and ``b_jd`` (float64); ``b_proj`` ascends.
    lw_max : ndarray, ``(N,)``
        ``max_j log pi_ij`` of each row.
    """

    rows: np.ndarray
    coord: int
    a_proj: np.ndarray
    b_proj: np.ndarray
    lw_max: np.ndarray


def dense_rows(N, K):
    """Whether ``K`` pairs over ``N`` rows are dense enough to prune (:data:`ROW_MIN`)."""
    return K >= ROW_MIN * N


def spread_coordinate(B):
    """The coordinate along which the rows of ``B`` (NumPy) spread most: ``argmax_d (max - min)``."""
    return int(np.argmax(np.ptp(B, axis=0)))


def relabel(B, I, J, logw):
    """The sinks numbered in ascending :func:`spread_coordinate`, the pairs ordered by row and then
    sink: ``(order, I, J, logw)`` with ``B[order]`` the renumbered sinks (all NumPy). A field
    does not depend on how its sinks are numbered, so sums over the renumbered pairs are the
    same."""
    order = np.argsort(B[:, spread_coordinate(B)], kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    J = rank[J]
    pairs = np.lexsort((J, I))
    return order, I[pairs], J[pairs], logw[pairs]


def layout(A, B, I, J, logw):
    """The :class:`Near` of pairs that :func:`relabel` ordered (``A``, ``B`` NumPy, ``B`` already
    renumbered), or ``None`` when the rows are too sparse to prune (:func:`dense_rows`)."""
    N = len(A)
    if not dense_rows(N, len(I)):
        return None
    d = spread_coordinate(B)
    rows = np.searchsorted(I, np.arange(N + 1)).astype(np.int64)
    lw_max = np.full(N, -np.inf)
    np.maximum.at(lw_max, I, logw)
    return Near(rows, d, np.ascontiguousarray(A[:, d], dtype=np.float64),
                np.ascontiguousarray(B[:, d], dtype=np.float64), lw_max)
