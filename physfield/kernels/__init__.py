"""Kernels: how the fields' sums are computed, apart from the physics that states them.

``backend`` (the :class:`~physfield.kernels.backend.Backend` objects and
:func:`~physfield.kernels.backend.get_backend`), ``reference`` (the NumPy formulas, line by
line), ``engine`` (the composition of row kernels and matrix products shared by CPU and GPU),
``rows`` (per-point bodies compiled twice), ``simd`` (vectorised CPU pair kernels), ``near``
(which pairs of a dense plan a point can see),
``numba_cpu`` and ``numba_cuda`` (the compiled kernels per device).
"""

from .backend import BACKENDS, Backend, available, get_backend

__all__ = ["Backend", "BACKENDS", "available", "get_backend"]
