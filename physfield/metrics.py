"""Distances between samples: ``W2`` (exact optimal transport, POT)."""

from __future__ import annotations

import numpy as np
from scipy.spatial.distance import cdist


def w2(x, y):
    """``W2`` between two empirical measures with uniform weights.

    .. math:: W_2(\\mu, \\nu) = \\Big(\\min_{\\pi \\in \\Pi(\\mu, \\nu)} \\sum_{ij} \\pi_{ij} |x_i - y_j|^2\\Big)^{1/2}

    solved exactly by POT's network simplex (``ot.emd2``) on the squared Euclidean cost.

    Parameters
    ----------
    x, y : array_like, ``(n, D)`` and ``(m, D)``

    Returns
    -------
    float
    """
    import ot  # POT imports torch when it is installed: only when a W2 is asked for

    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    cost = cdist(x, y, metric="sqeuclidean")
    return float(np.sqrt(max(ot.emd2(np.full(len(x), 1 / len(x)), np.full(len(y), 1 / len(y)), cost,
                                     numItermax=10**7), 0.0)))
